// Image marks: codec round trips and metadata, the mark's robustness on generated photographs,
// the null bound over 10^4 wrong keys, dataset tests, malformed files, CPU/CUDA parity.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <random>
#include <set>

#include <unistd.h>

#include "backend/image_ops.hpp"
#include "images/planes.hpp"
#include "didmark/error.hpp"
#include "didmark/images.hpp"
#include "didmark/inputs.hpp"
#include "common/thread_pool.hpp"
#include "test_util.hpp"

namespace didmark {
namespace {

namespace fs = std::filesystem;

// A photograph-like test image: smooth shading, edges, texture at several scales, sensor noise.
Image synth(int w, int h, int channels, uint32_t seed, ImageCodec codec = ImageCodec::png) {
  Image img;
  img.codec = codec;
  img.width = w;
  img.height = h;
  img.channels = channels;
  img.pixels.resize(static_cast<std::size_t>(w) * h * channels);
  std::mt19937 rng(seed);
  std::normal_distribution<float> noise(0.f, 3.f);
  std::uniform_real_distribution<float> u(0.f, 1.f);
  const float fx = 0.01f + 0.03f * u(rng), fy = 0.01f + 0.03f * u(rng), ph = 6.28f * u(rng);
  const float cx = w * u(rng), cy = h * u(rng), r0 = 0.2f * static_cast<float>(std::min(w, h));
  // Coarse random grid for value noise.
  const int g = 16;
  std::vector<float> grid(static_cast<std::size_t>((w / g + 2) * (h / g + 2)));
  for (auto& v : grid) v = u(rng);
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x) {
      const float gx = static_cast<float>(x) / g, gy = static_cast<float>(y) / g;
      const int ix = static_cast<int>(gx), iy = static_cast<int>(gy);
      const float ax = gx - ix, ay = gy - iy;
      const auto at = [&](int a, int b) { return grid[static_cast<std::size_t>(b * (w / g + 2) + a)]; };
      const float vn = (1 - ax) * (1 - ay) * at(ix, iy) + ax * (1 - ay) * at(ix + 1, iy) + (1 - ax) * ay * at(ix, iy + 1) +
                       ax * ay * at(ix + 1, iy + 1);
      const bool disc = (static_cast<float>(x) - cx) * (static_cast<float>(x) - cx) +
                            (static_cast<float>(y) - cy) * (static_cast<float>(y) - cy) < r0 * r0;
      const float base = 90.f + 50.f * std::sin(fx * static_cast<float>(x) + ph) * std::cos(fy * static_cast<float>(y)) +
                         60.f * vn + (disc ? 40.f : 0.f) + noise(rng);
      for (int c = 0; c < channels; ++c) {
        float v = base + (c < 3 ? 15.f * static_cast<float>(c) - 15.f : 0.f);
        if (c == 3 || (channels == 2 && c == 1)) v = static_cast<float>((x + y) % 256);  // alpha ramp
        img.pixels[(static_cast<std::size_t>(y) * w + x) * channels + c] =
            static_cast<uint8_t>(std::clamp(std::lround(v), 0L, 255L));
      }
    }
  return img;
}

ImageClaim claim_of(uint8_t seed, std::size_t bits = 256) {
  ImageClaim c;
  for (std::size_t i = 0; i < 32; ++i) c.key.bytes[i] = static_cast<uint8_t>(seed * 31 + i * 7 + 1);
  std::vector<uint8_t> b(bits);
  for (std::size_t i = 0; i < bits; ++i) b[i] = static_cast<uint8_t>(((i * 2654435761u) >> 7 ^ seed) & 1);
  c.payload = Payload::from_bits(b);
  return c;
}

Image roundtrip(const Image& img) {
  const auto bytes = encode_image(img);
  return decode_image(bytes, img.codec, "roundtrip");
}

Image as_jpeg(const Image& src, int quality) {
  Image j = src;
  j.codec = ImageCodec::jpeg;
  j.quant_tables.clear();
  j.component_table.clear();
  j.quality = quality;
  j.progressive = false;
  return roundtrip(j);
}

// Box 2x down, bilinear 2x up (back to the original size).
Image resize_half_and_back(const Image& s) {
  const int w2 = s.width / 2, h2 = s.height / 2, c = s.channels;
  std::vector<float> half(static_cast<std::size_t>(w2) * h2 * c);
  for (int y = 0; y < h2; ++y)
    for (int x = 0; x < w2; ++x)
      for (int k = 0; k < c; ++k) {
        float a = 0;
        for (int dy = 0; dy < 2; ++dy)
          for (int dx = 0; dx < 2; ++dx) a += s.pixels[(static_cast<std::size_t>(2 * y + dy) * s.width + 2 * x + dx) * c + k];
        half[(static_cast<std::size_t>(y) * w2 + x) * c + k] = a / 4;
      }
  Image o = s;
  for (int y = 0; y < s.height; ++y)
    for (int x = 0; x < s.width; ++x) {
      const float sx = std::clamp((static_cast<float>(x) + 0.5f) / 2 - 0.5f, 0.f, static_cast<float>(w2 - 1));
      const float sy = std::clamp((static_cast<float>(y) + 0.5f) / 2 - 0.5f, 0.f, static_cast<float>(h2 - 1));
      const int x0 = static_cast<int>(sx), y0 = static_cast<int>(sy);
      const int x1 = std::min(x0 + 1, w2 - 1), y1 = std::min(y0 + 1, h2 - 1);
      const float ax = sx - x0, ay = sy - y0;
      for (int k = 0; k < c; ++k) {
        const auto at = [&](int xx, int yy) { return half[(static_cast<std::size_t>(yy) * w2 + xx) * c + k]; };
        const float v = (1 - ax) * (1 - ay) * at(x0, y0) + ax * (1 - ay) * at(x1, y0) + (1 - ax) * ay * at(x0, y1) +
                        ax * ay * at(x1, y1);
        o.pixels[(static_cast<std::size_t>(y) * s.width + x) * c + k] = static_cast<uint8_t>(std::lround(v));
      }
    }
  return o;
}

// Keep the centre, cutting `fraction` of each side's length (half on each edge).
Image center_crop(const Image& s, double fraction) {
  const int dx = static_cast<int>(s.width * fraction / 2), dy = static_cast<int>(s.height * fraction / 2);
  Image o = s;
  o.width = s.width - 2 * dx;
  o.height = s.height - 2 * dy;
  o.pixels.resize(static_cast<std::size_t>(o.width) * o.height * s.channels);
  for (int y = 0; y < o.height; ++y)
    std::memcpy(&o.pixels[static_cast<std::size_t>(y) * o.width * s.channels],
                &s.pixels[(static_cast<std::size_t>(y + dy) * s.width + dx) * s.channels],
                static_cast<std::size_t>(o.width) * s.channels);
  return o;
}

Image brightness_contrast(const Image& s, float brightness, float contrast) {
  Image o = s;
  for (auto& v : o.pixels)
    v = static_cast<uint8_t>(std::clamp(std::lround((static_cast<float>(v) - 128.f) * contrast + 128.f + brightness * 255.f), 0L, 255L));
  return o;
}

double z_of(const Image& img, const ImageClaim& c) { return score_image(img, {&c, 1}).owners[0].z; }

// ---- codecs ---------------------------------------------------------------------------------

TEST(ImageCodec, PngRoundTripsEveryColourType) {
  for (int ch : {1, 2, 3, 4}) {
    Image img = synth(70, 50, ch, 1);
    img.text = {{"Title", "a test"}};
    img.exif = {'M', 'M', 0, 42, 0, 0, 0, 8};
    const Image back = roundtrip(img);
    EXPECT_EQ(back.channels, ch);
    EXPECT_EQ(back.pixels, img.pixels);
    EXPECT_EQ(back.icc, img.icc);
    EXPECT_EQ(back.exif, img.exif);
    ASSERT_EQ(back.text.size(), 1u);
    EXPECT_EQ(back.text[0].second, "a test");
  }
}

TEST(ImageCodec, JpegKeepsTablesSubsamplingAndMetadata) {
  Image img = as_jpeg(synth(96, 64, 3, 2), 77);
  EXPECT_EQ(img.quality, 77);
  EXPECT_EQ(img.subsampling(), "4:2:0");
  img.exif = {'I', 'I', 42, 0, 8, 0, 0, 0};
  img.icc = std::vector<uint8_t>(300, 7);
  img.markers.push_back({0xFE, {'h', 'i'}});  // COM
  const Image back = roundtrip(img);
  EXPECT_EQ(back.quant_tables, img.quant_tables);
  EXPECT_EQ(back.subsampling(), "4:2:0");
  EXPECT_EQ(back.quality, 77);
  EXPECT_EQ(back.exif, img.exif);
  EXPECT_EQ(back.icc, img.icc);
  ASSERT_EQ(back.markers.size(), 1u);
  EXPECT_EQ(back.markers[0].second, (std::vector<uint8_t>{'h', 'i'}));
  const Image grey = as_jpeg(synth(64, 64, 1, 3), 90);
  EXPECT_EQ(grey.channels, 1);
}

TEST(ImageCodec, WebpLosslessAndLossyWithAlphaAndMetadata) {
  Image img = synth(80, 60, 4, 4, ImageCodec::webp);
  img.lossless = true;
  img.exif = {'M', 'M', 0, 42};
  img.icc = {9, 9, 9};
  const Image back = roundtrip(img);
  EXPECT_TRUE(back.lossless);
  EXPECT_EQ(back.pixels, img.pixels);
  EXPECT_EQ(back.exif, img.exif);
  EXPECT_EQ(back.icc, img.icc);
  img.lossless = false;
  const Image lossy = roundtrip(img);
  EXPECT_FALSE(lossy.lossless);
  for (std::size_t i = 3; i < img.pixels.size(); i += 4) ASSERT_EQ(lossy.pixels[i], img.pixels[i]);
}

TEST(ImageCodec, MalformedFilesAreRefusedWithTheirName) {
  const Image j = as_jpeg(synth(128, 128, 3, 5), 80);
  auto bytes = encode_image(j);
  bytes.resize(bytes.size() / 2);
  try {
    decode_image(bytes, ImageCodec::jpeg, "half.jpg");
    FAIL() << "a truncated JPEG decoded";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), Errc::corrupt_input);
    EXPECT_NE(std::string(e.what()).find("half.jpg"), std::string::npos) << e.what();
  }
  auto png = encode_image(synth(64, 64, 3, 6));
  png[png.size() / 2] ^= 0x55;  // inside IDAT: its CRC no longer matches
  EXPECT_THROW(decode_image(png, ImageCodec::png, "bad.png"), Error);
  // A header claiming 100000 x 100000 pixels: refused before any allocation.
  auto huge = encode_image(synth(16, 16, 1, 7));
  const uint32_t big = 100000;
  for (int k = 0; k < 2; ++k)
    for (int b = 0; b < 4; ++b) huge[16 + 4 * k + b] = static_cast<uint8_t>(big >> (24 - 8 * b));
  try {
    decode_image(huge, ImageCodec::png, "huge.png");
    FAIL() << "a huge PNG decoded";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("huge.png"), std::string::npos) << e.what();
  }
  std::vector<uint8_t> junk(64, 'x');
  ImageCodec c{};
  EXPECT_FALSE(sniff_image(junk, c));
  EXPECT_THROW(decode_image(junk, ImageCodec::webp, "junk.webp"), Error);
}

