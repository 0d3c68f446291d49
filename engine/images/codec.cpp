// Image files through the Debian libraries: libjpeg-turbo, libpng, libwebp (+ mux/demux for
// metadata). No codec is written here; this file only moves pixels and metadata in and out.
// libjpeg and libpng report errors by longjmp: each setjmp sits in a function that holds no
// C++ object with a destructor, and the message is turned into a didmark::Error afterwards.
#include <algorithm>
#include <cmath>
#include <csetjmp>
#include <cstdio>
#include <cstring>
#include <string>

#include <jpeglib.h>
#include <png.h>
#include <webp/decode.h>
#include <webp/demux.h>
#include <webp/encode.h>
#include <webp/mux.h>

#include "common/atomic_file.hpp"
#include "common/regular_file.hpp"
#include "didmark/error.hpp"
#include "didmark/images.hpp"

namespace didmark {
namespace {

void check_dims(std::string_view name, int64_t w, int64_t h) {
  DIDMARK_EXPECTS(w > 0 && h > 0, corrupt_input, "'", name, "': image has zero width or height");
  DIDMARK_EXPECTS(w <= kMaxImageSide && h <= kMaxImageSide && w * h <= kMaxImagePixels, invalid_argument, "'", name,
                  "': image of ", w, " x ", h, " pixels is larger than the limit (", kMaxImageSide, " per side, ",
                  kMaxImagePixels, " pixels)");
}

// ---- JPEG -----------------------------------------------------------------------------

struct JpegErr {
  jpeg_error_mgr mgr;
  std::jmp_buf jump;
  char message[JMSG_LENGTH_MAX];
};

void jpeg_error_exit(j_common_ptr cinfo) {
  auto* e = reinterpret_cast<JpegErr*>(cinfo->err);
  (*cinfo->err->format_message)(cinfo, e->message);
  std::longjmp(e->jump, 1);
}
// Warnings (msg_level -1) are counted, not printed: a decode that warned is refused.
void jpeg_quiet(j_common_ptr cinfo, int level) {
  if (level < 0) ++cinfo->err->num_warnings;
}

constexpr int kStdLuma[64] = {16, 11, 10, 16, 24,  40,  51,  61,  12, 12, 14, 19, 26,  58,  60,  55,
                              14, 13, 16, 24, 40,  57,  69,  56,  14, 17, 22, 29, 51,  87,  80,  62,
                              18, 22, 37, 56, 68,  109, 103, 77,  24, 35, 55, 64, 81,  104, 113, 92,
                              49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99};

int estimate_quality(const std::vector<uint16_t>& t) {
  double s = 0;
  for (int i = 0; i < 64; ++i) s += 100.0 * t[static_cast<std::size_t>(i)] / kStdLuma[i];
  s /= 64;
  const double q = s <= 100 ? (200 - s) / 2 : 5000 / s;
  return static_cast<int>(std::lround(std::clamp(q, 1.0, 100.0)));
}

// Returns false with e.message set on a libjpeg error. Pixels are read only when header_ok.
bool jpeg_decode_raw(const uint8_t* data, std::size_t size, bool luminance, Image* img, JpegErr* e, int* stage) {
  jpeg_decompress_struct cinfo;
  cinfo.err = jpeg_std_error(&e->mgr);
  e->mgr.error_exit = jpeg_error_exit;
  e->mgr.emit_message = jpeg_quiet;
  if (setjmp(e->jump)) {
    jpeg_destroy_decompress(&cinfo);
    return false;
  }
  jpeg_create_decompress(&cinfo);
  jpeg_mem_src(&cinfo, data, static_cast<unsigned long>(size));
  for (int m = 0; m < 16; ++m) jpeg_save_markers(&cinfo, JPEG_APP0 + m, 0xFFFF);
  jpeg_save_markers(&cinfo, JPEG_COM, 0xFFFF);
  jpeg_read_header(&cinfo, TRUE);
  *stage = 1;
  img->width = static_cast<int>(cinfo.image_width);
  img->height = static_cast<int>(cinfo.image_height);
  if (cinfo.num_components != 1 && cinfo.num_components != 3) {
    *stage = 2;  // unsupported colour space
    jpeg_destroy_decompress(&cinfo);
    return false;
  }
  if (static_cast<int64_t>(img->width) * img->height > kMaxImagePixels || img->width > kMaxImageSide ||
      img->height > kMaxImageSide) {
    *stage = 3;
    jpeg_destroy_decompress(&cinfo);
    return false;
  }
  // Luminance only (for verification): libjpeg hands over the Y plane as decoded and skips the
  // chroma's inverse DCT, upsampling and colour conversion.
  img->channels = luminance ? 1 : cinfo.num_components;
  img->luminance_only = luminance && cinfo.num_components == 3;
  cinfo.out_color_space = img->channels == 3 ? JCS_RGB : JCS_GRAYSCALE;
  img->progressive = jpeg_has_multiple_scans(&cinfo) != 0;
  img->jfif = cinfo.saw_JFIF_marker != 0;
  img->density_unit = cinfo.density_unit;
  img->x_density = cinfo.X_density;
  img->y_density = cinfo.Y_density;
  for (int t = 0; t < NUM_QUANT_TBLS; ++t) {
    if (!cinfo.quant_tbl_ptrs[t]) break;
    img->quant_tables.emplace_back(cinfo.quant_tbl_ptrs[t]->quantval, cinfo.quant_tbl_ptrs[t]->quantval + 64);
  }
  for (int c = 0; c < cinfo.num_components; ++c) {
    img->component_table.push_back(cinfo.comp_info[c].quant_tbl_no);
    img->h_samp.push_back(cinfo.comp_info[c].h_samp_factor);
    img->v_samp.push_back(cinfo.comp_info[c].v_samp_factor);
  }
  for (jpeg_saved_marker_ptr m = cinfo.marker_list; m; m = m->next) {
    const std::size_t n = m->data_length;
    const auto* d = m->data;
    if (m->marker == JPEG_APP0 && n >= 5 && std::memcmp(d, "JFIF\0", 5) == 0) continue;
    if (m->marker == JPEG_APP0 + 14 && n >= 5 && std::memcmp(d, "Adobe", 5) == 0) continue;
    if (m->marker == JPEG_APP0 + 2 && n >= 14 && std::memcmp(d, "ICC_PROFILE\0", 12) == 0) {
      img->icc.insert(img->icc.end(), d + 14, d + n);  // chunks arrive in order in practice
      continue;
    }
    if (m->marker == JPEG_APP0 + 1 && n >= 6 && std::memcmp(d, "Exif\0\0", 6) == 0) {
      img->exif.assign(d + 6, d + n);
      continue;
    }
    img->markers.emplace_back(m->marker, std::vector<uint8_t>(d, d + n));
  }
  jpeg_start_decompress(&cinfo);
  *stage = 4;
  const std::size_t row = static_cast<std::size_t>(img->width) * static_cast<std::size_t>(img->channels);
  img->pixels.resize(row * static_cast<std::size_t>(img->height));
  while (cinfo.output_scanline < cinfo.output_height) {
    JSAMPROW rows[16];  // libjpeg fills up to rec_outbuf_height (<= 4) rows per call
    const JDIMENSION n = std::min<JDIMENSION>(16, cinfo.output_height - cinfo.output_scanline);
    for (JDIMENSION k = 0; k < n; ++k) rows[k] = img->pixels.data() + row * (cinfo.output_scanline + k);
    jpeg_read_scanlines(&cinfo, rows, n);
  }
  // A truncated file decodes with a warning ("Premature end of JPEG file"): refuse it.
  if (e->mgr.num_warnings > 0) {
    (*cinfo.err->format_message)(reinterpret_cast<j_common_ptr>(&cinfo), e->message);
    *stage = 5;
    jpeg_destroy_decompress(&cinfo);
    return false;
  }
  jpeg_finish_decompress(&cinfo);
  jpeg_destroy_decompress(&cinfo);
  return true;
}

Image decode_jpeg(std::span<const uint8_t> bytes, std::string_view name, bool luminance) {
  Image img;
  img.codec = ImageCodec::jpeg;
  JpegErr e{};
  int stage = 0;
  if (!jpeg_decode_raw(bytes.data(), bytes.size(), luminance, &img, &e, &stage)) {
    if (stage == 2) DIDMARK_THROW(Errc::unsupported, "'", name, "': JPEG with CMYK or other non-RGB, non-grey colour is not supported");
    if (stage == 3) check_dims(name, img.width, img.height);
    DIDMARK_THROW(Errc::corrupt_input, "'", name, "': malformed JPEG (", e.message, ")");
  }
  check_dims(name, img.width, img.height);
  if (!img.quant_tables.empty()) img.quality = estimate_quality(img.quant_tables[0]);
  return img;
}

struct JpegOut {
  unsigned char* buf = nullptr;
  unsigned long size = 0;
};

bool jpeg_encode_raw(const Image* img, JpegOut* out, JpegErr* e) {
  jpeg_compress_struct cinfo;
  cinfo.err = jpeg_std_error(&e->mgr);
  e->mgr.error_exit = jpeg_error_exit;
  e->mgr.emit_message = jpeg_quiet;
  if (setjmp(e->jump)) {
    jpeg_destroy_compress(&cinfo);
    return false;
  }
  jpeg_create_compress(&cinfo);
  jpeg_mem_dest(&cinfo, &out->buf, &out->size);
  cinfo.image_width = static_cast<JDIMENSION>(img->width);
  cinfo.image_height = static_cast<JDIMENSION>(img->height);
  cinfo.input_components = img->channels;
  cinfo.in_color_space = img->channels == 3 ? JCS_RGB : JCS_GRAYSCALE;
  jpeg_set_defaults(&cinfo);
  if (!img->quant_tables.empty()) {
    for (std::size_t t = 0; t < img->quant_tables.size() && t < NUM_QUANT_TBLS; ++t) {
      unsigned int q[64];
      for (int i = 0; i < 64; ++i) q[i] = img->quant_tables[t][static_cast<std::size_t>(i)];
      jpeg_add_quant_table(&cinfo, static_cast<int>(t), q, 100, FALSE);
    }
    for (int c = 0; c < cinfo.num_components && c < static_cast<int>(img->component_table.size()); ++c) {
      cinfo.comp_info[c].quant_tbl_no = img->component_table[static_cast<std::size_t>(c)];
      cinfo.comp_info[c].h_samp_factor = img->h_samp[static_cast<std::size_t>(c)];
      cinfo.comp_info[c].v_samp_factor = img->v_samp[static_cast<std::size_t>(c)];
    }
  } else {
    jpeg_set_quality(&cinfo, img->quality > 0 ? img->quality : 90, TRUE);
  }
  // Standard Huffman tables for a baseline file, as Pillow, OpenCV and libjpeg's own cjpeg
  // write by default: optimised tables save 1-2% of the file (1.5% on the 1080p bench image)
  // but cost a second pass over every coefficient (7 of the 16 ms libjpeg-turbo spends on a
  // 1080p image). Progressive files get optimised tables from libjpeg either way.
  cinfo.optimize_coding = FALSE;
  cinfo.write_JFIF_header = img->jfif ? TRUE : FALSE;
  cinfo.density_unit = static_cast<UINT8>(img->density_unit);
  cinfo.X_density = static_cast<UINT16>(img->x_density);
  cinfo.Y_density = static_cast<UINT16>(img->y_density);
  if (img->progressive) jpeg_simple_progression(&cinfo);
  jpeg_start_compress(&cinfo, TRUE);
  if (!img->exif.empty()) {
    std::vector<uint8_t> d(6 + img->exif.size());
    std::memcpy(d.data(), "Exif\0\0", 6);
    std::memcpy(d.data() + 6, img->exif.data(), img->exif.size());
    jpeg_write_marker(&cinfo, JPEG_APP0 + 1, d.data(), static_cast<unsigned>(d.size()));
  }
  if (!img->icc.empty()) jpeg_write_icc_profile(&cinfo, img->icc.data(), static_cast<unsigned>(img->icc.size()));
  for (const auto& [code, data] : img->markers)
    jpeg_write_marker(&cinfo, code, data.data(), static_cast<unsigned>(data.size()));
  const std::size_t row = static_cast<std::size_t>(img->width) * static_cast<std::size_t>(img->channels);
  while (cinfo.next_scanline < cinfo.image_height) {
    JSAMPROW r = const_cast<JSAMPROW>(img->pixels.data() + row * cinfo.next_scanline);
    jpeg_write_scanlines(&cinfo, &r, 1);
  }
  jpeg_finish_compress(&cinfo);
  jpeg_destroy_compress(&cinfo);
  return true;
}

std::vector<uint8_t> encode_jpeg(const Image& img) {
  JpegOut out;
  JpegErr e{};
  const bool ok = jpeg_encode_raw(&img, &out, &e);
  std::vector<uint8_t> v;
  if (ok) v.assign(out.buf, out.buf + out.size);
  std::free(out.buf);
  DIDMARK_EXPECTS(ok, internal, "JPEG encoder: ", e.message);
  return v;
}

// ---- PNG ------------------------------------------------------------------------------

struct PngErr {
  char message[256] = {};
};
void png_error_fn(png_structp png, png_const_charp msg) {
  auto* e = static_cast<PngErr*>(png_get_error_ptr(png));
  std::snprintf(e->message, sizeof e->message, "%s", msg);
  png_longjmp(png, 1);
}
void png_warning_fn(png_structp, png_const_charp) {}

struct PngSrc {
  const uint8_t* data;
  std::size_t size, pos;
};
void png_read_fn(png_structp png, png_bytep out, png_size_t n) {
  auto* s = static_cast<PngSrc*>(png_get_io_ptr(png));
  if (n > s->size - s->pos) png_error(png, "truncated file");
  std::memcpy(out, s->data + s->pos, n);
  s->pos += n;
}

// Row pointers and text records for libpng, owned by the caller: a local changed between
// setjmp and longjmp has an indeterminate value afterwards (C 7.13.2.1), so a pointer kept in
// the setjmp frame could not be freed reliably on the error path (the image fuzzer found
// that leak within 26 inputs).
struct PngScratch {
  std::vector<png_bytep> rows;
  std::vector<png_text> texts;
};

// stage: 0 error before the header, 1 unsupported type, 2 too large, 3 error after the header.
bool png_decode_raw(const uint8_t* data, std::size_t size, Image* img, PngErr* e, int* stage, PngScratch* scratch) {
  png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, e, png_error_fn, png_warning_fn);
  if (!png) return false;
  png_infop info = png_create_info_struct(png);
  PngSrc src{data, size, 0};
  if (setjmp(png_jmpbuf(png))) {
    png_destroy_read_struct(&png, &info, nullptr);
    return false;
  }
  png_set_read_fn(png, &src, png_read_fn);
  png_set_user_limits(png, kMaxImageSide, kMaxImageSide);
  png_set_chunk_malloc_max(png, 64u << 20);
  png_read_info(png, info);
  png_uint_32 w = 0, h = 0;
  int depth = 0, type = 0, interlace = 0;
  png_get_IHDR(png, info, &w, &h, &depth, &type, &interlace, nullptr, nullptr);
  img->width = static_cast<int>(w);
  img->height = static_cast<int>(h);
  if (depth != 8 || type == PNG_COLOR_TYPE_PALETTE) {
    *stage = 1;
    std::snprintf(e->message, sizeof e->message, "%s",
                  type == PNG_COLOR_TYPE_PALETTE ? "palette (indexed) PNG" : "PNG with a bit depth other than 8");
    png_destroy_read_struct(&png, &info, nullptr);
    return false;
  }
  if (static_cast<int64_t>(w) * h > kMaxImagePixels) {
    *stage = 2;
    png_destroy_read_struct(&png, &info, nullptr);
    return false;
  }
  *stage = 3;
  img->channels = type == PNG_COLOR_TYPE_GRAY ? 1 : type == PNG_COLOR_TYPE_GRAY_ALPHA ? 2 : type == PNG_COLOR_TYPE_RGB ? 3 : 4;
  img->progressive = interlace != PNG_INTERLACE_NONE;
  png_set_interlace_handling(png);
  png_read_update_info(png, info);
  const std::size_t row = static_cast<std::size_t>(w) * static_cast<std::size_t>(img->channels);
  img->pixels.resize(row * h);
  scratch->rows.resize(h);
  for (png_uint_32 y = 0; y < h; ++y) scratch->rows[y] = img->pixels.data() + row * y;
  png_read_image(png, scratch->rows.data());
  png_read_end(png, info);
  // Metadata (read after the image so that chunks after IDAT count too).
  png_charp icc_name = nullptr;
  int comp = 0;
  png_bytep icc = nullptr;
  png_uint_32 icc_len = 0;
  if (png_get_iCCP(png, info, &icc_name, &comp, &icc, &icc_len) == PNG_INFO_iCCP)
    img->icc.assign(icc, icc + icc_len);
  png_uint_32 exif_len = 0;
  png_bytep exif = nullptr;
  if (png_get_eXIf_1(png, info, &exif_len, &exif) == PNG_INFO_eXIf) img->exif.assign(exif, exif + exif_len);
  png_textp text = nullptr;
  int ntext = 0;
  png_get_text(png, info, &text, &ntext);
  for (int i = 0; i < ntext; ++i)
    img->text.emplace_back(text[i].key, std::string(text[i].text, text[i].text_length ? text[i].text_length : text[i].itxt_length));
  double gamma = 0;
  if (png_get_gAMA(png, info, &gamma) == PNG_INFO_gAMA) {
    const auto g = static_cast<uint32_t>(std::lround(gamma * 100000));
    img->chunks.emplace_back("gAMA", std::vector<uint8_t>{uint8_t(g >> 24), uint8_t(g >> 16), uint8_t(g >> 8), uint8_t(g)});
  }
  int intent = 0;
  if (png_get_sRGB(png, info, &intent) == PNG_INFO_sRGB) img->chunks.emplace_back("sRGB", std::vector<uint8_t>{uint8_t(intent)});
  png_uint_32 rx = 0, ry = 0;
  int unit = 0;
  if (png_get_pHYs(png, info, &rx, &ry, &unit) == PNG_INFO_pHYs)
    img->chunks.emplace_back("pHYs", std::vector<uint8_t>{uint8_t(rx >> 24), uint8_t(rx >> 16), uint8_t(rx >> 8), uint8_t(rx), uint8_t(ry >> 24),
                                    uint8_t(ry >> 16), uint8_t(ry >> 8), uint8_t(ry), uint8_t(unit)});
  png_destroy_read_struct(&png, &info, nullptr);
  return true;
}

Image decode_png(std::span<const uint8_t> bytes, std::string_view name) {
  Image img;
  img.codec = ImageCodec::png;
  PngErr e;
  int stage = 0;
  PngScratch scratch;
  if (!png_decode_raw(bytes.data(), bytes.size(), &img, &e, &stage, &scratch)) {
    if (stage == 1) DIDMARK_THROW(Errc::unsupported, "'", name, "': ", e.message, " is not supported (8-bit grey, grey + alpha, RGB or RGBA only)");
    if (stage == 2) check_dims(name, img.width, img.height);
    if (std::strstr(e.message, "exceeds user limits") || std::strstr(e.message, "too large"))
      DIDMARK_THROW(Errc::invalid_argument, "'", name, "': image dimensions are larger than the limit (", kMaxImageSide,
                    " per side, ", kMaxImagePixels, " pixels): ", e.message);
    DIDMARK_THROW(Errc::corrupt_input, "'", name, "': malformed PNG (", e.message, ")");
  }
  check_dims(name, img.width, img.height);
  return img;
}

void png_write_fn(png_structp png, png_bytep data, png_size_t n) {
  auto* v = static_cast<std::vector<uint8_t>*>(png_get_io_ptr(png));
  v->insert(v->end(), data, data + n);
}
void png_flush_fn(png_structp) {}

uint32_t be32(const std::vector<uint8_t>& d, std::size_t o) {
  return (uint32_t{d[o]} << 24) | (uint32_t{d[o + 1]} << 16) | (uint32_t{d[o + 2]} << 8) | d[o + 3];
}

bool png_encode_raw(const Image* img, std::vector<uint8_t>* out, PngErr* e, PngScratch* scratch) {
  png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, e, png_error_fn, png_warning_fn);
  if (!png) return false;
  png_infop info = png_create_info_struct(png);
  if (setjmp(png_jmpbuf(png))) {
    png_destroy_write_struct(&png, &info);
    return false;
  }
  png_set_write_fn(png, out, png_write_fn, png_flush_fn);
  png_set_compression_level(png, 6);
  const int type = img->channels == 1 ? PNG_COLOR_TYPE_GRAY : img->channels == 2 ? PNG_COLOR_TYPE_GRAY_ALPHA
                   : img->channels == 3 ? PNG_COLOR_TYPE_RGB : PNG_COLOR_TYPE_RGB_ALPHA;
  png_set_IHDR(png, info, static_cast<png_uint_32>(img->width), static_cast<png_uint_32>(img->height), 8, type,
               img->progressive ? PNG_INTERLACE_ADAM7 : PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT,
               PNG_FILTER_TYPE_DEFAULT);
  if (!img->icc.empty())
    png_set_iCCP(png, info, "ICC profile", PNG_COMPRESSION_TYPE_BASE, img->icc.data(), static_cast<png_uint_32>(img->icc.size()));
  if (!img->exif.empty())
    png_set_eXIf_1(png, info, static_cast<png_uint_32>(img->exif.size()), const_cast<png_bytep>(img->exif.data()));
  for (const auto& [kind, d] : img->chunks) {
    if (kind == "gAMA" && d.size() == 4) png_set_gAMA_fixed(png, info, static_cast<png_fixed_point>(be32(d, 0)));
    if (kind == "sRGB" && d.size() == 1) png_set_sRGB(png, info, d[0]);
    if (kind == "pHYs" && d.size() == 9) png_set_pHYs(png, info, be32(d, 0), be32(d, 4), d[8]);
  }
  if (!img->text.empty()) {
    std::vector<png_text>& texts = scratch->texts;
    texts.resize(img->text.size());
    for (std::size_t i = 0; i < img->text.size(); ++i) {
      png_text& t = texts[i];
      std::memset(&t, 0, sizeof t);
      t.compression = PNG_TEXT_COMPRESSION_NONE;
      t.key = const_cast<png_charp>(img->text[i].first.c_str());
      t.text = const_cast<png_charp>(img->text[i].second.c_str());
      t.text_length = img->text[i].second.size();
    }
    png_set_text(png, info, texts.data(), static_cast<int>(texts.size()));
  }
  png_write_info(png, info);
  const std::size_t row = static_cast<std::size_t>(img->width) * static_cast<std::size_t>(img->channels);
  std::vector<png_bytep>& rows = scratch->rows;
  rows.resize(static_cast<std::size_t>(img->height));
  for (std::size_t y = 0; y < rows.size(); ++y) rows[y] = const_cast<png_bytep>(img->pixels.data() + row * y);
  png_write_image(png, rows.data());
  png_write_end(png, info);
  png_destroy_write_struct(&png, &info);
  return true;
}

