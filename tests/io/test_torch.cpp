// PyTorch files through the LibTorch adapter, and the pickle rewrite it relies on.
#include <gtest/gtest.h>

#include <cstring>

#include "didmark/checkpoint.hpp"
#include "didmark/error.hpp"
#include "didmark/io.hpp"
#include "io/io_test_util.hpp"
#include "io/torch_pickle.hpp"
#include "test_util.hpp"

namespace didmark {
namespace {

using test::ScratchDir;
using namespace std::string_literals;

TEST(TorchPickle, OrderedDictStateDictBecomesADict) {
  // What Python writes for torch.save of OrderedDict(a=OrderedDict()) carrying _metadata.
  const std::string in =
      "\x80\x02"
      "ccollections\nOrderedDict\nq\x00)Rq\x01"
      "X\x01\x00\x00\x00" "ah\x00)Rq\x02s"
      "}q\x03X\x09\x00\x00\x00_metadatah\x00)Rq\x04sb."s;
  const std::string want = "\x80\x02}q\x01(X\x01\x00\x00\x00" "a}q\x02u."s;
  const auto f = detail::fix_torch_pickle(in);
  EXPECT_TRUE(f.complete);
  EXPECT_EQ(f.ordered_dicts, 3);
  EXPECT_EQ(f.builds_dropped, 1);
  EXPECT_EQ(f.bytes, want);
}

TEST(TorchPickle, WidensLongsAndMarksSingleItems) {
  EXPECT_EQ(detail::fix_torch_pickle("\x80\x02\x8a\x05\x00\x00\x00\x00\x01."s).bytes,
            "\x80\x02\x8a\x08\x00\x00\x00\x00\x01\x00\x00\x00."s);
  EXPECT_EQ(detail::fix_torch_pickle("\x80\x02\x8a\x01\xff."s).bytes,
            "\x80\x02\x8a\x08\xff\xff\xff\xff\xff\xff\xff\xff."s);
  EXPECT_EQ(detail::fix_torch_pickle("\x80\x02\x8a\x00."s).bytes, "\x80\x02\x8a\x08\x00\x00\x00\x00\x00\x00\x00\x00."s);
  EXPECT_EQ(detail::fix_torch_pickle("\x80\x02]q\x00K\x01" "a."s).bytes, "\x80\x02]q\x00(K\x01" "e."s);
  EXPECT_EQ(detail::fix_torch_pickle("\x80\x02}q\x00X\x01\x00\x00\x00" "aK\x01s."s).bytes,
            "\x80\x02}q\x00(X\x01\x00\x00\x00" "aK\x01u."s);
}

TEST(TorchPickle, LeavesOtherPicklesAlone) {
  const std::string plain = "\x80\x02}q\x00(X\x01\x00\x00\x00" "aK\x01u."s;
  auto f = detail::fix_torch_pickle(plain);
  EXPECT_TRUE(f.complete);
  EXPECT_EQ(f.bytes, plain);
  // BUILD on anything but an OrderedDict is left for LibTorch.
  const std::string build = "\x80\x02}q\x00}b."s;
  EXPECT_EQ(detail::fix_torch_pickle(build).bytes, build);
  // Truncated, unknown or unsupported: unchanged, flagged incomplete.
  for (const std::string& bad :
       {"\x80\x02X\xff\x00\x00\x00" "ab."s, "\x80\x02\xff."s, "\x80"s, "\x80\x02" "ccollections\nOrderedDict"s,
        "\x80\x02}"s, "\x80\x02u."s, "\x80\x02" "ccollections\nOrderedDict\nK\x01R."s, "\x80\x02N2."s,
        "\x80\x02" "ccollections\nOrderedDict\nq\x00."s}) {
    f = detail::fix_torch_pickle(bad);
    EXPECT_FALSE(f.complete);
    EXPECT_EQ(f.bytes, bad);
  }
  // A key that merely contains the bytes of the pattern is data, not an opcode.
  const std::string key = "\x80\x02}(X\x1b\x00\x00\x00" "ccollections\nOrderedDict\n)RK\x01u."s;
  EXPECT_EQ(detail::fix_torch_pickle(key).bytes, key);
}

class Torch : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!torch_available()) GTEST_SKIP() << "built without LibTorch (DIDMARK_TORCH=OFF)";
  }
};

