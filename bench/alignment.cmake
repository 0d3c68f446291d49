# Realigned verification next to the plain verify pass on a >= 1 GB checkpoint (included by
# bench/CMakeLists.txt). Figures: docs/perf/alignment.md.
add_executable(bench_alignment ${CMAKE_CURRENT_SOURCE_DIR}/bench_alignment.cpp)
target_link_libraries(bench_alignment PRIVATE didmark benchmark::benchmark)
didmark_set_warnings(bench_alignment)
