// CPU loops over the alignment formulas (include/didmark/detail/alignment_math.hpp).
#include <Eigen/Dense>
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

#include "backend/alignment_ops.hpp"
#include "common/thread_pool.hpp"
#include "didmark/error.hpp"

#if defined(__AVX2__)
#include <immintrin.h>
#endif

namespace didmark::alignment {
namespace {

using detail::AlignElem;

constexpr int64_t kRowsPerTask = 64;
constexpr int64_t kTile = 64;

void check_host(const TensorView& w, std::string_view what) {
  validate_view(w, what);
  DIDMARK_EXPECTS(w.device == Device::cpu, invalid_argument, what, " is on ", device_name(w.device),
                  "; the CPU alignment ops read host memory");
  DIDMARK_EXPECTS(w.is_contiguous(), unsupported, what, " is not contiguous (", w.describe(), ")");
}

/// Row sums of squares in the fixed lane order.
double row_sumsq(const void* p, int64_t off, int64_t n, AlignElem t) {
  double lane[detail::kAlignLanes] = {};
  int64_t j0 = 0;
  for (; j0 + detail::kAlignLanes <= n; j0 += detail::kAlignLanes)
    for (int l = 0; l < detail::kAlignLanes; ++l)
      lane[l] = detail::exact_add(lane[l], detail::align_sq(detail::align_load_f64(p, off + j0 + l, t)));
  for (int l = 0; j0 + l < n; ++l)
    lane[l] = detail::exact_add(lane[l], detail::align_sq(detail::align_load_f64(p, off + j0 + l, t)));
  for (int h = detail::kAlignLanes / 2; h >= 1; h /= 2)
    for (int l = 0; l < h; ++l) lane[l] = detail::exact_add(lane[l], lane[l + h]);
  return lane[0];
}

/// One output row: out[j] = (src[ci[j]] * rm) * cm[j], or 0 where cm[j] is 0 (dropped or held
/// out: 0, not NaN * 0). `src` is the source row as f32. AVX2 gathers and streaming stores
/// (the output is written once and read back by the test much later) where the build has them.
void realign_row_f32(const float* src, const int32_t* ci, const float* cm, float rm, float* out, int64_t cols) {
  int64_t j = 0;
#if defined(__AVX2__)
  const __m256 vrm = _mm256_set1_ps(rm), zero = _mm256_setzero_ps();
  const bool aligned = (reinterpret_cast<uintptr_t>(out) & 31) == 0;
  for (; j + 8 <= cols; j += 8) {
    const __m256i idx = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(ci + j));
    const __m256 v = _mm256_i32gather_ps(src, idx, 4);
    const __m256 m = _mm256_loadu_ps(cm + j);
    const __m256 r = _mm256_and_ps(_mm256_mul_ps(_mm256_mul_ps(v, vrm), m), _mm256_cmp_ps(m, zero, _CMP_NEQ_UQ));
    if (aligned)
      _mm256_stream_ps(out + j, r);
    else
      _mm256_storeu_ps(out + j, r);
  }
#endif
  for (; j < cols; ++j) out[j] = cm[j] == 0.0f ? 0.0f : detail::realign_value(src[ci[j]], rm, cm[j]);
}

class CpuAlignmentOps final : public AlignmentOps {
 public:
  explicit CpuAlignmentOps(detail::ThreadPool& pool) : pool_(pool) {}
  std::string name() const override { return detail::concat("cpu (", pool_.size(), " threads)"); }

