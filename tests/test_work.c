/*
 * test_work.c - the work pool: every job runs once and its `done` comes
 * on the loop thread; jobs start in order; a queued job can be
 * cancelled, a started one cannot; the pool's size bounds how many run
 * at once; a job keeps the loop alive; closing a loop under running and
 * queued jobs leaks nothing; and a pool full of slow jobs does not delay
 * a name lookup (the lookup pool is separate).
 *
 * Jobs that must be held still wait on a `gate` the test opens; every
 * wait is bounded, so a bug shows as a failed assertion, not a hang.
 */
#include "testutil.h"
#include <sys/wait.h>
#include "internal.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <time.h>
#include <unistd.h>

static pthread_t loop_thread;

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/* Waits (on the test's thread, loop not running) until *v >= want;
 * false after `ms`. */
static bool wait_for(atomic_int *v, int want, unsigned ms)
{
    double end = now_ms() + ms;
    while (atomic_load(v) < want) {
        if (now_ms() > end)
            return false;
        usleep(1000);
    }
    return true;
}

/* ---- a gate jobs wait at until the test opens it ---------------------- */

typedef struct gate {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool open;
} gate;

static void gate_init(gate *g)
{
    pthread_mutex_init(&g->mu, NULL);
    pthread_cond_init(&g->cv, NULL);
    g->open = false;
}

static void gate_open(gate *g)
{
    pthread_mutex_lock(&g->mu);
    g->open = true;
    pthread_cond_broadcast(&g->cv);
    pthread_mutex_unlock(&g->mu);
}

static void gate_wait(gate *g)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += 10;
    pthread_mutex_lock(&g->mu);
    while (!g->open)
        if (pthread_cond_timedwait(&g->cv, &g->mu, &ts) != 0)
            break;
    pthread_mutex_unlock(&g->mu);
}

/* ---- a job that records what happened to it --------------------------- */

typedef struct job {
    int id;
    atomic_int started;  /* work entered */
    atomic_int finished; /* work returned */
    int dones;
    int status;
    gate *gate; /* waits here if set */
    unsigned sleep_ms;
    weft_work *w;
} job;

/* Start order, written by pool threads. */
static atomic_int order_n;
static int order[256];

static void job_work(void *ctx)
{
    job *j = ctx;
    int k = atomic_fetch_add(&order_n, 1);
    if (k < 256)
        order[k] = j->id;
    atomic_store(&j->started, 1);
    if (j->gate != NULL)
        gate_wait(j->gate);
    if (j->sleep_ms)
        usleep(j->sleep_ms * 1000);
    atomic_store(&j->finished, 1);
}

static void job_done(weft_loop *loop, int status, void *ctx)
{
    ck_assert_ptr_eq(loop, tu_loop);
    ck_assert(pthread_equal(pthread_self(), loop_thread));
    job *j = ctx;
    j->dones++;
    j->status = status;
    tu_logf("done%d:%s", j->id, status ? weft_err_name(status) : "0");
}

static void setup(void)
{
    tu_setup();
    loop_thread = pthread_self();
    atomic_store(&order_n, 0);
}

/* ---- tests -------------------------------------------------------------- */

enum { MANY = 10000 };

typedef struct many_ctx {
    atomic_int runs;
    int dones;
    int bad;
} many_ctx;

static many_ctx many[MANY];

static void many_work(void *ctx)
{
    many_ctx *m = ctx;
    atomic_fetch_add(&m->runs, 1);
}

static void many_done(weft_loop *loop, int status, void *ctx)
{
    many_ctx *m = ctx;
    if (loop != tu_loop || status != 0 ||
        !pthread_equal(pthread_self(), loop_thread))
        m->bad++;
    m->dones++;
}

