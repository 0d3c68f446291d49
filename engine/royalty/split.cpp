// The largest-remainder split and cascades of levels.
#include <algorithm>
#include <cstring>
#include <numeric>

#include "didmark/error.hpp"
#include "didmark/identity.hpp"
#include "didmark/royalty.hpp"
#include "identity/did_detail.hpp"
#include "royalty/bigint.hpp"
#include "royalty/split_detail.hpp"

namespace didmark {

namespace detail {

std::vector<uint32_t> sorted_order(std::span<const std::string_view> ids) {
  const std::size_t n = ids.size();
  std::vector<uint32_t> order(n);
  std::iota(order.begin(), order.end(), 0u);
  if (n < 2) return order;
  // Sort by the 8 bytes after the longest common prefix, then by the whole id: DIDs often
  // share a long prefix ("did:key:z6Mk"), and comparing two 64-bit keys is cheap.
  std::size_t lcp = ids[0].size();
  for (std::size_t i = 1; i < n && lcp > 0; ++i) {
    const std::size_t m = std::min(lcp, ids[i].size());
    std::size_t k = 0;
    while (k < m && ids[i][k] == ids[0][k]) ++k;
    lcp = k;
  }
  std::vector<std::pair<uint64_t, uint32_t>> keyed(n);
  for (std::size_t i = 0; i < n; ++i) {
    uint64_t key = 0;
    const std::string_view s = ids[i];
    for (std::size_t b = 0; b < 8; ++b) {
      const std::size_t pos = lcp + b;
      key = (key << 8) | (pos < s.size() ? static_cast<unsigned char>(s[pos]) : 0u);
    }
    keyed[i] = {key, static_cast<uint32_t>(i)};
  }
  // LSD radix sort on the key, 16 bits a pass, skipping passes where all keys agree (for
  // large lists; a comparison sort is quicker below a few thousand).
  if (n < 4096) {
    std::sort(keyed.begin(), keyed.end());
  } else {
    std::vector<std::pair<uint64_t, uint32_t>> tmp(n);
    std::vector<uint32_t> count(65536);
    for (int shift = 0; shift < 64; shift += 16) {
      std::fill(count.begin(), count.end(), 0u);
      for (const auto& e : keyed) ++count[(e.first >> shift) & 0xffff];
      if (count[(keyed[0].first >> shift) & 0xffff] == n) continue;
      uint32_t sum = 0;
      for (auto& c : count) {
        const uint32_t v = c;
        c = sum;
        sum += v;
      }
      for (const auto& e : keyed) tmp[count[(e.first >> shift) & 0xffff]++] = e;
      keyed.swap(tmp);
    }
  }
  for (std::size_t i = 0; i < n;) {
    std::size_t j = i + 1;
    while (j < n && keyed[j].first == keyed[i].first) ++j;
    if (j - i > 1)
      std::sort(keyed.begin() + static_cast<std::ptrdiff_t>(i), keyed.begin() + static_cast<std::ptrdiff_t>(j),
                [&](const auto& a, const auto& b) { return ids[a.second] < ids[b.second]; });
    i = j;
  }
  for (std::size_t i = 0; i < n; ++i) order[i] = keyed[i].second;
  return order;
}

namespace {

// Weights on a common scale: W_i = mant_i * 2^(e2_i - A) * 5^(e5_i - B), an integer.
class Scale {
 public:
  explicit Scale(std::span<const ExactWeight> ws) {
    bool any = false;
    for (const ExactWeight& w : ws) {
      if (w.sign == 0) continue;
      a_ = any ? std::min(a_, w.e2) : w.e2;
      b_ = any ? std::min(b_, w.e5) : w.e5;
      any = true;
    }
  }
  void magnitude(const ExactWeight& w, BigUInt& out) {
    out.assign(w.mant);
    if (out.is_zero()) return;
    const int d5 = w.e5 - b_;
    if (d5 > 0) {
      BigUInt m(w.mant);
      BigUInt::mul(m, pow5(d5), out);
    }
    out <<= (w.e2 - a_);
  }

