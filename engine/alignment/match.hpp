#pragma once
// Matching a dimension's indices: the sketch's signature rows (n x m) against the suspect's
// (n2 x m), by the cosine of column-standardized rows. Linear assignment in the greedy form
// (pairs in decreasing score, each side used once), with candidates from buckets keyed by each
// row's largest entries so that the cost grows like n * n2 / m, not n * n2 * m.
#include <cstdint>
#include <vector>

namespace didmark::alignment {

struct MatchInput {
  int64_t n = 0;   ///< original indices (sketch rows)
  int64_t n2 = 0;  ///< suspect indices
  int m = 0;       ///< columns
  const float* a = nullptr;  ///< n x m, row-major
  const float* b = nullptr;  ///< n2 x m, row-major
  /// The first `scale_cols` columns are slices of one tensor (the signature's samples): the
  /// ratio of a matched pair over them is the index's scale. Later columns (vectors) only vote.
  int scale_cols = 0;
};

struct MatchResult {
  std::vector<int64_t> src;  ///< per original index: the suspect index, or -1 (dropped)
  std::vector<float> sign;   ///< +1 / -1
  std::vector<float> scale;  ///< |suspect| / |original| over the sampled slices (1 when unknown)
  std::vector<float> score;  ///< |cosine| of the accepted pair (0 when dropped)
  int64_t matched = 0;
  int64_t suspect_unused = 0;  ///< suspect indices left without a partner (dummies)
  double median_score = 0;
  double threshold = 0;        ///< the acceptance threshold used
  int columns_used = 0;        ///< columns with spread on both sides
};

MatchResult match_signatures(const MatchInput& in);

}  // namespace didmark::alignment
