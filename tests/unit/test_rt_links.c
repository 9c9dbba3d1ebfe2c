/*
 * test_rt_links.c - links and monitors.
 *
 * Exit propagation along links; trap_exit turning exits into RT_MSG_EXIT;
 * normal exits not ending non-trapping links; rt_kill with RT_EKILLED
 * killing even a trapping actor; monitors: DOWN with the reason and the
 * reference, DOWN with RT_ENOPROC for a dead id, demonitor; links to dead
 * ids; unlink.
 *
 * Every test actor ("peer") reports what reaches it to the test's port,
 * one sender, so the port sees its events in the order they happened.
 */
#include "test_rt_common.h"

enum {
    T_LINK = 1,
    T_UNLINK,
    T_MONITOR,
    T_DEMONITOR,
    T_CRASH,
    T_STOP,
    T_EXIT,
    T_TRAP,
    T_PING,
    T_KILL_SELF,
};

enum { EV_EXIT = 1, EV_DOWN, EV_MON, EV_LINKED, EV_PONG, EV_TERM };

typedef struct peer_state {
    rt_id_t port;
} peer_state_t;

static int peer_init(rt_actor_t *self, void *arg)
{
    ((peer_state_t *)rt_state(self))->port = *(rt_id_t *)arg;
    return 0;
}

static int64_t payload(const rt_msg_t *m)
{
    int64_t v = 0;
    if (m->size >= sizeof(v))
        memcpy(&v, m->data, sizeof(v));
    return v;
}

static int peer_handle(rt_actor_t *self, rt_msg_t *msg)
{
    peer_state_t *st = rt_state(self);
    rt_system_t *sys = rt_system(self);
    rt_id_t me = rt_self(self);
    int64_t v = payload(msg);
    rt_exit_info_t ei;
    switch (msg->type) {
    case T_LINK:
        trt_emit(sys, st->port, EV_LINKED, 0, me, rt_link(self, (rt_id_t)v), v);
        break;
    case T_UNLINK:
        trt_emit(sys, st->port, EV_LINKED, 1, me, rt_unlink(self, (rt_id_t)v),
                 v);
        break;
    case T_MONITOR:
        trt_emit(sys, st->port, EV_MON, 0, me,
                 (int64_t)rt_monitor(self, (rt_id_t)v), v);
        break;
    case T_DEMONITOR:
        rt_demonitor(self, (uint64_t)v);
        break;
    case T_CRASH:
        return (int)v;
    case T_STOP:
        return RT_STOP;
    case T_EXIT:
        rt_exit(self, (int)v);
        break;
    case T_TRAP:
        rt_trap_exit(self, v != 0);
        break;
    case T_PING:
        trt_emit(sys, st->port, EV_PONG, 0, me, v, 0);
        break;
    case T_KILL_SELF:
        TCHECK(rt_kill(sys, me, RT_EKILLED) == 0);
        break;
    case RT_MSG_EXIT:
        TCHECK(msg->size >= sizeof(ei));
        memcpy(&ei, msg->data, sizeof(ei));
        trt_emit(sys, st->port, EV_EXIT, 0, me, (int64_t)ei.who, ei.reason);
        break;
    case RT_MSG_DOWN:
        TCHECK(msg->size >= sizeof(ei));
        memcpy(&ei, msg->data, sizeof(ei));
        /* the monitor's reference rides in `tag` (small in practice) */
        trt_emit(sys, st->port, EV_DOWN, (int)msg->ref, me, (int64_t)ei.who,
                 ei.reason);
        break;
    default:
        break;
    }
    return RT_CONTINUE;
}

static void peer_terminate(rt_actor_t *self, int reason)
{
    peer_state_t *st = rt_state(self);
    trt_emit(rt_system(self), st->port, EV_TERM, 0, rt_self(self), reason, 0);
}

static const rt_behaviour_t peer = {
    .kind = "peer",
    .state_size = sizeof(peer_state_t),
    .init = peer_init,
    .handle = peer_handle,
    .terminate = peer_terminate,
};

typedef struct fixture {
    rt_system_t *sys;
    trt_port_t *tp;
} fixture_t;

