#pragma once
// Where `didmark robustness` finds the lab's Python scripts (python/didmark/plot.py,
// finetune.py) in a build from source.
#include <filesystem>
#include <string_view>

namespace didmark::attack_detail {
/// The source tree's python/didmark/plot.py (may not exist in an installed build).
std::filesystem::path plot_script();
/// The source tree's python/didmark/<name>.
std::filesystem::path python_script(std::string_view name);
}  // namespace didmark::attack_detail
