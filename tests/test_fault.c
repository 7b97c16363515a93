/*
 * test_fault.c - every syscall error path weft has, driven by injecting
 * each errno the kernel can return there (tests/fault.c).
 *
 * One scenario per case: a server echoes; client A writes "ping", ends,
 * and expects "ping" back, while the armed fault fires somewhere in that
 * exchange (client or server side). Then, faults off, client B does the
 * same exchange: the loop must still serve. Invariants checked for every
 * case: the fault really fired; each stream closes exactly once; an
 * 'error' is always followed by 'close'(true); errors are the injected
 * one or what a peer sees when the other side dies (ECONNRESET, EPIPE);
 * transient errnos (EINTR, EAGAIN) cause no error at all and A completes;
 * and the fixture finds no leaked memory or fd.
 */
#include "fault.h"
#include "internal.h"
#include "testutil.h"

#include <netdb.h>
#include <stdio.h>
#include <string.h>

enum expect {
    E_TRANSIENT, /* nothing fails; A's exchange completes */
    E_ERROR,     /* an 'error' carries the injected code */
    E_DROPPED,   /* A is dropped without the code (e.g. shed on EMFILE) */
};

typedef struct {
    enum fault_call call;
    int err;    /* errno, or EAI_* for getaddrinfo */
    int code;   /* the WEFT_E* the 'error' must carry (E_ERROR) */
    enum expect expect;
    const char *host; /* A connects here ("localhost" to use the resolver) */
} fault_case;

#define C(call, err, expect) {FAULT_##call, err, -(err), expect, "127.0.0.1"}

static const fault_case cases[] = {
    C(ACCEPT4, EMFILE, E_DROPPED),
    C(ACCEPT4, ENFILE, E_DROPPED),
    C(ACCEPT4, ECONNABORTED, E_TRANSIENT),
    C(ACCEPT4, EINTR, E_TRANSIENT),
    C(ACCEPT4, EAGAIN, E_TRANSIENT),
    C(ACCEPT4, ENOBUFS, E_ERROR),
    C(ACCEPT4, ENOMEM, E_ERROR),
    C(ACCEPT4, EPERM, E_ERROR),
    C(CONNECT, ECONNREFUSED, E_ERROR),
    C(CONNECT, ETIMEDOUT, E_ERROR),
    C(CONNECT, ENETUNREACH, E_ERROR),
    C(CONNECT, EADDRNOTAVAIL, E_ERROR),
    C(CONNECT, EACCES, E_ERROR),
    C(CONNECT, EINTR, E_TRANSIENT),
    C(READ, ECONNRESET, E_ERROR),
    C(READ, ETIMEDOUT, E_ERROR),
    C(READ, EIO, E_ERROR),
    C(READ, ENOMEM, E_ERROR),
    C(READ, EINTR, E_TRANSIENT),
    C(READ, EAGAIN, E_TRANSIENT),
    C(SEND, EPIPE, E_ERROR),
    C(SEND, ECONNRESET, E_ERROR),
    C(SEND, ENOBUFS, E_ERROR),
    C(SEND, ENOMEM, E_ERROR),
    C(SEND, EINTR, E_TRANSIENT),
    C(SEND, EAGAIN, E_TRANSIENT),
    C(SOCKET, EMFILE, E_ERROR),
    C(SOCKET, ENFILE, E_ERROR),
    C(SOCKET, ENOBUFS, E_ERROR),
    C(SOCKET, ENOMEM, E_ERROR),
    C(SOCKET, EACCES, E_ERROR),
    C(SHUTDOWN, ENOBUFS, E_ERROR),
    C(SHUTDOWN, ENOMEM, E_ERROR),
    C(EPOLL_CTL, ENOMEM, E_ERROR),
    C(EPOLL_CTL, ENOSPC, E_ERROR),
    {FAULT_GETADDRINFO, EAI_AGAIN, WEFT_EAI_AGAIN, E_ERROR, "localhost"},
    {FAULT_GETADDRINFO, EAI_NONAME, WEFT_ENOTFOUND, E_ERROR, "localhost"},
    {FAULT_GETADDRINFO, EAI_FAIL, WEFT_ENOTFOUND, E_ERROR, "localhost"},
    {FAULT_GETADDRINFO, EAI_MEMORY, WEFT_ENOMEM, E_ERROR, "localhost"},
};

