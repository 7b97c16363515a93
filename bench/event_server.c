/*
 * bench/event_server.c - the libevent peer: an evconnlistener and one
 * bufferevent per connection, libevent 2.1's own stream idiom.
 *
 * The read callback counts requests across the input evbuffer's chunks
 * with evbuffer_peek() (no pullup, no copy), drains them, and answers with
 * one bufferevent_write() of the prebuilt replies. Each bufferevent is
 * allowed 64 KiB per read (bufferevent_set_max_single_read), as every
 * other server here reads; libevent 2.1's evbuffer_read() still caps a
 * single read at 4 KiB (and asks FIONREAD first), which is what its bulk
 * figures show.
 *
 * usage: event_server pong|http|sink PORT|PATH
 */
#include "common.h"

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

static bench_mode mode;
static int is_unix;
static char *replies;
static size_t reply_len;

static void on_read(struct bufferevent *bev, void *ctx)
{
    struct evbuffer *in = bufferevent_get_input(bev);
    size_t len = evbuffer_get_length(in);
    if (mode == MODE_SINK) {
        evbuffer_drain(in, len);
        return;
    }
    struct evbuffer_iovec vec[8];
    size_t count = 0;
    for (;;) {
        int n = evbuffer_peek(in, -1, NULL, vec, 8);
        int use = n < 8 ? n : 8;
        size_t seen = 0;
        for (int i = 0; i < use; i++) {
            if (mode == MODE_PONG)
                count += bench_count_lines(vec[i].iov_base, vec[i].iov_len);
            else
                count += bench_count_http(vec[i].iov_base, vec[i].iov_len,
                                          (unsigned *)ctx);
            seen += vec[i].iov_len;
        }
        evbuffer_drain(in, seen);
        if (n <= 8)
            break;
    }
    while (count > 0) {
        size_t k = count < BENCH_MAX_BATCH ? count : BENCH_MAX_BATCH;
        bufferevent_write(bev, replies, k * reply_len);
        count -= k;
    }
}

static void on_event(struct bufferevent *bev, short what, void *ctx)
{
    if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR)) {
        bufferevent_free(bev);
        free(ctx);
    }
}

static void on_accept(struct evconnlistener *l, evutil_socket_t fd,
                      struct sockaddr *sa, int socklen, void *arg)
{
    (void)sa;
    (void)socklen;
    (void)arg;
    struct event_base *base = evconnlistener_get_base(l);
    struct bufferevent *bev =
        bufferevent_socket_new(base, fd, BEV_OPT_CLOSE_ON_FREE);
    if (bev == NULL) {
        close(fd);
        return;
    }
    if (!is_unix) {
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    }
    /* Only http carries state (a terminator split across reads). */
    unsigned *state = mode == MODE_HTTP ? calloc(1, sizeof(unsigned)) : NULL;
    bufferevent_set_max_single_read(bev, BENCH_READ_SIZE);
    bufferevent_setcb(bev, on_read, NULL, on_event, state);
    bufferevent_enable(bev, EV_READ | EV_WRITE);
}

int main(int argc, char **argv)
{
    if (argc != 3 || bench_parse_mode(argv[1], &mode) < 0)
        bench_usage(argv[0]);
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

    struct event_base *base = event_base_new();
    if (base == NULL)
        return 1;
    const char *addr = argv[2];
    struct evconnlistener *l;
    unsigned flags =
        LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE | LEV_OPT_CLOSE_ON_EXEC;
    if (bench_is_path(addr)) {
        struct sockaddr_un sun = {.sun_family = AF_UNIX};
        if (strlen(addr) >= sizeof(sun.sun_path))
            return 2;
        strcpy(sun.sun_path, addr);
        unlink(addr);
        is_unix = 1;
        l = evconnlistener_new_bind(base, on_accept, NULL, flags, 511,
                                    (struct sockaddr *)&sun, sizeof(sun));
    } else {
        struct sockaddr_in sin = {.sin_family = AF_INET,
                                  .sin_port = htons((uint16_t)atoi(addr)),
                                  .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        l = evconnlistener_new_bind(base, on_accept, NULL, flags, 511,
                                    (struct sockaddr *)&sin, sizeof(sin));
    }
    if (l == NULL) {
        perror("listen");
        return 1;
    }
    return event_base_dispatch(base);
}
