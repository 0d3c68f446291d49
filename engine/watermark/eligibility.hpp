#pragma once
#include <span>
#include <string>
#include <vector>

#include "didmark/watermark.hpp"

namespace didmark::detail {

struct Selection {
  bool eligible = false;
  bool named = false;   ///< asked for by name: problems are errors, not skips
  std::string reason;   ///< why not eligible
};

/// Apply the policy to every tensor (patterns matched with RE2: linear time, no
/// backtracking); throws for named tensors that are missing or unusable.
std::vector<Selection> select_tensors(std::span<const NamedTensor> tensors, const EligibilityPolicy& policy);

}  // namespace didmark::detail
