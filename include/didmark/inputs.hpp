#pragma once
/// \file inputs.hpp
/// Any input file, decided once for every edge (the CLI, the gRPC server, Python).
///
/// The library decides what a file is (classify_input: by its content first, then its
/// name), how it is marked (embed_input) and how owners' marks are looked for in it
/// (verify_input), and it walks many files against many owners (scan_inputs). The edges only
/// translate these structs into their own words: text and JSON, protobuf, Python dicts.
///
/// Example:
/// \code
///   const auto owners = didmark::owners_of(didmark::load_registry("registry.jsonl"));
///   didmark::InputOptions o;  // defaults: every scheme's default, row ids from a sidecar
///   auto fv = didmark::verify_input("upload.safetensors", owners, o);
///   for (const auto& v : fv.verdicts) if (v.detected) ...
/// \endcode

#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "didmark/alignment.hpp"
#include "didmark/backend.hpp"
#include "didmark/checkpoint.hpp"
#include "didmark/dataset.hpp"
#include "didmark/identity.hpp"
#include "didmark/images.hpp"
#include "didmark/registry_scan.hpp"
#include "didmark/watermark.hpp"

namespace didmark {

// ---- What a file is ------------------------------------------------------------------------

/// The three kinds of marked data.
enum class InputKind : uint8_t {
  checkpoint,  ///< named weight tensors (safetensors, PyTorch, a single .npy weight array)
  table,       ///< a CSV table
  array,       ///< an N x D row-keyed .npy array (embeddings, features)
  image,       ///< a PNG, JPEG or WebP image, or a folder of them (an image dataset)
};
/// "checkpoint", "table", "array", "image".
std::string_view input_kind_name(InputKind k) noexcept;

/// A file format of embed, verify and scan.
struct InputFormat {
  std::string name;  ///< "safetensors", "pt", "npy", "npy-tensor", "csv", "png", "jpeg", "webp",
                    ///< "images" (a folder of images) (the --format values)
  InputKind kind = InputKind::checkpoint;
  /// For checkpoints: the reader. A sharded safetensors checkpoint keeps the name
  /// "safetensors" with checkpoint == safetensors_sharded.
  CheckpointFormat checkpoint = CheckpointFormat::safetensors;
  std::vector<std::string> extensions;  ///< lower case, with the dot
  std::string description;              ///< one line for --help and `didmark formats`
};

/// Every format, in the order `didmark formats` lists them.
const std::vector<InputFormat>& input_formats();

/// What `path` holds. With `forced` (a format name) that format, checked against the file
/// where it can be; else by content — the .npy magic, a zip container (PyTorch), a
/// safetensors header (8-byte length then '{') — then by name (.csv, a
/// *.safetensors.index.json or a folder holding one). A .npy holding an N x D array is a
/// dataset array; "npy-tensor" (forced only) reads it as one weight tensor.
/// Errc::unsupported naming the known formats when nothing fits; Errc::not_found when the
/// path does not exist. Only regular files and folders are opened (never a FIFO or device).
InputFormat classify_input(const std::filesystem::path& path, std::string_view forced = {});

/// Whether a file name is that of an image (.png, .jpg, .jpeg, .webp, any case).
bool image_file_name(const std::filesystem::path& path);
/// The images of a folder and its subfolders (by name; hidden entries skipped), sorted.
std::vector<std::filesystem::path> image_folder_files(const std::filesystem::path& folder);

/// The other files a multi-file input stands for (the shards of a sharded checkpoint, the
/// X.ids.npy row-id sidecar of an array X.npy); empty for single files. `didmark scan` lists them only through the input.
std::vector<std::filesystem::path> input_parts(const std::filesystem::path& path, const InputFormat& format);

// ---- Whose mark ----------------------------------------------------------------------------

/// An owner whose mark is embedded or looked for.
struct Owner {
  std::string did;
  WatermarkKey key;
  Payload payload;  ///< did_codeword(did)
};

/// The owner of an identity: its DID, watermark key and DID codeword.
Owner owner_of(const Identity& id);
/// The owners of registry entries, all of them or only `did` (Errc::not_found when a named
/// DID is absent, Errc::invalid_argument when the registry is empty). `source` names the
/// registry in messages.
std::vector<Owner> owners_of(std::span<const RegistryEntry> entries, std::string_view did = {},
                             std::string_view source = "the registry");

// ---- Options -----------------------------------------------------------------------------

/// An alignment sketch read once (load_sketches) and shared by every file a scan verifies.
struct LoadedSketch {
  std::filesystem::path path;
  std::shared_ptr<const AlignmentSketch> sketch;
};

/// Read sketch files (validated; errors name the file).
std::vector<LoadedSketch> load_sketches(std::span<const std::string> paths);

/// The family-wise error level of verification by default: at most one false accusation in
/// 10^9 calls, however many owners each call tests.
inline constexpr double kDefaultFwer = 1e-9;

/// How inputs of every kind are marked and verified. One struct for all kinds, so an edge
/// fills it from its flags once; each kind reads the part that applies to it.
struct InputOptions {
  /// A format name (see input_formats()); empty: classify_input decides.
  std::string format;
  /// Checkpoints: scheme, strength, tensor selection, change budget. p_threshold applies to
  /// every kind. Arrays take `watermark.strength` when it is set (else array.strength);
  /// tables refuse a strength (they change one low-order bit per marked cell).
  WatermarkOptions watermark;
  /// Tables: key columns, mark columns, gamma, bits.
  TableOptions table;
  /// Tables: how the CSV is read (delimiter, detected by default; limits).
  CsvOptions csv;
  /// Arrays: strength and cosine budget (p_threshold comes from `watermark`).
  ArrayOptions array;
  /// Images: strength (8-bit levels; `watermark.strength` overrides it when set) and the
  /// smallest side marked.
  ImageMarkOptions image;
  /// Arrays: a .npy of one integer id per row. Empty: the sidecar `<stem>.ids.npy` beside the
  /// array when it exists, else `fixed_order` must be set.
  std::filesystem::path ids;
  /// Arrays: the row index is the identity (only when rows are never reordered or dropped).
  bool fixed_order = false;