#define NCASES ((int)(sizeof(cases) / sizeof(cases[0])))

/* ---- the scenario ------------------------------------------------------ */

typedef struct {
    const fault_case *fc;
    weft_server *srv;
    int port;
    int errors, errors_with_code, unexpected_errors, server_errors;
    int closes, closes_after_error_ok, streams;
    char a_got[16];
    size_t a_len;
    bool a_clean;
    bool b_done;
    char b_got[16];
    size_t b_len;
} scen;

static scen sc;

typedef struct {
    bool had_error_event;
    int closes;
} per_stream;

static per_stream ps[16];
static int nps;

static per_stream *track(weft_stream *s)
{
    ck_assert_int_lt(nps, 16);
    per_stream *p = &ps[nps++];
    memset(p, 0, sizeof(*p));
    weft_stream_set_data(s, p);
    sc.streams++;
    return p;
}

static void on_error(weft_stream *s, int err, const char *msg, void *ctx)
{
    (void)ctx;
    per_stream *p = weft_stream_data(s);
    ck_assert_ptr_nonnull(msg);
    ck_assert_int_eq(p->closes, 0);
    p->had_error_event = true;
    sc.errors++;
    /* Allocation-failure runs may also see ENOMEM on the way. */
    bool alloc_run = sc.fc->call == FAULT_NCALLS;
    if (err == sc.fc->code) {
        sc.errors_with_code++;
    } else if (err != WEFT_ECONNRESET && err != WEFT_EPIPE &&
               !(alloc_run && err == WEFT_ENOMEM)) {
        sc.unexpected_errors++;
        fprintf(stderr, "unexpected error %s (%s)\n", weft_err_name(err),
                msg);
    }
}

static void on_close(weft_stream *s, bool had_error, void *ctx)
{
    (void)ctx;
    per_stream *p = weft_stream_data(s);
    p->closes++;
    sc.closes++;
    ck_assert_int_eq(p->closes, 1);
    /* 'error' is always followed by 'close'(true), and only then. */
    ck_assert_int_eq(had_error, p->had_error_event);
}

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

static void on_conn(weft_server *srv, weft_stream *s, void *ctx)
{
    (void)srv;
    (void)ctx;
    track(s);
    weft_stream_on_data(s, echo_data, NULL);
    weft_stream_on_end(s, echo_end, NULL);
    weft_stream_on_error(s, on_error, NULL);
    weft_stream_on_close(s, on_close, NULL);
}

static void on_server_error(weft_server *srv, int err, const char *msg,
                            void *ctx)
{
    (void)srv;
    (void)ctx;
    ck_assert_ptr_nonnull(msg);
    sc.server_errors++;
    if (err == sc.fc->code)
        sc.errors_with_code++;
    else
        sc.unexpected_errors++;
}

static void collect(weft_stream *s, const char *d, size_t n, void *ctx)
{
    char *buf = ctx;
    (void)s;
    size_t *len = buf == sc.a_got ? &sc.a_len : &sc.b_len;
    if (*len + n < 16) {
        memcpy(buf + *len, d, n);
        *len += n;
    }
}

static void send_ping(weft_stream *s, void *ctx)
{
    (void)ctx;
    weft_stream_end_string(s, "ping", NULL);
}

static void start_b(void);

static void a_close(weft_stream *s, bool had_error, void *ctx)
{
    (void)s;
    (void)ctx;
    sc.a_clean = !had_error;
    /* The loop must go on serving: B runs with the faults off. */
    fault_disarm_all();
    weft__alloc_fail_at = 0;
    start_b();
}

static void b_close(weft_stream *s, bool had_error, void *ctx)
{
    (void)s;
    (void)ctx;
    ck_assert(!had_error);
    sc.b_done = true;
    weft_server_close(sc.srv);
}

