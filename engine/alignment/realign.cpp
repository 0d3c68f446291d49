// Realignment of a suspect to an owner's sketch, then the ordinary blind test.
//
// 1. Tensors are paired by name, then by a common prefix change (bert.encoder... vs
//    encoder...), then by shape and permutation-invariant descriptors.
// 2. Dimensions are recovered in the sketch's order: anchored ones are the identity; every
//    other one gathers the suspect's slices at the sketch's sampled indices of its source's
//    other axis (already recovered) and matches them, with the unmarked vectors, against the
//    signature (match.hpp).
// 3. Every marked tensor whose dimensions are all recovered is rebuilt under its original
//    name and shape: out[i, j] = suspect[pi_r(i), pi_c(j)] times sign and undone scale; slices
//    with no match and the source tensors' sampled slices are zero.
// Nothing here reads a key: what the test sees depends on the sketch and the suspect only.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cmath>
#include <map>
#include <unordered_map>

#include "alignment/architecture.hpp"
#include "alignment/common.hpp"
#include "alignment/match.hpp"
#include "didmark/alignment.hpp"
#include "didmark/error.hpp"

namespace didmark {

struct RealignedTensors::Impl {
  alignment::Arena arena;
  std::vector<NamedTensor> tensors;
  AlignmentReport report;
};

RealignedTensors::RealignedTensors() : impl_(std::make_unique<Impl>()) {}
RealignedTensors::RealignedTensors(RealignedTensors&&) noexcept = default;
RealignedTensors& RealignedTensors::operator=(RealignedTensors&&) noexcept = default;
RealignedTensors::~RealignedTensors() = default;
std::span<const NamedTensor> RealignedTensors::tensors() const noexcept { return impl_->tensors; }
const AlignmentReport& RealignedTensors::report() const noexcept { return impl_->report; }

namespace {

using namespace alignment;

struct Mapping {
  int suspect = -1;
  bool transposed = false;
  bool renamed = false;
  bool by_name = false;
  bool oriented = false;  // orientation settled by a signature, not by the shape
};

struct DimState {
  bool resolved = false;
  bool identity = true;
  bool scaled = false;
  int64_t n2 = 0;
  std::vector<int64_t> src;
  std::vector<float> sign, factor;
  int64_t matched = 0, unused = 0;
};

bool ends_with_dotted(const std::string& longer, const std::string& shorter) {
  return longer.size() > shorter.size() && longer.compare(longer.size() - shorter.size(), shorter.size(), shorter) == 0 &&
         longer[longer.size() - shorter.size() - 1] == '.';
}

std::string last_tokens(const std::string& s, int k) {
  std::size_t pos = s.size();
  for (int i = 0; i < k; ++i) {
    const auto dot = s.rfind('.', pos == 0 ? 0 : pos - 1);
    if (dot == std::string::npos || pos == 0) return s;
    pos = dot;
  }
  return s.substr(pos + 1);
}

class Realigner {
 public:
  Realigner(std::span<const NamedTensor> suspect, const AlignmentSketch& sk, AlignmentOps& ops)
      : sus_(suspect), sk_(sk), ops_(ops), map_(sk.tensors.size()), dims_(sk.dims.size()), tried_(sk.dims.size(), 0) {}

  void map_tensors();
  /// Choose the tensors to test (spread over the layers, until the expected z reaches
  /// target_z; 0: all), recovering the dimensions they need on the way.
  void select(double target_z);
  void settle_orientation();
  /// The realigned tensors (materialize: copies where needed; otherwise only the counts).
  void build(RealignedTensors::Impl& out, bool materialize);

  /// Some recovered dimension is not the identity, or a tensor was renamed or transposed.
  bool moved() {
    for (std::size_t d = 0; d < dims_.size(); ++d)
      if (dims_[d].resolved && !sk_.dims[d].anchored && !dims_[d].identity) return true;
    for (const auto& m : map_)
      if (m.suspect >= 0 && (m.renamed || m.transposed)) return true;
    for (int k : selected_)
      if (folded(k)) return true;
    return false;
  }

  /// A selected convolution's channels were scaled or flipped into its batch norm.
  bool folded(int k) {
    const SketchTensor& st = sk_.tensors[static_cast<std::size_t>(k)];
    const DimState& rows = dims_[static_cast<std::size_t>(st.dims[0])];
    if (st.bn_gain.empty() || !rows.resolved || rows.src.size() != st.bn_gain.size()) return false;
    std::vector<float> mul(rows.src.size(), 1.0f);
    unfold_batch_norm(k, rows.src, mul, false);
    for (float x : mul)
      if (x != 1.0f) return true;
    return false;
  }

  int mapped_by_name() const {
    int n = 0;
    for (const auto& m : map_) n += m.by_name ? 1 : 0;
    return n;
  }

  AlignmentReport report;

