#pragma once
// Helpers for the royalty tests: payee lists and an independent reference split.
#include <algorithm>
#include <map>
#include <string>
#include <vector>

#include "didmark/royalty.hpp"

namespace didmark::test {

__extension__ typedef unsigned __int128 u128;

inline u128 u128_of(const char* s) { return parse_amount(s); }

inline std::vector<Payee> payees_of(std::initializer_list<std::pair<const char*, double>> list) {
  std::vector<Payee> out;
  for (auto [d, w] : list) out.push_back({d, Weight::from_double(w)});
  return out;
}

inline std::map<std::string, Amount> as_map(std::span<const Payout> ps) {
  std::map<std::string, Amount> m;
  for (const auto& p : ps) m[std::string(p.did)] = p.amount;
  return m;
}

inline Amount total(std::span<const Payout> ps) {
  Amount t = 0;
  for (const auto& p : ps) t += p.amount;
  return t;
}

/// The rule written out plainly for integer weights below 2^40 and R below 2^80, in native
/// 128-bit arithmetic (no shared code with the library's big-integer path).
inline std::map<std::string, Amount> reference_split(Amount r, const std::vector<std::pair<std::string, uint64_t>>& ws) {
  u128 s = 0;
  for (const auto& w : ws) s += w.second;
  std::map<std::string, Amount> out;
  std::vector<std::pair<u128, std::string>> rems;
  Amount given = 0;
  for (const auto& [d, w] : ws) {
    const u128 p = r * w;
    out[d] = p / s;
    given += p / s;
    rems.push_back({p % s, d});
  }
  std::sort(rems.begin(), rems.end(), [](const auto& a, const auto& b) {
    return a.first != b.first ? a.first > b.first : a.second < b.second;
  });
  for (Amount k = 0; k < r - given; ++k) ++out[rems[static_cast<std::size_t>(k)].second];
  return out;
}

}  // namespace didmark::test
