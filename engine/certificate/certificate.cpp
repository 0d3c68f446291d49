// Mark certificates: W3C VC 2.0 + eddsa-jcs-2022, countersigned by chained proofs.
#include <algorithm>
#include <cmath>

#include "didmark/certificate.hpp"
#include "didmark/checkpoint.hpp"
#include "didmark/error.hpp"
#include "didmark/identity.hpp"
#include "didmark/io.hpp"
#include "identity/crypto.hpp"
#include "royalty/data_integrity.hpp"
#include "royalty/jcs.hpp"

namespace didmark {

namespace {

namespace fs = std::filesystem;
using nlohmann::json;

constexpr std::string_view kVcContext = "https://www.w3.org/ns/credentials/v2";
constexpr std::string_view kType = "DidmarkMarkCertificate";
constexpr std::string_view kSubjectType = "DidmarkMark";
constexpr std::string_view kPayload = "did-codeword-v1";
constexpr int64_t kMaxExactInteger = int64_t(1) << 53;

bool is_hex64(const std::string& s) {
  return s.size() == 64 && std::all_of(s.begin(), s.end(), [](char c) {
           return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
         });
}

// A resource name: relative, '/'-separated, no empty, "." or ".." segment.
bool is_resource_name(const std::string& n) {
  if (n.empty() || n.front() == '/' || n.back() == '/' || n.find('\\') != std::string::npos) return false;
  std::size_t at = 0;
  while (at <= n.size()) {
    const std::size_t end = std::min(n.find('/', at), n.size());
    const std::string seg = n.substr(at, end - at);
    if (seg.empty() || seg == "." || seg == "..") return false;
    at = end + 1;
  }
  return true;
}

// Why `r` is not a valid resource entry (empty when it is).
std::string resource_problem(const ModelResource& r) {
  if (!is_resource_name(r.name)) return "a resource name is not a relative path";
  if (r.algorithm != "sha256") return "resource '" + r.name + "' has algorithm other than sha256";
  if (!is_hex64(r.digest)) return "resource '" + r.name + "' has a digest that is not 64 lower-case hex digits";
  return {};
}

// A UUID (version 8, RFC 9562) made of the first 16 bytes of SHA-256(text).
std::string uuid_of(std::string_view text) {
  auto h = detail::sha256(text);
  h[6] = static_cast<uint8_t>((h[6] & 0x0F) | 0x80);
  h[8] = static_cast<uint8_t>((h[8] & 0x3F) | 0x80);
  const std::string x = detail::to_hex(std::span<const uint8_t>(h.data(), 16));
  return "urn:uuid:" + x.substr(0, 8) + "-" + x.substr(8, 4) + "-" + x.substr(12, 4) + "-" + x.substr(16, 4) + "-" +
         x.substr(20);
}

json resource_json(const ModelResource& r) {
  return {{"name", r.name}, {"algorithm", r.algorithm}, {"digest", r.digest}};
}

json proof_options(const std::string& id, const std::string& created, const std::string& did) {
  return {{"id", id},
          {"type", "DataIntegrityProof"},
          {"cryptosuite", "eddsa-jcs-2022"},
          {"created", created},
          {"verificationMethod", detail::did_key_verification_method(did)},
          {"proofPurpose", "assertionMethod"}};
}

std::string canonical_text(const json& doc) {
  std::string s = detail::jcs(doc);
  s.push_back('\n');
  return s;
}

// ---- reading a certificate ----

struct Fail {
  std::string reason;
};

const json& member(const json& obj, const char* key, const std::string& where) {
  if (!obj.is_object() || !obj.contains(key)) throw Fail{where + " has no '" + key + "'"};
  return obj[key];
}
std::string string_of(const json& obj, const char* key, const std::string& where) {
  const json& v = member(obj, key, where);
  if (!v.is_string()) throw Fail{where + "." + key + " is not a string"};
  return v.get<std::string>();
}
ModelResource resource_of(const json& r, const std::string& where) {
  if (!r.is_object()) throw Fail{where + " is not an object"};
  ModelResource out{string_of(r, "name", where), string_of(r, "algorithm", where), string_of(r, "digest", where)};
  const std::string p = resource_problem(out);
  if (!p.empty()) throw Fail{where + ": " + p};
  return out;
}

MarkCertificate read_claims(const json& doc) {
  MarkCertificate c;
  if (!doc.is_object()) throw Fail{"the certificate is not a JSON object"};
  const json& ctx = member(doc, "@context", "the credential");
  if (!ctx.is_array() || ctx.empty() || ctx[0] != kVcContext)
    throw Fail{"the credential's first @context is not " + std::string(kVcContext)};
  const json& type = member(doc, "type", "the credential");
  if (!type.is_array() || std::find(type.begin(), type.end(), "VerifiableCredential") == type.end() ||
      std::find(type.begin(), type.end(), kType) == type.end())
    throw Fail{"the credential's type is not [VerifiableCredential, DidmarkMarkCertificate]"};
  c.id = string_of(doc, "id", "the credential");
  c.owner = string_of(doc, "issuer", "the credential");
  try {
    if (!parse_did(c.owner).ed25519_public) throw Fail{"the issuer is not an Ed25519 did:key"};
  } catch (const Error& e) {
    throw Fail{std::string("the issuer: ") + e.what()};
  }
  c.marked_at = string_of(doc, "validFrom", "the credential");
  if (!parse_rfc3339(c.marked_at)) throw Fail{"validFrom is not an RFC 3339 date-time"};

  const json& s = member(doc, "credentialSubject", "the credential");
  if (string_of(s, "id", "credentialSubject") != c.owner)
    throw Fail{"credentialSubject.id is not the issuer: a certificate is signed by the owner it names"};
  if (string_of(s, "type", "credentialSubject") != kSubjectType)
    throw Fail{"credentialSubject.type is not " + std::string(kSubjectType)};

  const json& m = member(s, "mark", "credentialSubject");
  const auto scheme = parse_scheme(string_of(m, "scheme", "credentialSubject.mark"));
  if (!scheme) throw Fail{"credentialSubject.mark.scheme is not spread-spectrum or stdm"};
  c.scheme = *scheme;
  c.carrier = string_of(m, "carrier", "credentialSubject.mark");
  if (c.carrier != kCarrierVersion) throw Fail{"credentialSubject.mark.carrier is not " + std::string(kCarrierVersion)};
  const json& st = member(m, "strength", "credentialSubject.mark");
  if (!st.is_number() || !(st.get<double>() > 0) || !std::isfinite(st.get<double>()))
    throw Fail{"credentialSubject.mark.strength is not a positive number"};
  c.strength = st.get<double>();
  c.tensors = string_of(m, "tensors", "credentialSubject.mark");
  if (string_of(m, "payload", "credentialSubject.mark") != kPayload)
    throw Fail{"credentialSubject.mark.payload is not " + std::string(kPayload)};
  const json& pb = member(m, "payloadBits", "credentialSubject.mark");
  if (!pb.is_number_integer() || pb.get<int64_t>() < 1 || pb.get<int64_t>() > static_cast<int64_t>(kMaxPayloadBits))
    throw Fail{"credentialSubject.mark.payloadBits is not an integer in 1..4096"};
  c.payload_bits = static_cast<int>(pb.get<int64_t>());
  c.key_digest = string_of(m, "keyDigest", "credentialSubject.mark");
  if (!is_hex64(c.key_digest)) throw Fail{"credentialSubject.mark.keyDigest is not 64 lower-case hex digits"};
  if (m.contains("verificationKey")) {
    const std::string k = string_of(m, "verificationKey", "credentialSubject.mark");
    if (!is_hex64(k)) throw Fail{"credentialSubject.mark.verificationKey is not 64 lower-case hex digits"};
    c.verification_key = WatermarkKey::from_hex(k);
    if (watermark_key_digest(*c.verification_key) != c.key_digest)
      throw Fail{"credentialSubject.mark.verificationKey does not match keyDigest"};
  }

  const json& model = member(s, "model", "credentialSubject");
  c.model_format = string_of(model, "format", "credentialSubject.model");
  const json& rs = member(model, "resources", "credentialSubject.model");
  if (!rs.is_array() || rs.empty()) throw Fail{"credentialSubject.model.resources is not a non-empty array"};
  for (std::size_t i = 0; i < rs.size(); ++i) {
    c.resources.push_back(resource_of(rs[i], detail::concat("credentialSubject.model.resources[", i, "]")));
    if (i > 0 && !(c.resources[i - 1].name < c.resources[i].name))
      throw Fail{"credentialSubject.model.resources are not sorted by name without repeats"};
  }
  if (model.contains("parameters") || model.contains("dtypes")) {
    ModelSummary sum;
    sum.format = c.model_format;
    const json& p = member(model, "parameters", "credentialSubject.model");
    if (!p.is_number_integer() || p.get<int64_t>() < 0 || p.get<int64_t>() >= kMaxExactInteger)
      throw Fail{"credentialSubject.model.parameters is not a non-negative integer"};
    sum.parameters = p.get<int64_t>();
    const json& d = member(model, "dtypes", "credentialSubject.model");
    if (!d.is_object()) throw Fail{"credentialSubject.model.dtypes is not an object"};
    for (auto it = d.begin(); it != d.end(); ++it) {
      if (!parse_dtype(it.key()) || !it->is_number_integer() || it->get<int64_t>() < 0 ||
          it->get<int64_t>() >= kMaxExactInteger)
        throw Fail{"credentialSubject.model.dtypes must map dtype names to element counts"};
      sum.dtypes[it.key()] = it->get<int64_t>();
    }
    c.summary = std::move(sum);
  }
  if (s.contains("sketch")) c.sketch = resource_of(s["sketch"], "credentialSubject.sketch");
  return c;
}

}  // namespace

// ---- model files -----------------------------------------------------------------------------

ModelResource file_resource(const fs::path& file, std::string name) {
  const MappedFile f(file);
  f.advise_sequential();
  const auto h = detail::sha256(std::span<const uint8_t>(f.data(), f.size()));
  return ModelResource{std::move(name), "sha256", detail::to_hex(h)};
}

std::vector<ModelResource> model_resources(const fs::path& path) {
  std::error_code ec;
  DIDMARK_EXPECTS(fs::exists(path, ec), not_found, "model '", path.string(), "' does not exist");
  std::vector<ModelResource> out;
  if (guess_checkpoint_format(path) == CheckpointFormat::safetensors_sharded) {
    const fs::path index = resolve_checkpoint_path(path, CheckpointFormat::safetensors_sharded);
    const SafetensorsIndex idx = read_safetensors_index(index);
    out.push_back(file_resource(index, index.filename().string()));
    for (const auto& shard : idx.shards) out.push_back(file_resource(idx.folder() / shard, shard));
  } else {
    DIDMARK_EXPECTS(!fs::is_directory(path, ec), invalid_argument, "model '", path.string(),
                    "' is a folder but not a sharded checkpoint (no *.safetensors.index.json in it)");
    out.push_back(file_resource(path, path.filename().string()));
  }
  std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.name < b.name; });
  for (std::size_t i = 1; i < out.size(); ++i)
    DIDMARK_EXPECTS(out[i - 1].name != out[i].name, corrupt_input, "model '", path.string(), "' lists file '",
                    out[i].name, "' twice");
  return out;
}

