// DID syntax (W3C DID Core 3.1) and did:key (W3C CCG did:key method, multicodec + multibase).
#include <algorithm>
#include <array>

#include "common/printable.hpp"
#include "didmark/error.hpp"
#include "didmark/identity.hpp"
#include "identity/base58.hpp"
#include "identity/did_detail.hpp"

namespace didmark {

namespace {

constexpr std::size_t kMaxDidLength = 2048;

struct KeyCodec {
  uint32_t code;
  const char* name;
  std::size_t min_len, max_len;
};
// Public-key multicodecs seen in did:key. Only Ed25519 is used for signing here; the others
// are accepted as owner names.
constexpr KeyCodec kKeyCodecs[] = {
    {0xed, "ed25519-pub", 32, 32},    {0xec, "x25519-pub", 32, 32},     {0xe7, "secp256k1-pub", 33, 33},
    {0x1200, "p256-pub", 33, 33},     {0x1201, "p384-pub", 49, 49},     {0x1202, "p521-pub", 67, 67},
    {0xeb, "bls12_381-g2-pub", 96, 96}, {0x1205, "rsa-pub", 64, 4096},
};

// Character classes by table: bit 1 idchar (ALPHA DIGIT . - _), bit 2 base58btc, bit 4
// plain method-specific-id character (idchar or ':').
constexpr std::array<uint8_t, 256> kCharClass = [] {
  std::array<uint8_t, 256> t{};
  for (int c = 0; c < 256; ++c) {
    const bool alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
    const bool digit = c >= '0' && c <= '9';
    const bool id = alpha || digit || c == '.' || c == '-' || c == '_';
    const bool b58 = (alpha || digit) && c != '0' && c != 'O' && c != 'I' && c != 'l';
    t[static_cast<std::size_t>(c)] = static_cast<uint8_t>((id ? 1 : 0) | (b58 ? 2 : 0) | (id || c == ':' ? 4 : 0));
  }
  return t;
}();
uint8_t char_class(char c) { return kCharClass[static_cast<unsigned char>(c)]; }
bool is_idchar(char c) { return char_class(c) & 1; }
bool is_hexdig(char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'); }

std::string describe_char(std::string_view s, std::size_t i) {
  const auto c = static_cast<unsigned char>(s[i]);
  if (c >= 0x21 && c < 0x7f) return detail::concat("character '", s[i], "' at position ", i);
  return detail::concat("byte 0x", std::hex, int(c), std::dec, " at position ", i);
}

// Base58 strings of one length compare like the numbers they encode (the alphabet is in
// ASCII order), so an Ed25519 did:key value is valid exactly when it lies between the
// encodings of 0xed01 followed by 32 bytes of 0x00 and of 0xff: no decoding needed.
bool is_ed25519_key(std::string_view s) {
  static const auto bounds = [] {
    std::array<uint8_t, 34> lo{}, hi{};
    lo[0] = hi[0] = 0xed;
    lo[1] = hi[1] = 0x01;
    std::fill(hi.begin() + 2, hi.end(), 0xff);
    return std::pair{detail::base58btc_encode(lo), detail::base58btc_encode(hi)};
  }();
  const auto& [lo, hi] = bounds;
  if (lo.size() != hi.size() || s.size() != lo.size()) return false;
  for (char c : s)
    if (!(char_class(c) & 2)) return false;
  return s >= lo && s <= hi;
}

[[noreturn]] void refuse(std::string_view did, const std::string& why) {
  // Cap what we echo: a DID is public, but the caller may have pasted anything.
  const std::string shown = detail::printable(did, 120);  // control bytes escaped
  DIDMARK_THROW(Errc::invalid_argument, "invalid DID '", shown, "': ", why);
}

void parse_did_key(std::string_view did, std::string_view msid, DidInfo* info) {
  if (msid.empty() || msid[0] != 'z')
    refuse(did, "a did:key value must be multibase base58btc, starting with 'z'");
  if (!info && is_ed25519_key(msid.substr(1))) return;
  std::vector<uint8_t> raw;
  try {
    raw = detail::base58btc_decode(msid.substr(1));
  } catch (const Error& e) {
    refuse(did, detail::concat("the key is not base58btc: ", e.what(), " of the encoded key"));
  }
  // Unsigned varint multicodec prefix (at most 3 bytes for the codes we know).
  uint32_t code = 0;
  std::size_t n = 0;
  for (int shift = 0;; shift += 7) {
    if (n >= raw.size() || n >= 3) refuse(did, "the key has no valid multicodec prefix");
    const uint8_t b = raw[n++];
    code |= static_cast<uint32_t>(b & 0x7f) << shift;
    if (!(b & 0x80)) break;
  }
  const KeyCodec* codec = nullptr;
  for (const auto& k : kKeyCodecs)
    if (k.code == code) codec = &k;
  if (!codec)
    refuse(did, detail::concat("unknown public-key multicodec 0x", std::hex, code,
                               " (expected 0xed for Ed25519, 'z6Mk...')"));
  const std::size_t len = raw.size() - n;
  if (len < codec->min_len || len > codec->max_len)
    refuse(did, detail::concat(codec->name, " key is ", len, " bytes, expected ", codec->min_len,
                               codec->min_len == codec->max_len ? "" : detail::concat("..", codec->max_len)));
  if (code == 0xed && info) {
    std::array<uint8_t, 32> pk{};
    std::copy(raw.begin() + static_cast<std::ptrdiff_t>(n), raw.end(), pk.begin());
    info->ed25519_public = pk;
  }
}

// The whole check; fills `info` when given (no allocation otherwise beyond did:key's key).
void check_did(std::string_view did, DidInfo* info) {
  if (did.empty()) refuse(did, "it is empty");
  if (did.size() > kMaxDidLength) refuse(did, detail::concat("it is longer than ", kMaxDidLength, " characters"));
  if (did.substr(0, 4) != "did:") refuse(did, "a DID starts with 'did:'");
  const std::size_t colon = did.find(':', 4);
  if (colon == std::string_view::npos) refuse(did, "expected 'did:<method>:<method-specific-id>'");
  const std::string_view method = did.substr(4, colon - 4);
  if (method.empty()) refuse(did, "the method name is empty");
  for (std::size_t i = 0; i < method.size(); ++i) {
    const char c = method[i];
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9')))
      refuse(did, describe_char(did, 4 + i) + " is not allowed in a method name (lower-case letters and digits)");
  }
  const std::string_view msid = did.substr(colon + 1);
  if (msid.empty()) refuse(did, "the method-specific id is empty");
  for (std::size_t i = 0; i < msid.size(); ++i) {
    const char c = msid[i];
    if (char_class(c) & 4) continue;
    const std::size_t pos = colon + 1 + i;
    if (c == '%') {
      if (i + 2 >= msid.size() || !is_hexdig(msid[i + 1]) || !is_hexdig(msid[i + 2]))
        refuse(did, detail::concat("'%' at position ", pos, " does not start a %XX escape"));
      i += 2;
    } else if (c == '#' || c == '?' || c == '/') {
      refuse(did, describe_char(did, pos) + ": this is a DID URL (path, query or fragment), not a DID");
    } else if (c != ':' && !is_idchar(c)) {
      refuse(did, describe_char(did, pos) + " is not allowed in a DID");
    }
  }
  if (msid.back() == ':') refuse(did, "the method-specific id ends with ':'");

  if (info) {
    info->did = std::string(did);
    info->method = std::string(method);
  }
  if (method == "key") parse_did_key(did, msid, info);
}

}  // namespace

DidInfo parse_did(std::string_view did) {
  DidInfo info;
  check_did(did, &info);
  return info;
}

void detail::validate_did(std::string_view did) { check_did(did, nullptr); }

std::string did_key_from_ed25519(std::span<const uint8_t, 32> public_key) {
  std::array<uint8_t, 34> raw{};
  raw[0] = 0xed;
  raw[1] = 0x01;
  std::copy(public_key.begin(), public_key.end(), raw.begin() + 2);
  return "did:key:z" + detail::base58btc_encode(raw);
}

}  // namespace didmark
