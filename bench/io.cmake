# Checkpoint verify / scan throughput against reading the same >= 2 GiB file, cold and warm
# page cache (included by bench/CMakeLists.txt). Figures: docs/perf/io.md.
add_executable(bench_io ${CMAKE_CURRENT_SOURCE_DIR}/bench_io.cpp)
target_link_libraries(bench_io PRIVATE didmark benchmark::benchmark)
didmark_set_warnings(bench_io)
