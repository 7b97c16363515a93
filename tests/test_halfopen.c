/*
 * test_halfopen.c - half-open connections in both directions, with and
 * without allowHalfOpen, over TCP and Unix sockets (each case runs once
 * per transport: _i == 0 TCP, _i == 1 Unix).
 *
 * The seed: end() sends FIN and makes the stream 'readOnly'; the peer
 * gets 'end'; with allowHalfOpen it is 'writeOnly' and may keep writing
 * until it ends too; without, it ends its side by itself once its 'end'
 * listeners have run, so a write made inside 'end' (the seed's
 * "goodbye") still gets out. Each side's events are logged separately
 * with the readyState seen at each step; 'close' must come once, last.
 */
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BIG (256 * 1024)

static const char *state(weft_stream *s)
{
    return weft_ready_state_name(weft_stream_ready_state(s));
}

/* One side of a connection: what it does, what it saw. */
typedef struct side {
    const char *name;
    weft_stream *s;
    tu_slog log;
    char *got; /* every byte received, in order */
    size_t got_len, got_cap;
    unsigned closes;
    bool closed;
    /* script */
    bool end_on_connect; /* write `greeting`, then end() */
    const char *greeting;
    bool write_in_end; /* write `reply` inside 'end' */
    const char *reply;
    bool later_write_and_end;   /* in 'end': a timer writes BIG + "z", ends */
    bool check_write_after_end; /* after our end(): write must fail */
    /* what we wrote, to compare with the peer's bytes */
    char *sent;
    size_t sent_len;
} side;

static void side_init(side *sd, const char *name)
{
    memset(sd, 0, sizeof(*sd));
    sd->name = name;
}

static void side_free(side *sd)
{
    free(sd->got);
    free(sd->sent);
}

static void record_sent(side *sd, const void *d, size_t n)
{
    sd->sent = realloc(sd->sent, sd->sent_len + n + 1);
    ck_assert_ptr_nonnull(sd->sent);
    memcpy(sd->sent + sd->sent_len, d, n);
    sd->sent_len += n;
    sd->sent[sd->sent_len] = '\0';
}

static void side_write(side *sd, weft_stream *s, const void *d, size_t n)
{
    int r = weft_stream_write(s, d, n);
    ck_assert_msg(r >= 0, "%s: write returned %d (%s)", sd->name, r,
                  weft_err_name(r));
    record_sent(sd, d, n);
}

/* After end(): writing is an error that changes nothing, end() is a
 * no-op. */
static void check_after_end(side *sd, weft_stream *s)
{
    if (!sd->check_write_after_end)
        return;
    ck_assert_int_eq(weft_stream_write(s, "x", 1), WEFT_EWRITEAFTEREND);
    ck_assert_int_eq(weft_stream_write_string(s, "x", NULL),
                     WEFT_EWRITEAFTEREND);
    ck_assert_int_eq(weft_stream_end(s, "x", 1), WEFT_EWRITEAFTEREND);
    ck_assert_int_eq(weft_stream_end(s, NULL, 0), 0);
    ck_assert_int_eq(weft_stream_end(s, NULL, 0), 0);
}

static void side_end_now(side *sd, weft_stream *s)
{
    ck_assert_int_eq(weft_stream_end(s, NULL, 0), 0);
    tu_slog_add(&sd->log, "end():%s", state(s));
    check_after_end(sd, s);
}

static void on_connect(weft_stream *s, void *ctx)
{
    side *sd = ctx;
    tu_slog_add(&sd->log, "connect:%s", state(s));
    if (sd->end_on_connect) {
        if (sd->greeting != NULL)
            side_write(sd, s, sd->greeting, strlen(sd->greeting));
        side_end_now(sd, s);
    }
}

