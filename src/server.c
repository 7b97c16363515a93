/*
 * server.c - net.Server: listen on a port, a path or a given fd, accept,
 * enforce maxConnections, close once the last connection is gone.
 *
 * States:
 *
 *   IDLE ──listen──► LISTENING ──close()──► CLOSING ──last stream──► CLOSED
 *     │  (a name)        ▲                    (no fd; waits for     ('close'
 *     └──► RESOLVING ────┘ bind ok             its connections)      emitted)
 *               └── lookup/bind error: 'error', back to IDLE
 *
 * close() on IDLE releases the handle with no event (WEFT_ENOTRUNNING).
 * Knows nothing of epoll: it watches its fd through weft__io.
 */
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

/*
 * Connections accepted per readable event. Bounded so that a burst of
 * connects cannot starve streams that are already open; the rest are
 * taken on the next turn (the listener stays readable).
 */
#define ACCEPT_BUDGET 64

/*
 * After shedding on EMFILE the listener rests this long before it looks
 * at its backlog again. Without it a connect flood costs an accept, a
 * close and two opens of the spare fd per connection (44 us each here,
 * a quarter of a core at 6k connects/s); with it, at most ten wake-ups a
 * second, and the kernel's backlog and SYN handling absorb the rest.
 */
#define EMFILE_BACKOFF_MS 100

/* Node's default backlog: see DESIGN.md, decision 13. */
#define DEFAULT_BACKLOG 511

enum server_state { IDLE, RESOLVING, LISTENING, CLOSING, CLOSED };

enum server_bits { BIT_LISTENING = 1, BIT_ERROR = 2, BIT_CLOSE = 4 };

enum server_event {
#define WEFT_SRV_EV_(ev, type) EV_##ev,
    WEFT_SERVER_EVENT_MAP(WEFT_SRV_EV_)
#undef WEFT_SRV_EV_
};

struct weft_server {
    weft__handle h;
    weft__io io;
    weft__emitter em;
    void *data;
    int max_connections;
    unsigned connections;
    int backlog;
    uint8_t state;
    bool allow_half_open;
    bool unlink_path;
    bool is_unix; /* accepted streams are Unix sockets */
    bool reuse_port; /* SO_REUSEPORT on the next TCP listener */
    int port;   /* for a listen that waits on a lookup */
    char *host; /* the name being looked up, for messages */
    weft__dns_req *dns;
    weft__timer backoff; /* EMFILE rest, see EMFILE_BACKOFF_MS */
    char *path;
    int err; /* the async error waiting to be emitted */
    char errmsg[160];
};

static void backoff_over(weft__timer *t);

weft_server *weft_create_server(weft_loop *loop, weft_server_connection_cb cb,
                                void *ctx)
{
    loop = weft__loop(loop);
    if (loop == NULL)
        return NULL;
    weft_server *s = weft__calloc(1, sizeof(*s));
    if (s == NULL)
        return NULL;
    weft__handle_init(loop, &s->h, WEFT__SERVER);
    weft__io_init(&s->io, -1, NULL);
    s->backoff.fn = backoff_over;
    s->max_connections = -1;
    s->backlog = DEFAULT_BACKLOG;
    s->state = IDLE;
    if (cb != NULL && weft_server_on_connection(s, cb, ctx) < 0) {
        weft__handle_close(&s->h);
        return NULL;
    }
    return s;
}

/* ---- accept ---------------------------------------------------------- */

static void emit_error(weft_server *s, int err, const char *msg)
{
    if (weft__emitter_has(&s->em, EV_error))
        WEFT__EMIT(&s->em, EV_error, weft_server_error_cb, s, err, msg);
    else
        weft__unhandled_error("server", s, err, msg);
}

/*
 * Out of fds: the kernel keeps the connection in the backlog and the
 * listener stays readable, so a plain retry spins. Give the spare fd
 * back, take the connections (which closes them, so the peers see a
 * reset rather than a hang), and take the spare again.
 */
