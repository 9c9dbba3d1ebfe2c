/*
 * test_rt_shutdown.c - rt_system_stop() with live actors.
 *
 * Every live actor ends through its terminate callback, exactly once; a
 * plain actor with nothing linked ends with the kill (RT_EKILLED). Actors
 * with queued messages, pending timers and requests, names, links, trapped
 * exits, arenas and a supervision tree are all released: LeakSanitizer
 * checks at exit in the ASan build. Stopping does not wait for a long
 * backlog to be handled, and a system can be started and stopped many
 * times in one process.
 */
#include "test_rt_common.h"

enum { T_WORK = 1, T_SETUP };

#define NPLAIN 100
#define NTOTAL 400

static _Atomic int g_terms[NTOTAL];
static _Atomic int g_reason[NTOTAL];
static _Atomic int g_inits;
static _Atomic int g_setups;      /* T_SETUP handlers finished */
static _Atomic int64_t g_term_ms; /* when the last terminate ran */

typedef struct life_arg {
    int index;
    int spin_us;
} life_arg_t;

typedef struct life_state {
    life_arg_t *arg;
} life_state_t;

static int life_init(rt_actor_t *self, void *varg)
{
    life_arg_t *arg = varg;
    ((life_state_t *)rt_state(self))->arg = arg;
    atomic_fetch_add(&g_inits, 1);
    /* something in the arena to be released with the actor */
    char *p = rt_alloc(self, 1000 + (size_t)arg->index);
    TCHECK(p != NULL);
    if (p)
        memset(p, 1, 1000);
    return 0;
}

static int life_handle(rt_actor_t *self, rt_msg_t *msg)
{
    life_state_t *st = rt_state(self);
    rt_system_t *sys = rt_system(self);
    if (msg->type == T_WORK && st->arg->spin_us) {
        trt_spin_us(st->arg->spin_us);
    } else if (msg->type == T_SETUP) {
        rt_id_t peer;
        memcpy(&peer, msg->data, sizeof(peer));
        int i = st->arg->index;
        char name[32];
        snprintf(name, sizeof(name), "life.%d", i);
        TCHECK(rt_register(sys, name, rt_self(self)) == 0);
        TCHECK(rt_register_key(sys, 5000 + (uint64_t)i, rt_self(self)) == 0);
        TCHECK(rt_send_after(sys, rt_self(self), rt_msg_new(T_WORK, 0), 60000) >
               0);
        if (peer) {
            TCHECK(rt_monitor(self, peer) > 0);
            TCHECK(rt_request(self, peer, rt_msg_new(T_WORK, 0), 60000) > 0);
            if (i % 2)
                TCHECK(rt_link(self, peer) == 0);
        }
        if (i % 3 == 0)
            rt_trap_exit(self, true);
        atomic_fetch_add(&g_setups, 1);
    }
    return RT_CONTINUE;
}

static void life_terminate(rt_actor_t *self, int reason)
{
    life_state_t *st = rt_state(self);
    int i = st->arg->index;
    atomic_store(&g_reason[i], reason);
    atomic_store(&g_term_ms, trt_now_ms());
    atomic_fetch_add(&g_terms[i], 1);
}

static const rt_behaviour_t life = {
    .kind = "life",
    .state_size = sizeof(life_state_t),
    .init = life_init,
    .handle = life_handle,
    .terminate = life_terminate,
};

static void reset_terms(void)
{
    atomic_store(&g_inits, 0);
    atomic_store(&g_setups, 0);
    for (int i = 0; i < NTOTAL; i++) {
        atomic_store(&g_terms[i], 0);
        atomic_store(&g_reason[i], 0);
    }
}

