# Integration tests of the C client library and parley-cli against a real
# parleyd. Included by tests/CMakeLists.txt:
#   include(${CMAKE_CURRENT_SOURCE_DIR}/integration/c_client.cmake)
# Each run starts its own parleyd on a free port with a fresh data
# directory under /tmp and stops it with SIGTERM.

if(NOT TARGET parleyd)
  message(STATUS "C client integration tests skipped: parleyd is not built")
  return()
endif()

add_executable(test_c_client ${CMAKE_CURRENT_LIST_DIR}/test_c_client.c)
target_link_libraries(test_c_client PRIVATE parley_proto PkgConfig::CMOCKA)

set(PARLEY_C_CLIENT_ENV "PARLEYD=$<TARGET_FILE:parleyd>")
if(TARGET parley-cli)
  list(APPEND PARLEY_C_CLIENT_ENV "PARLEY_CLI=$<TARGET_FILE:parley-cli>")
endif()

add_test(NAME integration_c_client COMMAND test_c_client)
set_tests_properties(integration_c_client PROPERTIES
  ENVIRONMENT "${PARLEY_C_CLIENT_ENV}"
  LABELS "integration" TIMEOUT 120)
