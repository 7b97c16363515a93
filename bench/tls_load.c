/*
 * bench/tls_load.c - a lean TLS client for measuring a TLS echo server
 * that runs in another process (examples/tls-echo-server.c, the raw
 * OpenSSL server bench/tls_raw_server.c, Node's bench/tls_echo_node.js):
 * OpenSSL on non-blocking sockets and epoll, one thread, no verification
 * (the client's cost is not what is measured). Every server greets a
 * client with one line once the handshake is done, echoes, and answers
 * the client's close_notify with "goodbye" and its own.
 *
 *   tls_load latency   PORT N          N connections one after the other:
 *                                      time from the client's handshake
 *                                      end to the greeting's first byte
 *   tls_load silent    PORT N          N TCP connections that never speak
 *   tls_load idle      PORT N          N TLS connections, one 64-byte
 *                                      exchange each, then silence
 *   tls_load pingpong  PORT CONNS SECS 64-byte round trips
 *   tls_load handshake PORT CONNS SECS full handshakes, CONNS in flight
 *   tls_load bulk      PORT MB         MB MiB echoed over one connection
 *
 * silent and idle print "ready" once all connections are up and hold
 * them until stdin is closed. With SERVER_PID set in the environment,
 * the server's CPU time (utime + stime from /proc/PID/stat) over the
 * measured part is printed per operation. With CALLGRIND=1 too, the
 * server runs under valgrind --tool=callgrind --instr-atstart=no: its
 * instrumentation is switched on for the measured part only
 * (callgrind_control -i), so its instruction count per operation is
 * deterministic. TLS 1.3 unless TLS12 is set.
 */
#define _GNU_SOURCE

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#define MSG 64
#define BULK_CHUNK 16384
#define BULK_AHEAD (256 * 1024)

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static double self_cpu(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 +
           ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
}

/* The server's CPU seconds, or -1. */
static double server_cpu(void)
{
    const char *pid = getenv("SERVER_PID");
    if (pid == NULL)
        return -1;
    char path[64], buf[1024];
    snprintf(path, sizeof(path), "/proc/%s/stat", pid);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return -1;
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    char *p = strrchr(buf, ')');
    unsigned long ut = 0, st = 0;
    if (p == NULL || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u "
                                   "%*u %lu %lu",
                            &ut, &st) != 2)
        return -1;
    return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

/* Callgrind's instrumentation of the server on or off (CALLGRIND=1). */
static void instrument(bool on)
{
    const char *pid = getenv("SERVER_PID");
    if (getenv("CALLGRIND") == NULL || pid == NULL)
        return;
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "callgrind_control -i %s %s >/dev/null 2>&1",
             on ? "on" : "off", pid);
    if (system(cmd) != 0)
        fprintf(stderr, "tls_load: %s failed\n", cmd);
}

static void die(const char *what)
{
    fprintf(stderr, "tls_load: %s: %s\n", what, strerror(errno));
    exit(1);
}

static int port;
static SSL_CTX *ctx;
static int ep;

static int tcp_connect(bool blocking)
{
    int fd = socket(AF_INET, SOCK_STREAM | (blocking ? 0 : SOCK_NONBLOCK), 0);
    if (fd < 0)
        die("socket");
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0 &&
        errno != EINPROGRESS)
        die("connect");
    return fd;
}

/* ---- blocking modes: latency, silent, idle ------------------------------ */

static SSL *blocking_session(int fd)
{
    SSL *ssl = SSL_new(ctx);
    SSL_set_fd(ssl, fd);
    if (SSL_connect(ssl) != 1) {
        ERR_print_errors_fp(stderr);
        exit(1);
    }
    return ssl;
}

