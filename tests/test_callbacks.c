/*
 * test_callbacks.c - every callback closes its own handle.
 *
 * A generated table: for every event of every object, taken from weft.h's
 * own event tables (WEFT_SERVER_EVENT_MAP, WEFT_STREAM_EVENT_MAP), and
 * for each way this file knows to make that event happen, one row that
 * destroys the emitter from inside that event's listener and one that
 * ends it (stream: destroy() / end(); server: close() and destroy of its
 * connection / close() alone). An event added to weft.h without a way to
 * trigger it here makes its row fail ('secure' is skipped until TLS
 * streams are covered by this file).
 *
 * Each row runs as its own forked test (tcase_add_loop_test), under ASan:
 * a handle touched after it was freed fails there. Every object records
 * its events and fails on anything after its 'close'; at the end 'close'
 * must have come exactly once and last, a second listener of the acting
 * event must still have run (the emit goes on, as Node's), and no handle
 * may be left for weft_loop_close() to free.
 */
#include "internal.h"
#include "testutil.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* ---- the events, from weft.h's tables --------------------------------- */

enum srv_event {
#define X_(ev, type) SE_##ev,
    WEFT_SERVER_EVENT_MAP(X_)
#undef X_
        SE_COUNT
};
static const char *const srv_event_name[] = {
#define X_(ev, type) #ev,
    WEFT_SERVER_EVENT_MAP(X_)
#undef X_
};

enum str_event {
#define X_(ev, type) TE_##ev,
    WEFT_STREAM_EVENT_MAP(X_)
#undef X_
        TE_COUNT
};
static const char *const str_event_name[] = {
#define X_(ev, type) #ev,
    WEFT_STREAM_EVENT_MAP(X_)
#undef X_
};

enum obj { OBJ_SERVER, OBJ_CLIENT, OBJ_ACCEPTED, OBJ_TIMER };
static const char *const obj_name[] = {"server", "client", "accepted", "timer"};
enum action { ACT_DESTROY, ACT_END };
static const char *const action_name[] = {"destroy", "end"};

/* ---- how to make each event happen ------------------------------------ */

enum {
    PEER_WRITES = 1 << 0,          /* the peer writes 64 bytes on 'connect' */
    PEER_WRITES_BIG = 1 << 1,      /* ... 1 MiB: several 'data' events */
    PEER_ENDS = 1 << 2,            /* the peer end()s on 'connect' */
    HALF_OPEN = 1 << 3,            /* the target has allowHalfOpen */
    TARGET_TIMEOUT = 1 << 4,       /* the target calls setTimeout(20) */
    TARGET_WRITES_BIG = 1 << 5,    /* the target writes 4 MiB on 'connect' */
    REFUSED = 1 << 6,              /* the client connects to a closed port */
    RAW_RESET = 1 << 7,            /* the peer is a raw socket that resets
                                      (SO_LINGER 0) in the target's 'connect' */
    RESET_THEN_WRITE = 1 << 8,     /* ... and the target writes 1 MiB after */
    NAME_IN_USE = 1 << 9,          /* listen on "localhost", port in use */
    RACING_CLIENT = 1 << 10,       /* a client connects before 'listening' */
    CLIENT_TALKS = 1 << 11,        /* the client writes "hello" and ends */
    HARNESS_CLOSES_IDLE = 1 << 12, /* the server is closed in 'listening' */
    INTERVAL = 1 << 13,            /* timer: an interval, not a one-shot */
};

typedef struct scenario {
    int obj;
    const char *event;
    const char *variant;
    unsigned flags;
} scenario;

