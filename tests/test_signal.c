/*
 * test_signal.c - signals as loop events (src/signal.c): delivery to
 * every watching loop and its latency, dispositions saved and restored,
 * emitter semantics (once, off inside a listener, order), what a signal
 * listener keeps alive, and weft's threads keeping out of the program's
 * signals.
 */
#include "testutil.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* ---- helpers --------------------------------------------------------- */

static void noop_signal(weft_loop *loop, int signum, void *ctx)
{
    (void)loop;
    (void)signum;
    (void)ctx;
}

/*
 * The signal lock (a pipe) is made on first use and lives as long as the
 * process: make it before tu_setup counts fds, so the fd-leak check sees
 * only what a test leaks.
 */
static void sig_setup(void)
{
    weft_loop *l = weft_loop_new();
    ck_assert_ptr_nonnull(l);
    ck_assert_int_eq(weft_signal_on(l, SIGUSR2, noop_signal, NULL), 0);
    ck_assert_int_eq(weft_signal_off(l, SIGUSR2, noop_signal, NULL), 0);
    ck_assert_int_eq(weft_loop_close(l), 0);
    tu_setup();
}

static TCase *sig_tcase(const char *name)
{
    TCase *tc = tcase_create(name);
    tcase_add_checked_fixture(tc, sig_setup, tu_teardown);
    tcase_set_timeout(tc, 30);
    return tc;
}

static void noop_timer(weft_timer *t, void *ctx)
{
    (void)t;
    (void)ctx;
}

/* One short run: signals raised before it are drained by its first poll.
 * The timer keeps the loop alive, since signal listeners do not. */
static void run_briefly(void)
{
    ck_assert_ptr_nonnull(weft_set_timeout(tu_loop, 30, noop_timer, NULL));
    tu_run(2000);
}

static void (*handler_of(int signum))(int)
{
    struct sigaction sa;
    ck_assert_int_eq(sigaction(signum, NULL, &sa), 0);
    return sa.sa_handler;
}

static void log_signal(weft_loop *loop, int signum, void *ctx)
{
    ck_assert_ptr_eq(loop, tu_loop);
    tu_logf("%s:%d", (const char *)ctx, signum);
}

