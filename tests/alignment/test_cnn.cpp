// Convolution channels: ResNet-shaped checkpoints under torchvision's names. The library's
// `permute:channels` attack (one permutation per residual stream and per block's inner
// channels: conv rows, conv input channels as kh x kw blocks, batch-norm statistics) and
// `rescale-channels` (each channel's rows times +-a, folded into its batch norm) are proven
// function-preserving by a forward pass; after them, alone and with int8 or 50% pruning, the
// owner's sketch realigns a 21.8M-parameter ResNet-34 and the mark is detected at p <= 1e-9,
// while unmarked and other-owner models and wrong keys stay below the bound.
#include <gtest/gtest.h>

#include <cstring>

#include "alignment_test_util.hpp"
#include "cnn.hpp"
#include "didmark/attack.hpp"

using namespace didmark;
using namespace didmark::test;

namespace {

tf::Model from_set(const TensorSet& s) {
  tf::Model m;
  for (const auto& t : s.tensors) {
    Buffer b(t.name, t.dtype, t.shape);
    std::memcpy(b.bytes.data(), t.bytes.data(), t.bytes.size());
    m.tensors.push_back(std::move(b));
  }
  return m;
}

TensorSet attacked(const tf::Model& m, const std::vector<std::string>& chain, uint64_t seed = 7) {
  TensorSet set = to_set(m);
  AttackContext ctx;
  ctx.seed = seed;
  for (const auto& s : chain) apply_attack(set, parse_attack_spec(s), ctx);
  return set;
}

double max_rel_diff(const std::vector<double>& a, const std::vector<double>& b) {
  double num = 0, den = 0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    num = std::max(num, std::fabs(a[i] - b[i]));
    den = std::max(den, std::fabs(a[i]));
  }
  return num / den;
}

const tf::Model& resnet34() {
  static const tf::Model m = cnn::make_resnet(cnn::Config{});
  return m;
}

const tf::Model& resnet50() {  // bottleneck blocks: 25.5M parameters
  static const tf::Model m = cnn::make_resnet([] {
    cnn::Config c;
    c.bottleneck = true;
    c.seed = 5;
    return c;
  }());
  return m;
}

}  // namespace

TEST(Cnn, ChannelMapOfResNetNames) {
  for (bool bottleneck : {false, true}) {
    const tf::Model m = cnn::make_resnet(cnn::small_config(bottleneck, 1));
    const auto ch = convolution_channels(m.named());
    // Streams: the stem's (shared by stage 1 when its first block has no downsample) and one
    // per downsampling stage; inner channels: one per basic block, two per bottleneck.
    const std::size_t blocks = 6, streams = bottleneck ? 5 : 4;
    EXPECT_EQ(ch.size(), streams + blocks * (bottleneck ? 2 : 1));
    std::map<std::string, int64_t> size;
    for (const auto& [label, n] : ch) size[label] = n;
    EXPECT_EQ(size.at("res0"), 8);
    EXPECT_EQ(size.at("res4"), bottleneck ? 128 : 32);
    EXPECT_EQ(size.at("layers.0.c1"), 8);
  }
  // A transformer is no CNN.
  EXPECT_TRUE(convolution_channels(tf::make_model(tf::Config{}).named()).empty());
  // Names of a transformer: permute:channels says what it looked for.
  TensorSet set = to_set(tf::make_model(tf::Config{}));
  AttackContext ctx;
  EXPECT_THROW(apply_attack(set, parse_attack_spec("permute:channels"), ctx), Error);
}

TEST(Cnn, PermuteChannelsPreservesTheFunction) {
  for (bool bottleneck : {false, true}) {
    SCOPED_TRACE(bottleneck ? "bottleneck" : "basic");
    const cnn::Config c = cnn::small_config(bottleneck, 3);
    const tf::Model m = cnn::make_resnet(c);
    for (const std::vector<std::string>& chain : std::vector<std::vector<std::string>>{
             {"permute:channels"}, {"permute:all"}, {"rescale-channels"}, {"permute:channels", "rescale-channels"}}) {
      SCOPED_TRACE(chain.back());
      const tf::Model p = from_set(attacked(m, chain));
      int changed = 0;
      for (std::size_t i = 0; i < m.tensors.size(); ++i)
        changed += m.tensors[i].bytes != p.tensors[i].bytes ? 1 : 0;
      // A permutation moves every convolution and batch norm (only fc's bias and the counters
      // stay); a fold changes every convolution and its norm's weight and statistics.
      const bool folds = chain.back() == "rescale-channels";
      EXPECT_GE(changed, static_cast<int>(m.tensors.size()) * (folds ? 3 : 4) / 5);
      // A permutation is exact up to summation order; a fold rounds each scaled f32 weight
      // (relative 6e-8), which the logits see as ~1e-7.
      for (uint64_t s : {1, 2}) {
        const auto img = cnn::random_image(32, s);
        const auto a = cnn::forward(m, c, img), b = cnn::forward(p, c, img);
        EXPECT_LT(max_rel_diff(a, b), folds ? 2e-6 : 1e-9);
      }
    }
    // A wrong permutation (two residual channels swapped in one tensor only) changes it.
    tf::Model bad = m;
    Buffer& w = bad.at("layer2.0.downsample.0.weight");
    const int64_t row = w.numel() / w.view.shape[0];
    std::swap_ranges(tf::f32(w), tf::f32(w) + row, tf::f32(w) + row);
    const auto img = cnn::random_image(32, 1);
    EXPECT_GT(max_rel_diff(cnn::forward(m, c, img), cnn::forward(bad, c, img)), 1e-4);
  }
}

class CnnRealigned : public ::testing::TestWithParam<bool> {};

