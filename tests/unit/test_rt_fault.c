/*
 * test_rt_fault.c - fault points.
 *
 * Arming by count (with `after`), by probability with a seed, and the
 * seeded replay: the same seed and hits give the same fired hits, another
 * seed gives others. The actions: FAIL and DROP are returned, DELAY has
 * slept when it returns, CRASH makes an actor crash. Disarming, bad arms,
 * rt_fault_foreach(), and counting under concurrent hits.
 *
 * Fault points are process-wide, so every test uses names of its own.
 */
#include "test_rt_common.h"

typedef struct find_ctx {
    const char *name;
    rt_fault_info_t info;
    int found;
} find_ctx_t;

static void find_fn(const rt_fault_info_t *fi, void *ctx)
{
    find_ctx_t *c = ctx;
    if (strcmp(fi->name, c->name) == 0) {
        c->info = *fi;
        c->found++;
    }
}

static rt_fault_info_t info_of(const char *name)
{
    find_ctx_t c = {.name = name};
    rt_fault_foreach(find_fn, &c);
    if (c.found != 1)
        fail_msg("fault point %s listed %d times", name, c.found);
    return c.info;
}

static void test_arm_by_count(void **state)
{
    (void)state;
    rt_fault_point_t *fp = rt_fault_point("test.count");
    assert_non_null(fp);
    assert_ptr_equal(rt_fault_point("test.count"), fp);
    assert_int_equal(rt_fault_hit(fp), RT_FAULT_NONE);
    rt_fault_arm_t arm = {.action = RT_FAULT_FAIL, .count = 3, .after = 2};
    assert_int_equal(rt_fault_arm("test.count", &arm), 0);
    static const rt_fault_action_t want[10] = {
        RT_FAULT_NONE, RT_FAULT_NONE, RT_FAULT_FAIL, RT_FAULT_FAIL,
        RT_FAULT_FAIL, RT_FAULT_NONE, RT_FAULT_NONE, RT_FAULT_NONE,
        RT_FAULT_NONE, RT_FAULT_NONE};
    for (int i = 0; i < 10; i++)
        if (rt_fault_hit(fp) != want[i])
            fail_msg("hit %d: wrong action", i);
    rt_fault_info_t fi = info_of("test.count");
    assert_int_equal(fi.fired, 3);
    assert_int_equal(fi.arm.action, RT_FAULT_NONE); /* spent: disarmed */
    assert_true(fi.hits >= 10);
}

static void run_hits(rt_fault_point_t *fp, unsigned char *out, int n)
{
    for (int i = 0; i < n; i++)
        out[i] = rt_fault_hit(fp) == RT_FAULT_FAIL;
}

static int count_ones(const unsigned char *v, int n)
{
    int k = 0;
    for (int i = 0; i < n; i++)
        k += v[i];
    return k;
}

/* The same seed replays the same faults; another seed does not. */
static void test_seeded_replay(void **state)
{
    (void)state;
    enum { N = 4000 };
    static unsigned char a[N], b[N], c[N];
    rt_fault_point_t *fp = rt_fault_point("test.prob");
    rt_fault_arm_t arm = {.action = RT_FAULT_FAIL, .probability = 0.3};

    rt_fault_seed(42);
    assert_int_equal(rt_fault_arm("test.prob", &arm), 0);
    run_hits(fp, a, N);
    assert_int_equal(rt_fault_disarm("test.prob"), 0);

    rt_fault_seed(42);
    assert_int_equal(rt_fault_arm("test.prob", &arm), 0);
    run_hits(fp, b, N);
    assert_memory_equal(a, b, N);

    /* re-arming after the seed is set gives the same again */
    assert_int_equal(rt_fault_arm("test.prob", &arm), 0);
    rt_fault_seed(42);
    run_hits(fp, c, N);
    assert_memory_equal(a, c, N);

    rt_fault_seed(43);
    assert_int_equal(rt_fault_arm("test.prob", &arm), 0);
    run_hits(fp, c, N);
    assert_true(memcmp(a, c, N) != 0);

    int k = count_ones(a, N);
    print_message("fired %d of %d at p=0.3\n", k, N);
    assert_in_range(k, N * 25 / 100, N * 35 / 100);
    assert_in_range(count_ones(c, N), N * 25 / 100, N * 35 / 100);

    /* the probability's ends */
    arm.probability = 1.0;
    assert_int_equal(rt_fault_arm("test.prob", &arm), 0);
    run_hits(fp, c, 100);
    assert_int_equal(count_ones(c, 100), 100);
    assert_int_equal(rt_fault_disarm("test.prob"), 0);
}

