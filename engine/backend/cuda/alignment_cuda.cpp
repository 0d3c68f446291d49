// The alignment op table on CUDA. Host views are copied to the device whole (alignment reads
// each tensor a few times: once to the device is cheaper than streaming it every time);
// device views are used in place. Kernels: kernels/alignment.cu. Rotations go to cuBLAS.
#include <cstring>
#include <vector>

#include "backend/alignment_ops.hpp"
#include "backend/cuda/cuda_ops.hpp"
#include "backend/cuda/cuda_libs.hpp"
#include "kernels/cuda_check.cuh"
#include "backend/cuda/cuda_resources.hpp"
#include "didmark/error.hpp"
#include "kernels/alignment.cuh"

namespace didmark::alignment {
namespace {

std::size_t align_up(std::size_t n) { return (n + 255) & ~std::size_t{255}; }

class CudaAlignmentOps final : public AlignmentOps {
 public:
  explicit CudaAlignmentOps(cuda::CudaResources& res) : res_(res) {}
  std::string name() const override { return res_.description(); }

  void axis_sumsq(const TensorView& w, std::span<double> rows, std::span<double> cols) override {
    const auto lock = res_.lock();
    cuda::DeviceScope scope(res_.device());
    const kernels::AlignMatrix m = on_device(w, 0);
    const int64_t blocks = (m.rows + detail::kAlignColBlock - 1) / detail::kAlignColBlock;
    const std::size_t o_cols = align_up(static_cast<std::size_t>(m.rows) * sizeof(double));
    const std::size_t o_part = o_cols + align_up(static_cast<std::size_t>(m.cols) * sizeof(double));
    auto* base = static_cast<unsigned char*>(res_.scratch(o_part + static_cast<std::size_t>(blocks * m.cols) * sizeof(double), 1));
    cudaStream_t s = res_.stream();
    if (!rows.empty()) {
      kernels::launch_align_row_sumsq(m, reinterpret_cast<double*>(base), s);
      DIDMARK_CUDA_CHECK_LAUNCH("align_row_sumsq");
      DIDMARK_CUDA_TRY(cudaMemcpyAsync(rows.data(), base, rows.size_bytes(), cudaMemcpyDeviceToHost, s));
    }
    if (!cols.empty()) {
      kernels::launch_align_col_partials(m, reinterpret_cast<double*>(base + o_part), s);
      DIDMARK_CUDA_CHECK_LAUNCH("align_col_partials");
      kernels::launch_align_col_reduce(reinterpret_cast<double*>(base + o_part), blocks, m.cols,
                                       reinterpret_cast<double*>(base + o_cols), s);
      DIDMARK_CUDA_CHECK_LAUNCH("align_col_reduce");
      DIDMARK_CUDA_TRY(cudaMemcpyAsync(cols.data(), base + o_cols, cols.size_bytes(), cudaMemcpyDeviceToHost, s));
    }
    DIDMARK_CUDA_TRY(cudaStreamSynchronize(s));
  }

  void gather(const TensorView& w, int axis, std::span<const int64_t> index, std::span<float> out) override {
    DIDMARK_ASSERT(axis == 0 || axis == 1);
    const auto lock = res_.lock();
    cuda::DeviceScope scope(res_.device());
    const kernels::AlignMatrix m = on_device(w, 0);
    const int64_t lim = axis == 0 ? m.rows : m.cols;
    for (int64_t k : index) DIDMARK_ASSERT(k >= -1 && k < lim);
    DIDMARK_ASSERT(out.size() == index.size() * static_cast<std::size_t>(axis == 0 ? m.cols : m.rows));
    const std::size_t o_out = align_up(index.size_bytes());
    auto* base = static_cast<unsigned char*>(res_.scratch(o_out + out.size_bytes(), 1));
    cudaStream_t s = res_.stream();
    DIDMARK_CUDA_TRY(cudaMemcpyAsync(base, index.data(), index.size_bytes(), cudaMemcpyHostToDevice, s));
    kernels::launch_align_gather(m, axis, reinterpret_cast<const int64_t*>(base), static_cast<int64_t>(index.size()),
                                 reinterpret_cast<float*>(base + o_out), s);
    DIDMARK_CUDA_CHECK_LAUNCH("align_gather");
    DIDMARK_CUDA_TRY(cudaMemcpyAsync(out.data(), base + o_out, out.size_bytes(), cudaMemcpyDeviceToHost, s));
    DIDMARK_CUDA_TRY(cudaStreamSynchronize(s));
  }

