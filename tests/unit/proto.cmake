# Unit tests of proto/ (the wire layer). Included by tests/CMakeLists.txt:
#   include(${CMAKE_CURRENT_SOURCE_DIR}/unit/proto.cmake)
# Paths are relative to this file, so the including directory does not
# matter.

foreach(t codec ws client)
  add_executable(test_proto_${t} ${CMAKE_CURRENT_LIST_DIR}/test_proto_${t}.c)
  target_link_libraries(test_proto_${t} PRIVATE parley_proto
                        PkgConfig::CMOCKA)
  add_test(NAME proto_${t} COMMAND test_proto_${t})
  set_tests_properties(proto_${t} PROPERTIES LABELS "unit;proto" TIMEOUT 60)
endforeach()
target_link_libraries(test_proto_client PRIVATE Threads::Threads)
