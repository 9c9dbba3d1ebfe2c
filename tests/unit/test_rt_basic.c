/*
 * test_rt_basic.c - spawn, send, receive; ids; dead ids; init failure;
 * RT_STOP, crashes and rt_exit(); terminate runs exactly once with the
 * reason; result names; the actor table's bound.
 */
#include "test_rt_common.h"

enum {
    T_FWD = 1, /* report the payload (an int64) to the port */
    T_PING,    /* reply T_PONG with the same payload */
    T_PONG,
    T_STOP,  /* return RT_STOP */
    T_CRASH, /* return the payload (an int) as a crash reason */
    T_EXIT,  /* rt_exit(self, payload) and continue */
    T_RELAY, /* send T_FWD to the actor in the payload */
};

enum { EV_INIT = 1, EV_FWD, EV_TERM };

typedef struct basic_arg {
    rt_id_t port;
    int init_rc;
    _Atomic int gate; /* init waits for it when `gated` */
    bool gated;
    _Atomic int inits;
    _Atomic int handles;
    _Atomic int terms;
    _Atomic int reason;
} basic_arg_t;

typedef struct basic_state {
    basic_arg_t *arg;
    unsigned char zero_check[64];
} basic_state_t;

static int basic_init(rt_actor_t *self, void *varg)
{
    basic_arg_t *arg = varg;
    basic_state_t *st = rt_state(self);
    TCHECK(st != NULL);
    for (size_t i = 0; i < sizeof(st->zero_check); i++)
        TCHECK(st->zero_check[i] == 0);
    TCHECK(rt_current() == self);
    TCHECK(strcmp(rt_kind(self), "basic") == 0);
    st->arg = arg;
    if (arg->gated) {
        int64_t end = trt_now_ms() + trt_ms(5000);
        while (!atomic_load(&arg->gate) && trt_now_ms() < end)
            trt_poll_pause();
    }
    atomic_fetch_add(&arg->inits, 1);
    if (arg->port)
        trt_emit(rt_system(self), arg->port, EV_INIT, 0, rt_self(self),
                 (int64_t)rt_parent(self), 0);
    return arg->init_rc;
}

static int basic_handle(rt_actor_t *self, rt_msg_t *msg)
{
    basic_state_t *st = rt_state(self);
    basic_arg_t *arg = st->arg;
    rt_system_t *sys = rt_system(self);
    int64_t v = 0;
    TCHECK(rt_current() == self);
    TCHECK(((uintptr_t)msg->data & 15) == 0);
    if (msg->size >= sizeof(v))
        memcpy(&v, msg->data, sizeof(v));
    atomic_fetch_add(&arg->handles, 1);
    switch (msg->type) {
    case T_FWD:
        trt_emit(sys, arg->port, EV_FWD, 0, rt_self(self), v,
                 (int64_t)msg->from);
        return RT_CONTINUE;
    case T_PING: {
        rt_msg_t *r = rt_msg_new(T_PONG, sizeof(v));
        memcpy(r->data, &v, sizeof(v));
        TCHECK(rt_reply(sys, msg, r) == 0);
    }
        return RT_CONTINUE;
    case T_STOP:
        return RT_STOP;
    case T_CRASH:
        return (int)v;
    case T_EXIT:
        rt_exit(self, (int)v);
        return RT_CONTINUE;
    case T_RELAY: {
        int64_t me = (int64_t)rt_self(self);
        TCHECK(rt_send_copy(sys, (rt_id_t)v, T_FWD, &me, sizeof(me)) == 0);
        return RT_CONTINUE;
    }
    default:
        return RT_CONTINUE;
    }
}

static void basic_terminate(rt_actor_t *self, int reason)
{
    basic_state_t *st = rt_state(self);
    basic_arg_t *arg = st->arg;
    if (!arg) /* init never stored it: only possible if init never ran */
        return;
    atomic_store(&arg->reason, reason);
    atomic_fetch_add(&arg->terms, 1);
}

