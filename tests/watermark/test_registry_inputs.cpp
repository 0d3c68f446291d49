// Many owners through the library's inputs (what `didmark verify/scan`, the server and Python
// call): p_family on every verdict, detection by the family-wise level, the screen summary and
// the JSON that says them.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "didmark/error.hpp"
#include "didmark/inputs.hpp"
#include "didmark/io.hpp"
#include "io/io_test_util.hpp"
#include "test_util.hpp"

namespace didmark {
namespace {

namespace fs = std::filesystem;
using test::ScratchDir;

std::vector<Owner> owners(std::size_t n, uint64_t seed) {
  std::vector<Owner> o;
  for (std::size_t k = 0; k < n; ++k)
    o.push_back({"did:example:owner" + std::to_string(k), test::random_key(seed + 2 * k), test::random_payload(seed + 2 * k + 1)});
  return o;
}

std::vector<test::Buffer> weights(uint64_t seed) {
  return {test::gaussian("layers.0.weight", DType::f32, {512, 512}, seed),
          test::gaussian("layers.0.bias", DType::f32, {512}, seed + 1)};
}

TEST(RegistryInputs, VerdictsCarryTheFamilyAndTheScreen) {
  ScratchDir d;
  const auto reg = owners(40, 10);
  auto w = weights(1);
  WatermarkOptions wo;
  wo.set_strength(0.02);
  embed_in_place(test::named(w), reg[7].key, reg[7].payload, wo);
  write_safetensors(d / "m.safetensors", test::named(w));

  InputOptions o;
  const FileVerdicts fv = verify_input(d / "m.safetensors", reg, o);
  ASSERT_EQ(fv.verdicts.size(), 40u);
  EXPECT_EQ(fv.family, 40u);
  ASSERT_TRUE(fv.fwer.has_value());
  EXPECT_EQ(*fv.fwer, 1e-9);
  ASSERT_TRUE(fv.screen.has_value());
  EXPECT_TRUE(fv.screen->screened);  // 40 owners >= 32: automatic
  EXPECT_EQ(fv.screen->candidates, 1u);
  for (std::size_t k = 0; k < fv.verdicts.size(); ++k) {
    const Verdict& v = fv.verdicts[k];
    EXPECT_EQ(v.log10_p_family, family_log10_p(v.log10_p, 40));
    EXPECT_GE(v.p_family, v.p_value);
    EXPECT_EQ(v.detected, k == 7);
    EXPECT_EQ(v.screened, k != 7);
  }
  EXPECT_EQ(fv.verdicts[7].status, VerdictStatus::detected);
  EXPECT_NEAR(fv.verdicts[7].log10_p_family, fv.verdicts[7].log10_p + std::log10(40.0), 1e-9);

  const auto j = nlohmann::json::parse(file_verdicts_json(fv));
  EXPECT_EQ(j["family"], 40);
  EXPECT_EQ(j["fwer"], 1e-9);
  EXPECT_EQ(j["family_correction"], "sidak");
  EXPECT_EQ(j["screen"]["screened"], true);
  EXPECT_EQ(j["screen"]["candidates"], 1);
  EXPECT_EQ(j["detected"], nlohmann::json::array({"did:example:owner7"}));
  EXPECT_EQ(j["verdicts"][7]["screened"], false);
  EXPECT_EQ(j["verdicts"][8]["screened"], true);
  EXPECT_DOUBLE_EQ(j["verdicts"][7]["log10_p_family"].get<double>(), fv.verdicts[7].log10_p_family);

  // The same in memory (the server's inline bytes) and through scan_inputs.
  const FileVerdicts mem = verify_safetensors_bytes(test::slurp(d / "m.safetensors"), "<inline>", reg, o);
  EXPECT_EQ(mem.family, 40u);
  EXPECT_TRUE(mem.verdicts[7].detected);
  std::vector<std::string> paths{(d / "m.safetensors").string()};
  std::size_t seen = 0;
  scan_inputs(paths, reg, o, {}, default_backend(), [&](ScanItem&& it) {
    ++seen;
    EXPECT_TRUE(it.verdicts.has_value());
    if (it.verdicts) {
      EXPECT_EQ(it.verdicts->family, 40u);
      EXPECT_TRUE(it.verdicts->verdicts[7].detected);
    }
    return true;
  });
  EXPECT_EQ(seen, 1u);

  // --screen off: every owner takes the full pass, the verdict of the owner is unchanged.
  InputOptions off = o;
  off.screen.mode = ScreenMode::off;
  const FileVerdicts full = verify_input(d / "m.safetensors", reg, off);
  EXPECT_FALSE(full.screen->screened);
  for (const auto& v : full.verdicts) EXPECT_FALSE(v.screened);
  EXPECT_EQ(full.verdicts[7].z, fv.verdicts[7].z);
  EXPECT_EQ(full.verdicts[7].p_value, fv.verdicts[7].p_value);
}

// A mark whose own p-value passes 1e-9 but which, among 100 owners, is not strong enough for
// a family-wise 1e-9: not detected by default, detected with --fwer off or a looser level.
TEST(RegistryInputs, TheFamilyWiseLevelDecides) {
  ScratchDir d;
  const auto reg = owners(100, 500);
  WatermarkOptions wo;
  wo.set_strength(0.0132);  // z about 6.75 on 512 x 512
  double z = 0;
  std::vector<test::Buffer> w;
  for (uint64_t seed = 1; seed < 200 && !(z >= 6.5 && z <= 6.9); ++seed) {
    w = weights(1000 + seed);
    embed_in_place(test::named(w), reg[42].key, reg[42].payload, wo);
    z = verify(test::named(w), reg[42].key, reg[42].payload, {}).z;
  }
  ASSERT_TRUE(z >= 6.5 && z <= 6.9) << z;
  write_safetensors(d / "weak.safetensors", test::named(w));

  InputOptions o;
  o.watermark.scheme = Scheme::spread_spectrum;
  const FileVerdicts fam = verify_input(d / "weak.safetensors", reg, o);
  const Verdict& v = fam.verdicts[42];
  EXPECT_FALSE(v.screened);
  EXPECT_LE(v.p_value, 1e-9);
  EXPECT_GT(v.p_family, 1e-9);
  EXPECT_FALSE(v.detected);
  EXPECT_EQ(v.status, VerdictStatus::not_detected);
  EXPECT_TRUE(v.weights->detected);  // the owner's own test, as the watermark reports it

  InputOptions per_test = o;
  per_test.fwer.reset();
  const FileVerdicts pt = verify_input(d / "weak.safetensors", reg, per_test);
  EXPECT_TRUE(pt.verdicts[42].detected);
  EXPECT_EQ(pt.verdicts[42].p_family, v.p_family);  // reported either way
  EXPECT_TRUE(nlohmann::json::parse(file_verdicts_json(pt))["fwer"].is_null());

  InputOptions loose = o;
  loose.fwer = 1e-6;
  EXPECT_TRUE(verify_input(d / "weak.safetensors", reg, loose).verdicts[42].detected);

  // One owner: p_family is p_value and the default decides as before.
  const std::vector<Owner> one{reg[42]};
  const FileVerdicts solo = verify_input(d / "weak.safetensors", one, o);
  EXPECT_EQ(solo.family, 1u);
  EXPECT_EQ(solo.verdicts[0].log10_p_family, solo.verdicts[0].log10_p);
  EXPECT_TRUE(solo.verdicts[0].detected);

  InputOptions bad = o;
  bad.fwer = 1.5;
  EXPECT_NE(test::error_of([&] { verify_input(d / "weak.safetensors", one, bad); }).find("fwer"), std::string::npos);
}

// Datasets get p_family too (their p-values are exact binomial or Hoeffding bounds).
TEST(RegistryInputs, ArraysReportTheFamily) {
  ScratchDir d;
  const auto reg = owners(3, 900);
  test::Buffer x = test::gaussian("x", DType::f32, {2000, 64}, 5, 1.0);
  write_npy(d / "x.npy", x.view);
  InputOptions o;
  o.fixed_order = true;
  embed_input(d / "x.npy", d / "x.marked.npy", reg[1], o);
  const FileVerdicts fv = verify_input(d / "x.marked.npy", reg, o);
  EXPECT_EQ(fv.family, 3u);
  EXPECT_FALSE(fv.screen.has_value());
  EXPECT_TRUE(fv.verdicts[1].detected);
  EXPECT_EQ(fv.verdicts[1].log10_p_family, family_log10_p(fv.verdicts[1].log10_p, 3));
  EXPECT_TRUE(nlohmann::json::parse(file_verdicts_json(fv))["screen"].is_null());
}

}  // namespace
}  // namespace didmark