TEST_P(CnnRealigned, VerifyAfterChannelAttacks) {
  tf::Model m = GetParam() ? resnet50() : resnet34();
  ASSERT_GE(m.params(), 20'000'000);
  std::printf("%s, %.1fM parameters\n", GetParam() ? "ResNet-50" : "ResNet-34", static_cast<double>(m.params()) / 1e6);
  const auto alice = test_owner(41);
  mark(m, alice);
  // Through the file format, as the CLI reads it.
  auto round_trip = [](const AlignmentSketch& s) {
    const std::string b = s.serialize();
    return AlignmentSketch::parse(std::span(reinterpret_cast<const unsigned char*>(b.data()), b.size()), "cnn.sketch");
  };
  const auto sk_def = round_trip(sketch_of(m, alice, false)), sk_all = round_trip(sketch_of(m, alice, true));
  EXPECT_EQ(sk_def.architecture, "resnet");
  EXPECT_LE(sk_def.fraction(), 0.01);
  std::printf("sketch: default %.3f%%, all %.3f%% of the model\n", 100 * sk_def.fraction(), 100 * sk_all.fraction());
  const double bound = hoeffding_z_threshold(1e-9);
  std::printf("marked, plain z %.2f\n", plain_verify(m, alice).z);
  const std::vector<std::vector<std::string>> chains = {
      {"permute:channels"},
      {"permute:channels", "quant:int8"},
      {"permute:channels", "prune:0.5"},
      {"permute:channels", "rename:backbone.", "cast:bf16"},
      {"rescale-channels"},
      {"permute:channels", "rescale-channels", "quant:int8"},
  };
  for (const auto& chain : chains) {
    std::string name;
    for (const auto& s : chain) name += s + " ";
    SCOPED_TRACE(name);
    const TensorSet set = attacked(m, chain);
    const auto named = set.named();
    const double plain = verify(named, alice.key, alice.payload, {}, cpu()).z;
    const Claim c = alice.claim();
    AlignmentReport how;
    const auto vd = verify_realigned(named, sk_def, std::span(&c, 1), {}, cpu(), &how)[0];
    const auto va = verify_realigned(named, sk_all, std::span(&c, 1), {}, cpu())[0];
    std::printf("%-50s plain z %6.2f | default z %6.2f | all z %6.2f (%d tensors, %lld moved, %lld dropped)\n", name.c_str(),
                plain, vd.z, va.z, how.tensors_matched, static_cast<long long>(how.rows_moved),
                static_cast<long long>(how.rows_dropped));
    EXPECT_LT(plain, bound);  // the attack erases the plain mark
    EXPECT_TRUE(how.realigned);
    if (chain[0] == "permute:channels") {
      EXPECT_GT(how.rows_moved, 0);
    }
    if (std::find(chain.begin(), chain.end(), "rescale-channels") != chain.end()) {
      EXPECT_TRUE(how.rescaled);
      EXPECT_GT(how.sign_flips, 0);
    }
    EXPECT_TRUE(vd.detected);
    EXPECT_TRUE(va.detected);
    EXPECT_LE(vd.log10_p, -9.0);
  }
}

INSTANTIATE_TEST_SUITE_P(Cnn, CnnRealigned, ::testing::Values(false, true),
                         [](const auto& i) { return i.param ? std::string("ResNet50") : std::string("ResNet34"); });

TEST(Cnn, NullAfterRealignment) {
  tf::Model marked = resnet34();
  const auto alice = test_owner(41), bob = test_owner(42);
  mark(marked, alice);
  const auto sk = sketch_of(marked, alice, false);
  const double bound = hoeffding_z_threshold(1e-9);
  // An unmarked ResNet-34 (other weights, same architecture) and alice's base marked by bob,
  // both permuted and realigned to alice's sketch: alice's key finds nothing.
  tf::Model other = cnn::make_resnet([] {
    cnn::Config c;
    c.seed = 9;
    return c;
  }());
  tf::Model bobs = resnet34();
  mark(bobs, bob);
  const Claim c = alice.claim();
  for (const tf::Model* suspect : {&other, &bobs}) {
    const TensorSet set = attacked(*suspect, {"permute:channels", "rescale-channels"});
    AlignmentReport how;
    const auto v = verify_realigned(set.named(), sk, std::span(&c, 1), {}, cpu(), &how)[0];
    std::printf("%s realigned to alice's sketch: alice z %.2f\n", suspect == &other ? "unmarked" : "bob's", v.z);
    EXPECT_FALSE(v.detected);
    EXPECT_LT(v.z, bound);
  }
  // Wrong keys on alice's realigned model: standard normal-looking, below the bound. The
  // realigned copy is built once (realignment reads no key), then 256 keys test it.
  const TensorSet set = attacked(marked, {"permute:channels"});
  const RealignedTensors r = realign_for_owner(set.named(), sk, {}, cpu());
  ASSERT_TRUE(r.report().realigned);
  std::vector<Claim> wrong;
  for (uint64_t k = 0; k < 256; ++k) wrong.push_back(test_owner(1000 + k).claim());
  const auto reps = verify_many(r.tensors(), wrong, {}, cpu());
  double sum = 0, sum2 = 0, mx = -1e9;
  for (const auto& v : reps) {
    sum += v.z;
    sum2 += v.z * v.z;
    mx = std::max(mx, v.z);
    EXPECT_FALSE(v.detected);
  }
  const double mean = sum / 256, sd = std::sqrt(sum2 / 256 - mean * mean);
  std::printf("256 wrong keys after realignment: mean %.3f, sd %.3f, max %.2f\n", mean, sd, mx);
  EXPECT_LT(std::fabs(mean), 0.25);
  EXPECT_LT(sd, 1.3);
  EXPECT_LT(mx, bound);
}
