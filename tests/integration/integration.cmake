# Integration tests: a real parleyd driven over WebSocket by Node's `ws`.
# Included by tests/CMakeLists.txt:
#   include(${CMAKE_CURRENT_SOURCE_DIR}/integration/integration.cmake)
# Needs node and npm on PATH; skipped with a message when they are not.
# `npm ci` runs once as a fixture before the tests that need it.

find_program(PARLEY_NODE node)
find_program(PARLEY_NPM npm)

if(NOT PARLEY_NODE OR NOT PARLEY_NPM OR NOT TARGET parleyd)
  message(STATUS "integration tests skipped: need node, npm and parleyd")
  return()
endif()

set(PARLEY_IT_DIR ${CMAKE_CURRENT_LIST_DIR})

add_test(NAME integration_npm_ci
         COMMAND ${PARLEY_NPM} ci --no-audit --no-fund
         WORKING_DIRECTORY ${PARLEY_IT_DIR})
set_tests_properties(integration_npm_ci PROPERTIES
  FIXTURES_SETUP parley_node_modules LABELS "integration" TIMEOUT 300)

set(PARLEY_INTEGRATION_TESTS accounts errors ws lifecycle chat
  chat_receipts chat_social chat_errors groups groups_scale limits)

foreach(t ${PARLEY_INTEGRATION_TESTS})
  add_test(NAME integration_${t}
           COMMAND ${PARLEY_NODE} --test ${PARLEY_IT_DIR}/${t}.test.mjs
           WORKING_DIRECTORY ${PARLEY_IT_DIR})
  set_tests_properties(integration_${t} PROPERTIES
    FIXTURES_REQUIRED parley_node_modules
    ENVIRONMENT "PARLEYD=$<TARGET_FILE:parleyd>"
    LABELS "integration" TIMEOUT 120)
endforeach()
