/*
 * stream.c - net.Stream: the read path, the write queue, end/destroy,
 * pause/resume, idle timeouts, readyState. Connecting (lookup, attempts,
 * Happy Eyeballs) is connect.c's; it hands over the winner's fd.
 *
 * Knows nothing of epoll (it watches its fd through weft__io) and reads
 * into the loop's shared buffer, lending it to 'data' listeners.
 *
 * State is a set of flags; readyState is derived from them, never stored:
 *
 *   flags                          readyState
 *   CONNECTING                     opening
 *   CONNECTED, READABLE+WRITABLE   open
 *   CONNECTED, READABLE only       readOnly   (we called end())
 *   CONNECTED, WRITABLE only       writeOnly  (peer's FIN, allowHalfOpen)
 *   anything else                  closed
 *
 * Event order on one connection, pinned by tests/test_stream.c:
 *
 *   connect, (data | drain | timeout)*, [data (decoder flush)], end,
 *   (drain | timeout)*, [error], close
 *
 * 'close' is always last and comes exactly once per connection; it is
 * emitted from the pending phase, after the fd is closed. A stream is
 * freed after its 'close' unless a 'close' listener connected it again.
 */
#include "internal.h"
#include "tls.h"

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

/*
 * Full reads per readable event. One short read means the socket is
 * empty; a few full ones in a row let a bulk sender make progress
 * without starving other streams (h2o's per-socket budget).
 */
#define READ_BUDGET 4

/* Chunks gathered per sendmsg; well under IOV_MAX (1024 on Linux). */
#define WRITE_IOV 64

/*
 * Small queued writes are copied into chunks at least this big, so a
 * stream of small writes behind backpressure costs one allocation per
 * 4 KiB instead of one per write.
 */
#define CHUNK_MIN 4096

enum stream_flag {
    F_CONNECTING = 1u << 0,
    F_CONNECTED = 1u << 1,
    F_READABLE = 1u << 2,
    F_WRITABLE = 1u << 3,
    F_ENDING = 1u << 4, /* end() called; FIN once the queue drains */
    F_FIN_SENT = 1u << 5,
    F_PEER_ENDED = 1u << 6,
    F_PAUSED = 1u << 7,
    F_DESTROYED = 1u << 8, /* fd closed, 'close' on its way */
    F_HALF_OPEN = 1u << 9, /* allowHalfOpen */
    F_HAD_ERROR = 1u << 10,
    F_NEED_DRAIN = 1u << 11,
    F_NODELAY = 1u << 12,
    F_KEEPALIVE = 1u << 13,
    F_IN_CLOSE = 1u << 14, /* 'close' listeners running: connect() ok */
    F_UNIX = 1u << 15,
    F_TIMED_OUT = 1u << 16, /* 'timeout' fired; re-armed on activity */
    F_TLS_WANTED = 1u << 17, /* setSecure() before connect */
    F_HANDSHAKING = 1u << 18,
    F_SECURE = 1u << 19, /* handshake done: 'secure' emitted */
    F_NOTIFY_PENDING = 1u << 20, /* close_notify waits for room */
    F_END_PENDING = 1u << 21, /* paused by the last 'data': 'end' waits */
    F_TLS_OUT = 1u << 22, /* ciphertext held by the TLS BIO waits for room */
    F_ADOPTED = 1u << 23,    /* weft_stream_open(): no connect, no server */
    F_TLS_SERVER = 1u << 24, /* an adopted stream given server creds */
};

/* Options that survive a reconnect of the same stream. */
#define F_STICKY (F_HALF_OPEN | F_NODELAY | F_KEEPALIVE | F_TLS_WANTED)

enum stream_bits {
    B_CONN = 1,      /* connect.c asked for the pending phase */
    B_CONN_FREE = 2, /* the finished connect's memory can go now */
    B_CLOSE = 4,     /* emit [error,] close */
    B_HANDSHAKE = 8, /* start or continue the TLS handshake */
    B_READ = 16,     /* TLS holds plaintext the fd will not announce */
    B_END = 32,      /* resumed with 'end' held back */
    B_DRAIN = 64,    /* uncork() emptied the queue: 'drain' is owed */
    B_OPEN = 128,    /* weft_stream_open(): start watching the fd */
};

/*
 * While corked, write() answers 1 until this much waits in the queue, as
 * Node's writable does under its default highWaterMark; past it, 0 and a
 * 'drain' after uncork() has flushed.
 */
#define CORK_HIGH_WATER (16 * 1024)

/*
 * TLS records read per readable event (each up to 16 KiB). Past this the
 * stream reads again from the pending phase rather than starving others.
 */
#define TLS_READ_BUDGET 16

/*
 * A TLS connection with no reads or writes for this long gives OpenSSL's
 * record buffers back (about 34 KiB; decision 4). Freeing them per record
 * (SSL_MODE_RELEASE_BUFFERS) cost 2-3% of the CPU of small exchanges;
 * after a second of silence the next record's allocation is noise.
 */
#define TLS_IDLE_MS 1000

enum stream_event {
#define WEFT_STR_EV_(ev, type) EV_##ev,
    WEFT_STREAM_EVENT_MAP(WEFT_STR_EV_)
#undef WEFT_STR_EV_
};

typedef struct chunk {
    struct chunk *next;
    size_t off, len, cap;
    char data[];
} chunk;

/*
 * What most streams never need lives here, allocated on first use, so an
 * idle connection costs only struct weft_stream (decision 4).
 */
typedef struct stream_extra {
    weft_stream *s;
    weft__timer idle;
    uint64_t timeout_ms;
    uint64_t last_active;
    weft__conn *conn; /* connect.c's, from connect() to the pending phase */
    char *errmsg;
    char *remote;
    int remote_port;
    int remote_family;
    char *local;
    int local_port;
    unsigned keepalive_s;
    weft_credentials *creds; /* TLS: held from setSecure() to teardown */
    char *servername;        /* TLS client: SNI and hostname check */
    weft__later read_again;  /* TLS: read budget spent, records wait */
    /* TLS: the handshake's deadline until 'secure', then the check that
     * gives an idle connection's record buffers back */
    weft__timer tls_timer;
    uint64_t tls_active; /* loop time of the last TLS read or write */
} stream_extra;

struct weft_stream {
    weft__handle h;
    weft__io io;
    weft__emitter em;
    uint32_t flags;
    int err;
    weft_server *server;
    void *data;
    chunk *wq_head, *wq_tail;
    size_t wq_bytes;
    uint64_t bytes_read, bytes_written;
    stream_extra *x;
    weft__tls *tls;
    /*
     * Readiness each side waits for. Plain: READ and WRITE. Under TLS a
     * read may need the socket writable and a write may need it
     * readable (tls.h), and the handshake needs whatever OpenSSL asks.
     */
    uint8_t rwant, wwant, hswant;
    uint8_t corked; /* cork() depth: writes wait in the queue */
    weft__decoder dec;
};

static void on_io(weft__io *io, unsigned events);
static void drive_handshake(weft_stream *s, unsigned events);
static void tls_touch(weft_stream *s);
static void flush(weft_stream *s);
static void teardown(weft_stream *s);

/* ---- helpers --------------------------------------------------------- */

static stream_extra *extra(weft_stream *s)
{
    if (s->x == NULL) {
        s->x = weft__calloc(1, sizeof(*s->x));
        if (s->x != NULL)
            s->x->s = s;
    }
    return s->x;
}

static bool has(const weft_stream *s, uint32_t f)
{
    return (s->flags & f) != 0;
}

static void update_io(weft_stream *s);

/*
 * The one way a stream fails: remember the error and its Node-style
 * message ("connect ECONNREFUSED 127.0.0.1:8124"), close everything now,
 * and let the pending phase emit 'error' then 'close'(true). Nothing is
 * emitted here, so this is safe inside any API call.
 */
