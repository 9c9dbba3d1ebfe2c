/*
 * test_rt_storm.c - a crash storm beside a subtree that keeps serving.
 *
 * root (one_for_one)
 *   storm (one_for_one, huge intensity): 4 workers that crash as soon as
 *     they start, so they are restarted thousands of times;
 *   service (one_for_one): an echo server registered as "storm.echo".
 *
 * While the storm runs, this thread calls the echo server again and again:
 * every call must be answered within a deadline, and the echo server must
 * never have been restarted. Then the whole tree stops in order.
 */
#include "test_rt_common.h"

enum { T_CRASH = 1, T_ECHO };

static _Atomic long g_starts;

static int crasher_init(rt_actor_t *self, void *arg)
{
    atomic_fetch_add(&g_starts, 1);
    return rt_send_copy(rt_system(self), rt_self(self), T_CRASH, NULL, 0);
}

static int crasher_handle(rt_actor_t *self, rt_msg_t *msg)
{
    return msg->type == T_CRASH ? -1 : RT_CONTINUE;
}

static const rt_behaviour_t crasher = {
    .kind = "crasher",
    .init = crasher_init,
    .handle = crasher_handle,
};

static int echo_init(rt_actor_t *self, void *arg)
{
    return rt_register(rt_system(self), "storm.echo", rt_self(self));
}

static int echo_handle(rt_actor_t *self, rt_msg_t *msg)
{
    if (msg->type != T_ECHO)
        return RT_CONTINUE;
    rt_msg_t *r = rt_msg_new(T_ECHO, msg->size);
    if (!r)
        return RT_ENOMEM;
    memcpy(r->data, msg->data, msg->size);
    TCHECK(rt_reply(rt_system(self), msg, r) == 0);
    return RT_CONTINUE;
}

static const rt_behaviour_t echo = {
    .kind = "echo",
    .init = echo_init,
    .handle = echo_handle,
};

static void test_crash_storm_spares_sibling(void **state)
{
    (void)state;
    trt_reset_checks();
    rt_system_t *sys = trt_start(2, 0, 0);
    trt_port_t *tp = trt_port_new(sys);
    rt_child_spec_t workers[4];
    for (int i = 0; i < 4; i++)
        workers[i] = (rt_child_spec_t){
            .name = "crasher", .behaviour = &crasher, .restart = RT_PERMANENT};
    rt_sup_spec_t storm = {"storm", RT_ONE_FOR_ONE, 1000000000u, 60000, workers,
                           4,       false};
    rt_child_spec_t ec = {
        .name = "echo", .behaviour = &echo, .restart = RT_PERMANENT};
    rt_sup_spec_t service = {"service", RT_ONE_FOR_ONE, 3, 60000, &ec,
                             1,         false};
    rt_child_spec_t top[2] = {
        {.name = "storm",
         .behaviour = &rt_supervisor,
         .arg = &storm,
         .restart = RT_PERMANENT,
         .is_supervisor = true},
        {.name = "service",
         .behaviour = &rt_supervisor,
         .arg = &service,
         .restart = RT_PERMANENT,
         .is_supervisor = true},
    };
    rt_sup_spec_t root_spec = {"root", RT_ONE_FOR_ONE, 3, 60000, top, 2, false};
    atomic_store(&g_starts, 0);
    int err = 0;
    rt_id_t root = rt_sup_start(sys, &root_spec, &err);
    assert_true(root > 0);

    rt_id_t e = 0;
    assert_true(TRT_WAIT_UNTIL((e = rt_whereis(sys, "storm.echo")) != 0, 5000));
#ifdef TRT_TSAN
    /* restarts run about 10,000x slower under ThreadSanitizer than plain
     * (see the report of the runtime tests): keep the storm short */
    const long target = trt_count(300, 30);
#else
    const long target = trt_count(5000, 500);
#endif
    const int deadline = trt_ms(250);
    int64_t worst = 0, t_end = trt_now_ms() + trt_ms(30000);
    long calls = 0;
    /* the storm is counted from the first call on, so that every restart
     * counted happened while calls were being made */
    const long begin = atomic_load(&g_starts);
    while ((atomic_load(&g_starts) - begin < target || calls < 200) &&
           trt_now_ms() < t_end) {
        rt_msg_t *m = rt_msg_new(T_ECHO, sizeof(calls));
        memcpy(m->data, &calls, sizeof(calls));
        int64_t t0 = trt_now_us();
        rt_msg_t *r = rt_port_call(tp->p, e, m, deadline);
        int64_t dt = trt_now_us() - t0;
        if (!r)
            fail_msg("call %ld unanswered within %d ms (%ld restarts so "
                     "far)",
                     calls, deadline, atomic_load(&g_starts));
        long back;
        memcpy(&back, r->data, sizeof(back));
        rt_msg_free(r);
        assert_int_equal(back, calls);
        if (dt > worst)
            worst = dt;
        calls++;
        /* a client's pace, not a flood: the storm must get the CPU too */
        trt_poll_pause();
    }
    long starts = atomic_load(&g_starts) - begin;
    print_message("%ld worker starts, %ld calls, worst %lld us\n", starts,
                  calls, (long long)worst);
    assert_true(starts >= target);
    assert_true(calls >= 200);
    assert_int_equal(rt_whereis(sys, "storm.echo"), e);
    rt_actor_info_t ai;
    assert_int_equal(rt_actor_info(sys, e, &ai), 0);
    assert_int_equal(ai.restarts, 0);

    rt_system_info_t si;
    rt_system_info(sys, &si);
    assert_true(si.crashed >= (uint64_t)target - 4);

    assert_int_equal(rt_sup_stop(sys, root, trt_ms(10000)), 0);
    assert_false(trt_alive(sys, root));
    assert_false(trt_alive(sys, e));
    trt_port_free(tp);
    rt_system_stop(sys);
    assert_no_handler_failures();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_crash_storm_spares_sibling),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
