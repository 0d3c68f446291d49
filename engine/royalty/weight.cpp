// Amounts (decimal u128) and exact weights (doubles and decimal strings).
#include <bit>
#include <cmath>
#include <cstdlib>

#include "didmark/error.hpp"
#include "didmark/royalty.hpp"

namespace didmark {

std::string amount_to_string(Amount a) {
  if (a == 0) return "0";
  char buf[40];
  int i = 40;
  while (a > 0) {
    buf[--i] = static_cast<char>('0' + static_cast<int>(a % 10));
    a /= 10;
  }
  return std::string(buf + i, buf + 40);
}

Amount parse_amount(std::string_view text, std::string_view what) {
  DIDMARK_EXPECTS(!text.empty(), invalid_argument, what, " is empty: expected a whole number of minor units");
  Amount v = 0;
  for (std::size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    DIDMARK_EXPECTS(c >= '0' && c <= '9', invalid_argument, what, " '", text.substr(0, 60),
                    "' is not a whole number of minor units (character ", i, " is '", c,
                    "'; amounts are integers, e.g. cents)");
    const unsigned d = static_cast<unsigned>(c - '0');
    DIDMARK_EXPECTS(v <= (kMaxAmount - d) / 10, invalid_argument, what, " '", text.substr(0, 60),
                    "' exceeds the largest amount 2^128 - 1 = ", amount_to_string(kMaxAmount));
    v = v * 10 + d;
  }
  return v;
}

std::string_view negative_weights_name(NegativeWeights p) noexcept {
  switch (p) {
    case NegativeWeights::clip: return "clip";
    case NegativeWeights::shift: return "shift";
    case NegativeWeights::refuse: return "refuse";
  }
  return "clip";
}

std::optional<NegativeWeights> parse_negative_weights(std::string_view s) noexcept {
  if (s == "clip") return NegativeWeights::clip;
  if (s == "shift") return NegativeWeights::shift;
  if (s == "refuse") return NegativeWeights::refuse;
  return std::nullopt;
}

Weight Weight::from_double(double v) {
  DIDMARK_EXPECTS(std::isfinite(v), invalid_argument, "weight ", v, " is not a finite number");
  Weight w;
  w.value_ = v == 0 ? 0.0 : v;  // -0 is 0
  const auto bits = std::bit_cast<uint64_t>(v);
  const int biased = static_cast<int>((bits >> 52) & 0x7ff);
  uint64_t m = bits & ((uint64_t(1) << 52) - 1);
  int e;
  if (biased == 0) {
    e = -1074;  // subnormal (or zero)
  } else {
    m |= uint64_t(1) << 52;
    e = biased - 1075;
  }
  if (m == 0) return w;
  const int tz = __builtin_ctzll(m);
  w.mant_ = m >> tz;
  w.e2_ = e + tz;
  w.neg_ = (bits >> 63) != 0;
  return w;
}

Weight Weight::from_decimal(std::string_view text) {
  auto bad = [&](const char* why) {
    DIDMARK_THROW(Errc::invalid_argument, "weight \"", text.substr(0, 60), "\" is not a decimal number: ", why);
  };
  std::size_t i = 0;
  bool neg = false;
  if (i < text.size() && text[i] == '-') {
    neg = true;
    ++i;
  }
  auto is_digit = [&](std::size_t k) { return k < text.size() && text[k] >= '0' && text[k] <= '9'; };
  if (!is_digit(i)) bad("expected a digit");
  std::string digits;  // all mantissa digits, integer part then fraction
  if (text[i] == '0' && is_digit(i + 1)) bad("leading zeros are not JSON number syntax");
  while (is_digit(i)) digits.push_back(text[i++]);
  int frac = 0;
  if (i < text.size() && text[i] == '.') {
    ++i;
    if (!is_digit(i)) bad("expected a digit after '.'");
    while (is_digit(i)) {
      digits.push_back(text[i++]);
      ++frac;
    }
  }
  long exp = 0;
  if (i < text.size() && (text[i] == 'e' || text[i] == 'E')) {
    ++i;
    bool eneg = false;
    if (i < text.size() && (text[i] == '+' || text[i] == '-')) eneg = text[i++] == '-';
    if (!is_digit(i)) bad("expected a digit in the exponent");
    while (is_digit(i)) {
      if (exp < 100000) exp = exp * 10 + (text[i] - '0');
      ++i;
    }
    if (eneg) exp = -exp;
  }
  if (i != text.size()) bad("unexpected characters after the number");

  Weight w;
  w.decimal_ = true;
  w.text_ = std::string(text);
  w.value_ = std::strtod(w.text_.c_str(), nullptr);
  // Strip leading and trailing zeros: value = D * 10^k.
  std::size_t first = digits.find_first_not_of('0');
  if (first == std::string::npos) {
    w.value_ = 0;
    return w;  // zero (sign ignored)
  }
  std::size_t last = digits.find_last_not_of('0');
  long k = exp - frac + static_cast<long>(digits.size() - 1 - last);
  const std::string sig = digits.substr(first, last - first + 1);
  DIDMARK_EXPECTS(sig.size() <= 38, invalid_argument, "weight \"", text.substr(0, 60), "\" has ", sig.size(),
                  " significant digits; at most 38 are supported");
  // The value's magnitude 10^(k + digits - 1) must lie within 1e-100 .. 1e100.
  const long magnitude = k + static_cast<long>(sig.size()) - 1;
  DIDMARK_EXPECTS(magnitude >= -100 && magnitude <= 99, invalid_argument, "weight \"", text.substr(0, 60),
                  "\" is outside the supported range 1e-100 .. 1e100");
  Amount d = 0;
  for (char c : sig) d = d * 10 + static_cast<unsigned>(c - '0');
  w.mant_ = d;
  w.e2_ = static_cast<int>(k);
  w.e5_ = static_cast<int>(k);
  w.neg_ = neg;
  return w;
}

}  // namespace didmark
