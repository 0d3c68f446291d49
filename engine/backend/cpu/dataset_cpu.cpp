// The dataset op table on the CPU: loops over the shared formulas (detail/dataset_table.hpp,
// detail/dataset_array.hpp) on the CPU backend's pool.
#include <algorithm>
#include <cmath>
#include <mutex>

#include "common/thread_pool.hpp"
#include "backend/dataset_ops.hpp"
#include "didmark/error.hpp"

namespace didmark::dataset {
namespace {

using detail::CarrierSpec;

constexpr int64_t kRowsPerSelectTask = 1 << 16;
constexpr int64_t kElementsPerArrayTask = 1 << 16;

/// The fixed-order sum of squares (see array_math.hpp); lanes in double.
template <ElemType T>
double row_sum_sq(const typename Elem<T>::storage* p, int64_t dim) {
  double lane[kLanes] = {};
  int64_t j0 = 0;
  for (; j0 + kLanes <= dim; j0 += kLanes)
    for (int l = 0; l < kLanes; ++l) {
      const double v = Elem<T>::load(p, j0 + l);
      lane[l] = exact_add(lane[l], exact_mul(v, v));
    }
  for (int l = 0; j0 + l < dim; ++l) {
    const double v = Elem<T>::load(p, j0 + l);
    lane[l] = exact_add(lane[l], exact_mul(v, v));
  }
  for (int h = kLanes / 2; h >= 1; h /= 2)
    for (int l = 0; l < h; ++l) lane[l] = exact_add(lane[l], lane[l + h]);
  return lane[0];
}

template <ElemType T>
void embed_rows(const void* src_v, void* dst_v, int64_t dim, int64_t r0, int64_t r1, const CarrierSpec* specs,
                const float* bit_signs, double strength, RowEmbedStats* out) {
  using S = typename Elem<T>::storage;
  const S* src = static_cast<const S*>(src_v);
  S* dst = static_cast<S*>(dst_v);
  for (int64_t r = r0; r < r1; ++r) {
    const S* x = src + r * dim;
    S* y = dst + r * dim;
    RowEmbedStats st;
    st.src_sq = row_sum_sq<T>(x, dim);
    if (!is_finite(st.src_sq) || !(st.src_sq > 0)) {
      st.status = is_finite(st.src_sq) ? kRowZero : kRowNonFinite;
      if (x != y) std::copy(x, x + dim, y);
      out[r] = st;
      continue;
    }
    const float alpha = row_alpha(st.src_sq, dim, strength);
    const CarrierSpec& c = specs[r];
    double dst_sq = 0, dot = 0;
    for (int64_t g = 0; g * detail::kCarrierBlock < dim; ++g) {
      const detail::u32x4 rnd = detail::carrier_signs(c, static_cast<uint64_t>(g));
      const float step = alpha * bit_signs[detail::carrier_bit_index(c, static_cast<uint64_t>(g))];
      const int64_t first = g * detail::kCarrierBlock;
      const int n = static_cast<int>(std::min<int64_t>(detail::kCarrierBlock, dim - first));
      for (int e = 0; e < n; ++e) {
        const S v = x[first + e];
        const S w = embed_elem<T>(v, step, rnd, static_cast<uint32_t>(e));
        y[first + e] = w;
        const double a = Elem<T>::load(&v, 0), b = Elem<T>::load(&w, 0);
        dst_sq += b * b;
        dot += a * b;
      }
    }
    st.dst_sq = dst_sq;
    st.dot = dot;
    out[r] = st;
  }
}

struct CorrAcc {
  std::vector<double> sums;    // K * L
  std::vector<double> weight;  // K * L
  std::vector<double> t;       // K
  int64_t rows = 0, skipped = 0;
};

template <ElemType T>
void correlate_rows(const void* x_v, int64_t rows, int64_t dim, int64_t r0, int64_t r1, const CarrierSpec* specs,
                    std::size_t K, uint32_t L, const uint8_t* use, const float* bit_signs, CorrAcc& acc) {
  using S = typename Elem<T>::storage;
  const S* xs = static_cast<const S*>(x_v);
  const double block_weight = static_cast<double>(detail::kCarrierBlock) / static_cast<double>(dim);
  for (int64_t r = r0; r < r1; ++r) {
    if (use && !use[r]) continue;
    const S* x = xs + r * dim;
    const double ss = row_sum_sq<T>(x, dim);
    if (!is_finite(ss) || !(ss > 0)) {
      ++acc.skipped;
      continue;
    }
    ++acc.rows;
    const double inv = 1.0 / std::sqrt(ss);
    for (std::size_t k = 0; k < K; ++k) {
      const CarrierSpec& c = specs[k * static_cast<std::size_t>(rows) + static_cast<std::size_t>(r)];
      double* sums = acc.sums.data() + k * L;
      double* weight = acc.weight.data() + k * L;
      const float* sg = bit_signs + k * L;
      double t = 0;
      for (int64_t g = 0; g * detail::kCarrierBlock < dim; ++g) {
        const detail::u32x4 rnd = detail::carrier_signs(c, static_cast<uint64_t>(g));
        const int64_t first = g * detail::kCarrierBlock;
        const int n = static_cast<int>(std::min<int64_t>(detail::kCarrierBlock, dim - first));
        double s0 = 0, s1 = 0;
        int e = 0;
        for (; e + 1 < n; e += 2) {
          const double a = Elem<T>::load(x, first + e), b = Elem<T>::load(x, first + e + 1);
          s0 += detail::carrier_sign_bit(rnd, static_cast<uint32_t>(e)) ? -a : a;
          s1 += detail::carrier_sign_bit(rnd, static_cast<uint32_t>(e + 1)) ? -b : b;
        }
        if (e < n) {
          const double a = Elem<T>::load(x, first + e);
          s0 += detail::carrier_sign_bit(rnd, static_cast<uint32_t>(e)) ? -a : a;
        }
        const double s = (s0 + s1) * inv;
        const uint32_t b = detail::carrier_bit_index(c, static_cast<uint64_t>(g));
        sums[b] += s;
        weight[b] += n == detail::kCarrierBlock ? block_weight : static_cast<double>(n) / static_cast<double>(dim);
        t += static_cast<double>(sg[b]) * s;
      }
      acc.t[k] += t;
    }
  }
}

class CpuOps final : public DatasetOps {
 public:
  explicit CpuOps(detail::ThreadPool& pool) : pool_(pool) {}
  std::string name() const override { return detail::concat("cpu (", pool_.size(), " threads)"); }

