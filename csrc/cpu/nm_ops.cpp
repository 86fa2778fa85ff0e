// CPU glue for the N:M ops: checks, layout, parallel split, then core/.
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>

#include "../checks.h"
#include "../core/nm_format.h"
#include "../core/nm_linear.h"
#include "../dispatch.h"
#include "kernels.h"
#include "parallel.h"

namespace effdl {
namespace {

std::tuple<at::Tensor, at::Tensor> nm_compress_cpu(const at::Tensor& w_in, int64_t n, int64_t m) {
  check_nm_compress(w_in, n, m);
  const at::Tensor w = w_in.contiguous();
  const int64_t R = w.size(0), K = w.size(1);
  at::Tensor values = at::empty({R, core::nm_kept(K, int(n), int(m))}, w.options());
  at::Tensor meta = at::empty({R, core::nm_meta_bytes(K)}, w.options().dtype(at::kByte));
  FirstFailure bad;
  dispatch_float(w.scalar_type(), "nm_compress", [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* wp = data_as<T>(w);
    T* vp = data_as<T>(values);
    uint8_t* mp = meta.data_ptr<uint8_t>();
    at::parallel_for(0, R, grain_for(K), [&](int64_t b, int64_t e) {
      for (int64_t r = b; r < e; ++r) {
        const int64_t g = core::nm_compress_row(wp + r * K, K, int(n), int(m),
                                                vp + r * values.size(1), mp + r * meta.size(1));
        if (g >= 0) {
          bad.report(r, g);
          return;
        }
      }
    });
  });
  if (bad.failed()) {
    const int64_t r = bad.row(), g = bad.detail();
    const int64_t nnz = w[r].slice(0, g * m, (g + 1) * m).ne(0).sum().item<int64_t>();
    TORCH_CHECK(false, "effdl.nm_compress: w is not ", n, ":", m, " sparse: row ", r, ", group ", g,
                " (columns ", g * m, "..", (g + 1) * m - 1, ") has ", nnz,
                " nonzeros, at most ", n, " allowed; prune it first (effdl.formats.nm_mask)");
  }
  return {values, meta};
}

at::Tensor nm_decompress_cpu(const at::Tensor& values_in, const at::Tensor& meta_in, int64_t n,
                             int64_t m) {
  const int64_t K = check_nm_storage(values_in, meta_in, n, m, "nm_decompress");
  const at::Tensor values = values_in.contiguous(), meta = meta_in.contiguous();
  const int64_t R = values.size(0), kept = values.size(1);
  at::Tensor w = at::empty({R, K}, values.options());
  FirstFailure bad;
  dispatch_float(values.scalar_type(), "nm_decompress", [&](auto tag) {
    using T = typename decltype(tag)::type;
    at::parallel_for(0, R, grain_for(K), [&](int64_t b, int64_t e) {
      std::vector<int32_t> cols(size_t(std::max<int64_t>(kept, 1)));
      for (int64_t r = b; r < e; ++r) {
        if (!core::nm_decompress_row(data_as<T>(values) + r * kept,
                                     meta.data_ptr<uint8_t>() + r * meta.size(1), K, int(n),
                                     int(m), cols.data(), data_as<T>(w) + r * K)) {
          bad.report(r);
          return;
        }
      }
    });
  });
  TORCH_CHECK(!bad.failed(), "effdl.nm_decompress: meta row ", bad.row(), " is not a valid ", n,
              ":", m, " mask (exactly ", n, " bits per group of ", m, ", none past K=", K, ")");
  return w;
}

at::Tensor nm_linear_cpu(const at::Tensor& x, const at::Tensor& values_in,
                         const at::Tensor& meta_in, int64_t n, int64_t m,
                         const c10::optional<at::Tensor>& bias_in) {
  const int64_t K = check_nm_linear(x, values_in, meta_in, n, m, bias_in);
  const at::Tensor values = values_in.contiguous(), meta = meta_in.contiguous();
  const int64_t N = values.size(0), kept = values.size(1);
  const at::Tensor x2 = as_rows(x).contiguous();
  const int64_t M = x2.size(0);
  at::Tensor y = at::empty(linear_out_shape(x, N), x.options());
  if (M == 0 || N == 0) return y;
  const at::Tensor bias = bias_in.has_value() ? bias_in->contiguous() : at::Tensor();
  FirstFailure bad;
  dispatch_float(values.scalar_type(), "nm_linear", [&](auto tag) {
    using T = typename decltype(tag)::type;
    using A = core::acc_t<T>;
    const auto& kernels = cpu_kernels().floats<T>();
    const T* xp = data_as<T>(x2);
    at::Tensor xt;
    const A* xtp = nullptr;
    if (kernels.nm_reads_xt(M, int(n), int(m))) {
      xt = at::empty({K, core::nm_xt_stride(M)}, x.options().dtype(acc_scalar_type<T>()));
      A* dst = data_as<A>(xt);
      at::parallel_for(0, K, grain_for(M), [&](int64_t b, int64_t e) {
        kernels.nm_pack_x_transposed(xp, K, M, b, e, dst);
      });
      xtp = dst;
    }
    const T* bp = bias.defined() ? data_as<T>(bias) : nullptr;
    at::parallel_for(0, N, grain_for(M * kept), [&](int64_t b, int64_t e) {
      if (!kernels.nm_linear_block(xp, K, xtp, M, K, data_as<T>(values), meta.data_ptr<uint8_t>(),
                                   int(n), int(m), bp, data_as<T>(y), N, b, e)) {
        bad.report(b);
      }
    });
  });
  TORCH_CHECK(!bad.failed(), "effdl.nm_linear: meta is not a valid ", n, ":", m, " mask (exactly ", n,
              " bits per group of ", m, "); build it with effdl.nm_compress");
  return y;
}

}  // namespace

TORCH_LIBRARY_IMPL(effdl, CPU, m) {
  m.impl("nm_compress", &nm_compress_cpu);
  m.impl("nm_decompress", &nm_decompress_cpu);
  m.impl("nm_linear", &nm_linear_cpu);
}

}  // namespace effdl
