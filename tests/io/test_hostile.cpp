// Hostile files (issue 20): every reproduction is refused cleanly, quickly and without
// echoing what the file holds; only regular files are read; outputs never replace anything
// else. Also the .npy conversions and row ids of issue 19.
#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <future>
#include <gtest/gtest.h>

#include "common/atomic_file.hpp"
#include "common/printable.hpp"
#include "common/regular_file.hpp"
#include "didmark/checkpoint.hpp"
#include "didmark/dataset.hpp"
#include "didmark/error.hpp"
#include "didmark/identity.hpp"
#include "didmark/io.hpp"
#include "didmark/limits.hpp"
#include "didmark/royalty.hpp"
#include "io/io_test_util.hpp"
#include "io/npy_detail.hpp"
#include "test_util.hpp"

namespace didmark {
namespace {

using test::ScratchDir;
using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

// A safetensors file image: the 8-byte length, the header text, the data.
std::string st_image(const std::string& header, const std::string& data = "") {
  std::string f(8, '\0');
  uint64_t n = header.size();
  for (int i = 0; i < 8; ++i) f[static_cast<std::size_t>(i)] = static_cast<char>((n >> (8 * i)) & 0xFF);
  return f + header + data;
}

Error parse_error(const std::string& image, const char* name = "h.safetensors") {
  try {
    parse_safetensors_header(std::span(reinterpret_cast<const unsigned char*>(image.data()), image.size()), name);
  } catch (const Error& e) {
    return e;
  }
  ADD_FAILURE() << "accepted";
  return Error(Errc::internal, "(accepted)");
}

bool has_control(const std::string& s) {
  for (unsigned char c : s)
    if (c < 0x20 || c == 0x7F) return true;
  return false;
}

// ---- printable ----------------------------------------------------------------------------

TEST(Printable, EscapesWhatActsOnATerminalAndKeepsText) {
  EXPECT_EQ(detail::printable("plain.name_0"), "plain.name_0");
  EXPECT_EQ(detail::printable("a\x1b[2Jb\x07\n\r\t"), "a\\x1b[2Jb\\x07\\x0a\\x0d\\x09");
  EXPECT_EQ(detail::printable(std::string("nul\0x", 5)), "nul\\x00x");
  EXPECT_EQ(detail::printable("back\\slash"), "back\\\\slash");
  EXPECT_EQ(detail::printable("caf\xc3\xa9 \xe6\x97\xa5"), "caf\xc3\xa9 \xe6\x97\xa5");  // UTF-8 kept
  EXPECT_EQ(detail::printable("\xff\xc3"), "\\xff\\xc3");                               // invalid bytes
  EXPECT_EQ(detail::printable("x\xe2\x80\xaey"), "x\\u{202e}y");                        // right-to-left override
  EXPECT_EQ(detail::printable("\xc2\x9b" "31m"), "\\u{009b}31m");                       // C1 CSI
  EXPECT_EQ(detail::printable("abcdef", 3), "abc... (6 bytes)");
  EXPECT_EQ(detail::printable("\xc3\xa9\xc3\xa9", 3), "\xc3\xa9... (4 bytes)");  // never cuts a character
  EXPECT_EQ(detail::bounded_list({"a", "b\n", "c"}, 2), "'a', 'b\\x0a' and 1 more");
  EXPECT_EQ(detail::bounded_list({}, 2), "");
}

// ---- safetensors ---------------------------------------------------------------------------

TEST(HostileSafetensors, DeepNestingIsRefusedWithoutRecursion) {
  // 100k nested arrays in a shape (160 kB): crashed the CLI (exit 139) building its message.
  const std::string deep = std::string(100000, '[') + std::string(100000, ']');
  for (const std::string& h :
       {R"({"x":{"dtype":"F32","shape":)" + deep + R"(,"data_offsets":[0,4]}})",
        R"({"x":{"dtype":"F32","shape":[1],"data_offsets":[0,4],"junk":)" + deep + "}}",
        R"({"__metadata__":{"a":)" + deep + "}}", R"({"y":)" + deep + "}"}) {
    const auto t0 = Clock::now();
    const Error e = parse_error(st_image(h, std::string(4, '\0')));
    EXPECT_LT(seconds_since(t0), 1.0 * test::kSlowdown);
    EXPECT_EQ(e.code(), Errc::corrupt_input);
    const std::string m = e.what();
    EXPECT_LT(m.size(), 400u) << m;
    EXPECT_TRUE(m.find("deeper than 64") != std::string::npos || m.find("not a JSON object") != std::string::npos ||
                m.find("shape entry") != std::string::npos || m.find("not a string") != std::string::npos)
        << m;
  }
  // Unknown keys may hold nested values, within the limit.
  const std::string ok = R"({"x":{"dtype":"F32","shape":[1],"data_offsets":[0,4],"note":[[{"a":[1]}]]}})";
  const std::string img = st_image(ok, std::string(4, '\0'));
  EXPECT_EQ(parse_safetensors_header(std::span(reinterpret_cast<const unsigned char*>(img.data()), img.size()), "ok")
                .tensors.size(),
            1u);
}

TEST(HostileSafetensors, DuplicateKeysAnywhereAreRefused) {
  EXPECT_NE(std::string(parse_error(st_image(R"({"x":{"dtype":"F32","shape":[1],"dtype":"I32","data_offsets":[0,4]}})",
                                             std::string(4, '\0')))
                            .what())
                .find("tensor 'x' has two 'dtype' entries"),
            std::string::npos);
  EXPECT_NE(std::string(parse_error(st_image(R"({"x":{"dtype":"F32","shape":[1],"data_offsets":[0,4],"data_offsets":[0,4]}})",
                                             std::string(4, '\0')))
                            .what())
                .find("two 'data_offsets'"),
            std::string::npos);
  EXPECT_NE(std::string(parse_error(st_image(R"({"__metadata__":{"a":"1","a":"2"}})")).what()).find("__metadata__ names 'a' twice"),
            std::string::npos);
  EXPECT_NE(std::string(parse_error(st_image(R"({"__metadata__":{},"__metadata__":null})")).what()).find("'__metadata__' twice"),
            std::string::npos);
}

TEST(HostileSafetensors, ManyKeysCostNLogN) {
  // 200k metadata keys took 39 s (linear search per insertion); 200k tensors likewise.
  std::string meta = R"({"__metadata__":{)";
  for (int i = 0; i < 60000; ++i) meta += (i ? ",\"k" : "\"k") + std::to_string(i) + "\":\"v\"";
  meta += "}}";
  auto t0 = Clock::now();
  std::string img = st_image(meta);
  const auto h = parse_safetensors_header(std::span(reinterpret_cast<const unsigned char*>(img.data()), img.size()), "m");
  EXPECT_EQ(h.metadata.size(), 60000u);
  EXPECT_LT(seconds_since(t0), 1.0 * test::kSlowdown);

  std::string over = R"({"__metadata__":{)";
  for (std::size_t i = 0; i <= kSafetensorsMaxMetadataEntries; ++i) over += (i ? ",\"k" : "\"k") + std::to_string(i) + "\":\"v\"";
  over += "}}";
  EXPECT_NE(std::string(parse_error(st_image(over)).what()).find("kSafetensorsMaxMetadataEntries"), std::string::npos);

  std::string many = "{";
  for (int i = 0; i < 200000; ++i) many += (i ? ",\"t" : "\"t") + std::to_string(i) + R"(":{"dtype":"F32","shape":[0],"data_offsets":[0,0]})";
  many += "}";
  t0 = Clock::now();
  img = st_image(many);
  EXPECT_EQ(parse_safetensors_header(std::span(reinterpret_cast<const unsigned char*>(img.data()), img.size()), "t")
                .tensors.size(),
            200000u);
  EXPECT_LT(seconds_since(t0), 3.0 * test::kSlowdown);
  // A duplicate among them is still found.
  many.back() = ',';
  many += R"("t777":{"dtype":"F32","shape":[0],"data_offsets":[0,0]}})";
  EXPECT_NE(std::string(parse_error(st_image(many)).what()).find("names 't777' twice"), std::string::npos);
}

TEST(HostileSafetensors, HeaderLengthIsNeverEchoed) {
  // The first 8 bytes of /etc/passwd, read as a length, used to be printed.
  const std::string text = "root:x:0:0:root:/root:/bin/bash\n";
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | static_cast<unsigned char>(text[static_cast<std::size_t>(i)]);
  const Error e = parse_error(text, "passwd");
  const std::string m = e.what();
  EXPECT_NE(m.find("too large"), std::string::npos) << m;
  EXPECT_EQ(m.find(std::to_string(n)), std::string::npos) << m;
  // Likewise a length that runs past the end.
  std::string img = st_image("{}");
  img[0] = 100;
  const std::string m2 = parse_error(img).what();
  EXPECT_EQ(m2.find("100"), std::string::npos) << m2;
  EXPECT_NE(m2.find("runs past the end"), std::string::npos) << m2;
}

TEST(HostileSafetensors, NamesFromTheFileAreEscapedAndBounded) {
  const std::string evil = "\\u001b[2J\\u0007evil\\nline" + std::string(5000, 'x');
  for (const std::string& h : {R"({")" + evil + R"(":{"dtype":"X9","shape":[1],"data_offsets":[0,4]}})",
                               R"({")" + evil + R"(":{"dtype":"F32","shape":[2],"data_offsets":[0,4]}})",
                               R"({"__metadata__":{")" + evil + R"(":1}})"}) {
    const std::string m = parse_error(st_image(h, std::string(4, '\0'))).what();
    EXPECT_FALSE(has_control(m)) << m;
    EXPECT_NE(m.find("\\x1b[2J\\x07evil\\x0aline"), std::string::npos) << m;
    EXPECT_LT(m.size(), 600u);
  }
  const std::string m = parse_error(st_image(R"({"x":{"dtype":"\u001b]0;pwned\u0007","shape":[1],"data_offsets":[0,4]}})",
                                             std::string(4, '\0')))
                            .what();
  EXPECT_FALSE(has_control(m)) << m;
}

