/*
 * test_idle.c - idle exhaustion (slowloris): 10,000 connections that
 * connect and then send nothing, opened by a forked child (its own fd
 * table) to a weft server in the test process.
 *
 * With the server calling setTimeout(ms) on each connection and
 * destroy() in 'timeout', every connection is reclaimed: the child sees
 * each one closed, the server's connection count returns to 0. Without
 * a timeout they all stay open, and what they cost is only their idle
 * memory: the heap growth per connection is printed and bounded, so a
 * change that makes an idle connection fat fails here.
 *
 * RLIMIT_NOFILE is raised to its hard limit; where that is below what
 * 10,000 connections need, the test scales down and says so.
 */
#include "testutil.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#if defined(__SANITIZE_ADDRESS__)
/* From <sanitizer/allocator_interface.h>, which gcc 12 does not ship;
 * libasan exports it. */
size_t __sanitizer_get_current_allocated_bytes(void);
#endif

/* ck_assert_* write their location on every call: per-connection paths
 * use a plain test that costs nothing until it fails. */
#define CHECK(cond, ...)                                                       \
    do {                                                                       \
        if (!(cond))                                                           \
            ck_abort_msg(__VA_ARGS__);                                         \
    } while (0)

#define WANT_CONNECTIONS 10000
/* Idle period of the reclaiming server. */
#define IDLE_MS 500
/* Generous bound on the user-space heap an idle connection may cost
 * (its stream, its listeners' slots, allocator rounding). */
#define IDLE_BYTES_MAX 2048

/* Heap bytes in use: ASan's count under ASan (it replaces malloc, so
 * glibc's arena says nothing), glibc's otherwise. */
static size_t heap_in_use(void)
{
#if defined(__SANITIZE_ADDRESS__)
    return __sanitizer_get_current_allocated_bytes();
#else
    struct mallinfo2 mi = mallinfo2();
    return mi.uordblks + mi.hblkhd;
#endif
}

/* The number after `line` in a /proc file ("VmRSS:"), or after `word`
 * on that line. */
static long proc_field(const char *file, const char *line, const char *word)
{
    FILE *f = fopen(file, "r");
    if (f == NULL)
        return -1;
    char buf[512];
    long v = -1;
    while (fgets(buf, sizeof(buf), f) != NULL) {
        if (strncmp(buf, line, strlen(line)) != 0)
            continue;
        char *p = word ? strstr(buf, word) : buf + strlen(line);
        if (p != NULL)
            v = strtol(p + (word ? strlen(word) : 0), NULL, 10);
        break;
    }
    fclose(f);
    return v;
}

/* ---- the child: N idle connections ------------------------------------ */

typedef struct child_report {
    int connected;
    int closed_by_server;
    int err;
    char msg[120];
} child_report;

/* Connects `n` sockets and reports. Then either waits for the server to
 * close every one (`wait_for_server`), or for a byte on `cmd_fd` before
 * closing them itself. Never returns. */
static void idle_child(int port, int n, bool wait_for_server, int cmd_fd,
                       int report_fd)
{
    int keep_lo = cmd_fd < report_fd ? cmd_fd : report_fd;
    int keep_hi = cmd_fd < report_fd ? report_fd : cmd_fd;
    close_range(3, (unsigned)keep_lo - 1, 0);
    close_range((unsigned)keep_lo + 1, (unsigned)keep_hi - 1, 0);
    close_range((unsigned)keep_hi + 1, ~0u, 0);
    prctl(PR_SET_PDEATHSIG, SIGKILL); /* never outlive a failed test */
    alarm(60);
    tu_raise_nofile(n + 64);
    child_report rep = {0};
    int *fds = malloc((size_t)n * sizeof(int));
    if (fds == NULL)
        _exit(3);
    struct sockaddr_in sin = {.sin_family = AF_INET,
                              .sin_port = htons((uint16_t)port)};
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    for (int i = 0; i < n; i++) {
        fds[i] = socket(AF_INET, SOCK_STREAM, 0);
        if (fds[i] < 0 ||
            connect(fds[i], (struct sockaddr *)&sin, sizeof(sin)) < 0) {
            rep.err = errno;
            snprintf(rep.msg, sizeof(rep.msg), "connection %d: %s", i,
                     strerror(errno));
            break;
        }
        rep.connected++;
    }
    if (write(report_fd, &rep, sizeof(rep)) != (ssize_t)sizeof(rep))
        _exit(4);
    if (wait_for_server) {
        /* Blocks until the server closes each one: the last read returns
         * once the last connection is reclaimed. */
        for (int i = 0; i < rep.connected; i++) {
            char b;
            ssize_t r = read(fds[i], &b, 1);
            if (r == 0 || (r < 0 && errno == ECONNRESET))
                rep.closed_by_server++;
        }
    } else {
        char b;
        if (read(cmd_fd, &b, 1) != 1)
            _exit(5);
    }
    for (int i = 0; i < rep.connected; i++)
        close(fds[i]);
    if (write(report_fd, &rep, sizeof(rep)) != (ssize_t)sizeof(rep))
        _exit(6);
    _exit(0);
}

