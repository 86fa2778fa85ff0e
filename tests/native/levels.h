// Which kernel levels a native test can run here, for the tests of a level's
// kernel table: a build without the x86 levels or a CPU without a level skips
// it, saying why, rather than failing or executing what the CPU lacks.
#pragma once

#include <cstdio>

#include "check.h"
#include "core/isa.h"
#include "core/kernel_table.h"

namespace effdl_test {

// Why the level cannot run here, or nullptr where it can.
inline const char* level_skip_reason(effdl::core::Isa isa) {
  using namespace effdl::core;
  if (kernel_table(isa) == nullptr) return "this build has no kernels for it";
  if (!isa_supported_by_cpu(isa)) return "this CPU does not run it";
  return nullptr;
}

// Calls f(table) for every level this build holds and this CPU runs, and says
// which it skips.
template <class F>
void for_each_level(F&& f) {
  using namespace effdl::core;
  for (int level = 0; level < kIsaCount; ++level) {
    const Isa isa = Isa(level);
    if (const char* why = level_skip_reason(isa)) {
      std::printf("SKIP %s: %s\n", isa_name(isa), why);
      continue;
    }
    f(*kernel_table(isa));
  }
}

// The main() of a test of one level's kernels: f(table) where the level runs
// here, else the reason it is skipped; then the summary. Use as
// `return effdl_test::level_main(Isa::kAvx512Vnni, "test_name", [](const KernelTable& t) { ... });`.
template <class F>
int level_main(effdl::core::Isa isa, const char* name, F&& f) {
  if (const char* why = level_skip_reason(isa)) {
    std::printf("SKIP %s: %s\n", effdl::core::isa_name(isa), why);
  } else {
    f(*effdl::core::kernel_table(isa));
  }
  return finish(name);
}

}  // namespace effdl_test