double ModelSummary::bytes_per_parameter() const noexcept {
  double bytes = 0;
  int64_t n = 0;
  for (const auto& [name, count] : dtypes)
    if (const auto t = parse_dtype(name)) {
      bytes += static_cast<double>(count) * static_cast<double>(dtype_size(*t));
      n += count;
    }
  return n > 0 ? bytes / static_cast<double>(n) : 0;
}

std::optional<ModelSummary> summarize_checkpoint(const fs::path& path) {
  const auto fmt = guess_checkpoint_format(path);
  if (!fmt || (*fmt == CheckpointFormat::torch && !torch_available())) return std::nullopt;
  try {
    const CheckpointReader r = CheckpointReader::open(path, *fmt);
    ModelSummary s;
    s.format = std::string(checkpoint_format_name(*fmt));
    for (const auto& t : r.tensors()) {
      s.parameters += t.view.numel();
      s.dtypes[std::string(dtype_name(t.view.dtype))] += t.view.numel();
    }
    return s;
  } catch (const Error&) {
    return std::nullopt;  // not a checkpoint didmark reads: the certificate simply has no summary
  }
}

std::string watermark_key_digest(const WatermarkKey& key) {
  std::string m = "didmark/watermark-key-digest/v1";
  m.push_back('\0');
  m.append(reinterpret_cast<const char*>(key.bytes.data()), key.bytes.size());
  const std::string out = detail::to_hex(detail::sha256(m));
  std::fill(m.begin(), m.end(), '\0');
  return out;
}

