/*
 * connect.c - the connect path of a client stream: the lookup, the
 * attempts (raced, RFC 8305 Happy Eyeballs, or one after another), the
 * attempt and connect timers, and the winner.
 *
 * Owns every fd and watcher until one attempt connects; then hands the
 * winner's watcher to stream.c (weft__stream_conn_won) and closes the
 * others without a word. Knows nothing of the stream's struct, its
 * events or its read and write paths: stream.c calls weft__conn_*, and
 * connect.c answers through the three weft__stream_conn_* calls.
 *
 *   state    event                       action                  next
 *   -------  --------------------------  ----------------------  -------
 *   LOOKUP   lookup done                 order the addresses,    RACING
 *                                        start attempt 0
 *   LOOKUP   lookup failed               report getaddrinfo      DONE
 *   RACING   attempt fails (at once or   record its error; start RACING
 *            later)                      the next now, re-arm
 *                                        the delay timer
 *   RACING   delay timer (race mode,     start the next attempt  RACING
 *            attempts left)              (earlier ones go on)
 *   RACING   nothing left, none in       report every attempt    DONE
 *            flight                      in one 'error'
 *   RACING   an attempt connects         close the others, give  DONE
 *                                        its fd to the stream
 *   any      connect timeout             close all, ETIMEDOUT    DONE
 *                                        naming each attempt
 *   any      destroy (weft__conn_stop)   close all, unseen       DONE
 *
 * An IP literal or a path is RACING with one address from the start: no
 * lookup, no timer unless a connect timeout was asked for, one
 * allocation, and the same syscalls as a plain non-blocking connect.
 *
 * Outcomes known inside the caller's API call (a Unix socket that
 * connects or is refused at once) are reported from the stream's pending
 * phase: nothing is emitted inside the call that caused it.
 */
#include "internal.h"

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

/* RFC 8305's recommended Connection Attempt Delay, and Node's default. */
#define ATTEMPT_DELAY_DEFAULT 250
/* RFC 8305 section 5: never below 10 ms (Node refuses less too). */
#define ATTEMPT_DELAY_MIN 10
/* Longer than any name DNS can carry; as dns.c. */
#define HOST_MAX 1024

enum conn_state { LOOKUP, RACING, DONE };
enum attempt_state { A_IDLE, A_TRYING, A_READY, A_FAILED };

typedef struct attempt {
    weft__io io;
    struct weft__conn *c;
    int err;             /* A_FAILED: why */
    uint8_t state;       /* enum attempt_state */
    const char *syscall; /* "connect" or "bind", for the message */
    weft__sockaddr addr;
} attempt;

struct weft__conn {
    weft_stream *s;
    weft__dns_req *dns;
    weft__timer delay;    /* the next attempt starts when it fires */
    weft__timer deadline; /* connect timeout */
    uint64_t delay_ms;
    uint8_t state;    /* enum conn_state */
    bool sequential;  /* autoSelectFamily off */
    bool has_local;
    bool registered;  /* an attempt other than the first used the poller */
    int af;           /* AF_* asked of the lookup */
    weft__sockaddr local;
    unsigned n, next, in_flight;
    attempt *att; /* `one` for a literal, else an array */
    attempt one;
    char host[]; /* "" for a path */
};

static void on_attempt_io(weft__io *io, unsigned events);
static void settle(weft__conn *c);

/* ---- starting attempts ---------------------------------------------- */

/* Starts `a`: A_TRYING (waiting for the fd to become writable), A_READY
 * (connected at once: Unix sockets) or A_FAILED. */
static void attempt_start(weft__conn *c, attempt *a)
{
    const struct sockaddr *sa = &a->addr.u.sa;
    a->syscall = "connect";
    int fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC,
                    0);
    if (fd < 0) {
        a->err = weft__err(errno);
        a->state = A_FAILED;
        return;
    }
    weft__io_init(&a->io, fd, on_attempt_io);
    if (c->has_local) {
        if (c->local.u.sa.sa_family != sa->sa_family) {
            a->err = WEFT_EAFNOSUPPORT;
            a->syscall = "bind";
            goto out_close_fd;
        }
        if (bind(fd, &c->local.u.sa, c->local.len) < 0) {
            a->err = weft__err(errno);
            a->syscall = "bind";
            goto out_close_fd;
        }
    }
    int r;
    do
        r = connect(fd, sa, a->addr.len);
    while (r < 0 && errno == EINTR);
    if (r == 0) {
        a->state = A_READY;
        return;
    }
    if (errno == EINPROGRESS) {
        a->err = weft__io_set(weft_stream_loop(c->s), &a->io, WEFT__IO_WRITE);
        if (a->err == 0) {
            a->state = A_TRYING;
            c->in_flight++;
            if (a != &c->att[0])
                c->registered = true;
            return;
        }
    } else if (errno == EAGAIN && sa->sa_family == AF_UNIX) {
        /* A Unix listener's backlog is full: Linux says EAGAIN where TCP
         * would retry SYNs; report it as a refusal, as Node does. */
        a->err = WEFT_ECONNREFUSED;
    } else {
        a->err = weft__err(errno);
    }
