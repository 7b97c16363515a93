/*
 * test_stream.c - net.Stream as the seed describes it: createConnection,
 * connect (also to reuse a closed stream), readyState at each step,
 * setEncoding, write (bytes and strings) and its return value, end,
 * destroy, pause/resume, setTimeout, setNoDelay, setKeepAlive,
 * remoteAddress, the events and their order, and bad input.
 */
#include "testutil.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static const char *state(weft_stream *s)
{
    return weft_ready_state_name(weft_stream_ready_state(s));
}

/* ---- a scripted echo server ------------------------------------------- */

typedef struct {
    weft_server *srv;
    int port;
    const char *encoding; /* setEncoding on accepted streams */
    bool close_after_one;
} echo;

static void echo_data(weft_stream *s, const char *d, size_t n, void *ctx)
{
    (void)ctx;
    weft_stream_write(s, d, n);
}

static void echo_end(weft_stream *s, void *ctx)
{
    (void)ctx;
    weft_stream_end(s, NULL, 0);
}

static void echo_conn(weft_server *srv, weft_stream *s, void *ctx)
{
    echo *e = ctx;
    if (e->encoding)
        weft_stream_set_encoding(s, e->encoding);
    weft_stream_on_data(s, echo_data, e);
    weft_stream_on_end(s, echo_end, e);
    if (e->close_after_one)
        weft_server_close(srv);
}

static void echo_start(echo *e)
{
    e->srv = tu_server(echo_conn, e, &e->port);
    e->close_after_one = true;
}

/* ---- logging listeners ------------------------------------------------ */

static void l_connect(weft_stream *s, void *ctx)
{
    (void)ctx;
    tu_logf("connect:%s", state(s));
}

static void l_data(weft_stream *s, const char *d, size_t n, void *ctx)
{
    (void)s;
    (void)ctx;
    ck_assert_int_eq(d[n], '\0');
    tu_logf("data:%.*s", (int)n, d);
}

static void l_end(weft_stream *s, void *ctx)
{
    (void)ctx;
    tu_logf("end:%s", state(s));
}

static void l_error(weft_stream *s, int err, const char *msg, void *ctx)
{
    (void)ctx;
    (void)s;
    tu_logf("error:%s", weft_err_name(err));
    if (ctx != NULL)
        snprintf(ctx, 128, "%s", msg);
}

static void l_close(weft_stream *s, bool had_error, void *ctx)
{
    (void)ctx;
    tu_logf("close:%d:%s", had_error, state(s));
}

static void l_drain(weft_stream *s, void *ctx)
{
    (void)s;
    (void)ctx;
    tu_log("drain");
}

static void log_all(weft_stream *s)
{
    weft_stream_on_connect(s, l_connect, NULL);
    weft_stream_on_data(s, l_data, NULL);
    weft_stream_on_end(s, l_end, NULL);
    weft_stream_on_error(s, l_error, NULL);
    weft_stream_on_close(s, l_close, NULL);
}

/* ---- createConnection / connect / readyState -------------------------- */

static void write_then_end(weft_stream *s, void *ctx)
{
    (void)ctx;
    ck_assert_int_eq(weft_stream_write(s, "ping", 4), 1);
    ck_assert_int_eq(weft_stream_end(s, NULL, 0), 0);
    tu_logf("ended:%s", state(s));
}

START_TEST(create_connection_walks_ready_state_and_event_order)
{
    echo e = {0};
    echo_start(&e);
    weft_stream *c;
    ck_assert_int_eq(weft_create_connection(tu_loop, e.port, "127.0.0.1", &c),
                     0);
    ck_assert_str_eq(state(c), "opening");
    log_all(c);
    weft_stream_on_connect(c, write_then_end, NULL);
    ck_assert_str_eq(tu_log_str(), ""); /* nothing emitted synchronously */
    tu_run(5000);
    ck_assert_str_eq(tu_log_str(), "connect:open,ended:readOnly,data:ping,"
                                   "end:closed,close:0:closed");
}
END_TEST

START_TEST(connect_on_a_new_stream_and_host_defaults_to_localhost)
{
    echo e = {0};
    echo_start(&e);
    weft_stream *c = weft_stream_new(tu_loop);
    ck_assert_str_eq(state(c), "closed");
    /* localhost resolves (off the loop) to 127.0.0.1 here. */
    ck_assert_int_eq(weft_stream_connect(c, e.port, NULL), 0);
    ck_assert_str_eq(state(c), "opening");
    ck_assert_int_eq(weft_stream_connect(c, e.port, NULL), WEFT_ESTATE);
    log_all(c);
    weft_stream_on_connect(c, write_then_end, NULL);
    tu_run(5000);
    ck_assert_str_eq(tu_log_str(), "connect:open,ended:readOnly,data:ping,"
                                   "end:closed,close:0:closed");
}
END_TEST

static void reconnect_in_close(weft_stream *s, bool had_error, void *ctx)
{
    echo *e = ctx;
    if (had_error) {
        /* The first attempt was refused: reuse the stream. */
        ck_assert_int_eq(weft_stream_connect(s, e->port, "127.0.0.1"), 0);
        ck_assert_str_eq(state(s), "opening");
    }
}

START_TEST(connect_reuses_a_stream_from_its_close_listener)
{
    echo e = {0};
    echo_start(&e);
    /* A port nobody listens on: bind and close a socket to find one. */
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sin = {.sin_family = AF_INET};
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    bind(fd, (struct sockaddr *)&sin, sizeof(sin));
    socklen_t len = sizeof(sin);
    getsockname(fd, (struct sockaddr *)&sin, &len);
    close(fd);

    weft_stream *c;
    ck_assert_int_eq(weft_create_connection(tu_loop, ntohs(sin.sin_port),
                                            "127.0.0.1", &c),
                     0);
    log_all(c);
    weft_stream_on_close(c, reconnect_in_close, &e);
    weft_stream_on_connect(c, write_then_end, NULL);
    tu_run(5000);
    ck_assert_str_eq(tu_log_str(),
                     "error:ECONNREFUSED,close:1:closed,connect:open,"
                     "ended:readOnly,data:ping,end:closed,close:0:closed");
}
END_TEST