/* Reads up to and including the greeting's "\r\n". */
static void read_line(SSL *ssl)
{
    char c;
    bool cr = false;
    for (;;) {
        if (SSL_read(ssl, &c, 1) != 1) {
            fprintf(stderr, "tls_load: no greeting\n");
            exit(1);
        }
        if (cr && c == '\n')
            return;
        cr = c == '\r';
    }
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static void latency(int n)
{
    double *lat = malloc(sizeof(double) * (size_t)n);
    for (int i = 0; i < n; i++) {
        int fd = tcp_connect(true);
        SSL *ssl = blocking_session(fd);
        double t0 = now_s();
        char c;
        if (SSL_peek(ssl, &c, 1) != 1) {
            fprintf(stderr, "tls_load: no greeting\n");
            exit(1);
        }
        lat[i] = (now_s() - t0) * 1e3;
        read_line(ssl);
        SSL_shutdown(ssl);
        char buf[256];
        while (SSL_read(ssl, buf, sizeof(buf)) > 0)
            ;
        SSL_free(ssl);
        close(fd);
    }
    qsort(lat, (size_t)n, sizeof(double), cmp_double);
    printf("latency handshake->first byte ms: p50 %.3f p90 %.3f p99 %.3f "
           "max %.3f (n=%d)\n",
           lat[n / 2], lat[n * 9 / 10], lat[n * 99 / 100], lat[n - 1], n);
    free(lat);
}

static void hold(void)
{
    printf("ready\n");
    fflush(stdout);
    char buf[16];
    while (read(0, buf, sizeof(buf)) > 0)
        ;
}

static void silent(int n)
{
    for (int i = 0; i < n; i++)
        tcp_connect(true);
    hold();
}

static void idle(int n)
{
    char msg[MSG], back[MSG];
    memset(msg, 'x', sizeof(msg));
    for (int i = 0; i < n; i++) {
        int fd = tcp_connect(true);
        SSL *ssl = blocking_session(fd);
        read_line(ssl);
        if (SSL_write(ssl, msg, MSG) != MSG)
            exit(1);
        for (int got = 0; got < MSG;) {
            int k = SSL_read(ssl, back + got, MSG - got);
            if (k <= 0)
                exit(1);
            got += k;
        }
    }
    hold();
}

/* ---- non-blocking modes: pingpong, handshake, bulk ---------------------- */

enum phase { P_HANDSHAKE, P_GREETING, P_RUN, P_CLOSING };

typedef struct conn {
    int fd;
    SSL *ssl;
    enum phase phase;
    bool cr;
    size_t got;             /* this round trip's bytes back */
    size_t sent, received;  /* bulk */
    bool want_write;
} conn;

static enum { M_PINGPONG, M_HANDSHAKE, M_BULK } mode;
static long ops;
static bool counting = true, stopping;
static size_t bulk_total;
static int live;

static void watch(conn *c, bool write)
{
    struct epoll_event ev = {.events = EPOLLIN | (write ? EPOLLOUT : 0),
                             .data.ptr = c};
    if (epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev) < 0)
        die("epoll_ctl");
}

static conn *open_conn(void)
{
    conn *c = calloc(1, sizeof(*c));
    c->fd = tcp_connect(false);
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    c->ssl = SSL_new(ctx);
    SSL_set_fd(c->ssl, c->fd);
    SSL_set_connect_state(c->ssl);
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT, .data.ptr = c};
    if (epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev) < 0)
        die("epoll_ctl");
    live++;
    return c;
}

static void close_conn(conn *c)
{
    SSL_free(c->ssl);
    close(c->fd); /* leaves the epoll set */
    free(c);
    live--;
}

/* false: wait (interest set), true: progress */
static bool blocked(conn *c, int r)
{
    int e = SSL_get_error(c->ssl, r);
    if (e == SSL_ERROR_WANT_READ) {
        watch(c, false);
        return true;
    }
    if (e == SSL_ERROR_WANT_WRITE) {
        watch(c, true);
        return true;
    }
    fprintf(stderr, "tls_load: SSL error %d\n", e);
    ERR_print_errors_fp(stderr);
    exit(1);
}

static void drive(conn *c)
{
    char buf[65536];
    for (;;) {
        switch (c->phase) {
        case P_HANDSHAKE: {
            int r = SSL_do_handshake(c->ssl);
            if (r != 1) {
                blocked(c, r);
                return;
            }
            c->phase = P_GREETING;
            break;
        }
        case P_GREETING: {
            int r = SSL_read(c->ssl, buf, 1);
            if (r <= 0) {
                blocked(c, r);
                return;
            }
            if (c->cr && buf[0] == '\n') {
                if (mode == M_HANDSHAKE) {
                    if (counting)
                        ops++;
                    SSL_shutdown(c->ssl);
                    c->phase = P_CLOSING;
                    break;
                }
                c->phase = P_RUN;
                if (mode == M_PINGPONG) {
                    memset(buf, 'p', MSG);
                    if (SSL_write(c->ssl, buf, MSG) != MSG)
                        exit(1);
                }
                watch(c, mode == M_BULK);
                if (mode == M_BULK)
                    return;
                break;
            }
            c->cr = buf[0] == '\r';
            break;
        }
        case P_CLOSING: {
            int r = SSL_read(c->ssl, buf, sizeof(buf));
            if (r > 0)
                continue;
            int e = SSL_get_error(c->ssl, r);
            if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
                watch(c, e == SSL_ERROR_WANT_WRITE);
                return;
            }
            close_conn(c);
            if (mode == M_HANDSHAKE && !stopping)
                drive(open_conn());
            return;
        }
        case P_RUN:
            if (mode == M_PINGPONG) {
                int r = SSL_read(c->ssl, buf, MSG - (int)c->got);
                if (r <= 0) {
                    blocked(c, r);
                    return;
                }
                c->got += (size_t)r;
                if (c->got < MSG)
                    break;
                c->got = 0;
                if (counting)
                    ops++;
                if (stopping) {
                    SSL_shutdown(c->ssl);
                    c->phase = P_CLOSING;
                    break;
                }
                memset(buf, 'p', MSG);
                if (SSL_write(c->ssl, buf, MSG) != MSG)
                    exit(1);
                break;
            }
            /* bulk: read what is back, write while not too far ahead */
            for (;;) {
                int r = SSL_read(c->ssl, buf, sizeof(buf));
                if (r <= 0) {
                    int e = SSL_get_error(c->ssl, r);
                    if (e != SSL_ERROR_WANT_READ)
                        blocked(c, r);
                    break;
                }
                c->received += (size_t)r;
            }
            if (c->received >= bulk_total) {
                SSL_shutdown(c->ssl);
                c->phase = P_CLOSING;
                break;
            }
            bool full = false;
            while (c->sent < bulk_total &&
                   c->sent - c->received < BULK_AHEAD) {
                size_t n = bulk_total - c->sent;
                if (n > BULK_CHUNK)
                    n = BULK_CHUNK;
                memset(buf, 'b', n);
                int r = SSL_write(c->ssl, buf, (int)n);
                if (r <= 0) {
                    if (SSL_get_error(c->ssl, r) != SSL_ERROR_WANT_WRITE)
                        blocked(c, r);
                    full = true;
                    break;
                }
                c->sent += (size_t)r;
            }
            watch(c, full);
            return;
        }
    }
}