static int setup(void **state)
{
    trt_reset_checks();
    fixture_t *f = calloc(1, sizeof(*f));
    f->sys = trt_start(2, 0, 0);
    f->tp = trt_port_new(f->sys);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture_t *f = *state;
    trt_port_free(f->tp);
    rt_system_stop(f->sys);
    free(f);
    return 0;
}

static rt_id_t spawn_peer(fixture_t *f, rt_id_t link, bool trap)
{
    rt_spawn_opts_t so = {.link = link, .trap_exit = trap};
    return trt_spawn(f->sys, &peer, &f->tp->id, &so);
}

#define tell(f, to, type, v) tell_at(f, to, type, v, __LINE__)

static void tell_at(fixture_t *f, rt_id_t to, uint32_t type, int64_t v,
                    int line)
{
    int rc = rt_send_copy(f->sys, to, type, &v, sizeof(v));
    if (rc != 0)
        fail_msg("line %d: send %u to %llu: %s", line, type,
                 (unsigned long long)to, rt_strerror(rc));
}

/* Sends a ping and waits for the pong: the actor is alive and has handled
 * everything it was sent before (by this thread). */
static void ping(fixture_t *f, rt_id_t to)
{
    static int64_t seq = 1000;
    int64_t v = ++seq;
    tell(f, to, T_PING, v);
    trt_ev_key_t k = {EV_PONG, -1};
    for (;;) {
        rt_msg_t *m = trt_wait(f->tp, trt_match_event, &k, 5000);
        if (!m)
            fail_msg("no pong from %llu", (unsigned long long)to);
        trt_event_t ev;
        memcpy(&ev, m->data, sizeof(ev));
        rt_msg_free(m);
        if (ev.id == to && ev.a == v)
            return;
    }
}

static int down_reason(fixture_t *f, uint64_t ref)
{
    return trt_wait_down(f->tp, ref, 5000).reason;
}

/* Waits for an event of `kind` from actor `id`. */
typedef struct from_key {
    int kind;
    rt_id_t id;
} from_key_t;

static bool match_from(const rt_msg_t *m, const void *ctx)
{
    const from_key_t *k = ctx;
    if (m->type != TRT_EVENT)
        return false;
    const trt_event_t *ev = (const trt_event_t *)m->data;
    return ev->kind == k->kind && ev->id == k->id;
}

static trt_event_t wait_from(fixture_t *f, int kind, rt_id_t id)
{
    from_key_t k = {kind, id};
    rt_msg_t *m = trt_wait(f->tp, match_from, &k, 5000);
    if (!m)
        fail_msg("no event %d from %llu", kind, (unsigned long long)id);
    trt_event_t ev;
    memcpy(&ev, m->data, sizeof(ev));
    rt_msg_free(m);
    return ev;
}

static bool has_event_from(fixture_t *f, int kind, rt_id_t id)
{
    from_key_t k = {kind, id};
    rt_msg_t *m = trt_wait(f->tp, match_from, &k, 0);
    if (m)
        rt_msg_free(m);
    return m != NULL;
}

/* A crash at the end of a chain A-B-C ends all three, with its reason. */
static void test_exit_propagates(void **state)
{
    fixture_t *f = *state;
    rt_id_t a = spawn_peer(f, 0, false);
    rt_id_t b = spawn_peer(f, a, false);
    rt_id_t c = spawn_peer(f, b, false);
    uint64_t ra = rt_port_monitor(f->tp->p, a);
    uint64_t rb = rt_port_monitor(f->tp->p, b);
    uint64_t rc = rt_port_monitor(f->tp->p, c);
    tell(f, c, T_CRASH, -42);
    assert_int_equal(down_reason(f, rc), -42);
    assert_int_equal(down_reason(f, rb), -42);
    assert_int_equal(down_reason(f, ra), -42);
    assert_int_equal(wait_from(f, EV_TERM, a).a, -42);
    assert_no_handler_failures();
}

/* A trapping actor gets the exit as a message and lives on; trapping can
 * be switched on and off at run time. */
