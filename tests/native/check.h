// Minimal assertions for the native (torch-free) tests: no framework, no
// dependencies. CHECK records a failure (file:line and the expression) and
// keeps going so one run shows every broken case; main returns
// effdl_test::finish(), which is non-zero when anything failed.
#pragma once

#include <cstdarg>
#include <cstdio>
#include <cstdlib>

namespace effdl_test {

struct State {
  long checks = 0;
  long failures = 0;
  long xfails = 0;
};

inline State& state() {
  static State s;
  return s;
}

// Past this many failures only the count goes on: an exhaustive sweep with a
// broken conversion would otherwise print millions of lines.
constexpr long kMaxPrinted = 30;

inline bool check_impl(bool ok, const char* expr, const char* file, int line) {
  ++state().checks;
  if (!ok && ++state().failures <= kMaxPrinted) {
    std::fprintf(stderr, "%s:%d: CHECK failed: %s\n", file, line, expr);
  }
  return ok;
}

#if defined(__GNUC__)
__attribute__((format(printf, 5, 6)))
#endif
inline bool check_msg_impl(bool ok, const char* expr, const char* file, int line, const char* fmt, ...) {
  check_impl(ok, expr, file, line);
  if (!ok && state().failures <= kMaxPrinted) {
    std::va_list args;
    va_start(args, fmt);
    std::fprintf(stderr, "    ");
    std::vfprintf(stderr, fmt, args);
    std::fprintf(stderr, "\n");
    va_end(args);
  }
  return ok;
}

// A known bug in a core, checked like pytest's xfail(strict=True): while the
// check fails it is reported but does not fail the run; once it passes the run
// fails so that the marker gets removed. EFFDL_TEST_STRICT_XFAIL=1 in the
// environment turns known bugs into ordinary failures.
inline bool known_bug_impl(bool ok, const char* expr, const char* what, const char* file, int line) {
  ++state().checks;
  const char* strict = std::getenv("EFFDL_TEST_STRICT_XFAIL");
  if (strict && strict[0] == '1') return check_impl(ok, expr, file, line);
  if (ok) {
    ++state().failures;
    std::fprintf(stderr, "%s:%d: KNOWN BUG now passes (remove the KNOWN_BUG marker): %s [%s]\n", file, line,
                 expr, what);
  } else {
    ++state().xfails;
    std::fprintf(stderr, "%s:%d: known bug (expected failure): %s [%s]\n", file, line, expr, what);
  }
  return ok;
}

// Prints the summary; use as `return effdl_test::finish("test_name");`.
inline int finish(const char* name) {
  const State& s = state();
  std::printf("%s: %ld checks, %ld failed, %ld known bugs (xfail)\n", name, s.checks, s.failures, s.xfails);
  return s.failures == 0 ? 0 : 1;
}

}  // namespace effdl_test

// CHECK(cond) evaluates to cond, so a sweep can stop early: `if (!CHECK(x)) return;`.
#define CHECK(cond) ::effdl_test::check_impl(static_cast<bool>(cond), #cond, __FILE__, __LINE__)

// CHECK with a printf-style message printed on failure (the message's
// arguments are evaluated either way: keep them cheap).
#define CHECK_MSG(cond, ...) \
  ::effdl_test::check_msg_impl(static_cast<bool>(cond), #cond, __FILE__, __LINE__, __VA_ARGS__)

#define KNOWN_BUG(cond, what) \
  ::effdl_test::known_bug_impl(static_cast<bool>(cond), #cond, what, __FILE__, __LINE__)
