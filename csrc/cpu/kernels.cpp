#include "kernels.h"

#include <c10/util/Exception.h>

namespace effdl {

const core::IsaSelection& cpu_isa_selection() {
  static const core::IsaSelection selection = core::select_isa_from_env();  // thread-safe, once
  return selection;
}

const core::KernelTable& cpu_kernels() {
  const core::IsaSelection& sel = cpu_isa_selection();
  TORCH_CHECK(sel.ok(), "effdl: cannot choose the CPU kernels: ", sel.error);
  return *core::kernel_table(sel.isa);
}

}  // namespace effdl
