/*
 * rt_map.h - an open-addressing map from non-zero 64-bit keys to 64-bit
 * values, with linear probing and backward-shift deletion (no tombstones).
 * Not thread-safe: its owner serialises access.
 */
#ifndef PARLEY_RT_MAP_H
#define PARLEY_RT_MAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct rt_map_entry {
    uint64_t key; /* 0 = empty */
    uint64_t val;
} rt_map_entry_t;

typedef struct rt_map {
    rt_map_entry_t *e;
    uint32_t cap; /* a power of two, or 0 */
    uint32_t len;
} rt_map_t;

/* Inserts or replaces. Returns 0 or -ENOMEM. */
int rt_map_put(rt_map_t *m, uint64_t key, uint64_t val);
/* Finds key; returns false if absent. */
bool rt_map_get(const rt_map_t *m, uint64_t key, uint64_t *val);
/* Removes key; returns false if absent (*val untouched). */
bool rt_map_del(rt_map_t *m, uint64_t key, uint64_t *val);
void rt_map_free(rt_map_t *m);

#endif