static void fail(weft_stream *s, int err, const char *syscall,
                 const char *detail)
{
    if (has(s, F_DESTROYED))
        return;
    s->err = err;
    s->flags |= F_HAD_ERROR;
    stream_extra *x = extra(s);
    if (x != NULL) {
        free(x->errmsg);
        size_t n = strlen(syscall) + (detail ? strlen(detail) : 0) + 40;
        x->errmsg = weft__malloc(n);
        if (x->errmsg != NULL)
            snprintf(x->errmsg, n, "%s %s%s%s", syscall, weft_err_name(err),
                     detail ? " " : "", detail ? detail : "");
    }
    teardown(s);
    weft__handle_defer(&s->h, B_CLOSE);
}

static void touch(weft_stream *s)
{
    stream_extra *x = s->x;
    if (x == NULL || x->timeout_ms == 0)
        return;
    weft_loop *loop = s->h.loop;
    x->last_active = loop->now;
    if (has(s, F_TIMED_OUT)) {
        s->flags &= ~F_TIMED_OUT;
        weft__timer_arm(loop, &x->idle, weft__deadline(loop->now, x->timeout_ms));
    }
}

/* ---- teardown and close ---------------------------------------------- */

static void free_queue(weft_stream *s)
{
    chunk *c = s->wq_head;
    while (c != NULL) {
        chunk *next = c->next;
        free(c);
        c = next;
    }
    s->wq_head = s->wq_tail = NULL;
    s->wq_bytes = 0;
}

/* Stops connecting; the memory goes now, or from the pending phase when
 * events of other attempts may still wait in this turn's poll batch. */
static void free_connect(weft_stream *s)
{
    stream_extra *x = s->x;
    if (x == NULL || x->conn == NULL)
        return;
    if (weft__conn_stop(x->conn)) {
        weft__conn_free(x->conn);
        x->conn = NULL;
    } else {
        weft__handle_defer(&s->h, B_CONN_FREE);
    }
}

/* Closes the fd and drops every resource; 'close' is the caller's job. */
static void teardown(weft_stream *s)
{
    s->flags |= F_DESTROYED;
    /* F_ENDING and F_FIN_SENT stay: a write after end() is reported as
     * such even once the stream has closed, as Node does. */
    s->flags &= ~(F_CONNECTING | F_CONNECTED | F_READABLE | F_WRITABLE |
                  F_NEED_DRAIN);
    free_connect(s);
    if (s->tls != NULL) {
        weft__tls_free(s->tls);
        s->tls = NULL;
    }
    s->flags &= ~(F_TLS_WANTED | F_HANDSHAKING | F_SECURE);
    if (s->x != NULL) {
        if (s->x->creds != NULL)
            weft_credentials_unref(s->x->creds);
        s->x->creds = NULL;
        free(s->x->servername);
        s->x->servername = NULL;
    }
    weft__io_close(s->h.loop, &s->io);
    free_queue(s);
    s->corked = 0;
    if (s->x != NULL) {
        weft__timer_disarm(s->h.loop, &s->x->idle);
        weft__timer_disarm(s->h.loop, &s->x->tls_timer);
        weft__later_cancel(&s->x->read_again);
    }
}

static void emit_close(weft_stream *s)
{
    bool had_error = has(s, F_HAD_ERROR);
    if (had_error && s->err != 0) {
        const char *msg = s->x && s->x->errmsg ? s->x->errmsg
                                               : weft_strerror(s->err);
        if (weft__emitter_has(&s->em, EV_error))
            WEFT__EMIT(&s->em, EV_error, weft_stream_error_cb, s, s->err, msg);
        else
            weft__unhandled_error("stream", s, s->err, msg);
    }
    weft_server *server = s->server;
    s->server = NULL;
    if (server != NULL)
        weft__server_stream_closed(server);
    weft__handle_stop(&s->h);
    s->flags |= F_IN_CLOSE;
    WEFT__EMIT(&s->em, EV_close, weft_stream_close_cb, s, had_error);
    s->flags &= ~F_IN_CLOSE;
    /* A 'close' listener may have connected the stream again. */
    if (!has(s, F_CONNECTING | F_CONNECTED) && !(s->h.bits & B_CLOSE))
        weft__handle_close(&s->h);
}

void weft_stream_destroy(weft_stream *s)
{
    if (s == NULL || has(s, F_DESTROYED))
        return;
    teardown(s);
    weft__handle_defer(&s->h, B_CLOSE);
}

int weft_stream_reset_and_destroy(weft_stream *s)
{
    if (s == NULL)
        return WEFT_EINVAL;
    if (has(s, F_UNIX))
        return WEFT_ENOTSUP;
    if (has(s, F_CONNECTED) && s->io.fd >= 0) {
        /* A linger of 0 makes close() send RST and drop what the kernel
         * still holds, instead of a FIN after it. */
        struct linger l = {.l_onoff = 1, .l_linger = 0};
        setsockopt(s->io.fd, SOL_SOCKET, SO_LINGER, &l, sizeof(l));
    }
    weft_stream_destroy(s);
    return 0;
}

/* Both directions are finished: a clean close. */
static void maybe_finish(weft_stream *s)
{
    if (has(s, F_PEER_ENDED) && has(s, F_FIN_SENT))
        weft_stream_destroy(s);
}

static void send_fin(weft_stream *s)
{
    s->flags &= ~(F_ENDING | F_NOTIFY_PENDING);
    if (s->tls != NULL) {
        /* close_notify first, so the peer can tell our end from a cut. */
        int err = weft__tls_shutdown(s->tls);
        if (err == WEFT_EAGAIN) {
            /* No room for the alert: OpenSSL keeps it; the FIN follows
             * once it is out (on_io calls flush, which calls us). */
            s->flags |= F_ENDING | F_NOTIFY_PENDING;
            s->wwant = WEFT__IO_WRITE;
            update_io(s);
            return;
        }
        if (err < 0) {
            fail(s, err, "write", weft__tls_error(s->tls));
            return;
        }
    }
    /* A TLS peer that has ended already: maybe_finish() closes the fd
     * right below, and close() sends the FIN; shutdown() would be one
     * more syscall per connection for nothing. */
    bool closing_now = s->tls != NULL && has(s, F_PEER_ENDED);
    if (!closing_now && shutdown(s->io.fd, SHUT_WR) < 0 && errno != ENOTCONN) {
        fail(s, weft__err(errno), "shutdown", NULL);
        return;
    }
    s->flags |= F_FIN_SENT;
    maybe_finish(s);
}

/* ---- the read path --------------------------------------------------- */

static void emit_data(weft_stream *s, const char *buf, size_t n)
{
    WEFT__EMIT(&s->em, EV_data, weft_stream_data_cb, s, buf, n);
}

/* Decodes `n` bytes (n == 0 with `end`: flushes) and emits the text. */
static void emit_decoded(weft_stream *s, const char *buf, size_t n, bool end)
{
    weft_loop *loop = s->h.loop;
    size_t need = weft__decode_max(&s->dec, n) + 1;
    if (loop->dbuf_size < need) {
        size_t size = need < 3 * WEFT__READ_BUF + 64 ? 3 * WEFT__READ_BUF + 64
                                                     : need;
        char *d = weft__realloc(loop->dbuf, size);
        if (d == NULL) {
            fail(s, WEFT_ENOMEM, "decode", NULL);
            return;
        }
        loop->dbuf = d;
        loop->dbuf_size = size;
    }
    size_t m = end ? weft__decode_end(&s->dec, loop->dbuf)
                   : weft__decode(&s->dec, (const uint8_t *)buf, n,
                                  loop->dbuf);
    if (m == 0)
        return;
    loop->dbuf[m] = '\0';
    emit_data(s, loop->dbuf, m);
}

static void emit_end(weft_stream *s)
{
    WEFT__EMIT(&s->em, EV_end, weft_stream_end_cb, s);
    if (has(s, F_DESTROYED))
        return;
    /* Node ends our side after the 'end' listeners, so a write made in
     * one of them (the seed's "goodbye") still goes out first. */
    if (!has(s, F_HALF_OPEN))
        weft_stream_end(s, NULL, 0);
    if (!has(s, F_DESTROYED))
        maybe_finish(s);
}

