/*
 * test_open.c - the escape hatches: weft_stream_open() (a stream over an
 * fd the program has, Node's new net.Socket({fd})), and
 * weft_stream_fileno() / weft_server_fileno().
 */
#include "testutil.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static void make_socketpair(int fds[2])
{
    /* Blocking and inheritable, as a program might hand them over:
     * weft_stream_open() fixes both. */
    ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, fds), 0);
}

static void assert_open(int fd)
{
    ck_assert_int_ge(fcntl(fd, F_GETFD), 0);
}

static void log_connect(weft_stream *s, void *ctx)
{
    (void)s;
    (void)ctx;
    tu_log("connect");
}

static void log_error(weft_stream *s, int err, const char *msg, void *ctx)
{
    (void)s;
    (void)ctx;
    tu_logf("error %s %s", weft_err_name(err), msg);
}

/* ---- a 16 MiB echo over a socketpair, both ends weft streams ---------- */

#define ECHO_TOTAL (16u << 20)
#define ECHO_SEED  77
#define ECHO_CHUNK 65536

typedef struct echo {
    weft_stream *a, *b;
    uint64_t sent, received;
    int a_waits, b_pauses, b_resumes, closes;
    bool a_ended;
    char buf[ECHO_CHUNK];
} echo;

/* A writes the pattern until write() says 0, then waits for 'drain'. */
static void a_write_more(echo *e)
{
    while (e->sent < ECHO_TOTAL) {
        size_t n = ECHO_TOTAL - e->sent < ECHO_CHUNK
                       ? (size_t)(ECHO_TOTAL - e->sent)
                       : ECHO_CHUNK;
        tu_pattern(e->buf, e->sent, n, ECHO_SEED);
        int r = weft_stream_write(e->a, e->buf, n);
        ck_assert_int_ge(r, 0);
        e->sent += n;
        if (r == 0) {
            e->a_waits++;
            return;
        }
    }
    ck_assert_int_eq(weft_stream_end(e->a, NULL, 0), 0);
}

static void a_drain(weft_stream *s, void *ctx)
{
    (void)s;
    a_write_more(ctx);
}

static void a_data(weft_stream *s, const char *data, size_t len, void *ctx)
{
    (void)s;
    echo *e = ctx;
    ck_assert_uint_eq(tu_pattern_diff(data, e->received, len, ECHO_SEED), len);
    e->received += len;
}

static void a_end(weft_stream *s, void *ctx)
{
    (void)s;
    echo *e = ctx;
    e->a_ended = true;
}

/* B echoes, pausing while its queue is over the kernel's room. A starts
 * paused so that B surely meets that; it reads from B's first pause on. */
static void b_data(weft_stream *s, const char *data, size_t len, void *ctx)
{
    echo *e = ctx;
    if (weft_stream_write(s, data, len) == 0) {
        weft_stream_pause(s);
        e->b_pauses++;
        weft_stream_resume(e->a);
    }
}

static void b_drain(weft_stream *s, void *ctx)
{
    echo *e = ctx;
    e->b_resumes++;
    weft_stream_resume(s);
}

static void count_close(weft_stream *s, bool had_error, void *ctx)
{
    (void)s;
    echo *e = ctx;
    ck_assert(!had_error);
    e->closes++;
}

