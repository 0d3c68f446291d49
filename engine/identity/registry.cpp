// Registries of verification keys: JSON Lines of {"did": ..., "key": hex}.
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>

#include "didmark/error.hpp"
#include "didmark/identity.hpp"

namespace didmark {

namespace {
const std::string* string_field(const nlohmann::json& j, const char* key) {
  if (!j.contains(key)) return nullptr;
  const nlohmann::json& v = j.at(key);
  return v.is_string() ? &v.get_ref<const std::string&>() : nullptr;
}
}  // namespace

std::vector<RegistryEntry> load_registry(const std::filesystem::path& path) {
  const std::string name = path.string();
  std::error_code ec;
  DIDMARK_EXPECTS(std::filesystem::exists(path, ec), not_found, "registry '", name, "' does not exist");
  DIDMARK_EXPECTS(!std::filesystem::is_directory(path, ec), invalid_argument, "registry '", name,
                  "' is a folder, not a JSON Lines file");
  std::ifstream in(path, std::ios::binary);
  DIDMARK_EXPECTS(in.good(), io_error, "cannot open registry '", name, "'");
  std::vector<RegistryEntry> out;
  std::map<std::string, std::size_t, std::less<>> seen;  // DID -> line
  std::string line;
  std::size_t lineno = 0;
  while (std::getline(in, line)) {
    ++lineno;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.find_first_not_of(" \t") == std::string::npos) continue;
    auto where = [&] { return detail::concat(name, ":", lineno, ": "); };
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
    DIDMARK_EXPECTS(inserted, corrupt_input, where(), "duplicate DID ", e.did, " (first on line ", it->second, ")");
    out.push_back(std::move(e));
  }
  DIDMARK_EXPECTS(!in.bad(), io_error, "reading registry '", name, "' failed");
  return out;
}

std::string registry_line(const RegistryEntry& e) {
  return nlohmann::json{{"did", e.did}, {"key", e.key.to_hex()}}.dump();
}

}  // namespace didmark