// ---- the mark --------------------------------------------------------------------------------

TEST(ImageMark, InvisibleAndAlphaUntouched) {
  const ImageClaim c = claim_of(1);
  for (int ch : {1, 2, 3, 4}) {
    Image img = synth(256, 192, ch, 10 + static_cast<uint32_t>(ch));
    const Image before = img;
    const ImageEmbedReport r = embed_image(img, c);
    EXPECT_GE(r.psnr, 40.0) << ch;
    if (ch == 2 || ch == 4) {
      for (std::size_t i = static_cast<std::size_t>(ch - 1); i < img.pixels.size(); i += static_cast<std::size_t>(ch)) {
        ASSERT_EQ(img.pixels[i], before.pixels[i]);
      }
    }
    EXPECT_GT(z_of(img, c), 8.0) << ch;
    EXPECT_LT(z_of(before, c), 5.0) << ch;
  }
  Image tiny = synth(32, 32, 3, 9);
  EXPECT_THROW(embed_image(tiny, c), Error);
}

TEST(ImageMark, SurvivesJpegResizeCropAndTheirCombinations) {
  const ImageClaim c = claim_of(2);
  Image img = synth(512, 512, 3, 20);
  const ImageEmbedReport rep = embed_image(img, c);
  const double need = std::sqrt(2 * std::log(1e6));  // p <= 1e-6
  struct Case {
    const char* name;
    Image attacked;
  };
  const Case cases[] = {
      {"intact", img},
      {"jpeg50", as_jpeg(img, 50)},
      {"resize0.5", resize_half_and_back(img)},
      {"crop10", center_crop(img, 0.10)},
      {"bright+10", brightness_contrast(img, 0.1f, 1.0f)},
      {"bright-10", brightness_contrast(img, -0.1f, 1.0f)},
      {"contrast+10", brightness_contrast(img, 0.f, 1.1f)},
      {"contrast-10", brightness_contrast(img, 0.f, 0.9f)},
      {"resize+jpeg50", as_jpeg(resize_half_and_back(img), 50)},
      {"crop+jpeg50", as_jpeg(center_crop(img, 0.10), 50)},
      {"bright+jpeg50", as_jpeg(brightness_contrast(img, 0.1f, 1.1f), 50)},
  };
  for (const auto& k : cases) {
    const ImageOwnerScore s = score_image(k.attacked, {&c, 1}).owners[0];
    EXPECT_GE(s.z, need) << k.name;
    EXPECT_LE(s.p_value, 1e-6) << k.name;
  }
  // The sync cells find the embed's phase, and after the crop the phase moved by (25, 25) pixels.
  const ImageOwnerScore s0 = score_image(img, {&c, 1}).owners[0];
  EXPECT_EQ(s0.offset_x, (128 - rep.offset_x) % 128);
  EXPECT_EQ(s0.offset_y, (128 - rep.offset_y) % 128);
  const ImageOwnerScore s = score_image(center_crop(img, 0.10), {&c, 1}).owners[0];
  EXPECT_EQ(s.offset_x, (256 - 25 - rep.offset_x) % 128);
  EXPECT_EQ(s.offset_y, (256 - 25 - rep.offset_y) % 128);
}

