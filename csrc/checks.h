// One input check per op, shared by every backend (CPU and CUDA glue). The
// Python fakes in effdl/ops.py mirror these messages.
#pragma once

#include <ATen/ATen.h>

#include <string>
#include <vector>

#include "core/dwsep_conv.h"

namespace effdl {

void check_nm_pattern(int64_t n, int64_t m, const char* op);

// w: 2-D float [rows, K] with K % m == 0.
void check_nm_compress(const at::Tensor& w, int64_t n, int64_t m);

// values [rows, K*n/m] float, meta [rows, ceil(K/8)] uint8; returns K.
int64_t check_nm_storage(const at::Tensor& values, const at::Tensor& meta, int64_t n, int64_t m,
                         const char* op);

// x [*, K] with the dtype and device of values; bias [rows] or None; returns K.
int64_t check_nm_linear(const at::Tensor& x, const at::Tensor& values, const at::Tensor& meta,
                        int64_t n, int64_t m, const c10::optional<at::Tensor>& bias);

// A 2:4 weight (values [N, K/2] float + meta, the nm_linear storage) to pack;
// returns K. Other patterns are refused: the packed layout is 2:4 only.
int64_t check_nm_pack_weight(const at::Tensor& values, const at::Tensor& meta, int64_t n, int64_t m);

// The shape of nm_pack_weight's output for a [N, K] weight of elem_size-byte
// elements (core/nm_packed.h).
std::vector<int64_t> nm_packed_shape(int64_t N, int64_t K, int64_t elem_size);

// nm_linear with the 2:4 weight as nm_pack_weight's output: x [*, K] float
// (K % 4 == 0), packed of nm_packed_shape(N, K) in x's dtype, bias [N] or None.
// Returns K.
int64_t check_nm_linear_packed(const at::Tensor& x, const at::Tensor& packed, int64_t N,
                               const c10::optional<at::Tensor>& bias);

void check_quantize_rows(const at::Tensor& x);

// Returns the output dtype.
at::ScalarType check_int8_linear(const at::Tensor& q, const at::Tensor& q_scale,
                                 const at::Tensor& wq, const at::Tensor& w_scale,
                                 const c10::optional<at::Tensor>& bias,
                                 c10::optional<at::ScalarType> out_dtype);

// wq: 2-D int8 [N, K], K <= kInt8MaxK.
void check_int8_pack_weight(const at::Tensor& wq);

// The shape of int8_pack_weight's output for a [N, K] weight (core/int8_packed.h).
std::vector<int64_t> int8_packed_shape(int64_t N, int64_t K);

// int8_linear with the weight as int8_pack_weight's output: q [*, K] int8,
// w_scale [N] (which gives N), packed of int8_packed_shape(N, K). Returns the output dtype.
at::ScalarType check_int8_linear_packed(const at::Tensor& q, const at::Tensor& q_scale,
                                        const at::Tensor& packed, const at::Tensor& w_scale,
                                        const c10::optional<at::Tensor>& bias,
                                        c10::optional<at::ScalarType> out_dtype);

// q [*, K] int8, W int8 [N, K] as values_q [N, K*n/m] + meta; K*n/m <= kInt8MaxK.
// Returns the output dtype.
at::ScalarType check_nm_int8_linear(const at::Tensor& q, const at::Tensor& q_scale,
                                    const at::Tensor& values_q, const at::Tensor& meta, int64_t n,
                                    int64_t m, const at::Tensor& w_scale,
                                    const c10::optional<at::Tensor>& bias,
                                    c10::optional<at::ScalarType> out_dtype);

void check_int8_weight_linear(const at::Tensor& x, const at::Tensor& wq, const at::Tensor& w_scale,
                              const c10::optional<at::Tensor>& bias);

core::Activation parse_activation(const std::string& name, const char* arg);

core::DwsepShape check_dwsep_conv2d(const at::Tensor& x, const at::Tensor& dw_weight,
                                    const c10::optional<at::Tensor>& dw_bias,
                                    const at::Tensor& pw_weight,
                                    const c10::optional<at::Tensor>& pw_bias,
                                    at::IntArrayRef stride, at::IntArrayRef padding,
                                    at::IntArrayRef dilation);

// dwsep_conv2d's output is channels_last exactly when x is channels_last
// contiguous and not also NCHW contiguous (as for [B, C, 1, 1]).
bool keeps_channels_last(const at::Tensor& x);

// x[*, K] viewed as a matrix [prod(*), K]; unlike reshape({-1, K}) it also works for K == 0.
at::Tensor as_rows(const at::Tensor& x);

// Output of a `[*, K] -> [*, N]` op: x's leading shape with N appended.
std::vector<int64_t> linear_out_shape(const at::Tensor& x, int64_t N);

}  // namespace effdl
