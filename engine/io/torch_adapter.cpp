// PyTorch files through LibTorch: the only source that includes torch headers. Built as the
// plugin libdidmark_torch.so (see torch_plugin.hpp); libdidmark loads it on first use.
#include <ATen/ATen.h>
#include <caffe2/serialize/inline_container.h>
#include <torch/csrc/jit/api/compilation_unit.h>
#include <torch/csrc/jit/serialization/storage_context.h>
#include <torch/csrc/jit/serialization/unpickler.h>

#include <algorithm>
#include <cstring>
#include <functional>
#include <map>
#include <optional>
#include <unordered_map>

#include "common/atomic_file.hpp"
#include "common/printable.hpp"
#include "didmark/error.hpp"
#include "didmark/io.hpp"
#include "didmark/limits.hpp"
#include "io/torch_legacy.hpp"
#include "io/torch_pickle.hpp"
#include "io/torch_plugin.hpp"
#include "io/torch_save.hpp"

namespace didmark {
namespace {

std::optional<DType> to_dtype(at::ScalarType t) {
  switch (t) {
    case at::kDouble: return DType::f64;
    case at::kFloat: return DType::f32;
    case at::kHalf: return DType::f16;
    case at::kBFloat16: return DType::bf16;
    case at::kLong: return DType::i64;
    case at::kInt: return DType::i32;
    case at::kShort: return DType::i16;
    case at::kChar: return DType::i8;
    case at::kByte: return DType::u8;
    case at::kBool: return DType::boolean;
    default: return std::nullopt;
  }
}

// Run a LibTorch call, turning its c10::Error into ours (first line of the message only:
// LibTorch appends a C++ backtrace). Standard exceptions from inside LibTorch (a vector's
// at()) are input problems too; ours pass through.
template <class F>
auto torch_call(const std::string& what, Errc code, F&& f) -> decltype(f()) {
  try {
    return f();
  } catch (const Error&) {
    throw;
  } catch (const c10::Error& e) {
    std::string msg = e.what_without_backtrace();
    if (const auto nl = msg.find('\n'); nl != std::string::npos) msg.resize(nl);
    DIDMARK_THROW(code, what, ": ", detail::printable(msg, 300));
  } catch (const std::exception& e) {
    DIDMARK_THROW(code, what, ": ", detail::printable(e.what(), 300));
  }
}

// LibTorch reads the zip from the bytes didmark validated (never by path, which could be
// swapped in between), and never past their end.
class SpanReadAdapter final : public caffe2::serialize::ReadAdapterInterface {
 public:
  explicit SpanReadAdapter(std::span<const unsigned char> bytes) : bytes_(bytes) {}
  size_t size() const override { return bytes_.size(); }
  size_t read(uint64_t pos, void* buf, size_t n, const char* = "") const override {
    if (pos >= bytes_.size()) return 0;
    const size_t k = std::min<uint64_t>(n, bytes_.size() - pos);
    std::memcpy(buf, bytes_.data() + pos, k);
    return k;
  }

 private:
  std::span<const unsigned char> bytes_;
};

struct Loaded final : detail::TorchLoaded {
  c10::IValue root;
  std::vector<at::Tensor> keep;  // the tensors behind `views`
  std::vector<NamedTensor> views;
  std::vector<std::pair<std::string, std::string>> held;

  const std::vector<NamedTensor>& tensors() const override { return views; }
  const std::vector<std::pair<std::string, std::string>>& withheld() const override { return held; }
  void save(const std::filesystem::path& path, bool overwrite) const override;
};

struct Walker {
  std::vector<std::pair<std::string, at::Tensor>> found;
  std::vector<std::pair<std::string, std::string>> withheld;
  std::string file;
  uint64_t name_bytes = 0;  // built so far: a long key repeated down a deep path is refused

