/*
 * bench/calls_bench.c - calls from other threads into one loop: weft's
 * weft_loop_call() against libuv's idiom for the same job (a locked
 * queue plus uv_async_send(), which is how libuv programs and Node's
 * worker message ports hand a loop work).
 *
 * Built twice by bench/build.sh: calls_weft (this file against
 * libweft.a) and calls_uv (with -DUSE_UV, against libuv).
 *
 *   calls_X throughput PRODUCERS N   PRODUCERS threads each make N calls
 *                                    as fast as they can; the loop runs
 *                                    them. Prints calls/s and the loop's
 *                                    CPU time per call.
 *   calls_X latency K                one thread makes K calls, 1 ms
 *                                    apart, into an idle loop; prints the
 *                                    wake-up latency p50/p99 (us) from
 *                                    just before the call to the moment
 *                                    the loop runs it.
 *
 * Both consumers swap the whole queue out under the lock and run it
 * unlocked; both producers copy a (fn, ctx) pair (the libuv peer could
 * store ctx alone, but then it could run only one function), nothing is
 * allocated per call in the steady state.
 */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#ifdef USE_UV
#include <uv.h>
#else
#include "weft.h"
#endif

static double now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

static double loop_cpu_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

static uint64_t expected, done;
static double *sent_at, *lat;

static void on_call(void *ctx);

/* ---- the two ways to hand the loop a call ------------------------------ */

#ifdef USE_UV
/* A function and its argument, as weft_loop_call() takes: what a libuv
 * program writes to get the same capability. */
typedef struct item {
    void (*fn)(void *ctx);
    void *ctx;
} item;

static uv_loop_t uvloop;
static uv_async_t async;
static pthread_mutex_t qlock = PTHREAD_MUTEX_INITIALIZER;
static item *q, *spare;
static size_t qn, qcap, spare_cap;

static void async_cb(uv_async_t *a)
{
    (void)a;
    pthread_mutex_lock(&qlock);
    item *batch = q;
    size_t n = qn, cap = qcap;
    q = spare;
    qcap = spare_cap;
    qn = 0;
    spare = NULL;
    spare_cap = 0;
    pthread_mutex_unlock(&qlock);
    for (size_t i = 0; i < n; i++)
        batch[i].fn(batch[i].ctx);
    pthread_mutex_lock(&qlock);
    if (spare == NULL) {
        spare = batch;
        spare_cap = cap;
        batch = NULL;
    }
    pthread_mutex_unlock(&qlock);
    free(batch);
}

static void post(void *ctx)
{
    pthread_mutex_lock(&qlock);
    if (qn == qcap) {
        qcap = qcap ? qcap * 2 : 64;
        q = realloc(q, qcap * sizeof(*q));
        if (q == NULL)
            abort();
    }
    q[qn++] = (item){on_call, ctx};
    pthread_mutex_unlock(&qlock);
    uv_async_send(&async);
}

static void finish(void)
{
    uv_close((uv_handle_t *)&async, NULL);
}

static void setup(void)
{
    uv_loop_init(&uvloop);
    uv_async_init(&uvloop, &async, async_cb);
}

static void run(void)
{
    uv_run(&uvloop, UV_RUN_DEFAULT);
    uv_loop_close(&uvloop);
    free(q);
    free(spare);
}
#define IMPL "libuv"
#else
static weft_loop *loop;

static void weft_cb(weft_loop *l, void *ctx)
{
    (void)l;
    on_call(ctx);
}

static void post(void *ctx)
{
    if (weft_loop_call(loop, weft_cb, ctx) != 0)
        abort();
}

static void finish(void)
{
    weft_loop_unref(loop);
}

static void setup(void)
{
    loop = weft_loop_new();
    weft_loop_ref(loop);
}

static void run(void)
{
    weft_loop_run(loop);
    weft_loop_close(loop);
}
#define IMPL "weft"
#endif

/* ---- the workloads ------------------------------------------------------- */

static int latency_mode;

static void on_call(void *ctx)
{
    if (latency_mode) {
        size_t i = (size_t)(uintptr_t)ctx;
        lat[i] = now_us() - sent_at[i];
    }
    if (++done == expected)
        finish();
}

static uint64_t per_producer;

static void *produce(void *arg)
{
    (void)arg;
    for (uint64_t i = 0; i < per_producer; i++)
        post((void *)(uintptr_t)i);
    return NULL;
}

static void *produce_spaced(void *arg)
{
    (void)arg;
    for (uint64_t i = 0; i < expected; i++) {
        usleep(1000);
        sent_at[i] = now_us();
        post((void *)(uintptr_t)i);
    }
    return NULL;
}

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
    if (argc == 4 && strcmp(argv[1], "throughput") == 0) {
        int producers = atoi(argv[2]);
        per_producer = strtoull(argv[3], NULL, 10);
        if (producers < 1 || producers > 64 || per_producer == 0)
            return 2;
        expected = per_producer * (uint64_t)producers;
        setup();
        pthread_t t[64];
        double t0 = now_us(), c0 = loop_cpu_us();
        for (int i = 0; i < producers; i++)
            pthread_create(&t[i], NULL, produce, NULL);
        run();
        double el = now_us() - t0, cpu = loop_cpu_us() - c0;
        for (int i = 0; i < producers; i++)
            pthread_join(t[i], NULL);
        printf("impl=%s mode=throughput producers=%d calls=%llu "
               "calls_per_s=%.0f loop_ns_per_call=%.1f\n",
               IMPL, producers, (unsigned long long)expected,
               expected / (el / 1e6), cpu * 1e3 / expected);
        return 0;
    }
    if (argc == 3 && strcmp(argv[1], "latency") == 0) {
        latency_mode = 1;
        expected = strtoull(argv[2], NULL, 10);
        if (expected == 0 || expected > 1000000)
            return 2;
        sent_at = calloc(expected, sizeof(double));
        lat = calloc(expected, sizeof(double));
        setup();
        pthread_t t;
        pthread_create(&t, NULL, produce_spaced, NULL);
        run();
        pthread_join(t, NULL);
        qsort(lat, expected, sizeof(double), cmp);
        printf("impl=%s mode=latency calls=%llu p50_us=%.1f p99_us=%.1f "
               "max_us=%.1f\n",
               IMPL, (unsigned long long)expected, lat[expected / 2],
               lat[expected * 99 / 100], lat[expected - 1]);
        free(sent_at);
        free(lat);
        return 0;
    }
    fprintf(stderr, "usage: calls_X throughput PRODUCERS N | latency K\n");
    return 2;
}
