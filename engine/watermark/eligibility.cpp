#include "watermark/eligibility.hpp"

#include <regex>
#include <unordered_map>

#include "didmark/error.hpp"

namespace didmark {

std::vector<std::string> EligibilityPolicy::default_skip_patterns() {
  return {
      R"((^|[._/])bias$)",                        // biases
      R"(norm)",                                  // LayerNorm, RMSNorm, BatchNorm, *_norm
      R"((^|[._/])ln_?[a-z0-9]*([._/]|$))",        // GPT-2 style ln_1, ln_f
      R"((^|[._/])(wpe|pos_?emb[a-z_]*|position_embeddings?|positional_embeddings?)([._/]|$))",
      R"((^|[._/])(running_mean|running_var|num_batches_tracked)$)",
  };
}

namespace detail {

std::vector<Selection> select_tensors(std::span<const NamedTensor> tensors, const EligibilityPolicy& policy) {
  std::vector<Selection> out(tensors.size());
  if (!policy.names.empty()) {
    std::unordered_map<std::string, std::size_t> index;
    for (std::size_t i = 0; i < tensors.size(); ++i) index.emplace(tensors[i].name, i);
    for (auto& s : out) s.reason = "not among the tensors asked for";
    for (const auto& name : policy.names) {
      auto it = index.find(name);
      DIDMARK_EXPECTS(it != index.end(), not_found, "tensor '", name, "' was asked for but is not in the set");
      const TensorView& v = tensors[it->second].view;
      DIDMARK_EXPECTS(is_watermarkable(v.dtype), invalid_argument, "tensor '", name, "' has dtype ",
                      dtype_name(v.dtype), "; only f32, f64, f16 and bf16 tensors can carry a mark");
      DIDMARK_EXPECTS(v.numel() > 0, invalid_argument, "tensor '", name, "' is empty");
      out[it->second] = Selection{true, true, {}};
    }
    return out;
  }

  std::vector<std::regex> skips;
  skips.reserve(policy.skip_patterns.size());
  for (const auto& p : policy.skip_patterns) {
    try {
      skips.emplace_back(p, std::regex::ECMAScript | std::regex::icase);
    } catch (const std::regex_error& e) {
      DIDMARK_THROW(Errc::invalid_argument, "skip pattern '", p, "' is not a valid regex: ", e.what());
    }
  }
  std::optional<std::regex> include;
  if (!policy.include_regex.empty()) {
    try {
      include.emplace(policy.include_regex, std::regex::ECMAScript);
    } catch (const std::regex_error& e) {
      DIDMARK_THROW(Errc::invalid_argument, "tensor regex '", policy.include_regex, "' is not valid: ", e.what());
    }
  }
  for (std::size_t i = 0; i < tensors.size(); ++i) {
    const auto& t = tensors[i];
    Selection& s = out[i];
    if (!is_watermarkable(t.view.dtype)) {
      s.reason = concat("dtype ", dtype_name(t.view.dtype), " is not floating");
    } else if (include && !std::regex_search(t.name, *include)) {
      s.reason = "name does not match the tensor regex";
    } else if (t.view.numel() < policy.min_elements) {
      s.reason = concat("fewer than ", policy.min_elements, " elements");
    } else if (t.view.rank() < policy.min_rank) {
      s.reason = concat("rank ", t.view.rank(), " < ", policy.min_rank);
    } else {
      s.eligible = true;
      for (const auto& re : skips)
        if (std::regex_search(t.name, re)) {
          s.eligible = false;
          s.reason = "name matches a skip pattern (norm, bias or position table)";
          break;
        }
    }
  }
  return out;
}

}  // namespace detail
}  // namespace didmark
