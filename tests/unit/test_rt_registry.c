/*
 * test_rt_registry.c - the name registry: names and keys, RT_EEXIST,
 * unregistering, names cleared when their actor dies, racing registrations
 * (exactly one winner per name), and many names on few actors.
 */
#include "test_rt_common.h"

enum { T_CRASH = 1, T_WHEREIS };
enum { EV_FOUND = 1 };

static int idle_init(rt_actor_t *self, void *arg)
{
    /* an arg asks the actor to register itself under that name */
    if (arg)
        return rt_register(rt_system(self), arg, rt_self(self));
    return 0;
}

static int idle_handle(rt_actor_t *self, rt_msg_t *msg)
{
    if (msg->type == T_CRASH)
        return -21;
    if (msg->type == T_WHEREIS) {
        rt_id_t port;
        memcpy(&port, msg->data, sizeof(port));
        const char *name = (const char *)msg->data + sizeof(port);
        trt_emit(rt_system(self), port, EV_FOUND, 0, rt_self(self),
                 (int64_t)rt_whereis(rt_system(self), name), 0);
    }
    return RT_CONTINUE;
}

static const rt_behaviour_t idle = {
    .kind = "idle",
    .init = idle_init,
    .handle = idle_handle,
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

static void test_names(void **state)
{
    rt_system_t *sys = *state;
    rt_id_t a = trt_spawn(sys, &idle, NULL, NULL);
    rt_id_t b = trt_spawn(sys, &idle, NULL, NULL);
    assert_int_equal(rt_whereis(sys, "alpha"), 0);
    assert_int_equal(rt_register(sys, "alpha", a), 0);
    assert_int_equal(rt_whereis(sys, "alpha"), a);
    assert_int_equal(rt_register(sys, "alpha", b), RT_EEXIST);
    assert_int_equal(rt_register(sys, "alpha", a), RT_EEXIST);
    assert_int_equal(rt_whereis(sys, "alpha"), a);
    /* one actor, several names; names differ from keys */
    assert_int_equal(rt_register(sys, "alpha2", a), 0);
    assert_int_equal(rt_whereis(sys, "alpha2"), a);
    assert_int_equal(rt_whereis(sys, "alph"), 0);
    assert_int_equal(rt_unregister(sys, "alpha"), 0);
    assert_int_equal(rt_whereis(sys, "alpha"), 0);
    assert_int_equal(rt_unregister(sys, "alpha"), RT_ENOENT);
    assert_int_equal(rt_unregister(sys, "never"), RT_ENOENT);
    assert_int_equal(rt_register(sys, "alpha", b), 0);
    assert_int_equal(rt_whereis(sys, "alpha"), b);
    assert_int_equal(rt_whereis(sys, "alpha2"), a);
}

static void test_keys(void **state)
{
    rt_system_t *sys = *state;
    rt_id_t a = trt_spawn(sys, &idle, NULL, NULL);
    rt_id_t b = trt_spawn(sys, &idle, NULL, NULL);
    const uint64_t k = UINT64_C(0xfeedface12345678);
    assert_int_equal(rt_whereis_key(sys, k), 0);
    assert_int_equal(rt_register_key(sys, k, a), 0);
    assert_int_equal(rt_whereis_key(sys, k), a);
    assert_int_equal(rt_register_key(sys, k, b), RT_EEXIST);
    assert_int_equal(rt_whereis_key(sys, k), a);
    assert_int_equal(rt_register_key(sys, k + 1, a), 0);
    assert_int_equal(rt_whereis_key(sys, k + 1), a);
    assert_int_equal(rt_unregister_key(sys, k), 0);
    assert_int_equal(rt_whereis_key(sys, k), 0);
    assert_int_equal(rt_unregister_key(sys, k), RT_ENOENT);
    assert_int_equal(rt_register_key(sys, k, b), 0);
    assert_int_equal(rt_whereis_key(sys, k), b);
}

/* Names and keys go when their actor dies, and can be taken again. An
 * actor may register itself and be found by another actor. */
static void test_cleared_on_death(void **state)
{
    rt_system_t *sys = *state;
    trt_port_t *tp = trt_port_new(sys);
    rt_id_t a = trt_spawn(sys, &idle, "gamma", NULL);
    assert_true(TRT_WAIT_UNTIL(rt_whereis(sys, "gamma") == a, 5000));
    assert_int_equal(rt_register_key(sys, 77, a), 0);
    assert_int_equal(rt_register(sys, "gamma-bis", a), 0);

    rt_id_t b = trt_spawn(sys, &idle, NULL, NULL);
    unsigned char buf[64];
    memcpy(buf, &tp->id, sizeof(tp->id));
    strcpy((char *)buf + sizeof(tp->id), "gamma");
    assert_int_equal(rt_send_copy(sys, b, T_WHEREIS, buf, sizeof(buf)), 0);
    trt_event_t ev;
    assert_true(trt_wait_event(tp, EV_FOUND, -1, &ev, 5000));
    assert_int_equal(ev.a, a);

    uint64_t ref = rt_port_monitor(tp->p, a);
    assert_int_equal(rt_send_copy(sys, a, T_CRASH, NULL, 0), 0);
    rt_exit_info_t ei = trt_wait_down(tp, ref, 5000);
    assert_int_equal(ei.reason, -21);
    assert_int_equal(rt_whereis(sys, "gamma"), 0);
    assert_int_equal(rt_whereis(sys, "gamma-bis"), 0);
    assert_int_equal(rt_whereis_key(sys, 77), 0);
    /* taken again at once (a dead holder never blocks a name) */
    assert_int_equal(rt_register(sys, "gamma", b), 0);
    assert_int_equal(rt_register_key(sys, 77, b), 0);
    assert_int_equal(rt_register(sys, "gamma-bis", b), 0);
    assert_int_equal(rt_whereis(sys, "gamma"), b);
    assert_int_equal(rt_whereis_key(sys, 77), b);

    /* the new holder's names are not disturbed by the old one's cleanup,
     * and go in their turn */
    ref = rt_port_monitor(tp->p, b);
    assert_int_equal(rt_send_copy(sys, b, T_CRASH, NULL, 0), 0);
    trt_wait_down(tp, ref, 5000);
    assert_int_equal(rt_whereis(sys, "gamma"), 0);
    assert_int_equal(rt_whereis_key(sys, 77), 0);
    trt_port_free(tp);
}

typedef struct racer {
    rt_system_t *sys;
    rt_id_t me;
    int names;
    _Atomic int *winners;
    _Atomic rt_id_t *owner;
} racer_t;

static void *racer_main(void *varg)
{
    racer_t *r = varg;
    char name[32];
    for (int i = 0; i < r->names; i++) {
        snprintf(name, sizeof(name), "race-%d", i);
        int rc = rt_register(r->sys, name, r->me);
        if (rc == 0) {
            atomic_fetch_add(&r->winners[i], 1);
            atomic_store(&r->owner[i], r->me);
        } else {
            TCHECK(rc == RT_EEXIST);
        }
        rc = rt_register_key(r->sys, (uint64_t)i + 1000, r->me);
        TCHECK(rc == 0 || rc == RT_EEXIST);
    }
    return NULL;
}

/* Eight threads race for the same names: each name has exactly one
 * winner, and rt_whereis() agrees with it. */
static void test_racing_registrations(void **state)
{
    rt_system_t *sys = *state;
    enum { NTHR = 8, NAMES = 500 };
    static _Atomic int winners[NAMES];
    static _Atomic rt_id_t owner[NAMES];
    memset(winners, 0, sizeof(winners));
    memset(owner, 0, sizeof(owner));
    racer_t r[NTHR];
    pthread_t th[NTHR];
    for (int i = 0; i < NTHR; i++) {
        r[i] = (racer_t){sys, trt_spawn(sys, &idle, NULL, NULL), NAMES, winners,
                         owner};
        assert_int_equal(pthread_create(&th[i], NULL, racer_main, &r[i]), 0);
    }
    for (int i = 0; i < NTHR; i++)
        pthread_join(th[i], NULL);
    char name[32];
    for (int i = 0; i < NAMES; i++) {
        snprintf(name, sizeof(name), "race-%d", i);
        assert_int_equal(atomic_load(&winners[i]), 1);
        assert_int_equal(rt_whereis(sys, name), atomic_load(&owner[i]));
        assert_true(rt_whereis_key(sys, (uint64_t)i + 1000) != 0);
    }
    assert_no_handler_failures();
}

/* Thousands of names on a few actors all go when those actors die; the
 * names of the survivors stay. */
static void test_many_names(void **state)
{
    rt_system_t *sys = *state;
    trt_port_t *tp = trt_port_new(sys);
    enum { ACTORS = 10 };
    const int per = (int)trt_count(1000, 100);
    rt_id_t ids[ACTORS];
    char name[32];
    for (int a = 0; a < ACTORS; a++) {
        ids[a] = trt_spawn(sys, &idle, NULL, NULL);
        for (int i = 0; i < per; i++) {
            snprintf(name, sizeof(name), "n%d.%d", a, i);
            assert_int_equal(rt_register(sys, name, ids[a]), 0);
            assert_int_equal(
                rt_register_key(sys, ((uint64_t)a << 32 | (uint64_t)i) + 1,
                                ids[a]),
                0);
        }
    }
    for (int a = 0; a < ACTORS; a += 2) {
        uint64_t ref = rt_port_monitor(tp->p, ids[a]);
        assert_int_equal(rt_kill(sys, ids[a], RT_EKILLED), 0);
        trt_wait_down(tp, ref, 5000);
    }
    for (int a = 0; a < ACTORS; a++)
        for (int i = 0; i < per; i++) {
            snprintf(name, sizeof(name), "n%d.%d", a, i);
            rt_id_t want = a % 2 ? ids[a] : 0;
            assert_int_equal(rt_whereis(sys, name), want);
            assert_int_equal(
                rt_whereis_key(sys, ((uint64_t)a << 32 | (uint64_t)i) + 1),
                want);
        }
    trt_port_free(tp);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_names, setup, teardown),
        cmocka_unit_test_setup_teardown(test_keys, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cleared_on_death, setup, teardown),
        cmocka_unit_test_setup_teardown(test_racing_registrations, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_many_names, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
