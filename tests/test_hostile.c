/*
 * test_hostile.c - what a hostile peer or an exhausted machine does:
 * fd exhaustion on accept, writes to a vanished peer (SIGPIPE), resets.
 */
#include "internal.h"
#include "testutil.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

static int raw_connect(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    ck_assert_int_ge(fd, 0);
    struct sockaddr_in sin = {.sin_family = AF_INET,
                              .sin_port = htons((uint16_t)port)};
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ck_assert_int_eq(connect(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
    return fd;
}

/* ---- EMFILE ------------------------------------------------------------ */

typedef struct {
    weft_server *srv;
    int port;
    int accepted;
    int fillers[4096];
    int nfill;
    int clients[3];
    uint64_t turns_at_start;
} emfile_state;

static void emfile_conn(weft_server *srv, weft_stream *s, void *ctx)
{
    emfile_state *st = ctx;
    st->accepted++;
    tu_log("accepted");
    weft_stream_destroy(s);
    weft_server_close(srv);
}

static void recover(weft_timer *t, void *ctx)
{
    emfile_state *st = ctx;
    (void)t;
    uint64_t turns = tu_loop->turns - st->turns_at_start;
    /* 200 ms of a listener whose backlog cannot be accepted: a loop that
     * spins would turn many thousands of times; a shedding one a few. */
    ck_assert_msg(turns < 50, "loop turned %llu times while out of fds",
                  (unsigned long long)turns);
    ck_assert_int_eq(st->accepted, 0);
    /* The shed clients were closed by the server, not left hanging. */
    for (int i = 0; i < 3; i++) {
        char b;
        errno = 0;
        ssize_t r = recv(st->clients[i], &b, 1, MSG_DONTWAIT);
        ck_assert_msg(r == 0 || (r < 0 && errno != EAGAIN),
                      "client %d still connected (r=%zd errno=%d)", i, r,
                      errno);
        close(st->clients[i]);
    }
    for (int i = 0; i < st->nfill; i++)
        close(st->fillers[i]);
    st->nfill = 0;
    /* fds are back: the next connection is served. */
    st->clients[0] = raw_connect(st->port);
}

START_TEST(accept_sheds_connections_on_emfile_without_spinning_and_recovers)
{
    emfile_state st = {0};
    st.srv = tu_server(emfile_conn, &st, &st.port);
    for (int i = 0; i < 3; i++)
        st.clients[i] = raw_connect(st.port);
    /* Fill the fd table up to a lowered limit. */
    struct rlimit old, rl;
    getrlimit(RLIMIT_NOFILE, &old);
    int highest = 0;
    for (int fd = 0; fd < 1024; fd++)
        if (fcntl(fd, F_GETFD) >= 0)
            highest = fd;
    rl.rlim_cur = (rlim_t)highest + 9;
    rl.rlim_max = old.rlim_max;
    ck_assert_int_eq(setrlimit(RLIMIT_NOFILE, &rl), 0);
    int fd = open("/dev/null", O_RDONLY);
    ck_assert_int_ge(fd, 0);
    st.fillers[st.nfill++] = fd;
    while (st.nfill < 4096 && (fd = dup(st.fillers[0])) >= 0)
        st.fillers[st.nfill++] = fd;
    ck_assert_int_eq(errno, EMFILE);
    st.turns_at_start = tu_loop->turns;
    weft_set_timeout(tu_loop, 200, recover, &st);
    tu_run(5000);
    ck_assert_int_eq(setrlimit(RLIMIT_NOFILE, &old), 0);
    ck_assert_int_eq(st.accepted, 1);
    close(st.clients[0]);
}
END_TEST

/* ---- SIGPIPE ----------------------------------------------------------- */

typedef struct {
    int peer;
    int writes;
} pipe_state;

static void keep_writing(weft_stream *s, void *ctx);

static void write_more(weft_timer *t, void *ctx)
{
    (void)t;
    keep_writing(ctx, NULL);
}

static pipe_state pst;

static void keep_writing(weft_stream *s, void *ctx)
{
    (void)ctx;
    static char buf[65536];
    /* The peer is gone: these writes must fail with an error event, not
     * kill the process with SIGPIPE (the default action is in force). */
    if (weft_stream_ready_state(s) == WEFT_CLOSED)
        return;
    int r = weft_stream_write(s, buf, sizeof(buf));
    pst.writes++;
    if (r == 1 && pst.writes < 1000)
        weft_set_timeout(tu_loop, 1, write_more, s);
}

static void close_peer_then_write(weft_server *srv, weft_stream *s, void *ctx)
{
    (void)ctx;
    weft_server_close(srv);
    /* SO_LINGER 0: the peer resets instead of closing politely. */
    struct linger lg = {1, 0};
    setsockopt(pst.peer, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
    close(pst.peer);
    weft_stream_on_connect(s, keep_writing, NULL);
}

static void log_err(weft_stream *s, int err, const char *msg, void *ctx)
{
    (void)s;
    (void)msg;
    (void)ctx;
    tu_logf("error:%s", err == WEFT_EPIPE || err == WEFT_ECONNRESET
                            ? "EPIPE|ECONNRESET"
                            : weft_err_name(err));
}

static void log_close(weft_stream *s, bool had_error, void *ctx)
{
    (void)s;
    (void)ctx;
    tu_logf("close:%d", had_error);
}

static void hook_errors(weft_server *srv, weft_stream *s, void *ctx)
{
    (void)srv;
    (void)ctx;
    weft_stream_on_error(s, log_err, NULL);
    weft_stream_on_close(s, log_close, NULL);
}

START_TEST(writing_to_a_reset_peer_is_an_error_event_not_sigpipe)
{
    int port;
    weft_server *srv = tu_server(close_peer_then_write, NULL, &port);
    weft_server_on_connection(srv, hook_errors, NULL);
    pst.peer = raw_connect(port);
    tu_run(5000);
    ck_assert_str_eq(tu_log_str(), "error:EPIPE|ECONNRESET,close:1");
}
END_TEST

int main(void)
{
    Suite *s = suite_create("hostile");
    TCase *tc = tu_tcase("hostile");
    tcase_add_test(
        tc, accept_sheds_connections_on_emfile_without_spinning_and_recovers);
    tcase_add_test(tc, writing_to_a_reset_peer_is_an_error_event_not_sigpipe);
    suite_add_tcase(s, tc);
    return tu_run_suite(s);
}