TEST(HostileSafetensors, RankAndTensorCountAreBounded) {
  std::string shape = "[";
  for (std::size_t i = 0; i <= kMaxTensorRank; ++i) shape += i ? ",1" : "1";
  shape += "]";
  EXPECT_NE(std::string(parse_error(st_image(R"({"x":{"dtype":"F32","shape":)" + shape + R"(,"data_offsets":[0,4]}})",
                                             std::string(4, '\0')))
                            .what())
                .find("kMaxTensorRank"),
            std::string::npos);
}

TEST(HostileSafetensors, IndexIsReadLinearlyAndDepthBounded) {
  ScratchDir dir;
  std::string j = R"({"weight_map":{)";
  for (int i = 0; i < 100000; ++i) j += (i ? ",\"t" : "\"t") + std::to_string(i) + "\":\"s" + std::to_string(i % 7) + ".safetensors\"";
  j += "}}";
  test::spit(dir / "m.safetensors.index.json", j);
  const auto t0 = Clock::now();
  const auto idx = read_safetensors_index(dir / "m.safetensors.index.json");
  EXPECT_EQ(idx.weight_map.size(), 100000u);
  EXPECT_EQ(idx.shards.size(), 7u);
  EXPECT_LT(seconds_since(t0), 2.0 * test::kSlowdown);
  test::spit(dir / "d.json", R"({"metadata":)" + std::string(100000, '[') + std::string(100000, ']') + "}");
  EXPECT_NE(test::error_of([&] { read_safetensors_index(dir / "d.json"); }).find("deeper than"), std::string::npos);
  test::spit(dir / "e.json", R"({"weight_map":{"a":"s.safetensors","a":"t.safetensors"}})");
  EXPECT_NE(test::error_of([&] { read_safetensors_index(dir / "e.json"); }).find("names tensor 'a' twice"),
            std::string::npos);
  test::spit(dir / "f.json", R"({"weight_map":{"a":{"x":1}}})");
  EXPECT_NE(test::error_of([&] { read_safetensors_index(dir / "f.json"); }).find("is not a file name"),
            std::string::npos);
  test::spit(dir / "g.json", R"([1,2])");
  EXPECT_NE(test::error_of([&] { read_safetensors_index(dir / "g.json"); }).find("not a JSON object"),
            std::string::npos);
}

