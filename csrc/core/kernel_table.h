// The CPU kernel cores as a table of function pointers, one table per
// instruction-set level (isa.h). Every entry is a template of the core headers
// (nm_linear.h, nm_packed.h, int8.h, int8_packed.h, nm_int8_linear.h, dwsep_tiled.h), the single source of
// each kernel, compiled once per level: kernel_table_<level>.cpp instantiates it
// inside a wrapper carrying that level's target attribute, so the loops are
// vectorised for it.
// The glue picks one table at first use (cpu/kernels.h) and calls through it.
#pragma once

#include <cstdint>
#include <tuple>

#include "dtype.h"
#include "dwsep_tiled.h"
#include "int8.h"
#include "isa.h"

namespace effdl::core {

// The kernels of the float ops, for T in float, double, bf16, fp16.
template <typename T>
struct FloatKernels {
  bool (*nm_linear_block)(const T* x, int64_t ldx, const acc_t<T>* xt, int64_t M, int64_t K,
                          const T* values, const uint8_t* meta, int n, int m, const T* bias, T* y,
                          int64_t ldy, int64_t o_begin, int64_t o_end);
  void (*nm_pack_x_transposed)(const T* x, int64_t ldx, int64_t M, int64_t k_begin, int64_t k_end,
                               acc_t<T>* xt);
  // whether nm_linear_block reads xt for (M, n, m): the glue packs it only then, else passes null
  bool (*nm_reads_xt)(int64_t M, int n, int m);
  // panels [p_begin, p_end) of nm_linear on 2:4 weights packed by nm_pack_panels (nm_packed.h)
  bool (*nm_linear_packed_block)(const T* x, int64_t ldx, int64_t M, int64_t K, const T* packed, int64_t N,
                                 const T* bias, T* y, int64_t ldy, int64_t p_begin, int64_t p_end);
  // rows of x from which nm_linear_packed_block beats nm_linear_block on 2:4 (-1: never)
  int64_t nm_packed_min_rows;
  void (*dwsep_conv2d_pixels)(const DwsepShape& s, const T* x, const DwsepPacked<acc_t<T>>& w,
                              Activation dw_act, Activation pw_act, T* y, int64_t p_begin,
                              int64_t p_end);
};

// The kernels of the int8 ops, for the activation / output type T in float, bf16, fp16.
template <typename T>
struct Int8Kernels {
  int64_t (*quantize_rows_block)(const T* x, int64_t ldx, int64_t K, int8_t* q, int64_t ldq,
                                 float* scale, int64_t r_begin, int64_t r_end);
  void (*int8_linear_block)(const int8_t* q, int64_t ldq, const float* q_scale, int64_t M,
                            int64_t K, const int8_t* wq, const float* w_scale, const float* bias,
                            T* out, int64_t ldo, int64_t o_begin, int64_t o_end);
  void (*int8_weight_linear_block)(const float* x, int64_t ldx, int64_t M, int64_t K,
                                   const int8_t* wq, const float* w_scale, const float* bias,
                                   T* out, int64_t ldo, int64_t o_begin, int64_t o_end);
  bool (*nm_int8_linear_block)(const int8_t* q, int64_t ldq, const float* qt,
                               const float* q_scale, int64_t M, int64_t K, const int8_t* values,
                               const uint8_t* meta, int n, int m, const float* w_scale,
                               const float* bias, T* out, int64_t ldo, int64_t o_begin,
                               int64_t o_end);
  // panels [p_begin, p_end) of int8_linear on weights packed by int8_pack_weight_panels (int8_packed.h)
  void (*int8_linear_packed_block)(const int8_t* q, int64_t ldq, const float* q_scale, int64_t M,
                                   int64_t K, const int8_t* packed, int64_t N, const float* w_scale,
                                   const float* bias, T* out, int64_t ldo, int64_t p_begin,
                                   int64_t p_end);
};

struct KernelTable {
  Isa isa;
  std::tuple<FloatKernels<float>, FloatKernels<double>, FloatKernels<bf16>, FloatKernels<fp16>>
      float_kernels;
  std::tuple<Int8Kernels<float>, Int8Kernels<bf16>, Int8Kernels<fp16>> int8_kernels;
  void (*nm_int8_pack_q_transposed)(const int8_t* q, int64_t ldq, int64_t M, int64_t k_begin,
                                    int64_t k_end, float* qt);
  // whether this level's nm_int8_linear_block reads the packed qt for M rows of q
  bool (*nm_int8_reads_qt)(int64_t M);
  // int8_weight_linear on bf16 x as it is (int8.h); null: widen x to fp32 for int8_weight_linear_block
  Int8WeightBf16Fn int8_weight_linear_bf16_block;

  template <typename T>
  const FloatKernels<T>& floats() const {
    return std::get<FloatKernels<T>>(float_kernels);
  }
  template <typename T>
  const Int8Kernels<T>& int8() const {
    return std::get<Int8Kernels<T>>(int8_kernels);
  }
};

// The table of one level; null when this build has no kernels for it.
const KernelTable* kernel_table(Isa isa);

}  // namespace effdl::core
