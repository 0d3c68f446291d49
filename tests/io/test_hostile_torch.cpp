// Hostile PyTorch files (issue 20): our zip reader and pickle validator refuse every
// reproduction before LibTorch sees it; the pickle rewrite is linear and never writes out of
// range; with LibTorch built, loading each file ends in a clean error.
#include <gtest/gtest.h>

#include <chrono>

#include "didmark/error.hpp"
#include "didmark/io.hpp"
#include "didmark/limits.hpp"
#include "io/io_test_util.hpp"
#include "io/pickle_validate.hpp"
#include "io/torch_archive.hpp"
#include "io/torch_pickle.hpp"
#include "test_util.hpp"

namespace didmark {
namespace {

using namespace std::string_literals;
using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

std::string archive_error(const std::filesystem::path& p) {
  const std::string bytes = test::slurp(p);
  return test::error_of([&] {
    detail::open_torch_archive(std::span(reinterpret_cast<const unsigned char*>(bytes.data()), bytes.size()),
                               p.filename().string());
  });
}

std::string pickle_error(std::string_view pickle, bool for_libtorch = false, std::size_t memo_limit = 0) {
  detail::PickleCheckOptions o;
  o.where = "p.pkl";
  o.for_libtorch = for_libtorch;
  o.memo_limit = memo_limit;
  return test::error_of([&] { detail::validate_torch_pickle(pickle, o); });
}

struct Repro {
  const char* file;
  const char* says;
};

// The reproductions of the issue, stored in tests/data/torch (make_hostile.py).
const Repro kRepros[] = {
    {"insert_mark_at_36.pt", "does not start with PROTO"},
    {"reduce_empty_stack.pt", "REDUCE needs 2 values above the last MARK, the stack holds 0"},
    {"build_empty_stack.pt", "BUILD needs 1 value above the last MARK, the stack holds 0"},
    {"size_exceeds_storage.pt", "reaches element 999999 of a storage of 16 elements"},
    {"size_exceeds_storage_small.pt", "reaches element 4095 of a storage of 16 elements"},
    {"storage_record_short.pt", "its record holds 8 bytes"},
    {"stride0.pt", "kTorchMaxViewFactor"},
    {"binunicode_ffffffff.pt", "a string of 4294967295 bytes runs past the end of the pickle"},
    {"nested_tuples_100k.pt", "deeper than 256 levels (kPickleMaxDepth)"},
    {"memo_index_huge.pt", "memo index 4294967295 is out of bounds"},
    {"big_endian.pt", "not little-endian"},
    {"compressed.pt", "is compressed (method 8)"},
};

TEST(HostileTorch, EveryReproductionIsRefusedBeforeLibTorch) {
  for (const auto& r : kRepros) {
    const auto t0 = Clock::now();
    const std::string m = archive_error(test::test_data(std::string("torch/") + r.file));
    EXPECT_LT(seconds_since(t0), 1.0 * test::kSlowdown) << r.file;
    EXPECT_NE(m.find(r.says), std::string::npos) << r.file << ": " << m;
    EXPECT_NE(m.find(r.file), std::string::npos) << r.file << ": " << m;
  }
}

TEST(HostileTorch, RealFilesPass) {
  for (const char* f : {"torch/valid_small.pt", "torch/valid_zip64.pt", "torch/pytorch2_state_dict.pt"}) {
    const std::string bytes = test::slurp(test::test_data(f));
    ASSERT_FALSE(bytes.empty()) << f;
    const auto a = detail::open_torch_archive(
        std::span(reinterpret_cast<const unsigned char*>(bytes.data()), bytes.size()), f);
    EXPECT_GE(a.check.tensors, 2u) << f;
    EXPECT_TRUE(a.fixed.complete) << f;
  }
  // The rewrite of a Python state dict (OrderedDict, _metadata, SETITEM) passes as LibTorch input.
  const std::string sd = test::slurp(test::test_data("pickle/state_dict.pkl"));
  EXPECT_EQ(pickle_error(sd), "(no error)");
  const std::size_t values = detail::validate_torch_pickle(sd, {}).values;
  EXPECT_EQ(pickle_error(detail::fix_torch_pickle(sd).bytes, true, values), "(no error)");
  EXPECT_NE(pickle_error(sd, true).find("left in the stream LibTorch reads"), std::string::npos);
}

// The legacy format (_use_new_zipfile_serialization=False) passes the same checks before
// anything loads it: its stream parsed, its object pickle validated against its storages.
TEST(HostileTorch, LegacyFilesAreValidatedLikeZips) {
  // torch.save(OrderedDict(w=arange(12).reshape(3, 4), v=w[1:], b=tensor([1, 2])), legacy).
  const std::string bytes = test::slurp(test::test_data("torch/legacy_small.pt"));
  ASSERT_FALSE(bytes.empty());
  auto open = [](const std::string& b) {
    return detail::open_torch_file(std::span(reinterpret_cast<const unsigned char*>(b.data()), b.size()),
                                   "legacy_small.pt");
  };
  const auto a = open(bytes);
  EXPECT_TRUE(a.legacy);
  EXPECT_EQ(a.check.tensors, 3u);
  EXPECT_EQ(a.check.storages, 2u);
  EXPECT_EQ(a.check.storage_bytes, 12u * 4 + 2u * 8);
  EXPECT_TRUE(a.fixed.complete);
  auto refused = [&](const std::string& b, const char* says) {
    try {
      open(b);
      ADD_FAILURE() << "accepted: " << says;
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), Errc::corrupt_input) << e.what();
      EXPECT_NE(std::string(e.what()).find(says), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find("legacy_small.pt"), std::string::npos) << e.what();
    }
  };
  refused(bytes.substr(0, bytes.size() - 3), "runs past the end of the file");
  refused(bytes + "x", "after the last storage");
  std::string count = bytes;
  count[count.size() - 2 * 8 - 8] ^= 1;  // the element count before the int64 storage
  refused(count, "elements where the object says");
  for (std::size_t cut = 1; cut < bytes.size(); cut += 7) EXPECT_THROW(open(bytes.substr(0, cut)), Error) << cut;
#if DIDMARK_HAVE_TORCH
  // Through LibTorch: the view shares the storage of `w` and is withheld.
  test::ScratchDir dir;
  std::filesystem::copy_file(test::test_data("torch/legacy_small.pt"), dir.path() / "l.pt");
  const TorchCheckpoint ck = TorchCheckpoint::load(dir.path() / "l.pt");
  ASSERT_EQ(ck.tensors().size(), 2u);
  EXPECT_EQ(ck.tensors()[0].name, "w");
  EXPECT_EQ(static_cast<const float*>(ck.tensors()[0].view.data)[11], 11.0f);
  EXPECT_EQ(ck.tensors()[1].name, "b");
  EXPECT_EQ(static_cast<const int64_t*>(ck.tensors()[1].view.data)[1], 2);
  ASSERT_EQ(ck.withheld().size(), 1u);
  EXPECT_EQ(ck.withheld()[0].first, "v");
#endif
}