static double ms_between(const struct timespec *a, const struct timespec *b)
{
    return (double)(b->tv_sec - a->tv_sec) * 1e3 +
           (double)(b->tv_nsec - a->tv_nsec) / 1e6;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* ---- 1. every watching loop gets every delivery, promptly ------------ */

#define ROUNDS 5

struct watcher {
    pthread_t tid;
    weft_loop *loop;
    int got;                    /* deliveries, under `mu` */
    struct timespec at[ROUNDS]; /* when each was delivered */
    int run_rc, close_rc;
};

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static int ready;

static void on_usr1(weft_loop *loop, int signum, void *ctx)
{
    (void)loop;
    (void)signum;
    struct watcher *w = ctx;
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    pthread_mutex_lock(&mu);
    if (w->got < ROUNDS)
        w->at[w->got] = now;
    w->got++;
    pthread_cond_broadcast(&cv);
    pthread_mutex_unlock(&mu);
}

/* Runs on the watcher's loop: the last thing keeping it alive goes. */
static void release(weft_loop *loop, void *ctx)
{
    weft_signal_off(loop, SIGUSR1, on_usr1, ctx);
    weft_loop_unref(loop);
}

static void *watcher_main(void *arg)
{
    struct watcher *w = arg;
    weft_loop *loop = weft_loop_new();
    if (loop != NULL) {
        weft_signal_on(loop, SIGUSR1, on_usr1, w);
        weft_loop_ref(loop); /* a signal listener keeps nothing alive */
    }
    pthread_mutex_lock(&mu);
    w->loop = loop;
    ready++;
    pthread_cond_broadcast(&cv);
    pthread_mutex_unlock(&mu);
    if (loop == NULL)
        return NULL;
    w->run_rc = weft_loop_run(loop);
    w->close_rc = weft_loop_close(loop);
    return NULL;
}

/* Waits under `mu` until `pred` holds or 2 s pass; false on timeout. */
static bool wait_for(bool (*pred)(void *), void *arg)
{
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += 2;
    while (!pred(arg))
        if (pthread_cond_timedwait(&cv, &mu, &until) == ETIMEDOUT)
            return pred(arg);
    return true;
}

static bool both_ready(void *arg)
{
    (void)arg;
    return ready == 2;
}

struct round {
    struct watcher *w;
    int n;
};

static bool both_got(void *arg)
{
    struct round *r = arg;
    return r->w[0].got >= r->n && r->w[1].got >= r->n;
}

START_TEST(signal_reaches_every_watching_loop_within_10ms)
{
    struct watcher w[2];
    memset(w, 0, sizeof(w));
    ready = 0;
    for (int i = 0; i < 2; i++)
        ck_assert_int_eq(pthread_create(&w[i].tid, NULL, watcher_main, &w[i]),
                         0);
    pthread_mutex_lock(&mu);
    ck_assert(wait_for(both_ready, NULL));
    pthread_mutex_unlock(&mu);
    ck_assert_ptr_nonnull(w[0].loop);
    ck_assert_ptr_nonnull(w[1].loop);

    double lat[2][ROUNDS];
    for (int r = 0; r < ROUNDS; r++) {
        /* Let both loops fall asleep in epoll_wait first. */
        nanosleep(&(struct timespec){0, 20 * 1000 * 1000}, NULL);
        struct timespec sent;
        clock_gettime(CLOCK_MONOTONIC, &sent);
        /* Process-directed, sent from this (non-loop) thread. */
        ck_assert_int_eq(kill(getpid(), SIGUSR1), 0);
        struct round rd = {w, r + 1};
        pthread_mutex_lock(&mu);
        bool ok = wait_for(both_got, &rd);
        int g0 = w[0].got, g1 = w[1].got;
        for (int i = 0; i < 2; i++)
            lat[i][r] = ms_between(&sent, &w[i].at[r]);
        pthread_mutex_unlock(&mu);
        ck_assert_msg(ok, "round %d: loop deliveries %d and %d", r, g0, g1);
        /* Exactly one delivery per signal, to each loop. */
        ck_assert_int_eq(g0, r + 1);
        ck_assert_int_eq(g1, r + 1);
    }
    for (int i = 0; i < 2; i++)
        ck_assert_int_eq(weft_loop_call(w[i].loop, release, &w[i]), 0);
    for (int i = 0; i < 2; i++) {
        pthread_join(w[i].tid, NULL);
        ck_assert_int_eq(w[i].run_rc, 0);
        ck_assert_int_eq(w[i].close_rc, 0);
    }
    ck_assert(handler_of(SIGUSR1) == SIG_DFL);

    for (int i = 0; i < 2; i++) {
        fprintf(stderr, "signal latency, loop %d (ms):", i);
        for (int r = 0; r < ROUNDS; r++)
            fprintf(stderr, " %.3f", lat[i][r]);
        qsort(lat[i], ROUNDS, sizeof(double), cmp_double);
        fprintf(stderr, "  median %.3f\n", lat[i][ROUNDS / 2]);
    }
    for (int i = 0; i < 2; i++)
        ck_assert_msg(lat[i][ROUNDS / 2] <= 10.0, "loop %d median %.3f ms", i,
                      lat[i][ROUNDS / 2]);
}
END_TEST

/* ---- 2. the program's disposition comes back ------------------------- */

START_TEST(default_action_returns_after_last_off)
{
    ck_assert(handler_of(SIGUSR1) == SIG_DFL);
    ck_assert_int_eq(weft_signal_on(tu_loop, SIGUSR1, log_signal, "a"), 0);
    ck_assert_int_eq(weft_signal_on(tu_loop, SIGUSR1, log_signal, "b"), 0);
    ck_assert(handler_of(SIGUSR1) != SIG_DFL);
    ck_assert_int_eq(raise(SIGUSR1), 0); /* survived: default would kill */
    run_briefly();
    ck_assert_str_eq(tu_log_str(), "a:10,b:10");
    ck_assert_int_eq(weft_signal_off(tu_loop, SIGUSR1, log_signal, "a"), 0);
    ck_assert(handler_of(SIGUSR1) != SIG_DFL); /* "b" still listens */
    ck_assert_int_eq(weft_signal_off(tu_loop, SIGUSR1, log_signal, "b"), 0);
    ck_assert(handler_of(SIGUSR1) == SIG_DFL);
}
END_TEST

static volatile sig_atomic_t custom_hits;
static void custom_handler(int signum)
{
    (void)signum;
    custom_hits++;
}

START_TEST(program_handler_restored_exactly)
{
    struct sigaction mine = {0}, before, during, after;
    mine.sa_handler = custom_handler;
    sigemptyset(&mine.sa_mask);
    sigaddset(&mine.sa_mask, SIGINT);
    sigaddset(&mine.sa_mask, SIGHUP);
    mine.sa_flags = SA_NODEFER | SA_RESTART;
    ck_assert_int_eq(sigaction(SIGUSR2, &mine, NULL), 0);
    ck_assert_int_eq(sigaction(SIGUSR2, NULL, &before), 0);

    weft_loop *other = weft_loop_new();
    ck_assert_ptr_nonnull(other);
    ck_assert_int_eq(weft_signal_on(tu_loop, SIGUSR2, log_signal, "a"), 0);
    ck_assert_int_eq(weft_signal_on(other, SIGUSR2, noop_signal, NULL), 0);
    ck_assert_int_eq(sigaction(SIGUSR2, NULL, &during), 0);
    ck_assert(during.sa_handler != custom_handler);
    ck_assert_int_eq(raise(SIGUSR2), 0);
    run_briefly();
    ck_assert_str_eq(tu_log_str(), "a:12");
    ck_assert_int_eq(custom_hits, 0); /* weft's handler took it */

    ck_assert_int_eq(weft_signal_off(tu_loop, SIGUSR2, log_signal, "a"), 0);
    ck_assert(handler_of(SIGUSR2) == during.sa_handler); /* other listens */
    ck_assert_int_eq(weft_signal_off(other, SIGUSR2, noop_signal, NULL), 0);
    ck_assert_int_eq(sigaction(SIGUSR2, NULL, &after), 0);
    ck_assert(after.sa_handler == before.sa_handler);
    ck_assert_int_eq(after.sa_flags, before.sa_flags);
    for (int s = 1; s < NSIG; s++)
        ck_assert_int_eq(sigismember(&after.sa_mask, s),
                         sigismember(&before.sa_mask, s));
    ck_assert_int_eq(raise(SIGUSR2), 0);
    ck_assert_int_eq(custom_hits, 1);
    ck_assert_int_eq(weft_loop_close(other), 0);
    signal(SIGUSR2, SIG_DFL); /* for CK_FORK=no runs */
}
END_TEST

/* In a child: SIGTERM is survived while listened to, and kills after the
 * last off. The byte on `fd` tells the parent the first raise was
 * survived; the exit status tells how the second ended. */
static void sigterm_child(int fd)
{
    /* Check's runner catches SIGTERM (to kill its process group) and the
     * test inherits that: start from the default a program has. */
    signal(SIGTERM, SIG_DFL);
    weft_loop *loop = weft_loop_new();
    if (loop == NULL)
        _exit(10);
    if (weft_signal_on(loop, SIGTERM, noop_signal, NULL) != 0)
        _exit(11);
    raise(SIGTERM);
    if (write(fd, "s", 1) != 1)
        _exit(12);
    if (weft_signal_off(loop, SIGTERM, noop_signal, NULL) != 0)
        _exit(13);
    raise(SIGTERM);
    _exit(0); /* the default action did not happen */
}

START_TEST(sigterm_kills_again_after_last_off)
{
    int p[2];
    ck_assert_int_eq(pipe(p), 0);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        close(p[0]);
        sigterm_child(p[1]);
    }
    close(p[1]);
    char c = 0;
    ck_assert_int_eq(read(p[0], &c, 1), 1);
    ck_assert_int_eq(c, 's');
    close(p[0]);
    int status;
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    ck_assert_msg(WIFSIGNALED(status) && WTERMSIG(status) == SIGTERM,
                  "child status %#x", status);
}
END_TEST