static const scenario scenarios[] = {
    {OBJ_SERVER, "connection", "client-talks", CLIENT_TALKS},
    {OBJ_SERVER, "listening", "idle", 0},
    {OBJ_SERVER, "listening", "client-racing", RACING_CLIENT},
    {OBJ_SERVER, "close", "after-last-connection", CLIENT_TALKS},
    {OBJ_SERVER, "close", "idle", HARNESS_CLOSES_IDLE},
    {OBJ_SERVER, "error", "listen-name-in-use", NAME_IN_USE},
/* clang-format off */
#define BOTH_SIDES(ev, variant, flags)                                         \
    {OBJ_CLIENT, ev, variant, flags}, {OBJ_ACCEPTED, ev, variant, flags}
    /* clang-format on */
    BOTH_SIDES("connect", "peer-talks", PEER_WRITES | PEER_ENDS),
    BOTH_SIDES("data", "with-fin", PEER_WRITES | PEER_ENDS),
    BOTH_SIDES("data", "many-chunks", PEER_WRITES_BIG | PEER_ENDS),
    BOTH_SIDES("data", "half-open", PEER_WRITES | PEER_ENDS | HALF_OPEN),
    BOTH_SIDES("end", "auto-end", PEER_ENDS),
    BOTH_SIDES("end", "half-open", PEER_ENDS | HALF_OPEN),
    BOTH_SIDES("timeout", "idle", TARGET_TIMEOUT),
    BOTH_SIDES("drain", "big-write", TARGET_WRITES_BIG),
    {OBJ_CLIENT, "error", "refused", REFUSED},
    BOTH_SIDES("error", "peer-reset", RAW_RESET),
    BOTH_SIDES("error", "write-to-reset-peer", RAW_RESET | RESET_THEN_WRITE),
    BOTH_SIDES("close", "after-end", PEER_ENDS),
    BOTH_SIDES("close", "after-error", RAW_RESET),
#undef BOTH_SIDES
    {OBJ_TIMER, "fire", "once", 0},
    {OBJ_TIMER, "fire", "interval", INTERVAL},
};
#define N_SCENARIOS (sizeof(scenarios) / sizeof(scenarios[0]))

/* Events this file does not trigger yet, with the reason. */
static const char *skipped(int obj, const char *event)
{
    if (obj != OBJ_SERVER && strcmp(event, "secure") == 0)
        return "'secure' needs TLS streams, not covered by this file yet";
    return NULL;
}

/* ---- the generated rows ------------------------------------------------ */

typedef struct row {
    int obj;
    const char *event;
    int action;
    const scenario *sc; /* NULL: uncovered (fails) or skipped */
    char name[96];
} row;

static row rows[256];
static int n_rows;

static void add_row(int obj, const char *event, int action, const scenario *sc)
{
    if (n_rows == (int)(sizeof(rows) / sizeof(rows[0]))) {
        fprintf(stderr, "test_callbacks: rows[] is too small\n");
        exit(2);
    }
    row *r = &rows[n_rows++];
    r->obj = obj;
    r->event = event;
    r->action = action;
    r->sc = sc;
    snprintf(r->name, sizeof(r->name), "%s:%s:%s:%s", obj_name[obj], event,
             action_name[action], sc ? sc->variant : "-");
}

static void add_rows_for(int obj, const char *event, int n_actions)
{
    bool found = false;
    for (size_t i = 0; i < N_SCENARIOS; i++) {
        const scenario *sc = &scenarios[i];
        if (sc->obj != obj || strcmp(sc->event, event) != 0)
            continue;
        found = true;
        for (int a = 0; a < n_actions; a++)
            add_row(obj, event, a, sc);
    }
    if (!found) /* skipped, or uncovered: the row says which */
        add_row(obj, event, ACT_DESTROY, NULL);
}

static void make_rows(void)
{
    for (int e = 0; e < SE_COUNT; e++)
        add_rows_for(OBJ_SERVER, srv_event_name[e], 2);
    for (int e = 0; e < TE_COUNT; e++) {
        add_rows_for(OBJ_CLIENT, str_event_name[e], 2);
        add_rows_for(OBJ_ACCEPTED, str_event_name[e], 2);
    }
    /* A timer has one event and one way to be done with it. */
    add_rows_for(OBJ_TIMER, "fire", 1);
}

/* ---- recorders --------------------------------------------------------- */

typedef struct rec {
    const char *name;
    void *h;
    tu_slog log;
    unsigned closes, ends, afters;
    bool closed;
    bool acted;
    size_t act_at; /* log length when the acting listener ran */
    unsigned close_seq;
} rec;

static struct {
    const row *row;
    rec srv, cli, acc, tmr;
    rec *target;
    weft_server *server, *occupier;
    int raw_peer;     /* raw client of the server, or accepted raw socket */
    int raw_listener; /* raw server for a client target */
    int raw_v6;       /* holds [::1]:port for NAME_IN_USE */
    unsigned seq;
    bool writable_at_act;
} T;

static bool has_flag(unsigned f)
{
    return (T.row->sc->flags & f) != 0;
}