  void table_select(std::span<const uint64_t> ids, const TableSpec& spec, std::span<const uint64_t> col_keys,
                    std::span<uint32_t> slots) override {
    DIDMARK_ASSERT(ids.size() == slots.size() && col_keys.size() == spec.num_columns);
    const auto n = static_cast<int64_t>(ids.size());
    const int64_t tasks = (n + kRowsPerSelectTask - 1) / kRowsPerSelectTask;
    pool_.parallel_for(tasks, [&](int, int64_t t) {
      const int64_t i1 = std::min(n, (t + 1) * kRowsPerSelectTask);
      for (int64_t i = t * kRowsPerSelectTask; i < i1; ++i)
        slots[static_cast<std::size_t>(i)] = table_slot(spec, col_keys.data(), ids[static_cast<std::size_t>(i)]);
    });
  }

  void array_embed(const TensorView& src, const TensorView& dst, std::span<const CarrierSpec> specs,
                   std::span<const float> bit_signs, double strength, std::span<RowEmbedStats> out) override {
    const int64_t rows = src.shape[0], dim = src.shape[1];
    DIDMARK_ASSERT(static_cast<int64_t>(specs.size()) == rows && static_cast<int64_t>(out.size()) == rows);
    const int64_t per = std::max<int64_t>(1, kElementsPerArrayTask / std::max<int64_t>(dim, 1));
    const int64_t tasks = (rows + per - 1) / per;
    const ElemType t = elem_type(src.dtype);
    pool_.parallel_for(tasks, [&](int, int64_t task) {
      const int64_t r0 = task * per, r1 = std::min(rows, r0 + per);
      switch (t) {
        case ElemType::f32:
          embed_rows<ElemType::f32>(src.data, dst.data, dim, r0, r1, specs.data(), bit_signs.data(), strength, out.data());
          break;
        case ElemType::f64:
          embed_rows<ElemType::f64>(src.data, dst.data, dim, r0, r1, specs.data(), bit_signs.data(), strength, out.data());
          break;
        case ElemType::f16:
          embed_rows<ElemType::f16>(src.data, dst.data, dim, r0, r1, specs.data(), bit_signs.data(), strength, out.data());
          break;
        case ElemType::bf16:
          embed_rows<ElemType::bf16>(src.data, dst.data, dim, r0, r1, specs.data(), bit_signs.data(), strength,
                                     out.data());
          break;
      }
    });
  }

