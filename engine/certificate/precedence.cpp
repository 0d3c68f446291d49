// Precedence of several owners' marks in one file (rule in docs/certificate.md).
#include <algorithm>
#include <map>

#include "didmark/certificate.hpp"
#include "didmark/error.hpp"

namespace didmark {

std::vector<PrecedenceEntry> mark_precedence(std::span<const PrecedenceInput> inputs) {
  struct Row {
    PrecedenceEntry e;
    bool countersigned = false;
    std::pair<int64_t, int32_t> instant{};
    std::optional<std::vector<std::string>> marks;
  };
  auto rank_less = [](const Row& a, const Row& b) {
    if (a.countersigned != b.countersigned) return a.countersigned;  // authority times first
    if (a.instant != b.instant) return a.instant < b.instant;
    return a.e.did < b.e.did;
  };
  std::map<std::string, Row> by_did;
  for (const auto& in : inputs) {
    DIDMARK_EXPECTS(in.certificate != nullptr && in.certificate->valid, invalid_argument,
                    "precedence: every input needs a valid certificate");
    if (!in.detected) continue;
    const CertificateCheck& c = *in.certificate;
    const auto t = parse_rfc3339(c.time);
    DIDMARK_EXPECTS(t.has_value(), invalid_argument, "precedence: certificate ", c.certificate.id,
                    " has a malformed time");
    Row r;
    r.e.did = c.certificate.owner;
    r.e.time = c.time;
    r.e.countersigned = c.countersigned;
    r.e.authority = c.authority;
    r.e.certificate = c.certificate.id;
    r.e.z = in.z;
    r.e.this_file = in.this_file;
    r.countersigned = c.countersigned;
    r.instant = *t;
    r.marks = in.certified_model_marks;
    auto [it, fresh] = by_did.try_emplace(r.e.did, r);
    if (fresh) continue;
    // Another certificate of the same owner: the earlier one stands, model checks combine.
    Row& kept = it->second;
    const bool this_file = kept.e.this_file || r.e.this_file;
    std::optional<std::vector<std::string>> marks = kept.marks;
    if (r.marks) {
      if (!marks) marks.emplace();
      marks->insert(marks->end(), r.marks->begin(), r.marks->end());
    }
    if (rank_less(r, kept)) kept = r;
    kept.e.this_file = this_file;
    kept.marks = std::move(marks);
  }
  std::vector<Row> rows;
  for (auto& [did, r] : by_did) rows.push_back(std::move(r));
  std::sort(rows.begin(), rows.end(), rank_less);

  std::vector<PrecedenceEntry> out;
  for (std::size_t i = 0; i < rows.size(); ++i) {
    Row& r = rows[i];
    if (!r.countersigned) r.e.flags.push_back("self-asserted");
    auto same_time = [&](std::size_t j) {
      return rows[j].countersigned == r.countersigned && rows[j].instant == r.instant;
    };
    if ((i > 0 && same_time(i - 1)) || (i + 1 < rows.size() && same_time(i + 1))) r.e.flags.push_back("tie");
    if (i > 0) {
      if (r.marks) {
        for (std::size_t j = 0; j < i; ++j)
          if (std::find(r.marks->begin(), r.marks->end(), rows[j].e.did) == r.marks->end())
            r.e.missing.push_back(rows[j].e.did);
        if (!r.e.missing.empty()) r.e.flags.push_back("inconsistent");
      } else {
        r.e.flags.push_back("unchecked");
      }
    }
    out.push_back(r.e);
  }
  return out;
}

}  // namespace didmark