 private:
  std::array<int64_t, 2> sus_shape(int k) const { return matrix_shape(sus_[static_cast<std::size_t>(map_[static_cast<std::size_t>(k)].suspect)].view); }
  /// Length of sketch tensor k's axis a in the suspect (-1 when unmapped).
  int64_t sus_len(int k, int a) const;
  bool shape_fits(const SketchTensor& st, int64_t r, int64_t c) const;
  void orient(int k);
  float multiplier(int d, int k, int a, int64_t i) const;
  bool recover(int d);
  /// Recover dimension d (and what its source needs) once; true when it is known.
  bool ensure(int d);
  struct Columns {
    int64_t n2 = -1;
    int m = 0, scale_cols = 0;
    std::vector<float> a, b;
  };
  Columns columns(int d, bool use_source, bool transposed);
  /// count: add what was undone to the report.
  void unfold_batch_norm(int k, const std::vector<int64_t>& src, std::vector<float>& mul, bool count = true);
  const Descriptors& suspect_desc(int u);

  std::span<const NamedTensor> sus_;
  const AlignmentSketch& sk_;
  AlignmentOps& ops_;
  std::vector<Mapping> map_;
  std::vector<DimState> dims_;
  std::vector<uint8_t> tried_;
  std::vector<int> selected_;
  std::map<int, Descriptors> desc_cache_;
};

int64_t Realigner::sus_len(int k, int a) const {
  const Mapping& m = map_[static_cast<std::size_t>(k)];
  if (m.suspect < 0) return -1;
  const TensorView& v = sus_[static_cast<std::size_t>(m.suspect)].view;
  if (sk_.tensors[static_cast<std::size_t>(k)].shape.size() == 1) return v.numel();
  const auto s = matrix_shape(v);
  // A convolution's axis 1 counts channels, kh*kw matrix columns each (never transposed).
  return s[static_cast<std::size_t>(m.transposed ? 1 - a : a)] / (a == 1 && !m.transposed ? group_of(v.shape) : 1);
}

bool Realigner::shape_fits(const SketchTensor& st, int64_t r, int64_t c) const {
  const int64_t want[2] = {st.rows(), st.cols()};
  const int64_t have[2] = {r, c};
  for (int a = 0; a < 2; ++a) {
    if (want[a] == have[a]) continue;
    const int d = st.dims[static_cast<std::size_t>(a)];
    // Dummy or removed neurons change a free dimension's size; an anchored one never moves.
    if (d < 0 || sk_.dims[static_cast<std::size_t>(d)].anchored) return false;
    if (have[a] < want[a] / 2 || have[a] > 2 * want[a]) return false;
  }
  return true;
}

void Realigner::orient(int k) {
  Mapping& m = map_[static_cast<std::size_t>(k)];
  const SketchTensor& st = sk_.tensors[static_cast<std::size_t>(k)];
  if (m.suspect < 0) return;
  if (st.shape.size() > 2) {
    // A convolution keeps its kernel and its layout: only channel counts may differ.
    const auto& vs = sus_[static_cast<std::size_t>(m.suspect)].view.shape;
    const bool same_kernel = vs.size() == st.shape.size() && std::equal(vs.begin() + 2, vs.end(), st.shape.begin() + 2);
    m.transposed = false;
    if (!same_kernel || !shape_fits(st, vs[0], vs[1] * st.group())) m.suspect = -1;
    return;
  }
  if (st.shape.size() != 2) return;
  const auto [r, c] = matrix_shape(sus_[static_cast<std::size_t>(m.suspect)].view);
  const bool exact = r == st.rows() && c == st.cols(), exact_t = r == st.cols() && c == st.rows();
  if (exact) {
    m.transposed = false;
  } else if (exact_t) {
    m.transposed = true;
  } else if (shape_fits(st, r, c)) {
    m.transposed = false;
  } else if (shape_fits(st, c, r)) {
    m.transposed = true;
  } else {
    m.suspect = -1;  // same name, incompatible shape
  }
}

void Realigner::map_tensors() {
  std::unordered_map<std::string, int> by_name;
  for (std::size_t u = 0; u < sus_.size(); ++u) by_name.emplace(sus_[u].name, static_cast<int>(u));
  std::vector<uint8_t> taken(sus_.size(), 0);
  for (std::size_t k = 0; k < sk_.tensors.size(); ++k) {
    auto it = by_name.find(sk_.tensors[k].name);
    if (it == by_name.end()) continue;
    map_[k].suspect = it->second;
    map_[k].by_name = true;
    taken[static_cast<std::size_t>(it->second)] = 1;
  }

  // A prefix added or removed everywhere (bert.encoder.layer.0... vs encoder.layer.0...): the
  // most frequent (strip, add) rule among names whose dotted ends agree.
  std::unordered_map<std::string, std::vector<int>> sus_by_end;
  for (std::size_t u = 0; u < sus_.size(); ++u)
    if (!taken[u]) sus_by_end[last_tokens(sus_[u].name, 2)].push_back(static_cast<int>(u));
  std::map<std::pair<std::string, std::string>, int> votes;
  for (std::size_t k = 0; k < sk_.tensors.size(); ++k) {
    if (map_[k].suspect >= 0) continue;
    const std::string& s = sk_.tensors[k].name;
    auto it = sus_by_end.find(last_tokens(s, 2));
    if (it == sus_by_end.end()) continue;
    for (int u : it->second) {
      const std::string& n = sus_[static_cast<std::size_t>(u)].name;
      if (ends_with_dotted(n, s)) votes[{"", n.substr(0, n.size() - s.size())}] += 1;
      if (ends_with_dotted(s, n)) votes[{s.substr(0, s.size() - n.size()), ""}] += 1;
    }
  }
  if (!votes.empty()) {
    const auto best = std::max_element(votes.begin(), votes.end(),
                                       [](const auto& a, const auto& b) { return a.second < b.second; });
    const auto& [strip, add] = best->first;
    for (std::size_t k = 0; k < sk_.tensors.size(); ++k) {
      const std::string& s = sk_.tensors[k].name;
      if (map_[k].suspect >= 0 || s.compare(0, strip.size(), strip) != 0) continue;
      auto it = by_name.find(add + s.substr(strip.size()));
      if (it == by_name.end() || taken[static_cast<std::size_t>(it->second)]) continue;
      map_[k].suspect = it->second;
      map_[k].by_name = map_[k].renamed = true;
      taken[static_cast<std::size_t>(it->second)] = 1;
    }
  }
  for (std::size_t k = 0; k < sk_.tensors.size(); ++k) orient(static_cast<int>(k));

  // By content: a marked matrix (or a dimension's source) still unpaired takes the unpaired
  // suspect matrix of a compatible shape whose RMS profiles are closest, if clearly closer than
  // the runner-up.
  std::vector<uint8_t> source(sk_.tensors.size(), 0);
  for (const auto& d : sk_.dims)
    if (d.source >= 0) source[static_cast<std::size_t>(d.source)] = 1;
  for (std::size_t k = 0; k < sk_.tensors.size(); ++k) {
    const SketchTensor& st = sk_.tensors[k];
    if (map_[k].suspect >= 0 || st.shape.size() != 2 || !(st.marked || source[k]) || st.row_quantiles.empty() ||
        st.col_quantiles.empty())
      continue;
    double best = 1e9, second = 1e9;
    int best_u = -1;
    bool best_t = false;
    for (std::size_t u = 0; u < sus_.size(); ++u) {
      const TensorView& v = sus_[u].view;
      if (taken[u] || v.rank() != 2 || !is_watermarkable(v.dtype) || v.numel() == 0) continue;
      const auto [r, c] = matrix_shape(v);
      for (int t = 0; t < 2; ++t) {
        if (!(t == 0 ? shape_fits(st, r, c) : shape_fits(st, c, r))) continue;
        const Descriptors& d = suspect_desc(static_cast<int>(u));
        const double dist = t == 0 ? profile_distance(st.row_quantiles, d.row_q) + profile_distance(st.col_quantiles, d.col_q)
                                   : profile_distance(st.row_quantiles, d.col_q) + profile_distance(st.col_quantiles, d.row_q);
        if (dist < best) {
          second = best;
          best = dist;
          best_u = static_cast<int>(u);
          best_t = t == 1;
        } else if (dist < second) {
          second = dist;
        }
      }
    }
    if (best_u >= 0 && best < 0.1 && best < 0.5 * second) {
      map_[k].suspect = best_u;
      map_[k].transposed = best_t;
      map_[k].renamed = true;
      taken[static_cast<std::size_t>(best_u)] = 1;
    }
  }
  for (const auto& m : map_) {
    report.tensors_renamed += m.renamed ? 1 : 0;
  }
}

const Descriptors& Realigner::suspect_desc(int u) {
  auto it = desc_cache_.find(u);
  if (it == desc_cache_.end()) it = desc_cache_.emplace(u, describe_tensor(ops_, sus_[static_cast<std::size_t>(u)].view)).first;
  return it->second;
}

float Realigner::multiplier(int d, int k, int a, int64_t i) const {
  const DimState& s = dims_[static_cast<std::size_t>(d)];
  const int role = sk_.tensors[static_cast<std::size_t>(k)].roles[static_cast<std::size_t>(a)];
  if (role == 0) return 1.0f;
  float m = s.sign[static_cast<std::size_t>(i)];
  if (s.scaled) {
    const float f = s.factor[static_cast<std::size_t>(i)];
    m *= role > 0 ? 1.0f / f : f;
  }
  return m;
}

Realigner::Columns Realigner::columns(int d, bool use_source, bool transposed) {
  const SketchDim& sd = sk_.dims[static_cast<std::size_t>(d)];
  const auto n = static_cast<std::size_t>(sd.size);
  Columns out;
  std::vector<std::vector<float>> ca, cb;
  if (use_source) {
    const int k = sd.source, sa = sd.source_axis, oa = 1 - sa;
    const int od = sk_.tensors[static_cast<std::size_t>(k)].dims[static_cast<std::size_t>(oa)];
    const DimState& other = dims_[static_cast<std::size_t>(od)];
    const TensorView& v = sus_[static_cast<std::size_t>(map_[static_cast<std::size_t>(k)].suspect)].view;
    if (!is_watermarkable(v.dtype)) return out;  // e.g. stored as int8 codes: nothing to compare
    const auto shape = matrix_shape(v);
    const int s_sa = transposed ? 1 - sa : sa, s_oa = 1 - s_sa;
    const int64_t taps = s_oa == 1 ? group_of(v.shape) : 1;  // a convolution: kh*kw columns per channel
    if (shape[static_cast<std::size_t>(s_oa)] != other.n2 * taps) return out;
    const int64_t n2 = shape[static_cast<std::size_t>(s_sa)];
    const std::size_t S = sd.samples.size();
    std::vector<int64_t> idx(S);
    for (std::size_t s = 0; s < S; ++s) idx[s] = column_of(sd.samples[s], taps, other.src);
    std::vector<float> g(S * static_cast<std::size_t>(n2));
    ops_.gather(v, s_oa, idx, g);
    // Sampled rows of a convolution carry its own folds into its batch norm: undo them first.
    std::vector<float> folds;
    if (oa == 0 && !sk_.tensors[static_cast<std::size_t>(k)].bn_gain.empty() && other.src.size() == sk_.tensors[static_cast<std::size_t>(k)].bn_gain.size()) {
      folds.assign(other.src.size(), 1.0f);
      unfold_batch_norm(k, other.src, folds, false);
    }
    for (std::size_t s = 0; s < S; ++s) {
      std::vector<float> a(n), b(static_cast<std::size_t>(n2));
      if (idx[s] >= 0) {
        for (std::size_t i = 0; i < n; ++i) a[i] = detail::dequantize_signature(sd.signature[i * S + s], sd.scales[i]);
        float mult = multiplier(od, k, oa, sd.samples[s] / taps);
        if (!folds.empty()) mult *= folds[static_cast<std::size_t>(sd.samples[s])];
        for (std::size_t j = 0; j < static_cast<std::size_t>(n2); ++j) b[j] = g[s * static_cast<std::size_t>(n2) + j] * mult;
      }
      ca.push_back(std::move(a));
      cb.push_back(std::move(b));
    }
    out.n2 = n2;
    out.scale_cols = static_cast<int>(S);
  }
  for (std::size_t c = 0; c < sd.vectors.size(); ++c) {
    const int vk = sd.vectors[c];
    const int u = map_[static_cast<std::size_t>(vk)].suspect;
    if (u < 0) continue;
    const TensorView& v = sus_[static_cast<std::size_t>(u)].view;
    if (!is_watermarkable(v.dtype) || v.rank() != 1) continue;
    if (out.n2 < 0) out.n2 = v.numel();
    if (v.numel() != out.n2) continue;
    std::vector<float> a(n), b(static_cast<std::size_t>(out.n2));
    const int64_t zero = 0;
    ops_.gather(v, 0, std::span(&zero, 1), b);
    for (std::size_t i = 0; i < n; ++i) a[i] = sd.vector_values[i * sd.vectors.size() + c];
    ca.push_back(std::move(a));
    cb.push_back(std::move(b));
  }
  if (out.n2 < 0) return out;
  out.m = static_cast<int>(ca.size());
  out.a.assign(n * static_cast<std::size_t>(out.m), 0.0f);
  out.b.assign(static_cast<std::size_t>(out.n2) * static_cast<std::size_t>(out.m), 0.0f);
  for (int c = 0; c < out.m; ++c) {
    for (std::size_t i = 0; i < n; ++i) out.a[i * static_cast<std::size_t>(out.m) + static_cast<std::size_t>(c)] = ca[static_cast<std::size_t>(c)][i];
    for (std::size_t j = 0; j < static_cast<std::size_t>(out.n2); ++j)
      out.b[j * static_cast<std::size_t>(out.m) + static_cast<std::size_t>(c)] = cb[static_cast<std::size_t>(c)][j];
  }
  return out;
}

// A channel's rows scaled by s*a and folded into its batch norm (weight x s, running mean x s*a,
// running variance x a^2): the suspect's gain reads s/a times the sketch's, so the ratio undoes
// the flip and the scale. The norm is found by the suspect's own names; nothing reads a key.
void Realigner::unfold_batch_norm(int k, const std::vector<int64_t>& src, std::vector<float>& mul, bool count) {
  const SketchTensor& st = sk_.tensors[static_cast<std::size_t>(k)];
  const NamedTensor& conv = sus_[static_cast<std::size_t>(map_[static_cast<std::size_t>(k)].suspect)];
  if (st.bn_gain.size() != src.size() || conv.view.rank() < 1) return;
  const auto gain = batch_norm_gains(ops_, sus_, conv.name, conv.view.shape[0]);
  if (gain.empty()) return;
  for (std::size_t i = 0; i < src.size(); ++i) {
    if (src[i] < 0 || mul[i] == 0.0f || st.bn_gain[i] == 0.0f) continue;
    double r = static_cast<double>(gain[static_cast<std::size_t>(src[i])]) / static_cast<double>(st.bn_gain[i]);
    if (!std::isfinite(r) || r == 0.0 || std::fabs(r - 1.0) < 1e-3) continue;
    if (count && r < 0) ++report.sign_flips;
    if (count && std::fabs(std::fabs(r) - 1.0) >= 1e-3) report.rescaled = true;
    r = std::copysign(std::clamp(std::fabs(r), 1.0 / 16, 16.0), r);
    mul[i] = static_cast<float>(static_cast<double>(mul[i]) * r);
  }
}

bool Realigner::recover(int d) {
  const SketchDim& sd = sk_.dims[static_cast<std::size_t>(d)];
  DimState& st = dims_[static_cast<std::size_t>(d)];
  const int64_t n = sd.size;
  bool use_source = false;
  if (sd.source >= 0 && map_[static_cast<std::size_t>(sd.source)].suspect >= 0) {
    const int od = sk_.tensors[static_cast<std::size_t>(sd.source)].dims[static_cast<std::size_t>(1 - sd.source_axis)];
    use_source = dims_[static_cast<std::size_t>(od)].resolved;
  }
  Mapping& src_map = map_[static_cast<std::size_t>(std::max(sd.source, 0))];
  bool transposed = use_source && src_map.transposed;
  Columns cols = columns(d, use_source, transposed);
  MatchResult best;
  // Most indices must find their partner: a few spurious pairs above the threshold happen
  // between unrelated matrices, half of them do not.
  auto good = [&](const MatchResult& r) { return r.matched >= std::max<int64_t>(1, (n + 1) / 2); };
  if (cols.n2 >= 0 && cols.m > 0) {
    best = match_signatures({n, cols.n2, cols.m, cols.a.data(), cols.b.data(), cols.scale_cols});
  }
  // A square source may be stored transposed: if the stored orientation does not match well,
  // try the other one.
  if (use_source) {
    const SketchTensor& t = sk_.tensors[static_cast<std::size_t>(sd.source)];
    const auto s = sus_shape(sd.source);
    const bool square = t.shape.size() == 2 && (s[0] == s[1] || t.rows() == t.cols());
    if (square && !good(best)) {
      Columns alt = columns(d, true, !transposed);
      if (alt.n2 >= 0 && alt.m > 0) {
        MatchResult r = match_signatures({n, alt.n2, alt.m, alt.a.data(), alt.b.data(), alt.scale_cols});
        if (r.matched > best.matched) {
          best = std::move(r);
          cols = std::move(alt);
          transposed = !transposed;
        }
      }
    }
    if (good(best)) {
      src_map.transposed = transposed;
      src_map.oriented = true;
    }
  }
  char note[256];
  if (!good(best)) {
    std::snprintf(note, sizeof note, "%s: not recovered (%lld of %lld indices matched)", sd.label.c_str(),
                  static_cast<long long>(best.matched), static_cast<long long>(n));
    report.notes.push_back(note);
    return false;
  }
  st.resolved = true;
  st.n2 = cols.n2;
  st.src = best.src;
  st.sign = best.sign;
  st.matched = best.matched;
  st.unused = best.suspect_unused;
  // The scale a thief applied to this index's producing slice (ReLU-family rescaling). Only
  // undone when the indices really differ: a uniform factor (pruning, quantization) is not
  // an attack on positions and does not change z.
  st.factor.assign(static_cast<std::size_t>(n), 1.0f);
  if (use_source && cols.scale_cols > 0) {
    const bool out_side = sk_.tensors[static_cast<std::size_t>(sd.source)].roles[static_cast<std::size_t>(sd.source_axis)] > 0;
    std::vector<double> logs;
    for (int64_t i = 0; i < n; ++i)
      if (best.src[static_cast<std::size_t>(i)] >= 0 && best.scale[static_cast<std::size_t>(i)] > 0)
        logs.push_back(std::log(static_cast<double>(best.scale[static_cast<std::size_t>(i)])));
    if (logs.size() >= 8) {
      std::vector<double> sorted = logs;
      std::nth_element(sorted.begin(), sorted.begin() + static_cast<std::ptrdiff_t>(sorted.size() / 2), sorted.end());
      const double med = sorted[sorted.size() / 2];
      double var = 0;
      for (double l : logs) var += (l - med) * (l - med);
      st.scaled = std::sqrt(var / static_cast<double>(logs.size())) > 0.15;
      if (st.scaled) {
        report.rescaled = true;
        for (int64_t i = 0; i < n; ++i) {
          if (best.src[static_cast<std::size_t>(i)] < 0 || !(best.scale[static_cast<std::size_t>(i)] > 0)) continue;
          const double f = std::exp(std::log(static_cast<double>(best.scale[static_cast<std::size_t>(i)])) - med);
          st.factor[static_cast<std::size_t>(i)] = static_cast<float>(out_side ? f : 1.0 / f);
        }
      }
    }
  }
  int64_t moved = 0, flips = 0;
  for (int64_t i = 0; i < n; ++i) {
    moved += st.src[static_cast<std::size_t>(i)] != i ? 1 : 0;
    flips += st.sign[static_cast<std::size_t>(i)] < 0 ? 1 : 0;
  }
  report.sign_flips += flips;
  st.identity = moved == 0 && flips == 0 && !st.scaled && cols.n2 == n;
  std::snprintf(note, sizeof note, "%s: %lld of %lld indices matched (suspect has %lld), median score %.3f, %lld moved, %lld sign flips%s",
                sd.label.c_str(), static_cast<long long>(best.matched), static_cast<long long>(n),
                static_cast<long long>(cols.n2), best.median_score, static_cast<long long>(moved),
                static_cast<long long>(flips), st.scaled ? ", rescaled" : "");
  report.notes.push_back(note);
  return true;
}

bool Realigner::ensure(int d) {
  if (d < 0) return false;
  DimState& st = dims_[static_cast<std::size_t>(d)];
  if (tried_[static_cast<std::size_t>(d)]) return st.resolved;
  tried_[static_cast<std::size_t>(d)] = 1;
  const SketchDim& sd = sk_.dims[static_cast<std::size_t>(d)];
  if (sd.anchored) {
    // Fixed order; the suspect may hold more entries (an extended vocabulary) but not fewer.
    const int64_t n2 = [&] {
      for (std::size_t k = 0; k < sk_.tensors.size(); ++k)
        for (int a = 0; a < 2; ++a)
          if (sk_.tensors[k].dims[static_cast<std::size_t>(a)] == d && map_[k].suspect >= 0)
            return sus_len(static_cast<int>(k), a);
      return sd.size;
    }();
    st.resolved = n2 >= sd.size;
    st.n2 = n2;
    st.src.resize(static_cast<std::size_t>(sd.size));
    for (int64_t i = 0; i < sd.size; ++i) st.src[static_cast<std::size_t>(i)] = i;
    st.sign.assign(static_cast<std::size_t>(sd.size), 1.0f);
    st.factor.assign(static_cast<std::size_t>(sd.size), 1.0f);
    return st.resolved;
  }
  if (!sd.recoverable()) return false;
  if (sd.source >= 0) ensure(sk_.tensors[static_cast<std::size_t>(sd.source)].dims[static_cast<std::size_t>(1 - sd.source_axis)]);
  const bool ok = recover(d);
  (ok ? report.dims_recovered : report.dims_failed) += 1;
  return ok;
}

void Realigner::select(double target_z) {
  // Global tensors (embeddings, heads) first, then layers in spread order, so that a budget
  // stops on tensors from all over the model.
  std::vector<int> layer(sk_.tensors.size(), -1);
  int L = 0;
  for (std::size_t k = 0; k < sk_.tensors.size(); ++k)
    for (int a = 0; a < 2; ++a) {
      const int d = sk_.tensors[k].dims[static_cast<std::size_t>(a)];
      if (d >= 0) layer[k] = std::max(layer[k], layer_of(sk_.dims[static_cast<std::size_t>(d)].label));
      L = std::max(L, layer[k] + 1);
    }
  std::vector<int> rank(static_cast<std::size_t>(L) + 1, 0);
  const auto spread = spread_layers(L);
  for (std::size_t i = 0; i < spread.size(); ++i) rank[static_cast<std::size_t>(spread[i]) + 1] = static_cast<int>(i) + 1;
  std::vector<int> order;
  for (std::size_t k = 0; k < sk_.tensors.size(); ++k) {
    const SketchTensor& st = sk_.tensors[k];
    if (st.marked && st.shape.size() >= 2 && map_[k].suspect >= 0 && st.dims[0] >= 0 && st.dims[1] >= 0 &&
        is_watermarkable(sus_[static_cast<std::size_t>(map_[k].suspect)].view.dtype))
      order.push_back(static_cast<int>(k));
  }
  std::stable_sort(order.begin(), order.end(), [&](int a, int b) {
    return rank[static_cast<std::size_t>(layer[static_cast<std::size_t>(a)] + 1)] <
           rank[static_cast<std::size_t>(layer[static_cast<std::size_t>(b)] + 1)];
  });
  const double need = target_z > 0 && sk_.strength > 0 ? std::pow(target_z / sk_.strength, 2) : HUGE_VAL;
  double have = 0;
  for (int k : order) {
    if (have >= need) break;
    const SketchTensor& st = sk_.tensors[static_cast<std::size_t>(k)];
    if (!ensure(st.dims[0]) || !ensure(st.dims[1])) continue;
    selected_.push_back(k);
    have += static_cast<double>(st.numel());
  }
  std::sort(selected_.begin(), selected_.end());
}

void Realigner::settle_orientation() {
  // Square matrices that were no dimension's source follow the convention the other matrices
  // of the same role show (all Linear weights transposed, as Conv1D stores them).
  int votes[2][2] = {{0, 0}, {0, 0}};  // [out_axis][transposed]
  for (std::size_t k = 0; k < sk_.tensors.size(); ++k) {
    const SketchTensor& st = sk_.tensors[k];
    if (map_[k].suspect < 0 || st.shape.size() != 2 || (st.rows() == st.cols() && !map_[k].oriented)) continue;
    votes[st.out_axis][map_[k].transposed ? 1 : 0] += 1;
  }
  for (std::size_t k = 0; k < sk_.tensors.size(); ++k) {
    const SketchTensor& st = sk_.tensors[k];
    if (map_[k].suspect < 0 || st.shape.size() != 2 || st.rows() != st.cols() || map_[k].oriented) continue;
    map_[k].transposed = votes[st.out_axis][1] > votes[st.out_axis][0];
  }
}

void Realigner::build(RealignedTensors::Impl& out, bool materialize) {
  struct Job {
    int k;
    std::vector<int64_t> row_src, col_src;
    std::vector<float> row_mul, col_mul;
    bool unchanged;
  };
  std::vector<Job> jobs;
  std::vector<std::vector<std::pair<int, int64_t>>> held(sk_.tensors.size());  // (axis, index) held out
  for (std::size_t d = 0; d < sk_.dims.size(); ++d) {
    const SketchDim& sd = sk_.dims[d];
    if (sd.source < 0 || !dims_[d].resolved) continue;
    for (int64_t s : sd.samples) held[static_cast<std::size_t>(sd.source)].push_back({1 - sd.source_axis, s});
  }
  for (const int sel : selected_) {
    const auto k = static_cast<std::size_t>(sel);
    const SketchTensor& st = sk_.tensors[k];
    const Mapping& m = map_[k];
    const DimState& rd = dims_[static_cast<std::size_t>(st.dims[0])];
    const DimState& cd = dims_[static_cast<std::size_t>(st.dims[1])];
    if (!rd.resolved || !cd.resolved) continue;
    const auto ss = matrix_shape(sus_[static_cast<std::size_t>(m.suspect)].view);
    const int64_t g = st.group();  // columns per channel of a convolution
    if (ss[m.transposed ? 1 : 0] != rd.n2 || ss[m.transposed ? 0 : 1] != cd.n2 * g) continue;
    Job j;
    j.k = static_cast<int>(k);
    j.row_src = rd.src;
    j.col_src = cd.src;
    j.row_mul = std::vector<float>(j.row_src.size(), 0.0f);
    j.col_mul = std::vector<float>(j.col_src.size(), 0.0f);
    for (std::size_t i = 0; i < j.row_src.size(); ++i)
      j.row_mul[i] = j.row_src[i] < 0 ? 0.0f : multiplier(st.dims[0], static_cast<int>(k), 0, static_cast<int64_t>(i));
    for (std::size_t i = 0; i < j.col_src.size(); ++i)
      j.col_mul[i] = j.col_src[i] < 0 ? 0.0f : multiplier(st.dims[1], static_cast<int>(k), 1, static_cast<int64_t>(i));
    if (!st.bn_gain.empty()) unfold_batch_norm(static_cast<int>(k), j.row_src, j.row_mul);
    if (g > 1) {
      // Channel c's kh*kw columns move together.
      std::vector<int64_t> src(j.col_src.size() * static_cast<std::size_t>(g));
      std::vector<float> mul(src.size());
      for (std::size_t c = 0; c < j.col_src.size(); ++c)
        for (int64_t r = 0; r < g; ++r) {
          const std::size_t e = c * static_cast<std::size_t>(g) + static_cast<std::size_t>(r);
          src[e] = j.col_src[c] < 0 ? -1 : j.col_src[c] * g + r;
          mul[e] = j.col_mul[c];
        }
      j.col_src = std::move(src);
      j.col_mul = std::move(mul);
    }
    for (const auto& [axis, idx] : held[k]) {
      auto& mul = axis == 0 ? j.row_mul : j.col_mul;
      const auto e = static_cast<std::size_t>(idx);
      if (mul[e] != 0.0f) ++report.rows_held_out;
      mul[e] = 0.0f;
    }
    bool unchanged = !m.transposed && ss[0] == st.rows() && ss[1] == st.cols();
    int64_t moved = 0, dropped = 0;
    for (int a = 0; a < 2; ++a) {
      const auto& src = a == 0 ? j.row_src : j.col_src;
      const auto& mul = a == 0 ? j.row_mul : j.col_mul;
      const DimState& ds = a == 0 ? rd : cd;
      const int64_t per = a == 1 ? g : 1;  // count channels, not kernel taps
      for (std::size_t i = 0; i < src.size(); ++i) {
        unchanged = unchanged && src[i] == static_cast<int64_t>(i) && mul[i] == 1.0f;
        if (static_cast<int64_t>(i) % per != 0) continue;
        moved += src[i] >= 0 && src[i] != static_cast<int64_t>(i) ? 1 : 0;
        dropped += src[i] < 0 ? 1 : 0;
      }
      dropped += sk_.dims[static_cast<std::size_t>(st.dims[static_cast<std::size_t>(a)])].anchored ? 0 : ds.unused;
    }
    report.rows_moved += moved;
    report.rows_dropped += dropped;
    report.tensors_transposed += m.transposed ? 1 : 0;
    j.unchanged = unchanged;
    jobs.push_back(std::move(j));
  }
  report.tensors_matched = static_cast<int>(jobs.size());
  if (!materialize) return;
  std::size_t floats = 0;
  for (const Job& j : jobs)
    if (!j.unchanged) floats += (static_cast<std::size_t>(sk_.tensors[static_cast<std::size_t>(j.k)].numel()) + 15) & ~std::size_t{15};
  out.arena = Arena(floats);
  for (const Job& j : jobs) {
    const SketchTensor& st = sk_.tensors[static_cast<std::size_t>(j.k)];
    const Mapping& m = map_[static_cast<std::size_t>(j.k)];
    const TensorView& src = sus_[static_cast<std::size_t>(m.suspect)].view;
    if (j.unchanged) {
      out.tensors.push_back({st.name, src});
      continue;
    }
    TensorView o = TensorView::contiguous(out.arena.take(static_cast<std::size_t>(st.numel())), DType::f32, st.shape);
    ops_.realign(src, m.transposed, j.row_src, j.col_src, j.row_mul, j.col_mul, o);
    out.tensors.push_back({st.name, o});
  }
}

}  // namespace

RealignedTensors realign_for_owner(std::span<const NamedTensor> suspect, const AlignmentSketch& sketch,
                                   const WatermarkOptions& options, Backend& backend, const RealignOptions& how) {
  (void)options;  // eligibility is the sketch's; the options apply to the test that follows
  DIDMARK_EXPECTS(how.target_z >= 0 && std::isfinite(how.target_z), invalid_argument,
                  "realignment target z must be a finite number >= 0, got ", how.target_z);
  const auto t0 = std::chrono::steady_clock::now();
  DIDMARK_EXPECTS(sketch.kind == SketchKind::checkpoint, invalid_argument,
                  "this is an array sketch; a checkpoint needs the sketch made with its own embed");
  for (const auto& t : suspect) {
    validate_view(t.view, detail::concat("tensor '", t.name, "'"));
    if (is_watermarkable(t.view.dtype))
      DIDMARK_EXPECTS(t.view.is_contiguous(), unsupported, "tensor '", t.name, "' is not contiguous");
  }
  alignment::AlignmentOps& ops = backend.alignment_ops();
  Realigner r(suspect, sketch, ops);
  double phase[3] = {0, 0, 0};  // names, dimensions, copies (ms)
  auto tt = std::chrono::steady_clock::now();
  auto lap = [&](int i) {
    const auto now = std::chrono::steady_clock::now();
    phase[i] = std::chrono::duration<double, std::milli>(now - tt).count();
    tt = now;
  };
  r.map_tensors();
  lap(0);
  r.select(how.target_z);
  lap(1);
  r.settle_orientation();
  DIDMARK_EXPECTS(r.mapped_by_name() > 0 || r.report.dims_recovered > 0, invalid_argument,
                  "the sketch does not fit this model: none of its tensors is here by name and no dimension could "
                  "be recovered (a sketch of another architecture?)");
  RealignedTensors out;
  // Whether anything moved is known before a byte is copied: when nothing did, the result is
  // the suspect itself (the ordinary test), and no realigned copy is built.
  const bool moved = r.moved();
  r.build(out.impl(), moved);
  lap(2);
  AlignmentReport& rep = r.report;
  rep.realigned = moved && rep.tensors_matched > 0;
  if (!rep.realigned) {
    out.impl().tensors.assign(suspect.begin(), suspect.end());
    out.impl().arena = alignment::Arena();
  }
  rep.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  char note[160];
  std::snprintf(note, sizeof note, "time: names %.1f ms, dimensions %.1f ms, realigned copies %.1f ms", phase[0], phase[1],
                phase[2]);
  rep.notes.push_back(note);
  out.impl().report = std::move(rep);
  return out;
}

void release_realignment_buffers() noexcept { alignment::release_spare_arena(); }

std::vector<VerifyReport> verify_realigned(std::span<const NamedTensor> suspect, const AlignmentSketch& sketch,
                                           std::span<const Claim> claims, const WatermarkOptions& options,
                                           Backend& backend, AlignmentReport* how, const RealignOptions& ro) {
  RealignedTensors r = realign_for_owner(suspect, sketch, options, backend, ro);
  if (how) *how = r.report();
  if (r.report().realigned) return verify_many(r.tensors(), claims, options, backend);
  return verify_many(suspect, claims, options, backend);
}

std::vector<VerifyReport> verify_checkpoint_realigned(const std::filesystem::path& input, CheckpointFormat format,
                                                      const AlignmentSketch& sketch, std::span<const Claim> claims,
                                                      const WatermarkOptions& options, Backend& backend,
                                                      AlignmentReport* how, const RealignOptions& ro) {
  const CheckpointReader reader = CheckpointReader::open(input, format);
  return verify_realigned(reader.tensors(), sketch, claims, options, backend, how, ro);
}

AlignmentSketch sketch_checkpoint(const std::filesystem::path& input, CheckpointFormat format, std::string did,
                                  const SketchOptions& options, Backend& backend) {
  const CheckpointReader reader = CheckpointReader::open(input, format);
  return make_sketch(reader.tensors(), std::move(did), options, backend);
}

}  // namespace didmark
