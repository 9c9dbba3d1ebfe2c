/*
 * bench/loadgen/sys.c - the clock, /proc sampling and the machine
 * description. See lg.h.
 */
#include "lg.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

uint64_t lg_now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

long lg_ticks_per_s(void)
{
    long t = sysconf(_SC_CLK_TCK);

    return t > 0 ? t : 100;
}

int lg_proc_sample(pid_t pid, lg_proc_sample_t *s)
{
    char path[64], buf[1024], line[256];
    FILE *f;

    memset(s, 0, sizeof(*s));
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    if (!(f = fopen(path, "r")))
        return -errno;
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = 0;
    /* fields after the command name, which may hold spaces: from the
     * last ')' on, utime and stime are the 12th and 13th */
    char *p = strrchr(buf, ')');
    unsigned long long ut, st;
    if (!p ||
        sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu",
               &ut, &st) != 2)
        return -EPROTO;
    s->cpu_ticks = ut + st;

    snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
    if (!(f = fopen(path, "r")))
        return -errno;
    while (fgets(line, sizeof(line), f)) {
        unsigned long long v;
        if (sscanf(line, "VmRSS: %llu kB", &v) == 1)
            s->rss_kb = v;
        else if (sscanf(line, "VmHWM: %llu kB", &v) == 1)
            s->hwm_kb = v;
        else if (sscanf(line, "RssAnon: %llu kB", &v) == 1)
            s->anon_kb = v;
        else if (sscanf(line, "RssFile: %llu kB", &v) == 1)
            s->file_kb = v;
        else if (sscanf(line, "Threads: %llu", &v) == 1)
            s->threads = (int)v;
    }
    fclose(f);
    return 0;
}

int lg_proc_fds(pid_t pid)
{
    char path[64];
    struct dirent *e;
    int n = 0;

    snprintf(path, sizeof(path), "/proc/%d/fd", (int)pid);
    DIR *d = opendir(path);
    if (!d)
        return -errno;
    while ((e = readdir(d)))
        n += e->d_name[0] != '.';
    closedir(d);
    return n;
}

int lg_sys_cpu(uint64_t *busy, uint64_t *total)
{
    unsigned long long v[8] = {0};
    FILE *f = fopen("/proc/stat", "r");

    if (!f)
        return -errno;
    int n = fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0],
                   &v[1], &v[2], &v[3], &v[4], &v[5], &v[6], &v[7]);
    fclose(f);
    if (n < 5)
        return -EPROTO;
    *total = 0;
    for (int i = 0; i < 8; i++)
        *total += v[i];
    *busy = *total - v[3] - v[4]; /* minus idle and iowait */
    return 0;
}

int lg_machine_json(char *buf, size_t cap)
{
    char model[128] = "unknown", line[256];
    unsigned long long mem_kb = 0;
    double load[3] = {0};
    struct utsname u;
    FILE *f;

    if ((f = fopen("/proc/cpuinfo", "r"))) {
        while (fgets(line, sizeof(line), f)) {
            char *c = strchr(line, ':');
            if (!strncmp(line, "model name", 10) && c) {
                snprintf(model, sizeof(model), "%s", c + 2);
                model[strcspn(model, "\n\"\\")] = 0;
                break;
            }
        }
        fclose(f);
    }
    if ((f = fopen("/proc/meminfo", "r"))) {
        if (fscanf(f, "MemTotal: %llu kB", &mem_kb) != 1)
            mem_kb = 0;
        fclose(f);
    }
    getloadavg(load, 3);
    uname(&u);
    struct rlimit rl = {0};
    getrlimit(RLIMIT_NOFILE, &rl);
    return snprintf(buf, cap,
                    "\"cpu\":\"%s\",\"cores\":%ld,\"mem_mb\":%llu,"
                    "\"kernel\":\"%s %s\",\"loadavg_1m\":%.2f,"
                    "\"nofile_hard\":%llu",
                    model, sysconf(_SC_NPROCESSORS_ONLN), mem_kb / 1024,
                    u.sysname, u.release, load[0],
                    (unsigned long long)rl.rlim_max);
}

long lg_raise_nofile(void)
{
    struct rlimit rl;

    if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
        return -errno;
    if (rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
        getrlimit(RLIMIT_NOFILE, &rl);
    }
    return (long)rl.rlim_cur;
}
