#pragma once
// Factories of the CUDA backend's area op tables (one per area, each in cuda/<area>_cuda.cpp).
// Each table works on the backend's CudaResources and holds its device lock for the length of
// every call; `host` is the CPU backend's table of the same area, for the pieces that run on
// the host (short tables, host-side helpers).
#include <cstdint>
#include <memory>

namespace didmark::cuda {
class CudaResources;
}
namespace didmark::dataset {
class DatasetOps;
std::unique_ptr<DatasetOps> make_cuda_dataset_ops(cuda::CudaResources& res, DatasetOps& host,
                                                  int64_t table_gpu_min_rows);
}  // namespace didmark::dataset
namespace didmark::attribution {
class AttributionOps;
std::unique_ptr<AttributionOps> make_cuda_attribution_ops(cuda::CudaResources& res, AttributionOps& host);
}  // namespace didmark::attribution
namespace didmark::alignment {
class AlignmentOps;
std::unique_ptr<AlignmentOps> make_cuda_alignment_ops(cuda::CudaResources& res);
}  // namespace didmark::alignment
namespace didmark::images {
class ImageOps;
std::unique_ptr<ImageOps> make_cuda_image_ops(cuda::CudaResources& res);
}  // namespace didmark::images
