# Dataset marks: rows/s for CSV embed and verify on a 10^7-row table next to parsing alone,
# and the row-keyed array mark (included by bench/CMakeLists.txt).
add_executable(bench_dataset ${CMAKE_CURRENT_SOURCE_DIR}/bench_dataset.cpp)
target_link_libraries(bench_dataset PRIVATE didmark benchmark::benchmark)
didmark_set_warnings(bench_dataset)
