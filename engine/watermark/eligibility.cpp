#include "watermark/eligibility.hpp"

#include <re2/re2.h>

#include <memory>
#include <unordered_map>

#include "common/printable.hpp"
#include "didmark/error.hpp"
#include "didmark/limits.hpp"

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
namespace {

std::unique_ptr<RE2> compile_pattern(const std::string& pattern, bool case_sensitive, const char* what) {
  DIDMARK_EXPECTS(pattern.size() <= kMaxTensorPatternBytes, invalid_argument, what, " is ", pattern.size(),
                  " bytes long; at most ", kMaxTensorPatternBytes, " are accepted (kMaxTensorPatternBytes)");
  RE2::Options o;
  o.set_case_sensitive(case_sensitive);
  o.set_log_errors(false);
  o.set_max_mem(int64_t{8} << 20);  // compiled program and DFA cache: bounded
  auto re = std::make_unique<RE2>(pattern, o);
  DIDMARK_EXPECTS(re->ok(), invalid_argument, what, " '", printable(pattern, 200),
                  "' is not a valid regular expression (", printable(re->error(), 200),
                  "; RE2 syntax: no backreferences or lookaround)");
  return re;
}

}  // namespace

std::vector<Selection> select_tensors(std::span<const NamedTensor> tensors, const EligibilityPolicy& policy) {
  std::vector<Selection> out(tensors.size());
  if (!policy.names.empty()) {
    std::unordered_map<std::string, std::size_t> index;
    for (std::size_t i = 0; i < tensors.size(); ++i) index.emplace(tensors[i].name, i);
    for (auto& s : out) s.reason = "not among the tensors asked for";
    for (const auto& name : policy.names) {
      auto it = index.find(name);
      DIDMARK_EXPECTS(it != index.end(), not_found, "tensor '", quoted(name), "' was asked for but is not in the set");
      const TensorView& v = tensors[it->second].view;
      DIDMARK_EXPECTS(is_watermarkable(v.dtype), invalid_argument, "tensor '", quoted(name), "' has dtype ",
                      dtype_name(v.dtype), "; only f32, f64, f16 and bf16 tensors can carry a mark");
      DIDMARK_EXPECTS(v.numel() > 0, invalid_argument, "tensor '", quoted(name), "' is empty");
      out[it->second] = Selection{true, true, {}};
    }
    return out;
  }

  std::vector<std::unique_ptr<RE2>> skips;
  skips.reserve(policy.skip_patterns.size());
  for (const auto& p : policy.skip_patterns) skips.push_back(compile_pattern(p, false, "skip pattern"));
  std::unique_ptr<RE2> include;
  if (!policy.include_regex.empty()) include = compile_pattern(policy.include_regex, true, "tensor regex");
  for (std::size_t i = 0; i < tensors.size(); ++i) {
    const auto& t = tensors[i];
    Selection& s = out[i];
    if (!is_watermarkable(t.view.dtype)) {
      s.reason = concat("dtype ", dtype_name(t.view.dtype), " is not floating");
    } else if (t.name.size() > kMaxTensorNameBytes) {
      s.reason = concat("name longer than ", kMaxTensorNameBytes, " bytes (kMaxTensorNameBytes)");
    } else if (include && !RE2::PartialMatch(t.name, *include)) {
      s.reason = "name does not match the tensor regex";
    } else if (t.view.numel() < policy.min_elements) {
      s.reason = concat("fewer than ", policy.min_elements, " elements");
    } else if (t.view.rank() < policy.min_rank) {
      s.reason = concat("rank ", t.view.rank(), " < ", policy.min_rank);
    } else {
      s.eligible = true;
      for (const auto& re : skips)
        if (RE2::PartialMatch(t.name, *re)) {
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
