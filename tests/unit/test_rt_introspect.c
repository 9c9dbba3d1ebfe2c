/*
 * test_rt_introspect.c - introspection that never stops the world.
 *
 * While actors are flooded, rt_actor_info() gives each one's id, kind and
 * parent, a queue no longer than what was sent, and a handled count that
 * only grows; rt_actor_foreach() lists them (and the port) and stops when
 * asked; rt_system_info() and rt_sched_info() give sane, growing
 * counters. rt_actor_detail() returns an actor's links, monitors, state
 * summary and a supervisor's children; pinned actors stay on their
 * scheduler and say so.
 */
#include "test_rt_common.h"

enum { T_WORK = 1, T_LINK, T_MONITOR, T_CRASH, T_STOP, T_WHERE };
enum { EV_DONE = 1, EV_WHERE };

typedef struct busy_state {
    rt_id_t port;
    pthread_t thread;
    int moved;
} busy_state_t;

static int busy_init(rt_actor_t *self, void *arg)
{
    busy_state_t *st = rt_state(self);
    st->port = arg ? *(rt_id_t *)arg : 0;
    st->thread = pthread_self();
    return 0;
}

static int busy_handle(rt_actor_t *self, rt_msg_t *msg)
{
    busy_state_t *st = rt_state(self);
    rt_id_t v = 0;
    if (msg->size >= sizeof(v))
        memcpy(&v, msg->data, sizeof(v));
    if (!pthread_equal(st->thread, pthread_self()))
        st->moved++;
    switch (msg->type) {
    case T_WORK:
        trt_spin_us(5);
        break;
    case T_LINK:
        TCHECK(rt_link(self, v) == 0);
        break;
    case T_MONITOR:
        TCHECK(rt_monitor(self, v) > 0);
        break;
    case T_CRASH:
        return -3;
    case T_STOP:
        return RT_STOP;
    case T_WHERE:
        trt_emit(rt_system(self), st->port, EV_WHERE, 0, rt_self(self),
                 st->moved, 0);
        break;
    }
    return RT_CONTINUE;
}

static void busy_describe(rt_actor_t *self, char *buf, size_t len)
{
    snprintf(buf, len, "busy actor %llu", (unsigned long long)rt_self(self));
}

static const rt_behaviour_t busy = {
    .kind = "busy",
    .state_size = sizeof(busy_state_t),
    .init = busy_init,
    .handle = busy_handle,
    .describe = busy_describe,
};

static int setup(void **state)
{
    trt_reset_checks();
    *state = trt_start(2, 0, 0);
    return 0;
}

static int teardown(void **state)
{
    rt_system_stop(*state);
    return 0;
}

#define NBUSY 8

typedef struct flood {
    rt_system_t *sys;
    const rt_id_t *ids;
    long per;
    _Atomic long sent[NBUSY];
    _Atomic int done;
} flood_t;

static void *flood_main(void *varg)
{
    flood_t *f = varg;
    for (long i = 0; i < f->per; i++)
        for (int k = 0; k < NBUSY; k++) {
            TCHECK(rt_send_copy(f->sys, f->ids[k], T_WORK, NULL, 0) == 0);
            atomic_fetch_add(&f->sent[k], 1);
        }
    atomic_store(&f->done, 1);
    return NULL;
}

typedef struct census {
    rt_id_t port;
    int busy, ports, calls;
} census_t;

static int census_fn(const rt_actor_info_t *ai, void *ctx)
{
    census_t *c = ctx;
    c->calls++;
    if (ai->kind && strcmp(ai->kind, "busy") == 0)
        c->busy++;
    if (ai->id == c->port && ai->is_port)
        c->ports++;
    return 0;
}

static int stop_at_first(const rt_actor_info_t *ai, void *ctx)
{
    (*(int *)ctx)++;
    return 1;
}

