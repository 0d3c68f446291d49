#pragma once
/// \file attribution.hpp
/// Who is owed what: exact KNN-Shapley values of training rows, TRAK-style gradient
/// attribution scores through a keyed random projection, and lineage shares of the owners
/// whose watermark a checkpoint still carries.
///
/// Every entry point takes host TensorViews (row-major, contiguous), runs on the Backend it
/// is given (the CPU, or the GPU through cuBLAS / cuSOLVER / CUB when the CUDA backend is
/// passed) and returns a plain report. The math, the tie-break and the projection layout
/// are specified in docs/attribution.md.
///
/// Example:
/// \code
///   auto r = didmark::knn_shapley(train, train_labels, test, test_labels, {.k = 5}, contributors);
///   for (std::size_t c = 0; c < r.contributors.ids.size(); ++c)
///     std::printf("%lld: %g\n", (long long)r.contributors.ids[c], r.contributors.totals[c]);
/// \endcode

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "didmark/backend.hpp"
#include "didmark/certificate.hpp"
#include "didmark/tensor.hpp"

namespace didmark {

// ---- Contributors -----------------------------------------------------------------------

/// Per-row values summed by contributor id.
struct ContributorTotals {
  std::vector<int64_t> ids;     ///< distinct contributor ids, ascending
  std::vector<double> totals;   ///< totals[c] = sum of the values of the rows of ids[c]
  std::vector<int64_t> rows;    ///< rows[c] = number of rows of ids[c]
  bool empty() const noexcept { return ids.empty(); }
};

/// Sum `values` (one per row) by the integer id of each row in `contributors` (a host vector
/// of any integer dtype, one entry per value). Errc::invalid_argument on a length mismatch
/// or a non-integer dtype.
ContributorTotals sum_by_contributor(std::span<const double> values, const TensorView& contributors);

// ---- KNN-Shapley, exact (Jia et al. 2019) --------------------------------------------

struct KnnShapleyOptions {
  /// Neighbours of the K-NN classifier whose utility is valued; >= 1.
  int k = 5;
  /// Queries per device pass; 0 picks the largest tile that fits `memory_budget`.
  /// The result does not depend on it (values are summed query by query, in query order).
  int64_t query_tile = 0;
  /// Bytes for per-tile buffers (distances, sort keys, per-query values); 0 = the default
  /// (512 MiB on the host, 60% of the free memory on a GPU).
  std::size_t memory_budget = 0;
};

struct KnnShapleyReport {
  /// Per training row: the mean over queries of its exact KNN-Shapley value.
  std::vector<double> values;
  /// Totals per contributor; empty when no contributor ids were given.
  ContributorTotals contributors;
  int64_t train = 0;    ///< N
  int64_t queries = 0;  ///< M
  int64_t dim = 0;      ///< D
  int k = 0;
  DType compute = DType::f32;    ///< f64 when either embedding matrix is f64, else f32
  int64_t duplicate_rows = 0;    ///< training rows equal to an earlier row (tied by index)
  double seconds = 0;
  std::string backend;
};

/// Exact KNN-Shapley values of the training rows for the K-NN classifier evaluated on the
/// queries.
///
///  * `train` N x D and `test` M x D: f64, f32, f16 or bf16 (computed in f64 when either is
///    f64, else in f32); finite values only.
///  * `train_labels` (N) and `test_labels` (M): integer dtypes, or floating dtypes holding
///    whole numbers; only equality of labels matters.
///  * `contributors` (N, integer dtype), optional: the report adds the per-contributor sums.
///
/// For each query the training rows are ordered by squared Euclidean distance, nearest
/// first; equal distances (and always identical rows) are ordered by row index, on every
/// device. The exact recursion of docs/attribution.md then gives every row's value.
/// Throws Errc::invalid_argument naming the offending input (shape, count, K, NaN).
KnnShapleyReport knn_shapley(const TensorView& train, const TensorView& train_labels, const TensorView& test,
                             const TensorView& test_labels, const KnnShapleyOptions& options = {},
                             const std::optional<TensorView>& contributors = std::nullopt,
                             Backend& backend = default_backend());

// ---- Keyed Rademacher projection ----------------------------------------------------

/// The keyed p x k projection R: R[i][j] = +-1/sqrt(k). Entry (i, j) is a pure function of
/// (seed, i, j) — bit (j mod 128) of Philox4x32-10 at counter (j / 128, i, "RAD0") under the
/// key (seed low, seed high) — so it never depends on tile sizes or on the device, and no
/// part of R is ever stored beyond one tile.
struct Projection {
  uint64_t seed = 0;
  int64_t k = 2048;  ///< output dimensions, 1 .. 2^31-1
  /// 1/sqrt(k) rounded to float: the magnitude of every entry (f64 outputs use the same value).
  float scale() const noexcept;
};

/// The sign of R[i][j] as +1 or -1 (host reference of the shared formula).
int rademacher_sign(const Projection& proj, int64_t i, int64_t j) noexcept;

struct ProjectOptions {
  /// Rows of R (input features) generated per tile; 0 = a default sized for caches/devices.
  /// The projected values do not depend on it beyond float rounding.
  int64_t feature_tile = 0;
};

/// out = grads * R: `grads` is rows x p (f64, f32, f16 or bf16, host, contiguous), `out` is
/// rows x proj.k, f32 or f64, host, contiguous (f64 accumulates in f64). Errc::invalid_argument
/// on shape or dtype mismatches.
void project(const TensorView& grads, const Projection& proj, const TensorView& out, const ProjectOptions& options = {},
             Backend& backend = default_backend());

/// Rows [row0, row0 + rows) of R, materialized (rows x k floats, row-major), as `backend`
/// generates them in its tiles: bit-identical on every backend. For tests and inspection.
std::vector<float> rademacher_rows(const Projection& proj, int64_t row0, int64_t rows,
                                   Backend& backend = default_backend());

// ---- TRAK-style gradient attribution -----------------------------------------------

/// The per-example gradients of one checkpoint.
struct GradientCheckpoint {
  TensorView train;    ///< N x p: per-example gradients (or features) of the model output
  TensorView queries;  ///< M x p: the same for the examples being explained
  /// Optional N-vector multiplying each training row's score: the derivative of the loss with
  /// respect to the output (TRAK's Q term; the residual for squared loss). 1 when absent.
  std::optional<TensorView> train_weights;
};

/// A tile of the score matrix S (queries x train), row-major with leading dimension `train`.
struct ScoreTile {
  int64_t query0 = 0;
  int64_t train0 = 0;
  int64_t queries = 0;
  int64_t train = 0;
  const float* data = nullptr;
};
/// Receives the tiles of S: queries-tile by queries-tile, and within one, train tiles in order.
using ScoreSink = std::function<void(const ScoreTile&)>;

struct TrakOptions {
  Projection projection;
  /// Ridge of the kernel (Phi^T Phi + lambda I)^-1 relative to its mean diagonal:
  /// lambda = ridge * trace(Phi^T Phi) / k. Ignored when `lambda` is set.
  double ridge = 1e-6;
  std::optional<double> lambda;  ///< absolute lambda (>= 0)
  int64_t train_tile = 0;        ///< training rows per projection / scoring pass; 0 = auto
  int64_t query_tile = 0;        ///< queries per scoring pass; 0 = auto
  int64_t feature_tile = 0;      ///< see ProjectOptions
};

struct TrakReport {
  /// Per training row: the mean over queries (and checkpoints) of its score.
  std::vector<double> values;
  ContributorTotals contributors;
  int64_t train = 0, queries = 0;
  int64_t k = 0;
  int checkpoints = 0;
  std::vector<double> lambdas;  ///< lambda used per checkpoint
  double project_seconds = 0;   ///< time spent projecting gradients
  double seconds = 0;
  std::string backend;
};

/// TRAK-style scores: for checkpoint c, Phi = G_train R and Psi = G_query R (projected with
/// the same keyed R), S_c = Psi (Phi^T Phi + lambda I)^-1 Phi^T diag(w), solved by Cholesky;
/// S = mean_c S_c. The report holds the per-row means over queries; when `sink` is set the
/// whole of S is also produced tile by tile (never held in memory at once). All checkpoints
/// must have the same N and M (p may differ).
TrakReport trak(std::span<const GradientCheckpoint> checkpoints, const TrakOptions& options = {},
                const std::optional<TensorView>& contributors = std::nullopt, const ScoreSink& sink = {},
                Backend& backend = default_backend());

/// A ScoreSink that writes S as an f32 .npy file of shape (queries, train), tile by tile at
/// their offsets (atomic: nothing appears at `path` before commit()).
class NpyScoreWriter {
 public:
  NpyScoreWriter(const std::filesystem::path& path, int64_t queries, int64_t train, bool overwrite = false);
  ~NpyScoreWriter();
  NpyScoreWriter(const NpyScoreWriter&) = delete;
  NpyScoreWriter& operator=(const NpyScoreWriter&) = delete;
  /// The sink to hand to trak(); valid while this writer lives.
  ScoreSink sink();
  /// Check that every row was written, then move the file into place.
  void commit();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// ---- Lineage shares -----------------------------------------------------------------------

/// What verification said about one registered owner (a base model or a dataset).
struct OwnerEvidence {
  std::string did;
  double z = 0;           ///< the verifier's z statistic for this owner's mark
  bool detected = false;  ///< p-value at or below the verifier's threshold
  double p_value = 1.0;   ///< the verifier's p-value bound (1 when unknown)
};

/// Below the detection threshold but at or below this p-value, an owner is reported as
/// "suggestive" (evidence worth a closer look, no share): a silent 0% would read as "absent".
inline constexpr double kSuggestiveP = 1e-3;

struct LineageShare {
  std::string did;
  double z = 0;
  bool detected = false;
  double share = 0;  ///< fraction of the lineage pool, in [0, 1]
  double p_value = 1.0;
  /// Not detected, yet p_value <= kSuggestiveP: reported, never paid.
  bool suggestive = false;
  // With certificates (certified_lineage_shares); empty otherwise.
  std::string role;      ///< "base", "derivative", "uncertified" (detected, no certificate), "not-detected"
  int line = -1;         ///< the line (base and its derivatives) the owner belongs to, 0-based
  /// Hugging Face `base_model_relation` of the checkpoint to this owner's certified model
  /// where the evidence shows one: "merge", "finetune" or "quantized" ("adapter" is never
  /// inferred from marks: an adapter file carries new weights, not its base's mark).
  std::string relation;
  std::vector<std::string> flags;  ///< the owner's precedence flags, plus "uncertified"
};

struct LineageReport {
  std::vector<LineageShare> owners;  ///< in the order given
  bool any_detected = false;         ///< false: nobody gets a share (all shares 0)
};

/// Lineage rule: share_i = z_i / sum_j z_j over the detected owners with z > 0; undetected
/// owners get 0. The z of a spread-spectrum mark grows linearly with the marked weight an
/// ancestor contributed (docs/attribution.md), so the shares estimate the fractions inherited.
/// Duplicate DIDs and non-finite z are refused (Errc::invalid_argument).
LineageReport lineage_shares(std::span<const OwnerEvidence> evidence);

/// What the certified lineage rule reads.
struct CertifiedLineageInput {
  std::span<const OwnerEvidence> evidence;      ///< every owner checked (as for lineage_shares)
  std::span<const PrecedenceEntry> precedence;  ///< mark_precedence of the certified owners
  /// Share of each line's pool that goes to its derivatives together (0..1).
  double derivative_share = 0.2;
  /// The checkpoint's summary and the certified models' summaries by DID (for "quantized").
  std::optional<ModelSummary> file_summary;
  std::map<std::string, ModelSummary> certified_summaries;
};

/// Lineage with mark certificates (docs/attribution.md, docs/certificate.md). The precedence
/// owners form lines: the earliest owner is the base of the first line; a later owner joins
/// the line of the latest earlier owner whose mark its certified model carries (an
/// "unchecked" owner joins the line of the owner before it); a later owner whose certified
/// model carries none of the earlier marks starts a new line (the checkpoint merges lines).
/// Lines share the pool in proportion to their bases' z (a merge's fractions); within a
/// line the base receives 1 - derivative_share and the derivatives split derivative_share
/// equally (a line of one: the base takes it all). Detected owners without a certificate
/// and undetected owners get 0. Not proportional to z within a line: a later mark's z says
/// nothing about who made the model. Errc::invalid_argument as lineage_shares, and for a
/// precedence DID that is not among the detected evidence or a share outside 0..1.
LineageReport certified_lineage_shares(const CertifiedLineageInput& in);

}  // namespace didmark
