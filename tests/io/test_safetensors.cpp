// safetensors reader, validator, writer and index.
#include <gtest/gtest.h>

#include <cstring>
#include <numeric>

#include "didmark/error.hpp"
#include "didmark/io.hpp"
#include "io/io_test_util.hpp"
#include "test_util.hpp"

namespace didmark {
namespace {

using test::ScratchDir;

struct BadFile {
  const char* file;
  Errc code;
  const char* says;  // part of the message naming the problem
};

class MalformedCorpus : public ::testing::TestWithParam<BadFile> {};

TEST_P(MalformedCorpus, RefusedWithAClearMessage) {
  const BadFile& c = GetParam();
  const auto path = test::test_data(std::string("safetensors/") + c.file);
  ASSERT_TRUE(std::filesystem::exists(path)) << path;
  try {
    SafetensorsFile f(path);
    FAIL() << c.file << " was accepted";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), c.code) << e.what();
    const std::string msg = e.what();
    EXPECT_NE(msg.find(c.file), std::string::npos) << "message does not name the file: " << msg;
    EXPECT_NE(msg.find(c.says), std::string::npos) << "message does not say '" << c.says << "': " << msg;
  }
}

INSTANTIATE_TEST_SUITE_P(
    Corpus, MalformedCorpus,
    ::testing::Values(BadFile{"too_small.safetensors", Errc::corrupt_input, "cannot hold the 8-byte header length"},
                      BadFile{"truncated_header.safetensors", Errc::corrupt_input, "runs past the end of the file"},
                      BadFile{"huge_header_length.safetensors", Errc::corrupt_input, "exceeds the limit"},
                      BadFile{"offsets_out_of_range.safetensors", Errc::corrupt_input, "out of range"},
                      BadFile{"truncated_data.safetensors", Errc::corrupt_input, "out of range"},
                      BadFile{"overlapping_tensors.safetensors", Errc::corrupt_input, "overlaps tensor 'a'"},
                      BadFile{"gap_between_tensors.safetensors", Errc::corrupt_input, "leaving a gap"},
                      BadFile{"wrong_byte_count.safetensors", Errc::corrupt_input, "= 12 bytes but its data_offsets span 8"},
                      BadFile{"bad_json.safetensors", Errc::corrupt_input, "not valid JSON"},
                      BadFile{"bad_utf8.safetensors", Errc::corrupt_input, "not valid JSON"},
                      BadFile{"unknown_dtype.safetensors", Errc::corrupt_input, "unknown dtype 'F33'"},
                      BadFile{"unsupported_dtype.safetensors", Errc::unsupported, "dtype U32"},
                      BadFile{"duplicate_names.safetensors", Errc::corrupt_input, "names 'x' twice"},
                      BadFile{"metadata_not_strings.safetensors", Errc::corrupt_input, "__metadata__ entry 'n'"},
                      BadFile{"not_an_object.safetensors", Errc::corrupt_input, "does not start with '{'"},
                      BadFile{"trailing_bytes.safetensors", Errc::corrupt_input, "the tensors cover 8 bytes"},
                      BadFile{"negative_dimension.safetensors", Errc::corrupt_input, "shape entry"},
                      BadFile{"reversed_offsets.safetensors", Errc::corrupt_input, "end before they begin"},
                      BadFile{"shape_overflow.safetensors", Errc::corrupt_input, "overflows"},
                      BadFile{"missing_offsets.safetensors", Errc::corrupt_input, "needs data_offsets"}));