static void on_eof(weft_stream *s)
{
    s->flags &= ~F_READABLE;
    s->flags |= F_PEER_ENDED;
    update_io(s);
    if (s->dec.enc != WEFT__ENC_RAW)
        emit_decoded(s, NULL, 0, true);
    if (has(s, F_DESTROYED))
        return;
    /* The decoder's last 'data' may have paused the stream: no 'end'
     * while paused; resume() brings it. */
    if (has(s, F_PAUSED)) {
        s->flags |= F_END_PENDING;
        return;
    }
    emit_end(s);
}

/* One read through the transport: bytes, 0 at a clean end, or -errno /
 * WEFT_EAGAIN (with the wait recorded in rwant). */
static ssize_t transport_read(weft_stream *s, char *buf, size_t len)
{
    if (s->tls != NULL) {
        unsigned want = 0;
        ssize_t n = weft__tls_read(s->tls, buf, len, &want);
        if (n == WEFT_EAGAIN)
            s->rwant = (uint8_t)want;
        tls_touch(s);
        return n;
    }
    ssize_t n = read(s->io.fd, buf, len);
    if (n >= 0)
        return n;
    if (errno == EAGAIN || errno == EWOULDBLOCK)
        return WEFT_EAGAIN;
    return errno == EINTR ? WEFT_EINTR : weft__err(errno);
}

static void do_read(weft_stream *s)
{
    weft_loop *loop = s->h.loop;
    int budget = s->tls ? TLS_READ_BUDGET : READ_BUDGET;
    for (int i = 0; i < budget; i++) {
        /* HANDSHAKING: a 'data' listener called setSecure (STARTTLS);
         * what the socket holds now is the handshake's. */
        if (!has(s, F_READABLE) ||
            has(s, F_PAUSED | F_DESTROYED | F_HANDSHAKING))
            return;
        ssize_t n = transport_read(s, loop->rbuf, WEFT__READ_BUF);
        if (n > 0) {
            s->bytes_read += (uint64_t)n;
            touch(s);
            if (s->dec.enc == WEFT__ENC_RAW) {
                loop->rbuf[n] = '\0';
                emit_data(s, loop->rbuf, (size_t)n);
            } else {
                emit_decoded(s, loop->rbuf, (size_t)n, false);
            }
            /* A short read emptied the socket; under TLS, unless
             * OpenSSL still holds records (or a result it owes). */
            if (n < WEFT__READ_BUF &&
                (s->tls == NULL || !weft__tls_pending(s->tls)))
                return;
            continue;
        }
        if (n == 0) {
            on_eof(s);
            return;
        }
        if (n == WEFT_EAGAIN) {
            update_io(s);
            return;
        }
        if (n == WEFT_EINTR)
            continue;
        fail(s, (int)n, "read", s->tls ? weft__tls_error(s->tls) : NULL);
        return;
    }
    /* Budget spent: records OpenSSL already holds will not make the fd
     * readable again, so come back for them, but after the next poll: a
     * peer that keeps sending must not keep the loop from polling. */
    if (s->tls != NULL && weft__tls_pending(s->tls) && s->x != NULL)
        weft__later_add(&s->x->read_again, &s->h, B_READ);
}

/* ---- the write path -------------------------------------------------- */

static void update_io(weft_stream *s)
{
    if (has(s, F_DESTROYED) || s->io.fd < 0)
        return;
    unsigned want = 0;
    if (has(s, F_CONNECTING)) {
        want = WEFT__IO_WRITE;
    } else if (has(s, F_HANDSHAKING)) {
        want = s->hswant;
    } else if (has(s, F_CONNECTED)) {
        if (has(s, F_READABLE) && !has(s, F_PAUSED))
            want |= s->rwant;
        if ((s->wq_head != NULL && s->corked == 0) ||
            has(s, F_NOTIFY_PENDING | F_TLS_OUT))
            want |= s->wwant;
    }
    int err = weft__io_set(s->h.loop, &s->io, want);
    if (err < 0)
        fail(s, err, "epoll_ctl", NULL);
}

/*
 * Queues the pieces past their first `skip` bytes as one contiguous run:
 * into the tail chunk if it has room, else into one new chunk, so that a
 * TLS flush makes one record of it and a plain flush one iovec entry.
 * On failure nothing is queued. A write that answers 0 because of it
 * sets F_NEED_DRAIN itself.
 */
static int enqueue_rest(weft_stream *s, const weft_buf *bufs, size_t n,
                        size_t skip)
{
    size_t rest = 0;
    for (size_t i = 0; i < n; i++)
        rest += bufs[i].len;
    rest -= skip;
    chunk *t = s->wq_tail;
    chunk *c = t;
    if (t == NULL || t->cap - t->len < rest) {
        size_t cap = rest < CHUNK_MIN ? CHUNK_MIN : rest;
        c = weft__malloc(sizeof(*c) + cap);
        if (c == NULL)
            return WEFT_ENOMEM;
        c->next = NULL;
        c->off = 0;
        c->len = 0;
        c->cap = cap;
    }
    for (size_t i = 0; i < n; i++) {
        size_t len = bufs[i].len;
        if (skip >= len) {
            skip -= len;
            continue;
        }
        memcpy(c->data + c->len, (const char *)bufs[i].base + skip,
               len - skip);
        c->len += len - skip;
        skip = 0;
    }
    if (c != t) {
        if (t != NULL)
            t->next = c;
        else
            s->wq_head = c;
        s->wq_tail = c;
    }
    s->wq_bytes += rest;
    return 0;
}

static int enqueue(weft_stream *s, const char *data, size_t len)
{
    weft_buf b = {data, len};
    return enqueue_rest(s, &b, 1, 0);
}

static void consume(weft_stream *s, size_t n)
{
    s->wq_bytes -= n;
    while (n > 0) {
        chunk *c = s->wq_head;
        size_t left = c->len - c->off;
        if (n < left) {
            c->off += n;
            return;
        }
        n -= left;
        s->wq_head = c->next;
        if (s->wq_head == NULL)
            s->wq_tail = NULL;
        free(c);
    }
}

/* Writes as much of the queue as the kernel takes, then drain and FIN. */
/* TLS has no writev: records are written one chunk at a time. */
static bool flush_tls(weft_stream *s)
{
    tls_touch(s);
    if (has(s, F_TLS_OUT)) { /* held ciphertext goes first */
        unsigned want = 0;
        int r = weft__tls_flush(s->tls, &want);
        if (r == WEFT_EAGAIN) {
            s->wwant = (uint8_t)want;
            return true;
        }
        if (r < 0) {
            fail(s, r, "write", weft__tls_error(s->tls));
            return false;
        }
        s->flags &= ~F_TLS_OUT;
    }
    while (s->wq_head != NULL) {
        chunk *c = s->wq_head;
        unsigned want = 0;
        ssize_t w = weft__tls_write(s->tls, c->data + c->off, c->len - c->off,
                                    &want);
        if (w == WEFT_EAGAIN) {
            s->wwant = (uint8_t)want;
            return true;
        }
        if (w < 0) {
            fail(s, (int)w, "write", weft__tls_error(s->tls));
            return false;
        }
        s->wwant = WEFT__IO_WRITE;
        s->bytes_written += (uint64_t)w;
        touch(s);
        consume(s, (size_t)w);
    }
    return true;
}

/* Writes as much of the queue as the kernel takes and sets the write
 * interest; false if the stream failed. Emits nothing. */
static bool write_queue(weft_stream *s)
{
    if (s->tls != NULL && !flush_tls(s))
        return false;
    while (s->tls == NULL && s->wq_head != NULL) {
        struct iovec iov[WRITE_IOV];
        int n = 0;
        size_t total = 0;
        for (chunk *c = s->wq_head; c != NULL && n < WRITE_IOV; c = c->next) {
            iov[n].iov_base = c->data + c->off;
            iov[n].iov_len = c->len - c->off;
            total += iov[n].iov_len;
            n++;
        }
        struct msghdr msg = {.msg_iov = iov, .msg_iovlen = (size_t)n};
        ssize_t w = sendmsg(s->io.fd, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                break;
            fail(s, weft__err(errno), "write", NULL);
            return false;
        }
        s->bytes_written += (uint64_t)w;
        touch(s);
        consume(s, (size_t)w);
        if ((size_t)w < total)
            break;
    }
    update_io(s);
    return !has(s, F_DESTROYED);
}