// Under "not marked with this key" the payload signs are independent of the evidence (which
// the image and the sync cells fixed): z obeys Hoeffding. 10^4 wrong keys on marked and unmarked
// images, evidence computed once.
TEST(ImageMark, TenThousandWrongKeysStayUnderTheBound) {
  const ImageClaim owner = claim_of(3);
  Image marked = synth(512, 512, 3, 30);
  const Image clean = marked;
  embed_image(marked, owner);
  const int kKeys = 10000;
  for (const Image* img : {static_cast<const Image*>(&marked), &clean}) {
    const std::vector<float> ev = score_image(*img, {&owner, 1}).owners[0].evidence;
    ASSERT_EQ(ev.size(), static_cast<std::size_t>(detail::kImageCells / 2));
    int over[4] = {0, 0, 0, 0};
    double zmax = -1e9, mean = 0, var = 0;
    for (int k = 0; k < kKeys; ++k) {
      ImageClaim c;
      for (int i = 0; i < 32; ++i) c.key.bytes[static_cast<std::size_t>(i)] = static_cast<uint8_t>((k * 131 + i * 17 + (k >> 8) * i) & 255);
      c.key.bytes[0] = static_cast<uint8_t>(k & 255);
      c.key.bytes[1] = static_cast<uint8_t>(k >> 8);
      c.key.bytes[2] = 0xA5;
      c.payload = owner.payload;
      const auto spec = derive_carrier(c.key, "didmark/image/v1", 256);
      std::vector<float> signs(256);
      for (int b = 0; b < 256; ++b) signs[static_cast<std::size_t>(b)] = c.payload.bits[static_cast<std::size_t>(b)] ? -1.f : 1.f;
      double z = 0;
      std::size_t j = 0;
      for (int i = 0; i < detail::kImageCells; ++i) {
        if (detail::image_sync_cell(i)) continue;
        z += static_cast<double>(detail::image_cell_weight(spec, signs.data(), i) * ev[j++]);
      }
      zmax = std::max(zmax, z);
      mean += z;
      var += z * z;
      for (int t = 1; t <= 3; ++t) over[t] += z >= t;
    }
    mean /= kKeys;
    var = var / kKeys - mean * mean;
    EXPECT_NEAR(mean, 0.0, 0.05);
    EXPECT_NEAR(var, 1.0, 0.1);
    for (int t = 1; t <= 3; ++t) EXPECT_LE(over[t], kKeys * std::exp(-t * t / 2.0)) << t;
    EXPECT_LT(zmax, std::sqrt(2 * std::log(1e6))) << "a wrong key reached p <= 1e-6";
  }
  // The whole path (sync search included) for 64 wrong keys at once.
  std::vector<ImageClaim> wrong;
  for (int k = 0; k < 64; ++k) wrong.push_back(claim_of(static_cast<uint8_t>(100 + k)));
  for (const auto& s : score_image(marked, wrong).owners) EXPECT_GT(s.p_value, 1e-6);
}