  void axis_sumsq(const TensorView& w, std::span<double> rows, std::span<double> cols) override {
    check_host(w, "axis_sumsq input");
    const auto shape = matrix_shape(w);
    const int64_t R = shape[0], C = shape[1];
    DIDMARK_ASSERT(rows.empty() || static_cast<int64_t>(rows.size()) == R);
    DIDMARK_ASSERT(cols.empty() || static_cast<int64_t>(cols.size()) == C);
    const AlignElem t = align_elem(w.dtype);
    const int64_t blocks = (R + detail::kAlignColBlock - 1) / detail::kAlignColBlock;
    std::vector<double> partial(cols.empty() ? 0 : static_cast<std::size_t>(blocks * C), 0.0);
    pool_.parallel_for(blocks, [&](int, int64_t b) {
      const int64_t r0 = b * detail::kAlignColBlock, r1 = std::min(R, r0 + detail::kAlignColBlock);
      double* part = cols.empty() ? nullptr : partial.data() + b * C;
      for (int64_t r = r0; r < r1; ++r) {
        if (!rows.empty()) rows[static_cast<std::size_t>(r)] = row_sumsq(w.data, r * C, C, t);
        if (part)
          for (int64_t j = 0; j < C; ++j)
            part[j] = detail::exact_add(part[j], detail::align_sq(detail::align_load_f64(w.data, r * C + j, t)));
      }
    });
    if (cols.empty()) return;
    for (int64_t j = 0; j < C; ++j) {
      double s = 0;
      for (int64_t b = 0; b < blocks; ++b) s = detail::exact_add(s, partial[static_cast<std::size_t>(b * C + j)]);
      cols[static_cast<std::size_t>(j)] = s;
    }
  }

  void gather(const TensorView& w, int axis, std::span<const int64_t> index, std::span<float> out) override {
    check_host(w, "gather input");
    const auto shape = matrix_shape(w);
    const int64_t R = shape[0], C = shape[1];
    DIDMARK_ASSERT(axis == 0 || axis == 1);
    const int64_t len = axis == 0 ? C : R, lim = axis == 0 ? R : C;
    const int64_t K = static_cast<int64_t>(index.size());
    DIDMARK_ASSERT(static_cast<int64_t>(out.size()) == K * len);
    for (int64_t k : index) DIDMARK_ASSERT(k >= -1 && k < lim);
    const AlignElem t = align_elem(w.dtype);
    if (axis == 0) {
      pool_.parallel_for(K, [&](int, int64_t k) {
        float* o = out.data() + k * len;
        const int64_t r = index[static_cast<std::size_t>(k)];
        for (int64_t j = 0; j < len; ++j) o[j] = r < 0 ? 0.0f : detail::align_load(w.data, r * C + j, t);
      });
      return;
    }
    const int64_t tasks = (R + kRowsPerTask - 1) / kRowsPerTask;
    pool_.parallel_for(tasks, [&](int, int64_t task) {
      const int64_t i0 = task * kRowsPerTask, i1 = std::min(R, i0 + kRowsPerTask);
      for (int64_t k = 0; k < K; ++k) {
        const int64_t c = index[static_cast<std::size_t>(k)];
        float* o = out.data() + k * len;
        for (int64_t i = i0; i < i1; ++i) o[i] = c < 0 ? 0.0f : detail::align_load(w.data, i * C + c, t);
      }
    });
  }