/* ---- the server -------------------------------------------------------- */

typedef struct conn {
    uint64_t accepted_at;
    unsigned timeouts, closes, ends;
    bool closed;
} conn;

static struct idle {
    int n;
    bool reclaim; /* setTimeout + destroy */
    weft_server *server;
    conn *conns;
    int accepted, timeouts, closed;
    unsigned peak;
    pid_t pid;
    int report_fd, cmd_fd;
    child_report rep;
    bool child_reported, measured, told_to_close;
    weft_timer *watch;
    size_t heap_before, heap_after;
    long rss_before, rss_after;
    int quiet_ticks;
} I;

static void c_timeout(weft_stream *s, void *ctx)
{
    conn *c = ctx;
    CHECK(!c->closed, "'timeout' after 'close'");
    c->timeouts++;
    I.timeouts++;
    /* Not before its time: the stream sent and received nothing. */
    uint64_t idle = weft_loop_now(tu_loop) - c->accepted_at;
    CHECK(idle >= IDLE_MS, "'timeout' after %llu ms of %d",
          (unsigned long long)idle, IDLE_MS);
    CHECK(weft_stream_bytes_read(s) == 0, "an idle peer sent data");
    weft_stream_destroy(s);
}

static void c_data(weft_stream *s, const char *d, size_t n, void *ctx)
{
    (void)s;
    (void)d;
    (void)n;
    (void)ctx;
    ck_abort_msg("an idle peer sent data");
}

static void c_end(weft_stream *s, void *ctx)
{
    (void)s;
    conn *c = ctx;
    CHECK(!c->closed, "'end' after 'close'");
    c->ends++;
}

static void c_close(weft_stream *s, bool had_error, void *ctx)
{
    (void)s;
    conn *c = ctx;
    CHECK(!c->closed, "'close' twice");
    CHECK(!had_error, "close(true) of an idle connection");
    c->closed = true;
    c->closes++;
    I.closed++;
    if (I.closed == I.n) {
        ck_assert_uint_eq(weft_server_connections(I.server), 0);
        ck_assert_int_eq(weft_server_close(I.server), 0);
        weft_clear_timer(I.watch);
    }
}

static void on_connection(weft_server *srv, weft_stream *s, void *ctx)
{
    (void)ctx;
    CHECK(I.accepted < I.n, "more connections than the child made");
    conn *c = &I.conns[I.accepted++];
    c->accepted_at = weft_loop_now(tu_loop);
    if (weft_server_connections(srv) > I.peak)
        I.peak = weft_server_connections(srv);
    /* What a plain server registers: data, end, close. */
    int r = weft_stream_on_data(s, c_data, c) |
            weft_stream_on_end(s, c_end, c) |
            weft_stream_on_close(s, c_close, c);
    if (I.reclaim)
        r |= weft_stream_on_timeout(s, c_timeout, c) |
             weft_stream_set_timeout(s, IDLE_MS);
    CHECK(r == 0, "registering listeners failed");
}

/* Every 50 ms: has the child reported; are all connections in? */
static void watch(weft_timer *t, void *ctx)
{
    (void)t;
    (void)ctx;
    /* What the deadline's message shows if the run hangs. */
    tu_log_reset();
    tu_logf("accepted %d/%d, timeouts %d, closed %d, child reported %d, "
            "told to close %d",
            I.accepted, I.n, I.timeouts, I.closed, I.child_reported,
            I.told_to_close);
    if (!I.child_reported) {
        ssize_t r = read(I.report_fd, &I.rep, sizeof(I.rep));
        if (r < 0 && errno == EAGAIN)
            return;
        ck_assert_int_eq(r, (ssize_t)sizeof(I.rep));
        ck_assert_msg(I.rep.connected == I.n, "child connected %d of %d: %s",
                      I.rep.connected, I.n, I.rep.msg);
        I.child_reported = true;
    }
    if (I.reclaim || I.told_to_close || I.accepted < I.n)
        return;
    if (!I.measured) {
        /* All N are in and idle: what do they cost? */
        I.measured = true;
        I.heap_after = heap_in_use();
        I.rss_after = proc_field("/proc/self/status", "VmRSS:", NULL);
        ck_assert_uint_eq(weft_server_connections(I.server), (unsigned)I.n);
        return;
    }
    /* Without a timeout nothing reclaims them: a few rounds later, well
     * past the reclaiming run's idle period, all are still open. */
    if (++I.quiet_ticks * 50 < 2 * IDLE_MS)
        return;
    ck_assert_int_eq(I.closed, 0);
    ck_assert_uint_eq(weft_server_connections(I.server), (unsigned)I.n);
    I.told_to_close = true;
    ck_assert_int_eq(write(I.cmd_fd, "x", 1), 1);
}

static void stop_loop(weft_timer *t, void *ctx)
{
    (void)t;
    (void)ctx;
    weft_loop_stop(tu_loop);
}

