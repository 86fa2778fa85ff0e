// The CPU kernel table in use: chosen once, at the first kernel call, from
// EFFDL_CPU_ISA or the CPU's features (core/isa.h).
#pragma once

#include "../core/isa.h"
#include "../core/kernel_table.h"

namespace effdl {

// The choice, made once per process; never throws (info() reports a bad request).
const core::IsaSelection& cpu_isa_selection();

// The chosen table. Throws a RuntimeError naming EFFDL_CPU_ISA's allowed or
// available values when the variable asks for a level that cannot run here.
const core::KernelTable& cpu_kernels();

}  // namespace effdl
