/*
 * log.h - one compact line per event: `time level component key=value ...`.
 *
 * The level is a process-wide setting that can change at run time. A call
 * below the level costs one relaxed load and a branch; nothing on a hot
 * path logs at a level that is on by default.
 */
#ifndef PARLEY_RT_LOG_H
#define PARLEY_RT_LOG_H

#include <stdatomic.h>

typedef enum rt_log_level {
    RT_LOG_DEBUG = 0,
    RT_LOG_INFO,
    RT_LOG_WARN,
    RT_LOG_ERROR,
    RT_LOG_OFF,
} rt_log_level_t;

extern _Atomic int rt_log_threshold;

void rt_log_set_level(rt_log_level_t level);
rt_log_level_t rt_log_get_level(void);
/* "debug", "info", "warn", "error", "off"; -1 for anything else */
int rt_log_parse_level(const char *name);
const char *rt_log_level_name(rt_log_level_t level);

void rt_log_write(rt_log_level_t level, const char *component, const char *fmt,
                  ...) __attribute__((format(printf, 3, 4)));

#define rt_log(level, component, ...)                                          \
    do {                                                                       \
        if ((int)(level) >=                                                    \
            atomic_load_explicit(&rt_log_threshold, memory_order_relaxed))     \
            rt_log_write((level), (component), __VA_ARGS__);                   \
    } while (0)

#endif