TEST(ImageMark, DatasetTestOverManyImagesAfterJpeg) {
  const ImageClaim c = claim_of(4), other = claim_of(5);
  const ImageClaim both[] = {c, other};
  std::vector<ImageScores> scores;
  for (int i = 0; i < 20; ++i) {
    Image img = synth(192, 160, 3, 40 + static_cast<uint32_t>(i));
    embed_image(img, c, {1.5});  // a faint mark: single images are weak, the folder is not
    scores.push_back(score_image(as_jpeg(img, 50), both));
  }
  std::vector<const ImageScores*> all;
  for (const auto& s : scores) all.push_back(&s);
  const ImageDatasetScore d = combine_image_scores(all, 0, c);
  EXPECT_EQ(d.images, 20);
  EXPECT_LE(d.p_value, 1e-9);
  EXPECT_GT(combine_image_scores(all, 1, other).p_value, 1e-6);
  // Order does not matter; a subset still verifies, with less evidence.
  std::vector<const ImageScores*> shuffled(all.rbegin(), all.rend());
  EXPECT_NEAR(combine_image_scores(shuffled, 0, c).z, d.z, 1e-9);
  std::vector<const ImageScores*> half(all.begin(), all.begin() + 10);
  EXPECT_LT(combine_image_scores(half, 0, c).z, d.z);
  // Duplicates do not inflate the test.
  std::vector<const ImageScores*> dup(20, all[0]);
  EXPECT_NEAR(combine_image_scores(dup, 0, c).z, scores[0].owners[0].z, 1e-6);
}

