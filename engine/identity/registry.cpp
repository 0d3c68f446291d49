// Registries of verification keys: JSON Lines of {"did": ..., "key": hex}.
#include <map>
#include <nlohmann/json.hpp>

#include "common/printable.hpp"
#include "common/regular_file.hpp"
#include "didmark/error.hpp"
#include "didmark/identity.hpp"

namespace didmark {

namespace {
// A registry line is ~150 bytes; a million owners is ~150 MB.
constexpr std::size_t kMaxRegistryFileBytes = std::size_t{1} << 30;
constexpr std::size_t kMaxRegistryLineBytes = std::size_t{1} << 16;

const std::string* string_field(const nlohmann::json& j, const char* key) {
  if (!j.contains(key)) return nullptr;
  const nlohmann::json& v = j.at(key);
  return v.is_string() ? &v.get_ref<const std::string&>() : nullptr;
}
}  // namespace

std::vector<RegistryEntry> load_registry(const std::filesystem::path& path) {
  const std::string name = detail::printable(path.native(), 1024);
  // Never blocks on a FIFO, never opens a device: only a regular file is read.
  const std::string text = detail::read_regular_file(path, "registry", kMaxRegistryFileBytes);
  std::vector<RegistryEntry> out;
  std::map<std::string, std::size_t, std::less<>> seen;  // DID -> line
  std::size_t lineno = 0;
  for (std::size_t at = 0; at < text.size();) {
    std::size_t nl = text.find('\n', at);
    if (nl == std::string::npos) nl = text.size();
    std::string line = text.substr(at, nl - at);
    at = nl + 1;
    ++lineno;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.find_first_not_of(" \t") == std::string::npos) continue;
    auto where = [&] { return detail::concat(name, ":", lineno, ": "); };
    DIDMARK_EXPECTS(line.size() <= kMaxRegistryLineBytes, corrupt_input, where(), "line of ", line.size(),
                    " bytes; a registry line is {\"did\": ..., \"key\": ...} (limit ", kMaxRegistryLineBytes, ")");
    nlohmann::json j = nlohmann::json::parse(line, nullptr, false);
    DIDMARK_EXPECTS(!j.is_discarded(), corrupt_input, where(), "not valid JSON");
    DIDMARK_EXPECTS(j.is_object(), corrupt_input, where(), "expected a JSON object {\"did\": ..., \"key\": ...}");
    const std::string* d = string_field(j, "did");
    DIDMARK_EXPECTS(d, corrupt_input, where(), "field 'did' is missing or not a string");
    const std::string* k = string_field(j, "key");
    DIDMARK_EXPECTS(k, corrupt_input, where(), "field 'key' is missing or not a string");
    RegistryEntry e;
    try {
      e.did = parse_did(*d).did;
      e.key = WatermarkKey::from_hex(*k);
    } catch (const Error& err) {
      DIDMARK_THROW(Errc::corrupt_input, where(), err.what());
    }
    auto [it, inserted] = seen.emplace(e.did, lineno);
    DIDMARK_EXPECTS(inserted, corrupt_input, where(), "duplicate DID ", detail::quoted(e.did), " (first on line ",
                    it->second, ")");
    out.push_back(std::move(e));
  }
  return out;
}

std::string registry_line(const RegistryEntry& e) {
  return nlohmann::json{{"did", e.did}, {"key", e.key.to_hex()}}.dump();
}

}  // namespace didmark
