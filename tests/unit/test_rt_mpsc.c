/*
 * test_rt_mpsc.c - many producers against one mailbox.
 *
 * Plain threads and actors send numbered messages to one actor at once.
 * Every message must arrive exactly once, with its payload intact, and the
 * messages of each producer in the order it sent them. Then two tests of
 * the idle/ready hand-off, where a lost wake-up would hang: actors that
 * ping-pong, and a port that calls an actor many times in a row.
 */
#include "test_rt_common.h"

enum { T_NUM = 1, T_GO, T_BALL, T_SERVE };
enum { EV_DONE = 1 };

#define NTHREADS 8
#define NACTORS  64
#define NPROD    (NTHREADS + NACTORS)

typedef struct num {
    uint32_t prod;
    uint32_t seq;
    unsigned char pad[]; /* seq % 48 bytes of (prod + seq) & 0xff */
} num_t;

typedef struct sink_arg {
    rt_id_t port;
    uint64_t total;
    rt_id_t producer_id[NPROD]; /* 0 for threads */
    _Atomic uint64_t dups, gaps, bad_payload, bad_from;
} sink_arg_t;

typedef struct sink_state {
    sink_arg_t *arg;
    uint32_t next[NPROD];
    uint64_t received;
} sink_state_t;

static int sink_init(rt_actor_t *self, void *arg)
{
    sink_state_t *st = rt_state(self);
    st->arg = arg;
    return 0;
}

static int sink_handle(rt_actor_t *self, rt_msg_t *msg)
{
    sink_state_t *st = rt_state(self);
    sink_arg_t *arg = st->arg;
    if (msg->type != T_NUM || msg->size < sizeof(num_t)) {
        atomic_fetch_add(&arg->bad_payload, 1);
        return RT_CONTINUE;
    }
    const num_t *n = (const num_t *)msg->data;
    if (n->prod >= NPROD || msg->size != sizeof(num_t) + n->seq % 48) {
        atomic_fetch_add(&arg->bad_payload, 1);
        return RT_CONTINUE;
    }
    for (uint32_t i = 0; i < n->seq % 48; i++)
        if (n->pad[i] != ((n->prod + n->seq) & 0xff)) {
            atomic_fetch_add(&arg->bad_payload, 1);
            break;
        }
    if (msg->from != arg->producer_id[n->prod])
        atomic_fetch_add(&arg->bad_from, 1);
    if (n->seq < st->next[n->prod])
        atomic_fetch_add(&arg->dups, 1);
    else if (n->seq > st->next[n->prod])
        atomic_fetch_add(&arg->gaps, 1);
    st->next[n->prod] = n->seq + 1;
    if (++st->received == arg->total)
        trt_emit(rt_system(self), arg->port, EV_DONE, 0, rt_self(self),
                 (int64_t)st->received, 0);
    return RT_CONTINUE;
}

static const rt_behaviour_t sink = {
    .kind = "sink",
    .state_size = sizeof(sink_state_t),
    .init = sink_init,
    .handle = sink_handle,
};

static int send_num(rt_system_t *sys, rt_id_t to, uint32_t prod, uint32_t seq)
{
    uint32_t padn = seq % 48;
    rt_msg_t *m = rt_msg_new(T_NUM, (uint32_t)sizeof(num_t) + padn);
    if (!m)
        return RT_ENOMEM;
    num_t *n = (num_t *)m->data;
    n->prod = prod;
    n->seq = seq;
    memset(n->pad, (int)((prod + seq) & 0xff), padn);
    return rt_send(sys, to, m);
}

/* ---- producer actors: send in chunks so no turn runs long ---- */

typedef struct prod_arg {
    rt_id_t sink;
    uint32_t index;
    uint32_t count;
} prod_arg_t;

typedef struct prod_state {
    prod_arg_t *arg;
    uint32_t sent;
} prod_state_t;

static int prod_init(rt_actor_t *self, void *arg)
{
    prod_state_t *st = rt_state(self);
    st->arg = arg;
    return 0;
}