static void alive(rec *r, const char *event)
{
    ck_assert_msg(!r->closed, "%s: %s: '%s' after 'close' (log %s)",
                  T.row->name, r->name, event, r->log.buf);
}

static void logev(rec *r, const char *fmt, const char *arg)
{
    tu_slog_add(&r->log, fmt, arg);
    T.seq++;
}

/* ---- acting ------------------------------------------------------------ */

static bool is_target(rec *r, const char *event)
{
    return r == T.target && strcmp(T.row->event, event) == 0;
}

static void act_stream(rec *r, weft_stream *s)
{
    if (r->acted)
        return;
    r->acted = true;
    r->act_at = r->log.len;
    weft_ready_state st = weft_stream_ready_state(s);
    T.writable_at_act = st == WEFT_OPEN || st == WEFT_WRITE_ONLY;
    if (T.row->action == ACT_DESTROY) {
        weft_stream_destroy(s);
        ck_assert_int_eq(weft_stream_ready_state(s), WEFT_CLOSED);
        ck_assert_int_lt(weft_stream_write(s, "x", 1), 0);
        weft_stream_destroy(s); /* a second one is a no-op */
    } else {
        ck_assert_int_eq(weft_stream_end(s, NULL, 0), 0);
        ck_assert_int_eq(weft_stream_end(s, NULL, 0), 0); /* no-op */
        int w = weft_stream_write(s, "x", 1);
        if (T.writable_at_act)
            ck_assert_int_eq(w, WEFT_EWRITEAFTEREND);
        else
            ck_assert_int_lt(w, 0);
    }
    /* Nothing is emitted from inside the call. */
    ck_assert_uint_eq(r->log.len, r->act_at);
}

static void act_server(rec *r, weft_server *srv)
{
    if (r->acted)
        return;
    r->acted = true;
    r->act_at = r->log.len;
    bool running = strcmp(T.row->event, "close") != 0 &&
                   strcmp(T.row->event, "error") != 0;
    ck_assert_int_eq(weft_server_close(srv), running ? 0 : WEFT_ENOTRUNNING);
    ck_assert_int_eq(weft_server_close(srv), WEFT_ENOTRUNNING);
    if (T.row->action == ACT_DESTROY && T.acc.h != NULL && !T.acc.closed)
        weft_stream_destroy(T.acc.h);
    ck_assert_uint_eq(r->log.len, r->act_at);
}

/* ---- raw peers ---------------------------------------------------------- */

static struct sockaddr_in loopback(int port)
{
    struct sockaddr_in sin = {.sin_family = AF_INET,
                              .sin_port = htons((uint16_t)port)};
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    return sin;
}

static void reset_raw_peer(void)
{
    if (T.raw_listener >= 0) {
        /* The client's connection is established: take it and reset. */
        T.raw_peer = accept(T.raw_listener, NULL, NULL);
        ck_assert_int_ge(T.raw_peer, 0);
        close(T.raw_listener);
        T.raw_listener = -1;
    }
    ck_assert_int_ge(T.raw_peer, 0);
    struct linger lg = {1, 0};
    ck_assert_int_eq(
        setsockopt(T.raw_peer, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg)), 0);
    close(T.raw_peer);
    T.raw_peer = -1;
}

/* ---- stream listeners: log, run the scenario's script, act ------------- */

#define BIG_PEER   (1024 * 1024)
#define BIG_TARGET (4 * 1024 * 1024)

static void write_zeros(weft_stream *s, size_t n, bool must_queue)
{
    char *buf = calloc(1, n);
    ck_assert_ptr_nonnull(buf);
    int r = weft_stream_write(s, buf, n);
    if (must_queue) /* or there would be no 'drain' */
        ck_assert_int_eq(r, 0);
    free(buf);
}

static void s_connect(weft_stream *s, void *ctx)
{
    rec *r = ctx;
    alive(r, "connect");
    logev(r, "%s", "connect");
    if (r == T.target) {
        if (has_flag(TARGET_TIMEOUT))
            ck_assert_int_eq(weft_stream_set_timeout(s, 20), 0);
        if (has_flag(TARGET_WRITES_BIG))
            write_zeros(s, BIG_TARGET, true);
        if (has_flag(RAW_RESET))
            reset_raw_peer();
        if (has_flag(RESET_THEN_WRITE))
            write_zeros(s, BIG_PEER, false);
    } else if (T.target != &T.srv) {
        if (has_flag(PEER_WRITES))
            ck_assert_int_ge(weft_stream_write(s, "0123456789abcdef", 16), 0);
        if (has_flag(PEER_WRITES_BIG))
            write_zeros(s, BIG_PEER, false);
        if (has_flag(PEER_ENDS))
            ck_assert_int_eq(weft_stream_end(s, NULL, 0), 0);
    } else if (r == &T.cli && has_flag(CLIENT_TALKS)) {
        ck_assert_int_eq(weft_stream_end_string(s, "hello", NULL), 0);
    }
}

