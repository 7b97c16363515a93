/*
 * testutil.h - shared helpers for weft's Check suites: a loop per test,
 * bounded runs, fd-leak checks, an event log to assert order.
 */
#ifndef WEFT_TESTUTIL_H
#define WEFT_TESTUTIL_H

#include <check.h>
#include <stddef.h>
#include <sys/types.h>

#include "weft.h"

/* The loop of the running test; made by tu_setup, checked by tu_teardown. */
extern weft_loop *tu_loop;

/* Check fixture: new loop + fd count; teardown asserts the loop closes
 * with nothing alive and that no fd leaked. */
void tu_setup(void);
void tu_teardown(void);
/* Waits (up to 10 s) until no name lookup runs on weft's lookup pool,
 * cancelled ones included; tu_teardown() does, before counting fds. */
void tu_wait_lookups_done(void);

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

/* ---- child processes (interop, tls, starttls, examples, dgram) --------- */

/* Milliseconds on the monotonic clock, for deadlines. */
long long tu_now_ms(void);

/* True if `name` is an executable file in a directory of $PATH. */
bool tu_have_program(const char *name);

/* What tu_child_wait() returns when the child was still running at its
 * deadline and was killed, or had already been reaped by
 * tu_child_kill_all(). Never a wait status: those are not negative. */
#define TU_CHILD_KILLED (-1)

/* Where a child's stderr goes. */
typedef enum tu_child_stderr {
    TU_STDERR_INHERIT, /* the test's own stderr */
    TU_STDERR_QUIET,   /* /dev/null, or the test's with WEFT_TEST_VERBOSE */
    TU_STDERR_PIPE,    /* a pipe the test reads through tu_child.err */
} tu_child_stderr;

/* How tu_spawn() starts a child; a NULL pointer or {0} means stdin from
 * /dev/null, stderr inherited, no loop turned. */
typedef struct tu_spawn_opts {
    /* Bytes its stdin holds, then EOF. Written before tu_spawn()
     * returns, so they must fit in a pipe (64 KiB) or the child must read
     * them before it fills its stdout. NULL: stdin is /dev/null. */
    const char *input;
    /* Its stdin is a pipe the test writes to as it goes (tu_child.in),
     * open until tu_child_close(). Takes precedence over `input`. */
    bool stdin_pipe;
    tu_child_stderr err;
    /* If set, each tu_child_read_*() call turns this loop
     * (WEFT_RUN_NOWAIT) about once a millisecond while it waits, so that
     * sockets of the test can answer the child before it prints what the
     * test waits for. tu_child_wait() does not turn it. */
    weft_loop *loop;
} tu_spawn_opts;

/* A child process and the test's ends of its pipes, each -1 once
 * tu_child_close() ran. Fields are read-only for the test, apart from
 * writing to `in` and signalling `pid`. */
typedef struct tu_child {
    pid_t pid;  /* 0 once waited for */
    int status; /* tu_child_wait()'s result, once waited for */
    int in;     /* write end of its stdin, or -1 */
    int out;    /* read end of its stdout */
    int err;    /* read end of its stderr, or -1 */
    weft_loop *loop;
    /* Everything the tu_child_read_* functions have read of its stdout,
     * up to the first sizeof(seen) - 1 bytes, NUL-terminated: what a
     * failing check prints, and what tu_child_read_until() searches. */
    char seen[4096];
    size_t seen_len;
} tu_child;

/* Starts argv[0] (looked up in $PATH unless it holds a '/') with argv,
 * its stdout on a pipe and stdin and stderr as `o` says; fails the test
 * if that cannot be done. The child dies with the test process
 * (PR_SET_PDEATHSIG), starts with SIGTERM, SIGINT and SIGPIPE at their
 * defaults and no signal blocked, as a shell would start it, and keeps
 * no fd of the test's beyond 0, 1 and 2. If exec fails it says so on its
 * stderr and exits 127. At most 8 children may be running unwaited. */
void tu_spawn(tu_child *c, char *const argv[], const tu_spawn_opts *o);

/* One line of the child's stdout, without its '\n', into `buf`; false if
 * `ms` passed, stdout closed or `size` - 1 bytes came first (`buf` then
 * holds what came). Reads a byte at a time, so nothing after the line is
 * taken from the pipe. */
bool tu_child_read_line(tu_child *c, char *buf, size_t size, int ms);

/* Like tu_child_read_line(), skipping lines until one starts with
 * `prefix`; `ms` bounds the whole search. */
bool tu_child_read_line_of(tu_child *c, const char *prefix, char *buf,
                           size_t size, int ms);

/* Reads the child's stdout until c->seen holds `needle`; false if `ms`
 * passed, stdout closed or c->seen filled up first. */
bool tu_child_read_until(tu_child *c, const char *needle, int ms);

/* Everything on `fd` (c->out or c->err) until EOF, `ms` or `size` - 1
 * bytes, NUL-terminated in `buf`; returns the count. */
size_t tu_child_read_all(tu_child *c, int fd, char *buf, size_t size, int ms);

/* Waits up to `ms` for the child to exit and kills it (SIGKILL, then
 * waits) if it has not. Returns its wait status (for WIFEXITED and
 * friends) or TU_CHILD_KILLED. The pipes stay open, so what the child
 * wrote before it exited can still be read. Calling it again returns the
 * same result. */
int tu_child_wait(tu_child *c, int ms);

/* Closes the test's ends of the child's pipes. Safe to call twice. */
void tu_child_close(tu_child *c);

/* tu_child_wait(), then tu_child_close(). */
int tu_child_reap(tu_child *c, int ms);

/* A wait status as a shell reports it: the exit code, or 128 + the
 * signal that ended the child; TU_CHILD_KILLED stays as it is. */
int tu_exit_code(int status);

/* Kills and reaps every child tu_spawn() started that no tu_child_wait()
 * has collected. A test calls it before failing, so that no child
 * outlives the check even when Check runs the test without forking
 * (PR_SET_PDEATHSIG only acts once the test process exits). */
void tu_child_kill_all(void);

/* ck_assert_msg() that first kills every child (tu_child_kill_all()). */
#define TU_REQUIRE(cond, ...)                                                  \
    do {                                                                       \
        if (!(cond)) {                                                         \
            tu_child_kill_all();                                               \
            ck_abort_msg(__VA_ARGS__);                                         \
        }                                                                      \
    } while (0)

#endif
