/*
 * test_dns.c - names and address families: connect to "localhost"
 * resolves off the loop and connects; a name that cannot resolve gives
 * 'error' ENOTFOUND (or EAI_AGAIN) with a "getaddrinfo ..." message, then
 * 'close'(true); listen on "localhost" emits 'listening'; IPv6 "::1"
 * listen and connect report "::1" as the remote address.
 *
 * The unresolvable name is under ".invalid" (RFC 6761: never resolves);
 * with no network it fails in about a millisecond here, and every run is
 * bounded by a deadline in case a resolver is slow elsewhere.
 */
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BAD_NAME "nonexistent.invalid"

static const char *state(weft_stream *s)
{
    return weft_ready_state_name(weft_stream_ready_state(s));
}

/* ---- a tiny echo server that closes after `conns` connections --------- */

typedef struct srv_ctx {
    weft_server *srv;
    unsigned want, accepted, closed;
    char remote[64];
    int remote_port;
} srv_ctx;

static void echo_data(weft_stream *s, const char *d, size_t n, void *ctx)
{
    (void)ctx;
    weft_stream_write(s, d, n);
}

static void srv_stream_close(weft_stream *s, bool had_error, void *ctx)
{
    (void)s;
    srv_ctx *x = ctx;
    ck_assert(!had_error);
    x->closed++;
}

static void srv_conn(weft_server *srv, weft_stream *s, void *ctx)
{
    srv_ctx *x = ctx;
    if (++x->accepted == x->want)
        weft_server_close(srv);
    const char *ra = weft_stream_remote_address(s);
    ck_assert_ptr_nonnull(ra);
    snprintf(x->remote, sizeof(x->remote), "%s", ra);
    x->remote_port = weft_stream_remote_port(s);
    weft_stream_on_data(s, echo_data, x);
    weft_stream_on_close(s, srv_stream_close, x);
}

/* ---- a client that says "ping", ends, and checks the echo ------------- */

typedef struct cli {
    weft_stream *s;
    tu_slog log;
    char got[64];
    size_t got_len;
    char remote[64];
    int remote_port;
    weft_address local;
    int err;
    char msg[256];
    unsigned closes;
} cli;

static void cli_connect(weft_stream *s, void *ctx)
{
    cli *c = ctx;
    tu_slog_add(&c->log, "connect:%s", state(s));
    const char *ra = weft_stream_remote_address(s);
    ck_assert_ptr_nonnull(ra);
    snprintf(c->remote, sizeof(c->remote), "%s", ra);
    c->remote_port = weft_stream_remote_port(s);
    ck_assert_int_eq(weft_stream_address(s, &c->local), 0);
    ck_assert_int_ge(weft_stream_end_string(s, "ping", NULL), 0);
}

static void cli_data(weft_stream *s, const char *d, size_t n, void *ctx)
{
    (void)s;
    cli *c = ctx;
    ck_assert_uint_lt(c->got_len + n, sizeof(c->got));
    memcpy(c->got + c->got_len, d, n);
    c->got_len += n;
}

static void cli_end(weft_stream *s, void *ctx)
{
    (void)s;
    cli *c = ctx;
    tu_slog_add(&c->log, "end:%.*s", (int)c->got_len, c->got);
}

static void cli_error(weft_stream *s, int err, const char *msg, void *ctx)
{
    cli *c = ctx;
    c->err = err;
    snprintf(c->msg, sizeof(c->msg), "%s", msg);
    tu_slog_add(&c->log, "error:%s", state(s));
}

static void cli_close(weft_stream *s, bool had_error, void *ctx)
{
    cli *c = ctx;
    c->closes++;
    tu_slog_add(&c->log, "close:%d:%s", had_error, state(s));
}

static void cli_attach(cli *c, weft_stream *s)
{
    c->s = s;
    weft_stream_on_connect(s, cli_connect, c);
    weft_stream_on_data(s, cli_data, c);
    weft_stream_on_end(s, cli_end, c);
    weft_stream_on_error(s, cli_error, c);
    weft_stream_on_close(s, cli_close, c);
}

static void mark(weft_timer *t, void *ctx)
{
    (void)t;
    (void)ctx;
    tu_log("timer");
}

/* ---- tests ------------------------------------------------------------ */

START_TEST(connect_to_localhost_resolves_off_loop_and_connects)
{
    srv_ctx sx = {.want = 1};
    sx.srv = weft_create_server(tu_loop, srv_conn, &sx);
    int port = tu_listen(sx.srv, "127.0.0.1");
    cli c = {0};
    weft_stream *s;
    ck_assert_int_eq(weft_create_connection(tu_loop, port, "localhost", &s), 0);
    cli_attach(&c, s);
    /* The lookup runs elsewhere: the call returned with nothing emitted,
     * and a 0 ms timer set now still runs first. */
    ck_assert_str_eq(state(s), "opening");
    weft_set_timeout(tu_loop, 0, mark, NULL);
    tu_run(10000);
    ck_assert_str_eq(tu_log_str(), "timer");
    ck_assert_str_eq(c.log.buf, "connect:open,end:ping,close:0:closed");
    ck_assert_str_eq(c.remote, "127.0.0.1");
    ck_assert_int_eq(c.remote_port, port);
    ck_assert_uint_eq(sx.closed, 1);
}
END_TEST

