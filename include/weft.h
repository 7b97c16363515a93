/*
 * weft.h - Node's classic `net` module as a C library.
 *
 * The whole public API, readable top to bottom:
 *
 *   1. errors        negative WEFT_E* codes, weft_strerror(), weft_err_name()
 *   2. loop          weft_loop_new(), weft_default_loop(), weft_run()
 *   3. timers        weft_set_timeout(), weft_set_interval(), clear
 *   4. server        net.createServer / net.Server
 *   5. stream        net.createConnection / net.Stream
 *   6. addresses     net.isIP / isIPv4 / isIPv6
 *   7. TLS           credentials, setSecure, verifyPeer, getPeerCertificate
 *   8. real programs run modes, calls from other threads, signals, fd
 *                    watchers, the work pool, dns.lookup, setImmediate,
 *                    a stream's fd and a stream from an fd
 *   9. datagrams     Node's dgram: UDP sockets, batched
 *
 * Conventions (see docs/design.md):
 *   - Functions returning int give 0 (or a count / a boolean) on success
 *     and a negative WEFT_E* code on failure.
 *   - Every `weft_loop *` parameter may be NULL, meaning the default loop.
 *   - Handles are opaque and owned by the library. A handle stays valid
 *     until its 'close' event has been delivered; the library frees it
 *     afterwards. Ending or destroying a handle inside any of its own
 *     listeners is always legal.
 *   - Nothing is emitted from inside the call that caused it: results and
 *     errors arrive from the loop on a later turn. If a call that would
 *     schedule a callback fails, that callback is never called.
 *   - Events follow Node's EventEmitter: many listeners per event, called
 *     in the order added; `once` listeners run at most one time; a removed
 *     listener is never called again, even by an emit already in progress;
 *     a listener added during an emit is first called by the next emit.
 *   - Callbacks take the emitting object first and `void *ctx` last.
 *   - One loop per thread; a loop and its handles must not be touched from
 *     another thread, except through weft_loop_call() and weft_loop_stop()
 *     (section 8).
 */
#ifndef WEFT_H
#define WEFT_H

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(WEFT_BUILDING)
#define WEFT_EXTERN __attribute__((visibility("default")))
#else
#define WEFT_EXTERN
#endif

/* ------------------------------------------------------------------ */
/* 1. Errors                                                          */
/* ------------------------------------------------------------------ */

/*
 * The one table of error codes: name, value, message. Errno-backed codes
 * are the negated Linux errno; the rest are weft's own, below -3000.
 */
#define WEFT_ERRNO_MAP(X)                                                      \
    X(EACCES, -EACCES, "permission denied")                                    \
    X(EADDRINUSE, -EADDRINUSE, "address already in use")                       \
    X(EADDRNOTAVAIL, -EADDRNOTAVAIL, "address not available")                  \
    X(EAFNOSUPPORT, -EAFNOSUPPORT, "address family not supported")             \
    X(EAGAIN, -EAGAIN, "resource temporarily unavailable")                     \
    X(EALREADY, -EALREADY, "operation already in progress")                    \
    X(EBADF, -EBADF, "bad file descriptor")                                    \
    X(EBUSY, -EBUSY, "resource busy or locked")                                \
    X(EEXIST, -EEXIST, "file already exists")                                  \
    X(ECANCELED, -ECANCELED, "operation canceled")                             \
    X(ECONNABORTED, -ECONNABORTED, "software caused connection abort")         \
    X(ECONNREFUSED, -ECONNREFUSED, "connection refused")                       \
    X(ECONNRESET, -ECONNRESET, "connection reset by peer")                     \
    X(EHOSTUNREACH, -EHOSTUNREACH, "host is unreachable")                      \
    X(EINTR, -EINTR, "interrupted system call")                                \
    X(EINVAL, -EINVAL, "invalid argument")                                     \
    X(EIO, -EIO, "i/o error")                                                  \
    X(EISCONN, -EISCONN, "socket is already connected")                        \
    X(EMFILE, -EMFILE, "too many open files")                                  \
    X(EMSGSIZE, -EMSGSIZE, "message too long")                                 \
    X(ENAMETOOLONG, -ENAMETOOLONG, "name too long")                            \
    X(ENETDOWN, -ENETDOWN, "network is down")                                  \
    X(ENETUNREACH, -ENETUNREACH, "network is unreachable")                     \
    X(ENFILE, -ENFILE, "file table overflow")                                  \
    X(ENOBUFS, -ENOBUFS, "no buffer space available")                          \
    X(ENOSPC, -ENOSPC, "no space left on device")                              \
    X(ENOENT, -ENOENT, "no such file or directory")                            \
    X(ENOMEM, -ENOMEM, "not enough memory")                                    \
    X(ENOTCONN, -ENOTCONN, "socket is not connected")                          \
    X(ENOTSOCK, -ENOTSOCK, "socket operation on non-socket")                   \
    X(ENOTSUP, -ENOTSUP, "operation not supported")                            \
    X(EPERM, -EPERM, "operation not permitted")                                \
    X(EPIPE, -EPIPE, "broken pipe")                                            \
    X(EPROTO, -EPROTO, "protocol error")                                       \
    X(ETIMEDOUT, -ETIMEDOUT, "connection timed out")                           \
    X(EOF, -3001, "end of file")                                               \
    X(ENOTFOUND, -3002, "host name not found")                                 \
    X(EAI_AGAIN, -3003, "temporary failure in name resolution")               \
    X(EWRITEAFTEREND, -3004, "write after end")                                \
    X(ENOTRUNNING, -3005, "server is not running")                             \
    X(ESTATE, -3006, "operation not allowed in this state")                   \
    X(EENCODING, -3007, "unknown encoding")                                    \
    X(ETLS, -3008, "TLS error")                                                \
    X(ECERT, -3009, "peer certificate rejected")                              \
    X(ETLSTRUNC, -3010, "TLS stream truncated without close_notify")

enum {
#define WEFT_ERR_ENUM_(name, value, msg) WEFT_##name = (value),
    WEFT_ERRNO_MAP(WEFT_ERR_ENUM_)
#undef WEFT_ERR_ENUM_
};

/* A static message for code `err` ("connection refused"); never NULL. */
WEFT_EXTERN const char *weft_strerror(int err);
/* The code's name without prefix ("ECONNREFUSED"); never NULL. */
WEFT_EXTERN const char *weft_err_name(int err);

/*
 * An 'error' that no listener takes is never silent (Node throws; weft
 * never aborts, the object still closes with 'close'(true)). By default
 * it is written to stderr as "weft: unhandled 'error' on <object>:
 * <message>". `object` is "stream" or "server", `handle` the weft_stream
 * or weft_server. Install a handler to log it your way, or NULL to
 * restore the default. Process-wide: set it before loops run on other
 * threads; the handler runs on the thread of the object's loop.
 */
typedef void (*weft_unhandled_error_cb)(const char *object, void *handle,
                                        int err, const char *message,
                                        void *ctx);
WEFT_EXTERN void weft_set_unhandled_error_handler(weft_unhandled_error_cb cb,
                                                  void *ctx);

/* ------------------------------------------------------------------ */
/* 2. Loop                                                            */
/* ------------------------------------------------------------------ */

typedef struct weft_loop weft_loop;

/* The process-wide default loop, created on first use. NULL on ENOMEM. */
WEFT_EXTERN weft_loop *weft_default_loop(void);

/* A new loop, for a loop per thread. NULL on failure (errno set). */
WEFT_EXTERN weft_loop *weft_loop_new(void);

/*
 * Runs `loop` until nothing referenced is left: no listening server, no
 * open or opening stream, no pending timer (unref'd ones aside), no event
 * waiting to be delivered. Returns 0, or WEFT_EBUSY if called re-entrantly.
 */
WEFT_EXTERN int weft_loop_run(weft_loop *loop);

/* weft_loop_run() on the default loop. */
WEFT_EXTERN int weft_run(void);

/*
 * Makes weft_loop_run() return after the current turn even if handles are
 * still alive. They stay valid; running the loop again resumes them.
 */
WEFT_EXTERN void weft_loop_stop(weft_loop *loop);

/* True if running `loop` would do anything. */
WEFT_EXTERN bool weft_loop_alive(weft_loop *loop);

/* The loop's cached clock, in milliseconds (monotonic). */
WEFT_EXTERN uint64_t weft_loop_now(weft_loop *loop);

/*
 * Frees `loop` and every handle still attached to it, without emitting
 * anything. Returns WEFT_EBUSY if the loop is running. The default loop
 * may be closed too; weft_default_loop() then makes a new one.
 */
WEFT_EXTERN int weft_loop_close(weft_loop *loop);

/* ------------------------------------------------------------------ */
/* 3. Timers (Node's setTimeout / setInterval)                         */
/* ------------------------------------------------------------------ */

typedef struct weft_timer weft_timer;
typedef void (*weft_timer_cb)(weft_timer *timer, void *ctx);

/*
 * Calls `cb` once after `ms` milliseconds. The timer is valid until its
 * callback has returned (a one-shot) or until it is cleared. NULL on
 * ENOMEM.
 */
