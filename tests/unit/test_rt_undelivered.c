/* rt_behaviour_t.undelivered: what an actor leaves queued when it ends is
 * handed back to it, so requests can be answered instead of lost. */
#include "test_rt_common.h"

enum { T_HOLD = 1, T_REQ, T_LOST };

typedef struct hold_arg {
    _Atomic int holding;
    _Atomic int release;
    rt_id_t port;
} hold_arg_t;

typedef struct hold_state {
    hold_arg_t *arg;
} hold_state_t;

static int hold_init(rt_actor_t *self, void *arg)
{
    ((hold_state_t *)rt_state(self))->arg = arg;
    return 0;
}

/* T_HOLD waits (bounded) until told to go on, then crashes. */
static int hold_handle(rt_actor_t *self, rt_msg_t *m)
{
    hold_arg_t *a = ((hold_state_t *)rt_state(self))->arg;
    if (m->type != T_HOLD)
        return RT_CONTINUE;
    atomic_store(&a->holding, 1);
    TCHECK(TRT_WAIT_UNTIL(atomic_load(&a->release), 5000));
    return -42;
}

static void hold_undelivered(rt_actor_t *self, rt_msg_t *m)
{
    hold_arg_t *a = ((hold_state_t *)rt_state(self))->arg;
    TCHECK(m->type == T_REQ);
    TCHECK(rt_current() == self);
    rt_send_copy(rt_system(self), a->port, T_LOST, m->data, m->size);
}

static const rt_behaviour_t hold = {
    .kind = "hold",
    .state_size = sizeof(hold_state_t),
    .init = hold_init,
    .handle = hold_handle,
    .undelivered = hold_undelivered,
};

static void test_queued_requests_come_back(void **state)
{
    (void)state;
    trt_reset_checks();
    rt_system_t *sys = trt_start(2, 0, 0);
    rt_port_t *p = rt_port_new(sys);
    assert_non_null(p);
    static hold_arg_t a;
    atomic_store(&a.holding, 0);
    atomic_store(&a.release, 0);
    a.port = rt_port_id(p);
    rt_id_t h = trt_spawn(sys, &hold, &a, NULL);
    uint64_t mon = rt_port_monitor(p, h);
    assert_int_equal(rt_send_copy(sys, h, T_HOLD, NULL, 0), 0);
    assert_true(TRT_WAIT_UNTIL(atomic_load(&a.holding), 5000));
    enum { N = 5 };
    for (int i = 0; i < N; i++)
        assert_int_equal(rt_send_copy(sys, h, T_REQ, &i, sizeof(i)), 0);
    atomic_store(&a.release, 1);

    int seen = 0, sum = 0;
    bool down = false;
    while (!(down && seen == N)) {
        rt_msg_t *m = rt_port_recv(p, 5000);
        assert_non_null(m);
        if (m->type == T_LOST) {
            int v;
            memcpy(&v, m->data, sizeof(v));
            sum += v;
            seen++;
        } else if (m->type == RT_MSG_DOWN && m->ref == mon) {
            rt_exit_info_t x;
            memcpy(&x, m->data, sizeof(x));
            assert_int_equal(x.reason, -42);
            down = true;
        }
        rt_msg_free(m);
    }
    assert_int_equal(seen, N);
    assert_int_equal(sum, 0 + 1 + 2 + 3 + 4);
    assert_no_handler_failures();
    rt_port_free(p);
    rt_system_stop(sys);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_queued_requests_come_back),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