  std::string join(const std::string& prefix, std::string_view key) {
    const std::size_t n = prefix.size() + 1 + key.size();
    DIDMARK_EXPECTS(n <= kMaxTensorNameBytes, corrupt_input, "'", file,
                    "': a name inside the checkpoint is longer than ", kMaxTensorNameBytes,
                    " bytes (kMaxTensorNameBytes)");
    name_bytes += n;
    DIDMARK_EXPECTS(name_bytes <= kPickleMaxPathBytes, corrupt_input, "'", file,
                    "': the names of its values add up to more than ", kPickleMaxPathBytes,
                    " bytes (kPickleMaxPathBytes)");
    std::string out;
    out.reserve(n);
    out.append(prefix);
    if (!prefix.empty()) out.push_back('.');
    out.append(key);
    return out;
  }
  static std::string key_text(const c10::IValue& k) {
    if (k.isString()) return k.toStringRef();
    if (k.isInt()) return std::to_string(k.toInt());
    return "?";
  }
  // Visit a value; returns a replacement when the value must change (a tensor made
  // contiguous), else nullopt.
  std::optional<c10::IValue> visit(const c10::IValue& v, const std::string& name) {
    if (v.isTensor()) {
      at::Tensor t = v.toTensor();
      if (!t.defined()) return std::nullopt;
      if (t.layout() != at::kStrided || t.is_quantized()) {
        withheld.emplace_back(name, "not a dense tensor");
        return std::nullopt;
      }
      if (!to_dtype(t.scalar_type())) {
        withheld.emplace_back(name, std::string("dtype ") + c10::toString(t.scalar_type()) + " is not carried");
        return std::nullopt;
      }
      std::optional<c10::IValue> repl;
      if (!t.is_contiguous()) {
        t = t.contiguous();
        repl = c10::IValue(t);
      }
      found.emplace_back(name, t);
      return repl;
    }
    if (v.isGenericDict()) {
      auto d = v.toGenericDict();
      std::vector<std::pair<c10::IValue, c10::IValue>> changes;
      for (const auto& e : d) {
        const c10::IValue& k = e.key();
        const std::string number = k.isString() ? std::string() : key_text(k);
        if (auto r = visit(e.value(), join(name, k.isString() ? std::string_view(k.toStringRef()) : number)))
          changes.emplace_back(e.key(), *r);
      }
      for (auto& [k, r] : changes) d.insert_or_assign(k, r);
      return std::nullopt;
    }
    if (v.isList()) {
      auto l = v.toList();
      for (std::size_t i = 0; i < l.size(); ++i)
        if (auto r = visit(l.get(i), join(name, std::to_string(i)))) l.set(i, *r);
      return std::nullopt;
    }
    if (v.isTuple()) {
      const auto& elems = v.toTupleRef().elements();
      std::vector<c10::IValue> copy(elems.begin(), elems.end());
      bool changed = false;
      for (std::size_t i = 0; i < copy.size(); ++i)
        if (auto r = visit(copy[i], join(name, std::to_string(i)))) {
          copy[i] = *r;
          changed = true;
        }
      if (changed) return c10::IValue(c10::ivalue::Tuple::create(std::move(copy)));
      return std::nullopt;
    }
    return std::nullopt;
  }
};

std::unique_ptr<detail::TorchLoaded> load(const std::filesystem::path& path, std::span<const unsigned char> file,
                                          std::string_view pickle) {
  const std::string name = detail::printable(path.native(), 1024);
  auto impl = std::make_unique<Loaded>();
  // The legacy format (not a zip, validated by open_torch_file like a zip) is parsed by
  // didmark (torch_legacy.hpp); LibTorch then reads its object pickle and storages just as a
  // zip file's data.pkl and records.
  std::optional<detail::LegacyTorch> legacy;
  std::unique_ptr<caffe2::serialize::PyTorchStreamReader> reader;
  if (detail::is_legacy_torch(file))
    legacy = detail::read_legacy_torch(file, name);
  else
    reader = torch_call(detail::concat("'", name, "' is not a readable torch.save zip file"), Errc::corrupt_input, [&] {
      return std::make_unique<caffe2::serialize::PyTorchStreamReader>(std::make_shared<SpanReadAdapter>(file));
    });
  const std::string context = detail::concat("cannot read '", name, "'");
  std::size_t pos = 0;
  auto read = [&](char* buf, std::size_t n) {
    const std::size_t k = std::min(n, pickle.size() - pos);
    std::memcpy(buf, pickle.data() + pos, k);
    pos += k;
    return k;
  };
  auto read_record = [&](const std::string& rec) -> at::DataPtr {
    if (!legacy) return std::get<0>(reader->getRecord("data/" + rec));
    const auto it = legacy->records.find(rec);
    DIDMARK_EXPECTS(it != legacy->records.end(), corrupt_input, "'", name, "' names a storage it does not hold");
    // Copied into aligned memory: inside the file the bytes have any alignment.
    at::DataPtr p = c10::GetAllocator(c10::DeviceType::CPU)->allocate(it->second.size());
    if (!it->second.empty()) std::memcpy(p.get(), it->second.data(), it->second.size());
    return p;
  };
  // Type tags of containers ("Dict[str, Tensor]", written by LibTorch) parse; classes do not.
  auto cu = std::make_shared<torch::jit::CompilationUnit>();
  torch::jit::TypeResolver types = [&](const c10::QualifiedName& qn) -> c10::StrongTypePtr {
    c10::TypePtr t;
    try {
      t = torch::jit::Unpickler::defaultTypeParser(qn.qualifiedName());
    } catch (const c10::Error&) {
      DIDMARK_THROW(Errc::unsupported, "'", name, "' holds an object of class ", detail::quoted(qn.qualifiedName()),
                    "; only tensors, numbers, strings and containers are read");
    }
    return c10::StrongTypePtr(cu, t);
  };
  torch::jit::ObjLoader no_objects = [&](const at::StrongTypePtr&, const c10::IValue&)
      -> c10::intrusive_ptr<c10::ivalue::Object> {
    DIDMARK_THROW(Errc::unsupported, "'", name, "' holds an object; only tensors and containers are read");
  };
  impl->root = torch_call(context, Errc::corrupt_input, [&] {
    // The storage context makes tensors that name one storage share it, as torch.load does
    // (tied weights stay tied).
    torch::jit::Unpickler up(read, types, no_objects, read_record, c10::Device(c10::kCPU), false,
                             torch::jit::Unpickler::defaultTypeParser,
                             std::make_shared<torch::jit::DeserializationStorageContext>());
    up.set_version(legacy ? 3 : reader->version());
    return up.parse_ivalue();
  });

  Walker w;
  w.file = name;
  if (auto r = w.visit(impl->root, "")) impl->root = *r;
  impl->held = std::move(w.withheld);
  // Tied weights and views share memory: keep the first name, withhold the others. The
  // kept ranges are disjoint, so the one starting last before a range's end is the only one
  // it can overlap: O(log n) per tensor (a scan of all kept ranges was quadratic).
  std::map<uintptr_t, std::pair<uintptr_t, std::string>> kept;  // begin -> (end, name)
  for (auto& [tname, t] : w.found) {
    const auto b = reinterpret_cast<uintptr_t>(t.data_ptr());
    const auto e = b + t.numel() * t.element_size();
    if (b != e) {
      auto it = kept.lower_bound(e);
      if (it != kept.begin() && (--it)->second.first > b) {
        impl->held.emplace_back(tname, "shares memory with '" + it->second.second + "'");
        continue;
      }
      kept.emplace(b, std::make_pair(e, tname));
    }
    std::vector<int64_t> shape(t.sizes().begin(), t.sizes().end());
    impl->views.push_back({tname, TensorView::contiguous(t.data_ptr(), *to_dtype(t.scalar_type()), shape)});
    impl->keep.push_back(t);
  }
  return impl;
}

// The loaded value as the torch writer's tree (torch_save.hpp): tensors that share a
// storage keep sharing it, views keep their offset and strides, and every container and
// plain value comes back as it was read (dicts as plain dicts).
struct ToTorchValue {
  std::vector<detail::TorchStorage> storages;
  std::unordered_map<const c10::StorageImpl*, std::pair<std::size_t, at::ScalarType>> index;
  std::string file;