WEFT_EXTERN weft_timer *weft_set_timeout(weft_loop *loop, uint64_t ms,
                                         weft_timer_cb cb, void *ctx);
/* Calls `cb` every `ms` milliseconds (at least 1) until cleared. */
WEFT_EXTERN weft_timer *weft_set_interval(weft_loop *loop, uint64_t ms,
                                          weft_timer_cb cb, void *ctx);
/*
 * Cancels and releases `timer`. Legal inside its own callback; NULL is
 * ignored. Clearing a one-shot after its callback returned is a use after
 * free.
 */
WEFT_EXTERN void weft_clear_timer(weft_timer *timer);
/* An unref'd timer does not keep weft_loop_run() going. */
WEFT_EXTERN void weft_timer_unref(weft_timer *timer);
WEFT_EXTERN void weft_timer_ref(weft_timer *timer);

/* ------------------------------------------------------------------ */
/* 4. Server (net.Server)                                             */
/* ------------------------------------------------------------------ */

typedef struct weft_server weft_server;
typedef struct weft_stream weft_stream;

/* What address() returns: Node's { address, family, port }. */
typedef struct weft_address {
    int family;       /* 4, 6, or 0 for a Unix socket */
    int port;         /* 0 for a Unix socket */
    char address[108]; /* numeric address text, or the socket path */
} weft_address;

typedef void (*weft_server_connection_cb)(weft_server *server,
                                          weft_stream *stream, void *ctx);
typedef void (*weft_server_listening_cb)(weft_server *server, void *ctx);
typedef void (*weft_server_close_cb)(weft_server *server, void *ctx);
/* `message` is Node-style ("listen EADDRINUSE 127.0.0.1:8124"), borrowed. */
typedef void (*weft_server_error_cb)(weft_server *server, int err,
                                     const char *message, void *ctx);

/*
 * net.createServer(connectionListener): a new server on `loop`, with
 * `on_connection` (may be NULL) added as a 'connection' listener. NULL on
 * ENOMEM. The server keeps nothing alive until it listens.
 */
WEFT_EXTERN weft_server *weft_create_server(weft_loop *loop,
                                            weft_server_connection_cb cb,
                                            void *ctx);

/*
 * server.listen(port, [host], [callback]). `host` NULL means any IPv4
 * address (INADDR_ANY), as the seed says; "::" and "::1" listen on IPv6,
 * a name such as "localhost" is resolved off the loop first. Port 0 picks
 * a free port (see weft_server_address()). `cb`, if given, is added as a
 * once-listener of 'listening', which is emitted on a later turn.
 *
 * Errors known at once are returned and nothing is emitted: WEFT_EINVAL
 * (NULL server, port outside 0..65535, already listening), WEFT_EADDRINUSE,
 * WEFT_EACCES, WEFT_EADDRNOTAVAIL, WEFT_EMFILE. When `host` is a name to
 * resolve, resolution and bind errors arrive as 'error' instead.
 */
WEFT_EXTERN int weft_server_listen(weft_server *server, int port,
                                   const char *host,
                                   weft_server_listening_cb cb, void *ctx);

/*
 * server.listen(path, [callback]): a Unix socket server at `path`.
 * WEFT_ENAMETOOLONG if `path` does not fit a sockaddr_un, WEFT_EADDRINUSE
 * if it exists. The socket file is unlinked when the server closes.
 * A leading '@' ("@name", Node's '\0name', which a C string cannot
 * carry; '@' as Go, systemd and ss(8) write it) names a socket in Linux's
 * abstract namespace: no file, gone with its last fd; address() gives
 * "@name" back.
 */
WEFT_EXTERN int weft_server_listen_path(weft_server *server, const char *path,
                                        weft_server_listening_cb cb, void *ctx);

/*
 * server.listenFD(fd): accept on `fd`, which is already bound and
 * listening. weft owns `fd` from now on and closes it with the server.
 * WEFT_EBADF / WEFT_ENOTSOCK / WEFT_EINVAL (not listening) on bad fds.
 */
WEFT_EXTERN int weft_server_listen_fd(weft_server *server, int fd,
                                      weft_server_listening_cb cb, void *ctx);

/*
 * Socket activation (systemd, systemd-socket-activate): the listening
 * sockets passed as fds 3, 4, ... with LISTEN_PID (must be this
 * process), LISTEN_FDS and LISTEN_FDNAMES ("http:admin"), read as
 * sd_listen_fds(3) reads them. The first call of any of these three
 * reads the variables and clears them, so children do not inherit them;
 * the fds become close-on-exec. weft_listen_fds() gives how many were
 * passed (0: none), weft_listen_fd_name() the name of one (NULL if
 * none; valid for the process's life).
 *
 * weft_server_listen_activated() listens on the first passed fd named
 * `name`, or, with `name` NULL, on the one at `index` (0 is fd 3), as
 * weft_server_listen_fd() would; each fd goes to one server. Returns
 * WEFT_ENOENT when there is no such fd (or it was taken), else as
 * weft_server_listen_fd().
 */
WEFT_EXTERN int weft_listen_fds(void);
WEFT_EXTERN const char *weft_listen_fd_name(int index);
WEFT_EXTERN int weft_server_listen_activated(weft_server *server,
                                             const char *name, int index,
                                             weft_server_listening_cb cb,
                                             void *ctx);

/*
 * server.close(): stops accepting now; 'close' is emitted once every
 * connection the server accepted has closed. WEFT_ENOTRUNNING if the
 * server is not listening; the handle is then released anyway (on a later
 * turn, with no event), so close() is always the way to be done with a
 * server.
 */
WEFT_EXTERN int weft_server_close(weft_server *server);

/*
 * server.maxConnections: when `connections` has reached `max`, new
 * connections are accepted and closed at once. -1 (the default) means no
 * limit; 0 refuses every connection.
 */
WEFT_EXTERN int weft_server_set_max_connections(weft_server *server, int max);
WEFT_EXTERN int weft_server_max_connections(const weft_server *server);

/* server.connections: streams accepted by this server not yet closed. */
WEFT_EXTERN unsigned weft_server_connections(const weft_server *server);

/* server.address(): WEFT_ENOTRUNNING unless listening. */
WEFT_EXTERN int weft_server_address(const weft_server *server,
                                    weft_address *out);

/* Streams accepted from now on get this allowHalfOpen (default false). */
WEFT_EXTERN void weft_server_set_allow_half_open(weft_server *server,
                                                 bool allow);

/* Listen backlog for the next listen (default 511, as Node's). */
WEFT_EXTERN void weft_server_set_backlog(weft_server *server, int backlog);

/*
 * SO_REUSEPORT on the next TCP listen (Node 22's listen({reusePort})):
 * several servers, one per loop, thread or process, may then listen on
 * the same address and port, and the kernel spreads incoming connections
 * over them. Every one of them must set it. No effect on a Unix socket.
 */
WEFT_EXTERN void weft_server_set_reuse_port(weft_server *server, bool on);

/* An unref'd server does not keep weft_loop_run() going. */
WEFT_EXTERN void weft_server_ref(weft_server *server);
WEFT_EXTERN void weft_server_unref(weft_server *server);

WEFT_EXTERN void weft_server_set_data(weft_server *server, void *data);
WEFT_EXTERN void *weft_server_data(const weft_server *server);
WEFT_EXTERN weft_loop *weft_server_loop(const weft_server *server);

/*
 * Server events. For each event E with callback type T:
 *   int weft_server_on_E(server, T cb, void *ctx);    add a listener
 *   int weft_server_once_E(server, T cb, void *ctx);  add a one-time one
 *   int weft_server_off_E(server, T cb, void *ctx);   remove the latest
 *                                                     added (cb, ctx)
 * on/once return 0 or WEFT_ENOMEM; off returns 0 or WEFT_ENOENT.
 *
 *   connection  a stream was accepted (its 'connect' follows at once)
 *   listening   the server is bound and accepting
 *   close       the server closed and its last connection is gone
 *   error       listen failed, or accept failed for good
 */
#define WEFT_SERVER_EVENT_MAP(X)                                               \
    X(connection, weft_server_connection_cb)                                   \
    X(listening, weft_server_listening_cb)                                     \
    X(close, weft_server_close_cb)                                             \
    X(error, weft_server_error_cb)

#define WEFT_SERVER_EVENT_DECL_(ev, type)                                      \
    WEFT_EXTERN int weft_server_on_##ev(weft_server *s, type cb, void *ctx);   \
    WEFT_EXTERN int weft_server_once_##ev(weft_server *s, type cb, void *ctx); \
    WEFT_EXTERN int weft_server_off_##ev(weft_server *s, type cb, void *ctx);
WEFT_SERVER_EVENT_MAP(WEFT_SERVER_EVENT_DECL_)
#undef WEFT_SERVER_EVENT_DECL_

/* ------------------------------------------------------------------ */
/* 5. Stream (net.Stream)                                             */
/* ------------------------------------------------------------------ */