static void test_stop_with_live_actors(void **state)
{
    (void)state;
    trt_reset_checks();
    reset_terms();
    rt_system_t *sys = trt_start(2, 0, 0);
    static life_arg_t args[NTOTAL];
    for (int i = 0; i < NTOTAL; i++)
        args[i] = (life_arg_t){i, 0};

    /* plain actors, untouched but for queued messages */
    rt_id_t ids[NTOTAL];
    for (int i = 0; i < NPLAIN; i++) {
        ids[i] = trt_spawn(sys, &life, &args[i], NULL);
        for (int k = 0; k < 10; k++)
            assert_int_equal(rt_send_copy(sys, ids[i], T_WORK, NULL, 0), 0);
    }
    /* actors with names, timers, requests, monitors, links, traps */
    for (int i = NPLAIN; i < 300; i++) {
        ids[i] = trt_spawn(sys, &life, &args[i], NULL);
        rt_id_t peer = i > NPLAIN ? ids[i - 1] : 0;
        assert_int_equal(
            rt_send_copy(sys, ids[i], T_SETUP, &peer, sizeof(peer)), 0);
    }
    /* a supervision tree of 100 children */
    static rt_child_spec_t cs[NTOTAL - 300];
    for (int i = 300; i < NTOTAL; i++)
        cs[i - 300] = (rt_child_spec_t){.name = "kid",
                                        .behaviour = &life,
                                        .arg = &args[i],
                                        .restart = RT_PERMANENT};
    rt_sup_spec_t spec = {"tree", RT_ONE_FOR_ONE, 5,    1000,
                          cs,     NTOTAL - 300,   false};
    int err = 0;
    assert_true(rt_sup_start(sys, &spec, &err) > 0);
    /* every init has run and every setup is done */
    assert_true(TRT_WAIT_UNTIL(atomic_load(&g_inits) == NTOTAL, 5000));
    /* setups run on both schedulers: wait for all of them, not for the
     * last one spawned */
    assert_true(TRT_WAIT_UNTIL(atomic_load(&g_setups) == 300 - NPLAIN, 5000));

    rt_system_stop(sys);
    for (int i = 0; i < NTOTAL; i++)
        if (atomic_load(&g_terms[i]) != 1)
            fail_msg("actor %d: terminate ran %d times", i,
                     atomic_load(&g_terms[i]));
    for (int i = 0; i < NPLAIN; i++)
        assert_int_equal(atomic_load(&g_reason[i]), RT_EKILLED);
    assert_no_handler_failures();
}

/* Stopping with a long backlog does not handle it all first. */
static void test_stop_does_not_drain_backlog(void **state)
{
    (void)state;
    trt_reset_checks();
    reset_terms();
    rt_system_t *sys = trt_start(2, 0, 1000000); /* room for the backlog */
    static life_arg_t slow = {0, 50};
    rt_id_t a = trt_spawn(sys, &life, &slow, NULL);
    assert_true(TRT_WAIT_UNTIL(atomic_load(&g_inits) == 1, 5000));
    const int n = 100000; /* 5 s of work at 50 us each */
    for (int i = 0; i < n; i++)
        assert_int_equal(rt_send_copy(sys, a, T_WORK, NULL, 0), 0);
    int64_t t0 = trt_now_ms();
    rt_system_stop(sys);
    int64_t dt = trt_now_ms() - t0;
    int64_t term = atomic_load(&g_term_ms) - t0;
    print_message("terminate after %lld ms, stopped in %lld ms\n",
                  (long long)term, (long long)dt);
    assert_true(term < 2000);
    assert_true(dt < 2000);
    assert_int_equal(atomic_load(&g_terms[0]), 1);
    assert_int_equal(atomic_load(&g_reason[0]), RT_EKILLED);
}

/* Many start/stop cycles in one process: threads joined, nothing left. */
static void test_start_stop_cycles(void **state)
{
    (void)state;
    trt_reset_checks();
    static life_arg_t args[20];
    for (int cycle = 0; cycle < 10; cycle++) {
        reset_terms();
        rt_system_t *sys = trt_start(2, 0, 0);
        for (int i = 0; i < 20; i++) {
            args[i] = (life_arg_t){i, 0};
            rt_id_t id = trt_spawn(sys, &life, &args[i], NULL);
            assert_int_equal(rt_send_copy(sys, id, T_WORK, NULL, 0), 0);
        }
        assert_true(TRT_WAIT_UNTIL(atomic_load(&g_inits) == 20, 5000));
        rt_system_stop(sys);
        for (int i = 0; i < 20; i++)
            assert_int_equal(atomic_load(&g_terms[i]), 1);
    }
    assert_no_handler_failures();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_stop_with_live_actors),
        cmocka_unit_test(test_stop_does_not_drain_backlog),
        cmocka_unit_test(test_start_stop_cycles),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
