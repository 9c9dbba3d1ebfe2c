/*
 * test_rt_timers.c - delayed sends, cancellation, requests with time-outs,
 * and ports.
 *
 * A cancelled timer never fires: proved without sleeping by a later
 * sentinel timer, since a cancelled one that fired anyway would arrive
 * before it. A late reply is dropped: the server sends the late reply and
 * then a flush message, so per-sender order puts the reply (if it were
 * delivered) before the flush.
 */
#include "test_rt_common.h"

enum {
    T_TICK = 1, /* payload: int index */
    T_START,    /* to the requester: payload the server's id */
    T_REQ,      /* payload: int mode (0 answer now, 1 hold) */
    T_REP,
    T_LATE, /* to the server: answer the held request now */
    T_FLUSH,
    T_SELF_TIMERS,
};

enum { EV_TICK = 1, EV_TIMEOUT, EV_FLUSH, EV_SELF };

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

static rt_msg_t *tick(int i)
{
    rt_msg_t *m = rt_msg_new(T_TICK, sizeof(i));
    assert_non_null(m);
    memcpy(m->data, &i, sizeof(i));
    return m;
}

static int tick_index(const rt_msg_t *m)
{
    int i;
    memcpy(&i, m->data, sizeof(i));
    return i;
}

/* A delayed message arrives, and not before its time (a few ms of slack
 * for the loop's cached clock). */
static void test_send_after_fires(void **state)
{
    rt_system_t *sys = *state;
    trt_port_t *tp = trt_port_new(sys);
    int64_t t0 = trt_now_ms();
    int64_t ref = rt_send_after(sys, tp->id, tick(7), 60);
    assert_true(ref > 0);
    rt_msg_t *m = trt_wait_type(tp, T_TICK, 5000);
    int64_t dt = trt_now_ms() - t0;
    assert_non_null(m);
    assert_int_equal(tick_index(m), 7);
    rt_msg_free(m);
    assert_true(dt >= 55);
    /* it fired, so it cannot be cancelled any more */
    assert_int_equal(rt_cancel_timer(sys, ref), RT_ENOENT);
    assert_int_equal(rt_cancel_timer(sys, 0), RT_ENOENT);
    assert_int_equal(rt_cancel_timer(sys, -5), RT_ENOENT);
    assert_int_equal(rt_cancel_timer(sys, ref + 4096), RT_ENOENT);
    trt_port_free(tp);
}

/* Of 100 timers, the odd ones are cancelled: none of them arrives before
 * a sentinel set to fire well after all of them, and all even ones do. A
 * second cancel of the same timer finds nothing. */
static void test_cancelled_timer_never_fires(void **state)
{
    rt_system_t *sys = *state;
    trt_port_t *tp = trt_port_new(sys);
    enum { N = 100 };
    int64_t refs[N];
    for (int i = 0; i < N; i++) {
        refs[i] = rt_send_after(sys, tp->id, tick(i), 20 + (uint64_t)i);
        assert_true(refs[i] > 0);
    }
    for (int i = 1; i < N; i += 2)
        assert_int_equal(rt_cancel_timer(sys, refs[i]), 0);
    for (int i = 1; i < N; i += 2)
        assert_int_equal(rt_cancel_timer(sys, refs[i]), RT_ENOENT);
    assert_true(rt_send_after(sys, tp->id, tick(-1), 20 + N + 150) > 0);

    int got[N] = {0};
    for (;;) {
        rt_msg_t *m = trt_wait_type(tp, T_TICK, 5000);
        assert_non_null(m);
        int i = tick_index(m);
        rt_msg_free(m);
        if (i == -1)
            break;
        assert_in_range(i, 0, N - 1);
        got[i]++;
    }
    for (int i = 0; i < N; i++)
        if (got[i] != (i % 2 == 0))
            fail_msg("timer %d arrived %d times", i, got[i]);
    trt_port_free(tp);
}

/* Cancel races the start of the timer on its scheduler (the cancel comes
 * right after the set, from another thread): each cancel either wins
 * (0, never delivered) or loses (RT_ENOENT, delivered once). */
