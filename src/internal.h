/*
 * internal.h - weft__ declarations shared between weft's own files.
 *
 * Owns the shapes every subsystem agrees on: the handle header (lifetime,
 * ref counting, deferred work), intrusive queues, the emitter, timers and
 * the poller's I/O watcher. Nothing here is visible to users.
 */
#ifndef WEFT_INTERNAL_H
#define WEFT_INTERNAL_H

#include "weft.h"
#include "encoding.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <netdb.h>
#include <sys/socket.h>

#define WEFT__UNUSED(x) ((void)(x))
#define WEFT__CONTAINER_OF(ptr, type, field)                                   \
    ((type *)((char *)(ptr)-offsetof(type, field)))

/* ---- intrusive doubly linked queue ----------------------------------- */

typedef struct weft__qnode {
    struct weft__qnode *next, *prev;
} weft__qnode;

static inline void weft__q_init(weft__qnode *q)
{
    q->next = q->prev = q;
}
static inline bool weft__q_empty(const weft__qnode *q)
{
    return q->next == q;
}
static inline bool weft__q_linked(const weft__qnode *n)
{
    return n->next != NULL && n->next != n;
}
static inline void weft__q_push(weft__qnode *q, weft__qnode *n)
{
    n->prev = q->prev;
    n->next = q;
    q->prev->next = n;
    q->prev = n;
}
/* Moves every node of `src` to the empty queue `dst`, in order, in O(1):
 * a batch taken out from under a lock, or out of a list that callbacks
 * may add to while the batch runs. */
static inline void weft__q_take_all(weft__qnode *dst, weft__qnode *src)
{
    if (weft__q_empty(src)) {
        weft__q_init(dst);
        return;
    }
    dst->next = src->next;
    dst->prev = src->prev;
    dst->next->prev = dst;
    dst->prev->next = dst;
    weft__q_init(src);
}
static inline void weft__q_remove(weft__qnode *n)
{
    n->prev->next = n->next;
    n->next->prev = n->prev;
    n->next = n->prev = n;
}

/* ---- allocation (alloc.c) ------------------------------------------- */

void *weft__malloc(size_t n);
void *weft__calloc(size_t n, size_t size);
void *weft__realloc(void *p, size_t n);
char *weft__strdup(const char *s);
/* Tests only: the N-th allocation from now fails (0: none). */
extern long weft__alloc_fail_at;
extern long weft__alloc_failed;

/* ---- errors ---------------------------------------------------------- */

/* -errno, mapped so that every value is a WEFT_E* code weft knows. */
int weft__err(int errno_value);
/* An 'error' with no listener: the program's handler, or stderr. */
void weft__unhandled_error(const char *object, void *handle, int err,
                           const char *message);

/* now + ms without wrapping: a huge delay (UINT64_MAX, or a negative int
 * cast to it) means "never", not "at once". */
static inline uint64_t weft__deadline(uint64_t now, uint64_t ms)
{
    return ms > UINT64_MAX - now ? UINT64_MAX : now + ms;
}

/* ---- emitter: one listener list per object --------------------------- */

typedef void (*weft__fn)(void);

typedef struct weft__listener {
    weft__fn fn; /* NULL once removed (compacted when no emit runs) */
    void *ctx;
    uint8_t event;
    uint8_t once;
} weft__listener;

typedef struct weft__emitter {
    weft__listener *v;
    uint16_t n, cap;
    uint16_t depth; /* emits in progress on this object */
    uint8_t dirty;  /* removed slots wait for compaction */
} weft__emitter;

int weft__emitter_add(weft__emitter *em, int event, weft__fn fn, void *ctx,
                      bool once);
int weft__emitter_remove(weft__emitter *em, int event, weft__fn fn, void *ctx);
bool weft__emitter_has(const weft__emitter *em, int event);
void weft__emitter_leave(weft__emitter *em);
void weft__emitter_free(weft__emitter *em);

/*
 * Calls every listener of `event` present when the emit starts, in order.
 * Slots are read by index each time round, so a listener may add (the
 * array may move) or remove listeners; a removed one is skipped, an added
 * one waits for the next emit. A once-listener is removed before its call.
 */
