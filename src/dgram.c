/*
 * dgram.c - Node's dgram.Socket: UDP sockets, read in batches with
 * recvmmsg and written in batches with sendmmsg.
 *
 * States:
 *
 *   IDLE ──bind(literal)──────────────────► BOUND ──close()──► CLOSED
 *    │ └─bind(name)─► BINDING ─lookup+bind──┘  ▲               ('close' on
 *    │                  └─ failure: 'error', IDLE               a later turn)
 *    └─connect()/send(): bound to any:0 first ─┘
 *
 *   BOUND, connected or not; connect(name) sets CONNECTING while its
 *   lookup runs (sends without an address wait in the queue).
 *
 * The fd exists from creation (options may be set before bind, as the
 * kernel allows); the handle is ACTIVE from bind to close.
 *
 * Reading: every socket reads into one loop-wide batch area (struct
 * weft__dgram_batch, made on the first read): 64 slots of 64 KiB, of
 * which the kernel touches only what it writes, so a 64-byte datagram
 * costs one page per slot used. An idle socket owns no buffer.
 *
 * Writing: a send goes to the kernel at once (sendmsg), except
 *   - inside the 'message' listeners of this socket's batch: copied into
 *     the batch area's send side and sent with one sendmmsg when the
 *     batch's listeners return (an echo server answers 64 datagrams with
 *     one system call, as a raw recvmmsg/sendmmsg loop does);
 *   - when the queue is not empty or the kernel refuses (EAGAIN,
 *     ENOBUFS), or while a name is looked up: copied into the socket's
 *     queue, bounded by max_queue bytes, flushed with sendmmsg when the
 *     socket is writable; 'drain' when it empties.
 * Knows nothing of epoll; touches nothing on the TCP path.
 */
#include "internal.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/udp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

/* Datagrams per recvmmsg / sendmmsg: the batch a raw loop uses; past it
 * the saving per datagram is under a percent. */
#define BATCH 64
/* The largest datagram UDP can carry fits a slot (65,507 / 65,527 bytes
 * of payload), so a slot never truncates unless max_message says so. */
#define SLOT 65536
/* Slots start 64 bytes apart beyond SLOT: room for the NUL after a full
 * slot, and every slot cache-line aligned (an odd stride made the
 * kernel's copy into each slot a misaligned one). */
#define SLOT_STRIDE (SLOT + 64)
/* Datagrams (GRO: slots) read per readable event, four full batches.
 * Bounded so one flooded socket cannot starve the rest of the loop
 * (timers, other sockets); the socket stays readable and the rest is
 * read on the next turn. */
#define RECV_BUDGET (4 * BATCH)
/* Bytes of the send side of the batch area: replies gathered inside
 * 'message' listeners; a reply that does not fit flushes the batch. */
#define SEND_ARENA (256 * 1024)
/* Default bound of a socket's send queue: enough for a burst while a
 * name is looked up, small enough that a peer that never lets us send
 * cannot grow memory past it. */
#define DEFAULT_MAX_QUEUE (1024 * 1024)
/* Pieces of one datagram in sendv. */
#define MAX_PIECES 64
/* Datagrams and bytes of one send_segments call: within the kernel's
 * UDP_MAX_SEGMENTS (128) and one IP packet's 64 KiB. */
#define MAX_SEGMENTS       64
#define MAX_SEGMENTS_BYTES 65000

enum dgram_state { IDLE, BINDING, BOUND, CLOSED };

enum dgram_bits {
    BIT_LISTENING = 1,
    BIT_CONNECT = 2,
    BIT_ERROR = 4,
    BIT_DRAIN = 8,
    BIT_CLOSE = 16,
};

enum dgram_event {
#define WEFT_DG_EV_(ev, type) EV_##ev,
    WEFT_DGRAM_EVENT_MAP(WEFT_DG_EV_)
#undef WEFT_DG_EV_
};

/* A datagram waiting in a socket's queue. */
typedef struct dgram_req {
    struct dgram_req *next;
    bool has_to;
    weft__sockaddr to;
    /* sent to a host name not looked up yet: the name (after the data,
     * in the same block) and the port; NULL once `to` holds the address */
    const char *host;
    int port;
    size_t len;
    char data[];
} dgram_req;

struct weft__dgram_batch {
    /* receive side */
    struct mmsghdr rmsg[BATCH];
    struct iovec riov[BATCH];
    struct sockaddr_storage raddr[BATCH];
    /* room for a UDP_GRO control message per slot (sockets with gro) */
    char rctl[BATCH][CMSG_SPACE(sizeof(int))];
    char *rbuf; /* BATCH slots, SLOT_STRIDE apart */
    /* rmsg[] is set up for slots of rroom bytes (with GRO control room
     * when rgro); the kernel wrote the name and control lengths of the
     * first rdirty entries, which the next read resets. */
    size_t rroom;
    bool rgro;
    unsigned rdirty;
    /* send side: datagrams gathered for `owner` inside its listeners */
    weft_dgram *owner;
    unsigned nsend;
    size_t used;
    struct mmsghdr smsg[BATCH];
    struct iovec siov[BATCH];
    weft__sockaddr sto[BATCH];
    char sarena[SEND_ARENA];
};

struct weft_dgram {
    weft__handle h;
    weft__io io;
    weft__emitter em;
    void *data;
    int family; /* AF_INET / AF_INET6 */
    uint8_t state;
    bool connected;
    bool connecting; /* a connect() waits for its lookup */
    bool need_drain;
    bool in_batch;    /* emitting this socket's batch */
    bool gro;         /* UDP_GRO is on: a slot may hold several datagrams */
    bool no_gso;      /* UDP_SEGMENT was refused once: do not ask again */
    uint8_t rskip;    /* short batches left that go straight back to epoll */
    uint8_t rmisses;  /* empty read-agains in a row */
    size_t max_message;
    size_t max_queue;
    dgram_req *q_head, *q_tail;
    size_t q_bytes, q_count;
    uint64_t send_dropped; /* accepted into a batch, then found no room */
    weft__dns_req *dns;
    weft__dns_req *send_dns; /* the lookup of the first queued host name */
    int dns_port;
    bool dns_for_connect;
    char *dns_host;
    int err; /* the first error waiting to be emitted */
    char errmsg[160];
};

/* ---- errors ------------------------------------------------------------ */

static void close_now(weft_dgram *s);

/* Records an error for the pending phase (never inside the API call
 * that found it); the first one waiting wins. */
static void defer_error(weft_dgram *s, int err, const char *what,
                        const char *where)
{
    if (s->err != 0 || s->state == CLOSED)
        return;
    s->err = err;
    snprintf(s->errmsg, sizeof(s->errmsg), "%s %s%s%s", what,
             weft_err_name(err), where ? " " : "", where ? where : "");
    weft__handle_defer(&s->h, BIT_ERROR);
}

static void emit_error(weft_dgram *s)
{
    int err = s->err;
    s->err = 0;
    if (err == 0 || s->state == CLOSED)
        return;
    char msg[sizeof(s->errmsg)];
    memcpy(msg, s->errmsg, sizeof(msg));
    if (weft__emitter_has(&s->em, EV_error)) {
        WEFT__EMIT(&s->em, EV_error, weft_dgram_error_cb, s, err, msg);
    } else {
        /* Node would throw and end the process; weft reports it and
         * closes the socket (decision 10). */
        weft__unhandled_error("dgram", s, err, msg);
        close_now(s);
    }
}

/* ---- the batch area ---------------------------------------------------- */

static struct weft__dgram_batch *batch_get(weft_loop *loop)
{
    struct weft__dgram_batch *b = loop->dgram;
    if (b != NULL)
        return b;
    b = weft__calloc(1, sizeof(*b));
    if (b == NULL)
        return NULL;
    /* Large enough that malloc maps it: pages the kernel never writes
     * are never resident. */
    b->rbuf = aligned_alloc(64, (size_t)BATCH * SLOT_STRIDE);
    if (b->rbuf == NULL) {
        free(b);
        return NULL;
    }
    b->rroom = (size_t)-1; /* headers not set up yet */
    loop->dgram = b;
    return b;
}

