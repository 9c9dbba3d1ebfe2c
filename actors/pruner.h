/*
 * actors/pruner.h - retention: the background actor that deletes old
 * messages.
 *
 * Every `prune_interval_ms` it walks the message table in sid order (so,
 * oldest first) through the store actor, at most PRUNE_BATCH messages per
 * write, and deletes a message once it was delivered `retain_delivered_ms`
 * ago, or, never delivered, once it is `retain_undelivered_ms` old. Each
 * pass continues where the last stopped; when it reaches the end it
 * waits for the next interval.
 */
#ifndef PARLEY_ACTORS_PRUNER_H
#define PARLEY_ACTORS_PRUNER_H

#include <stdint.h>

#include "config.h"
#include "rt.h"

#define CHAT_PRUNER_NAME "pruner"

/* Its spawn arg is the const chat_config_t *. */
extern const rt_behaviour_t chat_pruner_behaviour;

typedef struct chat_pruner_stats {
    uint64_t passes;  /* walks of the whole table finished */
    uint64_t writes;  /* prune writes committed */
    uint64_t scanned; /* messages looked at */
    uint64_t deleted; /* messages removed */
    uint64_t errors;  /* prune writes that failed or timed out */
} chat_pruner_stats_t;

/* The counters since the process started (they survive a restart of the
 * pruner). Any thread. */
void chat_pruner_stats(chat_pruner_stats_t *out);

#endif /* PARLEY_ACTORS_PRUNER_H */