/* stream.readyState, exactly the seed's five states. */
typedef enum weft_ready_state {
    WEFT_CLOSED = 0,
    WEFT_OPENING,
    WEFT_OPEN,
    WEFT_READ_ONLY,
    WEFT_WRITE_ONLY
} weft_ready_state;

typedef void (*weft_stream_connect_cb)(weft_stream *stream, void *ctx);
/*
 * 'data': `data` is borrowed for the call and followed by a NUL byte not
 * counted in `len`. Raw bytes, or text in the stream's encoding.
 */
typedef void (*weft_stream_data_cb)(weft_stream *stream, const char *data,
                                    size_t len, void *ctx);
typedef void (*weft_stream_end_cb)(weft_stream *stream, void *ctx);
typedef void (*weft_stream_timeout_cb)(weft_stream *stream, void *ctx);
typedef void (*weft_stream_drain_cb)(weft_stream *stream, void *ctx);
typedef void (*weft_stream_secure_cb)(weft_stream *stream, void *ctx);
/* `message` is Node-style ("connect ECONNREFUSED 127.0.0.1:8124"). */
typedef void (*weft_stream_error_cb)(weft_stream *stream, int err,
                                     const char *message, void *ctx);
typedef void (*weft_stream_close_cb)(weft_stream *stream, bool had_error,
                                     void *ctx);

/*
 * new net.Stream(): an unconnected stream (readyState 'closed') on
 * `loop`. It keeps nothing alive until it connects. NULL on ENOMEM.
 */
WEFT_EXTERN weft_stream *weft_stream_new(weft_loop *loop);

/*
 * stream.connect(port, [host]). `host` NULL means "localhost". IP
 * literals connect at once; names are resolved off the loop, and each
 * address is tried in turn. readyState becomes 'opening'; 'connect' or
 * 'error' then 'close'(true) follows. Legal on a new stream or on one
 * whose 'close' is being delivered (to reuse it). Returns WEFT_EINVAL
 * (NULL, port outside 1..65535) or WEFT_ESTATE (already open/opening).
 */
WEFT_EXTERN int weft_stream_connect(weft_stream *stream, int port,
                                    const char *host);

/*
 * stream.connect(path): a Unix socket connection. WEFT_ENAMETOOLONG if
 * `path` does not fit; a missing socket gives 'error' WEFT_ENOENT.
 */
WEFT_EXTERN int weft_stream_connect_path(weft_stream *stream,
                                         const char *path);

/*
 * net.createConnection(port, [host]) and (path): weft_stream_new() plus
 * connect. On success *out is the new stream; on failure *out is NULL.
 */
WEFT_EXTERN int weft_create_connection(weft_loop *loop, int port,
                                       const char *host, weft_stream **out);
WEFT_EXTERN int weft_create_connection_path(weft_loop *loop, const char *path,
                                            weft_stream **out);

/*
 * socket.connect(options): everything a connection can be told before it
 * starts, in one struct. Zero-initialise it and set what you need; every
 * zero is the default.
 */
typedef struct weft_connect_options {
    int port;         /* 1..65535, with `host` */
    const char *host; /* an IP literal or a name; NULL: "localhost" */
    /* A Unix socket instead of port/host. "@name" names an abstract
     * socket (Node's '\0name'), as weft_server_listen_path(). */
    const char *path;
    int family; /* 0 (any), 4 or 6: which addresses of a name to use */
    /* Bind before connecting (Node's localAddress / localPort). An IP
     * literal; a name's lookup is then limited to its family. */
    const char *local_address;
    int local_port; /* 0: any */
    /* Connect timeout: no connection after this long gives 'error'
     * WEFT_ETIMEDOUT naming the addresses tried, then 'close'(true).
     * Not the idle 'timeout' (weft_stream_set_timeout). 0: none (the
     * kernel's SYN retries decide, about two minutes). */
    uint64_t connect_timeout_ms;
    bool no_delay;   /* setNoDelay(true) */
    bool keep_alive; /* setKeepAlive(true, keep_alive_initial_delay_ms) */
    uint64_t keep_alive_initial_delay_ms;
    /* Happy Eyeballs (RFC 8305, Node's autoSelectFamily), for a name
     * with more than one address: addresses are interleaved by family,
     * starting with the resolver's first; a new attempt starts every
     * `attempt_delay_ms` (Node's autoSelectFamilyAttemptTimeout; 0: the
     * loop's default, 250 ms; else at least 10) or as soon as the one
     * before fails; earlier attempts keep running; the first to connect
     * wins and the others are closed unseen. When all fail, one 'error'
     * whose message names every attempt ("connect ECONNREFUSED ::1:80,
     * connect ECONNREFUSED 127.0.0.1:80"). */
    uint64_t attempt_delay_ms;
    /* Node's autoSelectFamily: false. One address after another, each
     * started only once the one before has failed. */
    bool no_auto_select_family;
} weft_connect_options;

/*
 * stream.connect(options). Legal where weft_stream_connect() is. Returns
 * WEFT_EINVAL (NULL, port outside 1..65535 without a path, family not 0,
 * 4 or 6, local_address not an IP literal, local_port outside 0..65535,
 * attempt_delay_ms in 1..9), WEFT_ENAMETOOLONG (path), WEFT_ESTATE,
 * WEFT_ENOMEM. Everything else arrives as 'error'.
 */
WEFT_EXTERN int weft_stream_connect_options(weft_stream *stream,
                                            const weft_connect_options *opts);
/* net.createConnection(options). */
WEFT_EXTERN int weft_create_connection_options(weft_loop *loop,
                                               const weft_connect_options *opts,
                                               weft_stream **out);

/*
 * net.setDefaultAutoSelectFamilyAttemptTimeout(ms), per loop: the attempt
 * delay of connections whose options leave it 0. WEFT_EINVAL under 10.
 */
WEFT_EXTERN int weft_loop_set_attempt_delay(weft_loop *loop, uint64_t ms);

/*
 * stream.write(data). Returns 1 (true) if all of it was handed to the
 * kernel, 0 (false) if some or all was copied into the stream's queue
 * ('drain' follows once the queue is empty). While connecting, data is
 * queued and 0 returned. Errors: WEFT_EWRITEAFTEREND after end(),
 * WEFT_ESTATE on a closed or destroyed stream, WEFT_EINVAL (NULL data
 * with len > 0), WEFT_ENOMEM. A kernel error (EPIPE, ECONNRESET) is not
 * returned: it arrives as 'error' then 'close'(true).
 */
WEFT_EXTERN int weft_stream_write(weft_stream *stream, const void *data,
                                  size_t len);

/* One piece of a gather write. */
typedef struct weft_buf {
    const void *base;
    size_t len;
} weft_buf;

/*
 * Writes the `n` pieces as if they were one buffer, in one system call
 * when the queue is empty (sendmsg with an iovec: an HTTP header and its
 * body without a copy or a second syscall); what the kernel does not take
 * is copied into the queue. Returns and errors as weft_stream_write() of
 * the concatenation. Under TLS the pieces are copied together and sent
 * as one record (OpenSSL has no gather write). Not in Node's net: its
 * cork()/uncork() serve the same purpose.
 */
WEFT_EXTERN int weft_stream_writev(weft_stream *stream, const weft_buf *bufs,
                                   size_t n);

/*
 * writable.cork() / uncork(), as on Node's sockets: while corked, writes
 * wait in the stream's queue, and the last uncork() sends them all with
 * one sendmsg. Corks nest (up to 255: WEFT_EINVAL past that); end()
 * uncorks whatever the depth; destroy() discards what waits. A corked
 * write returns 1 while under 16 KiB wait (Node's default highWaterMark),
 * else 0, and 'drain' follows the flush. Corking an ended or closed
 * stream does nothing. weft_stream_corked() gives the depth.
 */
WEFT_EXTERN int weft_stream_cork(weft_stream *stream);
WEFT_EXTERN void weft_stream_uncork(weft_stream *stream);
WEFT_EXTERN int weft_stream_corked(const weft_stream *stream);

/*
 * stream.write(string, encoding): encodes the NUL-terminated `str` with
 * `encoding` ("utf8" when NULL; "ascii", "latin1"/"binary", "base64",
 * "hex" ...) and writes the bytes. WEFT_EENCODING for an unknown name.
 */
WEFT_EXTERN int weft_stream_write_string(weft_stream *stream, const char *str,
                                         const char *encoding);

/*
 * stream.end([data]): writes `data` (may be NULL) and then half-closes:
 * the FIN is sent once the queue has drained. readyState becomes
 * 'readOnly' (or 'closed' if the peer had already ended). Calling end()
 * again is a no-op returning 0.
 */
WEFT_EXTERN int weft_stream_end(weft_stream *stream, const void *data,
                                size_t len);
WEFT_EXTERN int weft_stream_end_string(weft_stream *stream, const char *str,
                                       const char *encoding);

/*
 * stream.destroy(): closes the socket now, dropping queued data. 'close'
 * (had_error false) follows on a later turn, unless an 'error' is already
 * on its way, in which case 'close'(true). A second destroy is a no-op.
 */
WEFT_EXTERN void weft_stream_destroy(weft_stream *stream);