static int prod_handle(rt_actor_t *self, rt_msg_t *msg)
{
    prod_state_t *st = rt_state(self);
    rt_system_t *sys = rt_system(self);
    if (msg->type != T_GO)
        return RT_CONTINUE;
    for (int i = 0; i < 128 && st->sent < st->arg->count; i++, st->sent++)
        TCHECK(send_num(sys, st->arg->sink, st->arg->index, st->sent) == 0);
    if (st->sent < st->arg->count)
        TCHECK(rt_send_copy(sys, rt_self(self), T_GO, NULL, 0) == 0);
    return RT_CONTINUE;
}

static const rt_behaviour_t producer = {
    .kind = "producer",
    .state_size = sizeof(prod_state_t),
    .init = prod_init,
    .handle = prod_handle,
};

/* ---- producer threads ---- */

typedef struct thr_arg {
    rt_system_t *sys;
    rt_id_t sink;
    uint32_t index;
    uint32_t count;
    _Atomic int *start;
} thr_arg_t;

static void *thr_main(void *varg)
{
    thr_arg_t *a = varg;
    while (!atomic_load(a->start))
        sched_yield();
    for (uint32_t s = 0; s < a->count; s++)
        TCHECK(send_num(a->sys, a->sink, a->index, s) == 0);
    return NULL;
}

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

static void test_many_producers_one_mailbox(void **state)
{
    rt_system_t *sys = *state;
    const uint32_t per = (uint32_t)trt_count(1500, 200);
    trt_port_t *tp = trt_port_new(sys);
    sink_arg_t *sa = calloc(1, sizeof(*sa));
    assert_non_null(sa);
    sa->port = tp->id;
    sa->total = (uint64_t)per * NPROD;
    rt_spawn_opts_t so = {.mailbox_limit = (uint32_t)sa->total + 16};
    rt_id_t s = trt_spawn(sys, &sink, sa, &so);

    prod_arg_t pa[NACTORS];
    rt_id_t pid[NACTORS];
    for (int i = 0; i < NACTORS; i++) {
        pa[i] = (prod_arg_t){s, NTHREADS + (uint32_t)i, per};
        pid[i] = trt_spawn(sys, &producer, &pa[i], NULL);
        sa->producer_id[NTHREADS + i] = pid[i];
    }

    _Atomic int start = 0;
    pthread_t th[NTHREADS];
    thr_arg_t ta[NTHREADS];
    for (int i = 0; i < NTHREADS; i++) {
        ta[i] = (thr_arg_t){sys, s, (uint32_t)i, per, &start};
        assert_int_equal(pthread_create(&th[i], NULL, thr_main, &ta[i]), 0);
    }
    atomic_store(&start, 1);
    for (int i = 0; i < NACTORS; i++)
        assert_int_equal(rt_send_copy(sys, pid[i], T_GO, NULL, 0), 0);
    for (int i = 0; i < NTHREADS; i++)
        pthread_join(th[i], NULL);

    trt_event_t ev;
    bool done = trt_wait_event(tp, EV_DONE, -1, &ev, 30000);
    rt_actor_info_t ai;
    int rc = rt_actor_info(sys, s, &ai);
    if (!done)
        fail_msg("sink got %llu of %llu (rc %d)",
                 (unsigned long long)(rc == 0 ? ai.handled : 0),
                 (unsigned long long)sa->total, rc);
    assert_int_equal(ev.a, sa->total);
    assert_int_equal(atomic_load(&sa->dups), 0);
    assert_int_equal(atomic_load(&sa->gaps), 0);
    assert_int_equal(atomic_load(&sa->bad_payload), 0);
    assert_int_equal(atomic_load(&sa->bad_from), 0);
    /* the runtime's counters agree: nothing more, nothing left */
    assert_true(TRT_WAIT_UNTIL(rt_actor_info(sys, s, &ai) == 0 &&
                                   ai.handled == sa->total && ai.mailbox == 0,
                               5000));
    trt_port_free(tp);
    rt_system_stop(sys);
    *state = trt_start(2, 0, 0);
    free(sa);
    assert_no_handler_failures();
}

/* ---- ping-pong: each hop finds the other actor idle ---- */

