// Inline-PTX wrappers of the tensor-core kernels (sm_80+): cp.async staging
// with zero fill, ldmatrix, and the three mma shapes. Their operand layouts are
// described, and emulated on the CPU, through mma_layout.h.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>
#include <type_traits>

namespace effdl::gpu {

// Code below sm_80 never reaches these (the glue checks the device first); the
// trap keeps a build for an older arch compiling and failing loudly if it did.
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ < 800
#define EFFDL_SM80_OR_TRAP(...) __trap()
#else
#define EFFDL_SM80_OR_TRAP(...) __VA_ARGS__
#endif

// .sp::ordered_metadata (PTX 8.5, CUDA 12.5) is the form newer ptxas asks for;
// effdl's indices are ascending within every group, as it requires.
#if defined(__CUDACC_VER_MAJOR__) && \
    (__CUDACC_VER_MAJOR__ > 12 || (__CUDACC_VER_MAJOR__ == 12 && __CUDACC_VER_MINOR__ >= 5))
#define EFFDL_MMA_SP "mma.sp::ordered_metadata"
#else
#define EFFDL_MMA_SP "mma.sp"
#endif

__device__ __forceinline__ uint32_t smem_addr(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

// 16 bytes global -> shared; `valid` false writes 16 zero bytes and reads nothing.
__device__ __forceinline__ void cp_async16(void* dst, const void* src, bool valid) {
  EFFDL_SM80_OR_TRAP(asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(smem_addr(dst)),
                                  "l"(src), "r"(valid ? 16 : 0)
                                  : "memory"));
}
// 8 bytes, as cp_async16.
__device__ __forceinline__ void cp_async8(void* dst, const void* src, bool valid) {
  EFFDL_SM80_OR_TRAP(asm volatile("cp.async.ca.shared.global [%0], [%1], 8, %2;\n" ::"r"(smem_addr(dst)),
                                  "l"(src), "r"(valid ? 8 : 0)
                                  : "memory"));
}
__device__ __forceinline__ void cp_async_commit() {
  EFFDL_SM80_OR_TRAP(asm volatile("cp.async.commit_group;\n" ::: "memory"));
}
// Waits until at most `kPending` committed groups are still in flight.
template <int kPending>
__device__ __forceinline__ void cp_async_wait() {
  EFFDL_SM80_OR_TRAP(asm volatile("cp.async.wait_group %0;\n" ::"n"(kPending) : "memory"));
}

__device__ __forceinline__ void ldmatrix_x4(uint32_t (&r)[4], const void* src) {
  EFFDL_SM80_OR_TRAP(asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                                  : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                                  : "r"(smem_addr(src))
                                  : "memory"));
}

// d += A (2:4 sparse, 16 x 32 as 16 x 16 kept values) * B (32 x 8), fp32
// accumulation, sparsity selector 0.
template <typename T>
__device__ __forceinline__ void mma_sp_16832(float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[4],
                                             uint32_t meta) {
  static_assert(std::is_same_v<T, __half> || std::is_same_v<T, __nv_bfloat16>, "fp16 or bf16");
  if constexpr (std::is_same_v<T, __half>) {
    EFFDL_SM80_OR_TRAP(asm volatile(
        EFFDL_MMA_SP ".sync.aligned.m16n8k32.row.col.f32.f16.f16.f32 "
                     "{%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9, %10, %11}, {%0, %1, %2, %3}, %12, 0x0;\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]), "r"(b[2]), "r"(b[3]),
          "r"(meta)));
  } else {
    EFFDL_SM80_OR_TRAP(asm volatile(
        EFFDL_MMA_SP ".sync.aligned.m16n8k32.row.col.f32.bf16.bf16.f32 "
                     "{%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9, %10, %11}, {%0, %1, %2, %3}, %12, 0x0;\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]), "r"(b[2]), "r"(b[3]),
          "r"(meta)));
  }
}

// d += A (16 x 32 s8) * B (32 x 8 s8), exact s32 accumulation (wrapping, never
// saturating: the glue bounds K so that nothing wraps).
__device__ __forceinline__ void mma_s8_16832(int32_t (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2]) {
  EFFDL_SM80_OR_TRAP(asm volatile(
      "mma.sync.aligned.m16n8k32.row.col.s32.s8.s8.s32 "
      "{%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};\n"
      : "+r"(d[0]), "+r"(d[1]), "+r"(d[2]), "+r"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1])));
}

// d += A (2:4 sparse, 16 x 64 s8 as 16 x 32 kept bytes) * B (64 x 8 s8),
// exact s32 accumulation (wrapping, as mma_s8_16832), sparsity selector 0.
__device__ __forceinline__ void mma_sp_s8_16864(int32_t (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[4],
                                                uint32_t meta) {
  EFFDL_SM80_OR_TRAP(asm volatile(
      EFFDL_MMA_SP ".sync.aligned.m16n8k64.row.col.s32.s8.s8.s32 "
                   "{%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9, %10, %11}, {%0, %1, %2, %3}, %12, 0x0;\n"
      : "+r"(d[0]), "+r"(d[1]), "+r"(d[2]), "+r"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]), "r"(b[2]), "r"(b[3]), "r"(meta)));
}

}  // namespace effdl::gpu
