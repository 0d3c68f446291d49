#pragma once
// RFC 8785 JSON Canonicalization Scheme over nlohmann::json values, and the pieces of it
// (strings, numbers) for writers that emit canonical text directly.
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

namespace didmark::detail {

/// Append the canonical form of `v`: object members sorted by UTF-16 code units, no
/// whitespace, ECMAScript number and string serialization. Throws Errc::invalid_argument
/// for NaN or infinite numbers (I-JSON has none).
void jcs_append(std::string& out, const nlohmann::json& v);
inline std::string jcs(const nlohmann::json& v) {
  std::string s;
  jcs_append(s, v);
  return s;
}

/// A JSON string literal as ECMAScript's JSON.stringify writes it (UTF-8 in, UTF-8 out).
void jcs_append_string(std::string& out, std::string_view utf8);
/// A double as ECMAScript's Number.prototype.toString writes it (shortest round trip).
void jcs_append_number(std::string& out, double v);
/// The same, written at `p` (room for kJcsNumberMax bytes); returns the end.
inline constexpr std::size_t kJcsNumberMax = 32;
char* jcs_write_number(char* p, double v);
/// True when `s` goes into a JSON string as it is (no control character, '"' or '\\').
bool jcs_plain(std::string_view s) noexcept;

/// a < b in UTF-16 code-unit order (both valid UTF-8).
bool utf16_less(std::string_view a, std::string_view b);

/// Parse JSON text; Errc::corrupt_input with `what` and the byte position (the message
/// never quotes the input).
nlohmann::json parse_json(std::string_view text, std::string_view what);

}  // namespace didmark::detail
