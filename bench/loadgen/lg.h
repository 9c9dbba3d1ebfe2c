/*
 * bench/loadgen/lg.h - the load generator's shared declarations.
 *
 * Processes: the parent (loadgen.c) prepares accounts, starts or finds
 * parleyd, forks the workers, drives the phases of a workload, samples
 * /proc and reports. Each worker (worker.c) runs one libuv loop with its
 * share of the connections, opened with proto/client.h.
 *
 * Parent and worker talk over one socketpair each. Parent to worker: one
 * byte, LG_CMD_GO (start the next phase) or LG_CMD_QUIT. Worker to
 * parent: records of an lg_rec_head_t followed by `len` bytes: a
 * progress snapshot every 250 ms, and at the end of each phase its
 * statistics followed by its latency histogram, packed (hist.h).
 */
#ifndef PARLEY_BENCH_LG_H
#define PARLEY_BENCH_LG_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "hist.h"

#define LG_TOKEN_LEN    32
#define LG_NAME_MAX     32
#define LG_MAX_WORKERS  64
#define LG_MAX_PHASES   4
#define LG_CONNS_WORKER 15000 /* per process, well under 20,000 files */
#define LG_HIST_BITS    7     /* latency error under 0.8 % */

enum { LG_CMD_GO = 'G', LG_CMD_QUIT = 'Q' };
enum { LG_REC_PROGRESS = 1, LG_REC_PHASE = 2 };

/* One pre-created account with a logged-in device. */
typedef struct lg_account {
    char name[LG_NAME_MAX + 1];
    uint8_t token[LG_TOKEN_LEN];
} lg_account_t;

#define LG_MAX_SOURCES 64 /* loopback source addresses */

/* The settings of a run, fixed before the workers fork. */
typedef struct lg_opts {
    const char *workload;
    char host[64];
    int port;
    int conns;         /* connections (clients) in all */
    int workers;       /* processes */
    double rate;       /* offered connects or messages a second; 0: max */
    int window;        /* connects in flight per worker */
    int sources;       /* source addresses 127.0.0.2 ... (0: kernel's) */
    double duration_s; /* traffic phases */
    double hold_s;     /* idle: how long the connections are held */
    double timeout_s;  /* bound on each phase */
    int body;          /* message body bytes */
    int backlog;       /* catch-up: messages per offline receiver */
    int group_size;    /* group: members of a group, its sender included */
    uint64_t run_id;   /* in every body: tells this run's messages */
    const char *run_dir;
    const char *parleyd; /* spawn this server, or NULL */
    pid_t server_pid;    /* sampled through /proc; 0: none */
    int server_args;     /* extra parleyd arguments in server_argv */
    const char *server_argv[16];
} lg_opts_t;

/* Counters a worker reports; summed over workers by the parent. */
typedef struct lg_counts {
    uint64_t open;        /* connections resumed and open now */
    uint64_t resumed;     /* resumes that succeeded, in all */
    uint64_t conn_fail;   /* connects or upgrades that failed */
    uint64_t resume_fail; /* resumes refused or unanswered */
    uint64_t dropped;     /* connections the server closed */
    uint64_t sent;        /* messages with a "sent" reply */
    uint64_t send_err;    /* sends answered with an error */
    uint64_t received;    /* msg events received */
    uint64_t receipts;    /* delivered events received */
    uint64_t behind;      /* messages due that found no free sender */
    uint64_t stale;       /* msg events left over from an earlier run */
    int last_error;       /* the last error code seen, for the report */
} lg_counts_t;

typedef struct lg_rec_head {
    uint32_t type;
    uint32_t len;
} lg_rec_head_t;

/* A phase's result from one worker. The packed histogram follows. */
typedef struct lg_phase_rec {
    int phase;
    uint64_t t_first, t_last; /* CLOCK_MONOTONIC ns: first start, last end */
    uint64_t ok, failed;      /* units of work of the phase */
    lg_counts_t counts;
} lg_phase_rec_t;

/* The workloads (worker.c). */
typedef struct lg_workload {
    const char *name;
    const char *help;
    int phases;
    bool needs_send; /* probed before the run: chat ops must exist */
    /* what a phase's latency histogram measures, for the table */
    const char *measures[LG_MAX_PHASES];
} lg_workload_t;

extern const lg_workload_t lg_workloads[];
const lg_workload_t *lg_workload_find(const char *name);

/* Runs one worker over accounts [first, first + count). Never returns. */
void lg_worker_main(const lg_opts_t *o, const lg_workload_t *wl,
                    const lg_account_t *acc, int first, int count, int fd,
                    int index);

/* ---- sys.c: /proc and the clock ---- */

uint64_t lg_now_ns(void);

typedef struct lg_proc_sample {
    uint64_t cpu_ticks; /* utime + stime */
    uint64_t rss_kb, hwm_kb;
    uint64_t anon_kb, file_kb; /* RssAnon, RssFile: heap vs mapped files */
    int threads;
} lg_proc_sample_t;

/* Reads /proc/PID/stat and status. Returns 0 or -errno (-ESRCH gone). */
int lg_proc_sample(pid_t pid, lg_proc_sample_t *s);

/* Open descriptors of pid (entries of /proc/PID/fd), or -errno. */
int lg_proc_fds(pid_t pid);

/* Busy and total jiffies of the whole machine from /proc/stat. */
int lg_sys_cpu(uint64_t *busy, uint64_t *total);

long lg_ticks_per_s(void);

/* The machine as a JSON object body (no braces): cpu model, cores,
 * memory, kernel, load average. Returns the length written. */
int lg_machine_json(char *buf, size_t cap);

/* Raise the soft limit of open files to the hard one; returns it. */
long lg_raise_nofile(void);

#endif /* PARLEY_BENCH_LG_H */