  void realign(const TensorView& w, bool transposed, std::span<const int64_t> row_src,
               std::span<const int64_t> col_src, std::span<const float> row_mul, std::span<const float> col_mul,
               const TensorView& out) override {
    check_host(w, "realign input");
    check_host(out, "realign output");
    DIDMARK_ASSERT(out.dtype == DType::f32);
    const auto in_shape = matrix_shape(w), out_shape = matrix_shape(out);
    const int64_t Rin = in_shape[0], Cin = in_shape[1], R = out_shape[0], C = out_shape[1];
    DIDMARK_ASSERT(static_cast<int64_t>(row_src.size()) == R && static_cast<int64_t>(col_src.size()) == C);
    DIDMARK_ASSERT(row_mul.size() == row_src.size() && col_mul.size() == col_src.size());
    const int64_t row_lim = transposed ? Cin : Rin, col_lim = transposed ? Rin : Cin;
    for (int64_t r : row_src) DIDMARK_ASSERT(r >= -1 && r < row_lim);
    for (int64_t c : col_src) DIDMARK_ASSERT(c >= -1 && c < col_lim);
    DIDMARK_EXPECTS(col_lim < (int64_t{1} << 31), unsupported, "realign: ", col_lim, " columns is too many");
    const AlignElem t = align_elem(w.dtype);
    float* o = static_cast<float*>(out.data);

    // Columns with no source get a zero multiplier and index 0, so the row loop has no branch
    // on the index.
    std::vector<int32_t> ci(static_cast<std::size_t>(C));
    std::vector<float> cm(static_cast<std::size_t>(C));
    for (int64_t j = 0; j < C; ++j) {
      const int64_t c = col_src[static_cast<std::size_t>(j)];
      ci[static_cast<std::size_t>(j)] = static_cast<int32_t>(c < 0 ? 0 : c);
      cm[static_cast<std::size_t>(j)] = c < 0 ? 0.0f : col_mul[static_cast<std::size_t>(j)];
    }

    if (!transposed) {
      const int64_t tasks = (R + kRowsPerTask - 1) / kRowsPerTask;
      pool_.parallel_for(tasks, [&](int, int64_t task) {
        const int64_t i0 = task * kRowsPerTask, i1 = std::min(R, i0 + kRowsPerTask);
        std::vector<float> row(t == AlignElem::f32 ? 0 : static_cast<std::size_t>(Cin));
        for (int64_t i = i0; i < i1; ++i) {
          float* orow = o + i * C;
          const int64_t r = row_src[static_cast<std::size_t>(i)];
          const float rm = row_mul[static_cast<std::size_t>(i)];
          if (r < 0 || rm == 0.0f) {
            std::fill(orow, orow + C, 0.0f);
            continue;
          }
          const float* src;
          if (t == AlignElem::f32) {
            src = static_cast<const float*>(w.data) + r * Cin;
          } else {
            for (int64_t c = 0; c < Cin; ++c) row[static_cast<std::size_t>(c)] = detail::align_load(w.data, r * Cin + c, t);
            src = row.data();
          }
          realign_row_f32(src, ci.data(), cm.data(), rm, orow, C);
        }
#if defined(__AVX2__)
        _mm_sfence();
#endif
      });
      return;
    }
    // Transposed storage: out[i, j] = w[col_src[j], row_src[i]], in square tiles.
    const int64_t ti = (R + kTile - 1) / kTile, tj = (C + kTile - 1) / kTile;
    pool_.parallel_for(ti * tj, [&](int, int64_t task) {
      const int64_t i0 = (task / tj) * kTile, j0 = (task % tj) * kTile;
      const int64_t i1 = std::min(R, i0 + kTile), j1 = std::min(C, j0 + kTile);
      for (int64_t i = i0; i < i1; ++i) {
        const int64_t r = row_src[static_cast<std::size_t>(i)];
        const float rm = row_mul[static_cast<std::size_t>(i)];
        for (int64_t j = j0; j < j1; ++j) {
          const int64_t c = col_src[static_cast<std::size_t>(j)];
          o[i * C + j] = (r < 0 || c < 0 || rm == 0.0f || cm[static_cast<std::size_t>(j)] == 0.0f)
                             ? 0.0f
                             : detail::realign_value(detail::align_load(w.data, c * Cin + r, t), rm,
                                                     cm[static_cast<std::size_t>(j)]);
        }
      }
    });
  }

  void rotate(const TensorView& w, std::span<const int64_t> rows, std::span<const float> q,
              std::span<float> out) override {
    check_host(w, "rotate input");
    const auto shape = matrix_shape(w);
    const int64_t R = shape[0], D = shape[1];
    const auto N = static_cast<int64_t>(rows.size());
    DIDMARK_ASSERT(static_cast<int64_t>(q.size()) == D * D && static_cast<int64_t>(out.size()) == N * D);
    for (int64_t r : rows) DIDMARK_ASSERT(r >= 0 && r < R);
    const AlignElem t = align_elem(w.dtype);
    using Mat = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
    const Eigen::Map<const Mat> Q(q.data(), D, D);
    constexpr int64_t kRows = 1024;
    pool_.parallel_for((N + kRows - 1) / kRows, [&](int, int64_t task) {
      const int64_t r0 = task * kRows, n = std::min(kRows, N - r0);
      Mat x(n, D);
      for (int64_t i = 0; i < n; ++i)
        for (int64_t j = 0; j < D; ++j) x(i, j) = detail::align_load(w.data, rows[static_cast<std::size_t>(r0 + i)] * D + j, t);
      Eigen::Map<Mat> o(out.data() + r0 * D, n, D);
      o.noalias() = x * Q;
    });
  }

 private:
  detail::ThreadPool& pool_;
};

}  // namespace

std::unique_ptr<AlignmentOps> make_cpu_alignment_ops(detail::ThreadPool& pool) {
  return std::make_unique<CpuAlignmentOps>(pool);
}

}  // namespace didmark::alignment