out_close_fd:
    weft__io_close(weft_stream_loop(c->s), &a->io);
    a->state = A_FAILED;
}

/*
 * Starts attempts until one is under way or connected, or none is left;
 * in race mode, arms the timer for the one after.
 */
static void start_next(weft__conn *c)
{
    weft_loop *loop = weft_stream_loop(c->s);
    while (c->next < c->n) {
        attempt *a = &c->att[c->next++];
        attempt_start(c, a);
        if (a->state == A_FAILED)
            continue; /* the previous one failed: the next starts now */
        if (a->state == A_TRYING && !c->sequential && c->next < c->n)
            weft__timer_arm(loop, &c->delay,
                            weft__deadline(loop->now, c->delay_ms));
        return;
    }
    weft__timer_disarm(loop, &c->delay);
}

static void delay_fire(weft__timer *t)
{
    weft__conn *c = WEFT__CONTAINER_OF(t, weft__conn, delay);
    start_next(c);
    settle(c);
}

/* ---- the end: a winner, or one error for all ------------------------- */

static void close_all(weft__conn *c, attempt *keep)
{
    weft_loop *loop = weft_stream_loop(c->s);
    for (unsigned i = 0; i < c->n; i++) {
        attempt *a = &c->att[i];
        if (a != keep && a->io.fd >= 0)
            weft__io_close(loop, &a->io);
    }
    c->in_flight = 0;
    weft__timer_disarm(loop, &c->delay);
    weft__timer_disarm(loop, &c->deadline);
    if (c->dns != NULL) {
        weft__dns_cancel(c->dns);
        c->dns = NULL;
    }
    c->state = DONE;
}

/*
 * "connect ECONNREFUSED ::1:8124, connect ECONNREFUSED 127.0.0.1:8124":
 * every attempt started, in order, as Node names one. Attempts still in
 * flight (a connect timeout) are named with `pending_err`.
 */
static char *message(weft__conn *c, int pending_err)
{
    size_t cap = 64, len = 0;
    for (unsigned i = 0; i < c->next; i++)
        cap += 160;
    char *m = weft__malloc(cap);
    if (m == NULL)
        return NULL;
    m[0] = '\0';
    for (unsigned i = 0; i < c->next; i++) {
        attempt *a = &c->att[i];
        int err = a->state == A_FAILED ? a->err : pending_err;
        char where[128];
        weft__addr_text(&a->addr.u.sa, where, sizeof(where));
        int w = snprintf(m + len, cap - len, "%s%s %s %s", len ? ", " : "",
                         a->syscall ? a->syscall : "connect",
                         weft_err_name(err), where);
        if (w > 0 && (size_t)w < cap - len)
            len += (size_t)w;
    }
    return m;
}

static void fail_all(weft__conn *c, int err, int pending_err)
{
    char *m = message(c, pending_err);
    close_all(c, NULL);
    weft_stream *s = c->s;
    /* The last call: it may free `c`. */
    weft__stream_conn_failed(s, err, m);
    free(m);
}

/* Reports what is decided: a winner known at once, or nothing left. */
static void settle(weft__conn *c)
{
    if (c->state != RACING)
        return;
    for (unsigned i = 0; i < c->next; i++) {
        attempt *a = &c->att[i];
        if (a->state == A_READY) {
            close_all(c, a);
            weft__stream_conn_won(c->s, &a->io, c->host);
            return;
        }
    }
    if (c->next < c->n || c->in_flight > 0)
        return;
    /* All failed: the code is the last attempt's. */
    int err = c->n > 0 ? c->att[c->next - 1].err : WEFT_ENOTFOUND;
    fail_all(c, err, err);
}