static void test_delay_drop_fail(void **state)
{
    (void)state;
    rt_fault_point_t *fp = rt_fault_point("test.actions");
    rt_fault_arm_t arm = {.action = RT_FAULT_DELAY, .count = 1, .delay_ms = 60};
    assert_int_equal(rt_fault_arm("test.actions", &arm), 0);
    int64_t t0 = trt_now_ms();
    assert_int_equal(rt_fault_hit(fp), RT_FAULT_DELAY);
    assert_true(trt_now_ms() - t0 >= 60);
    t0 = trt_now_ms();
    assert_int_equal(rt_fault_hit(fp), RT_FAULT_NONE);
    assert_true(trt_now_ms() - t0 < 50);

    arm = (rt_fault_arm_t){.action = RT_FAULT_DROP, .count = 2};
    assert_int_equal(rt_fault_arm("test.actions", &arm), 0);
    assert_int_equal(rt_fault_hit(fp), RT_FAULT_DROP);
    assert_int_equal(rt_fault_hit(fp), RT_FAULT_DROP);
    assert_int_equal(rt_fault_hit(fp), RT_FAULT_NONE);

    arm = (rt_fault_arm_t){.action = RT_FAULT_FAIL, .probability = 1.0};
    assert_int_equal(rt_fault_arm("test.actions", &arm), 0);
    for (int i = 0; i < 10; i++)
        assert_int_equal(rt_fault_hit(fp), RT_FAULT_FAIL);
    assert_int_equal(rt_fault_disarm("test.actions"), 0);
    assert_int_equal(rt_fault_hit(fp), RT_FAULT_NONE);
    assert_int_equal(info_of("test.actions").arm.action, RT_FAULT_NONE);
}

static void test_disarm_and_bad_arms(void **state)
{
    (void)state;
    assert_int_equal(rt_fault_disarm("test.never-seen"), RT_ENOENT);
    rt_fault_arm_t bad = {.action = RT_FAULT_FAIL, .probability = 1.5};
    assert_int_equal(rt_fault_arm("test.bad", &bad), RT_EINVAL);
    bad.probability = -0.1;
    assert_int_equal(rt_fault_arm("test.bad", &bad), RT_EINVAL);
    assert_int_equal(rt_fault_arm("test.bad", NULL), RT_EINVAL);
}

/* rt_fault() at a site caches its point: hits land on the named point. */
static rt_fault_action_t site(void)
{
    return rt_fault("test.macro");
}

static void test_foreach_lists_points(void **state)
{
    (void)state;
    rt_fault_arm_t a1 = {.action = RT_FAULT_CRASH, .count = 7};
    rt_fault_arm_t a2 = {
        .action = RT_FAULT_DELAY, .probability = 0.25, .delay_ms = 9};
    assert_int_equal(rt_fault_arm("test.list1", &a1), 0);
    assert_int_equal(rt_fault_arm("test.list2", &a2), 0);
    assert_non_null(rt_fault_point("test.list3"));
    for (int i = 0; i < 3; i++)
        assert_int_equal(site(), RT_FAULT_NONE);

    rt_fault_info_t f1 = info_of("test.list1");
    assert_int_equal(f1.arm.action, RT_FAULT_CRASH);
    assert_int_equal(f1.arm.count, 7);
    rt_fault_info_t f2 = info_of("test.list2");
    assert_int_equal(f2.arm.action, RT_FAULT_DELAY);
    assert_true(f2.arm.probability == 0.25);
    assert_int_equal(f2.arm.delay_ms, 9);
    rt_fault_info_t f3 = info_of("test.list3");
    assert_int_equal(f3.arm.action, RT_FAULT_NONE);
    assert_int_equal(f3.fired, 0);
    rt_fault_info_t fm = info_of("test.macro");
    assert_int_equal(fm.hits, 3);
    assert_int_equal(rt_fault_disarm("test.list1"), 0);
    assert_int_equal(rt_fault_disarm("test.list2"), 0);
}