typedef struct ball_arg {
    rt_id_t port;
    uint64_t rounds;
} ball_arg_t;

static int ball_init(rt_actor_t *self, void *arg)
{
    *(ball_arg_t **)rt_state(self) = arg;
    return 0;
}

/* T_SERVE carries the peer's id; T_BALL carries the hop count and goes
 * back to whoever sent it. */
static int ball_handle(rt_actor_t *self, rt_msg_t *msg)
{
    ball_arg_t *a = *(ball_arg_t **)rt_state(self);
    rt_system_t *sys = rt_system(self);
    uint64_t n;
    if (msg->type == T_SERVE) {
        rt_id_t peer;
        memcpy(&peer, msg->data, sizeof(peer));
        n = 1;
        TCHECK(rt_send_copy(sys, peer, T_BALL, &n, sizeof(n)) == 0);
        return RT_CONTINUE;
    }
    if (msg->type != T_BALL)
        return RT_CONTINUE;
    memcpy(&n, msg->data, sizeof(n));
    if (n == a->rounds) {
        trt_emit(sys, a->port, EV_DONE, 0, rt_self(self), (int64_t)n, 0);
        return RT_CONTINUE;
    }
    n++;
    TCHECK(rt_send_copy(sys, msg->from, T_BALL, &n, sizeof(n)) == 0);
    return RT_CONTINUE;
}

static const rt_behaviour_t ball = {
    .kind = "ball",
    .state_size = sizeof(void *),
    .init = ball_init,
    .handle = ball_handle,
};

/* Four rallies at once on two schedulers: every hop wakes an idle actor.
 * A lost wake-up stops a rally and the test times out. */
static void test_ping_pong_no_lost_wakeup(void **state)
{
    rt_system_t *sys = *state;
    trt_port_t *tp = trt_port_new(sys);
    enum { PAIRS = 4 };
    ball_arg_t arg = {tp->id, (uint64_t)trt_count(20000, 2000)};
    for (int i = 0; i < PAIRS; i++) {
        rt_id_t a = trt_spawn(sys, &ball, &arg, NULL);
        rt_id_t b = trt_spawn(sys, &ball, &arg, NULL);
        assert_int_equal(rt_send_copy(sys, a, T_SERVE, &b, sizeof(b)), 0);
    }
    for (int i = 0; i < PAIRS; i++) {
        trt_event_t ev;
        assert_true(trt_wait_event(tp, EV_DONE, -1, &ev, 30000));
        assert_int_equal(ev.a, arg.rounds);
    }
    trt_port_free(tp);
    assert_no_handler_failures();
}

/* A port calls an echo actor many times in a row: each call wakes the
 * actor, each reply wakes the port. */
static int echo_handle(rt_actor_t *self, rt_msg_t *msg)
{
    rt_msg_t *r = rt_msg_new(msg->type, msg->size);
    if (!r)
        return RT_ENOMEM;
    memcpy(r->data, msg->data, msg->size);
    TCHECK(rt_reply(rt_system(self), msg, r) == 0);
    return RT_CONTINUE;
}

static const rt_behaviour_t echo = {.kind = "echo", .handle = echo_handle};

static void test_port_calls_in_a_row(void **state)
{
    rt_system_t *sys = *state;
    trt_port_t *tp = trt_port_new(sys);
    rt_id_t e = trt_spawn(sys, &echo, NULL, NULL);
    const long n = trt_count(10000, 1000);
    for (long i = 0; i < n; i++) {
        rt_msg_t *m = rt_msg_new(T_NUM, sizeof(i));
        memcpy(m->data, &i, sizeof(i));
        rt_msg_t *r = rt_port_call(tp->p, e, m, trt_ms(5000));
        if (!r)
            fail_msg("call %ld got no reply", i);
        long v;
        memcpy(&v, r->data, sizeof(v));
        rt_msg_free(r);
        assert_int_equal(v, i);
    }
    trt_port_free(tp);
    assert_no_handler_failures();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_many_producers_one_mailbox, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_ping_pong_no_lost_wakeup, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_port_calls_in_a_row, setup,
                                        teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
