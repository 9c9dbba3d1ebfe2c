/*
 * test_rt_backpressure.c - bounded mailboxes.
 *
 * A flood to an actor with a small mailbox_limit is refused with RT_EFULL
 * once the bound is reached; the queue, as rt_actor_info() shows it, never
 * grows past the bound, even with several threads flooding at once; every
 * accepted message is handled exactly once; refused ones are counted in
 * rt_system_info() and freed (ASan's leak check sees them otherwise).
 */
#include "test_rt_common.h"

enum { T_BLOCK = 1, T_WORK };

typedef struct gate_arg {
    _Atomic int blocked;
    _Atomic int open;
    _Atomic int die; /* with open: T_BLOCK's handler fails */
    _Atomic uint64_t work;
    int spin_us;
} gate_arg_t;

static int gate_init(rt_actor_t *self, void *arg)
{
    *(gate_arg_t **)rt_state(self) = arg;
    return 0;
}

static int gate_handle(rt_actor_t *self, rt_msg_t *msg)
{
    gate_arg_t *a = *(gate_arg_t **)rt_state(self);
    if (msg->type == T_BLOCK) {
        atomic_store(&a->blocked, 1);
        int64_t end = trt_now_ms() + trt_ms(10000);
        while (!atomic_load(&a->open) && trt_now_ms() < end)
            trt_poll_pause();
        TCHECK(atomic_load(&a->open));
        if (atomic_load(&a->die))
            return RT_ECRASH;
    } else if (msg->type == T_WORK) {
        if (a->spin_us)
            trt_spin_us(a->spin_us);
        /* The last touch of *a: the test returns, and its frame holding *a
         * goes, as soon as it sees the count it waits for. */
        atomic_fetch_add(&a->work, 1);
    }
    return RT_CONTINUE;
}

static const rt_behaviour_t gate = {
    .kind = "gate",
    .state_size = sizeof(void *),
    .init = gate_init,
    .handle = gate_handle,
};

static int setup(void **state)
{
    trt_reset_checks();
    *state = trt_start(2, 0, 0);
    return 0;
}

static int teardown(void **state)
{
    if (*state)
        rt_system_stop(*state);
    return 0;
}

/* Floods a blocked actor from this thread; returns how many were accepted.
 * Anything but 0 or RT_EFULL fails the test. */
static uint32_t flood_blocked(rt_system_t *sys, rt_id_t to, int n,
                              uint32_t limit)
{
    uint32_t ok = 0;
    rt_actor_info_t ai;
    for (int i = 0; i < n; i++) {
        int rc = rt_send_copy(sys, to, T_WORK, &i, sizeof(i));
        if (rc == 0)
            ok++;
        else if (rc != RT_EFULL)
            fail_msg("send %d: %s", i, rt_strerror(rc));
        if (i % 64 == 0) {
            assert_int_equal(rt_actor_info(sys, to, &ai), 0);
            assert_true(ai.mailbox <= limit);
        }
    }
    return ok;
}

/* With the actor stuck in a handler, exactly the bound's worth of
 * messages is accepted and the rest refused; once it drains, sending works
 * again. */
static void test_small_limit_refuses_with_efull(void **state)
{
    rt_system_t *sys = *state;
    const uint32_t limit = 64;
    gate_arg_t ga = {0};
    rt_spawn_opts_t so = {.mailbox_limit = limit};
    rt_id_t g = trt_spawn(sys, &gate, &ga, &so);
    rt_system_info_t si0, si1;
    rt_system_info(sys, &si0);

    assert_int_equal(rt_send_copy(sys, g, T_BLOCK, NULL, 0), 0);
    assert_true(TRT_WAIT_UNTIL(atomic_load(&ga.blocked), 5000));
    const int n = 10000;
    uint32_t ok = flood_blocked(sys, g, n, limit);
    assert_in_range(ok, limit - 1, limit);
    rt_actor_info_t ai;
    assert_int_equal(rt_actor_info(sys, g, &ai), 0);
    assert_int_equal(ai.mailbox, ok);
    rt_system_info(sys, &si1);
    assert_int_equal(si1.mailbox_full - si0.mailbox_full, (uint64_t)n - ok);

    atomic_store(&ga.open, 1);
    assert_true(TRT_WAIT_UNTIL(atomic_load(&ga.work) == ok, 5000));
    assert_true(TRT_WAIT_UNTIL(rt_actor_info(sys, g, &ai) == 0 &&
                                   ai.mailbox == 0 && ai.handled == ok + 1,
                               5000));
    /* room again */
    assert_int_equal(rt_send_copy(sys, g, T_WORK, NULL, 0), 0);
    assert_true(TRT_WAIT_UNTIL(atomic_load(&ga.work) == ok + 1, 5000));
    assert_no_handler_failures();
}

