# Integration test of the operator's shell: parley-shell -c against a
# real parleyd under load from WebSocket clients. Included by
# tests/CMakeLists.txt after integration.cmake, whose npm fixture it uses:
#   include(${CMAKE_CURRENT_SOURCE_DIR}/integration/shell.cmake)
# Skipped with a message without node, npm, parleyd or parley-shell.

find_program(PARLEY_NODE node)
find_program(PARLEY_NPM npm)

if(NOT PARLEY_NODE OR NOT PARLEY_NPM OR NOT TARGET parleyd
   OR NOT TARGET parley-shell)
  message(STATUS "shell integration test skipped: need node, npm, parleyd "
                 "and parley-shell")
  return()
endif()

add_test(NAME integration_shell
         COMMAND ${PARLEY_NODE} --test ${CMAKE_CURRENT_LIST_DIR}/shell.test.mjs
         WORKING_DIRECTORY ${CMAKE_CURRENT_LIST_DIR})
set_tests_properties(integration_shell PROPERTIES
  FIXTURES_REQUIRED parley_node_modules
  ENVIRONMENT
    "PARLEYD=$<TARGET_FILE:parleyd>;PARLEY_SHELL=$<TARGET_FILE:parley-shell>"
  LABELS "integration" TIMEOUT 180)
