#include "peak_rate.h"

#include <ATen/Parallel.h>
#include <c10/util/Exception.h>

#include <atomic>
#include <chrono>

#include "../core/peak_rate.h"
#include "kernels.h"

namespace effdl {

std::optional<double> cpu_peak_rate(const std::string& kind, double seconds) {
  core::PeakKind k;
  if (kind == "fp32_fma") {
    k = core::PeakKind::kFp32Fma;
  } else if (kind == "int8_dot") {
    k = core::PeakKind::kInt8Dot;
  } else if (kind == "bf16_dot") {
    k = core::PeakKind::kBf16Dot;
  } else {
    TORCH_CHECK(false, "effdl.cpu_peak_rate: kind must be 'fp32_fma', 'int8_dot' or 'bf16_dot', got '", kind, "'");
  }
  TORCH_CHECK(seconds > 0 && seconds <= 10, "effdl.cpu_peak_rate: seconds must be in (0, 10], got ", seconds);
  bool has_bf16 = false;
#if defined(__x86_64__)
  __builtin_cpu_init();
  has_bf16 = __builtin_cpu_supports("avx512bf16");
#endif
  const core::PeakLoop loop = core::peak_loop(k, cpu_kernels().isa, has_bf16);
  if (loop.run == nullptr) return std::nullopt;

  using clock = std::chrono::steady_clock;
  constexpr int64_t kChunk = 1 << 14;  // iterations between clock reads (well under a millisecond)
  const int threads = at::get_num_threads();
  std::atomic<double> total{0.0};
  std::atomic<int64_t> sink{0};
  // one chunk of the range per thread: every thread runs its own loop concurrently
  at::parallel_for(0, threads, 1, [&](int64_t begin, int64_t end) {
    for (int64_t t = begin; t < end; ++t) {
      int64_t keep = loop.run(kChunk);  // warm-up: clocks up the vector units
      int64_t iterations = 0;
      const auto start = clock::now();
      double elapsed = 0.0;
      while (elapsed < seconds) {
        keep += loop.run(kChunk);
        iterations += kChunk;
        elapsed = std::chrono::duration<double>(clock::now() - start).count();
      }
      double expected = total.load();
      const double rate = double(iterations) * loop.ops_per_iteration / elapsed;
      while (!total.compare_exchange_weak(expected, expected + rate)) {
      }
      sink += keep;
    }
  });
  (void)sink.load();
  return total.load();
}

}  // namespace effdl
