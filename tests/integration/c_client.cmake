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

# Smoke runs of the load generator: small, bounded, against its own
# parleyd. Accounts are created once in the build tree and reused.
if(TARGET loadgen)
  set(PARLEY_LG_DIR ${CMAKE_CURRENT_BINARY_DIR}/loadgen-smoke)
  set(PARLEY_LG_SMOKE
      "idle\;--conns\;200\;--hold\;0.5"
      "connect\;--conns\;200\;--rate\;1000"
      "reconnect-storm\;--conns\;200"
      "one-to-one\;--conns\;200\;--rate\;400\;--duration\;1"
      "catch-up\;--conns\;200\;--backlog\;5"
      "group\;--conns\;64\;--group-size\;16\;--rate\;200\;--duration\;2")
  foreach(args ${PARLEY_LG_SMOKE})
    list(GET args 0 wl)
    add_test(NAME integration_loadgen_${wl}
             COMMAND loadgen ${args} --timeout 30 --run-dir ${PARLEY_LG_DIR}
                     --parleyd $<TARGET_FILE:parleyd>)
    set_tests_properties(integration_loadgen_${wl} PROPERTIES
      LABELS "integration;bench" TIMEOUT 120 RESOURCE_LOCK parley_loadgen)
  endforeach()
endif()
