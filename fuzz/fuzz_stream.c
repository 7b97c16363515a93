/*
 * fuzz_stream.c - the stream's read path, write queue and state machine
 * driven by a program of peer actions and API calls.
 *
 * The input is a sequence of one-byte opcodes with their arguments. One
 * end of a socketpair is a weft stream (weft_stream_open); the harness
 * plays the peer on the other end with plain syscalls: bytes cut at
 * random boundaries, half-close, a close with unread data (the stream
 * then reads ECONNRESET), and it calls the API (write, writev, cork,
 * uncork, pause, resume, setEncoding, setTimeout, end, destroy), also
 * from inside 'data', 'end' and 'drain' listeners. Between actions the
 * loop runs one turn, never waiting.
 *
 * Invariants checked (abort() on a breach, which libFuzzer reports):
 *   - 'close' comes exactly once and nothing comes after it;
 *   - 'error' only as the event right before 'close', and then
 *     'close'(true);
 *   - no 'data' or 'end' while paused;
 *   - raw 'data' is exactly the next bytes the peer sent (a prefix of
 *     the peer's stream, in order);
 *   - what the peer receives is a prefix of what write() accepted;
 *   - return codes match the state: after end(), write() is
 *     WEFT_EWRITEAFTEREND; after destroy() or close, WEFT_ESTATE;
 *   - the loop ends, within a bounded number of turns, once the peer is
 *     gone and the stream destroyed; no fd and (ASan) no memory leaks.
 */
#include "harness.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

enum inside { IN_NONE, IN_PAUSE, IN_END, IN_DESTROY, IN_WRITE, IN_RESUME };

typedef struct state {
    weft_stream *s;
    int peer; /* -1 once the peer closed */
    bool peer_shut;
    uint64_t peer_sent, weft_got;     /* peer -> weft */
    uint64_t weft_accepted, peer_got; /* weft -> peer */
    bool paused, ended, destroyed, closed, errored, got_end;
    bool encoded;  /* setEncoding used: 'data' is text, not checked */
    bool half_open;
    int last_event; /* 'e' after 'error', to check 'close' follows */
    enum inside in_data, in_end, in_drain;
} state;

static state st;

static void weft_write(state *x, size_t n);

static void act_inside(state *x, enum inside what)
{
    switch (what) {
    case IN_NONE:
        break;
    case IN_PAUSE:
        weft_stream_pause(x->s);
        x->paused = true;
        break;
    case IN_RESUME:
        weft_stream_resume(x->s);
        x->paused = false;
        break;
    case IN_END:
        if (!x->destroyed && !x->closed) {
            int r = weft_stream_end(x->s, NULL, 0);
            CHECK(r == 0 || r == WEFT_ESTATE);
            if (r == 0)
                x->ended = true;
        }
        break;
    case IN_DESTROY:
        weft_stream_destroy(x->s);
        x->destroyed = true;
        break;
    case IN_WRITE:
        weft_write(x, 100);
        break;
    }
}

static void on_data(weft_stream *s, const char *d, size_t n, void *ctx)
{
    state *x = ctx;
    CHECK(s == x->s && !x->closed && x->last_event != 'e');
    CHECK(!x->paused);
    CHECK(n > 0);
    CHECK(d[n] == '\0');
    if (!x->encoded) {
        for (size_t i = 0; i < n; i++)
            CHECK((uint8_t)d[i] == peer_byte(x->weft_got + i));
        x->weft_got += n;
        CHECK(x->weft_got <= x->peer_sent);
    }
    act_inside(x, x->in_data);
}

static void on_end(weft_stream *s, void *ctx)
{
    state *x = ctx;
    CHECK(s == x->s && !x->closed && !x->got_end && !x->paused);
    if (!x->encoded)
        CHECK(x->weft_got == x->peer_sent); /* everything came first */
    x->got_end = true;
    act_inside(x, x->in_end);
}