#define WEFT__EMIT(em, ev_id, type, ...)                                       \
    do {                                                                       \
        weft__emitter *em_ = (em);                                             \
        em_->depth++;                                                          \
        WEFT__EMIT_HELD(em_, ev_id, type, __VA_ARGS__);                        \
        weft__emitter_leave(em_);                                              \
    } while (0)

/*
 * WEFT__EMIT for a caller that emits many events in a row (a batch of
 * datagrams) and holds the emitter itself: em->depth++ before the first,
 * weft__emitter_leave() after the last. Removed listeners are skipped
 * and compacted at the leave; one added by a listener is called from the
 * next event on, as with WEFT__EMIT.
 */
#define WEFT__EMIT_HELD(em, ev_id, type, ...)                                  \
    do {                                                                       \
        weft__emitter *emh_ = (em);                                            \
        uint16_t n_ = emh_->n;                                                 \
        for (uint16_t i_ = 0; i_ < n_; i_++) {                                 \
            weft__listener *l_ = &emh_->v[i_];                                 \
            if (l_->fn == NULL || l_->event != (ev_id))                        \
                continue;                                                      \
            type f_ = (type)l_->fn;                                            \
            void *c_ = l_->ctx;                                                \
            if (l_->once) {                                                    \
                l_->fn = NULL;                                                 \
                emh_->dirty = 1;                                               \
            }                                                                  \
            f_(__VA_ARGS__, c_);                                               \
        }                                                                      \
    } while (0)

/*
 * The typed on/once/off functions of one event of one object type
 * (weft_server, weft_stream), whose struct has an `em` emitter and whose
 * file defines EV_<event>. Expanded once per row of the object's event
 * table, so the three functions are written once for every object.
 */
