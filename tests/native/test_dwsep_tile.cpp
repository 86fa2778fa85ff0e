// csrc/cuda/dwsep_tile.h: the phases of the tiled CUDA dwsep_conv2d kernel,
// run on the CPU block by block and thread by thread in the kernel's order
// (phase by phase, a barrier being the end of a phase), against a direct fp64
// loop over the NHWC definition (reference_nhwc). Shapes with ragged pixel, channel and output
// channel tiles, strides, padding, dilation, non-square kernels and every
// activation; fp64, so the only difference is the summation order.
// Shared tiles start poisoned (NaN), so a read of a cell no phase wrote shows.
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <vector>

#include "check.h"
#include "core/dwsep_conv.h"
#include "cuda/dwsep_tile.h"

using namespace effdl;
using namespace effdl::dwtile;

namespace {

inline size_t sz(int64_t v) { return static_cast<size_t>(v); }

struct Case {
  int64_t B, C, H, W, Cout, kh, kw, stride, pad, dil;
  core::Activation dw_act, pw_act;
  bool biases;
};

// y[b, oh, ow, co] = act_pw(sum_c act_dw(sum_{i,j} x[b, ih, iw, c] * dw_w[i, j, c] + dw_b[c]) * pw_wt[c, co]
//                           + pw_b[co]), the definition written out; biases may be null.
std::vector<double> reference_nhwc(const core::DwsepShape& s, const std::vector<double>& x,
                                   const std::vector<double>& dw_w, const double* dw_b,
                                   const std::vector<double>& pw_wt, const double* pw_b,
                                   core::Activation dw_act, core::Activation pw_act) {
  std::vector<double> y(sz(s.B * s.Ho * s.Wo * s.Cout)), d(sz(s.C));
  for (int64_t b = 0; b < s.B; ++b)
    for (int64_t oh = 0; oh < s.Ho; ++oh)
      for (int64_t ow = 0; ow < s.Wo; ++ow) {
        for (int64_t c = 0; c < s.C; ++c) {
          double v = dw_b ? dw_b[c] : 0.0;
          for (int64_t i = 0; i < s.kh; ++i)
            for (int64_t j = 0; j < s.kw; ++j) {
              const int64_t ih = oh * s.stride_h - s.pad_h + i * s.dil_h;
              const int64_t iw = ow * s.stride_w - s.pad_w + j * s.dil_w;
              if (ih >= 0 && ih < s.H && iw >= 0 && iw < s.W)
                v += x[sz(((b * s.H + ih) * s.W + iw) * s.C + c)] * dw_w[sz((i * s.kw + j) * s.C + c)];
            }
          d[sz(c)] = core::activate(v, dw_act);
        }
        for (int64_t co = 0; co < s.Cout; ++co) {
          double v = pw_b ? pw_b[co] : 0.0;
          for (int64_t c = 0; c < s.C; ++c) v += d[sz(c)] * pw_wt[sz(c * s.Cout + co)];
          y[sz(((b * s.Ho + oh) * s.Wo + ow) * s.Cout + co)] = core::activate(v, pw_act);
        }
      }
  return y;
}

void run_case(std::mt19937_64& rng, const Case& c) {
  core::DwsepShape s{};
  s.B = c.B, s.C = c.C, s.H = c.H, s.W = c.W, s.Cout = c.Cout, s.kh = c.kh, s.kw = c.kw;
  s.stride_h = s.stride_w = c.stride, s.pad_h = s.pad_w = c.pad, s.dil_h = s.dil_w = c.dil;
  s.Ho = (c.H + 2 * c.pad - c.dil * (c.kh - 1) - 1) / c.stride + 1;
  s.Wo = (c.W + 2 * c.pad - c.dil * (c.kw - 1) - 1) / c.stride + 1;
  std::normal_distribution<double> nd;
  auto fill = [&](int64_t n) {
    std::vector<double> v(sz(n));
    for (auto& e : v) e = nd(rng);
    return v;
  };
  const std::vector<double> x = fill(s.B * s.H * s.W * s.C), dw_w = fill(s.kh * s.kw * s.C),
                            dw_b = fill(s.C), pw_wt = fill(s.C * s.Cout), pw_b = fill(s.Cout);
  const double* dwb = c.biases ? dw_b.data() : nullptr;
  const double* pwb = c.biases ? pw_b.data() : nullptr;
  const int64_t pixels = s.B * s.Ho * s.Wo;

  const std::vector<double> want = reference_nhwc(s, x, dw_w, dwb, pw_wt, pwb, c.dw_act, c.pw_act);

  const double nan = std::numeric_limits<double>::quiet_NaN();
  std::vector<double> got(sz(pixels * s.Cout), nan);
  std::vector<int> writes(sz(pixels * s.Cout), 0);
  auto load_x = [&](int64_t i) { return x[sz(i)]; };
  auto store_y = [&](int64_t i, double v) {
    got[sz(i)] = v;
    ++writes[sz(i)];
  };
  for (int64_t co0 = 0; co0 < s.Cout; co0 += kCo) {
    for (int64_t p0 = 0; p0 < pixels; p0 += kP) {
      struct Acc {
        double v[kTP][kTC];
      };
      std::vector<Acc> acc(kThreads);  // each thread's registers
      for (int t = 0; t < kThreads; ++t) init_acc(t, s, pwb, co0, acc[sz(t)].v);
      for (int64_t c0 = 0; c0 < s.C; c0 += kCc) {
        std::vector<double> dw_s(sz(kP * kDwStride), nan), pw_s(sz(kCc * kCo), nan);
        for (int t = 0; t < kThreads; ++t)
          depthwise_phase(t, s, load_x, dw_w.data(), dwb, c.dw_act, p0, c0, dw_s.data());
        for (int t = 0; t < kThreads; ++t) pointwise_stage_phase(t, s, pw_wt.data(), c0, co0, pw_s.data());
        for (int pp = 0; pp < kP; ++pp)  // every cell the accumulation reads was written
          for (int cc = 0; cc < kCc; ++cc) CHECK(!std::isnan(dw_s[sz(pp * kDwStride + cc)]));
        for (int t = 0; t < kThreads; ++t) accumulate_phase(t, dw_s.data(), pw_s.data(), acc[sz(t)].v);
      }
      for (int t = 0; t < kThreads; ++t) store_phase(t, s, acc[sz(t)].v, c.pw_act, p0, co0, store_y);
    }
  }
  long bad = 0, miswritten = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    miswritten += writes[i] != 1 ? 1 : 0;
    const double tol = 1e-12 * (1.0 + std::fabs(want[i])) * double(s.C * s.kh * s.kw);
    bad += !(std::fabs(got[i] - want[i]) <= tol) ? 1 : 0;
  }
  CHECK_MSG(miswritten == 0, "B=%lld C=%lld H=%lld Cout=%lld: %ld outputs not written exactly once",
            (long long)c.B, (long long)c.C, (long long)c.H, (long long)c.Cout, miswritten);
  CHECK_MSG(bad == 0, "B=%lld C=%lld H=%lld Cout=%lld k=%lldx%lld s=%lld: %ld wrong outputs", (long long)c.B,
            (long long)c.C, (long long)c.H, (long long)c.Cout, (long long)c.kh, (long long)c.kw,
            (long long)c.stride, bad);
}

}  // namespace

int main() {
  std::mt19937_64 rng(3);
  using core::Activation;
  const Case cases[] = {
      {1, 8, 5, 5, 4, 3, 3, 1, 1, 1, Activation::kRelu6, Activation::kNone, true},
      {2, 33, 7, 6, 65, 3, 3, 2, 1, 1, Activation::kRelu, Activation::kRelu6, true},
      {1, 64, 9, 9, 130, 3, 3, 1, 1, 1, Activation::kNone, Activation::kRelu, false},
      {3, 5, 4, 7, 3, 1, 3, 1, 0, 1, Activation::kRelu6, Activation::kNone, true},
      {1, 40, 11, 11, 24, 5, 5, 2, 4, 2, Activation::kRelu6, Activation::kRelu6, true},
      {2, 1, 3, 3, 1, 3, 3, 3, 1, 1, Activation::kNone, Activation::kNone, false},
  };
  for (const Case& c : cases) run_case(rng, c);
  return effdl_test::finish("test_dwsep_tile");
}
