// TRAK-style gradient attribution, written once against the attribution op table:
// project (keyed Rademacher), Gram + Cholesky, scores streamed in tiles.
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cerrno>
#include <cstring>

#include "backend/attribution_ops.hpp"
#include "attribution/inputs.hpp"
#include "common/atomic_file.hpp"
#include "didmark/attribution.hpp"
#include "didmark/error.hpp"
#include "didmark/io.hpp"

namespace didmark {
namespace {

constexpr int64_t kDefaultProjectRows = 1024;
constexpr int64_t kDefaultScoreTrain = 8192;
constexpr int64_t kDefaultScoreQueries = 1024;

double since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// Rows [r0, r0 + rows) of a contiguous host matrix.
TensorView row_slice(const TensorView& v, int64_t r0, int64_t rows) {
  TensorView s = TensorView::contiguous(static_cast<char*>(v.data) + static_cast<std::size_t>(r0 * v.shape[1]) *
                                                                        dtype_size(v.dtype),
                                        v.dtype, {rows, v.shape[1]});
  return s;
}

void check_checkpoints(std::span<const GradientCheckpoint> cps, const TrakOptions& o) {
  DIDMARK_EXPECTS(!cps.empty(), invalid_argument, "trak: no checkpoints given");
  attribution::require_projection(o.projection, "trak");
  DIDMARK_EXPECTS(std::isfinite(o.ridge) && o.ridge >= 0, invalid_argument, "trak: ridge ", o.ridge,
                  " must be finite and >= 0");
  DIDMARK_EXPECTS(!o.lambda || (std::isfinite(*o.lambda) && *o.lambda >= 0), invalid_argument, "trak: lambda ",
                  o.lambda.value_or(0), " must be finite and >= 0");
  DIDMARK_EXPECTS(o.train_tile >= 0 && o.query_tile >= 0 && o.feature_tile >= 0, invalid_argument,
                  "trak: tile sizes must be >= 0");
  for (std::size_t c = 0; c < cps.size(); ++c) {
    const std::string tw = detail::concat("trak: checkpoint ", c, " train gradients");
    const std::string qw = detail::concat("trak: checkpoint ", c, " query gradients");
    attribution::require_float_matrix(cps[c].train, tw.c_str());
    attribution::require_float_matrix(cps[c].queries, qw.c_str());
    DIDMARK_EXPECTS(cps[c].train.shape[0] >= 1, invalid_argument, tw, " have no rows");
    DIDMARK_EXPECTS(cps[c].queries.shape[0] >= 1, invalid_argument, qw, " have no rows");
    DIDMARK_EXPECTS(cps[c].train.shape[1] == cps[c].queries.shape[1], invalid_argument, qw, " have ",
                    cps[c].queries.shape[1], " columns but the train gradients have ", cps[c].train.shape[1]);
    DIDMARK_EXPECTS(cps[c].train.shape[0] == cps[0].train.shape[0], invalid_argument, tw, " have ",
                    cps[c].train.shape[0], " rows but checkpoint 0 has ", cps[0].train.shape[0]);
    DIDMARK_EXPECTS(cps[c].queries.shape[0] == cps[0].queries.shape[0], invalid_argument, qw, " have ",
                    cps[c].queries.shape[0], " rows but checkpoint 0 has ", cps[0].queries.shape[0]);
    if (cps[c].train_weights) {
      const std::string ww = detail::concat("trak: checkpoint ", c, " train weights");
      attribution::require_vector(*cps[c].train_weights, cps[c].train.shape[0], ww.c_str(), "training rows");
      DIDMARK_EXPECTS(is_watermarkable(cps[c].train_weights->dtype), invalid_argument, ww, ": dtype ",
                      dtype_name(cps[c].train_weights->dtype), " is not floating");
      attribution::require_finite(*cps[c].train_weights, ww.c_str());
    }
    attribution::require_finite(cps[c].train, tw.c_str());
    attribution::require_finite(cps[c].queries, qw.c_str());
  }
}

}  // namespace

TrakReport trak(std::span<const GradientCheckpoint> checkpoints, const TrakOptions& options,
                const std::optional<TensorView>& contributors, const ScoreSink& sink, Backend& backend) {
  const auto t0 = std::chrono::steady_clock::now();
  check_checkpoints(checkpoints, options);
  TrakReport r;
  r.train = checkpoints[0].train.shape[0];
  r.queries = checkpoints[0].queries.shape[0];
  r.k = options.projection.k;
  r.checkpoints = static_cast<int>(checkpoints.size());
  if (contributors) attribution::require_vector(*contributors, r.train, "trak: contributor ids", "training rows");

  const int64_t n = r.train, m = r.queries, k = r.k, width = k * r.checkpoints;
  attribution::AttributionOps& ops = backend.attribution_ops();
  r.backend = ops.description();
  const int64_t ptile = options.train_tile > 0 ? options.train_tile : kDefaultProjectRows;

  // phi: n x (C k), the projected train gradients of every checkpoint side by side, each row
  // times its weight; z: m x (C k), the solved query rows divided by C. Then S = z phi^T.
  std::vector<float> phi(static_cast<std::size_t>(n * width)), z(static_cast<std::size_t>(m * width));
  std::vector<float> tmp(static_cast<std::size_t>(ptile * k));
  std::vector<double> rhs;
  for (int c = 0; c < r.checkpoints; ++c) {
    const GradientCheckpoint& cp = checkpoints[static_cast<std::size_t>(c)];
    const std::string what = detail::concat("trak: checkpoint ", c);
    auto gram = ops.gram(k);
    for (int64_t r0 = 0; r0 < n; r0 += ptile) {
      const int64_t rows = std::min(ptile, n - r0);
      const auto tp = std::chrono::steady_clock::now();
      ops.project(row_slice(cp.train, r0, rows), options.projection, tmp.data(), DType::f32, options.feature_tile);
      r.project_seconds += since(tp);
      gram->add(tmp.data(), rows);
      for (int64_t i = 0; i < rows; ++i)
        std::memcpy(phi.data() + (r0 + i) * width + c * k, tmp.data() + i * k, sizeof(float) * static_cast<std::size_t>(k));
    }
    const std::vector<double> a = gram->result();
    double trace = 0;
    for (int64_t i = 0; i < k; ++i) trace += a[static_cast<std::size_t>(i * k + i)];
    const double lambda = options.lambda ? *options.lambda : options.ridge * trace / static_cast<double>(k);
    r.lambdas.push_back(lambda);
    auto solver = ops.spd_solver(a, k, lambda, what.c_str());

    for (int64_t q0 = 0; q0 < m; q0 += ptile) {
      const int64_t rows = std::min(ptile, m - q0);
      const auto tp = std::chrono::steady_clock::now();
      ops.project(row_slice(cp.queries, q0, rows), options.projection, tmp.data(), DType::f32, options.feature_tile);
      r.project_seconds += since(tp);
      rhs.resize(static_cast<std::size_t>(rows * k));
      for (int64_t i = 0; i < rows * k; ++i) rhs[static_cast<std::size_t>(i)] = static_cast<double>(tmp[static_cast<std::size_t>(i)]);
      solver->solve(rhs.data(), rows);
      const double inv_c = 1.0 / static_cast<double>(r.checkpoints);
      for (int64_t i = 0; i < rows; ++i)
        for (int64_t j = 0; j < k; ++j)
          z[static_cast<std::size_t>((q0 + i) * width + c * k + j)] =
              static_cast<float>(rhs[static_cast<std::size_t>(i * k + j)] * inv_c);
    }
    if (cp.train_weights) {
      for (int64_t i = 0; i < n; ++i) {
        const auto w = static_cast<float>(attribution::float_at(*cp.train_weights, i));
        float* row = phi.data() + i * width + c * k;
        for (int64_t j = 0; j < k; ++j) row[j] *= w;
      }
    }
  }

  // Per-row means over queries: values = phi . mean_q(z), one pass, independent of tiling.
  std::vector<double> zbar(static_cast<std::size_t>(width), 0.0);
  for (int64_t q = 0; q < m; ++q)
    for (int64_t j = 0; j < width; ++j) zbar[static_cast<std::size_t>(j)] += static_cast<double>(z[static_cast<std::size_t>(q * width + j)]);
  for (double& v : zbar) v /= static_cast<double>(m);
  r.values.assign(static_cast<std::size_t>(n), 0.0);
  ops.row_dots(phi.data(), n, width, zbar.data(), r.values.data());

  if (sink) {
    const int64_t qt = options.query_tile > 0 ? options.query_tile : kDefaultScoreQueries;
    const int64_t tt = options.train_tile > 0 ? options.train_tile : kDefaultScoreTrain;
    std::vector<float> tile(static_cast<std::size_t>(std::min(qt, m) * std::min(tt, n)));
    for (int64_t q0 = 0; q0 < m; q0 += qt) {
      const int64_t mq = std::min(qt, m - q0);
      for (int64_t j0 = 0; j0 < n; j0 += tt) {
        const int64_t nt = std::min(tt, n - j0);
        ops.gemm_abt(z.data() + q0 * width, phi.data() + j0 * width, tile.data(), mq, nt, width);
        sink(ScoreTile{q0, j0, mq, nt, tile.data()});
      }
    }
  }
  if (contributors) r.contributors = sum_by_contributor(r.values, *contributors);
  r.seconds = since(t0);
  return r;
}

// ---- NpyScoreWriter ------------------------------------------------------------------------

struct NpyScoreWriter::Impl {
  detail::AtomicFile file;
  int64_t queries, train;
  std::size_t header = 0;
  int64_t written = 0;
  Impl(const std::filesystem::path& p, int64_t q, int64_t t, bool overwrite) : file(p, overwrite), queries(q), train(t) {}
};

NpyScoreWriter::NpyScoreWriter(const std::filesystem::path& path, int64_t queries, int64_t train, bool overwrite) {
  DIDMARK_EXPECTS(queries >= 0 && train >= 0, invalid_argument, "score writer: negative shape");
  if (!overwrite)
    DIDMARK_EXPECTS(!std::filesystem::exists(path), invalid_argument, "'", path.string(),
                    "' exists; pass --force (overwrite) to replace it");
  impl_ = std::make_unique<Impl>(path, queries, train, overwrite);
  const int64_t shape[2] = {queries, train};
  const std::string head = npy_header(DType::f32, shape);
  impl_->header = head.size();
  impl_->file.write(head);
  impl_->file.resize(impl_->header + static_cast<std::size_t>(queries * train) * sizeof(float));
}

NpyScoreWriter::~NpyScoreWriter() = default;

ScoreSink NpyScoreWriter::sink() {
  Impl* im = impl_.get();
  return [im](const ScoreTile& t) {
    DIDMARK_EXPECTS(t.query0 >= 0 && t.train0 >= 0 && t.query0 + t.queries <= im->queries &&
                        t.train0 + t.train <= im->train,
                    invalid_argument, "score writer: tile outside the ", im->queries, " x ", im->train, " matrix");
    const std::size_t bytes = static_cast<std::size_t>(t.train) * sizeof(float);
    for (int64_t r = 0; r < t.queries; ++r) {
      const auto off = static_cast<off_t>(im->header + static_cast<std::size_t>((t.query0 + r) * im->train + t.train0) * sizeof(float));
      const char* src = reinterpret_cast<const char*>(t.data + r * t.train);
      std::size_t done = 0;
      while (done < bytes) {
        const ssize_t w = ::pwrite(im->file.fd(), src + done, bytes - done, off + static_cast<off_t>(done));
        DIDMARK_EXPECTS(w > 0, io_error, "cannot write scores to '", im->file.target().string(), "': ",
                        std::strerror(errno));
        done += static_cast<std::size_t>(w);
      }
    }
    im->written += t.queries * t.train;
  };
}

void NpyScoreWriter::commit() {
  DIDMARK_EXPECTS(impl_->written == impl_->queries * impl_->train, internal, "score writer: ", impl_->written,
                  " of ", impl_->queries * impl_->train, " scores written");
  impl_->file.commit();
}

}  // namespace didmark