 private:
  const BigUInt& pow5(int k) {
    if (pow5_.empty()) pow5_.emplace_back(static_cast<u128>(1));
    while (static_cast<int>(pow5_.size()) <= k) {
      BigUInt next = pow5_.back();
      next.mul_small(5);
      pow5_.push_back(next);
    }
    return pow5_[static_cast<std::size_t>(k)];
  }
  int a_ = 0, b_ = 0;
  std::vector<BigUInt> pow5_;
};

}  // namespace

std::optional<std::vector<Amount>> split_sorted(Amount revenue, std::span<const ExactWeight> ws,
                                                NegativeWeights negative) {
  const std::size_t n = ws.size();
  Scale scale(ws);
  // The negative-weight policy, applied on the exact values.
  BigUInt shift;  // |most negative weight| under NegativeWeights::shift
  if (negative == NegativeWeights::shift)
    for (std::size_t i = 0; i < n; ++i) {
      if (ws[i].sign >= 0) continue;
      BigUInt m;
      scale.magnitude(ws[i], m);
      if (shift < m) shift = m;
    }
  auto weight_of = [&](std::size_t i, BigUInt& out) {
    const int s = ws[i].sign;
    if (s > 0) {
      scale.magnitude(ws[i], out);
      if (!shift.is_zero()) out += shift;
    } else if (s == 0) {
      out = shift;
    } else if (shift.is_zero()) {  // clip (or refuse, checked by the caller)
      out = BigUInt();
    } else {  // shift: |min| - |w|
      BigUInt m;
      scale.magnitude(ws[i], m);
      out = shift;
      out -= m;
    }
  };

  BigUInt total, w;
  for (std::size_t i = 0; i < n; ++i) {
    weight_of(i, w);
    total += w;
  }
  if (total.is_zero()) return std::nullopt;

  // floor(R * W_i * 2^64 / S): the share's integer part and 64 bits of its fraction.
  std::vector<Amount> out(n, 0);
  std::vector<uint64_t> frac(n, 0);
  std::vector<uint8_t> positive(n, 0);
  const BigUInt r(revenue);
  BigUInt r64(revenue);
  r64 <<= 64;
  const Divisor div(total);
  Amount distributed = 0;
  std::size_t npositive = 0;
  BigUInt p, q, rem;
  for (std::size_t i = 0; i < n; ++i) {
    weight_of(i, w);
    if (w.is_zero()) continue;
    positive[i] = 1;
    ++npositive;
    BigUInt::mul(r64, w, p);
    div.divmod(p, q, rem);
    DIDMARK_ASSERT(q.size() <= 3);
    frac[i] = q.limb(0);
    const Amount share = (static_cast<u128>(q.limb(2)) << 64) | q.limb(1);
    out[i] = share;
    distributed += share;
  }
  DIDMARK_ASSERT(distributed <= revenue);
  const Amount left = revenue - distributed;
  DIDMARK_ASSERT(left < static_cast<Amount>(npositive));
  if (left == 0) return out;

  // The `left` largest remainders get one unit each; ties go to the smaller id (index order).
  const std::size_t need = static_cast<std::size_t>(left);
  std::vector<uint64_t> keys;
  keys.reserve(npositive);
  for (std::size_t i = 0; i < n; ++i)
    if (positive[i]) keys.push_back(frac[i]);
  std::nth_element(keys.begin(), keys.begin() + static_cast<std::ptrdiff_t>(need - 1), keys.end(),
                   std::greater<uint64_t>());
  const uint64_t threshold = keys[need - 1];
  std::vector<uint32_t> ties;
  std::size_t given = 0;
  for (std::size_t i = 0; i < n; ++i) {
    if (!positive[i]) continue;
    if (frac[i] > threshold) {
      ++out[i];
      ++given;
    } else if (frac[i] == threshold) {
      ties.push_back(static_cast<uint32_t>(i));
    }
  }
  DIDMARK_ASSERT(given < need && given + ties.size() >= need);
  const std::size_t more = need - given;
  if (ties.size() > more) {
    // Equal 64-bit fractions: compare the exact remainders R * W_i mod S.
    const int stride = std::max(1, total.size());
    std::vector<uint64_t> rems(ties.size() * static_cast<std::size_t>(stride), 0);
    for (std::size_t t = 0; t < ties.size(); ++t) {
      weight_of(ties[t], w);
      BigUInt::mul(r, w, p);
      div.divmod(p, q, rem);
      for (int k = 0; k < stride; ++k) rems[t * static_cast<std::size_t>(stride) + static_cast<std::size_t>(k)] = rem.limb(k);
    }
    std::vector<uint32_t> pos(ties.size());
    std::iota(pos.begin(), pos.end(), 0u);
    std::stable_sort(pos.begin(), pos.end(), [&](uint32_t a, uint32_t b) {
      const uint64_t* ra = &rems[a * static_cast<std::size_t>(stride)];
      const uint64_t* rb = &rems[b * static_cast<std::size_t>(stride)];
      for (int k = stride - 1; k >= 0; --k)
        if (ra[k] != rb[k]) return ra[k] > rb[k];
      return false;
    });
    for (std::size_t t = 0; t < more; ++t) ++out[ties[pos[t]]];
  } else {
    for (uint32_t t : ties) ++out[t];
  }
  return out;
}

}  // namespace detail

namespace {

void check_payees(std::span<const Payee> payees, std::span<const uint32_t> order,
                  std::span<const std::string_view> ids) {
  DIDMARK_EXPECTS(payees.size() < 0xffffffffu, invalid_argument, "too many payees (", payees.size(), ")");
  for (std::size_t k = 0; k + 1 < order.size(); ++k)
    DIDMARK_EXPECTS(ids[order[k]] != ids[order[k + 1]], invalid_argument, "duplicate payee ", ids[order[k]]);
  for (const auto& p : payees) detail::validate_did(p.did);
}

}  // namespace

namespace {

std::vector<Payout> split_impl(Amount revenue, std::span<const Payee> payees, const SplitOptions& options,
                               std::vector<uint32_t>* index, std::vector<Weight>* weights) {
  DIDMARK_EXPECTS(!payees.empty() || options.fallback, invalid_argument,
                  "no payees to split among (and no fallback payee)");
  std::vector<std::string_view> ids(payees.size());
  for (std::size_t i = 0; i < payees.size(); ++i) ids[i] = payees[i].did;
  const std::vector<uint32_t> order = detail::sorted_order(ids);
  check_payees(payees, order, ids);
  if (options.fallback) (void)parse_did(*options.fallback);

  // One pass in DID order (random in memory, so prefetched) gathers the exact weights and
  // copies the DIDs into the result.
  std::vector<detail::ExactWeight> ws(payees.size());
  std::vector<Payout> out;
  out.reserve(payees.size() + 1);
  if (weights) {
    weights->clear();
    weights->reserve(payees.size() + 1);
  }
  for (std::size_t k = 0; k < order.size(); ++k) {
    detail::prefetch_payee(payees, order, k);
    const Payee& p = payees[order[k]];
    ws[k] = detail::exact_weight(p.weight);
    if (ws[k].sign < 0 && options.negative == NegativeWeights::refuse)
      DIDMARK_THROW(Errc::invalid_argument, "payee ", p.did, " has a negative weight (",
                    p.weight.is_decimal() ? p.weight.text() : detail::concat(p.weight.to_double()),
                    ") and the policy for negative weights is 'refuse'");
    out.push_back({p.did, 0});
    if (weights) weights->push_back(p.weight);
  }
  const auto amounts = detail::split_sorted(revenue, ws, options.negative);
  if (index) index->assign(order.begin(), order.end());
  if (!amounts) {
    DIDMARK_EXPECTS(options.fallback.has_value(), invalid_argument,
                    "all ", payees.size(), " weights are zero",
                    options.negative == NegativeWeights::clip ? " (negative weights count as zero)" : "",
                    ": nobody to pay; name a fallback payee");
    const std::string& fb = *options.fallback;
    const auto at = std::lower_bound(out.begin(), out.end(), fb,
                                     [](const Payout& a, const std::string& b) { return a.did < b; });
    if (at != out.end() && at->did == fb) {
      at->amount = revenue;
    } else {
      const auto pos = static_cast<std::size_t>(at - out.begin());
      out.insert(at, Payout{fb, revenue});
      if (index) index->insert(index->begin() + static_cast<std::ptrdiff_t>(pos), LevelResult::kNotAPayee);
      if (weights) weights->insert(weights->begin() + static_cast<std::ptrdiff_t>(pos), Weight{});
    }
    return out;
  }
  for (std::size_t k = 0; k < out.size(); ++k) out[k].amount = (*amounts)[k];
  return out;
}

}  // namespace

std::vector<Payout> split(Amount revenue, std::span<const Payee> payees, const SplitOptions& options) {
  return split_impl(revenue, payees, options, nullptr, nullptr);
}

Policy single_level_policy(std::vector<Payee> input, NegativeWeights negative, std::optional<std::string> fallback) {
  Policy p;
  p.negative = negative;
  p.fallback = std::move(fallback);
  Level l;
  l.name = "payees";
  l.payees = std::move(input);
  p.levels.push_back(std::move(l));
  return p;
}

CascadeResult run_cascade(Amount revenue, const Policy& policy) {
  DIDMARK_EXPECTS(!policy.levels.empty(), invalid_argument, "the policy has no levels");
  CascadeResult res;
  res.revenue = revenue;
  Amount reaching = revenue;
  for (std::size_t k = 0; k < policy.levels.size(); ++k) {
    const Level& lv = policy.levels[k];
    const bool last = k + 1 == policy.levels.size();
    const std::string label = lv.name.empty() ? "level " + std::to_string(k + 1) : "level '" + lv.name + "'";
    if (lv.keep_bps) {
      DIDMARK_EXPECTS(*lv.keep_bps >= 0 && *lv.keep_bps <= 10000, invalid_argument, label, ": keep_bps ",
                      *lv.keep_bps, " is outside 0..10000");
      DIDMARK_EXPECTS(!last || *lv.keep_bps == 10000, invalid_argument, label,
                      " is the last level: it keeps everything that reaches it (drop keep_bps or set 10000)");
    }
    const Amount bps = static_cast<Amount>(lv.keep_bps.value_or(10000));
    // round(A * bps / 10000), half up, without overflow: A = 10000 q + r.
    const Amount kept = (reaching / 10000) * bps + ((reaching % 10000) * bps + 5000) / 10000;
    LevelResult lr;
    lr.name = lv.name;
    lr.received = reaching;
    lr.kept = kept;
    lr.passed = reaching - kept;
    SplitOptions so;
    so.negative = policy.negative;
    so.fallback = lv.fallback ? lv.fallback : policy.fallback;
    try {
      lr.payouts = split_impl(kept, lv.payees, so, &lr.payee_index, &lr.weights);
    } catch (const Error& e) {
      if (policy.levels.size() == 1) throw;
      DIDMARK_THROW(e.code(), label, ": ", e.what());
    }
    reaching = lr.passed;
    res.levels.push_back(std::move(lr));
  }
  DIDMARK_ASSERT(reaching == 0);

  if (res.levels.size() == 1) {
    res.payees.reserve(res.levels[0].payouts.size());
    for (const auto& p : res.levels[0].payouts) res.payees.push_back({p.did, p.amount, {{0, p.amount}}});
    return res;
  }
  struct Entry {
    std::string_view did;
    std::size_t level;
    Amount amount;
  };
  std::vector<Entry> all;
  for (std::size_t k = 0; k < res.levels.size(); ++k)
    for (const auto& p : res.levels[k].payouts) all.push_back({p.did, k, p.amount});
  std::stable_sort(all.begin(), all.end(), [](const Entry& a, const Entry& b) { return a.did < b.did; });
  for (const auto& e : all) {
    if (res.payees.empty() || res.payees.back().did != e.did) res.payees.push_back({std::string(e.did), 0, {}});
    res.payees.back().total += e.amount;
    res.payees.back().path.push_back({e.level, e.amount});
  }
  return res;
}

}  // namespace didmark