static void shed_connections(weft_server *s)
{
    weft_loop *loop = s->h.loop;
    if (loop->spare_fd < 0)
        return;
    close(loop->spare_fd);
    loop->spare_fd = -1;
    for (int i = 0; i < ACCEPT_BUDGET; i++) {
        int fd = accept4(s->io.fd, NULL, NULL, SOCK_CLOEXEC);
        if (fd < 0)
            break;
        close(fd);
    }
    loop->spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    weft__io_set(loop, &s->io, 0);
    weft__timer_arm(loop, &s->backoff, loop->now + EMFILE_BACKOFF_MS);
    if (!weft__timer_armed(&s->backoff))
        weft__io_set(loop, &s->io, WEFT__IO_READ); /* no rest, no stall */
}

static void backoff_over(weft__timer *t)
{
    weft_server *s = WEFT__CONTAINER_OF(t, weft_server, backoff);
    if (s->state == LISTENING)
        weft__io_set(s->h.loop, &s->io, WEFT__IO_READ);
}

static void on_acceptable(weft__io *io, unsigned events)
{
    weft_server *s = WEFT__CONTAINER_OF(io, weft_server, io);
    WEFT__UNUSED(events);
    for (int i = 0; i < ACCEPT_BUDGET && s->state == LISTENING; i++) {
        int fd = accept4(io->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            int e = errno;
            if (e == EAGAIN || e == EWOULDBLOCK)
                return;
            if (e == EINTR || e == ECONNABORTED || e == EPROTO)
                continue;
            if (e == EMFILE || e == ENFILE) {
                shed_connections(s);
                return;
            }
            char msg[96];
            snprintf(msg, sizeof(msg), "accept %s", weft_err_name(-e));
            emit_error(s, weft__err(e), msg);
            return;
        }
        if (s->max_connections >= 0 &&
            s->connections >= (unsigned)s->max_connections) {
            close(fd);
            continue;
        }
        weft_stream *st =
            weft__stream_accepted(s, fd, s->allow_half_open, s->is_unix);
        if (st == NULL) {
            close(fd);
            continue;
        }
        s->connections++;
        WEFT__EMIT(&s->em, EV_connection, weft_server_connection_cb, s, st);
        weft__stream_accept_done(st);
    }
}

void weft__server_stream_closed(weft_server *s)
{
    s->connections--;
    if (s->state == CLOSING && s->connections == 0)
        weft__handle_defer(&s->h, BIT_CLOSE);
}

/* ---- listen ---------------------------------------------------------- */

static int open_listener(weft_server *s, const weft__sockaddr *addr)
{
    int family = addr->u.sa.sa_family;
    int fd = socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return weft__err(errno);
    int err;
    if (family != AF_UNIX) {
        int on = 1;
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on));
        if (s->reuse_port &&
            setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &on, sizeof(on)) < 0) {
            err = weft__err(errno);
            goto out_close;
        }
    }
    if (bind(fd, &addr->u.sa, addr->len) < 0 ||
        listen(fd, s->backlog) < 0) {
        err = weft__err(errno);
        goto out_close;
    }
    weft__io_init(&s->io, fd, on_acceptable);
    err = weft__io_set(s->h.loop, &s->io, WEFT__IO_READ);
    if (err < 0) {
        weft__io_close(s->h.loop, &s->io);
        return err;
    }
    s->is_unix = family == AF_UNIX;
    s->state = LISTENING;
    weft__handle_start(&s->h);
    weft__handle_defer(&s->h, BIT_LISTENING);
    return 0;

out_close:
    close(fd);
    return err;
}

/* Adds the caller's listening callback only once listening is certain. */
static int listened(weft_server *s, int err, weft_server_listening_cb cb,
                    void *ctx)
{
    if (err < 0 || cb == NULL)
        return err;
    err = weft_server_once_listening(s, cb, ctx);
    if (err < 0) {
        weft__io_close(s->h.loop, &s->io);
        s->state = IDLE;
        weft__handle_stop(&s->h);
    }
    return err;
}

