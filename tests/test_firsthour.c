/*
 * test_firsthour.c - what a new user hit in the first hour, each pinned:
 * huge delays that wrapped and fired at once, end(data) on a destroyed
 * stream that dropped the data silently, an 'error' nobody listened for
 * that vanished, and weft_loop_close(NULL).
 */
#include "testutil.h"

#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static void count_fire(weft_timer *t, void *ctx)
{
    (void)t;
    (*(int *)ctx)++;
}

START_TEST(a_huge_timeout_or_interval_never_fires_at_once)
{
    int fired = 0;
    weft_timer *a = weft_set_timeout(tu_loop, UINT64_MAX, count_fire, &fired);
    weft_timer *b = weft_set_timeout(tu_loop, (uint64_t)-5, count_fire, &fired);
    weft_timer *c = weft_set_interval(tu_loop, UINT64_MAX, count_fire, &fired);
    ck_assert_ptr_nonnull(a);
    ck_assert_ptr_nonnull(b);
    ck_assert_ptr_nonnull(c);
    for (int i = 0; i < 100; i++)
        ck_assert_int_eq(weft_loop_run_mode(tu_loop, WEFT_RUN_NOWAIT), 1);
    ck_assert_int_eq(fired, 0);
    /* The loop would sleep as long as it may, not spin. */
    ck_assert_int_gt(weft_loop_backend_timeout(tu_loop), 1000);
    weft_clear_timer(a);
    weft_clear_timer(b);
    weft_clear_timer(c);
    tu_run(1000);
}
END_TEST

static void on_timeout(weft_stream *s, void *ctx)
{
    (void)s;
    (*(int *)ctx)++;
}

static void hold(weft_server *srv, weft_stream *s, void *ctx)
{
    (void)srv;
    (void)ctx;
    (void)s;
}

static void end_both(weft_timer *t, void *ctx)
{
    (void)t;
    weft_stream_destroy(ctx);
}

static void close_server(weft_stream *s, bool had_error, void *ctx)
{
    (void)s;
    (void)had_error;
    weft_server_close(ctx);
}

START_TEST(a_huge_stream_timeout_never_fires_at_once)
{
    int port, timeouts = 0;
    weft_server *srv = tu_server(hold, NULL, &port);
    weft_stream *c;
    ck_assert_int_eq(weft_create_connection(tu_loop, port, "127.0.0.1", &c), 0);
    ck_assert_int_eq(weft_stream_set_timeout(c, UINT64_MAX), 0);
    weft_stream_on_timeout(c, on_timeout, &timeouts);
    weft_stream_on_close(c, close_server, srv);
    weft_set_timeout(tu_loop, 50, end_both, c);
    tu_run(2000);
    ck_assert_int_eq(timeouts, 0);
}
END_TEST

START_TEST(end_with_data_on_a_destroyed_stream_is_estate)
{
    int port;
    weft_server *srv = tu_server(hold, NULL, &port);
    weft_stream *c;
    ck_assert_int_eq(weft_create_connection(tu_loop, port, "127.0.0.1", &c), 0);
    weft_stream_on_close(c, close_server, srv);
    weft_stream_destroy(c);
    ck_assert_int_eq(weft_stream_write(c, "x", 1), WEFT_ESTATE);
    ck_assert_int_eq(weft_stream_end(c, "x", 1), WEFT_ESTATE);
    ck_assert_int_eq(weft_stream_end(c, NULL, 0), 0); /* nothing lost */
    tu_run(2000);
}
END_TEST

/* ---- an 'error' nobody listens for ------------------------------------- */

typedef struct seen {
    char object[16];
    void *handle;
    int err;
    char msg[160];
    int n;
} seen;

static void record_unhandled(const char *object, void *handle, int err,
                             const char *message, void *ctx)
{
    seen *s = ctx;
    snprintf(s->object, sizeof(s->object), "%s", object);
    snprintf(s->msg, sizeof(s->msg), "%s", message);
    s->handle = handle;
    s->err = err;
    s->n++;
}

static int refused_port(void)
{
    /* A port nobody listens on: bind one, learn it, close it. */
    int port;
    weft_server *srv = tu_server(NULL, NULL, &port);
    weft_server_close(srv);
    tu_run(1000);
    return port;
}