// ---- regular files only --------------------------------------------------------------------

// Run f, which must throw didmark::Error within 5 s; a reader blocked on the FIFO is released
// by opening it for writing, and the test fails.
std::string refused_quickly(const std::filesystem::path& fifo, const std::function<void()>& f) {
  auto fut = std::async(std::launch::async, [&] { return test::error_of(f); });
  if (fut.wait_for(std::chrono::seconds(5)) != std::future_status::ready) {
    const int w = ::open(fifo.c_str(), O_WRONLY | O_NONBLOCK);
    if (w >= 0) ::close(w);
    ADD_FAILURE() << "blocked on " << fifo;
  }
  return fut.get();
}

TEST(RegularFilesOnly, FifosDevicesSocketsAndFoldersAreRefusedWithoutBlocking) {
  ScratchDir dir;
  const auto fifo = dir / "x.fifo";
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  struct Reader {
    const char* what;
    std::function<void(const std::filesystem::path&)> read;
  };
  const std::vector<Reader> readers{
      {"MappedFile", [](const auto& p) { MappedFile m(p); }},
      {"SafetensorsFile", [](const auto& p) { SafetensorsFile f(p); }},
      {"read_npy", [](const auto& p) { read_npy(p); }},
      {"read_row_ids", [](const auto& p) { read_row_ids(p); }},
      {"read_safetensors_index", [](const auto& p) { read_safetensors_index(p); }},
      {"CsvTable::read", [](const auto& p) { CsvTable::read(p); }},
      {"load_identity", [](const auto& p) { load_identity(p); }},
      {"load_registry", [](const auto& p) { load_registry(p); }},
      {"load_weights", [](const auto& p) { load_weights(p); }},
      {"read_regular_file", [](const auto& p) { detail::read_regular_file(p); }},
      {"verify_checkpoint", [](const auto& p) { verify_checkpoint(p, CheckpointFormat::safetensors, {}, {}); }},
  };
  for (const auto& r : readers) {
    const std::string m = refused_quickly(fifo, [&] { r.read(fifo); });
    EXPECT_NE(m.find("FIFO"), std::string::npos) << r.what << ": " << m;
    EXPECT_NE(m.find("x.fifo"), std::string::npos) << r.what << ": " << m;
    const std::string d = test::error_of([&] { r.read("/dev/null"); });
    EXPECT_NE(d.find("character device"), std::string::npos) << r.what << ": " << d;
    const std::string f = test::error_of([&] { r.read(dir.path()); });
    EXPECT_NE(f.find("folder"), std::string::npos) << r.what << ": " << f;
  }
  if (torch_available()) {
    const std::string m = refused_quickly(fifo, [&] { TorchCheckpoint::load(fifo); });
    EXPECT_NE(m.find("FIFO"), std::string::npos) << m;
  }
  // A socket.
  const auto sock_path = dir / "s.sock";
  const int s = ::socket(AF_UNIX, SOCK_STREAM, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, sock_path.c_str(), sizeof addr.sun_path - 1);
  ASSERT_EQ(::bind(s, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  EXPECT_NE(test::error_of([&] { MappedFile m(sock_path); }).find("socket"), std::string::npos);
  ::close(s);
  // Errors keep their kinds; a symlink to a regular file is fine.
  try {
    MappedFile m(dir / "missing");
    ADD_FAILURE();
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), Errc::not_found);
  }
  test::spit(dir / "real.bin", "abc");
  std::filesystem::create_symlink(dir / "real.bin", dir / "link.bin");
  EXPECT_EQ(MappedFile(dir / "link.bin").size(), 3u);
  EXPECT_EQ(detail::read_regular_file(dir / "link.bin"), "abc");
  EXPECT_NE(test::error_of([&] { detail::read_regular_file(dir / "real.bin", "thing", 2); }).find("larger than the limit"),
            std::string::npos);
}

