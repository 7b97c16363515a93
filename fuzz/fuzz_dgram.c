/*
 * fuzz_dgram.c - the datagram socket's read path (recvmmsg batches, GRO
 * buffers split back into datagrams, truncation), its send paths (one
 * sendmsg, the batch gathered inside 'message', the send queue, GSO) and
 * its states, driven by a program of peer actions and API calls.
 *
 * The input's first byte picks the socket's options (max_message 1, 3,
 * 7, 100, 1199, 1200, 1500 or 65536: bits 0-2; gro on or off: bit 3;
 * max_queue the default, the default, 64 or 3000: bits 4-5) and how it
 * gets its address (bits 6-7): bind to 127.0.0.1 port 0,
 * weft_dgram_open() over a socket already bound there, connect() to the
 * peer (an implicit bind), or bind to the name "localhost".
 *
 * IPv6: a first byte whose bits 4-5 are 01 (a second spelling of the
 * default queue, which no udp4 input needs) runs the input over IPv6,
 * and the second byte is then the options byte, read as above, but with
 * its bits 4-5 at 01 setting ipv6_only (the queue still the default).
 * Inputs whose first byte has bits 4-5 at 00, 10 or 11 run over IPv4
 * exactly as before. Over IPv6 the socket is udp6 and the peer a plain
 * AF_INET6 socket on ::1; the loopback is "::1" (rinfo family 6,
 * sockaddr_in6), the largest datagram 65,527 bytes (not 65,507: no IPv4
 * header; past 65,488 it travels as two fragments over lo), the port
 * where nobody listens answers with ICMPv6. Names stay IPv4's: here
 * "localhost" is 127.0.0.1 only (/etc/hosts has no ::1 line and no
 * "ip6-localhost"), so a udp6 lookup of it finds nothing. Over IPv6,
 * what IPv4 sends or connects to "by name" goes to the literal
 * "0:0:0:0:0:0:0:1" instead (sent at once, as any literal), and the
 * fourth way to bind binds "::" (any; the address stays "::").
 *
 * The rest is a sequence of one-byte opcodes with their arguments. The
 * harness plays the peer on a plain UDP socket on loopback, with plain
 * syscalls: bursts of up to 8 datagrams of 0 to the largest size, empty
 * ones, GSO trains (UDP_SEGMENT, up to 64 segments) that a socket with
 * gro reads as one buffer. Every datagram is generated (its first bytes
 * its sequence number, the rest a function of number and offset), so
 * any byte can be checked. The API side sends, sendv's, send_segments
 * and replies to the peer (by address, to the default loopback, by the
 * name "localhost", or connected), connects to the peer (by address,
 * name or default) and to a port where nobody listens (port unreachable:
 * 'error' ECONNREFUSED on a later read, or a send's return),
 * disconnects, refs, unrefs, closes; inside 'message', for the next few
 * messages, it replies, sends, sends segments, has the peer send more
 * (read again in the same turn), connects or disconnects, and closes.
 * The kernel's refusals of the socket's sendmsg/sendmmsg (EAGAIN,
 * ENOBUFS, or a sendmmsg that takes only the first few) are injected on
 * demand, so the send queue, its flush on writability and 'drain' are
 * reached.
 *
 * After each action the loop turns without waiting and the peer reads
 * what came, until all that should have arrived has (a bounded wait:
 * loopback delivers at once, but lookups run on other threads); with the
 * opcode's high bit the next action comes first. What is in flight is
 * kept under each receive buffer (the loop turns first when it would not
 * be), so the kernel never drops a datagram and delivery must be exact.
 *
 * Invariants checked (abort() on a breach, which libFuzzer reports):
 *   - every 'message' is the next datagram the peer sent, in order, none
 *     lost or repeated while the socket is open and not connected
 *     elsewhere: len == min(size, max_message), truncated == (size >
 *     max_message), rinfo size the size sent, the bytes those sent,
 *     data[len] == '\0', rinfo family 4 (6), port the peer's, sockaddr
 *     the peer's sockaddr_in (sockaddr_in6, with its length), address
 *     "127.0.0.1" ("::1"); after close() nothing but 'close';
 *   - the peer receives, from the socket's port on loopback (address
 *     length and bytes as the family's), exactly what weft's
 *     sends accepted (1 or 0), in order, also what was sent while
 *     connected and had not left at disconnect(): a datagram may be
 *     missing only after a send returned an error (send_segments may have
 *     sent part), an 'error' told of a refused send, close() dropped the
 *     queue, or (with a small max_queue) an injected refusal of a batch
 *     overflowed the queue;
 *   - return codes match the state: 1 only with an empty queue and no
 *     lookup under way, 0 only when something had to wait (then 'drain'
 *     follows once the queue is empty), WEFT_ENOBUFS only past a small
 *     max_queue, WEFT_EISCONN / WEFT_EINVAL / WEFT_ENOTCONN as the
 *     connection state says, WEFT_ESTATE (and the rest) after close();
 *   - 'error' only ECONNREFUSED, and no more of them than datagrams
 *     sent to the closed port; never unhandled; 'listening' once and
 *     first; 'connect' once per connect() that took effect (then the
 *     remote address is loopback, at the port connected to); 'drain' only
 *     with an empty queue; 'close' exactly once, last, also to close()'s
 *     callback;
 *   - disconnect() keeps the socket's port (weft_dgram_address());
 *   - with the socket unref'd and idle the loop is not alive;
 *   - the loop ends within a bounded number of turns once the socket is
 *     closed; no fd and (ASan) no memory leaks.
 */
#include "harness.h"

#include <arpa/inet.h>
#include <dlfcn.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/udp.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* ---- the kernel's refusals, injected ---------------------------------- */

/* weft's own sendmsg and sendmmsg calls on the socket under test fail
 * (or, for sendmmsg, take only `partial` datagrams) while `left` > 0;
 * every other fd, the peer's and the resolver threads', goes through. */
static struct {
    atomic_int fd;
    atomic_int left;
    int err;
    unsigned partial;
    unsigned hits; /* calls refused so far */
} inj = {.fd = -1};

static void refused_datagrams(unsigned n);