static void run_loop(double until)
{
    struct epoll_event evs[64];
    while (live > 0 && (until == 0 || now_s() < until)) {
        int n = epoll_wait(ep, evs, 64, 100);
        for (int i = 0; i < n; i++)
            drive(evs[i].data.ptr);
    }
}

static void report(const char *what, double secs, double cpu0, double cpu1,
                   double me, double scale, const char *unit)
{
    printf("%s: %ld in %.2f s (%.0f/s), client CPU %.0f%%", what, ops, secs,
           ops / secs, 100 * me / secs);
    if (cpu0 >= 0 && cpu1 >= 0)
        printf(", server CPU %.0f%%, server %.2f us per %s",
               100 * (cpu1 - cpu0) / secs, (cpu1 - cpu0) * 1e6 / scale, unit);
    printf("\n");
}

int main(int argc, char **argv)
{
    if (argc < 4) {
        fprintf(stderr, "usage: tls_load MODE PORT ARGS... (see the source)\n");
        return 2;
    }
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    const char *m = argv[1];
    port = atoi(argv[2]);
    ctx = SSL_CTX_new(TLS_client_method());
    SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    if (getenv("TLS12"))
        SSL_CTX_set_max_proto_version(ctx, TLS1_2_VERSION);
    else
        SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION);
    int n = atoi(argv[3]);
    if (strcmp(m, "latency") == 0) {
        latency(n);
        return 0;
    }
    if (strcmp(m, "silent") == 0) {
        silent(n);
        return 0;
    }
    if (strcmp(m, "idle") == 0) {
        idle(n);
        return 0;
    }
    ep = epoll_create1(0);
    double secs = argc > 4 ? atof(argv[4]) : 3;
    if (strcmp(m, "bulk") == 0) {
        mode = M_BULK;
        bulk_total = (size_t)n << 20;
        conn *c = open_conn();
        drive(c);
        /* the handshake and greeting first, then the measured part */
        while (c->phase != P_RUN)
            run_loop(now_s() + 0.01);
        instrument(true);
        double t0 = now_s(), s0 = server_cpu(), me0 = self_cpu();
        drive(c);
        run_loop(0);
        double t1 = now_s();
        instrument(false);
        ops = n;
        report("bulk MiB echoed", t1 - t0, s0, server_cpu(),
               self_cpu() - me0, (double)n, "MiB");
        return 0;
    }
    mode = strcmp(m, "pingpong") == 0 ? M_PINGPONG : M_HANDSHAKE;
    if (mode == M_HANDSHAKE && strcmp(m, "handshake") != 0) {
        fprintf(stderr, "tls_load: unknown mode %s\n", m);
        return 2;
    }
    for (int i = 0; i < n; i++)
        drive(open_conn());
    counting = false;
    run_loop(now_s() + 0.5); /* warm-up */
    instrument(true);
    counting = true;
    ops = 0;
    double t0 = now_s(), s0 = server_cpu(), me0 = self_cpu();
    run_loop(t0 + secs);
    double t1 = now_s(), s1 = server_cpu(), me = self_cpu() - me0;
    counting = false;
    instrument(false);
    stopping = true;
    long done = ops;
    run_loop(now_s() + 2);
    ops = done;
    report(mode == M_PINGPONG ? "64-byte round trips" : "handshakes", t1 - t0,
           s0, s1, me, (double)done, mode == M_PINGPONG ? "round trip"
                                                        : "handshake");
    return 0;
}
