#pragma once
// Where `didmark robustness --plot` finds python/didmark/plot.py in a build from source.
#include <filesystem>

namespace didmark::attack_detail {
/// The source tree's python/didmark/plot.py (may not exist in an installed build).
std::filesystem::path plot_script();
}  // namespace didmark::attack_detail
