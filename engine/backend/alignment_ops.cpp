// Picking the alignment op table for a backend (the Backend will hand it out itself once
// every area's table lives there).
#include "backend/alignment_ops.hpp"

#include <mutex>

#include "common/thread_pool.hpp"
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

#if !DIDMARK_HAVE_CUDA
std::shared_ptr<AlignmentOps> make_cuda_ops(Backend&) {
  DIDMARK_THROW(Errc::unsupported, "the CUDA alignment ops are not in this build; rebuild with -DDIDMARK_CUDA=ON");
}
#endif

std::shared_ptr<AlignmentOps> ops_for(Backend& b) {
  if (b.device() == Device::cuda) return make_cuda_ops(b);
  static std::once_flag once;
  static std::unique_ptr<detail::ThreadPool> pool;
  static std::shared_ptr<AlignmentOps> cpu;
  std::call_once(once, [] {
    pool = std::make_unique<detail::ThreadPool>(detail::default_thread_count());
    cpu = make_cpu_ops(*pool);
  });
  return cpu;
}

}  // namespace didmark::alignment
