/*
 * test_destroy.c - destroy() and end() from inside every listener, on
 * client and server-side streams; destroy twice, before connect
 * completes, during a name lookup, on a stream that never connected; and
 * the EventEmitter rules the contract names: a listener removed by
 * another of the same event is not called by the emit in progress, one
 * added during an emit waits for the next, once-listeners run once.
 *
 * In every case 'close' must come exactly once and be the last event:
 * each stream's recorder fails the test if anything arrives after it.
 */
#include "testutil.h"

#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define BIG (4 * 1024 * 1024)

static const char *state(weft_stream *s)
{
    return weft_ready_state_name(weft_stream_ready_state(s));
}

enum trigger { T_CONNECT, T_DATA, T_END, T_DRAIN, T_TIMEOUT, T_ERROR, T_CLOSE };
enum action { A_DESTROY, A_END };
enum side { CLIENT, SERVER };

/* Records one stream's events; acts once inside the `trigger` listener. */
typedef struct rec {
    const char *name;
    weft_stream *s;
    tu_slog log;
    unsigned closes;
    bool closed;
    bool had_error;
    int trigger; /* -1: never act */
    int action;
    bool acted;
    /* script */
    bool write_on_connect; /* "x" */
    bool end_on_connect;
    bool big_write_on_connect;
    uint64_t timeout_ms;
    int raw_fd; /* a raw peer to reset from our 'connect', or -1 */
} rec;

static void rec_init(rec *r, const char *name)
{
    memset(r, 0, sizeof(*r));
    r->name = name;
    r->trigger = -1;
    r->raw_fd = -1;
}

static void not_closed(rec *r, const char *event)
{
    ck_assert_msg(!r->closed, "%s: '%s' after 'close' (log %s)", r->name, event,
                  r->log.buf);
}

static void act(rec *r, weft_stream *s, int trigger)
{
    if (r->trigger != trigger || r->acted)
        return;
    r->acted = true;
    if (r->action == A_DESTROY) {
        weft_stream_destroy(s);
        ck_assert_str_eq(state(s), "closed");
        /* Nothing is emitted from inside destroy(). */
        ck_assert(!r->closed);
    } else {
        ck_assert_int_eq(weft_stream_end(s, NULL, 0), 0);
    }
}

static void r_connect(weft_stream *s, void *ctx)
{
    rec *r = ctx;
    not_closed(r, "connect");
    tu_slog_add(&r->log, "connect");
    if (r->timeout_ms)
        ck_assert_int_eq(weft_stream_set_timeout(s, r->timeout_ms), 0);
    if (r->write_on_connect)
        ck_assert_int_ge(weft_stream_write(s, "x", 1), 0);
    if (r->big_write_on_connect) {
        char *big = calloc(1, BIG);
        ck_assert_ptr_nonnull(big);
        /* Must queue, or there is no 'drain' to act in. */
        ck_assert_int_eq(weft_stream_write(s, big, BIG), 0);
        free(big);
    }
    if (r->end_on_connect)
        ck_assert_int_eq(weft_stream_end(s, NULL, 0), 0);
    if (r->raw_fd >= 0) {
        /* Reset the connection: SO_LINGER 0 makes close() send RST. */
        struct linger lg = {1, 0};
        ck_assert_int_eq(
            setsockopt(r->raw_fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg)), 0);
        close(r->raw_fd);
        r->raw_fd = -1;
    }
    act(r, s, T_CONNECT);
}

static void r_data(weft_stream *s, const char *d, size_t n, void *ctx)
{
    (void)d;
    (void)n;
    rec *r = ctx;
    not_closed(r, "data");
    /* Several chunks of one write log once. */
    if (r->log.len < 4 || strcmp(r->log.buf + r->log.len - 4, "data") != 0)
        tu_slog_add(&r->log, "data");
    act(r, s, T_DATA);
}

static void r_end(weft_stream *s, void *ctx)
{
    rec *r = ctx;
    not_closed(r, "end");
    tu_slog_add(&r->log, "end");
    act(r, s, T_END);
}

static void r_drain(weft_stream *s, void *ctx)
{
    rec *r = ctx;
    not_closed(r, "drain");
    tu_slog_add(&r->log, "drain");
    act(r, s, T_DRAIN);
}

