// The largest-remainder split and cascades of levels.
#include <algorithm>
#include <cstring>
#include <numeric>

#include "didmark/error.hpp"
#include "didmark/identity.hpp"
#include "didmark/royalty.hpp"
#include "identity/did_detail.hpp"
#include "royalty/bigint.hpp"
#include "royalty/fixed_div.hpp"
#include "common/radix_sort.hpp"
#include "royalty/split_detail.hpp"

namespace didmark {

namespace detail {

namespace {

struct Keyed {
  uint64_t key;
  uint32_t index;
};

// The 8 bytes of `s` from `pos` as a big-endian number (missing bytes are 0).
inline uint64_t key_at(std::string_view s, std::size_t pos) {
  if (s.size() >= pos + 8) {
    uint64_t v;
    std::memcpy(&v, s.data() + pos, 8);
    return __builtin_bswap64(v);
  }
  uint64_t key = 0;
  for (std::size_t b = 0; b < 8; ++b) key = (key << 8) | (pos + b < s.size() ? static_cast<unsigned char>(s[pos + b]) : 0u);
  return key;
}

// How many of the first `n` bytes of `a` and `b` agree.
inline std::size_t common_prefix(const char* a, const char* b, std::size_t n) {
  std::size_t k = 0;
  for (; k + 8 <= n; k += 8) {
    uint64_t x, y;
    std::memcpy(&x, a + k, 8);
    std::memcpy(&y, b + k, 8);
    if (x != y) return k + static_cast<std::size_t>(__builtin_ctzll(x ^ y)) / 8;  // little-endian
  }
  while (k < n && a[k] == b[k]) ++k;
  return k;
}

// Sort ids by the 8 bytes after their longest common prefix, then by the whole id: DIDs often
// share a long prefix ("did:key:z6Mk"), and comparing two 64-bit keys is cheap. `id(i)` is
// the i-th id; `visit(i, id)` sees each id in input order in the first pass over them (while
// its characters are in cache); `duplicate(i)` is called for an id equal to the one before
// it (equal ids have equal keys, so only runs of equal keys are compared). `a` and `b` hold
// n records each (scratch); the order goes to `order`.
template <class Id, class Visit, class Duplicate>
void sort_ids(std::size_t n, Id id, Visit visit, Duplicate duplicate, Keyed* a, Keyed* b, uint32_t* order) {
  if (n == 0) return;
  // The keys are taken after the common prefix of the first chunk, in the first pass; only
  // when a later id shares less with the first are they taken again.
  const std::string_view first = id(0);
  std::size_t guess = first.size();
  for (std::size_t i = 1; i < std::min(n, kChunk); ++i) {
    const std::string_view s = id(i);
    guess = common_prefix(s.data(), first.data(), std::min(guess, s.size()));
  }
  std::size_t lcp = guess;
  for (std::size_t base = 0; base < n; base += kChunk) {
    const std::size_t end = std::min(n, base + kChunk);
    unsigned sum = 0;
    for (std::size_t i = base; i < end; ++i) sum += touch(id(i));
    keep(sum);
    for (std::size_t i = base; i < end; ++i) {
      const std::string_view s = id(i);
      visit(i, s);
      lcp = common_prefix(s.data(), first.data(), std::min(lcp, s.size()));
      a[i] = {key_at(s, guess), static_cast<uint32_t>(i)};
    }
  }
  if (lcp < guess)
    for (std::size_t i = 0; i < n; ++i) a[i].key = key_at(id(i), lcp);
  if (n < 2) {
    order[0] = 0;
    return;
  }
  // LSD radix sort on the key, 16 bits a pass (all four histograms in one pass), skipping
  // passes where all keys agree (for large lists; a comparison sort is quicker below a few
  // thousand).
  auto by_key = [](const Keyed& x, const Keyed& y) { return x.key < y.key; };
  if (n < 4096) {
    std::sort(a, a + n, by_key);
  } else {
    std::vector<uint32_t> count(4 * 65536);
    a = detail::lsd_radix_sort(
        a, b, n, 4, 65536, [](const Keyed& k, int d) { return static_cast<uint32_t>((k.key >> (16 * d)) & 0xffff); },
        count.data());
  }
  for (std::size_t i = 0; i < n;) {
    std::size_t j = i + 1;
    while (j < n && a[j].key == a[i].key) ++j;
    if (j - i > 1) {
      std::sort(a + i, a + j, [&](const Keyed& x, const Keyed& y) { return id(x.index) < id(y.index); });
      for (std::size_t k = i + 1; k < j; ++k)
        if (id(a[k].index) == id(a[k - 1].index)) duplicate(a[k].index);
    }
    i = j;
  }
  for (std::size_t i = 0; i < n; ++i) order[i] = a[i].index;
}

template <class Id>
std::vector<uint32_t> sorted_order_of(std::size_t n, Id id) {
  std::vector<uint32_t> order(n);
  std::vector<Keyed> scratch(2 * n);
  sort_ids(
      n, id, [](std::size_t, std::string_view) {}, [](std::size_t) {}, scratch.data(), scratch.data() + n, order.data());
  return order;
}

}  // namespace

std::vector<uint32_t> sorted_order(std::span<const std::string_view> ids) {
  return sorted_order_of(ids.size(), [&](std::size_t i) { return ids[i]; });
}

namespace {

// Weights on a common scale: W_i = mant_i * 2^(e2_i - A) * 5^(e5_i - B), an integer.
class Scale {
 public:
  explicit Scale(std::span<const ExactWeight> ws) {
    bool any = false;
    for (const ExactWeight& w : ws) {
      if (w.sign == 0) continue;
      a_ = any ? std::min<int>(a_, w.e2) : w.e2;
      b_ = any ? std::min<int>(b_, w.e5) : w.e5;
      any = true;
    }
  }
  int a() const noexcept { return a_; }
  int b() const noexcept { return b_; }
  void magnitude(const ExactWeight& w, BigUInt& out) {
    out.assign(w.mant());
    if (out.is_zero()) return;
    const int d5 = w.e5 - b_;
    if (d5 > 0) {
      BigUInt m(w.mant());
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

// The integer weights W_i (after the negative policy) as big integers.
class BigWeights {
 public:
  BigWeights(std::span<const ExactWeight> ws, NegativeWeights negative) : ws_(ws), scale_(ws) {
    if (negative != NegativeWeights::shift) return;
    for (const ExactWeight& w : ws) {  // |most negative weight|
      if (w.sign >= 0) continue;
      BigUInt m;
      scale_.magnitude(w, m);
      if (shift_ < m) shift_ = m;
    }
  }
  void weight(std::size_t i, BigUInt& out) {
    const int s = ws_[i].sign;
    if (s > 0) {
      scale_.magnitude(ws_[i], out);
      if (!shift_.is_zero()) out += shift_;
    } else if (s == 0) {
      out = shift_;
    } else if (shift_.is_zero()) {  // clip (or refuse, checked by the caller)
      out = BigUInt();
    } else {  // shift: |min| - |w|
      scale_.magnitude(ws_[i], m_);
      out = shift_;
      out -= m_;
    }
  }

 private:
  std::span<const ExactWeight> ws_;
  Scale scale_;
  BigUInt shift_, m_;
};

// The same weights in 128-bit integers, when every one of them and their sum fit.
class NarrowWeights {
 public:
  NarrowWeights(std::span<const ExactWeight> ws, NegativeWeights negative, int a, int b) : ws_(ws), a_(a), b_(b) {
    pow5_[0] = 1;
    for (int k = 1; k < kPow5; ++k) pow5_[k] = pow5_[k - 1] * 5;
    if (negative == NegativeWeights::shift)
      for (const ExactWeight& w : ws) {
        if (w.sign >= 0) continue;
        u128 m;
        if (!magnitude(w, m)) return;
        shift_ = std::max(shift_, m);
      }
    ok_ = true;
  }
  bool ok() const noexcept { return ok_; }
  /// W_i; false when it does not fit in 128 bits.
  bool weight(std::size_t i, u128& out) const noexcept {
    const ExactWeight& w = ws_[i];
    if (w.sign > 0) {
      u128 m;
      return magnitude(w, m) && !__builtin_add_overflow(m, shift_, &out);
    }
    if (w.sign == 0 || shift_ == 0) {
      out = w.sign == 0 ? shift_ : 0;
      return true;
    }
    u128 m;
    if (!magnitude(w, m)) return false;  // cannot happen: checked in the constructor
    out = shift_ - m;
    return true;
  }

 private:
  static constexpr int kPow5 = 56;  // 5^55 < 2^128
  bool magnitude(const ExactWeight& w, u128& out) const noexcept {
    u128 m = w.mant();
    if (m == 0) {
      out = 0;
      return true;
    }
    const int d5 = w.e5 - b_, d2 = w.e2 - a_;
    if (d5 >= kPow5 || d2 >= 128) return false;
    if (d5 > 0 && __builtin_mul_overflow(m, pow5_[d5], &m)) return false;
    if (d2 > 0 && (m >> (128 - d2)) != 0) return false;
    out = m << d2;
    return true;
  }
  std::span<const ExactWeight> ws_;
  int a_, b_;
  u128 shift_ = 0;
  u128 pow5_[kPow5];
  bool ok_ = false;
};

int bit_length(u128 v) {
  const uint64_t hi = static_cast<uint64_t>(v >> 64), lo = static_cast<uint64_t>(v);
  return hi ? 128 - __builtin_clzll(hi) : (lo ? 64 - __builtin_clzll(lo) : 0);
}

// What the share pass gathers besides the shares: the sum of the floors, the number of
// payees with a positive weight and a histogram of the top 16 bits of their fractions.
struct ShareTally {
  Amount distributed = 0;
  std::size_t npositive = 0;
  std::vector<uint32_t> hist = std::vector<uint32_t>(65536, 0u);
  void add(Amount share, uint64_t frac) {
    distributed += share;
    ++npositive;
    ++hist[frac >> 48];
  }
};

// The shares with 128-bit weights: false when the weights (or their sum, or R * W) do not
// fit, and nothing was written.
bool narrow_shares(Amount revenue, std::span<const ExactWeight> ws, NegativeWeights negative, int a, int b,
                   Payout* out, uint64_t* frac, uint8_t* positive, bool& all_zero, ShareTally& tally) {
  const NarrowWeights nw(ws, negative, a, b);
  if (!nw.ok()) return false;
  const std::size_t n = ws.size();
  u128 total = 0, w = 0, wmax = 0;
  for (std::size_t i = 0; i < n; ++i) {
    if (!nw.weight(i, w) || __builtin_add_overflow(total, w, &total)) return false;
    wmax = std::max(wmax, w);
  }
  all_zero = total == 0;
  if (all_zero) return true;
  if (bit_length(revenue) + bit_length(wmax) > 192) return false;  // R * W must stay below 2^192

  const Divisor128 div(total);
  const uint64_t r0 = static_cast<uint64_t>(revenue), r1 = static_cast<uint64_t>(revenue >> 64);
  for (std::size_t i = 0; i < n; ++i) {
    (void)nw.weight(i, w);
    if (w == 0) {
      out[i].amount = 0;
      frac[i] = 0;
      positive[i] = 0;
      continue;
    }
    // R * W in three limbs.
    const uint64_t w0 = static_cast<uint64_t>(w), w1 = static_cast<uint64_t>(w >> 64);
    const u128 p00 = static_cast<u128>(r0) * w0, p01 = static_cast<u128>(r0) * w1;
    const u128 p10 = static_cast<u128>(r1) * w0, p11 = static_cast<u128>(r1) * w1;
    const u128 mid = (p00 >> 64) + static_cast<uint64_t>(p01) + static_cast<uint64_t>(p10);
    const u128 high = (mid >> 64) + (p01 >> 64) + (p10 >> 64) + p11;
    u128 share;
    frac[i] = share_and_fraction(div, static_cast<uint64_t>(high), static_cast<uint64_t>(mid), static_cast<uint64_t>(p00),
                                 share);
    out[i].amount = share;
    positive[i] = 1;
    tally.add(share, frac[i]);
  }
  return true;
}

// The shares with big integers (any finite weights).
bool big_shares(Amount revenue, std::span<const ExactWeight> ws, NegativeWeights negative, Payout* out, uint64_t* frac,
                uint8_t* positive, ShareTally& tally) {
  const std::size_t n = ws.size();
  BigWeights bw(ws, negative);
  BigUInt total, w;
  for (std::size_t i = 0; i < n; ++i) {
    bw.weight(i, w);
    total += w;
  }
  if (total.is_zero()) return false;
  // floor(R * W_i * 2^64 / S): the share's integer part and 64 bits of its fraction.
  BigUInt r64(revenue);
  r64 <<= 64;
  const Divisor div(total);
  BigUInt p, q, rem;
  for (std::size_t i = 0; i < n; ++i) {
    bw.weight(i, w);
    if (w.is_zero()) {
      out[i].amount = 0;
      frac[i] = 0;
      positive[i] = 0;
      continue;
    }
    BigUInt::mul(r64, w, p);
    div.divmod(p, q, rem);
    DIDMARK_ASSERT(q.size() <= 3);
    frac[i] = q.limb(0);
    out[i].amount = (static_cast<u128>(q.limb(2)) << 64) | q.limb(1);
    positive[i] = 1;
    tally.add(out[i].amount, frac[i]);
  }
  return true;
}

// The `need`-th largest of the keys of positive payees (need >= 1): the histogram of the top
// 16 bits finds the bucket, a selection within it the key (no copy of all keys).
uint64_t nth_largest(const uint64_t* frac, const uint8_t* positive, std::size_t n, std::size_t need,
                     const std::vector<uint32_t>& hist) {
  std::size_t above = 0, bucket = 65535;
  while (above + hist[bucket] < need) {
    above += hist[bucket];
    DIDMARK_ASSERT(bucket > 0);
    --bucket;
  }
  std::vector<uint64_t> cand;
  cand.reserve(hist[bucket]);
  for (std::size_t i = 0; i < n; ++i)
    if (positive[i] && (frac[i] >> 48) == bucket) cand.push_back(frac[i]);
  const std::size_t k = need - above - 1;
  std::nth_element(cand.begin(), cand.begin() + static_cast<std::ptrdiff_t>(k), cand.end(), std::greater<uint64_t>());
  return cand[k];
}

}  // namespace

bool split_sorted(Amount revenue, std::span<const ExactWeight> ws, NegativeWeights negative, Payout* out,
                  SplitArithmetic arithmetic, std::byte* scratch) {
  const std::size_t n = ws.size();
  // 64 bits of each fraction and whether the weight is positive (every entry is written).
  std::unique_ptr<std::byte[]> own;
  if (!scratch) {
    own = std::make_unique_for_overwrite<std::byte[]>(std::max<std::size_t>(9 * n, 1));
    scratch = own.get();
  }
  uint64_t* const frac = reinterpret_cast<uint64_t*>(scratch);
  uint8_t* const positive = reinterpret_cast<uint8_t*>(scratch + 8 * n);
  bool done = false, all_zero = false;
  ShareTally tally;
  if (arithmetic == SplitArithmetic::automatic) {
    const Scale scale(ws);
    done = narrow_shares(revenue, ws, negative, scale.a(), scale.b(), out, frac, positive, all_zero, tally);
    if (done && all_zero) return false;
  }
  if (!done && !big_shares(revenue, ws, negative, out, frac, positive, tally)) return false;

  DIDMARK_ASSERT(tally.distributed <= revenue);
  const Amount left = revenue - tally.distributed;
  DIDMARK_ASSERT(left < static_cast<Amount>(tally.npositive));
  if (left == 0) return true;

  // The `left` largest remainders get one unit each; ties go to the smaller id (index order).
  const std::size_t need = static_cast<std::size_t>(left);
  const uint64_t threshold = nth_largest(frac, positive, n, need, tally.hist);
  std::vector<uint32_t> ties;
  std::size_t given = 0;
  for (std::size_t i = 0; i < n; ++i) {
    if (!positive[i]) continue;
    if (frac[i] > threshold) {
      ++out[i].amount;
      ++given;
    } else if (frac[i] == threshold) {
      ties.push_back(static_cast<uint32_t>(i));
    }
  }
  DIDMARK_ASSERT(given < need && given + ties.size() >= need);
  const std::size_t more = need - given;
  if (ties.size() > more) {
    // Equal 64-bit fractions: compare the exact remainders R * W_i mod S.
    BigWeights bw(ws, negative);
    BigUInt total, w, p, q, rem;
    for (std::size_t i = 0; i < n; ++i) {
      bw.weight(i, w);
      total += w;
    }
    const BigUInt r(revenue);
    const Divisor div(total);
    const int stride = std::max(1, total.size());
    std::vector<uint64_t> rems(ties.size() * static_cast<std::size_t>(stride), 0);
    for (std::size_t t = 0; t < ties.size(); ++t) {
      bw.weight(ties[t], w);
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
    for (std::size_t t = 0; t < more; ++t) ++out[ties[pos[t]]].amount;
  } else {
    for (uint32_t t : ties) ++out[t].amount;
  }
  return true;
}

std::optional<std::vector<Amount>> split_sorted(Amount revenue, std::span<const ExactWeight> ws,
                                                NegativeWeights negative, SplitArithmetic arithmetic) {
  std::vector<Payout> rows(ws.size());
  if (!split_sorted(revenue, ws, negative, rows.data(), arithmetic)) return std::nullopt;
  std::vector<Amount> out(ws.size());
  for (std::size_t i = 0; i < ws.size(); ++i) out[i] = rows[i].amount;
  return out;
}

}  // namespace detail

namespace {

struct SplitOut {
  Payouts payouts;
  std::vector<uint32_t> index;  // for each payout, its payee's index (or kNotAPayee)
};

// The split of one list of payees. With an `owner` (the cascade's policy, which holds
// `payees` and `fallback`), the payouts view the payees' DIDs and keep the owner alive;
// without one, the DIDs are copied into the payouts' own text block.
SplitOut split_impl(Amount revenue, std::span<const Payee> payees, NegativeWeights negative,
                    const std::string* fallback, std::shared_ptr<const void> owner) {
  DIDMARK_EXPECTS(!payees.empty() || fallback, invalid_argument, "no payees to split among (and no fallback payee)");
  const std::size_t n = payees.size();
  DIDMARK_EXPECTS(n < 0xffffffffu, invalid_argument, "too many payees (", n, ")");
  // One scratch block serves the sort (2n keys of 16 bytes) and then the exact weights (24
  // bytes each) and the fractions of the shares (9 bytes each): fresh memory costs a page
  // fault per 4 KiB.
  static_assert(sizeof(detail::Keyed) == 16 && sizeof(detail::ExactWeight) == 24);
  const std::size_t scratch_bytes = n * std::max(2 * sizeof(detail::Keyed), sizeof(detail::ExactWeight) + 9);
  const auto scratch = std::make_unique_for_overwrite<std::byte[]>(std::max<std::size_t>(scratch_bytes, 1));
  static_assert(alignof(detail::Keyed) <= __STDCPP_DEFAULT_NEW_ALIGNMENT__ &&
                alignof(detail::ExactWeight) <= __STDCPP_DEFAULT_NEW_ALIGNMENT__);
  // The DIDs are checked in input order (in memory order, while the sort reads them);
  // duplicates show up in the sort.
  std::size_t text_bytes = 0;
  std::vector<uint32_t> order(n);
  auto* keys = reinterpret_cast<detail::Keyed*>(scratch.get());
  detail::sort_ids(
      n, [&](std::size_t i) { return std::string_view(payees[i].did); },
      [&](std::size_t, std::string_view did) {
        detail::validate_did(did);
        text_bytes += did.size();
      },
      [&](std::size_t i) { DIDMARK_THROW(Errc::invalid_argument, "duplicate payee ", payees[i].did); }, keys, keys + n,
      order.data());
  if (fallback) (void)parse_did(*fallback);

  // One pass in DID order, random in memory, so in chunks (see kChunk): the exact weights
  // and the rows; the DIDs are read again only to be copied.
  auto block = std::make_shared<detail::PayoutsAccess::Block>();
  const bool copy = owner == nullptr;
  if (copy) {
    block->text_size = text_bytes + (fallback ? fallback->size() : 0);
    block->text = std::make_unique_for_overwrite<char[]>(std::max<std::size_t>(block->text_size, 1));
  } else {
    block->keep.push_back(std::move(owner));
  }
  block->text_used = text_bytes;
  std::vector<Payout>& rows = block->rows;
  rows.reserve(n + 1);
  // A cascade level records each row's weight for the statement (written before the loop:
  // page faults inside it would stall the reads it waits for).
  std::vector<detail::PayoutsAccess::WeightRecord>& records = block->weights;
  if (!copy) {
    records.reserve(n + 1);
    records.resize(n);
  }
  auto* ws = reinterpret_cast<detail::ExactWeight*>(scratch.get());
  char* text = block->text.get();
  for (std::size_t base = 0; base < n; base += detail::kChunk) {
    const std::size_t m = std::min(n - base, detail::kChunk);
    unsigned sum = 0;
    for (std::size_t k = base; k < base + m; ++k) {
      const Payee& p = payees[order[k]];
      new (ws + k) detail::ExactWeight(detail::exact_weight(p.weight));
      rows.push_back({p.did, 0});
      if (copy)
        sum += detail::touch(p.did);
      else
        records[k] = {p.weight.to_double(), p.weight.is_decimal() ? &p.weight.text() : nullptr};
    }
    detail::keep(sum);
    if (copy)
      for (std::size_t k = base; k < base + m; ++k) {
        const std::string_view did = rows[k].did;
        std::memcpy(text, did.data(), did.size());
        rows[k].did = std::string_view(text, did.size());
        text += did.size();
      }
    if (negative == NegativeWeights::refuse)
      for (std::size_t k = base; k < base + m; ++k)
        if (ws[k].sign < 0) {
          const Weight& w = payees[order[k]].weight;
          DIDMARK_THROW(Errc::invalid_argument, "payee ", rows[k].did, " has a negative weight (",
                        w.is_decimal() ? w.text() : detail::concat(w.to_double()),
                        ") and the policy for negative weights is 'refuse'");
        }
  }
  const bool paid = detail::split_sorted(revenue, std::span<const detail::ExactWeight>(ws, n), negative, rows.data(),
                                         detail::SplitArithmetic::automatic, scratch.get() + n * sizeof(detail::ExactWeight));
  if (!paid) {
    DIDMARK_EXPECTS(fallback != nullptr, invalid_argument, "all ", n, " weights are zero",
                    negative == NegativeWeights::clip ? " (negative weights count as zero)" : "",
                    ": nobody to pay; name a fallback payee");
    const std::string_view fb = *fallback;
    const auto at = std::lower_bound(rows.begin(), rows.end(), fb, [](const Payout& a, std::string_view b) { return a.did < b; });
    if (at != rows.end() && at->did == fb) {
      at->amount = revenue;
    } else {
      const auto pos = static_cast<std::size_t>(at - rows.begin());
      std::string_view view = fb;
      if (copy) {
        std::memcpy(text, fb.data(), fb.size());
        view = std::string_view(text, fb.size());
      }
      block->text_used += fb.size();
      rows.insert(at, Payout{view, revenue});
      if (!copy) records.insert(records.begin() + static_cast<std::ptrdiff_t>(pos), detail::PayoutsAccess::WeightRecord{});
      order.insert(order.begin() + static_cast<std::ptrdiff_t>(pos), LevelResult::kNotAPayee);
    }
  }
  return {detail::PayoutsAccess::make(std::move(block)), std::move(order)};
}

}  // namespace

Payouts split(Amount revenue, std::span<const Payee> payees, const SplitOptions& options) {
  return split_impl(revenue, payees, options.negative, options.fallback ? &*options.fallback : nullptr, nullptr).payouts;
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

namespace {

// Two lists of payouts, each sorted by DID with each DID once, merged: a DID in both gets the
// sum. The DIDs are random in memory, and comparing two reads both: when one list is much
// shorter, each of its rows finds its place in the longer one by binary search (the longer
// one's rows are then copied without reading their DIDs); else a merge reads both in chunks
// (see detail::kChunk).
std::vector<Payout> merge_totals(std::span<const Payout> a, std::span<const Payout> b) {
  if (a.size() < b.size()) std::swap(a, b);
  std::vector<Payout> out;
  out.reserve(a.size() + b.size());
  const auto less = [](const Payout& p, std::string_view d) { return p.did < d; };
  std::size_t log_a = 1;
  while ((std::size_t(1) << log_a) < a.size() + 1) ++log_a;
  if (b.size() * log_a < a.size() + b.size()) {
    std::size_t i = 0;
    for (const Payout& q : b) {
      const std::size_t at = static_cast<std::size_t>(std::lower_bound(a.begin() + static_cast<std::ptrdiff_t>(i), a.end(),
                                                                       q.did, less) - a.begin());
      out.insert(out.end(), a.begin() + static_cast<std::ptrdiff_t>(i), a.begin() + static_cast<std::ptrdiff_t>(at));
      i = at;
      if (i < a.size() && a[i].did == q.did) {
        out.push_back({a[i].did, a[i].amount + q.amount});
        ++i;
      } else {
        out.push_back(q);
      }
    }
    out.insert(out.end(), a.begin() + static_cast<std::ptrdiff_t>(i), a.end());
    return out;
  }
  std::size_t i = 0, j = 0, touched_a = 0, touched_b = 0;
  const auto touch_ahead = [](std::span<const Payout> list, std::size_t from, std::size_t& touched) {
    if (from < touched) return;
    unsigned sum = 0;
    touched = std::min(list.size(), from + detail::kChunk);
    for (std::size_t k = from; k < touched; ++k) sum += detail::touch(list[k].did);
    detail::keep(sum);
  };
  while (i < a.size() && j < b.size()) {
    touch_ahead(a, i, touched_a);
    touch_ahead(b, j, touched_b);
    if (a[i].did < b[j].did) {
      out.push_back(a[i++]);
    } else if (b[j].did < a[i].did) {
      out.push_back(b[j++]);
    } else {
      out.push_back({a[i].did, a[i].amount + b[j].amount});
      ++i;
      ++j;
    }
  }
  out.insert(out.end(), a.begin() + static_cast<std::ptrdiff_t>(i), a.end());
  out.insert(out.end(), b.begin() + static_cast<std::ptrdiff_t>(j), b.end());
  return out;
}

}  // namespace

CascadeResult run_cascade(Amount revenue, Policy policy_in) {
  DIDMARK_EXPECTS(!policy_in.levels.empty(), invalid_argument, "the policy has no levels");
  const auto policy = std::make_shared<const Policy>(std::move(policy_in));
  CascadeResult res;
  res.revenue = revenue;
  res.policy = policy;
  Amount reaching = revenue;
  for (std::size_t k = 0; k < policy->levels.size(); ++k) {
    const Level& lv = policy->levels[k];
    const bool last = k + 1 == policy->levels.size();
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
    const std::optional<std::string>& fallback = lv.fallback ? lv.fallback : policy->fallback;
    try {
      SplitOut out = split_impl(kept, lv.payees, policy->negative, fallback ? &*fallback : nullptr, policy);
      lr.payouts = std::move(out.payouts);
      lr.payee_index = std::move(out.index);
    } catch (const Error& e) {
      if (policy->levels.size() == 1) throw;
      DIDMARK_THROW(e.code(), label, ": ", e.what());
    }
    reaching = lr.passed;
    res.levels.push_back(std::move(lr));
  }
  DIDMARK_ASSERT(reaching == 0);

  // Totals. One level: its payouts. More: merge the levels' payouts (each sorted by DID).
  if (res.levels.size() == 1) {
    res.payees = res.levels[0].payouts;
  } else {
    auto block = std::make_shared<detail::PayoutsAccess::Block>();
    std::vector<std::span<const Payout>> lists;
    for (const auto& l : res.levels) {
      lists.push_back(l.payouts);
      block->keep.push_back(detail::PayoutsAccess::block(l.payouts));
    }
    // The smaller lists first, so that the largest is merged once, at the end.
    std::stable_sort(lists.begin(), lists.end(), [](auto a, auto b) { return a.size() < b.size(); });
    std::vector<Payout> acc(lists[0].begin(), lists[0].end());
    for (std::size_t k = 1; k < lists.size(); ++k) acc = merge_totals(acc, lists[k]);
    block->rows = std::move(acc);
    res.payees = detail::PayoutsAccess::make(std::move(block));
  }
  return res;
}

std::vector<PathStep> CascadeResult::path(std::string_view did) const {
  std::vector<PathStep> out;
  for (std::size_t k = 0; k < levels.size(); ++k) {
    const Payouts& ps = levels[k].payouts;
    const Payout* at = std::lower_bound(ps.begin(), ps.end(), did, [](const Payout& p, std::string_view d) { return p.did < d; });
    if (at != ps.end() && at->did == did) out.push_back({k, at->amount});
  }
  return out;
}

}  // namespace didmark