/* 'drain' for an empty queue, if a write answered 0 since the last one.
 * As Node: none once end() was called; nothing more can be written, so
 * there is nothing to resume. */
static void emit_drain(weft_stream *s)
{
    if (has(s, F_NEED_DRAIN) && !has(s, F_ENDING | F_FIN_SENT)) {
        s->flags &= ~F_NEED_DRAIN;
        WEFT__EMIT(&s->em, EV_drain, weft_stream_drain_cb, s);
    }
}

/* Writes the queue; once it is empty, 'drain' (if owed) and the FIN. */
static void flush(weft_stream *s)
{
    if (!write_queue(s) || s->wq_head != NULL || has(s, F_TLS_OUT))
        return;
    emit_drain(s);
    if (has(s, F_DESTROYED) || s->wq_head != NULL)
        return;
    if (has(s, F_ENDING))
        send_fin(s);
}

/* What a send()/sendmsg() result `w` means: the bytes the kernel took,
 * 0 when the socket had no room, or -1 when the stream failed ('error'
 * and 'close' are on their way). */
static ssize_t taken(weft_stream *s, ssize_t w)
{
    if (w >= 0)
        return w;
    if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
        return 0;
    fail(s, weft__err(errno), "write", NULL);
    return -1;
}

/* Why a write cannot be taken now, or 0. */
static int write_refused(const weft_stream *s)
{
    if (!has(s, F_WRITABLE))
        return has(s, F_ENDING | F_FIN_SENT) ? WEFT_EWRITEAFTEREND
                                             : WEFT_ESTATE;
    return 0;
}

int weft_stream_write(weft_stream *s, const void *data, size_t len)
{
    if (s == NULL || (data == NULL && len > 0))
        return WEFT_EINVAL;
    int refused = write_refused(s);
    if (refused < 0)
        return refused;
    if (s->corked > 0 && !has(s, F_CONNECTING | F_HANDSHAKING)) {
        /* Held for uncork(); true under the high-water mark, as Node. */
        if (len > 0 && enqueue(s, data, len) < 0)
            return WEFT_ENOMEM;
        if (s->wq_bytes < CORK_HIGH_WATER)
            return 1;
        s->flags |= F_NEED_DRAIN;
        return 0;
    }
    if (has(s, F_CONNECTING | F_HANDSHAKING) || s->wq_head != NULL) {
        if (len > 0 && enqueue(s, data, len) < 0)
            return WEFT_ENOMEM;
        s->flags |= F_NEED_DRAIN;
        return 0;
    }
    if (len == 0)
        return 1;
    ssize_t w;
    if (s->tls != NULL) {
        unsigned want = 0;
        tls_touch(s);
        w = weft__tls_write(s->tls, data, len, &want);
        if (w == WEFT_EAGAIN) {
            s->wwant = (uint8_t)want;
            w = 0;
        } else if (w < 0) {
            fail(s, (int)w, "write", weft__tls_error(s->tls));
            return 0;
        }
    } else {
        w = taken(s, send(s->io.fd, data, len, MSG_NOSIGNAL | MSG_DONTWAIT));
        if (w < 0)
            return 0;
    }
    s->bytes_written += (uint64_t)w;
    touch(s);
    if ((size_t)w == len)
        return 1;
    if (enqueue(s, (const char *)data + w, len - (size_t)w) < 0) {
        /* Part of the data is in the kernel and the rest is lost: the
         * byte stream is broken, so the stream cannot go on. */
        fail(s, WEFT_ENOMEM, "write", NULL);
        return WEFT_ENOMEM;
    }
    s->flags |= F_NEED_DRAIN;
    update_io(s);
    return 0;
}

int weft_stream_writev(weft_stream *s, const weft_buf *bufs, size_t n)
{
    if (s == NULL || (bufs == NULL && n > 0))
        return WEFT_EINVAL;
    size_t total = 0;
    for (size_t i = 0; i < n; i++) {
        if (bufs[i].base == NULL && bufs[i].len > 0)
            return WEFT_EINVAL;
        if (bufs[i].len > SIZE_MAX - total)
            return WEFT_EINVAL;
        total += bufs[i].len;
    }
    int refused = write_refused(s);
    if (refused < 0)
        return refused;
    if (total == 0)
        return weft_stream_write(s, NULL, 0); /* the same answer */
    /* TLS, nothing queued: gathered into one chunk and flushed at once,
     * so the pieces make one record (OpenSSL has no gather write). */
    if (s->tls != NULL && s->wq_head == NULL && s->corked == 0 &&
        !has(s, F_CONNECTING | F_HANDSHAKING)) {
        if (enqueue_rest(s, bufs, n, 0) < 0)
            return WEFT_ENOMEM; /* nothing was queued or sent */
        if (!write_queue(s))
            return 0;
        if (s->wq_head == NULL)
            return 1;
        s->flags |= F_NEED_DRAIN;
        return 0;
    }
    /* Queued, connecting, corked, or too many pieces for one sendmsg: the
     * pieces in turn, which is the same byte stream; the result is the
     * last one's (0 as soon as anything was queued, since the rest queues
     * behind). */
    if (s->tls != NULL || n > WRITE_IOV ||
        has(s, F_CONNECTING | F_HANDSHAKING) || s->wq_head != NULL ||
        s->corked > 0) {
        int r = 1;
        for (size_t i = 0; i < n; i++) {
            if (bufs[i].len == 0)
                continue;
            r = weft_stream_write(s, bufs[i].base, bufs[i].len);
            if (r < 0 || has(s, F_DESTROYED))
                return r < 0 ? r : 0;
        }
        return r;
    }
    struct iovec iov[WRITE_IOV];
    for (size_t i = 0; i < n; i++) {
        iov[i].iov_base = (void *)bufs[i].base;
        iov[i].iov_len = bufs[i].len;
    }
    struct msghdr msg = {.msg_iov = iov, .msg_iovlen = n};
    ssize_t w = taken(s, sendmsg(s->io.fd, &msg, MSG_NOSIGNAL | MSG_DONTWAIT));
    if (w < 0)
        return 0;
    s->bytes_written += (uint64_t)w;
    touch(s);
    if ((size_t)w == total)
        return 1;
    /* Queue what the kernel left, past the `w` bytes it took. */
    if (enqueue_rest(s, bufs, n, (size_t)w) < 0) {
        /* Part is in the kernel and the rest is lost: the stream cannot
         * go on (as write()). */
        fail(s, WEFT_ENOMEM, "write", NULL);
        return WEFT_ENOMEM;
    }
    s->flags |= F_NEED_DRAIN;
    update_io(s);
    return 0;
}

/* Encodes into a temporary buffer unless the bytes go out as they are. */
static int with_encoded(weft_stream *s, const char *str, const char *encoding,
                        int (*fn)(weft_stream *, const void *, size_t))
{
    if (s == NULL || str == NULL)
        return WEFT_EINVAL;
    int enc = weft__enc_parse(encoding ? encoding : "utf8");
    if (enc < 0)
        return enc;
    size_t len = strlen(str);
    if (enc == WEFT__ENC_UTF8 || enc == WEFT__ENC_ASCII ||
        enc == WEFT__ENC_LATIN1)
        return fn(s, str, len);
    uint8_t stackbuf[512];
    size_t max = weft__encode_max(enc, len);
    uint8_t *buf = max <= sizeof(stackbuf) ? stackbuf : weft__malloc(max);
    if (buf == NULL)
        return WEFT_ENOMEM;
    size_t n = weft__encode(enc, str, len, buf);
    int r = fn(s, buf, n);
    if (buf != stackbuf)
        free(buf);
    return r;
}

int weft_stream_write_string(weft_stream *s, const char *str,
                             const char *encoding)
{
    return with_encoded(s, str, encoding, weft_stream_write);
}