TEST(ImageMark, FolderEmbedAndVerifyThroughInputs) {
  const fs::path dir = fs::temp_directory_path() / ("didmark_images_" + std::to_string(::getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir / "in" / "sub");
  write_image(dir / "in" / "a.png", synth(200, 150, 3, 50));
  write_image(dir / "in" / "sub" / "b.jpg", as_jpeg(synth(160, 200, 3, 51), 85));
  Image w = synth(150, 150, 4, 52, ImageCodec::webp);
  w.lossless = true;
  write_image(dir / "in" / "c.webp", w);
  const auto id = Identity::generate();
  const Owner owner = owner_of(id);
  EXPECT_EQ(classify_input(dir / "in").name, "images");
  EXPECT_EQ(classify_input(dir / "in" / "a.png").kind, InputKind::image);
  const InputEmbedReport r = embed_input(dir / "in", dir / "out", owner, {});
  ASSERT_EQ(r.images.size(), 3u);
  EXPECT_TRUE(fs::exists(dir / "out" / "sub" / "b.jpg"));
  const FileVerdicts fv = verify_input(dir / "out", {&owner, 1}, {});
  ASSERT_EQ(fv.verdicts.size(), 1u);
  EXPECT_TRUE(fv.verdicts[0].detected);
  ASSERT_EQ(fv.images.size(), 3u);
  for (const auto& item : fv.images) EXPECT_TRUE(item.verdicts.at(0).detected) << item.path;
  const FileVerdicts clean = verify_input(dir / "in", {&owner, 1}, {});
  EXPECT_FALSE(clean.verdicts[0].detected);
  const std::string json = file_verdicts_json(fv);
  EXPECT_NE(json.find("\"images\""), std::string::npos);
  fs::remove_all(dir);
}

// The tile-averaging estimation attack (docs/dataset.md): a thief with many of the owner's marked
// images averages their 128 x 128 tiles (the residual, aligned at the top-left pixel) to estimate
// the pattern. How much of each image's own pattern the estimate holds is what a subtraction can
// take away: with one phase for every image the average lines the patterns up; with the keyed
// per-image phase (the default) it does not. (On the real photographs of bench/images_bench.py,
// subtracting the estimate at 1 level RMS left 5 of 15 images detected with one phase, 15 of 15
// with keyed phases: docs/perf/images.md.)
std::vector<double> estimate_cosines(const ImageClaim& c, bool fixed_phase) {
  constexpr int kW = 384, kH = 256;
  std::vector<Image> imgs;
  std::vector<std::pair<int, int>> phase;
  for (uint32_t k = 0; k < 24; ++k) {
    Image img = synth(kW, kH, 3, 500 + k);
    ImageMarkOptions o;
    if (fixed_phase) o.offset_x = o.offset_y = 0;
    const ImageEmbedReport r = embed_image(img, c, o);
    phase.emplace_back(r.offset_x, r.offset_y);
    imgs.push_back(std::move(img));
  }
  std::vector<double> est(detail::kImageTileArea, 0.0);
  std::vector<float> y(static_cast<std::size_t>(kW) * kH), res(y.size()), r(y.size());
  for (const Image& img : imgs) {
    images::luma_into(img, y.data());
    images::residual_into(y.data(), kW, kH, res.data(), r.data());
    for (int yy = 0; yy < kH; ++yy)
      for (int x = 0; x < kW; ++x) est[static_cast<std::size_t>((yy % 128) * 128 + x % 128)] += r[static_cast<std::size_t>(yy) * kW + x];
  }
  // Each image's true pattern tile: its mark on a flat grey image with the same phase.
  std::vector<double> cosines;
  for (const auto& [ox, oy] : phase) {
    Image flat;
    flat.width = 128, flat.height = 128, flat.channels = 1;
    flat.pixels.assign(128 * 128, 128);
    ImageMarkOptions o;
    o.offset_x = ox, o.offset_y = oy;
    embed_image(flat, c, o);
    double dot = 0, ne = 0, np = 0;
    for (std::size_t q = 0; q < est.size(); ++q) {
      const double t = static_cast<double>(flat.pixels[q]) - 128.0;
      dot += t * est[q], ne += est[q] * est[q], np += t * t;
    }
    cosines.push_back(dot / std::sqrt(ne * np));
  }
  std::sort(cosines.begin(), cosines.end());
  return cosines;
}

TEST(ImageMark, PerImagePhaseDefeatsTileAveraging) {
  // Measured: cosine 0.88 for every image with one phase; 0.06-0.13 with keyed phases (each
  // image's own 1/24 share of the average, about what 1/sqrt(24) of 0.88 predicts).
  const ImageClaim c = claim_of(21);
  const std::vector<double> fixed = estimate_cosines(c, true), keyed = estimate_cosines(c, false);
  EXPECT_GT(fixed.front(), 0.3) << "one phase for all: the average of 24 images holds every image's pattern";
  EXPECT_LT(std::max(-keyed.front(), keyed.back()), 0.15) << "keyed phases: the average holds almost none of any";
}

TEST(ImageMark, PhaseIsKeyedPerImageAndReproducible) {
  const ImageClaim a = claim_of(22), b = claim_of(23);
  std::set<std::pair<int, int>> phases;
  for (uint32_t k = 0; k < 20; ++k) {
    Image x = synth(200, 160, 3, 700 + k), y = x, z = x;
    const ImageEmbedReport rx = embed_image(x, a), ry = embed_image(y, a), rz = embed_image(z, b);
    EXPECT_EQ(x.pixels, y.pixels) << "the same image and key mark the same way";
    EXPECT_EQ(std::pair(rx.offset_x, rx.offset_y), std::pair(ry.offset_x, ry.offset_y));
    phases.insert({rx.offset_x, rx.offset_y});
    EXPECT_TRUE(rx.offset_x % 4 == 0 && rx.offset_y % 4 == 0) << "cells stay on JPEG's 4-pixel half-block grid";
    phases.insert({rz.offset_x, rz.offset_y});
  }
  EXPECT_GE(phases.size(), 36u) << "40 (image, key) pairs, phases spread over 32 x 32";
  Image img = synth(200, 160, 3, 9);
  ImageMarkOptions o;
  o.offset_x = 5;
  o.offset_y = 127;
  const ImageEmbedReport r = embed_image(img, a, o);
  EXPECT_EQ(r.offset_x, 5);
  EXPECT_EQ(r.offset_y, 127);
  o.offset_x = 128;
  EXPECT_THROW(embed_image(img, a, o), Error);
}

// ---- the host planes and the CPU embed, against brute-force references ---------------------

// The mean over the (2r+1)^2 window clipped to the image, in double, straight from the definition.
std::vector<double> box_mean_ref(const std::vector<double>& v, int w, int h, int r) {
  std::vector<double> out(v.size());
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x) {
      double s = 0;
      int n = 0;
      for (int yy = std::max(0, y - r); yy <= std::min(h - 1, y + r); ++yy)
        for (int xx = std::max(0, x - r); xx <= std::min(w - 1, x + r); ++xx, ++n) s += v[static_cast<std::size_t>(yy * w + xx)];
      out[static_cast<std::size_t>(y * w + x)] = s / n;
    }
  return out;
}

