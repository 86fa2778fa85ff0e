// The compute ceilings of this CPU, measured (core/peak_rate.h) on every thread
// torch uses; for the benchmark harness, through effdl._C.cpu_peak_rate.
#pragma once

#include <optional>
#include <string>

namespace effdl {

// Operations per second (a multiply-add counts two) of `kind` ("fp32_fma",
// "int8_dot" or "bf16_dot") summed over torch.get_num_threads() threads, each
// running the register-only loop for about `seconds`, at the CPU kernel level in
// use (EFFDL_CPU_ISA applies). nullopt when that level has no instruction for it.
std::optional<double> cpu_peak_rate(const std::string& kind, double seconds);

}  // namespace effdl
