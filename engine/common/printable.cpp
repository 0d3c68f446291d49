#include "common/printable.hpp"

#include <cstdint>

namespace didmark::detail {
namespace {

constexpr char kHex[] = "0123456789abcdef";

void hex_byte(std::string& out, unsigned char c) {
  out += "\\x";
  out.push_back(kHex[c >> 4]);
  out.push_back(kHex[c & 15]);
}

// Length of the valid UTF-8 sequence at s[i] (1..4) and its code point; 0 when invalid.
std::size_t utf8_at(std::string_view s, std::size_t i, uint32_t& cp) {
  const auto b0 = static_cast<unsigned char>(s[i]);
  std::size_t n;
  uint32_t min;
  if (b0 < 0x80) {
    cp = b0;
    return 1;
  } else if ((b0 & 0xE0) == 0xC0) {
    n = 2, cp = b0 & 0x1F, min = 0x80;
  } else if ((b0 & 0xF0) == 0xE0) {
    n = 3, cp = b0 & 0x0F, min = 0x800;
  } else if ((b0 & 0xF8) == 0xF0) {
    n = 4, cp = b0 & 0x07, min = 0x10000;
  } else {
    return 0;
  }
  if (s.size() - i < n) return 0;
  for (std::size_t k = 1; k < n; ++k) {
    const auto b = static_cast<unsigned char>(s[i + k]);
    if ((b & 0xC0) != 0x80) return 0;
    cp = (cp << 6) | (b & 0x3F);
  }
  if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
  return n;
}

bool hidden_format(uint32_t cp) {
  return (cp >= 0x80 && cp <= 0x9F) || (cp >= 0x202A && cp <= 0x202E) || (cp >= 0x2066 && cp <= 0x2069);
}

}  // namespace

std::string printable(std::string_view s, std::size_t max_bytes) {
  std::string out;
  const std::size_t keep = s.size() > max_bytes ? max_bytes : s.size();
  out.reserve(keep + 16);
  std::size_t i = 0;
  while (i < keep) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c < 0x80) {
      if (c < 0x20 || c == 0x7F) {
        hex_byte(out, c);
      } else if (c == '\\') {
        out += "\\\\";
      } else {
        out.push_back(static_cast<char>(c));
      }
      ++i;
      continue;
    }
    uint32_t cp = 0;
    const std::size_t n = utf8_at(s, i, cp);
    if (n == 0) {
      hex_byte(out, c);
      ++i;
      continue;
    }
    if (i + n > keep) break;  // do not cut a character in two
    if (hidden_format(cp)) {
      out += "\\u{";
      for (int shift = 12; shift >= 0; shift -= 4) out.push_back(kHex[(cp >> shift) & 15]);
      out += "}";
    } else {
      out.append(s.substr(i, n));
    }
    i += n;
  }
  if (keep < s.size()) out += "... (" + std::to_string(s.size()) + " bytes)";
  return out;
}

std::string bounded_list(const std::vector<std::string>& items, std::size_t max_items) {
  std::string out;
  const std::size_t shown = items.size() > max_items ? max_items : items.size();
  for (std::size_t i = 0; i < shown; ++i) out += (i ? ", '" : "'") + quoted(items[i]) + "'";
  if (shown < items.size()) out += " and " + std::to_string(items.size() - shown) + " more";
  return out;
}

}  // namespace didmark::detail
