// Lineage shares from per-owner watermark evidence (rule in docs/attribution.md).
#include <cmath>
#include <unordered_set>

#include "didmark/attribution.hpp"
#include "didmark/error.hpp"

namespace didmark {

LineageReport lineage_shares(std::span<const OwnerEvidence> evidence) {
  LineageReport r;
  std::unordered_set<std::string> seen;
  double total = 0;
  for (const auto& e : evidence) {
    DIDMARK_EXPECTS(!e.did.empty(), invalid_argument, "lineage: an owner without a DID");
    DIDMARK_EXPECTS(seen.insert(e.did).second, invalid_argument, "lineage: owner ", e.did, " appears twice");
    DIDMARK_EXPECTS(std::isfinite(e.z), invalid_argument, "lineage: owner ", e.did, " has a non-finite z (", e.z, ")");
    if (e.detected && e.z > 0) total += e.z;
  }
  r.any_detected = total > 0;
  for (const auto& e : evidence) {
    LineageShare s{e.did, e.z, e.detected, 0.0};
    if (r.any_detected && e.detected && e.z > 0) s.share = e.z / total;
    r.owners.push_back(std::move(s));
  }
  return r;
}

}  // namespace didmark
