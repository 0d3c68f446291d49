#pragma once
// A process-wide stand-in for the LibTorch plugin when reading PyTorch files. Two LibTorch
// builds cannot share a process: Debian's LibTorch 1.13 (the plugin) aborts in its static
// initializers when PyPI's torch is already loaded. The Python module therefore installs a
// loader backed by the process's own `torch` (torch.load(weights_only=True), torch.save);
// the CLI and the server never install one and keep the plugin.
#include <filesystem>
#include <memory>
#include <span>

#include "io/torch_plugin.hpp"

namespace didmark::detail {

class TorchLoader {
 public:
  virtual ~TorchLoader() = default;
  /// The file loaded from `file`, its bytes as didmark validated them (open_torch_file; a
  /// mapping alive for the call only), or nullptr to let the LibTorch plugin read it (e.g.
  /// torch is not importable). `path` names the file in messages only. Errors are
  /// didmark::Error naming the file.
  virtual std::unique_ptr<TorchLoaded> load(const std::filesystem::path& path, std::span<const unsigned char> file) = 0;
};

/// Install (or with nullptr remove) the loader TorchCheckpoint::load asks first.
void set_torch_loader(std::shared_ptr<TorchLoader> loader);
std::shared_ptr<TorchLoader> torch_loader();

}  // namespace didmark::detail