START_TEST(connect_refused_emits_error_with_node_message_then_close_true)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sin = {.sin_family = AF_INET};
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    bind(fd, (struct sockaddr *)&sin, sizeof(sin));
    socklen_t len = sizeof(sin);
    getsockname(fd, (struct sockaddr *)&sin, &len);
    close(fd);
    int port = ntohs(sin.sin_port);

    weft_stream *c;
    ck_assert_int_eq(weft_create_connection(tu_loop, port, "127.0.0.1", &c),
                     0);
    char msg[128] = "";
    weft_stream_on_connect(c, l_connect, NULL);
    weft_stream_on_error(c, l_error, msg);
    weft_stream_on_close(c, l_close, NULL);
    tu_run(5000);
    ck_assert_str_eq(tu_log_str(), "error:ECONNREFUSED,close:1:closed");
    char want[128];
    snprintf(want, sizeof(want), "connect ECONNREFUSED 127.0.0.1:%d", port);
    ck_assert_str_eq(msg, want);
}
END_TEST

START_TEST(connect_to_a_missing_unix_path_is_enoent)
{
    weft_stream *c;
    const char *path = tu_sock_path("missing");
    ck_assert_int_eq(weft_create_connection_path(tu_loop, path, &c), 0);
    ck_assert_str_eq(state(c), "opening");
    char msg[128] = "";
    weft_stream_on_error(c, l_error, msg);
    weft_stream_on_close(c, l_close, NULL);
    tu_run(5000);
    ck_assert_str_eq(tu_log_str(), "error:ENOENT,close:1:closed");
    ck_assert_msg(strncmp(msg, "connect ENOENT /tmp/weft-", 25) == 0, "%s",
                  msg);
}
END_TEST

START_TEST(unhandled_error_does_not_abort_and_close_follows)
{
    weft_stream *c;
    ck_assert_int_eq(
        weft_create_connection_path(tu_loop, tu_sock_path("none"), &c), 0);
    weft_stream_on_close(c, l_close, NULL);
    tu_run(5000);
    ck_assert_str_eq(tu_log_str(), "close:1:closed");
}
END_TEST

START_TEST(connect_rejects_bad_arguments)
{
    weft_stream *c = NULL;
    ck_assert_int_eq(weft_create_connection(tu_loop, 70000, NULL, &c),
                     WEFT_EINVAL);
    ck_assert_ptr_null(c);
    ck_assert_int_eq(weft_create_connection(tu_loop, 0, NULL, &c),
                     WEFT_EINVAL);
    ck_assert_int_eq(weft_create_connection(tu_loop, 80, NULL, NULL),
                     WEFT_EINVAL);
    ck_assert_int_eq(weft_create_connection_path(tu_loop, NULL, &c),
                     WEFT_EINVAL);
    char longpath[300];
    memset(longpath, 'x', sizeof(longpath) - 1);
    longpath[0] = '/';
    longpath[sizeof(longpath) - 1] = '\0';
    ck_assert_int_eq(weft_create_connection_path(tu_loop, longpath, &c),
                     WEFT_ENAMETOOLONG);
    ck_assert_int_eq(weft_stream_connect(NULL, 80, NULL), WEFT_EINVAL);
    ck_assert_int_eq(weft_stream_connect_path(NULL, "/x"), WEFT_EINVAL);
    /* NULL everywhere else: an error or a no-op, never a crash. */
    ck_assert_int_eq(weft_stream_write(NULL, "x", 1), WEFT_EINVAL);
    ck_assert_int_eq(weft_stream_write_string(NULL, "x", NULL), WEFT_EINVAL);
    ck_assert_int_eq(weft_stream_end(NULL, NULL, 0), WEFT_EINVAL);
    ck_assert_int_eq(weft_stream_set_encoding(NULL, "utf8"), WEFT_EINVAL);
    ck_assert_int_eq(weft_stream_set_timeout(NULL, 1), WEFT_EINVAL);
    ck_assert_int_eq(weft_stream_set_no_delay(NULL, true), WEFT_EINVAL);
    ck_assert_int_eq(weft_stream_set_keep_alive(NULL, true, 0), WEFT_EINVAL);
    ck_assert_int_eq(weft_stream_on_data(NULL, l_data, NULL), WEFT_EINVAL);
    ck_assert_int_eq(weft_stream_ready_state(NULL), WEFT_CLOSED);
    ck_assert_ptr_null(weft_stream_remote_address(NULL));
    ck_assert_int_eq(weft_stream_remote_port(NULL), -1);
    weft_stream_destroy(NULL);
    weft_stream_pause(NULL);
    weft_stream_resume(NULL);
    /* A stream that never connected: writes are refused. */
    weft_stream *s = weft_stream_new(tu_loop);
    ck_assert_int_eq(weft_stream_write(s, "x", 1), WEFT_ESTATE);
    ck_assert_int_eq(weft_stream_write(s, NULL, 1), WEFT_EINVAL);
    ck_assert_int_eq(weft_stream_end(s, NULL, 0), WEFT_ESTATE);
    ck_assert_int_eq(weft_stream_set_encoding(s, "klingon"), WEFT_EENCODING);
    ck_assert_int_eq(weft_stream_write_string(s, "x", "klingon"),
                     WEFT_EENCODING);
    ck_assert_ptr_null(weft_stream_remote_address(s));
    weft_address a;
    ck_assert_int_eq(weft_stream_address(s, &a), WEFT_ENOTCONN);
    weft_stream_on_close(s, l_close, NULL);
    weft_stream_destroy(s);
    tu_run(2000);
    ck_assert_str_eq(tu_log_str(), "close:0:closed");
}
END_TEST

/* ---- setEncoding and write(string, encoding) -------------------------- */

typedef struct {
    const char *encoding;
    const char *send_enc;
    const char *send;
    char got[256];
    size_t len;
} enc_case;