#define WEFT__EVENT_API(obj, ev, type)                                         \
    int weft_##obj##_on_##ev(weft_##obj *o, type cb, void *ctx)                \
    {                                                                          \
        if (o == NULL)                                                         \
            return WEFT_EINVAL;                                                \
        return weft__emitter_add(&o->em, EV_##ev, (weft__fn)cb, ctx, false);   \
    }                                                                          \
    int weft_##obj##_once_##ev(weft_##obj *o, type cb, void *ctx)              \
    {                                                                          \
        if (o == NULL)                                                         \
            return WEFT_EINVAL;                                                \
        return weft__emitter_add(&o->em, EV_##ev, (weft__fn)cb, ctx, true);    \
    }                                                                          \
    int weft_##obj##_off_##ev(weft_##obj *o, type cb, void *ctx)               \
    {                                                                          \
        if (o == NULL)                                                         \
            return WEFT_EINVAL;                                                \
        return weft__emitter_remove(&o->em, EV_##ev, (weft__fn)cb, ctx);       \
    }

/* ---- timers: a min-heap per loop ------------------------------------- */

typedef struct weft__timer weft__timer;
typedef void (*weft__timer_fn)(weft__timer *t);

struct weft__timer {
    uint64_t due;
    uint64_t seq;  /* FIFO among equal deadlines */
    uint32_t slot; /* index in the heap + 1; 0 when not armed */
    weft__timer_fn fn;
};

void weft__timer_arm(weft_loop *loop, weft__timer *t, uint64_t due);
void weft__timer_disarm(weft_loop *loop, weft__timer *t);
static inline bool weft__timer_armed(const weft__timer *t)
{
    return t->slot != 0;
}
/* Milliseconds until the next deadline, 0 if due, -1 if none. */
int weft__timers_timeout(weft_loop *loop);
void weft__timers_run(weft_loop *loop);
void weft__timers_free(weft_loop *loop);

/* ---- poller (src/poll.h has the backend's side) ----------------------- */

/* HUP is asked for only by fd watchers (poll.c): peer hang-up, reported
 * apart from readability. Streams learn of it by reading. */
enum { WEFT__IO_READ = 1, WEFT__IO_WRITE = 2, WEFT__IO_HUP = 4,
       WEFT__IO_ERR = 8 };

typedef struct weft__io weft__io;
/* `events`: WEFT__IO_READ/WRITE that are ready; errors and hang-ups are
 * reported as both, so the next read or write finds out which. */
typedef void (*weft__io_fn)(weft__io *io, unsigned events);

struct weft__io {
    int fd;          /* -1 when closed: stale events are dropped */
    uint8_t want;    /* interest the poller has registered */
    uint8_t added;   /* registered with the poller at all */
    weft__io_fn fn;
};

void weft__io_init(weft__io *io, int fd, weft__io_fn fn);
/* Sets the interest to `events`; a syscall only when it changes. */
int weft__io_set(weft_loop *loop, weft__io *io, unsigned events);
/* Forgets the watcher and closes its fd. */
void weft__io_close(weft_loop *loop, weft__io *io);
/* Forgets the watcher and leaves its fd open (an fd the program owns). */
void weft__io_forget(weft_loop *loop, weft__io *io);
/*
 * Moves the registration of `from` to `to` (the winner of a connect race
 * becomes the stream's watcher) without a syscall: `to` gets an interest
 * no caller ever asks for, so its next weft__io_set() re-registers it
 * with its own pointer (one EPOLL_CTL_MOD, which the change of interest
 * would have cost anyway). `from` is left closed, so an event already
 * fetched for it this turn is dropped.
 */
static inline void weft__io_take(weft__io *to, weft__io *from, weft__io_fn fn)
{
    to->fd = from->fd;
    to->added = from->added;
    to->want = UINT8_MAX;
    to->fn = fn;
    from->fd = -1;
    from->added = 0;
    from->want = 0;
}

/* ---- handles --------------------------------------------------------- */

enum weft__handle_type {
    WEFT__SERVER = 1,
    WEFT__STREAM,
    WEFT__TIMER,
    WEFT__POLL,      /* fd watchers, poll.c */
    WEFT__IMMEDIATE, /* setImmediate, timer.c */
    WEFT__DGRAM,     /* datagram sockets, dgram.c */
};

enum {
    WEFT__H_REF = 1,     /* counts towards keeping the loop alive */
    WEFT__H_ACTIVE = 2,  /* has work (listening, connected, armed) */
    WEFT__H_CLOSING = 4, /* queued for the close phase */
};

typedef struct weft__handle weft__handle;

struct weft__handle {
    weft_loop *loop;
    weft__qnode all;     /* in loop->handles until freed */
    weft__qnode pending; /* in loop->pending while `bits` is set */
    weft__handle *next_closing;
    uint8_t type;
    uint8_t flags;
    uint16_t bits; /* deferred work, meaning is the handle type's */
};

void weft__handle_init(weft_loop *loop, weft__handle *h, int type);
void weft__handle_start(weft__handle *h);
void weft__handle_stop(weft__handle *h);
void weft__handle_ref(weft__handle *h);
void weft__handle_unref(weft__handle *h);
/* Runs the type's pending work on the next pending phase. */
void weft__handle_defer(weft__handle *h, unsigned bits);
/* Frees the handle in this turn's close phase (after all callbacks). */
void weft__handle_close(weft__handle *h);

/*
 * Work for a handle after the next poll instead of in the pending phase
 * now running. For a handle that may find more work every time it runs:
 * a TLS stream whose read budget ran out while records still wait inside
 * OpenSSL. Deferred the usual way it would run again in this same phase,
 * and a peer that never stops sending would keep the loop from polling
 * and its timers from firing. The node lives in the caller's memory;
 * cancel it before that memory goes.
 */
typedef struct weft__later {
    weft__qnode node;
    weft__handle *h;
    unsigned bits;
} weft__later;
void weft__later_add(weft__later *l, weft__handle *h, unsigned bits);
void weft__later_cancel(weft__later *l);

/* Per-type hooks, called by the loop. */
void weft__server_pending(weft__handle *h, unsigned bits);
void weft__stream_pending(weft__handle *h, unsigned bits);
void weft__timer_pending(weft__handle *h, unsigned bits);
void weft__server_free(weft__handle *h);
void weft__stream_free(weft__handle *h);
void weft__timer_free(weft__handle *h);
void weft__watcher_free(weft__handle *h);
void weft__immediate_free(weft__handle *h);
void weft__dgram_pending(weft__handle *h, unsigned bits);
void weft__dgram_free(weft__handle *h);
/* The loop-wide datagram batch area (dgram.c), if one was made. */
void weft__dgram_loop_free(weft_loop *loop);

/* ---- loop ------------------------------------------------------------ */

/*
 * Size of the loop-wide read buffer every stream reads into (decision 4:
 * no per-connection read buffer). 64 KiB matches the socket's default
 * receive window on loopback, so one read usually empties it.
 */
#define WEFT__READ_BUF 65536

/* A call queued by another thread (async.c). */
typedef struct weft__call {
    weft_call_fn fn;
    void *ctx;
} weft__call;

struct weft_loop {
    int backend_fd;       /* epoll */
    int spare_fd;         /* reserve fd for shedding on EMFILE */
    uint64_t now;         /* cached ms clock, updated once per turn */
    uint64_t timer_seq;
    weft__timer **heap;
    uint32_t heap_n, heap_cap;
    unsigned active_refs; /* handles ACTIVE and REF */
    weft__qnode handles;
    weft__qnode pending;
    weft__qnode later; /* weft__later nodes: handed to pending after poll */
    weft__handle *closing;
    bool running;
    atomic_bool stop; /* any thread may set it (weft_loop_stop) */
    uint64_t turns; /* loop iterations, for tests that check for spinning */
    weft__qnode immediates; /* setImmediate handles, in order (timer.c) */
    weft__qnode polls; /* open fd watchers (poll.c): one per fd */
    char *rbuf;           /* WEFT__READ_BUF + 1 */
    char *dbuf;           /* decoder output, allocated on first use */
    size_t dbuf_size;
    /*
     * The one wake-up of the loop from other threads and from signal
     * handlers (async.c): an eventfd, written only by whoever turns
     * `wake_pending` from 0 to 1, so a burst costs one write and one
     * wake. Lookups, work, calls and signals all come through it.
     */
    weft__io wake_io;
    /* What producer threads write, on cache lines of its own (the pads),
     * so that their traffic does not bounce the lines holding the loop
     * thread's hot fields (now, turns, the heap). */
    char pad_before_shared[64];
    atomic_int wake_pending;
    /* calls from other threads, guarded by the loop's stripe lock */
    weft__call *calls;
    size_t calls_n, calls_cap;
    char pad_after_shared[64];
    weft__call *calls_spare; /* swapped in while a batch runs */
    size_t calls_spare_cap;
    weft__qnode registry; /* in its stripe's live-loop list (async.c) */
    /* signals (signal.c): listeners, and deliveries counted by the
     * handler, read and cleared on the loop thread */
    weft__emitter sig_em;
    weft__qnode sig_node; /* in signal.c's list while any listener */
    uint64_t sig_mask;    /* bit s-1: watching signal s; under its lock */
    atomic_uint sig_count[65];
    /* name resolution: see dns.c */
    weft__qnode dns_reqs; /* in flight for this loop, guarded by dns lock */
    weft__qnode dns_done; /* finished, guarded by dns lock */
    /* Requests and jobs of this loop not yet drained, loop thread only:
     * a wake-up with none skips the pools' locks. */
    unsigned dns_pending, work_pending;
    /* the work pool: see work.c */
    weft__qnode work_done; /* finished or cancelled, guarded by work lock */
    weft_credentials *default_client_creds; /* setSecure(NULL), lazily */
    uint32_t attempt_delay_ms; /* Happy Eyeballs default, 0: 250 (connect.c) */
    struct weft__dgram_batch *dgram; /* dgram.c: made on first datagram read */
};

void weft__loop_update_time(weft_loop *loop);
/* The default loop for a NULL argument. */
weft_loop *weft__loop(weft_loop *loop);
/* The default loop if one exists, never making one; any thread. */
weft_loop *weft__default_loop_peek(void);

/* ---- threads and wake-ups (async.c) ----------------------------------- */

/* Sets up and tears down the wake eventfd, the call queue and the loop's
 * place in the live-loop list. */
int weft__async_init(weft_loop *loop);
void weft__async_free(weft_loop *loop);
/*
 * Wakes `loop` from any thread, or from a signal handler (no lock, no
 * allocation: an atomic exchange and, for the first caller, a write).
 * The caller must know the loop is still alive (it holds the lock that
 * loop close takes to detach it).
 */
void weft__loop_wake(weft_loop *loop);
/*
 * Starts a detached thread with every signal blocked (decision 15), so
 * a signal meant for the program never lands on a weft thread.
 */
int weft__thread_start(void *(*fn)(void *), void *arg, size_t stack_size);

/* ---- thread pools (pool.c) ------------------------------------------- */

/*
 * The threads and FIFO queue under the lookup pool (dns.c) and the work
 * pool (work.c). A job is a queue node in the owner's request; the pool
 * calls `start` (lock held) when a thread takes it, `run` (no lock) for
 * the blocking part, and `finish` (lock held) after. `lock` also guards
 * what the owner's jobs share with the loops. Define one with
 * WEFT__POOL_INIT.
 */
typedef struct weft__pool weft__pool;
struct weft__pool {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    weft__qnode queue;
    size_t queued;
    unsigned max_threads;
    unsigned alive; /* threads that exist */
    unsigned idle;  /* of those, the ones not running a job */
    size_t stack_size;
    void (*start)(weft__qnode *n);
    void (*run)(weft__qnode *n);
    void (*finish)(weft__qnode *n);
    atomic_bool known; /* on the fork handlers' list */
    weft__pool *next_pool;
};
#define WEFT__POOL_INIT(pool, threads, stack, start_fn, run_fn, finish_fn)     \
    {                                                                          \
        .lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER,   \
        .queue = {&(pool).queue, &(pool).queue}, .max_threads = (threads),     \
        .stack_size = (stack), .start = (start_fn), .run = (run_fn),           \
        .finish = (finish_fn)                                                  \
    }

/* Lock not held. Queues `n` and makes a thread if none is coming for
 * it; WEFT_EAGAIN (n not queued) when the pool has no thread and can
 * make none. The first submit puts the pool under the fork handlers. */
int weft__pool_submit(weft__pool *p, weft__qnode *n);
/* Lock held: a job still queued leaves the queue (cancel, loop close). */
void weft__pool_unqueue_locked(weft__pool *p, weft__qnode *n);
/* The most threads the pool may have; the extra ones end between jobs. */
void weft__pool_resize(weft__pool *p, unsigned max_threads);
/* No job queued or running, cancelled and orphaned ones included. */
bool weft__pool_idle(weft__pool *p);

/* What the wake-up drains, each on the loop thread. */
void weft__dns_drain(weft_loop *loop);
void weft__work_drain(weft_loop *loop);
void weft__work_loop_free(weft_loop *loop);
void weft__signal_drain(weft_loop *loop);
void weft__signal_loop_free(weft_loop *loop);
/* setImmediate's phase (timer.c): runs the immediates set before it. */
void weft__immediates_run(weft_loop *loop);

/* Backend (poll_epoll.c). */
int weft__poll_init(weft_loop *loop);
void weft__poll_free(weft_loop *loop);
int weft__poll(weft_loop *loop, int timeout_ms);

/* ---- name resolution (dns.c) ----------------------------------------- */

/* One request type behind both doors: weft_dns_lookup() and the
 * internal lookups of connect and listen. */
typedef struct weft_dns_req weft__dns_req;
/* `res` is the caller's to freeaddrinfo(); `err` a WEFT_E* code. */
typedef void (*weft__dns_fn)(weft__dns_req *req, struct addrinfo *res,
                             int err, void *ctx);

/*
 * Resolves `host` for `port` (TCP) on the lookup pool, asking for
 * `family` (AF_UNSPEC, AF_INET or AF_INET6). `fn` runs on the loop
 * thread unless the request is cancelled first. Unlike weft_dns_lookup(),
 * it does not keep the loop alive: the caller's handle does.
 */
int weft__dns_lookup_af(weft_loop *loop, const char *host, int port,
                        int family, bool passive, weft__dns_fn fn, void *ctx,
                        weft__dns_req **out);
static inline int weft__dns_lookup(weft_loop *loop, const char *host,
                                   int port, bool passive, weft__dns_fn fn,
                                   void *ctx, weft__dns_req **out)
{
    return weft__dns_lookup_af(loop, host, port, AF_UNSPEC, passive, fn, ctx,
                               out);
}
/* `fn` will not be called; the lookup's result is dropped. Loop thread. */
void weft__dns_cancel(weft__dns_req *req);
void weft__dns_loop_free(weft_loop *loop);
/* True when no lookup is queued or inside getaddrinfo() on any pool
 * thread, cancelled and orphaned ones included. Any thread; for tests,
 * whose fd and leak checks must not count a resolver's open files. */
bool weft__dns_idle(void);

/* ---- sockets (shared by server.c and stream.c) ----------------------- */

typedef struct weft__sockaddr {
    union {
        struct sockaddr sa;
        struct sockaddr_storage ss;
    } u;
    socklen_t len;
} weft__sockaddr;

/* Parses an IP literal (v4, or v6 with an optional %zone) into `out`. */
bool weft__parse_ip(const char *host, int port, weft__sockaddr *out);
/* Fills `out` for a Unix path; WEFT_ENAMETOOLONG / WEFT_EINVAL. */
int weft__unix_addr(const char *path, weft__sockaddr *out);
/* "127.0.0.1:8124", "[::1]:8124" or the path, for messages. */
void weft__addr_text(const struct sockaddr *sa, char *buf, size_t size);
int weft__address_from(const struct sockaddr *sa, socklen_t len,
                       weft_address *out);

/* ---- connecting (connect.c; stream.c is its only caller) -------------- */

typedef struct weft__conn weft__conn;

/*
 * Checks `o` and prepares a connection for `s`: an IP literal or a path
 * is parsed, a name's lookup is sent. Errors known at once are returned
 * and nothing is left behind. Nothing touches the network until
 * weft__conn_go().
 */
int weft__conn_new(weft_stream *s, const weft_connect_options *o,
                   weft__conn **out);
/* Starts the first attempt (an address known at once). Never reports
 * inside the call: an outcome known at once waits for
 * weft__conn_pending(), asked for through weft__stream_conn_defer(). */
void weft__conn_go(weft__conn *c);
/* The stream's pending phase, when asked for. */
void weft__conn_pending(weft__conn *c);
/*
 * Stops everything: the lookup, the timers, every attempt's fd. Returns
 * true if the memory may be freed now; false when other attempts were
 * registered with the poller, whose events may still sit in the batch
 * being dispatched: free it from the pending phase then.
 */
bool weft__conn_stop(weft__conn *c);
void weft__conn_free(weft__conn *c);

/* What connect.c calls back in stream.c. */
void weft__stream_conn_defer(weft_stream *s);
/* `io` (the winner's watcher) becomes the stream's; `host` as given. */
void weft__stream_conn_won(weft_stream *s, weft__io *io, const char *host);
/* Every attempt failed (or the connect timeout fired); `message` is the
 * whole 'error' text. */
void weft__stream_conn_failed(weft_stream *s, int err, const char *message);

/* Streams accepted by a server (server.c calls stream.c). */
weft_stream *weft__stream_accepted(weft_server *server, int fd,
                                   bool allow_half_open, bool is_unix);
/* After the server's 'connection': emits 'connect' and starts reading. */
void weft__stream_accept_done(weft_stream *stream);
void weft__server_stream_closed(weft_server *server);
/* A connected stream over `fd` (weft_stream_open, stream_open.c);
 * reading starts in the pending phase. NULL on ENOMEM. */
weft_stream *weft__stream_adopt(weft_loop *loop, int fd, bool is_unix);

#endif
