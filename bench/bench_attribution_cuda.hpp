#pragma once
// GPU side of bench_attribution: KNN-Shapley at N = 10^6, 10^3 queries, D = 384; projection
// at p = 10^7, k = 2048 from host gradients; cuBLAS SGEMM peak on device-resident matrices.
namespace bench_attr_cuda {
void register_benchmarks();
}