START_TEST(ten_thousand_jobs_each_run_once_and_done_on_loop_thread)
{
    for (int i = 0; i < MANY; i++) {
        atomic_init(&many[i].runs, 0);
        many[i].dones = many[i].bad = 0;
        ck_assert_int_eq(
            weft_queue_work(tu_loop, many_work, many_done, &many[i], NULL), 0);
    }
    tu_run(20000);
    for (int i = 0; i < MANY; i++) {
        ck_assert_int_eq(atomic_load(&many[i].runs), 1);
        ck_assert_int_eq(many[i].dones, 1);
        ck_assert_int_eq(many[i].bad, 0);
    }
}
END_TEST

START_TEST(jobs_start_in_queue_order_with_one_thread)
{
    ck_assert_int_eq(weft_set_work_threads(1), 0);
    enum { N = 100 };
    static job j[N];
    memset(j, 0, sizeof(j));
    for (int i = 0; i < N; i++) {
        j[i].id = i;
        ck_assert_int_eq(
            weft_queue_work(tu_loop, job_work, job_done, &j[i], NULL), 0);
    }
    tu_run(10000);
    ck_assert_int_eq(atomic_load(&order_n), N);
    for (int i = 0; i < N; i++) {
        ck_assert_int_eq(order[i], i);
        ck_assert_int_eq(j[i].dones, 1);
    }
    ck_assert_int_eq(weft_set_work_threads(4), 0);
}
END_TEST

START_TEST(cancel_queued_job_gives_ecanceled_and_work_never_runs)
{
    ck_assert_int_eq(weft_set_work_threads(1), 0);
    gate g;
    gate_init(&g);
    job a = {.id = 1, .gate = &g}, b = {.id = 2}, c = {.id = 3};
    ck_assert_int_eq(weft_queue_work(tu_loop, job_work, job_done, &a, &a.w), 0);
    ck_assert_int_eq(weft_queue_work(tu_loop, job_work, job_done, &b, &b.w), 0);
    ck_assert_int_eq(weft_queue_work(tu_loop, job_work, job_done, &c, &c.w), 0);
    ck_assert(wait_for(&a.started, 1, 5000));
    /* a runs (held at the gate), b and c wait behind it. */
    ck_assert_int_eq(weft_work_cancel(a.w), WEFT_EBUSY);
    ck_assert_int_eq(weft_work_cancel(b.w), 0);
    /* Delivered later, never inside the cancel; twice is EBUSY. */
    ck_assert_int_eq(b.dones, 0);
    ck_assert_int_eq(weft_work_cancel(b.w), WEFT_EBUSY);
    ck_assert_int_eq(weft_work_cancel(NULL), WEFT_EINVAL);
    gate_open(&g);
    tu_run(10000);
    ck_assert_int_eq(atomic_load(&b.started), 0);
    ck_assert_int_eq(b.dones, 1);
    ck_assert_int_eq(b.status, WEFT_ECANCELED);
    ck_assert_int_eq(a.dones, 1);
    ck_assert_int_eq(a.status, 0);
    ck_assert_int_eq(c.dones, 1);
    ck_assert_int_eq(c.status, 0);
    /* The cancelled job's done comes first: it was ready before a ended. */
    ck_assert_str_eq(tu_log_str(), "done2:ECANCELED,done1:0,done3:0");
    ck_assert_int_eq(weft_set_work_threads(4), 0);
}
END_TEST

START_TEST(cancel_finished_but_undelivered_job_is_ebusy)
{
    ck_assert_int_eq(weft_set_work_threads(1), 0);
    gate g;
    gate_init(&g);
    job f = {.id = 1}, r = {.id = 2, .gate = &g};
    ck_assert_int_eq(weft_queue_work(tu_loop, job_work, job_done, &f, &f.w), 0);
    ck_assert_int_eq(weft_queue_work(tu_loop, job_work, job_done, &r, &r.w), 0);
    /* One thread: r started, so f has finished and waits for the loop. */
    ck_assert(wait_for(&r.started, 1, 5000));
    ck_assert_int_eq(atomic_load(&f.finished), 1);
    ck_assert_int_eq(f.dones, 0);
    ck_assert_int_eq(weft_work_cancel(f.w), WEFT_EBUSY);
    ck_assert_int_eq(weft_work_cancel(r.w), WEFT_EBUSY);
    gate_open(&g);
    tu_run(10000);
    ck_assert_str_eq(tu_log_str(), "done1:0,done2:0");
    ck_assert_int_eq(weft_set_work_threads(4), 0);
}
END_TEST

