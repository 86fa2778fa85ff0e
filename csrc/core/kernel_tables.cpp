// The lookup of the per-level KernelTables, each built from the same core
// templates (kernel_table_level.inc) under that level's target attribute, one
// translation unit per level (kernel_table_<level>.cpp).
//
// Why per-function target attributes and not per-ISA translation units built
// with -mavx2 / -mavx512f: inline functions and templates used by several
// translation units (std::vector, std::max, the core templates themselves) are
// emitted once per unit and merged by the linker, which may keep the AVX-512
// copy for every caller, portable path included, and crash older CPUs. Here
// each entry point is `flatten`ed: everything it calls is inlined into it and
// compiled for its level, while shared out-of-line code stays baseline. (The
// per-level units are compiled with the same flags: the level is in the
// attributes, never in a -m flag.)
#include "kernel_table_cores.h"

namespace effdl::core {

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
    case Isa::kAvx512Bf16:
      return &level_avx512_bf16::table;
#endif
    default:
      return nullptr;
  }
}

}  // namespace effdl::core
