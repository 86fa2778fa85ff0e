// Every effdl operator schema, defined once. Backends register kernels with
// TORCH_LIBRARY_IMPL in csrc/cpu and csrc/cuda; fakes and autograd live in
// python/effdl/ops.py.
#include <torch/library.h>

TORCH_LIBRARY(effdl, m) {
  m.def("nm_compress(Tensor w, int n, int m) -> (Tensor values, Tensor meta)");
  m.def("nm_decompress(Tensor values, Tensor meta, int n, int m) -> Tensor");
  m.def("nm_linear(Tensor x, Tensor values, Tensor meta, int n, int m, Tensor? bias=None) -> Tensor");
  m.def("nm_pack_weight(Tensor values, Tensor meta, int n, int m) -> Tensor");
  m.def("nm_linear_packed(Tensor x, Tensor packed, int N, Tensor? bias=None) -> Tensor");
  m.def("quantize_rows(Tensor x) -> (Tensor q, Tensor scale)");
  m.def(
      "int8_linear(Tensor q, Tensor q_scale, Tensor wq, Tensor w_scale, Tensor? bias=None, "
      "ScalarType? out_dtype=None) -> Tensor");
  m.def("int8_pack_weight(Tensor wq) -> Tensor");
  m.def(
      "int8_linear_packed(Tensor q, Tensor q_scale, Tensor packed, Tensor w_scale, Tensor? bias=None, "
      "ScalarType? out_dtype=None) -> Tensor");
  m.def(
      "nm_int8_linear(Tensor q, Tensor q_scale, Tensor values_q, Tensor meta, int n, int m, "
      "Tensor w_scale, Tensor? bias=None, ScalarType? out_dtype=None) -> Tensor");
  m.def("int8_weight_linear(Tensor x, Tensor wq, Tensor w_scale, Tensor? bias=None) -> Tensor");
  m.def(
      "dwsep_conv2d(Tensor x, Tensor dw_weight, Tensor? dw_bias, Tensor pw_weight, Tensor? pw_bias, "
      "int[2] stride, int[2] padding, int[2] dilation, str dw_activation, str pw_activation) -> Tensor");
}
