/*
 * bench/uv_server.c - the libuv peer, written with libuv's best idiom.
 *
 * Reads land in one process-wide buffer handed out by alloc_cb (a
 * connection owns no buffer while idle); replies are tried with
 * uv_try_write() first, as Node's stream layer does, so the common case
 * costs one write(2) and no epoll_ctl; only what the kernel refused goes
 * through uv_write() from a heap copy.
 *
 * With -b (per-connection buffers) alloc_cb instead gives each connection
 * its own 64 KiB buffer, malloc'd at its first read and kept until close:
 * the pattern libuv's documentation and most libuv programs show, used by
 * the idle-memory test.
 *
 * usage: uv_server [-b] pong|http|sink PORT|PATH
 */
#include "common.h"

#include <signal.h>
#include <sys/resource.h>
#include <unistd.h>
#include <uv.h>

typedef struct conn {
    union {
        uv_tcp_t tcp;
        uv_pipe_t pipe;
    } h;
    unsigned http_state;
    char *buf; /* -b only */
} conn;

typedef struct write_req {
    uv_write_t req;
    char data[];
} write_req;

static bench_mode mode;
static int per_conn_buf;
static int is_unix;
static uv_loop_t *loop;
static char rbuf[BENCH_READ_SIZE];
static char *replies;
static size_t reply_len;

static void on_close(uv_handle_t *h)
{
    conn *c = (conn *)h;
    free(c->buf);
    free(c);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)suggested;
    if (per_conn_buf) {
        conn *c = (conn *)h;
        if (c->buf == NULL)
            c->buf = malloc(BENCH_READ_SIZE);
        *buf = uv_buf_init(c->buf, c->buf ? BENCH_READ_SIZE : 0);
        return;
    }
    *buf = uv_buf_init(rbuf, sizeof(rbuf));
}

static void on_write_done(uv_write_t *req, int status)
{
    (void)status;
    free(req);
}

static void send_reply(uv_stream_t *s, const char *p, size_t len)
{
    uv_buf_t b = uv_buf_init((char *)p, (unsigned)len);
    int n = uv_try_write(s, &b, 1);
    if (n == (int)len)
        return;
    if (n < 0) {
        if (n != UV_EAGAIN) {
            if (!uv_is_closing((uv_handle_t *)s))
                uv_close((uv_handle_t *)s, on_close);
            return;
        }
        n = 0;
    }
    size_t rest = len - (size_t)n;
    write_req *wr = malloc(sizeof(*wr) + rest);
    if (wr == NULL)
        abort();
    memcpy(wr->data, p + n, rest);
    b = uv_buf_init(wr->data, (unsigned)rest);
    if (uv_write(&wr->req, s, &b, 1, on_write_done) < 0)
        free(wr);
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    if (n < 0) {
        if (!uv_is_closing((uv_handle_t *)s))
            uv_close((uv_handle_t *)s, on_close);
        return;
    }
    if (n == 0)
        return;
    size_t count;
    switch (mode) {
    case MODE_PONG:
        count = bench_count_lines(buf->base, (size_t)n);
        break;
    case MODE_HTTP:
        count =
            bench_count_http(buf->base, (size_t)n, &((conn *)s)->http_state);
        break;
    default:
        return;
    }
    while (count > 0) {
        size_t k = count < BENCH_MAX_BATCH ? count : BENCH_MAX_BATCH;
        send_reply(s, replies, k * reply_len);
        count -= k;
    }
}

static void on_connection(uv_stream_t *server, int status)
{
    if (status < 0)
        return;
    conn *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return;
    if (is_unix)
        uv_pipe_init(loop, &c->h.pipe, 0);
    else
        uv_tcp_init(loop, &c->h.tcp);
    if (uv_accept(server, (uv_stream_t *)&c->h) < 0) {
        uv_close((uv_handle_t *)&c->h, on_close);
        return;
    }
    if (!is_unix)
        uv_tcp_nodelay(&c->h.tcp, 1);
    uv_read_start((uv_stream_t *)&c->h, on_alloc, on_read);
}

int main(int argc, char **argv)
{
    int a = 1;
    if (argc > 1 && strcmp(argv[1], "-b") == 0) {
        per_conn_buf = 1;
        a++;
    }
    if (argc - a != 2 || bench_parse_mode(argv[a], &mode) < 0) {
        fprintf(stderr, "usage: %s [-b] pong|http|sink PORT|PATH\n", argv[0]);
        return 2;
    }
    const char *addr = argv[a + 1];
    signal(SIGPIPE, SIG_IGN);
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

    loop = uv_default_loop();
    int r;
    uv_stream_t *server;
    static uv_tcp_t tcp;
    static uv_pipe_t pipe;
    if (bench_is_path(addr)) {
        is_unix = 1;
        unlink(addr);
        uv_pipe_init(loop, &pipe, 0);
        r = uv_pipe_bind(&pipe, addr);
        server = (uv_stream_t *)&pipe;
    } else {
        struct sockaddr_in sin;
        uv_ip4_addr("127.0.0.1", atoi(addr), &sin);
        uv_tcp_init(loop, &tcp);
        r = uv_tcp_bind(&tcp, (const struct sockaddr *)&sin, 0);
        server = (uv_stream_t *)&tcp;
    }
    if (r == 0)
        r = uv_listen(server, 511, on_connection);
    if (r < 0) {
        fprintf(stderr, "listen %s: %s\n", addr, uv_strerror(r));
        return 1;
    }
    return uv_run(loop, UV_RUN_DEFAULT);
}