static void collect(weft_stream *s, const char *d, size_t n, void *ctx)
{
    enc_case *ec = ctx;
    (void)s;
    ck_assert_uint_lt(ec->len + n, sizeof(ec->got));
    memcpy(ec->got + ec->len, d, n);
    ec->len += n;
    ec->got[ec->len] = '\0';
}

static void send_case(weft_stream *s, void *ctx)
{
    enc_case *ec = ctx;
    ck_assert_int_eq(weft_stream_end_string(s, ec->send, ec->send_enc), 0);
}

static void run_enc_case(enc_case *ec)
{
    echo e = {0};
    echo_start(&e);
    weft_stream *c;
    ck_assert_int_eq(weft_create_connection(tu_loop, e.port, "127.0.0.1", &c),
                     0);
    ck_assert_int_eq(weft_stream_set_encoding(c, ec->encoding), 0);
    weft_stream_on_connect(c, send_case, ec);
    weft_stream_on_data(c, collect, ec);
    tu_run(5000);
}

START_TEST(set_encoding_utf8_delivers_text)
{
    enc_case ec = {.encoding = "utf8", .send = "h\xc3\xa9llo \xe2\x82\xac"};
    run_enc_case(&ec);
    ck_assert_str_eq(ec.got, "h\xc3\xa9llo \xe2\x82\xac");
}
END_TEST

START_TEST(set_encoding_ascii_clears_the_high_bit)
{
    enc_case ec = {.encoding = "ascii", .send = "A\xc3\xa9"};
    run_enc_case(&ec);
    ck_assert_str_eq(ec.got, "AC)");
}
END_TEST

START_TEST(set_encoding_base64_delivers_base64_text)
{
    enc_case ec = {.encoding = "base64", .send = "hello"};
    run_enc_case(&ec);
    ck_assert_str_eq(ec.got, "aGVsbG8=");
}
END_TEST

START_TEST(write_string_base64_decodes_before_sending)
{
    enc_case ec = {.encoding = NULL, .send = "aGVsbG8gd29ybGQ=",
                   .send_enc = "base64"};
    run_enc_case(&ec);
    ck_assert_str_eq(ec.got, "hello world");
}
END_TEST

START_TEST(write_string_hex_decodes_before_sending)
{
    enc_case ec = {.encoding = "hex", .send = "00ff10", .send_enc = "hex"};
    run_enc_case(&ec);
    ck_assert_str_eq(ec.got, "00ff10");
}
END_TEST

static void split_utf8(weft_stream *s, void *ctx)
{
    (void)ctx;
    /* U+20AC sent one byte per write, with Nagle off so they are apart. */
    weft_stream_set_no_delay(s, true);
    weft_stream_write(s, "\xe2", 1);
    weft_stream_write(s, "\x82", 1);
    weft_stream_end(s, "\xac!", 2);
}

static int utf8_chunks;

static void check_whole_chars(weft_stream *s, const char *d, size_t n,
                              void *ctx)
{
    (void)s;
    utf8_chunks++;
    enc_case *ec = ctx;
    /* Every chunk is whole UTF-8: no lone lead or continuation byte. */
    ck_assert((unsigned char)d[0] < 0x80 || (unsigned char)d[0] >= 0xc0);
    collect(s, d, n, ec);
}

START_TEST(set_encoding_utf8_never_splits_a_character_across_data_events)
{
    echo e = {0};
    echo_start(&e);
    enc_case ec = {0};
    weft_stream *c;
    ck_assert_int_eq(weft_create_connection(tu_loop, e.port, "127.0.0.1", &c),
                     0);
    weft_stream_set_encoding(c, "utf8");
    weft_stream_on_connect(c, split_utf8, NULL);
    weft_stream_on_data(c, check_whole_chars, &ec);
    tu_run(5000);
    ck_assert_str_eq(ec.got, "\xe2\x82\xac!");
}
END_TEST

START_TEST(set_encoding_null_returns_to_raw_bytes)
{
    enc_case ec = {.encoding = NULL, .send = "\xff\xfe"};
    run_enc_case(&ec);
    ck_assert_uint_eq(ec.len, 2);
    ck_assert_int_eq((unsigned char)ec.got[0], 0xff);
}
END_TEST

/* ---- write return value and drain ------------------------------------ */

static void write_big(weft_stream *s, void *ctx)
{
    size_t *n = ctx;
    char *buf = malloc(*n);
    memset(buf, 'x', *n);
    int r = weft_stream_write(s, buf, *n);
    free(buf);
    tu_logf("write:%d", r);
    tu_logf("queued:%d", weft_stream_buffer_size(s) > 0);
    if (r == 1)
        weft_stream_end(s, NULL, 0);
}

/* 'drain' comes only while the stream is still writable: end there. */
static void end_on_drain(weft_stream *s, void *ctx)
{
    (void)ctx;
    tu_logf("drain:%zu", weft_stream_buffer_size(s));
    weft_stream_end(s, NULL, 0);
}

static void count_bytes(weft_stream *s, const char *d, size_t n, void *ctx)
{
    (void)s;
    (void)d;
    *(size_t *)ctx += n;
}

START_TEST(write_returns_true_when_flushed_and_false_then_drain_when_queued)
{
    echo e = {0};
    echo_start(&e);
    size_t small = 10, big = 8 << 20, got_small = 0, got_big = 0;
    weft_stream *a, *b;
    ck_assert_int_eq(weft_create_connection(tu_loop, e.port, "127.0.0.1", &a),
                     0);
    weft_stream_on_connect(a, write_big, &small);
    weft_stream_on_data(a, count_bytes, &got_small);
    weft_stream_on_drain(a, l_drain, NULL);
    tu_run(5000);
    ck_assert_str_eq(tu_log_str(), "write:1,queued:0");
    ck_assert_uint_eq(got_small, small);

    tu_log_reset();
    echo_start(&e);
    ck_assert_int_eq(weft_create_connection(tu_loop, e.port, "127.0.0.1", &b),
                     0);
    weft_stream_on_connect(b, write_big, &big);
    weft_stream_on_data(b, count_bytes, &got_big);
    weft_stream_on_drain(b, end_on_drain, NULL);
    tu_run(10000);
    ck_assert_str_eq(tu_log_str(), "write:0,queued:1,drain:0");
    ck_assert_uint_eq(got_big, big);
}
END_TEST

