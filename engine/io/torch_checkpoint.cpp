// TorchCheckpoint: the public face of the LibTorch adapter, which lives in a plugin
// (libdidmark_torch.so, see torch_plugin.hpp) loaded on first use.
#include <dlfcn.h>
#include <unistd.h>

#include <cstdlib>
#include <mutex>

#include "common/printable.hpp"
#include "didmark/error.hpp"
#include "didmark/io.hpp"
#include "io/torch_archive.hpp"
#include "io/torch_loader.hpp"
#include "io/torch_plugin.hpp"
#include "io/torch_save.hpp"

namespace didmark {
namespace {

[[noreturn]] void no_torch(const std::string& why) {
  DIDMARK_THROW(Errc::unsupported, "PyTorch files need the LibTorch adapter: ", why);
}

#if DIDMARK_HAVE_TORCH
// Where the plugin may be: $DIDMARK_TORCH_PLUGIN, beside the executable, ../lib from it, the
// build tree, then the loader's own search path.
std::vector<std::string> plugin_candidates() {
  std::vector<std::string> out;
  if (const char* env = std::getenv("DIDMARK_TORCH_PLUGIN"); env && *env) out.emplace_back(env);
  std::error_code ec;
  const auto exe = std::filesystem::read_symlink("/proc/self/exe", ec);
  if (!ec) {
    out.push_back((exe.parent_path() / "libdidmark_torch.so").string());
    out.push_back((exe.parent_path() / ".." / "lib" / "libdidmark_torch.so").string());
  }
#ifdef DIDMARK_TORCH_PLUGIN_PATH
  out.emplace_back(DIDMARK_TORCH_PLUGIN_PATH);
#endif
  out.emplace_back("libdidmark_torch.so");
  return out;
}
#endif

const detail::TorchPlugin& plugin() {
#if DIDMARK_HAVE_TORCH
  static std::once_flag once;
  static const detail::TorchPlugin* loaded = nullptr;
  static std::string failure;
  std::call_once(once, [] {
    for (const auto& path : plugin_candidates()) {
      std::error_code ec;
      // Only a regular file is loaded (never blocks on a FIFO named by $DIDMARK_TORCH_PLUGIN).
      if (path.find('/') != std::string::npos && !std::filesystem::is_regular_file(path, ec)) continue;
      void* h = ::dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
      if (!h) {
        failure += std::string("; ") + ::dlerror();
        continue;
      }
      auto entry = reinterpret_cast<const detail::TorchPlugin* (*)()>(::dlsym(h, "didmark_torch_plugin"));
      const detail::TorchPlugin* p = entry ? entry() : nullptr;
      if (p && p->abi == detail::kTorchPluginAbi) {
        loaded = p;
        return;
      }
      failure += "; " + path + " is not a didmark " + std::to_string(detail::kTorchPluginAbi) + " plugin";
    }
  });
  if (!loaded)
    no_torch("libdidmark_torch.so was not found or did not load (set DIDMARK_TORCH_PLUGIN to its path)" + failure);
  return *loaded;
#else
  no_torch("rebuild with -DDIDMARK_TORCH=ON (apt-get install libtorch-dev), or convert the checkpoint to "
           "safetensors");
#endif
}

}  // namespace

// The plugin, or a loader installed by the Python module (torch_loader.hpp).
bool torch_available() noexcept { return DIDMARK_HAVE_TORCH || detail::torch_loader() != nullptr; }

struct TorchCheckpoint::Impl {
  std::unique_ptr<detail::TorchLoaded> loaded;
};

TorchCheckpoint::TorchCheckpoint(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
TorchCheckpoint::TorchCheckpoint(TorchCheckpoint&&) noexcept = default;
TorchCheckpoint& TorchCheckpoint::operator=(TorchCheckpoint&&) noexcept = default;
TorchCheckpoint::~TorchCheckpoint() = default;

namespace detail {
namespace {
std::mutex loader_guard;
std::shared_ptr<TorchLoader>& loader_slot() {
  static auto* slot = new std::shared_ptr<TorchLoader>();  // never destroyed: may hold Python objects
  return *slot;
}
}  // namespace

void set_torch_loader(std::shared_ptr<TorchLoader> loader) {
  std::lock_guard lock(loader_guard);
  loader_slot() = std::move(loader);
}

std::shared_ptr<TorchLoader> torch_loader() {
  std::lock_guard lock(loader_guard);
  return loader_slot();
}
}  // namespace detail

TorchCheckpoint TorchCheckpoint::load(const std::filesystem::path& path) {
  const auto loader = detail::torch_loader();
  const detail::TorchPlugin* plug = nullptr;
  auto need_plugin = [&] {
    try {
      plug = &plugin();
    } catch (const Error& e) {
      DIDMARK_THROW(e.code(), "cannot read '", detail::printable(path.native(), 1024), "': ", e.what());
    }
  };
  if (!loader) need_plugin();  // nothing could read it: say so before reading
  // Our own checks first, whoever loads it (regular file, zip directory or legacy stream,
  // pickle, storages against records): the loader then reads exactly these bytes, never the
  // path, which could be swapped in between.
  const MappedFile file(path);
  const std::span<const unsigned char> bytes(file.data(), file.size());
  const detail::TorchArchive archive = detail::open_torch_file(bytes, path.native());
  auto impl = std::make_unique<Impl>();
  if (loader) {
    if ((impl->loaded = loader->load(path, bytes))) return TorchCheckpoint(std::move(impl));
    need_plugin();
  }
  impl->loaded = plug->load(path, bytes, archive.fixed.bytes);
  return TorchCheckpoint(std::move(impl));
}

const std::vector<NamedTensor>& TorchCheckpoint::tensors() const noexcept { return impl_->loaded->tensors(); }
const std::vector<std::pair<std::string, std::string>>& TorchCheckpoint::withheld() const noexcept {
  return impl_->loaded->withheld();
}
void TorchCheckpoint::save(const std::filesystem::path& path, bool overwrite) const {
  impl_->loaded->save(path, overwrite);
}
void TorchCheckpoint::save_tensors(const std::filesystem::path& path, std::span<const NamedTensor> tensors,
                                   bool overwrite) {
  // didmark's own writer: no LibTorch needed to write a state dict.
  detail::write_torch_state_dict(path, tensors, overwrite);
}

}  // namespace didmark
