#pragma once
// Messages that quote file contents: printable ASCII only (\xNN for anything else), so they
// survive terminals and JSON output whatever the file held.
#include <string>
#include <string_view>

namespace didmark::detail {

inline std::string printable(std::string_view s) {
  static constexpr char hex[] = "0123456789abcdef";
  std::string out;
  out.reserve(s.size());
  for (unsigned char c : s) {
    if (c >= 0x20 && c < 0x7F) {
      out.push_back(static_cast<char>(c));
    } else {
      out += "\\x";
      out.push_back(hex[c >> 4]);
      out.push_back(hex[c & 15]);
    }
  }
  return out;
}

}  // namespace didmark::detail
