// The portable level's KernelTable (kernel_table_level.inc under its target attribute).
#include "kernel_table_cores.h"

namespace effdl::core {

#define EFFDL_LEVEL Isa::kPortable
#define EFFDL_LEVEL_NS level_portable
#define EFFDL_LEVEL_TARGET 
#include "kernel_table_level.inc"

}  // namespace effdl::core