static void child_got_usr1(weft_loop *loop, int signum, void *ctx)
{
    (void)loop;
    (void)signum;
    *(int *)ctx += 1;
}

static void child_give_up(weft_timer *t, void *ctx)
{
    (void)t;
    (void)ctx;
    _exit(31);
}

/* A child forked while the parent listens: its own lock (the fork hooks
 * gave it a fresh pipe with its byte), its own listeners, its own
 * deliveries. A child left without the byte would hang in the handler
 * (alarm() ends it). */
static void forked_child(void)
{
    alarm(5);
    weft_loop *loop = weft_loop_new();
    if (loop == NULL)
        _exit(30);
    int got = 0;
    if (weft_signal_on(loop, SIGUSR1, child_got_usr1, &got) != 0)
        _exit(32);
    raise(SIGUSR1);
    weft_timer *t = weft_set_timeout(loop, 2000, child_give_up, NULL);
    while (got == 0)
        weft_loop_run_mode(loop, WEFT_RUN_ONCE);
    weft_clear_timer(t);
    if (weft_signal_off(loop, SIGUSR1, child_got_usr1, &got) != 0)
        _exit(33);
    _exit(got == 1 ? 0 : 34);
}

START_TEST(forked_child_gets_its_own_lock_and_deliveries)
{
    ck_assert_int_eq(weft_signal_on(tu_loop, SIGUSR1, log_signal, "parent"), 0);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0)
        forked_child();
    int status;
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0,
                  "child status %#x", status);
    /* The parent's lock still has its byte. */
    ck_assert_int_eq(raise(SIGUSR1), 0);
    run_briefly();
    ck_assert_str_eq(tu_log_str(), "parent:10");
    ck_assert_int_eq(weft_signal_off(tu_loop, SIGUSR1, log_signal, "parent"),
                     0);
}
END_TEST