static void r_timeout(weft_stream *s, void *ctx)
{
    rec *r = ctx;
    not_closed(r, "timeout");
    tu_slog_add(&r->log, "timeout");
    act(r, s, T_TIMEOUT);
}

static void r_error(weft_stream *s, int err, const char *msg, void *ctx)
{
    rec *r = ctx;
    not_closed(r, "error");
    ck_assert_ptr_nonnull(msg);
    tu_slog_add(&r->log, "error:%s", weft_err_name(err));
    act(r, s, T_ERROR);
}

static void r_close(weft_stream *s, bool had_error, void *ctx)
{
    rec *r = ctx;
    not_closed(r, "close");
    r->closes++;
    r->had_error = had_error;
    tu_slog_add(&r->log, "close:%d", had_error);
    ck_assert_str_eq(state(s), "closed");
    act(r, s, T_CLOSE);
    r->closed = true;
}

static void rec_attach(rec *r, weft_stream *s)
{
    r->s = s;
    weft_stream_on_connect(s, r_connect, r);
    weft_stream_on_data(s, r_data, r);
    weft_stream_on_end(s, r_end, r);
    weft_stream_on_drain(s, r_drain, r);
    weft_stream_on_timeout(s, r_timeout, r);
    weft_stream_on_error(s, r_error, r);
    weft_stream_on_close(s, r_close, r);
}

static void rec_connection(weft_server *srv, weft_stream *s, void *ctx)
{
    weft_server_close(srv);
    rec_attach(ctx, s);
}

/* A port nothing listens on: bound by a server that is closed again. */
static int closed_port(void)
{
    weft_server *srv = weft_create_server(tu_loop, NULL, NULL);
    int port = tu_listen(srv, "127.0.0.1");
    ck_assert_int_eq(weft_server_close(srv), 0);
    return port;
}

/*
 * One connection. `who` acts with `action` inside its `trigger`
 * listener; its log must be `expect`. The peer must close once, cleanly.
 */
static void run_case(int who, int trigger, int action, const char *expect)
{
    rec cl, sv;
    rec_init(&cl, "client");
    rec_init(&sv, "server");
    rec *me = who == CLIENT ? &cl : &sv;
    rec *peer = who == CLIENT ? &sv : &cl;
    me->trigger = trigger;
    me->action = action;
    switch (trigger) {
    case T_DATA:
        peer->write_on_connect = true;
        break;
    case T_END:
    case T_CLOSE:
        peer->end_on_connect = true;
        break;
    case T_DRAIN:
        me->big_write_on_connect = true;
        break;
    case T_TIMEOUT:
        me->timeout_ms = 30;
        break;
    }

    weft_stream *c;
    if (trigger == T_ERROR) {
        ck_assert_int_eq(who, CLIENT);
        int port = closed_port();
        ck_assert_int_eq(weft_create_connection(tu_loop, port, "127.0.0.1", &c),
                         0);
        rec_attach(&cl, c);
        tu_run(10000);
        ck_assert_str_eq(cl.log.buf, expect);
        ck_assert_uint_eq(cl.closes, 1);
        return;
    }
    weft_server *srv = weft_create_server(tu_loop, rec_connection, &sv);
    int port = tu_listen(srv, "127.0.0.1");
    ck_assert_int_eq(weft_create_connection(tu_loop, port, "127.0.0.1", &c), 0);
    rec_attach(&cl, c);
    tu_run(10000);

    ck_assert_msg(me->acted, "%s never saw its trigger (log %s)", me->name,
                  me->log.buf);
    ck_assert_str_eq(me->log.buf, expect);
    ck_assert_uint_eq(me->closes, 1);
    ck_assert_uint_eq(peer->closes, 1);
    size_t n = peer->log.len;
    ck_assert_msg(n >= 7 && strcmp(peer->log.buf + n - 7, "close:0") == 0,
                  "%s: log %s", peer->name, peer->log.buf);
}

#define CASE(name, who, trigger, action, expect)                               \
    START_TEST(name)                                                           \
    {                                                                          \
        run_case(who, trigger, action, expect);                                \
    }                                                                          \
    END_TEST

