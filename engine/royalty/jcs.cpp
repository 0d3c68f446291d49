#include "royalty/jcs.hpp"

#include <algorithm>
#include <charconv>
#include <cmath>
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

void jcs_append_string(std::string& out, std::string_view s) {
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

void jcs_append_number(std::string& out, double v) {
  DIDMARK_EXPECTS(std::isfinite(v), invalid_argument, "JSON cannot carry the number ", v, " (NaN or infinite)");
  if (v == 0) {  // 0 and -0
    out.push_back('0');
    return;
  }
  if (v < 0) {
    out.push_back('-');
    v = -v;
  }
  // Shortest round-trip digits: d.ddddde[+-]x.
  char buf[40];
  const auto res = std::to_chars(buf, buf + sizeof buf, v, std::chars_format::scientific);
  DIDMARK_ASSERT(res.ec == std::errc());
  const std::string_view sci(buf, static_cast<std::size_t>(res.ptr - buf));
  const std::size_t epos = sci.find('e');
  std::string digits;
  digits.push_back(sci[0]);
  if (epos > 1) digits.append(sci.substr(2, epos - 2));
  int exp10 = 0;
  std::from_chars(sci.data() + epos + (sci[epos + 1] == '+' ? 2 : 1), sci.data() + sci.size(), exp10);
  // ECMAScript Number::toString: k digits, n = position of the decimal point.
  const int k = static_cast<int>(digits.size());
  const int n = exp10 + 1;
  if (k <= n && n <= 21) {
    out += digits;
    out.append(static_cast<std::size_t>(n - k), '0');
  } else if (0 < n && n <= 21) {
    out.append(digits, 0, static_cast<std::size_t>(n));
    out.push_back('.');
    out.append(digits, static_cast<std::size_t>(n));
  } else if (-6 < n && n <= 0) {
    out += "0.";
    out.append(static_cast<std::size_t>(-n), '0');
    out += digits;
  } else {
    out.push_back(digits[0]);
    if (k > 1) {
      out.push_back('.');
      out.append(digits, 1);
    }
    out.push_back('e');
    out.push_back(n - 1 >= 0 ? '+' : '-');
    out += std::to_string(std::abs(n - 1));
  }
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
