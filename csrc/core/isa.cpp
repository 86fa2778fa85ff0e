#include "isa.h"

#include <cctype>
#include <cstdlib>

#include "kernel_table.h"

namespace effdl::core {

const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::kAvx2:
      return "avx2";
    case Isa::kAvx512:
      return "avx512";
    case Isa::kAvx512Vnni:
      return "avx512_vnni";
    case Isa::kAvx512Bf16:
      return "avx512_bf16";
    default:
      return "portable";
  }
}

std::string isa_names() {
  std::string out;
  for (int i = 0; i < kIsaCount; ++i) {
    if (i) out += ", ";
    out += isa_name(Isa(i));
  }
  return out;
}

bool isa_compiled(Isa isa) { return kernel_table(isa) != nullptr; }

bool isa_supported_by_cpu(Isa isa) {
  if (isa == Isa::kPortable) return true;
#if EFFDL_X86_LEVELS
  // the level names test exactly the features the compiler may use for
  // arch=x86-64-v3/v4 (AVX2, FMA, BMI1/2, F16C, LZCNT, MOVBE; AVX-512 F/BW/CD/DQ/VL),
  // and that the OS saves the YMM/ZMM state (XGETBV). The AVX-512 extensions
  // come from CPUID leaf 7 (VNNI: subleaf 0 ECX bit 11; VBMI / VBMI2: ECX bits
  // 1 / 6; BF16: subleaf 1 EAX bit 5), which GCC reports only when the OS also
  // saves the ZMM and opmask state.
  __builtin_cpu_init();
  switch (isa) {
    case Isa::kAvx2:
      return __builtin_cpu_supports("x86-64-v3");
    case Isa::kAvx512:
      return __builtin_cpu_supports("x86-64-v4");
    case Isa::kAvx512Vnni:
      return __builtin_cpu_supports("x86-64-v4") && __builtin_cpu_supports("avx512vnni");
    case Isa::kAvx512Bf16:
      return __builtin_cpu_supports("x86-64-v4") && __builtin_cpu_supports("avx512vnni") &&
             __builtin_cpu_supports("avx512bf16") && __builtin_cpu_supports("avx512vbmi") &&
             __builtin_cpu_supports("avx512vbmi2");
    default:
      return false;
  }
#else
  return false;
#endif
}

namespace {
bool available_here(Isa isa) { return isa_compiled(isa) && isa_supported_by_cpu(isa); }
}  // namespace

std::vector<Isa> isa_available() {
  std::vector<Isa> out;
  for (int i = 0; i < kIsaCount; ++i)
    if (available_here(Isa(i))) out.push_back(Isa(i));
  return out;
}

IsaSelection select_isa(const char* requested, bool (*available)(Isa)) {
  IsaSelection sel;
  sel.requested = requested ? requested : "";
  // "AVX2" and " avx2 " mean avx2: shells and CI files are not always tidy
  std::string want;
  for (char c : sel.requested)
    if (!std::isspace(static_cast<unsigned char>(c)))
      want += char(std::tolower(static_cast<unsigned char>(c)));
  if (want.empty() || want == "auto") {
    for (int i = kIsaCount - 1; i >= 0; --i) {
      if (available(Isa(i))) {
        sel.isa = Isa(i);
        return sel;
      }
    }
    sel.error = "no CPU kernel level is available (the portable one should always be)";
    return sel;
  }
  sel.forced = true;
  for (int i = 0; i < kIsaCount; ++i) {
    if (want != isa_name(Isa(i))) continue;
    sel.isa = Isa(i);
    if (!available(sel.isa)) {
      std::string here;
      for (int j = 0; j < kIsaCount; ++j) {
        if (!available(Isa(j))) continue;
        if (!here.empty()) here += ", ";
        here += isa_name(Isa(j));
      }
      sel.error = "EFFDL_CPU_ISA=" + sel.requested + " is not available on this machine (" +
                  (isa_compiled(sel.isa) ? "this CPU does not support it" : "this build has no kernels for it") +
                  "); available here: " + here;
    }
    return sel;
  }
  sel.error = "EFFDL_CPU_ISA must be one of " + isa_names() + " (or unset / auto), got '" +
              sel.requested + "'";
  return sel;
}

IsaSelection select_isa_from_env() {
  return select_isa(std::getenv("EFFDL_CPU_ISA"), &available_here);
}

}  // namespace effdl::core
