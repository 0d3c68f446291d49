// Making a sketch of a marked model: dimensions from the names, a recovery order from the
// anchored dimensions outwards, a signature per recovered dimension.
#include <algorithm>
#include <cmath>
#include <map>
#include <set>

#include "alignment/architecture.hpp"
#include "alignment/common.hpp"
#include "didmark/error.hpp"
#include "watermark/eligibility.hpp"

namespace didmark {

using alignment::AlignmentOps;

std::string_view sketch_kind_name(SketchKind k) noexcept { return k == SketchKind::array ? "array" : "checkpoint"; }

int64_t SketchTensor::cols() const noexcept { return alignment::cols_of(shape); }

int64_t SketchTensor::numel() const noexcept {
  int64_t n = 1;
  for (int64_t s : shape) n *= s;
  return n;
}

int64_t SketchTensor::group() const noexcept { return alignment::group_of(shape); }

int AlignmentSketch::find_tensor(std::string_view name) const noexcept {
  for (std::size_t i = 0; i < tensors.size(); ++i)
    if (tensors[i].name == name) return static_cast<int>(i);
  return -1;
}

uint64_t AlignmentSketch::bytes() const { return serialize().size(); }

double AlignmentSketch::fraction() const {
  return model_bytes > 0 ? static_cast<double>(bytes()) / static_cast<double>(model_bytes) : 0.0;
}

namespace {

bool is_float(DType t) { return is_watermarkable(t); }

/// The module a tensor belongs to: its name without the last dotted part.
std::string module_of(const std::string& name) {
  const auto dot = name.rfind('.');
  return dot == std::string::npos ? std::string() : name.substr(0, dot);
}

struct Plan {
  std::vector<int> order;  // dims in recovery order (anchored first)
  std::vector<int> source, source_axis;
  std::vector<std::vector<int>> vectors;
};

/// Sources and recovery order: a dimension is recovered from a tensor one of whose axes lies in
/// it while the other axis' dimension is already known. Unmarked sources are preferred (their
/// values carry no mark, so nothing has to be held out), then sources whose sampled slices are
/// rows (a contiguous read), then the longest other axis.
Plan plan_recovery(const AlignmentSketch& sk) {
  const std::size_t D = sk.dims.size();
  Plan p;
  p.source.assign(D, -1);
  p.source_axis.assign(D, 0);
  p.vectors.assign(D, {});
  std::vector<uint8_t> known(D, 0);
  for (std::size_t d = 0; d < D; ++d)
    if (sk.dims[d].anchored) {
      known[d] = 1;
      p.order.push_back(static_cast<int>(d));
    }
  std::vector<std::vector<int>> vec_of(D);
  for (std::size_t t = 0; t < sk.tensors.size(); ++t) {
    const SketchTensor& st = sk.tensors[t];
    if (st.shape.size() == 1 && st.dims[0] >= 0 && is_float(st.dtype) && !st.marked)
      vec_of[static_cast<std::size_t>(st.dims[0])].push_back(static_cast<int>(t));
  }
  for (bool progress = true; progress;) {
    progress = false;
    for (std::size_t d = 0; d < D; ++d) {
      if (known[d]) continue;
      int best = -1, best_axis = 0;
      std::tuple<int, int, int, int64_t> best_key{-1, -1, -1, -1};
      for (std::size_t t = 0; t < sk.tensors.size(); ++t) {
        const SketchTensor& st = sk.tensors[t];
        if (st.shape.size() < 2 || !is_float(st.dtype)) continue;
        for (int a = 0; a < 2; ++a) {
          // A convolution's input channels are kh*kw columns each: it is a source of its output
          // channels (rows) only.
          if (a == 1 && st.group() > 1) continue;
          const int other = st.dims[static_cast<std::size_t>(1 - a)];
          if (st.dims[static_cast<std::size_t>(a)] != static_cast<int>(d) || other < 0 || other == static_cast<int>(d) ||
              !known[static_cast<std::size_t>(other)] || st.shape[static_cast<std::size_t>(1 - a)] < 2)
            continue;
          // A source whose slices a rescaling never reaches (role 0) cannot tell signs and scales.
          const std::tuple<int, int, int, int64_t> key{st.roles[static_cast<std::size_t>(a)] != 0 ? 1 : 0, st.marked ? 0 : 1,
                                                       a == 1 ? 1 : 0, st.shape[static_cast<std::size_t>(1 - a)]};
          if (key > best_key) {
            best_key = key;
            best = static_cast<int>(t);
            best_axis = a;
          }
        }
      }
      const auto& vecs = vec_of[d];
      if (best < 0 && vecs.size() < 4) continue;
      known[d] = 1;
      progress = true;
      p.order.push_back(static_cast<int>(d));
      p.source[d] = best;
      p.source_axis[d] = best_axis;
      // Vectors vote when their scale moves with the samples': always for the hidden size (no
      // per-index rescaling there), for a source's own bias, or when they are all there is.
      for (int v : vecs) {
        if (best < 0 || sk.dims[d].label == "hidden" ||
            module_of(sk.tensors[static_cast<std::size_t>(v)].name) == module_of(sk.tensors[static_cast<std::size_t>(best)].name))
          p.vectors[d].push_back(v);
      }
    }
  }
  for (std::size_t d = 0; d < D; ++d)
    if (!known[d]) p.order.push_back(static_cast<int>(d));
  return p;
}

void record_batch_norm_gains(std::span<const NamedTensor> marked, AlignmentSketch& sk, AlignmentOps& ops) {
  for (auto& st : sk.tensors)
    if (st.shape.size() > 2 && st.dims[0] >= 0) st.bn_gain = alignment::batch_norm_gains(ops, marked, st.name, st.rows());
}

/// Dimensions a tensor needs, with what their sources need in turn.
void needs(const AlignmentSketch& sk, const Plan& p, int d, std::set<int>& out) {
  if (d < 0 || !out.insert(d).second) return;
  const int s = p.source[static_cast<std::size_t>(d)];
  if (s >= 0) needs(sk, p, sk.tensors[static_cast<std::size_t>(s)].dims[static_cast<std::size_t>(1 - p.source_axis[static_cast<std::size_t>(d)])], out);
}

}  // namespace

AlignmentSketch make_sketch(std::span<const NamedTensor> marked, std::string did, const SketchOptions& options,
                            Backend& backend) {
  DIDMARK_EXPECTS(!did.empty(), invalid_argument, "a sketch needs the owner's DID");
  DIDMARK_EXPECTS(options.samples >= 0 && options.samples <= kMaxSketchSamples, invalid_argument,
                  "sketch samples must be in 0..", kMaxSketchSamples, ", got ", options.samples);
  DIDMARK_EXPECTS(options.max_fraction > 0 && options.target_z > 0, invalid_argument,
                  "sketch max_fraction and target_z must be positive");
  alignment::AlignmentOps& ops = backend.alignment_ops();
  for (const auto& t : marked) {
    validate_view(t.view, detail::concat("tensor '", t.name, "'"));
    if (is_float(t.view.dtype))
      DIDMARK_EXPECTS(t.view.is_contiguous(), unsupported, "tensor '", t.name, "' is not contiguous");
  }
  const auto selection = detail::select_tensors(marked, options.watermark.policy);

  AlignmentSketch sk;
  sk.kind = SketchKind::checkpoint;
  sk.did = std::move(did);
  sk.scheme = std::string(scheme_name(options.watermark.scheme));
  sk.strength = options.watermark.effective_strength();
  sk.all = options.all;

  std::vector<alignment::TensorShape> shapes;
  for (const auto& t : marked) shapes.push_back({t.name, t.view.shape});
  const alignment::ArchMap arch = alignment::infer_architecture(shapes);
  sk.architecture = arch.name;
  for (const auto& d : arch.dims) {
    SketchDim sd;
    sd.label = d.label;
    sd.size = d.size;
    sd.anchored = d.anchored;
    sk.dims.push_back(std::move(sd));
  }
  int64_t marked_elements = 0;
  for (std::size_t i = 0; i < marked.size(); ++i) {
    const NamedTensor& t = marked[i];
    SketchTensor st;
    st.name = t.name;
    st.dtype = t.view.dtype;
    st.shape = t.view.shape;
    st.dims = arch.tensors[i].dims;
    st.out_axis = arch.tensors[i].out_axis;
    st.roles = arch.tensors[i].roles;
    st.marked = selection[i].eligible && is_float(t.view.dtype);
    if (st.marked) marked_elements += t.view.numel();
    sk.model_bytes += t.view.nbytes();
    if (is_float(t.view.dtype) && t.view.numel() > 0 && (st.marked || st.dims[0] >= 0)) {
      const auto desc = alignment::describe_tensor(ops, t.view);
      st.rms = static_cast<float>(desc.rms);
      if (t.view.rank() >= 2) {
        st.row_quantiles = desc.row_q;
        st.col_quantiles = desc.col_q;
      }
    }
    sk.tensors.push_back(std::move(st));
  }
  DIDMARK_EXPECTS(marked_elements > 0, invalid_argument,
                  "no tensor is marked under the watermark policy: nothing to sketch");
  record_batch_norm_gains(marked, sk, ops);

  const Plan plan = plan_recovery(sk);

  // Which dimensions get a signature: all, or enough layers for the target z.
  std::vector<uint8_t> include(sk.dims.size(), 0);
  auto expected_z = [&](int S) {
    int64_t elements = 0;
    for (const auto& st : sk.tensors) {
      if (!st.marked || st.shape.size() < 2) continue;
      bool ok = true;
      for (int a = 0; a < 2; ++a) {
        std::set<int> need;
        needs(sk, plan, st.dims[static_cast<std::size_t>(a)], need);
        for (int d : need) ok = ok && (sk.dims[static_cast<std::size_t>(d)].anchored || include[static_cast<std::size_t>(d)]);
        ok = ok && st.dims[static_cast<std::size_t>(a)] >= 0;
      }
      if (ok) elements += st.numel();
    }
    for (std::size_t d = 0; d < sk.dims.size(); ++d) {
      const int s = plan.source[d];
      if (!include[d] || s < 0 || !sk.tensors[static_cast<std::size_t>(s)].marked) continue;
      const SketchTensor& st = sk.tensors[static_cast<std::size_t>(s)];
      const int a = plan.source_axis[d];
      elements -= std::min<int64_t>(S, a == 0 ? st.cols() : st.rows()) * (a == 0 ? st.rows() : st.cols());
    }
    return sk.strength * std::sqrt(static_cast<double>(std::max<int64_t>(elements, 0)));
  };
  const int S0 = options.samples > 0 ? options.samples : kDefaultSketchSamples;
  std::vector<int> layers_all;
  for (const auto& d : sk.dims) layers_all.push_back(alignment::layer_of(d.label));
  const int L = layers_all.empty() ? 0 : *std::max_element(layers_all.begin(), layers_all.end()) + 1;
  for (std::size_t d = 0; d < sk.dims.size(); ++d)
    if (layers_all[d] < 0 || options.all) include[d] = 1;
  if (!options.all) {
    for (int l : alignment::spread_layers(L)) {
      if (expected_z(S0) >= options.target_z) break;
      for (std::size_t d = 0; d < sk.dims.size(); ++d)
        if (layers_all[d] == l) include[d] = 1;
    }
  }

  // Signature width: as asked, or the default lowered until the sketch fits the budget.
  auto estimate = [&](int S) {
    uint64_t b = 4096;
    for (const auto& st : sk.tensors) b += 160 + st.name.size();
    for (std::size_t d = 0; d < sk.dims.size(); ++d) {
      if (!include[d] || sk.dims[d].anchored) continue;
      const uint64_t n = static_cast<uint64_t>(sk.dims[d].size);
      if (plan.source[d] >= 0) b += n * (static_cast<uint64_t>(S) + 4) + 16 * static_cast<uint64_t>(S);
      b += n * 4 * plan.vectors[d].size();
    }
    return b;
  };
  int S = S0;
  if (options.samples == 0)
    while (S > 8 && static_cast<double>(estimate(S)) > options.max_fraction * static_cast<double>(sk.model_bytes))
      S = std::max(8, S * 3 / 4);
  sk.samples = S;

  // Signatures.
  std::vector<SketchDim> dims(sk.dims.size());
  std::vector<int> new_index(sk.dims.size());
  for (std::size_t k = 0; k < plan.order.size(); ++k) new_index[static_cast<std::size_t>(plan.order[k])] = static_cast<int>(k);
  for (std::size_t k = 0; k < plan.order.size(); ++k) {
    const auto d = static_cast<std::size_t>(plan.order[k]);
    SketchDim sd = sk.dims[d];
    if (include[d] && !sd.anchored) {
      const int s = plan.source[d];
      if (s >= 0) {
        const SketchTensor& st = sk.tensors[static_cast<std::size_t>(s)];
        const int a = plan.source_axis[d];
        const int o = 1 - a;
        sd.source = s;
        sd.source_axis = a;
        // Samples are matrix columns (a convolution's kernel taps, not only its channels).
        sd.samples = alignment::spread_indices(o == 1 ? st.cols() : st.rows(), S);
        const auto n = static_cast<std::size_t>(sd.size);
        const std::size_t m = sd.samples.size();
        std::vector<float> g(m * n);
        ops.gather(marked[static_cast<std::size_t>(s)].view, o, sd.samples, g);
        sd.signature.assign(n * m, 0);
        sd.scales.assign(n, 0.0f);
        for (std::size_t i = 0; i < n; ++i) {
          float mx = 0;
          for (std::size_t c = 0; c < m; ++c) mx = std::max(mx, std::fabs(g[c * n + i]));
          sd.scales[i] = std::isfinite(mx) ? mx : 0.0f;
          for (std::size_t c = 0; c < m; ++c) sd.signature[i * m + c] = detail::quantize_signature(g[c * n + i], sd.scales[i]);
        }
      }
      sd.vectors = plan.vectors[d];
      const auto n = static_cast<std::size_t>(sd.size);
      sd.vector_values.assign(n * sd.vectors.size(), 0.0f);
      for (std::size_t v = 0; v < sd.vectors.size(); ++v) {
        const std::vector<float> vals = alignment::vector_values(ops, marked[static_cast<std::size_t>(sd.vectors[v])].view);
        for (std::size_t i = 0; i < n; ++i) sd.vector_values[i * sd.vectors.size() + v] = vals[i];
      }
    }
    dims[k] = std::move(sd);
  }
  for (auto& st : sk.tensors)
    for (auto& d : st.dims)
      if (d >= 0) d = new_index[static_cast<std::size_t>(d)];
  sk.dims = std::move(dims);
  return sk;
}

}  // namespace didmark