int weft_stream_end(weft_stream *s, const void *data, size_t len)
{
    if (s == NULL || (data == NULL && len > 0))
        return WEFT_EINVAL;
    if (!has(s, F_WRITABLE)) {
        if (has(s, F_ENDING | F_FIN_SENT))
            return len > 0 ? WEFT_EWRITEAFTEREND : 0;
        /* Destroyed without end(): a bare end() has nothing to do (as
         * Node), but data would be dropped: say so, as write() does. */
        return has(s, F_DESTROYED) && len == 0 ? 0 : WEFT_ESTATE;
    }
    if (len > 0) {
        int r = weft_stream_write(s, data, len);
        if (r < 0)
            return r;
        if (has(s, F_DESTROYED))
            return 0;
    }
    s->flags &= ~F_WRITABLE;
    s->flags |= F_ENDING;
    /* As Node, end() uncorks whatever the depth. */
    bool was_corked = s->corked > 0;
    s->corked = 0;
    if (!has(s, F_CONNECTED) || has(s, F_HANDSHAKING))
        return 0;
    if (was_corked && s->wq_head != NULL && !write_queue(s))
        return 0;
    if (s->wq_head == NULL)
        send_fin(s);
    return 0;
}

int weft_stream_cork(weft_stream *s)
{
    if (s == NULL || s->corked == UINT8_MAX)
        return WEFT_EINVAL;
    if (!has(s, F_WRITABLE))
        return 0; /* nothing more can be written: nothing to hold */
    s->corked++;
    return 0;
}

void weft_stream_uncork(weft_stream *s)
{
    if (s == NULL || s->corked == 0 || --s->corked > 0)
        return;
    if (!has(s, F_CONNECTED) || has(s, F_HANDSHAKING) || s->wq_head == NULL)
        return; /* connect() or the handshake's end flushes the queue */
    /* One sendmsg for everything held. 'drain', if a held write answered
     * 0, comes from the pending phase: never from inside this call. */
    if (write_queue(s) && s->wq_head == NULL && has(s, F_NEED_DRAIN))
        weft__handle_defer(&s->h, B_DRAIN);
}

int weft_stream_corked(const weft_stream *s)
{
    return s != NULL ? s->corked : 0;
}

int weft_stream_end_string(weft_stream *s, const char *str,
                           const char *encoding)
{
    if (str == NULL)
        return weft_stream_end(s, NULL, 0);
    return with_encoded(s, str, encoding, weft_stream_end);
}

/* ---- connect ---------------------------------------------------------- */

static void apply_options(weft_stream *s)
{
    if (has(s, F_UNIX) || s->io.fd < 0)
        return;
    int on = 1;
    if (has(s, F_NODELAY))
        setsockopt(s->io.fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof(on));
    if (has(s, F_KEEPALIVE)) {
        setsockopt(s->io.fd, SOL_SOCKET, SO_KEEPALIVE, &on, sizeof(on));
        if (s->x != NULL && s->x->keepalive_s > 0) {
            int idle = (int)s->x->keepalive_s;
            setsockopt(s->io.fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle,
                       sizeof(idle));
        }
    }
}

static void start_tls(weft_stream *s);

static void connected(weft_stream *s, const char *host)
{
    s->flags &= ~F_CONNECTING;
    s->flags |= F_CONNECTED;
    stream_extra *x = s->x;
    /* A TLS client names the host it dialled (SNI, hostname check);
     * setSecure() may come later, so keep the name now. */
    if (!has(s, F_UNIX) && x->servername == NULL && host[0] != '\0')
        x->servername = weft__strdup(host);
    free_connect(s);
    apply_options(s);
    /* setTimeout() is sticky like the socket options: a stream reused
     * from its 'close' keeps its idle timeout (teardown disarmed it). */
    if (x->timeout_ms > 0) {
        s->flags &= ~F_TIMED_OUT;
        x->last_active = s->h.loop->now;
        weft__timer_arm(s->h.loop, &x->idle,
                        weft__deadline(x->last_active, x->timeout_ms));
    }
    if (has(s, F_TLS_WANTED))
        start_tls(s);
    update_io(s);
    if (has(s, F_DESTROYED))
        return;
    WEFT__EMIT(&s->em, EV_connect, weft_stream_connect_cb, s);
    if (has(s, F_DESTROYED) || has(s, F_HANDSHAKING))
        return;
    if (s->wq_head != NULL && s->corked == 0)
        flush(s);
    else if (has(s, F_ENDING))
        send_fin(s);
}

void weft__stream_conn_won(weft_stream *s, weft__io *io, const char *host)
{
    weft__io_take(&s->io, io, on_io);
    connected(s, host);
}

void weft__stream_conn_failed(weft_stream *s, int err, const char *message)
{
    if (has(s, F_DESTROYED))
        return;
    fail(s, err, "connect", NULL);
    stream_extra *x = s->x;
    if (x != NULL && message != NULL) {
        char *m = weft__strdup(message);
        if (m != NULL) {
            free(x->errmsg);
            x->errmsg = m;
        }
    }
}

void weft__stream_conn_defer(weft_stream *s)
{
    weft__handle_defer(&s->h, B_CONN);
}

static void on_io(weft__io *io, unsigned events)
{
    weft_stream *s = WEFT__CONTAINER_OF(io, weft_stream, io);
    if (has(s, F_HANDSHAKING)) {
        drive_handshake(s, events);
        return;
    }
    if ((events & s->wwant) &&
        ((s->wq_head != NULL && s->corked == 0) ||
         has(s, F_NOTIFY_PENDING | F_TLS_OUT))) {
        flush(s);
        if (has(s, F_DESTROYED))
            return;
    }
    if (events & s->rwant)
        do_read(s);
}

/* May `s` start a connection now? New, or inside its own 'close'. */
static int prepare_connect(weft_stream *s)
{
    if (has(s, F_CONNECTING | F_CONNECTED))
        return WEFT_ESTATE;
    if (has(s, F_DESTROYED) && !has(s, F_IN_CLOSE))
        return WEFT_ESTATE;
    if (s->server != NULL)
        return WEFT_ESTATE;
    if (extra(s) == NULL)
        return WEFT_ENOMEM;
    /* Reused from its 'close' (the pending phase): the last connect's
     * memory may still wait for B_CONN_FREE. */
    weft__conn_free(s->x->conn);
    s->x->conn = NULL;
    return 0;
}

int weft_stream_connect_options(weft_stream *s,
                                const weft_connect_options *o)
{
    if (s == NULL || o == NULL)
        return WEFT_EINVAL;
    int err = prepare_connect(s);
    if (err < 0)
        return err;
    weft__conn *c;
    err = weft__conn_new(s, o, &c);
    if (err < 0)
        return err;
    if (o->no_delay)
        s->flags |= F_NODELAY;
    if (o->keep_alive) {
        s->flags |= F_KEEPALIVE;
        if (o->keep_alive_initial_delay_ms > 0) {
            uint64_t secs = (o->keep_alive_initial_delay_ms + 999) / 1000;
            s->x->keepalive_s = secs > 32767 ? 32767 : (unsigned)secs;
        }
    }
    s->flags = (s->flags & F_STICKY) | F_CONNECTING | F_READABLE |
               F_WRITABLE | (o->path != NULL ? F_UNIX : 0);
    s->rwant = WEFT__IO_READ;
    s->wwant = WEFT__IO_WRITE;
    s->err = 0;
    s->bytes_read = s->bytes_written = 0;
    weft__decoder_init(&s->dec, s->dec.enc);
    stream_extra *x = s->x;
    x->conn = c;
    free(x->errmsg);
    x->errmsg = NULL;
    free(x->remote);
    x->remote = NULL;
    free(x->local);
    x->local = NULL;
    weft__handle_start(&s->h);
    weft__conn_go(c);
    return 0;
}

int weft_stream_connect(weft_stream *s, int port, const char *host)
{
    weft_connect_options o = {.port = port, .host = host};
    return weft_stream_connect_options(s, &o);
}

int weft_stream_connect_path(weft_stream *s, const char *path)
{
    if (path == NULL)
        return WEFT_EINVAL;
    weft_connect_options o = {.path = path};
    return weft_stream_connect_options(s, &o);
}

weft_stream *weft_stream_new(weft_loop *loop)
{
    loop = weft__loop(loop);
    if (loop == NULL)
        return NULL;
    weft_stream *s = weft__calloc(1, sizeof(*s));
    if (s == NULL)
        return NULL;
    weft__handle_init(loop, &s->h, WEFT__STREAM);
    weft__io_init(&s->io, -1, on_io);
    s->rwant = WEFT__IO_READ;
    s->wwant = WEFT__IO_WRITE;
    return s;
}

