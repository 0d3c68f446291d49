// Signed royalty statements: W3C VC 2.0 + eddsa-jcs-2022, written canonically (RFC 8785).
#include <algorithm>
#include <charconv>
#include <functional>
#include <ctime>
#include <map>

#include "didmark/error.hpp"
#include "didmark/identity.hpp"
#include "didmark/royalty.hpp"
#include "identity/crypto.hpp"
#include "royalty/data_integrity.hpp"
#include "royalty/jcs.hpp"
#include "royalty/split_detail.hpp"

namespace didmark {

namespace {

using nlohmann::json;

constexpr std::string_view kVcContext = "https://www.w3.org/ns/credentials/v2";
constexpr std::string_view kRule = "didmark/largest-remainder/v1";

std::string utc_now() {
  const std::time_t t = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

void append_amount(std::string& out, Amount a) {
  char buf[48];
  if (a <= ~uint64_t(0)) {
    const auto r = std::to_chars(buf, buf + sizeof buf, static_cast<uint64_t>(a));
    out.append(buf, r.ptr);
    return;
  }
  out += amount_to_string(a);
}

void append_weight(std::string& out, const Weight& w) {
  if (w.is_decimal())
    detail::jcs_append_string(out, w.text());
  else
    detail::jcs_append_number(out, w.to_double());
}

// {"did":weight,...} in DID order: from the split's own copy of the inputs in payout order
// when it matches the level's payees, else by sorting them.
void append_weights_table(std::string& out, const std::vector<Payee>& payees, const LevelResult& lr) {
  out.push_back('{');
  bool first = true;
  const std::size_t n = lr.payouts.size();
  bool in_order = lr.payee_index.size() == n && lr.weights.size() == n;
  std::size_t listed = 0;
  for (std::size_t k = 0; in_order && k < n; ++k) {
    if (lr.payee_index[k] == LevelResult::kNotAPayee) continue;
    in_order = lr.payee_index[k] < payees.size();
    ++listed;
  }
  if (in_order && listed == payees.size()) {
    for (std::size_t k = 0; k < n; ++k) {
      if (lr.payee_index[k] == LevelResult::kNotAPayee) continue;
      if (!first) out.push_back(',');
      first = false;
      detail::jcs_append_string(out, lr.payouts[k].did);
      out.push_back(':');
      append_weight(out, lr.weights[k]);
    }
  } else {
    std::vector<std::string_view> ids(payees.size());
    for (std::size_t i = 0; i < payees.size(); ++i) ids[i] = payees[i].did;
    const auto order = detail::sorted_order(ids);
    for (std::size_t k = 0; k < order.size(); ++k) {
      detail::prefetch_payee(payees, order, k);
      if (k) out.push_back(',');
      detail::jcs_append_string(out, payees[order[k]].did);
      out.push_back(':');
      append_weight(out, payees[order[k]].weight);
    }
  }
  out.push_back('}');
}

// {"did":"amount",...}; `payouts` is already in DID order.
template <class Range, class Get>
void append_amount_table(std::string& out, const Range& payouts, Get amount_of) {
  out.push_back('{');
  bool first = true;
  for (const auto& p : payouts) {
    if (!first) out.push_back(',');
    first = false;
    detail::jcs_append_string(out, p.did);
    out += ":\"";
    append_amount(out, amount_of(p));
    out.push_back('"');
  }
  out.push_back('}');
}

std::string placeholder(std::size_t k, const std::string& nonce) { return "didmark-table-" + nonce + "-" + std::to_string(k); }

}  // namespace

std::string make_statement(Amount revenue, const Policy& policy, const CascadeResult& result,
                           const Identity& operator_id, const StatementOptions& options) {
  DIDMARK_EXPECTS(!operator_id.did().empty(), invalid_argument, "a statement needs an operator identity to sign it");
  DIDMARK_EXPECTS(result.levels.size() == policy.levels.size() && result.revenue == revenue, invalid_argument,
                  "the cascade result does not belong to this policy and revenue");
  const std::string ts = options.timestamp.empty() ? utc_now() : options.timestamp;
  const std::string issuer = operator_id.did();

  // The skeleton goes through the generic canonicalizer; the big tables are written
  // directly in canonical form and spliced in place of unique placeholder strings.
  std::array<uint8_t, 8> rnd{};
  const auto h = detail::sha256(issuer + ts + amount_to_string(revenue));
  std::copy(h.begin(), h.begin() + 8, rnd.begin());
  const std::string nonce = detail::to_hex(rnd);
  std::vector<std::function<void(std::string&)>> tables;

  json subject = json::object();
  subject["type"] = "RoyaltySplit";
  subject["rule"] = kRule;
  subject["revenue"] = amount_to_string(revenue);
  if (!options.unit.empty()) subject["unit"] = options.unit;
  subject["negativeWeights"] = std::string(negative_weights_name(policy.negative));
  if (policy.fallback) subject["fallback"] = *policy.fallback;
  json levels = json::array();
  const bool multi = policy.levels.size() > 1;
  for (std::size_t k = 0; k < policy.levels.size(); ++k) {
    const Level& lv = policy.levels[k];
    const LevelResult& lr = result.levels[k];
    json l = json::object();
    l["name"] = lv.name;
    if (lv.keep_bps) l["keepBasisPoints"] = *lv.keep_bps;
    if (lv.fallback) l["fallback"] = *lv.fallback;
    l["received"] = amount_to_string(lr.received);
    l["kept"] = amount_to_string(lr.kept);
    l["weights"] = placeholder(tables.size(), nonce);
    tables.push_back([&lv, &lr](std::string& out) { append_weights_table(out, lv.payees, lr); });
    if (multi) {
      l["payouts"] = placeholder(tables.size(), nonce);
      tables.push_back(
          [&lr](std::string& out) { append_amount_table(out, lr.payouts, [](const Payout& p) { return p.amount; }); });
    }
    levels.push_back(std::move(l));
  }
  subject["levels"] = std::move(levels);
  subject["payouts"] = placeholder(tables.size(), nonce);
  tables.push_back([&result](std::string& out) {
    append_amount_table(out, result.payees, [](const PayeeTotal& p) { return p.total; });
  });

  json doc = json::object();
  doc["@context"] = json::array({std::string(kVcContext)});
  doc["type"] = json::array({"VerifiableCredential", "RoyaltyStatement"});
  doc["issuer"] = issuer;
  doc["validFrom"] = ts;
  doc["credentialSubject"] = std::move(subject);
  const std::string skeleton = detail::jcs(doc);

  // Reserve enough for the tables and the proof so that nothing is moved afterwards.
  std::size_t estimate = skeleton.size() + 2048;
  for (std::size_t k = 0; k < policy.levels.size(); ++k) {
    for (const auto& p : policy.levels[k].payees) estimate += (multi ? 3 : 2) * (p.did.size() + 8) + 64;
    if (policy.levels[k].payees.empty() || multi) estimate += 2 * 1024;  // fallbacks
  }
  std::string canonical;
  canonical.reserve(estimate);
  // Placeholders appear in canonical (sorted-key) order, not in the order they were made.
  std::vector<std::pair<std::size_t, std::size_t>> spots;  // (position, table)
  std::vector<std::size_t> lengths(tables.size());
  for (std::size_t k = 0; k < tables.size(); ++k) {
    std::string ph;
    detail::jcs_append_string(ph, placeholder(k, nonce));
    const std::size_t pos = skeleton.find(ph);
    DIDMARK_ASSERT(pos != std::string::npos && skeleton.find(ph, pos + 1) == std::string::npos);
    spots.emplace_back(pos, k);
    lengths[k] = ph.size();
  }
  std::sort(spots.begin(), spots.end());
  std::size_t at = 0;
  for (const auto& [pos, k] : spots) {
    canonical.append(skeleton, at, pos - at);
    tables[k](canonical);
    at = pos + lengths[k];
  }
  canonical.append(skeleton, at);

  json proof_options = {{"type", "DataIntegrityProof"},
                        {"cryptosuite", "eddsa-jcs-2022"},
                        {"created", ts},
                        {"verificationMethod", detail::did_key_verification_method(issuer)},
                        {"proofPurpose", "assertionMethod"}};
  const json proof = detail::eddsa_jcs_2022_prove(canonical, doc["@context"], std::move(proof_options), operator_id);

  // The top-level members in canonical order end with ..."issuer", "type", "validFrom": the
  // proof goes between "issuer" and "type".
  std::string suffix = ",\"type\":[\"VerifiableCredential\",\"RoyaltyStatement\"],\"validFrom\":";
  detail::jcs_append_string(suffix, ts);
  suffix.push_back('}');
  DIDMARK_ASSERT(canonical.size() > suffix.size() &&
                 canonical.compare(canonical.size() - suffix.size(), suffix.size(), suffix) == 0);
  // Insert the proof in place: only the short suffix moves.
  canonical.insert(canonical.size() - suffix.size(), ",\"proof\":" + detail::jcs(proof));
  canonical.push_back('\n');
  return canonical;
}

namespace {

struct Fail {
  std::string reason;
};

const json& member(const json& obj, const char* key, const char* where) {
  if (!obj.is_object() || !obj.contains(key)) throw Fail{detail::concat(where, " has no '", key, "'")};
  return obj[key];
}
std::string string_member(const json& obj, const char* key, const char* where) {
  const json& v = member(obj, key, where);
  if (!v.is_string()) throw Fail{detail::concat(where, ".", key, " is not a string")};
  return v.get<std::string>();
}
Amount amount_member(const json& obj, const char* key, const char* where) {
  const std::string s = string_member(obj, key, where);
  try {
    return parse_amount(s, detail::concat(where, ".", key));
  } catch (const Error& e) {
    throw Fail{e.what()};
  }
}
std::vector<Payee> weights_of(const json& table, const std::string& where) {
  if (!table.is_object()) throw Fail{where + " is not an object of weights"};
  std::vector<Payee> out;
  out.reserve(table.size());
  for (auto it = table.begin(); it != table.end(); ++it) {
    try {
      if (it->is_number())
        out.push_back({it.key(), Weight::from_double(it->get<double>())});
      else if (it->is_string())
        out.push_back({it.key(), Weight::from_decimal(it->get_ref<const std::string&>())});
      else
        throw Fail{where + ": the weight of " + it.key() + " is not a number"};
    } catch (const Error& e) {
      throw Fail{where + ": " + e.what()};
    }
  }
  return out;
}
// Compare a stated {"did": "amount"} table with computed payouts.
template <class Range, class Get>
void compare_table(const json& stated, const Range& computed, Get amount_of, const std::string& where) {
  if (!stated.is_object()) throw Fail{where + " is not an object of amounts"};
  std::map<std::string_view, Amount> want;
  for (const auto& p : computed) want.emplace(p.did, amount_of(p));
  for (auto it = stated.begin(); it != stated.end(); ++it) {
    auto w = want.find(it.key());
    if (w == want.end()) throw Fail{where + " pays " + it.key() + ", who is not a payee of the inputs"};
    if (!it->is_string()) throw Fail{where + ": the amount of " + it.key() + " is not a decimal string"};
    Amount a;
    try {
      a = parse_amount(it->get_ref<const std::string&>(), "amount");
    } catch (const Error&) {
      throw Fail{where + ": the amount of " + it.key() + " is not a whole number"};
    }
    if (a != w->second)
      throw Fail{where + " gives " + it.key() + " " + amount_to_string(a) + ", but the inputs give " +
                 amount_to_string(w->second)};
    want.erase(w);
  }
  if (!want.empty()) throw Fail{where + " leaves out payee " + std::string(want.begin()->first)};
}

}  // namespace

StatementCheck verify_statement(std::string_view bytes) {
  StatementCheck c;
  const json doc = detail::parse_json(bytes, "the statement");
  // 1. Canonical bytes: the file is exactly what was signed, so no byte can change unnoticed.
  std::string canon = detail::jcs(doc);
  canon.push_back('\n');
  c.canonical_ok = canon == bytes;
  std::string first_failure;
  if (!c.canonical_ok) {
    std::size_t i = 0;
    while (i < canon.size() && i < bytes.size() && canon[i] == bytes[i]) ++i;
    first_failure = detail::concat("the file is not the canonical (RFC 8785) form it was signed in (first difference at byte ", i, ")");
  }
  canon.clear();
  canon.shrink_to_fit();
  try {
    // 2. Shape and signature.
    if (!doc.is_object()) throw Fail{"the statement is not a JSON object"};
    const json& ctx = member(doc, "@context", "the credential");
    if (!ctx.is_array() || ctx.empty() || ctx[0] != kVcContext)
      throw Fail{"the credential's first @context is not " + std::string(kVcContext)};
    const json& type = member(doc, "type", "the credential");
    if (!type.is_array() || std::find(type.begin(), type.end(), "VerifiableCredential") == type.end() ||
        std::find(type.begin(), type.end(), "RoyaltyStatement") == type.end())
      throw Fail{"the credential's type is not [VerifiableCredential, RoyaltyStatement]"};
    c.issuer = string_member(doc, "issuer", "the credential");
    const json& proof = member(doc, "proof", "the credential");
    c.created = proof.is_object() ? proof.value("created", "") : "";
    const std::string vm = proof.is_object() ? proof.value("verificationMethod", "") : "";
    const std::string reason = detail::eddsa_jcs_2022_verify(doc);
    if (!reason.empty()) {
      if (first_failure.empty()) first_failure = "signature: " + reason;
    } else if (vm.substr(0, vm.find('#')) != c.issuer) {
      if (first_failure.empty()) first_failure = "the proof was made by " + vm + ", not by the issuer " + c.issuer;
    } else if (proof.value("proofPurpose", "") != "assertionMethod") {
      if (first_failure.empty()) first_failure = "the proof's purpose is not assertionMethod";
    } else {
      c.signature_ok = true;
    }

    // 3. Re-derive the payouts from the inputs.
    const json& subject = member(doc, "credentialSubject", "the credential");
    if (string_member(subject, "rule", "credentialSubject") != kRule)
      throw Fail{"credentialSubject.rule is not " + std::string(kRule)};
    c.revenue = amount_member(subject, "revenue", "credentialSubject");
    Policy policy;
    const auto nw = parse_negative_weights(string_member(subject, "negativeWeights", "credentialSubject"));
    if (!nw) throw Fail{"credentialSubject.negativeWeights is not clip, shift or refuse"};
    policy.negative = *nw;
    if (subject.contains("fallback")) policy.fallback = string_member(subject, "fallback", "credentialSubject");
    const json& levels = member(subject, "levels", "credentialSubject");
    if (!levels.is_array() || levels.empty()) throw Fail{"credentialSubject.levels is not a non-empty array"};
    for (std::size_t k = 0; k < levels.size(); ++k) {
      const std::string at = detail::concat("credentialSubject.levels[", k, "]");
      const json& l = levels[k];
      Level lv;
      lv.name = string_member(l, "name", at.c_str());
      if (l.contains("keepBasisPoints")) {
        const json& b = l["keepBasisPoints"];
        if (!b.is_number_integer() || b.get<int64_t>() < 0 || b.get<int64_t>() > 10000)
          throw Fail{at + ".keepBasisPoints is not an integer in 0..10000"};
        lv.keep_bps = static_cast<int>(l["keepBasisPoints"].get<int64_t>());
      }
      if (l.contains("fallback")) lv.fallback = string_member(l, "fallback", at.c_str());
      lv.payees = weights_of(member(l, "weights", at.c_str()), at + ".weights");
      policy.levels.push_back(std::move(lv));
    }
    c.levels = policy.levels.size();
    CascadeResult r;
    try {
      r = run_cascade(c.revenue, policy);
    } catch (const Error& e) {
      throw Fail{std::string("the inputs do not split: ") + e.what()};
    }
    for (std::size_t k = 0; k < levels.size(); ++k) {
      const std::string at = detail::concat("credentialSubject.levels[", k, "]");
      if (amount_member(levels[k], "received", at.c_str()) != r.levels[k].received)
        throw Fail{at + ".received differs from the amount the inputs bring to this level"};
      if (amount_member(levels[k], "kept", at.c_str()) != r.levels[k].kept)
        throw Fail{at + ".kept differs from the amount the inputs keep at this level"};
      if (levels.size() > 1)
        compare_table(member(levels[k], "payouts", at.c_str()), r.levels[k].payouts,
                      [](const Payout& p) { return p.amount; }, at + ".payouts");
    }
    compare_table(member(subject, "payouts", "credentialSubject"), r.payees,
                  [](const PayeeTotal& p) { return p.total; }, "credentialSubject.payouts");
    c.payees = r.payees.size();
    c.payouts_ok = true;
  } catch (const Fail& f) {
    if (first_failure.empty()) first_failure = f.reason;
  }
  c.valid = c.canonical_ok && c.signature_ok && c.payouts_ok;
  c.reason = c.valid ? std::string() : first_failure;
  return c;
}

}  // namespace didmark
