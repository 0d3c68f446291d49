// Exact KNN-Shapley (Jia et al. 2019), written once against the attribution op table.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <limits>
#include <string_view>

#include "backend/attribution_ops.hpp"
#include "attribution/inputs.hpp"
#include "didmark/attribution.hpp"
#include "didmark/detail/hash.hpp"
#include "didmark/error.hpp"

namespace didmark {
namespace {

using attribution::KnnTrainSet;

// canonical[j] = the first row bitwise identical to row j (j itself when none): identical
// rows then get identical distances on every device, so the tie-break by index decides.
// Rows are hashed, sorted by (hash, index), and only rows of equal hash are compared.
std::vector<int32_t> canonical_rows(const void* x, int64_t n, std::size_t row_bytes, int64_t& duplicates) {
  const auto* base = static_cast<const unsigned char*>(x);
  std::vector<std::pair<uint64_t, int32_t>> h(static_cast<std::size_t>(n));
  for (int64_t j = 0; j < n; ++j) {
    const unsigned char* row = base + static_cast<std::size_t>(j) * row_bytes;
    uint64_t a = 0x9E3779B97F4A7C15ull, b = 0xC2B2AE3D27D4EB4Full;
    std::size_t i = 0;
    for (; i + 16 <= row_bytes; i += 16) {
      uint64_t w0, w1;
      std::memcpy(&w0, row + i, 8);
      std::memcpy(&w1, row + i + 8, 8);
      a = (a ^ w0) * 0xFF51AFD7ED558CCDull;
      b = (b ^ w1) * 0xC4CEB9FE1A85EC53ull;
    }
    a = detail::fnv1a_update(a, reinterpret_cast<const char*>(row + i), row_bytes - i);
    const uint64_t hv = (a ^ (b >> 29)) * 0x9E3779B97F4A7C15ull;
    h[static_cast<std::size_t>(j)] = {hv ^ (hv >> 32), static_cast<int32_t>(j)};
  }
  std::sort(h.begin(), h.end());
  std::vector<int32_t> canon(static_cast<std::size_t>(n));
  duplicates = 0;
  for (std::size_t r0 = 0; r0 < h.size();) {
    std::size_t r1 = r0 + 1;
    while (r1 < h.size() && h[r1].first == h[r0].first) ++r1;
    // Within a run of equal hashes (ascending index), each row maps to the first equal one.
    for (std::size_t a = r0; a < r1; ++a) {
      const int32_t ja = h[a].second;
      int32_t c = ja;
      for (std::size_t b = r0; b < a; ++b) {
        const int32_t jb = h[b].second;
        if (canon[static_cast<std::size_t>(jb)] == jb &&
            std::memcmp(base + static_cast<std::size_t>(ja) * row_bytes, base + static_cast<std::size_t>(jb) * row_bytes,
                        row_bytes) == 0) {
          c = jb;
          break;
        }
      }
      canon[static_cast<std::size_t>(ja)] = c;
      if (c != ja) ++duplicates;
    }
    r0 = r1;
  }
  return canon;
}

template <class T>
std::vector<T> squared_norms(const T* x, int64_t n, int64_t d, double& max_norm) {
  std::vector<T> out(static_cast<std::size_t>(n));
  max_norm = 0;
  for (int64_t j = 0; j < n; ++j) {
    double s = 0;
    for (int64_t c = 0; c < d; ++c) {
      const double v = static_cast<double>(x[j * d + c]);
      s += v * v;
    }
    out[static_cast<std::size_t>(j)] = static_cast<T>(s);
    max_norm = std::max(max_norm, s);
  }
  return out;
}

template <class T>
void run(const TensorView& train, const TensorView& test, const std::vector<int64_t>& train_labels,
         const std::vector<int64_t>& test_labels, const KnnShapleyOptions& options, Backend& backend,
         KnnShapleyReport& report) {
  const int64_t n = report.train, m = report.queries, d = report.dim;
  std::vector<T> xs, qs;
  const T* x = attribution::as_compute<T>(train, xs);
  const T* q = attribution::as_compute<T>(test, qs);

  double max_x = 0, max_q = 0;
  const std::vector<T> norms = squared_norms(x, n, d, max_x);
  (void)squared_norms(q, m, d, max_q);
  // |dist| <= ||x||^2 + 2 ||q|| ||x||: refuse what would overflow the compute type.
  const double bound = max_x + 2.0 * std::sqrt(max_x) * std::sqrt(max_q);
  DIDMARK_EXPECTS(bound < 0.25 * static_cast<double>(std::numeric_limits<T>::max()), invalid_argument,
                  "knn_shapley: embeddings too large for ", dtype_name(report.compute),
                  " distances (largest squared norm ", std::max(max_x, max_q), "); rescale them or pass f64");

  const std::vector<int32_t> canon = canonical_rows(x, n, static_cast<std::size_t>(d) * sizeof(T), report.duplicate_rows);

  attribution::AttributionOps& ops = backend.attribution_ops();
  report.backend = ops.description();
  KnnTrainSet set;
  set.dtype = report.compute;
  set.x = x;
  set.sq_norms = norms.data();
  set.labels = train_labels.data();
  set.canonical = report.duplicate_rows > 0 ? canon.data() : nullptr;
  set.n = n;
  set.d = d;
  set.k = options.k;
  set.memory_budget = options.memory_budget;
  auto session = ops.knn_session(set);
  const int64_t max_tile = session->max_query_tile();
  const int64_t tile = options.query_tile > 0 ? std::min(options.query_tile, max_tile) : max_tile;
  for (int64_t q0 = 0; q0 < m; q0 += tile) {
    const int64_t mt = std::min(tile, m - q0);
    session->accumulate(q + q0 * d, test_labels.data() + q0, mt);
  }
  report.values = session->sums();
  for (double& v : report.values) v /= static_cast<double>(m);
}

}  // namespace

KnnShapleyReport knn_shapley(const TensorView& train, const TensorView& train_labels, const TensorView& test,
                             const TensorView& test_labels, const KnnShapleyOptions& options,
                             const std::optional<TensorView>& contributors, Backend& backend) {
  const auto t0 = std::chrono::steady_clock::now();
  attribution::require_float_matrix(train, "knn_shapley: train embeddings");
  attribution::require_float_matrix(test, "knn_shapley: test embeddings");
  KnnShapleyReport r;
  r.train = train.shape[0];
  r.dim = train.shape[1];
  r.queries = test.shape[0];
  r.k = options.k;
  DIDMARK_EXPECTS(r.train >= 1, invalid_argument, "knn_shapley: train embeddings have no rows");
  DIDMARK_EXPECTS(r.queries >= 1, invalid_argument, "knn_shapley: test embeddings have no rows");
  DIDMARK_EXPECTS(r.dim >= 1, invalid_argument, "knn_shapley: embeddings have no columns");
  DIDMARK_EXPECTS(test.shape[1] == r.dim, invalid_argument, "knn_shapley: test embeddings have ", test.shape[1],
                  " columns but train embeddings have ", r.dim);
  DIDMARK_EXPECTS(options.k >= 1, invalid_argument, "knn_shapley: K = ", options.k, " must be at least 1");
  DIDMARK_EXPECTS(r.train <= std::numeric_limits<int32_t>::max(), invalid_argument, "knn_shapley: ", r.train,
                  " training rows exceed the limit of 2^31-1");
  DIDMARK_EXPECTS(options.query_tile >= 0, invalid_argument, "knn_shapley: query_tile must be >= 0");
  attribution::require_vector(train_labels, r.train, "knn_shapley: train labels", "training rows");
  attribution::require_vector(test_labels, r.queries, "knn_shapley: test labels", "test rows");
  if (contributors) attribution::require_vector(*contributors, r.train, "knn_shapley: contributor ids", "training rows");
  attribution::require_finite(train, "knn_shapley: train embeddings");
  attribution::require_finite(test, "knn_shapley: test embeddings");
  const std::vector<int64_t> yl = attribution::read_integers(train_labels, "knn_shapley: train labels");
  const std::vector<int64_t> ql = attribution::read_integers(test_labels, "knn_shapley: test labels");

  r.compute = (train.dtype == DType::f64 || test.dtype == DType::f64) ? DType::f64 : DType::f32;
  if (r.compute == DType::f64) {
    run<double>(train, test, yl, ql, options, backend, r);
  } else {
    run<float>(train, test, yl, ql, options, backend, r);
  }
  if (contributors) r.contributors = sum_by_contributor(r.values, *contributors);
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return r;
}

}  // namespace didmark
