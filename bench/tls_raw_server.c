/*
 * bench/tls_raw_server.c - the practical limit for a TLS echo server on
 * this machine: OpenSSL on non-blocking sockets and level-triggered epoll,
 * one thread, nothing else. It does what examples/tls-echo-server.c does
 * (greets with one line once the handshake is done, echoes, answers the
 * peer's close_notify with "goodbye" and its own) with the least work a
 * careful C programmer would write: OpenSSL's socket BIO, read-ahead,
 * record buffers kept (no SSL_MODE_RELEASE_BUFFERS), the error queue
 * cleared only after an error, the SSL made at accept.
 *
 *   tls_raw_server CERT KEY PORT [TICKETS]
 *
 * TICKETS: TLS 1.3 session tickets per handshake (default 2, OpenSSL's;
 * 0 for none). Used by bench/tls-limit.sh; never in CI.
 */
#define _GNU_SOURCE

#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

typedef struct conn {
    int fd;
    SSL *ssl;
    bool secure, ending;
    char *out; /* echo bytes SSL_write has not taken yet */
    size_t out_len;
    bool out_watch;
} conn;

static int ep, lfd;
static char buf[65536];

static void set_watch(conn *c, bool write)
{
    if (c->out_watch == write)
        return;
    c->out_watch = write;
    struct epoll_event ev = {.events = EPOLLIN | (write ? EPOLLOUT : 0),
                             .data.ptr = c};
    epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
}

static void drop(conn *c)
{
    SSL_free(c->ssl);
    close(c->fd);
    free(c->out);
    free(c);
}

/* true if the connection is still there */
static bool failed(conn *c, int r)
{
    int e = SSL_get_error(c->ssl, r);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
        set_watch(c, e == SSL_ERROR_WANT_WRITE || c->out_len > 0);
        return true;
    }
    ERR_clear_error();
    drop(c);
    return false;
}

/* Writes `len` bytes; what SSL_write cannot take waits in c->out. */
static bool send_all(conn *c, const char *p, size_t len)
{
    while (len > 0) {
        size_t n = 0;
        if (!SSL_write_ex(c->ssl, p, len, &n)) {
            int e = SSL_get_error(c->ssl, 0);
            if (e != SSL_ERROR_WANT_WRITE && e != SSL_ERROR_WANT_READ)
                return failed(c, 0);
            char *o = realloc(c->out, c->out_len + len);
            if (o == NULL)
                abort();
            memcpy(o + c->out_len, p, len);
            c->out = o;
            c->out_len += len;
            set_watch(c, true);
            return true;
        }
        p += n;
        len -= n;
    }
    return true;
}

static void on_event(conn *c)
{
    if (!c->secure) {
        int r = SSL_do_handshake(c->ssl);
        if (r != 1) {
            failed(c, r);
            return;
        }
        c->secure = true;
        int n = snprintf(buf, sizeof(buf), "hello stranger (%s)\r\n",
                         SSL_get_version(c->ssl));
        if (!send_all(c, buf, (size_t)n))
            return;
    }
    if (c->out_len > 0) {
        size_t n = 0;
        while (c->out_len > 0 && SSL_write_ex(c->ssl, c->out, c->out_len, &n)) {
            memmove(c->out, c->out + n, c->out_len - n);
            c->out_len -= n;
        }
        if (c->out_len > 0) {
            failed(c, 0);
            return; /* no reading while the echo is stuck: backpressure */
        }
        set_watch(c, false);
        if (c->ending) {
            drop(c);
            return;
        }
    }
    for (;;) {
        size_t n = 0;
        if (!SSL_read_ex(c->ssl, buf, sizeof(buf), &n)) {
            int e = SSL_get_error(c->ssl, 0);
            if (e == SSL_ERROR_ZERO_RETURN) {
                c->ending = true;
                if (!send_all(c, "goodbye\r\n", 9))
                    return;
                SSL_shutdown(c->ssl);
                if (c->out_len == 0)
                    drop(c);
                return;
            }
            failed(c, 0);
            return;
        }
        if (!send_all(c, buf, n) || c->out_len > 0)
            return;
        if (n < sizeof(buf) && !SSL_has_pending(c->ssl))
            return;
    }
}

int main(int argc, char **argv)
{
    if (argc < 4) {
        fprintf(stderr, "usage: tls_raw_server CERT KEY PORT [TICKETS]\n");
        return 2;
    }
    signal(SIGPIPE, SIG_IGN); /* OpenSSL's socket BIO uses write(2) */
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (SSL_CTX_use_certificate_chain_file(ctx, argv[1]) != 1 ||
        SSL_CTX_use_PrivateKey_file(ctx, argv[2], SSL_FILETYPE_PEM) != 1) {
        ERR_print_errors_fp(stderr);
        return 1;
    }
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE |
                              SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION);
    if (argc > 4)
        SSL_CTX_set_num_tickets(ctx, (size_t)atoi(argv[4]));

    lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    int one = 1;
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)atoi(argv[3])),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (bind(lfd, (struct sockaddr *)&a, sizeof(a)) < 0 ||
        listen(lfd, 4096) < 0) {
        perror("tls_raw_server: listen");
        return 1;
    }
    ep = epoll_create1(0);
    struct epoll_event lev = {.events = EPOLLIN, .data.ptr = NULL};
    epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &lev);
    printf("listening\n");
    fflush(stdout);
    struct epoll_event evs[256];
    for (;;) {
        int n = epoll_wait(ep, evs, 256, -1);
        for (int i = 0; i < n; i++) {
            conn *c = evs[i].data.ptr;
            if (c != NULL) {
                on_event(c);
                continue;
            }
            int fd;
            while ((fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK)) >= 0) {
                c = calloc(1, sizeof(*c));
                c->fd = fd;
                c->ssl = SSL_new(ctx);
                SSL_set_fd(c->ssl, fd);
                SSL_set_read_ahead(c->ssl, 1);
                SSL_set_accept_state(c->ssl);
                struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
                epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
            }
        }
    }
}