/* ---- 3. weft's threads never take the program's signals -------------- */

static void child_connected(weft_stream *s, void *ctx)
{
    *(int *)ctx = 1;
    weft_stream_destroy(s);
}

static void child_error(weft_stream *s, int err, const char *msg, void *ctx)
{
    (void)s;
    (void)err;
    (void)msg;
    (void)ctx;
}

static void child_accepted(weft_server *srv, weft_stream *s, void *ctx)
{
    (void)ctx;
    weft_stream_destroy(s);
    weft_server_close(srv);
}

/*
 * A program that takes SIGTERM with sigwait(), blocking it in its one
 * thread, while a by-name connect starts weft's lookup threads. Exit 0
 * if sigwait() got the SIGTERM.
 *
 * `block_first`: blocked before anything, so every thread made later
 * inherits the block anyway. Otherwise blocked after the lookup threads
 * exist: the program blocks it in every thread it knows of, and only
 * weft__thread_start() having blocked all signals in weft's own threads
 * keeps a lookup thread from taking SIGTERM (default action: death).
 */
static void sigwait_child(int fd, bool block_first)
{
    signal(SIGTERM, SIG_DFL); /* as in sigterm_child() */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    if (block_first && pthread_sigmask(SIG_BLOCK, &set, NULL) != 0)
        _exit(20);
    weft_loop *loop = weft_loop_new();
    if (loop == NULL)
        _exit(21);
    weft_server *srv = weft_create_server(loop, child_accepted, NULL);
    if (srv == NULL || weft_server_listen(srv, 0, "127.0.0.1", NULL, NULL))
        _exit(22);
    weft_address a;
    if (weft_server_address(srv, &a) != 0)
        _exit(23);
    weft_stream *s;
    int connected = 0;
    if (weft_create_connection(loop, a.port, "localhost", &s) != 0)
        _exit(24);
    weft_stream_on_connect(s, child_connected, &connected);
    weft_stream_on_error(s, child_error, NULL);
    weft_loop_run(loop);
    if (!connected)
        _exit(25);
    if (!block_first && pthread_sigmask(SIG_BLOCK, &set, NULL) != 0)
        _exit(20);
    /* The lookup threads are still there, idle, waiting for work. */
    if (write(fd, "r", 1) != 1)
        _exit(26);
    /* Let the parent's SIGTERM arrive before sigwait(): a thread inside
     * sigwait() is itself a target the kernel prefers, which would hide
     * a lookup thread that lets the signal in. Here the only place it
     * can stay is pending on the process. */
    for (int i = 0; i < 2000; i++) {
        sigset_t pending;
        sigpending(&pending);
        if (sigismember(&pending, SIGTERM))
            break;
        nanosleep(&(struct timespec){0, 1000 * 1000}, NULL);
    }
    int sig = 0;
    if (sigwait(&set, &sig) != 0 || sig != SIGTERM)
        _exit(27);
    _exit(0);
}

