/* The actor table under reuse: slots freed by every kind of thread come
 * back, and a sender never reaches a later tenant of a slot. */
#include "test_rt_common.h"

static rt_system_t *start_small(uint32_t max_actors)
{
    rt_config_t cfg = {.schedulers = 2, .max_actors = max_actors};
    int err = 0;
    rt_system_t *sys = rt_system_start(&cfg, &err);
    if (!sys)
        fail_msg("rt_system_start: %s", rt_strerror(err));
    return sys;
}

/* A port dies on the test thread, outside any scheduler: its slot goes
 * to the shared limbo, and must be reclaimed from there. */
static void test_slots_freed_off_scheduler_come_back(void **state)
{
    (void)state;
    rt_system_t *sys = start_small(8);
    for (int i = 0; i < 200; i++) {
        rt_port_t *p = NULL;
        assert_true(TRT_WAIT_UNTIL((p = rt_port_new(sys)) != NULL, 5000));
        rt_port_free(p);
    }
    rt_system_stop(sys);
}

static int echo_handle(rt_actor_t *self, rt_msg_t *m)
{
    if (m->type == 1)
        return RT_STOP;
    rt_msg_t *r = rt_msg_new(2, sizeof(rt_id_t));
    if (r) {
        rt_id_t me = rt_self(self);
        memcpy(r->data, &me, sizeof(me));
        rt_reply(rt_system(self), m, r);
    }
    return RT_CONTINUE;
}

static const rt_behaviour_t echo = {.kind = "echo", .handle = echo_handle};

/* Actors live and die in a table of four slots, while a stale id of each
 * is still used: it must always fail, never reach the slot's new tenant. */
static void test_stale_ids_never_reach_new_tenants(void **state)
{
    (void)state;
    rt_system_t *sys = start_small(4);
    rt_port_t *p = rt_port_new(sys);
    assert_non_null(p);
    rt_id_t stale[64];
    int nstale = 0;
    for (int round = 0; round < (int)trt_count(2000, 200); round++) {
        int err = 0;
        rt_id_t id = 0;
        assert_true(TRT_WAIT_UNTIL(
            (id = rt_spawn(sys, &echo, NULL, NULL, &err)) != 0, 5000));
        rt_msg_t *r = rt_port_call(p, id, rt_msg_new(0, 0), 5000);
        assert_non_null(r);
        rt_id_t who;
        memcpy(&who, r->data, sizeof(who));
        assert_int_equal(who, id);
        rt_msg_free(r);
        uint64_t mon = rt_port_monitor(p, id);
        assert_int_equal(rt_send_copy(sys, id, 1, NULL, 0), 0);
        for (;;) {
            rt_msg_t *d = rt_port_recv(p, 5000);
            assert_non_null(d);
            bool down = d->type == RT_MSG_DOWN && d->ref == mon;
            rt_msg_free(d);
            if (down)
                break;
        }
        for (int i = 0; i < nstale; i++)
            assert_int_equal(rt_send_copy(sys, stale[i], 0, NULL, 0),
                             RT_ENOPROC);
        stale[round % 64] = id;
        if (nstale < 64)
            nstale++;
    }
    rt_port_free(p);
    rt_system_stop(sys);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_slots_freed_off_scheduler_come_back),
        cmocka_unit_test(test_stale_ids_never_reach_new_tenants),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
