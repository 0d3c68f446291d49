// Carrier v2, the idea of issue 15, measured before deciding (docs/perf/registry.md): per-element
// signs from a registry-wide secret R, per-block signs per owner, so that one pass computes
// the block sums B_g = sum_j w_j cR_j for every owner and each owner costs O(blocks):
//   carrier of owner k at element j of block g:  cR_j * sk_g   (payload bit b(g) as in v1)
//   test of owner k:  T_k = sum_g sk_g s_k(b(g)) B_g,  z = T_k / sqrt(sum_g B_g^2)
// (a valid Hoeffding test: given w and R the sk_g are the only randomness). Compared with carrier
// v1 (per-element signs per owner) on the same Gaussian model, single-threaded:
//  1. cost of scoring 10^4 owners on a 4M-element sample;
//  2. detection and the null over other owners;
//  3. an adversary who knows R: remove each block's projection on cR (every owner's mark at once);
//  4. an adversary without R who has two copies of one base model marked by two owners: the
//     difference reveals cR (up to a sign per block) wherever the owners' block signs differ;
//     used on a third owner's model of the same architecture;
//  5. carrier v1 under the same budgets: noise of the same size, the same two-copy difference.
// Prints markdown tables.
//
//   bench/registry_carrier_v2 [log2 elements (default 24)]
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <vector>

#include <ctime>

#include "backend/cpu/cpu_kernels.hpp"
#include "didmark/backend.hpp"
#include "didmark/detail/carrier.hpp"
#include "didmark/watermark.hpp"

