/*
 * test_churn.c - thousands of connections opened, fed random sizes,
 * half-closed and closed in random order by both sides; a share reset
 * with SO_LINGER 0 by raw peers, and a peer process killed with SIGKILL
 * in the middle of its transfers.
 *
 * Every connection carries two independent byte streams, client to
 * server and server to client. Each is a slice of a seeded pattern
 * (tu_pattern) whose length, write sizes and closing order come from the
 * connection's id, which the client sends first in an 8-byte header. A
 * receiver checks every byte at its offset as it arrives, so a byte lost,
 * duplicated, reordered or corrupted fails at once with its position, and
 * a clean close must have delivered the whole stream before 'end'. On the
 * raw peers' side (a forked child with its own fd table) the child checks
 * what it receives the same way and reports back through a pipe.
 *
 * On the way, some receivers pause now and then and resume from a timer
 * (nothing may arrive while paused, 'end' included), some streams carry
 * a short setTimeout whose 'timeout' must change nothing, some clients
 * read their bytes as hex or base64 text (decoded back here) or write
 * them as such text through write_string(), and some client streams are
 * connect()ed again from their own 'close' for the next connection.
 *
 * Every weft stream must close exactly once, with nothing emitted after
 * 'close'; the server must identify every connection exactly once; the
 * fixture checks that no fd leaked. Counts are bounded and seeded; the
 * summary line of each test gives connections, bytes, resets and kills.
 */
#include "internal.h"
#include "testutil.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/poll.h> /* not <poll.h>: src/poll.h shadows it */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

/* ck_assert_* record their location on every call (a write(2) per
 * check): in per-byte and per-event paths a plain test is used, which
 * costs nothing until it fails. */
#define CHECK(cond, ...)                                                       \
    do {                                                                       \
        if (!(cond))                                                           \
            ck_abort_msg(__VA_ARGS__);                                         \
    } while (0)

#define KiB         1024u
#define PAYLOAD_MAX (256 * KiB)
#define ENDLESS     UINT32_MAX
#define C2S         0
#define S2C         1

/* Bytes a killed peer's connection must have carried both ways before
 * the peer is killed, so that the kill lands mid-transfer. */
#define KILL_AFTER (128 * KiB)
/* An endless writer hands over at most this much per callback, then
 * yields to the loop (a fast reader could otherwise keep it writing). */
#define ENDLESS_BURST (256 * KiB)

enum { ENC_RAW, ENC_HEX, ENC_BASE64 };
static const char *const enc_name[] = {NULL, "hex", "base64"};

enum order {
    O_CLIENT_FIRST,   /* client ends when written; server after client's FIN */
    O_SERVER_FIRST,   /* server ends when written; client after server's FIN */
    O_TOGETHER,       /* both end as soon as they have written */
    O_AUTO,           /* no allowHalfOpen: the client end()s everything at
                         once, the server's FIN is weft's own after 'end' */
    O_CLIENT_DESTROY, /* the client destroys after `cut` bytes received */
    O_SERVER_DESTROY, /* the server destroys after `cut` bytes received */
    O_RAW_CLEAN,      /* raw peer: sends all, SHUT_WR, reads all to EOF */
    O_RAW_RESET,      /* raw peer: sends part, reads `cut` bytes, RST */
    O_RAW_KILLED,     /* raw peer in a process killed by SIGKILL */
    N_WEFT_ORDERS = O_RAW_CLEAN,
};

static const char *order_name[] = {
    "client-first", "server-first",   "together",
    "auto",         "client-destroy", "server-destroy",
    "raw-clean",    "raw-reset",      "raw-killed"};

typedef struct plan {
    uint8_t order;
    bool early;         /* the client writes before 'connect' */
    bool reuse;         /* started from a 'close' listener: on that very
                           stream, connect()ed again (the seed's reuse) */
    bool slow[2];       /* the receiver of [dir] pauses now and then */
    uint8_t idle_ms[2]; /* [C2S]: the server's setTimeout, [S2C]: the
                           client's; 0: none. 'timeout' only counts. */
    uint8_t enc;        /* the client reads as raw, hex or base64 text */
    uint8_t wenc;       /* the client writes raw, or hex / base64 text
                           through write_string() */
    uint32_t len[2];    /* [C2S], [S2C]; ENDLESS for killed peers */
    uint32_t chunk[2];  /* write size of each writer */
    uint32_t cut;       /* destroy / reset after this many bytes received */
    uint32_t sendcut;   /* raw reset: c2s bytes sent before the reset */
} plan;

/* One weft end of one connection. */
typedef struct side {
    int id; /* -1 until the server has read the header */
    bool is_server;
    weft_stream *s;
    uint8_t hdr[8];
    unsigned hdr_got;
    uint64_t sent, recvd;
    bool blocked, ended, peer_ended, destroyed, closed, had_error;
    bool kill_ready;
    bool paused;
    bool padded; /* base64 padding seen: it must be the last text */
    int err;
    unsigned closes, ends, errors, timeouts, pauses;
} side;

/* A client stream. Some plans connect() it again from its own 'close'
 * for the next connection: its listeners find the connection it
 * carries now here. */
typedef struct slot {
    weft_stream *s;
    side *cur;
} slot;

/* What a raw peer child reports through its pipe. */
typedef struct raw_report {
    uint32_t clean_ok, resets, failures, fail_id;
    uint64_t bytes_in, bytes_out;
    char msg[160];
} raw_report;

static struct churn {
    uint64_t seed;
    int port;
    const char *path; /* weft clients over a Unix socket */
    unsigned n_weft, n_raw, n_kill, total;
    unsigned inflight;
    plan *plans;
    side *cli; /* by id, for weft clients */
    slot *slots;
    unsigned n_slots, reused;
    side *srv; /* by accept order */
    int *srv_of_id;
    weft_server *server;
    unsigned accepted, srv_closed;
    unsigned cli_next, cli_closed;
    unsigned kill_ready;
    unsigned long pauses, timeouts, decoded;
    pid_t raw_pid, kill_pid;
    int raw_pipe;
    bool killed;
    unsigned char *buf; /* scratch for writes */
} C;