static void on_data(weft_stream *s, const char *d, size_t n, void *ctx)
{
    side *sd = ctx;
    ck_assert_msg(!sd->closed, "%s: data after close", sd->name);
    /* Data may come while we are readOnly or open, never after 'end'. */
    ck_assert_msg(weft_stream_ready_state(s) == WEFT_OPEN ||
                      weft_stream_ready_state(s) == WEFT_READ_ONLY,
                  "%s: data in state %s", sd->name, state(s));
    if (sd->got_len + n + 1 > sd->got_cap) {
        sd->got_cap = (sd->got_len + n + 1) * 2;
        sd->got = realloc(sd->got, sd->got_cap);
        ck_assert_ptr_nonnull(sd->got);
    }
    memcpy(sd->got + sd->got_len, d, n);
    sd->got_len += n;
    sd->got[sd->got_len] = '\0';
}

static void later_write_and_end(weft_timer *t, void *ctx)
{
    (void)t;
    side *sd = ctx;
    weft_stream *s = sd->s;
    ck_assert_str_eq(state(s), "writeOnly");
    char *big = malloc(BIG);
    ck_assert_ptr_nonnull(big);
    for (size_t i = 0; i < BIG; i++)
        big[i] = (char)('a' + i % 26);
    side_write(sd, s, big, BIG);
    free(big);
    side_write(sd, s, "z", 1);
    tu_slog_add(&sd->log, "write:%s", state(s));
    side_end_now(sd, s);
}

static void on_end(weft_stream *s, void *ctx)
{
    side *sd = ctx;
    tu_slog_add(&sd->log, "end:%s", state(s));
    if (sd->write_in_end)
        side_write(sd, s, sd->reply, strlen(sd->reply));
    if (sd->later_write_and_end)
        ck_assert_ptr_nonnull(
            weft_set_timeout(tu_loop, 20, later_write_and_end, sd));
}

/* A second 'end' listener: the automatic end() waits for it too. */
static void on_end_second(weft_stream *s, void *ctx)
{
    side *sd = ctx;
    tu_slog_add(&sd->log, "end2:%s", state(s));
}

static void on_close(weft_stream *s, bool had_error, void *ctx)
{
    side *sd = ctx;
    sd->closes++;
    sd->closed = true;
    tu_slog_add(&sd->log, "close:%d:%s", had_error, state(s));
    /* Nothing can be written or ended any more, and nothing crashes. */
    int r = weft_stream_write(s, "x", 1);
    ck_assert_msg(r == WEFT_ESTATE || r == WEFT_EWRITEAFTEREND,
                  "%s: write in close returned %d", sd->name, r);
    ck_assert_int_eq(weft_stream_end(s, NULL, 0), 0);
}

static void on_error(weft_stream *s, int err, const char *msg, void *ctx)
{
    (void)s;
    side *sd = ctx;
    ck_abort_msg("%s: unexpected error %s: %s", sd->name, weft_err_name(err),
                 msg);
}

static void listen_all(weft_stream *s, side *sd)
{
    sd->s = s;
    weft_stream_on_connect(s, on_connect, sd);
    weft_stream_on_data(s, on_data, sd);
    weft_stream_on_end(s, on_end, sd);
    weft_stream_on_end(s, on_end_second, sd);
    weft_stream_on_close(s, on_close, sd);
    weft_stream_on_error(s, on_error, sd);
}

static void on_connection(weft_server *srv, weft_stream *s, void *ctx)
{
    weft_server_close(srv);
    ck_assert_str_eq(state(s), "open");
    listen_all(s, ctx);
}

/* Runs one connection between `server` (accepted) and `client`. */
static void run_pair(side *server, side *client, bool server_half_open,
                     bool client_half_open, int transport)
{
    weft_server *srv = weft_create_server(tu_loop, on_connection, server);
    ck_assert_ptr_nonnull(srv);
    weft_server_set_allow_half_open(srv, server_half_open);
    weft_stream *c = weft_stream_new(tu_loop);
    ck_assert_ptr_nonnull(c);
    ck_assert_str_eq(state(c), "closed");
    weft_stream_set_allow_half_open(c, client_half_open);
    listen_all(c, client);
    if (transport == 0) {
        int port = tu_listen(srv, "127.0.0.1");
        ck_assert_int_eq(weft_stream_connect(c, port, "127.0.0.1"), 0);
    } else {
        const char *path = tu_sock_path("halfopen");
        ck_assert_int_eq(weft_server_listen_path(srv, path, NULL, NULL), 0);
        ck_assert_int_eq(weft_stream_connect_path(c, path), 0);
    }
    ck_assert_str_eq(state(c), "opening");
    tu_run(10000);
    ck_assert_uint_eq(server->closes, 1);
    ck_assert_uint_eq(client->closes, 1);
}