void weft__dgram_loop_free(weft_loop *loop)
{
    if (loop->dgram != NULL) {
        free(loop->dgram->rbuf);
        free(loop->dgram);
        loop->dgram = NULL;
    }
}

/* ---- send queue -------------------------------------------------------- */

static size_t total_len(const weft_buf *bufs, size_t n)
{
    size_t len = 0;
    for (size_t i = 0; i < n; i++)
        len += bufs[i].len;
    return len;
}

static void gather(char *dst, const weft_buf *bufs, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (bufs[i].len > 0)
            memcpy(dst, bufs[i].base, bufs[i].len);
        dst += bufs[i].len;
    }
}

/* Whether a queue holding `count` datagrams of `bytes` in all refuses
 * one more of `len` bytes. Bounded in bytes by max_queue, and in
 * datagrams by max_queue / 16 (at least 64), so that empty datagrams
 * cannot grow it without bound either; an empty queue takes any one. */
static bool queue_full(const weft_dgram *s, size_t count, size_t bytes,
                       size_t len)
{
    size_t max_count = s->max_queue / 16 > 64 ? s->max_queue / 16 : 64;
    return count > 0 && (bytes + len > s->max_queue || count >= max_count);
}

/* Queues a datagram for `to`, or for `host` (a name still to look up)
 * and `port`, or for the connected peer, unless queue_full(). */
static int enqueue(weft_dgram *s, const weft_buf *bufs, size_t n,
                   const weft__sockaddr *to, const char *host, int port)
{
    size_t len = total_len(bufs, n);
    if (queue_full(s, s->q_count, s->q_bytes, len))
        return WEFT_ENOBUFS;
    size_t hlen = host != NULL ? strlen(host) + 1 : 0;
    dgram_req *r = weft__malloc(sizeof(*r) + len + hlen);
    if (r == NULL)
        return WEFT_ENOMEM;
    r->next = NULL;
    r->has_to = to != NULL || host != NULL;
    if (to != NULL)
        r->to = *to;
    r->host = NULL;
    r->port = port;
    r->len = len;
    gather(r->data, bufs, n);
    if (host != NULL) {
        memcpy(r->data + len, host, hlen);
        r->host = r->data + len;
    }
    if (s->q_tail)
        s->q_tail->next = r;
    else
        s->q_head = r;
    s->q_tail = r;
    s->q_bytes += len;
    s->q_count++;
    s->need_drain = true;
    return 0;
}

static void dequeue_free(weft_dgram *s)
{
    dgram_req *r = s->q_head;
    s->q_head = r->next;
    if (s->q_head == NULL)
        s->q_tail = NULL;
    s->q_bytes -= r->len;
    s->q_count--;
    free(r);
}

static void free_queue(weft_dgram *s)
{
    while (s->q_head != NULL)
        dequeue_free(s);
}

/* Whether the head of the queue can be handed to the kernel now. */
static bool sendable(const weft_dgram *s)
{
    return s->q_head != NULL && s->q_head->host == NULL && !s->connecting &&
           s->state == BOUND;
}

static void update_io(weft_dgram *s)
{
    if (s->state != BOUND)
        return;
    unsigned want = WEFT__IO_READ;
    if (sendable(s))
        want |= WEFT__IO_WRITE;
    weft__io_set(s->h.loop, &s->io, want);
}

static bool transient(int e)
{
    return e == EAGAIN || e == EWOULDBLOCK || e == ENOBUFS || e == EINTR;
}

/*
 * Sends what the queue holds with sendmmsg, as far as the kernel takes
 * it. A datagram the kernel refuses for good is dropped and reported as
 * 'error' (Node reports it to the send's callback, or as 'error').
 */
static void flush_queue(weft_dgram *s)
{
    struct mmsghdr msg[BATCH];
    struct iovec iov[BATCH];
    while (sendable(s)) {
        unsigned n = 0;
        for (dgram_req *r = s->q_head; r != NULL && r->host == NULL && n < BATCH;
             r = r->next) {
            iov[n] = (struct iovec){r->data, r->len};
            msg[n].msg_hdr = (struct msghdr){
                .msg_name = r->has_to ? &r->to.u.sa : NULL,
                .msg_namelen = r->has_to ? r->to.len : 0,
                .msg_iov = &iov[n],
                .msg_iovlen = 1,
            };
            msg[n].msg_len = 0;
            n++;
        }
        int k = sendmmsg(s->io.fd, msg, n, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (k < 0) {
            int e = errno;
            if (e == EINTR)
                continue;
            if (transient(e))
                break;
            char where[64];
            where[0] = '\0';
            if (s->q_head->has_to)
                weft__addr_text(&s->q_head->to.u.sa, where, sizeof(where));
            defer_error(s, weft__err(e), "send", where[0] ? where : NULL);
            dequeue_free(s);
            continue;
        }
        for (int i = 0; i < k; i++)
            dequeue_free(s);
    }
    if (s->q_head == NULL && s->need_drain) {
        s->need_drain = false;
        weft__handle_defer(&s->h, BIT_DRAIN);
    }
    update_io(s);
}

/* Sends the datagrams gathered inside this batch's listeners. */
static void flush_batch(struct weft__dgram_batch *b)
{
    weft_dgram *s = b->owner;
    unsigned off = 0;
    while (off < b->nsend) {
        int k = sendmmsg(s->io.fd, b->smsg + off, b->nsend - off,
                         MSG_DONTWAIT | MSG_NOSIGNAL);
        if (k > 0) {
            off += (unsigned)k;
            continue;
        }
        int e = errno;
        if (e == EINTR)
            continue;
        if (transient(e)) {
            /* The kernel is full: the rest waits in the queue. The queue
             * was empty when the batch began (else the batch would be
             * there), so what it holds now was sent after: a send to a
             * name still looked up, or made while a connect() looks one
             * up. The rest goes ahead of it, in the order sent. */
            dgram_req *later = s->q_head, *later_tail = s->q_tail;
            s->q_head = s->q_tail = NULL; /* counted still, for the bound */
            for (; off < b->nsend; off++) {
                struct msghdr *m = &b->smsg[off].msg_hdr;
                weft_buf piece = {m->msg_iov->iov_base, m->msg_iov->iov_len};
                if (enqueue(s, &piece, 1, m->msg_name ? &b->sto[off] : NULL,
                            NULL, 0) < 0) {
                    /* full: the rest is dropped, as UDP may, and counted */
                    s->send_dropped += b->nsend - off;
                    break;
                }
            }
            if (later != NULL) {
                if (s->q_tail != NULL)
                    s->q_tail->next = later;
                else
                    s->q_head = later;
                s->q_tail = later_tail;
            }
            break;
        }
        char where[64] = "";
        if (b->smsg[off].msg_hdr.msg_name)
            weft__addr_text(&b->sto[off].u.sa, where, sizeof(where));
        defer_error(s, weft__err(e), "send", where[0] ? where : NULL);
        off++;
    }
    b->nsend = 0;
    b->used = 0;
    if (s->q_head != NULL)
        update_io(s);
}

/* Copies one datagram into the batch; 1, or an error. */
static int batch_add(struct weft__dgram_batch *b, const weft_buf *bufs,
                     size_t n, const weft__sockaddr *to)
{
    size_t len = total_len(bufs, n);
    if (b->nsend == BATCH || b->used + len > SEND_ARENA)
        flush_batch(b);
    weft_dgram *s = b->owner;
    if (s->q_head != NULL) /* the kernel refused part of the batch */
        return enqueue(s, bufs, n, to, NULL, 0) < 0 ? WEFT_ENOBUFS : 0;
    unsigned i = b->nsend++;
    char *dst = b->sarena + b->used;
    gather(dst, bufs, n);
    b->used += len;
    b->siov[i] = (struct iovec){dst, len};
    if (to != NULL) { /* the address only, not the whole storage */
        memcpy(&b->sto[i].u.ss, &to->u.ss, to->len);
        b->sto[i].len = to->len;
    }
    b->smsg[i].msg_hdr = (struct msghdr){
        .msg_name = to ? &b->sto[i].u.sa : NULL,
        .msg_namelen = to ? to->len : 0,
        .msg_iov = &b->siov[i],
        .msg_iovlen = 1,
    };
    b->smsg[i].msg_len = 0;
    return 1;
}

/* ---- reading ----------------------------------------------------------- */

const char *weft_dgram_rinfo_address(const weft_dgram_rinfo *ri)
{
    if (ri == NULL)
        return "";
    /* The struct is ours and writable; the text is made on demand. */
    char *text = (char *)ri->address_;
    if (text[0] == '\0' && ri->sockaddr != NULL) {
        const struct sockaddr *sa = ri->sockaddr;
        if (sa->sa_family == AF_INET)
            inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr,
                      text, sizeof(ri->address_));
        else if (sa->sa_family == AF_INET6)
            inet_ntop(AF_INET6,
                      &((const struct sockaddr_in6 *)sa)->sin6_addr, text,
                      sizeof(ri->address_));
    }
    return text;
}

