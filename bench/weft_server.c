/*
 * bench/weft_server.c - the weft server, written only against
 * include/weft.h, the way the README would teach a user to write it: a
 * 'connection' listener that adds a 'data' listener; each 'data' counts
 * the requests in the borrowed chunk and answers with one
 * weft_stream_write() of the prebuilt replies.
 *
 * The http terminator state is kept in the stream's data pointer (an
 * integer, no allocation), so a connection costs only what weft itself
 * allocates.
 *
 * usage: weft_server pong|http|sink PORT|PATH [WORKERS]
 *
 * BENCH_IDLE_MS=N in the environment gives every connection an idle
 * timeout of N ms (setTimeout + a 'timeout' listener that destroys it),
 * to measure what keeping one costs per request.
 *
 * WORKERS > 1 (TCP only) forks that many processes, each listening on
 * the port with weft_server_set_reuse_port(): the way to hold more
 * connections than one process's open-file limit (the idle test's
 * 100,000). A worker that starts listening late only misses the first
 * connections; the idle test opens its own after a warm-up.
 */
#include "common.h"

#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>
#include <weft.h>

static bench_mode mode;
static int is_unix;
static uint64_t idle_ms; /* BENCH_IDLE_MS: an idle timeout per connection */
static char *replies;
static size_t reply_len;

static void on_data(weft_stream *s, const char *data, size_t len, void *ctx)
{
    (void)ctx;
    size_t count;
    if (mode == MODE_PONG) {
        count = bench_count_lines(data, len);
    } else if (mode == MODE_HTTP) {
        unsigned st = (unsigned)(uintptr_t)weft_stream_data(s);
        count = bench_count_http(data, len, &st);
        weft_stream_set_data(s, (void *)(uintptr_t)st);
    } else {
        return;
    }
    while (count > 0) {
        size_t k = count < BENCH_MAX_BATCH ? count : BENCH_MAX_BATCH;
        if (weft_stream_write(s, replies, k * reply_len) < 0)
            return;
        count -= k;
    }
}

static void on_timeout(weft_stream *s, void *ctx)
{
    (void)ctx;
    weft_stream_destroy(s);
}

static void on_connection(weft_server *srv, weft_stream *s, void *ctx)
{
    (void)srv;
    (void)ctx;
    if (!is_unix)
        weft_stream_set_no_delay(s, true);
    weft_stream_on_data(s, on_data, NULL);
    if (idle_ms > 0) {
        weft_stream_set_timeout(s, idle_ms);
        weft_stream_on_timeout(s, on_timeout, NULL);
    }
}

static void on_error(weft_server *srv, int err, const char *msg, void *ctx)
{
    (void)srv;
    (void)err;
    (void)ctx;
    fprintf(stderr, "weft_server: %s\n", msg);
    exit(1);
}

static pid_t workers[64];
static int nworkers;

static void stop_workers(int sig)
{
    for (int i = 0; i < nworkers; i++)
        kill(workers[i], sig);
}

/* The parent of WORKERS processes: forks, then waits for them all; a
 * SIGTERM or SIGINT is passed on. Returns only in a worker. */
static void fork_workers(int n)
{
    for (int i = 0; i < n; i++) {
        pid_t pid = fork();
        if (pid < 0) {
            perror("weft_server: fork");
            stop_workers(SIGTERM);
            exit(1);
        }
        if (pid == 0) {
            prctl(PR_SET_PDEATHSIG, SIGTERM);
            return;
        }
        workers[nworkers++] = pid;
    }
    signal(SIGTERM, stop_workers);
    signal(SIGINT, stop_workers);
    int status, failed = 0;
    for (int left = n; left > 0;) {
        pid_t pid = wait(&status);
        if (pid < 0) {
            if (errno == EINTR)
                continue;
            break;
        }
        left--;
        if (!WIFSIGNALED(status) && WEXITSTATUS(status) != 0)
            failed = 1;
    }
    exit(failed);
}

int main(int argc, char **argv)
{
    if ((argc != 3 && argc != 4) || bench_parse_mode(argv[1], &mode) < 0)
        bench_usage(argv[0]);
    int nw = argc == 4 ? atoi(argv[3]) : 1;
    if (nw < 1 || nw > 64 || (nw > 1 && bench_is_path(argv[2]))) {
        fprintf(stderr, "weft_server: WORKERS is 1..64, TCP only\n");
        return 2;
    }
    /* weft sends with MSG_NOSIGNAL and installs no handler: nothing to do
     * for SIGPIPE here. */
    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);

    if (mode == MODE_PONG) {
        reply_len = sizeof(PONG_REPLY) - 1;
        replies = bench_build_replies(PONG_REPLY, reply_len);
    } else if (mode == MODE_HTTP) {
        reply_len = sizeof(HTTP_REPLY) - 1;
        replies = bench_build_replies(HTTP_REPLY, reply_len);
    }

    const char *idle = getenv("BENCH_IDLE_MS");
    idle_ms = idle ? strtoull(idle, NULL, 10) : 0;
    /* Fork before weft exists: each worker gets its own loop. */
    if (nw > 1)
        fork_workers(nw);
    weft_server *srv = weft_create_server(NULL, on_connection, NULL);
    if (srv == NULL) {
        fprintf(stderr, "weft_create_server: out of memory\n");
        return 1;
    }
    weft_server_on_error(srv, on_error, NULL);
    const char *addr = argv[2];
    int r;
    if (bench_is_path(addr)) {
        is_unix = 1;
        unlink(addr);
        r = weft_server_listen_path(srv, addr, NULL, NULL);
    } else {
        /* Workers share the port; the kernel spreads the connections. */
        weft_server_set_reuse_port(srv, nw > 1);
        r = weft_server_listen(srv, atoi(addr), "127.0.0.1", NULL, NULL);
    }
    if (r < 0) {
        fprintf(stderr, "listen %s: %s\n", addr, weft_strerror(r));
        return 1;
    }
    return weft_run();
}