/* The bytes `to` received are exactly those `from` wrote. */
static void assert_delivered(const side *from, const side *to)
{
    ck_assert_uint_eq(to->got_len, from->sent_len);
    if (from->sent_len > 0)
        ck_assert(memcmp(to->got, from->sent, from->sent_len) == 0);
}

/* ---- the client ends first -------------------------------------------- */

START_TEST(client_end_then_half_open_server_keeps_writing_until_it_ends)
{
    side sv, cl;
    side_init(&sv, "server");
    side_init(&cl, "client");
    cl.end_on_connect = true;
    cl.greeting = "ping";
    sv.write_in_end = true;
    sv.reply = "pong";
    sv.later_write_and_end = true;
    sv.check_write_after_end = true;
    run_pair(&sv, &cl, true, false, _i);

    ck_assert_str_eq(cl.log.buf, "connect:open,end():readOnly,end:closed,"
                                 "end2:closed,close:0:closed");
    ck_assert_str_eq(sv.log.buf, "connect:open,end:writeOnly,"
                                 "end2:writeOnly,write:writeOnly,"
                                 "end():closed,close:0:closed");
    assert_delivered(&cl, &sv);
    assert_delivered(&sv, &cl);
    ck_assert_uint_eq(cl.got_len, 4 + BIG + 1);
    side_free(&sv);
    side_free(&cl);
}
END_TEST

START_TEST(client_end_without_half_open_server_goodbye_arrives_before_end)
{
    side sv, cl;
    side_init(&sv, "server");
    side_init(&cl, "client");
    cl.end_on_connect = true;
    cl.greeting = "hello\r\n";
    cl.check_write_after_end = true;
    sv.write_in_end = true;
    sv.reply = "goodbye\r\n";
    run_pair(&sv, &cl, false, false, _i);

    /* The server never called end(): it ended by itself after both of
     * its 'end' listeners, and the goodbye went out first. */
    ck_assert_str_eq(sv.log.buf, "connect:open,end:writeOnly,"
                                 "end2:writeOnly,close:0:closed");
    ck_assert_str_eq(cl.log.buf, "connect:open,end():readOnly,end:closed,"
                                 "end2:closed,close:0:closed");
    assert_delivered(&cl, &sv);
    ck_assert_str_eq(cl.got, "goodbye\r\n");
    side_free(&sv);
    side_free(&cl);
}
END_TEST

/* ---- the server ends first -------------------------------------------- */

START_TEST(server_end_then_half_open_client_keeps_writing_until_it_ends)
{
    side sv, cl;
    side_init(&sv, "server");
    side_init(&cl, "client");
    sv.end_on_connect = true;
    sv.greeting = "hello";
    sv.check_write_after_end = true;
    cl.write_in_end = true;
    cl.reply = "a";
    cl.later_write_and_end = true;
    cl.check_write_after_end = true;
    run_pair(&sv, &cl, false, true, _i);

    ck_assert_str_eq(sv.log.buf, "connect:open,end():readOnly,end:closed,"
                                 "end2:closed,close:0:closed");
    ck_assert_str_eq(cl.log.buf, "connect:open,end:writeOnly,"
                                 "end2:writeOnly,write:writeOnly,"
                                 "end():closed,close:0:closed");
    assert_delivered(&sv, &cl);
    assert_delivered(&cl, &sv);
    ck_assert_uint_eq(sv.got_len, 1 + BIG + 1);
    side_free(&sv);
    side_free(&cl);
}
END_TEST

