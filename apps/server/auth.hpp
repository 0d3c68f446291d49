#pragma once
// Who may call didmarkd: bearer tokens from a JSON Lines token file (docs/server.md).
//
// A token file holds one client per line: {"name": "ci", "token": "...", "scopes": [...]}.
// It must be a regular file that only its owner can read or write (mode 0600), as ssh wants
// of its keys. Tokens are kept in memory only as keyed BLAKE2b digests and compared in
// constant time (sodium_memcmp over every entry, no early exit), so neither the time of a
// check nor a core dump gives one away. No message and no log line ever carries a token.

#include <array>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace didmark::server {

/// What a token may do. `admin` implies every other scope.
enum class Scope : uint8_t { verify, embed, register_, split, attribute, admin };
/// "verify", "embed", "register", "split", "attribute", "admin".
std::string_view scope_name(Scope s) noexcept;
std::optional<Scope> parse_scope(std::string_view s) noexcept;

/// A client of the token file, without its token.
struct Client {
  std::string name;
  std::vector<Scope> scopes;
  bool may(Scope s) const noexcept;
};

/// Shortest token accepted (bytes): shorter ones are guessable.
inline constexpr std::size_t kMinTokenBytes = 16;
/// Largest token file read.
inline constexpr std::size_t kMaxTokenFileBytes = 1 << 20;

/// A loaded token file.
class TokenStore {
 public:
  /// Read `path`. Refused with didmark::Error naming the file and line (never the token):
  /// not a regular file; group or others have any access (Errc::permission, with the chmod
  /// fix); malformed JSON; a missing or empty name, token or scopes; an unknown scope or
  /// field; a token shorter than kMinTokenBytes or with bytes outside printable ASCII; a
  /// name or token used twice.
  static std::shared_ptr<const TokenStore> load(const std::filesystem::path& path);

  /// The client whose token is `token`, checked against every entry in constant time.
  std::optional<Client> find(std::string_view token) const;

  std::size_t size() const noexcept { return entries_.size(); }

 private:
  struct Entry {
    std::array<uint8_t, 32> digest;
    Client client;
  };
  std::array<uint8_t, 32> digest(std::string_view token) const;

  std::array<uint8_t, 32> hash_key_{};  // random per load: digests are useless outside this process
  std::vector<Entry> entries_;
};

/// The token of an `authorization` metadata value "Bearer TOKEN" (scheme case-insensitive);
/// nullopt for anything else.
std::optional<std::string_view> bearer_token(std::string_view authorization) noexcept;

/// Read a file that holds a secret (token file, TLS key): a regular file (opened without
/// blocking, so a FIFO cannot hang the server), no access for group or others, at most
/// `max_bytes`. `what` names it in messages ("token file").
std::string read_secret_file(const std::filesystem::path& path, std::string_view what, std::size_t max_bytes);
/// The same without the mode check (certificates, CA bundles).
std::string read_regular_file(const std::filesystem::path& path, std::string_view what, std::size_t max_bytes);

}  // namespace didmark::server