/* The size of the datagrams a GRO buffer holds, or 0 for one datagram. */
static size_t gro_size(const struct msghdr *m)
{
    for (struct cmsghdr *c = CMSG_FIRSTHDR(m); c != NULL;
         c = CMSG_NXTHDR((struct msghdr *)m, c))
        if (c->cmsg_level == SOL_UDP && c->cmsg_type == UDP_GRO) {
            int v;
            memcpy(&v, CMSG_DATA(c), sizeof(v));
            return v > 0 ? (size_t)v : 0;
        }
    return 0;
}

/*
 * A GRO buffer: `size` bytes of datagrams of `seg` bytes (the last may
 * be shorter), each emitted as its own 'message'. The byte after each
 * is set to NUL for the call and put back after it. The caller holds
 * the emitter (WEFT__EMIT_HELD).
 */
static void emit_segments(weft_dgram *s, char *buf, size_t size, size_t seg,
                          weft_dgram_rinfo *ri)
{
    for (size_t off = 0; off < size && s->state == BOUND; off += seg) {
        size_t dlen = size - off < seg ? size - off : seg;
        size_t len = dlen < s->max_message ? dlen : s->max_message;
        char *data = buf + off;
        char saved = data[len];
        data[len] = '\0';
        ri->size = dlen;
        ri->truncated = dlen > len;
        ri->address_[0] = '\0';
        WEFT__EMIT_HELD(&s->em, EV_message, weft_dgram_message_cb, s, data,
                        len, ri);
        data[len] = saved;
    }
}

/* Readies the receive headers for slots of `room` bytes. recvmmsg
 * writes back only the name and control lengths (and the flags and
 * sizes, which are outputs) of the entries it filled, so after the first
 * read of a run only those are reset: a short batch costs a short reset. */
static void rmsg_prepare(struct weft__dgram_batch *b, size_t room, bool gro)
{
    if (b->rroom == room && b->rgro == gro) {
        for (unsigned i = 0; i < b->rdirty; i++) {
            b->rmsg[i].msg_hdr.msg_namelen = sizeof(b->raddr[i]);
            b->rmsg[i].msg_hdr.msg_controllen = gro ? sizeof(b->rctl[i]) : 0;
        }
        b->rdirty = 0;
        return;
    }
    for (unsigned i = 0; i < BATCH; i++) {
        b->riov[i] = (struct iovec){b->rbuf + (size_t)i * SLOT_STRIDE, room};
        b->rmsg[i].msg_hdr = (struct msghdr){
            .msg_name = &b->raddr[i],
            .msg_namelen = sizeof(b->raddr[i]),
            .msg_iov = &b->riov[i],
            .msg_iovlen = 1,
            .msg_control = gro ? b->rctl[i] : NULL,
            .msg_controllen = gro ? sizeof(b->rctl[i]) : 0,
        };
    }
    b->rroom = room;
    b->rgro = gro;
    b->rdirty = 0;
}

/* After a short batch, whether to read once more before going back to
 * epoll. A short batch means the socket was empty when read, yet on a
 * busy socket more datagrams arrive while the batch is delivered: a read
 * then finds them without a wait, and a receiver that sleeps less also
 * costs a loopback sender fewer wake-ups. On a quiet socket (one
 * request, one answer) that read finds nothing and is a wasted system
 * call: from the second empty one in a row, the next 1, 2, 4 ... 64
 * short batches skip it, and one that finds datagrams turns it back on. */
static bool read_again(weft_dgram *s)
{
    if (s->rskip == 0)
        return true;
    s->rskip--;
    return false;
}

static void read_again_result(weft_dgram *s, bool found)
{
    if (found) {
        s->rmisses = 0;
        return;
    }
    if (s->rmisses < 8)
        s->rmisses++;
    /* one empty read in a row is noise on a busy socket: skip from the
     * second on, 1, 2, 4 ... 64 short batches */
    s->rskip = s->rmisses < 2 ? 0 : (uint8_t)(1u << (s->rmisses - 2));
}

static void read_batches(weft_dgram *s)
{
    weft_loop *loop = s->h.loop;
    struct weft__dgram_batch *b = batch_get(loop);
    if (b == NULL) {
        defer_error(s, WEFT_ENOMEM, "recvmsg", NULL);
        return;
    }
    size_t want = s->max_message;
    /* With GRO a slot may hold several datagrams: read whole slots and
     * cut each datagram to max_message when it is delivered. */
    size_t room = s->gro ? SLOT : want;
    int budget = RECV_BUDGET;
    bool again = false; /* this read follows a short batch */
    for (;;) {
        rmsg_prepare(b, room, s->gro);
        /* MSG_TRUNC: msg_len is the datagram's real size even when it
         * did not fit, so a truncation is reported with its size. */
        int n =
            recvmmsg(s->io.fd, b->rmsg, BATCH, MSG_DONTWAIT | MSG_TRUNC, NULL);
        b->rdirty = n < 0 ? 1 : n < BATCH ? (unsigned)n + 1 : BATCH;
        if (n < 0) {
            int e = errno;
            if (e == EINTR)
                continue;
            if (e == EAGAIN || e == EWOULDBLOCK) {
                if (again)
                    read_again_result(s, false);
                return;
            }
            /* An ICMP error queued on the socket (ECONNREFUSED after a
             * send to a closed port on a connected socket): reading took
             * it off, so it is reported once. */
            defer_error(s, weft__err(e), "recvmsg", NULL);
            return;
        }
        if (again)
            read_again_result(s, true);
        b->owner = s;
        b->nsend = 0;
        b->used = 0;
        s->in_batch = true;
        s->em.depth++; /* held for the batch: one enter and leave */
        for (int i = 0; i < n && s->state == BOUND; i++) {
            struct mmsghdr *m = &b->rmsg[i];
            size_t size = m->msg_len;
            const struct sockaddr *sa = (const struct sockaddr *)&b->raddr[i];
            weft_dgram_rinfo ri;
            ri.family = sa->sa_family == AF_INET6 ? 6 : 4;
            ri.port = ntohs(((const struct sockaddr_in *)sa)->sin_port);
            ri.sockaddr = sa;
            ri.sockaddr_len = m->msg_hdr.msg_namelen;
            size_t seg = s->gro ? gro_size(&m->msg_hdr) : 0;
            if (seg == 0 || seg >= size) {
                size_t len = size < want ? size : want;
                char *data = b->riov[i].iov_base;
                data[len] = '\0';
                ri.size = size;
                ri.truncated =
                    (m->msg_hdr.msg_flags & MSG_TRUNC) || size > want;
                ri.address_[0] = '\0';
                WEFT__EMIT_HELD(&s->em, EV_message, weft_dgram_message_cb, s,
                                data, len, &ri);
                continue;
            }
            emit_segments(s, b->riov[i].iov_base, size, seg, &ri);
        }
        weft__emitter_leave(&s->em);
        s->in_batch = false;
        if (b->nsend > 0 && s->state == BOUND)
            flush_batch(b);
        b->owner = NULL;
        b->nsend = 0;
        b->used = 0;
        budget -= n;
        if (s->state != BOUND || budget <= 0)
            return;
        again = n < BATCH;
        if (again && !read_again(s))
            return;
    }
}

