/* test_loop.c - loop lifetime, timers, ref/unref, the default loop. */
#include "testutil.h"

#include <string.h>

static void log_timer(weft_timer *t, void *ctx)
{
    (void)t;
    tu_log(ctx);
}

START_TEST(empty_loop_returns_at_once)
{
    ck_assert(!weft_loop_alive(tu_loop));
    ck_assert_int_eq(weft_loop_run(tu_loop), 0);
}
END_TEST

START_TEST(timers_fire_in_deadline_order_then_fifo)
{
    weft_set_timeout(tu_loop, 30, log_timer, "c");
    weft_set_timeout(tu_loop, 10, log_timer, "a");
    weft_set_timeout(tu_loop, 10, log_timer, "b");
    weft_set_timeout(tu_loop, 0, log_timer, "zero");
    tu_run(2000);
    ck_assert_str_eq(tu_log_str(), "zero,a,b,c");
}
END_TEST

static void count_interval(weft_timer *t, void *ctx)
{
    int *n = ctx;
    if (++*n == 3)
        weft_clear_timer(t);
}

START_TEST(interval_repeats_until_cleared_inside_callback)
{
    int n = 0;
    ck_assert_ptr_nonnull(weft_set_interval(tu_loop, 1, count_interval, &n));
    tu_run(2000);
    ck_assert_int_eq(n, 3);
}
END_TEST

static void clear_other(weft_timer *t, void *ctx)
{
    (void)t;
    weft_clear_timer(ctx);
    tu_log("first");
}

START_TEST(cleared_timer_never_fires)
{
    weft_timer *b = weft_set_timeout(tu_loop, 20, log_timer, "never");
    weft_set_timeout(tu_loop, 5, clear_other, b);
    tu_run(2000);
    ck_assert_str_eq(tu_log_str(), "first");
}
END_TEST

START_TEST(unrefd_timer_does_not_keep_loop_alive)
{
    weft_timer *t = weft_set_timeout(tu_loop, 10000, log_timer, "never");
    weft_timer_unref(t);
    ck_assert(!weft_loop_alive(tu_loop));
    ck_assert_int_eq(weft_loop_run(tu_loop), 0);
    ck_assert_str_eq(tu_log_str(), "");
    weft_timer_ref(t);
    ck_assert(weft_loop_alive(tu_loop));
    weft_clear_timer(t);
}
END_TEST

static void stop_loop(weft_timer *t, void *ctx)
{
    (void)t;
    tu_log("stop");
    weft_loop_stop(ctx);
}

START_TEST(stop_returns_with_handles_alive_and_run_resumes)
{
    weft_set_timeout(tu_loop, 1, stop_loop, tu_loop);
    weft_set_timeout(tu_loop, 30, log_timer, "later");
    ck_assert_int_eq(weft_loop_run(tu_loop), 0);
    ck_assert_str_eq(tu_log_str(), "stop");
    ck_assert(weft_loop_alive(tu_loop));
    tu_run(2000);
    ck_assert_str_eq(tu_log_str(), "stop,later");
}
END_TEST

static void nested_run(weft_timer *t, void *ctx)
{
    (void)t;
    ck_assert_int_eq(weft_loop_run(ctx), WEFT_EBUSY);
    ck_assert_int_eq(weft_loop_close(ctx), WEFT_EBUSY);
    tu_log("nested");
}

START_TEST(run_and_close_inside_the_loop_are_refused)
{
    weft_set_timeout(tu_loop, 0, nested_run, tu_loop);
    tu_run(2000);
    ck_assert_str_eq(tu_log_str(), "nested");
}
END_TEST

START_TEST(loop_close_frees_abandoned_handles)
{
    /* A listening server, a connecting stream and a timer, never run:
     * closing the loop frees them all (ASan reports any leak). */
    weft_server *srv = weft_create_server(tu_loop, NULL, NULL);
    ck_assert_int_eq(weft_server_listen(srv, 0, "127.0.0.1", NULL, NULL), 0);
    weft_address a;
    ck_assert_int_eq(weft_server_address(srv, &a), 0);
    weft_stream *s;
    ck_assert_int_eq(weft_create_connection(tu_loop, a.port, "127.0.0.1", &s),
                     0);
    weft_set_timeout(tu_loop, 1000, log_timer, "never");
    weft_stream_new(tu_loop);
}
END_TEST

static void on_default(weft_timer *t, void *ctx)
{
    (void)t;
    (void)ctx;
    tu_log("default");
}

START_TEST(default_loop_is_made_on_demand_and_can_be_closed)
{
    weft_loop *d = weft_default_loop();
    ck_assert_ptr_nonnull(d);
    ck_assert_ptr_eq(weft_default_loop(), d);
    ck_assert_ptr_nonnull(weft_set_timeout(NULL, 1, on_default, NULL));
    ck_assert_int_eq(weft_run(), 0);
    ck_assert_str_eq(tu_log_str(), "default");
    ck_assert_int_eq(weft_loop_close(d), 0);
}
END_TEST

START_TEST(loop_now_advances)
{
    uint64_t t0 = weft_loop_now(tu_loop);
    weft_set_timeout(tu_loop, 30, log_timer, "x");
    tu_run(2000);
    ck_assert_uint_ge(weft_loop_now(tu_loop), t0 + 20);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("loop");
    TCase *tc = tu_tcase("loop");
    tcase_add_test(tc, empty_loop_returns_at_once);
    tcase_add_test(tc, timers_fire_in_deadline_order_then_fifo);
    tcase_add_test(tc, interval_repeats_until_cleared_inside_callback);
    tcase_add_test(tc, cleared_timer_never_fires);
    tcase_add_test(tc, unrefd_timer_does_not_keep_loop_alive);
    tcase_add_test(tc, stop_returns_with_handles_alive_and_run_resumes);
    tcase_add_test(tc, run_and_close_inside_the_loop_are_refused);
    tcase_add_test(tc, loop_close_frees_abandoned_handles);
    tcase_add_test(tc, default_loop_is_made_on_demand_and_can_be_closed);
    tcase_add_test(tc, loop_now_advances);
    suite_add_tcase(s, tc);
    return tu_run_suite(s);
}
