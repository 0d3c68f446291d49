#pragma once
/// \file images.hpp
/// Image marks: an owner's DID payload, under the owner's watermark key, in the luminance of
/// every image of a dataset (PNG, JPEG, WebP; 8-bit grey, grey + alpha, RGB, RGBA).
///
/// The mark is a keyed, tile-periodic spread-spectrum pattern of smooth 4 x 4-pixel cells
/// (detail/image_math.hpp), scaled by a perceptual mask (the local contrast). Verification is
/// blind: the residual of the luminance (the image minus its local mean, divided by its local
/// contrast) is folded onto one 128 x 128 tile; half of the cells (the sync cells, a keyed
/// sign pattern of their own) find the tile's offset, which undoes cropping; the other half
/// (the payload cells) are then tested at that offset. Under "not marked with this key" the
/// payload signs are independent of the image and of the offset the sync cells chose, so
/// z = sum w_i a_i / ||a|| obeys Hoeffding, P(z >= t) <= exp(-t^2 / 2), with no correction for
/// the offset search. The same argument gives one test over a whole folder: the payload-cell
/// vectors of all images, each of unit norm, are summed and tested once (robust to subsets,
/// shuffling and renaming; duplicates cannot inflate it). See docs/dataset.md (images).
///
/// Example:
/// \code
///   didmark::Image img = didmark::read_image("cat.jpg");
///   didmark::ImageClaim claim{key, payload};
///   auto rep = didmark::embed_image(img, claim, {});        // marks img.pixels in place
///   didmark::write_image("cat.marked.jpg", img);             // quality and tables kept
///   auto s = didmark::score_image(didmark::read_image("cat.marked.jpg"), {&claim, 1});
///   // s.owners[0].z, s.owners[0].p_value
/// \endcode
#include <cstdint>
#include <filesystem>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "didmark/backend.hpp"
#include "didmark/watermark.hpp"

namespace didmark {

/// The file formats of images.
enum class ImageCodec : uint8_t { png, jpeg, webp };
/// "png", "jpeg", "webp".
std::string_view image_codec_name(ImageCodec c) noexcept;
/// The codec of a file from its first bytes (PNG and JPEG signatures, RIFF....WEBP), or
/// nullopt-like false when none matches.
bool sniff_image(std::span<const uint8_t> head, ImageCodec& codec) noexcept;

/// The largest image accepted (pixels); larger ones are refused before any allocation.
inline constexpr int64_t kMaxImagePixels = int64_t{1} << 28;
/// The largest side accepted (pixels).
inline constexpr int kMaxImageSide = 65535;

/// A decoded image and what its encoder needs to write it back as it came: 8-bit samples,
/// interleaved, rows of width * channels bytes.
struct Image {
  ImageCodec codec = ImageCodec::png;
  int width = 0, height = 0;
  int channels = 0;  ///< 1 grey, 2 grey + alpha, 3 RGB, 4 RGBA
  std::vector<uint8_t> pixels;

  // ---- Metadata, written back unchanged ----
  std::vector<uint8_t> icc;   ///< ICC profile (PNG iCCP, JPEG APP2 ICC_PROFILE, WebP ICCP)
  std::vector<uint8_t> exif;  ///< EXIF (PNG eXIf, JPEG APP1 "Exif", WebP EXIF)
  std::vector<uint8_t> xmp;   ///< XMP (WebP only; JPEG keeps it among its markers)
  /// JPEG: every APPn (except JFIF APP0, ICC APP2 and Adobe APP14, which the encoder writes)
  /// and COM marker, in order, as (marker code, data).
  std::vector<std::pair<int, std::vector<uint8_t>>> markers;
  /// PNG: text chunks (keyword, text) and the colour chunks gAMA/cHRM/sRGB/pHYs, as raw chunks.
  std::vector<std::pair<std::string, std::string>> text;
  std::vector<std::pair<std::string, std::vector<uint8_t>>> chunks;

  // ---- Encoding parameters, kept ----
  /// JPEG: the quantization tables (natural order, 64 per table, up to 4) and each
  /// component's table number and sampling factors; progressive or not.
  std::vector<std::vector<uint16_t>> quant_tables;
  std::vector<int> component_table, h_samp, v_samp;
  bool progressive = false;  ///< JPEG progressive / PNG Adam7 interlaced
  bool jfif = true;          ///< JPEG: write a JFIF APP0
  int density_unit = 0, x_density = 1, y_density = 1;
  /// JPEG: quality estimated from the luminance table (IJG scale); WebP lossy: the quality
  /// used to re-encode (WebP does not record it; 90 unless asked).
  int quality = 0;
  bool lossless = false;  ///< WebP lossless (VP8L)

  /// Read with ImageReadOptions::luminance_only from a colour JPEG: `pixels` hold the decoded
  /// luminance (Y) plane alone, channels is 1, and the image cannot be encoded again.
  bool luminance_only = false;

