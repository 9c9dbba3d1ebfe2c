/*
 * bench/loadgen/hist.h - a log-linear histogram of unsigned 64-bit values
 * with a bounded relative error, for latencies.
 *
 * Values below 2^p (p = the precision in bits) each have a bucket of
 * their own. Above, every power-of-two range [2^k, 2^(k+1)) is cut into
 * 2^p buckets of equal width 2^(k-p). A quantile is reported as the
 * highest value of its bucket, so it is never below the true value and
 * above it by at most a factor 1 + 2^-p (p = 7: under 0.8 %). The
 * minimum, the maximum and the sum are kept exactly.
 *
 * Memory: (65 - p) * 2^p counters of 8 bytes (p = 7: 58 KiB), allocated
 * once by lg_hist_init. Recording is O(1) and allocates nothing. One
 * histogram is used by one thread at a time.
 */
#ifndef PARLEY_BENCH_HIST_H
#define PARLEY_BENCH_HIST_H

#include <stddef.h>
#include <stdint.h>

#define LG_HIST_MIN_BITS 1
#define LG_HIST_MAX_BITS 12

typedef struct lg_hist {
    uint64_t *counts; /* nbuckets counters */
    size_t nbuckets;
    int bits;       /* p */
    uint64_t total; /* values recorded */
    uint64_t min, max;
    long double sum; /* for the mean; a double of 2^64 ns sums is plenty */
} lg_hist_t;

/* Initialise h with a precision of `bits` (LG_HIST_MIN_BITS to
 * LG_HIST_MAX_BITS). Returns 0, -EINVAL or -ENOMEM. */
int lg_hist_init(lg_hist_t *h, int bits);

/* Release the counters; h may be initialised again. */
void lg_hist_free(lg_hist_t *h);

/* Forget every value, keeping the precision. */
void lg_hist_reset(lg_hist_t *h);

/* Record value v, n times. */
void lg_hist_record_n(lg_hist_t *h, uint64_t v, uint64_t n);

static inline void lg_hist_record(lg_hist_t *h, uint64_t v)
{
    lg_hist_record_n(h, v, 1);
}

/* Add every value of src into dst. Both must have the same precision.
 * Returns 0 or -EINVAL. */
int lg_hist_merge(lg_hist_t *dst, const lg_hist_t *src);

/*
 * The value at quantile q (0 <= q <= 1): the smallest bucket whose
 * cumulative count reaches ceil(q * total), reported as the highest value
 * of that bucket but never above the exact maximum. q = 0 gives the exact
 * minimum, q = 1 the exact maximum. 0 when the histogram is empty.
 */
uint64_t lg_hist_quantile(const lg_hist_t *h, double q);

/* The mean of the values recorded, 0 when empty. */
double lg_hist_mean(const lg_hist_t *h);

/* The bucket of v, and the range of values [lo, hi] a bucket holds.
 * Exposed for the tests. */
size_t lg_hist_index(const lg_hist_t *h, uint64_t v);
void lg_hist_bucket_range(const lg_hist_t *h, size_t idx, uint64_t *lo,
                          uint64_t *hi);

/*
 * Serialisation between processes (workers to the parent): a sparse list
 * of the non-empty buckets. lg_hist_pack writes at most `cap` bytes into
 * buf and returns the bytes needed (call with cap 0 to size the buffer);
 * the result is larger than cap when buf was too small and nothing useful
 * was written. lg_hist_unpack_merge adds a packed histogram into h.
 * Returns 0, or -EINVAL for a malformed buffer or another precision.
 */
size_t lg_hist_pack(const lg_hist_t *h, void *buf, size_t cap);
int lg_hist_unpack_merge(lg_hist_t *h, const void *buf, size_t len);

#endif /* PARLEY_BENCH_HIST_H */