static void on_io(weft__io *io, unsigned events)
{
    weft_dgram *s = WEFT__CONTAINER_OF(io, weft_dgram, io);
    if (events & WEFT__IO_WRITE)
        flush_queue(s);
    if ((events & WEFT__IO_READ) && s->state == BOUND)
        read_batches(s);
}

/* ---- create, bind, connect --------------------------------------------- */

static int set_int(int fd, int level, int name, int v)
{
    if (fd < 0)
        return WEFT_EBADF;
    return setsockopt(fd, level, name, &v, sizeof(v)) < 0 ? weft__err(errno)
                                                          : 0;
}

static int bind_done(weft_dgram *s);

/* The checks both constructors make; NULL options become the defaults. */
static int check_args(const weft_dgram_options **opts, weft_dgram **out)
{
    static const weft_dgram_options none;
    if (out == NULL)
        return WEFT_EINVAL;
    *out = NULL;
    if (*opts == NULL)
        *opts = &none;
    const weft_dgram_options *o = *opts;
    if ((o->family != 0 && o->family != 4 && o->family != 6) ||
        o->max_message > SLOT || o->recv_buffer_size < 0 ||
        o->send_buffer_size < 0 || (o->ipv6_only && o->family != 6))
        return WEFT_EINVAL;
    return 0;
}

/* Applies the options that belong to a socket already made, and wraps
 * `fd` (which it owns from now on only when it returns 0). */
static int wrap(weft_loop *loop, int fd, int family,
                const weft_dgram_options *opts, weft_dgram_message_cb on_message,
                void *ctx, weft_dgram **out)
{
    int err = 0;
    if (opts->recv_buffer_size > 0)
        err = set_int(fd, SOL_SOCKET, SO_RCVBUF, opts->recv_buffer_size);
    if (err == 0 && opts->send_buffer_size > 0)
        err = set_int(fd, SOL_SOCKET, SO_SNDBUF, opts->send_buffer_size);
    if (err < 0)
        return err;
    weft_dgram *s = weft__calloc(1, sizeof(*s));
    if (s == NULL)
        return WEFT_ENOMEM;
    s->family = family;
    /* GRO where the kernel offers it; an older kernel refuses, and the
     * socket simply reads one datagram per slot. */
    s->gro = opts->gro && set_int(fd, SOL_UDP, UDP_GRO, 1) == 0;
    weft__handle_init(loop, &s->h, WEFT__DGRAM);
    weft__io_init(&s->io, fd, on_io);
    s->state = IDLE;
    s->max_message = opts->max_message ? opts->max_message : SLOT;
    s->max_queue = opts->max_queue ? opts->max_queue : DEFAULT_MAX_QUEUE;
    if (on_message != NULL && weft_dgram_on_message(s, on_message, ctx) < 0) {
        s->io.fd = -1; /* still the caller's */
        weft__handle_close(&s->h);
        return WEFT_ENOMEM;
    }
    *out = s;
    return 0;
}