namespace {

using namespace didmark;
constexpr uint32_t kBits = 256;
constexpr const char* kName = "blocks.0.mlp.weight";
constexpr double kStrength = 0.005;

// Costs are CPU seconds of this (single) thread: the machine is shared.
double cpu_seconds() {
  timespec t;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
  return static_cast<double>(t.tv_sec) + 1e-9 * static_cast<double>(t.tv_nsec);
}

WatermarkKey key_of(uint64_t seed) {
  std::mt19937_64 rng(seed);
  WatermarkKey k;
  for (auto& b : k.bytes) b = static_cast<uint8_t>(rng());
  return k;
}

struct Owner {
  detail::CarrierSpec spec;  // v1 carrier; v2 block signs come from its stream in domain 2
  std::vector<uint8_t> payload;
};

Owner owner(uint64_t seed) {
  Owner o{derive_carrier(key_of(seed), kName, kBits), std::vector<uint8_t>(kBits)};
  std::mt19937_64 rng(seed ^ 0xABCDEFull);
  for (auto& b : o.payload) b = static_cast<uint8_t>(rng() & 1);
  return o;
}

double psign(const Owner& o, uint64_t g) { return o.payload[detail::carrier_bit_index(o.spec, g)] ? -1.0 : 1.0; }

/// v1 element sign of element j.
double v1_sign(const detail::CarrierSpec& s, int64_t j) {
  const auto g = static_cast<uint64_t>(j / 128);
  return detail::carrier_sign_bit(detail::carrier_signs(s, g), static_cast<uint32_t>(j % 128)) ? -1.0 : 1.0;
}

/// v2 block sign of owner o for block g: 128 blocks per Philox call.
double v2_block_sign(const Owner& o, uint64_t g) {
  const auto r = detail::carrier_random(o.spec, g / 128, 2);
  return detail::carrier_sign_bit(r, static_cast<uint32_t>(g % 128)) ? -1.0 : 1.0;
}

std::vector<float> host(int64_t n, uint64_t seed) {
  std::vector<float> w(static_cast<std::size_t>(n));
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> nd(0, 0.02f);
  for (auto& x : w) x = nd(rng);
  return w;
}

double rms(const std::vector<float>& w) {
  double s = 0;
  for (float x : w) s += double(x) * x;
  return std::sqrt(s / static_cast<double>(w.size()));
}

/// Registry-wide element signs cR (+-1 as float).
std::vector<float> registry_signs(const detail::CarrierSpec& R, int64_t n) {
  std::vector<float> c(static_cast<std::size_t>(n));
  for (int64_t j = 0; j < n; ++j) c[static_cast<std::size_t>(j)] = static_cast<float>(v1_sign(R, j));
  return c;
}

void embed_v1(std::vector<float>& w, const Owner& o) {
  const double a = kStrength * rms(w);
  for (int64_t j = 0; j < static_cast<int64_t>(w.size()); ++j)
    w[static_cast<std::size_t>(j)] += static_cast<float>(a * v1_sign(o.spec, j) * psign(o, static_cast<uint64_t>(j / 128)));
}

void embed_v2(std::vector<float>& w, const Owner& o, const std::vector<float>& cR) {
  const double a = kStrength * rms(w);
  for (int64_t g = 0; g < static_cast<int64_t>(w.size()) / 128; ++g) {
    const double s = a * v2_block_sign(o, static_cast<uint64_t>(g)) * psign(o, static_cast<uint64_t>(g));
    for (int e = 0; e < 128; ++e) w[static_cast<std::size_t>(g * 128 + e)] += static_cast<float>(s * cR[static_cast<std::size_t>(g * 128 + e)]);
  }
}

double z_v1(const std::vector<float>& w, const Owner& o) {
  double t = 0, ss = 0;
  for (int64_t j = 0; j < static_cast<int64_t>(w.size()); ++j) {
    const double x = w[static_cast<std::size_t>(j)];
    t += x * v1_sign(o.spec, j) * psign(o, static_cast<uint64_t>(j / 128));
    ss += x * x;
  }
  return t / std::sqrt(ss);
}

std::vector<double> block_sums(const std::vector<float>& w, const std::vector<float>& cR) {
  std::vector<double> B(w.size() / 128, 0.0);
  for (std::size_t j = 0; j < w.size(); ++j) B[j / 128] += double(w[j]) * cR[j];
  return B;
}

double z_v2(const std::vector<double>& B, const Owner& o) {
  double t = 0, ss = 0;
  for (std::size_t g = 0; g < B.size(); ++g) {
    t += B[g] * v2_block_sign(o, g) * psign(o, g);
    ss += B[g] * B[g];
  }
  return t / std::sqrt(ss);
}

double rel_change(const std::vector<float>& a, const std::vector<float>& b) {
  double d = 0, s = 0;
  for (std::size_t j = 0; j < a.size(); ++j) {
    d += (double(a[j]) - b[j]) * (double(a[j]) - b[j]);
    s += double(b[j]) * b[j];
  }
  return std::sqrt(d / s);
}

/// Remove each block's projection on `c` (+-1 per element) where mask[g] is set; fraction f of it.
void strip(std::vector<float>& w, const std::vector<float>& c, const std::vector<uint8_t>& mask, double f) {
  for (std::size_t g = 0; g < w.size() / 128; ++g) {
    if (!mask[g]) continue;
    double p = 0;
    for (int e = 0; e < 128; ++e) p += double(w[g * 128 + e]) * c[g * 128 + e];
    p /= 128;
    for (int e = 0; e < 128; ++e) w[g * 128 + e] -= static_cast<float>(f * p * c[g * 128 + e]);
  }
}

}  // namespace