static uint64_t stream_seed(unsigned id, int dir)
{
    return (C.seed << 32) ^ ((uint64_t)id * 2 + (uint64_t)dir + 1);
}

/* 0..256 KiB: a quarter uniform, the rest log-uniform, so most
 * connections are small (many of them empty) and some are large. */
static uint32_t rand_size(uint64_t r)
{
    if ((r & 3) == 0)
        return (uint32_t)((r >> 8) % (PAYLOAD_MAX + 1));
    unsigned bits = (unsigned)((r >> 2) % 19);
    return (uint32_t)((r >> 8) % (1u << bits));
}

/* Write sizes from 1 byte to 64 KiB, but at most ~128 writes per stream:
 * a 256 KiB stream written a byte at a time costs minutes of syscalls
 * under ASan and tests nothing more than 128 small writes do. */
static uint32_t rand_chunk(uint64_t r, uint32_t len)
{
    if ((r & 7) == 0 || len == 0)
        return len > 0 ? len : 1;       /* everything in one write() */
    uint32_t c = 1u << ((r >> 3) % 17); /* 1 B .. 64 KiB */
    c += (uint32_t)((r >> 16) % c);
    return c < len / 128 ? len / 128 : c;
}

static void make_plans(void)
{
    C.plans = calloc(C.total, sizeof(*C.plans));
    ck_assert_ptr_nonnull(C.plans);
    for (unsigned id = 0; id < C.total; id++) {
        plan *p = &C.plans[id];
        uint64_t r = tu_mix(C.seed ^ ((uint64_t)id << 20));
        if (id < C.n_weft)
            p->order = (uint8_t)(r % N_WEFT_ORDERS);
        else if (id < C.n_weft + C.n_raw)
            p->order = (r & 1) ? O_RAW_RESET : O_RAW_CLEAN;
        else
            p->order = O_RAW_KILLED;
        p->early = (tu_mix(r) & 1) != 0;
        p->reuse = (tu_mix(r) & 6) == 0;
        uint64_t q = tu_mix(r + 61);
        p->slow[C2S] = (q & 3) == 0;
        p->slow[S2C] = (q & 12) == 0;
        p->idle_ms[C2S] = (q & 0x30) == 0 ? (uint8_t)(1 + (q >> 8) % 20) : 0;
        p->idle_ms[S2C] = (q & 0xc0) == 0 ? (uint8_t)(1 + (q >> 16) % 20) : 0;
        p->enc = (q >> 24) % 8 == 0   ? ENC_HEX
                 : (q >> 24) % 8 == 1 ? ENC_BASE64
                                      : ENC_RAW;
        p->wenc = (q >> 32) % 8 == 0   ? ENC_HEX
                  : (q >> 32) % 8 == 1 ? ENC_BASE64
                                       : ENC_RAW;
        for (int d = 0; d < 2; d++) {
            p->len[d] = rand_size(tu_mix(r + 11 + (uint64_t)d));
            p->chunk[d] = rand_chunk(tu_mix(r + 21 + (uint64_t)d), p->len[d]);
        }
        /* The side that cuts must have something to receive first. */
        int cut_dir = -1;
        if (p->order == O_CLIENT_DESTROY || p->order == O_RAW_RESET)
            cut_dir = S2C;
        else if (p->order == O_SERVER_DESTROY)
            cut_dir = C2S;
        if (cut_dir >= 0) {
            if (p->len[cut_dir] == 0)
                p->len[cut_dir] = 1 + (uint32_t)(tu_mix(r + 31) % (64 * KiB));
            p->cut = 1 + (uint32_t)(tu_mix(r + 41) % p->len[cut_dir]);
            p->chunk[cut_dir] = rand_chunk(tu_mix(r + 22), p->len[cut_dir]);
        }
        p->sendcut = (uint32_t)(tu_mix(r + 51) % (p->len[C2S] + 1u));
        if (p->order == O_RAW_KILLED) {
            p->len[C2S] = p->len[S2C] = ENDLESS;
            p->chunk[C2S] = p->chunk[S2C] = 16 * KiB;
        }
        /* No allowHalfOpen: once the peer's FIN has come, weft ends our
         * side and no 'drain' follows, so each side writes all at once. */
        if (p->order == O_AUTO)
            for (int d = 0; d < 2; d++)
                p->chunk[d] = p->len[d] > 0 ? p->len[d] : 1;
    }
}

static void header(uint8_t h[8], unsigned id)
{
    memcpy(h, "WFT1", 4);
    h[4] = (uint8_t)id;
    h[5] = (uint8_t)(id >> 8);
    h[6] = (uint8_t)(id >> 16);
    h[7] = (uint8_t)(id >> 24);
}

/* ---- what every weft side does ---------------------------------------- */

static void alive(side *sd, const char *event)
{
    CHECK(!sd->closed, "%s %d: '%s' after 'close'",
          sd->is_server ? "server" : "client", sd->id, event);
}

static const plan *plan_of(const side *sd)
{
    return sd->id >= 0 ? &C.plans[sd->id] : NULL;
}

/* Does this side end() once it has written everything? */
static bool ends_when_written(const side *sd)
{
    const plan *p = plan_of(sd);
    switch (p->order) {
    case O_CLIENT_FIRST:
        return !sd->is_server || sd->peer_ended;
    case O_SERVER_FIRST:
        return sd->is_server || sd->peer_ended;
    case O_TOGETHER:
        return true;
    case O_CLIENT_DESTROY:
        return sd->is_server;
    case O_SERVER_DESTROY:
        return !sd->is_server;
    case O_RAW_CLEAN:
    case O_RAW_RESET:
        return sd->peer_ended;
    default: /* O_AUTO: end(data) at once or weft's own; killed: never */
        return false;
    }
}

static void pump(side *sd);

static void pump_later(weft_timer *t, void *ctx)
{
    (void)t;
    side *sd = ctx;
    if (!sd->closed && !sd->destroyed)
        pump(sd);
}

/* write_string(): the bytes as hex or base64 text, which weft decodes
 * back to the same bytes (Node's Buffer.from(text, encoding)). */
