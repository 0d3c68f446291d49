// Signed royalty statements: W3C VC 2.0 + eddsa-jcs-2022, written canonically (RFC 8785).
#include <algorithm>
#include <charconv>
#include <cstring>
#include <ctime>
#include <functional>
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

// Decimal digits of `a` at p (room for 40 bytes); returns the end.
char* write_amount(char* p, Amount a) {
  if (a <= ~uint64_t(0)) return std::to_chars(p, p + 40, static_cast<uint64_t>(a)).ptr;
  constexpr uint64_t e19 = 10000000000000000000ull;
  p = write_amount(p, a / e19);
  char buf[20];
  const auto r = std::to_chars(buf, buf + sizeof buf, static_cast<uint64_t>(a % e19));
  const auto len = static_cast<std::size_t>(r.ptr - buf);
  std::memset(p, '0', 19 - len);
  std::memcpy(p + (19 - len), buf, len);
  return p + 19;
}

// Rows `"did":value` of a canonical table, one append per row: each is written into a
// buffer on the stack unless the DID is long or needs escapes.
class TableWriter {
 public:
  // DIDs known to be valid DIDs (those of a cascade result: the split checked them) have
  // nothing to escape.
  TableWriter(std::string& out, bool valid_dids) : out_(out), valid_dids_(valid_dids) { out_.push_back('{'); }
  void close() { out_.push_back('}'); }

  // `write(p)` writes the value at p, at most `max` bytes, and returns the end.
  template <class Write>
  void row(std::string_view did, std::size_t max, Write write) {
    if (did.size() + max + 4 <= sizeof buf_ && (valid_dids_ || detail::jcs_plain(did))) {
      char* p = buf_;
      if (!first_) *p++ = ',';
      *p++ = '"';
      std::memcpy(p, did.data(), did.size());
      p += did.size();
      *p++ = '"';
      *p++ = ':';
      p = write(p);
      out_.append(buf_, static_cast<std::size_t>(p - buf_));
    } else {
      if (!first_) out_.push_back(',');
      detail::jcs_append_string(out_, did);
      out_.push_back(':');
      std::string value(max, '\0');
      value.resize(static_cast<std::size_t>(write(value.data()) - value.data()));
      out_.append(value);
    }
    first_ = false;
  }

  // "did":"amount"
  void amount_row(std::string_view did, Amount a) {
    row(did, kAmountMax + 2, [a](char* p) {
      *p++ = '"';
      p = write_amount(p, a);
      *p++ = '"';
      return p;
    });
  }

  // What a payee row needs of a weight (gathered ahead of writing).
  struct WeightRef {
    const std::string* decimal = nullptr;  // a decimal's text; null for a double
    double value = 0;                       // the double
    bool payee = false;                     // false: a fallback that is not one of the payees
  };
  // "did":[weight,"amount"]: the weight as given (a double as a JSON number, a decimal as its
  // text in a string) or null for a fallback that is not one of the level's payees.
  void payee_row(std::string_view did, const WeightRef& w, Amount a) {
    std::string quoted;  // a decimal's text as a JSON string
    if (w.decimal) detail::jcs_append_string(quoted, *w.decimal);
    const std::size_t max = 1 + (!w.payee ? 4 : w.decimal ? quoted.size() : detail::kJcsNumberMax) + kAmountMax + 4;
    row(did, max, [&w, &quoted, a](char* p) {
      *p++ = '[';
      if (!w.payee) {
        std::memcpy(p, "null", 4);
        p += 4;
      } else if (w.decimal) {
        std::memcpy(p, quoted.data(), quoted.size());
        p += quoted.size();
      } else {
        p = detail::jcs_write_number(p, w.value);
      }
      *p++ = ',';
      *p++ = '"';
      p = write_amount(p, a);
      *p++ = '"';
      *p++ = ']';
      return p;
    });
  }

 private:
  static constexpr std::size_t kAmountMax = 39;  // digits of 2^128 - 1
  std::string& out_;
  bool valid_dids_ = false;
  bool first_ = true;
  char buf_[512];
};

// Whether `lr` is what run_cascade made of level `lv` of `policy`: payouts that view the
// policy's DIDs, every payee listed once, its weight recorded next to its payout.
bool belongs_to(const LevelResult& lr, const Level& lv, const Policy& policy) {
  const std::size_t n = lr.payouts.size();
  if (!detail::PayoutsAccess::views(lr.payouts, &policy) || lr.name != lv.name || lr.payee_index.size() != n ||
      detail::PayoutsAccess::weights(lr.payouts).size() != n)
    return false;
  std::size_t listed = 0;
  for (const uint32_t i : lr.payee_index) {
    if (i == LevelResult::kNotAPayee) continue;
    if (i >= lv.payees.size()) return false;
    ++listed;
  }
  return listed == lv.payees.size();
}