static void on_attempt_io(weft__io *io, unsigned events)
{
    WEFT__UNUSED(events);
    attempt *a = WEFT__CONTAINER_OF(io, attempt, io);
    weft__conn *c = a->c;
    int soerr = 0;
    socklen_t len = sizeof(soerr);
    if (getsockopt(io->fd, SOL_SOCKET, SO_ERROR, &soerr, &len) < 0)
        soerr = errno;
    if (soerr == EINPROGRESS || soerr == EALREADY)
        return; /* a spurious wake-up; the connect goes on */
    c->in_flight--;
    if (soerr == 0) {
        a->state = A_READY;
        close_all(c, a);
        weft__stream_conn_won(c->s, &a->io, c->host);
        return;
    }
    weft__io_close(weft_stream_loop(c->s), &a->io);
    a->state = A_FAILED;
    a->err = weft__err(soerr);
    start_next(c);
    settle(c);
}

static void deadline_fire(weft__timer *t)
{
    weft__conn *c = WEFT__CONTAINER_OF(t, weft__conn, deadline);
    if (c->state == DONE)
        return;
    if (c->state == LOOKUP) {
        /* Still resolving: name the host, as getaddrinfo would. */
        char m[HOST_MAX + 64];
        snprintf(m, sizeof(m), "connect ETIMEDOUT %s", c->host);
        close_all(c, NULL);
        weft__stream_conn_failed(c->s, WEFT_ETIMEDOUT, m);
        return;
    }
    fail_all(c, WEFT_ETIMEDOUT, WEFT_ETIMEDOUT);
}

/* ---- the lookup ------------------------------------------------------ */

/*
 * RFC 8305 section 4: interleave the families, starting with the family
 * of the resolver's first answer (which already reflects RFC 6724 and
 * gai.conf), keeping the resolver's order within each family.
 */
static int order(weft__conn *c, struct addrinfo *res)
{
    int n = 0;
    for (struct addrinfo *ai = res; ai != NULL; ai = ai->ai_next)
        if ((ai->ai_family == AF_INET || ai->ai_family == AF_INET6) &&
            ai->ai_addrlen <= sizeof(struct sockaddr_storage))
            n++;
    if (n == 0)
        return 0;
    c->att = n == 1 ? &c->one : weft__calloc(n, sizeof(attempt));
    if (c->att == NULL)
        return WEFT_ENOMEM;
    int first = res->ai_family;
    struct addrinfo *p[2] = {res, res}; /* next of the first / other family */
    int k = 0;
    for (int turn = 0; k < n; turn ^= 1) {
        struct addrinfo *ai = p[turn];
        while (ai != NULL &&
               ((turn == 0) != (ai->ai_family == first) ||
                (ai->ai_family != AF_INET && ai->ai_family != AF_INET6) ||
                ai->ai_addrlen > sizeof(struct sockaddr_storage)))
            ai = ai->ai_next;
        if (ai == NULL) {
            p[turn] = NULL;
            continue;
        }
        p[turn] = ai->ai_next;
        attempt *a = &c->att[k++];
        a->c = c;
        weft__io_init(&a->io, -1, on_attempt_io);
        memcpy(&a->addr.u.ss, ai->ai_addr, ai->ai_addrlen);
        a->addr.len = ai->ai_addrlen;
    }
    return n;
}

static void resolved(weft__dns_req *req, struct addrinfo *res, int err,
                     void *ctx)
{
    weft__conn *c = ctx;
    WEFT__UNUSED(req);
    c->dns = NULL;
    if (err == 0) {
        int n = order(c, res);
        if (n <= 0)
            err = n < 0 ? n : WEFT_ENOTFOUND;
        else
            c->n = (unsigned)n;
    }
    if (res != NULL)
        freeaddrinfo(res);
    if (err < 0) {
        char m[HOST_MAX + 64];
        snprintf(m, sizeof(m), "getaddrinfo %s %s", weft_err_name(err),
                 c->host);
        close_all(c, NULL);
        weft__stream_conn_failed(c->s, err, m);
        return;
    }
    c->state = RACING;
    start_next(c);
    settle(c);
}

/* ---- stream.c's side ------------------------------------------------- */