static int write_encoded(weft_stream *s, const unsigned char *b, size_t n,
                         int enc)
{
    static const char hex[] = "0123456789abcdef";
    static const char b64[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    char *t = malloc(2 * n + 4);
    CHECK(t != NULL, "ENOMEM");
    size_t m = 0;
    if (enc == ENC_HEX) {
        for (size_t i = 0; i < n; i++) {
            t[m++] = hex[b[i] >> 4];
            t[m++] = hex[b[i] & 15];
        }
    } else {
        for (size_t i = 0; i < n; i += 3) {
            unsigned v = (unsigned)b[i] << 16;
            if (i + 1 < n)
                v |= (unsigned)b[i + 1] << 8;
            if (i + 2 < n)
                v |= b[i + 2];
            t[m++] = b64[v >> 18];
            t[m++] = b64[(v >> 12) & 63];
            t[m++] = i + 1 < n ? b64[(v >> 6) & 63] : '=';
            t[m++] = i + 2 < n ? b64[v & 63] : '=';
        }
    }
    t[m] = '\0';
    int r = weft_stream_write_string(s, t, enc_name[enc]);
    free(t);
    return r;
}

/* Writes the side's stream in its chunk size until write() says false,
 * then waits for 'drain'; ends when the plan says so. */
static void pump(side *sd)
{
    const plan *p = plan_of(sd);
    int dir = sd->is_server ? S2C : C2S;
    uint64_t len = p->len[dir];
    uint64_t seed = stream_seed((unsigned)sd->id, dir);
    uint64_t burst = 0;
    while (!sd->blocked && !sd->destroyed && !sd->ended && sd->sent < len) {
        if (p->len[dir] == ENDLESS && burst >= ENDLESS_BURST) {
            CHECK(weft_set_timeout(tu_loop, 1, pump_later, sd), "timer");
            return;
        }
        uint64_t n = len - sd->sent;
        if (n > p->chunk[dir])
            n = p->chunk[dir];
        tu_pattern(C.buf, sd->sent, (size_t)n, seed);
        int r = !sd->is_server && p->wenc != ENC_RAW
                    ? write_encoded(sd->s, C.buf, (size_t)n, p->wenc)
                    : weft_stream_write(sd->s, C.buf, (size_t)n);
        if (r < 0) {
            /* Only a stream that failed inside this very call may refuse
             * (its 'error' and 'close' are on their way). */
            CHECK(weft_stream_ready_state(sd->s) == WEFT_CLOSED,
                  "write on id %d: %s", sd->id, weft_err_name(r));
            return;
        }
        sd->sent += n;
        burst += n;
        if (r == 0)
            sd->blocked = true;
    }
    if (!sd->ended && !sd->destroyed && sd->sent == len &&
        ends_when_written(sd)) {
        sd->ended = true;
        int r = weft_stream_end(sd->s, NULL, 0);
        CHECK(r == 0, "id %d: end(): %s", sd->id, weft_err_name(r));
    }
}

static void resume_later(weft_timer *t, void *ctx)
{
    (void)t;
    side *sd = ctx;
    if (sd->closed) /* the handle is gone: nothing to resume */
        return;
    sd->paused = false;
    weft_stream_resume(sd->s);
}

static void not_paused(side *sd, const char *event)
{
    CHECK(!sd->paused && !weft_stream_is_paused(sd->s),
          "id %d (%s, %s side, reading %s): '%s' while paused", sd->id,
          sd->id >= 0 ? order_name[plan_of(sd)->order] : "?",
          sd->is_server ? "server" : "client",
          sd->is_server || plan_of(sd)->enc == ENC_RAW
              ? "raw bytes"
              : enc_name[plan_of(sd)->enc],
          event);
}

static void on_timeout(weft_stream *s, void *ctx)
{
    side *sd = ctx;
    CHECK(s == sd->s, "listener called with another stream");
    alive(sd, "timeout");
    sd->timeouts++;
    C.timeouts++;
}

/* Checks received bytes against the peer's stream; acts at the cut. */
static void received(side *sd, const char *d, size_t n)
{
    const plan *p = plan_of(sd);
    int dir = sd->is_server ? C2S : S2C;
    CHECK(sd->recvd + n <= p->len[dir],
          "id %d (%s): %zu bytes beyond the %u sent (duplicated?)", sd->id,
          order_name[p->order], (size_t)(sd->recvd + n - p->len[dir]),
          p->len[dir]);
    size_t at =
        tu_pattern_diff(d, sd->recvd, n, stream_seed((unsigned)sd->id, dir));
    CHECK(at == n, "id %d (%s) %s: byte %llu of the stream differs", sd->id,
          order_name[p->order],
          sd->is_server ? "client->server" : "server->client",
          (unsigned long long)(sd->recvd + at));
    sd->recvd += n;
    /* A slow receiver pauses on one chunk in four and resumes from a
     * timer: nothing may arrive in between, not even 'end'. */
    if (p->slow[dir] && (tu_mix(sd->recvd ^ (uint64_t)sd->id) & 3) == 0 &&
        !sd->paused) {
        weft_stream_pause(sd->s);
        sd->paused = true;
        sd->pauses++;
        C.pauses++;
        CHECK(weft_set_timeout(tu_loop, 1, resume_later, sd), "timer");
    }
    bool cuts = (p->order == O_CLIENT_DESTROY && !sd->is_server) ||
                (p->order == O_SERVER_DESTROY && sd->is_server);
    if (cuts && sd->recvd >= p->cut && !sd->destroyed) {
        sd->destroyed = true;
        weft_stream_destroy(sd->s);
    }
    if (p->order == O_RAW_KILLED && !sd->kill_ready &&
        sd->recvd >= KILL_AFTER && sd->sent >= KILL_AFTER) {
        sd->kill_ready = true;
        if (++C.kill_ready == C.n_kill && !C.killed) {
            /* Every killed peer's connection is mid-transfer both ways. */
            ck_assert_int_eq(kill(C.kill_pid, SIGKILL), 0);
            C.killed = true;
        }
    }
}

static void maybe_close_server(void)
{
    if (C.srv_closed == C.total && C.cli_closed == C.n_weft &&
        C.server != NULL) {
        ck_assert_uint_eq(weft_server_connections(C.server), 0);
        ck_assert_int_eq(weft_server_close(C.server), 0);
        C.server = NULL;
    }
}

static void on_error(weft_stream *s, int err, const char *msg, void *ctx)
{
    side *sd = ctx;
    CHECK(s == sd->s, "listener called with another stream");
    alive(sd, "error");
    CHECK(msg != NULL, "'error' without a message");
    sd->errors++;
    sd->err = err;
}

static void on_close_common(side *sd, weft_stream *s, bool had_error)
{
    CHECK(s == sd->s, "listener called with another stream");
    alive(sd, "close");
    sd->closes++;
    sd->closed = true;
    sd->had_error = had_error;
    CHECK(weft_stream_ready_state(s) == WEFT_CLOSED,
          "id %d: readyState %s in 'close'", sd->id,
          weft_ready_state_name(weft_stream_ready_state(s)));
    CHECK(had_error == (sd->errors > 0), "id %d: close(%d) after %u errors",
          sd->id, had_error, sd->errors);
}

/* ---- server side ------------------------------------------------------ */

static void srv_data(weft_stream *s, const char *d, size_t n, void *ctx)
{
    side *sd = ctx;
    CHECK(s == sd->s, "listener called with another stream");
    alive(sd, "data");
    not_paused(sd, "data");
    if (sd->hdr_got < 8) {
        size_t k = 8 - sd->hdr_got < n ? 8 - sd->hdr_got : n;
        memcpy(sd->hdr + sd->hdr_got, d, k);
        sd->hdr_got += (unsigned)k;
        d += k;
        n -= k;
        if (sd->hdr_got < 8)
            return;
        CHECK(memcmp(sd->hdr, "WFT1", 4) == 0, "bad header");
        unsigned id = sd->hdr[4] | sd->hdr[5] << 8 | sd->hdr[6] << 16 |
                      (unsigned)sd->hdr[7] << 24;
        CHECK(id < C.total, "header names id %u", id);
        CHECK(C.srv_of_id[id] < 0, "id %u accepted twice", id);
        C.srv_of_id[id] = (int)(sd - C.srv);
        sd->id = (int)id;
        const plan *p = plan_of(sd);
        weft_stream_set_allow_half_open(s, p->order != O_AUTO);
        if (p->idle_ms[C2S] && p->order != O_RAW_KILLED)
            ck_assert_int_eq(weft_stream_set_timeout(s, p->idle_ms[C2S]), 0);
        pump(sd);
        if (sd->destroyed || sd->closed || n == 0)
            return;
    }
    received(sd, d, n);
}

static void srv_end(weft_stream *s, void *ctx)
{
    side *sd = ctx;
    CHECK(s == sd->s, "listener called with another stream");
    alive(sd, "end");
    not_paused(sd, "end");
    CHECK(++sd->ends == 1, "id %d: 'end' twice", sd->id);
    sd->peer_ended = true;
    CHECK(sd->hdr_got == 8, "'end' before the header");
    const plan *p = plan_of(sd);
    if (p->order != O_CLIENT_DESTROY && p->order != O_RAW_KILLED)
        CHECK(sd->recvd == p->len[C2S],
              "id %d (%s): 'end' after %llu of %u bytes", sd->id,
              order_name[p->order], (unsigned long long)sd->recvd, p->len[C2S]);
    pump(sd);
}

static void srv_drain(weft_stream *s, void *ctx)
{
    side *sd = ctx;
    CHECK(s == sd->s, "listener called with another stream");
    alive(sd, "drain");
    sd->blocked = false;
    pump(sd);
}

static void srv_close(weft_stream *s, bool had_error, void *ctx)
{
    side *sd = ctx;
    on_close_common(sd, s, had_error);
    C.srv_closed++;
    maybe_close_server();
}

static void srv_connect(weft_stream *s, void *ctx)
{
    side *sd = ctx;
    CHECK(s == sd->s, "listener called with another stream");
    alive(sd, "connect");
}

static void srv_connection(weft_server *srv, weft_stream *s, void *ctx)
{
    (void)ctx;
    ck_assert_uint_lt(C.accepted, C.total);
    side *sd = &C.srv[C.accepted++];
    sd->id = -1;
    sd->is_server = true;
    sd->s = s;
    ck_assert_ptr_eq(weft_stream_server(s), srv);
    weft_stream_on_connect(s, srv_connect, sd);
    weft_stream_on_data(s, srv_data, sd);
    weft_stream_on_end(s, srv_end, sd);
    weft_stream_on_drain(s, srv_drain, sd);
    weft_stream_on_error(s, on_error, sd);
    weft_stream_on_timeout(s, on_timeout, sd);
    weft_stream_on_close(s, srv_close, sd);
}

/* ---- weft clients ----------------------------------------------------- */

static void start_client(slot *reuse);

static side *cur(void *ctx)
{
    return ((slot *)ctx)->cur;
}

static void cli_connect(weft_stream *s, void *ctx)
{
    side *sd = cur(ctx);
    CHECK(s == sd->s, "listener called with another stream");
    alive(sd, "connect");
    if (plan_of(sd)->order != O_AUTO)
        pump(sd);
}

static int unhex(char c)
{
    return c >= '0' && c <= '9'   ? c - '0'
           : c >= 'a' && c <= 'f' ? c - 'a' + 10
                                  : -1;
}

static int unb64(char c)
{
    return c >= 'A' && c <= 'Z'   ? c - 'A'
           : c >= 'a' && c <= 'z' ? c - 'a' + 26
           : c >= '0' && c <= '9' ? c - '0' + 52
           : c == '+'             ? 62
           : c == '/'             ? 63
                                  : -1;
}

/* Text in the client's encoding back to bytes. weft delivers whole hex
 * pairs and whole base64 groups in each 'data' (padding only at the
 * end), so every chunk decodes on its own. */
static size_t decode(side *sd, const char *d, size_t n, unsigned char *out)
{
    const plan *p = plan_of(sd);
    size_t m = 0;
    CHECK(d[n] == '\0', "id %d: text not NUL-terminated", sd->id);
    if (p->enc == ENC_HEX) {
        CHECK(n % 2 == 0, "id %d: odd hex chunk of %zu", sd->id, n);
        for (size_t i = 0; i < n; i += 2) {
            int hi = unhex(d[i]), lo = unhex(d[i + 1]);
            CHECK(hi >= 0 && lo >= 0, "id %d: bad hex", sd->id);
            out[m++] = (unsigned char)(hi << 4 | lo);
        }
        return m;
    }
    CHECK(n % 4 == 0, "id %d: base64 chunk of %zu", sd->id, n);
    CHECK(!sd->padded, "id %d: base64 text after padding", sd->id);
    for (size_t i = 0; i < n; i += 4) {
        int v[4];
        for (int k = 0; k < 4; k++)
            v[k] = d[i + k] == '=' ? -2 : unb64(d[i + k]);
        CHECK(v[0] >= 0 && v[1] >= 0 && v[2] != -1 && v[3] != -1,
              "id %d: bad base64 group", sd->id);
        sd->padded = v[2] < 0 || v[3] < 0;
        CHECK(!sd->padded || i + 4 == n, "id %d: padding mid-chunk", sd->id);
        out[m++] = (unsigned char)(v[0] << 2 | v[1] >> 4);
        if (v[2] >= 0)
            out[m++] = (unsigned char)((v[1] & 15) << 4 | v[2] >> 2);
        if (v[2] >= 0 && v[3] >= 0)
            out[m++] = (unsigned char)((v[2] & 3) << 6 | v[3]);
    }
    return m;
}

static void cli_data(weft_stream *s, const char *d, size_t n, void *ctx)
{
    side *sd = cur(ctx);
    CHECK(s == sd->s, "listener called with another stream");
    alive(sd, "data");
    not_paused(sd, "data");
    if (plan_of(sd)->enc == ENC_RAW) {
        received(sd, d, n);
        return;
    }
    /* One 64 KiB read is at most 128 KiB of hex text; decoded, less. */
    static unsigned char bytes[3 * 65536 + 64];
    CHECK(n <= sizeof(bytes), "id %d: %zu bytes of text in one 'data'", sd->id,
          n);
    size_t m = decode(sd, d, n, bytes);
    C.decoded += m;
    received(sd, (const char *)bytes, m);
}

static void cli_end(weft_stream *s, void *ctx)
{
    side *sd = cur(ctx);
    CHECK(s == sd->s, "listener called with another stream");
    alive(sd, "end");
    not_paused(sd, "end");
    CHECK(++sd->ends == 1, "id %d: 'end' twice", sd->id);
    sd->peer_ended = true;
    const plan *p = plan_of(sd);
    if (p->order != O_SERVER_DESTROY && sd->recvd != p->len[S2C]) {
        const side *sv =
            C.srv_of_id[sd->id] >= 0 ? &C.srv[C.srv_of_id[sd->id]] : NULL;
        ck_abort_msg("id %d (%s): 'end' after %llu of %u bytes; server side: "
                     "%s, sent %llu, errors %u (%s), closed %d, peer ended %d",
                     sd->id, order_name[p->order],
                     (unsigned long long)sd->recvd, p->len[S2C],
                     sv ? "identified" : "unknown",
                     sv ? (unsigned long long)sv->sent : 0ull,
                     sv ? sv->errors : 0u, sv ? weft_err_name(sv->err) : "-",
                     sv ? sv->closed : 0, sv ? sv->peer_ended : 0);
    }
    if (p->order != O_AUTO)
        pump(sd);
}

static void cli_drain(weft_stream *s, void *ctx)
{
    side *sd = cur(ctx);
    CHECK(s == sd->s, "listener called with another stream");
    alive(sd, "drain");
    sd->blocked = false;
    if (plan_of(sd)->order != O_AUTO)
        pump(sd);
}

static void cli_error(weft_stream *s, int err, const char *msg, void *ctx)
{
    on_error(s, err, msg, cur(ctx));
}

static void cli_timeout(weft_stream *s, void *ctx)
{
    on_timeout(s, cur(ctx));
}

static void cli_close(weft_stream *s, bool had_error, void *ctx)
{
    side *sd = cur(ctx);
    on_close_common(sd, s, had_error);
    C.cli_closed++;
    start_client(ctx);
    maybe_close_server();
}

/* Starts the next client connection: on `reuse`'s stream (from its
 * 'close' listener) if the plan says so, else on a new stream. */
static void start_client(slot *reuse)
{
    if (C.cli_next >= C.n_weft)
        return;
    unsigned id = C.cli_next++;
    const plan *p = &C.plans[id];
    side *sd = &C.cli[id];
    sd->id = (int)id;
    weft_stream *s;
    slot *sl;
    int r;
    if (reuse != NULL && p->reuse) {
        sl = reuse;
        s = sl->s;
        r = C.path ? weft_stream_connect_path(s, C.path)
                   : weft_stream_connect(s, C.port, "127.0.0.1");
        CHECK(r == 0, "id %u: connect() inside 'close': %s", id,
              weft_err_name(r));
        C.reused++;
    } else {
        r = C.path ? weft_create_connection_path(tu_loop, C.path, &s)
                   : weft_create_connection(tu_loop, C.port, "127.0.0.1", &s);
        ck_assert_int_eq(r, 0);
        ck_assert_uint_lt(C.n_slots, C.n_weft);
        sl = &C.slots[C.n_slots++];
        sl->s = s;
        weft_stream_on_connect(s, cli_connect, sl);
        weft_stream_on_data(s, cli_data, sl);
        weft_stream_on_end(s, cli_end, sl);
        weft_stream_on_drain(s, cli_drain, sl);
        weft_stream_on_error(s, cli_error, sl);
        weft_stream_on_timeout(s, cli_timeout, sl);
        weft_stream_on_close(s, cli_close, sl);
    }
    sl->cur = sd;
    sd->s = s;
    /* Set every option: a reused stream keeps the last one's. */
    weft_stream_set_allow_half_open(s, p->order != O_CLIENT_FIRST &&
                                           p->order != O_AUTO);
    r = weft_stream_set_encoding(s,
                                 p->enc != ENC_RAW ? enc_name[p->enc] : NULL);
    CHECK(r == 0, "setEncoding: %s", weft_err_name(r));
    r = weft_stream_set_timeout(s, p->idle_ms[S2C]);
    CHECK(r == 0, "setTimeout: %s", weft_err_name(r));
    /* The header goes first, queued while connecting. */
    uint8_t h[8];
    header(h, id);
    ck_assert_int_eq(weft_stream_write(s, h, 8), 0);
    if (p->order == O_AUTO) {
        /* Everything and the FIN in one call, before the connection is up. */
        tu_pattern(C.buf, 0, p->len[C2S], stream_seed(id, C2S));
        ck_assert_int_eq(weft_stream_end(s, C.buf, p->len[C2S]), 0);
        sd->sent = p->len[C2S];
        sd->ended = true;
    } else if (p->early) {
        pump(sd);
    }
}

/* ---- raw peers: a forked child with its own fd table ------------------ */

enum { R_CONNECTING, R_RUNNING };

typedef struct raw_conn {
    int fd;
    unsigned id;
    int state;
    uint64_t sent; /* header included */
    uint64_t recvd;
    bool shut;
} raw_conn;

static void raw_fail(raw_report *rep, unsigned id, const char *what)
{
    if (rep->failures++ == 0) {
        rep->fail_id = id;
        snprintf(rep->msg, sizeof(rep->msg), "id %u: %s (errno %d)", id, what,
                 errno);
    }
}

static int raw_open(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return -1;
    struct sockaddr_in sin = {.sin_family = AF_INET,
                              .sin_port = htons((uint16_t)port)};
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&sin, sizeof(sin)) < 0 &&
        errno != EINPROGRESS) {
        close(fd);
        return -1;
    }
    return fd;
}

