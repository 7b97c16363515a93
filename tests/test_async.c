/*
 * test_async.c - the doors into a loop from other threads (calls, stop),
 * run modes and embedding, setImmediate. Built under ThreadSanitizer
 * too (make tsan), where the call counts are scaled down.
 */
#include "testutil.h"

#include "internal.h"

#include <sys/poll.h> /* not <poll.h>: src/poll.h shadows it */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#if defined(__SANITIZE_THREAD__)
#define TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define TSAN 1
#endif
#endif

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* ---- many producers, one loop ---------------------------------------- */

#define PRODUCERS 8
#ifdef TSAN
#define CALLS_EACH 20000
#else
#define CALLS_EACH 1000000
#endif

typedef struct flood {
    uint64_t next[PRODUCERS]; /* loop thread only */
    uint64_t total, bad;
    pthread_t loop_thread;
    uint64_t wrong_thread;
} flood;

static flood fl;

static void flood_call(weft_loop *loop, void *ctx)
{
    uintptr_t v = (uintptr_t)ctx;
    unsigned who = (unsigned)(v >> 32);
    uint64_t seq = v & 0xffffffffu;
    if (who >= PRODUCERS || fl.next[who] != seq)
        fl.bad++;
    else
        fl.next[who]++;
    if (!pthread_equal(pthread_self(), fl.loop_thread))
        fl.wrong_thread++;
    if (++fl.total == (uint64_t)PRODUCERS * CALLS_EACH)
        weft_loop_unref(loop);
}

typedef struct producer {
    weft_loop *loop;
    unsigned who;
    int failures;
} producer;

static void *produce(void *arg)
{
    producer *p = arg;
    for (uint64_t i = 0; i < CALLS_EACH; i++) {
        uintptr_t v = ((uintptr_t)p->who << 32) | (uintptr_t)i;
        if (weft_loop_call(p->loop, flood_call, (void *)v) != 0)
            p->failures++;
    }
    return NULL;
}

START_TEST(eight_threads_queue_calls_each_runs_once_in_order)
{
    memset(&fl, 0, sizeof(fl));
    fl.loop_thread = pthread_self();
    weft_loop_ref(tu_loop);
    pthread_t t[PRODUCERS];
    producer p[PRODUCERS];
    for (unsigned i = 0; i < PRODUCERS; i++) {
        p[i] = (producer){tu_loop, i, 0};
        ck_assert_int_eq(pthread_create(&t[i], NULL, produce, &p[i]), 0);
    }
    tu_run(120000);
    for (unsigned i = 0; i < PRODUCERS; i++) {
        pthread_join(t[i], NULL);
        ck_assert_int_eq(p[i].failures, 0);
        ck_assert_uint_eq(fl.next[i], CALLS_EACH);
    }
    ck_assert_uint_eq(fl.total, (uint64_t)PRODUCERS * CALLS_EACH);
    ck_assert_uint_eq(fl.bad, 0);
    ck_assert_uint_eq(fl.wrong_thread, 0);
}
END_TEST

/* ---- a burst costs one wake-up ---------------------------------------- */

static void count_call(weft_loop *loop, void *ctx)
{
    (void)loop;
    (*(int *)ctx)++;
}

static void *burst(void *arg)
{
    producer *p = arg;
    static int calls;
    for (int i = 0; i < 1000; i++)
        if (weft_loop_call(p->loop, count_call, &calls) != 0)
            p->failures++;
    return &calls;
}

START_TEST(a_burst_of_calls_costs_one_wakeup)
{
    producer p = {tu_loop, 0, 0};
    pthread_t t;
    ck_assert_int_eq(pthread_create(&t, NULL, burst, &p), 0);
    void *ret;
    pthread_join(t, &ret);
    ck_assert_int_eq(p.failures, 0);
    /* 1000 calls, one eventfd write: the counter holds exactly 1. */
    uint64_t count = 0;
    ck_assert_int_eq(read(tu_loop->wake_io.fd, &count, sizeof(count)),
                     (int)sizeof(count));
    ck_assert_uint_eq(count, 1);
    uint64_t one = 1;
    ck_assert_int_eq(write(tu_loop->wake_io.fd, &one, sizeof(one)),
                     (int)sizeof(one));
    /* One turn runs them all. The loop has nothing referenced, so run it
     * in ONCE mode with a ref held for the turn. */
    weft_loop_ref(tu_loop);
    uint64_t turns = tu_loop->turns;
    ck_assert_int_eq(weft_loop_run_mode(tu_loop, WEFT_RUN_ONCE), 1);
    ck_assert_uint_eq(tu_loop->turns - turns, 1);
    ck_assert_int_eq(*(int *)ret, 1000);
    weft_loop_unref(tu_loop);
}
END_TEST