static void s_data(weft_stream *s, const char *d, size_t n, void *ctx)
{
    (void)s;
    (void)d;
    (void)n;
    rec *r = ctx;
    alive(r, "data");
    /* Several chunks in a row log once. */
    if (r->log.len < 4 || strcmp(r->log.buf + r->log.len - 4, "data") != 0)
        logev(r, "%s", "data");
}

static void s_end(weft_stream *s, void *ctx)
{
    (void)s;
    rec *r = ctx;
    alive(r, "end");
    logev(r, "%s", "end");
    r->ends++;
}

static void s_timeout(weft_stream *s, void *ctx)
{
    (void)s;
    rec *r = ctx;
    alive(r, "timeout");
    logev(r, "%s", "timeout");
}

static void s_drain(weft_stream *s, void *ctx)
{
    (void)s;
    rec *r = ctx;
    alive(r, "drain");
    logev(r, "%s", "drain");
}

static void s_secure(weft_stream *s, void *ctx)
{
    (void)s;
    rec *r = ctx;
    alive(r, "secure");
    logev(r, "%s", "secure");
}

static void s_error(weft_stream *s, int err, const char *msg, void *ctx)
{
    (void)s;
    rec *r = ctx;
    alive(r, "error");
    ck_assert_ptr_nonnull(msg);
    logev(r, "error:%s", weft_err_name(err));
}

static void s_close(weft_stream *s, bool had_error, void *ctx)
{
    rec *r = ctx;
    alive(r, "close");
    logev(r, "close:%s", had_error ? "1" : "0");
    ck_assert_int_eq(weft_stream_ready_state(s), WEFT_CLOSED);
    r->closes++;
    r->closed = true;
    r->close_seq = T.seq;
}

/* The acting listener of each event, and the one after it. One
 * function per event type; the X-macro below checks each against the
 * callback type weft.h declares for that event. */
