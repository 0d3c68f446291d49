#include "royalty/data_integrity.hpp"

#include "didmark/error.hpp"
#include "identity/base58.hpp"
#include "identity/crypto.hpp"
#include "royalty/jcs.hpp"

namespace didmark::detail {

namespace {
constexpr std::string_view kSuite = "eddsa-jcs-2022";

std::array<uint8_t, 64> hash_data(std::string_view canonical_config, std::string_view canonical_document) {
  std::array<uint8_t, 64> h{};
  const auto a = sha256(canonical_config), b = sha256(canonical_document);
  std::copy(a.begin(), a.end(), h.begin());
  std::copy(b.begin(), b.end(), h.begin() + 32);
  return h;
}

bool is_datetime(const std::string& s) {
  // RFC 3339 / XML Schema dateTime with a time zone: YYYY-MM-DDThh:mm:ss[.f+](Z|+hh:mm|-hh:mm).
  auto digits = [&](std::size_t at, std::size_t n) {
    if (at + n > s.size()) return false;
    for (std::size_t i = at; i < at + n; ++i)
      if (s[i] < '0' || s[i] > '9') return false;
    return true;
  };
  if (!(digits(0, 4) && s.size() > 19 && s[4] == '-' && digits(5, 2) && s[7] == '-' && digits(8, 2) &&
        (s[10] == 'T' || s[10] == 't') && digits(11, 2) && s[13] == ':' && digits(14, 2) && s[16] == ':' &&
        digits(17, 2)))
    return false;
  std::size_t i = 19;
  if (i < s.size() && s[i] == '.') {
    ++i;
    if (!digits(i, 1)) return false;
    while (i < s.size() && s[i] >= '0' && s[i] <= '9') ++i;
  }
  if (i < s.size() && (s[i] == 'Z' || s[i] == 'z')) return i + 1 == s.size();
  return i + 6 == s.size() && (s[i] == '+' || s[i] == '-') && digits(i + 1, 2) && s[i + 3] == ':' && digits(i + 4, 2);
}
// o[key] when it is a string, else "" (without json::value, which GCC's -Wnull-dereference
// misreads once inlined here).
std::string text_of(const nlohmann::json& o, const char* key) {
  if (!o.is_object()) return {};
  const auto it = o.find(key);
  if (it == o.end() || !it->is_string()) return {};
  return it->get_ref<const std::string&>();
}
}  // namespace

std::string did_key_verification_method(std::string_view did) {
  const DidInfo info = parse_did(did);
  DIDMARK_EXPECTS(info.ed25519_public.has_value(), invalid_argument, "'", did,
                  "' is not an Ed25519 did:key and cannot sign");
  return std::string(did) + "#" + std::string(did.substr(8));
}

nlohmann::json eddsa_jcs_2022_prove(std::string_view canonical_document, const nlohmann::json& document_context,
                                    nlohmann::json options, const Identity& signer) {
  DIDMARK_EXPECTS(options.is_object() && options.value("type", "") == "DataIntegrityProof" &&
                      options.value("cryptosuite", "") == kSuite,
                  invalid_argument, "proof options must have type DataIntegrityProof and cryptosuite ", kSuite);
  if (options.contains("created"))
    DIDMARK_EXPECTS(options["created"].is_string() && is_datetime(options["created"].get<std::string>()),
                    invalid_argument, "proof option 'created' is not an RFC 3339 date-time");
  options.erase("proofValue");
  if (!document_context.is_null()) options["@context"] = document_context;
  const std::string config = jcs(options);
  const auto sig = signer.sign(hash_data(config, canonical_document));
  options["proofValue"] = "z" + base58btc_encode(sig);
  return options;
}

nlohmann::json eddsa_jcs_2022_sign(nlohmann::json document, nlohmann::json options, const Identity& signer) {
  document.erase("proof");
  const std::string canonical = jcs(document);
  const nlohmann::json ctx = document.contains("@context") ? document["@context"] : nlohmann::json();
  document["proof"] = eddsa_jcs_2022_prove(canonical, ctx, std::move(options), signer);
  return document;
}

std::string eddsa_jcs_2022_verify(const nlohmann::json& secured, const std::array<uint8_t, 32>* public_key) {
  if (!secured.is_object()) return "the document is not a JSON object";
  if (!secured.contains("proof")) return "the document has no proof";
  if (!secured["proof"].is_object()) return "the proof is not a single JSON object";
  nlohmann::json unsecured = secured;
  unsecured.erase("proof");
  return eddsa_jcs_2022_verify_proof(unsecured, secured["proof"], public_key);
}

std::string eddsa_jcs_2022_verify_proof(nlohmann::json unsecured, const nlohmann::json& proof,
                                        const std::array<uint8_t, 32>* public_key) {
  if (!proof.is_object()) return "the proof is not a JSON object";
  if (text_of(proof, "type") != "DataIntegrityProof") return "proof type is not DataIntegrityProof";
  if (text_of(proof, "cryptosuite") != kSuite) return "proof cryptosuite is not eddsa-jcs-2022";
  if (!proof.contains("proofValue") || !proof["proofValue"].is_string()) return "the proof has no proofValue";
  if (proof.contains("created") && !(proof["created"].is_string() && is_datetime(proof["created"].get<std::string>())))
    return "proof 'created' is not an RFC 3339 date-time";
  const std::string& pv = proof["proofValue"].get_ref<const std::string&>();
  if (pv.empty() || pv[0] != 'z') return "proofValue is not multibase base58btc ('z...')";
  std::vector<uint8_t> sig;
  try {
    sig = base58btc_decode(std::string_view(pv).substr(1));
  } catch (const Error& e) {
    return std::string("proofValue: ") + e.what();
  }
  if (sig.size() != 64) return "proofValue does not hold a 64-byte Ed25519 signature";

  nlohmann::json options = proof;
  options.erase("proofValue");
  if (options.contains("@context")) {
    // The document's @context must begin with the proof's, in order (vc-di-eddsa 3.3.2).
    const nlohmann::json& pc = options["@context"];
    const nlohmann::json dc = unsecured.contains("@context") ? unsecured["@context"] : nlohmann::json();
    const nlohmann::json pa = pc.is_array() ? pc : nlohmann::json::array({pc});
    const nlohmann::json da = dc.is_array() ? dc : (dc.is_null() ? nlohmann::json::array() : nlohmann::json::array({dc}));
    if (pa.size() > da.size() || !std::equal(pa.begin(), pa.end(), da.begin()))
      return "the proof's @context does not match the document's";
    unsecured["@context"] = pc;
  } else if (unsecured.contains("@context")) {
    options["@context"] = unsecured["@context"];  // the proof configuration takes the document's
  }

  std::array<uint8_t, 32> key{};
  if (public_key) {
    key = *public_key;
  } else {
    const std::string vm = text_of(proof, "verificationMethod");
    const std::size_t hash = vm.find('#');
    if (vm.rfind("did:key:", 0) != 0 || hash == std::string::npos) return "verificationMethod is not a did:key URL";
    const std::string did = vm.substr(0, hash);
    if (vm.substr(hash + 1) != did.substr(8)) return "verificationMethod fragment does not name the did:key's key";
    try {
      const DidInfo info = parse_did(did);
      if (!info.ed25519_public) return "verificationMethod is not an Ed25519 did:key";
      key = *info.ed25519_public;
    } catch (const Error& e) {
      return std::string("verificationMethod: ") + e.what();
    }
  }
  const std::string config = jcs(options);
  const std::string document = jcs(unsecured);
  const auto h = hash_data(config, document);
  if (!verify_signature(did_key_from_ed25519(key), h, sig)) return "the signature does not verify";
  return {};
}

nlohmann::json proof_chain_input(const nlohmann::json& secured, const nlohmann::json& previous) {
  nlohmann::json input = secured;
  input.erase("proof");
  if (previous.is_null()) return input;
  const nlohmann::json all = !secured.contains("proof")      ? nlohmann::json::array()
                             : secured["proof"].is_array() ? secured["proof"]
                                                            : nlohmann::json::array({secured["proof"]});
  const nlohmann::json ids = previous.is_array() ? previous : nlohmann::json::array({previous});
  nlohmann::json matching = nlohmann::json::array();
  for (const auto& id : ids) {
    DIDMARK_EXPECTS(id.is_string(), corrupt_input, "previousProof is not a proof id (a string)");
    const nlohmann::json* found = nullptr;
    for (const auto& p : all)
      if (p.is_object() && p.contains("id") && p["id"] == id) found = &p;
    DIDMARK_EXPECTS(found != nullptr, corrupt_input, "previousProof '", id.get<std::string>(),
                    "' names no proof of the document");
    matching.push_back(*found);
  }
  input["proof"] = std::move(matching);
  return input;
}

nlohmann::json eddsa_jcs_2022_add_proof(nlohmann::json secured, nlohmann::json options, const Identity& signer) {
  const nlohmann::json previous = options.contains("previousProof") ? options["previousProof"] : nlohmann::json();
  const nlohmann::json input = proof_chain_input(secured, previous);
  const nlohmann::json ctx = input.contains("@context") ? input["@context"] : nlohmann::json();
  nlohmann::json proof = eddsa_jcs_2022_prove(jcs(input), ctx, std::move(options), signer);
  nlohmann::json all = !secured.contains("proof")      ? nlohmann::json::array()
                       : secured["proof"].is_array() ? secured["proof"]
                                                      : nlohmann::json::array({secured["proof"]});
  all.push_back(std::move(proof));
  secured["proof"] = all.size() == 1 ? all[0] : all;
  return secured;
}

}  // namespace didmark::detail
