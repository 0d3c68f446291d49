// Weights files, policy files and canonical JSON of arbitrary text.
#include <set>
#include <sstream>

#include "common/regular_file.hpp"
#include "didmark/error.hpp"
#include "didmark/identity.hpp"
#include "didmark/royalty.hpp"
#include "identity/did_detail.hpp"
#include "royalty/jcs.hpp"
#include "royalty/split_detail.hpp"

namespace didmark {

namespace {

// Weights and policy files: a million payees is ~100 MB of JSON.
constexpr std::size_t kMaxRoyaltyInputBytes = std::size_t{1} << 30;

std::string read_file(const std::filesystem::path& path, std::string_view what) {
  // Never blocks on a FIFO, never opens a device: only a regular file is read.
  return detail::read_regular_file(path, what, kMaxRoyaltyInputBytes);
}

bool exact_in_double(uint64_t m) {
  if (m == 0) return true;
  m >>= __builtin_ctzll(m);
  return m < (uint64_t(1) << 53);
}

// SAX reader of {"did": weight, ...}: no DOM, so a million payees stay cheap.
class WeightsSax {
 public:
  using json = nlohmann::json;
  explicit WeightsSax(std::string where) : where_(std::move(where)) {}

  std::vector<Payee> payees;
  std::string error;

  bool null() { return value("null"); }
  bool boolean(bool) { return value("a boolean"); }
  bool number_integer(json::number_integer_t v) {
    const uint64_t mag = v < 0 ? uint64_t(0) - static_cast<uint64_t>(v) : static_cast<uint64_t>(v);
    if (!exact_in_double(mag)) return inexact(std::to_string(v));
    return number(static_cast<double>(v));
  }
  bool number_unsigned(json::number_unsigned_t v) {
    if (!exact_in_double(v)) return inexact(std::to_string(v));
    return number(static_cast<double>(v));
  }
  bool number_float(json::number_float_t v, const json::string_t&) { return number(v); }
  bool string(json::string_t& s) {
    if (!at_value()) return fail("expected an object mapping payee DIDs to weights");
    Weight w;
    try {
      w = Weight::from_decimal(s);
    } catch (const Error& e) {
      return fail(detail::concat("payee ", key_, ": ", e.what()));
    }
    payees.push_back({std::move(key_), std::move(w)});
    return true;
  }
  bool binary(json::binary_t&) { return value("binary data"); }
  bool start_object(std::size_t) {
    if (depth_ == 0) {
      depth_ = 1;
      return true;
    }
    return value("an object");
  }
  bool key(json::string_t& k) {
    key_ = std::move(k);
    return true;
  }
  bool end_object() {
    depth_ = 0;
    return true;
  }
  bool start_array(std::size_t) { return value("an array"); }
  bool end_array() { return true; }
  bool parse_error(std::size_t pos, const std::string&, const nlohmann::detail::exception&) {
    return fail(detail::concat("not valid JSON (syntax error at byte ", pos, ")"));
  }

