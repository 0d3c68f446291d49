#include "attack/plot_path.hpp"

namespace didmark::attack_detail {
std::filesystem::path plot_script() { return DIDMARK_PLOT_SCRIPT; }
std::filesystem::path python_script(std::string_view name) { return plot_script().parent_path() / name; }
}  // namespace didmark::attack_detail