static weft_stream *client(const char *host, char *buf,
                           weft_stream_close_cb done)
{
    weft_stream *c;
    ck_assert_int_eq(weft_create_connection(tu_loop, sc.port, host, &c), 0);
    track(c);
    weft_stream_on_connect(c, send_ping, NULL);
    weft_stream_on_data(c, collect, buf);
    weft_stream_on_error(c, on_error, NULL);
    weft_stream_on_close(c, on_close, NULL);
    weft_stream_on_close(c, done, NULL);
    return c;
}

static void start_b(void)
{
    client("127.0.0.1", sc.b_got, b_close);
}

static void run_case(const fault_case *fc)
{
    memset(&sc, 0, sizeof(sc));
    nps = 0;
    sc.fc = fc;
    sc.srv = tu_server(on_conn, NULL, &sc.port);
    weft_server_on_error(sc.srv, on_server_error, NULL);
    fault_arm(fc->call, 1, 1, fc->err);
    client(fc->host, sc.a_got, a_close);
    tu_run(10000);
    fault_disarm_all();

    const char *name = fault_call_name(fc->call);
    ck_assert_msg(fault_injected(fc->call) == 1, "%s fault never fired",
                  name);
    ck_assert_msg(sc.b_done && sc.b_len == 4 && memcmp(sc.b_got, "ping", 4) == 0,
                  "%s/%d: the loop stopped serving", name, fc->err);
    ck_assert_int_eq(sc.closes, sc.streams);
    ck_assert_msg(sc.unexpected_errors == 0, "%s/%d: unexpected errors", name,
                  fc->err);
    switch (fc->expect) {
    case E_TRANSIENT:
        ck_assert_msg(sc.errors == 0 && sc.server_errors == 0,
                      "%s/%d: a transient errno caused an error", name,
                      fc->err);
        ck_assert(sc.a_clean);
        ck_assert_uint_eq(sc.a_len, 4);
        ck_assert(memcmp(sc.a_got, "ping", 4) == 0);
        break;
    case E_ERROR:
        ck_assert_msg(sc.errors_with_code >= 1,
                      "%s/%d: no 'error' carried %s", name, fc->err,
                      weft_err_name(fc->code));
        break;
    case E_DROPPED:
        ck_assert_uint_eq(sc.a_len, 0);
        break;
    }
}

START_TEST(each_injected_syscall_error_is_reported_and_the_loop_serves_on)
{
    run_case(&cases[_i]);
}
END_TEST

/* ---- option setters return the kernel's error ------------------------- */

static void try_options(weft_stream *s, void *ctx)
{
    (void)ctx;
    fault_arm(FAULT_SETSOCKOPT, 1, 1, ENOMEM);
    ck_assert_int_eq(weft_stream_set_no_delay(s, true), WEFT_ENOMEM);
    fault_arm(FAULT_SETSOCKOPT, 1, 1, EINVAL);
    ck_assert_int_eq(weft_stream_set_keep_alive(s, true, 1000), WEFT_EINVAL);
    fault_disarm_all();
    ck_assert_int_eq(weft_stream_set_no_delay(s, true), 0);
    weft_stream_end(s, NULL, 0);
}

static void close_srv(weft_stream *s, bool e, void *ctx)
{
    (void)s;
    (void)e;
    weft_server_close(ctx);
}

START_TEST(option_setters_return_setsockopt_errors)
{
    memset(&sc, 0, sizeof(sc));
    sc.fc = &cases[0];
    nps = 0;
    weft_server *srv = tu_server(on_conn, NULL, &sc.port);
    weft_stream *c;
    ck_assert_int_eq(weft_create_connection(tu_loop, sc.port, "127.0.0.1", &c),
                     0);
    weft_stream_on_connect(c, try_options, NULL);
    weft_stream_on_close(c, close_srv, srv);
    tu_run(5000);
}
END_TEST

/* ---- writev: a send error fails the stream, a full socket queues -------- */

static char wv_log[256];