 private:
  bool at_value() const { return depth_ == 1; }
  bool number(double v) {
    if (!at_value()) return fail("expected an object mapping payee DIDs to weights, not a bare number");
    payees.push_back({std::move(key_), Weight::from_double(v)});
    return true;
  }
  bool inexact(const std::string& v) {
    return fail(detail::concat("payee ", key_, ": the integer ", v,
                               " is not exactly a JSON number (double); write it as a string, \"", v, "\""));
  }
  bool value(const char* what) {
    if (!at_value()) return fail("expected an object mapping payee DIDs to weights");
    return fail(detail::concat("payee ", key_, ": the weight is ", what,
                               "; expected a number or a decimal string"));
  }
  bool fail(std::string why) {
    if (error.empty()) error = std::move(why);
    return false;
  }
  std::string where_;
  std::string key_;
  int depth_ = 0;
};

void check_unique_and_valid(const std::vector<Payee>& payees, const std::string& where) {
  std::vector<std::string_view> ids(payees.size());
  for (std::size_t i = 0; i < payees.size(); ++i) ids[i] = payees[i].did;
  const auto order = detail::sorted_order(ids);
  for (std::size_t k = 0; k + 1 < order.size(); ++k)
    DIDMARK_EXPECTS(ids[order[k]] != ids[order[k + 1]], corrupt_input, where, ": payee ", ids[order[k]],
                    " is listed twice");
  for (const auto& p : payees) {
    try {
      detail::validate_did(p.did);
    } catch (const Error& e) {
      DIDMARK_THROW(Errc::corrupt_input, where, ": ", e.what());
    }
  }
}

std::vector<Payee> parse_weights_text(std::string_view text, const std::string& where) {
  WeightsSax sax(where);
  const bool ok = nlohmann::json::sax_parse(text.begin(), text.end(), &sax);
  DIDMARK_EXPECTS(ok && sax.error.empty(), corrupt_input, where, ": ",
                  sax.error.empty() ? std::string("not a JSON object of weights") : sax.error);
  check_unique_and_valid(sax.payees, where);
  return std::move(sax.payees);
}

// JSON with duplicate object keys refused (nlohmann would keep the last silently).
nlohmann::json parse_strict(std::string_view text, const std::string& where) {
  std::vector<std::set<std::string>> seen;
  std::string dup;
  nlohmann::json::parser_callback_t cb = [&](int, nlohmann::json::parse_event_t ev, nlohmann::json& parsed) {
    using E = nlohmann::json::parse_event_t;
    if (ev == E::object_start) seen.emplace_back();
    if (ev == E::object_end && !seen.empty()) seen.pop_back();
    if (ev == E::key && !seen.empty() && !seen.back().insert(parsed.get<std::string>()).second && dup.empty())
      dup = parsed.get<std::string>();
    return true;
  };
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(text.begin(), text.end(), cb);
  } catch (const nlohmann::json::parse_error& e) {
    DIDMARK_THROW(Errc::corrupt_input, where, ": not valid JSON (syntax error at byte ", e.byte, ")");
  }
  DIDMARK_EXPECTS(dup.empty(), corrupt_input, where, ": key '", dup, "' appears twice in one object");
  return j;
}

}  // namespace

std::vector<Payee> load_weights(const std::filesystem::path& path) {
  return parse_weights_text(read_file(path, "weights file"), path.string());
}

Policy load_policy(const std::filesystem::path& path, std::span<const Payee> input) {
  return parse_policy(read_file(path, "policy file"), path.string(), input, path.parent_path());
}