TEST(HostileTorch, ValidatorKeepsStackDisciplineAndBounds) {
  struct Case {
    std::string pickle;
    const char* says;
  };
  const std::vector<Case> cases{
      {"\x80\x02R."s, "REDUCE needs 2 values"},
      {"\x80\x02("s "N" "0."s, "opcode 0x30"},                               // POP: not in the subset
      {"\x80\x02N(R."s, "REDUCE needs 2 values above the last MARK"},        // across a MARK
      {"\x80\x02N(."s, "MARK(s) still open"},
      {"\x80\x02NN."s, "leaves 2 values"},
      {"\x80\x02N.x"s, "1 bytes follow STOP"},
      {"\x80\x02N"s, "ends without STOP"},
      {"\x80\x03N."s, "pickle protocol 3"},
      {"\x80\x02h\x05."s, "never set"},
      {"\x80\x02Nq\x00h\x01."s, "never set"},
      {"\x80\x02]q\x00h\x00" "a."s, "puts a container into itself"},
      {"\x80\x02]]e."s, "APPENDS without a MARK"},
      {"\x80\x02}(K\x01u."s, "odd number"},
      {"\x80\x02}(]K\x01u."s, "key that is not a string"},
      {"\x80\x02](]q\x00" "eh\x00K\x01" "a."s, "changes a container after it was placed"},
      {"\x80\x02" "cos\nsystem\nX\x02\x00\x00\x00ls\x85R."s, "object of class os.system"},
      {"\x80\x02" "ctorch\nFloatStorage\n)R."s, "not a known function"},
      {"\x80\x02K\x00)R."s, "not a known function"},                         // LibTorch: an int is a global index
      {"\x80\x02" "ctorch\nComplexFloatStorage\n."s, "are not read"},
      {"\x80\x02X\x02\x00\x00\x00\xff\xfe."s, "not valid UTF-8"},
      {"\x80\x02\x8a\x09\x00\x00\x00\x00\x00\x00\x00\x00\x00."s, "does not fit in 64 bits"},
      {"\x80\x02" "ccollections\nOrderedDict\nK\x01\x85R."s, "called with arguments"},
      {"\x80\x02}N\x85" "b."s, "other than an OrderedDict"},
      {"\x80\x02(X\x07\x00\x00\x00storagectorch\nFloatStorage\nX\x03\x00\x00\x00../X\x03\x00\x00\x00" "cpuK\x01tQ."s,
       "not a plain record name"},
      {"\x80\x02(X\x07\x00\x00\x00storagectorch\nFloatStorage\nX\x01\x00\x00\x00" "0X\x03\x00\x00\x00tpuK\x01tQ."s,
       "device 'tpu'"},
      {"\x80\x02(X\x07\x00\x00\x00storagectorch\nFloatStorage\nX\x01\x00\x00\x00" "0X\x03\x00\x00\x00" "cpuK\x01tQ."s,
       "bare storage"},
  };
  for (const auto& c : cases) {
    const std::string m = pickle_error(c.pickle);
    EXPECT_NE(m.find(c.says), std::string::npos) << testing::PrintToString(c.pickle) << ": " << m;
    EXPECT_EQ(m.find('\n'), std::string::npos) << m;
  }
  // 100k nested tuples and lists: refused at the depth limit, not by the stack.
  EXPECT_NE(pickle_error("\x80\x02)"s + std::string(100000, '\x85') + ".").find("kPickleMaxDepth"), std::string::npos);
  std::string lists = "\x80\x02"s;
  for (int i = 0; i < 100000; ++i) lists += "(";
  lists += "N";
  for (int i = 0; i < 100000; ++i) lists += "l";
  EXPECT_NE(pickle_error(lists + ".").find("kPickleMaxDepth"), std::string::npos);
  // A few values pushed many times by GET: the stack and the containers are bounded too.
  std::string gets = "\x80\x02Nq\x00("s;
  for (int i = 0; i < (1 << 23) + 1; ++i) gets += "h\x00"s;
  EXPECT_NE(pickle_error(gets + "t.").find("kPickleMaxValues"), std::string::npos);
  // Shared values walked as a tree: t0 = (N, N), t_k = (t_{k-1}, t_{k-1}) doubles each time.
  std::string dag = "\x80\x02Nq\x00h\x00\x86q\x00"s;
  for (int i = 0; i < 40; ++i) dag += "h\x00h\x00\x86q\x00"s;
  EXPECT_NE(pickle_error(dag + ".").find("kPickleMaxTreeValues"), std::string::npos);
}