static const rt_behaviour_t basic = {
    .kind = "basic",
    .state_size = sizeof(basic_state_t),
    .init = basic_init,
    .handle = basic_handle,
    .terminate = basic_terminate,
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

static int send_i64(rt_system_t *sys, rt_id_t to, uint32_t type, int64_t v)
{
    return rt_send_copy(sys, to, type, &v, sizeof(v));
}

/* Messages from one sender arrive in order, with `from` 0 from outside any
 * actor and the sender's id from inside one; a port call gets its reply. */
static void test_spawn_send_receive(void **state)
{
    rt_system_t *sys = *state;
    trt_port_t *tp = trt_port_new(sys);
    /* static: the actors outlive this function until the teardown */
    static basic_arg_t arg, arg2;
    memset(&arg, 0, sizeof(arg));
    memset(&arg2, 0, sizeof(arg2));
    arg.port = tp->id;
    arg2.port = tp->id;
    rt_id_t a = trt_spawn(sys, &basic, &arg, NULL);
    assert_true(a > 0);
    assert_null(rt_current());
    assert_int_equal(rt_system_schedulers(sys), 2);

    trt_event_t ev;
    assert_true(trt_wait_event(tp, EV_INIT, -1, &ev, 5000));
    assert_int_equal(ev.id, a);
    assert_int_equal(ev.a, 0); /* no parent named */

    for (int64_t i = 0; i < 200; i++)
        assert_int_equal(send_i64(sys, a, T_FWD, i), 0);
    for (int64_t i = 0; i < 200; i++) {
        assert_true(trt_wait_event(tp, EV_FWD, -1, &ev, 5000));
        assert_int_equal(ev.a, i);
        assert_int_equal(ev.b, 0);
    }

    /* actor to actor: `from` is the sender; b names a as its parent */
    rt_spawn_opts_t child = {.parent = a};
    rt_id_t b = trt_spawn(sys, &basic, &arg2, &child);
    assert_int_not_equal(a, b);
    assert_true(trt_wait_event(tp, EV_INIT, -1, &ev, 5000));
    assert_int_equal(ev.id, b);
    assert_int_equal(ev.a, (int64_t)a);
    assert_int_equal(send_i64(sys, b, T_RELAY, (int64_t)a), 0);
    assert_true(trt_wait_event(tp, EV_FWD, -1, &ev, 5000));
    assert_int_equal(ev.a, (int64_t)b);
    assert_int_equal(ev.b, (int64_t)b);

    /* a blocking call from a plain thread */
    rt_msg_t *q = rt_msg_new(T_PING, sizeof(int64_t));
    assert_non_null(q);
    int64_t v = 4242;
    memcpy(q->data, &v, sizeof(v));
    rt_msg_t *r = rt_port_call(tp->p, a, q, trt_ms(5000));
    assert_non_null(r);
    assert_int_equal(r->type, T_PONG);
    assert_int_equal(r->from, a);
    memcpy(&v, r->data, sizeof(v));
    assert_int_equal(v, 4242);
    rt_msg_free(r);

    trt_port_free(tp);
    assert_no_handler_failures();
}

static int cmp_id(const void *x, const void *y)
{
    rt_id_t a = *(const rt_id_t *)x, b = *(const rt_id_t *)y;
    return a < b ? -1 : a > b;
}

/* Ids are > 0 and never reused, even after many actors have ended and
 * their slots are free again. */
static void test_ids_never_reused(void **state)
{
    rt_system_t *sys = *state;
    const long rounds = 8, per = trt_count(500, 50);
    rt_id_t *ids = calloc((size_t)(rounds * per), sizeof(*ids));
    basic_arg_t *args = calloc((size_t)per, sizeof(*args));
    assert_non_null(ids);
    assert_non_null(args);
    long n = 0;
    for (long r = 0; r < rounds; r++) {
        memset(args, 0, (size_t)per * sizeof(*args));
        for (long i = 0; i < per; i++) {
            rt_id_t id = trt_spawn(sys, &basic, &args[i], NULL);
            assert_true(id > 0);
            ids[n++] = id;
            assert_int_equal(send_i64(sys, id, T_STOP, 0), 0);
        }
        for (long i = 0; i < per; i++)
            assert_true(TRT_WAIT_UNTIL(atomic_load(&args[i].terms) == 1, 5000));
        /* every one of this round is gone before the next round spawns */
        for (long i = n - per; i < n; i++)
            assert_true(TRT_WAIT_UNTIL(!trt_alive(sys, ids[i]), 5000));
    }
    qsort(ids, (size_t)n, sizeof(*ids), cmp_id);
    for (long i = 1; i < n; i++)
        if (ids[i] == ids[i - 1])
            fail_msg("id %llu given twice", (unsigned long long)ids[i]);
    free(ids);
    free(args);
    assert_no_handler_failures();
}

/* Sending to an id that is dead, 0, or never given fails with
 * RT_ENOPROC; so do introspection calls on it. */
static void test_send_to_dead(void **state)
{
    rt_system_t *sys = *state;
    trt_port_t *tp = trt_port_new(sys);
    basic_arg_t arg = {.port = tp->id};
    rt_id_t a = trt_spawn(sys, &basic, &arg, NULL);
    uint64_t ref = rt_port_monitor(tp->p, a);
    assert_true(ref > 0);
    assert_int_equal(send_i64(sys, a, T_STOP, 0), 0);
    rt_exit_info_t ei = trt_wait_down(tp, ref, 5000);
    assert_int_equal(ei.who, a);
    assert_int_equal(ei.reason, RT_NORMAL);

    assert_int_equal(send_i64(sys, a, T_FWD, 1), RT_ENOPROC);
    rt_msg_t *m = rt_msg_new(T_FWD, 0);
    assert_non_null(m);
    assert_int_equal(rt_send(sys, a, m), RT_ENOPROC);
    assert_int_equal(send_i64(sys, 0, T_FWD, 1), RT_ENOPROC);
    assert_int_equal(send_i64(sys, a + 1000000, T_FWD, 1), RT_ENOPROC);
    rt_actor_info_t ai;
    assert_int_equal(rt_actor_info(sys, a, &ai), RT_ENOPROC);
    trt_port_free(tp);
    assert_no_handler_failures();
}

/* An init that fails ends the actor with its reason before any message
 * is handled; terminate still runs once ("whatever the reason"). */
static void test_init_failure(void **state)
{
    rt_system_t *sys = *state;
    trt_port_t *tp = trt_port_new(sys);
    basic_arg_t arg = {.port = tp->id, .init_rc = -77, .gated = true};
    rt_id_t a = trt_spawn(sys, &basic, &arg, NULL);
    uint64_t ref = rt_port_monitor(tp->p, a);
    /* queued before init ends: must never be handled */
    assert_int_equal(send_i64(sys, a, T_FWD, 1), 0);
    atomic_store(&arg.gate, 1);
    rt_exit_info_t ei = trt_wait_down(tp, ref, 5000);
    assert_int_equal(ei.who, a);
    assert_int_equal(ei.reason, -77);
    assert_int_equal(atomic_load(&arg.inits), 1);
    assert_int_equal(atomic_load(&arg.handles), 0);
    assert_int_equal(atomic_load(&arg.terms), 1);
    assert_int_equal(atomic_load(&arg.reason), -77);
    assert_false(trt_alive(sys, a));
    trt_port_free(tp);
    assert_no_handler_failures();
}

typedef struct end_case {
    uint32_t type;
    int64_t value;
    int reason;
} end_case_t;

/* Each way to end: RT_STOP, a crash return, rt_exit() with a crash reason
 * and with RT_SHUTDOWN. The DOWN and terminate carry the reason; terminate
 * runs exactly once; nothing queued behind the ending message is handled. */
static void test_endings_and_terminate_once(void **state)
{
    rt_system_t *sys = *state;
    static const end_case_t cases[] = {
        {T_STOP, 0, RT_NORMAL},
        {T_CRASH, -55, -55},
        {T_EXIT, -66, -66},
        {T_EXIT, RT_SHUTDOWN, RT_SHUTDOWN},
    };
    enum { N = sizeof(cases) / sizeof(cases[0]) };
    basic_arg_t args[N];
    memset(args, 0, sizeof(args));
    trt_port_t *tp = trt_port_new(sys);
    for (int i = 0; i < N; i++) {
        args[i].port = tp->id;
        args[i].gated = true;
        rt_id_t a = trt_spawn(sys, &basic, &args[i], NULL);
        uint64_t ref = rt_port_monitor(tp->p, a);
        assert_int_equal(send_i64(sys, a, cases[i].type, cases[i].value), 0);
        for (int k = 0; k < 10; k++)
            assert_int_equal(send_i64(sys, a, T_FWD, k), 0);
        atomic_store(&args[i].gate, 1);
        rt_exit_info_t ei = trt_wait_down(tp, ref, 5000);
        assert_int_equal(ei.who, a);
        assert_int_equal(ei.reason, cases[i].reason);
        assert_int_equal(atomic_load(&args[i].terms), 1);
        assert_int_equal(atomic_load(&args[i].reason), cases[i].reason);
        assert_int_equal(atomic_load(&args[i].handles), 1);
    }
    assert_int_equal(trt_drop_type(tp, TRT_EVENT), N); /* the EV_INITs */
    trt_port_free(tp);
    rt_system_stop(sys);
    *state = trt_start(2, 0, 0);
    for (int i = 0; i < N; i++)
        assert_int_equal(atomic_load(&args[i].terms), 1);
    assert_no_handler_failures();
}

/* Every result code has a distinct name; unknown codes still get one. */
static void test_strerror(void **state)
{
    (void)state;
    static const int codes[] = {
        RT_OK,      RT_ENOMEM,     RT_EINVAL,          RT_ENOPROC,
        RT_EFULL,   RT_EEXIST,     RT_ENOENT,          RT_ETIMEDOUT,
        RT_ELIMIT,  RT_ESHUTDOWN,  RT_EFAULT_INJECTED, RT_ECRASH,
        RT_EKILLED, RT_EINTENSITY,
    };
    enum { N = sizeof(codes) / sizeof(codes[0]) };
    for (int i = 0; i < N; i++) {
        const char *s = rt_strerror(codes[i]);
        assert_non_null(s);
        assert_true(strlen(s) > 0);
        for (int j = 0; j < i; j++)
            assert_string_not_equal(s, rt_strerror(codes[j]));
    }
    assert_non_null(rt_strerror(-123456));
    assert_non_null(rt_strerror(98765));
}

/* max_actors bounds the live actors: spawning past it fails with
 * RT_ELIMIT, and room comes back when one ends. */
static void test_actor_limit(void **state)
{
    rt_system_t *sys = *state;
    rt_system_stop(sys);
    rt_config_t cfg = {.schedulers = 2, .max_actors = 32, .fault_seed = 1};
    int err = 0;
    sys = rt_system_start(&cfg, &err);
    *state = sys;
    assert_non_null(sys);

    static basic_arg_t args[65]; /* outlive this function */
    memset(args, 0, sizeof(args));
    rt_id_t ids[64];
    int n = 0;
    for (; n < 64; n++) {
        err = 0;
        ids[n] = rt_spawn(sys, &basic, &args[n], NULL, &err);
        if (ids[n] == 0)
            break;
    }
    assert_in_range(n, 1, 32);
    assert_int_equal(err, RT_ELIMIT);
    assert_int_equal(send_i64(sys, ids[0], T_STOP, 0), 0);
    assert_true(TRT_WAIT_UNTIL(!trt_alive(sys, ids[0]), 5000));
    /* the slot frees when the actor is released, shortly after it dies */
    rt_id_t again = 0;
    assert_true(TRT_WAIT_UNTIL(
        (again = rt_spawn(sys, &basic, &args[n], NULL, &err)) != 0, 5000));
    assert_int_not_equal(again, ids[0]);
    assert_no_handler_failures();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_spawn_send_receive, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_ids_never_reused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_send_to_dead, setup, teardown),
        cmocka_unit_test_setup_teardown(test_init_failure, setup, teardown),
        cmocka_unit_test_setup_teardown(test_endings_and_terminate_once, setup,
                                        teardown),
        cmocka_unit_test(test_strerror),
        cmocka_unit_test_setup_teardown(test_actor_limit, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
