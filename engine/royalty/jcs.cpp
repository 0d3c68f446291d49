#include "royalty/jcs.hpp"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstring>
#include <vector>

#include "didmark/error.hpp"

namespace didmark::detail {

namespace {

// Decode one code point of valid UTF-8 at s[i] (advances i).
uint32_t next_code_point(std::string_view s, std::size_t& i) {
  const auto c = static_cast<unsigned char>(s[i]);
  int len = c < 0x80 ? 1 : c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4;
  uint32_t cp = len == 1 ? c : len == 2 ? c & 0x1F : len == 3 ? c & 0x0F : c & 0x07;
  for (int k = 1; k < len && i + static_cast<std::size_t>(k) < s.size(); ++k)
    cp = (cp << 6) | (static_cast<unsigned char>(s[i + static_cast<std::size_t>(k)]) & 0x3F);
  i += static_cast<std::size_t>(len);
  return cp;
}

// The first UTF-16 code unit of a code point (enough to order two different code points:
// surrogates D800-DBFF sort below E000-FFFF, unlike the code points they encode).
uint32_t first_unit(uint32_t cp) { return cp < 0x10000 ? cp : 0xD800 + ((cp - 0x10000) >> 10); }

bool has_high_bytes(std::string_view s) {
  return std::any_of(s.begin(), s.end(), [](char c) { return static_cast<unsigned char>(c) >= 0xEE; });
}

}  // namespace

bool utf16_less(std::string_view a, std::string_view b) {
  std::size_t i = 0, j = 0;
  while (i < a.size() && j < b.size()) {
    const uint32_t ca = next_code_point(a, i), cb = next_code_point(b, j);
    if (ca == cb) continue;
    const uint32_t ua = first_unit(ca), ub = first_unit(cb);
    if (ua != ub) return ua < ub;
    // Same high surrogate: the low surrogates order as the code points do.
    return ca < cb;
  }
  return i == a.size() && j < b.size();
}

bool jcs_plain(std::string_view s) noexcept {
  // Eight bytes at a time: a byte below 0x20, or equal to '"' or '\\' (the usual zero-byte
  // tests, exact for "is there such a byte").
  constexpr uint64_t ones = 0x0101010101010101ull, highs = 0x8080808080808080ull;
  const char* p = s.data();
  std::size_t n = s.size();
  uint64_t flags = 0;
  for (; n >= 8; p += 8, n -= 8) {
    uint64_t x;
    std::memcpy(&x, p, 8);
    const uint64_t q = x ^ (ones * '"'), b = x ^ (ones * '\\');
    flags |= ((x - ones * 0x20) & ~x) | ((q - ones) & ~q) | ((b - ones) & ~b);
  }
  if (flags & highs) return false;
  for (; n > 0; ++p, --n) {
    const auto c = static_cast<unsigned char>(*p);
    if (c < 0x20 || c == '"' || c == '\\') return false;
  }
  return true;
}

void jcs_append_string(std::string& out, std::string_view s) {
  if (jcs_plain(s)) {
    out.push_back('"');
    out.append(s);
    out.push_back('"');
    return;
  }
  static constexpr char hex[] = "0123456789abcdef";
  out.push_back('"');
  std::size_t run = 0;  // start of the current run of characters copied as they are
  for (std::size_t i = 0; i < s.size(); ++i) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c >= 0x20 && c != '"' && c != '\\') continue;
    out.append(s.data() + run, i - run);
    run = i + 1;
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\b': out += "\\b"; break;
      case '\t': out += "\\t"; break;
      case '\n': out += "\\n"; break;
      case '\f': out += "\\f"; break;
      case '\r': out += "\\r"; break;
      default:
        out += "\\u00";
        out.push_back(hex[c >> 4]);
        out.push_back(hex[c & 15]);
    }
  }
  out.append(s.data() + run, s.size() - run);
  out.push_back('"');
}