ssize_t sendmsg(int fd, const struct msghdr *m, int flags)
{
    static ssize_t (*real)(int, const struct msghdr *, int);
    if (real == NULL)
        real = (ssize_t(*)(int, const struct msghdr *, int))dlsym(RTLD_NEXT,
                                                                  "sendmsg");
    if (fd >= 0 && fd == atomic_load(&inj.fd) && atomic_load(&inj.left) > 0) {
        atomic_fetch_sub(&inj.left, 1);
        inj.hits++;
        errno = inj.err;
        return -1;
    }
    return real(fd, m, flags);
}

int sendmmsg(int fd, struct mmsghdr *v, unsigned int n, int flags)
{
    static int (*real)(int, struct mmsghdr *, unsigned int, int);
    if (real == NULL)
        real = (int (*)(int, struct mmsghdr *, unsigned int, int))dlsym(
            RTLD_NEXT, "sendmmsg");
    if (fd >= 0 && fd == atomic_load(&inj.fd) && atomic_load(&inj.left) > 0) {
        atomic_fetch_sub(&inj.left, 1);
        inj.hits++;
        if (inj.partial > 0 && n > inj.partial) {
            refused_datagrams(n - inj.partial);
            return real(fd, v, inj.partial, flags);
        }
        refused_datagrams(n);
        errno = inj.err;
        return -1;
    }
    return real(fd, v, n, flags);
}

/* ---- what should arrive ----------------------------------------------- */

enum gen { GEN_PEER, GEN_WEFT };

/* Byte `off` of datagram `seq`: the sequence number first, then bytes
 * of the harness's generated streams, so every byte says where it is. */
static uint8_t dg_byte(int gen, uint32_t seq, size_t off)
{
    if (off < 4)
        return (uint8_t)(seq >> (8 * off));
    uint64_t i = ((uint64_t)seq << 17) + off;
    return gen == GEN_PEER ? peer_byte(i) : weft_byte(i);
}

static void dg_fill(uint8_t *buf, int gen, uint32_t seq, size_t len)
{
    for (size_t i = 0; i < len; i++)
        buf[i] = dg_byte(gen, seq, i);
}

/* A datagram on its way: whose bytes, which number, how long; `maybe`
 * when it may never arrive (part of a send that returned an error). */
typedef struct expect {
    uint32_t seq;
    uint32_t len;
    uint8_t gen;
    bool maybe;
} expect;

#define FIFO_CAP 2048
typedef struct fifo {
    expect e[FIFO_CAP];
    unsigned head, n;
    size_t bytes; /* in flight, as mem() counts them */
} fifo;

/* Over IPv6, a datagram past this size does not fit the loopback MTU
 * (65,536 bytes with its 48 bytes of headers) and arrives as two
 * fragments, one skb more; set per input (never, over IPv4). */
static size_t frag_above = SIZE_MAX;

/* What a datagram may cost a receive buffer (its skb's truesize),
 * overestimated: a 64 KB one takes a 128 KB allocation. The harness keeps
 * the sum in flight under the buffer, so the kernel never drops one. */
static size_t mem(size_t len)
{
    return 2 * len + 2048 + (len > frag_above ? 4096 : 0);
}

static void push(fifo *f, int gen, uint32_t seq, size_t len, bool maybe)
{
    CHECK(f->n < FIFO_CAP);
    f->e[(f->head + f->n) % FIFO_CAP] =
        (expect){(uint32_t)seq, (uint32_t)len, (uint8_t)gen, maybe};
    f->n++;
    f->bytes += mem(len);
}

static expect pop(fifo *f)
{
    CHECK(f->n > 0);
    expect e = f->e[f->head];
    f->head = (f->head + 1) % FIFO_CAP;
    f->n--;
    f->bytes -= mem(e.len);
    return e;
}

static void clear(fifo *f)
{
    f->head = f->n = 0;
    f->bytes = 0;
}

/* ---- state ------------------------------------------------------------ */

enum conn { C_NONE, C_PEER, C_CLOSED, C_NAMING };

/* What the 'message' listener does, for the next `count` messages. */
enum {
    IN_REPLY = 1,
    IN_SEND = 2,
    IN_SEGMENTS = 4,
    IN_TOGGLE = 8, /* connect to the peer, or disconnect */
    IN_CLOSE = 16,
    IN_PEER = 32, /* the peer sends meanwhile: read in the same turn */
};

typedef struct state {
    weft_loop *loop;
    weft_dgram *w;
    int family;       /* 4 or 6 */
    const char *lo;   /* the family's loopback: "127.0.0.1" or "::1" */
    const char *name; /* what a send or connect "by name" gives */
    size_t max_udp;   /* the largest UDP payload: 65,507 or 65,527 */
    int closed_port;  /* the family's (make_closed_ports()) */
    int peer, peer_port, w_port;
    struct sockaddr_storage peer_addr, w_addr; /* both on loopback */
    socklen_t addr_len; /* sizeof(struct sockaddr_in) or _in6 */
    size_t max_message;
    bool small_queue;
    int w_rcvbuf;
    size_t w_room, peer_room; /* of the receive buffers, for mem() */
    bool in_message;
    uint32_t peer_seq, weft_seq;
    fifo to_weft, to_peer;
    enum conn conn;
    bool unrefd;
    bool quiet; /* the last action ended with a turn that settled it */
    /* events */
    bool listening, listen_cb, connect_owed, drain_owed;
    bool close_called, closed, close_cb_wanted, close_cb_seen;
    bool closing; /* inside weft_dgram_close() */
    /* allowances: what may legitimately go missing or be reported */
    unsigned refused_allow; /* sends to the closed port: ICMPs */
    unsigned skip_allow;    /* weft->peer datagrams that may be missing */
    /* the 'message' listener's program */
    unsigned in_count, in_what, in_arg;
} state;

static state st;

/* A batch the kernel refused moves to the queue, and past a small
 * max_queue the rest is dropped (flush_batch); a batch refused inside
 * close() is dropped with the queue: those datagrams may be missing. */
static void refused_datagrams(unsigned n)
{
    if (st.small_queue || st.closing)
        st.skip_allow += n;
}

/* The loopback address of `family` (4 or 6) with `port`, as the kernel
 * writes it; returns its length. */
