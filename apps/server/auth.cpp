#include "auth.hpp"

#include <fcntl.h>
#include <sodium.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <nlohmann/json.hpp>
#include <set>

#include "didmark/error.hpp"

namespace didmark::server {

namespace {

constexpr std::array<std::pair<Scope, std::string_view>, 6> kScopes{{{Scope::verify, "verify"},
                                                                     {Scope::embed, "embed"},
                                                                     {Scope::register_, "register"},
                                                                     {Scope::split, "split"},
                                                                     {Scope::attribute, "attribute"},
                                                                     {Scope::admin, "admin"}}};

std::string read_file(const std::filesystem::path& path, std::string_view what, std::size_t max_bytes,
                      bool secret) {
  const std::string name = path.string();
  // O_NONBLOCK: opening a FIFO must not wait for a writer; fstat then refuses it.
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
  if (fd < 0) {
    const int e = errno;
    DIDMARK_EXPECTS(e != ENOENT, not_found, what, " '", name, "' does not exist");
    DIDMARK_EXPECTS(e != EACCES, permission, what, " '", name, "' cannot be read: ", std::strerror(e));
    DIDMARK_THROW(Errc::io_error, "cannot open ", what, " '", name, "': ", std::strerror(e));
  }
  struct Closer {
    int fd;
    ~Closer() { ::close(fd); }
  } closer{fd};
  struct stat st {};
  DIDMARK_EXPECTS(::fstat(fd, &st) == 0, io_error, "cannot stat ", what, " '", name, "': ", std::strerror(errno));
  DIDMARK_EXPECTS(S_ISREG(st.st_mode), invalid_argument, what, " '", name, "' is not a regular file");
  const unsigned mode = st.st_mode & 07777;
  if (secret && (mode & 077)) {
    char octal[8];
    std::snprintf(octal, sizeof octal, "%04o", mode);
    DIDMARK_THROW(Errc::permission, what, " '", name, "' has mode ", octal,
                  ": group or others can access it; run 'chmod 600 ", name, "' (and replace its secrets if others ",
                  "could have read them)");
  }
  DIDMARK_EXPECTS(st.st_size >= 0 && static_cast<std::size_t>(st.st_size) <= max_bytes, invalid_argument, what, " '",
                  name, "' is ", st.st_size, " bytes, over the limit of ", max_bytes);
  std::string text(static_cast<std::size_t>(st.st_size), '\0');
  std::size_t got = 0;
  while (got < text.size()) {
    const ssize_t n = ::read(fd, text.data() + got, text.size() - got);
    if (n < 0 && errno == EINTR) continue;
    DIDMARK_EXPECTS(n >= 0, io_error, "reading ", what, " '", name, "' failed: ", std::strerror(errno));
    if (n == 0) break;
    got += static_cast<std::size_t>(n);
  }
  text.resize(got);
  return text;
}

bool printable_token(std::string_view t) {
  return std::all_of(t.begin(), t.end(), [](char c) { return c > 0x20 && c < 0x7F; });
}

bool good_name(std::string_view n) {
  return !n.empty() && n.size() <= 64 && std::all_of(n.begin(), n.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_' ||
           c == '.' || c == '@';
  });
}

}  // namespace

std::string_view scope_name(Scope s) noexcept {
  for (const auto& [k, n] : kScopes)
    if (k == s) return n;
  return "?";
}

std::optional<Scope> parse_scope(std::string_view s) noexcept {
  for (const auto& [k, n] : kScopes)
    if (n == s) return k;
  return std::nullopt;
}

bool Client::may(Scope s) const noexcept {
  return std::any_of(scopes.begin(), scopes.end(), [s](Scope x) { return x == s || x == Scope::admin; });
}

std::string read_secret_file(const std::filesystem::path& path, std::string_view what, std::size_t max_bytes) {
  return read_file(path, what, max_bytes, true);
}

std::string read_regular_file(const std::filesystem::path& path, std::string_view what, std::size_t max_bytes) {
  return read_file(path, what, max_bytes, false);
}

std::array<uint8_t, 32> TokenStore::digest(std::string_view token) const {
  std::array<uint8_t, 32> d{};
  crypto_generichash(d.data(), d.size(), reinterpret_cast<const unsigned char*>(token.data()), token.size(),
                     hash_key_.data(), hash_key_.size());
  return d;
}