// A level's {"did":[weight,"amount"],...} in DID order: the payouts (which view the payees'
// DIDs, random in memory) with the weights recorded next to them. In chunks (see
// detail::kChunk): a short loop touches the chunk's DIDs, then the rows are written.
void append_payees_table(std::string& out, const LevelResult& lr) {
  TableWriter t(out, true);
  const auto weights = detail::PayoutsAccess::weights(lr.payouts);
  const std::size_t n = lr.payouts.size();
  for (std::size_t base = 0; base < n; base += detail::kChunk) {
    const std::size_t m = std::min(n - base, detail::kChunk);
    unsigned sum = 0;
    for (std::size_t k = base; k < base + m; ++k) sum += detail::touch(lr.payouts[k].did);
    detail::keep(sum);
    for (std::size_t k = base; k < base + m; ++k) {
      const auto& w = weights[k];
      const bool payee = lr.payee_index[k] != LevelResult::kNotAPayee;
      t.payee_row(lr.payouts[k].did, {w.decimal, w.value, payee}, lr.payouts[k].amount);
    }
  }
  t.close();
}

// {"did":"amount",...}; `rows` are in DID order (their DIDs random in memory: in chunks).
void append_amount_table(std::string& out, const Payouts& rows) {
  TableWriter t(out, true);
  const std::size_t n = rows.size();
  for (std::size_t base = 0; base < n; base += detail::kChunk) {
    const std::size_t m = std::min(n - base, detail::kChunk);
    unsigned sum = 0;
    for (std::size_t k = base; k < base + m; ++k) sum += detail::touch(rows[k].did);
    detail::keep(sum);
    for (std::size_t k = base; k < base + m; ++k) t.amount_row(rows[k].did, rows[k].amount);
  }
  t.close();
}

std::string placeholder(std::size_t k, const std::string& nonce) { return "didmark-table-" + nonce + "-" + std::to_string(k); }

}  // namespace