TEST(Safetensors, ReadsFilesMadeByThePythonLibrary) {
  SafetensorsFile f(test::test_data("safetensors/valid_small.safetensors"));
  ASSERT_EQ(f.header().tensors.size(), 2u);
  // Data order: the library puts the f32 tensor (larger alignment) first.
  EXPECT_EQ(f.header().tensors[0].name, "weight");
  EXPECT_EQ(f.header().tensors[0].dtype, DType::f32);
  EXPECT_EQ(f.header().tensors[0].shape, (std::vector<int64_t>{64, 64}));
  EXPECT_EQ(f.header().tensors[1].name, "bias");
  EXPECT_EQ(f.header().tensors[1].dtype, DType::f16);
  ASSERT_EQ(f.header().metadata.size(), 2u);
  const auto& md = f.header().metadata;
  EXPECT_NE(std::find(md.begin(), md.end(), std::pair<std::string, std::string>{"format", "pt"}), md.end());
  EXPECT_EQ(f.header().data_offset() % 8, 0u);

  SafetensorsFile g(test::test_data("safetensors/valid_bf16_u8.safetensors"));
  ASSERT_EQ(g.header().tensors.size(), 2u);
  EXPECT_EQ(g.header().tensors[0].dtype, DType::bf16);
  const auto* x = static_cast<const uint16_t*>(g.view(g.header().tensors[0]).data);
  for (uint16_t i = 0; i < 6; ++i) EXPECT_EQ(x[i], i);
  EXPECT_EQ(g.header().tensors[1].dtype, DType::u8);

  SafetensorsFile e(test::test_data("safetensors/valid_empty.safetensors"));
  EXPECT_TRUE(e.header().tensors.empty());
  SafetensorsFile z(test::test_data("safetensors/valid_zero_sized.safetensors"));
  ASSERT_EQ(z.header().tensors.size(), 2u);
  EXPECT_EQ(z.header().tensors[0].name, "e");
  EXPECT_EQ(z.view(z.header().tensors[0]).numel(), 0);
}

TEST(Safetensors, DtypeNames) {
  for (auto t : {DType::f64, DType::f32, DType::f16, DType::bf16, DType::f8_e4m3, DType::f8_e5m2, DType::i64,
                 DType::i32, DType::i16, DType::i8, DType::u8, DType::boolean})
    EXPECT_EQ(safetensors_dtype(safetensors_dtype_name(t)), t);
  EXPECT_FALSE(safetensors_dtype("U16"));
  EXPECT_FALSE(safetensors_dtype("f32"));
}

TEST(Safetensors, WriterRoundTripsEveryDtypeAndMetadata) {
  ScratchDir dir;
  std::vector<test::Buffer> bufs;
  const DType types[] = {DType::u8, DType::f16, DType::f64, DType::bf16, DType::i64, DType::i32, DType::i16,
                         DType::i8, DType::boolean, DType::f8_e4m3, DType::f8_e5m2, DType::f32};
  int k = 0;
  for (DType t : types) {
    test::Buffer b("t" + std::to_string(k++) + "_" + std::string(dtype_name(t)), t, {3, 5});
    for (std::size_t i = 0; i < b.view.nbytes(); ++i) b.bytes[i] = static_cast<unsigned char>(i * 7 + k);
    bufs.push_back(b);
  }
  bufs.emplace_back("scalar", DType::f32, std::vector<int64_t>{});
  bufs.emplace_back("empty", DType::f32, std::vector<int64_t>{0, 3});
  const std::vector<std::pair<std::string, std::string>> meta{{"z", "last"}, {"a", "first"}, {"format", "pt"}};
  write_safetensors(dir / "all.safetensors", test::named(bufs), meta);

  SafetensorsFile f(dir / "all.safetensors");
  EXPECT_EQ(f.header().metadata, meta);  // order kept
  EXPECT_EQ(f.header().data_offset() % 8, 0u);
  ASSERT_EQ(f.header().tensors.size(), bufs.size());
  std::size_t prev_size = 8;
  for (const auto& info : f.header().tensors) {
    const auto it = std::find_if(bufs.begin(), bufs.end(), [&](const auto& b) { return b.name == info.name; });
    ASSERT_NE(it, bufs.end()) << info.name;
    EXPECT_EQ(info.dtype, it->view.dtype);
    EXPECT_EQ(info.shape, it->view.shape);
    const TensorView v = f.view(info);
    EXPECT_EQ(reinterpret_cast<uintptr_t>(v.data) % dtype_size(info.dtype), 0u) << info.name << " unaligned";
    EXPECT_EQ(std::memcmp(v.data, it->view.data, v.nbytes()), 0) << info.name;
    EXPECT_LE(dtype_size(info.dtype), prev_size) << "not sorted by dtype size";
    prev_size = dtype_size(info.dtype);
  }
}