TEST_F(Torch, SaveLoadRoundTripsEveryDtype) {
  ScratchDir dir;
  std::vector<test::Buffer> bufs;
  for (DType t : {DType::f64, DType::f32, DType::f16, DType::bf16, DType::i64, DType::i32, DType::i16, DType::i8,
                  DType::u8, DType::boolean}) {
    test::Buffer b(std::string("t.") + std::string(dtype_name(t)), t, {3, 7});
    for (std::size_t i = 0; i < b.view.nbytes(); ++i) b.bytes[i] = static_cast<unsigned char>(i * 37 + 1);
    if (t == DType::boolean)
      for (std::size_t i = 0; i < b.view.nbytes(); ++i) b.bytes[i] &= 1;
    bufs.push_back(b);
  }
  TorchCheckpoint::save_tensors(dir / "x.pt", test::named(bufs));
  EXPECT_THROW(TorchCheckpoint::save_tensors(dir / "x.pt", test::named(bufs)), Error);
  const TorchCheckpoint ck = TorchCheckpoint::load(dir / "x.pt");
  ASSERT_EQ(ck.tensors().size(), bufs.size());
  EXPECT_TRUE(ck.withheld().empty());
  for (const auto& t : ck.tensors()) {
    const auto it = std::find_if(bufs.begin(), bufs.end(), [&](const auto& b) { return b.name == t.name; });
    ASSERT_NE(it, bufs.end()) << t.name;
    EXPECT_EQ(t.view.dtype, it->view.dtype);
    EXPECT_EQ(t.view.shape, it->view.shape);
    EXPECT_EQ(std::memcmp(t.view.data, it->view.data, it->view.nbytes()), 0) << t.name;
  }
  // Saved again unchanged: loads to the same tensors.
  ck.save(dir / "y.pt");
  const TorchCheckpoint again = TorchCheckpoint::load(dir / "y.pt");
  ASSERT_EQ(again.tensors().size(), bufs.size());
}

TEST_F(Torch, EmbedAndVerify) {
  ScratchDir dir;
  std::vector<test::Buffer> bufs{test::gaussian("layer.weight", DType::f32, {256, 512}, 1),
                                 test::gaussian("layer2.weight", DType::bf16, {256, 512}, 2),
                                 test::gaussian("layer.bias", DType::f32, {512}, 3)};
  TorchCheckpoint::save_tensors(dir / "in.bin", test::named(bufs));
  const std::string before = test::slurp(dir / "in.bin");
  WatermarkOptions o;
  o.strength = 0.02;
  o.max_relative_change = 0.05;
  const Claim c{test::random_key(1), test::random_payload(2)}, d{test::random_key(3), test::random_payload(4)};
  const auto r = embed_checkpoint(dir / "in.bin", dir / "out.bin", CheckpointFormat::torch, c.key, c.payload, o, {});
  EXPECT_EQ(r.report.tensors_marked, 2);
  EXPECT_EQ(test::slurp(dir / "in.bin"), before);
  const std::vector<Claim> claims{c, d};
  const auto v = verify_checkpoint(dir / "out.bin", CheckpointFormat::torch, claims, o);
  EXPECT_TRUE(v[0].detected) << v[0].z;
  EXPECT_FALSE(v[1].detected) << v[1].z;
  EXPECT_FALSE(verify_checkpoint(dir / "in.bin", CheckpointFormat::torch, claims, o)[0].detected);
  // Untouched tensors unchanged.
  const TorchCheckpoint out = TorchCheckpoint::load(dir / "out.bin");
  for (const auto& t : out.tensors())
    if (t.name == "layer.bias") {
      EXPECT_EQ(std::memcmp(t.view.data, bufs[2].view.data, bufs[2].view.nbytes()), 0);
    }
}

TEST_F(Torch, RefusesFilesThatAreNotTorchZips) {
  ScratchDir dir;
  test::spit(dir / "legacy.pt", "\x80\x02\x8a\x0alZ\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19."s);
  try {
    TorchCheckpoint::load(dir / "legacy.pt");
    ADD_FAILURE();
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), Errc::corrupt_input);
    EXPECT_NE(std::string(e.what()).find("legacy.pt"), std::string::npos) << e.what();
  }
  EXPECT_THROW(TorchCheckpoint::load(dir / "absent.pt"), Error);
}

TEST(TorchMissing, SaysHowToGetIt) {
  if (torch_available()) GTEST_SKIP() << "LibTorch is built in";
  try {
    TorchCheckpoint::load("x.pt");
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), Errc::unsupported);
    EXPECT_NE(std::string(e.what()).find("DIDMARK_TORCH"), std::string::npos);
  }
}

}  // namespace
}  // namespace didmark