// A luminance plane with flat patches, ramps, edges and noise (the mask's clamps and the
// residual's normalisation both get exercised).
std::vector<float> test_plane(int w, int h, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(0.f, 1.f);
  std::vector<float> y(static_cast<std::size_t>(w) * h);
  for (int r = 0; r < h; ++r)
    for (int x = 0; x < w; ++x) {
      const bool flat = ((x / 16) + (r / 16)) % 3 == 0;
      float v = flat ? 200.f : 60.f + 0.3f * static_cast<float>(x % 200) + 90.f * u(rng) * u(rng);
      if (!flat && (r / 40) % 2) v = 255.f * u(rng);  // bands of full-range noise
      y[static_cast<std::size_t>(r) * w + x] = std::round(v * 4) / 4;
    }
  return y;
}

TEST(ImagePlanes, MaskAndResidualMatchBruteForce) {
  // Tiny sides (windows wider than the image), odd sizes, and heights over the 32-row restart of
  // the running column sums.
  const std::pair<int, int> sizes[] = {{1, 1}, {3, 70}, {70, 3}, {13, 17}, {131, 97}, {40, 300}, {9, 2000}};
  uint32_t seed = 1;
  for (const auto& [w, h] : sizes) {
    const std::vector<float> y = test_plane(w, h, seed++);
    std::vector<float> mask(y.size()), res(y.size()), out(y.size());
    images::mask_into(y.data(), w, h, mask.data());
    images::residual_into(y.data(), w, h, res.data(), out.data());
    std::vector<double> yd(y.begin(), y.end()), y2(y.size());
    for (std::size_t i = 0; i < y.size(); ++i) y2[i] = yd[i] * yd[i];
    const auto m1 = box_mean_ref(yd, w, h, images::kMaskRadius), m2 = box_mean_ref(y2, w, h, images::kMaskRadius);
    const auto mean = box_mean_ref(yd, w, h, images::kMeanRadius);
    std::vector<double> r(y.size()), r2(y.size());
    for (std::size_t i = 0; i < y.size(); ++i) r[i] = yd[i] - mean[i], r2[i] = r[i] * r[i];
    const auto ms = box_mean_ref(r2, w, h, images::kNormRadius);
    double worst_mask = 0, worst_out = 0;
    int clamped_low = 0, clamped_high = 0;
    for (std::size_t i = 0; i < y.size(); ++i) {
      const double sd = std::sqrt(std::max(0.0, m2[i] - m1[i] * m1[i]));
      const double mk = std::clamp(sd / images::kMaskRef, double{images::kMaskMin}, double{images::kMaskMax});
      clamped_low += mk == images::kMaskMin;
      clamped_high += mk == images::kMaskMax;
      worst_mask = std::max(worst_mask, std::abs(mask[i] - mk));
      const double o = r[i] / (std::sqrt(ms[i]) + 1.0);
      worst_out = std::max(worst_out, std::abs(out[i] - o) / (1.0 + std::abs(o)));
    }
    EXPECT_LT(worst_mask, 2e-3) << w << " x " << h;
    EXPECT_LT(worst_out, 1e-4) << w << " x " << h;
    if (w * h > 1000) {
      EXPECT_TRUE(clamped_low > 0 && clamped_high > 0) << "the plane exercises both clamps";
    }
  }
}