int weft_create_connection_options(weft_loop *loop,
                                   const weft_connect_options *o,
                                   weft_stream **out)
{
    if (out == NULL)
        return WEFT_EINVAL;
    *out = NULL;
    if (o == NULL)
        return WEFT_EINVAL;
    weft_stream *s = weft_stream_new(loop);
    if (s == NULL)
        return WEFT_ENOMEM;
    int err = weft_stream_connect_options(s, o);
    if (err < 0) {
        weft__handle_close(&s->h);
        return err;
    }
    *out = s;
    return 0;
}

static int create(weft_loop *loop, int port, const char *host,
                  const char *path, weft_stream **out)
{
    if (out == NULL)
        return WEFT_EINVAL;
    *out = NULL;
    weft_stream *s = weft_stream_new(loop);
    if (s == NULL)
        return WEFT_ENOMEM;
    int err = path ? weft_stream_connect_path(s, path)
                   : weft_stream_connect(s, port, host);
    if (err < 0) {
        weft__handle_close(&s->h);
        return err;
    }
    *out = s;
    return 0;
}

int weft_create_connection(weft_loop *loop, int port, const char *host,
                           weft_stream **out)
{
    return create(loop, port, host, NULL, out);
}

int weft_create_connection_path(weft_loop *loop, const char *path,
                                weft_stream **out)
{
    if (path == NULL)
        return WEFT_EINVAL;
    return create(loop, 0, NULL, path, out);
}

/* ---- accepted streams ------------------------------------------------- */

weft_stream *weft__stream_accepted(weft_server *server, int fd,
                                   bool allow_half_open, bool is_unix)
{
    weft_stream *s = weft_stream_new(weft_server_loop(server));
    if (s == NULL)
        return NULL;
    weft__io_init(&s->io, fd, on_io);
    s->flags = F_CONNECTED | F_READABLE | F_WRITABLE;
    if (allow_half_open)
        s->flags |= F_HALF_OPEN;
    if (is_unix)
        s->flags |= F_UNIX;
    s->server = server;
    weft__handle_start(&s->h);
    return s;
}

void weft__stream_accept_done(weft_stream *s)
{
    if (has(s, F_DESTROYED))
        return;
    WEFT__EMIT(&s->em, EV_connect, weft_stream_connect_cb, s);
    if (has(s, F_DESTROYED))
        return;
    update_io(s);
}

/* An fd the program handed over (stream_open.c), connected: like an
 * accepted stream with no server and no 'connect' (as Node's
 * new net.Socket({fd})). Reading waits for the pending phase, so
 * listeners added after weft_stream_open() see every byte. */
weft_stream *weft__stream_adopt(weft_loop *loop, int fd, bool is_unix)
{
    weft_stream *s = weft_stream_new(loop);
    if (s == NULL)
        return NULL;
    weft__io_init(&s->io, fd, on_io);
    s->flags = F_CONNECTED | F_READABLE | F_WRITABLE | F_ADOPTED |
               (is_unix ? F_UNIX : 0);
    weft__handle_start(&s->h);
    weft__handle_defer(&s->h, B_OPEN);
    return s;
}

int weft_stream_fileno(const weft_stream *s)
{
    if (s == NULL)
        return WEFT_EINVAL;
    return has(s, F_CONNECTED) && s->io.fd >= 0 ? s->io.fd : WEFT_EBADF;
}

/* ---- idle timeout ----------------------------------------------------- */

static void idle_fire(weft__timer *t)
{
    stream_extra *x = WEFT__CONTAINER_OF(t, stream_extra, idle);
    weft_stream *s = x->s;
    weft_loop *loop = s->h.loop;
    uint64_t due = weft__deadline(x->last_active, x->timeout_ms);
    if (due > loop->now) {
        weft__timer_arm(loop, &x->idle, due);
        return;
    }
    s->flags |= F_TIMED_OUT;
    WEFT__EMIT(&s->em, EV_timeout, weft_stream_timeout_cb, s);
}

int weft_stream_set_timeout(weft_stream *s, uint64_t ms)
{
    if (s == NULL)
        return WEFT_EINVAL;
    if (ms == 0) {
        if (s->x != NULL) {
            s->x->timeout_ms = 0;
            weft__timer_disarm(s->h.loop, &s->x->idle);
        }
        return 0;
    }
    stream_extra *x = extra(s);
    if (x == NULL)
        return WEFT_ENOMEM;
    weft_loop *loop = s->h.loop;
    weft__loop_update_time(loop);
    x->idle.fn = idle_fire;
    x->timeout_ms = ms;
    x->last_active = loop->now;
    s->flags &= ~F_TIMED_OUT;
    if (!has(s, F_DESTROYED)) {
        weft__timer_arm(loop, &x->idle, weft__deadline(loop->now, ms));
        if (!weft__timer_armed(&x->idle))
            return WEFT_ENOMEM;
    }
    return 0;
}

/* ---- pause, options, properties --------------------------------------- */

void weft_stream_pause(weft_stream *s)
{
    if (s == NULL || has(s, F_PAUSED))
        return;
    s->flags |= F_PAUSED;
    update_io(s);
}

void weft_stream_resume(weft_stream *s)
{
    if (s == NULL || !has(s, F_PAUSED))
        return;
    s->flags &= ~F_PAUSED;
    update_io(s);
    if (s->tls != NULL && weft__tls_pending(s->tls))
        weft__handle_defer(&s->h, B_READ);
    if (has(s, F_END_PENDING))
        weft__handle_defer(&s->h, B_END);
}

bool weft_stream_is_paused(const weft_stream *s)
{
    return s != NULL && has(s, F_PAUSED);
}

int weft_stream_set_encoding(weft_stream *s, const char *encoding)
{
    if (s == NULL)
        return WEFT_EINVAL;
    int enc = weft__enc_parse(encoding);
    if (enc < 0)
        return enc;
    weft__decoder_init(&s->dec, enc);
    return 0;
}

int weft_stream_set_no_delay(weft_stream *s, bool no_delay)
{
    if (s == NULL)
        return WEFT_EINVAL;
    if (no_delay)
        s->flags |= F_NODELAY;
    else
        s->flags &= ~F_NODELAY;
    if (has(s, F_CONNECTED) && !has(s, F_UNIX)) {
        int v = no_delay;
        if (setsockopt(s->io.fd, IPPROTO_TCP, TCP_NODELAY, &v, sizeof(v)) <
            0)
            return weft__err(errno);
    }
    return 0;
}

int weft_stream_set_keep_alive(weft_stream *s, bool enable,
                               uint64_t initial_delay_ms)
{
    if (s == NULL)
        return WEFT_EINVAL;
    if (enable)
        s->flags |= F_KEEPALIVE;
    else
        s->flags &= ~F_KEEPALIVE;
    if (initial_delay_ms > 0) {
        stream_extra *x = extra(s);
        if (x == NULL)
            return WEFT_ENOMEM;
        uint64_t secs = (initial_delay_ms + 999) / 1000;
        x->keepalive_s = secs > 32767 ? 32767 : (unsigned)secs;
    }
    if (!has(s, F_CONNECTED) || has(s, F_UNIX))
        return 0;
    int v = enable;
    if (setsockopt(s->io.fd, SOL_SOCKET, SO_KEEPALIVE, &v, sizeof(v)) < 0)
        return weft__err(errno);
    if (enable && s->x != NULL && s->x->keepalive_s > 0) {
        int idle = (int)s->x->keepalive_s;
        if (setsockopt(s->io.fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle,
                       sizeof(idle)) < 0)
            return weft__err(errno);
    }
    return 0;
}

void weft_stream_set_allow_half_open(weft_stream *s, bool allow)
{
    if (s == NULL)
        return;
    if (allow)
        s->flags |= F_HALF_OPEN;
    else
        s->flags &= ~F_HALF_OPEN;
}

