#include "attribution/attribution_ops.hpp"

namespace didmark::attribution {

std::unique_ptr<AttributionOps> make_attribution_ops(Backend& backend, int threads) {
#if DIDMARK_HAVE_CUDA
  if (auto ops = make_cuda_attribution_ops(backend, threads)) return ops;
#else
  (void)backend;
#endif
  return make_cpu_attribution_ops(threads);
}

}  // namespace didmark::attribution