/* ---- destroy() inside each listener ---------------------------------- */

CASE(destroy_inside_client_connect_closes_once_without_error, CLIENT, T_CONNECT,
     A_DESTROY, "connect,close:0")
CASE(destroy_inside_server_connect_closes_once_without_error, SERVER, T_CONNECT,
     A_DESTROY, "connect,close:0")
CASE(destroy_inside_client_data_emits_nothing_but_close, CLIENT, T_DATA,
     A_DESTROY, "connect,data,close:0")
CASE(destroy_inside_server_data_emits_nothing_but_close, SERVER, T_DATA,
     A_DESTROY, "connect,data,close:0")
CASE(destroy_inside_client_end_closes_once, CLIENT, T_END, A_DESTROY,
     "connect,end,close:0")
CASE(destroy_inside_server_end_closes_once, SERVER, T_END, A_DESTROY,
     "connect,end,close:0")
CASE(destroy_inside_client_drain_closes_once, CLIENT, T_DRAIN, A_DESTROY,
     "connect,drain,close:0")
CASE(destroy_inside_server_drain_closes_once, SERVER, T_DRAIN, A_DESTROY,
     "connect,drain,close:0")
CASE(destroy_inside_client_timeout_closes_once, CLIENT, T_TIMEOUT, A_DESTROY,
     "connect,timeout,close:0")
CASE(destroy_inside_server_timeout_closes_once, SERVER, T_TIMEOUT, A_DESTROY,
     "connect,timeout,close:0")
CASE(destroy_inside_error_after_refused_connect_closes_once_with_error, CLIENT,
     T_ERROR, A_DESTROY, "error:ECONNREFUSED,close:1")
CASE(destroy_inside_close_is_a_no_op, CLIENT, T_CLOSE, A_DESTROY,
     "connect,end,close:0")
CASE(destroy_inside_server_close_is_a_no_op, SERVER, T_CLOSE, A_DESTROY,
     "connect,end,close:0")

/* ---- end() inside each listener -------------------------------------- */

CASE(end_inside_client_connect_half_closes_then_closes_once, CLIENT, T_CONNECT,
     A_END, "connect,end,close:0")
CASE(end_inside_server_connect_half_closes_then_closes_once, SERVER, T_CONNECT,
     A_END, "connect,end,close:0")
CASE(end_inside_client_data_half_closes_then_closes_once, CLIENT, T_DATA, A_END,
     "connect,data,end,close:0")
CASE(end_inside_server_data_half_closes_then_closes_once, SERVER, T_DATA, A_END,
     "connect,data,end,close:0")
CASE(end_inside_client_end_closes_once, CLIENT, T_END, A_END,
     "connect,end,close:0")
CASE(end_inside_server_end_closes_once, SERVER, T_END, A_END,
     "connect,end,close:0")
CASE(end_inside_client_drain_closes_once, CLIENT, T_DRAIN, A_END,
     "connect,drain,end,close:0")
CASE(end_inside_server_drain_closes_once, SERVER, T_DRAIN, A_END,
     "connect,drain,end,close:0")
CASE(end_inside_client_timeout_closes_once, CLIENT, T_TIMEOUT, A_END,
     "connect,timeout,end,close:0")
CASE(end_inside_server_timeout_closes_once, SERVER, T_TIMEOUT, A_END,
     "connect,timeout,end,close:0")
CASE(end_inside_error_is_a_no_op_and_close_follows_once, CLIENT, T_ERROR, A_END,
     "error:ECONNREFUSED,close:1")
CASE(end_inside_close_is_a_no_op, CLIENT, T_CLOSE, A_END, "connect,end,close:0")

/* ---- 'error' on a server-side stream: the peer resets ----------------- */

