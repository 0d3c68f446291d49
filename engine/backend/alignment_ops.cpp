// Helpers of the alignment op table shared by its CPU and CUDA implementations.
#include "backend/alignment_ops.hpp"

#include "didmark/error.hpp"

namespace didmark::alignment {

detail::AlignElem align_elem(DType t) {
  switch (t) {
    case DType::f32: return detail::AlignElem::f32;
    case DType::f64: return detail::AlignElem::f64;
    case DType::f16: return detail::AlignElem::f16;
    case DType::bf16: return detail::AlignElem::bf16;
    default: DIDMARK_THROW(Errc::unsupported, "alignment reads f32, f64, f16 and bf16 tensors, not ", dtype_name(t));
  }
}

std::array<int64_t, 2> matrix_shape(const TensorView& w) {
  if (w.rank() == 0) return {1, 1};
  if (w.rank() == 1) return {1, w.shape[0]};
  int64_t rest = 1;
  for (int d = 1; d < w.rank(); ++d) rest *= w.shape[static_cast<std::size_t>(d)];
  return {w.shape[0], rest};
}

}  // namespace didmark::alignment