/* Sends what the plan allows now; false when the connection is done. */
static void raw_send(raw_conn *c, raw_report *rep, unsigned char *buf)
{
    const plan *p = &C.plans[c->id];
    uint64_t limit = p->order == O_RAW_RESET ? p->sendcut : p->len[C2S];
    if (limit != ENDLESS)
        limit += 8;
    /* A few chunks per poll round, so that one busy connection cannot
     * starve the others of this child. */
    for (int round = 0; round < 4 && c->sent < limit; round++) {
        size_t n;
        if (c->sent < 8) {
            header(buf, c->id);
            memmove(buf, buf + c->sent, 8 - (size_t)c->sent);
            n = 8 - (size_t)c->sent;
        } else {
            n = limit - c->sent < 65536 ? (size_t)(limit - c->sent) : 65536;
            tu_pattern(buf, c->sent - 8, n, stream_seed(c->id, C2S));
        }
        ssize_t w = send(c->fd, buf, n, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno != EAGAIN && errno != EINTR)
                raw_fail(rep, c->id, "send");
            return;
        }
        c->sent += (uint64_t)w;
        rep->bytes_out += (uint64_t)w;
        if ((size_t)w < n)
            return;
    }
    if (p->order == O_RAW_CLEAN && !c->shut && c->sent == limit) {
        if (shutdown(c->fd, SHUT_WR) < 0)
            raw_fail(rep, c->id, "shutdown");
        c->shut = true;
    }
}

