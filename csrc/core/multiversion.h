// Entry points of the CPU kernel cores, compiled once per x86-64 ISA level
// (x86-64-v4 = AVX-512, x86-64-v3 = AVX2 + FMA, baseline) and picked at load
// time by the dynamic loader (GCC target_clones / ifunc), so one build runs on
// any x86-64 and uses the widest vectors the machine has. Elsewhere (other
// compilers or architectures) they are the portable code, compiled once.
// Each forwards to the template of the same name in the core headers.
#pragma once

#include <cstdint>

#include "dtype.h"
#include "dwsep_conv.h"

namespace effdl::core::mv {

// The ISA level the loader picked for this CPU: "x86-64-v4", "x86-64-v3",
// "baseline" or "portable" (not multiversioned).
const char* selected_isa();

#define EFFDL_MV_DECLARE_FLOAT(T)                                                                  \
  bool nm_linear_block(const T* x, int64_t ldx, const acc_t<T>* xt, int64_t M, int64_t K,          \
                       const T* values, const uint8_t* meta, int n, int m, const T* bias, T* y,    \
                       int64_t ldy, int64_t o_begin, int64_t o_end);                               \
  void nm_pack_x_transposed(const T* x, int64_t ldx, int64_t M, int64_t k_begin, int64_t k_end,    \
                            acc_t<T>* xt);                                                         \
  void dwsep_conv2d_rows(const DwsepShape& s, const T* x, const acc_t<T>* dw_w,                    \
                         const acc_t<T>* dw_b, const acc_t<T>* pw_wt, const acc_t<T>* pw_b,        \
                         Activation dw_act, Activation pw_act, T* y, int64_t r_begin,              \
                         int64_t r_end);

#define EFFDL_MV_DECLARE_ACT(T)                                                                    \
  int64_t quantize_rows_block(const T* x, int64_t ldx, int64_t K, int8_t* q, int64_t ldq,          \
                              float* scale, int64_t r_begin, int64_t r_end);                       \
  void int8_linear_block(const int8_t* q, int64_t ldq, const float* q_scale, int64_t M, int64_t K, \
                         const int8_t* wq, const float* w_scale, const float* bias, T* out,        \
                         int64_t ldo, int64_t o_begin, int64_t o_end);                             \
  void int8_weight_linear_block(const float* x, int64_t ldx, int64_t M, int64_t K,                 \
                                const int8_t* wq, const float* w_scale, const float* bias, T* out, \
                                int64_t ldo, int64_t o_begin, int64_t o_end);

EFFDL_MV_DECLARE_FLOAT(float)
EFFDL_MV_DECLARE_FLOAT(double)
EFFDL_MV_DECLARE_FLOAT(bf16)
EFFDL_MV_DECLARE_FLOAT(fp16)
EFFDL_MV_DECLARE_ACT(float)
EFFDL_MV_DECLARE_ACT(bf16)
EFFDL_MV_DECLARE_ACT(fp16)

#undef EFFDL_MV_DECLARE_FLOAT
#undef EFFDL_MV_DECLARE_ACT

}  // namespace effdl::core::mv