static void test_info_while_busy(void **state)
{
    rt_system_t *sys = *state;
    trt_port_t *tp = trt_port_new(sys);
    rt_id_t ids[NBUSY];
    rt_spawn_opts_t so = {.parent = tp->id};
    for (int i = 0; i < NBUSY; i++)
        ids[i] = trt_spawn(sys, &busy, NULL, &so);
    rt_system_info_t s0, s1;
    rt_system_info(sys, &s0);
    assert_int_equal(s0.schedulers, 2);
    assert_true(s0.live_actors >= NBUSY + 1);
    assert_true(s0.spawned >= NBUSY);

    flood_t *f = calloc(1, sizeof(*f));
    f->sys = sys;
    f->ids = ids;
    f->per = trt_count(3000, 300);
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, flood_main, f), 0);
    uint64_t last[NBUSY] = {0};
    long samples = 0;
    while (!atomic_load(&f->done) || samples < 50) {
        for (int i = 0; i < NBUSY; i++) {
            rt_actor_info_t ai;
            assert_int_equal(rt_actor_info(sys, ids[i], &ai), 0);
            long sent = atomic_load(&f->sent[i]);
            assert_int_equal(ai.id, ids[i]);
            assert_string_equal(ai.kind, "busy");
            assert_int_equal(ai.parent, tp->id);
            assert_int_equal(ai.scheduler, -1);
            assert_false(ai.is_port);
            /* a send counted after it landed: at most one in flight */
            assert_true(ai.handled + ai.mailbox <= (uint64_t)sent + 1);
            assert_true(ai.handled >= last[i]);
            last[i] = ai.handled;
        }
        census_t c = {.port = tp->id};
        rt_actor_foreach(sys, census_fn, &c);
        assert_int_equal(c.busy, NBUSY);
        assert_int_equal(c.ports, 1);
        for (int i = 0; i < 2; i++) {
            rt_sched_info_t si;
            assert_int_equal(rt_sched_info(sys, i, &si), 0);
            assert_int_equal(si.index, i);
            assert_true(si.busy >= 0.0 && si.busy <= 1.0);
        }
        samples++;
        sched_yield();
    }
    pthread_join(th, NULL);
    int once = 0;
    rt_actor_foreach(sys, stop_at_first, &once);
    assert_int_equal(once, 1);
    rt_sched_info_t bad;
    assert_true(rt_sched_info(sys, 2, &bad) < 0);
    assert_true(rt_sched_info(sys, -1, &bad) < 0);

    /* once drained, the counters add up */
    uint64_t total = (uint64_t)f->per * NBUSY;
    for (int i = 0; i < NBUSY; i++) {
        rt_actor_info_t ai;
        assert_true(TRT_WAIT_UNTIL(rt_actor_info(sys, ids[i], &ai) == 0 &&
                                       ai.handled == (uint64_t)f->per &&
                                       ai.mailbox == 0,
                                   20000));
    }
    rt_system_info(sys, &s1);
    assert_true(s1.messages >= s0.messages + total);
    uint64_t sched_msgs = 0, turns = 0;
    for (int i = 0; i < 2; i++) {
        rt_sched_info_t si;
        assert_int_equal(rt_sched_info(sys, i, &si), 0);
        sched_msgs += si.messages;
        turns += si.turns;
    }
    assert_true(sched_msgs >= total);
    assert_true(turns > 0);
    print_message("%ld samples; %llu turns for %llu messages\n", samples,
                  (unsigned long long)turns, (unsigned long long)sched_msgs);
    free(f);
    trt_port_free(tp);
    assert_no_handler_failures();
}

/* Crashes and exits are counted; live actors go back down. */
static void test_system_counters(void **state)
{
    rt_system_t *sys = *state;
    trt_port_t *tp = trt_port_new(sys);
    rt_system_info_t s0, s1;
    rt_system_info(sys, &s0);
    uint64_t refs[5];
    for (int i = 0; i < 5; i++) {
        rt_id_t a = trt_spawn(sys, &busy, NULL, NULL);
        refs[i] = rt_port_monitor(tp->p, a);
        assert_int_equal(
            rt_send_copy(sys, a, i < 3 ? T_CRASH : T_STOP, NULL, 0), 0);
    }
    for (int i = 0; i < 5; i++)
        trt_wait_down(tp, refs[i], 5000);
    assert_true(TRT_WAIT_UNTIL(
        (rt_system_info(sys, &s1), s1.live_actors == s0.live_actors), 5000));
    assert_int_equal(s1.spawned - s0.spawned, 5);
    assert_int_equal(s1.crashed - s0.crashed, 3);
    assert_int_equal(s1.exited - s0.exited, 5);
    trt_port_free(tp);
}