static void test_trap_exit(void **state)
{
    fixture_t *f = *state;
    rt_id_t a = spawn_peer(f, 0, true);
    rt_id_t b = spawn_peer(f, a, false);
    tell(f, b, T_CRASH, -42);
    trt_event_t ev = wait_from(f, EV_EXIT, a);
    assert_int_equal(ev.a, b);
    assert_int_equal(ev.b, -42);
    ping(f, a);

    /* rt_trap_exit() at run time */
    rt_id_t c = spawn_peer(f, 0, false);
    tell(f, c, T_TRAP, 1);
    rt_id_t d = spawn_peer(f, c, false);
    tell(f, d, T_EXIT, -43);
    ev = wait_from(f, EV_EXIT, c);
    assert_int_equal(ev.a, d);
    assert_int_equal(ev.b, -43);
    tell(f, c, T_TRAP, 0);
    uint64_t rc = rt_port_monitor(f->tp->p, c);
    rt_id_t e = spawn_peer(f, c, false);
    tell(f, e, T_CRASH, -44);
    assert_int_equal(down_reason(f, rc), -44);
    assert_no_handler_failures();
}

/* A normal exit (RT_NORMAL, as `how` ends it) does not end a non-trapping
 * link: it is still there to be killed later, and its DOWN says so. A
 * trapping link is told of it. */
static void normal_exit_case(fixture_t *f, uint32_t how, int reason)
{
    rt_id_t a = spawn_peer(f, 0, false);
    rt_id_t t = spawn_peer(f, 0, true);
    uint64_t ra = rt_port_monitor(f->tp->p, a);
    rt_id_t b = spawn_peer(f, a, false);
    /* the spawn told a of the link before this ping: a knows it now */
    ping(f, a);
    tell(f, t, T_LINK, (int64_t)b);
    assert_int_equal(wait_from(f, EV_LINKED, t).a, 0);
    uint64_t rb = rt_port_monitor(f->tp->p, b);
    tell(f, b, how, reason);
    assert_int_equal(down_reason(f, rb), reason);
    trt_event_t ev = wait_from(f, EV_EXIT, t);
    assert_int_equal(ev.a, b);
    assert_int_equal(ev.b, reason);
    ping(f, a);
    assert_int_equal(rt_kill(f->sys, a, RT_EKILLED), 0);
    assert_int_equal(down_reason(f, ra), RT_EKILLED);
    assert_no_handler_failures();
}

static void test_normal_exit_not_propagated(void **state)
{
    normal_exit_case(*state, T_STOP, RT_NORMAL);
}

/* RT_SHUTDOWN counts as normal for restarts, but, as in Erlang, it does
 * end a non-trapping link (with RT_SHUTDOWN); a trapping one is told. */
static void test_shutdown_exit_propagates(void **state)
{
    fixture_t *f = *state;
    rt_id_t a = spawn_peer(f, 0, false);
    rt_id_t t = spawn_peer(f, 0, true);
    uint64_t ra = rt_port_monitor(f->tp->p, a);
    rt_id_t b = spawn_peer(f, a, false);
    /* the spawn told a of the link before this ping: a knows it now */
    ping(f, a);
    tell(f, t, T_LINK, (int64_t)b);
    assert_int_equal(wait_from(f, EV_LINKED, t).a, 0);
    uint64_t rb = rt_port_monitor(f->tp->p, b);
    tell(f, b, T_EXIT, RT_SHUTDOWN);
    assert_int_equal(down_reason(f, rb), RT_SHUTDOWN);
    trt_event_t ev = wait_from(f, EV_EXIT, t);
    assert_int_equal(ev.a, b);
    assert_int_equal(ev.b, RT_SHUTDOWN);
    assert_int_equal(down_reason(f, ra), RT_SHUTDOWN);
    assert_no_handler_failures();
}

/* A child spawned linked to a trapping actor and crashing at once: the
 * parent hears of every such crash, however the link's announcement and
 * the exit race each other. */
static void test_spawn_link_then_instant_crash(void **state)
{
    fixture_t *f = *state;
    rt_id_t a = spawn_peer(f, 0, true);
    const int n = (int)trt_count(300, 50);
    for (int i = 0; i < n; i++) {
        rt_id_t b = spawn_peer(f, a, false);
        tell(f, b, T_CRASH, -50 - i);
    }
    for (int i = 0; i < n; i++) {
        from_key_t k = {EV_EXIT, a};
        rt_msg_t *m = trt_wait(f->tp, match_from, &k, 5000);
        if (!m)
            fail_msg("a heard of %d of %d linked crashes", i, n);
        rt_msg_free(m);
    }
    ping(f, a);
    assert_no_handler_failures();
}