TEST(RegularFilesOnly, OutputsNeverReplaceAnythingButARegularFile) {
  ScratchDir dir;
  const auto fifo = dir / "out.fifo";
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  std::vector<float> x{1, 2, 3};
  const TensorView v = TensorView::contiguous(x.data(), DType::f32, {3});
  // --force onto a FIFO, a device or a folder: refused, the thing left as it was.
  EXPECT_NE(test::error_of([&] { write_npy(fifo, v, true); }).find("FIFO"), std::string::npos);
  struct stat st {};
  ASSERT_EQ(::lstat(fifo.c_str(), &st), 0);
  EXPECT_TRUE(S_ISFIFO(st.st_mode));
  EXPECT_NE(test::error_of([&] { detail::check_replaceable("/dev/null"); }).find("character device"),
            std::string::npos);
  EXPECT_NE(test::error_of([&] { detail::AtomicFile f("/dev/null", true); }).find("character device"),
            std::string::npos);
  std::filesystem::create_directory(dir / "folder");
  EXPECT_NE(test::error_of([&] { detail::write_file_atomically(dir / "folder", "x", true); }).find("folder"),
            std::string::npos);
  // A regular file is replaced as before.
  write_npy(dir / "a.npy", v);
  write_npy(dir / "a.npy", v, true);
  EXPECT_EQ(read_npy(dir / "a.npy").shape, (std::vector<int64_t>{3}));
}