static void write_while_opening(weft_stream *s)
{
    ck_assert_int_eq(weft_stream_write(s, "early", 5), 0);
    ck_assert_uint_eq(weft_stream_buffer_size(s), 5);
    ck_assert_int_eq(weft_stream_end(s, NULL, 0), 0);
    ck_assert_str_eq(state(s), "opening");
}

START_TEST(write_while_connecting_is_queued_and_sent_after_connect)
{
    echo e = {0};
    echo_start(&e);
    weft_stream *c;
    ck_assert_int_eq(weft_create_connection(tu_loop, e.port, "127.0.0.1", &c),
                     0);
    write_while_opening(c);
    log_all(c);
    weft_stream_on_drain(c, l_drain, NULL);
    tu_run(5000);
    /* No 'drain': end() was called, as in Node. */
    ck_assert_str_eq(tu_log_str(), "connect:readOnly,data:early,"
                                   "end:closed,close:0:closed");
}
END_TEST

START_TEST(end_with_data_writes_then_half_closes)
{
    echo e = {0};
    echo_start(&e);
    weft_stream *c;
    ck_assert_int_eq(weft_create_connection(tu_loop, e.port, "127.0.0.1", &c),
                     0);
    log_all(c);
    ck_assert_int_eq(weft_stream_end_string(c, "last words", NULL), 0);
    ck_assert_int_eq(weft_stream_end(c, NULL, 0), 0); /* twice: no-op */
    ck_assert_int_eq(weft_stream_write(c, "x", 1), WEFT_EWRITEAFTEREND);
    ck_assert_int_eq(weft_stream_end(c, "x", 1), WEFT_EWRITEAFTEREND);
    tu_run(5000);
    ck_assert_str_eq(tu_log_str(), "connect:readOnly,data:last words,"
                                   "end:closed,close:0:closed");
}
END_TEST

/* ---- writev ----------------------------------------------------------- */

static void writev_pieces(weft_stream *s, void *ctx)
{
    (void)ctx;
    weft_buf b[4] = {{"GET", 3}, {" / ", 3}, {NULL, 0}, {"HTTP", 4}};
    ck_assert_int_eq(weft_stream_writev(s, b, 4), 1);
    ck_assert_uint_eq(weft_stream_buffer_size(s), 0);
    ck_assert_uint_eq(weft_stream_bytes_written(s), 10);
    weft_stream_end(s, NULL, 0);
}

START_TEST(writev_sends_the_pieces_as_one_buffer)
{
    echo e = {0};
    echo_start(&e);
    weft_stream *c;
    ck_assert_int_eq(weft_create_connection(tu_loop, e.port, "127.0.0.1", &c),
                     0);
    log_all(c);
    weft_stream_on_connect(c, writev_pieces, NULL);
    tu_run(5000);
    ck_assert_str_eq(tu_log_str(), "connect:open,data:GET / HTTP,"
                                   "end:closed,close:0:closed");
}
END_TEST

START_TEST(writev_rejects_bad_arguments_as_write_does)
{
    echo e = {0};
    echo_start(&e);
    weft_stream *c;
    ck_assert_int_eq(weft_create_connection(tu_loop, e.port, "127.0.0.1", &c),
                     0);
    weft_buf ok = {"x", 1}, bad = {NULL, 1};
    ck_assert_int_eq(weft_stream_writev(NULL, &ok, 1), WEFT_EINVAL);
    ck_assert_int_eq(weft_stream_writev(c, NULL, 1), WEFT_EINVAL);
    ck_assert_int_eq(weft_stream_writev(c, &bad, 1), WEFT_EINVAL);
    weft_buf huge[2] = {{"x", SIZE_MAX}, {"y", 2}};
    ck_assert_int_eq(weft_stream_writev(c, huge, 2), WEFT_EINVAL);
    /* Nothing to write while connecting: write()'s answer. */
    ck_assert_int_eq(weft_stream_writev(c, NULL, 0),
                     weft_stream_write(c, NULL, 0));
    ck_assert_int_eq(weft_stream_end(c, NULL, 0), 0);
    ck_assert_int_eq(weft_stream_writev(c, &ok, 1), WEFT_EWRITEAFTEREND);
    log_all(c);
    tu_run(5000);
    ck_assert_str_eq(tu_log_str(), "connect:readOnly,end:closed,"
                                   "close:0:closed");
}
END_TEST

/* A sink that checks every byte against the pattern. */
#define WV_SEED 77
static struct {
    uint64_t got;
    size_t bad;
    bool ended;
} wv;

static void wv_check(weft_stream *s, const char *d, size_t n, void *ctx)
{
    (void)s;
    (void)ctx;
    if (wv.bad == SIZE_MAX && tu_pattern_diff(d, wv.got, n, WV_SEED) != n)
        wv.bad = (size_t)wv.got;
    wv.got += n;
}

static void wv_end(weft_stream *s, void *ctx)
{
    (void)ctx;
    wv.ended = true;
    weft_stream_end(s, NULL, 0);
}

static void wv_accept(weft_server *srv, weft_stream *s, void *ctx)
{
    (void)ctx;
    weft_server_close(srv);
    weft_stream_on_data(s, wv_check, NULL);
    weft_stream_on_end(s, wv_end, NULL);
}

#define WV_BIG (6u << 20)

/*
 * While connecting, pieces are queued in order. Once that queue has
 * drained, a writev larger than the socket takes goes out in one sendmsg
 * and the rest is queued from the right piece and offset; a writev behind
 * that queue is queued after it. Every byte arrives, in order.
 */
