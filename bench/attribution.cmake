# Attribution: KNN-Shapley at N = 10^5 (CPU) / 10^6 (GPU), and gradient projection GB/s at
# p = 10^7, k = 2048 next to the GEMM peak measured in the same run (included by
# bench/CMakeLists.txt). bench/knn_shapley_vs_numpy.py compares the CLI with NumPy.
add_executable(bench_attribution ${CMAKE_CURRENT_SOURCE_DIR}/bench_attribution.cpp)
if(DIDMARK_HAVE_CUDA)
  target_sources(bench_attribution PRIVATE ${CMAKE_CURRENT_SOURCE_DIR}/bench_attribution_cuda.cu)
  # The GEMM peak is measured with cuBLAS itself (the library opens it on demand instead).
  target_link_libraries(bench_attribution PRIVATE CUDA::cublas)
endif()
target_include_directories(bench_attribution PRIVATE ${CMAKE_CURRENT_SOURCE_DIR} ${PROJECT_SOURCE_DIR}/engine)
target_link_libraries(bench_attribution PRIVATE didmark benchmark::benchmark)
didmark_set_warnings(bench_attribution)