int main(int argc, char** argv) {
  const int lg = argc > 1 ? std::atoi(argv[1]) : 24;
  const int64_t n = int64_t{1} << lg;
  const auto R = derive_carrier(key_of(0x5EC12E7), kName, kBits);  // the registry-wide secret
  const std::vector<float> cR = registry_signs(R, n);
  const Owner A = owner(1), B = owner(2), C = owner(3);
  std::printf("Model: one f32 tensor of %lld Gaussian weights, strength %.3f (expected z %.1f), single thread.\n\n",
              static_cast<long long>(n), kStrength, kStrength * std::sqrt(static_cast<double>(n)));

  // 1. Cost of scoring 10^4 owners on a 4M-element sample (31,250 blocks).
  {
    constexpr int64_t kSample = int64_t{1} << 22;
    constexpr std::size_t kOwners = 10'000;
    const int64_t blocks = kSample / 128;
    std::vector<float> w = host(kSample, 11);
    std::vector<Owner> reg;
    for (std::size_t k = 0; k < kOwners; ++k) reg.push_back(owner(100 + k));
    // v1: Backend::screen over every block of the sample, all owners in one call.
    std::vector<detail::CarrierSpec> cs;
    std::vector<uint64_t> bits(kOwners * 4, 0);
    for (std::size_t k = 0; k < kOwners; ++k) {
      cs.push_back(reg[k].spec);
      for (uint32_t b = 0; b < kBits; ++b)
        if (reg[k].payload[b]) bits[k * 4 + b / 64] |= uint64_t{1} << (b % 64);
    }
    auto be = make_cpu_backend(1);
    ScreenSums out;
    const TensorView v = TensorView::contiguous(w.data(), DType::f32, {kSample});
    double t0 = cpu_seconds();
    be->screen(v, {1, 0}, cs, bits, out);
    const double v1s = cpu_seconds() - t0;
    // v2: the block sums once, then per owner one Philox call per 128 blocks, the payload signs
    // of those 128 blocks folded into its bits, and a signed sum of 128 block sums (8 lanes).
    t0 = cpu_seconds();
    std::vector<float> Bf(static_cast<std::size_t>(blocks), 0.0f);
    for (int64_t g = 0; g < blocks; ++g) {
      float s = 0;
      for (int e = 0; e < 128; ++e) s += w[static_cast<std::size_t>(g * 128 + e)] * cR[static_cast<std::size_t>(g * 128 + e)];
      Bf[static_cast<std::size_t>(g)] = s;
    }
    const double v2_pass = cpu_seconds() - t0;
    std::vector<std::vector<uint64_t>> rep(kOwners);  // payload bits three times over: any 128-bit window
    for (std::size_t k = 0; k < kOwners; ++k) {
      rep[k].assign(3 * kBits / 64 + 1, 0);
      for (uint32_t b = 0; b < 3 * kBits; ++b)
        if (reg[k].payload[b % kBits]) rep[k][b / 64] |= uint64_t{1} << (b % 64);
    }
    t0 = cpu_seconds();
    double sink = 0;
    for (std::size_t k = 0; k < kOwners; ++k) {
      const Owner& o = reg[k];
      double t = 0;
      for (int64_t g0 = 0; g0 + 128 <= blocks; g0 += 128) {
        auto r = detail::carrier_random(o.spec, static_cast<uint64_t>(g0 / 128), 2);
        const uint32_t b0 = detail::carrier_bit_index(o.spec, static_cast<uint64_t>(g0));
        const uint64_t* p = rep[k].data() + b0 / 64;
        const uint32_t sh = b0 % 64;
        const uint64_t lo = sh ? (p[0] >> sh) | (p[1] << (64 - sh)) : p[0];
        const uint64_t hi = sh ? (p[1] >> sh) | (p[2] << (64 - sh)) : p[1];
        r.x ^= static_cast<uint32_t>(lo);
        r.y ^= static_cast<uint32_t>(lo >> 32);
        r.z ^= static_cast<uint32_t>(hi);
        r.w ^= static_cast<uint32_t>(hi >> 32);
        cpu::v8f sv, qv;
        cpu::block_corr8<float, false>(Bf.data() + g0, r, sv, qv);
        t += static_cast<double>(cpu::hsum(sv));
      }
      sink += t;
    }
    const double v2s = cpu_seconds() - t0;
    std::printf("### 1. Cost: %zu owners on a %lld-element sample (%lld carrier blocks), one core\n\n", kOwners,
                static_cast<long long>(kSample), static_cast<long long>(blocks));
    std::printf("| carrier | shared pass | per owner | all owners | ns per owner and block |\n|---|---:|---:|---:|---:|\n");
    std::printf("| v1 (Backend::screen) | - | %.1f us | %.3f s | %.2f |\n", v1s / kOwners * 1e6, v1s,
                v1s / static_cast<double>(kOwners) / static_cast<double>(blocks) * 1e9);
    std::printf("| v2 | %.1f ms | %.1f us | %.3f s | %.2f |\n\n", v2_pass * 1e3, v2s / kOwners * 1e6, v2_pass + v2s,
                v2s / static_cast<double>(kOwners) / static_cast<double>(blocks) * 1e9);
    if (sink == 12345.678) std::printf("%g\n", sink + out.t[0]);
  }

  // 2-4. Detection, the null, and the attacks.
  std::vector<float> hostA = host(n, 21), hostC = host(n, 22);
  const Owner D = owner(4);
  std::vector<float> wA = hostA, wB = hostA, wD = hostA, wC = hostC;  // A, B, D mark the same base model
  embed_v2(wA, A, cR);
  embed_v2(wB, B, cR);
  embed_v2(wD, D, cR);
  embed_v2(wC, C, cR);
  double null_max = -1e9, null_s = 0, null_s2 = 0;
  const auto BA = block_sums(wA, cR);
  constexpr int kNull = 300;
  for (int k = 0; k < kNull; ++k) {
    const double z = z_v2(BA, owner(5000 + k));
    null_max = std::max(null_max, z);
    null_s += z;
    null_s2 += z * z;
  }
  std::printf("### 2. Detection (v2)\n\n");
  std::printf("owner A on its model: z %.1f; owner B on A's model: z %.2f; %d other owners: mean %.3f sd %.3f max %.2f\n\n",
              z_v2(BA, A), z_v2(BA, B), kNull, null_s / kNull, std::sqrt(null_s2 / kNull - (null_s / kNull) * (null_s / kNull)),
              null_max);

  std::printf("### 3-5. Attacks\n\n| attack | knows | relative change | z before | z after |\n|---|---|---:|---:|---:|\n");
  const std::vector<uint8_t> all(static_cast<std::size_t>(n / 128), 1);
  {
    std::vector<float> a = wA;
    strip(a, cR, all, 1.0);
    std::printf("| v2: remove every block's projection on cR | R | %.2f%% | %.1f | %.2f |\n", 100 * rel_change(a, wA),
                z_v2(BA, A), z_v2(block_sums(a, cR), A));
  }
  // Copies of one base model marked by different owners: A - B = alpha (sA - sB) cR, so the
  // difference gives cR (up to one sign per block) wherever the two owners' block signs differ.
  for (int copies = 2; copies <= 3; ++copies) {
    std::vector<float> est(static_cast<std::size_t>(n), 0.0f);
    std::vector<uint8_t> known(static_cast<std::size_t>(n / 128), 0);
    int64_t recovered = 0;
    for (int64_t g = 0; g < n / 128; ++g) {
      for (const auto* other : {&wB, &wD}) {
        if (other == &wD && copies < 3) break;
        double d2 = 0;
        for (int e = 0; e < 128; ++e) {
          const double d = double(wA[static_cast<std::size_t>(g * 128 + e)]) - (*other)[static_cast<std::size_t>(g * 128 + e)];
          d2 += d * d;
        }
        if (d2 == 0 || known[static_cast<std::size_t>(g)]) continue;
        known[static_cast<std::size_t>(g)] = 1;
        ++recovered;
        for (int e = 0; e < 128; ++e) {
          const auto j = static_cast<std::size_t>(g * 128 + e);
          est[j] = double(wA[j]) - (*other)[j] >= 0 ? 1.0f : -1.0f;
        }
      }
    }
    std::vector<float> c = wC;
    strip(c, est, known, 1.0);
    std::printf("| v2: cR from %d copies of one base model (owners A, B%s), used on owner C's model | %d marked copies "
                "| %.2f%% | %.1f | %.2f |\n",
                copies, copies == 3 ? ", D" : "", copies, 100 * rel_change(c, wC), z_v2(block_sums(wC, cR), C),
                z_v2(block_sums(c, cR), C));
    std::fprintf(stderr, "%d copies: cR recovered in %lld of %lld blocks\n", copies, static_cast<long long>(recovered),
                 static_cast<long long>(n / 128));
  }
  {
    // Carrier v1 under the same budgets.
    std::vector<float> vA = hostA, vB = hostA, vC = hostC;
    embed_v1(vA, A);
    embed_v1(vB, B);
    embed_v1(vC, C);
    std::vector<float> noisy = vA;
    std::mt19937_64 rng(5);
    std::normal_distribution<float> nd(0, static_cast<float>(rms(vA) / std::sqrt(128.0)));
    for (auto& x : noisy) x += nd(rng);
    std::printf("| v1: Gaussian noise of the same size (1/sqrt(128)) | nothing | %.2f%% | %.1f | %.2f |\n",
                100 * rel_change(noisy, vA), z_v1(vA, A), z_v1(noisy, A));
    std::vector<float> est(static_cast<std::size_t>(n));
    for (std::size_t j = 0; j < est.size(); ++j) est[j] = vA[j] - vB[j] >= 0 ? 1.0f : -1.0f;
    std::vector<float> c = vC;
    strip(c, est, all, 1.0);
    std::printf("| v1: signs of the two-copy difference (A, B), used on owner C's model | two marked copies | "
                "%.2f%% | %.1f | %.2f |\n\n",
                100 * rel_change(c, vC), z_v1(vC, C), z_v1(c, C));
  }
  return 0;
}