std::string compare_resources(std::span<const ModelResource> certified, std::span<const ModelResource> actual) {
  // One file each: a renamed copy is the same model (its name is only the file's own name).
  if (certified.size() == 1 && actual.size() == 1) {
    if (certified[0].algorithm == actual[0].algorithm && certified[0].digest == actual[0].digest) return {};
    return "file '" + actual[0].name + "' is not the certified '" + certified[0].name + "' (sha256 " +
           actual[0].digest.substr(0, 16) + "... instead of " + certified[0].digest.substr(0, 16) + "...)";
  }
  std::size_t i = 0, j = 0;
  while (i < certified.size() || j < actual.size()) {
    if (j == actual.size() || (i < certified.size() && certified[i].name < actual[j].name))
      return "the model has no file '" + certified[i].name + "' (certified)";
    if (i == certified.size() || actual[j].name < certified[i].name)
      return "the model's file '" + actual[j].name + "' is not in the certificate";
    if (certified[i].digest != actual[j].digest || certified[i].algorithm != actual[j].algorithm)
      return "file '" + actual[j].name + "' differs from the certified one (sha256 " + actual[j].digest.substr(0, 16) +
             "... instead of " + certified[i].digest.substr(0, 16) + "...)";
    ++i;
    ++j;
  }
  return {};
}

