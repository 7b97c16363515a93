/*
 * bench/raw_server.c - the practical limit: a server on a bare epoll loop
 * with no abstraction, written the way a careful C programmer would.
 *
 * Level-triggered; on readable: one read into a process-wide buffer, count
 * requests, one write of the prebuilt replies. A reply the kernel does not
 * take at once (never in these closed-loop workloads, but handled) is kept
 * per connection, the connection stops reading and waits for EPOLLOUT.
 * Per-connection state lives in a table indexed by fd, so an idle
 * connection costs a few bytes of that table and nothing else.
 *
 * usage: raw_server pong|http|sink PORT|PATH
 */
#define _GNU_SOURCE
#include "common.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

typedef struct conn {
    char *pending; /* unsent reply bytes, malloc'd only on EAGAIN */
    uint32_t pend_len;
    uint32_t pend_off;
    unsigned http_state;
} conn;

static bench_mode mode;
static int epfd;
static int is_unix;
static conn *conns; /* indexed by fd */
static size_t nconns;
static char rbuf[BENCH_READ_SIZE];
static char *replies;
static size_t reply_len;

static void die(const char *what)
{
    perror(what);
    exit(1);
}

static void conn_close(int fd)
{
    free(conns[fd].pending);
    memset(&conns[fd], 0, sizeof(conns[fd]));
    close(fd); /* also removes it from the epoll set */
}

/* Writes `len` bytes; keeps what the kernel refused. Returns -1 if the
 * connection was closed. */
static int send_all(int fd, const char *p, size_t len)
{
    conn *c = &conns[fd];
    while (len > 0) {
        ssize_t w = send(fd, p, len, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN) {
                size_t have = c->pend_len - c->pend_off;
                char *np = malloc(have + len);
                if (np == NULL)
                    die("malloc");
                if (have)
                    memcpy(np, c->pending + c->pend_off, have);
                memcpy(np + have, p, len);
                free(c->pending);
                c->pending = np;
                c->pend_off = 0;
                c->pend_len = (uint32_t)(have + len);
                struct epoll_event ev = {.events = EPOLLOUT, .data.fd = fd};
                epoll_ctl(epfd, EPOLL_CTL_MOD, fd, &ev);
                return 0;
            }
            conn_close(fd);
            return -1;
        }
        p += w;
        len -= (size_t)w;
    }
    return 0;
}

static void on_writable(int fd)
{
    conn *c = &conns[fd];
    while (c->pend_off < c->pend_len) {
        ssize_t w = send(fd, c->pending + c->pend_off,
                         c->pend_len - c->pend_off, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN)
                return;
            conn_close(fd);
            return;
        }
        c->pend_off += (uint32_t)w;
    }
    free(c->pending);
    c->pending = NULL;
    c->pend_len = c->pend_off = 0;
    struct epoll_event ev = {.events = EPOLLIN, .data.fd = fd};
    epoll_ctl(epfd, EPOLL_CTL_MOD, fd, &ev);
}

static void on_readable(int fd)
{
    ssize_t n = read(fd, rbuf, sizeof(rbuf));
    if (n <= 0) {
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
            return;
        conn_close(fd);
        return;
    }
    size_t count;
    switch (mode) {
    case MODE_PONG:
        count = bench_count_lines(rbuf, (size_t)n);
        break;
    case MODE_HTTP:
        count = bench_count_http(rbuf, (size_t)n, &conns[fd].http_state);
        break;
    default:
        return;
    }
    while (count > 0) {
        size_t k = count < BENCH_MAX_BATCH ? count : BENCH_MAX_BATCH;
        if (send_all(fd, replies, k * reply_len) < 0)
            return;
        count -= k;
    }
}

static void on_accept(int lfd)
{
    /* Accept everything queued: one wake-up may stand for many clients. */
    for (;;) {
        int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            return; /* EAGAIN, or EMFILE: try again on the next wake-up */
        }
        if ((size_t)fd >= nconns) {
            close(fd);
            continue;
        }
        if (!is_unix) {
            int one = 1;
            setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        }
        struct epoll_event ev = {.events = EPOLLIN, .data.fd = fd};
        if (epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev) < 0)
            close(fd);
    }
}

static int listen_on(const char *addr)
{
    int fd;
    if (bench_is_path(addr)) {
        struct sockaddr_un sun = {.sun_family = AF_UNIX};
        if (strlen(addr) >= sizeof(sun.sun_path)) {
            fprintf(stderr, "path too long\n");
            exit(2);
        }
        strcpy(sun.sun_path, addr);
        unlink(addr);
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0 || bind(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0)
            die("bind");
        is_unix = 1;
    } else {
        struct sockaddr_in sin = {.sin_family = AF_INET,
                                  .sin_port = htons((uint16_t)atoi(addr)),
                                  .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        int one = 1;
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
        if (fd < 0 || bind(fd, (struct sockaddr *)&sin, sizeof(sin)) < 0)
            die("bind");
    }
    if (listen(fd, 511) < 0)
        die("listen");
    return fd;
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
    nconns = rl.rlim_cur;
    conns = calloc(nconns, sizeof(conn)); /* pages touched only when used */
    if (conns == NULL)
        die("calloc");

    if (mode == MODE_PONG) {
        reply_len = sizeof(PONG_REPLY) - 1;
        replies = bench_build_replies(PONG_REPLY, reply_len);
    } else if (mode == MODE_HTTP) {
        reply_len = sizeof(HTTP_REPLY) - 1;
        replies = bench_build_replies(HTTP_REPLY, reply_len);
    }

    int lfd = listen_on(argv[2]);
    epfd = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event ev = {.events = EPOLLIN, .data.fd = lfd};
    if (epfd < 0 || epoll_ctl(epfd, EPOLL_CTL_ADD, lfd, &ev) < 0)
        die("epoll");

    struct epoll_event events[256];
    for (;;) {
        int n = epoll_wait(epfd, events, 256, -1);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            die("epoll_wait");
        }
        for (int i = 0; i < n; i++) {
            int fd = events[i].data.fd;
            if (fd == lfd)
                on_accept(lfd);
            else if (events[i].events & EPOLLOUT)
                on_writable(fd);
            else
                on_readable(fd);
        }
    }
}