std::vector<uint8_t> encode_png(const Image& img) {
  std::vector<uint8_t> out;
  PngErr e;
  PngScratch scratch;
  DIDMARK_EXPECTS(png_encode_raw(&img, &out, &e, &scratch), internal, "PNG encoder: ", e.message);
  return out;
}

// ---- WebP -----------------------------------------------------------------------------

std::vector<uint8_t> webp_chunk(const WebPDemuxer* d, const char* id) {
  WebPChunkIterator it;
  std::vector<uint8_t> v;
  if (WebPDemuxGetChunk(d, id, 1, &it)) {
    v.assign(it.chunk.bytes, it.chunk.bytes + it.chunk.size);
    WebPDemuxReleaseChunkIterator(&it);
  }
  return v;
}

Image decode_webp(std::span<const uint8_t> bytes, std::string_view name) {
  Image img;
  img.codec = ImageCodec::webp;
  WebPBitstreamFeatures f;
  DIDMARK_EXPECTS(WebPGetFeatures(bytes.data(), bytes.size(), &f) == VP8_STATUS_OK, corrupt_input, "'", name,
                  "': malformed WebP (bad header)");
  DIDMARK_EXPECTS(!f.has_animation, unsupported, "'", name, "': animated WebP is not supported");
  check_dims(name, f.width, f.height);
  img.width = f.width;
  img.height = f.height;
  img.channels = f.has_alpha ? 4 : 3;
  img.lossless = f.format == 2;
  img.quality = 90;
  img.pixels.resize(static_cast<std::size_t>(img.width) * static_cast<std::size_t>(img.height) *
                    static_cast<std::size_t>(img.channels));
  const int stride = img.width * img.channels;
  const uint8_t* ok = f.has_alpha ? WebPDecodeRGBAInto(bytes.data(), bytes.size(), img.pixels.data(), img.pixels.size(), stride)
                                  : WebPDecodeRGBInto(bytes.data(), bytes.size(), img.pixels.data(), img.pixels.size(), stride);
  DIDMARK_EXPECTS(ok != nullptr, corrupt_input, "'", name, "': malformed or truncated WebP (the image data does not decode)");
  WebPData data{bytes.data(), bytes.size()};
  if (WebPDemuxer* d = WebPDemux(&data)) {
    img.icc = webp_chunk(d, "ICCP");
    img.exif = webp_chunk(d, "EXIF");
    img.xmp = webp_chunk(d, "XMP ");
    WebPDemuxDelete(d);
  }
  return img;
}