/* ---- pool size ---------------------------------------------------------- */

/* A barrier of `n` with a deadline: a job that is not joined by the others
 * in time records the failure instead of hanging. */
typedef struct barrier {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int n, arrived, timeouts;
    unsigned ms;
} barrier;

static void barrier_work(void *ctx)
{
    barrier *b = ctx;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += b->ms / 1000;
    ts.tv_nsec += (long)(b->ms % 1000) * 1000000;
    if (ts.tv_nsec >= 1000000000) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000;
    }
    pthread_mutex_lock(&b->mu);
    b->arrived++;
    pthread_cond_broadcast(&b->cv);
    while (b->arrived < b->n)
        if (pthread_cond_timedwait(&b->cv, &b->mu, &ts) != 0) {
            b->timeouts++;
            break;
        }
    pthread_mutex_unlock(&b->mu);
}

static int barrier_dones;

static void barrier_done(weft_loop *loop, int status, void *ctx)
{
    (void)loop;
    (void)ctx;
    ck_assert_int_eq(status, 0);
    barrier_dones++;
}

/* Runs `jobs` jobs meeting at a barrier of `jobs`; returns how many timed
 * out waiting for the others. */
static int run_barrier(int jobs, unsigned ms)
{
    barrier b = {.n = jobs, .ms = ms};
    pthread_mutex_init(&b.mu, NULL);
    pthread_cond_init(&b.cv, NULL);
    barrier_dones = 0;
    for (int i = 0; i < jobs; i++)
        ck_assert_int_eq(
            weft_queue_work(tu_loop, barrier_work, barrier_done, &b, NULL), 0);
    tu_run(10000);
    ck_assert_int_eq(barrier_dones, jobs);
    return b.timeouts;
}

static int task_count(void)
{
    int n = 0;
    DIR *d = opendir("/proc/self/task");
    ck_assert_ptr_nonnull(d);
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        if (e->d_name[0] != '.')
            n++;
    closedir(d);
    return n;
}

START_TEST(set_work_threads_bounds_and_effect)
{
    ck_assert_int_eq(weft_set_work_threads(0), WEFT_EINVAL);
    ck_assert_int_eq(weft_set_work_threads(129), WEFT_EINVAL);
    ck_assert_int_eq(weft_set_work_threads(128), 0);
    ck_assert_int_eq(weft_set_work_threads(1), 0);
    int before = task_count();
    /* Six threads: six jobs meet at a barrier of six. */
    ck_assert_int_eq(weft_set_work_threads(6), 0);
    ck_assert_int_eq(run_barrier(6, 5000), 0);
    int peak = task_count();
    ck_assert_int_ge(peak, before + 6);
    /* Two threads: a barrier of three is never met (each waits 300 ms,
     * gives up, and the third job runs only once one gave up). */
    ck_assert_int_eq(weft_set_work_threads(2), 0);
    ck_assert_int_gt(run_barrier(3, 300), 0);
    /* The four threads beyond two end once idle. (Counted from the peak:
     * a sanitizer may have started a thread of its own since `before`.) */
    double end = now_ms() + 5000;
    while (task_count() > peak - 4 && now_ms() < end)
        usleep(1000);
    ck_assert_int_le(task_count(), peak - 4);
    ck_assert_int_eq(weft_set_work_threads(4), 0);
}
END_TEST

/* ---- lifetime ----------------------------------------------------------- */