/* _i: 0 blocks SIGTERM before weft starts, 1 after its threads exist. */
START_TEST(sigwait_program_gets_sigterm_despite_lookup_threads)
{
    int p[2];
    ck_assert_int_eq(pipe(p), 0);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        close(p[0]);
        sigwait_child(p[1], _i == 0);
    }
    close(p[1]);
    char c = 0;
    ck_assert_int_eq(read(p[0], &c, 1), 1);
    close(p[0]);
    ck_assert_int_eq(kill(pid, SIGTERM), 0);
    int status;
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    ck_assert_msg(!WIFSIGNALED(status), "child killed by signal %d",
                  WIFSIGNALED(status) ? WTERMSIG(status) : 0);
    ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0,
                  "child exit status %d", WEXITSTATUS(status));
}
END_TEST

/* ---- 4. emitter semantics, liveness, bad arguments, loop close ------- */

START_TEST(once_listener_fires_once_and_restores_default)
{
    ck_assert_int_eq(weft_signal_once(tu_loop, SIGUSR1, log_signal, "o"), 0);
    ck_assert_int_eq(raise(SIGUSR1), 0);
    ck_assert_int_eq(raise(SIGUSR1), 0);
    run_briefly();
    ck_assert_str_eq(tu_log_str(), "o:10");
    /* The emit used it up: nobody listens, the default is back. */
    ck_assert(handler_of(SIGUSR1) == SIG_DFL);
    ck_assert_int_eq(weft_signal_off(tu_loop, SIGUSR1, log_signal, "o"),
                     WEFT_ENOENT);
}
END_TEST

START_TEST(every_delivery_before_the_drain_is_counted)
{
    ck_assert_int_eq(weft_signal_on(tu_loop, SIGUSR1, log_signal, "a"), 0);
    for (int i = 0; i < 3; i++)
        ck_assert_int_eq(raise(SIGUSR1), 0);
    run_briefly();
    ck_assert_str_eq(tu_log_str(), "a:10,a:10,a:10");
    ck_assert_int_eq(weft_signal_off(tu_loop, SIGUSR1, log_signal, "a"), 0);
}
END_TEST

static void off_self(weft_loop *loop, int signum, void *ctx)
{
    tu_logf("self:%d", signum);
    ck_assert_int_eq(weft_signal_off(loop, signum, off_self, ctx), 0);
}

START_TEST(off_inside_own_listener_stops_it)
{
    ck_assert_int_eq(weft_signal_on(tu_loop, SIGUSR1, off_self, NULL), 0);
    ck_assert_int_eq(weft_signal_on(tu_loop, SIGUSR1, log_signal, "b"), 0);
    ck_assert_int_eq(raise(SIGUSR1), 0);
    ck_assert_int_eq(raise(SIGUSR1), 0);
    run_briefly();
    ck_assert_str_eq(tu_log_str(), "self:10,b:10,b:10");
    ck_assert_int_eq(weft_signal_off(tu_loop, SIGUSR1, log_signal, "b"), 0);
    ck_assert(handler_of(SIGUSR1) == SIG_DFL);
}
END_TEST

