#include "formats.hpp"

#include <algorithm>
#include <cctype>

#include "didmark/error.hpp"

namespace didmark::cli {

namespace {
std::vector<FormatHandler>& registry() {
  static std::vector<FormatHandler> r;
  return r;
}
std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return s;
}
}  // namespace

nlohmann::json to_json(const Verdict& v) {
  nlohmann::json j{{"did", v.did},           {"detected", v.detected},   {"z", v.z},
                   {"p_value", v.p_value},   {"log10_p", v.log10_p},     {"bit_errors", v.bit_errors},
                   {"bits", v.bits},         {"elements", v.elements},   {"tensors", v.tensors}};
  for (auto it = v.extra.begin(); it != v.extra.end(); ++it) j[it.key()] = it.value();
  return j;
}

int register_format(FormatHandler h) {
  registry().push_back(std::move(h));
  return 0;
}

const std::vector<FormatHandler>& formats() { return registry(); }

const FormatHandler& format_for(const std::filesystem::path& path, const std::string& forced) {
  const auto& all = registry();
  std::string known;
  for (const auto& h : all) known += (known.empty() ? "" : ", ") + h.name;
  if (!forced.empty()) {
    for (const auto& h : all)
      if (h.name == forced) return h;
    DIDMARK_THROW(Errc::invalid_argument, "--format '", forced, "' is not one of: ", known);
  }
  for (const auto& h : all)
    if (h.claims && h.claims(path)) return h;
  // Longest matching extension wins (".index.json" before ".json").
  const std::string name = lower(path.filename().string());
  const FormatHandler* best = nullptr;
  std::size_t best_len = 0;
  for (const auto& h : all)
    for (const auto& ext : h.extensions)
      if (name.size() >= ext.size() && name.compare(name.size() - ext.size(), ext.size(), ext) == 0 &&
          ext.size() > best_len) {
        best = &h;
        best_len = ext.size();
      }
  DIDMARK_EXPECTS(best != nullptr, unsupported, "cannot tell the format of '", path.string(),
                  "' from its name; use --format (one of: ", known, ")");
  return *best;
}

}  // namespace didmark::cli
