#pragma once
// The two halves of apply_attack (attack.cpp parses and dispatches).
#include "didmark/attack.hpp"

namespace didmark::attack_detail {

/// permute, rescale, rescale-attn, dummy, rename, truncate.
AttackReport structural_attack(TensorSet& model, const AttackSpec& spec, AttackContext& ctx);
/// noise, cast, quant, prune, merge, merge-ties, remark.
AttackReport value_attack(TensorSet& model, const AttackSpec& spec, AttackContext& ctx);

}  // namespace didmark::attack_detail