static void off_other(weft_loop *loop, int signum, void *ctx)
{
    tu_log("a");
    weft_signal_off(loop, signum, log_signal, ctx);
}

START_TEST(listener_removed_by_an_earlier_one_is_not_called)
{
    ck_assert_int_eq(weft_signal_on(tu_loop, SIGUSR1, off_other, "b"), 0);
    ck_assert_int_eq(weft_signal_on(tu_loop, SIGUSR1, log_signal, "b"), 0);
    ck_assert_int_eq(raise(SIGUSR1), 0);
    run_briefly();
    ck_assert_str_eq(tu_log_str(), "a");
    ck_assert_int_eq(weft_signal_off(tu_loop, SIGUSR1, off_other, "b"), 0);
    ck_assert(handler_of(SIGUSR1) == SIG_DFL);
}
END_TEST

static void off_all_of_usr1(weft_loop *loop, int signum, void *ctx)
{
    (void)ctx;
    tu_log("last");
    weft_signal_off(loop, signum, off_all_of_usr1, NULL);
    ck_assert(handler_of(SIGUSR1) == SIG_DFL); /* at once, inside the emit */
}

START_TEST(last_off_inside_listener_restores_default)
{
    ck_assert_int_eq(weft_signal_on(tu_loop, SIGUSR1, off_all_of_usr1, NULL),
                     0);
    ck_assert_int_eq(raise(SIGUSR1), 0);
    ck_assert_int_eq(raise(SIGUSR1), 0); /* counted, then never emitted */
    run_briefly();
    ck_assert_str_eq(tu_log_str(), "last");
}
END_TEST

START_TEST(listeners_called_in_order_added_and_off_takes_latest)
{
    ck_assert_int_eq(weft_signal_on(tu_loop, SIGUSR1, log_signal, "x"), 0);
    ck_assert_int_eq(weft_signal_on(tu_loop, SIGUSR1, log_signal, "y"), 0);
    ck_assert_int_eq(weft_signal_on(tu_loop, SIGUSR1, log_signal, "x"), 0);
    ck_assert_int_eq(weft_signal_on(tu_loop, SIGUSR2, log_signal, "z"), 0);
    ck_assert_int_eq(raise(SIGUSR1), 0);
    run_briefly();
    ck_assert_str_eq(tu_log_str(), "x:10,y:10,x:10");
    tu_log_reset();
    /* Removes the second "x" (the latest), leaving x, y. */
    ck_assert_int_eq(weft_signal_off(tu_loop, SIGUSR1, log_signal, "x"), 0);
    ck_assert_int_eq(raise(SIGUSR1), 0);
    ck_assert_int_eq(raise(SIGUSR2), 0);
    run_briefly();
    ck_assert_str_eq(tu_log_str(), "x:10,y:10,z:12");
    ck_assert_int_eq(weft_signal_off(tu_loop, SIGUSR1, log_signal, "x"), 0);
    ck_assert_int_eq(weft_signal_off(tu_loop, SIGUSR1, log_signal, "y"), 0);
    ck_assert_int_eq(weft_signal_off(tu_loop, SIGUSR1, log_signal, "y"),
                     WEFT_ENOENT);
    ck_assert_int_eq(weft_signal_off(tu_loop, SIGUSR2, log_signal, "z"), 0);
    ck_assert(handler_of(SIGUSR1) == SIG_DFL);
    ck_assert(handler_of(SIGUSR2) == SIG_DFL);
}
END_TEST

static int adds;
static void add_another(weft_loop *loop, int signum, void *ctx)
{
    tu_log(ctx);
    if (adds++ == 0)
        ck_assert_int_eq(weft_signal_on(loop, signum, log_signal, "new"), 0);
}