std::vector<uint8_t> encode_webp(const Image& img) {
  Image rgb;  // WebP has no grey: grey (+ alpha) is written as RGB(A)
  const Image* src = &img;
  if (img.channels <= 2) {
    rgb.width = img.width;
    rgb.height = img.height;
    rgb.channels = img.channels + 2;
    const std::size_t n = static_cast<std::size_t>(img.width) * static_cast<std::size_t>(img.height);
    rgb.pixels.resize(n * static_cast<std::size_t>(rgb.channels));
    for (std::size_t i = 0; i < n; ++i) {
      const uint8_t g = img.pixels[i * static_cast<std::size_t>(img.channels)];
      for (int c = 0; c < 3; ++c) rgb.pixels[i * static_cast<std::size_t>(rgb.channels) + static_cast<std::size_t>(c)] = g;
      if (img.channels == 2) rgb.pixels[i * 4 + 3] = img.pixels[i * 2 + 1];
    }
    src = &rgb;
  }
  WebPConfig config;
  WebPPicture pic;
  WebPMemoryWriter writer;
  DIDMARK_EXPECTS(WebPConfigInit(&config) && WebPPictureInit(&pic), internal, "WebP: library version mismatch");
  config.lossless = img.lossless ? 1 : 0;
  config.quality = static_cast<float>(img.lossless ? 75 : (img.quality > 0 ? img.quality : 90));
  config.exact = 1;  // keep the colour under transparent pixels (alpha untouched means all of it)
  pic.use_argb = img.lossless ? 1 : 0;
  pic.width = src->width;
  pic.height = src->height;
  const int stride = src->width * src->channels;
  const int imported = src->channels == 4 ? WebPPictureImportRGBA(&pic, src->pixels.data(), stride)
                                          : WebPPictureImportRGB(&pic, src->pixels.data(), stride);
  WebPMemoryWriterInit(&writer);
  pic.writer = WebPMemoryWrite;
  pic.custom_ptr = &writer;
  const int ok_enc = imported && WebPEncode(&config, &pic);
  std::vector<uint8_t> v;
  if (ok_enc) v.assign(writer.mem, writer.mem + writer.size);
  const int err = pic.error_code;
  WebPPictureFree(&pic);
  WebPMemoryWriterClear(&writer);
  DIDMARK_EXPECTS(ok_enc, internal, "WebP encoder failed (", src->width, " x ", src->height, ", error ", err, ")");
  if (img.icc.empty() && img.exif.empty() && img.xmp.empty()) return v;
  WebPMux* mux = WebPMuxNew();
  WebPData image{v.data(), v.size()};
  bool ok = WebPMuxSetImage(mux, &image, 1) == WEBP_MUX_OK;
  const auto set = [&](const char* id, const std::vector<uint8_t>& d) {
    if (d.empty()) return;
    WebPData c{d.data(), d.size()};
    ok = ok && WebPMuxSetChunk(mux, id, &c, 1) == WEBP_MUX_OK;
  };
  set("ICCP", img.icc);
  set("EXIF", img.exif);
  set("XMP ", img.xmp);
  WebPData assembled{nullptr, 0};
  ok = ok && WebPMuxAssemble(mux, &assembled) == WEBP_MUX_OK;
  if (ok) v.assign(assembled.bytes, assembled.bytes + assembled.size);
  WebPDataClear(&assembled);
  WebPMuxDelete(mux);
  DIDMARK_EXPECTS(ok, internal, "WebP muxer failed to add the metadata");
  return v;
}

}  // namespace

