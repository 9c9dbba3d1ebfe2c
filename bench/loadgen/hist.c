/*
 * bench/loadgen/hist.c - the log-linear histogram. See hist.h.
 *
 * Bucket of v, with p = bits and g = floor(log2 v) - p:
 *   v < 2^p:   v itself;
 *   otherwise: (v >> g) + g * 2^p, since v >> g lies in [2^p, 2^(p+1)).
 * So group g (g >= 0) holds 2^p buckets of width 2^g starting at
 * 2^(p+g), and the indices run on without a gap.
 */
#include "hist.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define PACK_MAGIC 0x3148474cu /* "LGH1" read little-endian */

struct pack_head {
    uint32_t magic, bits;
    uint64_t total, min, max, nonempty;
    double sum;
};

struct pack_item {
    uint32_t idx;
    uint32_t pad;
    uint64_t count;
};

int lg_hist_init(lg_hist_t *h, int bits)
{
    memset(h, 0, sizeof(*h));
    if (bits < LG_HIST_MIN_BITS || bits > LG_HIST_MAX_BITS)
        return -EINVAL;
    h->bits = bits;
    h->nbuckets = (size_t)(65 - bits) << bits;
    h->counts = calloc(h->nbuckets, sizeof(*h->counts));
    if (!h->counts)
        return -ENOMEM;
    h->min = UINT64_MAX;
    return 0;
}

void lg_hist_free(lg_hist_t *h)
{
    free(h->counts);
    memset(h, 0, sizeof(*h));
}

void lg_hist_reset(lg_hist_t *h)
{
    memset(h->counts, 0, h->nbuckets * sizeof(*h->counts));
    h->total = 0;
    h->min = UINT64_MAX;
    h->max = 0;
    h->sum = 0;
}

size_t lg_hist_index(const lg_hist_t *h, uint64_t v)
{
    int p = h->bits;

    if (v < (1ull << p))
        return (size_t)v;
    int g = 63 - __builtin_clzll(v) - p;
    return (size_t)(v >> g) + ((size_t)g << p);
}

void lg_hist_bucket_range(const lg_hist_t *h, size_t idx, uint64_t *lo,
                          uint64_t *hi)
{
    int p = h->bits;
    size_t sub = (size_t)1 << p;

    if (idx < sub) {
        *lo = *hi = idx;
        return;
    }
    int g = (int)(idx >> p) - 1;
    uint64_t m = idx & (sub - 1);
    *lo = (sub + m) << g;
    *hi = *lo + ((1ull << g) - 1); /* no overflow: the top is 2^64 - 1 */
}

void lg_hist_record_n(lg_hist_t *h, uint64_t v, uint64_t n)
{
    if (!n)
        return;
    h->counts[lg_hist_index(h, v)] += n;
    h->total += n;
    h->sum += (long double)v * n;
    if (v < h->min)
        h->min = v;
    if (v > h->max)
        h->max = v;
}

int lg_hist_merge(lg_hist_t *dst, const lg_hist_t *src)
{
    if (dst->bits != src->bits)
        return -EINVAL;
    if (!src->total)
        return 0;
    for (size_t i = 0; i < src->nbuckets; i++)
        dst->counts[i] += src->counts[i];
    dst->total += src->total;
    dst->sum += src->sum;
    if (src->min < dst->min)
        dst->min = src->min;
    if (src->max > dst->max)
        dst->max = src->max;
    return 0;
}

uint64_t lg_hist_quantile(const lg_hist_t *h, double q)
{
    uint64_t lo, hi, rank, seen = 0;

    if (!h->total)
        return 0;
    if (q <= 0)
        return h->min;
    if (q >= 1)
        return h->max;
    /* rank = ceil(q * total), at least 1; a product such as 0.9 * 100
     * that lands a hair above an integer through rounding counts as it */
    long double r = (long double)q * h->total;
    rank = (uint64_t)r;
    if (r - (long double)rank > 1e-9L * r)
        rank++;
    if (rank < 1)
        rank = 1;
    for (size_t i = 0; i < h->nbuckets; i++) {
        seen += h->counts[i];
        if (seen >= rank) {
            lg_hist_bucket_range(h, i, &lo, &hi);
            return hi < h->max ? hi : h->max;
        }
    }
    return h->max;
}

double lg_hist_mean(const lg_hist_t *h)
{
    return h->total ? (double)(h->sum / h->total) : 0;
}

size_t lg_hist_pack(const lg_hist_t *h, void *buf, size_t cap)
{
    struct pack_head hd = {.magic = PACK_MAGIC,
                           .bits = (uint32_t)h->bits,
                           .total = h->total,
                           .min = h->min,
                           .max = h->max,
                           .sum = (double)h->sum};
    struct pack_item it = {0};
    size_t need;
    uint8_t *out = buf;

    for (size_t i = 0; i < h->nbuckets; i++)
        hd.nonempty += h->counts[i] != 0;
    need = sizeof(hd) + hd.nonempty * sizeof(it);
    if (need > cap)
        return need;
    memcpy(out, &hd, sizeof(hd));
    out += sizeof(hd);
    for (size_t i = 0; i < h->nbuckets; i++) {
        if (!h->counts[i])
            continue;
        it.idx = (uint32_t)i;
        it.count = h->counts[i];
        memcpy(out, &it, sizeof(it));
        out += sizeof(it);
    }
    return need;
}

int lg_hist_unpack_merge(lg_hist_t *h, const void *buf, size_t len)
{
    struct pack_head hd;
    struct pack_item it;
    const uint8_t *in = buf;
    uint64_t sum = 0;

    if (len < sizeof(hd))
        return -EINVAL;
    memcpy(&hd, in, sizeof(hd));
    if (hd.magic != PACK_MAGIC || hd.bits != (uint32_t)h->bits ||
        hd.nonempty > h->nbuckets ||
        len != sizeof(hd) + hd.nonempty * sizeof(it))
        return -EINVAL;
    /* validate everything before touching h */
    for (uint64_t k = 0; k < hd.nonempty; k++) {
        memcpy(&it, in + sizeof(hd) + k * sizeof(it), sizeof(it));
        if (it.idx >= h->nbuckets)
            return -EINVAL;
        sum += it.count;
    }
    if (sum != hd.total)
        return -EINVAL;
    for (uint64_t k = 0; k < hd.nonempty; k++) {
        memcpy(&it, in + sizeof(hd) + k * sizeof(it), sizeof(it));
        h->counts[it.idx] += it.count;
    }
    if (!hd.total)
        return 0;
    h->total += hd.total;
    h->sum += hd.sum;
    if (hd.min < h->min)
        h->min = hd.min;
    if (hd.max > h->max)
        h->max = hd.max;
    return 0;
}
