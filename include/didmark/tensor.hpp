#pragma once
/// \file tensor.hpp
/// Non-owning tensor views: the only way arrays enter the algorithms.
///
/// A view names memory it does not own (a memory-mapped checkpoint, a numpy array, a CUDA
/// allocation) with its element type, shape, strides (in elements) and device. Algorithms
/// take views and return plain report structs; file formats live in io/.

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace didmark {

/// Element types. The watermark reads and writes the four floating types; the others are
/// carried through checkpoints untouched.
enum class DType : uint8_t {
  f64,
  f32,
  f16,
  bf16,
  f8_e4m3,
  f8_e5m2,
  i64,
  i32,
  i16,
  i8,
  u8,
  boolean,
};

/// Bytes per element.
std::size_t dtype_size(DType t) noexcept;
/// Short name: "f32", "bf16", ...
std::string_view dtype_name(DType t) noexcept;
/// Parse a short name ("f32", "float32", "bf16", "bfloat16", ...); nullopt when unknown.
std::optional<DType> parse_dtype(std::string_view name) noexcept;
/// f64, f32, f16 or bf16: the types the watermark primitives read and write directly.
bool is_watermarkable(DType t) noexcept;

enum class Device : uint8_t { cpu, cuda };
std::string_view device_name(Device d) noexcept;

/// A strided view of memory that someone else owns.
///
/// `strides` are in elements, one per dimension; an empty `strides` means C-contiguous.
/// A view of rank 0 is a scalar (numel 1). Nothing here checks that `data` is valid: the
/// owner of the memory keeps it alive while the view is used.
struct TensorView {
  void* data = nullptr;
  DType dtype = DType::f32;
  std::vector<int64_t> shape;
  std::vector<int64_t> strides;
  Device device = Device::cpu;
  int device_index = 0;

  /// A C-contiguous view of `shape`.
  static TensorView contiguous(void* data, DType dtype, std::vector<int64_t> shape,
                               Device device = Device::cpu, int device_index = 0);

  int64_t numel() const noexcept;
  std::size_t nbytes() const noexcept { return static_cast<std::size_t>(numel()) * dtype_size(dtype); }
  int rank() const noexcept { return static_cast<int>(shape.size()); }
  /// True when elements are laid out densely in row-major order.
  bool is_contiguous() const noexcept;
  /// "f32[4096, 1024] on cpu": for messages.
  std::string describe() const;
};

/// Check that a view is internally consistent (non-negative dims, strides match rank,
/// non-null data when non-empty); throws Errc::invalid_argument naming `what`.
void validate_view(const TensorView& v, std::string_view what);

}  // namespace didmark