weft_ready_state weft_stream_ready_state(const weft_stream *s)
{
    if (s == NULL)
        return WEFT_CLOSED;
    if (has(s, F_CONNECTING))
        return WEFT_OPENING;
    if (!has(s, F_CONNECTED))
        return WEFT_CLOSED;
    bool r = has(s, F_READABLE), w = has(s, F_WRITABLE);
    if (r && w)
        return WEFT_OPEN;
    if (r)
        return WEFT_READ_ONLY;
    if (w)
        return WEFT_WRITE_ONLY;
    return WEFT_CLOSED;
}

const char *weft_ready_state_name(weft_ready_state state)
{
    switch (state) {
    case WEFT_CLOSED:
        return "closed";
    case WEFT_OPENING:
        return "opening";
    case WEFT_OPEN:
        return "open";
    case WEFT_READ_ONLY:
        return "readOnly";
    case WEFT_WRITE_ONLY:
        return "writeOnly";
    }
    return "closed";
}

const char *weft_stream_remote_address(weft_stream *s)
{
    if (s == NULL)
        return NULL;
    if (s->x != NULL && s->x->remote != NULL)
        return s->x->remote;
    if (!has(s, F_CONNECTED) || has(s, F_UNIX))
        return NULL;
    weft__sockaddr a;
    a.len = sizeof(a.u.ss);
    weft_address addr;
    if (getpeername(s->io.fd, &a.u.sa, &a.len) < 0 ||
        weft__address_from(&a.u.sa, a.len, &addr) < 0)
        return NULL;
    stream_extra *x = extra(s);
    if (x == NULL || (x->remote = weft__strdup(addr.address)) == NULL)
        return NULL;
    x->remote_port = addr.port;
    x->remote_family = addr.family;
    return x->remote;
}

int weft_stream_remote_family(weft_stream *s)
{
    if (weft_stream_remote_address(s) == NULL)
        return 0;
    return s->x->remote_family;
}

const char *weft_stream_local_address(weft_stream *s)
{
    if (s == NULL)
        return NULL;
    if (s->x != NULL && s->x->local != NULL)
        return s->x->local;
    if (!has(s, F_CONNECTED) || has(s, F_UNIX))
        return NULL;
    weft_address addr;
    if (weft_stream_address(s, &addr) < 0)
        return NULL;
    stream_extra *x = extra(s);
    if (x == NULL || (x->local = weft__strdup(addr.address)) == NULL)
        return NULL;
    x->local_port = addr.port;
    return x->local;
}

int weft_stream_local_port(weft_stream *s)
{
    if (weft_stream_local_address(s) == NULL)
        return -1;
    return s->x->local_port;
}

int weft_stream_remote_port(weft_stream *s)
{
    if (weft_stream_remote_address(s) == NULL)
        return -1;
    return s->x->remote_port;
}

int weft_stream_address(const weft_stream *s, weft_address *out)
{
    if (s == NULL || out == NULL)
        return WEFT_EINVAL;
    if (!has(s, F_CONNECTED))
        return WEFT_ENOTCONN;
    weft__sockaddr a;
    a.len = sizeof(a.u.ss);
    if (getsockname(s->io.fd, &a.u.sa, &a.len) < 0)
        return weft__err(errno);
    return weft__address_from(&a.u.sa, a.len, out);
}

uint64_t weft_stream_bytes_read(const weft_stream *s)
{
    return s ? s->bytes_read : 0;
}

uint64_t weft_stream_bytes_written(const weft_stream *s)
{
    return s ? s->bytes_written : 0;
}

size_t weft_stream_buffer_size(const weft_stream *s)
{
    return s ? s->wq_bytes : 0;
}

weft_server *weft_stream_server(const weft_stream *s)
{
    return s ? s->server : NULL;
}

void weft_stream_ref(weft_stream *s)
{
    if (s)
        weft__handle_ref(&s->h);
}

void weft_stream_unref(weft_stream *s)
{
    if (s)
        weft__handle_unref(&s->h);
}

void weft_stream_set_data(weft_stream *s, void *data)
{
    if (s)
        s->data = data;
}

void *weft_stream_data(const weft_stream *s)
{
    return s ? s->data : NULL;
}

weft_loop *weft_stream_loop(const weft_stream *s)
{
    return s ? s->h.loop : NULL;
}

/* ---- TLS --------------------------------------------------------------- */

/*
 * Handshake states:
 *
 *   setSecure() ─► TLS_WANTED ─connect─► HANDSHAKING ─done─► SECURE
 *   (open stream) ───────────────────────┘      │ 'secure', then queued
 *                                               │ writes and a pending
 *                                               │ end() go out
 *                                               └─fail─► 'error', 'close'
 *
 * While HANDSHAKING, writes queue as while connecting, and readiness of
 * either kind drives the handshake (OpenSSL says which it needs next).
 *
 * A server's session is made only when the client's first bytes arrive
 * (decision 19): until then an accepted TLS connection costs what a plain
 * one does, plus its credentials reference and its handshake deadline.
 * That deadline (the credentials' handshake_timeout_ms, 120 s by default)
 * runs from setSecure() on an open stream, or from connect().
 */
static void hs_timeout_fire(weft__timer *t)
{
    stream_extra *x = WEFT__CONTAINER_OF(t, stream_extra, tls_timer);
    char why[64];
    snprintf(why, sizeof(why), "TLS handshake timeout (%u ms)",
             weft__tls_handshake_timeout(x->creds));
    fail(x->s, WEFT_ETIMEDOUT, "handshake", why);
}

/* Idle since tls_active + TLS_IDLE_MS: OpenSSL's buffers go back, and the
 * check stops until the next read or write (tls_touch). */
static void tls_idle_fire(weft__timer *t)
{
    stream_extra *x = WEFT__CONTAINER_OF(t, stream_extra, tls_timer);
    weft_stream *s = x->s;
    weft_loop *loop = s->h.loop;
    uint64_t due = x->tls_active + TLS_IDLE_MS;
    if (s->tls == NULL)
        return;
    if (due > loop->now)
        weft__timer_arm(loop, t, due);
    else if (!weft__tls_free_buffers(s->tls))
        weft__timer_arm(loop, t, loop->now + TLS_IDLE_MS);
}

/* A TLS read or write: the connection is not idle. One store, and a
 * timer armed only after the buffers were given back. Before 'secure'
 * the timer is the handshake's deadline, which reads and writes do not
 * move. */
static void tls_touch(weft_stream *s)
{
    stream_extra *x = s->x;
    weft_loop *loop = s->h.loop;
    x->tls_active = loop->now;
    if (!weft__timer_armed(&x->tls_timer) && has(s, F_SECURE))
        weft__timer_arm(loop, &x->tls_timer, loop->now + TLS_IDLE_MS);
}

/* Sends the handshake's last flight with what 'secure' wrote (tls.h). */
static void release_held(weft_stream *s)
{
    unsigned want = 0;
    int r = weft__tls_flush(s->tls, &want);
    if (r == WEFT_EAGAIN) {
        s->flags |= F_TLS_OUT;
        s->wwant = (uint8_t)want;
        update_io(s);
        return;
    }
    if (r < 0) {
        fail(s, r, "write", weft__tls_error(s->tls));
        return;
    }
    if (has(s, F_NOTIFY_PENDING) && s->wq_head == NULL)
        send_fin(s); /* end() in 'secure': close_notify was held too */
}

