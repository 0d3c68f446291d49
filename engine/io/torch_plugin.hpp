#pragma once
// The boundary between libdidmark and the LibTorch adapter, a plugin (libdidmark_torch.so)
// loaded with dlopen on first use: LibTorch's ~280 shared libraries take most of a second to
// load, which every didmark command would otherwise pay at start-up. Both sides are built
// from this tree by the same compiler, so C++ types cross the boundary as they are.
#include <filesystem>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "didmark/watermark.hpp"

namespace didmark::detail {

/// A loaded torch.save file (see TorchCheckpoint).
class TorchLoaded {
 public:
  virtual ~TorchLoaded() = default;
  virtual const std::vector<NamedTensor>& tensors() const = 0;
  virtual const std::vector<std::pair<std::string, std::string>>& withheld() const = 0;
  virtual void save(const std::filesystem::path& path, bool overwrite) const = 0;
};

// 2: load() takes the file's bytes and the validated pickle (torch_archive.hpp), so that
// LibTorch reads exactly what didmark checked, never the path itself.
inline constexpr int kTorchPluginAbi = 2;

struct TorchPlugin {
  int abi = kTorchPluginAbi;
  /// `file`: the whole torch.save file (a mapping, alive for the call); `pickle`: its
  /// data.pkl, validated and rewritten for LibTorch 1.13 (open_torch_archive). `path` names
  /// the file in messages only.
  std::unique_ptr<TorchLoaded> (*load)(const std::filesystem::path& path, std::span<const unsigned char> file,
                                       std::string_view pickle) = nullptr;
  void (*save_tensors)(const std::filesystem::path& path, std::span<const NamedTensor> tensors,
                       bool overwrite) = nullptr;
};

}  // namespace didmark::detail

/// The plugin's one exported symbol.
extern "C" const didmark::detail::TorchPlugin* didmark_torch_plugin();