TEST(ImageOps, CpuEmbedIsThePerPixelFormula) {
  detail::ThreadPool pool(2);
  auto ops = images::make_cpu_image_ops(pool);
  std::mt19937 rng(11);
  std::uniform_real_distribution<float> u(0.f, 1.f);
  std::vector<float> weights(detail::kImageCells);
  for (float& v : weights) v = u(rng) < 0.5f ? -1.0f : 1.0f;
  for (const auto& [w, h] : {std::pair{301, 77}, std::pair{128, 5}, std::pair{1, 9}})
    for (int ch = 1; ch <= 4; ++ch) {
      const int ox = (w * 7 + ch * 13) % 128, oy = (h * 5 + ch * 29) % 128;  // assorted phases
      std::vector<uint8_t> px(static_cast<std::size_t>(w) * h * ch);
      // Random samples, with 0 first and 255 last so both clamps are hit.
      for (std::size_t i = 0; i < px.size(); ++i)
        px[i] = i == 0 ? uint8_t{0} : (i + 1 == px.size() ? uint8_t{255} : static_cast<uint8_t>(rng() % 256));
      std::vector<float> mask(static_cast<std::size_t>(w) * h);
      for (auto& m : mask) m = 0.5f + 1.5f * u(rng);
      const float amp = 3.7f;
      std::vector<uint8_t> want = px;
      const int colour = ch >= 3 ? 3 : 1;
      for (int y = 0; y < h; ++y)
        for (int x = 0; x < w; ++x) {
          const float d = detail::image_delta(weights.data(), amp, mask[static_cast<std::size_t>(y) * w + x], x + ox, y + oy);
          for (int c = 0; c < colour; ++c) {
            uint8_t& v = want[(static_cast<std::size_t>(y) * w + x) * ch + c];
            v = detail::image_apply(v, d);
          }
        }
      images::EmbedJob job;
      job.pixels = px.data();
      job.stride = static_cast<int64_t>(w) * ch;
      job.width = w, job.height = h, job.channels = ch;
      job.mask = mask.data();
      job.cell_weights = weights.data();
      job.amplitude = amp;
      job.offset_x = ox;
      job.offset_y = oy;
      ops->embed({&job, 1});
      EXPECT_EQ(px, want) << w << " x " << h << " x " << ch;
    }
}

