add_executable(bench_royalty ${CMAKE_CURRENT_SOURCE_DIR}/bench_royalty.cpp)
target_link_libraries(bench_royalty PRIVATE didmark benchmark::benchmark)
didmark_set_warnings(bench_royalty)