START_TEST(a_queued_job_keeps_the_loop_alive_until_done)
{
    job j = {.id = 1, .sleep_ms = 200};
    ck_assert(!weft_loop_alive(tu_loop));
    ck_assert_int_eq(weft_queue_work(tu_loop, job_work, job_done, &j, NULL), 0);
    ck_assert(weft_loop_alive(tu_loop));
    double t0 = now_ms();
    ck_assert_int_eq(weft_loop_run(tu_loop), 0);
    /* run returned only because done ran: nothing else was alive. */
    ck_assert_int_eq(j.dones, 1);
    ck_assert_double_ge(now_ms() - t0, 150);
    ck_assert(!weft_loop_alive(tu_loop));
    /* A cancelled job keeps it alive until its done, too. */
    job k = {.id = 2}, hold = {.id = 3, .sleep_ms = 100};
    ck_assert_int_eq(weft_set_work_threads(1), 0);
    ck_assert_int_eq(weft_queue_work(tu_loop, job_work, job_done, &hold, NULL),
                     0);
    ck_assert_int_eq(weft_queue_work(tu_loop, job_work, job_done, &k, &k.w), 0);
    ck_assert_int_eq(weft_work_cancel(k.w), 0);
    ck_assert(weft_loop_alive(tu_loop));
    tu_run(5000);
    ck_assert_int_eq(k.dones, 1);
    ck_assert_int_eq(hold.dones, 1);
    ck_assert_int_eq(weft_set_work_threads(4), 0);
}
END_TEST

static void nothing_work(void *ctx)
{
    (void)ctx;
}

START_TEST(invalid_arguments_and_enomem_call_nothing)
{
    job j = {.id = 1};
    ck_assert_int_eq(weft_queue_work(tu_loop, NULL, job_done, &j, NULL),
                     WEFT_EINVAL);
    weft__alloc_fail_at = 1;
    ck_assert_int_eq(weft_queue_work(tu_loop, job_work, job_done, &j, NULL),
                     WEFT_ENOMEM);
    weft__alloc_fail_at = 0;
    ck_assert(!weft_loop_alive(tu_loop));
    /* A NULL done is allowed. */
    ck_assert_int_eq(weft_queue_work(tu_loop, nothing_work, NULL, NULL, NULL),
                     0);
    tu_run(5000);
    ck_assert_int_eq(j.dones, 0);
    ck_assert_int_eq(atomic_load(&j.started), 0);
}
END_TEST

START_TEST(closing_a_loop_with_jobs_queued_and_running_leaks_nothing)
{
    ck_assert_int_eq(weft_set_work_threads(1), 0);
    weft_loop *l = weft_loop_new();
    ck_assert_ptr_nonnull(l);
    gate g;
    gate_init(&g);
    /* f finishes (undelivered), r runs held at the gate, q stays queued. */
    static job f, r, q;
    memset(&f, 0, sizeof(f));
    memset(&r, 0, sizeof(r));
    memset(&q, 0, sizeof(q));
    f.id = 1;
    r.id = 2;
    r.gate = &g;
    q.id = 3;
    ck_assert_int_eq(weft_queue_work(l, job_work, job_done, &f, NULL), 0);
    ck_assert_int_eq(weft_queue_work(l, job_work, job_done, &r, NULL), 0);
    ck_assert_int_eq(weft_queue_work(l, job_work, job_done, &q, NULL), 0);
    ck_assert(wait_for(&r.started, 1, 5000));
    ck_assert_int_eq(weft_loop_close(l), 0);
    /* The running job returns after its loop is gone. */
    gate_open(&g);
    /* With one thread, a job on another loop runs only after the worker
     * has finished with r (and freed it). */
    job after = {.id = 4};
    ck_assert_int_eq(weft_queue_work(tu_loop, job_work, job_done, &after, NULL),
                     0);
    tu_run(10000);
    ck_assert_int_eq(after.dones, 1);
    ck_assert_int_eq(atomic_load(&r.finished), 1);
    ck_assert_int_eq(atomic_load(&q.started), 0);
    ck_assert_int_eq(f.dones + r.dones + q.dones, 0);
    ck_assert_str_eq(tu_log_str(), "done4:0");
    ck_assert_int_eq(weft_set_work_threads(4), 0);
}
END_TEST