Policy parse_policy(std::string_view text, std::string_view source, std::span<const Payee> input,
                    const std::optional<std::filesystem::path>& files_from) {
  const std::string where(source);
  const nlohmann::json j = parse_strict(std::string(text), where);
  DIDMARK_EXPECTS(j.is_object(), corrupt_input, where, ": a policy is a JSON object with \"levels\"");
  static const std::set<std::string> top_fields = {"levels", "negative_weights", "fallback", "version", "comment"};
  for (auto it = j.begin(); it != j.end(); ++it)
    DIDMARK_EXPECTS(top_fields.count(it.key()), corrupt_input, where, ": unknown field '", it.key(),
                    "' (known: levels, negative_weights, fallback, version, comment)");
  if (j.contains("version"))
    DIDMARK_EXPECTS(j["version"] == 1, corrupt_input, where, ": field 'version' must be 1");
  Policy p;
  if (j.contains("negative_weights")) {
    const auto& v = j["negative_weights"];
    const auto nw = v.is_string() ? parse_negative_weights(v.get<std::string>()) : std::nullopt;
    DIDMARK_EXPECTS(nw.has_value(), corrupt_input, where, ": 'negative_weights' must be \"clip\", \"shift\" or \"refuse\"");
    p.negative = *nw;
  }
  auto did_field = [&](const nlohmann::json& obj, const char* key, const std::string& at) -> std::optional<std::string> {
    if (!obj.contains(key)) return std::nullopt;
    DIDMARK_EXPECTS(obj[key].is_string(), corrupt_input, at, ": '", key, "' must be a DID string");
    try {
      return parse_did(obj[key].get<std::string>()).did;
    } catch (const Error& e) {
      DIDMARK_THROW(Errc::corrupt_input, at, ": '", key, "': ", e.what());
    }
  };
  p.fallback = did_field(j, "fallback", where);
  DIDMARK_EXPECTS(j.contains("levels") && j["levels"].is_array() && !j["levels"].empty(), corrupt_input, where,
                  ": 'levels' must be a non-empty array");
  static const std::set<std::string> level_fields = {"name", "keep_bps", "weights", "weights_file", "fallback",
                                                     "comment"};
  bool used_input = false;
  const auto& levels = j["levels"];
  for (std::size_t k = 0; k < levels.size(); ++k) {
    const std::string at = detail::concat(where, ": levels[", k, "]");
    const auto& l = levels[k];
    DIDMARK_EXPECTS(l.is_object(), corrupt_input, at, " is not an object");
    for (auto it = l.begin(); it != l.end(); ++it)
      DIDMARK_EXPECTS(level_fields.count(it.key()), corrupt_input, at, ": unknown field '", it.key(),
                      "' (known: name, keep_bps, weights, weights_file, fallback, comment)");
    Level lv;
    if (l.contains("name")) {
      DIDMARK_EXPECTS(l["name"].is_string(), corrupt_input, at, ": 'name' must be a string");
      lv.name = l["name"].get<std::string>();
    } else {
      lv.name = "level " + std::to_string(k + 1);
    }
    if (l.contains("keep_bps")) {
      const auto& b = l["keep_bps"];
      DIDMARK_EXPECTS(b.is_number_integer() && b.get<int64_t>() >= 0 && b.get<int64_t>() <= 10000, corrupt_input, at,
                      ": 'keep_bps' must be an integer number of basis points, 0..10000");
      lv.keep_bps = static_cast<int>(b.get<int64_t>());
    }
    DIDMARK_EXPECTS(k + 1 < levels.size() || !lv.keep_bps || *lv.keep_bps == 10000, corrupt_input, at,
                    " is the last level: it keeps everything that reaches it (drop 'keep_bps')");
    DIDMARK_EXPECTS(k + 1 == levels.size() || lv.keep_bps, corrupt_input, at,
                    ": 'keep_bps' is required on every level but the last (how much stays at this level)");
    lv.fallback = did_field(l, "fallback", at);
    const bool has_w = l.contains("weights"), has_f = l.contains("weights_file");
    DIDMARK_EXPECTS(has_w != has_f, corrupt_input, at, ": give exactly one of 'weights' and 'weights_file'");
    if (has_f) {
      DIDMARK_EXPECTS(files_from.has_value(), invalid_argument, at,
                      " names a weights_file; this policy gives 'weights' inline (an object, or \"input\" for the "
                      "request's weights)");
      DIDMARK_EXPECTS(l["weights_file"].is_string(), corrupt_input, at, ": 'weights_file' must be a path");
      std::filesystem::path f = l["weights_file"].get<std::string>();
      if (f.is_relative()) f = *files_from / f;
      lv.payees = load_weights(f);
    } else if (l["weights"].is_string()) {
      DIDMARK_EXPECTS(l["weights"] == "input", corrupt_input, at,
                      ": 'weights' is an object of weights or the string \"input\" (the --weights file)");
      // An empty input would silently pay this level's share to the fallback payee.
      DIDMARK_EXPECTS(!input.empty(), invalid_argument, at,
                      " takes the input weights (\"weights\": \"input\") but none were given: pass --weights FILE "
                      "(or the request's weights)");
      lv.payees.assign(input.begin(), input.end());
      used_input = true;
    } else {
      DIDMARK_EXPECTS(l["weights"].is_object(), corrupt_input, at,
                      ": 'weights' must be an object mapping payee DIDs to weights");
      lv.payees = parse_weights_text(l["weights"].dump(), at + ".weights");
    }
    p.levels.push_back(std::move(lv));
  }
  DIDMARK_EXPECTS(used_input || input.empty(), invalid_argument, where,
                  ": the policy never uses the input weights (mark a level with \"weights\": \"input\")");
  return p;
}

std::string canonicalize_json(std::string_view json_text) {
  return detail::jcs(detail::parse_json(json_text, "input"));
}

}  // namespace didmark