/* ---- wake-up latency of stop and call ---------------------------------- */

typedef struct waker {
    weft_loop *loop;
    bool use_stop;
    double sent; /* written before the call, read after the join */
} waker;

static double woke_at;

static void mark_woken(weft_loop *loop, void *ctx)
{
    (void)ctx;
    woke_at = now_ms();
    weft_loop_stop(loop);
}

static void *wake_later(void *arg)
{
    waker *w = arg;
    usleep(30 * 1000);
    w->sent = now_ms();
    if (w->use_stop)
        weft_loop_stop(w->loop);
    else
        weft_loop_call(w->loop, mark_woken, NULL);
    return NULL;
}

/* Median over 5 rounds of the time from the other thread's call to the
 * moment the idle loop acted on it. */
static double wake_latency(bool use_stop)
{
    double d[5];
    int port;
    weft_server *srv = tu_server(NULL, NULL, &port); /* keeps it alive */
    for (int i = 0; i < 5; i++) {
        waker w = {tu_loop, use_stop, 0};
        pthread_t t;
        ck_assert_int_eq(pthread_create(&t, NULL, wake_later, &w), 0);
        ck_assert_int_eq(weft_loop_run(tu_loop), 0);
        double back = now_ms();
        pthread_join(t, NULL);
        d[i] = (use_stop ? back : woke_at) - w.sent;
        ck_assert(d[i] >= 0);
    }
    weft_server_close(srv);
    tu_run(2000);
    qsort(d, 5, sizeof(d[0]), cmp_double);
    fprintf(stderr, "%s wake-up: min %.3f median %.3f max %.3f ms\n",
            use_stop ? "weft_loop_stop" : "weft_loop_call", d[0], d[2],
            d[4]);
    return d[2];
}

START_TEST(stop_from_another_thread_ends_an_idle_loop_within_10ms)
{
    ck_assert(wake_latency(true) < 10.0);
}
END_TEST

START_TEST(call_from_another_thread_wakes_an_idle_loop_within_10ms)
{
    ck_assert(wake_latency(false) < 10.0);
}
END_TEST

/* ---- closed loops, bad arguments, nesting ----------------------------- */

START_TEST(call_into_a_closed_loop_is_an_error_not_a_crash)
{
    weft_loop *l = weft_loop_new();
    ck_assert_ptr_nonnull(l);
    int n = 0;
    ck_assert_int_eq(weft_loop_call(l, count_call, &n), 0);
    ck_assert_int_eq(weft_loop_close(l), 0); /* the queued call is dropped */
    ck_assert_int_eq(n, 0);
    ck_assert_int_eq(weft_loop_call(l, count_call, &n), WEFT_ESTATE);
    ck_assert_int_eq(weft_loop_call(tu_loop, NULL, NULL), WEFT_EINVAL);
    /* No default loop exists in this process: NULL names none. */
    ck_assert_int_eq(weft_loop_call(NULL, count_call, &n), WEFT_ESTATE);
    weft_loop_stop(l); /* ignored, not a crash */
}
END_TEST

static void requeue(weft_loop *loop, void *ctx)
{
    int *n = ctx;
    tu_logf("call%d@%llu", *n, (unsigned long long)loop->turns);
    if (++*n < 3)
        ck_assert_int_eq(weft_loop_call(loop, requeue, n), 0);
    else
        weft_loop_unref(loop);
}

START_TEST(a_call_queued_by_a_call_runs_on_a_later_wakeup)
{
    int n = 0;
    weft_loop_ref(tu_loop);
    ck_assert_int_eq(weft_loop_call(tu_loop, requeue, &n), 0);
    tu_run(2000);
    ck_assert_int_eq(n, 3);
    /* each on its own turn: a call made by a call is the next batch */
    unsigned long long a, b, c;
    ck_assert_int_eq(sscanf(tu_log_str(), "call0@%llu,call1@%llu,call2@%llu",
                            &a, &b, &c),
                     3);
    ck_assert(a < b && b < c);
}
END_TEST