static void on_drain(weft_stream *s, void *ctx)
{
    state *x = ctx;
    CHECK(s == x->s && !x->closed);
    act_inside(x, x->in_drain);
}

static void on_timeout(weft_stream *s, void *ctx)
{
    state *x = ctx;
    CHECK(s == x->s && !x->closed);
}

static void on_error(weft_stream *s, int err, const char *msg, void *ctx)
{
    state *x = ctx;
    CHECK(s == x->s && !x->closed && !x->errored);
    CHECK(err < 0 && msg != NULL);
    x->errored = true;
    x->last_event = 'e';
}

static void on_close(weft_stream *s, bool had_error, void *ctx)
{
    state *x = ctx;
    CHECK(s == x->s && !x->closed);
    CHECK(had_error == x->errored);
    x->closed = true;
}

/* write()'s result must match the state the harness knows. */
static void check_write_result(state *x, int r, size_t n)
{
    if (x->closed || x->destroyed) {
        /* As Node's writable: "ending" is checked before "destroyed". */
        CHECK(r == WEFT_ESTATE || (x->ended && r == WEFT_EWRITEAFTEREND));
    } else if (x->ended) {
        CHECK(r == WEFT_EWRITEAFTEREND || r == WEFT_ESTATE ||
              (n == 0 && r >= 0));
    } else if (r == WEFT_EWRITEAFTEREND) {
        /* Only weft's own end() after the peer's FIN (allowHalfOpen
         * off) can have ended it behind the harness's back. */
        CHECK(x->got_end && !x->half_open);
        x->ended = true;
    } else {
        CHECK(r == 0 || r == 1 || r == WEFT_ESTATE);
        if (r >= 0)
            x->weft_accepted += n;
    }
}

static void weft_write(state *x, size_t n)
{
    uint8_t buf[4096];
    if (n > sizeof(buf))
        n = sizeof(buf);
    for (size_t i = 0; i < n; i++)
        buf[i] = weft_byte(x->weft_accepted + i);
    bool was_ok = !x->closed && !x->destroyed && !x->ended;
    int r = weft_stream_write(x->s, buf, n);
    check_write_result(x, r, n);
    if (was_ok && r == WEFT_ESTATE) /* failed under us: 'error' pending */
        x->destroyed = true;
}

static void weft_writev(state *x, size_t n1, size_t n2)
{
    uint8_t buf[2048];
    n1 %= 1024;
    n2 %= 1024;
    for (size_t i = 0; i < n1 + n2; i++)
        buf[i] = weft_byte(x->weft_accepted + i);
    weft_buf b[2] = {{buf, n1}, {buf + n1, n2}};
    int r = weft_stream_writev(x->s, b, 2);
    check_write_result(x, r, n1 + n2);
}

/* The peer reads what is there and checks it against weft's stream. */
static void peer_read(state *x)
{
    if (x->peer < 0)
        return;
    uint8_t buf[65536];
    for (;;) {
        ssize_t r = recv(x->peer, buf, sizeof(buf), MSG_DONTWAIT);
        if (r <= 0)
            break;
        for (ssize_t i = 0; i < r; i++)
            CHECK(buf[i] == weft_byte(x->peer_got + (uint64_t)i));
        x->peer_got += (uint64_t)r;
        CHECK(x->peer_got <= x->weft_accepted);
    }
}

static void peer_write(state *x, size_t n)
{
    if (x->peer < 0 || x->peer_shut)
        return;
    uint8_t buf[8192];
    if (n > sizeof(buf))
        n = sizeof(buf);
    for (size_t i = 0; i < n; i++)
        buf[i] = peer_byte(x->peer_sent + i);
    ssize_t r = send(x->peer, buf, n, MSG_DONTWAIT | MSG_NOSIGNAL);
    if (r > 0)
        x->peer_sent += (uint64_t)r;
}