  void realign(const TensorView& w, bool transposed, std::span<const int64_t> row_src,
               std::span<const int64_t> col_src, std::span<const float> row_mul, std::span<const float> col_mul,
               const TensorView& out) override {
    validate_view(out, "realign output");
    DIDMARK_ASSERT(out.dtype == DType::f32 && out.is_contiguous());
    const auto lock = res_.lock();
    cuda::DeviceScope scope(res_.device());
    const kernels::AlignMatrix m = on_device(w, 0);
    const auto shape = matrix_shape(out);
    DIDMARK_ASSERT(static_cast<int64_t>(row_src.size()) == shape[0] && static_cast<int64_t>(col_src.size()) == shape[1]);
    DIDMARK_ASSERT(row_mul.size() == row_src.size() && col_mul.size() == col_src.size());
    const int64_t row_lim = transposed ? m.cols : m.rows, col_lim = transposed ? m.rows : m.cols;
    for (int64_t r : row_src) DIDMARK_ASSERT(r >= -1 && r < row_lim);
    for (int64_t c : col_src) DIDMARK_ASSERT(c >= -1 && c < col_lim);
    const std::size_t o_col = align_up(row_src.size_bytes());
    const std::size_t o_rm = o_col + align_up(col_src.size_bytes());
    const std::size_t o_cm = o_rm + align_up(row_mul.size_bytes());
    const std::size_t o_out = o_cm + align_up(col_mul.size_bytes());
    const bool host_out = out.device == Device::cpu;
    const std::size_t out_bytes = out.nbytes();
    auto* base = static_cast<unsigned char*>(res_.scratch(o_out + (host_out ? out_bytes : 0), 1));
    cudaStream_t s = res_.stream();
    DIDMARK_CUDA_TRY(cudaMemcpyAsync(base, row_src.data(), row_src.size_bytes(), cudaMemcpyHostToDevice, s));
    DIDMARK_CUDA_TRY(cudaMemcpyAsync(base + o_col, col_src.data(), col_src.size_bytes(), cudaMemcpyHostToDevice, s));
    DIDMARK_CUDA_TRY(cudaMemcpyAsync(base + o_rm, row_mul.data(), row_mul.size_bytes(), cudaMemcpyHostToDevice, s));
    DIDMARK_CUDA_TRY(cudaMemcpyAsync(base + o_cm, col_mul.data(), col_mul.size_bytes(), cudaMemcpyHostToDevice, s));
    kernels::RealignArgs a;
    a.w = m;
    a.transposed = transposed;
    a.row_src = reinterpret_cast<const int64_t*>(base);
    a.col_src = reinterpret_cast<const int64_t*>(base + o_col);
    a.row_mul = reinterpret_cast<const float*>(base + o_rm);
    a.col_mul = reinterpret_cast<const float*>(base + o_cm);
    a.rows = shape[0];
    a.cols = shape[1];
    a.out = host_out ? reinterpret_cast<float*>(base + o_out) : static_cast<float*>(out.data);
    kernels::launch_align_realign(a, s);
    DIDMARK_CUDA_CHECK_LAUNCH("align_realign");
    if (host_out) DIDMARK_CUDA_TRY(cudaMemcpyAsync(out.data, a.out, out_bytes, cudaMemcpyDeviceToHost, s));
    DIDMARK_CUDA_TRY(cudaStreamSynchronize(s));
  }

  void rotate(const TensorView& w, std::span<const int64_t> rows, std::span<const float> q,
              std::span<float> out) override {
    const auto lock = res_.lock();
    cuda::DeviceScope scope(res_.device());
    const kernels::AlignMatrix m = on_device(w, 0);
    const int64_t D = m.cols, N = static_cast<int64_t>(rows.size());
    DIDMARK_ASSERT(static_cast<int64_t>(q.size()) == D * D && static_cast<int64_t>(out.size()) == N * D);
    for (int64_t r : rows) DIDMARK_ASSERT(r >= 0 && r < m.rows);
    const std::size_t o_q = align_up(rows.size_bytes());
    const std::size_t o_x = o_q + align_up(q.size_bytes());
    const std::size_t o_y = o_x + align_up(out.size_bytes());
    auto* base = static_cast<unsigned char*>(res_.scratch(o_y + out.size_bytes(), 1));
    cudaStream_t s = res_.stream();
    DIDMARK_CUDA_TRY(cudaMemcpyAsync(base, rows.data(), rows.size_bytes(), cudaMemcpyHostToDevice, s));
    DIDMARK_CUDA_TRY(cudaMemcpyAsync(base + o_q, q.data(), q.size_bytes(), cudaMemcpyHostToDevice, s));
    auto* x = reinterpret_cast<float*>(base + o_x);
    auto* y = reinterpret_cast<float*>(base + o_y);
    kernels::launch_align_gather(m, 0, reinterpret_cast<const int64_t*>(base), N, x, s);
    DIDMARK_CUDA_CHECK_LAUNCH("align_gather");
    // Row-major Y (N x D) = X (N x D) Q (D x D) is column-major Y^T = Q^T X^T.
    const float one = 1.0f, zero = 0.0f;
    const int d = static_cast<int>(D), n = static_cast<int>(N);
    DIDMARK_CUBLAS_TRY(cuda_libs::cublas().sgemm(res_.cublas(), CUBLAS_OP_N, CUBLAS_OP_N, d, n, d, &one,
                                   reinterpret_cast<const float*>(base + o_q), d, x, d, &zero, y, d));
    DIDMARK_CUDA_TRY(cudaMemcpyAsync(out.data(), y, out.size_bytes(), cudaMemcpyDeviceToHost, s));
    DIDMARK_CUDA_TRY(cudaStreamSynchronize(s));
  }

 private:
  /// The view as a device matrix: in place when it is on the device, else copied into
  /// scratch slot `slot` (kept until the next call that uses the slot).
  kernels::AlignMatrix on_device(const TensorView& w, int slot) {
    validate_view(w, "alignment input");
    DIDMARK_EXPECTS(w.is_contiguous(), unsupported, "alignment input ", w.describe(), " is not contiguous");
    const auto shape = matrix_shape(w);
    kernels::AlignMatrix m;
    m.type = align_elem(w.dtype);
    m.rows = shape[0];
    m.cols = shape[1];
    if (w.device == Device::cuda) {
      m.data = w.data;
      return m;
    }
    void* d = res_.scratch(std::max<std::size_t>(w.nbytes(), 1), slot);
    if (w.nbytes() > 0) DIDMARK_CUDA_TRY(cudaMemcpyAsync(d, w.data, w.nbytes(), cudaMemcpyHostToDevice, res_.stream()));
    m.data = d;
    return m;
  }

  cuda::CudaResources& res_;
};

}  // namespace

std::unique_ptr<AlignmentOps> make_cuda_alignment_ops(cuda::CudaResources& res) {
  return std::make_unique<CudaAlignmentOps>(res);
}

}  // namespace didmark::alignment