  /// Verification: owners' alignment sketches (each names its owner's DID). An owner with a
  /// sketch is tested after the suspect is realigned to it (docs/watermark.md), which undoes
  /// permutations, rescaling, dummy neurons, renames and, for arrays, rotations. Every sketch
  /// must belong to an owner being verified.
  std::vector<LoadedSketch> sketches;
  RealignOptions realign;
  /// Embedding: also write the sketch of the output here (checkpoints and arrays); `sketch`
  /// says how big (its `watermark` is taken from above).
  std::filesystem::path sketch_output;
  SketchOptions sketch;

  /// Verification, family-wise error: a verdict is detected only when its p_family (Šidák
  /// over the owners tested in the call, Verdict::p_family) is at most this, on top of
  /// p_value <= watermark.p_threshold. With one owner p_family = p_value, so nothing changes;
  /// with K owners a mark needs about K times the evidence. nullopt: per-test decisions only
  /// (p_value <= p_threshold, the behaviour before family-wise control).
  std::optional<double> fwer = kDefaultFwer;
  /// Verification of checkpoints: screen many owners on a sample before the full pass
  /// (registry_scan.hpp). Default: automatic from 32 owners on.
  ScreenOptions screen;
};

/// Where the row identities of array `path` come from under `o`: the --ids file, the
/// sidecar, or nullopt for the row index (fixed order). Errc::invalid_argument with the
/// ways to give them when there are none.
std::optional<std::filesystem::path> array_ids_path(const std::filesystem::path& path, const InputOptions& o);

// ---- Verification ----------------------------------------------------------------------------

enum class VerdictStatus : uint8_t {
  detected,          ///< p-value at or below the threshold (and p_family at or below the fwer)
  not_detected,      ///< data was tested and the mark is not there
  no_eligible_data,  ///< nothing could be tested (no eligible tensor, no marked cell, no row)
};
/// "detected", "not_detected", "no_eligible_data".
std::string_view verdict_status_name(VerdictStatus s) noexcept;

/// One owner's verdict on one input. The fields every kind shares come first; the report of
/// the input's own kind (exactly one is set) carries the rest.
struct Verdict {
  std::string did;
  VerdictStatus status = VerdictStatus::not_detected;
  /// status == detected: p_value <= p_threshold and, unless InputOptions::fwer is off,
  /// p_family <= fwer.
  bool detected = false;
  double z = 0;
  /// This owner's own test: a bound on the chance of a score this high without the mark.
  double p_value = 1;
  double log10_p = 0;
  /// p_value corrected for the K owners tested in this call (FileVerdicts::family), Šidák:
  /// 1 - (1 - p_value)^K. A bound on the chance that any of the K owners scores this high
  /// without a mark (registry_scan.hpp).
  double p_family = 1;
  double log10_p_family = 0;
  /// Checkpoints: the screen did not keep this owner; z and p_value are those of the screen's
  /// sample (`elements` sampled elements), and the full pass did not run for it.
  bool screened = false;
  int bit_errors = 0;
  int bits = 0;
  /// Checkpoints: elements tested; tables: marked rows; arrays: rows x dim.
  int64_t elements = 0;
  /// Checkpoints: tensors tested; tables: mark columns; arrays: 1.
  int tensors = 0;
  Scheme scheme = Scheme::spread_spectrum;
  double seconds = 0;
  /// With sketches: whether the suspect was realigned for this owner, what realignment found
  /// (set for every owner once any sketch was given; empty otherwise) and the sketch used.
  bool realigned = false;
  std::optional<AlignmentReport> alignment;
  std::filesystem::path sketch;

