// The small non-operator surface of effdl._C: build facts, CPU features and
// what the CPU kernel level in use offers.
#include <torch/extension.h>

#include <string>

#include "core/isa.h"
#include "cpu/kernels.h"
#include "cpu/peak_rate.h"

#ifndef EFFDL_CUDA_ARCHS
#define EFFDL_CUDA_ARCHS ""
#endif
#ifndef EFFDL_TORCH_VERSION
#define EFFDL_TORCH_VERSION "unknown"
#endif

namespace {

pybind11::dict build_info() {
  pybind11::dict d;
#ifdef EFFDL_WITH_CUDA
  d["cuda"] = true;
#else
  d["cuda"] = false;
#endif
  d["cuda_archs"] = std::string(EFFDL_CUDA_ARCHS);
#if defined(__clang__)
  d["compiler"] = std::string("clang ") + __clang_version__;
#elif defined(__GNUC__)
  d["compiler"] = std::string("gcc ") + __VERSION__;
#else
  d["compiler"] = std::string("unknown");
#endif
  d["torch_built_with"] = std::string(EFFDL_TORCH_VERSION);
  pybind11::list levels;
  for (int i = 0; i < effdl::core::kIsaCount; ++i) {
    const auto isa = effdl::core::Isa(i);
    if (effdl::core::isa_compiled(isa)) levels.append(std::string(effdl::core::isa_name(isa)));
  }
  d["cpu_isa_compiled"] = levels;  // kernel levels this build holds
  return d;
}

// The CPU kernel level in use (EFFDL_CPU_ISA or detection); never raises: a bad
// request is reported under "error" and raised by the first kernel call.
pybind11::dict cpu_isa() {
  const effdl::core::IsaSelection& sel = effdl::cpu_isa_selection();
  pybind11::dict d;
  d["isa"] = sel.ok() ? pybind11::object(pybind11::str(effdl::core::isa_name(sel.isa)))
                      : pybind11::object(pybind11::none());
  d["forced"] = sel.forced;
  d["requested"] = sel.requested;
  d["error"] = sel.ok() ? pybind11::object(pybind11::none()) : pybind11::object(pybind11::str(sel.error));
  pybind11::list available;
  for (effdl::core::Isa isa : effdl::core::isa_available())
    available.append(std::string(effdl::core::isa_name(isa)));
  d["available"] = available;
  return d;
}

pybind11::dict cpu_features() {
  pybind11::dict d;
#if defined(__x86_64__) || defined(__i386__)
  __builtin_cpu_init();
  d["arch"] = std::string("x86_64");
  d["avx2"] = bool(__builtin_cpu_supports("avx2"));
  d["fma"] = bool(__builtin_cpu_supports("fma"));
  d["avx512f"] = bool(__builtin_cpu_supports("avx512f"));
  d["avx512bw"] = bool(__builtin_cpu_supports("avx512bw"));
  d["avx512vnni"] = bool(__builtin_cpu_supports("avx512vnni"));
  d["avx512bf16"] = bool(__builtin_cpu_supports("avx512bf16"));
  d["avx512vbmi"] = bool(__builtin_cpu_supports("avx512vbmi"));
  d["avx512vbmi2"] = bool(__builtin_cpu_supports("avx512vbmi2"));
#elif defined(__aarch64__)
  d["arch"] = std::string("aarch64");
#else
  d["arch"] = std::string("other");
#endif
  return d;
}

// Rows of x from which nm_linear_packed beats nm_linear on 2:4 weights of this
// dtype at the CPU kernel level in use; -1 where it never does (the level has
// no vector kernel for the packed layout).
int64_t nm_packed_min_rows(const std::string& dtype) {
  const effdl::core::KernelTable& t = effdl::cpu_kernels();
  if (dtype == "float32") return t.floats<float>().nm_packed_min_rows;
  if (dtype == "float64") return t.floats<double>().nm_packed_min_rows;
  if (dtype == "bfloat16") return t.floats<effdl::core::bf16>().nm_packed_min_rows;
  if (dtype == "float16") return t.floats<effdl::core::fp16>().nm_packed_min_rows;
  throw pybind11::value_error("nm_packed_min_rows: dtype must be float32, float64, bfloat16 or float16, got '" +
                              dtype + "'");
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "effdl native kernels; operators live in torch.ops.effdl";
  m.def("build_info", &build_info, "How this extension was built.");
  m.def("cpu_features", &cpu_features, "Instruction-set extensions of this CPU.");
  m.def("cpu_isa", &cpu_isa, "The CPU kernel level in use and how it was chosen.");
  m.def("cpu_peak_rate", &effdl::cpu_peak_rate, pybind11::arg("kind"), pybind11::arg("seconds") = 0.2,
        "Measured peak operations/s of 'fp32_fma', 'int8_dot' or 'bf16_dot' over torch's threads "
        "at the CPU kernel level in use; None where that level lacks the instruction.");
  m.def("nm_packed_min_rows", &nm_packed_min_rows, pybind11::arg("dtype"),
        "Rows of x from which nm_linear_packed beats nm_linear on 2:4 weights of this dtype at the CPU "
        "kernel level in use; -1 where it never does.");
}