static void test_cancel_races_start(void **state)
{
    rt_system_t *sys = *state;
    trt_port_t *tp = trt_port_new(sys);
    const int n = (int)trt_count(2000, 200);
    int lost = 0;
    char *won = calloc((size_t)n, 1);
    for (int i = 0; i < n; i++) {
        int64_t ref = rt_send_after(sys, tp->id, tick(i), (uint64_t)(i % 2));
        assert_true(ref > 0);
        int rc = rt_cancel_timer(sys, ref);
        if (rc == 0)
            won[i] = 1;
        else if (rc == RT_ENOENT)
            lost++;
        else
            fail_msg("cancel: %s", rt_strerror(rc));
    }
    assert_true(rt_send_after(sys, tp->id, tick(-1), 200) > 0);
    int arrived = 0;
    for (;;) {
        rt_msg_t *m = trt_wait_type(tp, T_TICK, 5000);
        assert_non_null(m);
        int i = tick_index(m);
        rt_msg_free(m);
        if (i == -1)
            break;
        if (won[i])
            fail_msg("timer %d was cancelled but fired", i);
        arrived++;
    }
    print_message("%d of %d cancels lost the race\n", lost, n);
    assert_int_equal(arrived, lost);
    free(won);
    trt_port_free(tp);
}

/* ---- timers set and cancelled by an actor on its own scheduler ---- */

typedef struct selft_state {
    rt_id_t port;
    int64_t cancelled_ref;
    int fired_cancelled;
} selft_state_t;

static int selft_handle(rt_actor_t *self, rt_msg_t *msg)
{
    selft_state_t *st = rt_state(self);
    rt_system_t *sys = rt_system(self);
    if (msg->type == T_SELF_TIMERS) {
        memcpy(&st->port, msg->data, sizeof(st->port));
        int64_t a = rt_send_after(sys, rt_self(self), tick(1), 30);
        int64_t b = rt_send_after(sys, rt_self(self), tick(2), 150);
        TCHECK(a > 0 && b > 0);
        TCHECK(rt_cancel_timer(sys, a) == 0);
        st->cancelled_ref = a;
    } else if (msg->type == T_TICK) {
        TCHECK(msg->from == rt_self(self));
        if (tick_index(msg) == 1)
            st->fired_cancelled++;
        else
            trt_emit(sys, st->port, EV_SELF, 0, rt_self(self),
                     st->fired_cancelled, 0);
    }
    return RT_CONTINUE;
}

static const rt_behaviour_t selft = {
    .kind = "selft",
    .state_size = sizeof(selft_state_t),
    .handle = selft_handle,
};

static void test_actor_timers(void **state)
{
    rt_system_t *sys = *state;
    trt_port_t *tp = trt_port_new(sys);
    rt_id_t a = trt_spawn(sys, &selft, NULL, NULL);
    assert_int_equal(
        rt_send_copy(sys, a, T_SELF_TIMERS, &tp->id, sizeof(tp->id)), 0);
    trt_event_t ev;
    assert_true(trt_wait_event(tp, EV_SELF, -1, &ev, 5000));
    assert_int_equal(ev.a, 0);
    trt_port_free(tp);
    assert_no_handler_failures();
}

/* ---- requests ---- */

typedef struct server_state {
    rt_msg_t *held; /* a copy of the request to answer late */
} server_state_t;

static int server_handle(rt_actor_t *self, rt_msg_t *msg)
{
    server_state_t *st = rt_state(self);
    rt_system_t *sys = rt_system(self);
    int mode = 0;
    if (msg->type == T_REQ) {
        memcpy(&mode, msg->data, sizeof(mode));
        if (mode == 0) {
            TCHECK(rt_reply(sys, msg, rt_msg_new(T_REP, 0)) == 0);
        } else {
            /* rt_reply() needs the request, which is gone after this
             * handler: keep a copy of its header */
            st->held = rt_msg_new(msg->type, 0);
            st->held->from = msg->from;
            st->held->ref = msg->ref;
        }
    } else if (msg->type == T_LATE && st->held) {
        rt_id_t requester = st->held->from;
        TCHECK(rt_reply(sys, st->held, rt_msg_new(T_REP, 0)) == 0);
        rt_msg_free(st->held);
        st->held = NULL;
        TCHECK(rt_send_copy(sys, requester, T_FLUSH, NULL, 0) == 0);
    }
    return RT_CONTINUE;
}