START_TEST(socketpair_streams_echo_16mib_with_backpressure)
{
    int fds[2];
    make_socketpair(fds);
    echo *e = calloc(1, sizeof(*e));
    ck_assert_ptr_nonnull(e);
    ck_assert_int_eq(weft_stream_open(tu_loop, fds[0], &e->a), 0);
    ck_assert_int_eq(weft_stream_open(tu_loop, fds[1], &e->b), 0);
    ck_assert_int_eq(weft_stream_ready_state(e->a), WEFT_OPEN);
    ck_assert_int_eq(weft_stream_fileno(e->a), fds[0]);
    ck_assert_ptr_null(weft_stream_server(e->b));
    /* weft's now: non-blocking and close-on-exec. */
    ck_assert(fcntl(fds[0], F_GETFL) & O_NONBLOCK);
    ck_assert(fcntl(fds[1], F_GETFD) & FD_CLOEXEC);
    weft_stream_on_connect(e->a, log_connect, NULL);
    weft_stream_on_connect(e->b, log_connect, NULL);
    weft_stream_on_error(e->a, log_error, NULL);
    weft_stream_on_error(e->b, log_error, NULL);
    weft_stream_on_data(e->a, a_data, e);
    weft_stream_on_drain(e->a, a_drain, e);
    weft_stream_on_end(e->a, a_end, e);
    weft_stream_on_close(e->a, count_close, e);
    weft_stream_on_data(e->b, b_data, e);
    weft_stream_on_drain(e->b, b_drain, e);
    weft_stream_on_close(e->b, count_close, e);
    weft_stream_pause(e->a);
    a_write_more(e);
    tu_run(20000);
    ck_assert_str_eq(tu_log_str(), ""); /* no 'connect', no 'error' */
    ck_assert_uint_eq(e->sent, ECHO_TOTAL);
    ck_assert_uint_eq(e->received, ECHO_TOTAL);
    ck_assert(e->a_ended);
    ck_assert_int_eq(e->closes, 2);
    /* Backpressure was met on both sides and honoured. */
    ck_assert_int_gt(e->a_waits, 0);
    ck_assert_int_gt(e->b_pauses, 0);
    ck_assert_int_eq(e->b_resumes, e->b_pauses);
    /* Closed with the streams: the fds were weft's. */
    ck_assert_int_lt(fcntl(fds[0], F_GETFD), 0);
    ck_assert_int_lt(fcntl(fds[1], F_GETFD), 0);
    free(e);
}
END_TEST

/* ---- reading starts on the next turn ---------------------------------- */

static void log_data(weft_stream *s, const char *data, size_t len, void *ctx)
{
    (void)s;
    (void)ctx;
    tu_logf("data %.*s", (int)len, data);
}

static void log_end(weft_stream *s, void *ctx)
{
    (void)s;
    (void)ctx;
    tu_log("end");
}

static void log_close(weft_stream *s, bool had_error, void *ctx)
{
    (void)s;
    (void)ctx;
    tu_logf("close %d", had_error);
}

START_TEST(listeners_added_after_open_see_every_byte)
{
    int fds[2];
    make_socketpair(fds);
    /* Everything the peer will ever send is waiting before the open. */
    ck_assert_int_eq(write(fds[1], "hello", 5), 5);
    ck_assert_int_eq(shutdown(fds[1], SHUT_WR), 0);
    weft_stream *s;
    ck_assert_int_eq(weft_stream_open(tu_loop, fds[0], &s), 0);
    ck_assert_int_eq(weft_stream_ready_state(s), WEFT_OPEN);
    weft_stream_on_connect(s, log_connect, NULL);
    weft_stream_on_data(s, log_data, NULL);
    weft_stream_on_end(s, log_end, NULL);
    weft_stream_on_close(s, log_close, NULL);
    tu_run(2000);
    ck_assert_str_eq(tu_log_str(), "data hello,end,close 0");
    close(fds[1]);
}
END_TEST

START_TEST(paused_right_after_open_reads_nothing_until_resumed)
{
    int fds[2];
    make_socketpair(fds);
    ck_assert_int_eq(write(fds[1], "x", 1), 1);
    weft_stream *s;
    ck_assert_int_eq(weft_stream_open(tu_loop, fds[0], &s), 0);
    weft_stream_pause(s);
    weft_stream_on_data(s, log_data, NULL);
    weft_stream_on_close(s, log_close, NULL);
    for (int i = 0; i < 3; i++)
        weft_loop_run_mode(tu_loop, WEFT_RUN_NOWAIT);
    ck_assert_str_eq(tu_log_str(), "");
    weft_stream_resume(s);
    close(fds[1]);
    tu_run(2000);
    ck_assert_str_eq(tu_log_str(), "data x,close 0");
}
END_TEST

