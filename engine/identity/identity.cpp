// Ed25519 identities, watermark-key derivation and identity files.
#include <fcntl.h>
#include <sodium.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <nlohmann/json.hpp>

#include "common/atomic_file.hpp"
#include "common/printable.hpp"
#include "common/regular_file.hpp"
#include "didmark/error.hpp"
#include "didmark/identity.hpp"
#include "identity/crypto.hpp"

namespace didmark {

namespace {

constexpr std::string_view kWatermarkKeySalt = "didmark/watermark-key/v1";
constexpr std::string_view kIdentityFormat = "didmark-identity";
constexpr std::size_t kMaxIdentityFileBytes = 64 * 1024;

// The 64-byte libsodium secret key (seed || public key), wiped when it goes out of scope.
struct SecretKey {
  std::array<uint8_t, crypto_sign_SECRETKEYBYTES> sk{};
  ~SecretKey() { sodium_memzero(sk.data(), sk.size()); }
};

// A string that holds secret material and is wiped on destruction.
struct SecretString {
  std::string s;
  ~SecretString() {
    if (!s.empty()) sodium_memzero(s.data(), s.size());
  }
};

}  // namespace

Identity::~Identity() { sodium_memzero(seed_.data(), seed_.size()); }

Identity Identity::generate() {
  detail::ensure_sodium();
  std::array<uint8_t, 32> seed{};
  randombytes_buf(seed.data(), seed.size());
  Identity id = from_seed(seed);
  sodium_memzero(seed.data(), seed.size());
  return id;
}

Identity Identity::from_seed(std::span<const uint8_t, 32> seed) {
  detail::ensure_sodium();
  Identity id;
  SecretKey key;
  DIDMARK_EXPECTS(crypto_sign_seed_keypair(id.public_key_.data(), key.sk.data(), seed.data()) == 0, internal,
                  "Ed25519 key generation failed");
  std::copy(seed.begin(), seed.end(), id.seed_.begin());
  id.did_ = did_key_from_ed25519(id.public_key_);
  return id;
}

std::array<uint8_t, 64> Identity::sign(std::span<const uint8_t> message) const {
  DIDMARK_EXPECTS(!did_.empty(), invalid_argument, "cannot sign with an empty identity");
  detail::ensure_sodium();
  SecretKey key;
  std::array<uint8_t, 32> pk{};
  crypto_sign_seed_keypair(pk.data(), key.sk.data(), seed_.data());
  std::array<uint8_t, 64> sig{};
  crypto_sign_detached(sig.data(), nullptr, message.data(), message.size(), key.sk.data());
  return sig;
}

WatermarkKey Identity::watermark_key() const {
  DIDMARK_EXPECTS(!did_.empty(), invalid_argument, "an empty identity has no watermark key");
  return derive_watermark_key(seed_, did_);
}

WatermarkKey derive_watermark_key(std::span<const uint8_t, 32> secret, std::string_view did) {
  auto okm = detail::hkdf_sha256(secret, detail::as_bytes(kWatermarkKeySalt), detail::as_bytes(did), 32);
  WatermarkKey k = WatermarkKey::from_bytes(okm);
  sodium_memzero(okm.data(), okm.size());
  return k;
}

bool verify_signature(std::string_view did, std::span<const uint8_t> message, std::span<const uint8_t> signature) {
  const DidInfo info = parse_did(did);
  DIDMARK_EXPECTS(info.ed25519_public.has_value(), invalid_argument, "cannot verify a signature by '", did,
                  "': only Ed25519 did:key DIDs (did:key:z6Mk...) sign");
  if (signature.size() != crypto_sign_BYTES) return false;
  detail::ensure_sodium();
  return crypto_sign_verify_detached(signature.data(), message.data(), message.size(),
                                     info.ed25519_public->data()) == 0;
}

void save_identity(const Identity& id, const std::filesystem::path& path, bool overwrite) {
  DIDMARK_EXPECTS(!id.did().empty(), invalid_argument, "cannot save an empty identity");
  SecretString text;
  text.s = "{\n  \"format\": \"";
  text.s += kIdentityFormat;
  text.s += "\",\n  \"version\": 1,\n  \"did\": \"";
  text.s += id.did();
  text.s += "\",\n  \"ed25519_seed\": \"";
  text.s += detail::to_hex(id.seed());
  text.s += "\"\n}\n";
  detail::AtomicFile f(path, overwrite, 0600);
  f.write(text.s);
  f.commit();
}

Identity load_identity(const std::filesystem::path& path) {
  const std::string name = detail::printable(path.native(), 1024);
  // Never blocks on a FIFO, never opens a device: only a regular file is read.
  const detail::RegularFile file = detail::open_regular_file(path, "identity file");
  const int fd = file.fd.get();
  struct stat st {};
  st.st_mode = file.mode;
  st.st_size = static_cast<off_t>(file.size);
  const unsigned mode = st.st_mode & 07777;
  if (mode & 077) {
    char octal[8];
    std::snprintf(octal, sizeof octal, "%04o", mode);
    DIDMARK_THROW(Errc::permission, "identity file '", name, "' has mode ", octal, ": ",
                  (mode & 044) ? "group or others can read its secret" : "group or others can modify it",
                  "; run 'chmod 600 ", name, "' if it is yours, or make a new identity if others could have read it");
  }
  DIDMARK_EXPECTS(st.st_size >= 0 && static_cast<std::size_t>(st.st_size) <= kMaxIdentityFileBytes, corrupt_input,
                  "identity file '", name, "' is ", st.st_size, " bytes; an identity file is under 1 kB");
  SecretString text;
  text.s.resize(static_cast<std::size_t>(st.st_size));
  std::size_t got = 0;
  while (got < text.s.size()) {
    const ssize_t n = ::read(fd, text.s.data() + got, text.s.size() - got);
    if (n < 0 && errno == EINTR) continue;
    DIDMARK_EXPECTS(n >= 0, io_error, "reading identity file '", name, "' failed: ", std::strerror(errno));
    if (n == 0) break;
    got += static_cast<std::size_t>(n);
  }
  text.s.resize(got);

  // Parse without exceptions: nlohmann's messages quote the bytes near an error, which may
  // be the secret.
  nlohmann::json j = nlohmann::json::parse(text.s, nullptr, /*allow_exceptions=*/false);
  DIDMARK_EXPECTS(!j.is_discarded() && j.is_object(), corrupt_input, "identity file '", name,
                  "' is not a JSON object");
  struct Wipe {
    nlohmann::json& j;
    ~Wipe() {
      auto it = j.find("ed25519_seed");
      if (it != j.end() && it->is_string()) {
        auto& s = it->get_ref<std::string&>();
        sodium_memzero(s.data(), s.size());
      }
    }
  } wipe{j};
  auto str_field = [&](const char* key) -> const std::string& {
    auto it = j.find(key);
    DIDMARK_EXPECTS(it != j.end(), corrupt_input, "identity file '", name, "': field '", key, "' is missing");
    DIDMARK_EXPECTS(it->is_string(), corrupt_input, "identity file '", name, "': field '", key,
                    "' is not a string");
    return it->get_ref<const std::string&>();
  };
  const std::string& format = str_field("format");
  DIDMARK_EXPECTS(format == kIdentityFormat, corrupt_input, "identity file '", name, "': field 'format' is '",
                  detail::quoted(format.substr(0, 64)), "', expected '", kIdentityFormat, "'");
  auto v = j.find("version");
  DIDMARK_EXPECTS(v != j.end() && v->is_number_integer() && v->get<int64_t>() == 1, corrupt_input,
                  "identity file '", name, "': field 'version' must be 1");
  const std::string& did = str_field("did");
  const std::string& seed_hex = str_field("ed25519_seed");
  auto seed = detail::from_hex(seed_hex);
  if (!seed || seed->size() != 32) {
    if (seed) sodium_memzero(seed->data(), seed->size());
    DIDMARK_THROW(Errc::corrupt_input, "identity file '", name,
                  "': field 'ed25519_seed' is not 64 hex digits (value not shown)");
  }
  std::array<uint8_t, 32> s{};
  std::copy(seed->begin(), seed->end(), s.begin());
  sodium_memzero(seed->data(), seed->size());
  Identity id = Identity::from_seed(s);
  sodium_memzero(s.data(), s.size());
  DIDMARK_EXPECTS(id.did() == did, corrupt_input, "identity file '", name, "': the DID '",
                  detail::quoted(did.substr(0, 120)),
                  "' does not belong to the stored secret (whose DID is ", id.did(), ")");
  return id;
}

}  // namespace didmark
