/*
 * testutil.h - shared helpers for weft's Check suites: a loop per test,
 * bounded runs, fd-leak checks, an event log to assert order.
 */
#ifndef WEFT_TESTUTIL_H
#define WEFT_TESTUTIL_H

#include <check.h>
#include <stddef.h>

#include "weft.h"

/* The loop of the running test; made by tu_setup, checked by tu_teardown. */
extern weft_loop *tu_loop;

/* Check fixture: new loop + fd count; teardown asserts the loop closes
 * with nothing alive and that no fd leaked. */
void tu_setup(void);
void tu_teardown(void);

/* Runs tu_loop to completion; fails the test if it takes over `ms`. */
void tu_run(unsigned ms);

/* Number of open fds of this process. */
int tu_fd_count(void);

/* An ordered log of events: tu_log("connect"), then
 * ck_assert_str_eq(tu_log_str(), "connect,data,end,close"). */
void tu_log(const char *event);
void tu_logf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
const char *tu_log_str(void);
void tu_log_reset(void);

/* A Unix socket path unique to this test process. */
const char *tu_sock_path(const char *name);

/* Adds a TCase with the standard fixture and a timeout. */
TCase *tu_tcase(const char *name);
/* Runs the suite (forked per test) and returns the exit status. */
int tu_run_suite(Suite *s);

/* ---- helpers for the socket suites (bulk, halfopen, destroy, dns,
 * interop) ---- */

/* Deterministic pseudo-random bytes (xorshift64*) from `seed`. */
void tu_fill_random(void *buf, size_t len, uint64_t seed);

/* FNV-1a 64 over `len` bytes, continuing from `h`. */
#define TU_HASH_INIT 0xcbf29ce484222325ULL
uint64_t tu_hash(uint64_t h, const void *data, size_t len);

/* Listens `srv` on `host` (an IP literal) port 0 and returns the port;
 * fails the test on error. 'listening' follows from the loop. */
int tu_listen(weft_server *srv, const char *host);

/* A second, per-object event log, for when two sides each need their own
 * order: tu_slog_add(&client, "end"), then compare client.buf. */
typedef struct tu_slog {
    char buf[2048];
    size_t len;
} tu_slog;
void tu_slog_add(tu_slog *l, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

#endif

/* A server on 127.0.0.1, port 0; returns its port. */
weft_server *tu_server(weft_server_connection_cb cb, void *ctx, int *port);

/* The fd of this process whose local TCP port is `port` and whose peer
 * port is `peer_port` (-1: any), or -1. Lets a test inspect socket
 * options weft set. */
int tu_fd_for_ports(int port, int peer_port);

/* ---- helpers for the stress suites (churn, idle, netem) ---------------- */

/* Bytes [off, off + len) of an endless pseudo-random stream named by
 * `seed`. Any slice can be made or checked without the bytes before it,
 * so a sender writing in one chunking and a receiver reading in another
 * agree on every byte. */
void tu_pattern(void *buf, uint64_t off, size_t len, uint64_t seed);
/* Index of the first byte of `buf` that differs from the stream `seed`
 * at offset `off`, or `len` if every byte matches. */
size_t tu_pattern_diff(const void *buf, uint64_t off, size_t len,
                       uint64_t seed);
/* splitmix64: one well-mixed 64-bit value from `x`, for seeded choices. */
uint64_t tu_mix(uint64_t x);
/* True when running under valgrind: load tests scale themselves down. */
bool tu_under_valgrind(void);
/* Raises RLIMIT_NOFILE's soft limit to min(want, hard limit); returns
 * the soft limit now in force. */
long tu_raise_nofile(long want);