typedef struct hitter {
    rt_fault_point_t *fp;
    long n;
    _Atomic long fired;
} hitter_t;

static void *hitter_main(void *varg)
{
    hitter_t *h = varg;
    for (long i = 0; i < h->n; i++)
        if (rt_fault_hit(h->fp) == RT_FAULT_FAIL)
            atomic_fetch_add(&h->fired, 1);
    return NULL;
}

/* Four threads hit a point armed for 1000 faults: exactly 1000 fire. */
static void test_concurrent_count(void **state)
{
    (void)state;
    enum { NTHR = 4 };
    rt_fault_arm_t arm = {.action = RT_FAULT_FAIL, .count = 1000};
    hitter_t h = {rt_fault_point("test.conc"), trt_count(20000, 2000), 0};
    assert_int_equal(rt_fault_arm("test.conc", &arm), 0);
    pthread_t th[NTHR];
    for (int i = 0; i < NTHR; i++)
        assert_int_equal(pthread_create(&th[i], NULL, hitter_main, &h), 0);
    for (int i = 0; i < NTHR; i++)
        pthread_join(th[i], NULL);
    assert_int_equal(atomic_load(&h.fired), 1000);
    rt_fault_info_t fi = info_of("test.conc");
    assert_int_equal(fi.fired, 1000);
    assert_int_equal(fi.hits, (uint64_t)h.n * NTHR);
}

/* ---- the crash action inside an actor ---- */

enum { T_WORK = 1 };

static _Atomic int g_handled;

static int victim_handle(rt_actor_t *self, rt_msg_t *msg)
{
    switch (rt_fault("test.crash")) {
    case RT_FAULT_CRASH:
        return RT_ECRASH;
    case RT_FAULT_DROP:
        return RT_CONTINUE;
    default:
        atomic_fetch_add(&g_handled, 1);
        return RT_CONTINUE;
    }
}

static const rt_behaviour_t victim = {.kind = "victim",
                                      .handle = victim_handle};

static void test_crash_in_actor(void **state)
{
    (void)state;
    rt_system_t *sys = trt_start(2, 0, 0);
    trt_port_t *tp = trt_port_new(sys);
    atomic_store(&g_handled, 0);
    rt_fault_arm_t arm = {.action = RT_FAULT_CRASH, .count = 1, .after = 5};
    assert_int_equal(rt_fault_arm("test.crash", &arm), 0);
    rt_id_t v = trt_spawn(sys, &victim, NULL, NULL);
    uint64_t ref = rt_port_monitor(tp->p, v);
    for (int i = 0; i < 10; i++)
        assert_int_equal(rt_send_copy(sys, v, T_WORK, NULL, 0), 0);
    rt_exit_info_t ei = trt_wait_down(tp, ref, 5000);
    assert_int_equal(ei.reason, RT_ECRASH);
    assert_int_equal(atomic_load(&g_handled), 5);
    assert_int_equal(info_of("test.crash").fired, 1);
    trt_port_free(tp);
    rt_system_stop(sys);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_arm_by_count),
        cmocka_unit_test(test_seeded_replay),
        cmocka_unit_test(test_delay_drop_fail),
        cmocka_unit_test(test_disarm_and_bad_arms),
        cmocka_unit_test(test_foreach_lists_points),
        cmocka_unit_test(test_concurrent_count),
        cmocka_unit_test(test_crash_in_actor),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