/*
 * socket.resetAndDestroy(): destroy() that closes a TCP connection with a
 * reset (SO_LINGER 0) instead of a FIN: queued data is dropped and the
 * peer's next read or write fails with ECONNRESET. On a stream still
 * connecting it is destroy(). WEFT_ENOTSUP on a Unix stream (nothing is
 * done, as Node throws), WEFT_EINVAL for NULL.
 */
WEFT_EXTERN int weft_stream_reset_and_destroy(weft_stream *stream);

/*
 * stream.pause() / resume(): pause stops reading from the kernel, so the
 * peer's writes back up in the socket buffers; no 'data' or 'end' is
 * emitted while paused.
 */
WEFT_EXTERN void weft_stream_pause(weft_stream *stream);
WEFT_EXTERN void weft_stream_resume(weft_stream *stream);
WEFT_EXTERN bool weft_stream_is_paused(const weft_stream *stream);

/*
 * stream.setTimeout(ms): emit 'timeout' after `ms` of no reads or writes;
 * the stream stays open. 0 disables. Re-armed for free by any activity.
 */
WEFT_EXTERN int weft_stream_set_timeout(weft_stream *stream, uint64_t ms);

/*
 * stream.setEncoding(encoding): 'data' delivers text in `encoding`
 * ("utf8", "ascii", "base64", "hex", "latin1"); NULL returns to raw
 * bytes. A multi-byte character or base64 group split across reads is
 * delivered whole. WEFT_EENCODING for an unknown name.
 */
WEFT_EXTERN int weft_stream_set_encoding(weft_stream *stream,
                                         const char *encoding);

/* stream.setNoDelay(noDelay): TCP_NODELAY; a no-op on Unix sockets. */
WEFT_EXTERN int weft_stream_set_no_delay(weft_stream *stream, bool no_delay);

/*
 * stream.setKeepAlive(enable, [initialDelay]): SO_KEEPALIVE, and, when
 * `initial_delay_ms` > 0, the idle time before the first probe (rounded
 * up to whole seconds). Remembered and applied at connect if not open.
 */
WEFT_EXTERN int weft_stream_set_keep_alive(weft_stream *stream, bool enable,
                                           uint64_t initial_delay_ms);

/*
 * stream.allowHalfOpen. false (the default): after the peer's FIN and the
 * 'end' listeners, the stream ends its own side. true: the stream stays
 * 'writeOnly' until the user calls end().
 */
WEFT_EXTERN void weft_stream_set_allow_half_open(weft_stream *stream,
                                                 bool allow);

/* stream.readyState, and its seed name ("open", "readOnly", ...). */
WEFT_EXTERN weft_ready_state weft_stream_ready_state(const weft_stream *stream);
WEFT_EXTERN const char *weft_ready_state_name(weft_ready_state state);

/*
 * stream.remoteAddress / remotePort: the peer's numeric address ("::1",
 * "127.0.0.1") and port; NULL / -1 if not connected over TCP. The string
 * is owned by the stream and valid until it is freed.
 */
WEFT_EXTERN const char *weft_stream_remote_address(weft_stream *stream);
WEFT_EXTERN int weft_stream_remote_port(weft_stream *stream);
/* stream.address(): the local end, as server.address() gives it. */
WEFT_EXTERN int weft_stream_address(const weft_stream *stream,
                                    weft_address *out);
/* stream.remoteFamily: 4 or 6; 0 if not connected over TCP. */
WEFT_EXTERN int weft_stream_remote_family(weft_stream *stream);
/* stream.localAddress / localPort: NULL / -1 if not connected over TCP.
 * The string is owned by the stream and valid until it is freed. */
WEFT_EXTERN const char *weft_stream_local_address(weft_stream *stream);
WEFT_EXTERN int weft_stream_local_port(weft_stream *stream);

/* bytesRead / bytesWritten (bytes handed to the kernel). */
WEFT_EXTERN uint64_t weft_stream_bytes_read(const weft_stream *stream);
WEFT_EXTERN uint64_t weft_stream_bytes_written(const weft_stream *stream);
/* Bytes queued in user memory, not yet handed to the kernel. */
WEFT_EXTERN size_t weft_stream_buffer_size(const weft_stream *stream);

/* The server that accepted this stream, or NULL for a client. */
WEFT_EXTERN weft_server *weft_stream_server(const weft_stream *stream);

WEFT_EXTERN void weft_stream_ref(weft_stream *stream);
WEFT_EXTERN void weft_stream_unref(weft_stream *stream);

WEFT_EXTERN void weft_stream_set_data(weft_stream *stream, void *data);
WEFT_EXTERN void *weft_stream_data(const weft_stream *stream);
WEFT_EXTERN weft_loop *weft_stream_loop(const weft_stream *stream);

/*
 * Stream events, registered as for the server:
 * weft_stream_on_E / once_E / off_E.
 *
 *   connect   the connection is established (server side: right after
 *             the server's 'connection')
 *   data      bytes or text arrived
 *   end       the peer sent FIN
 *   timeout   no activity for the setTimeout() period
 *   drain     the write queue became empty
 *   secure    the TLS handshake completed
 *   error     a failure; 'close'(true) follows
 *   close     last event, exactly once per connection
 */
#define WEFT_STREAM_EVENT_MAP(X)                                               \
    X(connect, weft_stream_connect_cb)                                         \
    X(data, weft_stream_data_cb)                                               \
    X(end, weft_stream_end_cb)                                                 \
    X(timeout, weft_stream_timeout_cb)                                         \
    X(drain, weft_stream_drain_cb)                                             \
    X(secure, weft_stream_secure_cb)                                           \
    X(error, weft_stream_error_cb)                                             \
    X(close, weft_stream_close_cb)

#define WEFT_STREAM_EVENT_DECL_(ev, type)                                      \
    WEFT_EXTERN int weft_stream_on_##ev(weft_stream *s, type cb, void *ctx);   \
    WEFT_EXTERN int weft_stream_once_##ev(weft_stream *s, type cb, void *ctx); \
    WEFT_EXTERN int weft_stream_off_##ev(weft_stream *s, type cb, void *ctx);
WEFT_STREAM_EVENT_MAP(WEFT_STREAM_EVENT_DECL_)
#undef WEFT_STREAM_EVENT_DECL_

/* ------------------------------------------------------------------ */
/* 6. Addresses (net.isIP)                                            */
/* ------------------------------------------------------------------ */

/*
 * net.isIP(input): 4 for a dotted-quad IPv4 address, 6 for an IPv6
 * address (with "::" compression, an IPv4 tail, or a %zone), 0 for
 * anything else, NULL included. No allocation, no locale.
 */
WEFT_EXTERN int weft_is_ip(const char *input);
WEFT_EXTERN bool weft_is_ipv4(const char *input);
WEFT_EXTERN bool weft_is_ipv6(const char *input);

/* ------------------------------------------------------------------ */
/* 7. TLS (setSecure, verifyPeer, getPeerCertificate), OpenSSL 3       */
/* ------------------------------------------------------------------ */

typedef struct weft_credentials weft_credentials;

enum weft_tls_flags {
    /* Client: finish the handshake even if the server's certificate does
     * not verify (Node's rejectUnauthorized: false); verifyPeer() and
     * weft_stream_verify_error() then tell. Default: such a handshake
     * fails with 'error' WEFT_ECERT. */
    WEFT_TLS_NO_REJECT = 1 << 0,
    /* Client: do not check that the certificate names the host that was
     * connected to (on by default, as in modern Node). */
    WEFT_TLS_NO_HOSTNAME_CHECK = 1 << 1,
    /* Server with CA certificates: fail the handshake unless the client
     * presents a certificate that verifies. Default: request only, as the
     * seed says, and let verifyPeer() tell. */
    WEFT_TLS_REQUIRE_PEER_CERT = 1 << 2,
    /* Do not load the system's default CA store (clients load it when no
     * CA is given). */
    WEFT_TLS_NO_SYSTEM_CA = 1 << 3,
};

enum weft_tls_version { WEFT_TLS1_2 = 0x0303, WEFT_TLS1_3 = 0x0304 };

/*
 * What crypto.createCredentials() took. Each PEM input is either a file
 * (`*_file`) or the PEM text in memory (`*_pem`), not both. All strings
 * are copied; the struct may be freed after weft_credentials_new().
 */