START_TEST(closing_the_default_loop_with_null)
{
    weft_loop *d = weft_default_loop();
    ck_assert_ptr_nonnull(d);
    ck_assert_int_eq(weft_loop_close(NULL), 0);
    ck_assert_ptr_null(weft__default_loop_peek());
    ck_assert_int_eq(weft_loop_close(NULL), 0); /* none: nothing to do */
}
END_TEST

/* ---- run modes and embedding ------------------------------------------- */

static void never(weft_timer *t, void *ctx)
{
    (void)t;
    (void)ctx;
    ck_abort_msg("timer fired");
}

START_TEST(run_nowait_never_blocks_and_says_if_alive)
{
    weft_timer *t = weft_set_timeout(tu_loop, 5000, never, NULL);
    double t0 = now_ms();
    ck_assert_int_eq(weft_loop_run_mode(tu_loop, WEFT_RUN_NOWAIT), 1);
    ck_assert(now_ms() - t0 < 1000);
    int to = weft_loop_backend_timeout(tu_loop);
    ck_assert(to > 4000 && to <= 5000);
    weft_clear_timer(t);
    ck_assert_int_eq(weft_loop_run_mode(tu_loop, WEFT_RUN_NOWAIT), 0);
    ck_assert_int_eq(weft_loop_backend_timeout(tu_loop), 0);
}
END_TEST

static void log_timer(weft_timer *t, void *ctx)
{
    (void)t;
    tu_log(ctx);
}

START_TEST(run_once_waits_for_the_next_event_only)
{
    weft_set_timeout(tu_loop, 20, log_timer, "a");
    weft_set_timeout(tu_loop, 200, log_timer, "b");
    /* One turn may find nothing due yet; "a" arrives within a few. */
    int turns = 0;
    while (strcmp(tu_log_str(), "a") != 0) {
        ck_assert_int_eq(weft_loop_run_mode(tu_loop, WEFT_RUN_ONCE), 1);
        ck_assert_int_lt(++turns, 5);
    }
    tu_run(2000);
    ck_assert_str_eq(tu_log_str(), "a,b");
}
END_TEST

/* An echo exchange with weft driven by the program's own poll() loop. */
typedef struct embed {
    weft_stream *client;
    char got[64];
    size_t got_len;
    bool closed;
} embed;

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
    (void)srv;
    (void)ctx;
    weft_stream_on_data(s, echo_data, NULL);
    weft_stream_on_end(s, echo_end, NULL);
}

static void client_data(weft_stream *s, const char *d, size_t n, void *ctx)
{
    embed *e = ctx;
    ck_assert(e->got_len + n < sizeof(e->got));
    memcpy(e->got + e->got_len, d, n);
    e->got_len += n;
    if (e->got_len == 11)
        weft_stream_end(s, NULL, 0);
}

static void client_close(weft_stream *s, bool had_error, void *ctx)
{
    (void)s;
    embed *e = ctx;
    ck_assert(!had_error);
    e->closed = true;
    weft_server_close(weft_stream_data(s));
}

START_TEST(weft_driven_from_a_plain_poll_loop_serves_an_echo_client)
{
    int port;
    weft_server *srv = tu_server(echo_conn, NULL, &port);
    embed e = {0};
    ck_assert_int_eq(
        weft_create_connection(tu_loop, port, "127.0.0.1", &e.client), 0);
    weft_stream_set_data(e.client, srv);
    weft_stream_on_data(e.client, client_data, &e);
    weft_stream_on_close(e.client, client_close, &e);
    weft_stream_write(e.client, "hello weft!", 11);

    int fd = weft_loop_backend_fd(tu_loop);
    ck_assert_int_ge(fd, 0);
    int rounds = 0, woken = 0;
    for (;;) {
        int to = weft_loop_backend_timeout(tu_loop);
        struct pollfd pfd = {fd, POLLIN, 0};
        int n = poll(&pfd, 1, to < 0 || to > 1000 ? 1000 : to);
        ck_assert_int_ge(n, 0);
        woken += n;
        int alive = weft_loop_run_mode(tu_loop, WEFT_RUN_NOWAIT);
        ck_assert_int_ge(alive, 0);
        if (!alive)
            break;
        ck_assert_int_lt(++rounds, 1000);
    }
    ck_assert(e.closed);
    ck_assert_int_eq((int)e.got_len, 11);
    ck_assert(memcmp(e.got, "hello weft!", 11) == 0);
    ck_assert_int_gt(woken, 0); /* the fd did signal readiness */
}
END_TEST