static void wv_send(weft_stream *s, void *ctx)
{
    static bool sent;
    if (sent)
        return; /* the 'drain' after the big one */
    sent = true;
    uint8_t *buf = ctx;
    /* Pieces of uneven sizes, so the kernel's partial write falls inside
     * one of them. */
    size_t cuts[] = {100, 101, 4196, 1u << 20, 3u << 20, 5u << 20, WV_BIG};
    weft_buf b[6];
    for (int i = 0; i < 6; i++)
        b[i] = (weft_buf){buf + cuts[i], cuts[i + 1] - cuts[i]};
    ck_assert_uint_eq(weft_stream_buffer_size(s), 0);
    ck_assert_int_eq(weft_stream_writev(s, b, 6), 0);
    ck_assert_uint_gt(weft_stream_buffer_size(s), 0);
    ck_assert_uint_lt(weft_stream_buffer_size(s), WV_BIG - 100);
    weft_buf tail[3] = {{buf + WV_BIG, 10}, {buf + WV_BIG + 10, 0},
                        {buf + WV_BIG + 10, 90}};
    ck_assert_int_eq(weft_stream_writev(s, tail, 3), 0);
    weft_stream_end(s, NULL, 0);
}

START_TEST(writev_queues_exactly_what_the_kernel_left_in_order)
{
    memset(&wv, 0, sizeof(wv));
    wv.bad = SIZE_MAX;
    uint8_t *buf = malloc(WV_BIG + 100);
    tu_pattern(buf, 0, WV_BIG + 100, WV_SEED);
    int port;
    tu_server(wv_accept, NULL, &port);
    weft_stream *c;
    ck_assert_int_eq(weft_create_connection(tu_loop, port, "127.0.0.1", &c),
                     0);
    weft_buf early[3] = {{buf, 40}, {buf + 40, 0}, {buf + 40, 60}};
    ck_assert_int_eq(weft_stream_writev(c, early, 3), 0);
    ck_assert_uint_eq(weft_stream_buffer_size(c), 100);
    weft_stream_on_drain(c, wv_send, buf);
    weft_stream_on_close(c, l_close, NULL);
    tu_run(20000);
    free(buf);
    ck_assert(wv.ended);
    ck_assert_msg(wv.bad == SIZE_MAX, "first bad byte near %zu", wv.bad);
    ck_assert_uint_eq(wv.got, WV_BIG + 100);
    ck_assert_str_eq(tu_log_str(), "close:0:closed");
}
END_TEST

/* ---- cork / uncork ----------------------------------------------------- */

/* A server that logs each 'data' it gets and its 'end'. */
static tu_slog ck_srv;
static size_t ck_got;

static void ck_data(weft_stream *s, const char *d, size_t n, void *ctx)
{
    (void)s;
    (void)ctx;
    ck_got += n;
    if (n <= 16)
        tu_slog_add(&ck_srv, "data:%.*s", (int)n, d);
    else
        tu_slog_add(&ck_srv, "data:%zu", n);
}

static void ck_end(weft_stream *s, void *ctx)
{
    (void)ctx;
    tu_slog_add(&ck_srv, "end");
    weft_stream_end(s, NULL, 0);
}

static void ck_accept(weft_server *srv, weft_stream *s, void *ctx)
{
    (void)ctx;
    weft_server_close(srv);
    weft_stream_on_data(s, ck_data, NULL);
    weft_stream_on_end(s, ck_end, NULL);
}

static weft_stream *ck_client(void (*on_connect)(weft_stream *, void *))
{
    memset(&ck_srv, 0, sizeof(ck_srv));
    ck_got = 0;
    int port;
    tu_server(ck_accept, NULL, &port);
    weft_stream *c;
    ck_assert_int_eq(weft_create_connection(tu_loop, port, "127.0.0.1", &c),
                     0);
    if (on_connect != NULL)
        weft_stream_on_connect(c, on_connect, NULL);
    weft_stream_on_drain(c, l_drain, NULL);
    weft_stream_on_close(c, l_close, NULL);
    return c;
}

static void ck_release(weft_timer *t, void *ctx)
{
    (void)t;
    weft_stream *c = ctx;
    /* Held until now: the server has seen nothing. */
    tu_logf("server-had:%zu", ck_got);
    weft_stream_uncork(c);
    tu_logf("uncorked:%zu", weft_stream_buffer_size(c));
    weft_stream_end(c, NULL, 0);
}

static void ck_hold(weft_stream *s, void *ctx)
{
    (void)ctx;
    ck_assert_int_eq(weft_stream_cork(s), 0);
    ck_assert_int_eq(weft_stream_write(s, "a", 1), 1);
    ck_assert_int_eq(weft_stream_write_string(s, "b", NULL), 1);
    weft_buf v[2] = {{"c", 1}, {"d", 1}};
    ck_assert_int_eq(weft_stream_writev(s, v, 2), 1);
    ck_assert_uint_eq(weft_stream_buffer_size(s), 4);
    ck_assert_int_eq(weft_stream_corked(s), 1);
    weft_set_timeout(tu_loop, 30, ck_release, s);
}

START_TEST(cork_holds_writes_until_uncork_sends_them_at_once)
{
    ck_client(ck_hold);
    tu_run(5000);
    ck_assert_str_eq(tu_log_str(), "server-had:0,uncorked:0,close:0:closed");
    ck_assert_str_eq(ck_srv.buf, "data:abcd,end");
}
END_TEST

static void ck_nest(weft_stream *s, void *ctx)
{
    (void)ctx;
    weft_stream_cork(s);
    weft_stream_cork(s);
    ck_assert_int_eq(weft_stream_write(s, "x", 1), 1);
    weft_stream_uncork(s);
    ck_assert_int_eq(weft_stream_corked(s), 1);
    ck_assert_uint_eq(weft_stream_buffer_size(s), 1);
    /* end() uncorks whatever the depth: "x", then the FIN. */
    ck_assert_int_eq(weft_stream_end(s, "y", 1), 0);
    ck_assert_int_eq(weft_stream_corked(s), 0);
    ck_assert_uint_eq(weft_stream_buffer_size(s), 0);
    /* Nothing to hold any more. */
    ck_assert_int_eq(weft_stream_cork(s), 0);
    ck_assert_int_eq(weft_stream_corked(s), 0);
    weft_stream_uncork(s); /* not corked: nothing */
}