typedef struct weft_credentials_options {
    const char *key_file, *key_pem;   /* private key (may be encrypted) */
    const char *cert_file, *cert_pem; /* certificate, then its chain */
    const char *ca_file, *ca_pem;     /* trusted CA certificates */
    const char *passphrase;           /* for an encrypted key */
    const char *ciphers;      /* TLS 1.2 cipher list, OpenSSL syntax */
    const char *ciphersuites; /* TLS 1.3 suites, OpenSSL syntax */
    int min_version;          /* 0 or WEFT_TLS1_2: TLS 1.2; WEFT_TLS1_3 */
    const char *alpn;         /* protocols by preference: "h2,http/1.1" */
    unsigned flags;           /* enum weft_tls_flags */
    /*
     * Fields added later; a zeroed struct keeps the defaults.
     *
     * handshake_timeout_ms: a handshake not finished this long after it
     * began (the TCP connection, on either side) ends in 'error'
     * WEFT_ETIMEDOUT, then 'close'(true). 0: the default, 120000 (Node's
     * handshakeTimeout; unlike Node's, it closes the connection); -1:
     * none.
     *
     * session_tickets (server): TLS 1.3 tickets sent after each full
     * handshake, for clients to resume with. 0: OpenSSL's default (2);
     * -1: none; N: N. (A TLS 1.2 client that asks for a ticket still
     * gets one: refusing it would make OpenSSL keep a server-side
     * session cache instead, which costs more.)
     */
    int handshake_timeout_ms;
    int session_tickets;
} weft_credentials_options;

/*
 * Credentials for servers (`is_server`) or clients. NULL `opts` gives a
 * client with the system's CA store. Returns NULL and sets *err
 * (WEFT_ETLS with a reason in `errbuf`, WEFT_ENOENT, WEFT_EINVAL, ...) on
 * failure; `errbuf` may be NULL. The result has one reference.
 */
WEFT_EXTERN weft_credentials *
weft_credentials_new(const weft_credentials_options *opts, bool is_server,
                     int *err, char *errbuf, size_t errbuf_size);
/* Streams hold their own reference; drop yours when done. */
WEFT_EXTERN weft_credentials *weft_credentials_ref(weft_credentials *c);
WEFT_EXTERN void weft_credentials_unref(weft_credentials *c);

/*
 * SNI on a server: a client asking for `servername` gets `creds` (which
 * gains a reference) instead of the server credentials. "*.example.com"
 * matches one label. WEFT_EINVAL if `server` is not server credentials.
 */
WEFT_EXTERN int weft_credentials_add_sni(weft_credentials *server,
                                         const char *servername,
                                         weft_credentials *creds);

/*
 * stream.setSecure([credentials]): TLS on this stream. On an accepted
 * stream (server side) `creds` must be server credentials; on a client
 * stream NULL means default client credentials. A stream made with
 * weft_stream_open() plays the side its credentials are for. Legal before
 * the stream connects (the handshake starts on connect) or at any point
 * while it is open: STARTTLS (SMTP, IMAP, XMPP, LDAP, PostgreSQL). Bytes
 * the program already received stay plaintext; every byte read after the
 * call goes to TLS, including bytes inside the 'data' being delivered
 * when it is called from a 'data' listener. A server must refuse
 * plaintext that arrived after its STARTTLS command (CVE-2011-0411,
 * docs/tls.md). WEFT_EBUSY while plaintext writes still wait in the
 * queue (call it again from 'drain'). 'secure' is emitted when the
 * handshake completes;
 * 'data' then carries plaintext, and write/end/pause/resume/setTimeout/
 * 'drain' work as on a plain stream (end() sends close_notify). A
 * handshake or certificate failure gives 'error' (WEFT_ETLS, WEFT_ECERT)
 * with OpenSSL's reason in the message, then 'close'(true).
 */
WEFT_EXTERN int weft_stream_set_secure(weft_stream *stream,
                                       weft_credentials *creds);

/* The name a client sends as SNI and checks the certificate against
 * (default: the host given to connect()). Call before the handshake. */
WEFT_EXTERN int weft_stream_set_servername(weft_stream *stream,
                                           const char *servername);

/*
 * stream.verifyPeer(): true only if the peer presented a certificate that
 * chains to a trusted CA, is within its validity period, and (client
 * side, unless WEFT_TLS_NO_HOSTNAME_CHECK) names the host connected to.
 */
WEFT_EXTERN bool weft_stream_verify_peer(weft_stream *stream);

/* Why verifyPeer() is false, in Node's words ("CERT_HAS_EXPIRED",
 * "ERR_TLS_CERT_ALTNAME_INVALID", "DEPTH_ZERO_SELF_SIGNED_CERT",
 * "UNABLE_TO_VERIFY_LEAF_SIGNATURE", "NO_PEER_CERTIFICATE"), or NULL.
 * After a handshake rejected for its certificate the session is gone by
 * the time 'error' is emitted: the reason is in that 'error' message. */
WEFT_EXTERN const char *weft_stream_verify_error(weft_stream *stream);

/* stream.getPeerCertificate(), with what modern Node adds. */
typedef struct weft_certificate {
    char subject[256];        /* "CN=localhost,O=weft test" */
    char issuer[256];
    char valid_from[32];      /* "Nov 25 13:00:00 2026 GMT" */
    char valid_to[32];
    char fingerprint256[100]; /* "AB:CD:..." SHA-256 of the DER */
    char serial_number[80];   /* upper-case hex */
    char subjectaltname[512]; /* "DNS:localhost, IP Address:127.0.0.1" */
} weft_certificate;

/* WEFT_ENOENT if the peer sent no certificate, WEFT_ESTATE before
 * 'secure' or on a plain stream. */
WEFT_EXTERN int weft_stream_get_peer_certificate(weft_stream *stream,
                                                 weft_certificate *out);

/* The ALPN protocol agreed on, or NULL. */
WEFT_EXTERN const char *weft_stream_alpn_protocol(weft_stream *stream);
/* "TLSv1.3", "TLSv1.2", or NULL on a plain stream. */
WEFT_EXTERN const char *weft_stream_tls_version(weft_stream *stream);

/* ------------------------------------------------------------------ */
/* 8. The loop inside a real program                                  */
/* ------------------------------------------------------------------ */
/*
 * Threads: a loop and its handles belong to the thread that runs the
 * loop. The only functions of this header that another thread may call
 * are weft_loop_call(), weft_loop_stop(), weft_work_cancel() (see there)
 * and weft_set_work_threads(). Every thread weft creates (name lookups,
 * the work pool) blocks all signals, so a signal meant for the program
 * never lands on a weft thread.
 */

/* ---- 8.1 Driving the loop, and being driven (embedding) ---- */

typedef enum weft_run_mode {
    WEFT_RUN_DEFAULT = 0, /* until nothing referenced is left, or stop() */
    WEFT_RUN_ONCE,        /* one turn; waits for I/O if there is none */
    WEFT_RUN_NOWAIT       /* one turn; never waits */
} weft_run_mode;

/*
 * Runs `loop` in `mode` (uv_run's modes). Returns 1 if the loop still
 * has something to do (running it again would), 0 if not, WEFT_EBUSY if
 * the loop is already running (re-entrant call), WEFT_ENOMEM for the
 * default loop that cannot be made. weft_loop_run() is WEFT_RUN_DEFAULT.
 */
WEFT_EXTERN int weft_loop_run_mode(weft_loop *loop, weft_run_mode mode);

/*
 * For driving weft from another event loop (GLib, a game loop, an epoll
 * of the program's own): the fd to watch for readability, and how long
 * that loop may sleep before calling weft_loop_run_mode(loop,
 * WEFT_RUN_NOWAIT): milliseconds, 0 for "do not sleep", -1 for "until
 * the fd is readable". The fd is weft's: never read or close it.
 */
WEFT_EXTERN int weft_loop_backend_fd(weft_loop *loop);
WEFT_EXTERN int weft_loop_backend_timeout(weft_loop *loop);

/*
 * Keeps `loop` alive while held, with nothing else to do: a worker
 * thread's loop that waits for weft_loop_call()s. Counted; loop thread
 * only.
 */
WEFT_EXTERN void weft_loop_ref(weft_loop *loop);
WEFT_EXTERN void weft_loop_unref(weft_loop *loop);

/* ---- 8.2 Calls from other threads ---- */

typedef void (*weft_call_fn)(weft_loop *loop, void *ctx);

/*
 * Any thread: queues `fn(loop, ctx)` to run on `loop`'s thread, during
 * the loop's next turn. Calls from one thread run in the order made; a
 * burst of calls costs the loop one wake-up. An idle loop wakes at once.
 * A queued call does not keep the loop alive by itself (weft_loop_ref()
 * does); calls still queued when the loop is closed are dropped, not
 * run. Returns 0, WEFT_ENOMEM, or WEFT_ESTATE if `loop` has been closed
 * (or is not a loop weft knows: no memory is touched through it). NULL
 * means the default loop, WEFT_ESTATE if there is none.
 */
WEFT_EXTERN int weft_loop_call(weft_loop *loop, weft_call_fn fn, void *ctx);

/* weft_loop_stop() (section 2) is also safe from any thread: it wakes
 * the loop, whose weft_loop_run() returns after the current turn. */

/* ---- 8.3 Signals (Node's process.on('SIGINT')) ---- */

typedef void (*weft_signal_cb)(weft_loop *loop, int signum, void *ctx);

