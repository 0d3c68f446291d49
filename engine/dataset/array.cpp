// Row-keyed spread-spectrum marks in N x D arrays, written once against the dataset op table.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <numeric>

#include "backend/dataset_ops.hpp"
#include "common/thread_pool.hpp"
#include "didmark/dataset.hpp"
#include "didmark/error.hpp"

namespace didmark {
namespace {

using Clock = std::chrono::steady_clock;
constexpr int64_t kRowsPerTask = 1 << 14;
// Claims verified per pass over the array (bounds the row-carrier table to K x rows).
constexpr std::size_t kClaimsPerPass = 16;

double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

void check_array(const TensorView& v, const char* what) {
  validate_view(v, what);
  DIDMARK_EXPECTS(v.rank() == 2, invalid_argument, what, ": expected an N x D array, got ", v.describe(),
                  " (reshape a 1-D array to N x 1 only if each value is a row)");
  DIDMARK_EXPECTS(is_watermarkable(v.dtype), unsupported, what, ": dtype ", dtype_name(v.dtype),
                  " is not one of f32, f64, f16, bf16");
  DIDMARK_EXPECTS(v.is_contiguous(), unsupported, what, ": ", v.describe(), " is not contiguous");
}

void check_options(const ArrayOptions& o) {
  DIDMARK_EXPECTS(std::isfinite(o.strength) && o.strength > 0 && o.strength <= 0.2, invalid_argument,
                  "array strength must be in (0, 0.2], got ", o.strength);
  DIDMARK_EXPECTS(o.min_cosine > 0 && o.min_cosine <= 1, invalid_argument, "min cosine must be in (0, 1], got ",
                  o.min_cosine);
  DIDMARK_EXPECTS(o.p_threshold > 0 && o.p_threshold < 1, invalid_argument, "p threshold must be in (0, 1), got ",
                  o.p_threshold);
}

void check_ids(std::span<const int64_t> ids, int64_t rows) {
  DIDMARK_EXPECTS(ids.empty() || static_cast<int64_t>(ids.size()) == rows, invalid_argument, "the array has ", rows,
                  " rows but ", ids.size(), " row ids were given");
}

void check_payload(const Payload& p) {
  DIDMARK_EXPECTS(!p.bits.empty() && p.bits.size() <= kMaxPayloadBits, invalid_argument, "payload has ",
                  p.bits.size(), " bits; 1..", kMaxPayloadBits, " are supported");
}

uint64_t row_id(std::span<const int64_t> ids, int64_t r) {
  return static_cast<uint64_t>(ids.empty() ? r : ids[static_cast<std::size_t>(r)]);
}

/// specs[offset + r] = derive_carrier(key, id_r, L) for every row.
void row_specs(Backend& backend, const WatermarkKey& key, std::span<const int64_t> ids, int64_t rows, uint32_t L,
               detail::CarrierSpec* specs) {
  const int64_t tasks = (rows + kRowsPerTask - 1) / kRowsPerTask;
  backend.host_pool().parallel_for(tasks, [&](int, int64_t t) {
    const int64_t r1 = std::min(rows, (t + 1) * kRowsPerTask);
    for (int64_t r = t * kRowsPerTask; r < r1; ++r) specs[r] = derive_carrier(key, row_id(ids, r), L);
  });
}

std::vector<float> bit_signs(const Payload& p) {
  std::vector<float> s(p.size());
  for (std::size_t b = 0; b < p.size(); ++b) s[b] = p.bits[b] ? -1.0f : 1.0f;
  return s;
}

}  // namespace

int64_t array_min_elements(double strength, double p_threshold) {
  const double z = provable_z(p_threshold);
  return static_cast<int64_t>(std::ceil((z / strength) * (z / strength)));
}

ArrayEmbedReport embed_array(const TensorView& src, const TensorView& dst, std::span<const int64_t> ids,
                             const WatermarkKey& key, const Payload& payload, const ArrayOptions& options,
                             Backend& backend) {
  const auto t0 = Clock::now();
  check_options(options);
  check_payload(payload);
  check_array(src, "embed_array source");
  check_array(dst, "embed_array destination");
  DIDMARK_EXPECTS(src.dtype == dst.dtype && src.shape == dst.shape, invalid_argument, "embed_array: source is ",
                  src.describe(), " but destination is ", dst.describe());
  const int64_t rows = src.shape[0], dim = src.shape[1];
  check_ids(ids, rows);
  const auto L = static_cast<uint32_t>(payload.size());

  std::vector<detail::CarrierSpec> specs(static_cast<std::size_t>(rows));
  row_specs(backend, key, ids, rows, L, specs.data());
  const auto signs = bit_signs(payload);
  std::vector<dataset::RowEmbedStats> st(static_cast<std::size_t>(rows));
  dataset::DatasetOps& ops = backend.dataset_ops();
  if (rows > 0 && dim > 0) {
    ops.array_embed(src, dst, specs, signs, options.strength, st);
  } else if (src.data != dst.data && src.nbytes() > 0) {
    backend.copy(src, dst);
  }

  ArrayEmbedReport rep;
  rep.rows = rows;
  rep.dim = dim;
  rep.strength = options.strength;
  rep.row_cosine.assign(static_cast<std::size_t>(rows), 1.0f);
  rep.row_change.assign(static_cast<std::size_t>(rows), 0.0f);
  double total_src = 0, total_diff = 0, cos_sum = 0, change_sum = 0;
  for (int64_t r = 0; r < rows && dim > 0; ++r) {
    const auto& s = st[static_cast<std::size_t>(r)];
    if (s.status != dataset::kRowOk) {
      ++rep.rows_skipped;
      continue;
    }
    ++rep.rows_marked;
    const double diff = std::max(0.0, s.dst_sq - 2.0 * s.dot + s.src_sq);
    const double change = std::sqrt(diff / s.src_sq);
    const double cosine = s.dst_sq > 0 ? std::min(1.0, s.dot / std::sqrt(s.src_sq * s.dst_sq)) : 0.0;
    rep.row_cosine[static_cast<std::size_t>(r)] = static_cast<float>(cosine);
    rep.row_change[static_cast<std::size_t>(r)] = static_cast<float>(change);
    total_src += s.src_sq;
    total_diff += diff;
    cos_sum += cosine;
    change_sum += change;
    rep.min_cosine = std::min(rep.min_cosine, cosine);
    rep.max_row_change = std::max(rep.max_row_change, change);
  }
  if (rep.rows_marked > 0) {
    const auto m = static_cast<double>(rep.rows_marked);
    rep.mean_cosine = cos_sum / m;
    rep.mean_row_change = change_sum / m;
    rep.relative_change = std::sqrt(total_diff / total_src);
  }
  rep.within_budget = rep.min_cosine >= options.min_cosine;
  rep.expected_z = options.strength * std::sqrt(static_cast<double>(rep.rows_marked * dim));
  rep.backend = ops.name();
  rep.seconds = seconds_since(t0);
  return rep;
}

std::vector<ArrayVerifyReport> verify_array(const TensorView& x, std::span<const int64_t> ids,
                                            std::span<const Claim> claims, const ArrayOptions& options,
                                            Backend& backend) {
  const auto t0 = Clock::now();
  check_options(options);
  check_array(x, "verify_array");
  const int64_t rows = x.shape[0], dim = x.shape[1];
  check_ids(ids, rows);
  if (claims.empty()) return {};
  const std::size_t L = claims[0].payload.size();
  for (const auto& c : claims) {
    check_payload(c.payload);
    DIDMARK_EXPECTS(c.payload.size() == L, invalid_argument, "claims carry payloads of different lengths (",
                    c.payload.size(), " vs ", L, ")");
  }

  // A repeated id repeats its carrier: only its first row counts, so rows stay independent.
  std::vector<uint8_t> use;
  int64_t duplicates = 0;
  if (!ids.empty()) {
    std::vector<int64_t> order(static_cast<std::size_t>(rows));
    std::iota(order.begin(), order.end(), int64_t{0});
    std::sort(order.begin(), order.end(), [&](int64_t a, int64_t b) {
      const int64_t ia = ids[static_cast<std::size_t>(a)], ib = ids[static_cast<std::size_t>(b)];
      return ia != ib ? ia < ib : a < b;
    });
    use.assign(static_cast<std::size_t>(rows), 1);
    for (std::size_t i = 1; i < order.size(); ++i)
      if (ids[static_cast<std::size_t>(order[i])] == ids[static_cast<std::size_t>(order[i - 1])]) {
        use[static_cast<std::size_t>(order[i])] = 0;
        ++duplicates;
      }
    if (duplicates == 0) use.clear();
  }

  dataset::DatasetOps& ops = backend.dataset_ops();
  std::vector<ArrayVerifyReport> out(claims.size());
  const double log10_threshold = std::log10(options.p_threshold);
  for (std::size_t k0 = 0; k0 < claims.size(); k0 += kClaimsPerPass) {
    const std::size_t K = std::min(kClaimsPerPass, claims.size() - k0);
    std::vector<detail::CarrierSpec> specs(K * static_cast<std::size_t>(rows));
    std::vector<float> signs;
    for (std::size_t k = 0; k < K; ++k) {
      row_specs(backend, claims[k0 + k].key, ids, rows, static_cast<uint32_t>(L), specs.data() + k * static_cast<std::size_t>(rows));
      const auto s = bit_signs(claims[k0 + k].payload);
      signs.insert(signs.end(), s.begin(), s.end());
    }
    std::vector<dataset::ClaimSums> sums(K);
    if (rows > 0 && dim > 0) {
      ops.array_correlate(x, specs, use, signs, sums);
    } else {
      for (auto& s : sums) {
        s.bit_sums.assign(L, 0.0);
        s.bit_weight.assign(L, 0.0);
      }
    }
    for (std::size_t k = 0; k < K; ++k) {
      const auto& s = sums[k];
      const Payload& expected = claims[k0 + k].payload;
      ArrayVerifyReport& r = out[k0 + k];
      r.rows = s.rows;
      r.rows_skipped = s.skipped;
      r.duplicate_rows = duplicates;
      r.dim = dim;
      r.bits = static_cast<int>(L);
      r.soft_bits.resize(L);
      r.decoded.resize(L);
      for (std::size_t b = 0; b < L; ++b) {
        const double soft = s.bit_weight[b] > 0 ? s.bit_sums[b] / std::sqrt(s.bit_weight[b]) : 0.0;
        r.soft_bits[b] = static_cast<float>(soft);
        r.decoded[b] = soft < 0 ? 1 : 0;
        r.bit_errors += (s.bit_weight[b] > 0 && r.decoded[b] == expected.bits[b]) ? 0 : 1;
      }
      r.z = s.rows > 0 ? s.t / std::sqrt(static_cast<double>(s.rows)) : 0.0;
      r.log10_p = hoeffding_log10_p(r.z);
      r.p_value = hoeffding_p_value(r.z);
      r.detected = s.rows > 0 && r.log10_p <= log10_threshold;
    }
  }
  const double secs = seconds_since(t0);
  for (auto& r : out) r.seconds = secs;
  return out;
}

}  // namespace didmark