TEST(HostileTorch, RewriteNeverWritesOutOfRangeAndIsLinear) {
  // The heap corruption: REDUCE on an OrderedDict class below open MARKs.
  const std::string crash = test::slurp(test::test_data("pickle/regress/insert_mark_at_36.pkl"));
  ASSERT_EQ(crash.size(), 36u);
  const auto f = detail::fix_torch_pickle(crash);
  EXPECT_FALSE(f.complete);
  EXPECT_EQ(f.bytes, crash);
  EXPECT_FALSE(detail::fix_torch_pickle("\x80\x02" "ccollections\nOrderedDict\n)(((((R\x89oa."s).complete);
  // Opcodes reaching below a MARK are not rewritten (and never move bytes).
  for (const std::string& p : {"\x80\x02}(N(s."s, "\x80\x02}N(Nb."s, "\x80\x02](N(a."s})
    EXPECT_FALSE(detail::fix_torch_pickle(p).complete) << testing::PrintToString(p);

  // 80k SETITEMs took 6.9 s (each inserted a byte into the middle of the output).
  std::string big = "\x80\x02}q\x00"s;
  for (int i = 0; i < 200000; ++i) {
    const std::string k = std::to_string(i);
    big += "X"s + static_cast<char>(k.size()) + "\x00\x00\x00"s + k + "K\x01s";
  }
  big += ".";
  const auto t0 = Clock::now();
  const auto r = detail::fix_torch_pickle(big);
  EXPECT_LT(seconds_since(t0), 0.5 * test::kSlowdown);
  EXPECT_TRUE(r.complete);
  EXPECT_EQ(r.setitems, 200000);
  EXPECT_EQ(pickle_error(r.bytes, true), "(no error)");
  // Nested SETITEMs: marks land in the right places.
  const std::string nested = "\x80\x02}X\x01\x00\x00\x00" "a}X\x01\x00\x00\x00" "bK\x01ss."s;
  EXPECT_EQ(detail::fix_torch_pickle(nested).bytes,
            "\x80\x02}(X\x01\x00\x00\x00" "a}(X\x01\x00\x00\x00" "bK\x01uu."s);
}