static void listen_resolved(weft__dns_req *req, struct addrinfo *res, int err,
                            void *ctx)
{
    weft_server *s = ctx;
    WEFT__UNUSED(req);
    s->dns = NULL;
    s->state = IDLE;
    weft__handle_stop(&s->h);
    const char *what = "getaddrinfo";
    char where[128];
    snprintf(where, sizeof(where), "%s", s->host ? s->host : "?");
    free(s->host);
    s->host = NULL;
    for (struct addrinfo *ai = res; err == 0 && ai != NULL; ai = ai->ai_next) {
        weft__sockaddr addr;
        memcpy(&addr.u.ss, ai->ai_addr, ai->ai_addrlen);
        addr.len = ai->ai_addrlen;
        err = open_listener(s, &addr);
        what = "listen";
        weft__addr_text(ai->ai_addr, where, sizeof(where));
        break; /* Node binds the first address the lookup returns */
    }
    if (res)
        freeaddrinfo(res);
    if (err < 0) {
        s->err = err;
        snprintf(s->errmsg, sizeof(s->errmsg), "%s %s %s", what,
                 weft_err_name(err), where);
        weft__handle_defer(&s->h, BIT_ERROR);
    }
}

int weft_server_listen(weft_server *s, int port, const char *host,
                       weft_server_listening_cb cb, void *ctx)
{
    if (s == NULL || port < 0 || port > 65535)
        return WEFT_EINVAL;
    if (s->state != IDLE)
        return s->state == CLOSED || s->state == CLOSING ? WEFT_ESTATE
                                                         : WEFT_EINVAL;
    weft__sockaddr addr;
    if (host == NULL)
        host = "0.0.0.0";
    if (weft__parse_ip(host, port, &addr))
        return listened(s, open_listener(s, &addr), cb, ctx);

    int err = cb ? weft_server_once_listening(s, cb, ctx) : 0;
    if (err < 0)
        return err;
    err = weft__dns_lookup(s->h.loop, host, port, false, listen_resolved, s,
                           &s->dns);
    if (err < 0) {
        if (cb)
            weft_server_off_listening(s, cb, ctx);
        return err;
    }
    s->port = port;
    s->host = weft__strdup(host);
    s->state = RESOLVING;
    weft__handle_start(&s->h);
    return 0;
}

int weft_server_listen_path(weft_server *s, const char *path,
                            weft_server_listening_cb cb, void *ctx)
{
    if (s == NULL || path == NULL)
        return WEFT_EINVAL;
    if (s->state != IDLE)
        return WEFT_EINVAL;
    weft__sockaddr addr;
    int err = weft__unix_addr(path, &addr);
    if (err < 0)
        return err;
    char *copy = weft__strdup(path);
    if (copy == NULL)
        return WEFT_ENOMEM;
    err = listened(s, open_listener(s, &addr), cb, ctx);
    if (err < 0) {
        free(copy);
        return err;
    }
    free(s->path);
    s->path = copy;
    s->unlink_path = path[0] != '@'; /* an abstract name has no file */
    return 0;
}

int weft_server_listen_fd(weft_server *s, int fd, weft_server_listening_cb cb,
                          void *ctx)
{
    if (s == NULL || fd < 0)
        return WEFT_EINVAL;
    if (s->state != IDLE)
        return WEFT_EINVAL;
    int listening = 0;
    socklen_t len = sizeof(listening);
    if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &len) < 0)
        return weft__err(errno);
    if (!listening)
        return WEFT_EINVAL;
    struct sockaddr_storage ss;
    len = sizeof(ss);
    if (getsockname(fd, (struct sockaddr *)&ss, &len) < 0)
        return weft__err(errno);
    s->is_unix = ss.ss_family == AF_UNIX;
    int flags = fcntl(fd, F_GETFL);
    if (flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0)
        return weft__err(errno);
    fcntl(fd, F_SETFD, FD_CLOEXEC);
    weft__io_init(&s->io, fd, on_acceptable);
    int err = weft__io_set(s->h.loop, &s->io, WEFT__IO_READ);
    if (err < 0) {
        s->io.fd = -1; /* not ours until we succeed */
        return err;
    }
    s->state = LISTENING;
    weft__handle_start(&s->h);
    weft__handle_defer(&s->h, BIT_LISTENING);
    return listened(s, 0, cb, ctx);
}

/* ---- close ----------------------------------------------------------- */

static void stop_listening(weft_server *s)
{
    weft__timer_disarm(s->h.loop, &s->backoff);
    if (s->dns != NULL) {
        weft__dns_cancel(s->dns);
        s->dns = NULL;
    }
    weft__io_close(s->h.loop, &s->io);
    if (s->unlink_path && s->path != NULL) {
        unlink(s->path);
        s->unlink_path = false;
    }
}