  detail::TorchValue operator()(const c10::IValue& v, const std::string& where, int depth) {
    using K = detail::TorchValue::Kind;
    DIDMARK_EXPECTS(depth <= 1000, invalid_argument, "cannot write '", file, "': values nested deeper than 1000");
    if (v.isNone()) return detail::TorchValue::none_value();
    if (v.isBool()) return detail::TorchValue::of(v.toBool());
    if (v.isInt()) return detail::TorchValue::of(static_cast<int64_t>(v.toInt()));
    if (v.isDouble()) return detail::TorchValue::of(v.toDouble());
    if (v.isString()) return detail::TorchValue::of(v.toStringRef());
    if (v.isTensor()) return tensor(v.toTensor(), where);
    auto child = [&](const std::string& key) { return where.empty() ? key : where + "." + key; };
    if (v.isTuple() || v.isList()) {
      const bool tuple = v.isTuple();
      std::vector<c10::IValue> elems;
      if (tuple) {
        const auto& e = v.toTupleRef().elements();
        elems.assign(e.begin(), e.end());
      } else {
        for (const c10::IValue& e : v.toList()) elems.push_back(e);
      }
      std::vector<detail::TorchValue> items;
      items.reserve(elems.size());
      for (std::size_t i = 0; i < elems.size(); ++i) items.push_back((*this)(elems[i], child(std::to_string(i)), depth + 1));
      return detail::TorchValue::container(tuple ? K::tuple : K::list, std::move(items));
    }
    if (v.isGenericDict()) {
      std::vector<detail::TorchValue> items;
      for (const auto& e : v.toGenericDict()) {
        const std::string key = e.key().isString() ? e.key().toStringRef() : e.key().isInt() ? std::to_string(e.key().toInt()) : "?";
        items.push_back((*this)(e.key(), child(key), depth + 1));
        items.push_back((*this)(e.value(), child(key), depth + 1));
      }
      return detail::TorchValue::container(K::dict, std::move(items));
    }
    DIDMARK_THROW(Errc::unsupported, "cannot write '", file, "': the value at '", detail::quoted(where), "' is a ", v.tagKind(),
                  ", which didmark does not write to PyTorch files");
  }

