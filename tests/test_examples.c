/*
 * test_examples.c - the built example programs, run as a user runs them:
 * examples/multicore-echo, examples/echo-server and
 * examples/udp-echo-server are spawned, their
 * printed address is read from stdout, plain blocking sockets (with
 * receive and send timeouts, so nothing can hang) talk to them, and the
 * exit status after SIGTERM/SIGINT is checked (exit 0, which under ASan
 * also means no leak).
 *
 * Knows nothing of weft's internals: only what the programs print, what
 * they send and how they exit. Every child is killed on every path: by
 * TU_REQUIRE before a failed check, by PR_SET_PDEATHSIG if the test
 * process dies first.
 */
#include "testutil.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#define ECHO_SERVER    WEFT_BINARY_DIR "/examples/echo-server"
#define MULTICORE_ECHO WEFT_BINARY_DIR "/examples/multicore-echo"
#define UDP_ECHO       WEFT_BINARY_DIR "/examples/udp-echo-server"
/* Startup under ASan can take a while on a loaded machine. */
#define START_MS 10000
/* The brief: a stopped example must be gone within this. */
#define EXIT_MS 5000
/* Per blocking socket call; far above any expected round trip. */
#define SOCK_TIMEOUT_S 3

/* ---- child processes --------------------------------------------------- */

/* Starts a built example with stdin from /dev/null, stdout on a pipe and,
 * if `capture_err`, stderr on a pipe too. */
static void spawn(tu_child *c, char *const argv[], bool capture_err)
{
    ck_assert_msg(access(argv[0], X_OK) == 0, "%s not built", argv[0]);
    tu_spawn_opts o = {.err = capture_err ? TU_STDERR_PIPE : TU_STDERR_INHERIT};
    tu_spawn(c, argv, &o);
}

static void assert_exit(int status, int code, const char *what)
{
    TU_REQUIRE(status != TU_CHILD_KILLED, "%s did not exit within its deadline",
               what);
    TU_REQUIRE(WIFEXITED(status), "%s died of signal %d", what,
               WIFSIGNALED(status) ? WTERMSIG(status) : 0);
    TU_REQUIRE(WEXITSTATUS(status) == code, "%s exited with %d, not %d", what,
               WEXITSTATUS(status), code);
}

/* Sends `sig` and waits for the exit; prints and returns the time taken. */
static int stop(tu_child *c, int sig, const char *what, long long *took_ms)
{
    long long t0 = tu_now_ms();
    TU_REQUIRE(kill(c->pid, sig) == 0, "kill %s: %s", what, strerror(errno));
    int status = tu_child_reap(c, EXIT_MS);
    *took_ms = tu_now_ms() - t0;
    fprintf(stderr, "%s: %s to exit: %lld ms\n", what,
            sig == SIGINT ? "SIGINT" : "SIGTERM", *took_ms);
    return status;
}

/* ---- plain blocking sockets -------------------------------------------- */

/* A connected socket to host (an IP literal) and port, with send and
 * receive timeouts; -1 on failure. */
static int connect_to(const char *host, int port)
{
    struct sockaddr_storage ss;
    socklen_t len;
    memset(&ss, 0, sizeof(ss));
    struct sockaddr_in *in4 = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;
    if (inet_pton(AF_INET, host, &in4->sin_addr) == 1) {
        in4->sin_family = AF_INET;
        in4->sin_port = htons((uint16_t)port);
        len = sizeof(*in4);
    } else if (inet_pton(AF_INET6, host, &in6->sin6_addr) == 1) {
        in6->sin6_family = AF_INET6;
        in6->sin6_port = htons((uint16_t)port);
        len = sizeof(*in6);
    } else {
        return -1;
    }
    int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    struct timeval tv = {.tv_sec = SOCK_TIMEOUT_S};
    if (setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) < 0 ||
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)) < 0 ||
        connect(fd, (struct sockaddr *)&ss, len) < 0) {
        close(fd);
        return -1;
    }
    return fd;
}

static bool send_all(int fd, const void *buf, size_t len)
{
    const char *p = buf;
    while (len > 0) {
        ssize_t k = send(fd, p, len, MSG_NOSIGNAL);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            return false;
        p += k;
        len -= (size_t)k;
    }
    return true;
}

/* Reads exactly `len` bytes; returns how many came before EOF, an error
 * or the timeout. */