static socklen_t loopback(int family, int port, struct sockaddr_storage *out)
{
    memset(out, 0, sizeof(*out));
    if (family == 6) {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)out;
        a->sin6_family = AF_INET6;
        a->sin6_port = htons((uint16_t)port);
        a->sin6_addr = in6addr_loopback;
        return sizeof(*a);
    }
    struct sockaddr_in *a = (struct sockaddr_in *)out;
    a->sin_family = AF_INET;
    a->sin_port = htons((uint16_t)port);
    a->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    return sizeof(*a);
}

/* The port of a sockaddr_in or sockaddr_in6 (sin6_port lies where
 * sin_port does). */
static int port_of(const struct sockaddr_storage *a)
{
    return ntohs(((const struct sockaddr_in *)a)->sin_port);
}

/* The ports where nothing listens, one per family: a socket holds each
 * (so no other program takes it) but is connected elsewhere, so the
 * kernel finds no socket for datagrams sent to it and answers port
 * unreachable (ICMP, ICMPv6). */
static int closed_port4, closed_port6;

static int make_closed_port(int family)
{
    int fd =
        socket(family == 6 ? AF_INET6 : AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    CHECK(fd >= 0);
    struct sockaddr_storage a;
    socklen_t len = loopback(family, 0, &a);
    CHECK(bind(fd, (struct sockaddr *)&a, len) == 0);
    CHECK(getsockname(fd, (struct sockaddr *)&a, &len) == 0);
    int port = port_of(&a);
    loopback(family, 9, &a); /* discard: nothing comes from there */
    CHECK(connect(fd, (struct sockaddr *)&a, len) == 0);
    return port; /* the socket is kept open for the life of the process */
}

static void make_closed_ports(void)
{
    if (closed_port4 != 0)
        return;
    closed_port4 = make_closed_port(4);
    closed_port6 = make_closed_port(6);
}

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* A name connect finished when the socket says it is connected. */
static void sync_conn(state *x)
{
    if (x->conn != C_NAMING || x->close_called)
        return;
    weft_address a;
    if (weft_dgram_remote_address(x->w, &a) == 0) {
        CHECK(a.port == x->peer_port);
        x->conn = C_PEER;
    }
}

static uint8_t big[65536 + 64];

/* Datagram sizes: mostly up to ~2.9 KB, with the edges that matter, the
 * last the largest the family's UDP carries. */
static size_t dg_size(const state *x, uint8_t b)
{
    static const size_t edge[15] = {
        0, 1, 2, 3, 4, 5, 99, 100, 1199, 1200, 1201, 1499, 1500, 1501, 9000};
    if (b == 255)
        return x->max_udp;
    if (b >= 240)
        return edge[b - 240];
    return (size_t)b * 12 + b % 11;
}

/* ---- weft -> peer ----------------------------------------------------- */

/* How a send names its destination. */
enum form { F_LITERAL, F_DEFAULT, F_NAME, F_WRONG };

typedef struct call {
    int port;
    const char *address;
    int bad;       /* the error the arguments alone must give, or 0 */
    bool to_peer;  /* where accepted datagrams go: the peer, or nowhere */
    bool queues;   /* must wait in the queue (a name, a lookup) */
    size_t qc;     /* the queue's count before the call */
    unsigned hits; /* injected refusals before the call */
} call;

static call destination(state *x, enum form form)
{
    sync_conn(x);
    call c = {0};
    c.qc = weft_dgram_send_queue_count(x->w);
    c.hits = inj.hits;
    c.to_peer = x->conn != C_CLOSED;
    c.queues = x->conn == C_NAMING;
    if (x->conn != C_NONE) {
        if (form == F_WRONG) {
            c.port = x->peer_port;
            c.address = x->lo;
            c.bad = WEFT_EISCONN;
        }
        return c;
    }
    c.port = x->peer_port;
    switch (form) {
    case F_LITERAL:
        c.address = x->lo;
        break;
    case F_DEFAULT:
        break;
    case F_NAME: /* over IPv6 a literal (see the top): sent at once */
        c.address = x->name;
        c.queues = x->family == 4;
        break;
    case F_WRONG: /* no port, or an empty name */
        if (x->weft_seq & 1)
            c.address = "";
        else
            c.port = 0;
        c.bad = WEFT_EINVAL;
        break;
    }
    return c;
}

/* A send's result against the state; the `n` datagrams it carried
 * (`gen`, from `seq`, of `lens`) join what the peer must receive. */
static void sent(state *x, const call *c, int r, int gen, uint32_t seq,
                 const size_t *lens, size_t n)
{
    if (x->close_called) { /* the state is checked first */
        CHECK(r == WEFT_ESTATE);
        return;
    }
    if (c->bad) {
        CHECK(r == c->bad);
        return;
    }
    bool injected = inj.hits != c->hits;
    /* Of a call of several datagrams that failed, some may have gone
     * (to the closed port: each may bring an ICMP error, even the one
     * this call failed with). */
    bool maybe = r < 0 && n > 1;
    if (maybe && !c->to_peer)
        x->refused_allow += (unsigned)n;
    switch (r) {
    case 1:
        CHECK(c->qc == 0 && !c->queues);
        break;
    case 0:
        CHECK(c->qc > 0 || c->queues || injected || n > 1);
        x->drain_owed = true;
        break;
    case WEFT_ENOBUFS:
        CHECK(x->small_queue && (c->qc > 0 || c->queues || injected || n > 1));
        break;
    case WEFT_ECONNREFUSED: /* an ICMP error waiting on the socket */
        CHECK(x->refused_allow > 0);
        x->refused_allow--;
        break;
    default:
        fprintf(stderr, "send: unexpected %s\n", weft_err_name(r));
        CHECK(0);
    }
    if (r < 0 && !(maybe && c->to_peer))
        return;
    for (size_t i = 0; i < n; i++) {
        if (c->to_peer)
            push(&x->to_peer, gen, seq + (uint32_t)i, lens[i], maybe);
        else
            x->refused_allow++;
    }
}

static void turn(state *x, bool wait);

/* Room in the peer's receive buffer for datagrams of `need` (mem())
 * more: outside a listener the loop turns and the peer reads first, if
 * need be; without it the send is left out. False too once the socket
 * is gone (a turn may have delivered 'close', and freed it). */
static bool peer_room(state *x, size_t need)
{
    if (!x->in_message && !x->close_called &&
        x->to_peer.bytes + need > x->peer_room)
        turn(x, true);
    return !x->closed &&
           (x->close_called || x->to_peer.bytes + need <= x->peer_room);
}

static void weft_send(state *x, size_t len, enum form form)
{
    if (!peer_room(x, mem(len)))
        return;
    call c = destination(x, form);
    uint32_t seq = x->weft_seq++;
    dg_fill(big, GEN_WEFT, seq, len);
    int r = weft_dgram_send(x->w, big, len, c.port, c.address);
    sent(x, &c, r, GEN_WEFT, seq, &len, 1);
}

/* One datagram in up to four pieces (some empty). */
static void weft_sendv(state *x, size_t len, unsigned cuts, enum form form)
{
    if (!peer_room(x, mem(len)))
        return;
    call c = destination(x, form);
    uint32_t seq = x->weft_seq++;
    dg_fill(big, GEN_WEFT, seq, len);
    weft_buf b[4];
    size_t n = cuts % 5, at = 0;
    for (size_t i = 0; i < n; i++) {
        size_t rest = len - at;
        size_t piece = i + 1 == n ? rest : rest * ((cuts >> 3) & 3) / 4;
        b[i] = (weft_buf){big + at, piece};
        at += piece;
    }
    if (n == 0)
        len = 0;
    int r = weft_dgram_sendv(x->w, b, n, c.port, c.address);
    sent(x, &c, r, GEN_WEFT, seq, &len, 1);
}

/* `count` segments of `seg` bytes, the last `short_by` shorter; each
 * carries its own number. Past 64 segments or 65,000 bytes: EINVAL,
 * whatever the state (the arguments are checked first). */
static void weft_segments(state *x, size_t seg, size_t count, size_t short_by,
                          enum form form)
{
    size_t last = short_by < seg ? seg - short_by : seg;
    size_t len = seg * (count - 1) + last;
    if (!peer_room(x, count <= 64 ? count * mem(seg) : 0))
        return;
    if (count > 64 || len > 65000) {
        CHECK(weft_dgram_send_segments(x->w, big, len, seg, x->peer_port,
                                       NULL) == WEFT_EINVAL);
        return;
    }
    call c = destination(x, form);
    size_t lens[64];
    uint32_t seq = x->weft_seq;
    x->weft_seq += (uint32_t)count;
    for (size_t i = 0; i < count; i++) {
        lens[i] = i + 1 == count ? last : seg;
        dg_fill(big + i * seg, GEN_WEFT, seq + (uint32_t)i, lens[i]);
    }
    int r = weft_dgram_send_segments(x->w, big, len, seg, c.port, c.address);
    sent(x, &c, r, GEN_WEFT, seq, lens, count);
}

/* A reply goes where a send without an address would: to the connected
 * peer, else to the rinfo's sender (the peer). */
static call reply_call(state *x)
{
    call c = destination(x, F_DEFAULT);
    c.port = 0;
    return c;
}

/* A reply to the peer's address, through a rinfo the harness made:
 * as the echo server's reply, from outside any listener. */
static void weft_reply(state *x, size_t len)
{
    if (!peer_room(x, mem(len)))
        return;
    call c = reply_call(x);
    weft_dgram_rinfo ri = {.family = x->family,
                           .port = x->peer_port,
                           .sockaddr = &x->peer_addr,
                           .sockaddr_len = x->addr_len};
    uint32_t seq = x->weft_seq++;
    dg_fill(big, GEN_WEFT, seq, len);
    int r = weft_dgram_reply(x->w, &ri, big, len);
    sent(x, &c, r, GEN_WEFT, seq, &len, 1);
}

/* Does a datagram the peer received match the expected one? */
static bool matches(const expect *e, const uint8_t *d, size_t n)
{
    if (n != e->len)
        return false;
    for (size_t i = 0; i < n; i++)
        if (d[i] != dg_byte(e->gen, e->seq, i))
            return false;
    return true;
}

/* The peer reads what came: each datagram is the next one weft's sends
 * accepted, skipping only what may be missing. */
static void peer_read(state *x)
{
    static uint8_t buf[65536 + 1];
    for (;;) {
        struct sockaddr_storage from;
        socklen_t flen = sizeof(from);
        ssize_t r = recvfrom(x->peer, buf, sizeof(buf), MSG_DONTWAIT,
                             (struct sockaddr *)&from, &flen);
        if (r < 0) {
            CHECK(errno == EAGAIN || errno == EWOULDBLOCK);
            return;
        }
        /* from the socket's port on loopback (the address the socket is
         * bound to: to "::" or any, the kernel picks loopback) */
        CHECK(flen == x->addr_len && memcmp(&from, &x->w_addr, flen) == 0);
        for (;;) {
            CHECK(x->to_peer.n > 0); /* nothing came that was not sent */
            expect e = pop(&x->to_peer);
            if (matches(&e, buf, (size_t)r))
                break;
            if (!e.maybe) { /* lost, or out of order */
                CHECK(x->skip_allow > 0);
                x->skip_allow--;
            }
        }
    }
}

/* After the queue emptied: what has not arrived never will. */
static void peer_missing(state *x)
{
    while (x->to_peer.n > 0) {
        expect e = pop(&x->to_peer);
        if (!e.maybe) {
            CHECK(x->skip_allow > 0);
            x->skip_allow--;
        }
    }
}

/* ---- peer -> weft ----------------------------------------------------- */

/* Whether what the peer sends now reaches the socket. */
static bool reaches(const state *x)
{
    return !x->close_called && x->conn != C_CLOSED;
}

/* Room in the socket's receive buffer for `need` more: the loop turns
 * first if need be; without it the peer does not send. */
static bool weft_room(state *x, size_t need)
{
    if (!x->in_message && reaches(x) && x->to_weft.bytes + need > x->w_room)
        turn(x, true);
    return !reaches(x) || x->to_weft.bytes + need <= x->w_room;
}

static void peer_send(state *x, size_t len)
{
    if (!weft_room(x, mem(len)))
        return;
    uint32_t seq = x->peer_seq++;
    dg_fill(big, GEN_PEER, seq, len);
    ssize_t r = sendto(x->peer, big, len, MSG_DONTWAIT,
                       (struct sockaddr *)&x->w_addr, x->addr_len);
    CHECK(r == (ssize_t)len);
    if (reaches(x))
        push(&x->to_weft, GEN_PEER, seq, len, false);
}

/* A GSO train: `count` segments of `seg` bytes (the last `short_by`
 * shorter) in one sendmsg; a socket with gro reads them as one buffer. */
static void peer_train(state *x, size_t seg, size_t count, size_t short_by)
{
    size_t lens[64], len = 0, need = 0;
    for (size_t i = 0; i < count; i++) {
        lens[i] = i + 1 == count && short_by < seg ? seg - short_by : seg;
        if (len + lens[i] > 60000) {
            count = i;
            break;
        }
        len += lens[i];
        need += mem(lens[i]);
    }
    if (count == 0 || !weft_room(x, need))
        return;
    uint32_t seq = x->peer_seq;
    for (size_t i = 0; i < count; i++)
        dg_fill(big + i * seg, GEN_PEER, seq + (uint32_t)i, lens[i]);
    union {
        char buf[CMSG_SPACE(sizeof(uint16_t))];
        struct cmsghdr align;
    } ctl;
    memset(&ctl, 0, sizeof(ctl));
    struct iovec iov = {big, len};
    struct msghdr m = {.msg_name = &x->w_addr,
                       .msg_namelen = x->addr_len,
                       .msg_iov = &iov,
                       .msg_iovlen = 1,
                       .msg_control = ctl.buf,
                       .msg_controllen = sizeof(ctl.buf)};
    struct cmsghdr *cm = CMSG_FIRSTHDR(&m);
    cm->cmsg_level = SOL_UDP;
    cm->cmsg_type = UDP_SEGMENT;
    cm->cmsg_len = CMSG_LEN(sizeof(uint16_t));
    uint16_t gso = (uint16_t)seg;
    memcpy(CMSG_DATA(cm), &gso, sizeof(gso));
    CHECK(sendmsg(x->peer, &m, MSG_DONTWAIT) == (ssize_t)len);
    x->peer_seq += (uint32_t)count;
    if (reaches(x))
        for (size_t i = 0; i < count; i++)
            push(&x->to_weft, GEN_PEER, seq + (uint32_t)i, lens[i], false);
}

/* ---- connection and close --------------------------------------------- */

/* connect() to the closed port, or to the peer: by address, by the name
 * "localhost" (`how` 1; over IPv6 the long literal, see the top), or by
 * the family's default, loopback (2). */
static void weft_connect(state *x, bool closed, unsigned how)
{
    sync_conn(x);
    bool by_name = !closed && how == 1 && x->family == 4;
    int port = closed ? x->closed_port : x->peer_port;
    const char *address = x->lo;
    if (!closed && how == 1)
        address = x->name;
    else if (!closed && how == 2)
        address = NULL;
    int r = weft_dgram_connect(x->w, port, address, NULL, NULL);
    if (x->close_called) {
        CHECK(r == WEFT_ESTATE);
    } else if (x->conn != C_NONE) {
        CHECK(r == WEFT_EISCONN);
    } else {
        CHECK(r == 0);
        x->connect_owed = true;
        x->conn = closed ? C_CLOSED : by_name ? C_NAMING : C_PEER;
    }
}

static void weft_disconnect(state *x)
{
    sync_conn(x);
    int r = weft_dgram_disconnect(x->w);
    if (x->close_called || x->conn == C_NONE || x->conn == C_NAMING) {
        CHECK(r == WEFT_ENOTCONN);
        return;
    }
    CHECK(r == 0);
    x->conn = C_NONE;
    x->connect_owed = false; /* a 'connect' not yet emitted never will be */
    /* what was sent while connected still goes to that peer, and the
     * socket keeps its port */
    weft_address a;
    CHECK(weft_dgram_address(x->w, &a) == 0 && a.port == x->w_port);
}

static void on_close_cb(weft_dgram *s, void *ctx)
{
    state *x = ctx;
    CHECK(s == x->w && x->close_cb_wanted && !x->close_cb_seen);
    x->close_cb_seen = true;
}

/* Closed: every call answers for the state, and nothing is emitted but
 * 'close'. */
static void after_close(state *x)
{
    weft_dgram *w = x->w;
    weft_address a;
    uint8_t b[1] = {0};
    weft_buf v = {b, 1};
    weft_dgram_rinfo ri = {.family = x->family,
                           .port = x->peer_port,
                           .sockaddr = &x->peer_addr,
                           .sockaddr_len = x->addr_len};
    CHECK(weft_dgram_send(w, b, 1, x->peer_port, NULL) == WEFT_ESTATE);
    CHECK(weft_dgram_send(w, b, 1, 0, NULL) == WEFT_ESTATE);
    CHECK(weft_dgram_sendv(w, &v, 1, x->peer_port, NULL) == WEFT_ESTATE);
    CHECK(weft_dgram_send_segments(w, b, 1, 1, x->peer_port, NULL) ==
          WEFT_ESTATE);
    CHECK(weft_dgram_reply(w, &ri, b, 1) == WEFT_ESTATE);
    CHECK(weft_dgram_connect(w, x->peer_port, NULL, NULL, NULL) == WEFT_ESTATE);
    CHECK(weft_dgram_bind(w, 0, x->lo, NULL, NULL) == WEFT_ESTATE);
    CHECK(weft_dgram_disconnect(w) == WEFT_ENOTCONN);
    CHECK(weft_dgram_close(w, NULL, NULL) == WEFT_ENOTRUNNING);
    CHECK(weft_dgram_address(w, &a) == WEFT_ENOTRUNNING);
    CHECK(weft_dgram_remote_address(w, &a) == WEFT_ENOTCONN);
    CHECK(weft_dgram_fileno(w) == WEFT_EBADF);
    CHECK(weft_dgram_set_ttl(w, 64) == WEFT_EBADF);
    CHECK(weft_dgram_recv_buffer_size(w) == WEFT_EBADF);
    CHECK(weft_dgram_send_queue_count(w) == 0);
    CHECK(weft_dgram_send_queue_size(w) == 0);
}

/* close(): what waits in the queue is dropped (the batch of a 'message'
 * listener leaves first); the datagrams not yet read are gone. */
static void weft_close(state *x, bool with_cb)
{
    if (x->close_called) {
        CHECK(weft_dgram_close(x->w, NULL, NULL) == WEFT_ENOTRUNNING);
        return;
    }
    unsigned qc = (unsigned)weft_dgram_send_queue_count(x->w);
    x->closing = true;
    x->close_cb_wanted = with_cb;
    CHECK(weft_dgram_close(x->w, with_cb ? on_close_cb : NULL, x) == 0);
    x->closing = false;
    x->close_called = true;
    atomic_store(&inj.fd, -1);
    atomic_store(&inj.left, 0);
    x->skip_allow += qc;
    clear(&x->to_weft);
    after_close(x);
}

/* ---- listeners -------------------------------------------------------- */

static void on_listening(weft_dgram *s, void *ctx)
{
    state *x = ctx;
    CHECK(s == x->w && !x->listening && !x->closed && !x->close_called);
    x->listening = true;
}

static void on_listening_cb(weft_dgram *s, void *ctx)
{
    state *x = ctx;
    CHECK(s == x->w && x->listening && !x->listen_cb);
    x->listen_cb = true;
}

static void on_connect(weft_dgram *s, void *ctx)
{
    state *x = ctx;
    CHECK(s == x->w && x->listening && !x->closed && !x->close_called);
    CHECK(x->connect_owed);
    x->connect_owed = false;
    sync_conn(x);
    CHECK(x->conn == C_PEER || x->conn == C_CLOSED);
    weft_address a;
    CHECK(weft_dgram_remote_address(s, &a) == 0);
    CHECK(a.port == (x->conn == C_PEER ? x->peer_port : x->closed_port));
    CHECK(a.family == x->family && strcmp(a.address, x->lo) == 0);
}

static void on_drain(weft_dgram *s, void *ctx)
{
    state *x = ctx;
    CHECK(s == x->w && !x->closed && !x->close_called);
    CHECK(weft_dgram_send_queue_count(s) == 0);
    CHECK(weft_dgram_send_queue_size(s) == 0);
    x->drain_owed = false;
}

static void on_error(weft_dgram *s, int err, const char *msg, void *ctx)
{
    state *x = ctx;
    CHECK(s == x->w && !x->closed && !x->close_called && msg != NULL);
    if (err == WEFT_ECONNREFUSED) {
        CHECK(x->refused_allow > 0);
        x->refused_allow--;
        if (strncmp(msg, "send ", 5) == 0)
            x->skip_allow++; /* a queued or gathered datagram was dropped */
        else
            CHECK(strcmp(msg, "recvmsg ECONNREFUSED") == 0);
    } else {
        fprintf(stderr, "unexpected 'error': %s\n", msg);
        CHECK(0);
    }
}

static void on_close(weft_dgram *s, void *ctx)
{
    state *x = ctx;
    CHECK(s == x->w && x->close_called && !x->closed);
    x->closed = true;
}

static void on_message(weft_dgram *s, const char *d, size_t len,
                       const weft_dgram_rinfo *ri, void *ctx)
{
    state *x = ctx;
    CHECK(s == x->w && x->listening && !x->close_called && !x->closed);
    CHECK(ri->family == x->family && ri->port == x->peer_port);
    CHECK(ri->sockaddr_len == x->addr_len &&
          memcmp(ri->sockaddr, &x->peer_addr, x->addr_len) == 0);
    CHECK(strcmp(weft_dgram_rinfo_address(ri), x->lo) == 0);
    CHECK(d[len] == '\0');
    /* the next datagram the peer sent, none lost, none repeated */
    CHECK(x->to_weft.n > 0);
    expect e = pop(&x->to_weft);
    CHECK(ri->size == e.len);
    CHECK(len == (e.len < x->max_message ? e.len : x->max_message));
    CHECK(ri->truncated == (e.len > x->max_message));
    for (size_t i = 0; i < len; i++)
        CHECK((uint8_t)d[i] == dg_byte(GEN_PEER, e.seq, i));

    if (x->in_count == 0)
        return;
    x->in_count--;
    x->in_message = true; /* no turn in here */
    unsigned what = x->in_what, arg = x->in_arg;
    if ((what & IN_REPLY) && peer_room(x, mem(len))) {
        call c = reply_call(x);
        int r = weft_dgram_reply(s, ri, d, len);
        sent(x, &c, r, GEN_PEER, e.seq, &len, 1);
    }
    if (what & IN_SEND)
        for (unsigned i = 0; i <= (arg & 3); i++)
            weft_send(x, dg_size(x, (uint8_t)(arg * 37 + i * 101)),
                      (enum form)((arg >> 2) & 3));
    if (what & IN_SEGMENTS)
        weft_segments(x, 1 + (arg & 0x3f) * 23, 1 + ((arg >> 4) & 7), arg % 7,
                      (enum form)((arg >> 6) & 1));
    if (what & IN_PEER)
        for (unsigned i = 0; i <= (arg >> 7); i++)
            peer_send(x, dg_size(x, (uint8_t)(arg + 13 * i)));
    if (what & IN_TOGGLE) {
        sync_conn(x);
        if (x->conn == C_NONE)
            weft_connect(x, false, 0);
        else
            weft_disconnect(x);
    }
    if (what & IN_CLOSE)
        weft_close(x, arg & 1);
    x->in_message = false;
}

/* ---- the program ------------------------------------------------------ */

/* Whether everything that should have happened has: every datagram read,
 * the queue flushed, the events owed emitted. */
static bool settled(state *x)
{
    if (x->close_called)
        return x->closed;
    if (x->unrefd)
        return true; /* the loop need not poll an unref'd socket */
    sync_conn(x);
    return x->listening && x->to_weft.n == 0 && x->conn != C_NAMING &&
           weft_dgram_send_queue_count(x->w) == 0 && !x->connect_owed &&
           !x->drain_owed;
}

/* One turn, the peer reads; then, unless told not to wait, more turns
 * until all has arrived, with a bounded wait for the lookup threads. */
static void turn(state *x, bool wait)
{
    uint64_t start = 0;
    for (int i = 0;; i++) {
        weft_loop_run_mode(x->loop, WEFT_RUN_NOWAIT);
        peer_read(x);
        if (!wait || x->closed || settled(x))
            break;
        if (i >= 3) {
            if (start == 0)
                start = now_ms();
            if (now_ms() - start >= 5000)
                fprintf(stderr,
                        "stuck: to_weft %u conn %d queue %zu owed %d %d "
                        "listening %d\n",
                        x->to_weft.n, (int)x->conn,
                        weft_dgram_send_queue_count(x->w), x->connect_owed,
                        x->drain_owed, x->listening);
            CHECK(now_ms() - start < 5000);
            usleep(100);
        }
    }
    x->quiet = wait && settled(x);
    if (wait && !x->close_called && !x->unrefd)
        peer_missing(x); /* the queue is empty: it all left */
}

/* The socket under test, every event listened for, bound in one of four
 * ways: to loopback port 0; adopted already bound (weft_dgram_open());
 * bound implicitly to any address by connect() to the peer; bound to the
 * name "localhost" (looked up off the loop), over IPv6 to "::" (see the
 * top). Returns once it listens. */
static void open_socket(state *x, const weft_dgram_options *opts, int how)
{
    int fd = -1;
    if (how == 1) {
        fd = socket(x->family == 6 ? AF_INET6 : AF_INET, SOCK_DGRAM, 0);
        CHECK(fd >= 0);
        int on = 1; /* ipv6_only as its maker would have set it */
        if (opts->ipv6_only)
            CHECK(setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &on, sizeof(on)) ==
                  0);
        struct sockaddr_storage a;
        socklen_t len = loopback(x->family, 0, &a);
        CHECK(bind(fd, (struct sockaddr *)&a, len) == 0);
        CHECK(weft_dgram_open(x->loop, fd, opts, on_message, x, &x->w) == 0);
    } else {
        CHECK(weft_dgram_create_socket(x->loop, opts, on_message, x, &x->w) ==
              0);
    }
    CHECK(weft_dgram_on_listening(x->w, on_listening, x) == 0);
    CHECK(weft_dgram_on_connect(x->w, on_connect, x) == 0);
    CHECK(weft_dgram_on_drain(x->w, on_drain, x) == 0);
    CHECK(weft_dgram_on_error(x->w, on_error, x) == 0);
    CHECK(weft_dgram_on_close(x->w, on_close, x) == 0);
    weft_address a;
    switch (how) {
    case 0:
        CHECK(weft_dgram_bind(x->w, 0, x->lo, on_listening_cb, x) == 0);
        break;
    case 1:
        CHECK(weft_dgram_fileno(x->w) == fd);
        CHECK(weft_dgram_bind(x->w, 0, NULL, NULL, NULL) == WEFT_ESTATE);
        x->listen_cb = true; /* no bind(), no callback */
        break;
    case 2:
        CHECK(weft_dgram_address(x->w, &a) == WEFT_ENOTRUNNING);
        weft_connect(x, false, 0);
        x->listen_cb = true;
        break;
    case 3:
        if (x->family == 6) { /* any address, a literal: bound at once */
            CHECK(weft_dgram_bind(x->w, 0, "::", on_listening_cb, x) == 0);
            CHECK(weft_dgram_address(x->w, &a) == 0 && a.family == 6);
            CHECK(strcmp(a.address, "::") == 0);
            break;
        }
        CHECK(weft_dgram_bind(x->w, 0, "localhost", on_listening_cb, x) == 0);
        CHECK(weft_dgram_address(x->w, &a) == WEFT_ENOTRUNNING);
        CHECK(weft_dgram_bind(x->w, 0, NULL, NULL, NULL) == WEFT_ESTATE);
        break;
    }
    turn(x, true);
    CHECK(x->listening && x->listen_cb);
}

