// The avx512_bf16 level's KernelTable (kernel_table_level.inc under its target attribute).
#include "kernel_table_cores.h"

#if EFFDL_X86_LEVELS
namespace effdl::core {

#define EFFDL_LEVEL Isa::kAvx512Bf16
#define EFFDL_LEVEL_NS level_avx512_bf16
#define EFFDL_LEVEL_TARGET \
  __attribute__((target("arch=x86-64-v4,avx512vnni,avx512bf16,avx512vbmi,avx512vbmi2"), flatten))
#include "kernel_table_level.inc"

}  // namespace effdl::core
#endif