START_TEST(listener_added_during_emit_waits_for_next_delivery)
{
    adds = 0;
    ck_assert_int_eq(weft_signal_on(tu_loop, SIGUSR1, add_another, "a"), 0);
    ck_assert_int_eq(raise(SIGUSR1), 0);
    run_briefly();
    ck_assert_str_eq(tu_log_str(), "a");
    ck_assert_int_eq(raise(SIGUSR1), 0);
    run_briefly();
    ck_assert_str_eq(tu_log_str(), "a,a,new:10");
    ck_assert_int_eq(weft_signal_off(tu_loop, SIGUSR1, add_another, "a"), 0);
    ck_assert_int_eq(weft_signal_off(tu_loop, SIGUSR1, log_signal, "new"), 0);
}
END_TEST

START_TEST(new_listener_never_hears_an_old_signal)
{
    ck_assert_int_eq(weft_signal_on(tu_loop, SIGUSR1, log_signal, "old"), 0);
    ck_assert_int_eq(raise(SIGUSR1), 0); /* counted, not yet drained */
    ck_assert_int_eq(weft_signal_off(tu_loop, SIGUSR1, log_signal, "old"), 0);
    ck_assert_int_eq(weft_signal_on(tu_loop, SIGUSR1, log_signal, "new"), 0);
    run_briefly();
    ck_assert_str_eq(tu_log_str(), "");
    ck_assert_int_eq(weft_signal_off(tu_loop, SIGUSR1, log_signal, "new"), 0);
}
END_TEST

START_TEST(signal_listener_alone_does_not_keep_loop_alive)
{
    ck_assert_int_eq(weft_signal_on(tu_loop, SIGUSR1, log_signal, "a"), 0);
    ck_assert(!weft_loop_alive(tu_loop));
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    ck_assert_int_eq(weft_loop_run(tu_loop), 0);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    ck_assert_msg(ms_between(&t0, &t1) < 100.0, "run took %.1f ms",
                  ms_between(&t0, &t1));
    ck_assert_int_eq(weft_signal_off(tu_loop, SIGUSR1, log_signal, "a"), 0);
}
END_TEST

START_TEST(bad_arguments_are_einval)
{
    const int bad[] = {0,       -1,      65,     1000,   SIGKILL,
                       SIGSTOP, SIGSEGV, SIGBUS, SIGFPE, SIGILL};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        ck_assert_int_eq(weft_signal_on(tu_loop, bad[i], noop_signal, NULL),
                         WEFT_EINVAL);
        ck_assert_int_eq(weft_signal_once(tu_loop, bad[i], noop_signal, NULL),
                         WEFT_EINVAL);
        ck_assert_int_eq(weft_signal_off(tu_loop, bad[i], noop_signal, NULL),
                         WEFT_EINVAL);
    }
    if (SIGRTMAX < 64)
        ck_assert_int_eq(
            weft_signal_on(tu_loop, SIGRTMAX + 1, noop_signal, NULL),
            WEFT_EINVAL);
    ck_assert_int_eq(weft_signal_on(tu_loop, SIGUSR1, NULL, NULL), WEFT_EINVAL);
    ck_assert_int_eq(weft_signal_once(tu_loop, SIGUSR1, NULL, NULL),
                     WEFT_EINVAL);
    ck_assert_int_eq(weft_signal_off(tu_loop, SIGUSR1, NULL, NULL),
                     WEFT_EINVAL);
    ck_assert_int_eq(weft_signal_off(tu_loop, SIGUSR1, noop_signal, NULL),
                     WEFT_ENOENT);
    ck_assert(handler_of(SIGUSR1) == SIG_DFL);
}
END_TEST

START_TEST(signal_the_c_library_keeps_is_refused_and_not_kept)
{
    /* glibc keeps 32 and 33 (SIGRTMIN is 34): sigaction() refuses them,
     * and the listener must not stay behind. */
    if (SIGRTMIN <= 32)
        return;
    ck_assert_int_eq(weft_signal_on(tu_loop, 32, noop_signal, NULL),
                     WEFT_EINVAL);
    ck_assert_int_eq(weft_signal_off(tu_loop, 32, noop_signal, NULL),
                     WEFT_ENOENT);
    ck_assert_int_eq(weft_signal_on(tu_loop, SIGRTMIN, log_signal, "rt"), 0);
    ck_assert_int_eq(raise(SIGRTMIN), 0);
    run_briefly();
    ck_assert_int_eq(weft_signal_off(tu_loop, SIGRTMIN, log_signal, "rt"), 0);
    char want[16];
    snprintf(want, sizeof(want), "rt:%d", SIGRTMIN);
    ck_assert_str_eq(tu_log_str(), want);
}
END_TEST

