/*
 * bench_account.h - the accounts a benchmark makes before it measures.
 */
#ifndef PARLEY_BENCH_ACCOUNT_H
#define PARLEY_BENCH_ACCOUNT_H

#include <stdint.h>

/* The password every benchmark account gets. */
#define BENCH_PASSWORD "bench-password"

/* Registers `name` on host:port and logs it in as device "bench", through
 * the blocking client; the session token goes to token. Returns 0, a
 * negative client error, a positive protocol error code from the server,
 * or -EPROTO for a login reply without a 32-byte token. */
int bench_account(const char *host, int port, const char *name, int timeout_ms,
                  uint8_t token[32]);

#endif
