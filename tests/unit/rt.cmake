# The actor runtime's unit and stress tests: one cmocka program per file
# tests/unit/test_rt_<name>.c, each registered with ctest as rt_<name>.
#
# Included by tests/CMakeLists.txt. The tests scale their counts down and
# their deadlines up by themselves under ThreadSanitizer and ASan; the
# environment variable PARLEY_TEST_SCALE scales them further.

set(PARLEY_RT_TESTS
    basic     # spawn/send/receive, ids, dead ids, init failure, endings
    mpsc      # many producers against one mailbox: exactly once, in order
    sched     # one thread at a time per actor; batch fairness
    backpressure # bounded mailboxes: RT_EFULL, bounded queue length
    timers    # rt_send_after, rt_cancel_timer, requests, ports
    registry  # names and keys
    links     # links, trap_exit, kills, monitors
    work      # rt_work and the per-actor arena
    sup       # supervisors: strategies, restart rules, intensity, shutdown
    storm     # a crash storm next to a subtree that keeps serving
    fault     # fault points: count, probability, seeded replay, actions
    faultspec # fault points armed from a text setting (runtime engineer)
    introspect # actor, system and scheduler info; actor detail
    shutdown  # rt_system_stop with live actors
    slots     # slot reuse: freed off-scheduler, stale ids stay dead
    undelivered # what an actor leaves queued comes back to it
)

# Per-test time limits in seconds: generous, since a sanitizer build runs
# several times slower; a test that hangs fails here instead of stalling CI.
set(PARLEY_RT_TEST_TIMEOUT 120)

foreach(name IN LISTS PARLEY_RT_TESTS)
  set(src ${CMAKE_CURRENT_LIST_DIR}/test_rt_${name}.c)
  if(NOT EXISTS ${src})
    continue()
  endif()
  add_executable(test_rt_${name} ${src})
  target_include_directories(test_rt_${name} PRIVATE
                             ${PROJECT_SOURCE_DIR}/runtime
                             ${CMAKE_CURRENT_LIST_DIR})
  target_link_libraries(test_rt_${name} PRIVATE parley_rt PkgConfig::CMOCKA
                        PkgConfig::UV Threads::Threads)
  add_test(NAME rt_${name} COMMAND test_rt_${name})
  set_tests_properties(rt_${name} PROPERTIES
                       TIMEOUT ${PARLEY_RT_TEST_TIMEOUT}
                       LABELS "unit;runtime")
endforeach()
