// Keys, payloads and the per-tensor carrier derivation (carrier v1).
#include <algorithm>
#include <cmath>
#if defined(__AVX2__)
#include <immintrin.h>
#endif

#include "didmark/detail/hash.hpp"
#include "didmark/error.hpp"
#include "didmark/watermark.hpp"

namespace didmark {

namespace {
int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}


std::array<uint32_t, 8> key_words(const WatermarkKey& key) {
  std::array<uint32_t, 8> k{};
  for (int i = 0; i < 8; ++i)
    k[i] = static_cast<uint32_t>(key.bytes[4 * i]) | (static_cast<uint32_t>(key.bytes[4 * i + 1]) << 8) |
           (static_cast<uint32_t>(key.bytes[4 * i + 2]) << 16) | (static_cast<uint32_t>(key.bytes[4 * i + 3]) << 24);
  return k;
}

// All 256 key bits take part: words 0-1 key Philox, 2-3 enter the counter, 4-7 whiten the
// derived subkey and stream. `domain` keeps tensor names and numbered streams apart.
detail::CarrierSpec derive(const WatermarkKey& key, uint64_t id, uint32_t domain, uint32_t num_bits) {
  DIDMARK_EXPECTS(num_bits >= 1 && num_bits <= kMaxPayloadBits, invalid_argument, "payload length ", num_bits,
                  " is outside 1..", kMaxPayloadBits);
  const auto k = key_words(key);
  const detail::u32x2 pk{k[0], k[1]};
  const auto lo = static_cast<uint32_t>(id), hi = static_cast<uint32_t>(id >> 32);
  const detail::u32x4 r = detail::philox4x32_10({lo, hi, k[2], k[3] ^ (domain << 24)}, pk);
  const detail::u32x4 r2 = detail::philox4x32_10({lo, hi, k[2], k[3] ^ ((domain | 0x80u) << 24)}, pk);
  detail::CarrierSpec s{};
  s.key = {r.x ^ k[4], r.y ^ k[5]};
  s.stream = {r.z ^ k[6], r.w ^ k[7]};
  s.bit_offset = r2.x % num_bits;
  s.num_bits = num_bits;
  return s;
}
}  // namespace

WatermarkKey WatermarkKey::from_hex(std::string_view hex) {
  DIDMARK_EXPECTS(hex.size() == 64, invalid_argument, "watermark key: expected 64 hex digits (32 bytes), got ",
                  hex.size(), " characters");
  WatermarkKey k;
  for (std::size_t i = 0; i < 32; ++i) {
    const int a = hex_value(hex[2 * i]), b = hex_value(hex[2 * i + 1]);
    DIDMARK_EXPECTS(a >= 0 && b >= 0, invalid_argument, "watermark key: non-hex character at position ",
                    a < 0 ? 2 * i : 2 * i + 1);
    k.bytes[i] = static_cast<uint8_t>(a * 16 + b);
  }
  return k;
}

WatermarkKey WatermarkKey::from_bytes(std::span<const uint8_t> raw) {
  DIDMARK_EXPECTS(raw.size() == 32, invalid_argument, "watermark key: expected 32 bytes, got ", raw.size());
  WatermarkKey k;
  std::copy(raw.begin(), raw.end(), k.bytes.begin());
  return k;
}

std::string WatermarkKey::to_hex() const {
  static constexpr char digits[] = "0123456789abcdef";
  std::string s(64, '0');
  for (std::size_t i = 0; i < 32; ++i) {
    s[2 * i] = digits[bytes[i] >> 4];
    s[2 * i + 1] = digits[bytes[i] & 15];
  }
  return s;
}

Payload Payload::from_bits(std::vector<uint8_t> bits) {
  DIDMARK_EXPECTS(!bits.empty(), invalid_argument, "payload is empty: a mark needs at least one bit");
  DIDMARK_EXPECTS(bits.size() <= kMaxPayloadBits, invalid_argument, "payload has ", bits.size(),
                  " bits; at most ", kMaxPayloadBits, " are supported");
  for (std::size_t i = 0; i < bits.size(); ++i)
    DIDMARK_EXPECTS(bits[i] <= 1, invalid_argument, "payload bit ", i, " is ", int(bits[i]), ", not 0 or 1");
  Payload p;
  p.bits = std::move(bits);
  return p;
}

Payload Payload::from_bytes(std::span<const uint8_t> bytes, std::size_t nbits) {
  DIDMARK_EXPECTS(nbits <= bytes.size() * 8, invalid_argument, "payload: ", nbits, " bits asked from ",
                  bytes.size(), " bytes");
  std::vector<uint8_t> bits(nbits);
  for (std::size_t i = 0; i < nbits; ++i) bits[i] = (bytes[i / 8] >> (i % 8)) & 1u;
  return from_bits(std::move(bits));
}

std::string_view scheme_name(Scheme s) noexcept {
  switch (s) {
    case Scheme::spread_spectrum: return "spread-spectrum";
    case Scheme::stdm: return "stdm";
    case Scheme::automatic: return "auto";
  }
  return "?";
}

std::optional<Scheme> parse_scheme(std::string_view s) noexcept {
  if (s == "spread-spectrum" || s == "ss" || s == "spread_spectrum") return Scheme::spread_spectrum;
  if (s == "stdm") return Scheme::stdm;
  if (s == "auto" || s == "automatic") return Scheme::automatic;
  return std::nullopt;
}