START_TEST(server_end_without_half_open_client_ends_after_its_end_listeners)
{
    side sv, cl;
    side_init(&sv, "server");
    side_init(&cl, "client");
    sv.end_on_connect = true;
    sv.greeting = "hello";
    cl.write_in_end = true;
    cl.reply = "bye";
    run_pair(&sv, &cl, true, false, _i);

    /* The server's allowHalfOpen changes nothing once it ended first. */
    ck_assert_str_eq(cl.log.buf, "connect:open,end:writeOnly,"
                                 "end2:writeOnly,close:0:closed");
    ck_assert_str_eq(sv.log.buf, "connect:open,end():readOnly,end:closed,"
                                 "end2:closed,close:0:closed");
    ck_assert_str_eq(cl.got, "hello");
    ck_assert_str_eq(sv.got, "bye");
    side_free(&sv);
    side_free(&cl);
}
END_TEST

/* ---- both at once ----------------------------------------------------- */

START_TEST(both_sides_end_at_once_and_each_closes_once)
{
    side sv, cl;
    side_init(&sv, "server");
    side_init(&cl, "client");
    sv.end_on_connect = true;
    sv.greeting = "from-server";
    sv.check_write_after_end = true;
    cl.end_on_connect = true;
    cl.greeting = "from-client";
    cl.check_write_after_end = true;
    run_pair(&sv, &cl, true, true, _i);

    ck_assert_str_eq(sv.log.buf, "connect:open,end():readOnly,end:closed,"
                                 "end2:closed,close:0:closed");
    ck_assert_str_eq(cl.log.buf, "connect:open,end():readOnly,end:closed,"
                                 "end2:closed,close:0:closed");
    assert_delivered(&sv, &cl);
    assert_delivered(&cl, &sv);
    side_free(&sv);
    side_free(&cl);
}
END_TEST

/* ---- end() while connecting ------------------------------------------- */

START_TEST(end_while_connecting_sends_data_then_fin_after_connect)
{
    side sv, cl;
    side_init(&sv, "server");
    side_init(&cl, "client");
    sv.write_in_end = true;
    sv.reply = "ok";
    weft_server *srv = weft_create_server(tu_loop, on_connection, &sv);
    weft_stream *c = weft_stream_new(tu_loop);
    listen_all(c, &cl);
    if (_i == 0) {
        int port = tu_listen(srv, "127.0.0.1");
        ck_assert_int_eq(weft_stream_connect(c, port, "127.0.0.1"), 0);
    } else {
        const char *path = tu_sock_path("halfopen");
        ck_assert_int_eq(weft_server_listen_path(srv, path, NULL, NULL), 0);
        ck_assert_int_eq(weft_stream_connect_path(c, path), 0);
    }
    /* Queued while opening, FIN after connect. */
    ck_assert_int_eq(weft_stream_end(c, "early", 5), 0);
    ck_assert_int_eq(weft_stream_write(c, "x", 1), WEFT_EWRITEAFTEREND);
    ck_assert_int_eq(weft_stream_end(c, NULL, 0), 0);
    tu_run(10000);
    ck_assert_str_eq(sv.got, "early");
    ck_assert_str_eq(cl.got, "ok");
    ck_assert_str_eq(cl.log.buf, "connect:readOnly,end:closed,end2:closed,"
                                 "close:0:closed");
    ck_assert_uint_eq(sv.closes, 1);
    ck_assert_uint_eq(cl.closes, 1);
    side_free(&sv);
    side_free(&cl);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("halfopen");
    TCase *tc = tu_tcase("halfopen");
    /* _i: 0 = TCP on 127.0.0.1, 1 = Unix socket. */
    tcase_add_loop_test(
        tc, client_end_then_half_open_server_keeps_writing_until_it_ends, 0, 2);
    tcase_add_loop_test(
        tc, client_end_without_half_open_server_goodbye_arrives_before_end, 0,
        2);
    tcase_add_loop_test(
        tc, server_end_then_half_open_client_keeps_writing_until_it_ends, 0, 2);
    tcase_add_loop_test(
        tc, server_end_without_half_open_client_ends_after_its_end_listeners, 0,
        2);
    tcase_add_loop_test(tc, both_sides_end_at_once_and_each_closes_once, 0, 2);
    tcase_add_loop_test(
        tc, end_while_connecting_sends_data_then_fin_after_connect, 0, 2);
    suite_add_tcase(s, tc);
    return tu_run_suite(s);
}