static void reset_case(int action)
{
    rec sv;
    rec_init(&sv, "server");
    sv.trigger = T_ERROR;
    sv.action = action;
    weft_server *srv = weft_create_server(tu_loop, rec_connection, &sv);
    int port = tu_listen(srv, "127.0.0.1");
    /* A raw blocking peer: the server-side stream resets it from its
     * 'connect' listener (r_connect), then reads ECONNRESET. */
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    ck_assert_int_ge(fd, 0);
    struct sockaddr_in sin = {.sin_family = AF_INET,
                              .sin_port = htons((uint16_t)port),
                              .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    ck_assert_int_eq(connect(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
    sv.raw_fd = fd;
    tu_run(10000);
    ck_assert_int_eq(sv.raw_fd, -1);
    ck_assert_str_eq(sv.log.buf, "connect,error:ECONNRESET,close:1");
    ck_assert_uint_eq(sv.closes, 1);
}

START_TEST(destroy_inside_server_error_after_peer_reset_closes_once)
{
    reset_case(A_DESTROY);
}
END_TEST

START_TEST(end_inside_server_error_after_peer_reset_is_a_no_op)
{
    reset_case(A_END);
}
END_TEST

/* ---- destroy twice, early, during a lookup, never connected ----------- */

static void destroy_twice(weft_stream *s, void *ctx)
{
    (void)ctx;
    weft_stream_destroy(s);
    weft_stream_destroy(s);
    ck_assert_int_eq(weft_stream_write(s, "x", 1), WEFT_ESTATE);
    ck_assert_int_eq(weft_stream_end(s, NULL, 0), 0);
    weft_stream_destroy(s);
}

START_TEST(destroy_twice_is_a_no_op_and_close_comes_once)
{
    rec cl, sv;
    rec_init(&cl, "client");
    rec_init(&sv, "server");
    weft_server *srv = weft_create_server(tu_loop, rec_connection, &sv);
    int port = tu_listen(srv, "127.0.0.1");
    weft_stream *c;
    ck_assert_int_eq(weft_create_connection(tu_loop, port, "127.0.0.1", &c), 0);
    weft_stream_on_connect(c, destroy_twice, NULL);
    rec_attach(&cl, c);
    tu_run(10000);
    ck_assert_str_eq(cl.log.buf, "connect,close:0");
    ck_assert_uint_eq(sv.closes, 1);
}
END_TEST

static void close_server_on_close(weft_stream *s, bool had_error, void *ctx)
{
    (void)s;
    (void)had_error;
    weft_server_close(ctx);
}

START_TEST(destroy_before_connect_completes_emits_close_without_connect)
{
    rec cl;
    rec_init(&cl, "client");
    weft_server *srv = weft_create_server(tu_loop, NULL, NULL);
    int port = tu_listen(srv, "127.0.0.1");
    weft_stream *c;
    ck_assert_int_eq(weft_create_connection(tu_loop, port, "127.0.0.1", &c), 0);
    rec_attach(&cl, c);
    weft_stream_on_close(c, close_server_on_close, srv);
    ck_assert_str_eq(state(c), "opening");
    ck_assert_int_eq(weft_stream_write(c, "queued", 6), 0);
    weft_stream_destroy(c);
    ck_assert_str_eq(state(c), "closed");
    weft_stream_destroy(c);
    ck_assert_str_eq(cl.log.buf, ""); /* nothing from inside destroy() */
    tu_run(10000);
    ck_assert_str_eq(cl.log.buf, "close:0");
}
END_TEST

static void keep_alive_timer(weft_timer *t, void *ctx)
{
    (void)t;
    (void)ctx;
}

START_TEST(destroy_during_localhost_lookup_emits_close_without_connect)
{
    rec cl;
    rec_init(&cl, "client");
    /* Something is listening where "localhost" leads, so a lookup that
     * went on after destroy() would connect and log it. */
    weft_server *srv = weft_create_server(tu_loop, NULL, NULL);
    int port = tu_listen(srv, "127.0.0.1");
    weft_stream *c;
    ck_assert_int_eq(weft_create_connection(tu_loop, port, "localhost", &c), 0);
    rec_attach(&cl, c);
    weft_stream_on_close(c, close_server_on_close, srv);
    ck_assert_str_eq(state(c), "opening");
    weft_stream_destroy(c);
    ck_assert_str_eq(state(c), "closed");
    /* Keep the loop turning long enough for the lookup's result to come
     * back and be dropped (ASan catches a touch of the freed stream). */
    weft_set_timeout(tu_loop, 200, keep_alive_timer, NULL);
    tu_run(10000);
    ck_assert_str_eq(cl.log.buf, "close:0");
}
END_TEST

START_TEST(destroy_on_a_never_connected_stream_emits_close_once)
{
    rec cl;
    rec_init(&cl, "client");
    weft_stream *s = weft_stream_new(tu_loop);
    ck_assert_ptr_nonnull(s);
    rec_attach(&cl, s);
    weft_stream_destroy(s);
    weft_stream_destroy(s);
    tu_run(10000);
    ck_assert_str_eq(cl.log.buf, "close:0");
}
END_TEST

/* ---- listener lists: removal, addition and once during an emit -------- */

typedef struct lis {
    weft_stream *s;
    unsigned acks;
} lis;

static void l_a(weft_stream *s, void *ctx);
static void l_b(weft_stream *s, void *ctx);
static void l_c(weft_stream *s, void *ctx);

static void l_a(weft_stream *s, void *ctx)
{
    (void)ctx;
    tu_log("a");
    ck_assert_int_eq(weft_stream_off_connect(s, l_b, NULL), 0);
    ck_assert_int_eq(weft_stream_off_connect(s, l_b, NULL), WEFT_ENOENT);
}

static void l_b(weft_stream *s, void *ctx)
{
    (void)s;
    (void)ctx;
    tu_log("b");
}

static void l_c(weft_stream *s, void *ctx)
{
    (void)ctx;
    tu_log("c");
    /* Removing itself inside its own call is legal too. */
    ck_assert_int_eq(weft_stream_off_connect(s, l_c, NULL), 0);
}

static void destroy_on_connect(weft_stream *s, void *ctx)
{
    (void)ctx;
    weft_stream_destroy(s);
}

START_TEST(removing_a_listener_inside_another_of_the_same_event_skips_it)
{
    weft_server *srv = weft_create_server(tu_loop, NULL, NULL);
    int port = tu_listen(srv, "127.0.0.1");
    weft_stream *c;
    ck_assert_int_eq(weft_create_connection(tu_loop, port, "127.0.0.1", &c), 0);
    ck_assert_int_eq(weft_stream_on_connect(c, l_a, NULL), 0);
    ck_assert_int_eq(weft_stream_on_connect(c, l_b, NULL), 0);
    ck_assert_int_eq(weft_stream_on_connect(c, l_c, NULL), 0);
    ck_assert_int_eq(weft_stream_on_connect(c, destroy_on_connect, NULL), 0);
    weft_stream_on_close(c, close_server_on_close, srv);
    tu_run(10000);
    ck_assert_str_eq(tu_log_str(), "a,c");
}
END_TEST

/* A ping-pong: the server writes "1", "2", "3", each only after the
 * client's ack of the previous one, so each is its own 'data' emit. */
static void pp_data(weft_stream *s, const char *d, size_t n, void *ctx)
{
    (void)d;
    (void)n;
    lis *l = ctx;
    l->acks++;
    if (l->acks < 3) {
        char b[2] = {(char)('1' + l->acks), 0};
        weft_stream_write(s, b, 1);
    } else {
        weft_stream_end(s, NULL, 0);
    }
}

static void pp_connect(weft_stream *s, void *ctx)
{
    (void)ctx;
    weft_stream_write(s, "1", 1);
}

static void pp_conn(weft_server *srv, weft_stream *s, void *ctx)
{
    weft_server_close(srv);
    weft_stream_on_connect(s, pp_connect, ctx);
    weft_stream_on_data(s, pp_data, ctx);
}

static void d_log(const char *who, const char *d, size_t n)
{
    tu_logf("%s%.*s", who, (int)n, d);
}

static void d_once(weft_stream *s, const char *d, size_t n, void *ctx)
{
    (void)s;
    d_log(ctx, d, n);
}

static void d_late(weft_stream *s, const char *d, size_t n, void *ctx)
{
    (void)s;
    (void)ctx;
    d_log("late", d, n);
}

static void d_on(weft_stream *s, const char *d, size_t n, void *ctx)
{
    (void)ctx;
    d_log("on", d, n);
    if (d[0] == '1')
        ck_assert_int_eq(weft_stream_on_data(s, d_late, NULL), 0);
    weft_stream_write(s, "k", 1);
}

START_TEST(once_listeners_run_once_and_listeners_added_in_an_emit_wait)
{
    lis l = {0};
    weft_server *srv = weft_create_server(tu_loop, pp_conn, &l);
    int port = tu_listen(srv, "127.0.0.1");
    weft_stream *c;
    ck_assert_int_eq(weft_create_connection(tu_loop, port, "127.0.0.1", &c), 0);
    ck_assert_int_eq(weft_stream_once_data(c, d_once, "once"), 0);
    ck_assert_int_eq(weft_stream_on_data(c, d_on, NULL), 0);
    ck_assert_int_eq(weft_stream_once_data(c, d_once, "twice"), 0);
    /* A once-listener removed before its event never runs. */
    ck_assert_int_eq(weft_stream_once_data(c, d_once, "removed"), 0);
    ck_assert_int_eq(weft_stream_off_data(c, d_once, "removed"), 0);
    ck_assert_int_eq(weft_stream_off_data(c, d_once, "removed"), WEFT_ENOENT);
    tu_run(10000);
    ck_assert_str_eq(tu_log_str(), "once1,on1,twice1,on2,late2,on3,late3");
    ck_assert_uint_eq(l.acks, 3);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("destroy");
    TCase *tc = tu_tcase("destroy");
    tcase_add_test(tc, destroy_inside_client_connect_closes_once_without_error);
    tcase_add_test(tc, destroy_inside_server_connect_closes_once_without_error);
    tcase_add_test(tc, destroy_inside_client_data_emits_nothing_but_close);
    tcase_add_test(tc, destroy_inside_server_data_emits_nothing_but_close);
    tcase_add_test(tc, destroy_inside_client_end_closes_once);
    tcase_add_test(tc, destroy_inside_server_end_closes_once);
    tcase_add_test(tc, destroy_inside_client_drain_closes_once);
    tcase_add_test(tc, destroy_inside_server_drain_closes_once);
    tcase_add_test(tc, destroy_inside_client_timeout_closes_once);
    tcase_add_test(tc, destroy_inside_server_timeout_closes_once);
    tcase_add_test(
        tc, destroy_inside_error_after_refused_connect_closes_once_with_error);
    tcase_add_test(tc,
                   destroy_inside_server_error_after_peer_reset_closes_once);
    tcase_add_test(tc, destroy_inside_close_is_a_no_op);
    tcase_add_test(tc, destroy_inside_server_close_is_a_no_op);
    tcase_add_test(tc, end_inside_client_connect_half_closes_then_closes_once);
    tcase_add_test(tc, end_inside_server_connect_half_closes_then_closes_once);
    tcase_add_test(tc, end_inside_client_data_half_closes_then_closes_once);
    tcase_add_test(tc, end_inside_server_data_half_closes_then_closes_once);
    tcase_add_test(tc, end_inside_client_end_closes_once);
    tcase_add_test(tc, end_inside_server_end_closes_once);
    tcase_add_test(tc, end_inside_client_drain_closes_once);
    tcase_add_test(tc, end_inside_server_drain_closes_once);
    tcase_add_test(tc, end_inside_client_timeout_closes_once);
    tcase_add_test(tc, end_inside_server_timeout_closes_once);
    tcase_add_test(tc, end_inside_error_is_a_no_op_and_close_follows_once);
    tcase_add_test(tc, end_inside_server_error_after_peer_reset_is_a_no_op);
    tcase_add_test(tc, end_inside_close_is_a_no_op);
    tcase_add_test(tc, destroy_twice_is_a_no_op_and_close_comes_once);
    tcase_add_test(
        tc, destroy_before_connect_completes_emits_close_without_connect);
    tcase_add_test(tc,
                   destroy_during_localhost_lookup_emits_close_without_connect);
    tcase_add_test(tc, destroy_on_a_never_connected_stream_emits_close_once);
    tcase_add_test(
        tc, removing_a_listener_inside_another_of_the_same_event_skips_it);
    tcase_add_test(tc,
                   once_listeners_run_once_and_listeners_added_in_an_emit_wait);
    suite_add_tcase(s, tc);
    return tu_run_suite(s);
}