START_TEST(cork_nests_and_end_uncorks_at_any_depth)
{
    ck_client(ck_nest);
    tu_run(5000);
    ck_assert_str_eq(tu_log_str(), "close:0:closed");
    ck_assert_str_eq(ck_srv.buf, "data:xy,end");
}
END_TEST

static void ck_high(weft_stream *s, void *ctx)
{
    (void)ctx;
    static char buf[10 * 1024];
    memset(buf, 'h', sizeof(buf));
    weft_stream_cork(s);
    ck_assert_int_eq(weft_stream_write(s, buf, sizeof(buf)), 1);
    ck_assert_int_eq(weft_stream_write(s, buf, sizeof(buf)), 0);
    weft_stream_uncork(s);
    /* 'drain' is owed, but never emitted inside uncork(). */
    tu_logf("uncorked:%zu", weft_stream_buffer_size(s));
}

static void ck_end_on_drain(weft_stream *s, void *ctx)
{
    (void)ctx;
    weft_stream_end(s, NULL, 0);
}

START_TEST(cork_past_16_kib_answers_false_and_drain_follows_uncork)
{
    weft_stream *c = ck_client(ck_high);
    weft_stream_on_drain(c, ck_end_on_drain, NULL);
    tu_run(5000);
    ck_assert_str_eq(tu_log_str(), "uncorked:0,drain,close:0:closed");
    ck_assert_uint_eq(ck_got, 20 * 1024);
}
END_TEST

static void ck_discard(weft_stream *s, void *ctx)
{
    (void)ctx;
    weft_stream_cork(s);
    ck_assert_int_eq(weft_stream_write(s, "lost", 4), 1);
    weft_stream_destroy(s);
    ck_assert_int_eq(weft_stream_corked(s), 0);
}

START_TEST(destroy_while_corked_discards_the_held_writes)
{
    ck_client(ck_discard);
    tu_run(5000);
    ck_assert_str_eq(tu_log_str(), "close:0:closed");
    ck_assert_str_eq(ck_srv.buf, "end");
    ck_assert_uint_eq(ck_got, 0);
}
END_TEST

static void ck_connected_corked(weft_stream *s, void *ctx)
{
    (void)ctx;
    /* Written while connecting, corked: still held after 'connect'. */
    ck_assert_uint_eq(weft_stream_buffer_size(s), 5);
    weft_set_timeout(tu_loop, 30, ck_release, s);
}

START_TEST(cork_before_connect_holds_past_the_connect)
{
    weft_stream *c = ck_client(ck_connected_corked);
    ck_assert_int_eq(weft_stream_cork(c), 0);
    /* While connecting, write() queues and answers 0, corked or not. */
    ck_assert_int_eq(weft_stream_write(c, "early", 5), 0);
    tu_run(5000);
    /* The 0 owed a 'drain', but end() came right after the uncork: none,
     * as Node. */
    ck_assert_str_eq(tu_log_str(),
                     "server-had:0,uncorked:0,close:0:closed");
    ck_assert_str_eq(ck_srv.buf, "data:early,end");
}
END_TEST

/* ---- destroy ---------------------------------------------------------- */

static void destroy_now(weft_stream *s, void *ctx)
{
    (void)ctx;
    weft_stream_destroy(s);
    tu_logf("destroyed:%s", state(s));
    ck_assert_int_eq(weft_stream_write(s, "x", 1), WEFT_ESTATE);
    weft_stream_destroy(s);
}

START_TEST(destroy_closes_at_once_and_close_follows_once)
{
    echo e = {0};
    echo_start(&e);
    weft_stream *c;
    ck_assert_int_eq(weft_create_connection(tu_loop, e.port, "127.0.0.1", &c),
                     0);
    log_all(c);
    weft_stream_on_connect(c, destroy_now, NULL);
    tu_run(5000);
    ck_assert_str_eq(tu_log_str(),
                     "connect:open,destroyed:closed,close:0:closed");
}
END_TEST

/* ---- pause / resume --------------------------------------------------- */

static void resume_later_stream(weft_timer *t, void *ctx)
{
    (void)t;
    tu_log("resumed");
    weft_stream_resume(ctx);
}

typedef struct {
    weft_stream *c;
    size_t got;
    int data_while_paused;
} pause_state;

static void paused_data(weft_stream *s, const char *d, size_t n, void *ctx)
{
    pause_state *ps = ctx;
    (void)d;
    if (weft_stream_is_paused(s))
        ps->data_while_paused++;
    ps->got += n;
}

static void resume_later(weft_timer *t, void *ctx)
{
    pause_state *ps = ctx;
    (void)t;
    tu_logf("got-while-paused:%zu", ps->got);
    weft_stream_resume(ps->c);
}

static void send_and_pause(weft_stream *s, void *ctx)
{
    pause_state *ps = ctx;
    weft_stream_pause(s);
    weft_stream_end_string(s, "0123456789", NULL);
    weft_set_timeout(tu_loop, 100, resume_later, ps);
}

START_TEST(pause_stops_data_until_resume)
{
    echo e = {0};
    echo_start(&e);
    pause_state ps = {0};
    ck_assert_int_eq(
        weft_create_connection(tu_loop, e.port, "127.0.0.1", &ps.c), 0);
    weft_stream_on_connect(ps.c, send_and_pause, &ps);
    weft_stream_on_data(ps.c, paused_data, &ps);
    weft_stream_on_end(ps.c, l_end, NULL);
    tu_run(5000);
    ck_assert_str_eq(tu_log_str(), "got-while-paused:0,end:closed");
    ck_assert_uint_eq(ps.got, 10);
    ck_assert_int_eq(ps.data_while_paused, 0);
}
END_TEST

/* Regression (found by the churn test): the decoder's flush at EOF emits
 * a last 'data'; a listener that pauses there must hold back 'end'. */
static void pause_on_data(weft_stream *s, const char *d, size_t n, void *ctx)
{
    (void)ctx;
    tu_logf("data:%.*s:%s", (int)n, d, state(s));
    weft_stream_pause(s);
    weft_set_timeout(tu_loop, 50, resume_later_stream, s);
}