/*
 * Listeners for signal `signum` on `loop` (NULL: the default loop),
 * called on the loop's thread as ordinary events (not inside the signal
 * handler). While a listener exists on any loop, the signal's default
 * action does not happen; when the last one is removed (off, a once
 * listener used, or its loop closed), the sigaction the program had
 * before comes back exactly. Every loop with a listener gets every
 * delivery: each run of weft's handler is counted, so deliveries before
 * the loop drains are not merged by weft (the kernel still merges a
 * standard signal sent again while it is pending). A listener does not
 * keep the loop alive, as in Node. The first listener makes a pipe (two
 * fds) that weft keeps for the life of the process.
 *
 * on/once return 0, WEFT_ENOMEM, or WEFT_EINVAL for a NULL `cb` or a
 * signal that cannot be caught or must not be deferred (SIGKILL,
 * SIGSTOP, SIGSEGV, SIGBUS, SIGFPE, SIGILL, one the C library keeps for
 * itself, or outside 1..64). off removes the latest (cb, ctx) added for
 * `signum`, or returns WEFT_ENOENT (WEFT_EINVAL for the arguments on
 * refuses).
 */
WEFT_EXTERN int weft_signal_on(weft_loop *loop, int signum, weft_signal_cb cb,
                               void *ctx);
WEFT_EXTERN int weft_signal_once(weft_loop *loop, int signum,
                                 weft_signal_cb cb, void *ctx);
WEFT_EXTERN int weft_signal_off(weft_loop *loop, int signum,
                                weft_signal_cb cb, void *ctx);

/* ---- 8.4 Watching an fd the program owns (uv_poll) ---- */

typedef struct weft_poll weft_poll;

enum weft_poll_events {
    WEFT_POLL_READABLE = 1,
    WEFT_POLL_WRITABLE = 2,
    WEFT_POLL_HANGUP = 4, /* the peer hung up (EPOLLRDHUP / EPOLLHUP) */
    WEFT_POLL_ERROR = 8   /* reported, never asked for: EPOLLERR */
};

/*
 * `events` are those that are ready among the ones asked for, plus
 * WEFT_POLL_ERROR. Readiness is level-triggered: not acting on it is
 * reported again next turn. An error or a full hang-up (a pipe's writer
 * gone) reports every side asked for, so the next read or write finds
 * out which; a socket peer's FIN (a half-close) adds READABLE and
 * HANGUP, not WRITABLE. The callback may change the interest, stop or
 * close the watcher.
 */
typedef void (*weft_poll_cb)(weft_poll *poll, unsigned events, void *ctx);

/*
 * Watches `fd` for `events` (WEFT_POLL_READABLE / WRITABLE / HANGUP; 0 for
 * none yet; WEFT_POLL_ERROR may be passed and changes nothing). weft never
 * reads, writes or closes `fd`; close the watcher before closing it. Every
 * refusal comes from this call, whatever `events`: WEFT_EBADF, WEFT_EPERM
 * (a regular file or a directory: always ready, use the work pool),
 * WEFT_EEXIST (fd already watched on this loop: by a watcher, even a
 * stopped one, or by a stream or server while it waits for I/O),
 * WEFT_EINVAL (unknown bits, NULL cb), WEFT_ENOMEM; *out (may be NULL)
 * is then NULL. A watcher with interest keeps the loop alive; one with
 * none does not.
 */
WEFT_EXTERN int weft_poll_start(weft_loop *loop, int fd, unsigned events,
                                weft_poll_cb cb, void *ctx, weft_poll **out);
/* Changes the interest, at any time (inside the callback too); 0 stops
 * watching (the watcher stays valid, the fd stays claimed). Returns 0,
 * WEFT_EINVAL, WEFT_ESTATE once closed, or the kernel's error (the fd
 * was closed under the watcher); on error nothing changed. */
WEFT_EXTERN int weft_poll_change(weft_poll *poll, unsigned events);
/* Stops for good; the callback is never called again (not even for an
 * event already fetched this turn), the fd may be watched again at once,
 * and the handle is freed after this turn. Legal inside the callback.
 * NULL is ignored. */
WEFT_EXTERN void weft_poll_close(weft_poll *poll);
/* The fd, or WEFT_EBADF once closed. */
WEFT_EXTERN int weft_poll_fd(const weft_poll *poll);
WEFT_EXTERN void weft_poll_ref(weft_poll *poll);
WEFT_EXTERN void weft_poll_unref(weft_poll *poll);

/* ---- 8.5 The work pool (uv_queue_work) ---- */

typedef struct weft_work weft_work;
/* Runs on a pool thread: may block; must not touch the loop. */
typedef void (*weft_work_fn)(void *ctx);
/* Runs on the loop's thread after `work` returned (status 0) or after a
 * cancel (WEFT_ECANCELED; `work` never ran). */
typedef void (*weft_work_done_cb)(weft_loop *loop, int status, void *ctx);

/*
 * Queues `work(ctx)` for the work pool, then `done(loop, status, ctx)` on
 * the loop (`done` may be NULL). Jobs start in the order queued. The pool
 * is not the lookup pool: slow work never delays a name lookup. A queued
 * job keeps the loop alive until its `done` ran; closing the loop drops
 * jobs not started and calls no `done` (a running `work` still returns
 * normally). *out (may be NULL) is valid until `done` is called. Loop
 * thread. Returns 0, WEFT_EINVAL (NULL `work`), WEFT_ENOMEM, or
 * WEFT_EAGAIN if no thread could be made.
 */
WEFT_EXTERN int weft_queue_work(weft_loop *loop, weft_work_fn work,
                                weft_work_done_cb done, void *ctx,
                                weft_work **out);
/*
 * Cancels a job that has not started: `work` never runs and `done` gets
 * WEFT_ECANCELED on a later turn (never inside this call). Returns 0, or
 * WEFT_EBUSY if it is running or finished (or already cancelled). Any
 * thread, as long as `done` has not run yet (then `work` is freed).
 */
WEFT_EXTERN int weft_work_cancel(weft_work *work);
/*
 * The pool's size (default 4, at most 128). Threads are made as jobs
 * need them; lowering the size lets extra threads end once idle. Any
 * thread. WEFT_EINVAL outside 1..128.
 */
WEFT_EXTERN int weft_set_work_threads(unsigned n);

/* ---- 8.6 Name lookups (Node's dns.lookup(host, {all: true})) ---- */

typedef struct weft_dns_req weft_dns_req;

/*
 * `err` is 0, WEFT_ENOTFOUND, WEFT_EAI_AGAIN, WEFT_ENOMEM ...; `addrs`
 * lists every address in the resolver's order (port 0), borrowed for the
 * call; `n` is 0 on error.
 */
typedef void (*weft_dns_lookup_cb)(weft_dns_req *req, int err,
                                   const weft_address *addrs, size_t n,
                                   void *ctx);

/*
 * dns.lookup(host, {all: true, family}): getaddrinfo on the lookup pool
 * (so /etc/hosts and nsswitch are honoured), every address it gives, in
 * its order. `family` 0, 4 or 6. An IP literal is its own answer
 * whatever `family` says, as written (as Node), without the pool, on a
 * later turn. The callback never runs inside this call. *out (may be
 * NULL) is valid until the callback runs. A lookup in flight keeps the
 * loop alive. Loop thread. Returns 0, WEFT_EINVAL (NULL or empty host,
 * NULL cb, bad family, name over 1024 bytes), WEFT_ENOMEM.
 */
WEFT_EXTERN int weft_dns_lookup(weft_loop *loop, const char *host, int family,
                                weft_dns_lookup_cb cb, void *ctx,
                                weft_dns_req **out);
/* The callback will not be called, and the lookup no longer keeps the
 * loop alive; a resolver still busy with it finishes unseen. Legal
 * inside any lookup's callback (its own included); NULL is ignored.
 * Loop thread only. */
WEFT_EXTERN void weft_dns_cancel(weft_dns_req *req);

/* ---- 8.7 setImmediate ---- */

typedef struct weft_immediate weft_immediate;
typedef void (*weft_immediate_cb)(weft_immediate *im, void *ctx);

/*
 * Calls `cb` once, after this turn's I/O and before the loop next waits.
 * Immediates run in the order set; one set from inside an immediate runs
 * on the next turn. Keeps the loop alive until it ran. NULL on ENOMEM.
 * The handle is valid until the callback returns or it is cleared.
 */
WEFT_EXTERN weft_immediate *weft_set_immediate(weft_loop *loop,
                                               weft_immediate_cb cb,
                                               void *ctx);
/* Cancels it; NULL is ignored. After its callback ran: use after free. */
WEFT_EXTERN void weft_clear_immediate(weft_immediate *im);

/* ---- 8.8 Escape hatches ---- */

/*
 * The socket under a stream or a server, borrowed: set an option weft
 * does not wrap (TCP_USER_TIMEOUT, SO_RCVBUF, IP_TOS), never read, write
 * or close it. WEFT_EBADF when there is none (a stream not connected
 * yet, still connecting, or destroyed; a server not listening or closed).
 */
WEFT_EXTERN int weft_stream_fileno(const weft_stream *stream);
WEFT_EXTERN int weft_server_fileno(const weft_server *server);

