// Honest p-values after realignment. Realignment reads the sketch and the suspect, never the
// key, and leaves out the slices whose marked values the sketch holds; so under "not marked
// with this key" the realigned statistic keeps the Hoeffding bound P(Z >= t) <= exp(-t^2/2):
//  * 10^4 wrong keys on a realigned marked model;
//  * unmarked models of the same architecture (independent weights), realigned to an owner's
//    sketch, tested with the owner's key;
//  * the owner's own base model, unmarked or marked by someone else, permuted by a thief and
//    realigned with the owner's sketch (the realignment then succeeds: the dangerous case),
//    tested with the owner's key.
#include <gtest/gtest.h>

#include <cmath>

#include "alignment_test_util.hpp"

using namespace didmark;
using namespace didmark::test;

namespace {

tf::Config mid(tf::Arch arch, uint64_t seed) {
  tf::Config c;
  c.arch = arch;
  c.act = arch == tf::Arch::bert ? tf::Act::gelu : tf::Act::swiglu;
  c.vocab = 4096;
  c.hidden = 256;
  c.heads = 4;
  c.ffn = 1024;
  c.layers = 3;
  c.positions = 64;
  c.seed = seed;
  return c;
}

/// Every structural attack at once (the realignment has to undo all of them).
void steal(tf::Model& m, uint64_t seed) {
  const auto& c = m.cfg;
  tf::permute_hidden(m, tf::random_perm(c.hidden, seed));
  for (int64_t l = 0; l < c.layers; ++l) {
    tf::transform_ffn(m, l, tf::random_perm(c.ffn, seed + 10 + static_cast<uint64_t>(l)));
    tf::transform_heads(m, l, tf::random_perm(c.heads, seed + 20), tf::random_perm(c.hidden / c.heads, seed + 21),
                        tf::random_perm(c.hidden / c.heads, seed + 22));
    tf::add_dummy_neurons(m, l, 8, seed + 30);
  }
}

struct Summary {
  double mean = 0, sd = 0, max = -1e300;
  int n = 0;
};

Summary summarize(const std::vector<double>& z) {
  Summary s;
  s.n = static_cast<int>(z.size());
  for (double v : z) {
    s.mean += v;
    s.max = std::max(s.max, v);
  }
  s.mean /= s.n;
  for (double v : z) s.sd += (v - s.mean) * (v - s.mean);
  s.sd = std::sqrt(s.sd / (s.n - 1));
  return s;
}

/// The tail counts stay under the Hoeffding bound (with a 4-sigma binomial allowance).
void expect_hoeffding_tails(const std::vector<double>& z) {
  const double n = static_cast<double>(z.size());
  for (double t : {1.0, 1.5, 2.0, 2.5, 3.0, 3.5, 4.0}) {
    const double bound = n * std::exp(-t * t / 2);
    const double count = static_cast<double>(std::count_if(z.begin(), z.end(), [t](double v) { return v >= t; }));
    EXPECT_LE(count, bound + 4 * std::sqrt(bound) + 1) << "P(z >= " << t << ")";
  }
}

}  // namespace