static void run_idle(bool reclaim)
{
    memset(&I, 0, sizeof(I));
    I.reclaim = reclaim;
    int want = tu_under_valgrind() ? WANT_CONNECTIONS / 10 : WANT_CONNECTIONS;
    long limit = tu_raise_nofile(want + 256);
    I.n = want;
    if (limit < want + 256) {
        I.n = (int)limit - 256;
        printf("idle: RLIMIT_NOFILE hard limit is %ld: scaled down to %d "
               "connections (wanted %d)\n",
               limit, I.n, want);
    }
    ck_assert_int_gt(I.n, 0);
    I.conns = calloc((size_t)I.n, sizeof(*I.conns));
    ck_assert_ptr_nonnull(I.conns);

    I.server = weft_create_server(tu_loop, on_connection, NULL);
    ck_assert_ptr_nonnull(I.server);
    weft_server_set_backlog(I.server, 4096);
    int port = tu_listen(I.server, "127.0.0.1");
    /* Let the loop allocate what it allocates on its first turns before
     * the baseline is taken. */
    ck_assert_ptr_nonnull(weft_set_timeout(tu_loop, 1, stop_loop, NULL));
    ck_assert_int_eq(weft_loop_run(tu_loop), 0);
    I.heap_before = heap_in_use();
    I.rss_before = proc_field("/proc/self/status", "VmRSS:", NULL);

    int rep_pipe[2], cmd_pipe[2];
    ck_assert_int_eq(pipe2(rep_pipe, O_CLOEXEC), 0);
    ck_assert_int_eq(pipe2(cmd_pipe, O_CLOEXEC), 0);
    fflush(NULL);
    I.pid = fork();
    ck_assert_int_ge(I.pid, 0);
    if (I.pid == 0) {
        close(rep_pipe[0]);
        close(cmd_pipe[1]);
        idle_child(port, I.n, reclaim, cmd_pipe[0], rep_pipe[1]);
    }
    close(rep_pipe[1]);
    close(cmd_pipe[0]);
    I.report_fd = rep_pipe[0];
    I.cmd_fd = cmd_pipe[1];
    ck_assert_int_eq(fcntl(I.report_fd, F_SETFL, O_NONBLOCK), 0);
    I.watch = weft_set_interval(tu_loop, 50, watch, NULL);
    ck_assert_ptr_nonnull(I.watch);
    tu_run(30000);

    ck_assert_int_eq(fcntl(I.report_fd, F_SETFL, 0), 0);
    child_report last;
    ck_assert_int_eq(read(I.report_fd, &last, sizeof(last)),
                     (ssize_t)sizeof(last));
    int status;
    ck_assert_int_eq(waitpid(I.pid, &status, 0), I.pid);
    ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0,
                  "child status %#x", status);
    close(I.report_fd);
    close(I.cmd_fd);

    ck_assert(I.child_reported);
    ck_assert_int_eq(I.accepted, I.n);
    ck_assert_int_eq(I.closed, I.n);
    for (int i = 0; i < I.n; i++) {
        ck_assert_uint_eq(I.conns[i].closes, 1);
        ck_assert_uint_eq(I.conns[i].timeouts, reclaim ? 1 : 0);
        /* Reclaimed ones were destroyed before any FIN came. */
        ck_assert_uint_eq(I.conns[i].ends, reclaim ? 0 : 1);
    }
    if (reclaim) {
        ck_assert_int_eq(I.timeouts, I.n);
        ck_assert_int_eq(last.closed_by_server, I.n);
        printf("idle: %d idle connections reclaimed by setTimeout(%d) and "
               "destroy(); peak %u open at once; the child saw every one "
               "closed\n",
               I.n, IDLE_MS, I.peak);
    } else {
        ck_assert(I.told_to_close);
        double per = (double)(I.heap_after - I.heap_before) / I.n;
        double rss = (double)(I.rss_after - I.rss_before) * 1024 / I.n;
        char heap[64];
        /* valgrind's malloc keeps no mallinfo2 figures */
        if (tu_under_valgrind())
            snprintf(heap, sizeof(heap), "n/a under valgrind");
        else
            snprintf(heap, sizeof(heap), "%.0f bytes per connection (%s)", per,
#if defined(__SANITIZE_ADDRESS__)
                     "ASan allocator count"
#else
                     "mallinfo2"
#endif
            );
        printf("idle: %d idle connections without a timeout stayed open; "
               "server heap %s, VmRSS growth %.0f bytes per connection\n",
               I.n, heap, rss);
        if (!tu_under_valgrind())
            ck_assert_msg(per < IDLE_BYTES_MAX,
                          "an idle connection costs %.0f bytes of heap", per);
    }
    fflush(stdout);
    free(I.conns);
}

START_TEST(idle_connections_are_reclaimed_by_set_timeout_and_destroy)
{
    run_idle(true);
}
END_TEST

START_TEST(idle_connections_without_timeout_stay_open_at_bounded_memory)
{
    run_idle(false);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("idle");
    TCase *tc = tu_tcase("idle");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc,
                   idle_connections_are_reclaimed_by_set_timeout_and_destroy);
    tcase_add_test(
        tc, idle_connections_without_timeout_stay_open_at_bounded_memory);
    suite_add_tcase(s, tc);
    return tu_run_suite(s);
}