#define ACTOR(ev, params)                                                      \
    static void act_##ev params                                                \
    {                                                                          \
        rec *r = ctx;                                                          \
        if (is_target(r, #ev))                                                 \
            act_stream(r, s);                                                  \
    }                                                                          \
    static void after_##ev params                                              \
    {                                                                          \
        rec *r = ctx;                                                          \
        /* The handle is still valid: the emit that destroyed it goes on. */   \
        (void)weft_stream_ready_state(s);                                      \
        (void)weft_stream_bytes_read(s);                                       \
        if (is_target(r, #ev) && r->acted && r->afters == 0)                   \
            r->afters++;                                                       \
    }
ACTOR(connect, (weft_stream * s, void *ctx))
ACTOR(data, (weft_stream * s, const char *d, size_t n, void *ctx))
ACTOR(end, (weft_stream * s, void *ctx))
ACTOR(timeout, (weft_stream * s, void *ctx))
ACTOR(drain, (weft_stream * s, void *ctx))
ACTOR(secure, (weft_stream * s, void *ctx))
ACTOR(error, (weft_stream * s, int err, const char *msg, void *ctx))
ACTOR(close, (weft_stream * s, bool had_error, void *ctx))
#undef ACTOR

static void attach_stream(rec *r, weft_stream *s, const char *name)
{
    r->name = name;
    r->h = s;
    /* Generated from weft.h's table: logger, actor, the one after. */
#define X_(ev, type)                                                           \
    {                                                                          \
        type log_ = s_##ev, act_ = act_##ev, after_ = after_##ev;              \
        ck_assert_int_eq(weft_stream_on_##ev(s, log_, r), 0);                  \
        ck_assert_int_eq(weft_stream_on_##ev(s, act_, r), 0);                  \
        ck_assert_int_eq(weft_stream_on_##ev(s, after_, r), 0);                \
    }
    WEFT_STREAM_EVENT_MAP(X_)
#undef X_
    if (r == T.target && has_flag(HALF_OPEN))
        weft_stream_set_allow_half_open(s, true);
}

/* ---- server listeners -------------------------------------------------- */

static void v_connection(weft_server *srv, weft_stream *s, void *ctx)
{
    rec *r = ctx;
    alive(r, "connection");
    logev(r, "%s", "connection");
    ck_assert_ptr_null(T.acc.h); /* one connection per row */
    attach_stream(&T.acc, s, "accepted");
    /* Unless the server itself is the target of this event, the harness
     * is done with it once its one connection is in. */
    if (!(T.target == &T.srv && strcmp(T.row->event, "connection") == 0))
        ck_assert_int_eq(weft_server_close(srv), 0);
}

static void v_listening(weft_server *srv, void *ctx)
{
    rec *r = ctx;
    alive(r, "listening");
    logev(r, "%s", "listening");
    if (T.target == &T.srv && has_flag(HARNESS_CLOSES_IDLE))
        ck_assert_int_eq(weft_server_close(srv), 0);
}

static void v_close(weft_server *srv, void *ctx)
{
    (void)srv;
    rec *r = ctx;
    alive(r, "close");
    logev(r, "%s", "close");
    r->closes++;
    r->closed = true;
    r->close_seq = T.seq;
}

static void v_error(weft_server *srv, int err, const char *msg, void *ctx)
{
    (void)srv;
    rec *r = ctx;
    alive(r, "error");
    ck_assert_ptr_nonnull(msg);
    logev(r, "error:%s", weft_err_name(err));
    if (T.occupier != NULL) {
        ck_assert_int_eq(weft_server_close(T.occupier), 0);
        T.occupier = NULL;
    }
}

#define SACTOR(ev, params)                                                     \
    static void sact_##ev params                                               \
    {                                                                          \
        rec *r = ctx;                                                          \
        if (is_target(r, #ev))                                                 \
            act_server(r, srv);                                                \
    }                                                                          \
    static void safter_##ev params                                             \
    {                                                                          \
        rec *r = ctx;                                                          \
        (void)weft_server_connections(srv);                                    \
        if (is_target(r, #ev) && r->acted && r->afters == 0)                   \
            r->afters++;                                                       \
    }
SACTOR(connection, (weft_server * srv, weft_stream *s, void *ctx))
SACTOR(listening, (weft_server * srv, void *ctx))
SACTOR(close, (weft_server * srv, void *ctx))
SACTOR(error, (weft_server * srv, int err, const char *msg, void *ctx))
#undef SACTOR

static void attach_server(rec *r, weft_server *srv)
{
    r->name = "server";
    r->h = srv;
#define X_(ev, type)                                                           \
    {                                                                          \
        type log_ = v_##ev, act_ = sact_##ev, after_ = safter_##ev;            \
        ck_assert_int_eq(weft_server_on_##ev(srv, log_, r), 0);                \
        ck_assert_int_eq(weft_server_on_##ev(srv, act_, r), 0);                \
        ck_assert_int_eq(weft_server_on_##ev(srv, after_, r), 0);              \
    }
    WEFT_SERVER_EVENT_MAP(X_)
#undef X_
}

/* ---- timers ------------------------------------------------------------ */

static void t_fire(weft_timer *t, void *ctx)
{
    rec *r = ctx;
    alive(r, "fire");
    logev(r, "%s", "fire");
    if (!r->acted) {
        r->acted = true;
        weft_clear_timer(t);
        weft_clear_timer(t); /* a second clear is ignored */
        r->closed = true;    /* it must never run again */
        r->closes++;
    }
}

static void run_timer_row(void)
{
    T.tmr.name = "timer";
    weft_timer *t = has_flag(INTERVAL)
                        ? weft_set_interval(tu_loop, 1, t_fire, &T.tmr)
                        : weft_set_timeout(tu_loop, 1, t_fire, &T.tmr);
    ck_assert_ptr_nonnull(t);
    /* Something else keeps the loop turning a little longer, so an
     * interval that was not really cleared would fire again. */
    weft_timer *other = weft_set_timeout(tu_loop, 30, t_fire, &T.cli);
    ck_assert_ptr_nonnull(other);
    T.cli.name = "other timer";
    tu_run(5000);
    ck_assert_str_eq(T.tmr.log.buf, "fire");
    ck_assert_str_eq(T.cli.log.buf, "fire");
}

/* ---- the run ------------------------------------------------------------ */

static int closed_port(void)
{
    weft_server *srv = weft_create_server(tu_loop, NULL, NULL);
    int port = tu_listen(srv, "127.0.0.1");
    ck_assert_int_eq(weft_server_close(srv), 0);
    return port;
}

static int raw_listener(void)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    ck_assert_int_ge(fd, 0);
    struct sockaddr_in sin = loopback(0);
    ck_assert_int_eq(bind(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
    ck_assert_int_eq(listen(fd, 4), 0);
    socklen_t len = sizeof(sin);
    ck_assert_int_eq(getsockname(fd, (struct sockaddr *)&sin, &len), 0);
    T.raw_listener = fd;
    return ntohs(sin.sin_port);
}

/* Holds [::1]:port too, in case "localhost" resolves there first. */
static void occupy_v6(int port)
{
    int fd = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return;
    struct sockaddr_in6 sin6 = {.sin6_family = AF_INET6,
                                .sin6_port = htons((uint16_t)port)};
    sin6.sin6_addr = in6addr_loopback;
    if (bind(fd, (struct sockaddr *)&sin6, sizeof(sin6)) < 0 ||
        listen(fd, 1) < 0) {
        close(fd);
        return;
    }
    T.raw_v6 = fd;
}

static void new_client(int port)
{
    weft_stream *c;
    ck_assert_int_eq(weft_create_connection(tu_loop, port, "127.0.0.1", &c), 0);
    attach_stream(&T.cli, c, "client");
}

static void run_row(const row *rw)
{
    memset(&T, 0, sizeof(T));
    T.row = rw;
    T.raw_peer = T.raw_listener = T.raw_v6 = -1;
    const char *why = skipped(rw->obj, rw->event);
    if (rw->sc == NULL && why != NULL) {
        printf("callbacks: %s SKIPPED: %s\n", rw->name, why);
        fflush(stdout);
        return;
    }
    ck_assert_msg(rw->sc != NULL,
                  "%s: no scenario makes %s '%s' happen; add one to "
                  "scenarios[]",
                  rw->name, obj_name[rw->obj], rw->event);
    if (rw->obj == OBJ_TIMER) {
        run_timer_row();
        ck_assert(weft__q_empty(&tu_loop->handles));
        return;
    }
    T.target = rw->obj == OBJ_SERVER   ? &T.srv
               : rw->obj == OBJ_CLIENT ? &T.cli
                                       : &T.acc;

    if (has_flag(REFUSED)) {
        new_client(closed_port());
    } else if (has_flag(RAW_RESET) && rw->obj == OBJ_CLIENT) {
        new_client(raw_listener());
    } else if (has_flag(NAME_IN_USE)) {
        int port;
        T.occupier = tu_server(NULL, NULL, &port);
        occupy_v6(port);
        T.server = weft_create_server(tu_loop, NULL, NULL);
        ck_assert_ptr_nonnull(T.server);
        attach_server(&T.srv, T.server);
        ck_assert_int_eq(
            weft_server_listen(T.server, port, "localhost", NULL, NULL), 0);
    } else {
        T.server = weft_create_server(tu_loop, NULL, NULL);
        ck_assert_ptr_nonnull(T.server);
        attach_server(&T.srv, T.server);
        int port = tu_listen(T.server, "127.0.0.1");
        bool wants_client = rw->obj != OBJ_SERVER || has_flag(CLIENT_TALKS) ||
                            has_flag(RACING_CLIENT);
        if (has_flag(RAW_RESET)) {
            /* Established in the backlog before the loop runs. */
            T.raw_peer = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
            struct sockaddr_in sin = loopback(port);
            ck_assert_int_eq(
                connect(T.raw_peer, (struct sockaddr *)&sin, sizeof(sin)), 0);
        } else if (wants_client) {
            new_client(port);
        }
    }
    tu_run(10000);
    if (T.raw_v6 >= 0)
        close(T.raw_v6);
    ck_assert_int_eq(T.raw_peer, -1);
    ck_assert_int_eq(T.raw_listener, -1);

    rec *tg = T.target;
    ck_assert_msg(tg->acted, "%s: the %s never emitted '%s' (log %s)", rw->name,
                  tg->name, rw->event, tg->log.buf);
    ck_assert_msg(tg->afters == 1,
                  "%s: the listener after the acting one did not run",
                  rw->name);
    const char *rest = tg->log.buf + tg->act_at;
    if (*rest == ',')
        rest++;

    if (rw->obj == OBJ_SERVER) {
        bool errored = strcmp(rw->event, "error") == 0;
        /* A server whose listen failed is released with no event. */
        ck_assert_msg(tg->closes == (errored ? 0u : 1u),
                      "%s: the server closed %u times (log %s)", rw->name,
                      tg->closes, tg->log.buf);
        const char *want =
            errored || strcmp(rw->event, "close") == 0 ? "" : "close";
        ck_assert_msg(strcmp(rest, want) == 0,
                      "%s: after acting the server emitted '%s', want '%s'",
                      rw->name, rest, want);
        if (strcmp(rw->event, "connection") == 0) {
            ck_assert_msg(T.acc.closes == 1, "%s: accepted closed %u times",
                          rw->name, T.acc.closes);
            /* The server's 'close' waits for its last connection's. */
            ck_assert_msg(T.srv.close_seq > T.acc.close_seq,
                          "%s: the server closed before its connection",
                          rw->name);
            /* Destroyed inside 'connection': not even 'connect'. */
            if (rw->action == ACT_DESTROY)
                ck_assert_msg(strcmp(T.acc.log.buf, "close:0") == 0,
                              "%s: accepted log %s", rw->name, T.acc.log.buf);
        }
    } else if (rw->action == ACT_DESTROY) {
        /* After destroy() only 'close' comes: true only if the acting
         * event was the 'error' already on its way. */
        const char *want = strcmp(rw->event, "close") == 0   ? ""
                           : strcmp(rw->event, "error") == 0 ? "close:1"
                                                             : "close:0";
        ck_assert_msg(strcmp(rest, want) == 0,
                      "%s: after destroy() the %s emitted '%s', want '%s' "
                      "(log %s)",
                      rw->name, tg->name, rest, want, tg->log.buf);
    } else {
        /* After end(): no 'drain', and the stream still closes last. */
        ck_assert_msg(strstr(rest, "drain") == NULL,
                      "%s: 'drain' after end() (log %s)", rw->name,
                      tg->log.buf);
        if (strcmp(rw->event, "close") != 0) {
            size_t n = strlen(rest);
            const char *want =
                strcmp(rw->event, "error") == 0 ? "close:1" : "close:0";
            ck_assert_msg(n >= 7 && strcmp(rest + n - 7, want) == 0,
                          "%s: after end() the %s emitted '%s' (log %s)",
                          rw->name, tg->name, rest, tg->log.buf);
        }
    }
    /* Every stream that existed closed exactly once, 'close' last. */
    rec *all[] = {&T.cli, &T.acc};
    for (size_t i = 0; i < 2; i++) {
        rec *r = all[i];
        if (r->h == NULL)
            continue;
        ck_assert_msg(r->closes == 1, "%s: %s closed %u times (log %s)",
                      rw->name, r->name, r->closes, r->log.buf);
        ck_assert_msg(r->ends <= 1, "%s: %s: 'end' %u times", rw->name, r->name,
                      r->ends);
        const char *last = strrchr(r->log.buf, ',');
        last = last ? last + 1 : r->log.buf;
        ck_assert_msg(strncmp(last, "close:", 6) == 0, "%s: %s log %s",
                      rw->name, r->name, r->log.buf);
    }
    /* Every handle went through its close phase. */
    ck_assert_msg(weft__q_empty(&tu_loop->handles),
                  "%s: a handle was left for weft_loop_close()", rw->name);
    if (getenv("WEFT_CALLBACKS_VERBOSE") != NULL) {
        printf("%-42s server[%s] client[%s] accepted[%s]\n", rw->name,
               T.srv.log.buf, T.cli.log.buf, T.acc.log.buf);
        fflush(stdout);
    }
}

START_TEST(callback_closes_its_own_handle)
{
    run_row(&rows[_i]);
}
END_TEST

int main(void)
{
    make_rows();
    if (getenv("WEFT_CALLBACKS_LIST") != NULL)
        for (int i = 0; i < n_rows; i++)
            printf("%3d %s\n", i, rows[i].name);
    Suite *s = suite_create("callbacks");
    TCase *tc = tu_tcase("callbacks");
    tcase_add_loop_test(tc, callback_closes_its_own_handle, 0, n_rows);
    suite_add_tcase(s, tc);
    return tu_run_suite(s);
}