START_TEST(connect_with_null_host_assumes_localhost)
{
    srv_ctx sx = {.want = 1};
    sx.srv = weft_create_server(tu_loop, srv_conn, &sx);
    int port = tu_listen(sx.srv, "127.0.0.1");
    cli c = {0};
    weft_stream *s = weft_stream_new(tu_loop);
    cli_attach(&c, s);
    ck_assert_int_eq(weft_stream_connect(s, port, NULL), 0);
    tu_run(10000);
    ck_assert_str_eq(c.log.buf, "connect:open,end:ping,close:0:closed");
    ck_assert_str_eq(c.remote, "127.0.0.1");
}
END_TEST

START_TEST(many_concurrent_lookups_all_connect)
{
    enum { N = 12 };
    srv_ctx sx = {.want = N};
    sx.srv = weft_create_server(tu_loop, srv_conn, &sx);
    int port = tu_listen(sx.srv, "127.0.0.1");
    static cli c[N];
    memset(c, 0, sizeof(c));
    for (int i = 0; i < N; i++) {
        weft_stream *s;
        ck_assert_int_eq(weft_create_connection(tu_loop, port, "localhost", &s),
                         0);
        cli_attach(&c[i], s);
    }
    tu_run(10000);
    for (int i = 0; i < N; i++) {
        ck_assert_str_eq(c[i].log.buf, "connect:open,end:ping,close:0:closed");
        ck_assert_uint_eq(c[i].closes, 1);
    }
    ck_assert_uint_eq(sx.accepted, N);
    ck_assert_uint_eq(sx.closed, N);
}
END_TEST

START_TEST(unresolvable_name_emits_enotfound_error_then_close_true)
{
    cli c = {0};
    weft_stream *s;
    ck_assert_int_eq(weft_create_connection(tu_loop, 80, BAD_NAME, &s), 0);
    cli_attach(&c, s);
    ck_assert_str_eq(state(s), "opening");
    tu_run(15000);
    ck_assert_msg(c.err == WEFT_ENOTFOUND || c.err == WEFT_EAI_AGAIN,
                  "error %d (%s): %s", c.err, weft_err_name(c.err), c.msg);
    /* Node: "getaddrinfo ENOTFOUND nonexistent.invalid" */
    char want[128];
    snprintf(want, sizeof(want), "getaddrinfo %s %s", weft_err_name(c.err),
             BAD_NAME);
    ck_assert_str_eq(c.msg, want);
    ck_assert_str_eq(c.log.buf, "error:closed,close:1:closed");
    ck_assert_uint_eq(c.closes, 1);
}
END_TEST

typedef struct lsn {
    tu_slog log;
    weft_address addr;
    int err;
    char msg[160];
} lsn;

static void lsn_listening(weft_server *srv, void *ctx)
{
    lsn *l = ctx;
    ck_assert_int_eq(weft_server_address(srv, &l->addr), 0);
    tu_slog_add(&l->log, "listening");
}

static void lsn_cb(weft_server *srv, void *ctx)
{
    (void)srv;
    lsn *l = ctx;
    tu_slog_add(&l->log, "cb");
}

static void lsn_error(weft_server *srv, int err, const char *msg, void *ctx)
{
    lsn *l = ctx;
    l->err = err;
    snprintf(l->msg, sizeof(l->msg), "%s", msg);
    tu_slog_add(&l->log, "error");
    weft_server_close(srv);
}

static void lsn_close(weft_server *srv, void *ctx)
{
    (void)srv;
    lsn *l = ctx;
    tu_slog_add(&l->log, "close");
}

static void lsn_connection(weft_server *srv, weft_stream *s, void *ctx)
{
    (void)s;
    lsn *l = ctx;
    tu_slog_add(&l->log, "connection");
    weft_server_close(srv);
}

/* The client started from 'listening'. */
static cli the_client;

static void lsn_connect_client(weft_server *srv, void *ctx)
{
    (void)srv;
    lsn *l = ctx;
    weft_stream *s;
    ck_assert_int_eq(
        weft_create_connection(tu_loop, l->addr.port, "localhost", &s), 0);
    cli_attach(&the_client, s);
}