/* The system-wide default applies when the spawn gives none. */
static void test_default_limit_from_config(void **state)
{
    rt_system_stop(*state);
    rt_system_t *sys = trt_start(2, 0, 32);
    *state = sys;
    gate_arg_t ga = {0};
    rt_id_t g = trt_spawn(sys, &gate, &ga, NULL);
    assert_int_equal(rt_send_copy(sys, g, T_BLOCK, NULL, 0), 0);
    assert_true(TRT_WAIT_UNTIL(atomic_load(&ga.blocked), 5000));
    uint32_t ok = flood_blocked(sys, g, 1000, 32);
    assert_in_range(ok, 31, 32);
    atomic_store(&ga.open, 1);
    assert_true(TRT_WAIT_UNTIL(atomic_load(&ga.work) == ok, 5000));
    assert_no_handler_failures();
}

typedef struct flood_arg {
    rt_system_t *sys;
    rt_id_t to;
    long n;
    _Atomic uint64_t *ok;
    _Atomic uint64_t *full;
    _Atomic int *running;
} flood_arg_t;

static void *flood_main(void *varg)
{
    flood_arg_t *f = varg;
    for (long i = 0; i < f->n; i++) {
        int rc = rt_send_copy(f->sys, f->to, T_WORK, NULL, 0);
        if (rc == 0)
            atomic_fetch_add(f->ok, 1);
        else if (rc == RT_EFULL)
            atomic_fetch_add(f->full, 1);
        else
            TCHECK(!"unexpected send result");
    }
    atomic_fetch_sub(f->running, 1);
    return NULL;
}

/* Four threads flood a slow actor at once. The queue length sampled
 * meanwhile never passes the bound; accepted plus refused is everything
 * sent; every accepted message is handled. */
static void test_concurrent_flood_stays_bounded(void **state)
{
    rt_system_t *sys = *state;
    const uint32_t limit = 100;
    enum { NTHR = 4 };
    gate_arg_t ga = {.spin_us = 10};
    rt_spawn_opts_t so = {.mailbox_limit = limit};
    rt_id_t g = trt_spawn(sys, &gate, &ga, &so);
    _Atomic uint64_t ok = 0, full = 0;
    _Atomic int running = NTHR;
    flood_arg_t fa = {sys, g, trt_count(50000, 5000), &ok, &full, &running};
    pthread_t th[NTHR];
    for (int i = 0; i < NTHR; i++)
        assert_int_equal(pthread_create(&th[i], NULL, flood_main, &fa), 0);
    uint32_t worst = 0;
    uint64_t samples = 0;
    rt_actor_info_t ai;
    while (atomic_load(&running) > 0) {
        assert_int_equal(rt_actor_info(sys, g, &ai), 0);
        if (ai.mailbox > worst)
            worst = ai.mailbox;
        samples++;
        sched_yield();
    }
    for (int i = 0; i < NTHR; i++)
        pthread_join(th[i], NULL);
    print_message("accepted %llu refused %llu, longest queue %u (%llu "
                  "samples)\n",
                  (unsigned long long)ok, (unsigned long long)full, worst,
                  (unsigned long long)samples);
    assert_true(worst <= limit);
    assert_int_equal(ok + full, (uint64_t)fa.n * NTHR);
    assert_true(full > 0);
    assert_true(
        TRT_WAIT_UNTIL(atomic_load(&ga.work) == atomic_load(&ok), 20000));
    assert_true(TRT_WAIT_UNTIL(
        rt_actor_info(sys, g, &ai) == 0 && ai.mailbox == 0, 5000));
    assert_int_equal(ai.handled, atomic_load(&ok));
    assert_no_handler_failures();
}

/* ---- rt_await_room ------------------------------------------------------ */

enum { T_FILL = 100, T_AWAIT, EV_FULL = 1, EV_ROOM };

/* Sends T_WORK to `to` until refused, then awaits room; on RT_MSG_ROOM it
 * reports the sender, the receiver's depth then, and whether a new send
 * went through. */
typedef struct filler {
    rt_id_t to, port;
    uint32_t sent;
} filler_t;

typedef struct filler_arg {
    rt_id_t to, port;
} filler_arg_t;

static int filler_init(rt_actor_t *self, void *arg)
{
    filler_t *f = rt_state(self);
    const filler_arg_t *fa = arg;
    f->to = fa->to;
    f->port = fa->port;
    return 0;
}

static int filler_handle(rt_actor_t *self, rt_msg_t *msg)
{
    filler_t *f = rt_state(self);
    rt_system_t *sys = rt_system(self);

    if (msg->type == T_FILL) {
        int rc;
        while ((rc = rt_send_copy(sys, f->to, T_WORK, NULL, 0)) == 0)
            f->sent++;
        TCHECK(rc == RT_EFULL);
        TCHECK(rt_await_room(self, f->to) == 0);
        /* twice before the answer: still one answer */
        TCHECK(rt_await_room(self, f->to) == 0);
        trt_emit(sys, f->port, EV_FULL, 0, f->to, f->sent, 0);
    } else if (msg->type == T_AWAIT) {
        TCHECK(rt_await_room(self, f->to) == 0);
        trt_emit(sys, f->port, EV_FULL, 0, f->to, 0, 0);
    } else if (msg->type == RT_MSG_ROOM) {
        rt_actor_info_t ai;
        int64_t depth =
            rt_actor_info(sys, msg->from, &ai) == 0 ? (int64_t)ai.mailbox : -1;
        int rc = rt_send_copy(sys, f->to, T_WORK, NULL, 0);
        trt_emit(sys, f->port, EV_ROOM, 0, msg->from, depth, rc);
    }
    return RT_CONTINUE;
}

