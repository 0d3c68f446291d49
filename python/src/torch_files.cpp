// PyTorch files inside Python: the library's TorchCheckpoint reads them through the process's own
// torch (didmark/_torchio.py) instead of the LibTorch plugin, which cannot share a process with
// PyPI's torch (engine/io/torch_loader.hpp). Tensors reach the library as DLPack views of
// torch's own memory, so marks written through them land in the object torch.save writes back.
#include "bindings.hpp"
#include "common.hpp"
#include "common/printable.hpp"
#include "didmark/error.hpp"
#include "io/torch_loader.hpp"

namespace didmark::python {
namespace {

// The first line of the Python exception being handled, for a didmark::Error message.
std::string python_message(const py::error_already_set& e) {
  std::string m = e.what();
  if (const auto nl = m.find('\n'); nl != std::string::npos) m.resize(nl);
  return detail::printable(m, 300);  // torch quotes names from the file
}

class PyTorchLoaded final : public detail::TorchLoaded {
 public:
  PyTorchLoaded(py::object io, py::object root, std::vector<ArrayRef> refs, std::vector<NamedTensor> views,
                std::vector<std::pair<std::string, std::string>> held)
      : io_(std::move(io)), root_(std::move(root)), refs_(std::move(refs)), views_(std::move(views)),
        held_(std::move(held)) {}

  ~PyTorchLoaded() override {
    // Released by the library, often with the GIL given up.
    if (!Py_IsInitialized()) {
      release_without_python();
      return;
    }
    py::gil_scoped_acquire gil;
    refs_.clear();
    root_ = py::object();
    io_ = py::object();
  }

  const std::vector<NamedTensor>& tensors() const override { return views_; }
  const std::vector<std::pair<std::string, std::string>>& withheld() const override { return held_; }

  void save(const std::filesystem::path& path, bool overwrite) const override {
    py::gil_scoped_acquire gil;
    try {
      io_.attr("save")(root_, path.string(), overwrite);
    } catch (const py::error_already_set& e) {
      if (e.matches(PyExc_FileExistsError))
        DIDMARK_THROW(Errc::invalid_argument, "'", path.string(), "' already exists (pass --force / force=True)");
      DIDMARK_THROW(Errc::io_error, "cannot write '", path.string(), "' with torch.save: ", python_message(e));
    }
  }

 private:
  // At interpreter exit the objects cannot be released; leak them rather than crash.
  void release_without_python() {
    for (auto& r : refs_) r.owner.release();
    root_.release();
    io_.release();
  }

  py::object io_, root_;
  std::vector<ArrayRef> refs_;
  std::vector<NamedTensor> views_;
  std::vector<std::pair<std::string, std::string>> held_;
};

class PyTorchLoader final : public detail::TorchLoader {
 public:
  std::unique_ptr<detail::TorchLoaded> load(const std::filesystem::path& path,
                                            std::span<const unsigned char> file) override {
    if (!Py_IsInitialized()) return nullptr;
    py::gil_scoped_acquire gil;
    py::object io = py::module_::import("didmark._torchio");
    if (!io.attr("available")().cast<bool>()) return nullptr;  // no torch: the plugin reads it
    const std::string name = detail::printable(path.native(), 1024);
    py::tuple got;
    // torch reads the bytes the library validated, not the path (which could be swapped in
    // between); the view is released before the mapping behind it goes away.
    py::memoryview bytes = py::memoryview::from_memory(file.data(), static_cast<py::ssize_t>(file.size()));
    struct Release {
      py::memoryview& v;
      ~Release() {
        try {
          v.attr("release")();
        } catch (py::error_already_set&) {  // noexcept destructor: the view stays, unreachable
        }
      }
    } release{bytes};
    try {
      got = io.attr("load")(bytes);
    } catch (const py::error_already_set& e) {
      // weights_only=True refuses objects other than tensors and containers.
      const bool refused = e.matches(py::module_::import("pickle").attr("UnpicklingError"));
      DIDMARK_THROW(refused ? Errc::unsupported : Errc::corrupt_input, "cannot read '", name, "' with torch.load",
                    refused ? " (weights_only=True)" : "", ": ", python_message(e));
    }
    std::vector<ArrayRef> refs;
    std::vector<NamedTensor> views;
    for (const py::handle item : got[1].cast<py::list>()) {
      const py::tuple nt = item.cast<py::tuple>();
      const std::string tname = nt[0].cast<std::string>();
      refs.push_back(array_ref(nt[1], "tensor '" + tname + "' of '" + name + "'"));
      views.push_back({tname, refs.back().view});
    }
    std::vector<std::pair<std::string, std::string>> held;
    for (const py::handle item : got[2].cast<py::list>()) {
      const py::tuple nr = item.cast<py::tuple>();
      held.emplace_back(nr[0].cast<std::string>(), nr[1].cast<std::string>());
    }
    return std::make_unique<PyTorchLoaded>(std::move(io), got[0], std::move(refs), std::move(views), std::move(held));
  }
};

}  // namespace

void bind_torch_files(py::module_& m) {
  detail::set_torch_loader(std::make_shared<PyTorchLoader>());
  m.def(
      "_torch_loader", [](bool on) { detail::set_torch_loader(on ? std::make_shared<PyTorchLoader>() : nullptr); },
      py::arg("on"),
      "_torch_loader(on) -> None\n\nWhether PyTorch files are read through this process's torch (default) or the "
      "LibTorch plugin (which cannot be loaded once torch is imported). For tests.");
}

}  // namespace didmark::python
