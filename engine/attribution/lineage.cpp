// Lineage shares from per-owner watermark evidence (rule in docs/attribution.md).
#include <algorithm>
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
    LineageShare s;
    s.did = e.did;
    s.z = e.z;
    s.detected = e.detected;
    s.p_value = e.p_value;
    s.suggestive = !e.detected && e.p_value <= kSuggestiveP;
    if (r.any_detected && e.detected && e.z > 0) s.share = e.z / total;
    r.owners.push_back(std::move(s));
  }
  return r;
}

}  // namespace didmark

namespace didmark {

LineageReport certified_lineage_shares(const CertifiedLineageInput& in) {
  const double f = in.derivative_share;
  DIDMARK_EXPECTS(f >= 0 && f <= 1, invalid_argument, "lineage: the derivative share must be in 0..1, got ", f);
  LineageReport r = lineage_shares(in.evidence);  // checks the evidence; shares are replaced
  const auto& p = in.precedence;
  std::vector<double> z(p.size());
  for (std::size_t i = 0; i < p.size(); ++i) {
    const auto e = std::find_if(r.owners.begin(), r.owners.end(), [&](const auto& o) { return o.did == p[i].did; });
    DIDMARK_EXPECTS(e != r.owners.end() && e->detected, invalid_argument, "lineage: precedence owner ", p[i].did,
                    " is not among the detected owners");
    z[i] = e->z;
  }

  // Lines: indices into p, base first.
  std::vector<std::vector<std::size_t>> lines;
  std::vector<std::size_t> line_of(p.size());
  for (std::size_t i = 0; i < p.size(); ++i) {
    const auto& fl = p[i].flags;
    std::optional<std::size_t> parent;
    if (i > 0) {
      if (std::find(fl.begin(), fl.end(), "unchecked") != fl.end()) {
        parent = i - 1;
      } else {
        for (std::size_t j = 0; j < i; ++j)
          if (std::find(p[i].missing.begin(), p[i].missing.end(), p[j].did) == p[i].missing.end()) parent = j;
      }
    }
    if (parent) {
      line_of[i] = line_of[*parent];
      lines[line_of[i]].push_back(i);
    } else {
      line_of[i] = lines.size();
      lines.push_back({i});
    }
  }
  double base_z = 0;
  for (const auto& l : lines) base_z += std::max(z[l.front()], 0.0);

  std::vector<double> share(p.size(), 0.0);
  std::vector<std::string> relation(p.size());
  for (const auto& l : lines) {
    const double w = lines.size() == 1 ? 1.0 : (base_z > 0 ? std::max(z[l.front()], 0.0) / base_z : 0.0);
    if (l.size() == 1) {
      share[l[0]] = w;
    } else {
      share[l[0]] = (1 - f) * w;
      for (std::size_t k = 1; k < l.size(); ++k) share[l[k]] = f * w / static_cast<double>(l.size() - 1);
    }
    for (std::size_t k = 0; k < l.size(); ++k) {
      const std::size_t i = l[k];
      if (k == 0 && lines.size() > 1) {
        relation[i] = "merge";
      } else if (k + 1 < l.size()) {
        relation[i] = "finetune";  // a later owner's mark sits on top: the weights changed after
      } else if (const auto s = in.certified_summaries.find(p[i].did);
                 !p[i].this_file && in.file_summary && s != in.certified_summaries.end() && s->second.parameters > 0) {
        const double ratio = static_cast<double>(in.file_summary->parameters) / static_cast<double>(s->second.parameters);
        if (std::abs(ratio - 1) <= 0.01 && in.file_summary->bytes_per_parameter() < 0.99 * s->second.bytes_per_parameter())
          relation[i] = "quantized";
      }
    }
  }

  r.any_detected = false;
  for (auto& o : r.owners) {
    o.share = 0;
    const auto it = std::find_if(p.begin(), p.end(), [&](const auto& e) { return e.did == o.did; });
    if (it == p.end()) {
      o.role = o.detected ? "uncertified" : "not-detected";
      if (o.detected) o.flags = {"uncertified"};
      continue;
    }
    const auto i = static_cast<std::size_t>(it - p.begin());
    o.share = share[i];
    o.line = static_cast<int>(line_of[i]);
    o.role = lines[line_of[i]].front() == i ? "base" : "derivative";
    o.relation = relation[i];
    o.flags = it->flags;
    r.any_detected = r.any_detected || o.share > 0;
  }
  return r;
}

}  // namespace didmark