std::string_view image_codec_name(ImageCodec c) noexcept {
  switch (c) {
    case ImageCodec::png: return "png";
    case ImageCodec::jpeg: return "jpeg";
    case ImageCodec::webp: return "webp";
  }
  return "?";
}

bool sniff_image(std::span<const uint8_t> h, ImageCodec& codec) noexcept {
  if (h.size() >= 8 && std::memcmp(h.data(), "\x89PNG\r\n\x1a\n", 8) == 0) return codec = ImageCodec::png, true;
  if (h.size() >= 3 && h[0] == 0xFF && h[1] == 0xD8 && h[2] == 0xFF) return codec = ImageCodec::jpeg, true;
  if (h.size() >= 12 && std::memcmp(h.data(), "RIFF", 4) == 0 && std::memcmp(h.data() + 8, "WEBP", 4) == 0)
    return codec = ImageCodec::webp, true;
  return false;
}

std::string Image::subsampling() const {
  if (codec != ImageCodec::jpeg || channels != 3 || h_samp.size() != 3) return {};
  const int h = h_samp[0] / std::max(1, h_samp[1]), v = v_samp[0] / std::max(1, v_samp[1]);
  if (h == 1 && v == 1) return "4:4:4";
  if (h == 2 && v == 1) return "4:2:2";
  if (h == 2 && v == 2) return "4:2:0";
  if (h == 1 && v == 2) return "4:4:0";
  if (h == 4 && v == 1) return "4:1:1";
  return std::to_string(h_samp[0]) + "x" + std::to_string(v_samp[0]);
}