START_TEST(listen_on_localhost_emits_listening_and_accepts)
{
    lsn l = {0};
    memset(&the_client, 0, sizeof(the_client));
    weft_server *srv = weft_create_server(tu_loop, lsn_connection, &l);
    weft_server_on_listening(srv, lsn_listening, &l);
    weft_server_on_error(srv, lsn_error, &l);
    weft_server_on_close(srv, lsn_close, &l);
    ck_assert_int_eq(weft_server_listen(srv, 0, "localhost", lsn_cb, &l), 0);
    weft_server_on_listening(srv, lsn_connect_client, &l);
    /* Nothing from inside listen(); the address comes with 'listening'. */
    ck_assert_str_eq(l.log.buf, "");
    tu_run(10000);
    ck_assert_str_eq(l.log.buf, "listening,cb,connection,close");
    /* The first address "localhost" resolves to: 127.0.0.1 here, ::1
     * first on hosts whose /etc/hosts says so. */
    ck_assert_msg(
        (l.addr.family == 4 && !strcmp(l.addr.address, "127.0.0.1")) ||
            (l.addr.family == 6 && !strcmp(l.addr.address, "::1")),
        "bound %s (IPv%d)", l.addr.address, l.addr.family);
    ck_assert_int_gt(l.addr.port, 0);
    ck_assert_str_eq(the_client.log.buf, "connect:open,end:,close:0:closed");
}
END_TEST

START_TEST(listen_on_an_unresolvable_name_emits_error_naming_the_host)
{
    lsn l = {0};
    weft_server *srv = weft_create_server(tu_loop, lsn_connection, &l);
    weft_server_on_listening(srv, lsn_listening, &l);
    weft_server_on_error(srv, lsn_error, &l);
    weft_server_on_close(srv, lsn_close, &l);
    ck_assert_int_eq(weft_server_listen(srv, 0, BAD_NAME, lsn_cb, &l), 0);
    tu_run(15000);
    /* No 'listening', no callback; the server is closed (not running:
     * no 'close') by lsn_error. */
    ck_assert_str_eq(l.log.buf, "error");
    ck_assert_msg(l.err == WEFT_ENOTFOUND || l.err == WEFT_EAI_AGAIN,
                  "error %d (%s): %s", l.err, weft_err_name(l.err), l.msg);
    /* Node 20: "getaddrinfo ENOTFOUND nonexistent.invalid" */
    char want[128];
    snprintf(want, sizeof(want), "getaddrinfo %s %s", weft_err_name(l.err),
             BAD_NAME);
    ck_assert_str_eq(l.msg, want);
}
END_TEST

START_TEST(ipv6_loopback_listen_and_connect_report_remote_address)
{
    srv_ctx sx = {.want = 1};
    sx.srv = weft_create_server(tu_loop, srv_conn, &sx);
    int port = tu_listen(sx.srv, "::1");
    weft_address a;
    ck_assert_int_eq(weft_server_address(sx.srv, &a), 0);
    ck_assert_int_eq(a.family, 6);
    ck_assert_str_eq(a.address, "::1");
    cli c = {0};
    weft_stream *s;
    ck_assert_int_eq(weft_create_connection(tu_loop, port, "::1", &s), 0);
    cli_attach(&c, s);
    tu_run(10000);
    ck_assert_str_eq(c.log.buf, "connect:open,end:ping,close:0:closed");
    ck_assert_str_eq(c.remote, "::1");
    ck_assert_int_eq(c.remote_port, port);
    ck_assert_int_eq(c.local.family, 6);
    ck_assert_str_eq(c.local.address, "::1");
    /* The server side sees the client's address and port. */
    ck_assert_str_eq(sx.remote, "::1");
    ck_assert_int_eq(sx.remote_port, c.local.port);
    ck_assert_uint_eq(sx.closed, 1);
}
END_TEST

START_TEST(connect_to_ipv6_port_with_nothing_listening_is_refused)
{
    /* Bind then close, so the port is known to be free. */
    weft_server *srv = weft_create_server(tu_loop, NULL, NULL);
    int port = tu_listen(srv, "::1");
    ck_assert_int_eq(weft_server_close(srv), 0);
    cli c = {0};
    weft_stream *s;
    ck_assert_int_eq(weft_create_connection(tu_loop, port, "::1", &s), 0);
    cli_attach(&c, s);
    tu_run(10000);
    ck_assert_int_eq(c.err, WEFT_ECONNREFUSED);
    char want[64];
    snprintf(want, sizeof(want), "connect ECONNREFUSED ::1:%d", port);
    ck_assert_str_eq(c.msg, want);
    ck_assert_str_eq(c.log.buf, "error:closed,close:1:closed");
}
END_TEST

int main(void)
{
    Suite *s = suite_create("dns");
    TCase *tc = tu_tcase("dns");
    tcase_add_test(tc, connect_to_localhost_resolves_off_loop_and_connects);
    tcase_add_test(tc, connect_with_null_host_assumes_localhost);
    tcase_add_test(tc, many_concurrent_lookups_all_connect);
    tcase_add_test(tc, unresolvable_name_emits_enotfound_error_then_close_true);
    tcase_add_test(tc, listen_on_localhost_emits_listening_and_accepts);
    tcase_add_test(tc,
                   listen_on_an_unresolvable_name_emits_error_naming_the_host);
    tcase_add_test(tc, ipv6_loopback_listen_and_connect_report_remote_address);
    tcase_add_test(tc, connect_to_ipv6_port_with_nothing_listening_is_refused);
    suite_add_tcase(s, tc);
    return tu_run_suite(s);
}