/* `events`: what on_io saw ready, 0 from the pending phase. */
static void drive_handshake(weft_stream *s, unsigned events)
{
    if (s->tls == NULL) {
        /* Server: no session before the client has sent something. */
        if (!(events & WEFT__IO_READ)) {
            update_io(s);
            return;
        }
        int err = weft__tls_new(s->x->creds, s->io.fd, true, NULL, &s->tls);
        if (err < 0) {
            fail(s, err, "setSecure", NULL);
            return;
        }
    }
    unsigned want = 0;
    int r = weft__tls_handshake(s->tls, &want);
    if (r == WEFT_EAGAIN) {
        s->hswant = (uint8_t)(want ? want : WEFT__IO_READ);
        update_io(s);
        return;
    }
    if (r < 0) {
        fail(s, r, "handshake", weft__tls_error(s->tls));
        return;
    }
    s->flags &= ~F_HANDSHAKING;
    s->flags |= F_SECURE;
    s->rwant = WEFT__IO_READ;
    s->wwant = WEFT__IO_WRITE;
    weft_loop *loop = s->h.loop;
    stream_extra *x = s->x;
    weft__timer_disarm(loop, &x->tls_timer);
    x->tls_timer.fn = tls_idle_fire;
    tls_touch(s);
    touch(s);
    update_io(s);
    if (has(s, F_DESTROYED))
        return;
    /* The last flight is held (tls.h); what the listeners write, and
     * what was queued during the handshake, joins it. */
    WEFT__EMIT(&s->em, EV_secure, weft_stream_secure_cb, s);
    if (has(s, F_DESTROYED))
        return;
    if (s->wq_head != NULL && s->corked == 0)
        flush(s);
    else if (has(s, F_ENDING))
        send_fin(s);
    if (has(s, F_DESTROYED))
        return;
    release_held(s);
    /* Application data may have arrived with the handshake's last flight
     * and already sit decrypted inside OpenSSL. */
    if (!has(s, F_DESTROYED) && weft__tls_pending(s->tls))
        weft__handle_defer(&s->h, B_READ);
}

/* Which side of the handshake this stream plays: an accepted stream the
 * server's, an adopted one whichever its credentials say. */
static bool tls_server_side(const weft_stream *s)
{
    return s->server != NULL || has(s, F_TLS_SERVER);
}

static void start_tls(weft_stream *s)
{
    s->flags &= ~F_TLS_WANTED;
    stream_extra *x = s->x;
    /* A server makes its session when the client's first bytes arrive
     * (drive_handshake): nothing is allocated for a silent peer. */
    if (!tls_server_side(s)) {
        int err = weft__tls_new(x->creds, s->io.fd, false, x->servername,
                                &s->tls);
        if (err < 0) {
            fail(s, err, "setSecure", NULL);
            return;
        }
    }
    s->flags |= F_HANDSHAKING;
    s->hswant = tls_server_side(s) ? WEFT__IO_READ : WEFT__IO_WRITE;
    unsigned ms = weft__tls_handshake_timeout(x->creds);
    if (ms > 0) {
        weft_loop *loop = s->h.loop;
        x->tls_timer.fn = hs_timeout_fire;
        weft__timer_arm(loop, &x->tls_timer, weft__deadline(loop->now, ms));
    }
    /* The first step runs from the loop, never inside the caller. */
    weft__handle_defer(&s->h, B_HANDSHAKE);
}

int weft_stream_set_secure(weft_stream *s, weft_credentials *creds)
{
    if (s == NULL)
        return WEFT_EINVAL;
    /* STARTTLS: legal at any point of an open plain stream. Bytes the
     * program already received stay plaintext; everything read after
     * this call goes to TLS. Plaintext still queued would be sent after
     * the handshake began, inside it: refused, retry from 'drain'. A
     * server waiting for its client's first bytes has no session yet but
     * is handshaking already. */
    if (s->tls != NULL || has(s, F_TLS_WANTED | F_HANDSHAKING | F_DESTROYED))
        return WEFT_ESTATE;
    if (s->wq_head != NULL && has(s, F_CONNECTED))
        return WEFT_EBUSY;
    /* An adopted socket may be either end: its credentials decide. */
    if (has(s, F_ADOPTED) && creds != NULL &&
        weft__tls_is_server_creds(creds))
        s->flags |= F_TLS_SERVER;
    bool server_side = tls_server_side(s);
    stream_extra *x = extra(s);
    if (x == NULL)
        return WEFT_ENOMEM;
    if (creds == NULL) {
        if (server_side)
            return WEFT_EINVAL;
        /* Loading the system CA store can take tens of milliseconds:
         * done once per loop, shared by every default client. */
        weft_loop *loop = s->h.loop;
        if (loop->default_client_creds == NULL) {
            int err = 0;
            loop->default_client_creds =
                weft_credentials_new(NULL, false, &err, NULL, 0);
            if (loop->default_client_creds == NULL)
                return err ? err : WEFT_ENOMEM;
        }
        creds = weft_credentials_ref(loop->default_client_creds);
    } else {
        if (weft__tls_is_server_creds(creds) != server_side)
            return WEFT_EINVAL;
        weft_credentials_ref(creds);
    }
    x->creds = creds;
    if (has(s, F_CONNECTED))
        start_tls(s);
    else
        s->flags |= F_TLS_WANTED;
    return 0;
}

int weft_stream_set_servername(weft_stream *s, const char *servername)
{
    if (s == NULL || servername == NULL)
        return WEFT_EINVAL;
    if (s->tls != NULL || tls_server_side(s))
        return WEFT_ESTATE;
    stream_extra *x = extra(s);
    char *copy = weft__strdup(servername);
    if (x == NULL || copy == NULL) {
        free(copy);
        return WEFT_ENOMEM;
    }
    free(x->servername);
    x->servername = copy;
    return 0;
}

bool weft_stream_verify_peer(weft_stream *s)
{
    return s != NULL && s->tls != NULL && has(s, F_SECURE) &&
           weft__tls_verify_peer(s->tls);
}

const char *weft_stream_verify_error(weft_stream *s)
{
    if (s == NULL || s->tls == NULL || !has(s, F_SECURE))
        return NULL;
    return weft__tls_verify_error(s->tls);
}

int weft_stream_get_peer_certificate(weft_stream *s, weft_certificate *out)
{
    if (s == NULL || out == NULL)
        return WEFT_EINVAL;
    if (s->tls == NULL || !has(s, F_SECURE))
        return WEFT_ESTATE;
    return weft__tls_peer_certificate(s->tls, out);
}

const char *weft_stream_alpn_protocol(weft_stream *s)
{
    if (s == NULL || s->tls == NULL || !has(s, F_SECURE))
        return NULL;
    return weft__tls_alpn(s->tls);
}

const char *weft_stream_tls_version(weft_stream *s)
{
    if (s == NULL || s->tls == NULL || !has(s, F_SECURE))
        return NULL;
    return weft__tls_version(s->tls);
}

/* ---- loop hooks ------------------------------------------------------- */

void weft__stream_pending(weft__handle *h, unsigned bits)
{
    weft_stream *s = WEFT__CONTAINER_OF(h, weft_stream, h);
    if ((bits & B_CONN) && has(s, F_CONNECTING) && s->x->conn != NULL)
        weft__conn_pending(s->x->conn);
    if ((bits & B_CONN_FREE) && !has(s, F_CONNECTING) && s->x != NULL) {
        weft__conn_free(s->x->conn);
        s->x->conn = NULL;
    }
    if ((bits & B_OPEN) && has(s, F_CONNECTED))
        update_io(s);
    if ((bits & B_HANDSHAKE) && has(s, F_HANDSHAKING))
        drive_handshake(s, 0);
    if ((bits & B_READ) && has(s, F_CONNECTED) && !has(s, F_HANDSHAKING))
        do_read(s);
    if ((bits & B_DRAIN) && s->wq_head == NULL && !has(s, F_DESTROYED))
        emit_drain(s);
    if ((bits & B_END) && has(s, F_END_PENDING) &&
        !has(s, F_PAUSED | F_DESTROYED)) {
        s->flags &= ~F_END_PENDING;
        emit_end(s);
    }
    if ((bits & B_CLOSE) || (s->h.bits & B_CLOSE)) {
        s->h.bits &= (uint16_t)~B_CLOSE;
        emit_close(s);
    }
}

void weft__stream_free(weft__handle *h)
{
    weft_stream *s = WEFT__CONTAINER_OF(h, weft_stream, h);
    teardown(s);
    weft__emitter_free(&s->em);
    if (s->x != NULL) {
        weft__conn_free(s->x->conn);
        free(s->x->errmsg);
        free(s->x->remote);
        free(s->x->local);
        free(s->x->servername);
        free(s->x);
    }
    free(s);
}

/* ---- events ----------------------------------------------------------- */

#define WEFT_STR_REG_(ev, type) WEFT__EVENT_API(stream, ev, type)
WEFT_STREAM_EVENT_MAP(WEFT_STR_REG_)
#undef WEFT_STR_REG_