static const char *const encodings[] = {NULL,   "utf8",   "hex",
                                        "base64", "latin1", "ascii",
                                        "base64url", "bogus"};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int fds_at_start = fd_count();
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
        return 0;
    weft_set_unhandled_error_handler(unhandled_is_a_bug, NULL);
    weft_loop *loop = weft_loop_new();
    CHECK(loop != NULL);
    memset(&st, 0, sizeof(st));
    st.peer = sv[1];
    CHECK(weft_stream_open(loop, sv[0], &st.s) == 0);
    weft_stream_on_data(st.s, on_data, &st);
    weft_stream_on_end(st.s, on_end, &st);
    weft_stream_on_drain(st.s, on_drain, &st);
    weft_stream_on_timeout(st.s, on_timeout, &st);
    weft_stream_on_error(st.s, on_error, &st);
    weft_stream_on_close(st.s, on_close, &st);
    /* allowHalfOpen on half the inputs: 'writeOnly' is reachable */
    if (size > 0 && (data[0] & 0x80)) {
        weft_stream_set_allow_half_open(st.s, true);
        st.half_open = true;
    }

    size_t i = size > 0 ? 1 : 0;
#define ARG() (i < size ? data[i++] : 0)
    while (i < size) {
        uint8_t op = data[i++];
        switch (op % 20) {
        case 0:
        case 1:
        {
            size_t hi = ARG();
            peer_write(&st, hi * 32 + ARG());
        }
            break;
        case 2:
            if (st.peer >= 0 && !st.peer_shut) {
                shutdown(st.peer, SHUT_WR);
                st.peer_shut = true;
            }
            break;
        case 3:
            /* Gone, maybe with unread data: weft reads ECONNRESET or
             * EOF, and its writes fail with EPIPE. */
            if (st.peer >= 0) {
                close(st.peer);
                st.peer = -1;
            }
            break;
        case 4:
        case 5:
            weft_write(&st, (size_t)ARG() * 16);
            break;
        case 6:
        {
            size_t a = ARG();
            weft_writev(&st, a * 4, (size_t)ARG() * 4);
        }
            break;
        case 7:
            weft_stream_cork(st.s);
            break;
        case 8:
            weft_stream_uncork(st.s);
            break;
        case 9:
            weft_stream_pause(st.s);
            st.paused = true;
            break;
        case 10:
            weft_stream_resume(st.s);
            st.paused = false;
            break;
        case 11: {
            const char *e = encodings[ARG() % 8];
            int r = weft_stream_set_encoding(st.s, e);
            if (r == 0 && e != NULL)
                st.encoded = true;
            break;
        }
        case 12:
            weft_stream_set_timeout(st.s, ARG() % 3);
            break;
        case 13: {
            bool was_ok = !st.closed && !st.destroyed;
            int r = weft_stream_end(st.s, NULL, 0);
            CHECK(r == 0 || r == WEFT_ESTATE);
            if (r == 0 && was_ok)
                st.ended = true;
            break;
        }
        case 14:
            weft_stream_destroy(st.s);
            st.destroyed = true;
            break;
        case 15:
            st.in_data = (enum inside)(ARG() % 6);
            break;
        case 16:
            st.in_end = (enum inside)(ARG() % 6);
            st.in_drain = (enum inside)(ARG() % 6);
            break;
        case 17:
            peer_read(&st);
            break;
        default: /* 18, 19: let the loop turn */
            weft_loop_run_mode(loop, WEFT_RUN_NOWAIT);
            break;
        }
        if (op & 0x80)
            weft_loop_run_mode(loop, WEFT_RUN_NOWAIT);
        if (st.closed)
            break;
    }
#undef ARG

    /* Wind down: the peer reads what is left and leaves, the stream is
     * destroyed; the loop must then end, in a bounded number of turns. */
    weft_loop_run_mode(loop, WEFT_RUN_NOWAIT);
    peer_read(&st);
    if (st.peer >= 0)
        close(st.peer);
    if (!st.closed)
        weft_stream_destroy(st.s);
    wind_down(loop, &st.closed);

    /* No fd left behind by this input. */
    CHECK(fd_count() == fds_at_start);
    return 0;
}