/*
 * new net.Socket({fd}): a stream over `fd`, an already connected stream
 * socket (TCP or Unix: a socketpair end, an inherited connection). weft
 * owns it from now on (non-blocking, close-on-exec, closed with the
 * stream). readyState is 'open' at once and reading starts on the next
 * turn; no 'connect' is emitted (as in Node). Returns WEFT_EBADF,
 * WEFT_ENOTSOCK, WEFT_EINVAL (not a stream socket), WEFT_ENOTCONN,
 * WEFT_ENOMEM; on failure `fd` is left open and *out is NULL.
 */
WEFT_EXTERN int weft_stream_open(weft_loop *loop, int fd, weft_stream **out);

/* ------------------------------------------------------------------ */
/* 9. Datagrams (Node's dgram)                                        */
/* ------------------------------------------------------------------ */
/*
 * A UDP socket, as Node's dgram.Socket. Reads are batched (recvmmsg,
 * up to 64 datagrams per system call) into a loop-wide area: an idle
 * socket owns no buffer. Sends made inside a 'message' listener to the
 * socket that emitted it are gathered and leave together with one
 * sendmmsg when that batch's listeners have run (before the loop next
 * waits). Whatever the kernel refuses (EAGAIN) waits in the socket's
 * bounded send queue and is flushed with sendmmsg when it can go;
 * 'drain' follows when that queue empties.
 */

typedef struct weft_dgram weft_dgram;

/* dgram.createSocket(options). A zeroed struct (or NULL) is udp4 with
 * the kernel's defaults. */
typedef struct weft_dgram_options {
    int family;           /* 4 (udp4, also when 0) or 6 (udp6) */
    bool ipv6_only;       /* udp6: IPV6_V6ONLY (no IPv4-mapped peers) */
    bool reuse_addr;      /* SO_REUSEADDR before bind */
    bool reuse_port;      /* SO_REUSEPORT before bind (spread over sockets) */
    int recv_buffer_size; /* SO_RCVBUF at creation; 0: the kernel's */
    int send_buffer_size; /* SO_SNDBUF at creation; 0: the kernel's */
    /*
     * Bytes of a datagram handed to 'message' (1..65536; 0: 65536, the
     * largest a UDP datagram can be). A longer datagram is delivered cut
     * to this size with `truncated` set and its real size in `size`.
     */
    size_t max_message;
    /* Bytes the send queue may hold (0: 1 MiB), and at most one datagram
     * per 16 of them (at least 64 datagrams, so empty ones are bounded
     * too); past either a send returns WEFT_ENOBUFS and the datagram is
     * dropped. */
    size_t max_queue;
    /*
     * UDP GRO (Linux 5.0+): the kernel may hand several datagrams of one
     * sender as one buffer, which weft splits again, so 'message' sees
     * each datagram as it was sent, for fewer trips through the stack.
     * Ignored where the kernel does not offer it.
     */
    bool gro;
} weft_dgram_options;

/*
 * What 'message' tells about a datagram: Node's rinfo. Borrowed for the
 * listener call. `sockaddr` is the sender's struct sockaddr_in or
 * sockaddr_in6, for programs that keep peers as addresses.
 */
typedef struct weft_dgram_rinfo {
    int family;     /* 4 or 6 */
    int port;
    size_t size;    /* the datagram's real size (> len when truncated) */
    bool truncated; /* longer than max_message: only `len` bytes came */
    const void *sockaddr;
    unsigned sockaddr_len;
    char address_[46]; /* private: read it through the function below */
} weft_dgram_rinfo;

/* The sender's numeric address ("127.0.0.1", "::1"), made on first call
 * (most servers never need the text); borrowed like `rinfo`. */
WEFT_EXTERN const char *weft_dgram_rinfo_address(const weft_dgram_rinfo *ri);

/* 'message': `data` (followed by a NUL byte not counted in `len`) and
 * `rinfo` are borrowed for the call. */
typedef void (*weft_dgram_message_cb)(weft_dgram *sock, const char *data,
                                      size_t len, const weft_dgram_rinfo *ri,
                                      void *ctx);
typedef void (*weft_dgram_listening_cb)(weft_dgram *sock, void *ctx);
typedef void (*weft_dgram_connect_cb)(weft_dgram *sock, void *ctx);
typedef void (*weft_dgram_drain_cb)(weft_dgram *sock, void *ctx);
typedef void (*weft_dgram_close_cb)(weft_dgram *sock, void *ctx);
/* `message` is Node-style ("recvmsg ECONNREFUSED"), borrowed. */
typedef void (*weft_dgram_error_cb)(weft_dgram *sock, int err,
                                    const char *message, void *ctx);

/*
 * dgram.createSocket(options, [onmessage]): a socket on `loop` (its fd
 * exists from now, so options may be set before bind), with `on_message`
 * (may be NULL) added as a 'message' listener. It keeps nothing alive
 * until it is bound (bind(), connect() or a first send()). Returns 0 and
 * *out, or WEFT_EINVAL (bad options), WEFT_EMFILE, WEFT_ENOMEM ...;
 * *out is then NULL.
 */
WEFT_EXTERN int weft_dgram_create_socket(weft_loop *loop,
                                         const weft_dgram_options *opts,
                                         weft_dgram_message_cb on_message,
                                         void *ctx, weft_dgram **out);

/*
 * socket.bind({fd}): a datagram socket over `fd`, a UDP socket made
 * elsewhere (inherited, passed over a Unix socket, made with options weft
 * does not wrap). weft owns it from now on (non-blocking, close-on-exec,
 * closed with the socket). If it is bound, reading starts and
 * 'listening' follows, as after bind(); if it is also connected, sends
 * go to its peer (no 'connect' is emitted); if not bound, bind() or a
 * first send binds it as usual. Of `opts` (may be NULL) these apply:
 * max_message, max_queue, gro and the buffer sizes; family, when not 0,
 * must match the socket's; the rest belongs to whoever made it. Returns
 * WEFT_EBADF, WEFT_ENOTSOCK, WEFT_EINVAL (not a UDP socket, or bad
 * options), WEFT_ENOMEM; on failure `fd` is left open, as it was, and
 * *out is NULL.
 */
WEFT_EXTERN int weft_dgram_open(weft_loop *loop, int fd,
                                const weft_dgram_options *opts,
                                weft_dgram_message_cb on_message, void *ctx,
                                weft_dgram **out);

/*
 * socket.bind([port], [address], [callback]). `address` NULL means every
 * address of the family ("0.0.0.0" or "::"); port 0 picks a free port
 * (see weft_dgram_address()). An IP literal is bound at once; a name is
 * looked up off the loop, and the first address of the socket's family
 * is bound. `cb`, if given, becomes a once-listener of 'listening', which
 * follows on a later turn. Returned at once: WEFT_EINVAL (port outside
 * 0..65535, or an IP literal of the other family), WEFT_ESTATE (bound,
 * binding or closed), WEFT_EADDRINUSE, WEFT_EACCES, WEFT_EADDRNOTAVAIL.
 * After a lookup, its failure or the bind's arrives as 'error' and the
 * socket stays unbound.
 */
WEFT_EXTERN int weft_dgram_bind(weft_dgram *sock, int port,
                                const char *address,
                                weft_dgram_listening_cb cb, void *ctx);

/*
 * socket.connect(port, [address], [callback]): sends without an address
 * go to this peer, and only its datagrams are received. `address` NULL
 * is the loopback address of the family (Node's "localhost"); a name is
 * looked up off the loop, sends made meanwhile wait in the queue. An
 * unbound socket is bound first (any address, port 0: 'listening' comes
 * before 'connect'). `cb` becomes a once-listener of 'connect'. Returns
 * WEFT_EINVAL (port outside 1..65535, or an IP literal of the other
 * family: a udp6 socket names IPv4 peers ::ffff:a.b.c.d), WEFT_EISCONN
 * (already connected or connecting), WEFT_ESTATE (closed), or the
 * kernel's error.
 */
WEFT_EXTERN int weft_dgram_connect(weft_dgram *sock, int port,
                                   const char *address,
                                   weft_dgram_connect_cb cb, void *ctx);
/* socket.disconnect(): WEFT_ENOTCONN unless connected. What was sent
 * while connected and has not left yet (gathered inside 'message', or
 * queued) still goes to that peer. The socket keeps its address and port:
 * Linux's disconnect also gives up a port the kernel chose, which weft
 * binds again (should another socket take it in that instant:
 * WEFT_EADDRINUSE, and the next send binds a new one). */
WEFT_EXTERN int weft_dgram_disconnect(weft_dgram *sock);
/* socket.remoteAddress(): WEFT_ENOTCONN unless connected. */
WEFT_EXTERN int weft_dgram_remote_address(const weft_dgram *sock,
                                          weft_address *out);
/* socket.address(): WEFT_ENOTRUNNING unless bound. */
WEFT_EXTERN int weft_dgram_address(const weft_dgram *sock, weft_address *out);