// ---- signing -------------------------------------------------------------------------------

std::string make_mark_certificate(const MarkCertificate& claim, const Identity& owner) {
  const std::string did = owner.did();
  DIDMARK_EXPECTS(!did.empty(), invalid_argument, "a mark certificate needs the owner's identity to sign it");
  DIDMARK_EXPECTS(!claim.resources.empty(), invalid_argument, "a mark certificate needs the model's files");
  for (std::size_t i = 0; i < claim.resources.size(); ++i) {
    const std::string p = resource_problem(claim.resources[i]);
    DIDMARK_EXPECTS(p.empty(), invalid_argument, "mark certificate: ", p);
    DIDMARK_EXPECTS(i == 0 || claim.resources[i - 1].name < claim.resources[i].name, invalid_argument,
                    "mark certificate: resources must be sorted by name without repeats");
  }
  if (claim.sketch) {
    const std::string p = resource_problem(*claim.sketch);
    DIDMARK_EXPECTS(p.empty(), invalid_argument, "mark certificate: the sketch: ", p);
  }
  DIDMARK_EXPECTS(claim.strength > 0 && std::isfinite(claim.strength), invalid_argument,
                  "mark certificate: the strength must be a positive number");
  DIDMARK_EXPECTS(claim.payload_bits >= 1 && claim.payload_bits <= static_cast<int>(kMaxPayloadBits), invalid_argument,
                  "mark certificate: payload bits must be in 1..4096");
  DIDMARK_EXPECTS(claim.carrier == kCarrierVersion, invalid_argument, "mark certificate: unknown carrier version '",
                  claim.carrier, "'");
  std::string key_digest = claim.key_digest;
  if (claim.verification_key) {
    const std::string d = watermark_key_digest(*claim.verification_key);
    DIDMARK_EXPECTS(key_digest.empty() || key_digest == d, invalid_argument,
                    "mark certificate: the key digest is not the digest of the disclosed key");
    key_digest = d;
  }
  DIDMARK_EXPECTS(is_hex64(key_digest), invalid_argument,
                  "mark certificate: the watermark key digest must be 64 lower-case hex digits");
  const std::string at = claim.marked_at.empty() ? utc_now_ms() : claim.marked_at;
  DIDMARK_EXPECTS(parse_rfc3339(at).has_value(), invalid_argument, "mark certificate: time '", at,
                  "' is not an RFC 3339 date-time (e.g. 2026-05-01T12:00:00Z)");

  json mark = {{"scheme", std::string(scheme_name(claim.scheme))},
               {"carrier", claim.carrier},
               {"strength", claim.strength},
               {"tensors", claim.tensors},
               {"payload", std::string(kPayload)},
               {"payloadBits", claim.payload_bits},
               {"keyDigest", key_digest}};
  if (claim.verification_key) mark["verificationKey"] = claim.verification_key->to_hex();
  json resources = json::array();
  for (const auto& r : claim.resources) resources.push_back(resource_json(r));
  json model = {{"format", claim.model_format}, {"resources", std::move(resources)}};
  if (claim.summary) {
    DIDMARK_EXPECTS(claim.summary->parameters >= 0 && claim.summary->parameters < kMaxExactInteger, invalid_argument,
                    "mark certificate: parameter count out of range");
    model["parameters"] = claim.summary->parameters;
    model["dtypes"] = claim.summary->dtypes;
  }
  json subject = {{"id", did}, {"type", std::string(kSubjectType)}, {"mark", std::move(mark)}, {"model", std::move(model)}};
  if (claim.sketch) subject["sketch"] = resource_json(*claim.sketch);

  json doc = {{"@context", json::array({std::string(kVcContext)})},
              {"type", json::array({"VerifiableCredential", std::string(kType)})},
              {"issuer", did},
              {"validFrom", at},
              {"credentialSubject", std::move(subject)}};
  doc["id"] = uuid_of(detail::jcs(doc));
  const std::string id = doc["id"].get<std::string>();
  doc = detail::eddsa_jcs_2022_add_proof(std::move(doc), proof_options(uuid_of("owner-proof " + id), at, did), owner);
  return canonical_text(doc);
}