/* From a done: queue a job and cancel it at once (its done comes on a
 * later turn, not inside the cancel), and cancel a job whose result is
 * already waiting (EBUSY). One thread, kept busy by `hold` until the
 * cancel is made, so the new job is surely still queued. */
static job chain_b, chain_c, hold;
static gate chain_gate;

static void chain_done(weft_loop *loop, int status, void *ctx)
{
    job_done(loop, status, ctx);
    ck_assert_int_eq(
        weft_queue_work(loop, job_work, job_done, &chain_b, &chain_b.w), 0);
    ck_assert_int_eq(weft_work_cancel(chain_b.w), 0);
    ck_assert_int_eq(chain_b.dones, 0);
    /* Still valid while its done has not run. */
    if (chain_c.dones == 0 && atomic_load(&chain_c.finished))
        ck_assert_int_eq(weft_work_cancel(chain_c.w), WEFT_EBUSY);
    gate_open(&chain_gate);
}

START_TEST(done_may_queue_and_cancel_more_jobs)
{
    ck_assert_int_eq(weft_set_work_threads(1), 0);
    gate_init(&chain_gate);
    memset(&chain_b, 0, sizeof(chain_b));
    memset(&chain_c, 0, sizeof(chain_c));
    memset(&hold, 0, sizeof(hold));
    chain_b.id = 2;
    chain_c.id = 3;
    hold.id = 4;
    hold.gate = &chain_gate;
    job a = {.id = 1};
    ck_assert_int_eq(weft_queue_work(tu_loop, job_work, chain_done, &a, NULL),
                     0);
    ck_assert_int_eq(
        weft_queue_work(tu_loop, job_work, job_done, &chain_c, &chain_c.w), 0);
    ck_assert_int_eq(weft_queue_work(tu_loop, job_work, job_done, &hold, NULL),
                     0);
    tu_run(5000);
    ck_assert_int_eq(a.dones, 1);
    ck_assert_int_eq(chain_b.dones, 1);
    ck_assert_int_eq(chain_b.status, WEFT_ECANCELED);
    ck_assert_int_eq(atomic_load(&chain_b.started), 0);
    ck_assert_int_eq(chain_c.dones, 1);
    ck_assert_int_eq(chain_c.status, 0);
    ck_assert_int_eq(hold.dones, 1);
    ck_assert_int_eq(weft_set_work_threads(4), 0);
}
END_TEST

/* ---- the lookup pool is not the work pool ------------------------------- */

typedef struct lookup_ctx {
    double t0, ms;
    int calls, err;
    size_t n;
} lookup_ctx;

static void timed_lookup_cb(weft_dns_req *req, int err,
                            const weft_address *addrs, size_t n, void *ctx)
{
    (void)req;
    (void)addrs;
    lookup_ctx *c = ctx;
    c->ms = now_ms() - c->t0;
    c->calls++;
    c->err = err;
    c->n = n;
}

START_TEST(sleeping_work_does_not_delay_a_lookup)
{
    enum { THREADS = 4 };
    ck_assert_int_eq(weft_set_work_threads(THREADS), 0);
    static job j[THREADS];
    memset(j, 0, sizeof(j));
    for (int i = 0; i < THREADS; i++) {
        j[i].id = i;
        j[i].sleep_ms = 2000;
        ck_assert_int_eq(
            weft_queue_work(tu_loop, job_work, job_done, &j[i], NULL), 0);
    }
    /* Every work thread is asleep before the lookup starts. */
    for (int i = 0; i < THREADS; i++)
        ck_assert(wait_for(&j[i].started, 1, 5000));
    lookup_ctx c = {.t0 = now_ms()};
    ck_assert_int_eq(
        weft_dns_lookup(tu_loop, "localhost", 0, timed_lookup_cb, &c, NULL), 0);
    tu_run(10000);
    ck_assert_int_eq(c.calls, 1);
    ck_assert_int_eq(c.err, 0);
    ck_assert_uint_ge(c.n, 1);
    printf("lookup of localhost with %d work threads asleep: %.2f ms\n",
           THREADS, c.ms);
    fflush(stdout);
    ck_assert_double_lt(c.ms, 500);
    for (int i = 0; i < THREADS; i++)
        ck_assert_int_eq(j[i].dones, 1);
}
END_TEST