Image decode_image(std::span<const uint8_t> bytes, ImageCodec codec, std::string_view name,
                   const ImageReadOptions& options) {
  switch (codec) {
    case ImageCodec::png: return decode_png(bytes, name);
    case ImageCodec::jpeg: return decode_jpeg(bytes, name, options.luminance_only);
    case ImageCodec::webp: return decode_webp(bytes, name);
  }
  DIDMARK_THROW(Errc::internal, "unknown image codec");
}

Image read_image(const std::filesystem::path& path, const ImageReadOptions& options) {
  const std::string bytes = detail::read_regular_file(path, "an image", std::size_t{1} << 31);
  const std::span<const uint8_t> b(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size());
  ImageCodec codec{};
  DIDMARK_EXPECTS(sniff_image(b, codec), corrupt_input, "'", path.string(),
                  "' is not a PNG, JPEG or WebP image (unknown signature)");
  return decode_image(b, codec, path.string(), options);
}

std::vector<uint8_t> encode_image(const Image& image) {
  DIDMARK_EXPECTS(!image.luminance_only, invalid_argument,
                  "encode_image: this image was read for its luminance only (ImageReadOptions::luminance_only) "
                  "and cannot be written back");
  DIDMARK_EXPECTS(image.width > 0 && image.height > 0 && image.channels >= 1 && image.channels <= 4 &&
                      image.pixels.size() == static_cast<std::size_t>(image.width) * static_cast<std::size_t>(image.height) *
                                                 static_cast<std::size_t>(image.channels),
                  invalid_argument, "encode_image: pixels do not match ", image.width, " x ", image.height, " x ",
                  image.channels);
  switch (image.codec) {
    case ImageCodec::png: return encode_png(image);
    case ImageCodec::jpeg:
      DIDMARK_EXPECTS(image.channels == 1 || image.channels == 3, unsupported,
                      "JPEG cannot hold an alpha channel (", image.channels, " channels)");
      return encode_jpeg(image);
    case ImageCodec::webp: return encode_webp(image);
  }
  DIDMARK_THROW(Errc::internal, "unknown image codec");
}

void write_image(const std::filesystem::path& path, const Image& image, bool overwrite) {
  const std::vector<uint8_t> bytes = encode_image(image);
  detail::check_replaceable(path);
  detail::AtomicFile f(path, overwrite);
  f.write(bytes.data(), bytes.size());
  f.commit();
}

}  // namespace didmark