START_TEST(an_unhandled_stream_error_reaches_the_programs_handler)
{
    int port = refused_port();
    seen s = {0};
    weft_set_unhandled_error_handler(record_unhandled, &s);
    weft_stream *c;
    ck_assert_int_eq(weft_create_connection(tu_loop, port, "127.0.0.1", &c), 0);
    tu_run(2000);
    weft_set_unhandled_error_handler(NULL, NULL);
    ck_assert_int_eq(s.n, 1);
    ck_assert_str_eq(s.object, "stream");
    ck_assert_ptr_eq(s.handle, c);
    ck_assert_int_eq(s.err, WEFT_ECONNREFUSED);
    ck_assert_ptr_nonnull(strstr(s.msg, "connect ECONNREFUSED 127.0.0.1:"));
}
END_TEST

static void listened_error(weft_stream *st, int err, const char *m, void *ctx)
{
    (void)st;
    (void)err;
    (void)m;
    (*(int *)ctx)++;
}

START_TEST(a_handled_error_does_not_reach_the_unhandled_path)
{
    int port = refused_port();
    seen s = {0};
    int handled = 0;
    weft_set_unhandled_error_handler(record_unhandled, &s);
    weft_stream *c;
    ck_assert_int_eq(weft_create_connection(tu_loop, port, "127.0.0.1", &c), 0);
    weft_stream_on_error(c, listened_error, &handled);
    tu_run(2000);
    weft_set_unhandled_error_handler(NULL, NULL);
    ck_assert_int_eq(handled, 1);
    ck_assert_int_eq(s.n, 0);
}
END_TEST

static weft_server *second;

static void close_both(weft_timer *t, void *ctx)
{
    (void)t;
    weft_server_close(ctx);
    weft_server_close(second);
}

static void second_listen(weft_server *busy, void *ctx)
{
    (void)ctx;
    weft_address a;
    ck_assert_int_eq(weft_server_address(busy, &a), 0);
    second = weft_create_server(tu_loop, NULL, NULL);
    ck_assert_int_eq(weft_server_listen(second, a.port, "localhost", NULL,
                                        NULL),
                     0);
    weft_set_timeout(tu_loop, 300, close_both, busy);
}

/* By default it goes to stderr, naming the object and the message. */
START_TEST(an_unhandled_error_is_written_to_stderr_by_default)
{
    int port = refused_port();
    int p[2];
    ck_assert_int_eq(pipe(p), 0);
    int saved = dup(2);
    dup2(p[1], 2);
    weft_stream *c;
    ck_assert_int_eq(weft_create_connection(tu_loop, port, "127.0.0.1", &c), 0);
    /* A server whose listen fails later (on a name, so the bind error is
     * an event), with no 'error' listener either: the second listen on
     * "localhost" at the port the first one got there. */
    weft_server *busy = weft_create_server(tu_loop, NULL, NULL);
    ck_assert_int_eq(weft_server_listen(busy, 0, "localhost", second_listen,
                                        NULL),
                     0);
    tu_run(3000);
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    close(p[1]);
    char buf[1024] = {0};
    ssize_t n = read(p[0], buf, sizeof(buf) - 1);
    close(p[0]);
    ck_assert_int_gt(n, 0);
    ck_assert_msg(strstr(buf, "weft: unhandled 'error' on stream: connect "
                              "ECONNREFUSED 127.0.0.1:") != NULL,
                  "stderr: %s", buf);
    ck_assert_msg(strstr(buf, "weft: unhandled 'error' on server: listen "
                              "EADDRINUSE") != NULL,
                  "stderr: %s", buf);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("firsthour");
    TCase *tc = tu_tcase("firsthour");
    tcase_add_test(tc, a_huge_timeout_or_interval_never_fires_at_once);
    tcase_add_test(tc, a_huge_stream_timeout_never_fires_at_once);
    tcase_add_test(tc, end_with_data_on_a_destroyed_stream_is_estate);
    tcase_add_test(tc, an_unhandled_stream_error_reaches_the_programs_handler);
    tcase_add_test(tc, a_handled_error_does_not_reach_the_unhandled_path);
    tcase_add_test(tc, an_unhandled_error_is_written_to_stderr_by_default);
    suite_add_tcase(s, tc);
    return tu_run_suite(s);
}