static const rt_behaviour_t filler = {
    .kind = "filler",
    .state_size = sizeof(filler_t),
    .init = filler_init,
    .handle = filler_handle,
};

/* Blocks a gate with a mailbox bound of `limit` in its handler, then has
 * a filler send to it until refused and ask for room. Returns the gate's
 * id; *full is the filler's EV_FULL (a: messages it got in). */
static rt_id_t fill_blocked_gate(rt_system_t *sys, trt_port_t *tp,
                                 uint32_t limit, gate_arg_t *ga,
                                 filler_arg_t *fa, trt_event_t *full)
{
    rt_spawn_opts_t so = {.mailbox_limit = limit};
    rt_id_t g = trt_spawn(sys, &gate, ga, &so);
    assert_int_equal(rt_send_copy(sys, g, T_BLOCK, NULL, 0), 0);
    assert_true(TRT_WAIT_UNTIL(atomic_load(&ga->blocked), 5000));
    *fa = (filler_arg_t){g, tp->id};
    rt_id_t f = trt_spawn(sys, &filler, fa, NULL);
    assert_int_equal(rt_send_copy(sys, f, T_FILL, NULL, 0), 0);
    assert_true(trt_wait_event(tp, EV_FULL, -1, full, 5000));
    return g;
}

/* A refused sender hears of room once the receiver is down to half its
 * bound, sends again, and hears it once however often it asked. */
static void test_await_room_wakes_refused_sender(void **state)
{
    rt_system_t *sys = *state;
    const uint32_t limit = 64;
    trt_port_t *tp = trt_port_new(sys);
    gate_arg_t ga = {.spin_us = 200};
    filler_arg_t fa;
    trt_event_t ev;
    rt_id_t g = fill_blocked_gate(sys, tp, limit, &ga, &fa, &ev);
    assert_in_range(ev.a, limit - 1, limit);
    /* nothing while the receiver stays full */
    assert_false(trt_wait_event(tp, EV_ROOM, -1, &ev, 100));

    atomic_store(&ga.open, 1);
    assert_true(trt_wait_event(tp, EV_ROOM, -1, &ev, 5000));
    assert_int_equal(ev.id, g);
    assert_true(ev.a >= 0 && ev.a <= limit / 2);
    assert_int_equal(ev.b, 0); /* the new send went through */
    assert_false(trt_wait_event(tp, EV_ROOM, -1, &ev, 200));
    trt_port_free(tp);
    assert_no_handler_failures();
}

/* Awaiting room in a mailbox that already has it is answered soon. */
static void test_await_room_when_not_full(void **state)
{
    rt_system_t *sys = *state;
    trt_port_t *tp = trt_port_new(sys);
    gate_arg_t ga = {0};
    rt_id_t g = trt_spawn(sys, &gate, &ga, NULL);
    filler_arg_t fa = {g, tp->id};
    rt_id_t f = trt_spawn(sys, &filler, &fa, NULL);
    assert_int_equal(rt_send_copy(sys, f, T_AWAIT, NULL, 0), 0);
    trt_event_t ev;
    assert_true(trt_wait_event(tp, EV_FULL, -1, &ev, 5000));
    assert_true(trt_wait_event(tp, EV_ROOM, -1, &ev, 5000));
    assert_int_equal(ev.id, g);
    assert_int_equal(ev.a, 0);
    assert_int_equal(ev.b, 0);
    assert_false(trt_wait_event(tp, EV_ROOM, -1, &ev, 200));
    trt_port_free(tp);
    assert_no_handler_failures();
}

/* A receiver that dies with waiters tells them; its id then refuses. */
static void test_await_room_on_death(void **state)
{
    rt_system_t *sys = *state;
    const uint32_t limit = 16;
    trt_port_t *tp = trt_port_new(sys);
    gate_arg_t ga = {0};
    filler_arg_t fa;
    trt_event_t ev;
    rt_id_t g = fill_blocked_gate(sys, tp, limit, &ga, &fa, &ev);

    atomic_store(&ga.die, 1);
    atomic_store(&ga.open, 1); /* T_BLOCK's handler fails: the gate dies */
    assert_true(trt_wait_event(tp, EV_ROOM, -1, &ev, 5000));
    assert_int_equal(ev.id, g);
    assert_int_equal(ev.a, -1);         /* gone */
    assert_int_equal(ev.b, RT_ENOPROC); /* and says so */
    trt_port_free(tp);
    assert_no_handler_failures();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_small_limit_refuses_with_efull,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_default_limit_from_config, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_concurrent_flood_stays_bounded,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_await_room_wakes_refused_sender,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_await_room_when_not_full, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_await_room_on_death, setup,
                                        teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