std::string countersign_certificate(std::string_view certificate, const Identity& authority, std::string_view time) {
  const CertificateCheck c = verify_certificate(certificate);
  DIDMARK_EXPECTS(c.valid, invalid_argument, "the certificate does not verify (", c.reason,
                  "): an authority countersigns only a valid certificate");
  DIDMARK_EXPECTS(!authority.did().empty(), invalid_argument, "countersigning needs the authority's identity");
  DIDMARK_EXPECTS(authority.did() != c.certificate.owner, invalid_argument,
                  "the owner cannot countersign their own certificate: the time must come from someone else");
  for (const auto& cs : c.countersignatures)
    DIDMARK_EXPECTS(cs.authority != authority.did(), invalid_argument, "authority ", authority.did(),
                    " has already countersigned this certificate (at ", cs.time, ")");
  const std::string at = time.empty() ? utc_now_ms() : std::string(time);
  DIDMARK_EXPECTS(parse_rfc3339(at).has_value(), invalid_argument, "countersignature time '", at,
                  "' is not an RFC 3339 date-time");
  json doc = detail::parse_json(certificate, "the certificate");
  const json& proofs = doc["proof"];
  std::string owner_proof;
  for (const auto& p : proofs.is_array() ? proofs : json::array({proofs}))
    if (!p.contains("previousProof")) owner_proof = p["id"].get<std::string>();
  json opts = proof_options(uuid_of("countersignature " + c.certificate.id + " " + authority.did() + " " + at), at,
                            authority.did());
  opts["previousProof"] = owner_proof;
  doc = detail::eddsa_jcs_2022_add_proof(std::move(doc), std::move(opts), authority);
  return canonical_text(doc);
}