  detail::TorchValue tensor(const at::Tensor& t, const std::string& where) {
    if (!t.defined()) return detail::TorchValue::none_value();
    DIDMARK_EXPECTS(t.layout() == at::kStrided && !t.is_quantized() && t.device().is_cpu(), unsupported,
                    "cannot write '", file, "': tensor '", detail::quoted(where), "' is not a dense CPU tensor");
    const c10::StorageImpl* impl = t.storage().unsafeGetStorageImpl();
    auto it = index.find(impl);
    if (it == index.end()) {
      const auto item = static_cast<std::size_t>(t.element_size());
      storages.push_back({std::string(c10::toString(t.scalar_type())) + "Storage", item, t.storage().data(),
                          static_cast<uint64_t>(t.storage().nbytes() / item)});
      it = index.emplace(impl, std::make_pair(storages.size() - 1, t.scalar_type())).first;
    }
    // torch.save refuses this too: one storage is one dtype in the file.
    DIDMARK_EXPECTS(it->second.second == t.scalar_type(), unsupported, "cannot write '", file, "': tensor '",
                    detail::quoted(where), "' views a storage of another dtype");
    detail::TorchValue out;
    out.kind = detail::TorchValue::Kind::tensor;
    out.storage = it->second.first;
    out.offset = t.storage_offset();
    out.sizes.assign(t.sizes().begin(), t.sizes().end());
    out.strides.assign(t.strides().begin(), t.strides().end());
    out.requires_grad = t.requires_grad();
    return out;
  }
};

// Written by didmark's own torch writer (torch_save.hpp), not LibTorch's pickler, whose
// typed containers (torch.jit._pickle.restore_type_tag) current PyTorch refuses to load
// under weights_only=True.
void Loaded::save(const std::filesystem::path& path, bool overwrite) const {
  ToTorchValue conv;
  conv.file = detail::printable(path.native(), 1024);
  const detail::TorchValue value = conv(root, "", 0);
  detail::write_torch_file(path, value, conv.storages, overwrite);
}

void save_tensors(const std::filesystem::path& path, std::span<const NamedTensor> tensors, bool overwrite) {
  detail::write_torch_state_dict(path, tensors, overwrite);
}

}  // namespace
}  // namespace didmark

extern "C" __attribute__((visibility("default"))) const didmark::detail::TorchPlugin* didmark_torch_plugin() {
  static const didmark::detail::TorchPlugin plugin{didmark::detail::kTorchPluginAbi, &didmark::load,
                                                   &didmark::save_tensors};
  return &plugin;
}