static bool raw_wants_send(const raw_conn *c)
{
    const plan *p = &C.plans[c->id];
    if (p->order == O_RAW_KILLED)
        return true;
    uint64_t limit = (p->order == O_RAW_RESET ? p->sendcut : p->len[C2S]) + 8;
    return c->sent < limit || (p->order == O_RAW_CLEAN && !c->shut);
}

/* Reads and checks; returns true when the connection is finished. */
static bool raw_recv(raw_conn *c, raw_report *rep, unsigned char *buf)
{
    const plan *p = &C.plans[c->id];
    for (int round = 0; round < 4; round++) {
        ssize_t n = recv(c->fd, buf, 65536, 0);
        if (n < 0) {
            if (errno == EAGAIN || errno == EINTR)
                return false;
            raw_fail(rep, c->id, "recv");
            return true;
        }
        if (n == 0) {
            if (p->order != O_RAW_CLEAN || c->recvd != p->len[S2C] || !c->shut)
                raw_fail(rep, c->id, "early EOF");
            else
                rep->clean_ok++;
            return true;
        }
        if (c->recvd + (uint64_t)n > p->len[S2C]) {
            raw_fail(rep, c->id, "bytes beyond the server's stream");
            return true;
        }
        if (tu_pattern_diff(buf, c->recvd, (size_t)n,
                            stream_seed(c->id, S2C)) != (size_t)n) {
            raw_fail(rep, c->id, "server->client bytes differ");
            return true;
        }
        c->recvd += (uint64_t)n;
        rep->bytes_in += (uint64_t)n;
        if (p->order == O_RAW_RESET && c->recvd >= p->cut) {
            /* SO_LINGER 0: close() sends RST, dropping what is unsent. */
            struct linger lg = {1, 0};
            if (setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg)) < 0)
                raw_fail(rep, c->id, "SO_LINGER");
            rep->resets++;
            return true;
        }
    }
    return false;
}