TEST(HostileTorch, ZipDirectoryIsChecked) {
  const std::string good = test::slurp(test::test_data("torch/valid_small.pt"));
  auto err = [](const std::string& bytes) {
    return test::error_of([&] {
      detail::read_zip_directory(std::span(reinterpret_cast<const unsigned char*>(bytes.data()), bytes.size()), "z.pt");
    });
  };
  EXPECT_EQ(err(good), "(no error)");
  EXPECT_NE(err(good + "trailing").find("no end-of-directory record"), std::string::npos);
  EXPECT_NE(err("not a zip at all").find("not a torch.save zip file"), std::string::npos);
  EXPECT_NE(err(good.substr(0, good.size() / 2)).find("no end-of-directory"), std::string::npos);
  // Every truncation and every single-byte change: an answer, never a crash.
  for (std::size_t n = 0; n < good.size(); n += 7) (void)err(good.substr(0, n));
  for (std::size_t i = 0; i < good.size(); ++i) {
    std::string b = good;
    b[i] = static_cast<char>(b[i] ^ 0xFF);
    (void)err(b);
    (void)test::error_of([&] {
      detail::open_torch_archive(std::span(reinterpret_cast<const unsigned char*>(b.data()), b.size()), "z.pt");
    });
  }
}

class TorchLoad : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!torch_available()) GTEST_SKIP() << "built without LibTorch (DIDMARK_TORCH=OFF)";
  }
};

TEST_F(TorchLoad, ReproductionsEndInCleanErrors) {
  for (const auto& r : kRepros) {
    const auto t0 = Clock::now();
    try {
      TorchCheckpoint::load(test::test_data(std::string("torch/") + r.file));
      ADD_FAILURE() << r.file << " loaded";
    } catch (const Error& e) {
      EXPECT_TRUE(e.code() == Errc::corrupt_input || e.code() == Errc::unsupported) << e.what();
      EXPECT_NE(std::string(e.what()).find(r.says), std::string::npos) << r.file << ": " << e.what();
    }
    EXPECT_LT(seconds_since(t0), 2.0 * test::kSlowdown) << r.file;
  }
}

TEST_F(TorchLoad, FilesWrittenByPyTorchLoad) {
  const TorchCheckpoint ck = TorchCheckpoint::load(test::test_data("torch/pytorch2_state_dict.pt"));
  std::vector<std::string> names;
  for (const auto& t : ck.tensors()) names.push_back(t.name);
  EXPECT_NE(std::find(names.begin(), names.end(), "0.weight"), names.end());
  EXPECT_NE(std::find(names.begin(), names.end(), "1.bias"), names.end());
  // "tied" and the transposed view share the weight's memory... the view was made contiguous.
  bool tied_withheld = false;
  for (const auto& [n, why] : ck.withheld()) tied_withheld |= n == "tied" && why.find("shares memory") != std::string::npos;
  EXPECT_TRUE(tied_withheld);
  const TorchCheckpoint small = TorchCheckpoint::load(test::test_data("torch/valid_small.pt"));
  EXPECT_EQ(small.tensors().size(), 2u);  // a.weight, and a.t made contiguous
  // ZIP64 records on a small file (as Python writes them when told to): our reader takes
  // them; LibTorch's miniz refuses this layout, cleanly.
  try {
    TorchCheckpoint::load(test::test_data("torch/valid_zip64.pt"));
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), Errc::corrupt_input) << e.what();
  }
}

}  // namespace
}  // namespace didmark