TEST(ImageCodec, LuminanceOnlyReadIsTheYPlane) {
  const ImageClaim c = claim_of(12);
  Image img = synth(517, 389, 3, 12);
  embed_image(img, c);
  const Image jpg = as_jpeg(img, 90);
  const std::vector<uint8_t> bytes = encode_image(jpg);
  const Image full = decode_image(bytes, ImageCodec::jpeg, "full.jpg");
  const Image lum = decode_image(bytes, ImageCodec::jpeg, "lum.jpg", ImageReadOptions{.luminance_only = true});
  ASSERT_EQ(lum.channels, 1);
  ASSERT_TRUE(lum.luminance_only);
  ASSERT_EQ(lum.width, full.width);
  ASSERT_EQ(lum.height, full.height);
  double sum = 0, worst = 0;
  for (std::size_t i = 0; i < lum.pixels.size(); ++i) {
    const uint8_t* p = &full.pixels[3 * i];
    const double d = std::abs(lum.pixels[i] - (0.299 * p[0] + 0.587 * p[1] + 0.114 * p[2]));
    sum += d;
    worst = std::max(worst, d);
  }
  EXPECT_LT(sum / static_cast<double>(lum.pixels.size()), 0.5) << "Y of the file = luma of its RGB decode, up to rounding";
  EXPECT_LE(worst, 3.0);
  EXPECT_THROW(encode_image(lum), Error) << "a luminance-only image is never written back";
  const double z_full = score_image(full, {&c, 1}).owners[0].z, z_lum = score_image(lum, {&c, 1}).owners[0].z;
  EXPECT_GT(z_lum, 8);
  EXPECT_NEAR(z_lum, z_full, 0.05 * z_full);
  // A grey JPEG is read the same either way.
  Image grey = synth(200, 150, 1, 13);
  const auto gb = encode_image(as_jpeg(grey, 80));
  const Image g1 = decode_image(gb, ImageCodec::jpeg, "g.jpg"), g2 = decode_image(gb, ImageCodec::jpeg, "g.jpg", {.luminance_only = true});
  EXPECT_EQ(g1.pixels, g2.pixels);
  EXPECT_FALSE(g2.luminance_only);
}

// ---- the waist ------------------------------------------------------------------------------

TEST(ImageOps, ThreadCountChangesNothing) {
  Image a = synth(300, 260, 3, 60), b = a;
  const ImageClaim c = claim_of(6);
  auto one = make_cpu_backend(1), two = make_cpu_backend(3);
  embed_image(a, c, {}, *one);
  embed_image(b, c, {}, *two);
  EXPECT_EQ(a.pixels, b.pixels);
  const auto sa = score_image(a, {&c, 1}, *one), sb = score_image(a, {&c, 1}, *two);
  EXPECT_EQ(sa.owners[0].z, sb.owners[0].z);
}

TEST(ImageOps, CudaMatchesCpu) {
  DIDMARK_SKIP_WITHOUT_GPU();
  auto gpu = test::gpu_backend();
  auto cpu = make_cpu_backend(2);
  const ImageClaim c = claim_of(7);
  for (int ch : {1, 3, 4}) {
    Image a = synth(333, 211, ch, 70), b = a;
    embed_image(a, c, {}, *cpu);
    embed_image(b, c, {}, *gpu);
    EXPECT_EQ(a.pixels, b.pixels) << "embed is bit-identical";
    const auto sa = score_image(a, {&c, 1}, *cpu).owners[0];
    const auto sb = score_image(a, {&c, 1}, *gpu).owners[0];
    EXPECT_EQ(sa.offset_x, sb.offset_x);
    EXPECT_EQ(sa.offset_y, sb.offset_y);
    EXPECT_NEAR(sa.z, sb.z, 1e-3 * std::max(1.0, std::abs(sa.z)));
  }
}

}  // namespace
}  // namespace didmark
