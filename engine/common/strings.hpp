#pragma once
// Small string helpers shared by every area (one copy each).
#include <string>
#include <string_view>

namespace didmark::detail {

/// ASCII lower case (names of files, formats, columns); other bytes unchanged.
inline std::string ascii_lower(std::string_view s) {
  std::string out(s);
  for (char& c : out)
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  return out;
}

}  // namespace didmark::detail
