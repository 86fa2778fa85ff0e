// dwsep_conv2d's weights as every backend's kernel reads them: in the
// accumulator dtype, depthwise [kh*kw, C] and pointwise [C, Cout], so the
// channel loops are contiguous. Biases stay undefined when absent.
#pragma once

#include <ATen/ATen.h>

#include "core/dwsep_conv.h"

namespace effdl {

struct DwsepWeights {
  at::Tensor dw_w, dw_b, pw_wt, pw_b;
};

inline DwsepWeights dwsep_weights(const core::DwsepShape& s, const at::Tensor& dw_weight,
                                  const c10::optional<at::Tensor>& dw_bias,
                                  const at::Tensor& pw_weight,
                                  const c10::optional<at::Tensor>& pw_bias, at::ScalarType acc) {
  return {dw_weight.to(acc).reshape({s.C, s.kh * s.kw}).t().contiguous(),
          dw_bias.has_value() ? dw_bias->to(acc).contiguous() : at::Tensor(),
          pw_weight.to(acc).reshape({s.Cout, s.C}).t().contiguous(),
          pw_bias.has_value() ? pw_bias->to(acc).contiguous() : at::Tensor()};
}

}  // namespace effdl