/* rt_kill: any reason but RT_EKILLED is an exit signal (trappable; ends a
 * non-trapping actor unless normal); RT_EKILLED ends even a trapping one,
 * and terminate still runs. */
static void test_kill(void **state)
{
    fixture_t *f = *state;
    rt_id_t a = spawn_peer(f, 0, true);
    uint64_t ra = rt_port_monitor(f->tp->p, a);
    assert_int_equal(rt_kill(f->sys, a, -7), 0);
    trt_event_t ev = wait_from(f, EV_EXIT, a);
    assert_int_equal(ev.b, -7);
    ping(f, a);
    assert_int_equal(rt_kill(f->sys, a, RT_EKILLED), 0);
    assert_int_equal(down_reason(f, ra), RT_EKILLED);
    assert_int_equal(wait_from(f, EV_TERM, a).a, RT_EKILLED);
    assert_false(has_event_from(f, EV_EXIT, a));

    rt_id_t b = spawn_peer(f, 0, false);
    uint64_t rb = rt_port_monitor(f->tp->p, b);
    assert_int_equal(rt_kill(f->sys, b, RT_NORMAL), 0);
    ping(f, b);
    assert_int_equal(rt_kill(f->sys, b, -8), 0);
    assert_int_equal(down_reason(f, rb), -8);

    /* a kill spreads along links as an abnormal exit */
    rt_id_t c = spawn_peer(f, 0, false);
    rt_id_t d = spawn_peer(f, c, false);
    uint64_t rd = rt_port_monitor(f->tp->p, d);
    assert_int_equal(rt_kill(f->sys, c, RT_EKILLED), 0);
    assert_false(rt_reason_is_normal(down_reason(f, rd)));
    assert_no_handler_failures();
}

/* A kill that arrives while its target is in a turn: the turn takes the
 * kill's wake message and then finds the mailbox empty. The target must
 * die then, not go idle with the kill unseen. The target kills itself
 * from its handler, so the kill lands mid-turn every time. */
static void test_kill_during_a_turn(void **state)
{
    fixture_t *f = *state;
    for (int i = 0; i < 20; i++) {
        rt_id_t a = spawn_peer(f, 0, i % 2 == 0);
        uint64_t ra = rt_port_monitor(f->tp->p, a);
        tell(f, a, T_KILL_SELF, 0);
        assert_int_equal(down_reason(f, ra), RT_EKILLED);
    }
    assert_no_handler_failures();
}

/* A DOWN carries the monitor's reference, who and why; the watcher lives
 * on; two monitors give two DOWNs; a dead id gives DOWN(RT_ENOPROC). */
static void test_monitor_down(void **state)
{
    fixture_t *f = *state;
    rt_id_t m = spawn_peer(f, 0, false);
    rt_id_t t = spawn_peer(f, 0, false);
    tell(f, m, T_MONITOR, (int64_t)t);
    tell(f, m, T_MONITOR, (int64_t)t);
    trt_event_t e1 = wait_from(f, EV_MON, m);
    trt_event_t e2 = wait_from(f, EV_MON, m);
    assert_true(e1.a > 0 && e2.a > 0 && e1.a != e2.a);
    tell(f, t, T_CRASH, -33);
    trt_event_t d1 = wait_from(f, EV_DOWN, m);
    trt_event_t d2 = wait_from(f, EV_DOWN, m);
    assert_int_equal(d1.a, t);
    assert_int_equal(d1.b, -33);
    assert_int_equal(d2.a, t);
    assert_int_equal(d2.b, -33);
    assert_true((d1.tag == (int)e1.a && d2.tag == (int)e2.a) ||
                (d1.tag == (int)e2.a && d2.tag == (int)e1.a));
    ping(f, m);

    /* t is dead now */
    tell(f, m, T_MONITOR, (int64_t)t);
    trt_event_t e3 = wait_from(f, EV_MON, m);
    assert_true(e3.a > 0);
    trt_event_t d3 = wait_from(f, EV_DOWN, m);
    assert_int_equal(d3.tag, (int)e3.a);
    assert_int_equal(d3.a, t);
    assert_int_equal(d3.b, RT_ENOPROC);

    /* from a port too */
    uint64_t pr = rt_port_monitor(f->tp->p, t);
    assert_true(pr > 0);
    rt_exit_info_t ei = trt_wait_down(f->tp, pr, 5000);
    assert_int_equal(ei.who, t);
    assert_int_equal(ei.reason, RT_ENOPROC);
    assert_no_handler_failures();
}

