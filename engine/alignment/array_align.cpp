// Arrays: a key-independent sample of marked rows in the sketch; orthogonal Procrustes on the
// sampled rows a suspect still has undoes a rotation or signed permutation of the features.
#include <Eigen/Dense>
#include <algorithm>
#include <chrono>
#include <cmath>
#include <unordered_map>
#include <unordered_set>

#include "alignment/common.hpp"
#include "didmark/error.hpp"

namespace didmark {

uint64_t sketch_row_hash(int64_t id) noexcept {
  return detail::align_mix64(static_cast<uint64_t>(id) ^ 0x6469646d61726b31ull);  // "didmark1"
}

namespace {

int64_t id_of(std::span<const int64_t> ids, int64_t r) { return ids.empty() ? r : ids[static_cast<std::size_t>(r)]; }

void check_array(const TensorView& v, std::span<const int64_t> ids, const char* what) {
  validate_view(v, what);
  DIDMARK_EXPECTS(v.rank() == 2, invalid_argument, what, " is ", v.describe(), "; an array is N x D");
  DIDMARK_EXPECTS(is_watermarkable(v.dtype), unsupported, what, " has dtype ", dtype_name(v.dtype),
                  "; arrays are f32, f64, f16 or bf16");
  DIDMARK_EXPECTS(v.is_contiguous(), unsupported, what, " is not contiguous");
  DIDMARK_EXPECTS(ids.empty() || static_cast<int64_t>(ids.size()) == v.shape[0], invalid_argument, what, " has ",
                  v.shape[0], " rows but ", ids.size(), " ids");
}

}  // namespace

AlignmentSketch make_array_sketch(const TensorView& marked, std::span<const int64_t> ids, std::string did,
                                  const SketchOptions& options, Backend& backend) {
  DIDMARK_EXPECTS(!did.empty(), invalid_argument, "a sketch needs the owner's DID");
  check_array(marked, ids, "the marked array");
  const int64_t N = marked.shape[0], D = marked.shape[1];
  DIDMARK_EXPECTS(N > 0 && D > 0, invalid_argument, "the marked array is empty");
  DIDMARK_EXPECTS(options.array_rows >= 0, invalid_argument, "array_rows must not be negative");
  // Procrustes needs more shared rows than features; 2.5 D leaves room for a suspect that
  // kept half the rows, and 1% of a large array for much smaller subsets.
  const int64_t want = options.array_rows > 0 ? options.array_rows : std::max<int64_t>({64, (5 * D + 1) / 2, N / 100});
  // The rows with the smallest public hash of their id (first occurrence of an id): any subset
  // of the array keeps exactly those of its rows that are in the sample.
  std::vector<std::pair<uint64_t, int64_t>> order;
  std::unordered_set<int64_t> seen;
  order.reserve(static_cast<std::size_t>(N));
  for (int64_t r = 0; r < N; ++r)
    if (seen.insert(id_of(ids, r)).second) order.push_back({sketch_row_hash(id_of(ids, r)), r});
  const auto m = static_cast<std::size_t>(std::min<int64_t>(want, static_cast<int64_t>(order.size())));
  std::partial_sort(order.begin(), order.begin() + static_cast<std::ptrdiff_t>(m), order.end());
  order.resize(m);

  AlignmentSketch sk;
  sk.kind = SketchKind::array;
  sk.did = std::move(did);
  sk.scheme = "spread-spectrum";
  sk.strength = options.watermark.strength.value_or(kDefaultArrayStrength);
  sk.architecture = "array";
  sk.model_bytes = marked.nbytes();
  sk.array.rows = N;
  sk.array.dim = D;
  std::vector<int64_t> rows(m);
  for (std::size_t i = 0; i < m; ++i) {
    rows[i] = order[i].second;
    sk.array.ids.push_back(id_of(ids, order[i].second));
  }
  std::vector<float> g(m * static_cast<std::size_t>(D));
  backend.alignment_ops().gather(marked, 0, rows, g);
  sk.array.values.resize(g.size());
  sk.array.scales.resize(m);
  for (std::size_t i = 0; i < m; ++i) {
    float mx = 0;
    for (int64_t j = 0; j < D; ++j) mx = std::max(mx, std::fabs(g[i * static_cast<std::size_t>(D) + static_cast<std::size_t>(j)]));
    sk.array.scales[i] = std::isfinite(mx) ? mx : 0.0f;
    for (int64_t j = 0; j < D; ++j)
      sk.array.values[i * static_cast<std::size_t>(D) + static_cast<std::size_t>(j)] =
          detail::quantize_signature(g[i * static_cast<std::size_t>(D) + static_cast<std::size_t>(j)], sk.array.scales[i]);
  }
  return sk;
}

RealignedArray realign_array_for_owner(const TensorView& suspect, std::span<const int64_t> ids,
                                       const AlignmentSketch& sketch, Backend& backend) {
  const auto t0 = std::chrono::steady_clock::now();
  DIDMARK_EXPECTS(sketch.kind == SketchKind::array, invalid_argument,
                  "this is a checkpoint sketch; an array needs the sketch made when the array was marked");
  check_array(suspect, ids, "the suspect array");
  const int64_t N = suspect.shape[0], D = suspect.shape[1];
  DIDMARK_EXPECTS(D == sketch.array.dim, invalid_argument, "the array has ", D, " features but the sketch was made for ",
                  sketch.array.dim, " (a sketch of another array?)");
  alignment::AlignmentOps& ops = backend.alignment_ops();
  RealignedArray out;
  AlignmentReport& rep = out.report;

  std::unordered_map<int64_t, std::size_t> sample;
  for (std::size_t i = 0; i < sketch.array.ids.size(); ++i) sample.emplace(sketch.array.ids[i], i);
  std::vector<int64_t> shared_rows, kept_rows;
  std::vector<std::size_t> shared_idx;
  std::unordered_set<int64_t> used;
  for (int64_t r = 0; r < N; ++r) {
    const int64_t id = id_of(ids, r);
    auto it = sample.find(id);
    if (it == sample.end()) {
      kept_rows.push_back(r);
    } else if (used.insert(id).second) {
      shared_rows.push_back(r);
      shared_idx.push_back(it->second);
    }
  }
  const auto k = static_cast<int64_t>(shared_rows.size());
  auto finish = [&](const char* note) {
    rep.notes.push_back(note);
    rep.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    return std::move(out);
  };
  // A D x D rotation has D^2 unknowns: fewer shared rows than features cannot pin it down.
  if (k < D + 8) return finish("too few of the sketch's rows in the suspect to recover a rotation");

  using MatD = Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic>;
  std::vector<float> xs(static_cast<std::size_t>(k * D));
  ops.gather(suspect, 0, shared_rows, xs);
  MatD X(k, D), A(k, D);
  for (int64_t i = 0; i < k; ++i) {
    const std::size_t s = shared_idx[static_cast<std::size_t>(i)];
    for (int64_t j = 0; j < D; ++j) {
      X(i, j) = xs[static_cast<std::size_t>(i * D + j)];
      A(i, j) = detail::dequantize_signature(sketch.array.values[s * static_cast<std::size_t>(D) + static_cast<std::size_t>(j)],
                                             sketch.array.scales[s]);
    }
  }
  // Rows are compared by direction: a suspect may have renormalized or rescaled them.
  for (int64_t i = 0; i < k; ++i) {
    const double nx = X.row(i).norm(), na = A.row(i).norm();
    if (nx > 0) X.row(i) /= nx;
    if (na > 0) A.row(i) /= na;
  }
  Eigen::BDCSVD<MatD> svd(X.transpose() * A, Eigen::ComputeFullU | Eigen::ComputeFullV);
  const MatD Q = svd.matrixU() * svd.matrixV().transpose();  // X Q ~ A
  const double resid = (X * Q - A).norm() / std::max(A.norm(), 1e-300);
  char note[160];
  std::snprintf(note, sizeof note, "rotation from %lld shared rows: residual %.3f", static_cast<long long>(k), resid);
  rep.notes.push_back(note);
  if (!(resid < 0.5)) return finish("the shared rows do not fit any rotation: not the sketched array");
  // Untouched features give Q = I up to the sketch's int8 rounding; a rotation or a
  // permutation leaves most of the diagonal far from 1.
  if (Q.diagonal().minCoeff() > 0.9) return finish("the features are in their original order");

  // A signed permutation is undone exactly by moving columns; anything else by a GEMM.
  std::vector<int64_t> col_src(static_cast<std::size_t>(D));
  std::vector<float> col_mul(static_cast<std::size_t>(D));
  bool permutation = true;
  std::vector<uint8_t> hit(static_cast<std::size_t>(D), 0);
  for (int64_t j = 0; j < D && permutation; ++j) {
    Eigen::Index i = 0;
    const double v = Q.col(j).cwiseAbs().maxCoeff(&i);
    permutation = v > 0.99 && !hit[static_cast<std::size_t>(i)];
    hit[static_cast<std::size_t>(i)] = 1;
    col_src[static_cast<std::size_t>(j)] = i;
    col_mul[static_cast<std::size_t>(j)] = Q(i, j) < 0 ? -1.0f : 1.0f;
  }
  const auto kept = static_cast<int64_t>(kept_rows.size());
  out.data.resize(static_cast<std::size_t>(kept * D));
  out.view = TensorView::contiguous(out.data.data(), DType::f32, {kept, D});
  if (permutation) {
    std::vector<float> row_mul(static_cast<std::size_t>(kept), 1.0f);
    ops.realign(suspect, false, kept_rows, col_src, row_mul, col_mul, out.view);
    for (int64_t j = 0; j < D; ++j) rep.rows_moved += col_src[static_cast<std::size_t>(j)] != j ? 1 : 0;
    for (float s : col_mul) rep.sign_flips += s < 0 ? 1 : 0;
  } else {
    std::vector<float> q(static_cast<std::size_t>(D * D));
    for (int64_t i = 0; i < D; ++i)
      for (int64_t j = 0; j < D; ++j) q[static_cast<std::size_t>(i * D + j)] = static_cast<float>(Q(i, j));
    ops.rotate(suspect, kept_rows, q, out.data);
    rep.rows_moved = D;
  }
  out.ids.reserve(kept_rows.size());
  for (int64_t r : kept_rows) out.ids.push_back(id_of(ids, r));
  rep.realigned = true;
  rep.tensors_matched = 1;
  rep.dims_recovered = 1;
  rep.rows_held_out = N - kept;
  rep.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return out;
}

std::vector<ArrayVerifyReport> verify_array_realigned(const TensorView& suspect, std::span<const int64_t> ids,
                                                      const AlignmentSketch& sketch, std::span<const Claim> claims,
                                                      const ArrayOptions& options, Backend& backend,
                                                      AlignmentReport* how) {
  RealignedArray r = realign_array_for_owner(suspect, ids, sketch, backend);
  if (how) *how = r.report;
  if (r.report.realigned) return verify_array(r.view, r.ids, claims, options, backend);
  return verify_array(suspect, ids, claims, options, backend);
}

}  // namespace didmark