std::string make_statement(const CascadeResult& result, const Identity& operator_id, const StatementOptions& options) {
  DIDMARK_EXPECTS(!operator_id.did().empty(), invalid_argument, "a statement needs an operator identity to sign it");
  bool belongs = result.policy && result.levels.size() == result.policy->levels.size();
  for (std::size_t k = 0; belongs && k < result.levels.size(); ++k)
    belongs = belongs_to(result.levels[k], result.policy->levels[k], *result.policy);
  DIDMARK_EXPECTS(belongs, invalid_argument, "the cascade result was not made by run_cascade");
  const Policy& policy = *result.policy;
  const Amount revenue = result.revenue;
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
  for (std::size_t k = 0; k < policy.levels.size(); ++k) {
    const Level& lv = policy.levels[k];
    const LevelResult& lr = result.levels[k];
    json l = json::object();
    l["name"] = lv.name;
    if (lv.keep_bps) l["keepBasisPoints"] = *lv.keep_bps;
    if (lv.fallback) l["fallback"] = *lv.fallback;
    l["received"] = amount_to_string(lr.received);
    l["kept"] = amount_to_string(lr.kept);
    l["payees"] = placeholder(tables.size(), nonce);
    tables.push_back([&lr](std::string& out) { append_payees_table(out, lr); });
    levels.push_back(std::move(l));
  }
  subject["levels"] = std::move(levels);
  // With one level, its table holds the totals; with more, a payee's total sums its levels.
  if (policy.levels.size() > 1) {
    subject["payouts"] = placeholder(tables.size(), nonce);
    tables.push_back([&result](std::string& out) { append_amount_table(out, result.payees); });
  }

  json doc = json::object();
  doc["@context"] = json::array({std::string(kVcContext)});
  doc["type"] = json::array({"VerifiableCredential", "RoyaltyStatement"});
  doc["issuer"] = issuer;
  doc["validFrom"] = ts;
  doc["credentialSubject"] = std::move(subject);
  const std::string skeleton = detail::jcs(doc);

  // Reserve enough for the tables and the proof so that nothing moves afterwards: the DIDs'
  // and decimals' text, plus per row at most 6 bytes of syntax, a number and an amount.
  std::size_t estimate = skeleton.size() + 4096;
  for (const auto& lr : result.levels)
    estimate += detail::PayoutsAccess::text_bytes(lr.payouts) + lr.payouts.size() * (6 + detail::kJcsNumberMax + 41);
  if (policy.levels.size() > 1)
    for (const auto& lr : result.levels)
      estimate += detail::PayoutsAccess::text_bytes(lr.payouts) + lr.payouts.size() * (6 + 41);
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
// A level's {"did": [weight, "amount"]} rows: the payees with their weights (rows whose
// weight is null are not payees: a fallback) and the stated amounts.
struct LevelRows {
  std::vector<Payee> payees;
  std::map<std::string, Amount, std::less<>> amounts;
};
LevelRows rows_of(const json& table, const std::string& where) {
  if (!table.is_object()) throw Fail{where + " is not an object of [weight, amount] rows"};
  LevelRows out;
  out.payees.reserve(table.size());
  for (auto it = table.begin(); it != table.end(); ++it) {
    const json& row = *it;
    if (!row.is_array() || row.size() != 2)
      throw Fail{where + ": the row of " + it.key() + " is not [weight, amount]"};
    try {
      if (row[0].is_number())
        out.payees.push_back({it.key(), Weight::from_double(row[0].get<double>())});
      else if (row[0].is_string())
        out.payees.push_back({it.key(), Weight::from_decimal(row[0].get_ref<const std::string&>())});
      else if (!row[0].is_null())
        throw Fail{where + ": the weight of " + it.key() + " is not a number"};
    } catch (const Error& e) {
      throw Fail{where + ": " + e.what()};
    }
    if (!row[1].is_string()) throw Fail{where + ": the amount of " + it.key() + " is not a decimal string"};
    try {
      out.amounts.emplace(it.key(), parse_amount(row[1].get_ref<const std::string&>(), "amount"));
    } catch (const Error&) {
      throw Fail{where + ": the amount of " + it.key() + " is not a whole number"};
    }
  }
  return out;
}
// Compare stated amounts with computed payouts: the same payees, the same amounts.
void compare_amounts(std::map<std::string, Amount, std::less<>> stated, const Payouts& computed,
                     const std::string& where) {
  for (const Payout& p : computed) {
    const auto s = stated.find(p.did);
    if (s == stated.end()) throw Fail{where + " leaves out payee " + std::string(p.did)};
    if (s->second != p.amount)
      throw Fail{where + " gives " + s->first + " " + amount_to_string(s->second) + ", but the inputs give " +
                 amount_to_string(p.amount)};
    stated.erase(s);
  }
  if (!stated.empty()) throw Fail{where + " pays " + stated.begin()->first + ", who is not a payee of the inputs"};
}
// A stated {"did": "amount"} table.
std::map<std::string, Amount, std::less<>> amounts_of(const json& table, const std::string& where) {
  if (!table.is_object()) throw Fail{where + " is not an object of amounts"};
  std::map<std::string, Amount, std::less<>> out;
  for (auto it = table.begin(); it != table.end(); ++it) {
    if (!it->is_string()) throw Fail{where + ": the amount of " + it.key() + " is not a decimal string"};
    try {
      out.emplace(it.key(), parse_amount(it->get_ref<const std::string&>(), "amount"));
    } catch (const Error&) {
      throw Fail{where + ": the amount of " + it.key() + " is not a whole number"};
    }
  }
  return out;
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
  c.is_credential = doc.is_object() && doc.contains("@context") && doc.contains("proof");
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
    std::vector<std::map<std::string, Amount, std::less<>>> stated(levels.size());
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
      LevelRows rows = rows_of(member(l, "payees", at.c_str()), at + ".payees");
      lv.payees = std::move(rows.payees);
      stated[k] = std::move(rows.amounts);
      policy.levels.push_back(std::move(lv));
    }
    c.levels = policy.levels.size();
    CascadeResult r;
    try {
      r = run_cascade(c.revenue, std::move(policy));
    } catch (const Error& e) {
      throw Fail{std::string("the inputs do not split: ") + e.what()};
    }
    for (std::size_t k = 0; k < levels.size(); ++k) {
      const std::string at = detail::concat("credentialSubject.levels[", k, "]");
      if (amount_member(levels[k], "received", at.c_str()) != r.levels[k].received)
        throw Fail{at + ".received differs from the amount the inputs bring to this level"};
      if (amount_member(levels[k], "kept", at.c_str()) != r.levels[k].kept)
        throw Fail{at + ".kept differs from the amount the inputs keep at this level"};
      compare_amounts(std::move(stated[k]), r.levels[k].payouts, at + ".payees");
    }
    // The totals: required with more than one level (with one, the level's table is them);
    // when present they must hold.
    if (levels.size() > 1 || subject.contains("payouts"))
      compare_amounts(amounts_of(member(subject, "payouts", "credentialSubject"), "credentialSubject.payouts"), r.payees,
                      "credentialSubject.payouts");
    c.payees = r.payees.size();
    c.payouts_ok = true;
  } catch (const Fail& f) {
    if (first_failure.empty()) first_failure = f.reason;
  }
  c.valid = c.canonical_ok && c.signature_ok && c.payouts_ok;
  c.reason = c.valid ? std::string() : first_failure;
  if (!c.canonical_ok && c.signature_ok && c.payouts_ok)
    c.reason += "; the signature and the payouts check out over the parsed content: a reformatted copy "
                "(e.g. pretty-printed) of a valid statement (--allow-reformatted accepts it)";
  return c;
}

std::string utc_now() {
  const std::time_t t = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

}  // namespace didmark