/* After demonitor no DOWN comes for that reference, while another
 * monitor of the same watcher still works. */
static void test_demonitor(void **state)
{
    fixture_t *f = *state;
    rt_id_t m = spawn_peer(f, 0, false);
    rt_id_t t1 = spawn_peer(f, 0, false);
    rt_id_t t2 = spawn_peer(f, 0, false);
    tell(f, m, T_MONITOR, (int64_t)t1);
    int64_t ref1 = wait_from(f, EV_MON, m).a;
    tell(f, m, T_MONITOR, (int64_t)t2);
    wait_from(f, EV_MON, m);
    tell(f, m, T_DEMONITOR, ref1);
    ping(f, m); /* the demonitor is done */
    uint64_t p1 = rt_port_monitor(f->tp->p, t1);
    tell(f, t1, T_CRASH, -1);
    trt_wait_down(f->tp, p1, 5000);
    tell(f, t2, T_CRASH, -2);
    trt_event_t d = wait_from(f, EV_DOWN, m);
    assert_int_equal(d.a, t2);
    ping(f, m);
    assert_false(has_event_from(f, EV_DOWN, m));
    assert_no_handler_failures();
}

/* Linking to a dead id is an exit with RT_ENOPROC: a message for a trapping
 * actor, the end of a non-trapping one. */
static void test_link_to_dead(void **state)
{
    fixture_t *f = *state;
    rt_id_t dead = spawn_peer(f, 0, false);
    uint64_t rd = rt_port_monitor(f->tp->p, dead);
    tell(f, dead, T_STOP, 0);
    trt_wait_down(f->tp, rd, 5000);

    rt_id_t a = spawn_peer(f, 0, true);
    tell(f, a, T_LINK, (int64_t)dead);
    trt_event_t ev = wait_from(f, EV_EXIT, a);
    assert_int_equal(ev.a, dead);
    assert_int_equal(ev.b, RT_ENOPROC);

    rt_id_t b = spawn_peer(f, 0, false);
    uint64_t rb = rt_port_monitor(f->tp->p, b);
    tell(f, b, T_LINK, (int64_t)dead);
    assert_int_equal(down_reason(f, rb), RT_ENOPROC);
    assert_no_handler_failures();
}

/* After unlink, a crash of the former link does not reach the actor. */
static void test_unlink(void **state)
{
    fixture_t *f = *state;
    rt_id_t a = spawn_peer(f, 0, false);
    rt_id_t b = spawn_peer(f, 0, false);
    uint64_t ra = rt_port_monitor(f->tp->p, a);
    uint64_t rb = rt_port_monitor(f->tp->p, b);
    tell(f, a, T_LINK, (int64_t)b);
    assert_int_equal(wait_from(f, EV_LINKED, a).a, 0);
    tell(f, a, T_UNLINK, (int64_t)b);
    wait_from(f, EV_LINKED, a);
    /* a told b of the unlink before it reported back, so b's queue holds
     * the unlink ahead of anything this thread sends b from now on */
    ping(f, b);
    tell(f, b, T_CRASH, -9);
    assert_int_equal(down_reason(f, rb), -9);
    ping(f, a);
    assert_int_equal(rt_kill(f->sys, a, RT_EKILLED), 0);
    assert_int_equal(down_reason(f, ra), RT_EKILLED);
    assert_no_handler_failures();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_exit_propagates, setup, teardown),
        cmocka_unit_test_setup_teardown(test_kill_during_a_turn, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_trap_exit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_normal_exit_not_propagated, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_shutdown_exit_propagates, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_spawn_link_then_instant_crash,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_kill, setup, teardown),
        cmocka_unit_test_setup_teardown(test_monitor_down, setup, teardown),
        cmocka_unit_test_setup_teardown(test_demonitor, setup, teardown),
        cmocka_unit_test_setup_teardown(test_link_to_dead, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unlink, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