// ---- verifying -------------------------------------------------------------------------------

CertificateCheck verify_certificate(std::string_view bytes, std::span<const std::string> trusted) {
  CertificateCheck out;
  const json doc = detail::parse_json(bytes, "the certificate");
  out.canonical = canonical_text(doc) == bytes;
  try {
    out.certificate = read_claims(doc);
    const MarkCertificate& c = out.certificate;
    const json& proof = member(doc, "proof", "the credential");
    const json proofs = proof.is_array() ? proof : json::array({proof});
    if (proofs.empty()) throw Fail{"the credential's proof set is empty"};

    // The owner's proof: the one proof that chains to nothing.
    const json* owner = nullptr;
    for (const auto& p : proofs) {
      if (!p.is_object()) throw Fail{"a proof is not a JSON object"};
      if (p.contains("previousProof")) continue;
      if (owner) throw Fail{"the credential has more than one unchained proof"};
      owner = &p;
    }
    if (!owner) throw Fail{"the credential has no owner proof (every proof is chained)"};
    const std::string vm = owner->value("verificationMethod", "");
    if (vm.substr(0, vm.find('#')) != c.owner) throw Fail{"the owner proof was not made by the issuer " + c.owner};
    if (owner->value("proofPurpose", "") != "assertionMethod") throw Fail{"the owner proof's purpose is not assertionMethod"};
    if (owner->value("created", "") != c.marked_at) throw Fail{"the owner proof's created differs from validFrom"};
    std::string why = detail::eddsa_jcs_2022_verify_proof(detail::proof_chain_input(doc, json()), *owner);
    if (!why.empty()) throw Fail{"owner proof: " + why};
    const json owner_id = owner->contains("id") ? (*owner)["id"] : json();

    // Countersignatures: proofs chained to the owner's.
    for (std::size_t k = 0; k < proofs.size(); ++k) {
      const json& p = proofs[k];
      if (&p == owner) continue;
      const std::string where = detail::concat("countersignature ", k);
      if (!owner_id.is_string() || p["previousProof"] != owner_id)
        throw Fail{where + " is not chained to the owner proof (previousProof must be its id)"};
      const std::string avm = p.value("verificationMethod", "");
      const std::string auth = avm.substr(0, avm.find('#'));
      if (auth == c.owner) throw Fail{where + " is by the owner: a countersignature must come from someone else"};
      if (p.value("proofPurpose", "") != "assertionMethod") throw Fail{where + ": purpose is not assertionMethod"};
      if (!p.contains("created")) throw Fail{where + " has no time (created)"};
      json input;
      try {
        input = detail::proof_chain_input(doc, p["previousProof"]);
      } catch (const Error& e) {
        throw Fail{where + ": " + e.what()};
      }
      why = detail::eddsa_jcs_2022_verify_proof(std::move(input), p);
      if (!why.empty()) throw Fail{where + " by " + auth + ": " + why};
      const bool ok = trusted.empty() || std::find(trusted.begin(), trusted.end(), auth) != trusted.end();
      out.countersignatures.push_back({auth, p["created"].get<std::string>(), ok});
    }
    out.valid = true;
  } catch (const Fail& f) {
    out.reason = f.reason;
  } catch (const Error& e) {
    out.reason = e.what();
  }
  // The time that orders it: the earliest trusted countersignature, else the owner's own.
  out.time = out.certificate.marked_at;
  if (out.valid) {
    std::optional<std::pair<int64_t, int32_t>> best;
    for (const auto& cs : out.countersignatures) {
      const auto t = parse_rfc3339(cs.time);
      if (!cs.trusted || !t || (best && !(*t < *best))) continue;
      best = t;
      out.time = cs.time;
      out.authority = cs.authority;
      out.countersigned = true;
    }
  }
  return out;
}

}  // namespace didmark
