// One definition per entry point of multiversion.h; the templates are inlined
// into each clone, so their loops are vectorised for that clone's ISA.
#include "multiversion.h"

#include "int8.h"
#include "nm_linear.h"

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__) && \
    (__GNUC__ >= 12)
#define EFFDL_MULTIVERSIONED 1
// flatten: the templates must be inlined into each clone to be compiled for its ISA
#define EFFDL_CLONES \
  __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default"), flatten))
#else
#define EFFDL_MULTIVERSIONED 0
#define EFFDL_CLONES
#endif

namespace effdl::core::mv {

const char* selected_isa() {
#if EFFDL_MULTIVERSIONED
  __builtin_cpu_init();
  if (__builtin_cpu_supports("x86-64-v4")) return "x86-64-v4";
  if (__builtin_cpu_supports("x86-64-v3")) return "x86-64-v3";
  return "baseline";
#else
  return "portable";
#endif
}

#define EFFDL_MV_DEFINE_FLOAT(T)                                                                   \
  EFFDL_CLONES bool nm_linear_block(const T* x, int64_t ldx, const acc_t<T>* xt, int64_t M,        \
                                    int64_t K, const T* values, const uint8_t* meta, int n, int m, \
                                    const T* bias, T* y, int64_t ldy, int64_t o_begin,             \
                                    int64_t o_end) {                                               \
    return core::nm_linear_block<T>(x, ldx, xt, M, K, values, meta, n, m, bias, y, ldy, o_begin,   \
                                    o_end);                                                        \
  }                                                                                                \
  EFFDL_CLONES void nm_pack_x_transposed(const T* x, int64_t ldx, int64_t M, int64_t k_begin,      \
                                         int64_t k_end, acc_t<T>* xt) {                            \
    core::nm_pack_x_transposed<T>(x, ldx, M, k_begin, k_end, xt);                                  \
  }                                                                                                \
  EFFDL_CLONES void dwsep_conv2d_rows(const DwsepShape& s, const T* x, const acc_t<T>* dw_w,       \
                                      const acc_t<T>* dw_b, const acc_t<T>* pw_wt,                 \
                                      const acc_t<T>* pw_b, Activation dw_act, Activation pw_act,  \
                                      T* y, int64_t r_begin, int64_t r_end) {                      \
    core::dwsep_conv2d_rows<T>(s, x, dw_w, dw_b, pw_wt, pw_b, dw_act, pw_act, y, r_begin, r_end);  \
  }

#define EFFDL_MV_DEFINE_ACT(T)                                                                     \
  EFFDL_CLONES int64_t quantize_rows_block(const T* x, int64_t ldx, int64_t K, int8_t* q,          \
                                           int64_t ldq, float* scale, int64_t r_begin,             \
                                           int64_t r_end) {                                        \
    return core::quantize_rows_block<T>(x, ldx, K, q, ldq, scale, r_begin, r_end);                 \
  }                                                                                                \
  EFFDL_CLONES void int8_linear_block(const int8_t* q, int64_t ldq, const float* q_scale,          \
                                      int64_t M, int64_t K, const int8_t* wq,                      \
                                      const float* w_scale, const float* bias, T* out,             \
                                      int64_t ldo, int64_t o_begin, int64_t o_end) {               \
    core::int8_linear_block<T>(q, ldq, q_scale, M, K, wq, w_scale, bias, out, ldo, o_begin,        \
                               o_end);                                                             \
  }                                                                                                \
  EFFDL_CLONES void int8_weight_linear_block(const float* x, int64_t ldx, int64_t M, int64_t K,    \
                                             const int8_t* wq, const float* w_scale,               \
                                             const float* bias, T* out, int64_t ldo,               \
                                             int64_t o_begin, int64_t o_end) {                     \
    core::int8_weight_linear_block<T>(x, ldx, M, K, wq, w_scale, bias, out, ldo, o_begin, o_end);  \
  }

EFFDL_MV_DEFINE_FLOAT(float)
EFFDL_MV_DEFINE_FLOAT(double)
EFFDL_MV_DEFINE_FLOAT(bf16)
EFFDL_MV_DEFINE_FLOAT(fp16)
EFFDL_MV_DEFINE_ACT(float)
EFFDL_MV_DEFINE_ACT(bf16)
EFFDL_MV_DEFINE_ACT(fp16)

}  // namespace effdl::core::mv
