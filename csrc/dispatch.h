// Maps an ATen dtype to the torch-free core storage type and calls
// f(type_tag<T>{}) — the one switch every glue file uses.
#pragma once

#include <ATen/ATen.h>

#include "core/dtype.h"

namespace effdl {

template <typename T>
struct type_tag {
  using type = T;
};

// The activation dtypes (of the int8 ops, and the 16/32-bit float ones of
// every op): float32, bfloat16, float16.
template <typename F>
void dispatch_act_float(at::ScalarType t, const char* op, F&& f) {
  switch (t) {
    case at::kFloat:
      return f(type_tag<float>{});
    case at::kBFloat16:
      return f(type_tag<core::bf16>{});
    case at::kHalf:
      return f(type_tag<core::fp16>{});
    default:
      TORCH_CHECK(false, "effdl.", op, ": unsupported dtype ", t);
  }
}

// Every float dtype the float ops take: the activation dtypes and float64.
template <typename F>
void dispatch_float(at::ScalarType t, const char* op, F&& f) {
  if (t == at::kDouble) return f(type_tag<double>{});
  dispatch_act_float(t, op, f);
}

// The core type T viewed over a tensor's storage (c10::BFloat16 / c10::Half
// are a single uint16_t, as are core::bf16 / core::fp16).
template <typename T>
T* data_as(const at::Tensor& t) {
  return reinterpret_cast<T*>(t.data_ptr());
}

template <typename T>
at::ScalarType acc_scalar_type() {
  return std::is_same_v<core::acc_t<T>, double> ? at::kDouble : at::kFloat;
}

}  // namespace effdl