static void server_terminate(rt_actor_t *self, int reason)
{
    server_state_t *st = rt_state(self);
    rt_msg_free(st->held);
}

static const rt_behaviour_t server = {
    .kind = "server",
    .state_size = sizeof(server_state_t),
    .handle = server_handle,
    .terminate = server_terminate,
};

typedef struct req_state {
    rt_id_t port;
    int64_t r1, r2;
    int64_t t2;
    int replies1, timeouts1, replies2, timeouts2, other;
} req_state_t;

static int64_t request(rt_actor_t *self, rt_id_t to, int mode, uint64_t timeout)
{
    rt_msg_t *m = rt_msg_new(T_REQ, sizeof(mode));
    memcpy(m->data, &mode, sizeof(mode));
    return rt_request(self, to, m, timeout);
}

static int req_handle(rt_actor_t *self, rt_msg_t *msg)
{
    req_state_t *st = rt_state(self);
    rt_system_t *sys = rt_system(self);
    if (msg->type == T_START) {
        rt_id_t srv;
        memcpy(&srv, msg->data, sizeof(srv));
        st->port = msg->from ? msg->from : st->port;
        st->r1 = request(self, srv, 0, 100);
        st->t2 = trt_now_ms();
        st->r2 = request(self, srv, 1, (uint64_t)trt_ms(300));
        TCHECK(st->r1 > 0 && st->r2 > 0 && st->r1 != st->r2);
        /* a request to nobody fails at once */
        TCHECK(request(self, 0, 0, 100) < 0);
    } else if (msg->type == T_REP) {
        if ((int64_t)msg->ref == st->r1)
            st->replies1++;
        else if ((int64_t)msg->ref == st->r2)
            st->replies2++;
        else
            st->other++;
    } else if (msg->type == RT_MSG_TIMEOUT) {
        TCHECK(msg->size == 0);
        if ((int64_t)msg->ref == st->r1) {
            st->timeouts1++;
        } else if ((int64_t)msg->ref == st->r2) {
            st->timeouts2++;
            trt_emit(sys, st->port, EV_TIMEOUT, 0, rt_self(self),
                     trt_now_ms() - st->t2, 0);
        } else {
            st->other++;
        }
    } else if (msg->type == T_FLUSH) {
        int64_t summary = st->replies1 | st->timeouts1 << 4 |
                          st->replies2 << 8 | st->timeouts2 << 12 |
                          st->other << 16;
        trt_emit(sys, st->port, EV_FLUSH, 0, rt_self(self), summary, 0);
    }
    return RT_CONTINUE;
}

static int req_init(rt_actor_t *self, void *arg)
{
    ((req_state_t *)rt_state(self))->port = *(rt_id_t *)arg;
    return 0;
}

static const rt_behaviour_t requester = {
    .kind = "requester",
    .state_size = sizeof(req_state_t),
    .init = req_init,
    .handle = req_handle,
};

/* r1 is answered at once and never times out (its 100 ms time-out would
 * have come before r2's 300 ms one); r2 times out after its time and the
 * reply sent after that is dropped before the handler. */
static void test_request_reply_timeout(void **state)
{
    rt_system_t *sys = *state;
    trt_port_t *tp = trt_port_new(sys);
    rt_id_t srv = trt_spawn(sys, &server, NULL, NULL);
    rt_id_t req = trt_spawn(sys, &requester, &tp->id, NULL);
    assert_int_equal(rt_send_copy(sys, req, T_START, &srv, sizeof(srv)), 0);
    trt_event_t ev;
    assert_true(trt_wait_event(tp, EV_TIMEOUT, -1, &ev, 5000));
    assert_true(ev.a >= trt_ms(300) - 10);
    assert_int_equal(rt_send_copy(sys, srv, T_LATE, NULL, 0), 0);
    assert_true(trt_wait_event(tp, EV_FLUSH, -1, &ev, 5000));
    assert_int_equal(ev.a & 0xf, 1);         /* r1 replied */
    assert_int_equal((ev.a >> 4) & 0xf, 0);  /* r1 never timed out */
    assert_int_equal((ev.a >> 8) & 0xf, 0);  /* late r2 reply dropped */
    assert_int_equal((ev.a >> 12) & 0xf, 1); /* r2 timed out once */
    assert_int_equal((ev.a >> 16) & 0xf, 0); /* nothing else */
    trt_port_free(tp);
    assert_no_handler_failures();
}