// ---- .npy ------------------------------------------------------------------------------------

std::vector<double> values(const NpyArray& a) {
  std::vector<double> out;
  const TensorView v = a.view();
  for (int64_t i = 0; i < v.numel(); ++i)
    out.push_back(v.dtype == DType::f64 ? static_cast<const double*>(v.data)[i] : static_cast<const float*>(v.data)[i]);
  return out;
}

TEST(Npy, BigEndianAndFortranOrderAreConvertedOnLoad) {
  const NpyArray c = read_npy(test::test_data("npy/c_order_f32.npy"));
  EXPECT_FALSE(c.converted);
  const auto want = values(c);
  ASSERT_EQ(want.size(), 12u);
  EXPECT_EQ(want[5], 5.0 / 8);
  for (const char* f : {"npy/big_endian_f32.npy", "npy/fortran_f32.npy", "npy/fortran_big_endian_f64.npy"}) {
    const NpyArray a = read_npy(test::test_data(f));
    EXPECT_TRUE(a.converted) << f;
    EXPECT_EQ(a.shape, (std::vector<int64_t>{3, 4})) << f;
    EXPECT_EQ(values(a), want) << f;
  }
  // Embedding into a converted array writes a little-endian C-order file.
  ScratchDir dir;
  std::vector<float> big(512 * 512);
  std::mt19937 rng(3);
  std::normal_distribution<float> g(0, 1);
  for (auto& x : big) x = g(rng);
  std::string bytes = detail::npy_header_bytes(DType::f32, {512, 512});
  bytes.replace(bytes.find("<f4"), 3, ">f4");
  bytes.replace(bytes.find("False"), 5, "True ");
  for (int64_t j = 0; j < 512; ++j)      // Fortran order: first index fastest
    for (int64_t i = 0; i < 512; ++i) {  // big-endian items
      const float f = big[static_cast<std::size_t>(i * 512 + j)];
      unsigned char b[4];
      std::memcpy(b, &f, 4);
      bytes.append({static_cast<char>(b[3]), static_cast<char>(b[2]), static_cast<char>(b[1]), static_cast<char>(b[0])});
    }
  test::spit(dir / "in.npy", bytes);
  const NpyArray in = read_npy(dir / "in.npy");
  ASSERT_TRUE(in.big_endian && in.fortran_order);
  EXPECT_EQ(std::memcmp(in.view().data, big.data(), big.size() * 4), 0);
  WatermarkOptions o;
  o.strength = 0.02;
  o.max_relative_change = 0.05;
  const Claim claim{test::random_key(1), test::random_payload(2)};
  embed_checkpoint(dir / "in.npy", dir / "out.npy", CheckpointFormat::npy, claim.key, claim.payload, o, {});
  const NpyArray outa = read_npy(dir / "out.npy");
  EXPECT_FALSE(outa.converted);
  EXPECT_EQ(outa.shape, in.shape);
  EXPECT_TRUE(verify_checkpoint(dir / "out.npy", CheckpointFormat::npy, std::span(&claim, 1), o)[0].detected);
}