/* The child: runs ids [first, first + n), `inflight` at a time, then
 * reports and exits. Never returns. */
static void raw_child(unsigned first, unsigned n, unsigned inflight,
                      int report_fd)
{
    /* Drop the parent's sockets and epoll fd: this process must not keep
     * any weft connection alive. */
    close_range(3, (unsigned)report_fd - 1, 0);
    close_range((unsigned)report_fd + 1, ~0u, 0);
    prctl(PR_SET_PDEATHSIG, SIGKILL); /* never outlive a failed test */
    alarm(60);
    raw_report rep = {0};
    unsigned char *buf = malloc(65536);
    raw_conn *conns = calloc(inflight, sizeof(*conns));
    struct pollfd *pfd = calloc(inflight, sizeof(*pfd));
    if (buf == NULL || conns == NULL || pfd == NULL)
        _exit(3);
    unsigned next = 0, done = 0, active = 0;
    while (done < n) {
        while (active < inflight && next < n) {
            raw_conn *c = &conns[active];
            memset(c, 0, sizeof(*c));
            c->id = first + next++;
            c->fd = raw_open(C.port);
            if (c->fd < 0) {
                raw_fail(&rep, c->id, "connect");
                done++;
                continue;
            }
            c->state = R_CONNECTING;
            active++;
        }
        for (unsigned i = 0; i < active; i++) {
            pfd[i].fd = conns[i].fd;
            pfd[i].events = POLLIN;
            if (conns[i].state == R_CONNECTING || raw_wants_send(&conns[i]))
                pfd[i].events |= POLLOUT;
            pfd[i].revents = 0;
        }
        if (poll(pfd, active, 1000) < 0 && errno != EINTR)
            _exit(4);
        for (unsigned i = 0; i < active;) {
            raw_conn *c = &conns[i];
            bool finished = false;
            if (c->state == R_CONNECTING && pfd[i].revents) {
                int soerr = 0;
                socklen_t len = sizeof(soerr);
                getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &soerr, &len);
                if (soerr != 0) {
                    errno = soerr;
                    raw_fail(&rep, c->id, "connect");
                    finished = true;
                } else {
                    c->state = R_RUNNING;
                }
            } else if (c->state == R_RUNNING) {
                if (pfd[i].revents & (POLLOUT | POLLERR | POLLHUP))
                    raw_send(c, &rep, buf);
                if (pfd[i].revents & (POLLIN | POLLERR | POLLHUP))
                    finished = raw_recv(c, &rep, buf);
            }
            if (finished) {
                close(c->fd);
                done++;
                /* Keep the arrays dense: the last one takes this slot. */
                conns[i] = conns[--active];
                pfd[i] = pfd[active];
                continue;
            }
            i++;
        }
    }
    if (write(report_fd, &rep, sizeof(rep)) != (ssize_t)sizeof(rep))
        _exit(5);
    _exit(rep.failures ? 1 : 0);
}

