# Unit tests of the load generator's parts. Included by
# tests/CMakeLists.txt:
#   include(${CMAKE_CURRENT_SOURCE_DIR}/unit/bench.cmake)

if(NOT TARGET parley_lghist)
  message(STATUS "bench unit tests skipped: bench/loadgen is not built")
  return()
endif()

add_executable(test_bench_hist ${CMAKE_CURRENT_LIST_DIR}/test_bench_hist.c)
target_link_libraries(test_bench_hist PRIVATE parley_lghist PkgConfig::CMOCKA)
add_test(NAME bench_hist COMMAND test_bench_hist)
set_tests_properties(bench_hist PROPERTIES LABELS "unit;bench" TIMEOUT 60)