START_TEST(closing_loop_with_listeners_restores_dispositions)
{
    weft_loop *other = weft_loop_new();
    ck_assert_ptr_nonnull(other);
    ck_assert_int_eq(weft_signal_on(other, SIGUSR1, noop_signal, NULL), 0);
    ck_assert_int_eq(weft_signal_once(other, SIGUSR1, noop_signal, NULL), 0);
    ck_assert_int_eq(weft_signal_on(other, SIGUSR2, noop_signal, NULL), 0);
    ck_assert_int_eq(weft_signal_on(tu_loop, SIGUSR1, log_signal, "a"), 0);
    ck_assert_int_eq(raise(SIGUSR1), 0); /* counted on `other`, never run */
    ck_assert_int_eq(weft_loop_close(other), 0);
    /* `other` was the only one on SIGUSR2; tu_loop still has SIGUSR1. */
    ck_assert(handler_of(SIGUSR2) == SIG_DFL);
    ck_assert(handler_of(SIGUSR1) != SIG_DFL);
    /* The handler no longer sees the closed loop (ASan would catch it). */
    ck_assert_int_eq(raise(SIGUSR1), 0);
    run_briefly();
    ck_assert_str_eq(tu_log_str(), "a:10,a:10");
    ck_assert_int_eq(weft_signal_off(tu_loop, SIGUSR1, log_signal, "a"), 0);
    ck_assert(handler_of(SIGUSR1) == SIG_DFL);

    /* And a loop closed as the last one listening puts the default back. */
    other = weft_loop_new();
    ck_assert_ptr_nonnull(other);
    ck_assert_int_eq(weft_signal_on(other, SIGUSR1, noop_signal, NULL), 0);
    ck_assert(handler_of(SIGUSR1) != SIG_DFL);
    ck_assert_int_eq(weft_loop_close(other), 0);
    ck_assert(handler_of(SIGUSR1) == SIG_DFL);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("signal");
    TCase *tc = sig_tcase("signal");
    tcase_add_test(tc, signal_reaches_every_watching_loop_within_10ms);
    tcase_add_test(tc, default_action_returns_after_last_off);
    tcase_add_test(tc, program_handler_restored_exactly);
    tcase_add_test(tc, sigterm_kills_again_after_last_off);
    tcase_add_test(tc, forked_child_gets_its_own_lock_and_deliveries);
    tcase_add_loop_test(tc, sigwait_program_gets_sigterm_despite_lookup_threads,
                        0, 2);
    tcase_add_test(tc, once_listener_fires_once_and_restores_default);
    tcase_add_test(tc, every_delivery_before_the_drain_is_counted);
    tcase_add_test(tc, off_inside_own_listener_stops_it);
    tcase_add_test(tc, listener_removed_by_an_earlier_one_is_not_called);
    tcase_add_test(tc, last_off_inside_listener_restores_default);
    tcase_add_test(tc, listeners_called_in_order_added_and_off_takes_latest);
    tcase_add_test(tc, listener_added_during_emit_waits_for_next_delivery);
    tcase_add_test(tc, new_listener_never_hears_an_old_signal);
    tcase_add_test(tc, signal_listener_alone_does_not_keep_loop_alive);
    tcase_add_test(tc, bad_arguments_are_einval);
    tcase_add_test(tc, signal_the_c_library_keeps_is_refused_and_not_kept);
    tcase_add_test(tc, closing_loop_with_listeners_restores_dispositions);
    suite_add_tcase(s, tc);
    return tu_run_suite(s);
}
