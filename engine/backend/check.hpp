#pragma once
// Argument checks shared by the CPU and CUDA backends, so both refuse the same inputs with
// the same words.

#include <span>

#include "didmark/backend.hpp"
#include "didmark/detail/screen_math.hpp"
#include "didmark/error.hpp"

namespace didmark::backend_check {

inline void float_view(const TensorView& v, const char* what) {
  validate_view(v, what);
  DIDMARK_EXPECTS(is_watermarkable(v.dtype), unsupported, what, ": dtype ", dtype_name(v.dtype),
                  " is not one of f32, f64, f16, bf16");
  DIDMARK_EXPECTS(v.is_contiguous(), unsupported, what, ": non-contiguous view ", v.describe(),
                  " (make it contiguous first)");
}

inline void host_float_view(const TensorView& v, const char* what) {
  float_view(v, what);
  DIDMARK_EXPECTS(v.device == Device::cpu, invalid_argument, what, ": the cpu backend got a device view (",
                  v.describe(), "); use the cuda backend or copy it to the host");
}

inline void carriers(std::span<const detail::CarrierSpec> cs, std::size_t out_size) {
  DIDMARK_EXPECTS(cs.size() == out_size, invalid_argument, "correlate: ", cs.size(), " carriers but ", out_size,
                  " result slots");
  for (const auto& c : cs) DIDMARK_EXPECTS(c.num_bits >= 1, invalid_argument, "correlate: carrier with 0 payload bits");
}

inline void screen_args(const ScreenSample& sample, std::span<const detail::CarrierSpec> cs,
                        std::span<const uint64_t> payload_bits) {
  DIDMARK_EXPECTS(sample.stride >= 1 && sample.phase >= 0, invalid_argument, "screen: sample stride ", sample.stride,
                  " and phase ", sample.phase, " (stride must be >= 1, phase >= 0)");
  if (cs.empty()) return;
  const uint32_t L = cs[0].num_bits;
  DIDMARK_EXPECTS(L >= 1, invalid_argument, "screen: carrier with 0 payload bits");
  for (const auto& c : cs)
    DIDMARK_EXPECTS(c.num_bits == L, invalid_argument, "screen: carriers of ", c.num_bits, " and ", L,
                    " payload bits in one call (all keys must carry payloads of one length)");
  const std::size_t words = (L + 63) / 64;
  DIDMARK_EXPECTS(payload_bits.size() == cs.size() * words, invalid_argument, "screen: ", payload_bits.size(),
                  " payload words for ", cs.size(), " keys of ", L, " bits (", cs.size() * words, " expected)");
}

/// The sampled groups of one screen call (count 0: nothing to add), after the argument checks
/// and with `out` reset for the call's keys: the part both backends share before their sums.
struct ScreenRange {
  int64_t numel = 0, count = 0, first = 0;
};
/// The sample part of begin_screen, for a call whose carriers and payload were checked already.
inline ScreenRange begin_screen_sample(const TensorView& w, const ScreenSample& sample, std::size_t num_keys,
                                       ScreenSums& out) {
  DIDMARK_EXPECTS(sample.stride >= 1 && sample.phase >= 0, invalid_argument, "screen: sample stride ", sample.stride,
                  " and phase ", sample.phase, " (stride must be >= 1, phase >= 0)");
  out.t.assign(num_keys, 0.0);
  out.sum_sq = 0;
  out.elements = 0;
  out.nonfinite = 0;
  ScreenRange r;
  r.numel = w.numel();
  const int64_t groups = (r.numel + detail::kScreenGroup - 1) / detail::kScreenGroup;
  r.count = detail::screen_group_count(groups, sample.stride, sample.phase);
  if (r.count > 0) r.first = detail::screen_first_group(sample.stride, sample.phase);
  return r;
}
inline ScreenRange begin_screen(const TensorView& w, const ScreenSample& sample,
                                std::span<const detail::CarrierSpec> cs, std::span<const uint64_t> payload_bits,
                                ScreenSums& out) {
  screen_args(sample, cs, payload_bits);
  return begin_screen_sample(w, sample, cs.size(), out);
}

/// Arguments of Backend::screen_many (the per-item screen checks come from begin_screen).
inline void screen_many_args(std::span<const ScreenItem> items, std::size_t num_keys,
                             std::span<const detail::CarrierSpec> cs, std::span<const ScreenSums> out) {
  DIDMARK_EXPECTS(out.size() == items.size(), invalid_argument, "screen_many: ", items.size(), " items but ",
                  out.size(), " result slots");
  const std::size_t sets = num_keys > 0 ? cs.size() / num_keys : 0;
  DIDMARK_EXPECTS(num_keys > 0 ? cs.size() == sets * num_keys : cs.empty(), invalid_argument, "screen_many: ",
                  cs.size(), " carriers are not whole sets of ", num_keys, " keys");
  for (const ScreenItem& it : items)
    DIDMARK_EXPECTS(num_keys == 0 || it.carrier_set < sets, invalid_argument, "screen_many: carrier set ",
                    it.carrier_set, " of ", sets);
}

/// Keys of carrier set `set` in a screen_many call.
inline std::span<const detail::CarrierSpec> screen_set(std::span<const detail::CarrierSpec> cs, std::size_t num_keys,
                                                       std::size_t set) {
  return num_keys > 0 ? cs.subspan(set * num_keys, num_keys) : cs.first(0);
}

inline void same_layout(const TensorView& a, const TensorView& b, const char* what) {
  DIDMARK_EXPECTS(a.dtype == b.dtype, invalid_argument, what, ": dtypes differ (", a.describe(), " vs ",
                  b.describe(), ")");
  DIDMARK_EXPECTS(a.numel() == b.numel(), invalid_argument, what, ": element counts differ (", a.describe(), " vs ",
                  b.describe(), ")");
  DIDMARK_EXPECTS(a.is_contiguous() && b.is_contiguous(), unsupported, what, ": views must be contiguous");
}

inline void add_args(const TensorView& src, const TensorView& dst, const detail::CarrierSpec& c,
                     std::span<const float> delta) {
  same_layout(src, dst, "carrier_add");
  DIDMARK_EXPECTS(c.num_bits >= 1, invalid_argument, "carrier_add: carrier with 0 payload bits");
  DIDMARK_EXPECTS(delta.size() == c.num_bits, invalid_argument, "carrier_add: ", delta.size(),
                  " step values for a carrier of ", c.num_bits, " bits");
  // Steps are fractions of a tensor's RMS; the vector paths rely on them being far from
  // the float range's end (no rounding into Inf).
  for (std::size_t b = 0; b < delta.size(); ++b)
    DIDMARK_EXPECTS(delta[b] == delta[b] && delta[b] > -1e30f && delta[b] < 1e30f, invalid_argument,
                    "carrier_add: step for bit ", b, " is ", delta[b], " (must be finite and below 1e30)");
}

}  // namespace didmark::backend_check