/* ---- fork(): the child's pools start again ------------------------------ */

#if defined(__SANITIZE_THREAD__)
#define WORK_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define WORK_TSAN 1
#endif
#endif

static int fork_job_ran, fork_job_done, fork_lookup_done, fork_lookup_err;

static void fork_work(void *ctx)
{
    (void)ctx;
    fork_job_ran = 1;
}

static void fork_done(weft_loop *loop, int status, void *ctx)
{
    (void)loop;
    (void)ctx;
    fork_job_done = status == 0 ? 1 : -1;
}

static void fork_lookup(weft_dns_req *req, int err, const weft_address *a,
                        size_t n, void *ctx)
{
    (void)req;
    (void)a;
    (void)ctx;
    fork_lookup_done = 1;
    fork_lookup_err = n > 0 ? 0 : err;
}

/* Both pools used (their threads wait, idle), then a child uses them. */
static int use_pools(weft_loop *loop)
{
    fork_job_ran = fork_job_done = fork_lookup_done = 0;
    fork_lookup_err = -1;
    if (weft_queue_work(loop, fork_work, fork_done, NULL, NULL) != 0 ||
        weft_dns_lookup(loop, "localhost", 0, fork_lookup, NULL, NULL) != 0)
        return 1;
    weft_loop_run(loop);
    return fork_job_ran && fork_job_done == 1 && fork_lookup_done &&
                   fork_lookup_err == 0
               ? 0
               : 2;
}

START_TEST(a_forked_child_gets_working_pools)
{
    ck_assert_int_eq(use_pools(tu_loop), 0);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
#ifdef WORK_TSAN
    /* ThreadSanitizer kills a child that starts threads after a
     * multi-threaded fork (die_after_fork), so here the child only
     * exits: the fork itself, with every fork handler's locks held at
     * once, is what TSan checks (the ASan run covers the child). */
    if (pid == 0)
        _exit(0);
#endif
    if (pid == 0) {
        /* The parent's pool threads do not exist here: without the fork
         * handlers both requests would wait for them forever. */
        alarm(5);
        weft_loop *l = weft_loop_new();
        int rc = l != NULL ? use_pools(l) : 3;
        _exit(rc);
    }
    int status = 0;
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0,
                  "child: %s %d", WIFEXITED(status) ? "exit" : "signal",
                  WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status));
    /* and the parent's pools still work */
    ck_assert_int_eq(use_pools(tu_loop), 0);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("work");
    TCase *tc = tcase_create("work");
    tcase_add_checked_fixture(tc, setup, tu_teardown);
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, ten_thousand_jobs_each_run_once_and_done_on_loop_thread);
    tcase_add_test(tc, jobs_start_in_queue_order_with_one_thread);
    tcase_add_test(tc, cancel_queued_job_gives_ecanceled_and_work_never_runs);
    tcase_add_test(tc, cancel_finished_but_undelivered_job_is_ebusy);
    tcase_add_test(tc, set_work_threads_bounds_and_effect);
    tcase_add_test(tc, a_queued_job_keeps_the_loop_alive_until_done);
    tcase_add_test(tc, invalid_arguments_and_enomem_call_nothing);
    tcase_add_test(tc,
                   closing_a_loop_with_jobs_queued_and_running_leaks_nothing);
    tcase_add_test(tc, done_may_queue_and_cancel_more_jobs);
    tcase_add_test(tc, a_forked_child_gets_working_pools);
    tcase_add_test(tc, sleeping_work_does_not_delay_a_lookup);
    suite_add_tcase(s, tc);
    return tu_run_suite(s);
}
