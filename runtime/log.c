#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

_Atomic int rt_log_threshold = RT_LOG_INFO;

static const char *const names[] = {"debug", "info", "warn", "error", "off"};

void rt_log_set_level(rt_log_level_t level)
{
    atomic_store_explicit(&rt_log_threshold, (int)level, memory_order_relaxed);
}

rt_log_level_t rt_log_get_level(void)
{
    return (rt_log_level_t)atomic_load_explicit(&rt_log_threshold,
                                                memory_order_relaxed);
}

int rt_log_parse_level(const char *name)
{
    for (int i = 0; i <= RT_LOG_OFF; i++)
        if (strcmp(name, names[i]) == 0)
            return i;
    return -1;
}

const char *rt_log_level_name(rt_log_level_t level)
{
    return level >= RT_LOG_DEBUG && level <= RT_LOG_OFF ? names[level] : "?";
}

void rt_log_write(rt_log_level_t level, const char *component, const char *fmt,
                  ...)
{
    char line[1024];
    struct timeval tv;
    gettimeofday(&tv, NULL);
    struct tm tm;
    gmtime_r(&tv.tv_sec, &tm);
    int n = snprintf(line, sizeof(line),
                     "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ %s %s ",
                     tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
                     tm.tm_min, tm.tm_sec, (int)(tv.tv_usec / 1000),
                     rt_log_level_name(level), component);
    va_list ap;
    va_start(ap, fmt);
    if (n > 0 && (size_t)n < sizeof(line))
        n += vsnprintf(line + n, sizeof(line) - (size_t)n, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    if ((size_t)n >= sizeof(line) - 1)
        n = (int)sizeof(line) - 2;
    line[n++] = '\n';
    /* one write per line, so lines from threads do not interleave */
    fwrite(line, 1, (size_t)n, stderr);
}