int weft_server_close(weft_server *s)
{
    if (s == NULL)
        return WEFT_EINVAL;
    switch (s->state) {
    case LISTENING:
    case RESOLVING:
        stop_listening(s);
        s->state = CLOSING;
        weft__handle_stop(&s->h);
        if (s->connections == 0)
            weft__handle_defer(&s->h, BIT_CLOSE);
        return 0;
    case IDLE:
        s->state = CLOSED;
        if (s->connections == 0)
            weft__handle_close(&s->h);
        return WEFT_ENOTRUNNING;
    default:
        return WEFT_ENOTRUNNING;
    }
}

void weft__server_pending(weft__handle *h, unsigned bits)
{
    weft_server *s = WEFT__CONTAINER_OF(h, weft_server, h);
    if ((bits & BIT_LISTENING) && s->state == LISTENING)
        WEFT__EMIT(&s->em, EV_listening, weft_server_listening_cb, s);
    if (bits & BIT_ERROR)
        emit_error(s, s->err, s->errmsg);
    if ((bits & BIT_CLOSE) && s->state == CLOSING && s->connections == 0) {
        s->state = CLOSED;
        WEFT__EMIT(&s->em, EV_close, weft_server_close_cb, s);
        weft__handle_close(&s->h);
    }
}

void weft__server_free(weft__handle *h)
{
    weft_server *s = WEFT__CONTAINER_OF(h, weft_server, h);
    stop_listening(s);
    weft__emitter_free(&s->em);
    free(s->path);
    free(s->host);
    free(s);
}

/* ---- properties ------------------------------------------------------ */

int weft_server_set_max_connections(weft_server *s, int max)
{
    if (s == NULL || max < -1)
        return WEFT_EINVAL;
    s->max_connections = max;
    return 0;
}

int weft_server_max_connections(const weft_server *s)
{
    return s ? s->max_connections : WEFT_EINVAL;
}

unsigned weft_server_connections(const weft_server *s)
{
    return s ? s->connections : 0;
}

int weft_server_address(const weft_server *s, weft_address *out)
{
    if (s == NULL || out == NULL)
        return WEFT_EINVAL;
    if (s->state != LISTENING)
        return WEFT_ENOTRUNNING;
    if (s->path != NULL) {
        memset(out, 0, sizeof(*out));
        snprintf(out->address, sizeof(out->address), "%s", s->path);
        return 0;
    }
    weft__sockaddr a;
    a.len = sizeof(a.u.ss);
    if (getsockname(s->io.fd, &a.u.sa, &a.len) < 0)
        return weft__err(errno);
    return weft__address_from(&a.u.sa, a.len, out);
}

int weft_server_fileno(const weft_server *s)
{
    if (s == NULL)
        return WEFT_EINVAL;
    return s->state == LISTENING && s->io.fd >= 0 ? s->io.fd : WEFT_EBADF;
}

void weft_server_set_allow_half_open(weft_server *s, bool allow)
{
    if (s)
        s->allow_half_open = allow;
}

void weft_server_set_reuse_port(weft_server *s, bool on)
{
    if (s)
        s->reuse_port = on;
}

void weft_server_set_backlog(weft_server *s, int backlog)
{
    if (s)
        s->backlog = backlog > 0 ? backlog : DEFAULT_BACKLOG;
}

void weft_server_ref(weft_server *s)
{
    if (s)
        weft__handle_ref(&s->h);
}

void weft_server_unref(weft_server *s)
{
    if (s)
        weft__handle_unref(&s->h);
}

void weft_server_set_data(weft_server *s, void *data)
{
    if (s)
        s->data = data;
}

void *weft_server_data(const weft_server *s)
{
    return s ? s->data : NULL;
}

weft_loop *weft_server_loop(const weft_server *s)
{
    return s ? s->h.loop : NULL;
}

/* ---- events ---------------------------------------------------------- */

#define WEFT_SRV_REG_(ev, type) WEFT__EVENT_API(server, ev, type)
WEFT_SERVER_EVENT_MAP(WEFT_SRV_REG_)
#undef WEFT_SRV_REG_
