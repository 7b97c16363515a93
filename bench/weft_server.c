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
 * usage: weft_server pong|http|sink PORT|PATH
 */
#include "common.h"

#include <stdint.h>
#include <sys/resource.h>
#include <unistd.h>
#include <weft.h>

static bench_mode mode;
static int is_unix;
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

static void on_connection(weft_server *srv, weft_stream *s, void *ctx)
{
    (void)srv;
    (void)ctx;
    if (!is_unix)
        weft_stream_set_no_delay(s, true);
    weft_stream_on_data(s, on_data, NULL);
}

static void on_error(weft_server *srv, int err, const char *msg, void *ctx)
{
    (void)srv;
    (void)err;
    (void)ctx;
    fprintf(stderr, "weft_server: %s\n", msg);
    exit(1);
}

int main(int argc, char **argv)
{
    if (argc != 3 || bench_parse_mode(argv[1], &mode) < 0)
        bench_usage(argv[0]);
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
        r = weft_server_listen(srv, atoi(addr), "127.0.0.1", NULL, NULL);
    }
    if (r < 0) {
        fprintf(stderr, "listen %s: %s\n", addr, weft_strerror(r));
        return 1;
    }
    return weft_run();
}
