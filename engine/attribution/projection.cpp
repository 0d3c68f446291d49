// The keyed Rademacher projection: argument checks, then the op table of the backend.
#include <chrono>
#include <cmath>
#include <limits>

#include "didmark/detail/attribution_math.hpp"
#include "backend/attribution_ops.hpp"
#include "attribution/inputs.hpp"
#include "didmark/attribution.hpp"
#include "didmark/error.hpp"

namespace didmark {

float Projection::scale() const noexcept {
  return k > 0 ? static_cast<float>(1.0 / std::sqrt(static_cast<double>(k))) : 0.0f;
}

int rademacher_sign(const Projection& proj, int64_t i, int64_t j) noexcept {
  const auto bits = attribution::rademacher_bits(attribution::rademacher_key(proj.seed), static_cast<uint64_t>(i),
                                                 static_cast<uint32_t>(j / attribution::kRademacherBlock));
  return attribution::rademacher_value<int>(bits, static_cast<uint32_t>(j % attribution::kRademacherBlock), 1);
}

namespace attribution {
void require_projection(const Projection& proj, const char* what) {
  DIDMARK_EXPECTS(proj.k >= 1 && proj.k <= std::numeric_limits<int32_t>::max(), invalid_argument, what,
                  ": projection dimension k = ", proj.k, " must be between 1 and 2^31-1");
}
}  // namespace attribution

void project(const TensorView& grads, const Projection& proj, const TensorView& out, const ProjectOptions& options,
             Backend& backend) {
  attribution::require_projection(proj, "project");
  attribution::require_float_matrix(grads, "project: gradients");
  validate_view(out, "project: output");
  DIDMARK_EXPECTS(out.dtype == DType::f32 || out.dtype == DType::f64, invalid_argument,
                  "project: output dtype must be f32 or f64, got ", dtype_name(out.dtype));
  DIDMARK_EXPECTS(out.rank() == 2 && out.shape[0] == grads.shape[0] && out.shape[1] == proj.k, invalid_argument,
                  "project: output ", out.describe(), " should be [", grads.shape[0], ", ", proj.k, "]");
  DIDMARK_EXPECTS(out.device == Device::cpu && out.is_contiguous(), invalid_argument,
                  "project: output must be contiguous host memory, got ", out.describe());
  DIDMARK_EXPECTS(options.feature_tile >= 0, invalid_argument, "project: feature_tile must be >= 0");
  attribution::require_finite(grads, "project: gradients");
  attribution::AttributionOps& ops = backend.attribution_ops();
  ops.project(grads, proj, out.data, out.dtype, options.feature_tile);
}

std::vector<float> rademacher_rows(const Projection& proj, int64_t row0, int64_t rows, Backend& backend) {
  attribution::require_projection(proj, "rademacher_rows");
  DIDMARK_EXPECTS(row0 >= 0 && rows >= 0, invalid_argument, "rademacher_rows: negative row range");
  std::vector<float> out(static_cast<std::size_t>(rows * proj.k));
  if (rows == 0) return out;
  attribution::AttributionOps& ops = backend.attribution_ops();
  ops.rademacher_rows(proj, row0, rows, out.data());
  return out;
}

}  // namespace didmark
