/*
 * Tests of the load generator's histogram (bench/loadgen/hist.h): the
 * bucket layout, the relative error bound of quantiles against exact ones
 * over seeded random data, exact extremes, merging and the packed form.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "hist.h"

/* xorshift64*: reproducible values without libc's rand state */
static uint64_t rng(uint64_t *s)
{
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 2685821657736338717ull;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

static void test_init_rejects_bad_precision(void **state)
{
    lg_hist_t h;

    assert_int_equal(lg_hist_init(&h, 0), -EINVAL);
    assert_int_equal(lg_hist_init(&h, LG_HIST_MAX_BITS + 1), -EINVAL);
    assert_int_equal(lg_hist_init(&h, 7), 0);
    assert_int_equal(h.nbuckets, (size_t)(65 - 7) << 7);
    lg_hist_free(&h);
}

static void test_empty(void **state)
{
    lg_hist_t h;

    assert_int_equal(lg_hist_init(&h, 7), 0);
    assert_int_equal(lg_hist_quantile(&h, 0.5), 0);
    assert_int_equal(lg_hist_quantile(&h, 1.0), 0);
    assert_true(lg_hist_mean(&h) == 0);
    lg_hist_free(&h);
}

/* Small values have buckets of their own: every quantile is exact. */
static void test_small_values_exact(void **state)
{
    lg_hist_t h;

    assert_int_equal(lg_hist_init(&h, 7), 0);
    for (uint64_t v = 1; v <= 100; v++)
        lg_hist_record(&h, v);
    assert_int_equal(lg_hist_quantile(&h, 0.5), 50);
    assert_int_equal(lg_hist_quantile(&h, 0.9), 90);
    assert_int_equal(lg_hist_quantile(&h, 0.99), 99);
    assert_int_equal(lg_hist_quantile(&h, 0.0), 1);
    assert_int_equal(lg_hist_quantile(&h, 1.0), 100);
    assert_true(lg_hist_mean(&h) > 50.49 && lg_hist_mean(&h) < 50.51);
    lg_hist_free(&h);
}

/* Indices are contiguous and increasing, and each bucket's range holds
 * exactly the values that map to it, up to the largest uint64. */
static void test_layout(void **state)
{
    lg_hist_t h;
    uint64_t lo, hi, prev_hi = 0;

    assert_int_equal(lg_hist_init(&h, 5), 0);
    for (size_t i = 0; i < h.nbuckets; i++) {
        lg_hist_bucket_range(&h, i, &lo, &hi);
        if (i > 0)
            assert_true(lo == prev_hi + 1);
        assert_true(hi >= lo);
        assert_int_equal(lg_hist_index(&h, lo), i);
        assert_int_equal(lg_hist_index(&h, hi), i);
        prev_hi = hi;
    }
    assert_true(prev_hi == UINT64_MAX);
    assert_int_equal(lg_hist_index(&h, UINT64_MAX), h.nbuckets - 1);
    lg_hist_free(&h);
}

/* Against exact quantiles of sorted data: never below, and above by at
 * most 2^-p relatively, for values spread over many orders of magnitude. */
static void test_relative_error_bound(void **state)
{
    enum { N = 200000 };
    static const double qs[] = {0.01, 0.1, 0.5, 0.9, 0.99, 0.999, 0.9999};
    uint64_t *v = malloc(N * sizeof(*v)), seed = 42;
    lg_hist_t h;

    assert_non_null(v);
    for (int bits = 3; bits <= 10; bits++) {
        assert_int_equal(lg_hist_init(&h, bits), 0);
        for (int i = 0; i < N; i++) {
            /* log-uniform from 1 to 2^40 */
            uint64_t r = rng(&seed);
            v[i] = (r >> 24) >> (r % 40);
            if (!v[i])
                v[i] = 1;
            lg_hist_record(&h, v[i]);
        }
        qsort(v, N, sizeof(*v), cmp_u64);
        for (size_t k = 0; k < sizeof(qs) / sizeof(qs[0]); k++) {
            size_t rank = (size_t)(qs[k] * N + 0.999999);
            uint64_t exact = v[rank - 1], got = lg_hist_quantile(&h, qs[k]);
            assert_true(got >= exact);
            assert_true((double)(got - exact) <=
                        (double)exact / (double)(1u << bits));
        }
        assert_true(lg_hist_quantile(&h, 1.0) == v[N - 1]);
        assert_true(lg_hist_quantile(&h, 0.0) == v[0]);
        lg_hist_free(&h);
    }
    free(v);
}

/* The maximum is exact, and no quantile reports more than it. */
static void test_max_exact(void **state)
{
    lg_hist_t h;

    assert_int_equal(lg_hist_init(&h, 7), 0);
    lg_hist_record_n(&h, 1000, 99);
    lg_hist_record(&h, 123456789);
    assert_true(lg_hist_quantile(&h, 1.0) == 123456789);
    assert_true(lg_hist_quantile(&h, 0.999) == 123456789);
    assert_true(lg_hist_quantile(&h, 0.5) >= 1000 &&
                lg_hist_quantile(&h, 0.5) <= 1000 + 1000 / 128);
    lg_hist_record(&h, UINT64_MAX);
    assert_true(lg_hist_quantile(&h, 1.0) == UINT64_MAX);
    lg_hist_free(&h);
}

static void test_merge_and_pack(void **state)
{
    lg_hist_t a, b, all, c;
    uint64_t seed = 7;

    assert_int_equal(lg_hist_init(&a, 7), 0);
    assert_int_equal(lg_hist_init(&b, 7), 0);
    assert_int_equal(lg_hist_init(&all, 7), 0);
    for (int i = 0; i < 50000; i++) {
        uint64_t x = rng(&seed) % 10000000;
        lg_hist_record(i % 3 ? &a : &b, x);
        lg_hist_record(&all, x);
    }
    /* merge */
    assert_int_equal(lg_hist_init(&c, 7), 0);
    assert_int_equal(lg_hist_merge(&c, &a), 0);
    assert_int_equal(lg_hist_merge(&c, &b), 0);
    assert_int_equal(c.total, all.total);
    assert_memory_equal(c.counts, all.counts, c.nbuckets * sizeof(uint64_t));
    assert_true(c.min == all.min && c.max == all.max);

    /* pack b, unpack into a: same as all */
    size_t need = lg_hist_pack(&b, NULL, 0);
    uint8_t *buf = malloc(need);
    assert_non_null(buf);
    assert_int_equal(lg_hist_pack(&b, buf, need), need);
    assert_int_equal(lg_hist_unpack_merge(&a, buf, need), 0);
    assert_int_equal(a.total, all.total);
    assert_memory_equal(a.counts, all.counts, a.nbuckets * sizeof(uint64_t));
    assert_true(lg_hist_quantile(&a, 0.99) == lg_hist_quantile(&all, 0.99));

    /* malformed input leaves the histogram alone */
    uint64_t before = a.total;
    assert_int_equal(lg_hist_unpack_merge(&a, buf, need - 1), -EINVAL);
    buf[0] ^= 0xff;
    assert_int_equal(lg_hist_unpack_merge(&a, buf, need), -EINVAL);
    assert_int_equal(a.total, before);
    free(buf);

    /* precisions must match */
    lg_hist_t d;
    assert_int_equal(lg_hist_init(&d, 6), 0);
    assert_int_equal(lg_hist_merge(&d, &a), -EINVAL);
    lg_hist_free(&d);

    lg_hist_reset(&c);
    assert_int_equal(c.total, 0);
    assert_int_equal(lg_hist_quantile(&c, 0.5), 0);
    lg_hist_free(&a);
    lg_hist_free(&b);
    lg_hist_free(&c);
    lg_hist_free(&all);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_init_rejects_bad_precision),
        cmocka_unit_test(test_empty),
        cmocka_unit_test(test_small_values_exact),
        cmocka_unit_test(test_layout),
        cmocka_unit_test(test_relative_error_bound),
        cmocka_unit_test(test_max_exact),
        cmocka_unit_test(test_merge_and_pack),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
