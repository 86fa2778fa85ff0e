// One KernelTable per instruction-set level, each built from the same core
// templates (kernel_table_level.inc) under that level's target attribute.
//
// Why per-function target attributes and not per-ISA translation units built
// with -mavx2 / -mavx512f: inline functions and templates used by several
// translation units (std::vector, std::max, the core templates themselves) are
// emitted once per unit and merged by the linker, which may keep the AVX-512
// copy for every caller, portable path included, and crash older CPUs. Here
// each entry point is `flatten`ed: everything it calls is inlined into it and
// compiled for its level, while shared out-of-line code stays baseline.
#include "kernel_table.h"

#include "dwsep_tiled.h"
#include "int8.h"
#include "int8_packed.h"
#include "int8_packed_x86.h"
#include "int8_weight_x86.h"
#include "int8_vnni.h"
#include "nm_int8_linear.h"
#include "nm_int8_vnni.h"
#include "nm_linear.h"
#include "nm_linear_simd.h"

namespace effdl::core {

#define EFFDL_LEVEL Isa::kPortable
#define EFFDL_LEVEL_NS level_portable
#define EFFDL_LEVEL_TARGET
#include "kernel_table_level.inc"

#if EFFDL_X86_LEVELS
#define EFFDL_LEVEL Isa::kAvx2
#define EFFDL_LEVEL_NS level_avx2
#define EFFDL_LEVEL_TARGET __attribute__((target("arch=x86-64-v3"), flatten))
#include "kernel_table_level.inc"

#define EFFDL_LEVEL Isa::kAvx512
#define EFFDL_LEVEL_NS level_avx512
#define EFFDL_LEVEL_TARGET __attribute__((target("arch=x86-64-v4"), flatten))
#include "kernel_table_level.inc"

#define EFFDL_LEVEL Isa::kAvx512Vnni
#define EFFDL_LEVEL_NS level_avx512_vnni
#define EFFDL_LEVEL_TARGET __attribute__((target("arch=x86-64-v4,avx512vnni"), flatten))
#include "kernel_table_level.inc"
#endif

const KernelTable* kernel_table(Isa isa) {
  switch (isa) {
    case Isa::kPortable:
      return &level_portable::table;
#if EFFDL_X86_LEVELS
    case Isa::kAvx2:
      return &level_avx2::table;
    case Isa::kAvx512:
      return &level_avx512::table;
    case Isa::kAvx512Vnni:
      return &level_avx512_vnni::table;
#endif
    default:
      return nullptr;
  }
}

}  // namespace effdl::core
