/*
 * test_rt_sup.c - supervisors.
 *
 * Each child reports its start and its end (with the reason) to the test's
 * port, stamped from one global sequence, so a test can check exactly
 * which children were stopped and restarted, and in what order. Children
 * are pinned to one scheduler so that their inits run in the order the
 * supervisor spawned them. "Not restarted" is checked against the
 * supervisor's own view (rt_actor_detail), polled until its exits are
 * processed, and against the absence of any start report.
 */
#include "test_rt_common.h"

enum { T_CRASH = 1, T_STOP, T_GO };
enum { EV_START = 1, EV_END, EV_ASYNC };

static _Atomic rt_id_t g_port;
static _Atomic int64_t g_seq;

typedef struct kid_arg {
    int tag;
    bool stubborn; /* traps exits and ignores them */
} kid_arg_t;

typedef struct kid_state {
    kid_arg_t *arg;
} kid_state_t;

static int kid_init(rt_actor_t *self, void *varg)
{
    kid_arg_t *arg = varg;
    ((kid_state_t *)rt_state(self))->arg = arg;
    if (arg->stubborn)
        rt_trap_exit(self, true);
    trt_emit(rt_system(self), atomic_load(&g_port), EV_START, arg->tag,
             rt_self(self), atomic_fetch_add(&g_seq, 1), 0);
    return 0;
}

static int kid_handle(rt_actor_t *self, rt_msg_t *msg)
{
    int v = 0;
    if (msg->size >= sizeof(v))
        memcpy(&v, msg->data, sizeof(v));
    switch (msg->type) {
    case T_CRASH:
        return v ? v : -5;
    case T_STOP:
        return RT_STOP;
    default:
        return RT_CONTINUE; /* a stubborn kid ignores RT_MSG_EXIT */
    }
}

static void kid_terminate(rt_actor_t *self, int reason)
{
    kid_state_t *st = rt_state(self);
    trt_emit(rt_system(self), atomic_load(&g_port), EV_END, st->arg->tag,
             rt_self(self), atomic_fetch_add(&g_seq, 1), reason);
}

