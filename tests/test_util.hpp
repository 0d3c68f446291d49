#pragma once
// Helpers shared by the test binaries: owned buffers of any floating dtype, filled with
// Gaussian values, and views onto them.
#include <cstdint>
#include <cstring>
#include <functional>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "didmark/backend.hpp"
#include "didmark/detail/half.hpp"
#include "didmark/error.hpp"
#include "didmark/tensor.hpp"
#include "didmark/watermark.hpp"

namespace didmark::test {

/// The message of the didmark::Error that f throws, or "(no error)".
inline std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

inline double get(const TensorView& v, int64_t i) {
  switch (v.dtype) {
    case DType::f64: return static_cast<const double*>(v.data)[i];
    case DType::f32: return static_cast<const float*>(v.data)[i];
    case DType::f16: return detail::f16_to_f32(static_cast<const uint16_t*>(v.data)[i]);
    case DType::bf16: return detail::bf16_to_f32(static_cast<const uint16_t*>(v.data)[i]);
    default: return 0;
  }
}

inline void set(const TensorView& v, int64_t i, double x) {
  switch (v.dtype) {
    case DType::f64: static_cast<double*>(v.data)[i] = x; break;
    case DType::f32: static_cast<float*>(v.data)[i] = static_cast<float>(x); break;
    case DType::f16: static_cast<uint16_t*>(v.data)[i] = detail::f32_to_f16_rne(static_cast<float>(x)); break;
    case DType::bf16: static_cast<uint16_t*>(v.data)[i] = detail::f32_to_bf16_rne(static_cast<float>(x)); break;
    default: break;
  }
}

/// An owned tensor.
struct Buffer {
  std::string name;
  std::vector<unsigned char> bytes;
  TensorView view;

  Buffer() = default;
  Buffer(std::string n, DType t, std::vector<int64_t> shape) : name(std::move(n)) {
    view = TensorView::contiguous(nullptr, t, std::move(shape));
    bytes.assign(view.nbytes() + 1, 0);  // +1 keeps data() non-null for empty tensors
    view.data = bytes.data();
  }
  Buffer(const Buffer& o) : name(o.name), bytes(o.bytes), view(o.view) { view.data = bytes.data(); }
  Buffer& operator=(const Buffer& o) {
    name = o.name;
    bytes = o.bytes;
    view = o.view;
    view.data = bytes.data();
    return *this;
  }
  int64_t numel() const { return view.numel(); }
  NamedTensor named() const { return NamedTensor{name, view}; }
};

inline Buffer gaussian(std::string name, DType t, std::vector<int64_t> shape, uint64_t seed, double sigma = 0.02) {
  Buffer b(std::move(name), t, std::move(shape));
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> nd(0.0, sigma);
  for (int64_t i = 0; i < b.numel(); ++i) set(b.view, i, nd(rng));
  return b;
}

inline std::vector<NamedTensor> named(const std::vector<Buffer>& bs) {
  std::vector<NamedTensor> out;
  for (const auto& b : bs) out.push_back(b.named());
  return out;
}

inline WatermarkKey random_key(uint64_t seed) {
  std::mt19937_64 rng(seed);
  WatermarkKey k;
  for (auto& b : k.bytes) b = static_cast<uint8_t>(rng());
  return k;
}

inline Payload random_payload(uint64_t seed, std::size_t bits = 256) {
  std::mt19937_64 rng(seed);
  std::vector<uint8_t> v(bits);
  for (auto& b : v) b = static_cast<uint8_t>(rng() & 1);
  return Payload::from_bits(std::move(v));
}

/// The CUDA backend for GPU tests, or nullptr when no usable GPU is present.
inline std::shared_ptr<Backend> gpu_backend(const BackendOptions& o = {}) {
  return cuda_available() ? make_cuda_backend(o) : nullptr;
}

}  // namespace didmark::test

/// At the top of a GPU test: skip without a usable GPU, or fail when DIDMARK_REQUIRE_CUDA=1
/// (scripts/gpu-check.sh sets it, so a GPU machine never passes by skipping).
#define DIDMARK_SKIP_WITHOUT_GPU()                                                         \
  do {                                                                                    \
    if (!::didmark::cuda_available()) {                                                   \
      if (::didmark::cuda_required()) GTEST_FAIL() << "DIDMARK_REQUIRE_CUDA=1 but no usable GPU"; \
      GTEST_SKIP() << "no usable GPU";                                                    \
    }                                                                                     \
  } while (0)