/* Detail: links, monitors, summary; a supervisor's children; a dead id. */
static void test_actor_detail(void **state)
{
    rt_system_t *sys = *state;
    trt_port_t *tp = trt_port_new(sys);
    rt_id_t a = trt_spawn(sys, &busy, &tp->id, NULL);
    rt_id_t b = trt_spawn(sys, &busy, &tp->id, NULL);
    rt_id_t c = trt_spawn(sys, &busy, &tp->id, NULL);
    rt_id_t d = trt_spawn(sys, &busy, &tp->id, NULL);
    assert_int_equal(rt_send_copy(sys, a, T_LINK, &b, sizeof(b)), 0);
    assert_int_equal(rt_send_copy(sys, a, T_LINK, &c, sizeof(c)), 0);
    assert_int_equal(rt_send_copy(sys, a, T_MONITOR, &d, sizeof(d)), 0);

    rt_actor_detail_t dt;
    trt_detail(tp, a, &dt);
    assert_int_equal(dt.info.id, a);
    assert_string_equal(dt.info.kind, "busy");
    assert_int_equal(dt.nlinks, 2);
    assert_true((dt.links[0] == b && dt.links[1] == c) ||
                (dt.links[0] == c && dt.links[1] == b));
    assert_int_equal(dt.nmonitors, 1);
    assert_int_equal(dt.monitors[0], d);
    assert_int_equal(dt.nchildren, 0);
    char want[64];
    snprintf(want, sizeof(want), "busy actor %llu", (unsigned long long)a);
    assert_string_equal(dt.summary, want);

    /* the other ends learn of it through their own mailboxes */
    assert_true(TRT_WAIT_UNTIL((trt_detail(tp, b, &dt), dt.nlinks == 1), 5000));
    assert_int_equal(dt.links[0], a);
    assert_true(
        TRT_WAIT_UNTIL((trt_detail(tp, d, &dt), dt.nmonitored_by == 1), 5000));

    /* a supervisor lists its children */
    rt_child_spec_t cs[2] = {
        {.name = "k1", .behaviour = &busy, .restart = RT_PERMANENT},
        {.name = "k2", .behaviour = &busy, .restart = RT_PERMANENT},
    };
    rt_sup_spec_t spec = {"detail", RT_ONE_FOR_ONE, 1, 1000, cs, 2, false};
    int err = 0;
    rt_id_t sup = rt_sup_start(sys, &spec, &err);
    assert_true(sup > 0);
    trt_detail(tp, sup, &dt);
    assert_int_equal(dt.nchildren, 2);
    for (int i = 0; i < 2; i++) {
        rt_actor_info_t ai;
        assert_int_equal(rt_actor_info(sys, dt.children[i], &ai), 0);
        assert_int_equal(ai.parent, sup);
    }
    assert_int_equal(rt_sup_stop(sys, sup, trt_ms(5000)), 0);

    /* a dead actor has no detail */
    uint64_t ref = rt_port_monitor(tp->p, c);
    assert_int_equal(rt_send_copy(sys, c, T_STOP, NULL, 0), 0);
    trt_wait_down(tp, ref, 5000);
    assert_int_equal(rt_actor_detail(sys, c, tp->id, 1), RT_ENOPROC);
    trt_port_free(tp);
    assert_no_handler_failures();
}

/* A pinned actor reports its scheduler and never moves, under load. */
static void test_pinned_actor_stays(void **state)
{
    rt_system_t *sys = *state;
    trt_port_t *tp = trt_port_new(sys);
    rt_spawn_opts_t so = {.pinned = true, .pin = 1};
    rt_id_t p = trt_spawn(sys, &busy, &tp->id, &so);
    rt_id_t others[4];
    for (int i = 0; i < 4; i++)
        others[i] = trt_spawn(sys, &busy, &tp->id, NULL);
    rt_actor_info_t ai;
    assert_int_equal(rt_actor_info(sys, p, &ai), 0);
    assert_int_equal(ai.scheduler, 1);
    for (int n = 0; n < 2000; n++) {
        assert_int_equal(rt_send_copy(sys, p, T_WORK, NULL, 0), 0);
        assert_int_equal(rt_send_copy(sys, others[n % 4], T_WORK, NULL, 0), 0);
    }
    assert_int_equal(rt_send_copy(sys, p, T_WHERE, NULL, 0), 0);
    trt_event_t ev;
    assert_true(trt_wait_event(tp, EV_WHERE, -1, &ev, 10000));
    assert_int_equal(ev.id, p);
    assert_int_equal(ev.a, 0);
    trt_port_free(tp);
    assert_no_handler_failures();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_info_while_busy, setup, teardown),
        cmocka_unit_test_setup_teardown(test_system_counters, setup, teardown),
        cmocka_unit_test_setup_teardown(test_actor_detail, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pinned_actor_stays, setup,
                                        teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