  void array_correlate(const TensorView& x, std::span<const CarrierSpec> specs, std::span<const uint8_t> use,
                       std::span<const float> bit_signs, std::span<ClaimSums> out) override {
    const int64_t rows = x.shape[0], dim = x.shape[1];
    const std::size_t K = out.size();
    DIDMARK_ASSERT(K > 0 && specs.size() == K * static_cast<std::size_t>(rows) && bit_signs.size() % K == 0);
    const auto L = static_cast<uint32_t>(bit_signs.size() / K);
    DIDMARK_ASSERT(use.empty() || static_cast<int64_t>(use.size()) == rows);
    const int64_t per = std::max<int64_t>(1, kElementsPerArrayTask / std::max<int64_t>(dim, 1));
    const int64_t tasks = (rows + per - 1) / per;
    std::vector<CorrAcc> acc(static_cast<std::size_t>(pool_.size()));
    for (auto& a : acc) {
      a.sums.assign(K * L, 0.0);
      a.weight.assign(K * L, 0.0);
      a.t.assign(K, 0.0);
    }
    const ElemType t = elem_type(x.dtype);
    const uint8_t* u = use.empty() ? nullptr : use.data();
    pool_.parallel_for(tasks, [&](int worker, int64_t task) {
      const int64_t r0 = task * per, r1 = std::min(rows, r0 + per);
      CorrAcc& a = acc[static_cast<std::size_t>(worker)];
      switch (t) {
        case ElemType::f32:
          correlate_rows<ElemType::f32>(x.data, rows, dim, r0, r1, specs.data(), K, L, u, bit_signs.data(), a);
          break;
        case ElemType::f64:
          correlate_rows<ElemType::f64>(x.data, rows, dim, r0, r1, specs.data(), K, L, u, bit_signs.data(), a);
          break;
        case ElemType::f16:
          correlate_rows<ElemType::f16>(x.data, rows, dim, r0, r1, specs.data(), K, L, u, bit_signs.data(), a);
          break;
        case ElemType::bf16:
          correlate_rows<ElemType::bf16>(x.data, rows, dim, r0, r1, specs.data(), K, L, u, bit_signs.data(), a);
          break;
      }
    });
    for (std::size_t k = 0; k < K; ++k) {
      ClaimSums& o = out[k];
      o.bit_sums.assign(L, 0.0);
      o.bit_weight.assign(L, 0.0);
      o.t = 0;
      o.rows = 0;
      o.skipped = 0;
      for (const auto& a : acc) {
        for (uint32_t b = 0; b < L; ++b) {
          o.bit_sums[b] += a.sums[k * L + b];
          o.bit_weight[b] += a.weight[k * L + b];
        }
        o.t += a.t[k];
        o.rows += a.rows;
        o.skipped += a.skipped;
      }
    }
  }

 private:
  detail::ThreadPool& pool_;
};

}  // namespace

std::unique_ptr<DatasetOps> make_cpu_dataset_ops(detail::ThreadPool& pool) { return std::make_unique<CpuOps>(pool); }

}  // namespace didmark::dataset
