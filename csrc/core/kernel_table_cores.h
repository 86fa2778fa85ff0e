// What each per-level translation unit (kernel_table_<level>.cpp) compiles:
// every core header, and the declarations of the per-level tables that
// kernel_tables.cpp looks up.
//
// One unit per level rather than all of them in one: the same code, but the
// units build in parallel and each stays small enough for the sanitizer
// build of the native tests.
#pragma once

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
#include "nm_linear_bf16.h"
#include "nm_linear_simd.h"
#include "nm_packed.h"

namespace effdl::core {
namespace level_portable {
extern const KernelTable table;
}
#if EFFDL_X86_LEVELS
namespace level_avx2 {
extern const KernelTable table;
}
namespace level_avx512 {
extern const KernelTable table;
}
namespace level_avx512_vnni {
extern const KernelTable table;
}
namespace level_avx512_bf16 {
extern const KernelTable table;
}
#endif
}  // namespace effdl::core