TEST(Null, TenThousandWrongKeysAfterRealignment) {
  tf::Model m = tf::make_model(mid(tf::Arch::bert, 1));
  const auto alice = test_owner(1);
  mark(m, alice);
  const auto sk = sketch_of(m, alice, true);
  tf::Model stolen = m;
  steal(stolen, 100);
  const RealignedTensors r = realign_for_owner(stolen.named(), sk, {}, cpu());
  ASSERT_TRUE(r.report().realigned);
  const Claim right = alice.claim();
  EXPECT_TRUE(verify_many(r.tensors(), std::span(&right, 1), {}, cpu())[0].detected);

  std::vector<Claim> wrong;
  for (uint64_t i = 0; i < 10'000; ++i) wrong.push_back({random_key(1'000'000 + i), random_payload(2'000'000 + i)});
  const auto reports = verify_many(r.tensors(), wrong, {}, cpu());
  std::vector<double> z;
  for (const auto& v : reports) {
    z.push_back(v.z);
    EXPECT_FALSE(v.detected);
  }
  const Summary s = summarize(z);
  std::printf("10^4 wrong keys after realignment: mean %.4f sd %.4f max %.2f\n", s.mean, s.sd, s.max);
  EXPECT_LT(std::fabs(s.mean), 0.05);
  EXPECT_GT(s.sd, 0.95);
  EXPECT_LT(s.sd, 1.05);
  EXPECT_LT(s.max, 5.0);
  expect_hoeffding_tails(z);
}

TEST(Null, UnmarkedModelsOfTheSameArchitecture) {
  for (auto arch : {tf::Arch::bert, tf::Arch::llama}) {
    tf::Model owned = tf::make_model(mid(arch, 7));
    const auto alice = test_owner(2);
    mark(owned, alice);
    const auto sk = sketch_of(owned, alice, true);
    std::vector<double> z;
    int realigned = 0;
    for (uint64_t t = 0; t < 40; ++t) {
      tf::Model other = tf::make_model(mid(arch, 1000 + t));  // independent weights, same names and shapes
      if (t % 2) steal(other, 500 + t);
      AlignmentReport how;
      const auto v = realigned_verify(other, sk, alice, &how);
      EXPECT_FALSE(v.detected) << "trial " << t << " z " << v.z;
      EXPECT_EQ(how.dims_recovered, 0) << "trial " << t << ": an unrelated model matched the signature";
      realigned += how.realigned ? 1 : 0;
      z.push_back(v.z);
    }
    const Summary s = summarize(z);
    std::printf("[%s] unrelated models: mean %.3f sd %.3f max %.2f, realigned %d of %d\n",
                arch == tf::Arch::bert ? "bert" : "llama", s.mean, s.sd, s.max, realigned, s.n);
    EXPECT_EQ(realigned, 0);
    EXPECT_LT(std::fabs(s.mean), 0.6);
    EXPECT_LT(s.max, 4.0);
  }
}

TEST(Null, SameBaseMarkedBySomeoneElseOrNotAtAllThenStolen) {
  for (auto arch : {tf::Arch::bert, tf::Arch::llama}) {
    const tf::Model base = tf::make_model(mid(arch, 11));
    std::vector<double> z_unmarked, z_bob;
    for (uint64_t t = 0; t < 30; ++t) {
      // Alice marks the base and keeps a sketch; a thief takes the base itself, or Bob's
      // marked copy of it, and permutes everything.
      const auto alice = test_owner(100 + t), bob = test_owner(900 + t);
      tf::Model alice_model = base;
      mark(alice_model, alice);
      const auto sk = sketch_of(alice_model, alice, true);
      for (int who = 0; who < 2; ++who) {
        tf::Model stolen = base;
        if (who == 1) mark(stolen, bob);
        steal(stolen, 3000 + 10 * t);
        if (t % 3 == 0) tf::quantize_int8(stolen);
        AlignmentReport how;
        const auto v = realigned_verify(stolen, sk, alice, &how);
        EXPECT_TRUE(how.realigned) << "trial " << t;
        EXPECT_EQ(how.dims_failed, 0) << "trial " << t;
        EXPECT_FALSE(v.detected) << "trial " << t << " who " << who << " z " << v.z;
        (who == 0 ? z_unmarked : z_bob).push_back(v.z);
        if (who == 1) {
          const Claim c = bob.claim();  // and Bob's own mark is still found in the realigned copy
          EXPECT_TRUE(verify_realigned(stolen.named(), sk, std::span(&c, 1), {}, cpu())[0].detected) << "trial " << t;
        }
      }
    }
    for (const auto* z : {&z_unmarked, &z_bob}) {
      const Summary s = summarize(*z);
      std::printf("[%s] same base %s, realigned with Alice's sketch, Alice's key: mean %.3f sd %.3f max %.2f (n %d)\n",
                  arch == tf::Arch::bert ? "bert" : "llama", z == &z_unmarked ? "unmarked" : "marked by Bob", s.mean, s.sd,
                  s.max, s.n);
      EXPECT_LT(std::fabs(s.mean), 0.6);
      EXPECT_LT(s.sd, 1.5);
      EXPECT_LT(s.max, 4.0);
      expect_hoeffding_tails(*z);
    }
  }
}
