// The CPU instruction-set levels the kernel cores are compiled for, and the
// choice among them: the widest level this CPU runs, or the one the
// EFFDL_CPU_ISA environment variable forces. Torch-free.
#pragma once

#include <string>
#include <vector>

// The x86 levels are compiled with GCC's "arch=x86-64-v3/v4" function targets
// (GCC 12+); elsewhere (other compilers, other architectures) only the portable
// level exists. -DEFFDL_X86_LEVELS=0 builds the portable level alone.
#ifndef EFFDL_X86_LEVELS
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && (__GNUC__ >= 12)
#define EFFDL_X86_LEVELS 1
#else
#define EFFDL_X86_LEVELS 0
#endif
#endif

namespace effdl::core {

// Ordered from narrowest to widest; each level's code runs on every CPU that
// runs a wider one.
enum class Isa : int {
  kPortable = 0,    // plain C++, whatever the compiler's baseline target is (SSE2 on x86-64)
  kAvx2 = 1,        // x86-64-v3: AVX2 + FMA + BMI2 + F16C
  kAvx512 = 2,      // x86-64-v4: AVX-512 F/BW/CD/DQ/VL
  kAvx512Vnni = 3,  // x86-64-v4 + AVX-512 VNNI (int16/int8 dot-product instructions)
  kAvx512Bf16 = 4,  // avx512_vnni + AVX-512 BF16 (vdpbf16ps) + VBMI + VBMI2: Sapphire Rapids / Zen 4 class
};
constexpr int kIsaCount = 5;

// The name EFFDL_CPU_ISA takes and info() shows: "portable", "avx2", "avx512",
// "avx512_vnni", "avx512_bf16".
const char* isa_name(Isa isa);

// All level names, narrowest first, comma separated (for error messages).
std::string isa_names();

// Whether this build holds kernels compiled for the level: always for portable;
// the x86 levels only where the compiler supports per-function targets (GCC >= 12
// on x86-64).
bool isa_compiled(Isa isa);

// Whether this CPU (and its OS, which must save the wider registers) runs the
// level; known for the x86 levels only where they are compiled (else false).
bool isa_supported_by_cpu(Isa isa);

// Levels both compiled and supported here, narrowest first.
std::vector<Isa> isa_available();

// The outcome of choosing a level.
struct IsaSelection {
  Isa isa = Isa::kPortable;  // the level in use (meaningless when !ok())
  bool forced = false;       // chosen by EFFDL_CPU_ISA rather than by detection
  std::string requested;     // the EFFDL_CPU_ISA value as given ("" when unset)
  std::string error;         // why the request cannot be honoured ("" when it can)
  bool ok() const { return error.empty(); }
};

// Chooses a level for `requested` (the EFFDL_CPU_ISA value, case and spaces
// ignored; null or "" or "auto" for the widest available one). A level that is unknown, not compiled into this
// build, or not run by this CPU yields an error naming the allowed / available
// levels: a forced level is never silently replaced by another.
// `available(isa)` says whether a level can run (isa_compiled && isa_supported_by_cpu
// in production; tests pass their own).
IsaSelection select_isa(const char* requested, bool (*available)(Isa));

// select_isa for the value of EFFDL_CPU_ISA in the environment, on this machine.
IsaSelection select_isa_from_env();

}  // namespace effdl::core
