// Attacks on row-keyed embedding arrays, and neighbour preservation as their fidelity.
#include <Eigen/Dense>
#include <algorithm>
#include <cmath>
#include <numeric>
#include <unordered_map>

#include "attack/ops.hpp"
#include "didmark/error.hpp"
#include "didmark/io.hpp"

namespace didmark {
namespace {

using Mat = Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

Eigen::Map<Mat> mat(ArrayData& a) { return Eigen::Map<Mat>(a.x.data(), a.rows, a.dim); }

/// A Haar-random orthogonal matrix: QR of a Gaussian matrix with the signs of R's diagonal
/// moved into Q (Mezzadri 2007).
Mat random_orthogonal(int64_t d, std::mt19937_64& rng) {
  std::normal_distribution<double> nd;
  Mat g(d, d);
  for (int64_t i = 0; i < d; ++i)
    for (int64_t j = 0; j < d; ++j) g(i, j) = nd(rng);
  Eigen::HouseholderQR<Mat> qr(g);
  Mat q = qr.householderQ();
  const Mat r = qr.matrixQR();
  for (int64_t j = 0; j < d; ++j)
    if (r(j, j) < 0) q.col(j) *= -1;
  return q;
}

}  // namespace

ArrayAttackReport apply_array_attack(ArrayData& a, const AttackSpec& spec, uint64_t seed) {
  using namespace attack_detail;
  ArrayAttackReport rep;
  rep.spec = spec.text;
  rep.rows_in = a.rows;
  auto rng = stream(seed, 0, spec.text);
  const std::string& k = spec.kind;
  auto x = mat(a);
  if (k == "noise") {
    std::normal_distribution<double> nd(0.0, spec.strength * rms(a.x));
    for (auto& v : a.x) v += nd(rng);
  } else if (k == "cast") {
    const std::string& d = spec.args[0];
    const DType to = d == "bf16" ? DType::bf16
                     : (d == "f16" || d == "fp16") ? DType::f16
                     : d.find("e5m2") != std::string::npos ? DType::f8_e5m2
                                                           : DType::f8_e4m3;
    OwnedTensor t("array", to, {a.rows, a.dim});
    t.assign(a.x);
    a.x = t.values();
    if (to == DType::f16) a.dtype = DType::f16;  // .npy holds f16; bf16 and fp8 go back to the file's dtype
    rep.notes.push_back(to == DType::f16 ? "stored as f16" : "rounded through " + std::string(dtype_name(to)));
  } else if (k == "quant" && spec.args[0] == "int8-dim") {
    for (int64_t j = 0; j < a.dim; ++j) {
      const double amax = x.col(j).cwiseAbs().maxCoeff();
      if (amax == 0) continue;
      const double s = amax / 127.0;
      for (int64_t i = 0; i < a.rows; ++i) x(i, j) = std::clamp(std::nearbyint(x(i, j) / s), -127.0, 127.0) * s;
    }
  } else if (k == "quant") {  // binary: sign, at the row's mean magnitude
    for (int64_t i = 0; i < a.rows; ++i) {
      const double m = x.row(i).cwiseAbs().mean();
      for (int64_t j = 0; j < a.dim; ++j) x(i, j) = x(i, j) >= 0 ? m : -m;
    }
  } else if (k == "rotate") {
    const Mat q = random_orthogonal(a.dim, rng);
    const Mat y = x * q;
    x = y;
  } else if (k == "permute-dims") {
    const auto p = random_permutation(a.dim, rng);
    const Mat y = x;
    for (int64_t j = 0; j < a.dim; ++j) x.col(j) = y.col(p[static_cast<std::size_t>(j)]);
  } else if (k == "pca") {
    const auto keep = static_cast<int64_t>(spec.strength);
    DIDMARK_EXPECTS(keep < a.dim, invalid_argument, "attack '", spec.text, "': K must be below the dimension ", a.dim);
    const Eigen::RowVectorXd mu = x.colwise().mean();
    const Mat c = x.rowwise() - mu;
    const Mat cov = c.transpose() * c;
    Eigen::SelfAdjointEigenSolver<Mat> es(cov);
    const Mat v = es.eigenvectors().rightCols(keep);  // eigenvalues ascend
    const Mat y = (c * v) * v.transpose();
    x = y.rowwise() + mu;
    rep.notes.push_back("projected on the top " + std::to_string(keep) + " principal components, kept in " +
                        std::to_string(a.dim) + " dims");
  } else if (k == "subset") {
    const auto keep = std::max<int64_t>(1, std::llround(spec.strength * static_cast<double>(a.rows)));
    auto order = random_permutation(a.rows, rng);
    order.resize(static_cast<std::size_t>(keep));
    std::vector<double> y(static_cast<std::size_t>(keep * a.dim));
    std::vector<int64_t> ids(static_cast<std::size_t>(keep));
    for (int64_t i = 0; i < keep; ++i) {
      const int64_t r = order[static_cast<std::size_t>(i)];
      std::copy_n(a.x.begin() + r * a.dim, a.dim, y.begin() + i * a.dim);
      ids[static_cast<std::size_t>(i)] = a.ids.empty() ? r : a.ids[static_cast<std::size_t>(r)];
    }
    a.x = std::move(y);
    a.ids = std::move(ids);
    a.rows = keep;
  } else {
    DIDMARK_THROW(Errc::invalid_argument, "attack '", spec.text, "' does not apply to arrays");
  }
  rep.rows_out = a.rows;
  rep.dim_out = a.dim;
  return rep;
}

double neighbour_recall(const ArrayData& original, const ArrayData& attacked, int k, int64_t queries, uint64_t seed,
                        int64_t* queries_used) {
  // Rows of the original that the attacked array still holds, in the attacked array's order.
  std::unordered_map<int64_t, int64_t> where;
  for (int64_t i = 0; i < original.rows; ++i)
    where[original.ids.empty() ? i : original.ids[static_cast<std::size_t>(i)]] = i;
  std::vector<int64_t> orig_row;
  for (int64_t i = 0; i < attacked.rows; ++i) {
    const int64_t id = attacked.ids.empty() ? i : attacked.ids[static_cast<std::size_t>(i)];
    const auto it = where.find(id);
    DIDMARK_EXPECTS(it != where.end(), invalid_argument, "attacked row id ", id, " is not in the original");
    orig_row.push_back(it->second);
  }
  const auto n = static_cast<int64_t>(orig_row.size());
  if (n <= k) return 0;
  auto normalized = [](Mat m) {
    for (int64_t i = 0; i < m.rows(); ++i) {
      const double s = m.row(i).norm();
      if (s > 0) m.row(i) /= s;
    }
    return m;
  };
  Mat a = normalized(Eigen::Map<const Mat>(attacked.x.data(), attacked.rows, attacked.dim));
  Mat o(n, original.dim);
  for (int64_t i = 0; i < n; ++i)
    o.row(i) = Eigen::Map<const Mat>(original.x.data(), original.rows, original.dim).row(orig_row[static_cast<std::size_t>(i)]);
  o = normalized(o);
  auto rng = attack_detail::stream(seed, 0, "recall");
  auto pick = attack_detail::random_permutation(n, rng);
  pick.resize(static_cast<std::size_t>(std::min(queries, n)));
  auto top = [&](const Mat& m, int64_t q) {
    const Eigen::VectorXd s = m * m.row(q).transpose();
    std::vector<int64_t> idx(static_cast<std::size_t>(n));
    std::iota(idx.begin(), idx.end(), int64_t{0});
    idx.erase(idx.begin() + q);
    std::partial_sort(idx.begin(), idx.begin() + k, idx.end(), [&](int64_t x, int64_t y) {
      return s(x) > s(y) || (s(x) == s(y) && x < y);
    });
    idx.resize(static_cast<std::size_t>(k));
    std::sort(idx.begin(), idx.end());
    return idx;
  };
  double sum = 0;
  for (int64_t q : pick) {
    const auto ta = top(a, q), to = top(o, q);
    std::vector<int64_t> both;
    std::set_intersection(ta.begin(), ta.end(), to.begin(), to.end(), std::back_inserter(both));
    sum += static_cast<double>(both.size()) / k;
  }
  if (queries_used) *queries_used = static_cast<int64_t>(pick.size());
  return pick.empty() ? 0 : sum / static_cast<double>(pick.size());
}

}  // namespace didmark