/*
 * socket.send(msg, [port], [address]): one datagram of the `n` pieces
 * (Node's send of an array of buffers: one sendmsg with an iovec). On a
 * connected socket `port` must be 0 and `address` NULL (else
 * WEFT_EISCONN). On an unconnected one, `port` is 1..65535 and `address`
 * an IP literal of the socket's family (else WEFT_EINVAL, as Node; a
 * udp6 socket reaches IPv4 peers as ::ffff:a.b.c.d) or a host name
 * (NULL: the family's loopback, as Node's "localhost"). A name is looked up off
 * the loop (as Node's send does) and the datagram waits in the queue, behind
 * what waits there, until it is known: send returns 0. One lookup serves every
 * datagram queued for that name meanwhile; a name that does not resolve drops
 * those and comes as 'error' (WEFT_ENOTFOUND, "getaddrinfo ENOTFOUND name"),
 * the socket staying open. Each later send looks the name up again: on a hot
 * path look it up once (weft_dns_lookup()) or connect(). An unbound
 * socket is bound first to any address and port 0, as Node does
 * ('listening' follows).
 *
 * Never blocks, and the bytes are copied (or sent) before it returns.
 * Returns 1 when the datagram went to the kernel (or, inside this
 * socket's 'message' listener, joined the batch that leaves with one
 * sendmmsg when the listeners return); 0 when it waits in the send queue
 * (the kernel refused it for now, or the socket is still looking up a
 * name): 'drain' follows once the queue is empty. Errors: WEFT_ENOBUFS
 * (the queue is full: the datagram is dropped), the kernel's refusals
 * of this datagram (WEFT_EMSGSIZE, WEFT_EACCES for a broadcast without
 * setBroadcast, WEFT_ENETUNREACH, WEFT_EINVAL ...), WEFT_ESTATE
 * (closed). An error the kernel reports later (an ICMP port unreachable
 * on a connected socket: WEFT_ECONNREFUSED) arrives as 'error'.
 */
WEFT_EXTERN int weft_dgram_send(weft_dgram *sock, const void *data,
                                size_t len, int port, const char *address);
WEFT_EXTERN int weft_dgram_sendv(weft_dgram *sock, const weft_buf *bufs,
                                 size_t n, int port, const char *address);
/*
 * `len` bytes as datagrams of `segment` bytes each (the last may be
 * shorter), to one destination (as weft_dgram_send()): with UDP GSO
 * (UDP_SEGMENT) one system call and one trip through the stack where
 * the kernel offers it, else one datagram at a time. At most 64
 * datagrams and 65,000 bytes per call (WEFT_EINVAL past it). What QUIC
 * senders do. Returns 1 if all went to the kernel, 0 if some or all
 * wait in the queue, or an error as weft_dgram_send(). When all of them
 * would wait (the queue holds datagrams already, or the destination is
 * a name being looked up) and the queue cannot hold them all, none is
 * sent: WEFT_ENOBUFS. Sent one at a time, an error stops at the segment
 * it is about: those before it went (or wait in the queue), it and the
 * rest did not; with the default max_queue a full queue no longer cuts
 * a call short that way (the rest of a call always fits an empty
 * queue), with a max_queue under 65,000 bytes it still can.
 */
WEFT_EXTERN int weft_dgram_send_segments(weft_dgram *sock, const void *data,
                                         size_t len, size_t segment,
                                         int port, const char *address);

/* A datagram back to the sender of a 'message' (no address text parsed):
 * the echo server's reply. Returns as weft_dgram_send(). */
WEFT_EXTERN int weft_dgram_reply(weft_dgram *sock, const weft_dgram_rinfo *to,
                                 const void *data, size_t len);

/* socket.getSendQueueSize() (bytes) and getSendQueueCount() (datagrams). */
WEFT_EXTERN size_t weft_dgram_send_queue_size(const weft_dgram *sock);
WEFT_EXTERN size_t weft_dgram_send_queue_count(const weft_dgram *sock);
/*
 * Datagrams weft accepted and then dropped: sends made inside this
 * socket's 'message' listeners return 1 when they join the batch that
 * leaves with one sendmmsg; if the kernel then refuses the batch and the
 * send queue has no room for the rest (max_queue), the rest is dropped,
 * as UDP may, and counted here. Every other refusal is returned by the
 * send call itself (WEFT_ENOBUFS). No Node counterpart.
 */
WEFT_EXTERN uint64_t weft_dgram_send_dropped(const weft_dgram *sock);

/*
 * socket.close([callback]): stops receiving now and drops what waits in
 * the send queue (a batch gathered inside a 'message' listener leaves
 * first); 'close' follows on a later turn, then the handle is freed.
 * Legal inside any listener: no 'message' is emitted after it.
 * WEFT_ENOTRUNNING if already closed.
 */
WEFT_EXTERN int weft_dgram_close(weft_dgram *sock, weft_dgram_close_cb cb,
                                 void *ctx);

/* Socket options, as Node's setters; each returns 0 or the kernel's
 * error (WEFT_EBADF once closed, WEFT_EINVAL for a bad value). */
WEFT_EXTERN int weft_dgram_set_broadcast(weft_dgram *sock, bool on);
WEFT_EXTERN int weft_dgram_set_ttl(weft_dgram *sock, int ttl); /* 1..255 */
WEFT_EXTERN int weft_dgram_set_multicast_ttl(weft_dgram *sock, int ttl);
WEFT_EXTERN int weft_dgram_set_multicast_loopback(weft_dgram *sock, bool on);
/* `iface`: an IPv4 address of the interface, or for udp6 "::%eth0" (a
 * scope naming the interface); NULL: the kernel's choice. */
WEFT_EXTERN int weft_dgram_set_multicast_interface(weft_dgram *sock,
                                                   const char *iface);
/* addMembership / dropMembership(group, [iface]). */
WEFT_EXTERN int weft_dgram_add_membership(weft_dgram *sock, const char *group,
                                          const char *iface);
WEFT_EXTERN int weft_dgram_drop_membership(weft_dgram *sock,
                                           const char *group,
                                           const char *iface);
/* add/dropSourceSpecificMembership(source, group, [iface]). */
WEFT_EXTERN int weft_dgram_add_source_specific_membership(
    weft_dgram *sock, const char *source, const char *group,
    const char *iface);
WEFT_EXTERN int weft_dgram_drop_source_specific_membership(
    weft_dgram *sock, const char *source, const char *group,
    const char *iface);
/* set/getRecvBufferSize, set/getSendBufferSize (the kernel doubles what
 * is asked, and the getters say what it kept). Get: the size or error. */
WEFT_EXTERN int weft_dgram_set_recv_buffer_size(weft_dgram *sock, int size);
WEFT_EXTERN int weft_dgram_set_send_buffer_size(weft_dgram *sock, int size);
WEFT_EXTERN int weft_dgram_recv_buffer_size(const weft_dgram *sock);
WEFT_EXTERN int weft_dgram_send_buffer_size(const weft_dgram *sock);

/* An unref'd socket does not keep weft_loop_run() going. */
WEFT_EXTERN void weft_dgram_ref(weft_dgram *sock);
WEFT_EXTERN void weft_dgram_unref(weft_dgram *sock);

/* The socket's fd, borrowed (escape hatch, as weft_stream_fileno()). */
WEFT_EXTERN int weft_dgram_fileno(const weft_dgram *sock);
WEFT_EXTERN void weft_dgram_set_data(weft_dgram *sock, void *data);
WEFT_EXTERN void *weft_dgram_data(const weft_dgram *sock);
WEFT_EXTERN weft_loop *weft_dgram_loop(const weft_dgram *sock);

/*
 * Datagram socket events, with on/once/off as for the server:
 *   int weft_dgram_on_E(sock, T cb, void *ctx), once_E, off_E.
 *
 *   message    a datagram arrived (see weft_dgram_message_cb)
 *   listening  the socket is bound
 *   connect    connect() completed
 *   drain      the send queue emptied after a send returned 0 (weft's:
 *              Node only exposes the queue's size)
 *   error      a lookup or bind after a lookup failed, or the kernel
 *              reported an error (ECONNREFUSED on a connected socket, a
 *              queued send refused); the socket stays open. With no
 *              listener it is reported (weft_set_unhandled_error_handler)
 *              and the socket is closed.
 *   close      after close(); the last event
 */
#define WEFT_DGRAM_EVENT_MAP(X)                                                \
    X(message, weft_dgram_message_cb)                                          \
    X(listening, weft_dgram_listening_cb)                                      \
    X(connect, weft_dgram_connect_cb)                                          \
    X(drain, weft_dgram_drain_cb)                                              \
    X(error, weft_dgram_error_cb)                                              \
    X(close, weft_dgram_close_cb)

#define WEFT_DGRAM_EVENT_DECL_(ev, type)                                       \
    WEFT_EXTERN int weft_dgram_on_##ev(weft_dgram *s, type cb, void *ctx);     \
    WEFT_EXTERN int weft_dgram_once_##ev(weft_dgram *s, type cb, void *ctx);   \
    WEFT_EXTERN int weft_dgram_off_##ev(weft_dgram *s, type cb, void *ctx);
WEFT_DGRAM_EVENT_MAP(WEFT_DGRAM_EVENT_DECL_)
#undef WEFT_DGRAM_EVENT_DECL_

#ifdef __cplusplus
}
#endif
#endif /* WEFT_H */