START_TEST(end_waits_for_resume_after_the_decoder_flush_pauses)
{
    echo e = {0};
    echo_start(&e);
    weft_stream *c;
    ck_assert_int_eq(weft_create_connection(tu_loop, e.port, "127.0.0.1", &c),
                     0);
    /* One byte in base64: held by the decoder until the end flushes it. */
    weft_stream_set_encoding(c, "base64");
    weft_stream_end_string(c, "A", NULL);
    weft_stream_on_data(c, pause_on_data, NULL);
    weft_stream_on_end(c, l_end, NULL);
    tu_run(5000);
    ck_assert_str_eq(tu_log_str(), "data:QQ==:closed,resumed,end:closed");
}
END_TEST

/* ---- setTimeout ------------------------------------------------------- */

typedef struct {
    int timeouts;
    weft_stream *c;
} timeout_state;

static void on_timeout(weft_stream *s, void *ctx)
{
    timeout_state *ts = ctx;
    ts->timeouts++;
    tu_logf("timeout:%s", state(s));
    if (ts->timeouts == 1) {
        /* Activity re-arms the idle timer: one more 'timeout' later. */
        weft_stream_write(s, "!", 1);
    } else {
        weft_stream_end(s, NULL, 0);
    }
}

START_TEST(set_timeout_emits_timeout_without_closing_and_rearms_on_activity)
{
    echo e = {0};
    echo_start(&e);
    timeout_state ts = {0};
    weft_stream *c;
    ck_assert_int_eq(weft_create_connection(tu_loop, e.port, "127.0.0.1", &c),
                     0);
    ck_assert_int_eq(weft_stream_set_timeout(c, 50), 0);
    weft_stream_on_timeout(c, on_timeout, &ts);
    weft_stream_on_close(c, l_close, NULL);
    tu_run(5000);
    ck_assert_int_eq(ts.timeouts, 2);
    ck_assert_str_eq(tu_log_str(), "timeout:open,timeout:open,close:0:closed");
}
END_TEST

static void end_stream(weft_timer *t, void *ctx)
{
    (void)t;
    weft_stream_end(ctx, NULL, 0);
}

START_TEST(set_timeout_zero_disables_the_idle_timeout)
{
    echo e = {0};
    echo_start(&e);
    timeout_state ts = {0};
    weft_stream *c;
    ck_assert_int_eq(weft_create_connection(tu_loop, e.port, "127.0.0.1", &c),
                     0);
    /* Armed, then disabled before the loop runs: the stream then idles
     * for three times the period and no 'timeout' may come. */
    ck_assert_int_eq(weft_stream_set_timeout(c, 50), 0);
    ck_assert_int_eq(weft_stream_set_timeout(c, 0), 0);
    weft_stream_on_timeout(c, on_timeout, &ts);
    weft_set_timeout(tu_loop, 150, end_stream, c);
    tu_run(5000);
    ck_assert_int_eq(ts.timeouts, 0);
}
END_TEST

/* Regression (found by the stress suite): a stream reused from its own
 * 'close' keeps its idle timeout. */
static int reuse_round;

static void timeout_then_destroy(weft_stream *s, void *ctx)
{
    (void)ctx;
    tu_logf("timeout:%d", reuse_round);
    weft_stream_destroy(s);
}

static void reconnect_once(weft_stream *s, bool had_error, void *ctx)
{
    echo *e = ctx;
    (void)had_error;
    if (reuse_round++ == 0)
        ck_assert_int_eq(weft_stream_connect(s, e->port, "127.0.0.1"), 0);
    else
        weft_server_close(e->srv);
}

START_TEST(set_timeout_survives_reconnecting_a_closed_stream)
{
    echo e = {0};
    e.srv = tu_server(echo_conn, &e, &e.port);
    reuse_round = 0;
    weft_stream *c;
    ck_assert_int_eq(weft_create_connection(tu_loop, e.port, "127.0.0.1", &c),
                     0);
    ck_assert_int_eq(weft_stream_set_timeout(c, 30), 0);
    weft_stream_on_timeout(c, timeout_then_destroy, NULL);
    weft_stream_on_close(c, reconnect_once, &e);
    tu_run(5000);
    ck_assert_str_eq(tu_log_str(), "timeout:0,timeout:1");
}
END_TEST

/* ---- setNoDelay / setKeepAlive / remoteAddress ------------------------ */

static int opt(int fd, int level, int name)
{
    int v = -1;
    socklen_t len = sizeof(v);
    ck_assert_int_eq(getsockopt(fd, level, name, &v, &len), 0);
    return v;
}

static void check_options(weft_stream *s, void *ctx)
{
    echo *e = ctx;
    weft_address local;
    ck_assert_int_eq(weft_stream_address(s, &local), 0);
    int fd = tu_fd_for_ports(local.port, e->port);
    ck_assert_int_ge(fd, 0);
    /* Set before connect, applied at connect. */
    ck_assert_int_eq(opt(fd, IPPROTO_TCP, TCP_NODELAY), 1);
    ck_assert_int_eq(opt(fd, SOL_SOCKET, SO_KEEPALIVE), 1);
    ck_assert_int_eq(opt(fd, IPPROTO_TCP, TCP_KEEPIDLE), 3);
    /* Changed while open, applied at once. */
    ck_assert_int_eq(weft_stream_set_no_delay(s, false), 0);
    ck_assert_int_eq(opt(fd, IPPROTO_TCP, TCP_NODELAY), 0);
    ck_assert_int_eq(weft_stream_set_keep_alive(s, true, 10000), 0);
    ck_assert_int_eq(opt(fd, IPPROTO_TCP, TCP_KEEPIDLE), 10);
    /* initialDelay 0 leaves the delay unchanged. */
    ck_assert_int_eq(weft_stream_set_keep_alive(s, true, 0), 0);
    ck_assert_int_eq(opt(fd, IPPROTO_TCP, TCP_KEEPIDLE), 10);
    ck_assert_int_eq(weft_stream_set_keep_alive(s, false, 0), 0);
    ck_assert_int_eq(opt(fd, SOL_SOCKET, SO_KEEPALIVE), 0);
    ck_assert_str_eq(weft_stream_remote_address(s), "127.0.0.1");
    ck_assert_int_eq(weft_stream_remote_port(s), e->port);
    tu_log("checked");
    weft_stream_end(s, NULL, 0);
}

