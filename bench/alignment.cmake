# Realigned verification next to the plain verify pass on a >= 1 GB checkpoint (included by
# bench/CMakeLists.txt). Figures: docs/perf/alignment.md.
add_executable(bench_alignment ${CMAKE_CURRENT_SOURCE_DIR}/bench_alignment.cpp)
target_link_libraries(bench_alignment PRIVATE didmark benchmark::benchmark)
didmark_set_warnings(bench_alignment)
# The record behind a sketch, measured against per-row descriptors (docs/watermark.md).
add_executable(alignment_design ${CMAKE_CURRENT_SOURCE_DIR}/alignment_design.cpp)
target_include_directories(alignment_design PRIVATE ${PROJECT_SOURCE_DIR}/engine)
target_link_libraries(alignment_design PRIVATE didmark)
didmark_set_warnings(alignment_design)
target_compile_options(alignment_design PRIVATE -Wno-double-promotion)