double WatermarkOptions::effective_strength() const noexcept { return strength_for(scheme); }

double WatermarkOptions::strength_for(Scheme s) const noexcept {
  if (strength) return *strength;
  return s == Scheme::stdm ? 0.001 : 0.005;
}

void WatermarkOptions::set_strength(double s) noexcept {
  strength = s;
  max_relative_change = std::max(max_relative_change, 2 * s);
}

detail::CarrierSpec derive_carrier(const WatermarkKey& key, std::string_view name, uint32_t num_bits) {
  return derive(key, detail::fnv1a64(name), 0u, num_bits);
}

detail::CarrierSpec derive_carrier_hashed(const WatermarkKey& key, uint64_t name_hash, uint32_t num_bits) {
  return derive(key, name_hash, 0u, num_bits);
}

#if defined(__AVX2__)
namespace {
/// detail::philox4x32_10 on 8 lanes (counter words per lane, one key), in place: the same
/// arithmetic, vpmuludq on the even and the odd lanes for the 32x32 -> 64-bit products.
void philox8(uint32_t* xs, uint32_t* ys, uint32_t* zs, uint32_t* ws, uint32_t k0, uint32_t k1) {
  auto load = [](const uint32_t* p) { return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)); };
  __m256i x = load(xs), y = load(ys), z = load(zs), w = load(ws);
  const __m256i m0 = _mm256_set1_epi32(static_cast<int>(0xD2511F53u));
  const __m256i m1 = _mm256_set1_epi32(static_cast<int>(0xCD9E8D57u));
  auto mulhilo = [](__m256i a, __m256i m, __m256i& hi, __m256i& lo) {
    const __m256i pe = _mm256_mul_epu32(a, m);
    const __m256i po = _mm256_mul_epu32(_mm256_srli_epi64(a, 32), m);
    lo = _mm256_blend_epi32(pe, _mm256_slli_epi64(po, 32), 0xAA);
    hi = _mm256_blend_epi32(_mm256_srli_epi64(pe, 32), po, 0xAA);
  };
  for (int r = 0; r < 10; ++r) {
    __m256i hi0, lo0, hi1, lo1;
    mulhilo(x, m0, hi0, lo0);
    mulhilo(z, m1, hi1, lo1);
    x = _mm256_xor_si256(_mm256_xor_si256(hi1, y), _mm256_set1_epi32(static_cast<int>(k0)));
    y = lo1;
    z = _mm256_xor_si256(_mm256_xor_si256(hi0, w), _mm256_set1_epi32(static_cast<int>(k1)));
    w = lo0;
    k0 += 0x9E3779B9u;  // the Weyl key schedule of detail/philox.hpp
    k1 += 0xBB67AE85u;
  }
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(xs), x);
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(ys), y);
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(zs), z);
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(ws), w);
}
}  // namespace
#endif

void derive_carriers_hashed(const WatermarkKey& key, std::span<const uint64_t> name_hashes, uint32_t num_bits,
                            detail::CarrierSpec* out, std::size_t stride) {
  DIDMARK_EXPECTS(num_bits >= 1 && num_bits <= kMaxPayloadBits, invalid_argument, "payload length ", num_bits,
                  " is outside 1..", kMaxPayloadBits);
  const auto k = key_words(key);
  // derive()'s two Philox calls for N names at once: lanes [0, N) the subkey and stream, lanes
  // [N, 2N) the bit offset. A registry screen derives one carrier per key and tensor, 10^6 of
  // them for 10^4 keys, so 8 lanes per vector instead of one call at a time.
  constexpr std::size_t N = 8;
  for (std::size_t i0 = 0; i0 < name_hashes.size(); i0 += N) {
    const std::size_t m = std::min(N, name_hashes.size() - i0);
    uint32_t x[2 * N], y[2 * N], z[2 * N], w[2 * N];
    for (std::size_t i = 0; i < 2 * N; ++i) {
      const uint64_t id = name_hashes[i0 + std::min(i % N, m - 1)];
      x[i] = static_cast<uint32_t>(id);
      y[i] = static_cast<uint32_t>(id >> 32);
      z[i] = k[2];
      w[i] = k[3] ^ (i < N ? 0u : 0x80u << 24);
    }
#if defined(__AVX2__)
    for (std::size_t h = 0; h < 2 * N; h += 8) philox8(x + h, y + h, z + h, w + h, k[0], k[1]);
#else
    for (std::size_t i = 0; i < 2 * N; ++i) {
      const detail::u32x4 r = detail::philox4x32_10({x[i], y[i], z[i], w[i]}, {k[0], k[1]});
      x[i] = r.x;
      y[i] = r.y;
      z[i] = r.z;
      w[i] = r.w;
    }
#endif
    for (std::size_t i = 0; i < m; ++i) {
      detail::CarrierSpec& s = out[(i0 + i) * stride];
      s = detail::CarrierSpec{};
      s.key = {x[i] ^ k[4], y[i] ^ k[5]};
      s.stream = {z[i] ^ k[6], w[i] ^ k[7]};
      s.bit_offset = x[N + i] % num_bits;
      s.num_bits = num_bits;
    }
  }
}

detail::CarrierSpec derive_carrier(const WatermarkKey& key, uint64_t stream_id, uint32_t num_bits) {
  return derive(key, stream_id, 1u, num_bits);
}

}  // namespace didmark
