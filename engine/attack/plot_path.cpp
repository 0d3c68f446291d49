#include "attack/plot_path.hpp"

namespace didmark::attack_detail {
std::filesystem::path plot_script() { return DIDMARK_PLOT_SCRIPT; }
}  // namespace didmark::attack_detail
