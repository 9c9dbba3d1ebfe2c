#include "rt_map.h"

#include <errno.h>
#include <stdlib.h>

static inline uint32_t slot_of(uint64_t key, uint32_t mask)
{
    /* Fibonacci hashing spreads sequential ids over the table. */
    return (uint32_t)((key * UINT64_C(0x9e3779b97f4a7c15)) >> 32) & mask;
}

static int grow(rt_map_t *m)
{
    uint32_t ncap = m->cap ? m->cap * 2 : 16;
    rt_map_entry_t *ne = calloc(ncap, sizeof(*ne));
    if (!ne)
        return -ENOMEM;
    for (uint32_t i = 0; i < m->cap; i++) {
        if (!m->e[i].key)
            continue;
        uint32_t j = slot_of(m->e[i].key, ncap - 1);
        while (ne[j].key)
            j = (j + 1) & (ncap - 1);
        ne[j] = m->e[i];
    }
    free(m->e);
    m->e = ne;
    m->cap = ncap;
    return 0;
}

int rt_map_put(rt_map_t *m, uint64_t key, uint64_t val)
{
    /* keep the load under 3/4 so probes stay short */
    if ((m->len + 1) * 4 > m->cap * 3 && grow(m) < 0)
        return -ENOMEM;
    uint32_t mask = m->cap - 1;
    uint32_t i = slot_of(key, mask);
    while (m->e[i].key && m->e[i].key != key)
        i = (i + 1) & mask;
    if (!m->e[i].key)
        m->len++;
    m->e[i].key = key;
    m->e[i].val = val;
    return 0;
}

bool rt_map_get(const rt_map_t *m, uint64_t key, uint64_t *val)
{
    if (!m->cap)
        return false;
    uint32_t mask = m->cap - 1;
    for (uint32_t i = slot_of(key, mask);; i = (i + 1) & mask) {
        if (!m->e[i].key)
            return false;
        if (m->e[i].key == key) {
            if (val)
                *val = m->e[i].val;
            return true;
        }
    }
}

bool rt_map_del(rt_map_t *m, uint64_t key, uint64_t *val)
{
    if (!m->cap)
        return false;
    uint32_t mask = m->cap - 1;
    uint32_t i = slot_of(key, mask);
    while (m->e[i].key != key) {
        if (!m->e[i].key)
            return false;
        i = (i + 1) & mask;
    }
    if (val)
        *val = m->e[i].val;
    /* Shift back the entries of the probe run that follows, so lookups
     * never need tombstones. */
    uint32_t hole = i;
    for (uint32_t j = (i + 1) & mask; m->e[j].key; j = (j + 1) & mask) {
        uint32_t home = slot_of(m->e[j].key, mask);
        /* move e[j] into the hole unless its home lies cyclically in
         * (hole, j] */
        bool stays = (hole < j) ? (home > hole && home <= j)
                                : (home > hole || home <= j);
        if (!stays) {
            m->e[hole] = m->e[j];
            hole = j;
        }
    }
    m->e[hole].key = 0;
    m->len--;
    return true;
}

void rt_map_free(rt_map_t *m)
{
    free(m->e);
    m->e = NULL;
    m->cap = m->len = 0;
}
