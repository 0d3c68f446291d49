#pragma once
// GPU side of bench_watermark: device-resident 1 GiB buffers, a read-bandwidth kernel and
// cudaMemcpy device-to-device as baselines.
#include <cstddef>

#include "didmark/watermark.hpp"

namespace bench_cuda {
void register_benchmarks(std::size_t bytes, const didmark::WatermarkKey& key, const didmark::Payload& payload);
}