START_TEST(set_no_delay_and_set_keep_alive_set_the_socket_options)
{
    echo e = {0};
    echo_start(&e);
    weft_stream *c;
    ck_assert_int_eq(weft_create_connection(tu_loop, e.port, "127.0.0.1", &c),
                     0);
    ck_assert_int_eq(weft_stream_set_no_delay(c, true), 0);
    ck_assert_int_eq(weft_stream_set_keep_alive(c, true, 2500), 0);
    weft_stream_on_connect(c, check_options, &e);
    tu_run(5000);
    ck_assert_str_eq(tu_log_str(), "checked");
}
END_TEST

static void log_remote(weft_server *srv, weft_stream *s, void *ctx)
{
    (void)ctx;
    tu_logf("remote:%s", weft_stream_remote_address(s));
    weft_stream_destroy(s);
    weft_server_close(srv);
}

START_TEST(remote_address_on_server_side_streams_is_the_peer_ip)
{
    int port;
    weft_server *srv = tu_server(log_remote, NULL, &port);
    (void)srv;
    weft_stream *c;
    ck_assert_int_eq(weft_create_connection(tu_loop, port, "127.0.0.1", &c),
                     0);
    tu_run(5000);
    ck_assert_str_eq(tu_log_str(), "remote:127.0.0.1");
}
END_TEST

/* ---- bytes counters ---------------------------------------------------- */

static void count_close(weft_stream *s, bool e, void *ctx)
{
    (void)e;
    (void)ctx;
    tu_logf("read:%llu,written:%llu",
            (unsigned long long)weft_stream_bytes_read(s),
            (unsigned long long)weft_stream_bytes_written(s));
}

START_TEST(bytes_read_and_written_count_the_wire_bytes)
{
    echo e = {0};
    echo_start(&e);
    weft_stream *c;
    ck_assert_int_eq(weft_create_connection(tu_loop, e.port, "127.0.0.1", &c),
                     0);
    weft_stream_end_string(c, "12345", NULL);
    weft_stream_on_close(c, count_close, NULL);
    tu_run(5000);
    ck_assert_str_eq(tu_log_str(), "read:5,written:5");
}
END_TEST

START_TEST(set_data_and_loop_round_trip)
{
    weft_stream *s = weft_stream_new(tu_loop);
    int x;
    weft_stream_set_data(s, &x);
    ck_assert_ptr_eq(weft_stream_data(s), &x);
    ck_assert_ptr_eq(weft_stream_loop(s), tu_loop);
    ck_assert_ptr_null(weft_stream_server(s));
    weft_stream_destroy(s);
    tu_run(1000);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("stream");
    TCase *tc = tu_tcase("stream");
    tcase_add_test(tc, create_connection_walks_ready_state_and_event_order);
    tcase_add_test(tc, connect_on_a_new_stream_and_host_defaults_to_localhost);
    tcase_add_test(tc, connect_reuses_a_stream_from_its_close_listener);
    tcase_add_test(
        tc, connect_refused_emits_error_with_node_message_then_close_true);
    tcase_add_test(tc, connect_to_a_missing_unix_path_is_enoent);
    tcase_add_test(tc, unhandled_error_does_not_abort_and_close_follows);
    tcase_add_test(tc, connect_rejects_bad_arguments);
    tcase_add_test(tc, set_encoding_utf8_delivers_text);
    tcase_add_test(tc, set_encoding_ascii_clears_the_high_bit);
    tcase_add_test(tc, set_encoding_base64_delivers_base64_text);
    tcase_add_test(tc, write_string_base64_decodes_before_sending);
    tcase_add_test(tc, write_string_hex_decodes_before_sending);
    tcase_add_test(
        tc, set_encoding_utf8_never_splits_a_character_across_data_events);
    tcase_add_test(tc, set_encoding_null_returns_to_raw_bytes);
    tcase_add_test(
        tc, write_returns_true_when_flushed_and_false_then_drain_when_queued);
    tcase_add_test(tc,
                   write_while_connecting_is_queued_and_sent_after_connect);
    tcase_add_test(tc, writev_sends_the_pieces_as_one_buffer);
    tcase_add_test(tc, writev_rejects_bad_arguments_as_write_does);
    tcase_add_test(tc, writev_queues_exactly_what_the_kernel_left_in_order);
    tcase_add_test(tc, cork_holds_writes_until_uncork_sends_them_at_once);
    tcase_add_test(tc, cork_nests_and_end_uncorks_at_any_depth);
    tcase_add_test(tc, cork_past_16_kib_answers_false_and_drain_follows_uncork);
    tcase_add_test(tc, destroy_while_corked_discards_the_held_writes);
    tcase_add_test(tc, cork_before_connect_holds_past_the_connect);
    tcase_add_test(tc, end_with_data_writes_then_half_closes);
    tcase_add_test(tc, destroy_closes_at_once_and_close_follows_once);
    tcase_add_test(tc, pause_stops_data_until_resume);
    tcase_add_test(tc, end_waits_for_resume_after_the_decoder_flush_pauses);
    tcase_add_test(
        tc, set_timeout_emits_timeout_without_closing_and_rearms_on_activity);
    tcase_add_test(tc, set_timeout_zero_disables_the_idle_timeout);
    tcase_add_test(tc, set_timeout_survives_reconnecting_a_closed_stream);
    tcase_add_test(tc, set_no_delay_and_set_keep_alive_set_the_socket_options);
    tcase_add_test(tc, remote_address_on_server_side_streams_is_the_peer_ip);
    tcase_add_test(tc, bytes_read_and_written_count_the_wire_bytes);
    tcase_add_test(tc, set_data_and_loop_round_trip);
    suite_add_tcase(s, tc);
    return tu_run_suite(s);
}
