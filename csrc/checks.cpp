#include "checks.h"

#include "core/int8.h"
#include "core/int8_packed.h"
#include "core/nm_format.h"
#include "core/nm_packed.h"

namespace effdl {
namespace {

bool is_nm_float(at::ScalarType t) {
  return t == at::kFloat || t == at::kDouble || t == at::kBFloat16 || t == at::kHalf;
}
bool is_act_float(at::ScalarType t) {
  return t == at::kFloat || t == at::kBFloat16 || t == at::kHalf;
}

void check_same_device(const at::Tensor& ref, const char* ref_name, const at::Tensor& t,
                       const char* name, const char* op) {
  TORCH_CHECK(t.device() == ref.device(), "effdl.", op, ": ", name, " must be on ", ref_name,
              "'s device ", ref.device(), ", got ", t.device());
}

void check_vector(const c10::optional<at::Tensor>& t, const char* name, int64_t size,
                  const at::Tensor& ref, const char* op) {
  if (!t.has_value()) return;
  TORCH_CHECK(t->dim() == 1 && t->size(0) == size, "effdl.", op, ": ", name,
              " must have shape [", size, "], got ", t->sizes());
  check_same_device(ref, "the input", *t, name, op);
}

}  // namespace

void check_nm_pattern(int64_t n, int64_t m, const char* op) {
  TORCH_CHECK(m >= 2 && m <= 16 && n >= 1 && n < m, "effdl.", op,
              ": the N:M pattern needs 1 <= n < m <= 16, got n=", n, ", m=", m);
}

void check_nm_compress(const at::Tensor& w, int64_t n, int64_t m) {
  check_nm_pattern(n, m, "nm_compress");
  TORCH_CHECK(w.dim() == 2, "effdl.nm_compress: w must be 2-D [rows, K], got shape ", w.sizes());
  TORCH_CHECK(is_nm_float(w.scalar_type()),
              "effdl.nm_compress: w must be float32, float64, bfloat16 or float16, got ",
              w.scalar_type());
  TORCH_CHECK(w.size(1) % m == 0, "effdl.nm_compress: w's last dim K=", w.size(1),
              " must be a multiple of m=", m, " (pad K or choose another m)");
}

namespace {

// meta [rows, ceil(K/8)] uint8 beside values [rows, K*n/m] (dims and dtype of
// values already checked by the caller); returns K.
int64_t check_nm_meta(const at::Tensor& values, const char* values_name, const at::Tensor& meta,
                      int64_t n, int64_t m, const char* op) {
  TORCH_CHECK(meta.dim() == 2 && meta.scalar_type() == at::kByte, "effdl.", op,
              ": meta must be a 2-D uint8 tensor, got ", meta.scalar_type(), " of shape ",
              meta.sizes());
  check_same_device(values, values_name, meta, "meta", op);
  TORCH_CHECK(values.size(1) % n == 0, "effdl.", op, ": ", values_name, "' last dim ",
              values.size(1), " must be a multiple of n=", n);
  const int64_t K = values.size(1) / n * m;
  TORCH_CHECK(meta.size(0) == values.size(0) && meta.size(1) == core::nm_meta_bytes(K), "effdl.",
              op, ": meta must have shape [", values.size(0), ", ", core::nm_meta_bytes(K), "] for ",
              values_name, " of shape ", values.sizes(), " (K=", K, "), got ", meta.sizes());
  return K;
}

}  // namespace

int64_t check_nm_storage(const at::Tensor& values, const at::Tensor& meta, int64_t n, int64_t m,
                         const char* op) {
  check_nm_pattern(n, m, op);
  TORCH_CHECK(values.dim() == 2, "effdl.", op, ": values must be 2-D [rows, K*n/m], got shape ",
              values.sizes());
  TORCH_CHECK(is_nm_float(values.scalar_type()), "effdl.", op,
              ": values must be float32, float64, bfloat16 or float16, got ",
              values.scalar_type());
  return check_nm_meta(values, "values", meta, n, m, op);
}

int64_t check_nm_linear(const at::Tensor& x, const at::Tensor& values, const at::Tensor& meta,
                        int64_t n, int64_t m, const c10::optional<at::Tensor>& bias) {
  const int64_t K = check_nm_storage(values, meta, n, m, "nm_linear");
  TORCH_CHECK(x.dim() >= 1 && x.size(-1) == K, "effdl.nm_linear: x must have shape [*, ", K,
              "] to match the weight (K=", K, "), got ", x.sizes());
  TORCH_CHECK(x.scalar_type() == values.scalar_type(), "effdl.nm_linear: x dtype ",
              x.scalar_type(), " must match values dtype ", values.scalar_type());
  check_same_device(values, "values", x, "x", "nm_linear");
  check_vector(bias, "bias", values.size(0), values, "nm_linear");
  if (bias.has_value()) {
    TORCH_CHECK(bias->scalar_type() == values.scalar_type(), "effdl.nm_linear: bias dtype ",
                bias->scalar_type(), " must match values dtype ", values.scalar_type());
  }
  return K;
}

int64_t check_nm_pack_weight(const at::Tensor& values, const at::Tensor& meta, int64_t n, int64_t m) {
  const int64_t K = check_nm_storage(values, meta, n, m, "nm_pack_weight");
  TORCH_CHECK(n == 2 && m == 4, "effdl.nm_pack_weight: the packed layout is for 2:4 weights, got ", n, ":", m,
              " (use effdl.ops.nm_linear on the canonical values and meta)");
  return K;
}

std::vector<int64_t> nm_packed_shape(int64_t N, int64_t K, int64_t elem_size) {
  return {core::nm_packed_panels(N), core::nm_packed_cols(K, elem_size)};
}

int64_t check_nm_linear_packed(const at::Tensor& x, const at::Tensor& packed, int64_t N,
                               const c10::optional<at::Tensor>& bias) {
  const char* op = "nm_linear_packed";
  TORCH_CHECK(x.dim() >= 1 && is_nm_float(x.scalar_type()),
              "effdl.nm_linear_packed: x must be a float32, float64, bfloat16 or float16 tensor [*, K], got ",
              x.scalar_type(), " of shape ", x.sizes());
  const int64_t K = x.size(-1);
  TORCH_CHECK(K % 4 == 0, "effdl.nm_linear_packed: x's last dim K=", K, " must be a multiple of 4 (2:4 weights)");
  TORCH_CHECK(N >= 0, "effdl.nm_linear_packed: N must be >= 0, got ", N);
  const std::vector<int64_t> want = nm_packed_shape(N, K, x.element_size());
  TORCH_CHECK(packed.scalar_type() == x.scalar_type() && packed.sizes() == at::IntArrayRef(want),
              "effdl.nm_linear_packed: packed must be the ", x.scalar_type(), " tensor of shape ",
              at::IntArrayRef(want), " that nm_pack_weight makes of a [", N, ", ", K,
              "] 2:4 weight (K from x), got ", packed.scalar_type(), " of shape ", packed.sizes());
  check_same_device(x, "x", packed, "packed", op);
  check_vector(bias, "bias", N, x, op);
  if (bias.has_value()) {
    TORCH_CHECK(bias->scalar_type() == x.scalar_type(), "effdl.nm_linear_packed: bias dtype ",
                bias->scalar_type(), " must match x dtype ", x.scalar_type());
  }
  return K;
}

void check_quantize_rows(const at::Tensor& x) {
  TORCH_CHECK(x.dim() >= 1, "effdl.quantize_rows: x must have at least 1 dim [*, K], got a scalar");
  TORCH_CHECK(is_act_float(x.scalar_type()),
              "effdl.quantize_rows: x must be float32, bfloat16 or float16, got ", x.scalar_type());
}

namespace {

// What int8_linear and int8_linear_packed share past their weight: K within the
// int32 bound, q_scale [*] and w_scale [N] float32, devices, bias, out_dtype.
at::ScalarType check_int8_scales(const at::Tensor& q, const at::Tensor& q_scale, const at::Tensor& w_scale,
                                 int64_t N, const c10::optional<at::Tensor>& bias,
                                 c10::optional<at::ScalarType> out_dtype, const char* op) {
  const int64_t K = q.size(-1);
  TORCH_CHECK(K <= core::kInt8MaxK, "effdl.", op, ": K=", K, " exceeds ", core::kInt8MaxK,
              ", beyond which the int32 accumulator could overflow");
  TORCH_CHECK(q_scale.scalar_type() == at::kFloat && q_scale.sizes() == q.sizes().slice(0, q.dim() - 1),
              "effdl.", op, ": q_scale must be float32 with shape ", q.sizes().slice(0, q.dim() - 1),
              " (q's leading dims), got ", q_scale.scalar_type(), " of shape ", q_scale.sizes());
  TORCH_CHECK(w_scale.scalar_type() == at::kFloat && w_scale.dim() == 1 && w_scale.size(0) == N, "effdl.", op,
              ": w_scale must be float32 with shape [", N, "], got ", w_scale.scalar_type(), " of shape ",
              w_scale.sizes());
  check_same_device(q, "q", q_scale, "q_scale", op);
  check_same_device(q, "q", w_scale, "w_scale", op);
  check_vector(bias, "bias", N, q, op);
  if (bias.has_value()) {
    TORCH_CHECK(is_act_float(bias->scalar_type()), "effdl.", op,
                ": bias must be float32, bfloat16 or float16, got ", bias->scalar_type());
  }
  const at::ScalarType out = out_dtype.value_or(at::kFloat);
  TORCH_CHECK(is_act_float(out), "effdl.", op, ": out_dtype must be float32, bfloat16 or float16, got ", out);
  return out;
}

}  // namespace

at::ScalarType check_int8_linear(const at::Tensor& q, const at::Tensor& q_scale,
                                 const at::Tensor& wq, const at::Tensor& w_scale,
                                 const c10::optional<at::Tensor>& bias,
                                 c10::optional<at::ScalarType> out_dtype) {
  TORCH_CHECK(q.dim() >= 1 && q.scalar_type() == at::kChar,
              "effdl.int8_linear: q must be an int8 tensor [*, K], got ", q.scalar_type(),
              " of shape ", q.sizes());
  TORCH_CHECK(wq.dim() == 2 && wq.scalar_type() == at::kChar,
              "effdl.int8_linear: wq must be a 2-D int8 tensor [N, K], got ", wq.scalar_type(),
              " of shape ", wq.sizes());
  const int64_t K = q.size(-1), N = wq.size(0);
  TORCH_CHECK(wq.size(1) == K, "effdl.int8_linear: wq must have K=", K,
              " columns to match q, got shape ", wq.sizes());
  check_same_device(q, "q", wq, "wq", "int8_linear");
  return check_int8_scales(q, q_scale, w_scale, N, bias, out_dtype, "int8_linear");
}

void check_int8_pack_weight(const at::Tensor& wq) {
  TORCH_CHECK(wq.dim() == 2 && wq.scalar_type() == at::kChar,
              "effdl.int8_pack_weight: wq must be a 2-D int8 tensor [N, K], got ", wq.scalar_type(),
              " of shape ", wq.sizes());
  TORCH_CHECK(wq.size(1) <= core::kInt8MaxK, "effdl.int8_pack_weight: K=", wq.size(1), " exceeds ",
              core::kInt8MaxK, ", beyond which the int32 accumulator could overflow");
}

std::vector<int64_t> int8_packed_shape(int64_t N, int64_t K) {
  return {core::packed_panels(N), core::packed_row_bytes(K)};
}

at::ScalarType check_int8_linear_packed(const at::Tensor& q, const at::Tensor& q_scale,
                                        const at::Tensor& packed, const at::Tensor& w_scale,
                                        const c10::optional<at::Tensor>& bias,
                                        c10::optional<at::ScalarType> out_dtype) {
  const char* op = "int8_linear_packed";
  TORCH_CHECK(q.dim() >= 1 && q.scalar_type() == at::kChar,
              "effdl.int8_linear_packed: q must be an int8 tensor [*, K], got ", q.scalar_type(),
              " of shape ", q.sizes());
  TORCH_CHECK(w_scale.dim() == 1, "effdl.int8_linear_packed: w_scale must be float32 with shape [N], got ",
              w_scale.scalar_type(), " of shape ", w_scale.sizes());
  const int64_t K = q.size(-1), N = w_scale.size(0);
  const std::vector<int64_t> want = int8_packed_shape(N, K);
  TORCH_CHECK(packed.scalar_type() == at::kChar && packed.sizes() == at::IntArrayRef(want),
              "effdl.int8_linear_packed: packed must be the int8 tensor of shape ", at::IntArrayRef(want),
              " that int8_pack_weight makes of a [", N, ", ", K, "] weight (N from w_scale, K from q), got ",
              packed.scalar_type(), " of shape ", packed.sizes());
  check_same_device(q, "q", packed, "packed", op);
  return check_int8_scales(q, q_scale, w_scale, N, bias, out_dtype, op);
}

at::ScalarType check_nm_int8_linear(const at::Tensor& q, const at::Tensor& q_scale,
                                    const at::Tensor& values_q, const at::Tensor& meta, int64_t n,
                                    int64_t m, const at::Tensor& w_scale,
                                    const c10::optional<at::Tensor>& bias,
                                    c10::optional<at::ScalarType> out_dtype) {
  const char* op = "nm_int8_linear";
  check_nm_pattern(n, m, op);
  TORCH_CHECK(q.dim() >= 1 && q.scalar_type() == at::kChar,
              "effdl.nm_int8_linear: q must be an int8 tensor [*, K], got ", q.scalar_type(),
              " of shape ", q.sizes());
  TORCH_CHECK(values_q.dim() == 2 && values_q.scalar_type() == at::kChar,
              "effdl.nm_int8_linear: values_q must be a 2-D int8 tensor [N, K*n/m], got ",
              values_q.scalar_type(), " of shape ", values_q.sizes());
  check_same_device(q, "q", values_q, "values_q", op);
  const int64_t K = check_nm_meta(values_q, "values_q", meta, n, m, op);
  const int64_t N = values_q.size(0), kept = values_q.size(1);
  TORCH_CHECK(q.size(-1) == K, "effdl.nm_int8_linear: q must have shape [*, ", K,
              "] to match the weight (K=", K, "), got ", q.sizes());
  // the int32 sum runs over the kept products only
  TORCH_CHECK(kept <= core::kInt8MaxK, "effdl.nm_int8_linear: K*n/m=", kept, " kept products (K=", K,
              ", ", n, ":", m, ") exceed ", core::kInt8MaxK,
              ", beyond which the int32 accumulator could overflow");
  TORCH_CHECK(q_scale.scalar_type() == at::kFloat && q_scale.sizes() == q.sizes().slice(0, q.dim() - 1),
              "effdl.nm_int8_linear: q_scale must be float32 with shape ", q.sizes().slice(0, q.dim() - 1),
              " (q's leading dims), got ", q_scale.scalar_type(), " of shape ", q_scale.sizes());
  TORCH_CHECK(w_scale.scalar_type() == at::kFloat && w_scale.dim() == 1 && w_scale.size(0) == N,
              "effdl.nm_int8_linear: w_scale must be float32 with shape [", N, "], got ",
              w_scale.scalar_type(), " of shape ", w_scale.sizes());
  check_same_device(q, "q", q_scale, "q_scale", op);
  check_same_device(q, "q", w_scale, "w_scale", op);
  check_vector(bias, "bias", N, q, op);
  if (bias.has_value()) {
    TORCH_CHECK(is_act_float(bias->scalar_type()),
                "effdl.nm_int8_linear: bias must be float32, bfloat16 or float16, got ",
                bias->scalar_type());
  }
  const at::ScalarType out = out_dtype.value_or(at::kFloat);
  TORCH_CHECK(is_act_float(out),
              "effdl.nm_int8_linear: out_dtype must be float32, bfloat16 or float16, got ", out);
  return out;
}

void check_int8_weight_linear(const at::Tensor& x, const at::Tensor& wq, const at::Tensor& w_scale,
                              const c10::optional<at::Tensor>& bias) {
  TORCH_CHECK(x.dim() >= 1 && is_act_float(x.scalar_type()),
              "effdl.int8_weight_linear: x must be a float32, bfloat16 or float16 tensor [*, K], got ",
              x.scalar_type(), " of shape ", x.sizes());
  TORCH_CHECK(wq.dim() == 2 && wq.scalar_type() == at::kChar,
              "effdl.int8_weight_linear: wq must be a 2-D int8 tensor [N, K], got ",
              wq.scalar_type(), " of shape ", wq.sizes());
  const int64_t K = x.size(-1), N = wq.size(0);
  TORCH_CHECK(wq.size(1) == K, "effdl.int8_weight_linear: wq must have K=", K,
              " columns to match x, got shape ", wq.sizes());
  TORCH_CHECK(w_scale.scalar_type() == at::kFloat && w_scale.dim() == 1 && w_scale.size(0) == N,
              "effdl.int8_weight_linear: w_scale must be float32 with shape [", N, "], got ",
              w_scale.scalar_type(), " of shape ", w_scale.sizes());
  check_same_device(x, "x", wq, "wq", "int8_weight_linear");
  check_same_device(x, "x", w_scale, "w_scale", "int8_weight_linear");
  check_vector(bias, "bias", N, x, "int8_weight_linear");
  if (bias.has_value()) {
    TORCH_CHECK(bias->scalar_type() == x.scalar_type(), "effdl.int8_weight_linear: bias dtype ",
                bias->scalar_type(), " must match x dtype ", x.scalar_type());
  }
}

core::Activation parse_activation(const std::string& name, const char* arg) {
  if (name == "none") return core::Activation::kNone;
  if (name == "relu") return core::Activation::kRelu;
  if (name == "relu6") return core::Activation::kRelu6;
  TORCH_CHECK(false, "effdl.dwsep_conv2d: ", arg, " must be one of 'none', 'relu', 'relu6', got '",
              name, "'");
}

core::DwsepShape check_dwsep_conv2d(const at::Tensor& x, const at::Tensor& dw_weight,
                                    const c10::optional<at::Tensor>& dw_bias,
                                    const at::Tensor& pw_weight,
                                    const c10::optional<at::Tensor>& pw_bias,
                                    at::IntArrayRef stride, at::IntArrayRef padding,
                                    at::IntArrayRef dilation) {
  const char* op = "dwsep_conv2d";
  TORCH_CHECK(x.dim() == 4, "effdl.dwsep_conv2d: x must be 4-D [B, C, H, W], got shape ", x.sizes());
  TORCH_CHECK(is_nm_float(x.scalar_type()),
              "effdl.dwsep_conv2d: x must be float32, float64, bfloat16 or float16, got ",
              x.scalar_type());
  const int64_t C = x.size(1);
  TORCH_CHECK(dw_weight.dim() == 4 && dw_weight.size(0) == C && dw_weight.size(1) == 1,
              "effdl.dwsep_conv2d: dw_weight must have shape [", C, ", 1, kh, kw], got ",
              dw_weight.sizes());
  TORCH_CHECK(pw_weight.dim() == 4 && pw_weight.size(1) == C && pw_weight.size(2) == 1 &&
                  pw_weight.size(3) == 1,
              "effdl.dwsep_conv2d: pw_weight must have shape [Cout, ", C, ", 1, 1], got ",
              pw_weight.sizes());
  for (const auto* t : {&dw_weight, &pw_weight}) {
    TORCH_CHECK(t->scalar_type() == x.scalar_type(), "effdl.dwsep_conv2d: ",
                t == &dw_weight ? "dw_weight" : "pw_weight", " dtype ", t->scalar_type(),
                " must match x dtype ", x.scalar_type());
    check_same_device(x, "x", *t, t == &dw_weight ? "dw_weight" : "pw_weight", op);
  }
  const int64_t Cout = pw_weight.size(0);
  check_vector(dw_bias, "dw_bias", C, x, op);
  check_vector(pw_bias, "pw_bias", Cout, x, op);
  for (const auto* b : {&dw_bias, &pw_bias}) {
    if (b->has_value()) {
      TORCH_CHECK((*b)->scalar_type() == x.scalar_type(), "effdl.dwsep_conv2d: ",
                  b == &dw_bias ? "dw_bias" : "pw_bias", " dtype ", (*b)->scalar_type(),
                  " must match x dtype ", x.scalar_type());
    }
  }
  TORCH_CHECK(stride.size() == 2 && stride[0] > 0 && stride[1] > 0,
              "effdl.dwsep_conv2d: stride must be two positive ints, got ", stride);
  TORCH_CHECK(padding.size() == 2 && padding[0] >= 0 && padding[1] >= 0,
              "effdl.dwsep_conv2d: padding must be two non-negative ints, got ", padding);
  TORCH_CHECK(dilation.size() == 2 && dilation[0] > 0 && dilation[1] > 0,
              "effdl.dwsep_conv2d: dilation must be two positive ints, got ", dilation);
  core::DwsepShape s{};
  s.B = x.size(0);
  s.C = C;
  s.H = x.size(2);
  s.W = x.size(3);
  s.Cout = Cout;
  s.kh = dw_weight.size(2);
  s.kw = dw_weight.size(3);
  s.stride_h = stride[0];
  s.stride_w = stride[1];
  s.pad_h = padding[0];
  s.pad_w = padding[1];
  s.dil_h = dilation[0];
  s.dil_w = dilation[1];
  const int64_t span_h = s.H + 2 * s.pad_h - s.dil_h * (s.kh - 1) - 1;
  const int64_t span_w = s.W + 2 * s.pad_w - s.dil_w * (s.kw - 1) - 1;
  s.Ho = span_h < 0 ? 0 : span_h / s.stride_h + 1;
  s.Wo = span_w < 0 ? 0 : span_w / s.stride_w + 1;
  TORCH_CHECK(s.kh > 0 && s.kw > 0 && s.Ho > 0 && s.Wo > 0,
              "effdl.dwsep_conv2d: the output would be empty: input ", s.H, "x", s.W,
              ", kernel ", s.kh, "x", s.kw, ", padding ", padding, ", dilation ", dilation);
  return s;
}

bool keeps_channels_last(const at::Tensor& x) {
  return x.is_contiguous(at::MemoryFormat::ChannelsLast) && !x.is_contiguous();
}

at::Tensor as_rows(const at::Tensor& x) {
  int64_t rows = 1;
  for (int64_t d = 0; d + 1 < x.dim(); ++d) rows *= x.size(d);
  return x.reshape({rows, x.size(-1)});
}

std::vector<int64_t> linear_out_shape(const at::Tensor& x, int64_t N) {
  std::vector<int64_t> shape(x.sizes().begin(), x.sizes().end());
  shape.back() = N;
  return shape;
}

}  // namespace effdl