static pid_t spawn_raw(unsigned first, unsigned n, unsigned inflight,
                       int *report_fd)
{
    int p[2];
    ck_assert_int_eq(pipe2(p, O_CLOEXEC), 0);
    fflush(NULL);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        close(p[0]);
        raw_child(first, n, inflight, p[1]);
    }
    close(p[1]);
    *report_fd = p[0];
    return pid;
}

/* ---- the run ----------------------------------------------------------- */

/* What the deadline's message shows if the run hangs. */
static void progress(weft_timer *t, void *ctx)
{
    (void)t;
    (void)ctx;
    tu_log_reset();
    tu_logf("accepted %u/%u, server-side closed %u, clients started %u "
            "closed %u/%u, kill-ready %u/%u",
            C.accepted, C.total, C.srv_closed, C.cli_next, C.cli_closed,
            C.n_weft, C.kill_ready, C.n_kill);
}

typedef struct churn_opts {
    uint64_t seed;
    unsigned n_weft, n_raw, n_kill;
    unsigned inflight, raw_inflight;
    bool unix_socket;
} churn_opts;

static void churn_run(const churn_opts *o)
{
    memset(&C, 0, sizeof(C));
    const char *env = getenv("WEFT_CHURN_SEED");
    C.seed = env ? strtoull(env, NULL, 0) : o->seed;
    unsigned scale = tu_under_valgrind() ? 10 : 1;
    C.n_weft = o->n_weft / scale;
    C.n_raw = o->n_raw / scale;
    C.n_kill = o->n_kill ? (o->n_kill / scale > 0 ? o->n_kill / scale : 1) : 0;
    C.total = C.n_weft + C.n_raw + C.n_kill;
    C.inflight = o->inflight;
    C.raw_pid = C.kill_pid = -1;
    C.raw_pipe = -1;
    /* Two fds per weft-to-weft connection in flight, one per raw one. */
    long need = 2L * o->inflight + o->raw_inflight + C.n_kill + 64;
    ck_assert_int_ge(tu_raise_nofile(need), need);
    make_plans();
    C.cli = calloc(C.n_weft + 1, sizeof(*C.cli));
    C.slots = calloc(C.n_weft + 1, sizeof(*C.slots));
    C.srv = calloc(C.total, sizeof(*C.srv));
    C.srv_of_id = malloc(C.total * sizeof(int));
    C.buf = malloc(PAYLOAD_MAX + 1);
    ck_assert(C.cli && C.slots && C.srv && C.srv_of_id && C.buf);
    for (unsigned i = 0; i < C.total; i++)
        C.srv_of_id[i] = -1;

    C.server = weft_create_server(tu_loop, srv_connection, NULL);
    ck_assert_ptr_nonnull(C.server);
    weft_server_set_allow_half_open(C.server, true);
    weft_server_set_backlog(C.server, 1024);
    if (o->unix_socket) {
        C.path = tu_sock_path("churn");
        ck_assert_int_eq(weft_server_listen_path(C.server, C.path, NULL, NULL),
                         0);
    } else {
        C.port = tu_listen(C.server, "127.0.0.1");
    }
    int kill_pipe = -1;
    if (C.n_raw > 0)
        C.raw_pid = spawn_raw(C.n_weft, C.n_raw, o->raw_inflight, &C.raw_pipe);
    if (C.n_kill > 0)
        C.kill_pid =
            spawn_raw(C.n_weft + C.n_raw, C.n_kill, C.n_kill, &kill_pipe);
    for (unsigned i = 0; i < C.inflight; i++)
        start_client(NULL);
    if (C.total == 0)
        maybe_close_server();
    weft_timer *prog = weft_set_interval(tu_loop, 100, progress, NULL);
    ck_assert_ptr_nonnull(prog);
    weft_timer_unref(prog);
    tu_run(55000);
    weft_clear_timer(prog);
    weft_loop_run(tu_loop); /* its close phase */

    /* The children: the raw peers finished and found nothing wrong, the
     * killed one died of SIGKILL. */
    raw_report rep = {0};
    int status;
    if (C.raw_pid > 0) {
        ck_assert_int_eq(read(C.raw_pipe, &rep, sizeof(rep)),
                         (ssize_t)sizeof(rep));
        close(C.raw_pipe);
        ck_assert_int_eq(waitpid(C.raw_pid, &status, 0), C.raw_pid);
        CHECK(rep.failures == 0, "raw peers: %u failures, first: %s",
              rep.failures, rep.msg);
        CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0,
              "raw peer child status %#x", status);
    }
    if (C.kill_pid > 0) {
        close(kill_pipe);
        ck_assert_int_eq(waitpid(C.kill_pid, &status, 0), C.kill_pid);
        CHECK(C.killed, "the peer to kill was never mid-transfer");
        CHECK(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL,
              "killed peer status %#x", status);
    }

    /* Every connection: identified once by the server, closed exactly
     * once on each weft side, every byte of a clean close delivered. */
    ck_assert_uint_eq(C.accepted, C.total);
    ck_assert_uint_eq(C.srv_closed, C.total);
    ck_assert_uint_eq(C.cli_closed, C.n_weft);
    unsigned count[N_WEFT_ORDERS + 3] = {0};
    unsigned resets = 0, kills = 0, raw_clean = 0;
    uint64_t bytes = 0;
    for (unsigned id = 0; id < C.total; id++) {
        const plan *p = &C.plans[id];
        count[p->order]++;
        CHECK(C.srv_of_id[id] >= 0, "id %u (%s) never identified", id,
              order_name[p->order]);
        const side *sv = &C.srv[C.srv_of_id[id]];
        const side *cl = id < C.n_weft ? &C.cli[id] : NULL;
        ck_assert_uint_eq(sv->closes, 1);
        if (cl != NULL)
            ck_assert_uint_eq(cl->closes, 1);
        bytes += sv->recvd + (cl ? cl->recvd : 0);
        switch (p->order) {
        case O_CLIENT_FIRST:
        case O_SERVER_FIRST:
        case O_TOGETHER:
        case O_AUTO:
        case O_RAW_CLEAN:
            CHECK(!sv->had_error && sv->recvd == p->len[C2S] &&
                      sv->sent == p->len[S2C] && sv->peer_ended,
                  "id %u (%s) server: error %s, %llu/%u in, %llu/%u "
                  "out, ended %d",
                  id, order_name[p->order], weft_err_name(sv->err),
                  (unsigned long long)sv->recvd, p->len[C2S],
                  (unsigned long long)sv->sent, p->len[S2C], sv->peer_ended);
            if (cl != NULL)
                CHECK(!cl->had_error && cl->recvd == p->len[S2C] &&
                          cl->peer_ended,
                      "id %u (%s) client: error %s, %llu/%u in", id,
                      order_name[p->order], weft_err_name(cl->err),
                      (unsigned long long)cl->recvd, p->len[S2C]);
            raw_clean += p->order == O_RAW_CLEAN;
            break;
        case O_CLIENT_DESTROY:
            ck_assert(!cl->had_error && cl->recvd >= p->cut);
            break;
        case O_SERVER_DESTROY:
            ck_assert(!sv->had_error && sv->recvd >= p->cut);
            break;
        case O_RAW_RESET:
            /* The peer never sent FIN: only its RST can have ended this. */
            CHECK(sv->had_error &&
                      (sv->err == WEFT_ECONNRESET || sv->err == WEFT_EPIPE),
                  "id %u reset: server error %s", id, weft_err_name(sv->err));
            resets++;
            break;
        case O_RAW_KILLED:
            ck_assert(sv->recvd >= KILL_AFTER);
            kills++;
            break;
        }
    }
    if (C.raw_pid > 0) {
        ck_assert_uint_eq(rep.clean_ok, raw_clean);
        ck_assert_uint_eq(rep.resets, resets);
    }
    printf("churn seed %#llx: %u connections (%u weft-weft%s, %u raw clean, "
           "%u raw reset, %u killed); %llu bytes checked in weft, %llu by raw "
           "peers; orders cf/sf/tog/auto/cdes/sdes = %u/%u/%u/%u/%u/%u; "
           "%lu pauses, %lu idle timeouts, %lu bytes read as hex/base64, "
           "%u streams reused from their 'close'\n",
           (unsigned long long)C.seed, C.total, C.n_weft,
           o->unix_socket ? " over a Unix socket" : "", raw_clean, resets,
           kills, (unsigned long long)bytes, (unsigned long long)rep.bytes_in,
           count[O_CLIENT_FIRST], count[O_SERVER_FIRST], count[O_TOGETHER],
           count[O_AUTO], count[O_CLIENT_DESTROY], count[O_SERVER_DESTROY],
           C.pauses, C.timeouts, C.decoded, C.reused);
    fflush(stdout);
    /* Nothing was left to loop_close(): every handle went through its
     * close phase. */
    ck_assert(weft__q_empty(&tu_loop->handles));
    free(C.plans);
    free(C.cli);
    free(C.slots);
    free(C.srv);
    free(C.srv_of_id);
    free(C.buf);
}