/* ---- ports ---- */

static void test_port_recv_deadline(void **state)
{
    rt_system_t *sys = *state;
    trt_port_t *tp = trt_port_new(sys);
    int64_t t0 = trt_now_ms();
    assert_null(rt_port_recv(tp->p, 80));
    int64_t dt = trt_now_ms() - t0;
    assert_true(dt >= 75);
    assert_true(dt < 80 + trt_ms(1000));
    t0 = trt_now_ms();
    assert_null(rt_port_recv(tp->p, 0));
    assert_true(trt_now_ms() - t0 < trt_ms(50));

    /* a waiting recv wakes for the message, long before its deadline */
    assert_true(rt_send_after(sys, tp->id, tick(3), 30) > 0);
    t0 = trt_now_ms();
    rt_msg_t *m = rt_port_recv(tp->p, 10000);
    assert_non_null(m);
    assert_int_equal(tick_index(m), 3);
    rt_msg_free(m);
    assert_true(trt_now_ms() - t0 < trt_ms(2000));

    /* forever */
    assert_true(rt_send_after(sys, tp->id, tick(4), 20) > 0);
    m = rt_port_recv(tp->p, -1);
    assert_non_null(m);
    assert_int_equal(tick_index(m), 4);
    rt_msg_free(m);

    /* queued messages come back in order, without waiting */
    for (int i = 0; i < 50; i++)
        assert_int_equal(rt_send(sys, tp->id, tick(i)), 0);
    for (int i = 0; i < 50; i++) {
        m = rt_port_recv(tp->p, 0);
        assert_non_null(m);
        assert_int_equal(tick_index(m), i);
        rt_msg_free(m);
    }
    assert_null(rt_port_recv(tp->p, 0));
    trt_port_free(tp);
}

/* rt_port_call returns the reply to its own request: NULL on time-out,
 * and a reply that comes after that is never mistaken for the reply to a
 * later call. Other messages that arrive during a call stay for recv. */
static void test_port_call(void **state)
{
    rt_system_t *sys = *state;
    trt_port_t *tp = trt_port_new(sys);
    rt_id_t srv = trt_spawn(sys, &server, NULL, NULL);

    int mode = 1; /* hold */
    rt_msg_t *q = rt_msg_new(T_REQ, sizeof(mode));
    memcpy(q->data, &mode, sizeof(mode));
    int64_t t0 = trt_now_ms();
    assert_null(rt_port_call(tp->p, srv, q, 80));
    assert_true(trt_now_ms() - t0 >= 75);

    assert_true(rt_send_after(sys, tp->id, tick(9), 1) > 0);
    /* the held request is answered now, followed by T_FLUSH to the port */
    assert_int_equal(rt_send_copy(sys, srv, T_LATE, NULL, 0), 0);
    mode = 0;
    q = rt_msg_new(T_REQ, sizeof(mode));
    memcpy(q->data, &mode, sizeof(mode));
    rt_msg_t *r = rt_port_call(tp->p, srv, q, trt_ms(5000));
    assert_non_null(r);
    assert_int_equal(r->type, T_REP);
    assert_int_equal(r->from, srv);
    rt_msg_free(r);

    /* the flush and the tick were kept; the stale reply never shows */
    rt_msg_t *f = trt_wait_type(tp, T_FLUSH, 5000);
    assert_non_null(f);
    rt_msg_free(f);
    rt_msg_t *t = trt_wait_type(tp, T_TICK, 5000);
    assert_non_null(t);
    rt_msg_free(t);
    assert_int_equal(trt_drop_type(tp, T_REP), 0);
    assert_null(rt_port_recv(tp->p, 0));
    trt_port_free(tp);
    assert_no_handler_failures();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_send_after_fires, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cancelled_timer_never_fires, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_cancel_races_start, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_actor_timers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_request_reply_timeout, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_port_recv_deadline, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_port_call, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
