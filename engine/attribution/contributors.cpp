#include <map>

#include "attribution/inputs.hpp"
#include "didmark/attribution.hpp"
#include "didmark/error.hpp"

namespace didmark {

ContributorTotals sum_by_contributor(std::span<const double> values, const TensorView& contributors) {
  attribution::require_vector(contributors, static_cast<int64_t>(values.size()), "contributor ids", "rows");
  const std::vector<int64_t> ids = attribution::read_integers(contributors, "contributor ids");
  std::map<int64_t, std::pair<double, int64_t>> acc;
  for (std::size_t i = 0; i < values.size(); ++i) {
    auto& a = acc[ids[i]];
    a.first += values[i];
    ++a.second;
  }
  ContributorTotals t;
  for (const auto& [id, a] : acc) {
    t.ids.push_back(id);
    t.totals.push_back(a.first);
    t.rows.push_back(a.second);
  }
  return t;
}

}  // namespace didmark
