#pragma once
// The image mark's host planes: luminance, perceptual mask and the detector's whitened
// residual, and the per-thread scratch they live in. Shared by embed and verify
// (engine/images/mark.cpp) and tested against brute-force references
// (tests/images/test_images.cpp). Host only: the backends get the finished planes.
#include <cstddef>
#include <memory>

#include "didmark/images.hpp"

namespace didmark::images {

inline constexpr int kMaskRadius = 2;      // 5 x 5 local contrast for the mask
inline constexpr float kMaskRef = 8.0f;    // contrast (8-bit levels) where the mask is 1
inline constexpr float kMaskMin = 0.5f, kMaskMax = 2.0f;
inline constexpr int kMeanRadius = 4;      // 9 x 9 local mean removed from the luminance
inline constexpr int kNormRadius = 7;      // 15 x 15 local RMS the residual is divided by

// Scratch planes of the calling thread, reused from image to image: a fresh 8 MB vector
// comes from mmap as zero pages, and faulting them in was a third of the time per 1080p
// image. Planes over kKeepBytes are released after each image so one huge image does not pin
// a worker's memory.
class Scratch {
 public:
  float* plane(int k, std::size_t n) {
    Buf& b = bufs_[k];
    if (b.size < n) {
      b.data.reset(new float[n]);  // left uninitialised: every element is written before it is read
      b.size = n;
    }
    return b.data.get();
  }
  void trim() {
    for (Buf& b : bufs_)
      if (b.size * sizeof(float) > kKeepBytes) b = Buf{};
  }

 private:
  static constexpr std::size_t kKeepBytes = std::size_t{64} << 20;
  struct Buf {
    std::unique_ptr<float[]> data;
    std::size_t size = 0;
  };
  Buf bufs_[4];
};

/// The calling thread's scratch.
Scratch& scratch();

struct TrimOnExit {
  ~TrimOnExit() { scratch().trim(); }
};

/// The luminance of an 8-bit image: 0.299 R + 0.587 G + 0.114 B, or the grey channel.
void luma_into(const Image& img, float* y);

/// The perceptual mask: clamp(sd(Y) over 5 x 5 / kMaskRef, kMaskMin, kMaskMax), windows
/// clipped to the image.
void mask_into(const float* y, int w, int h, float* mask);

/// The detector's whitened residual: (Y - mean9(Y)) / (rms15(residual) + 1), windows clipped
/// to the image. `res` holds the raw residual on the way; `out` the result.
void residual_into(const float* y, int w, int h, float* res, float* out);

}  // namespace didmark::images
