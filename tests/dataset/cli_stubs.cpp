// The few CLI entry points cmd_dataset.cpp uses, so its format handlers can be tested
// without the rest of the CLI (main.cpp).
#include <iostream>

#include "cli.hpp"

namespace didmark::cli {

int register_commands(int, Registrar) { return 0; }

Backend& Globals::backend() {
  if (!backend_) backend_ = make_cpu_backend();
  return *backend_;
}

void print_json(const nlohmann::json& j) { std::cout << j.dump() << std::endl; }

CLI::App& command_group(CLI::App& parent, const std::string& name, const std::string& description) {
  return *parent.add_subcommand(name, description);
}

std::string human_bytes(double bytes) { return std::to_string(bytes) + " B"; }

}  // namespace didmark::cli