namespace didmark {

ArrayData read_array_data(const std::filesystem::path& npy, const std::filesystem::path& ids) {
  const NpyArray f = read_npy(npy);
  const TensorView v = f.view();
  DIDMARK_EXPECTS(v.rank() == 2, invalid_argument, "'", npy.string(), "' holds ", v.describe(),
                  "; an embedding array is N x D");
  DIDMARK_EXPECTS(v.dtype == DType::f64 || v.dtype == DType::f32 || v.dtype == DType::f16, invalid_argument, "'",
                  npy.string(), "' holds ", dtype_name(v.dtype), "; arrays are f64, f32 or f16");
  ArrayData a;
  a.rows = v.shape[0];
  a.dim = v.shape[1];
  a.dtype = v.dtype;
  a.x = OwnedTensor::copy_of("array", v).values();
  if (!ids.empty()) {
    const NpyArray fi = read_npy(ids);
    const TensorView iv = fi.view();
    DIDMARK_EXPECTS(iv.numel() == a.rows && iv.rank() <= 2 && (iv.dtype == DType::i64 || iv.dtype == DType::i32),
                    invalid_argument, "ids '", ids.string(), "' hold ", iv.describe(), "; expected ", a.rows,
                    " int64 ids, one per row of '", npy.string(), "'");
    a.ids.resize(static_cast<std::size_t>(a.rows));
    for (int64_t i = 0; i < a.rows; ++i)
      a.ids[static_cast<std::size_t>(i)] = iv.dtype == DType::i64 ? static_cast<const int64_t*>(iv.data)[i]
                                                                 : static_cast<const int32_t*>(iv.data)[i];
  }
  return a;
}

void write_array_data(const ArrayData& a, const std::filesystem::path& out, const std::filesystem::path& ids_out,
                      bool overwrite) {
  DIDMARK_EXPECTS(a.dtype == DType::f64 || a.dtype == DType::f32 || a.dtype == DType::f16, invalid_argument,
                  "'", out.string(), "': .npy arrays are written as f64, f32 or f16");
  OwnedTensor t("array", a.dtype, {a.rows, a.dim});
  t.assign(a.x);
  write_npy(out, t.view(), overwrite);
  if (!ids_out.empty()) {
    std::vector<int64_t> ids = a.ids;
    if (ids.empty()) {
      ids.resize(static_cast<std::size_t>(a.rows));
      std::iota(ids.begin(), ids.end(), int64_t{0});
    }
    write_npy(ids_out, TensorView::contiguous(ids.data(), DType::i64, {a.rows}), overwrite);
  }
}

}  // namespace didmark