/* ---- setImmediate ----------------------------------------------------- */

static void imm_log(weft_immediate *im, void *ctx)
{
    (void)im;
    tu_logf("%s@%llu", (const char *)ctx, (unsigned long long)tu_loop->turns);
}

static void imm_nested(weft_immediate *im, void *ctx)
{
    imm_log(im, ctx);
    ck_assert_ptr_nonnull(weft_set_immediate(tu_loop, imm_log, "inner"));
}

static void timer_sets_immediate(weft_timer *t, void *ctx)
{
    (void)t;
    (void)ctx;
    tu_log("timer");
    weft_set_immediate(tu_loop, imm_log, "fromtimer");
}

START_TEST(immediates_run_in_order_after_io_and_nest_to_the_next_turn)
{
    weft_set_immediate(tu_loop, imm_log, "a");
    weft_set_immediate(tu_loop, imm_nested, "b");
    weft_immediate *c = weft_set_immediate(tu_loop, imm_log, "never");
    weft_set_immediate(tu_loop, imm_log, "d");
    weft_clear_immediate(c);
    weft_clear_immediate(NULL);
    tu_run(2000);
    unsigned long long a, b, d, in;
    ck_assert_int_eq(sscanf(tu_log_str(), "a@%llu,b@%llu,d@%llu,inner@%llu",
                            &a, &b, &d, &in),
                     4);
    ck_assert(a == b && b == d);
    ck_assert_uint_eq(in, d + 1);

    /* An immediate set by a timer runs in the same turn, before the loop
     * waits again. */
    tu_log_reset();
    weft_set_timeout(tu_loop, 1, timer_sets_immediate, NULL);
    tu_run(2000);
    ck_assert_int_eq(strncmp(tu_log_str(), "timer,fromtimer@", 16), 0);
}
END_TEST

static weft_immediate *victim;

static void clear_victim(weft_immediate *im, void *ctx)
{
    (void)im;
    (void)ctx;
    weft_clear_immediate(victim);
    tu_log("first");
}

START_TEST(an_immediate_cleared_by_an_earlier_one_never_runs)
{
    ck_assert_ptr_nonnull(weft_set_immediate(tu_loop, clear_victim, NULL));
    victim = weft_set_immediate(tu_loop, imm_log, "never");
    ck_assert_ptr_nonnull(victim);
    ck_assert(weft_loop_alive(tu_loop));
    tu_run(2000);
    ck_assert_str_eq(tu_log_str(), "first");
    ck_assert_ptr_null(weft_set_immediate(tu_loop, NULL, NULL));
}
END_TEST

int main(void)
{
    Suite *s = suite_create("async");
    TCase *tc = tu_tcase("calls");
    tcase_set_timeout(tc, 180);
    tcase_add_test(tc, eight_threads_queue_calls_each_runs_once_in_order);
    tcase_add_test(tc, a_burst_of_calls_costs_one_wakeup);
    tcase_add_test(tc, stop_from_another_thread_ends_an_idle_loop_within_10ms);
    tcase_add_test(tc, call_from_another_thread_wakes_an_idle_loop_within_10ms);
    tcase_add_test(tc, call_into_a_closed_loop_is_an_error_not_a_crash);
    tcase_add_test(tc, a_call_queued_by_a_call_runs_on_a_later_wakeup);
    tcase_add_test(tc, closing_the_default_loop_with_null);
    suite_add_tcase(s, tc);
    tc = tu_tcase("embedding");
    tcase_add_test(tc, run_nowait_never_blocks_and_says_if_alive);
    tcase_add_test(tc, run_once_waits_for_the_next_event_only);
    tcase_add_test(tc, weft_driven_from_a_plain_poll_loop_serves_an_echo_client);
    suite_add_tcase(s, tc);
    tc = tu_tcase("immediate");
    tcase_add_test(tc, immediates_run_in_order_after_io_and_nest_to_the_next_turn);
    tcase_add_test(tc, an_immediate_cleared_by_an_earlier_one_never_runs);
    suite_add_tcase(s, tc);
    return tu_run_suite(s);
}