  std::optional<VerifyReport> weights;
  std::optional<TableVerifyReport> table;
  std::optional<ArrayVerifyReport> array;
  /// Images: for one image, the image's own test; for a folder, the dataset test over all
  /// its images (`images` counted, `images_detected` of them detected on their own).
  struct ImageFacts {
    int64_t images = 0, images_detected = 0;
    int width = 0, height = 0;         ///< one image only
    int offset_x = 0, offset_y = 0;    ///< one image only: the tile offset found
    double sync_z = 0;                 ///< one image only
  };
  std::optional<ImageFacts> image;
};

/// One image of an image input (a single image, or each image of a folder).
struct ImageItem {
  std::filesystem::path path;
  std::string error_code, error_message;  ///< set when the image could not be read
  int width = 0, height = 0;
  std::vector<Verdict> verdicts;  ///< one per owner (p_family and detection as for files)
};

/// The verdicts of one input, one per owner in the owners' order.
struct FileVerdicts {
  std::filesystem::path path;
  InputFormat format;
  std::vector<Verdict> verdicts;
  /// Things a reader of the verdicts should know (e.g. a key column full of duplicates).
  std::vector<std::string> warnings;
  uint64_t bytes = 0;  ///< bytes of the files read
  double seconds = 0;
  /// Owners tested in this call: the K of every verdict's p_family.
  std::size_t family = 0;
  /// The family-wise level detection used (InputOptions::fwer; nullopt: per-test decisions).
  std::optional<double> fwer;
  /// Checkpoints: what the screen did (whether it ran, its stages, the candidates).
  std::optional<ScreenSummary> screen;
  /// Images: every image's own verdicts, in path order (also for a single image).
  std::vector<ImageItem> images;
};

/// Verify every owner's mark in `path`, reading it once for all of them (checkpoints with many
/// owners: screened first, InputOptions::screen).
FileVerdicts verify_input(const std::filesystem::path& path, std::span<const Owner> owners, const InputOptions& options,
                          Backend& backend = default_backend());

/// The same for a safetensors file held in memory (e.g. sent inline to the server); `name`
/// stands for the file in messages.
FileVerdicts verify_safetensors_bytes(std::string bytes, std::string_view name, std::span<const Owner> owners,
                                      const InputOptions& options, Backend& backend = default_backend());

// ---- Embedding -------------------------------------------------------------------------------

struct InputWriteOptions {
  bool overwrite = false;  ///< replace an existing output (never the input)
  /// Write a mark that could not be proved at the p-value threshold (too few elements, cells
  /// or rows for its strength). Refused by default, with what would do; when allowed, the
  /// report carries a warning instead.
  bool allow_weak = false;
};

/// What embed_input did: the report of the input's kind (exactly one is set).
struct InputEmbedReport {
  InputFormat format;
  std::filesystem::path input, output;
  std::vector<std::filesystem::path> outputs;  ///< files written (a sharded index last)
  std::optional<CheckpointEmbedReport> checkpoint;
  std::optional<TableEmbedReport> table;
  std::optional<ArrayEmbedReport> array;
  /// Images: one entry per image written (or refused, with its error), in path order.
  struct ImageOut {
    std::filesystem::path input, output;
    std::string error_code, error_message;
    ImageCodec codec = ImageCodec::png;
    ImageEmbedReport report;
    int quality = 0;
    std::string subsampling;
    bool icc = false, exif = false;
  };
  std::vector<ImageOut> images;
  /// Images: the backend that marked them and the wall time of the whole input.
  std::string backend;
  double seconds = 0;
  /// Arrays: where the row identities came from ("ids from F", "row index (--fixed-order)").
  std::string row_identity;
  /// With InputOptions::sketch_output: the sketch written there.
  std::shared_ptr<const AlignmentSketch> sketch;
  std::filesystem::path sketch_path;
  std::vector<std::string> warnings;
};

/// Sketch an input that already carries `did`'s mark (`didmark sketch`): a checkpoint, or a
/// row-keyed array (ids as for verification). Reads only; the caller writes the sketch.
AlignmentSketch sketch_input(const std::filesystem::path& path, std::string did, const InputOptions& options,
                             Backend& backend = default_backend());

/// Mark `input` into a new `output` for `owner`, atomically; the input is only read.
/// Refused (nothing written): an output that is the input or exists without overwrite, an
/// input with nothing to mark, a change over the budget, a mark too weak to prove (see
/// InputWriteOptions::allow_weak).
InputEmbedReport embed_input(const std::filesystem::path& input, const std::filesystem::path& output,
                             const Owner& owner, const InputOptions& options, const InputWriteOptions& write = {},
                             Backend& backend = default_backend());

// ---- Many files against many owners ---------------------------------------------------------

/// One file of a scan.
struct ScanItem {
  std::size_t index = 0;  ///< position in path order
  std::size_t total = 0;  ///< files in the scan
  std::filesystem::path path;
  std::optional<FileVerdicts> verdicts;  ///< set when the file was verified
  std::string error_code;                ///< errc name when it could not be (then verdicts is empty)
  std::string error_message;
};

struct ScanOptions {
  int jobs = 1;  ///< files verified at once (the backend is shared by the workers)
  /// Polled between files: true stops the scan (files not started are not reported).
  std::function<bool()> cancelled;
};

/// Verify every file named by `paths` (folders walked as collect_inputs does, with
/// classify_input deciding what is an input and input_parts hiding the shards of a sharded
/// checkpoint) against every owner. `on_item` is called once per file, in path order, never
/// from two threads at once; returning false stops the scan. A file that cannot be read is
/// reported in its item and the scan goes on. Returns the number of files listed.
std::size_t scan_inputs(std::span<const std::string> paths, std::span<const Owner> owners, const InputOptions& options,
                        const ScanOptions& scan, Backend& backend, const std::function<bool(ScanItem&&)>& on_item);

// ---- One vocabulary for machines ---------------------------------------------------------------

/// Compact JSON text of a verdict: did, status, detected, z, p_value, log10_p, p_family,
/// log10_p_family, screened, bit_errors, bits, elements, tensors, seconds, then the fields of its kind (checkpoints: scheme;
/// tables: format, rows, marked_rows, matches, duplicate_rows, bits_covered; arrays: format,
/// rows, dim, rows_skipped, duplicate_rows). The CLI's --json, Python and the server's logs
/// all say it this way; docs/json/ has the schemas.
std::string verdict_json(const Verdict& v);
/// {"path", "format", "detected": [DIDs], "verdicts": [...], "warnings": [...], "family": K,
/// "fwer": level or null, "screen": {...} (checkpoints; null otherwise)}.
std::string file_verdicts_json(const FileVerdicts& fv);
/// The report of embed_input for `owner`, with the fields of the input's kind and "warnings".
std::string embed_report_json(const InputEmbedReport& r, const Owner& owner);
/// A sketch written to `path`: path, kind, did, architecture, bytes, model_bytes, fraction,
/// dimensions, samples, all, rows.
std::string sketch_json(const std::filesystem::path& path, const AlignmentSketch& sketch);

}  // namespace didmark
