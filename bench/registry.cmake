add_executable(bench_registry ${CMAKE_CURRENT_SOURCE_DIR}/bench_registry.cpp)
target_link_libraries(bench_registry PRIVATE didmark benchmark::benchmark)
didmark_set_warnings(bench_registry)
# The carrier-v2 evaluation (docs/perf/registry.md): a design measurement, not a benchmark.
add_executable(registry_carrier_v2 ${CMAKE_CURRENT_SOURCE_DIR}/registry_carrier_v2.cpp)
target_link_libraries(registry_carrier_v2 PRIVATE didmark)
didmark_set_warnings(registry_carrier_v2)
target_compile_options(registry_carrier_v2 PRIVATE -Wno-double-promotion)
target_include_directories(registry_carrier_v2 PRIVATE ${PROJECT_SOURCE_DIR}/engine)