  /// "4:2:0", "4:2:2", "4:4:4", ... for colour JPEG; empty otherwise.
  std::string subsampling() const;
};

/// How to read an image.
struct ImageReadOptions {
  /// For verification: a colour JPEG is decoded to its luminance plane only (its Y component,
  /// without the chroma's inverse DCT, upsampling and colour conversion: ~30% less decode time,
  /// a third of the memory). The verifier reads nothing else. Other formats decode in full.
  bool luminance_only = false;
};

/// Read and decode an image file (PNG, JPEG, WebP, by content). Errc::corrupt_input naming the
/// file and the problem for malformed data (truncated, bad CRC, bad header), Errc::unsupported
/// for what is valid but not handled (16-bit, palette, CMYK, animated), Errc::invalid_argument
/// for dimensions over kMaxImagePixels / kMaxImageSide.
Image read_image(const std::filesystem::path& path, const ImageReadOptions& options = {});
/// The same from bytes in memory; `name` stands for the file in messages.
Image decode_image(std::span<const uint8_t> bytes, ImageCodec codec, std::string_view name,
                   const ImageReadOptions& options = {});
/// Encode with the image's own parameters (JPEG tables and sampling, PNG interlacing and
/// chunks, WebP lossless or quality) and metadata.
std::vector<uint8_t> encode_image(const Image& image);
/// encode_image written atomically (temporary file + rename). Refuses an existing target
/// unless `overwrite`.
void write_image(const std::filesystem::path& path, const Image& image, bool overwrite = false);

// ---- The mark ---------------------------------------------------------------------------

/// Whose mark: the owner's watermark key and payload (the DID codeword).
struct ImageClaim {
  WatermarkKey key;
  Payload payload;
};

struct ImageMarkOptions {
  /// Luminance amplitude in 8-bit levels where the perceptual mask is 1 (the mask runs from
  /// 0.5 in flat areas to 2 in textured ones). 3 gives about 43 dB PSNR on photographs.
  double strength = 3.0;
  /// Images smaller than this on either side are refused (too few cells to prove a mark).
  int min_side = 64;
  /// The pattern's phase in this image (0..127 each): pixel (x, y) carries the tile at
  /// (x + offset_x, y + offset_y). -1 (the default): derived from the owner's key and the
  /// image's own samples (a multiple of 4, so the cells stay inside JPEG's 8 x 8 blocks), so
  /// every image of a dataset gets its own unpredictable phase and an
  /// average of many marked images' tiles does not line the pattern up (the tile-averaging
  /// estimation attack of docs/dataset.md). The verifier finds any phase (the sync search);
  /// the same image and key always get the same phase.
  int offset_x = -1, offset_y = -1;
};

struct ImageEmbedReport {
  int width = 0, height = 0, channels = 0;
  double strength = 0;
  double psnr = 0;             ///< over the colour channels (dB; inf when nothing changed)
  double mean_abs_change = 0;  ///< mean |change| of the colour samples, 8-bit levels
  int offset_x = 0, offset_y = 0;  ///< the pattern's phase used (ImageMarkOptions)
  double seconds = 0;
};

/// Mark `image` in place for `claim`. Errc::invalid_argument for a strength outside (0, 20]
/// or an image under min_side.
ImageEmbedReport embed_image(Image& image, const ImageClaim& claim, const ImageMarkOptions& options = {},
                             Backend& backend = default_backend());

/// One owner's evidence in one image.
struct ImageOwnerScore {
  double z = 0;        ///< payload-cell correlation at the offset the sync cells chose
  double p_value = 1;  ///< exp(-z^2 / 2) for z > 0 (Hoeffding), else 1
  double log10_p = 0;
  double sync_z = 0;           ///< the sync cells' score at that offset
  int offset_x = 0, offset_y = 0;  ///< the tile offset found (0..127)
  int bit_errors = 0, bits = 0;    ///< payload bits decoded by majority over their cells
  /// The payload cells' values at the offset, normalised to unit length (for dataset tests).
  std::vector<float> evidence;
};

/// Every owner's evidence in one image (owners in the claims' order).
struct ImageScores {
  int width = 0, height = 0;
  std::vector<ImageOwnerScore> owners;
  double seconds = 0;
};

/// Score `image` against every claim, folding it once for all of them.
ImageScores score_image(const Image& image, std::span<const ImageClaim> claims, Backend& backend = default_backend());

/// One test over many images for claim `owner`: the images' unit evidence vectors are summed
/// and correlated with the claim's payload cells once. z, p_value (Hoeffding), images counted.
struct ImageDatasetScore {
  double z = 0, p_value = 1, log10_p = 0;
  int64_t images = 0;
};
ImageDatasetScore combine_image_scores(std::span<const ImageScores* const> images, std::size_t owner,
                                       const ImageClaim& claim);

}  // namespace didmark
