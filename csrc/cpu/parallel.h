// What the CPU glue files share around at::parallel_for: the task grain, and
// the first failure reported by any parallel chunk.
#pragma once

#include <algorithm>
#include <cstdint>
#include <limits>
#include <mutex>

namespace effdl {

// Items per task so that a task does about 2^15 units of work.
inline int64_t grain_for(int64_t work_per_item) {
  constexpr int64_t kWorkPerTask = 1 << 15;
  return std::max<int64_t>(1, kWorkPerTask / std::max<int64_t>(1, work_per_item));
}

// Remembers the smallest failing index reported by any parallel chunk (and a
// detail about it), so errors name the same row however the work was split.
class FirstFailure {
 public:
  void report(int64_t row, int64_t detail = -1) {
    std::lock_guard<std::mutex> lock(mu_);
    if (row < row_) {
      row_ = row;
      detail_ = detail;
    }
  }
  bool failed() const { return row_ != std::numeric_limits<int64_t>::max(); }
  int64_t row() const { return row_; }
  int64_t detail() const { return detail_; }

 private:
  std::mutex mu_;
  int64_t row_ = std::numeric_limits<int64_t>::max();
  int64_t detail_ = -1;
};

}  // namespace effdl
