#pragma once
// Pieces `didmark attack` and `didmark robustness` share (cmd_attack.cpp).
#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>

#include "cli.hpp"
#include "didmark/attack.hpp"

namespace didmark::cli {

/// --arch, --config, --heads, --kv-heads.
struct ArchFlags {
  std::string arch, config;
  int64_t heads = 0, kv_heads = 0;
};
void add_arch_options(CLI::App& cmd, ArchFlags& f);
/// Hints from --config (or config.json beside `input`), --heads, --kv-heads; the map from --arch.
void setup_architecture(const ArchFlags& f, const std::filesystem::path& input, AttackContext& ctx);

/// True for a .npy dataset array (not with --format npy-tensor).
bool is_array_input(const std::filesystem::path& in, const std::string& format);

nlohmann::json report_json(const AttackReport& r);
nlohmann::json report_json(const ArrayAttackReport& r);

}  // namespace didmark::cli