int weft__conn_new(weft_stream *s, const weft_connect_options *o,
                   weft__conn **out)
{
    *out = NULL;
    if (o->family != 0 && o->family != 4 && o->family != 6)
        return WEFT_EINVAL;
    if (o->local_port < 0 || o->local_port > 65535)
        return WEFT_EINVAL;
    if (o->attempt_delay_ms > 0 && o->attempt_delay_ms < ATTEMPT_DELAY_MIN)
        return WEFT_EINVAL;
    weft__sockaddr addr;
    const char *host = "";
    bool literal = true;
    if (o->path != NULL) {
        int err = weft__unix_addr(o->path, &addr);
        if (err < 0)
            return err;
    } else {
        if (o->port <= 0 || o->port > 65535)
            return WEFT_EINVAL;
        host = o->host != NULL && o->host[0] != '\0' ? o->host : "localhost";
        if (strlen(host) > HOST_MAX)
            return WEFT_EINVAL;
        literal = weft__parse_ip(host, o->port, &addr);
    }
    weft__sockaddr local;
    bool has_local = o->path == NULL &&
                     (o->local_address != NULL || o->local_port > 0);
    if (has_local) {
        const char *la = o->local_address;
        if (la == NULL) /* a port alone: the family of what we dial */
            la = literal && addr.u.sa.sa_family == AF_INET6 ? "::"
                 : o->family == 6                           ? "::"
                                                            : "0.0.0.0";
        if (!weft__parse_ip(la, o->local_port, &local))
            return WEFT_EINVAL;
    }
    size_t hlen = strlen(host);
    weft__conn *c = weft__calloc(1, sizeof(*c) + hlen + 1);
    if (c == NULL)
        return WEFT_ENOMEM;
    memcpy(c->host, host, hlen + 1);
    c->s = s;
    weft_loop *loop = weft_stream_loop(s);
    c->delay.fn = delay_fire;
    c->deadline.fn = deadline_fire;
    c->delay_ms = o->attempt_delay_ms ? o->attempt_delay_ms
                  : loop->attempt_delay_ms ? loop->attempt_delay_ms
                                           : ATTEMPT_DELAY_DEFAULT;
    c->sequential = o->no_auto_select_family;
    c->has_local = has_local;
    if (has_local)
        c->local = local;
    if (literal) {
        c->att = &c->one;
        c->n = 1;
        c->one.c = c;
        c->one.addr = addr;
        weft__io_init(&c->one.io, -1, on_attempt_io);
        c->state = RACING;
    } else {
        c->af = o->family == 4   ? AF_INET
                : o->family == 6 ? AF_INET6
                : has_local      ? local.u.sa.sa_family
                                 : AF_UNSPEC;
        int err = weft__dns_lookup_af(loop, host, o->port, c->af, false,
                                      resolved, c, &c->dns);
        if (err < 0) {
            free(c);
            return err;
        }
        c->state = LOOKUP;
    }
    if (o->connect_timeout_ms > 0) {
        weft__loop_update_time(loop);
        weft__timer_arm(loop, &c->deadline,
                        weft__deadline(loop->now, o->connect_timeout_ms));
        if (!weft__timer_armed(&c->deadline)) {
            if (c->dns != NULL)
                weft__dns_cancel(c->dns);
            free(c);
            return WEFT_ENOMEM;
        }
    }
    *out = c;
    return 0;
}

void weft__conn_go(weft__conn *c)
{
    if (c->state != RACING)
        return;
    start_next(c);
    /* Decided at once (a Unix socket that connected or was refused):
     * reported from the pending phase, never inside the API call. */
    if (c->in_flight == 0)
        weft__stream_conn_defer(c->s);
}

void weft__conn_pending(weft__conn *c)
{
    settle(c);
}

bool weft__conn_stop(weft__conn *c)
{
    if (c->state != DONE)
        close_all(c, NULL);
    return !c->registered;
}

void weft__conn_free(weft__conn *c)
{
    if (c == NULL)
        return;
    weft__conn_stop(c);
    if (c->att != &c->one)
        free(c->att);
    free(c);
}

int weft_loop_set_attempt_delay(weft_loop *loop, uint64_t ms)
{
    loop = weft__loop(loop);
    if (loop == NULL)
        return WEFT_ENOMEM;
    if (ms < ATTEMPT_DELAY_MIN || ms > UINT32_MAX)
        return WEFT_EINVAL;
    loop->attempt_delay_ms = (uint32_t)ms;
    return 0;
}