/* ---- a TCP connection made outside weft ------------------------------- */

static void server_says_hi(weft_server *srv, weft_stream *s, void *ctx)
{
    (void)ctx;
    weft_stream_end_string(s, "hi", NULL);
    weft_server_close(srv);
}

START_TEST(adopted_tcp_connection_reads_and_is_closed_with_the_stream)
{
    int port;
    weft_server *srv = tu_server(server_says_hi, NULL, &port);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    ck_assert_int_ge(fd, 0);
    struct sockaddr_in sin = {.sin_family = AF_INET,
                              .sin_port = htons((uint16_t)port)};
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ck_assert_int_eq(connect(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
    weft_stream *s;
    ck_assert_int_eq(weft_stream_open(tu_loop, fd, &s), 0);
    ck_assert_str_eq(weft_stream_remote_address(s), "127.0.0.1");
    ck_assert_int_eq(weft_stream_remote_port(s), port);
    weft_stream_on_connect(s, log_connect, NULL);
    weft_stream_on_data(s, log_data, NULL);
    weft_stream_on_end(s, log_end, NULL);
    weft_stream_on_close(s, log_close, NULL);
    tu_run(5000);
    ck_assert_str_eq(tu_log_str(), "data hi,end,close 0");
    (void)srv;
}
END_TEST

/* ---- refusals --------------------------------------------------------- */

/* Refused, *out cleared, and the fd as it was: open, flags unchanged. */
static void assert_refused(int fd, int want)
{
    int fl = fcntl(fd, F_GETFL), fdfl = fcntl(fd, F_GETFD);
    weft_stream *s = (weft_stream *)&fl;
    ck_assert_int_eq(weft_stream_open(tu_loop, fd, &s), want);
    ck_assert_ptr_null(s);
    assert_open(fd);
    ck_assert_int_eq(fcntl(fd, F_GETFL), fl);
    ck_assert_int_eq(fcntl(fd, F_GETFD), fdfl);
}

START_TEST(open_refuses_what_is_not_a_connected_stream_socket)
{
    int p[2];
    ck_assert_int_eq(pipe(p), 0);
    assert_refused(p[0], WEFT_ENOTSOCK);
    close(p[0]);
    close(p[1]);

    int udp = socket(AF_INET, SOCK_DGRAM, 0);
    assert_refused(udp, WEFT_EINVAL);
    close(udp);

    int sp[2];
    ck_assert_int_eq(socketpair(AF_UNIX, SOCK_SEQPACKET, 0, sp), 0);
    assert_refused(sp[0], WEFT_EINVAL);
    close(sp[0]);
    close(sp[1]);

    int tcp = socket(AF_INET, SOCK_STREAM, 0);
    assert_refused(tcp, WEFT_ENOTCONN);
    struct sockaddr_in sin = {.sin_family = AF_INET};
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ck_assert_int_eq(bind(tcp, (struct sockaddr *)&sin, sizeof(sin)), 0);
    ck_assert_int_eq(listen(tcp, 1), 0);
    assert_refused(tcp, WEFT_ENOTCONN); /* a listener: use listen_fd */
    close(tcp);

    weft_stream *s = (weft_stream *)&sin;
    ck_assert_int_eq(weft_stream_open(tu_loop, -1, &s), WEFT_EBADF);
    ck_assert_ptr_null(s);
    ck_assert_int_eq(weft_stream_open(tu_loop, tcp, &s), WEFT_EBADF);
    ck_assert_int_eq(weft_stream_open(tu_loop, 0, NULL), WEFT_EINVAL);
    ck_assert(!weft_loop_alive(tu_loop));
}
END_TEST

/* ---- fileno ----------------------------------------------------------- */

/* An option weft does not wrap, set and read back through the fd. */
static void assert_fd_takes_options(int fd)
{
    int v = 1234;
    ck_assert_int_eq(
        setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &v, sizeof(v)), 0);
    v = 0;
    socklen_t len = sizeof(v);
    ck_assert_int_eq(getsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &v, &len),
                     0);
    ck_assert_int_eq(v, 1234);
}