START_TEST(churn_2000_weft_connections_lose_and_duplicate_no_byte)
{
    churn_opts o = {.seed = 0xc412u, .n_weft = 2000, .inflight = 200};
    churn_run(&o);
}
END_TEST

START_TEST(churn_over_a_unix_socket_loses_and_duplicates_no_byte)
{
    churn_opts o = {
        .seed = 0x51u, .n_weft = 500, .inflight = 100, .unix_socket = true};
    churn_run(&o);
}
END_TEST

START_TEST(raw_peers_reset_with_linger_0_close_every_stream_once)
{
    churn_opts o = {.seed = 0x2e5e7u, .n_raw = 600, .raw_inflight = 150};
    churn_run(&o);
}
END_TEST

START_TEST(peer_killed_mid_transfer_closes_every_stream_once)
{
    churn_opts o = {.seed = 0x4b111u, .n_kill = 64};
    churn_run(&o);
}
END_TEST

START_TEST(everything_at_once_weft_raw_resets_and_a_kill)
{
    churn_opts o = {.seed = 0xa11u,
                    .n_weft = 600,
                    .inflight = 150,
                    .n_raw = 300,
                    .raw_inflight = 100,
                    .n_kill = 32};
    churn_run(&o);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("churn");
    TCase *tc = tu_tcase("churn");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, churn_2000_weft_connections_lose_and_duplicate_no_byte);
    tcase_add_test(tc, churn_over_a_unix_socket_loses_and_duplicates_no_byte);
    tcase_add_test(tc, raw_peers_reset_with_linger_0_close_every_stream_once);
    tcase_add_test(tc, peer_killed_mid_transfer_closes_every_stream_once);
    tcase_add_test(tc, everything_at_once_weft_raw_resets_and_a_kill);
    suite_add_tcase(s, tc);
    return tu_run_suite(s);
}