static void wv_try(weft_stream *s, void *ctx)
{
    int err = (int)(intptr_t)ctx;
    weft_buf b[2] = {{"head", 4}, {"body", 4}};
    fault_arm(FAULT_SEND, 1, 1, err);
    int r = weft_stream_writev(s, b, 2);
    fault_disarm_all();
    size_t n = strlen(wv_log);
    snprintf(wv_log + n, sizeof(wv_log) - n, "writev:%d:%zu,", r,
             weft_stream_buffer_size(s));
    if (err == EAGAIN) /* queued: it goes out once the socket has room */
        weft_stream_end(s, NULL, 0);
}

static void wv_error(weft_stream *s, int err, const char *msg, void *ctx)
{
    (void)s;
    (void)ctx;
    size_t n = strlen(wv_log);
    snprintf(wv_log + n, sizeof(wv_log) - n, "error:%s:%s,",
             weft_err_name(err), msg);
}

static void wv_close(weft_stream *s, bool had_error, void *ctx)
{
    (void)s;
    size_t n = strlen(wv_log);
    snprintf(wv_log + n, sizeof(wv_log) - n, "close:%d", had_error);
    weft_server_close(ctx);
}

static char wv_got[16];

static void wv_sink(weft_stream *s, const char *d, size_t n, void *ctx)
{
    (void)s;
    (void)ctx;
    size_t have = strlen(wv_got);
    snprintf(wv_got + have, sizeof(wv_got) - have, "%.*s", (int)n, d);
}

static void wv_conn(weft_server *srv, weft_stream *s, void *ctx)
{
    (void)srv;
    (void)ctx;
    weft_stream_on_data(s, wv_sink, NULL);
}

START_TEST(writev_send_errors_fail_the_stream_and_eagain_queues)
{
    wv_log[0] = wv_got[0] = '\0';
    int err = _i == 0 ? EPIPE : EAGAIN;
    int port;
    weft_server *srv = tu_server(wv_conn, NULL, &port);
    weft_stream *c;
    ck_assert_int_eq(weft_create_connection(tu_loop, port, "127.0.0.1", &c),
                     0);
    weft_stream_on_connect(c, wv_try, (void *)(intptr_t)err);
    weft_stream_on_error(c, wv_error, NULL);
    weft_stream_on_close(c, wv_close, srv);
    tu_run(5000);
    ck_assert_int_eq(fault_injected(FAULT_SEND), 1);
    if (err == EPIPE) {
        ck_assert_str_eq(wv_log, "writev:0:0,error:EPIPE:write EPIPE,"
                                 "close:1");
        ck_assert_str_eq(wv_got, "");
    } else {
        ck_assert_str_eq(wv_log, "writev:0:8,close:0");
        ck_assert_str_eq(wv_got, "headbody");
    }
}
END_TEST

/* ---- listen-time faults come back from listen() ----------------------- */

START_TEST(listen_returns_socket_bind_and_epoll_errors)
{
    weft_server *srv = weft_create_server(tu_loop, NULL, NULL);
    fault_arm(FAULT_SOCKET, 1, 1, EMFILE);
    ck_assert_int_eq(weft_server_listen(srv, 0, "127.0.0.1", NULL, NULL),
                     WEFT_EMFILE);
    fault_arm(FAULT_EPOLL_CTL, 1, 1, ENOMEM);
    ck_assert_int_eq(weft_server_listen(srv, 0, "127.0.0.1", NULL, NULL),
                     WEFT_ENOMEM);
    /* SO_REUSEADDR failing is not fatal. */
    fault_arm(FAULT_SETSOCKOPT, 1, 1, ENOMEM);
    ck_assert_int_eq(weft_server_listen(srv, 0, "127.0.0.1", NULL, NULL), 0);
    fault_disarm_all();
    weft_server_close(srv);
    tu_run(2000);
}
END_TEST

/* ---- allocation failures ---------------------------------------------- */