std::shared_ptr<const TokenStore> TokenStore::load(const std::filesystem::path& path) {
  DIDMARK_EXPECTS(sodium_init() >= 0, internal, "libsodium failed to initialise");
  std::string text = read_secret_file(path, "token file", kMaxTokenFileBytes);
  auto store = std::make_shared<TokenStore>();
  randombytes_buf(store->hash_key_.data(), store->hash_key_.size());
  const std::string name = path.string();
  std::set<std::string> names;
  std::set<std::array<uint8_t, 32>> digests;
  std::size_t lineno = 0, pos = 0;
  while (pos < text.size()) {
    std::size_t end = text.find('\n', pos);
    if (end == std::string::npos) end = text.size();
    std::string_view line(text.data() + pos, end - pos);
    pos = end + 1;
    ++lineno;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line.find_first_not_of(" \t") == std::string_view::npos) continue;
    auto where = [&] { return detail::concat("token file '", name, "' line ", lineno, ": "); };
    // Parse errors from nlohmann quote the bytes near the error, which may be a token: say only where.
    nlohmann::json j = nlohmann::json::parse(line, nullptr, false);
    DIDMARK_EXPECTS(!j.is_discarded() && j.is_object(), invalid_argument, where(),
                    "not a JSON object {\"name\": ..., \"token\": ..., \"scopes\": [...]}");
    for (const auto& [k, v] : j.items()) {
      (void)v;
      DIDMARK_EXPECTS(k == "name" || k == "token" || k == "scopes", invalid_argument, where(), "unknown field '",
                      good_name(k) ? k : std::string("?"), "' (fields: name, token, scopes)");
    }
    DIDMARK_EXPECTS(j.contains("name") && j["name"].is_string() && good_name(j["name"].get_ref<const std::string&>()),
                    invalid_argument, where(),
                    "'name' must be 1 to 64 characters of letters, digits, '-', '_', '.', '@'");
    DIDMARK_EXPECTS(j.contains("token") && j["token"].is_string(), invalid_argument, where(),
                    "'token' is missing or not a string");
    DIDMARK_EXPECTS(j.contains("scopes") && j["scopes"].is_array() && !j["scopes"].empty(), invalid_argument,
                    where(), "'scopes' must be a non-empty array of scope names");
    Entry e;
    e.client.name = j["name"].get<std::string>();
    const std::string& token = j["token"].get_ref<const std::string&>();
    DIDMARK_EXPECTS(token.size() >= kMinTokenBytes, invalid_argument, where(), "the token of '", e.client.name,
                    "' is shorter than ", kMinTokenBytes, " characters");
    DIDMARK_EXPECTS(printable_token(token), invalid_argument, where(), "the token of '", e.client.name,
                    "' has characters outside printable ASCII (or spaces)");
    for (const auto& s : j["scopes"]) {
      const auto sc = s.is_string() ? parse_scope(s.get_ref<const std::string&>()) : std::nullopt;
      DIDMARK_EXPECTS(sc.has_value(), invalid_argument, where(), "unknown scope ",
                      s.is_string() && good_name(s.get_ref<const std::string&>()) ? "'" + s.get<std::string>() + "'"
                                                                                 : std::string("(not a name)"),
                      " (scopes: verify, embed, register, split, attribute, admin)");
      e.client.scopes.push_back(*sc);
    }
    DIDMARK_EXPECTS(names.insert(e.client.name).second, invalid_argument, where(), "name '", e.client.name,
                    "' is used twice");
    e.digest = store->digest(token);
    DIDMARK_EXPECTS(digests.insert(e.digest).second, invalid_argument, where(), "the token of '", e.client.name,
                    "' is the same as an earlier client's");
    sodium_memzero(j["token"].get_ref<std::string&>().data(), token.size());
    store->entries_.push_back(std::move(e));
  }
  sodium_memzero(text.data(), text.size());
  DIDMARK_EXPECTS(!store->entries_.empty(), invalid_argument, "token file '", name, "' has no clients");
  return store;
}

std::optional<Client> TokenStore::find(std::string_view token) const {
  const std::array<uint8_t, 32> d = digest(token);
  const Entry* hit = nullptr;
  for (const Entry& e : entries_) {
    // Every entry is compared, match or not, so the time does not say which one matched.
    const bool same = sodium_memcmp(e.digest.data(), d.data(), d.size()) == 0;
    hit = same ? &e : hit;
  }
  if (!hit) return std::nullopt;
  return hit->client;
}

std::optional<std::string_view> bearer_token(std::string_view v) noexcept {
  constexpr std::string_view scheme = "bearer ";
  if (v.size() <= scheme.size()) return std::nullopt;
  for (std::size_t i = 0; i < scheme.size(); ++i)
    if (static_cast<char>(std::tolower(static_cast<unsigned char>(v[i]))) != scheme[i]) return std::nullopt;
  v.remove_prefix(scheme.size());
  while (!v.empty() && v.front() == ' ') v.remove_prefix(1);
  if (v.empty()) return std::nullopt;
  return v;
}

}  // namespace didmark::server
