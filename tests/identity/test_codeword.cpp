// DID codewords: known vector, distance statistics over 10^4 random DIDs, matching.
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "didmark/error.hpp"
#include "didmark/identity.hpp"
#include "identity/crypto.hpp"

namespace didmark {
namespace {

std::vector<uint8_t> pack(const Payload& p) {
  std::vector<uint8_t> out((p.size() + 7) / 8, 0);
  for (std::size_t i = 0; i < p.size(); ++i) out[i / 8] |= static_cast<uint8_t>(p.bits[i] << (i % 8));
  return out;
}

TEST(Codeword, KnownVectors) {
  // BLAKE2b-512("didmark/codeword/v1" || 0x00 || u32le(0) || DID), first 32 bytes, bits LSB
  // first; computed independently with Python's hashlib.
  const std::string did = "did:key:z6MkiTBz1ymuepAQ4HEHYSF1H8quG5GLVVQR3djdX3mDooWp";
  EXPECT_EQ(detail::to_hex(pack(did_codeword(did))),
            "86022f577c5cc54e78dd96ff3f62e286d1052a76d9ffdf114e78d9f3d755be74");
  EXPECT_EQ(detail::to_hex(pack(did_codeword("did:web:example.com"))),
            "8c4242177bd7cfab25ca6698761b504817d0fa5f757378438d02adb4f1cbd6e9");
  EXPECT_EQ(codeword_fingerprint(did), "86022f577c5cc54e");
  EXPECT_EQ(did_codeword(did).size(), 256u);
}

TEST(Codeword, LengthsArePrefixesAndChecked) {
  const std::string did = "did:web:example.com";
  const Payload full = did_codeword(did, 4096);
  for (std::size_t n : {1u, 7u, 64u, 255u, 256u, 513u, 1000u}) {
    const Payload p = did_codeword(did, n);
    ASSERT_EQ(p.size(), n);
    EXPECT_TRUE(std::equal(p.bits.begin(), p.bits.end(), full.bits.begin()));
  }
  EXPECT_THROW(did_codeword(did, 0), Error);
  EXPECT_THROW(did_codeword(did, 4097), Error);
  EXPECT_THROW(did_codeword("not a did"), Error);
}

TEST(Codeword, DistanceStatisticsOver10kRandomDids) {
  constexpr int kDids = 10000;
  std::mt19937_64 rng(2026);
  std::vector<Payload> cws;
  cws.reserve(kDids);
  for (int i = 0; i < kDids; ++i) {
    std::array<uint8_t, 32> pk{};
    for (auto& b : pk) b = static_cast<uint8_t>(rng());
    cws.push_back(did_codeword(did_key_from_ed25519(pk)));
  }
  // Agreement between consecutive pairs: Binomial(256, 1/2), mean 128, variance 64.
  double sum = 0, sum2 = 0;
  int lo = 256, hi = 0;
  for (int i = 0; i + 1 < kDids; ++i) {
    int agree = 0;
    for (int b = 0; b < 256; ++b) agree += cws[i].bits[b] == cws[i + 1].bits[b];
    sum += agree;
    sum2 += double(agree) * agree;
    lo = std::min(lo, agree);
    hi = std::max(hi, agree);
  }
  const double n = kDids - 1, mean = sum / n, var = sum2 / n - mean * mean;
  EXPECT_NEAR(mean, 128.0, 0.5);  // sd of the mean: 0.08
  EXPECT_NEAR(var, 64.0, 6.0);    // sd of the variance: ~0.9
  EXPECT_GT(lo, 90);              // ~4.75 sd; the 1e-9 claim line is 176
  EXPECT_LT(hi, 166);
  // Every bit position is balanced.
  for (int b = 0; b < 256; ++b) {
    int ones = 0;
    for (const auto& c : cws) ones += c.bits[b];
    EXPECT_NEAR(ones / double(kDids), 0.5, 0.025) << "bit " << b;
  }
}

TEST(Codeword, MatchingRecoveredBits) {
  const std::string did = "did:web:example.com:alice";
  const Payload cw = did_codeword(did);
  std::vector<uint8_t> bits = cw.bits;
  CodewordMatch m = match_codeword(bits, did);
  EXPECT_EQ(m.bits, 256);
  EXPECT_EQ(m.agreeing, 256);
  EXPECT_TRUE(m.valid);
  EXPECT_NEAR(m.log10_p, -256 * std::log10(2.0), 1e-9);

  // 40 errors: still far past the 1e-9 line; 100 errors: not a match.
  std::mt19937 rng(5);
  std::vector<int> idx(256);
  for (int i = 0; i < 256; ++i) idx[i] = i;
  std::shuffle(idx.begin(), idx.end(), rng);
  for (int i = 0; i < 40; ++i) bits[idx[i]] ^= 1;
  m = match_codeword(bits, did);
  EXPECT_EQ(m.agreeing, 216);
  EXPECT_TRUE(m.valid);
  EXPECT_DOUBLE_EQ(m.log10_p, binomial_tail_log10(256, 216));
  for (int i = 40; i < 100; ++i) bits[idx[i]] ^= 1;
  m = match_codeword(bits, did);
  EXPECT_EQ(m.agreeing, 156);
  EXPECT_FALSE(m.valid);
  EXPECT_TRUE(match_codeword(bits, did, 0.5).valid);

  // The line for 1e-9 sits at 176 agreeing bits of 256 (DESIGN.md).
  std::vector<uint8_t> edge = cw.bits;
  for (int i = 0; i < 80; ++i) edge[idx[i]] ^= 1;
  EXPECT_TRUE(match_codeword(edge, did).valid);
  edge[idx[80]] ^= 1;
  EXPECT_FALSE(match_codeword(edge, did).valid);

  // Another DID's codeword does not match.
  EXPECT_FALSE(match_codeword(did_codeword("did:web:example.com:bob").bits, did).valid);
  // Input checks.
  EXPECT_THROW(match_codeword({}, did), Error);
  std::vector<uint8_t> two = cw.bits;
  two[3] = 2;
  EXPECT_THROW(match_codeword(two, did), Error);
  EXPECT_THROW(match_codeword(cw.bits, did, 0.0), Error);
}

}  // namespace
}  // namespace didmark