int weft_dgram_create_socket(weft_loop *loop, const weft_dgram_options *opts,
                             weft_dgram_message_cb on_message, void *ctx,
                             weft_dgram **out)
{
    int err = check_args(&opts, out);
    if (err < 0)
        return err;
    loop = weft__loop(loop);
    if (loop == NULL)
        return WEFT_ENOMEM;
    int family = opts->family == 6 ? AF_INET6 : AF_INET;
    int fd = socket(family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return weft__err(errno);
    if (family == AF_INET6)
        err = set_int(fd, IPPROTO_IPV6, IPV6_V6ONLY, opts->ipv6_only);
    if (err == 0 && opts->reuse_addr)
        err = set_int(fd, SOL_SOCKET, SO_REUSEADDR, 1);
    if (err == 0 && opts->reuse_port)
        err = set_int(fd, SOL_SOCKET, SO_REUSEPORT, 1);
    if (err == 0)
        err = wrap(loop, fd, family, opts, on_message, ctx, out);
    if (err < 0)
        close(fd);
    return err;
}

/* The port of a sockaddr_in or sockaddr_in6 (sin6_port lies where
 * sin_port does). */
static uint16_t *port_of(weft__sockaddr *a)
{
    return &((struct sockaddr_in *)&a->u.ss)->sin_port;
}

static int get_opt(int fd, int name, int *v)
{
    socklen_t len = sizeof(*v);
    return getsockopt(fd, SOL_SOCKET, name, v, &len) < 0 ? weft__err(errno)
                                                          : 0;
}

int weft_dgram_open(weft_loop *loop, int fd, const weft_dgram_options *opts,
                    weft_dgram_message_cb on_message, void *ctx,
                    weft_dgram **out)
{
    int err = check_args(&opts, out);
    if (err < 0)
        return err;
    if (fd < 0)
        return WEFT_EBADF;
    int type, domain, proto;
    err = get_opt(fd, SO_TYPE, &type);
    if (err == 0)
        err = get_opt(fd, SO_DOMAIN, &domain);
    if (err == 0)
        err = get_opt(fd, SO_PROTOCOL, &proto);
    if (err < 0)
        return err; /* WEFT_EBADF, WEFT_ENOTSOCK */
    if (type != SOCK_DGRAM || proto != IPPROTO_UDP ||
        (domain != AF_INET && domain != AF_INET6) ||
        (opts->family != 0 && (opts->family == 6) != (domain == AF_INET6)))
        return WEFT_EINVAL;
    loop = weft__loop(loop);
    if (loop == NULL)
        return WEFT_ENOMEM;
    weft__sockaddr local, peer;
    local.len = sizeof(local.u.ss);
    peer.len = sizeof(peer.u.ss);
    if (getsockname(fd, &local.u.sa, &local.len) < 0)
        return weft__err(errno);
    bool bound = *port_of(&local) != 0;
    bool connected = getpeername(fd, &peer.u.sa, &peer.len) == 0;
    int fl = fcntl(fd, F_GETFL);
    int fdfl = fcntl(fd, F_GETFD);
    if (fl < 0 || fdfl < 0)
        return weft__err(errno);
    /* Non-blocking and close-on-exec, as every socket weft makes; a
     * failed open leaves the fd as the program gave it. */
    if (fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0 ||
        fcntl(fd, F_SETFD, fdfl | FD_CLOEXEC) < 0)
        err = weft__err(errno);
    if (err == 0)
        err = wrap(loop, fd, domain, opts, on_message, ctx, out);
    if (err == 0 && bound) {
        weft_dgram *s = *out;
        s->connected = connected;
        err = bind_done(s);
        if (err < 0) {
            s->io.fd = -1;
            weft__handle_close(&s->h);
            *out = NULL;
        }
    }
    if (err < 0) {
        fcntl(fd, F_SETFL, fl);
        fcntl(fd, F_SETFD, fdfl);
    }
    return err;
}

static void any_addr(int family, int port, weft__sockaddr *a)
{
    weft__parse_ip(family == AF_INET6 ? "::" : "0.0.0.0", port, a);
}

/* Binds the fd to `a` and starts reading; 'listening' is deferred. An
 * address of the other family is WEFT_EINVAL, as Node's bind, connect
 * and send say (a udp6 socket reaches IPv4 through ::ffff:a.b.c.d). */
static int bind_to(weft_dgram *s, const weft__sockaddr *a)
{
    if (a->u.sa.sa_family != s->family)
        return WEFT_EINVAL;
    if (bind(s->io.fd, &a->u.sa, a->len) < 0)
        return weft__err(errno);
    return bind_done(s);
}

/* The fd is bound: start reading; 'listening' is deferred. */
static int bind_done(weft_dgram *s)
{
    s->state = BOUND;
    weft__handle_start(&s->h);
    weft__handle_defer(&s->h, BIT_LISTENING);
    int err = weft__io_set(s->h.loop, &s->io, WEFT__IO_READ);
    if (err < 0)
        return err; /* bound but unwatched: only an epoll failure */
    return 0;
}

static int bind_implicit(weft_dgram *s)
{
    weft__sockaddr a;
    any_addr(s->family, 0, &a);
    return bind_to(s, &a);
}

static int connect_to(weft_dgram *s, const weft__sockaddr *a)
{
    if (connect(s->io.fd, &a->u.sa, a->len) < 0)
        return weft__err(errno);
    s->connected = true;
    weft__handle_defer(&s->h, BIT_CONNECT);
    return 0;
}

/* The lookup's first answer of the socket's family; NULL with `*err`
 * set when there is none. */
static const struct addrinfo *family_answer(const weft_dgram *s,
                                            const struct addrinfo *res,
                                            int *err)
{
    if (*err < 0)
        return NULL;
    while (res != NULL && res->ai_family != s->family)
        res = res->ai_next;
    if (res == NULL)
        *err = WEFT_ENOTFOUND;
    return res;
}

static void resolved(weft__dns_req *req, struct addrinfo *res, int err,
                     void *ctx)
{
    weft_dgram *s = ctx;
    WEFT__UNUSED(req);
    s->dns = NULL;
    bool for_connect = s->dns_for_connect;
    const char *what = for_connect ? "connect" : "bind";
    char where[128];
    snprintf(where, sizeof(where), "%s", s->dns_host ? s->dns_host : "?");
    free(s->dns_host);
    s->dns_host = NULL;
    const struct addrinfo *ai = family_answer(s, res, &err);
    if (err < 0) {
        what = "getaddrinfo";
    } else {
        weft__sockaddr a;
        memcpy(&a.u.ss, ai->ai_addr, ai->ai_addrlen);
        a.len = ai->ai_addrlen;
        weft__addr_text(ai->ai_addr, where, sizeof(where));
        err = for_connect ? connect_to(s, &a) : bind_to(s, &a);
    }
    if (res)
        freeaddrinfo(res);
    if (for_connect)
        s->connecting = false;
    if (err < 0 && !for_connect) {
        s->state = IDLE;
        weft__handle_stop(&s->h);
    }
    if (err < 0) {
        free_queue(s); /* nowhere to send what waited */
        s->need_drain = false;
    } else {
        flush_queue(s); /* what was sent meanwhile leaves now */
    }
    if (err < 0)
        defer_error(s, err, what, where);
}

static int lookup(weft_dgram *s, const char *host, int port, bool for_connect)
{
    char *copy = weft__strdup(host);
    if (copy == NULL)
        return WEFT_ENOMEM;
    int err = weft__dns_lookup_af(s->h.loop, host, port, s->family,
                                  !for_connect, resolved, s, &s->dns);
    if (err < 0) {
        free(copy);
        return err;
    }
    s->dns_host = copy;
    s->dns_port = port;
    s->dns_for_connect = for_connect;
    return 0;
}

int weft_dgram_bind(weft_dgram *s, int port, const char *address,
                    weft_dgram_listening_cb cb, void *ctx)
{
    if (s == NULL || port < 0 || port > 65535)
        return WEFT_EINVAL;
    if (s->state != IDLE)
        return WEFT_ESTATE;
    weft__sockaddr a;
    int err;
    if (address == NULL)
        any_addr(s->family, port, &a);
    if (address == NULL || weft__parse_ip(address, port, &a)) {
        err = bind_to(s, &a);
    } else {
        err = lookup(s, address, port, false);
        if (err == 0) {
            s->state = BINDING;
            weft__handle_start(&s->h);
        }
    }
    if (err == 0 && cb != NULL && weft_dgram_once_listening(s, cb, ctx) < 0)
        err = WEFT_ENOMEM; /* bound all the same; no callback */
    return err;
}

int weft_dgram_connect(weft_dgram *s, int port, const char *address,
                       weft_dgram_connect_cb cb, void *ctx)
{
    if (s == NULL || port < 1 || port > 65535)
        return WEFT_EINVAL;
    if (s->state == CLOSED)
        return WEFT_ESTATE;
    if (s->connected || s->connecting)
        return WEFT_EISCONN;
    if (s->state == BINDING)
        return WEFT_ESTATE;
    weft__sockaddr a;
    bool literal = address == NULL
                       ? weft__parse_ip(s->family == AF_INET6 ? "::1"
                                                              : "127.0.0.1",
                                        port, &a)
                       : weft__parse_ip(address, port, &a);
    if (literal && a.u.sa.sa_family != s->family)
        return WEFT_EINVAL;
    int err = 0;
    if (s->state == IDLE && (err = bind_implicit(s)) < 0)
        return err;
    if (literal) {
        err = connect_to(s, &a);
    } else {
        err = lookup(s, address, port, true);
        if (err == 0)
            s->connecting = true;
    }
    if (err == 0 && cb != NULL && weft_dgram_once_connect(s, cb, ctx) < 0)
        err = WEFT_ENOMEM;
    return err;
}

/*
 * What was sent while connected goes to that peer, even if it has not
 * left at disconnect(): the batch gathered inside this socket's 'message'
 * listeners leaves now, and what waits in the queue without an address
 * gets the peer's. Else the kernel refuses it (EDESTADDRREQ) once
 * disconnected, or sends it to whichever peer is connected next.
 */
static int address_what_waits(weft_dgram *s)
{
    struct weft__dgram_batch *b = s->h.loop->dgram;
    if (b != NULL && b->owner == s && b->nsend > 0)
        flush_batch(b); /* what the kernel refuses moves to the queue */
    dgram_req *r = s->q_head;
    while (r != NULL && r->has_to)
        r = r->next;
    if (r == NULL)
        return 0;
    weft__sockaddr peer;
    peer.len = sizeof(peer.u.ss);
    if (getpeername(s->io.fd, &peer.u.sa, &peer.len) < 0)
        return weft__err(errno);
    for (; r != NULL; r = r->next)
        if (!r->has_to) {
            r->to = peer;
            r->has_to = true;
        }
    return 0;
}

int weft_dgram_disconnect(weft_dgram *s)
{
    if (s == NULL)
        return WEFT_EINVAL;
    if (!s->connected)
        return WEFT_ENOTCONN;
    weft__sockaddr before, after;
    before.len = sizeof(before.u.ss);
    if (getsockname(s->io.fd, &before.u.sa, &before.len) < 0)
        return weft__err(errno);
    int err = address_what_waits(s);
    if (err < 0)
        return err;
    struct sockaddr sa = {.sa_family = AF_UNSPEC};
    if (connect(s->io.fd, &sa, sizeof(sa)) < 0)
        return weft__err(errno);
    s->connected = false;
    /* Linux also unbinds a port the kernel chose (bind to port 0, or the
     * implicit bind): the socket would stop receiving at the port it
     * announced, and a later send would pick another. Bind the same port
     * again, on the address the disconnect left (the one bound, or any). */
    after.len = sizeof(after.u.ss);
    if (getsockname(s->io.fd, &after.u.sa, &after.len) < 0)
        return weft__err(errno);
    if (*port_of(&after) == 0 && *port_of(&before) != 0) {
        *port_of(&after) = *port_of(&before);
        if (bind(s->io.fd, &after.u.sa, after.len) < 0)
            return weft__err(errno); /* taken meanwhile: unbound */
    }
    return 0;
}

int weft_dgram_remote_address(const weft_dgram *s, weft_address *out)
{
    if (s == NULL || out == NULL)
        return WEFT_EINVAL;
    if (!s->connected || s->state != BOUND)
        return WEFT_ENOTCONN;
    weft__sockaddr a;
    a.len = sizeof(a.u.ss);
    if (getpeername(s->io.fd, &a.u.sa, &a.len) < 0)
        return weft__err(errno);
    return weft__address_from(&a.u.sa, a.len, out);
}

int weft_dgram_address(const weft_dgram *s, weft_address *out)
{
    if (s == NULL || out == NULL)
        return WEFT_EINVAL;
    if (s->state != BOUND)
        return WEFT_ENOTRUNNING;
    weft__sockaddr a;
    a.len = sizeof(a.u.ss);
    if (getsockname(s->io.fd, &a.u.sa, &a.len) < 0)
        return weft__err(errno);
    return weft__address_from(&a.u.sa, a.len, out);
}

/* ---- send -------------------------------------------------------------- */

/* Where a send goes: `to`; or `host`, a name looked up first, and
 * `port`; or, with both NULL, the connected peer. */
typedef struct dest {
    const weft__sockaddr *to;
    const char *host;
    int port;
    weft__sockaddr addr; /* what `to` points at for an address literal */
} dest;

static void send_lookup_next(weft_dgram *s);

/* An address the lookup gave, with this datagram's port. */
static void set_to(dgram_req *r, const struct addrinfo *ai)
{
    memcpy(&r->to.u.ss, ai->ai_addr, ai->ai_addrlen);
    r->to.len = ai->ai_addrlen;
    *port_of(&r->to) = htons((uint16_t)r->port);
    r->host = NULL;
}

/* The first queued datagram whose host name is not looked up yet. */
static dgram_req *first_unresolved(const weft_dgram *s)
{
    dgram_req *r = s->q_head;
    while (r != NULL && r->host == NULL)
        r = r->next;
    return r;
}

/* The lookup of `host` failed: every datagram waiting for it leaves the
 * queue, and the failure is reported once as 'error'. */
static void fail_host(weft_dgram *s, int err, const char *host)
{
    defer_error(s, err, "getaddrinfo", host);
    /* `host` lives in one of the datagrams taken out: free them after
     * the walk that compares with it. */
    dgram_req *gone = NULL;
    dgram_req **pp = &s->q_head, *last = NULL;
    while (*pp != NULL) {
        dgram_req *r = *pp;
        if (r->host != NULL && strcmp(r->host, host) == 0) {
            *pp = r->next;
            s->q_bytes -= r->len;
            s->q_count--;
            r->next = gone;
            gone = r;
            continue;
        }
        last = r;
        pp = &r->next;
    }
    s->q_tail = last;
    while (gone != NULL) {
        dgram_req *next = gone->next;
        free(gone);
        gone = next;
    }
}

/*
 * The name of the first datagram queued for a host name was looked up:
 * every queued datagram for that name gets the address (one lookup for a
 * burst), the next name still waiting is looked up, and what can go
 * goes. A failed lookup drops that name's datagrams and is reported as
 * 'error' ("getaddrinfo ENOTFOUND name"); the socket stays open.
 */
static void send_resolved(weft__dns_req *req, struct addrinfo *res, int err,
                          void *ctx)
{
    weft_dgram *s = ctx;
    WEFT__UNUSED(req);
    s->send_dns = NULL;
    dgram_req *first = first_unresolved(s);
    if (first == NULL) { /* the queue was emptied meanwhile */
        if (res)
            freeaddrinfo(res);
        return;
    }
    const struct addrinfo *ai = family_answer(s, res, &err);
    if (err < 0) {
        fail_host(s, err, first->host);
    } else {
        const char *host = first->host; /* stays in `first`'s block */
        for (dgram_req *r = first; r != NULL; r = r->next)
            if (r->host != NULL && strcmp(r->host, host) == 0)
                set_to(r, ai);
    }
    if (res)
        freeaddrinfo(res);
    send_lookup_next(s);
    flush_queue(s); /* also 'drain' when the queue is empty */
}

/* Starts the lookup of the first queued host name, if there is one and
 * none is under way. */
static void send_lookup_next(weft_dgram *s)
{
    if (s->send_dns != NULL || s->state == CLOSED)
        return;
    dgram_req *r = first_unresolved(s);
    if (r == NULL)
        return;
    int err = weft__dns_lookup_af(s->h.loop, r->host, r->port, s->family,
                                  false, send_resolved, s, &s->send_dns);
    if (err < 0) {
        fail_host(s, err, r->host);
        send_lookup_next(s);
    }
}

static int send_to(weft_dgram *s, const weft_buf *bufs, size_t n,
                   const dest *d)
{
    if (n > MAX_PIECES)
        return WEFT_EINVAL;
    for (size_t i = 0; i < n; i++)
        if (bufs[i].base == NULL && bufs[i].len > 0)
            return WEFT_EINVAL;
    if (s->state == IDLE) {
        int err = bind_implicit(s);
        if (err < 0)
            return err;
    }
    const weft__sockaddr *to = d->to;
    if (d->host != NULL) {
        /* Queued behind whatever waits, in order, until the name is
         * looked up (as Node's send does, through dns.lookup). */
        int err = enqueue(s, bufs, n, NULL, d->host, d->port);
        if (err < 0)
            return err;
        send_lookup_next(s);
        return 0;
    }
    if (s->state == BINDING || s->connecting || s->q_head != NULL) {
        int err = enqueue(s, bufs, n, to, NULL, 0);
        return err < 0 ? err : 0;
    }
    struct weft__dgram_batch *b = s->h.loop->dgram;
    if (s->in_batch && b != NULL && b->owner == s)
        return batch_add(b, bufs, n, to);
    struct iovec iov[MAX_PIECES];
    for (size_t i = 0; i < n; i++)
        iov[i] = (struct iovec){(void *)bufs[i].base, bufs[i].len};
    struct msghdr m = {
        .msg_name = to ? (void *)&to->u.sa : NULL,
        .msg_namelen = to ? to->len : 0,
        .msg_iov = iov,
        .msg_iovlen = n,
    };
    for (;;) {
        if (sendmsg(s->io.fd, &m, MSG_DONTWAIT | MSG_NOSIGNAL) >= 0)
            return 1;
        int e = errno;
        if (e == EINTR)
            continue;
        if (transient(e)) {
            int err = enqueue(s, bufs, n, to, NULL, 0);
            if (err < 0)
                return err;
            update_io(s);
            return 0;
        }
        return weft__err(e);
    }
}

/* Where a send with this port and address goes (see dest); WEFT_ESTATE
 * on a closed socket. */
static int destination(weft_dgram *s, int port, const char *address,
                       dest *d)
{
    if (s->state == CLOSED)
        return WEFT_ESTATE;
    d->to = NULL;
    d->host = NULL;
    d->port = port;
    if (s->connected || s->connecting)
        return port != 0 || address != NULL ? WEFT_EISCONN : 0;
    if (port < 1 || port > 65535)
        return WEFT_EINVAL;
    if (address == NULL)
        address = s->family == AF_INET6 ? "::1" : "127.0.0.1";
    if (weft__parse_ip(address, port, &d->addr)) {
        if (d->addr.u.sa.sa_family != s->family)
            return WEFT_EINVAL; /* as bind_to() */
        d->to = &d->addr;
        return 0;
    }
    if (address[0] == '\0' || strlen(address) > 253)
        return WEFT_EINVAL; /* no DNS name is empty or longer */
    d->host = address;
    return 0;
}

int weft_dgram_sendv(weft_dgram *s, const weft_buf *bufs, size_t n, int port,
                     const char *address)
{
    if (s == NULL || (bufs == NULL && n > 0))
        return WEFT_EINVAL;
    dest d;
    int err = destination(s, port, address, &d);
    if (err < 0)
        return err;
    return send_to(s, bufs, n, &d);
}

int weft_dgram_send(weft_dgram *s, const void *data, size_t len, int port,
                    const char *address)
{
    weft_buf b = {data, len};
    return weft_dgram_sendv(s, &b, 1, port, address);
}

/* The segments one at a time, through the usual path (batch, queue). */
static int send_each(weft_dgram *s, const char *data, size_t len,
                     size_t segment, const dest *d)
{
    /* When every segment will wait (behind the queue, or for a name), a
     * call the queue cannot hold whole is refused before any goes. */
    if (s->q_head != NULL || d->host != NULL) {
        size_t count = s->q_count, bytes = s->q_bytes;
        for (size_t off = 0; off < len; off += segment) {
            size_t l = len - off < segment ? len - off : segment;
            if (queue_full(s, count, bytes, l))
                return WEFT_ENOBUFS;
            count++;
            bytes += l;
        }
    }
    int all = 1;
    for (size_t off = 0; off < len; off += segment) {
        weft_buf b = {data + off, len - off < segment ? len - off : segment};
        int rc = send_to(s, &b, 1, d);
        if (rc < 0)
            return rc;
        all &= rc;
    }
    return all;
}

int weft_dgram_send_segments(weft_dgram *s, const void *data, size_t len,
                             size_t segment, int port, const char *address)
{
    if (s == NULL || data == NULL || len == 0 || segment == 0 ||
        segment > UINT16_MAX || len > MAX_SEGMENTS_BYTES ||
        (len + segment - 1) / segment > MAX_SEGMENTS)
        return WEFT_EINVAL;
    dest d;
    int err = destination(s, port, address, &d);
    if (err < 0)
        return err;
    if (s->state == IDLE && (err = bind_implicit(s)) < 0)
        return err;
    const weft__sockaddr *to = d.to;
    if (s->no_gso || len <= segment || s->state != BOUND || s->connecting ||
        s->q_head != NULL || s->in_batch || d.host != NULL)
        return send_each(s, data, len, segment, &d);
    /* One sendmsg with UDP_SEGMENT: the kernel cuts the datagrams. */
    union {
        char buf[CMSG_SPACE(sizeof(uint16_t))];
        struct cmsghdr align;
    } ctl;
    memset(&ctl, 0, sizeof(ctl));
    struct iovec iov = {(void *)data, len};
    struct msghdr m = {
        .msg_name = to ? (void *)&to->u.sa : NULL,
        .msg_namelen = to ? to->len : 0,
        .msg_iov = &iov,
        .msg_iovlen = 1,
        .msg_control = ctl.buf,
        .msg_controllen = sizeof(ctl.buf),
    };
    struct cmsghdr *c = CMSG_FIRSTHDR(&m);
    c->cmsg_level = SOL_UDP;
    c->cmsg_type = UDP_SEGMENT;
    c->cmsg_len = CMSG_LEN(sizeof(uint16_t));
    uint16_t gso = (uint16_t)segment;
    memcpy(CMSG_DATA(c), &gso, sizeof(gso));
    for (;;) {
        if (sendmsg(s->io.fd, &m, MSG_DONTWAIT | MSG_NOSIGNAL) >= 0)
            return 1;
        int e = errno;
        if (e == EINTR)
            continue;
        if (transient(e))
            return send_each(s, data, len, segment, &d); /* queues */
        if (e == EIO || e == EINVAL || e == ENOPROTOOPT || e == EOPNOTSUPP) {
            /* No GSO here (a kernel before 4.18, a device without
             * checksum offload): one datagram at a time from now on. */
            s->no_gso = true;
            return send_each(s, data, len, segment, &d);
        }
        return weft__err(e);
    }
}

int weft_dgram_reply(weft_dgram *s, const weft_dgram_rinfo *to,
                     const void *data, size_t len)
{
    if (s == NULL || to == NULL || to->sockaddr == NULL ||
        to->sockaddr_len > sizeof(struct sockaddr_storage))
        return WEFT_EINVAL;
    if (s->state == CLOSED)
        return WEFT_ESTATE;
    weft_buf b = {data, len};
    dest d = {.to = NULL};
    if (!s->connected) {
        memcpy(&d.addr.u.ss, to->sockaddr, to->sockaddr_len);
        d.addr.len = to->sockaddr_len;
        d.to = &d.addr;
    }
    return send_to(s, &b, 1, &d);
}

size_t weft_dgram_send_queue_size(const weft_dgram *s)
{
    return s ? s->q_bytes : 0;
}

size_t weft_dgram_send_queue_count(const weft_dgram *s)
{
    return s ? s->q_count : 0;
}

uint64_t weft_dgram_send_dropped(const weft_dgram *s)
{
    return s ? s->send_dropped : 0;
}

/* ---- close ------------------------------------------------------------- */

static void close_now(weft_dgram *s)
{
    if (s->state == CLOSED)
        return;
    struct weft__dgram_batch *b = s->h.loop->dgram;
    if (b != NULL && b->owner == s && b->nsend > 0)
        flush_batch(b); /* what a listener sent before closing leaves */
    if (b != NULL && b->owner == s)
        b->nsend = 0;
    if (s->dns != NULL) {
        weft__dns_cancel(s->dns);
        s->dns = NULL;
    }
    if (s->send_dns != NULL) {
        weft__dns_cancel(s->send_dns);
        s->send_dns = NULL;
    }
    free(s->dns_host);
    s->dns_host = NULL;
    free_queue(s);
    weft__io_close(s->h.loop, &s->io);
    s->state = CLOSED;
    s->connected = s->connecting = false;
    s->err = 0;
    weft__handle_stop(&s->h);
    weft__handle_defer(&s->h, BIT_CLOSE);
}

int weft_dgram_close(weft_dgram *s, weft_dgram_close_cb cb, void *ctx)
{
    if (s == NULL)
        return WEFT_EINVAL;
    if (s->state == CLOSED)
        return WEFT_ENOTRUNNING;
    close_now(s);
    if (cb != NULL)
        weft_dgram_once_close(s, cb, ctx); /* ENOMEM: closed all the same */
    return 0;
}

void weft__dgram_pending(weft__handle *h, unsigned bits)
{
    weft_dgram *s = WEFT__CONTAINER_OF(h, weft_dgram, h);
    if ((bits & BIT_LISTENING) && s->state == BOUND)
        WEFT__EMIT(&s->em, EV_listening, weft_dgram_listening_cb, s);
    if ((bits & BIT_CONNECT) && s->connected && s->state == BOUND)
        WEFT__EMIT(&s->em, EV_connect, weft_dgram_connect_cb, s);
    if (bits & BIT_ERROR)
        emit_error(s);
    if ((bits & BIT_DRAIN) && s->state == BOUND && s->q_head == NULL)
        WEFT__EMIT(&s->em, EV_drain, weft_dgram_drain_cb, s);
    if (bits & BIT_CLOSE) {
        WEFT__EMIT(&s->em, EV_close, weft_dgram_close_cb, s);
        weft__handle_close(&s->h);
    }
}

void weft__dgram_free(weft__handle *h)
{
    weft_dgram *s = WEFT__CONTAINER_OF(h, weft_dgram, h);
    if (s->dns != NULL)
        weft__dns_cancel(s->dns);
    if (s->send_dns != NULL)
        weft__dns_cancel(s->send_dns);
    free(s->dns_host);
    free_queue(s);
    weft__io_close(h->loop, &s->io);
    weft__emitter_free(&s->em);
    free(s);
}

/* ---- options ----------------------------------------------------------- */

static bool v6(const weft_dgram *s)
{
    return s->family == AF_INET6;
}

int weft_dgram_set_broadcast(weft_dgram *s, bool on)
{
    return s ? set_int(s->io.fd, SOL_SOCKET, SO_BROADCAST, on) : WEFT_EINVAL;
}

int weft_dgram_set_ttl(weft_dgram *s, int ttl)
{
    if (s == NULL || ttl < 1 || ttl > 255)
        return WEFT_EINVAL;
    return v6(s) ? set_int(s->io.fd, IPPROTO_IPV6, IPV6_UNICAST_HOPS, ttl)
                 : set_int(s->io.fd, IPPROTO_IP, IP_TTL, ttl);
}

int weft_dgram_set_multicast_ttl(weft_dgram *s, int ttl)
{
    if (s == NULL || ttl < 0 || ttl > 255)
        return WEFT_EINVAL;
    return v6(s) ? set_int(s->io.fd, IPPROTO_IPV6, IPV6_MULTICAST_HOPS, ttl)
                 : set_int(s->io.fd, IPPROTO_IP, IP_MULTICAST_TTL, ttl);
}

int weft_dgram_set_multicast_loopback(weft_dgram *s, bool on)
{
    if (s == NULL)
        return WEFT_EINVAL;
    return v6(s) ? set_int(s->io.fd, IPPROTO_IPV6, IPV6_MULTICAST_LOOP, on)
                 : set_int(s->io.fd, IPPROTO_IP, IP_MULTICAST_LOOP, on);
}

/* An interface given as an address: IPv4's in_addr, or IPv6's scope id
 * ("::%lo" or "::%1"); NULL is "any". */
static int iface_v4(const char *iface, struct in_addr *out)
{
    out->s_addr = htonl(INADDR_ANY);
    if (iface == NULL)
        return 0;
    return inet_pton(AF_INET, iface, out) == 1 ? 0 : WEFT_EINVAL;
}

static int iface_v6(const char *iface, unsigned *index)
{
    *index = 0;
    if (iface == NULL)
        return 0;
    weft__sockaddr a;
    if (!weft__parse_ip(iface, 0, &a) || a.u.sa.sa_family != AF_INET6)
        return WEFT_EINVAL;
    *index = ((struct sockaddr_in6 *)&a.u.ss)->sin6_scope_id;
    return 0;
}

int weft_dgram_set_multicast_interface(weft_dgram *s, const char *iface)
{
    if (s == NULL)
        return WEFT_EINVAL;
    if (s->io.fd < 0)
        return WEFT_EBADF;
    int rc;
    if (v6(s)) {
        unsigned idx;
        if ((rc = iface_v6(iface, &idx)) < 0)
            return rc;
        rc = setsockopt(s->io.fd, IPPROTO_IPV6, IPV6_MULTICAST_IF, &idx,
                        sizeof(idx));
    } else {
        struct in_addr a;
        if ((rc = iface_v4(iface, &a)) < 0)
            return rc;
        rc = setsockopt(s->io.fd, IPPROTO_IP, IP_MULTICAST_IF, &a, sizeof(a));
    }
    return rc < 0 ? weft__err(errno) : 0;
}

static int membership(weft_dgram *s, const char *group, const char *iface,
                      bool join)
{
    if (s == NULL || group == NULL)
        return WEFT_EINVAL;
    if (s->io.fd < 0)
        return WEFT_EBADF;
    int rc;
    if (v6(s)) {
        struct ipv6_mreq m;
        unsigned idx;
        if (inet_pton(AF_INET6, group, &m.ipv6mr_multiaddr) != 1 ||
            iface_v6(iface, &idx) < 0)
            return WEFT_EINVAL;
        m.ipv6mr_interface = idx;
        rc = setsockopt(s->io.fd, IPPROTO_IPV6,
                        join ? IPV6_ADD_MEMBERSHIP : IPV6_DROP_MEMBERSHIP, &m,
                        sizeof(m));
    } else {
        struct ip_mreq m;
        if (inet_pton(AF_INET, group, &m.imr_multiaddr) != 1 ||
            iface_v4(iface, &m.imr_interface) < 0)
            return WEFT_EINVAL;
        rc = setsockopt(s->io.fd, IPPROTO_IP,
                        join ? IP_ADD_MEMBERSHIP : IP_DROP_MEMBERSHIP, &m,
                        sizeof(m));
    }
    return rc < 0 ? weft__err(errno) : 0;
}

int weft_dgram_add_membership(weft_dgram *s, const char *group,
                              const char *iface)
{
    return membership(s, group, iface, true);
}

int weft_dgram_drop_membership(weft_dgram *s, const char *group,
                               const char *iface)
{
    return membership(s, group, iface, false);
}

static int ssm(weft_dgram *s, const char *source, const char *group,
               const char *iface, bool join)
{
    if (s == NULL || source == NULL || group == NULL)
        return WEFT_EINVAL;
    if (s->io.fd < 0)
        return WEFT_EBADF;
    int rc;
    if (v6(s)) {
        /* IPv6 has no ip_mreq_source: the protocol-independent form. */
        struct group_source_req r;
        memset(&r, 0, sizeof(r));
        unsigned idx;
        weft__sockaddr g, src;
        if (!weft__parse_ip(group, 0, &g) || !weft__parse_ip(source, 0, &src) ||
            g.u.sa.sa_family != AF_INET6 || src.u.sa.sa_family != AF_INET6 ||
            iface_v6(iface, &idx) < 0)
            return WEFT_EINVAL;
        r.gsr_interface = idx;
        memcpy(&r.gsr_group, &g.u.ss, g.len);
        memcpy(&r.gsr_source, &src.u.ss, src.len);
        rc = setsockopt(s->io.fd, IPPROTO_IPV6,
                        join ? MCAST_JOIN_SOURCE_GROUP
                             : MCAST_LEAVE_SOURCE_GROUP,
                        &r, sizeof(r));
    } else {
        struct ip_mreq_source m;
        memset(&m, 0, sizeof(m));
        if (inet_pton(AF_INET, group, &m.imr_multiaddr) != 1 ||
            inet_pton(AF_INET, source, &m.imr_sourceaddr) != 1 ||
            iface_v4(iface, &m.imr_interface) < 0)
            return WEFT_EINVAL;
        rc = setsockopt(s->io.fd, IPPROTO_IP,
                        join ? IP_ADD_SOURCE_MEMBERSHIP
                             : IP_DROP_SOURCE_MEMBERSHIP,
                        &m, sizeof(m));
    }
    return rc < 0 ? weft__err(errno) : 0;
}

int weft_dgram_add_source_specific_membership(weft_dgram *s,
                                              const char *source,
                                              const char *group,
                                              const char *iface)
{
    return ssm(s, source, group, iface, true);
}

int weft_dgram_drop_source_specific_membership(weft_dgram *s,
                                               const char *source,
                                               const char *group,
                                               const char *iface)
{
    return ssm(s, source, group, iface, false);
}

int weft_dgram_set_recv_buffer_size(weft_dgram *s, int size)
{
    if (s == NULL || size <= 0)
        return WEFT_EINVAL;
    return set_int(s->io.fd, SOL_SOCKET, SO_RCVBUF, size);
}

int weft_dgram_set_send_buffer_size(weft_dgram *s, int size)
{
    if (s == NULL || size <= 0)
        return WEFT_EINVAL;
    return set_int(s->io.fd, SOL_SOCKET, SO_SNDBUF, size);
}

static int get_int(const weft_dgram *s, int name)
{
    if (s == NULL)
        return WEFT_EINVAL;
    if (s->io.fd < 0)
        return WEFT_EBADF;
    int v = 0;
    socklen_t len = sizeof(v);
    if (getsockopt(s->io.fd, SOL_SOCKET, name, &v, &len) < 0)
        return weft__err(errno);
    return v;
}

int weft_dgram_recv_buffer_size(const weft_dgram *s)
{
    return get_int(s, SO_RCVBUF);
}

int weft_dgram_send_buffer_size(const weft_dgram *s)
{
    return get_int(s, SO_SNDBUF);
}

/* ---- properties -------------------------------------------------------- */

void weft_dgram_ref(weft_dgram *s)
{
    if (s)
        weft__handle_ref(&s->h);
}

void weft_dgram_unref(weft_dgram *s)
{
    if (s)
        weft__handle_unref(&s->h);
}

int weft_dgram_fileno(const weft_dgram *s)
{
    if (s == NULL)
        return WEFT_EINVAL;
    return s->io.fd >= 0 ? s->io.fd : WEFT_EBADF;
}

void weft_dgram_set_data(weft_dgram *s, void *data)
{
    if (s)
        s->data = data;
}

void *weft_dgram_data(const weft_dgram *s)
{
    return s ? s->data : NULL;
}

weft_loop *weft_dgram_loop(const weft_dgram *s)
{
    return s ? s->h.loop : NULL;
}

/* ---- events ------------------------------------------------------------ */

#define WEFT_DG_REG_(ev, type) WEFT__EVENT_API(dgram, ev, type)
WEFT_DGRAM_EVENT_MAP(WEFT_DG_REG_)
#undef WEFT_DG_REG_