/*
 * The N-th allocation weft makes after client A is set up fails, for
 * every N up to past the last allocation of the exchange. Whatever
 * fails (the accepted stream, a listener slot, an error message, a queue
 * chunk, a lookup request), the result is an ENOMEM 'error' or a dropped
 * connection: never a crash, a leak, a hang or a stuck loop.
 */
/* Steps 1..8 on a healthy exchange; 9..16 again with the client's first
 * send failing (EPIPE), so that the error path's own allocations (the
 * stream's side structure, the error message) fail too. */
#define ALLOC_STEPS 16

static void alloc_conn(weft_server *srv, weft_stream *s, void *ctx)
{
    (void)srv;
    (void)ctx;
    track(s);
    /* A listener that cannot be added is the caller's to handle: here
     * the connection is dropped. */
    if (weft_stream_on_data(s, echo_data, NULL) < 0 ||
        weft_stream_on_end(s, echo_end, NULL) < 0 ||
        weft_stream_on_error(s, on_error, NULL) < 0 ||
        weft_stream_on_close(s, on_close, NULL) < 0) {
        sc.closes++; /* its close is not observed */
        weft_stream_destroy(s);
    }
}

static void arm_alloc_fault(weft_timer *t, void *ctx)
{
    (void)t;
    weft__alloc_fail_at = *(long *)ctx;
}

static const fault_case alloc_case = {FAULT_NCALLS, ENOMEM, WEFT_ENOMEM,
                                      E_DROPPED, "127.0.0.1"};
static const fault_case alloc_epipe_case = {FAULT_NCALLS, EPIPE, WEFT_EPIPE,
                                            E_DROPPED, "127.0.0.1"};

START_TEST(each_failed_allocation_is_enomem_or_a_drop_and_the_loop_serves_on)
{
    memset(&sc, 0, sizeof(sc));
    nps = 0;
    sc.fc = _i >= 8 ? &alloc_epipe_case : &alloc_case;
    sc.srv = tu_server(alloc_conn, NULL, &sc.port);
    weft_server_on_error(sc.srv, on_server_error, NULL);
    client("127.0.0.1", sc.a_got, a_close);
    weft__alloc_failed = 0;
    /* Armed from the loop's first timer phase, so that the test's own
     * deadline timer (made by tu_run) is allocated first. */
    static long step;
    step = _i % 8 + 1;
    if (_i >= 8)
        fault_arm(FAULT_SEND, 1, 1, EPIPE);
    weft_set_timeout(tu_loop, 0, arm_alloc_fault, &step);
    tu_run(10000);
    long failed = weft__alloc_failed;
    weft__alloc_fail_at = 0;
    ck_assert_msg(sc.b_done && sc.b_len == 4 &&
                      memcmp(sc.b_got, "ping", 4) == 0,
                  "allocation %d: the loop stopped serving", _i + 1);
    ck_assert_msg(sc.unexpected_errors == 0, "allocation %d: unexpected errors",
                  _i + 1);
    ck_assert_int_eq(sc.closes, sc.streams);
    /* Past the last allocation nothing fails and A completes. */
    if (failed == 0 && _i < 8) {
        fprintf(stderr, "alloc step %d: past the exchange's allocations\n",
                _i + 1);
        ck_assert(sc.a_clean);
        ck_assert_uint_eq(sc.a_len, 4);
    }
}
END_TEST

int main(void)
{
    Suite *s = suite_create("fault");
    TCase *tc = tu_tcase("fault");
    tcase_add_loop_test(
        tc, each_injected_syscall_error_is_reported_and_the_loop_serves_on, 0,
        NCASES);
    tcase_add_loop_test(
        tc, each_failed_allocation_is_enomem_or_a_drop_and_the_loop_serves_on,
        0, ALLOC_STEPS);
    tcase_add_test(tc, option_setters_return_setsockopt_errors);
    tcase_add_loop_test(tc, writev_send_errors_fail_the_stream_and_eagain_queues,
                        0, 2);
    tcase_add_test(tc, listen_returns_socket_bind_and_epoll_errors);
    suite_add_tcase(s, tc);
    return tu_run_suite(s);
}