static void fileno_on_connect(weft_stream *s, void *ctx)
{
    weft_server *srv = ctx;
    int fd = weft_stream_fileno(s);
    ck_assert_int_ge(fd, 0);
    assert_fd_takes_options(fd);
    weft_stream_destroy(s);
    ck_assert_int_eq(weft_stream_fileno(s), WEFT_EBADF);
    weft_server_close(srv);
    tu_log("connect");
}

static void ignore_connection(weft_server *srv, weft_stream *s, void *ctx)
{
    (void)srv;
    (void)s;
    (void)ctx;
}

START_TEST(fileno_of_connected_stream_and_listening_server)
{
    weft_server *srv = weft_create_server(tu_loop, ignore_connection, NULL);
    ck_assert_int_eq(weft_server_fileno(srv), WEFT_EBADF);
    int port = tu_listen(srv, "127.0.0.1");
    int sfd = weft_server_fileno(srv);
    ck_assert_int_ge(sfd, 0);
    int acc = 0;
    socklen_t len = sizeof(acc);
    ck_assert_int_eq(getsockopt(sfd, SOL_SOCKET, SO_ACCEPTCONN, &acc, &len), 0);
    ck_assert_int_eq(acc, 1);
    assert_fd_takes_options(sfd);

    weft_stream *fresh = weft_stream_new(tu_loop);
    ck_assert_int_eq(weft_stream_fileno(fresh), WEFT_EBADF);
    weft_stream_destroy(fresh);

    weft_stream *s;
    ck_assert_int_eq(weft_create_connection(tu_loop, port, "127.0.0.1", &s), 0);
    ck_assert_int_eq(weft_stream_fileno(s), WEFT_EBADF); /* connecting */
    weft_stream_on_connect(s, fileno_on_connect, srv);
    tu_run(5000);
    ck_assert_str_eq(tu_log_str(), "connect");
    ck_assert_int_eq(weft_stream_fileno(NULL), WEFT_EINVAL);
    ck_assert_int_eq(weft_server_fileno(NULL), WEFT_EINVAL);
}
END_TEST

static void server_fileno_after_close(weft_server *srv, void *ctx)
{
    (void)ctx;
    ck_assert_int_eq(weft_server_fileno(srv), WEFT_EBADF);
    tu_log("close");
}

START_TEST(server_fileno_is_ebadf_once_closed)
{
    weft_server *srv = weft_create_server(tu_loop, ignore_connection, NULL);
    tu_listen(srv, "127.0.0.1");
    ck_assert_int_ge(weft_server_fileno(srv), 0);
    weft_server_on_close(srv, server_fileno_after_close, NULL);
    ck_assert_int_eq(weft_server_close(srv), 0);
    ck_assert_int_eq(weft_server_fileno(srv), WEFT_EBADF);
    tu_run(2000);
    ck_assert_str_eq(tu_log_str(), "close");
}
END_TEST

int main(void)
{
    Suite *s = suite_create("open");
    TCase *tc = tu_tcase("open");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, socketpair_streams_echo_16mib_with_backpressure);
    tcase_add_test(tc, listeners_added_after_open_see_every_byte);
    tcase_add_test(tc, paused_right_after_open_reads_nothing_until_resumed);
    tcase_add_test(tc,
                   adopted_tcp_connection_reads_and_is_closed_with_the_stream);
    tcase_add_test(tc, open_refuses_what_is_not_a_connected_stream_socket);
    tcase_add_test(tc, fileno_of_connected_stream_and_listening_server);
    tcase_add_test(tc, server_fileno_is_ebadf_once_closed);
    suite_add_tcase(s, tc);
    return tu_run_suite(s);
}