static size_t recv_exact(int fd, void *buf, size_t len)
{
    char *p = buf;
    size_t n = 0;
    while (n < len) {
        ssize_t k = recv(fd, p + n, len - n, 0);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            break;
        n += (size_t)k;
    }
    return n;
}

/* 0: EOF; 1: bytes came instead; -errno: error or timeout. */
static int recv_eof(int fd)
{
    char c;
    for (;;) {
        ssize_t k = recv(fd, &c, 1, 0);
        if (k < 0 && errno == EINTR)
            continue;
        if (k == 0)
            return 0;
        return k > 0 ? 1 : -errno;
    }
}

/* A port that was free a moment ago, for echo-server (which takes no 0:
 * it would print the port, but the brief is to pass one explicitly). */
static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    ck_assert_int_ge(fd, 0);
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    ck_assert_int_eq(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    socklen_t len = sizeof(a);
    ck_assert_int_eq(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    close(fd);
    return ntohs(a.sin_port);
}

/* ---- starting the examples -------------------------------------------- */

/* multicore-echo 0 THREADS; returns the port it printed. */
static int start_multicore(tu_child *c, int threads, char *host, size_t hsize)
{
    char nthreads[16];
    snprintf(nthreads, sizeof(nthreads), "%d", threads);
    char *argv[] = {MULTICORE_ECHO, "0", nthreads, NULL};
    spawn(c, argv, false);
    char line[256];
    bool ok = tu_child_read_line(c, line, sizeof(line), START_MS);
    char h[64];
    int port = 0, n = 0;
    TU_REQUIRE(ok && sscanf(line,
                            "multicore-echo listening on %63s port %d with %d "
                            "threads",
                            h, &port, &n) == 3,
               "multicore-echo printed '%s'", line);
    TU_REQUIRE(n == threads && port > 0, "multicore-echo printed '%s'", line);
    snprintf(host, hsize, "%s", h);
    return port;
}

/* echo-server PORT; returns the port it printed (which must be PORT). */
static int start_echo(tu_child *c, int port, bool capture_err, char *host,
                      size_t hsize)
{
    char arg[16];
    snprintf(arg, sizeof(arg), "%d", port);
    char *argv[] = {ECHO_SERVER, arg, NULL};
    spawn(c, argv, capture_err);
    char line[256];
    bool ok = tu_child_read_line(c, line, sizeof(line), START_MS);
    char h[64];
    int got = 0;
    TU_REQUIRE(ok && sscanf(line, "echo server listening on %63s port %d", h,
                            &got) == 2,
               "echo-server printed '%s'", line);
    TU_REQUIRE(got == port, "echo-server printed '%s', asked for port %d", line,
               port);
    snprintf(host, hsize, "%s", h);
    return got;
}

/* ---- multicore-echo ---------------------------------------------------- */

#define NCONNS 200

START_TEST(multicore_echo_serves_then_exits_0_on_sigterm_with_connections_open)
{
    tu_raise_nofile(NCONNS + 64);
    tu_child srv;
    char host[64];
    int port = start_multicore(&srv, 2, host, sizeof(host));

    static int fds[NCONNS];
    for (int i = 0; i < NCONNS; i++) {
        fds[i] = connect_to(host, port);
        TU_REQUIRE(fds[i] >= 0, "connect %d to %s:%d: %s", i, host, port,
                   strerror(errno));
        /* Distinct per connection: its index, then a patterned tail whose
         * length and content depend on it. */
        char msg[512], got[512];
        int head = snprintf(msg, sizeof(msg), "connection %d:", i);
        size_t len = (size_t)head + 16 + (size_t)i;
        tu_pattern(msg + head, 0, len - (size_t)head, (uint64_t)i + 1);
        TU_REQUIRE(send_all(fds[i], msg, len), "send %d: %s", i,
                   strerror(errno));
        size_t n = recv_exact(fds[i], got, len);
        TU_REQUIRE(n == len, "connection %d: %zu of %zu echoed bytes (%s)", i,
                   n, len, strerror(errno));
        TU_REQUIRE(memcmp(got, msg, len) == 0, "connection %d: echo differs",
                   i);
    }

    /* All 200 still open: the server must end every one of them. */
    long long t0 = tu_now_ms();
    TU_REQUIRE(kill(srv.pid, SIGTERM) == 0, "kill: %s", strerror(errno));
    for (int i = 0; i < NCONNS; i++) {
        int r = recv_eof(fds[i]);
        TU_REQUIRE(r == 0, "connection %d: %s instead of EOF after SIGTERM", i,
                   r == 1 ? "bytes" : strerror(-r));
        close(fds[i]);
    }
    int status = tu_child_reap(&srv, EXIT_MS - (int)(tu_now_ms() - t0));
    long long took = tu_now_ms() - t0;
    fprintf(stderr, "multicore-echo (200 open, 2 threads): SIGTERM to exit: "
                    "%lld ms\n",
            took);
    assert_exit(status, 0, "multicore-echo after SIGTERM");
    ck_assert_int_lt(took, EXIT_MS);
}
END_TEST

#define NSTUBBORN 5

START_TEST(multicore_echo_drops_peers_that_never_close_after_the_grace)
{
    tu_child srv;
    char host[64];
    int port = start_multicore(&srv, 2, host, sizeof(host));

    int fds[NSTUBBORN];
    for (int i = 0; i < NSTUBBORN; i++) {
        fds[i] = connect_to(host, port);
        TU_REQUIRE(fds[i] >= 0, "connect %d: %s", i, strerror(errno));
        char msg[32], got[32];
        int len = snprintf(msg, sizeof(msg), "stubborn %d", i);
        TU_REQUIRE(send_all(fds[i], msg, (size_t)len), "send: %s",
                   strerror(errno));
        TU_REQUIRE(recv_exact(fds[i], got, (size_t)len) == (size_t)len &&
                       memcmp(got, msg, (size_t)len) == 0,
                   "connection %d: no echo", i);
    }
    /* The test side never closes (nor reads) until the child is gone. */
    long long took;
    int status = stop(&srv, SIGTERM, "multicore-echo (peers never close)",
                      &took);
    for (int i = 0; i < NSTUBBORN; i++)
        close(fds[i]);
    assert_exit(status, 0, "multicore-echo after SIGTERM, peers open");
    /* It waited for its grace (1 s) rather than dropping at once. */
    ck_assert_int_ge(took, 900);
    ck_assert_int_lt(took, EXIT_MS);
}
END_TEST

/* ---- echo-server ------------------------------------------------------- */

START_TEST(echo_server_echoes_binary_bytes_exactly)
{
    tu_child srv;
    char host[64];
    int port = start_echo(&srv, free_port(), false, host, sizeof(host));
    int fd = connect_to(host, port);
    TU_REQUIRE(fd >= 0, "connect %s:%d: %s", host, port, strerror(errno));

    /* Every byte value: 0x00, 0xc0 (never valid UTF-8), 0xff... */
    unsigned char all[256];
    for (int i = 0; i < 256; i++)
        all[i] = (unsigned char)i;
    TU_REQUIRE(send_all(fd, all, sizeof(all)), "send: %s", strerror(errno));
    unsigned char want[7 + 256], got[sizeof(want)];
    memcpy(want, "hello\r\n", 7);
    memcpy(want + 7, all, sizeof(all));
    size_t n = recv_exact(fd, got, sizeof(got));
    TU_REQUIRE(n == sizeof(got), "got %zu of %zu bytes (%s)", n, sizeof(got),
               strerror(errno));
    size_t i = 0;
    while (i < sizeof(got) && got[i] == want[i])
        i++;
    TU_REQUIRE(i == sizeof(got), "byte %zu: got 0x%02x, want 0x%02x", i, got[i],
               want[i]);

    TU_REQUIRE(shutdown(fd, SHUT_WR) == 0, "shutdown: %s", strerror(errno));
    char bye[9];
    n = recv_exact(fd, bye, sizeof(bye));
    TU_REQUIRE(n == sizeof(bye) && memcmp(bye, "goodbye\r\n", 9) == 0,
               "after shutdown: %zu bytes, not goodbye", n);
    int r = recv_eof(fd);
    TU_REQUIRE(r == 0, "after goodbye: %s instead of EOF",
               r == 1 ? "bytes" : strerror(-r));
    close(fd);

    long long took;
    int status = stop(&srv, SIGTERM, "echo-server", &took);
    assert_exit(status, 0, "echo-server after SIGTERM");
}
END_TEST

START_TEST(echo_server_exits_1_with_a_message_when_the_port_is_taken)
{
    tu_child first, second;
    char host[64];
    int port = start_echo(&first, free_port(), false, host, sizeof(host));

    char arg[16];
    snprintf(arg, sizeof(arg), "%d", port);
    char *argv[] = {ECHO_SERVER, arg, NULL};
    spawn(&second, argv, true);
    char err[8192];
    tu_child_read_all(&second, second.err, err, sizeof(err), EXIT_MS);
    int status = tu_child_reap(&second, EXIT_MS);
    assert_exit(status, 1, "second echo-server on a taken port");
    TU_REQUIRE(strstr(err, "EADDRINUSE") != NULL,
               "second echo-server's stderr has no EADDRINUSE: '%s'", err);

    /* The first still serves. */
    int fd = connect_to(host, port);
    TU_REQUIRE(fd >= 0, "connect to the first: %s", strerror(errno));
    char hello[7];
    TU_REQUIRE(recv_exact(fd, hello, 7) == 7 &&
                   memcmp(hello, "hello\r\n", 7) == 0,
               "the first echo-server said no hello");
    close(fd);

    long long took;
    status = stop(&first, SIGTERM, "echo-server (port holder)", &took);
    assert_exit(status, 0, "first echo-server after SIGTERM");
}
END_TEST

START_TEST(echo_server_sigint_stops_it_cleanly)
{
    tu_child srv;
    char host[64];
    int port = start_echo(&srv, free_port(), false, host, sizeof(host));
    /* With a connection open: SIGINT ends it from the server's side. */
    int fd = connect_to(host, port);
    TU_REQUIRE(fd >= 0, "connect %s:%d: %s", host, port, strerror(errno));
    char hello[7];
    TU_REQUIRE(recv_exact(fd, hello, 7) == 7 &&
                   memcmp(hello, "hello\r\n", 7) == 0,
               "no hello");

    long long t0 = tu_now_ms();
    TU_REQUIRE(kill(srv.pid, SIGINT) == 0, "kill: %s", strerror(errno));
    int r = recv_eof(fd);
    TU_REQUIRE(r == 0, "after SIGINT: %s instead of EOF",
               r == 1 ? "bytes" : strerror(-r));
    close(fd);
    int status = tu_child_reap(&srv, EXIT_MS);
    fprintf(stderr, "echo-server: SIGINT to exit: %lld ms\n", tu_now_ms() - t0);
    assert_exit(status, 0, "echo-server after SIGINT");
}
END_TEST

/* ---- udp-echo-server ---------------------------------------------------- */

/* udp-echo-server 0 HOST; returns the port it printed. */
static int start_udp_echo(tu_child *c, const char *host, bool capture_err)
{
    char *argv[] = {UDP_ECHO, "0", (char *)host, NULL};
    spawn(c, argv, capture_err);
    char line[256], h[64];
    int port = 0;
    bool ok = tu_child_read_line(c, line, sizeof(line), START_MS);
    TU_REQUIRE(ok && sscanf(line, "udp echo server listening on %63s port %d",
                            h, &port) == 2,
               "udp-echo-server printed '%s'", line);
    TU_REQUIRE(strcmp(h, host) == 0 && port > 0,
               "udp-echo-server printed '%s' for %s", line, host);
    return port;
}

/* A plain UDP socket connected to the server, with a receive timeout. */
static int udp_client(int family, const char *host, int port)
{
    int fd = socket(family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    TU_REQUIRE(fd >= 0, "socket: %s", strerror(errno));
    struct timeval tv = {SOCK_TIMEOUT_S, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    struct sockaddr_storage ss = {0};
    socklen_t len;
    if (family == AF_INET6) {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
        a->sin6_family = AF_INET6;
        a->sin6_port = htons((uint16_t)port);
        inet_pton(AF_INET6, host, &a->sin6_addr);
        len = sizeof(*a);
    } else {
        struct sockaddr_in *a = (struct sockaddr_in *)&ss;
        a->sin_family = AF_INET;
        a->sin_port = htons((uint16_t)port);
        inet_pton(AF_INET, host, &a->sin_addr);
        len = sizeof(*a);
    }
    TU_REQUIRE(connect(fd, (struct sockaddr *)&ss, len) == 0, "connect: %s",
               strerror(errno));
    return fd;
}

/* Sends `len` bytes as one datagram and checks the same come back. */
static void udp_round_trip(int fd, const unsigned char *data, size_t len)
{
    TU_REQUIRE(send(fd, data, len, 0) == (ssize_t)len, "send %zu: %s", len,
               strerror(errno));
    unsigned char got[2048];
    ssize_t n = recv(fd, got, sizeof(got), 0);
    TU_REQUIRE(n == (ssize_t)len, "sent %zu bytes, got %zd back (%s)", len, n,
               n < 0 ? strerror(errno) : "");
    TU_REQUIRE(len == 0 || memcmp(got, data, len) == 0,
               "the %zu bytes came back changed", len);
}

START_TEST(udp_echo_server_echoes_datagrams_exactly_then_exits_0_on_sigterm)
{
    tu_child srv;
    int port = start_udp_echo(&srv, "127.0.0.1", false);
    int fd = udp_client(AF_INET, "127.0.0.1", port);
    unsigned char all[256], big[1400];
    for (int i = 0; i < 256; i++)
        all[i] = (unsigned char)i; /* every byte value, NUL first */
    for (size_t i = 0; i < sizeof(big); i++)
        big[i] = (unsigned char)(i * 7 + 3);
    udp_round_trip(fd, all, sizeof(all));
    udp_round_trip(fd, all, 0); /* an empty datagram comes back empty */
    udp_round_trip(fd, big, sizeof(big));
    close(fd);
    long long took;
    int status = stop(&srv, SIGTERM, "udp-echo-server", &took);
    assert_exit(status, 0, "udp-echo-server after SIGTERM");
}
END_TEST

START_TEST(udp_echo_server_serves_ipv6_and_stops_on_sigint)
{
    tu_child srv;
    int port = start_udp_echo(&srv, "::1", false);
    int fd = udp_client(AF_INET6, "::1", port);
    udp_round_trip(fd, (const unsigned char *)"over six", 8);
    close(fd);
    long long took;
    int status = stop(&srv, SIGINT, "udp-echo-server (::1)", &took);
    assert_exit(status, 0, "udp-echo-server after SIGINT");
}
END_TEST

START_TEST(udp_echo_server_exits_1_with_a_message_when_the_port_is_taken)
{
    int holder = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    TU_REQUIRE(bind(holder, (struct sockaddr *)&a, sizeof(a)) == 0, "bind: %s",
               strerror(errno));
    socklen_t len = sizeof(a);
    getsockname(holder, (struct sockaddr *)&a, &len);
    char arg[16];
    snprintf(arg, sizeof(arg), "%d", ntohs(a.sin_port));
    char *argv[] = {UDP_ECHO, arg, "127.0.0.1", NULL};
    tu_child c;
    spawn(&c, argv, true);
    char err[4096];
    tu_child_read_all(&c, c.err, err, sizeof(err), EXIT_MS);
    int status = tu_child_reap(&c, EXIT_MS);
    close(holder);
    assert_exit(status, 1, "udp-echo-server on a taken port");
    TU_REQUIRE(strstr(err, "EADDRINUSE") != NULL ||
                   strstr(err, "in use") != NULL,
               "udp-echo-server's stderr says nothing of the port: '%s'", err);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("examples");
    TCase *tc = tu_tcase("examples");
    tcase_set_timeout(tc, 30);
    tcase_add_test(
        tc, multicore_echo_serves_then_exits_0_on_sigterm_with_connections_open);
    tcase_add_test(tc,
                   multicore_echo_drops_peers_that_never_close_after_the_grace);
    tcase_add_test(tc, echo_server_echoes_binary_bytes_exactly);
    tcase_add_test(tc,
                   echo_server_exits_1_with_a_message_when_the_port_is_taken);
    tcase_add_test(tc, echo_server_sigint_stops_it_cleanly);
    tcase_add_test(
        tc, udp_echo_server_echoes_datagrams_exactly_then_exits_0_on_sigterm);
    tcase_add_test(tc, udp_echo_server_serves_ipv6_and_stops_on_sigint);
    tcase_add_test(
        tc, udp_echo_server_exits_1_with_a_message_when_the_port_is_taken);
    suite_add_tcase(s, tc);
    return tu_run_suite(s);
}