TEST(Npy, RowIdsOfEveryIntegerTypeAndByteOrder) {
  const std::vector<int64_t> want{5, 0, 7, (int64_t{1} << 31) + 3};
  for (const char* f : {"ids_le_i8", "ids_be_i8", "ids_le_u8", "ids_be_u4", "ids_le_u4"})
    EXPECT_EQ(read_row_ids(test::test_data(std::string("npy/") + f + ".npy"), 4), want) << f;
  std::vector<int64_t> small;
  for (int64_t v : want) small.push_back(v % 30000);
  for (const char* f : {"ids_le_i4", "ids_le_i2", "ids_le_u2"})
    EXPECT_EQ(read_row_ids(test::test_data(std::string("npy/") + f + ".npy"), 4), small) << f;
  EXPECT_EQ(read_row_ids(test::test_data("npy/ids_le_i8.npy")).size(), 4u);  // no expected count
  auto refused = [](const char* f, int64_t rows, const char* says) {
    const std::string m = test::error_of([&] { read_row_ids(test::test_data(f), rows); });
    EXPECT_NE(m.find(says), std::string::npos) << f << ": " << m;
  };
  refused("npy/ids_f32.npy", 4, "row ids must be integers");
  refused("npy/ids_u64_too_big.npy", 2, "above 2^63 - 1");
  refused("npy/ids_le_i8.npy", 5, "hold 4 ids but the array has 5 rows");
  refused("npy/c_order_f32.npy", 12, "row ids must be integers");
  ScratchDir dir;
  std::vector<int64_t> grid(6);
  write_npy(dir / "g.npy", TensorView::contiguous(grid.data(), DType::i64, {2, 3}));
  EXPECT_NE(test::error_of([&] { read_row_ids(dir / "g.npy", 6); }).find("shape (N,) or (N, 1)"), std::string::npos);
}

TEST(Npy, HeadersAreBounded) {
  EXPECT_NE(test::error_of([] { read_npy(test::test_data("npy/header_too_long.npy")); }).find("kNpyMaxHeader"),
            std::string::npos);
  // More dimensions than kMaxTensorRank, a structured dtype, a bad order flag: refused, escaped.
  auto npy = [](const std::string& dict) {
    std::string h = dict + "\n";
    std::string out("\x93NUMPY\x01\x00", 8);
    out.push_back(static_cast<char>(h.size() & 0xFF));
    out.push_back(static_cast<char>(h.size() >> 8));
    return out + h;
  };
  ScratchDir dir;
  std::string shape;
  for (std::size_t i = 0; i <= kMaxTensorRank; ++i) shape += "1,";
  test::spit(dir / "r.npy", npy("{'descr': '<f4', 'fortran_order': False, 'shape': (" + shape + "), }") + "xxxx");
  EXPECT_NE(test::error_of([&] { read_npy(dir / "r.npy"); }).find("kMaxTensorRank"), std::string::npos);
  test::spit(dir / "s.npy", npy("{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (1,), }"));
  EXPECT_NE(test::error_of([&] { read_npy(dir / "s.npy"); }).find("not supported"), std::string::npos);
  test::spit(dir / "e.npy", npy("{'descr': '\x1b[31m', 'fortran_order': False, 'shape': (1,), }"));
  EXPECT_FALSE(has_control(test::error_of([&] { read_npy(dir / "e.npy"); })));
  test::spit(dir / "o.npy", npy("{'descr': '<f4', 'fortran_order': Maybe, 'shape': (1,), }") + "xxxx");
  EXPECT_NE(test::error_of([&] { read_npy(dir / "o.npy"); }).find("neither True nor False"), std::string::npos);
  test::spit(dir / "u.npy", npy("{'descr': '<u4', 'fortran_order': False, 'shape': (1,), }") + "xxxx");
  EXPECT_NE(test::error_of([&] { read_npy(dir / "u.npy"); }).find("not supported"), std::string::npos);
  EXPECT_EQ(read_row_ids(dir / "u.npy", 1), (std::vector<int64_t>{0x78787878}));
}

}  // namespace
}  // namespace didmark