static const rt_behaviour_t kid = {
    .kind = "kid",
    .state_size = sizeof(kid_state_t),
    .init = kid_init,
    .handle = kid_handle,
    .terminate = kid_terminate,
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
    atomic_store(&g_port, f->tp->id);
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

static rt_child_spec_t child(const char *name, kid_arg_t *arg,
                             rt_restart_t restart)
{
    rt_child_spec_t c = {
        .name = name,
        .behaviour = &kid,
        .arg = arg,
        .restart = restart,
        .pinned = true,
        .pin = 0,
    };
    return c;
}

static trt_event_t wait_ev(fixture_t *f, int kind, int tag)
{
    trt_event_t ev;
    if (!trt_wait_event(f->tp, kind, tag, &ev, 5000))
        fail_msg("no %s of child %d", kind == EV_START ? "start" : "end", tag);
    return ev;
}

static bool no_event(fixture_t *f, int kind, int tag)
{
    return !trt_wait_event(f->tp, kind, tag, NULL, 0);
}

static void crash(fixture_t *f, rt_id_t id)
{
    assert_int_equal(rt_send_copy(f->sys, id, T_CRASH, NULL, 0), 0);
}

static rt_id_t start_sup(fixture_t *f, const rt_sup_spec_t *spec)
{
    int err = 0;
    rt_id_t s = rt_sup_start(f->sys, spec, &err);
    if (!s)
        fail_msg("rt_sup_start: %s", rt_strerror(err));
    return s;
}

/* The ids of the supervisor's running children, in its order. */
static uint32_t running_children(fixture_t *f, rt_id_t sup, rt_id_t *out)
{
    rt_actor_detail_t d;
    trt_detail(f->tp, sup, &d);
    uint32_t n = 0;
    for (uint32_t i = 0; i < d.nchildren && i < 16; i++)
        if (d.children[i])
            out[n++] = d.children[i];
    return n;
}

/* Only the crashed child restarts; its siblings keep their ids. */
static void test_one_for_one(void **state)
{
    fixture_t *f = *state;
    kid_arg_t a[3] = {{0, false}, {1, false}, {2, false}};
    rt_child_spec_t cs[3] = {child("a", &a[0], RT_PERMANENT),
                             child("b", &a[1], RT_PERMANENT),
                             child("c", &a[2], RT_PERMANENT)};
    rt_sup_spec_t spec = {"o4o", RT_ONE_FOR_ONE, 10, 10000, cs, 3, false};
    rt_id_t sup = start_sup(f, &spec);
    rt_id_t id[3];
    for (int i = 0; i < 3; i++)
        id[i] = wait_ev(f, EV_START, i).id;
    crash(f, id[1]);
    trt_event_t end = wait_ev(f, EV_END, 1);
    assert_int_equal(end.id, id[1]);
    assert_int_equal(end.b, -5);
    rt_id_t b2 = wait_ev(f, EV_START, 1).id;
    assert_int_not_equal(b2, id[1]);

    rt_id_t run[16];
    assert_int_equal(running_children(f, sup, run), 3);
    assert_int_equal(run[0], id[0]);
    assert_int_equal(run[1], b2);
    assert_int_equal(run[2], id[2]);
    rt_actor_info_t ai;
    assert_int_equal(rt_actor_info(f->sys, b2, &ai), 0);
    assert_int_equal(ai.restarts, 1);
    assert_int_equal(ai.parent, sup);
    assert_int_equal(rt_actor_info(f->sys, id[0], &ai), 0);
    assert_int_equal(ai.restarts, 0);
    assert_true(no_event(f, EV_END, 0) && no_event(f, EV_END, 2));
    assert_true(no_event(f, EV_START, 0) && no_event(f, EV_START, 2));
    assert_int_equal(rt_sup_stop(f->sys, sup, trt_ms(5000)), 0);
}

/* All children stop (the others in reverse start order, with
 * RT_SHUTDOWN) and all restart in start order. */
static void test_one_for_all(void **state)
{
    fixture_t *f = *state;
    kid_arg_t a[3] = {{0, false}, {1, false}, {2, false}};
    rt_child_spec_t cs[3] = {child("a", &a[0], RT_PERMANENT),
                             child("b", &a[1], RT_PERMANENT),
                             child("c", &a[2], RT_PERMANENT)};
    rt_sup_spec_t spec = {"o4a", RT_ONE_FOR_ALL, 10, 10000, cs, 3, false};
    rt_id_t sup = start_sup(f, &spec);
    rt_id_t id[3];
    for (int i = 0; i < 3; i++)
        id[i] = wait_ev(f, EV_START, i).id;
    crash(f, id[1]);
    assert_int_equal(wait_ev(f, EV_END, 1).b, -5);
    trt_event_t e2 = wait_ev(f, EV_END, 2), e0 = wait_ev(f, EV_END, 0);
    assert_int_equal(e2.b, RT_SHUTDOWN);
    assert_int_equal(e0.b, RT_SHUTDOWN);
    assert_true(e2.a < e0.a);
    trt_event_t s[3];
    for (int i = 0; i < 3; i++) {
        s[i] = wait_ev(f, EV_START, i);
        assert_int_not_equal(s[i].id, id[i]);
        assert_true(s[i].a > e0.a);
    }
    assert_true(s[0].a < s[1].a && s[1].a < s[2].a);
    rt_id_t run[16];
    assert_int_equal(running_children(f, sup, run), 3);
    for (int i = 0; i < 3; i++)
        assert_int_equal(run[i], s[i].id);
    assert_int_equal(rt_sup_stop(f->sys, sup, trt_ms(5000)), 0);
}

/* The crashed child and those started after it restart; those before it
 * are untouched. */
static void test_rest_for_one(void **state)
{
    fixture_t *f = *state;
    kid_arg_t a[4] = {{0, false}, {1, false}, {2, false}, {3, false}};
    rt_child_spec_t cs[4] = {
        child("a", &a[0], RT_PERMANENT), child("b", &a[1], RT_PERMANENT),
        child("c", &a[2], RT_PERMANENT), child("d", &a[3], RT_PERMANENT)};
    rt_sup_spec_t spec = {"r4o", RT_REST_FOR_ONE, 10, 10000, cs, 4, false};
    rt_id_t sup = start_sup(f, &spec);
    rt_id_t id[4];
    for (int i = 0; i < 4; i++)
        id[i] = wait_ev(f, EV_START, i).id;
    crash(f, id[1]);
    assert_int_equal(wait_ev(f, EV_END, 1).b, -5);
    trt_event_t e3 = wait_ev(f, EV_END, 3), e2 = wait_ev(f, EV_END, 2);
    assert_int_equal(e3.b, RT_SHUTDOWN);
    assert_int_equal(e2.b, RT_SHUTDOWN);
    assert_true(e3.a < e2.a);
    trt_event_t s1 = wait_ev(f, EV_START, 1), s2 = wait_ev(f, EV_START, 2),
                s3 = wait_ev(f, EV_START, 3);
    assert_true(e2.a < s1.a && s1.a < s2.a && s2.a < s3.a);
    rt_id_t run[16];
    assert_int_equal(running_children(f, sup, run), 4);
    assert_int_equal(run[0], id[0]);
    assert_int_equal(run[1], s1.id);
    assert_int_equal(run[2], s2.id);
    assert_int_equal(run[3], s3.id);
    assert_true(no_event(f, EV_END, 0) && no_event(f, EV_START, 0));
    assert_int_equal(rt_sup_stop(f->sys, sup, trt_ms(5000)), 0);
}

static bool running_is(fixture_t *f, rt_id_t sup, const rt_id_t *want,
                       uint32_t n)
{
    rt_id_t run[16];
    if (running_children(f, sup, run) != n)
        return false;
    for (uint32_t i = 0; i < n; i++)
        if (run[i] != want[i])
            return false;
    return true;
}

/* permanent: restarted after any exit; transient: after an abnormal one
 * only; temporary: never. */
static void test_restart_types(void **state)
{
    fixture_t *f = *state;
    enum { P, T_NORMAL, T_CRASHED, X_CRASHED, X_NORMAL, N };
    kid_arg_t a[N];
    for (int i = 0; i < N; i++)
        a[i] = (kid_arg_t){i, false};
    rt_child_spec_t cs[N] = {
        child("p", &a[P], RT_PERMANENT),
        child("tn", &a[T_NORMAL], RT_TRANSIENT),
        child("tc", &a[T_CRASHED], RT_TRANSIENT),
        child("xc", &a[X_CRASHED], RT_TEMPORARY),
        child("xn", &a[X_NORMAL], RT_TEMPORARY),
    };
    rt_sup_spec_t spec = {"types", RT_ONE_FOR_ONE, 10, 10000, cs, N, false};
    rt_id_t sup = start_sup(f, &spec);
    rt_id_t id[N];
    for (int i = 0; i < N; i++)
        id[i] = wait_ev(f, EV_START, i).id;
    uint32_t stop = 0;
    assert_int_equal(rt_send_copy(f->sys, id[P], T_STOP, &stop, 4), 0);
    assert_int_equal(rt_send_copy(f->sys, id[T_NORMAL], T_STOP, &stop, 4), 0);
    crash(f, id[T_CRASHED]);
    crash(f, id[X_CRASHED]);
    assert_int_equal(rt_send_copy(f->sys, id[X_NORMAL], T_STOP, &stop, 4), 0);
    for (int i = 0; i < N; i++)
        wait_ev(f, EV_END, i);
    rt_id_t p2 = wait_ev(f, EV_START, P).id;
    rt_id_t tc2 = wait_ev(f, EV_START, T_CRASHED).id;
    rt_id_t want[2] = {p2, tc2};
    assert_true(TRT_WAIT_UNTIL(running_is(f, sup, want, 2), 5000));
    assert_true(no_event(f, EV_START, T_NORMAL));
    assert_true(no_event(f, EV_START, X_CRASHED));
    assert_true(no_event(f, EV_START, X_NORMAL));
    assert_int_equal(rt_sup_stop(f->sys, sup, trt_ms(5000)), 0);
}

/* ---- simple_one_for_one ---- */

typedef struct asker_state {
    rt_id_t sup;
    int64_t ref;
    kid_arg_t arg;
} asker_state_t;

static int asker_handle(rt_actor_t *self, rt_msg_t *msg)
{
    asker_state_t *st = rt_state(self);
    if (msg->type == T_GO) {
        memcpy(&st->sup, msg->data, sizeof(st->sup));
        st->arg = (kid_arg_t){99, false};
        st->ref = rt_sup_start_child_async(self, st->sup, &st->arg,
                                           (uint64_t)trt_ms(5000));
        TCHECK(st->ref > 0);
    } else if ((int64_t)msg->ref == st->ref) {
        rt_sup_started_t r = {0, -1};
        if (msg->type != RT_MSG_TIMEOUT && msg->size >= sizeof(r))
            memcpy(&r, msg->data, sizeof(r));
        trt_emit(rt_system(self), atomic_load(&g_port), EV_ASYNC, 0,
                 rt_self(self), (int64_t)r.child, r.err);
    }
    return RT_CONTINUE;
}

static const rt_behaviour_t asker = {
    .kind = "asker",
    .state_size = sizeof(asker_state_t),
    .handle = asker_handle,
};

/* Dynamic children start with their own args; a crashed one restarts
 * with its arg; a transient one that ends normally is gone for good; a
 * static supervisor refuses dynamic children. */
static void test_simple_one_for_one(void **state)
{
    fixture_t *f = *state;
    rt_child_spec_t cs = child("dyn", NULL, RT_TRANSIENT);
    rt_sup_spec_t spec = {"s141", RT_SIMPLE_ONE_FOR_ONE, 10, 10000, &cs, 1,
                          false};
    rt_id_t sup = start_sup(f, &spec);
    enum { N = 5 };
    kid_arg_t a[N];
    rt_id_t id[N];
    for (int i = 0; i < N; i++) {
        a[i] = (kid_arg_t){10 + i, false};
        int err = 0;
        id[i] = rt_sup_start_child(f->sys, sup, &a[i], &err);
        assert_int_equal(err, 0);
        assert_true(id[i] > 0);
        assert_int_equal(wait_ev(f, EV_START, 10 + i).id, id[i]);
    }
    rt_id_t run[16];
    assert_int_equal(running_children(f, sup, run), N);

    crash(f, id[2]);
    wait_ev(f, EV_END, 12);
    rt_id_t again = wait_ev(f, EV_START, 12).id;
    assert_int_not_equal(again, id[2]);
    assert_int_equal(rt_send_copy(f->sys, id[3], T_STOP, NULL, 0), 0);
    wait_ev(f, EV_END, 13);
    rt_actor_detail_t d;
    assert_true(TRT_WAIT_UNTIL(
        (trt_detail(f->tp, sup, &d), d.nchildren) == N - 1, 5000));
    assert_true(no_event(f, EV_START, 13));

    /* from inside an actor */
    rt_id_t ask = trt_spawn(f->sys, &asker, NULL, NULL);
    assert_int_equal(rt_send_copy(f->sys, ask, T_GO, &sup, sizeof(sup)), 0);
    trt_event_t ev;
    assert_true(trt_wait_event(f->tp, EV_ASYNC, -1, &ev, 5000));
    assert_int_equal(ev.b, 0);
    assert_int_equal(wait_ev(f, EV_START, 99).id, (rt_id_t)ev.a);

    /* not a simple_one_for_one supervisor */
    kid_arg_t sa = {50, false};
    rt_child_spec_t one = child("one", &sa, RT_PERMANENT);
    rt_sup_spec_t sspec = {"static", RT_ONE_FOR_ONE, 1, 1000, &one, 1, false};
    rt_id_t ssup = start_sup(f, &sspec);
    int err = 0;
    assert_int_equal(rt_sup_start_child(f->sys, ssup, &a[0], &err), 0);
    assert_true(err < 0);
    assert_int_equal(rt_sup_stop(f->sys, sup, trt_ms(5000)), 0);
    assert_int_equal(rt_sup_stop(f->sys, ssup, trt_ms(5000)), 0);
    assert_no_handler_failures();
}

/* ---- intensity ---- */

static rt_id_t child_id(fixture_t *f, rt_id_t sup, int index)
{
    rt_actor_detail_t d;
    trt_detail(f->tp, sup, &d);
    assert_true(d.nchildren > (uint32_t)index);
    return d.children[index];
}

/* Intensity 2: two restarts are allowed, the third crash within the
 * period makes the supervisor stop with RT_EINTENSITY; its parent restarts
 * it (and so its child). A parent whose own intensity is then exceeded
 * exits with RT_EINTENSITY in turn. */
static void test_intensity_escalates(void **state)
{
    fixture_t *f = *state;
    kid_arg_t w = {10, false};
    rt_child_spec_t wc = child("w", &w, RT_PERMANENT);
    rt_sup_spec_t inner = {"inner", RT_ONE_FOR_ONE, 2, 60000, &wc, 1, false};
    rt_child_spec_t ic = {.name = "inner",
                          .behaviour = &rt_supervisor,
                          .arg = &inner,
                          .restart = RT_PERMANENT,
                          .is_supervisor = true};
    rt_sup_spec_t outer = {"outer", RT_ONE_FOR_ONE, 1, 60000, &ic, 1, false};
    rt_id_t root = start_sup(f, &outer);
    rt_id_t wid = wait_ev(f, EV_START, 10).id;
    rt_id_t s1 = child_id(f, root, 0);
    uint64_t rs1 = rt_port_monitor(f->tp->p, s1);
    uint64_t rroot = rt_port_monitor(f->tp->p, root);

    for (int i = 0; i < 2; i++) {
        crash(f, wid);
        wait_ev(f, EV_END, 10);
        wid = wait_ev(f, EV_START, 10).id;
        assert_int_equal(child_id(f, root, 0), s1);
    }
    crash(f, wid);
    rt_exit_info_t ei = trt_wait_down(f->tp, rs1, 5000);
    assert_int_equal(ei.reason, RT_EINTENSITY);
    /* the outer supervisor restarts the inner one, which starts w */
    wid = wait_ev(f, EV_START, 10).id;
    rt_id_t s2 = 0;
    assert_true(TRT_WAIT_UNTIL((s2 = child_id(f, root, 0)) != 0, 5000));
    assert_int_not_equal(s2, s1);
    rt_actor_info_t ai;
    assert_int_equal(rt_actor_info(f->sys, s2, &ai), 0);
    assert_int_equal(ai.restarts, 1);
    assert_int_equal(ai.parent, root);

    /* three more crashes take the new inner supervisor down too: that is
     * the outer one's second restart in its period, one too many */
    uint64_t rs2 = rt_port_monitor(f->tp->p, s2);
    for (int i = 0; i < 3; i++) {
        crash(f, wid);
        wait_ev(f, EV_END, 10);
        if (i < 2)
            wid = wait_ev(f, EV_START, 10).id;
    }
    assert_int_equal(trt_wait_down(f->tp, rs2, 5000).reason, RT_EINTENSITY);
    assert_int_equal(trt_wait_down(f->tp, rroot, 5000).reason, RT_EINTENSITY);
    assert_false(trt_alive(f->sys, wid));
}

/* ---- shutdown ---- */

/* rt_sup_stop stops children in reverse start order, each with
 * RT_SHUTDOWN; one that ignores it is killed after its grace. Nested
 * supervisors stop their own children in turn. */
static void test_ordered_shutdown(void **state)
{
    fixture_t *f = *state;
    kid_arg_t a[5] = {
        {0, false}, {1, true}, {2, false}, {3, false}, {4, false}};
    rt_child_spec_t ics[2] = {child("x", &a[3], RT_PERMANENT),
                              child("y", &a[4], RT_PERMANENT)};
    rt_sup_spec_t inner = {"inner", RT_ONE_FOR_ONE, 1, 1000, ics, 2, false};
    rt_child_spec_t cs[4] = {
        child("a", &a[0], RT_PERMANENT),
        child("stubborn", &a[1], RT_PERMANENT),
        {.name = "inner",
         .behaviour = &rt_supervisor,
         .arg = &inner,
         .restart = RT_PERMANENT,
         .is_supervisor = true},
        child("c", &a[2], RT_PERMANENT),
    };
    cs[1].shutdown_ms = 150;
    rt_sup_spec_t spec = {"root", RT_ONE_FOR_ONE, 1, 1000, cs, 4, false};
    rt_id_t sup = start_sup(f, &spec);
    rt_id_t ids[5];
    for (int i = 0; i < 5; i++)
        ids[i] = wait_ev(f, EV_START, i).id;

    int64_t t0 = trt_now_ms();
    assert_int_equal(rt_sup_stop(f->sys, sup, trt_ms(5000)), 0);
    int64_t dt = trt_now_ms() - t0;
    assert_false(trt_alive(f->sys, sup));
    trt_event_t e[5];
    for (int i = 0; i < 5; i++) {
        e[i] = wait_ev(f, EV_END, i);
        assert_false(trt_alive(f->sys, ids[i]));
    }
    /* c, then inner's y and x, then the stubborn one, then a */
    assert_true(e[2].a < e[4].a);
    assert_true(e[4].a < e[3].a);
    assert_true(e[3].a < e[1].a);
    assert_true(e[1].a < e[0].a);
    assert_int_equal(e[0].b, RT_SHUTDOWN);
    assert_int_equal(e[2].b, RT_SHUTDOWN);
    assert_int_equal(e[3].b, RT_SHUTDOWN);
    assert_int_equal(e[4].b, RT_SHUTDOWN);
    assert_int_equal(e[1].b, RT_EKILLED);
    assert_true(dt >= 140);
    assert_true(dt < trt_ms(3000));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_one_for_one, setup, teardown),
        cmocka_unit_test_setup_teardown(test_one_for_all, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rest_for_one, setup, teardown),
        cmocka_unit_test_setup_teardown(test_restart_types, setup, teardown),
        cmocka_unit_test_setup_teardown(test_simple_one_for_one, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_intensity_escalates, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_ordered_shutdown, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