static const size_t max_messages[8] = {0, 1, 3, 7, 100, 1199, 1200, 1500};
static const size_t max_queues[4] = {0, 0, 64, 3000};

/* The first byte's bits 4-5 at 01 (for udp4 the default queue, as 00)
 * choose IPv6; the options are then the next byte's. */
#define OPT_UDP6 1

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    make_closed_ports();
    int fds_at_start = fd_count();
    weft_set_unhandled_error_handler(unhandled_is_a_bug, NULL);
    state *x = &st;
    memset(x, 0, sizeof(*x));
    x->loop = weft_loop_new();
    CHECK(x->loop != NULL);

    size_t i = 0;
#define ARG() (i < size ? data[i++] : 0)
    uint8_t o = ARG();
    bool udp6 = ((o >> 4) & 3) == OPT_UDP6;
    if (udp6)
        o = ARG();
    x->family = udp6 ? 6 : 4;
    x->lo = udp6 ? "::1" : "127.0.0.1";
    x->name = udp6 ? "0:0:0:0:0:0:0:1" : "localhost";
    /* 65,535 less the UDP header and, over IPv4, the IP header (IPv6's
     * payload length leaves its header out) */
    x->max_udp = udp6 ? 65527 : 65507;
    frag_above = udp6 ? 65536 - 40 - 8 : SIZE_MAX;
    x->closed_port = udp6 ? closed_port6 : closed_port4;
    weft_dgram_options opts = {.family = udp6 ? 6 : 0,
                               .ipv6_only = udp6 && ((o >> 4) & 3) == OPT_UDP6,
                               .max_message = max_messages[o & 7],
                               .gro = (o & 8) != 0,
                               .max_queue = max_queues[(o >> 4) & 3],
                               .recv_buffer_size = 1 << 20};
    x->max_message = opts.max_message ? opts.max_message : 65536;
    x->small_queue = opts.max_queue != 0;

    /* the peer */
    x->peer = socket(udp6 ? AF_INET6 : AF_INET,
                     SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    CHECK(x->peer >= 0);
    int rcv = 1 << 20;
    CHECK(setsockopt(x->peer, SOL_SOCKET, SO_RCVBUF, &rcv, sizeof(rcv)) == 0);
    socklen_t rlen = sizeof(rcv);
    CHECK(getsockopt(x->peer, SOL_SOCKET, SO_RCVBUF, &rcv, &rlen) == 0);
    x->peer_room = (size_t)rcv / 4 * 3; /* what the kernel granted */
    x->addr_len = loopback(x->family, 0, &x->peer_addr);
    CHECK(bind(x->peer, (struct sockaddr *)&x->peer_addr, x->addr_len) == 0);
    socklen_t alen = x->addr_len;
    CHECK(getsockname(x->peer, (struct sockaddr *)&x->peer_addr, &alen) == 0);
    CHECK(alen == x->addr_len);
    x->peer_port = port_of(&x->peer_addr);

    open_socket(x, &opts, o >> 6);
    /* its port, once it has one; the kernel's grant of its buffer */
    weft_address wa;
    CHECK(weft_dgram_address(x->w, &wa) == 0 && wa.family == x->family);
    /* connect() narrows any to loopback; over IPv6, `how` 3 binds any */
    CHECK(strcmp(wa.address, udp6 && o >> 6 == 3 ? "::" : x->lo) == 0);
    x->w_port = wa.port;
    loopback(x->family, wa.port, &x->w_addr);
    x->w_rcvbuf = weft_dgram_recv_buffer_size(x->w);
    CHECK(x->w_rcvbuf > 0);
    x->w_room = (size_t)x->w_rcvbuf / 4 * 3;
    atomic_store(&inj.fd, weft_dgram_fileno(x->w));
    atomic_store(&inj.left, 0);

    while (i < size && !x->closed) {
        uint8_t op = data[i++];
        bool quiet = x->quiet;
        x->quiet = false;
        switch (op % 20) {
        case 0:
        case 1: { /* the peer: a burst of 1..8 datagrams */
            unsigned n = 1 + ARG() % 8;
            for (unsigned k = 0; k < n; k++)
                peer_send(x, dg_size(x, ARG()));
            break;
        }
        case 2:
            peer_send(x, 0);
            break;
        case 3: { /* the peer: a GSO train */
            size_t hi = ARG();
            size_t seg = 1 + (hi * 256 + ARG()) % 2000;
            size_t count = 1 + ARG() % 64;
            peer_train(x, seg, count, ARG());
            break;
        }
        case 4:
        case 5: { /* weft: up to 4 datagrams */
            unsigned a = ARG();
            for (unsigned k = 0; k <= (a & 3); k++)
                weft_send(x, dg_size(x, ARG()), (enum form)((a >> 2) & 3));
            break;
        }
        case 6: {
            unsigned a = ARG();
            weft_sendv(x, dg_size(x, ARG()), a, (enum form)((a >> 5) & 3));
            break;
        }
        case 7: {
            size_t hi = ARG();
            size_t seg = 1 + (hi * 256 + ARG()) % 1500;
            unsigned a = ARG();
            weft_segments(x, seg, 1 + a % 70, ARG(), (enum form)(a >> 7));
            break;
        }
        case 8:
            weft_reply(x, dg_size(x, ARG()));
            break;
        case 9:
            weft_connect(x, false, ARG() % 3);
            break;
        case 10:
            weft_disconnect(x);
            break;
        case 11: { /* connect to the closed port and send there */
            unsigned a = ARG();
            weft_connect(x, true, 0);
            for (unsigned k = 0; k < (a & 3); k++)
                weft_send(x, dg_size(x, (uint8_t)(a + k)), F_DEFAULT);
            break;
        }
        case 12:
            if (x->unrefd) {
                weft_dgram_ref(x->w);
                x->unrefd = false;
            } else {
                /* Unref'd and idle (all done and emitted), the loop has
                 * nothing to do. After a held action, events may still
                 * wait to be emitted (or to find they need not be). */
                weft_dgram_unref(x->w);
                x->unrefd = true;
                if (quiet && !x->close_called)
                    CHECK(!weft_loop_alive(x->loop));
            }
            break;
        case 13:
            weft_close(x, ARG() & 1);
            break;
        case 14: /* the 'message' listener's program */
            x->in_count = 1 + ARG() % 8;
            x->in_what = ARG();
            x->in_arg = ARG();
            break;
        case 15: { /* the kernel refuses weft's next sends */
            unsigned a = ARG();
            inj.err = a & 4 ? ENOBUFS : EAGAIN;
            inj.partial = (a >> 3) & 7;
            if (!x->close_called)
                atomic_store(&inj.left, (int)(1 + (a & 3)));
            break;
        }
        case 16: { /* its address and buffer, as they were */
            weft_address a;
            if (!x->close_called) {
                CHECK(weft_dgram_address(x->w, &a) == 0 && a.port == x->w_port);
                CHECK(weft_dgram_recv_buffer_size(x->w) == x->w_rcvbuf);
            }
            break;
        }
        default: /* 17..19: one turn more */
            break;
        }
        /* With the high bit, the next action comes before the loop
         * turns, while little is in flight. */
        bool hold = (op & 0x80) && x->to_weft.bytes < 64 * 1024 &&
                    x->to_peer.bytes < 64 * 1024;
        if (!hold)
            turn(x, true);
    }
#undef ARG

    /* Wind down: the socket is closed, the peer reads what is left; the
     * loop must end, in a bounded number of turns. */
    turn(x, !x->closed);
    if (!x->close_called)
        weft_close(x, false);
    wind_down(x->loop, &x->closed);
    CHECK(!x->close_cb_wanted || x->close_cb_seen);
    peer_read(x);
    peer_missing(x);
    close(x->peer);
    atomic_store(&inj.fd, -1);
    atomic_store(&inj.left, 0);

    /* No fd left behind by this input. A lookup that close() cancelled
     * may still run getaddrinfo on a resolver thread, a file or socket of
     * its own open for a moment: that one closes, a leak stays. */
    for (int k = 0; fd_count() > fds_at_start; k++) {
        CHECK(k < 400);
        usleep(5000);
    }
    return 0;
}