TEST(Safetensors, WriterRefusesExistingFilesAndDuplicates) {
  ScratchDir dir;
  test::Buffer a("a", DType::f32, {4});
  write_safetensors(dir / "x.safetensors", std::vector<NamedTensor>{a.named()});
  EXPECT_THROW(write_safetensors(dir / "x.safetensors", std::vector<NamedTensor>{a.named()}), Error);
  EXPECT_NO_THROW(write_safetensors(dir / "x.safetensors", std::vector<NamedTensor>{a.named()}, {}, true));
  EXPECT_THROW(write_safetensors(dir / "y.safetensors", std::vector<NamedTensor>{a.named(), a.named()}), Error);
  test::Buffer m("__metadata__", DType::f32, {4});
  EXPECT_THROW(write_safetensors(dir / "y.safetensors", std::vector<NamedTensor>{m.named()}), Error);
  EXPECT_FALSE(std::filesystem::exists(dir / "y.safetensors"));
}

TEST(Safetensors, AbandonedWriterLeavesNothing) {
  ScratchDir dir;
  {
    SafetensorsWriter w(dir / "x.safetensors", {{"a", DType::f32, {1024, 1024}}}, {});
    std::memset(w.view(w.header().tensors[0]).data, 1, 16);
  }
  EXPECT_TRUE(std::filesystem::is_empty(dir.path()));
}

TEST(Safetensors, CopiedLayoutIsByteIdentical) {
  ScratchDir dir;
  const auto in = test::test_data("safetensors/valid_small.safetensors");
  SafetensorsFile src(in);
  {
    SafetensorsWriter w(dir / "copy.safetensors", src, false);
    for (const auto& t : src.header().tensors) std::memcpy(w.view(t).data, src.view(t).data, t.nbytes());
    w.commit();
  }
  EXPECT_EQ(test::slurp(dir / "copy.safetensors"), test::slurp(in));
}

TEST(Safetensors, ParsesHeadersInMemory) {
  std::string h = R"({"__metadata__":null,"b":{"dtype":"I8","shape":[2],"data_offsets":[4,6]},)"
                  R"("a":{"dtype":"F32","shape":[],"data_offsets":[0,4],"extra":"ignored"}})";
  std::string file(8, '\0');
  file[0] = static_cast<char>(h.size());
  file += h + std::string(6, 'x');
  const auto hdr = parse_safetensors_header(
      std::span(reinterpret_cast<const unsigned char*>(file.data()), file.size()), "mem");
  ASSERT_EQ(hdr.tensors.size(), 2u);
  EXPECT_EQ(hdr.tensors[0].name, "a");  // data order, not header order
  EXPECT_TRUE(hdr.tensors[0].shape.empty());
  EXPECT_EQ(hdr.data_bytes(), 6u);
}

TEST(SafetensorsIndex, ReadsAndValidates) {
  ScratchDir dir;
  test::spit(dir / "m.safetensors.index.json",
             R"({"metadata":{"total_size":8},"weight_map":{"b":"s2.safetensors","a":"s1.safetensors","c":"s1.safetensors"}})");
  const auto idx = read_safetensors_index(dir / "m.safetensors.index.json");
  EXPECT_EQ(idx.shards, (std::vector<std::string>{"s2.safetensors", "s1.safetensors"}));
  EXPECT_EQ(idx.weight_map.size(), 3u);
  EXPECT_EQ(idx.folder(), dir.path());

  auto refused = [&](const std::string& json, const char* says) {
    test::spit(dir / "bad.json", json);
    try {
      read_safetensors_index(dir / "bad.json");
      ADD_FAILURE() << json;
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), Errc::corrupt_input);
      EXPECT_NE(std::string(e.what()).find(says), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find("bad.json"), std::string::npos) << e.what();
    }
  };
  refused(R"({"weight_map":{"a":"../escape.safetensors"}})", "not a plain file name");
  refused(R"({"weight_map":{"a":"/etc/passwd"}})", "not a plain file name");
  refused(R"({"weight_map":{"a":1}})", "is not a file name");
  refused(R"({"metadata":{}})", "no weight_map");
  refused(R"({"weight_map":{}})", "lists no shards");
  refused(R"({"weight_map":)", "not valid JSON");
}

TEST(SafetensorsIndex, JsonLooksLikeTheHubs) {
  const std::string j = safetensors_index_json({{"b", "s2"}, {"a", "s1"}}, 42);
  EXPECT_NE(j.find("\"total_size\": 42"), std::string::npos) << j;
  EXPECT_LT(j.find("\"a\""), j.find("\"b\""));
}

}  // namespace
}  // namespace didmark