char* jcs_write_number(char* p, double v) {
  DIDMARK_EXPECTS(std::isfinite(v), invalid_argument, "JSON cannot carry the number ", v, " (NaN or infinite)");
  if (v == 0) {  // 0 and -0
    *p++ = '0';
    return p;
  }
  if (v < 0) {
    *p++ = '-';
    v = -v;
  }
  // Shortest round-trip digits: d[.dddd]e[+-]x; k digits: buf[0] and buf[2 .. e).
  char buf[40];
  const auto res = std::to_chars(buf, buf + sizeof buf, v, std::chars_format::scientific);
  DIDMARK_ASSERT(res.ec == std::errc());
  const char* e = buf + 1;
  while (*e != 'e') ++e;
  const int k = e == buf + 1 ? 1 : static_cast<int>(e - buf) - 1;
  const char* rest = buf + 2;  // digits 2 .. k
  int exp10 = 0;
  const char* x = e + 1;
  const bool eneg = *x == '-';
  if (*x == '+' || *x == '-') ++x;
  for (; x < res.ptr; ++x) exp10 = exp10 * 10 + (*x - '0');
  if (eneg) exp10 = -exp10;
  // ECMAScript Number::toString: k digits, n = position of the decimal point.
  const int n = exp10 + 1;
  auto put = [&p](const char* s, int len) {
    std::memcpy(p, s, static_cast<std::size_t>(len));
    p += len;
  };
  auto zeros = [&p](int len) {
    std::memset(p, '0', static_cast<std::size_t>(len));
    p += len;
  };
  if (k <= n && n <= 21) {  // an integer: the digits, then zeros
    *p++ = buf[0];
    put(rest, k - 1);
    zeros(n - k);
  } else if (0 < n && n <= 21) {  // d..d.d..d
    *p++ = buf[0];
    put(rest, n - 1);
    *p++ = '.';
    put(rest + (n - 1), k - n);
  } else if (-6 < n && n <= 0) {  // 0.0..0d..d
    *p++ = '0';
    *p++ = '.';
    zeros(-n);
    *p++ = buf[0];
    put(rest, k - 1);
  } else {  // d.d..de+x
    *p++ = buf[0];
    if (k > 1) {
      *p++ = '.';
      put(rest, k - 1);
    }
    *p++ = 'e';
    *p++ = n - 1 >= 0 ? '+' : '-';
    p = std::to_chars(p, p + 8, std::abs(n - 1)).ptr;
  }
  return p;
}

void jcs_append_number(std::string& out, double v) {
  char buf[kJcsNumberMax];
  out.append(buf, jcs_write_number(buf, v));
}

void jcs_append(std::string& out, const nlohmann::json& v) {
  using value_t = nlohmann::json::value_t;
  switch (v.type()) {
    case value_t::null: out += "null"; break;
    case value_t::boolean: out += v.get<bool>() ? "true" : "false"; break;
    case value_t::number_integer: jcs_append_number(out, static_cast<double>(v.get<int64_t>())); break;
    case value_t::number_unsigned: jcs_append_number(out, static_cast<double>(v.get<uint64_t>())); break;
    case value_t::number_float: jcs_append_number(out, v.get<double>()); break;
    case value_t::string: jcs_append_string(out, v.get_ref<const std::string&>()); break;
    case value_t::array: {
      out.push_back('[');
      bool first = true;
      for (const auto& e : v) {
        if (!first) out.push_back(',');
        first = false;
        jcs_append(out, e);
      }
      out.push_back(']');
      break;
    }
    case value_t::object: {
      // nlohmann keeps members in byte order, which is UTF-16 order unless keys mix
      // characters U+E000..U+FFFF with supplementary ones: re-sort only then.
      std::vector<const std::string*> keys;
      keys.reserve(v.size());
      bool resort = false;
      for (auto it = v.begin(); it != v.end(); ++it) {
        keys.push_back(&it.key());
        resort = resort || has_high_bytes(it.key());
      }
      if (resort)
        std::sort(keys.begin(), keys.end(), [](const std::string* a, const std::string* b) { return utf16_less(*a, *b); });
      out.push_back('{');
      bool first = true;
      for (const std::string* key : keys) {
        if (!first) out.push_back(',');
        first = false;
        jcs_append_string(out, *key);
        out.push_back(':');
        jcs_append(out, v.at(*key));
      }
      out.push_back('}');
      break;
    }
    case value_t::binary:
    case value_t::discarded: DIDMARK_THROW(Errc::invalid_argument, "value has no JSON form");
  }
}

nlohmann::json parse_json(std::string_view text, std::string_view what) {
  try {
    return nlohmann::json::parse(text.begin(), text.end());
  } catch (const nlohmann::json::parse_error& e) {
    // e.what() quotes the bytes near the error; report only the position.
    DIDMARK_THROW(Errc::corrupt_input, what, " is not valid JSON (syntax error at byte ", e.byte, ")");
  }
}

}  // namespace didmark::detail
