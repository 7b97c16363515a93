/*
 * test_dgram.c - datagram sockets (weft.h section 9): round trips over
 * IPv4 and IPv6, connected and unconnected sends, gather sends,
 * truncation, multicast on loopback, ICMP errors, the send queue and
 * 'drain' (the kernel's refusal injected by tests/fault.c), a flood
 * while the program is slow, closing inside 'message', and Node's dgram
 * on the other side, both ways.
 */
#include "fault.h"
#include "testutil.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#define NODE_DIR WEFT_SOURCE_DIR "/tests/node"

/* ---- helpers ------------------------------------------------------------ */

typedef struct peer {
    weft_dgram *sock;
    int messages;
    int errors;
    int last_err;
    char last_msg[128];
    char last[2048];
    size_t last_len;
    weft_dgram_rinfo last_ri;
    char last_addr[64];
    char firsts[64]; /* the first byte of each datagram, in order */
    bool echo;
    int close_after;
    int closes;
    int drains;
    tu_slog log;
} peer;

static void on_message(weft_dgram *s, const char *data, size_t len,
                       const weft_dgram_rinfo *ri, void *ctx)
{
    peer *p = ctx;
    p->messages++;
    size_t n = len < sizeof(p->last) ? len : sizeof(p->last);
    memcpy(p->last, data, n);
    p->last_len = len;
    size_t nf = strlen(p->firsts);
    if (len > 0 && nf + 1 < sizeof(p->firsts))
        p->firsts[nf] = data[0];
    ck_assert_int_eq(data[len], '\0');
    p->last_ri = *ri;
    snprintf(p->last_addr, sizeof(p->last_addr), "%s",
             weft_dgram_rinfo_address(ri));
    tu_slog_add(&p->log, "message");
    if (p->echo)
        ck_assert_int_ge(weft_dgram_reply(s, ri, data, len), 0);
    if (p->close_after > 0 && p->messages == p->close_after)
        ck_assert_int_eq(weft_dgram_close(s, NULL, NULL), 0);
}

static void on_listening(weft_dgram *s, void *ctx)
{
    (void)s;
    tu_slog_add(&((peer *)ctx)->log, "listening");
}

static void on_connect(weft_dgram *s, void *ctx)
{
    (void)s;
    tu_slog_add(&((peer *)ctx)->log, "connect");
}

static void on_drain(weft_dgram *s, void *ctx)
{
    (void)s;
    peer *p = ctx;
    p->drains++;
    tu_slog_add(&p->log, "drain");
}

static void on_error(weft_dgram *s, int err, const char *msg, void *ctx)
{
    (void)s;
    peer *p = ctx;
    p->errors++;
    p->last_err = err;
    snprintf(p->last_msg, sizeof(p->last_msg), "%s", msg);
    tu_slog_add(&p->log, "error %s", weft_err_name(err));
}

static void on_close(weft_dgram *s, void *ctx)
{
    (void)s;
    peer *p = ctx;
    p->closes++;
    tu_slog_add(&p->log, "close");
}

/* Every listener but 'message' logging into `p`. */
static void listen_all(peer *p)
{
    ck_assert_int_eq(weft_dgram_on_listening(p->sock, on_listening, p), 0);
    ck_assert_int_eq(weft_dgram_on_connect(p->sock, on_connect, p), 0);
    ck_assert_int_eq(weft_dgram_on_drain(p->sock, on_drain, p), 0);
    ck_assert_int_eq(weft_dgram_on_error(p->sock, on_error, p), 0);
    ck_assert_int_eq(weft_dgram_on_close(p->sock, on_close, p), 0);
}

/* A socket with every listener logging into `p`. */
static void open_peer(peer *p, const weft_dgram_options *o)
{
    memset(p, 0, sizeof(*p));
    ck_assert_int_eq(
        weft_dgram_create_socket(tu_loop, o, on_message, p, &p->sock), 0);
    listen_all(p);
}

static int bound_port(peer *p, const char *host)
{
    ck_assert_int_eq(weft_dgram_bind(p->sock, 0, host, NULL, NULL), 0);
    weft_address a;
    ck_assert_int_eq(weft_dgram_address(p->sock, &a), 0);
    ck_assert_int_gt(a.port, 0);
    return a.port;
}

static void tick(weft_timer *t, void *ctx)
{
    (void)t;
    (void)ctx;
}

/* A server bound on 127.0.0.1 and a client (with `cli_opts`) connected
 * to it. */
static void connected_pair(peer *srv, peer *cli,
                           const weft_dgram_options *cli_opts)
{
    open_peer(srv, NULL);
    open_peer(cli, cli_opts);
    int port = bound_port(srv, "127.0.0.1");
    ck_assert_int_eq(weft_dgram_connect(cli->sock, port, NULL, NULL, NULL), 0);
}

/* Turns the loop until `*count` reaches `want` or `ms` passed; returns
 * whether it did. A 5 ms ticker bounds each wait. */
static bool spin_until(const int *count, int want, unsigned ms)
{
    weft_timer *t = weft_set_interval(tu_loop, 5, tick, NULL);
    weft_timer_unref(t);
    long long end = tu_now_ms() + ms;
    while (*count < want && tu_now_ms() < end)
        weft_loop_run_mode(tu_loop, WEFT_RUN_ONCE);
    weft_clear_timer(t);
    return *count >= want;
}

/* Connects a plain UDP socket to the weft socket at 127.0.0.1:`port`. */
static void connect_loopback(int fd, int port)
{
    ck_assert_int_ge(fd, 0);
    struct sockaddr_in to = {.sin_family = AF_INET,
                             .sin_port = htons((uint16_t)port)};
    inet_pton(AF_INET, "127.0.0.1", &to.sin_addr);
    ck_assert_int_eq(connect(fd, (struct sockaddr *)&to, sizeof(to)), 0);
}

/* Closes the peers given and runs the loop to its end. */
static void finish(peer *a, peer *b)
{
    if (a != NULL && a->closes == 0)
        weft_dgram_close(a->sock, NULL, NULL);
    if (b != NULL && b->closes == 0)
        weft_dgram_close(b->sock, NULL, NULL);
    tu_run(3000);
}

/* ---- round trips ------------------------------------------------------- */

static void round_trip(int family, const char *host)
{
    weft_dgram_options o = {.family = family, .ipv6_only = family == 6};
    peer srv, cli;
    open_peer(&srv, &o);
    open_peer(&cli, &o);
    srv.echo = true;
    int port = bound_port(&srv, host);
    ck_assert_int_eq(weft_dgram_send(cli.sock, "hello", 5, port, host), 1);
    weft_address ca;
    ck_assert_int_eq(weft_dgram_address(cli.sock, &ca), 0); /* implicit */
    ck_assert(spin_until(&cli.messages, 1, 3000));
    finish(&srv, &cli);
    ck_assert_int_eq(srv.messages, 1);
    ck_assert_int_eq(cli.messages, 1);
    ck_assert_int_eq(cli.last_len, 5);
    ck_assert(memcmp(cli.last, "hello", 5) == 0);
    ck_assert_int_eq(srv.last_ri.family, family);
    ck_assert_int_eq(srv.last_ri.port, ca.port);
    ck_assert_str_eq(srv.last_addr, host);
    ck_assert_int_eq(srv.last_ri.size, 5);
    ck_assert(!srv.last_ri.truncated);
    ck_assert_int_eq(cli.last_ri.port, port);
    ck_assert_str_eq(srv.log.buf, "listening,message,close");
    ck_assert_str_eq(cli.log.buf, "listening,message,close");
}

START_TEST(udp4_round_trip_reports_sender_address_family_and_port)
{
    round_trip(4, "127.0.0.1");
}
END_TEST

START_TEST(udp6_round_trip_reports_sender_address_family_and_port)
{
    round_trip(6, "::1");
}
END_TEST

START_TEST(dual_stack_udp6_hears_ipv4_peers_as_mapped_and_replies_to_them)
{
    /* As Node: a udp6 socket without ipv6Only bound to "::" takes IPv4
     * datagrams too, and 'message' names their sender as an IPv4-mapped
     * IPv6 address; a reply through rinfo reaches the IPv4 peer. */
    weft_dgram_options o6 = {.family = 6};
    peer srv, cli;
    open_peer(&srv, &o6);
    open_peer(&cli, NULL);
    srv.echo = true;
    int port = bound_port(&srv, NULL);
    ck_assert_int_eq(weft_dgram_send(cli.sock, "v4", 2, port, "127.0.0.1"), 1);
    weft_address ca;
    ck_assert_int_eq(weft_dgram_address(cli.sock, &ca), 0);
    ck_assert(spin_until(&cli.messages, 1, 3000));
    ck_assert_int_eq(srv.last_ri.family, 6);
    ck_assert_str_eq(srv.last_addr, "::ffff:127.0.0.1");
    ck_assert_int_eq(srv.last_ri.port, ca.port);
    ck_assert_uint_eq(srv.last_ri.sockaddr_len, sizeof(struct sockaddr_in6));
    ck_assert_int_eq(cli.last_len, 2);
    ck_assert(memcmp(cli.last, "v4", 2) == 0);
    ck_assert_int_eq(cli.last_ri.family, 4);
    ck_assert_str_eq(cli.last_addr, "127.0.0.1");
    ck_assert_int_eq(cli.last_ri.port, port);
    /* The literal spelling of the mapped address works too. */
    ck_assert_int_eq(
        weft_dgram_send(srv.sock, "m", 1, ca.port, "::ffff:127.0.0.1"), 1);
    ck_assert(spin_until(&cli.messages, 2, 3000));
    ck_assert_int_eq(cli.last[0], 'm');
    finish(&srv, &cli);
}
END_TEST

START_TEST(an_address_literal_of_the_other_family_is_einval_as_in_node)
{
    /* Node answers bind, connect and send to the other family's literal
     * with EINVAL; the socket is left as it was and stays usable. */
    weft_dgram_options o6 = {.family = 6};
    peer p4, p6, srv4, srv6;
    open_peer(&p4, NULL);
    open_peer(&p6, &o6);
    open_peer(&srv4, NULL);
    open_peer(&srv6, &o6);
    int port4 = bound_port(&srv4, "127.0.0.1");
    int port6 = bound_port(&srv6, "::1");
    ck_assert_int_eq(weft_dgram_send(p4.sock, "x", 1, port6, "::1"),
                     WEFT_EINVAL);
    ck_assert_int_eq(weft_dgram_send(p6.sock, "x", 1, port4, "127.0.0.1"),
                     WEFT_EINVAL);
    ck_assert_int_eq(
        weft_dgram_send_segments(p6.sock, "xyz", 3, 1, port4, "127.0.0.1"),
        WEFT_EINVAL);
    ck_assert_int_eq(weft_dgram_connect(p4.sock, port6, "::1", NULL, NULL),
                     WEFT_EINVAL);
    ck_assert_int_eq(
        weft_dgram_connect(p6.sock, port4, "127.0.0.1", NULL, NULL),
        WEFT_EINVAL);
    ck_assert_int_eq(weft_dgram_bind(p4.sock, 0, "::1", NULL, NULL),
                     WEFT_EINVAL);
    ck_assert_int_eq(weft_dgram_bind(p6.sock, 0, "127.0.0.1", NULL, NULL),
                     WEFT_EINVAL);
    /* Nothing was bound or sent by the refused calls. */
    weft_address a;
    ck_assert_int_eq(weft_dgram_address(p4.sock, &a), WEFT_ENOTRUNNING);
    ck_assert_int_eq(weft_dgram_address(p6.sock, &a), WEFT_ENOTRUNNING);
    ck_assert_int_eq(weft_dgram_send(p4.sock, "4", 1, port4, "127.0.0.1"), 1);
    ck_assert_int_eq(weft_dgram_send(p6.sock, "6", 1, port6, "::1"), 1);
    ck_assert(spin_until(&srv4.messages, 1, 3000));
    ck_assert(spin_until(&srv6.messages, 1, 3000));
    ck_assert_int_eq(srv4.last[0], '4');
    ck_assert_int_eq(srv6.last[0], '6');
    ck_assert_int_eq(weft_dgram_close(p4.sock, NULL, NULL), 0);
    ck_assert_int_eq(weft_dgram_close(p6.sock, NULL, NULL), 0);
    finish(&srv4, &srv6);
    ck_assert_int_eq(srv4.messages, 1);
    ck_assert_int_eq(srv6.messages, 1);
}
END_TEST

START_TEST(ipv6_only_leaves_the_ipv4_port_to_a_udp4_socket)
{
    /* Dual stack, the port is taken for IPv4 too; with ipv6_only a udp4
     * socket can bind the same port, and each hears only its family. */
    weft_dgram_options dual = {.family = 6},
                       only = {.family = 6, .ipv6_only = true};
    peer d, v4;
    open_peer(&d, &dual);
    open_peer(&v4, NULL);
    int port = bound_port(&d, NULL);
    ck_assert_int_eq(weft_dgram_bind(v4.sock, port, NULL, NULL, NULL),
                     WEFT_EADDRINUSE);
    finish(&d, &v4);

    peer o, w4, cli4, cli6;
    open_peer(&o, &only);
    open_peer(&w4, NULL);
    port = bound_port(&o, NULL);
    ck_assert_int_eq(weft_dgram_bind(w4.sock, port, NULL, NULL, NULL), 0);
    open_peer(&cli4, NULL);
    open_peer(&cli6, &only);
    ck_assert_int_eq(weft_dgram_send(cli4.sock, "4", 1, port, "127.0.0.1"), 1);
    ck_assert_int_eq(weft_dgram_send(cli6.sock, "6", 1, port, "::1"), 1);
    ck_assert(spin_until(&w4.messages, 1, 3000));
    ck_assert(spin_until(&o.messages, 1, 3000));
    ck_assert_int_eq(w4.last[0], '4');
    ck_assert_int_eq(w4.last_ri.family, 4);
    ck_assert_int_eq(o.last[0], '6');
    ck_assert_int_eq(o.last_ri.family, 6);
    ck_assert_str_eq(o.last_addr, "::1");
    ck_assert_int_eq(weft_dgram_close(cli4.sock, NULL, NULL), 0);
    ck_assert_int_eq(weft_dgram_close(cli6.sock, NULL, NULL), 0);
    finish(&o, &w4);
    ck_assert_int_eq(w4.messages, 1);
    ck_assert_int_eq(o.messages, 1);
}
END_TEST

START_TEST(connected_send_goes_to_the_peer_and_disconnect_forgets_it)
{
    peer srv, cli;
    open_peer(&srv, NULL);
    open_peer(&cli, NULL);
    srv.echo = true;
    int port = bound_port(&srv, "127.0.0.1");
    ck_assert_int_eq(weft_dgram_connect(cli.sock, port, "127.0.0.1", NULL,
                                        NULL), 0);
    ck_assert_int_eq(weft_dgram_connect(cli.sock, port, NULL, NULL, NULL),
                     WEFT_EISCONN);
    weft_address ra;
    ck_assert_int_eq(weft_dgram_remote_address(cli.sock, &ra), 0);
    ck_assert_int_eq(ra.port, port);
    ck_assert_str_eq(ra.address, "127.0.0.1");
    ck_assert_int_eq(weft_dgram_send(cli.sock, "one", 3, 0, NULL), 1);
    ck_assert_int_eq(weft_dgram_send(cli.sock, "x", 1, port, "127.0.0.1"),
                     WEFT_EISCONN);
    ck_assert(spin_until(&cli.messages, 1, 3000));
    ck_assert_str_eq(cli.log.buf, "listening,connect,message");

    ck_assert_int_eq(weft_dgram_disconnect(cli.sock), 0);
    ck_assert_int_eq(weft_dgram_remote_address(cli.sock, &ra), WEFT_ENOTCONN);
    ck_assert_int_eq(weft_dgram_disconnect(cli.sock), WEFT_ENOTCONN);
    ck_assert_int_eq(weft_dgram_send(cli.sock, "two", 3, 0, NULL),
                     WEFT_EINVAL);
    ck_assert_int_eq(weft_dgram_send(cli.sock, "two", 3, port, "127.0.0.1"),
                     1);
    ck_assert(spin_until(&cli.messages, 2, 3000));
    finish(&srv, &cli);
    ck_assert(memcmp(cli.last, "two", 3) == 0);
}
END_TEST

/* Linux's disconnect (connect(AF_UNSPEC)) also unbinds a port the
 * kernel chose: the socket stopped receiving at the port 'listening'
 * announced, and address() said port 0. Found by fuzz/fuzz_dgram.c. */
static void disconnect_keeps_port(bool implicit)
{
    peer srv, cli;
    open_peer(&srv, NULL);
    open_peer(&cli, NULL);
    int sport = bound_port(&srv, "127.0.0.1");
    weft_address before, after;
    if (!implicit)
        bound_port(&cli, "127.0.0.1");
    ck_assert_int_eq(
        weft_dgram_connect(cli.sock, sport, "127.0.0.1", NULL, NULL), 0);
    ck_assert_int_eq(weft_dgram_address(cli.sock, &before), 0);
    ck_assert_int_eq(weft_dgram_disconnect(cli.sock), 0);
    ck_assert_int_eq(weft_dgram_address(cli.sock, &after), 0);
    ck_assert_int_eq(after.port, before.port);
    ck_assert_str_eq(after.address, implicit ? "0.0.0.0" : "127.0.0.1");
    /* and it still receives there */
    ck_assert_int_eq(
        weft_dgram_send(srv.sock, "back", 4, before.port, "127.0.0.1"), 1);
    ck_assert(spin_until(&cli.messages, 1, 3000));
    ck_assert(memcmp(cli.last, "back", 4) == 0);
    finish(&srv, &cli);
}

START_TEST(disconnect_keeps_the_port_the_kernel_chose)
{
    disconnect_keeps_port(false);
}
END_TEST

START_TEST(disconnect_keeps_the_port_connect_bound_implicitly)
{
    disconnect_keeps_port(true);
}
END_TEST

START_TEST(sendv_pieces_arrive_as_one_datagram)
{
    peer srv, cli;
    open_peer(&srv, NULL);
    open_peer(&cli, NULL);
    int port = bound_port(&srv, "127.0.0.1");
    weft_buf b[3] = {{"head ", 5}, {"", 0}, {"and body", 8}};
    ck_assert_int_eq(weft_dgram_sendv(cli.sock, b, 3, port, NULL), 1);
    ck_assert(spin_until(&srv.messages, 1, 3000));
    finish(&srv, &cli);
    ck_assert_int_eq(srv.last_len, 13);
    ck_assert(memcmp(srv.last, "head and body", 13) == 0);
}
END_TEST

START_TEST(datagram_longer_than_max_message_is_reported_truncated_with_size)
{
    weft_dgram_options o = {.max_message = 512};
    peer srv, cli;
    open_peer(&srv, &o);
    open_peer(&cli, NULL);
    int port = bound_port(&srv, "127.0.0.1");
    char big[2000];
    tu_fill_random(big, sizeof(big), 7);
    ck_assert_int_eq(weft_dgram_send(cli.sock, big, sizeof(big), port, NULL),
                     1);
    ck_assert(spin_until(&srv.messages, 1, 3000));
    ck_assert_int_eq(srv.last_len, 512);
    ck_assert(srv.last_ri.truncated);
    ck_assert_int_eq(srv.last_ri.size, 2000);
    ck_assert(memcmp(srv.last, big, 512) == 0);
    /* one that fits exactly is whole */
    ck_assert_int_eq(weft_dgram_send(cli.sock, big, 512, port, NULL), 1);
    ck_assert(spin_until(&srv.messages, 2, 3000));
    ck_assert_int_eq(srv.last_len, 512);
    ck_assert(!srv.last_ri.truncated);
    ck_assert_int_eq(srv.last_ri.size, 512);
    finish(&srv, &cli);
}
END_TEST

/* ---- multicast on loopback -------------------------------------------- */

#define GROUP "239.255.42.99"

static void after_ms(weft_timer *t, void *ctx)
{
    (void)t;
    *(int *)ctx = 1;
}

/* Lets `ms` pass on the loop (to show that nothing arrives). */
static void idle_ms(unsigned ms)
{
    int done = 0;
    weft_timer *t = weft_set_timeout(tu_loop, ms, after_ms, &done);
    ck_assert(spin_until(&done, 1, ms + 2000));
    (void)t;
}

START_TEST(multicast_on_loopback_join_receive_leave_no_longer_receive)
{
    weft_dgram_options o = {.reuse_addr = true};
    peer rx, tx;
    open_peer(&rx, &o);
    open_peer(&tx, NULL);
    int port = bound_port(&rx, NULL); /* 0.0.0.0: a group's datagrams */
    ck_assert_int_eq(weft_dgram_add_membership(rx.sock, GROUP, "127.0.0.1"),
                     0);
    ck_assert_int_eq(weft_dgram_add_membership(rx.sock, "10.0.0.1", NULL),
                     WEFT_EINVAL); /* not a group */
    ck_assert_int_eq(weft_dgram_set_multicast_interface(tx.sock, "127.0.0.1"),
                     0);
    ck_assert_int_eq(weft_dgram_set_multicast_loopback(tx.sock, true), 0);
    ck_assert_int_eq(weft_dgram_set_multicast_ttl(tx.sock, 1), 0);
    ck_assert_int_eq(weft_dgram_send(tx.sock, "to the group", 12, port, GROUP),
                     1);
    ck_assert(spin_until(&rx.messages, 1, 3000));
    ck_assert(memcmp(rx.last, "to the group", 12) == 0);

    ck_assert_int_eq(weft_dgram_drop_membership(rx.sock, GROUP, "127.0.0.1"),
                     0);
    ck_assert_int_eq(weft_dgram_send(tx.sock, "after leave", 11, port, GROUP),
                     1);
    /* a unicast datagram after it shows the socket still reads */
    ck_assert_int_eq(weft_dgram_send(tx.sock, "unicast", 7, port, NULL), 1);
    ck_assert(spin_until(&rx.messages, 2, 3000));
    idle_ms(100);
    ck_assert_int_eq(rx.messages, 2);
    ck_assert(memcmp(rx.last, "unicast", 7) == 0);
    finish(&rx, &tx);
}
END_TEST

START_TEST(source_specific_multicast_join_receives_from_that_source)
{
    weft_dgram_options o = {.reuse_addr = true};
    peer rx, tx;
    open_peer(&rx, &o);
    open_peer(&tx, NULL);
    int port = bound_port(&rx, NULL);
    ck_assert_int_eq(weft_dgram_add_source_specific_membership(
                         rx.sock, "127.0.0.1", "232.1.2.3", "127.0.0.1"),
                     0);
    weft_dgram_set_multicast_interface(tx.sock, "127.0.0.1");
    ck_assert_int_eq(weft_dgram_send(tx.sock, "ssm", 3, port, "232.1.2.3"),
                     1);
    ck_assert(spin_until(&rx.messages, 1, 3000));
    ck_assert_int_eq(weft_dgram_drop_source_specific_membership(
                         rx.sock, "127.0.0.1", "232.1.2.3", "127.0.0.1"),
                     0);
    finish(&rx, &tx);
}
END_TEST

START_TEST(options_set_and_read_back)
{
    peer p;
    open_peer(&p, NULL);
    ck_assert_int_eq(weft_dgram_set_broadcast(p.sock, true), 0);
    ck_assert_int_eq(weft_dgram_set_ttl(p.sock, 64), 0);
    ck_assert_int_eq(weft_dgram_set_ttl(p.sock, 0), WEFT_EINVAL);
    ck_assert_int_eq(weft_dgram_set_recv_buffer_size(p.sock, 100000), 0);
    ck_assert_int_ge(weft_dgram_recv_buffer_size(p.sock), 100000);
    ck_assert_int_eq(weft_dgram_set_send_buffer_size(p.sock, 100000), 0);
    ck_assert_int_ge(weft_dgram_send_buffer_size(p.sock), 100000);
    /* unbound: nothing keeps the loop alive; close still emits 'close' */
    ck_assert(!weft_loop_alive(tu_loop));
    ck_assert_int_eq(weft_dgram_close(p.sock, NULL, NULL), 0);
    ck_assert_int_eq(weft_dgram_close(p.sock, NULL, NULL), WEFT_ENOTRUNNING);
    tu_run(1000);
    ck_assert_str_eq(p.log.buf, "close");
}
END_TEST

/* ---- errors ------------------------------------------------------------ */

static int free_udp_port(void)
{
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    ck_assert_int_eq(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    socklen_t len = sizeof(a);
    getsockname(fd, (struct sockaddr *)&a, &len);
    close(fd);
    return ntohs(a.sin_port);
}

START_TEST(unreachable_connected_peer_gives_econnrefused_and_stays_open)
{
    peer cli;
    open_peer(&cli, NULL);
    int port = free_udp_port();
    ck_assert_int_eq(weft_dgram_connect(cli.sock, port, "127.0.0.1", NULL,
                                        NULL), 0);
    ck_assert_int_eq(weft_dgram_send(cli.sock, "anyone?", 7, 0, NULL), 1);
    ck_assert(spin_until(&cli.errors, 1, 3000));
    ck_assert_int_eq(cli.last_err, WEFT_ECONNREFUSED);
    ck_assert_str_eq(cli.last_msg, "recvmsg ECONNREFUSED");
    ck_assert_int_eq(cli.closes, 0);
    finish(&cli, NULL);
    ck_assert_str_eq(cli.log.buf,
                     "listening,connect,error ECONNREFUSED,close");
}
END_TEST

static int unhandled_seen;
static void unhandled(const char *object, void *handle, int err,
                      const char *message, void *ctx)
{
    (void)handle;
    (void)ctx;
    (void)message;
    ck_assert_str_eq(object, "dgram");
    ck_assert_int_eq(err, WEFT_ECONNREFUSED);
    unhandled_seen++;
}

static void count_close(weft_dgram *s, void *ctx)
{
    (void)s;
    (*(int *)ctx)++;
}

START_TEST(unhandled_error_is_reported_and_closes_the_socket)
{
    weft_set_unhandled_error_handler(unhandled, NULL);
    weft_dgram *s;
    int closes = 0;
    ck_assert_int_eq(weft_dgram_create_socket(tu_loop, NULL, NULL, NULL, &s),
                     0);
    weft_dgram_on_close(s, count_close, &closes);
    ck_assert_int_eq(weft_dgram_connect(s, free_udp_port(), NULL, NULL, NULL),
                     0);
    ck_assert_int_eq(weft_dgram_send(s, "x", 1, 0, NULL), 1);
    tu_run(3000); /* ends because the error closed the socket */
    weft_set_unhandled_error_handler(NULL, NULL);
    ck_assert_int_eq(unhandled_seen, 1);
    ck_assert_int_eq(closes, 1);
}
END_TEST

START_TEST(bad_arguments_are_refused)
{
    weft_dgram *s = NULL;
    weft_dgram_options bad = {.family = 5};
    ck_assert_int_eq(weft_dgram_create_socket(tu_loop, &bad, NULL, NULL, &s),
                     WEFT_EINVAL);
    ck_assert_ptr_null(s);
    peer p;
    open_peer(&p, NULL);
    ck_assert_int_eq(weft_dgram_bind(p.sock, 70000, NULL, NULL, NULL),
                     WEFT_EINVAL);
    ck_assert_int_eq(weft_dgram_send(p.sock, "x", 1, 0, "127.0.0.1"),
                     WEFT_EINVAL);
    char long_name[300];
    memset(long_name, 'a', sizeof(long_name) - 1);
    long_name[sizeof(long_name) - 1] = '\0';
    ck_assert_int_eq(weft_dgram_send(p.sock, "x", 1, 9, ""), WEFT_EINVAL);
    ck_assert_int_eq(weft_dgram_send(p.sock, "x", 1, 9, long_name),
                     WEFT_EINVAL);
    weft_address a;
    ck_assert_int_eq(weft_dgram_address(p.sock, &a), WEFT_ENOTRUNNING);
    int port = bound_port(&p, "127.0.0.1");
    ck_assert_int_eq(weft_dgram_bind(p.sock, 0, NULL, NULL, NULL),
                     WEFT_ESTATE);
    peer q;
    open_peer(&q, NULL);
    ck_assert_int_eq(weft_dgram_bind(q.sock, port, "127.0.0.1", NULL, NULL),
                     WEFT_EADDRINUSE);
    finish(&p, &q);
}
END_TEST

/* ---- the send queue ------------------------------------------------------ */

START_TEST(kernel_refusal_queues_sends_counts_them_and_drains_in_order)
{
    peer srv, cli;
    connected_pair(&srv, &cli, NULL);
    /* sendmsg says EAGAIN twice; the queue's sendmmsg then goes through */
    fault_arm(FAULT_SEND, 1, 2, EAGAIN);
    ck_assert_int_eq(weft_dgram_send(cli.sock, "a1", 2, 0, NULL), 0);
    ck_assert_int_eq(weft_dgram_send(cli.sock, "b22", 3, 0, NULL), 0);
    ck_assert_int_eq(weft_dgram_send(cli.sock, "c333", 4, 0, NULL), 0);
    ck_assert_int_eq(weft_dgram_send_queue_count(cli.sock), 3);
    ck_assert_int_eq(weft_dgram_send_queue_size(cli.sock), 9);
    ck_assert(spin_until(&srv.messages, 3, 3000));
    fault_disarm_all();
    ck_assert_int_eq(fault_injected(FAULT_SEND), 1); /* then it queued */
    ck_assert(spin_until(&cli.drains, 1, 3000));
    ck_assert_int_eq(weft_dgram_send_queue_count(cli.sock), 0);
    ck_assert_int_eq(weft_dgram_send_queue_size(cli.sock), 0);
    ck_assert_str_eq(srv.log.buf, "listening,message,message,message");
    ck_assert(memcmp(srv.last, "c333", 4) == 0);
    ck_assert_int_eq(weft_dgram_send(cli.sock, "d", 1, 0, NULL), 1);
    ck_assert(spin_until(&srv.messages, 4, 3000));
    finish(&srv, &cli);
    ck_assert_int_eq(cli.drains, 1);
}
END_TEST

START_TEST(empty_datagrams_cannot_grow_the_queue_without_bound)
{
    /* max_queue 1,024 bytes: at most 64 datagrams, even of 0 bytes */
    weft_dgram_options o = {.max_queue = 1024};
    peer srv, cli;
    connected_pair(&srv, &cli, &o);
    fault_arm(FAULT_SEND, 1, 1, EAGAIN); /* the first one queues */
    int queued = 0, refused = 0;
    for (int i = 0; i < 200; i++) {
        int rc = weft_dgram_send(cli.sock, "", 0, 0, NULL);
        if (rc == 0)
            queued++;
        else if (rc == WEFT_ENOBUFS)
            refused++;
        else
            ck_abort_msg("send: %d", rc);
    }
    fault_disarm_all();
    ck_assert_int_eq(queued, 64);
    ck_assert_int_eq(refused, 136);
    ck_assert_int_eq(weft_dgram_send_queue_count(cli.sock), 64);
    ck_assert(spin_until(&srv.messages, 64, 3000));
    ck_assert(spin_until(&cli.drains, 1, 3000));
    finish(&srv, &cli);
    ck_assert_int_eq(srv.messages, 64);
    ck_assert_int_eq(srv.last_len, 0);
}
END_TEST

START_TEST(send_segments_the_queue_cannot_hold_whole_sends_none)
{
    /* max_queue 4,096 and a datagram already waiting: ten segments of
     * 1,000 bytes cannot all wait, so none is sent or queued; three can,
     * and wait whole behind it. */
    weft_dgram_options o = {.max_queue = 4096};
    peer srv, cli;
    connected_pair(&srv, &cli, &o);
    fault_arm(FAULT_SEND, 1, 1, EAGAIN);
    ck_assert_int_eq(weft_dgram_send(cli.sock, "first", 5, 0, NULL), 0);
    fault_disarm_all();
    static char buf[10000];
    memset(buf, 's', sizeof(buf));
    ck_assert_int_eq(
        weft_dgram_send_segments(cli.sock, buf, 10000, 1000, 0, NULL),
        WEFT_ENOBUFS);
    ck_assert_int_eq(weft_dgram_send_queue_count(cli.sock), 1);
    ck_assert_int_eq(weft_dgram_send_queue_size(cli.sock), 5);
    ck_assert_int_eq(
        weft_dgram_send_segments(cli.sock, buf, 3000, 1000, 0, NULL), 0);
    ck_assert_int_eq(weft_dgram_send_queue_count(cli.sock), 4);
    ck_assert(spin_until(&srv.messages, 4, 3000));
    ck_assert(spin_until(&cli.drains, 1, 3000));
    finish(&srv, &cli);
    ck_assert_int_eq(srv.messages, 4);
    ck_assert_int_eq(srv.last_len, 1000);
    ck_assert_str_eq(cli.log.buf, "listening,connect,drain,close");
}
END_TEST

START_TEST(sends_during_a_name_lookup_wait_in_a_bounded_queue)
{
    weft_dgram_options o = {.max_queue = 100};
    peer srv, cli;
    open_peer(&srv, NULL);
    open_peer(&cli, &o);
    int port = bound_port(&srv, "127.0.0.1");
    ck_assert_int_eq(weft_dgram_connect(cli.sock, port, "localhost", NULL,
                                        NULL), 0);
    char buf[40] = "queued while looking up";
    int queued = 0, refused = 0;
    for (int i = 0; i < 5; i++) {
        int rc = weft_dgram_send(cli.sock, buf, sizeof(buf), 0, NULL);
        if (rc == 0)
            queued++;
        else if (rc == WEFT_ENOBUFS)
            refused++;
        else
            ck_abort_msg("send: %d", rc);
    }
    ck_assert_int_eq(queued, 2); /* 80 bytes of 100 */
    ck_assert_int_eq(refused, 3);
    ck_assert_int_eq(weft_dgram_send_queue_size(cli.sock), 80);
    ck_assert(spin_until(&cli.drains, 1, 5000));
    ck_assert(spin_until(&srv.messages, 2, 3000));
    finish(&srv, &cli);
    ck_assert_str_eq(cli.log.buf, "listening,connect,drain,close");
}
END_TEST

START_TEST(send_to_a_host_name_looks_it_up_once_and_keeps_the_order)
{
    peer srv, cli;
    open_peer(&srv, NULL);
    open_peer(&cli, NULL);
    int port = bound_port(&srv, "127.0.0.1");
    long lookups = fault_calls(FAULT_GETADDRINFO);
    /* a burst to the name, with a literal between: queued in order
     * behind the name, and the name looked up once for the burst */
    ck_assert_int_eq(weft_dgram_send(cli.sock, "1", 1, port, "localhost"), 0);
    ck_assert_int_eq(weft_dgram_send(cli.sock, "2", 1, port, "127.0.0.1"), 0);
    ck_assert_int_eq(weft_dgram_send(cli.sock, "3", 1, port, "localhost"), 0);
    ck_assert_int_eq(weft_dgram_send_queue_count(cli.sock), 3);
    ck_assert_int_eq(weft_dgram_send_queue_size(cli.sock), 3);
    ck_assert(spin_until(&srv.messages, 3, 5000));
    ck_assert(spin_until(&cli.drains, 1, 3000));
    ck_assert_int_eq(srv.messages, 3);
    ck_assert_str_eq(srv.firsts, "123");
    ck_assert_int_eq(fault_calls(FAULT_GETADDRINFO) - lookups, 1);
    ck_assert_int_eq(weft_dgram_send_queue_count(cli.sock), 0);
    /* a later send to the name looks it up again (as Node's does) */
    ck_assert_int_eq(weft_dgram_send(cli.sock, "4", 1, port, "localhost"), 0);
    ck_assert(spin_until(&srv.messages, 4, 3000));
    ck_assert_int_eq(srv.last[0], '4');
    ck_assert_int_eq(fault_calls(FAULT_GETADDRINFO) - lookups, 2);
    finish(&srv, &cli);
    ck_assert_int_eq(cli.errors, 0);
    ck_assert_str_eq(cli.log.buf, "listening,drain,drain,close");
}
END_TEST

START_TEST(send_to_a_name_that_does_not_resolve_reports_it_and_stays_open)
{
    peer srv, cli;
    open_peer(&srv, NULL);
    open_peer(&cli, NULL);
    int port = bound_port(&srv, "127.0.0.1");
    fault_arm(FAULT_GETADDRINFO, 1, 1, EAI_NONAME);
    ck_assert_int_eq(weft_dgram_send(cli.sock, "a", 1, port, "nowhere.test"),
                     0);
    ck_assert_int_eq(weft_dgram_send(cli.sock, "b", 1, port, "127.0.0.1"), 0);
    ck_assert_int_eq(weft_dgram_send(cli.sock, "c", 1, port, "nowhere.test"),
                     0);
    ck_assert(spin_until(&srv.messages, 1, 5000));
    ck_assert(spin_until(&cli.errors, 1, 3000));
    fault_disarm_all();
    ck_assert_int_eq(cli.last_err, WEFT_ENOTFOUND);
    ck_assert_str_eq(cli.last_msg, "getaddrinfo ENOTFOUND nowhere.test");
    ck_assert_str_eq(srv.firsts, "b"); /* both datagrams to the name gone */
    ck_assert_int_eq(weft_dgram_send_queue_count(cli.sock), 0);
    /* still open: the next send goes */
    ck_assert_int_eq(weft_dgram_send(cli.sock, "d", 1, port, "127.0.0.1"), 1);
    ck_assert(spin_until(&srv.messages, 2, 3000));
    ck_assert_int_eq(srv.last[0], 'd');
    finish(&srv, &cli);
    ck_assert_str_eq(srv.firsts, "bd");
    ck_assert_int_eq(cli.closes, 1);
}
END_TEST

START_TEST(a_long_name_that_does_not_resolve_leaves_the_queue_too)
{
    /* 200 characters: longer than the copy the error message was once
     * built from, so the datagrams were compared with a cut name, stayed
     * queued, and were looked up again and again. */
    char name[201];
    memset(name, 'n', sizeof(name) - 1);
    name[sizeof(name) - 1] = '\0';
    peer cli;
    open_peer(&cli, NULL);
    fault_arm(FAULT_GETADDRINFO, 1, 1, EAI_NONAME);
    ck_assert_int_eq(weft_dgram_send(cli.sock, "a", 1, 9, name), 0);
    ck_assert(spin_until(&cli.errors, 1, 3000));
    fault_disarm_all();
    ck_assert_int_eq(cli.last_err, WEFT_ENOTFOUND);
    ck_assert_int_eq(weft_dgram_send_queue_count(cli.sock), 0);
    ck_assert_int_eq(fault_calls(FAULT_GETADDRINFO), 1);
    finish(&cli, NULL);
}
END_TEST

START_TEST(close_while_a_send_waits_for_its_name_drops_it_cleanly)
{
    peer cli;
    open_peer(&cli, NULL);
    long started = fault_calls(FAULT_GETADDRINFO);
    ck_assert_int_eq(weft_dgram_send(cli.sock, "z", 1, 9, "localhost"), 0);
    /* close while the lookup thread is inside getaddrinfo() */
    long long end = tu_now_ms() + 3000;
    while (fault_calls(FAULT_GETADDRINFO) == started && tu_now_ms() < end)
        usleep(100);
    ck_assert_int_gt(fault_calls(FAULT_GETADDRINFO), started);
    ck_assert_int_eq(weft_dgram_close(cli.sock, NULL, NULL), 0);
    tu_run(3000);
    ck_assert_int_eq(cli.errors, 0);
    ck_assert_int_eq(cli.drains, 0);
    ck_assert_str_eq(cli.log.buf, "close");
    /* The cancelled lookup's getaddrinfo() runs to its end on the lookup
     * thread, with files of its own open (/etc/hosts, a netlink socket):
     * it must end (the teardown waits for it too, before counting fds). */
    tu_wait_lookups_done();
}
END_TEST

START_TEST(bind_to_a_name_looks_it_up_then_listens)
{
    peer p;
    open_peer(&p, NULL);
    ck_assert_int_eq(weft_dgram_bind(p.sock, 0, "localhost", NULL, NULL), 0);
    weft_address a;
    ck_assert_int_eq(weft_dgram_address(p.sock, &a), WEFT_ENOTRUNNING);
    int n = 0;
    while (strstr(p.log.buf, "listening") == NULL && n++ < 400)
        weft_loop_run_mode(tu_loop, WEFT_RUN_ONCE);
    ck_assert_int_eq(weft_dgram_address(p.sock, &a), 0);
    ck_assert_str_eq(a.address, "127.0.0.1");
    finish(&p, NULL);
    ck_assert_str_eq(p.log.buf, "listening,close");
}
END_TEST

/* ---- batches, floods, closing inside 'message' ------------------------- */

START_TEST(echo_inside_message_answers_every_datagram_of_a_batch)
{
    peer srv, cli;
    connected_pair(&srv, &cli, NULL);
    srv.echo = true;
    /* 150 sent before the server reads: its first read takes 64 */
    int sent = 0;
    for (int i = 0; i < 150; i++) {
        char m[16];
        int n = snprintf(m, sizeof(m), "m%d", i);
        sent += weft_dgram_send(cli.sock, m, (size_t)n, 0, NULL) >= 0;
    }
    ck_assert_int_eq(sent, 150);
    ck_assert(spin_until(&cli.messages, 150, 5000));
    ck_assert(memcmp(cli.last, "m149", 4) == 0);
    finish(&srv, &cli);
}
END_TEST

/* A send made while connected goes to that peer, even when it has not
 * left yet at disconnect(): gathered inside 'message' (returned 1) or
 * queued behind the kernel's refusal (returned 0). Both were sent without
 * an address after the disconnect and dropped with 'error' (EDESTADDRREQ,
 * as EIO). Found by fuzz/fuzz_dgram.c. */
static void send_then_disconnect(weft_dgram *s, const char *data, size_t len,
                                 const weft_dgram_rinfo *ri, void *ctx)
{
    (void)data;
    (void)len;
    (void)ri;
    ((peer *)ctx)->messages++;
    ck_assert_int_eq(weft_dgram_send(s, "while connected", 15, 0, NULL), 1);
    ck_assert_int_eq(weft_dgram_disconnect(s), 0);
}

START_TEST(batch_sent_while_connected_leaves_for_that_peer_after_disconnect)
{
    peer srv, cli;
    open_peer(&srv, NULL);
    memset(&cli, 0, sizeof(cli));
    ck_assert_int_eq(weft_dgram_create_socket(
                         tu_loop, NULL, send_then_disconnect, &cli, &cli.sock),
                     0);
    listen_all(&cli);
    int port = bound_port(&srv, "127.0.0.1");
    ck_assert_int_eq(weft_dgram_connect(cli.sock, port, NULL, NULL, NULL), 0);
    weft_address ca;
    ck_assert_int_eq(weft_dgram_address(cli.sock, &ca), 0);
    ck_assert_int_eq(weft_dgram_send(srv.sock, "go", 2, ca.port, NULL), 1);
    ck_assert(spin_until(&srv.messages, 1, 3000));
    finish(&srv, &cli);
    ck_assert(memcmp(srv.last, "while connected", 15) == 0);
    ck_assert_str_eq(cli.log.buf, "listening,connect,close");
}
END_TEST

START_TEST(queue_sent_while_connected_leaves_for_that_peer_after_disconnect)
{
    peer srv, cli;
    connected_pair(&srv, &cli, NULL);
    fault_arm(FAULT_SEND, 1, 1, EAGAIN);
    ck_assert_int_eq(weft_dgram_send(cli.sock, "queued", 6, 0, NULL), 0);
    fault_disarm_all();
    ck_assert_int_eq(weft_dgram_disconnect(cli.sock), 0);
    ck_assert(spin_until(&srv.messages, 1, 3000));
    ck_assert(spin_until(&cli.drains, 1, 3000));
    finish(&srv, &cli);
    ck_assert(memcmp(srv.last, "queued", 6) == 0);
    /* no 'connect': it was undone before the loop turned */
    ck_assert_str_eq(cli.log.buf, "listening,drain,close");
}
END_TEST

/* Inside 'message', A to an address joins the batch (1) and B to a name
 * waits in the queue for its lookup (0). When the kernel refuses the
 * batch's sendmmsg, A moves to the queue: ahead of B, as it was sent.
 * It was put behind B. Found by fuzz/fuzz_dgram.c. */
static void batch_then_name(weft_dgram *s, const char *data, size_t len,
                            const weft_dgram_rinfo *ri, void *ctx)
{
    (void)data;
    (void)len;
    ((peer *)ctx)->messages++;
    ck_assert_int_eq(weft_dgram_send(s, "A", 1, ri->port, "127.0.0.1"), 1);
    ck_assert_int_eq(weft_dgram_send(s, "B", 1, ri->port, "localhost"), 0);
    fault_arm(FAULT_SENDMMSG, 1, 1, EAGAIN); /* the batch's */
}

START_TEST(refused_batch_keeps_its_place_ahead_of_later_queued_sends)
{
    peer srv, cli;
    open_peer(&srv, NULL);
    memset(&cli, 0, sizeof(cli));
    ck_assert_int_eq(weft_dgram_create_socket(tu_loop, NULL, batch_then_name,
                                              &cli, &cli.sock),
                     0);
    listen_all(&cli);
    bound_port(&srv, "127.0.0.1");
    int cport = bound_port(&cli, "127.0.0.1");
    ck_assert_int_eq(weft_dgram_send(srv.sock, "go", 2, cport, NULL), 1);
    ck_assert(spin_until(&srv.messages, 2, 3000));
    fault_disarm_all();
    ck_assert_int_eq(fault_injected(FAULT_SENDMMSG), 1);
    finish(&srv, &cli);
    ck_assert_str_eq(srv.firsts, "AB");
    ck_assert_int_eq(cli.errors, 0);
}
END_TEST

/* Inside 'message': ten replies join the batch (1 each); the kernel
 * then refuses the batch and a 64-byte queue takes only the first. */
static void ten_replies(weft_dgram *s, const char *data, size_t len,
                        const weft_dgram_rinfo *ri, void *ctx)
{
    (void)data, (void)len;
    ((peer *)ctx)->messages++;
    char m[40];
    for (int i = 0; i < 10; i++) {
        memset(m, '0' + i, sizeof(m));
        ck_assert_int_eq(weft_dgram_reply(s, ri, m, sizeof(m)), 1);
    }
    fault_arm(FAULT_SENDMMSG, 1, 1, EAGAIN); /* the batch's */
}

START_TEST(batch_entries_dropped_for_want_of_queue_room_are_counted)
{
    weft_dgram_options small = {.max_queue = 64};
    peer srv, cli;
    open_peer(&cli, NULL);
    memset(&srv, 0, sizeof(srv));
    ck_assert_int_eq(
        weft_dgram_create_socket(tu_loop, &small, ten_replies, &srv, &srv.sock),
        0);
    listen_all(&srv);
    int port = bound_port(&srv, "127.0.0.1");
    ck_assert_int_eq(weft_dgram_send_dropped(srv.sock), 0);
    ck_assert_int_eq(weft_dgram_send(cli.sock, "go", 2, port, NULL), 1);
    ck_assert(spin_until(&cli.messages, 1, 3000));
    fault_disarm_all();
    ck_assert_int_eq(fault_injected(FAULT_SENDMMSG), 1);
    ck_assert(spin_until(&srv.drains, 1, 3000));
    idle_ms(50);
    ck_assert_int_eq(cli.messages, 1); /* the one the queue held */
    ck_assert_int_eq(cli.last[0], '0');
    ck_assert_int_eq(weft_dgram_send_dropped(srv.sock), 9);
    ck_assert_int_eq(weft_dgram_send_dropped(NULL), 0);
    finish(&srv, &cli);
    ck_assert_int_eq(srv.errors, 0);
}
END_TEST

/* ---- reading again after a short batch -------------------------------- */

/* A ping-pong between two sockets of one loop: each answers inside
 * 'message' while it has answers left. */
typedef struct rally {
    int left;
    int got;
} rally;

static void on_rally(weft_dgram *s, const char *data, size_t len,
                     const weft_dgram_rinfo *ri, void *ctx)
{
    rally *r = ctx;
    r->got++;
    if (r->left > 0) {
        r->left--;
        ck_assert_int_ge(weft_dgram_reply(s, ri, data, len), 0);
    }
}

START_TEST(quiet_ping_pong_does_not_pay_an_empty_read_per_datagram)
{
    /* Each side's answer can only be read after its own batch ends, so a
     * read after the short batch always finds nothing: weft must learn
     * that and stop asking. Always reading again costs 2 per datagram. */
    rally ra = {.left = 1000}, rb = {.left = 1000};
    weft_dgram *a, *b;
    ck_assert_int_eq(weft_dgram_create_socket(tu_loop, NULL, on_rally, &ra, &a),
                     0);
    ck_assert_int_eq(weft_dgram_create_socket(tu_loop, NULL, on_rally, &rb, &b),
                     0);
    ck_assert_int_eq(weft_dgram_bind(a, 0, "127.0.0.1", NULL, NULL), 0);
    ck_assert_int_eq(weft_dgram_bind(b, 0, "127.0.0.1", NULL, NULL), 0);
    weft_address ab;
    ck_assert_int_eq(weft_dgram_address(b, &ab), 0);
    long before = fault_calls(FAULT_RECVMMSG);
    ck_assert_int_eq(weft_dgram_send(a, "x", 1, ab.port, "127.0.0.1"), 1);
    long long end = tu_now_ms() + 5000;
    while (ra.got + rb.got < 2001 && tu_now_ms() < end)
        weft_loop_run_mode(tu_loop, WEFT_RUN_ONCE);
    long reads = fault_calls(FAULT_RECVMMSG) - before;
    int got = ra.got + rb.got;
    weft_dgram_close(a, NULL, NULL);
    weft_dgram_close(b, NULL, NULL);
    tu_run(3000);
    ck_assert_int_eq(got, 2001);
    /* one read per datagram, plus a few probes (backing off to 1 in 64) */
    ck_assert_msg(reads <= got + got / 16, "%ld reads for %d datagrams", reads,
                  got);
}
END_TEST

typedef struct feed {
    int fd; /* a plain socket connected to the weft socket */
    int sent, got, turns, turn_of_last;
    bool done;
} feed;

static void feed_message(weft_dgram *s, const char *data, size_t len,
                         const weft_dgram_rinfo *ri, void *ctx)
{
    (void)s, (void)data, (void)len, (void)ri;
    feed *f = ctx;
    f->got++;
    f->turn_of_last = f->turns;
    if (f->sent < 100) {
        ck_assert_int_eq(send(f->fd, "y", 1, 0), 1);
        f->sent++;
    }
}

static void count_turn(weft_immediate *im, void *ctx)
{
    (void)im;
    feed *f = ctx;
    f->turns++;
    if (!f->done)
        weft_set_immediate(tu_loop, count_turn, f);
}

START_TEST(datagrams_that_arrive_during_a_batch_are_read_in_the_same_turn)
{
    /* Every datagram sends the next one while it is delivered, as a busy
     * peer's stream does: a read after each short batch finds it, so all
     * 101 arrive within a turn or two of the loop instead of one turn
     * each (that is the sleep and wake-up a loopback sender pays for). */
    feed f = {0};
    weft_dgram *s;
    ck_assert_int_eq(
        weft_dgram_create_socket(tu_loop, NULL, feed_message, &f, &s), 0);
    ck_assert_int_eq(weft_dgram_bind(s, 0, "127.0.0.1", NULL, NULL), 0);
    weft_address sa;
    ck_assert_int_eq(weft_dgram_address(s, &sa), 0);
    f.fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    connect_loopback(f.fd, sa.port);
    ck_assert_ptr_nonnull(weft_set_immediate(tu_loop, count_turn, &f));
    ck_assert_int_eq(send(f.fd, "y", 1, 0), 1);
    long long end = tu_now_ms() + 5000;
    while (f.got < 101 && tu_now_ms() < end)
        weft_loop_run_mode(tu_loop, WEFT_RUN_ONCE);
    f.done = true;
    weft_dgram_close(s, NULL, NULL);
    tu_run(3000);
    close(f.fd);
    ck_assert_int_eq(f.got, 101);
    ck_assert_msg(f.turn_of_last <= 10, "101 datagrams took %d turns",
                  f.turn_of_last);
}
END_TEST

/* Listeners changed inside 'message', within one batch of datagrams. */
static char lis_log[128];
static weft_dgram_message_cb lis_b, lis_c;

static void lis_note(const char *who, const char *data)
{
    size_t n = strlen(lis_log);
    snprintf(lis_log + n, sizeof(lis_log) - n, "%s%c%s", n ? "," : "", data[0],
             who);
}

static void lis_a(weft_dgram *s, const char *data, size_t len,
                  const weft_dgram_rinfo *ri, void *ctx)
{
    (void)len, (void)ri, (void)ctx;
    lis_note("A", data);
    if (data[0] == '1') {
        ck_assert_int_eq(weft_dgram_off_message(s, lis_b, NULL), 0);
        ck_assert_int_eq(weft_dgram_on_message(s, lis_c, NULL), 0);
    }
}

static void lis_b_fn(weft_dgram *s, const char *data, size_t len,
                     const weft_dgram_rinfo *ri, void *ctx)
{
    (void)s, (void)len, (void)ri, (void)ctx;
    lis_note("B", data);
}

static void lis_c_fn(weft_dgram *s, const char *data, size_t len,
                     const weft_dgram_rinfo *ri, void *ctx)
{
    (void)s, (void)len, (void)ri, (void)ctx;
    lis_note("C", data);
}

static void lis_d(weft_dgram *s, const char *data, size_t len,
                  const weft_dgram_rinfo *ri, void *ctx)
{
    (void)s, (void)len, (void)ri, (void)ctx;
    lis_note("D", data);
}

START_TEST(listeners_changed_inside_message_apply_from_the_next_datagram)
{
    /* Three datagrams read in one batch: A removes B and adds C while
     * the first is delivered; D listens once. B is skipped from then on
     * (it comes after A), C hears from the second on, D only the first. */
    lis_b = lis_b_fn;
    lis_c = lis_c_fn;
    lis_log[0] = '\0';
    weft_dgram *srv;
    ck_assert_int_eq(weft_dgram_create_socket(tu_loop, NULL, lis_a, NULL, &srv),
                     0);
    ck_assert_int_eq(weft_dgram_on_message(srv, lis_b, NULL), 0);
    ck_assert_int_eq(weft_dgram_once_message(srv, lis_d, NULL), 0);
    ck_assert_int_eq(weft_dgram_bind(srv, 0, "127.0.0.1", NULL, NULL), 0);
    weft_address a;
    ck_assert_int_eq(weft_dgram_address(srv, &a), 0);
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    connect_loopback(fd, a.port);
    for (const char *m = "123"; *m; m++)
        ck_assert_int_eq(send(fd, m, 1, 0), 1);
    long before = fault_calls(FAULT_RECVMMSG);
    long long end = tu_now_ms() + 3000;
    while (strlen(lis_log) < 17 && tu_now_ms() < end)
        weft_loop_run_mode(tu_loop, WEFT_RUN_ONCE);
    ck_assert_str_eq(lis_log, "1A,1D,2A,2C,3A,3C");
    /* all three came from one read (and one more that found nothing):
     * the changes happened inside a batch */
    ck_assert_int_le(fault_calls(FAULT_RECVMMSG) - before, 2);
    close(fd);
    weft_dgram_close(srv, NULL, NULL);
    tu_run(3000);
}
END_TEST

START_TEST(close_inside_message_stops_delivery_and_closes_once)
{
    peer srv, cli;
    open_peer(&srv, NULL);
    open_peer(&cli, NULL);
    srv.echo = true;
    srv.close_after = 1;
    int port = bound_port(&srv, "127.0.0.1");
    for (int i = 0; i < 5; i++)
        ck_assert_int_eq(weft_dgram_send(cli.sock, "hi", 2, port, NULL), 1);
    ck_assert(spin_until(&srv.closes, 1, 3000));
    /* the echo sent before close() still left */
    ck_assert(spin_until(&cli.messages, 1, 3000));
    finish(NULL, &cli);
    ck_assert_int_eq(srv.messages, 1);
    ck_assert_int_eq(srv.closes, 1);
    ck_assert_str_eq(srv.log.buf, "listening,message,close");
}
END_TEST

static long rss_kb(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long kb = -1;
    while (f && fgets(line, sizeof(line), f))
        if (sscanf(line, "VmRSS: %ld", &kb) == 1)
            break;
    if (f)
        fclose(f);
    return kb;
}

typedef struct slow {
    int messages;
    long long last_tick, worst_gap;
    int ticks;
} slow;

static void slow_message(weft_dgram *s, const char *data, size_t len,
                         const weft_dgram_rinfo *ri, void *ctx)
{
    (void)s;
    (void)data;
    (void)len;
    (void)ri;
    slow *w = ctx;
    w->messages++;
    usleep(20); /* a program slower than the flood */
}

static void slow_tick(weft_timer *t, void *ctx)
{
    (void)t;
    slow *w = ctx;
    long long now = tu_now_ms();
    if (w->last_tick && now - w->last_tick > w->worst_gap)
        w->worst_gap = now - w->last_tick;
    w->last_tick = now;
    w->ticks++;
}

START_TEST(flood_while_slow_neither_grows_memory_nor_blocks_the_loop)
{
    slow w = {0};
    weft_dgram *srv;
    weft_dgram_options o = {.recv_buffer_size = 1 << 20};
    ck_assert_int_eq(
        weft_dgram_create_socket(tu_loop, &o, slow_message, &w, &srv), 0);
    ck_assert_int_eq(weft_dgram_bind(srv, 0, "127.0.0.1", NULL, NULL), 0);
    weft_address a;
    weft_dgram_address(srv, &a);
    /* warm up the batch area before measuring memory */
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0);
    struct sockaddr_in to = {.sin_family = AF_INET,
                             .sin_port = htons((uint16_t)a.port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    char buf[1200] = {0};
    for (int i = 0; i < 64; i++)
        sendto(fd, buf, sizeof(buf), 0, (struct sockaddr *)&to, sizeof(to));
    spin_until(&w.messages, 64, 2000);
    long before = rss_kb();

    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        /* 1.5 s or 300,000 datagrams, whichever first */
        long long end = tu_now_ms() + 1500;
        for (int i = 0; i < 300000 && tu_now_ms() < end; i++)
            sendto(fd, buf, sizeof(buf), 0, (struct sockaddr *)&to,
                   sizeof(to));
        _exit(0);
    }
    close(fd);
    weft_timer *t = weft_set_interval(tu_loop, 10, slow_tick, &w);
    int done = 0;
    weft_set_timeout(tu_loop, 2000, after_ms, &done);
    spin_until(&done, 1, 5000);
    weft_clear_timer(t);
    int status;
    waitpid(pid, &status, 0);
    long after = rss_kb();
    weft_dgram_close(srv, NULL, NULL);
    tu_run(2000);
    ck_assert_int_gt(w.messages, 1000);
    /* the timer kept firing: the loop was never held for long (500 ms
     * leaves room for a busy host; one wake-up reads 256 at most) */
    ck_assert_int_gt(w.ticks, 50);
    ck_assert_msg(w.worst_gap < 500, "loop held for %lld ms", w.worst_gap);
    ck_assert_msg(after - before < 4096, "RSS grew by %ld KiB",
                  after - before);
}
END_TEST

/* ---- sockets made elsewhere --------------------------------------------- */

static int udp_socket_bound(int family, const char *host, int *port)
{
    int fd = socket(family, SOCK_DGRAM, 0); /* blocking, inheritable */
    ck_assert_int_ge(fd, 0);
    struct sockaddr_storage ss = {0};
    socklen_t len;
    if (family == AF_INET6) {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
        a->sin6_family = AF_INET6;
        inet_pton(AF_INET6, host, &a->sin6_addr);
        len = sizeof(*a);
    } else {
        struct sockaddr_in *a = (struct sockaddr_in *)&ss;
        a->sin_family = AF_INET;
        inet_pton(AF_INET, host, &a->sin_addr);
        len = sizeof(*a);
    }
    ck_assert_int_eq(bind(fd, (struct sockaddr *)&ss, len), 0);
    len = sizeof(ss);
    ck_assert_int_eq(getsockname(fd, (struct sockaddr *)&ss, &len), 0);
    *port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
    return fd;
}

START_TEST(open_over_a_bound_socket_listens_and_answers)
{
    int fds = tu_fd_count();
    int port;
    int fd = udp_socket_bound(AF_INET6, "::1", &port);
    peer srv, cli;
    memset(&srv, 0, sizeof(srv));
    weft_dgram_options o = {.max_message = 4};
    ck_assert_int_eq(
        weft_dgram_open(tu_loop, fd, &o, on_message, &srv, &srv.sock), 0);
    listen_all(&srv);
    srv.echo = true;
    ck_assert_int_eq(weft_dgram_fileno(srv.sock), fd);
    ck_assert(fcntl(fd, F_GETFL) & O_NONBLOCK);
    ck_assert(fcntl(fd, F_GETFD) & FD_CLOEXEC);
    weft_address a;
    ck_assert_int_eq(weft_dgram_address(srv.sock, &a), 0);
    ck_assert_int_eq(a.port, port);
    ck_assert_int_eq(a.family, 6);
    /* bound already: bind() is refused as on any bound socket */
    ck_assert_int_eq(weft_dgram_bind(srv.sock, 0, NULL, NULL, NULL),
                     WEFT_ESTATE);
    weft_dgram_options o6 = {.family = 6};
    open_peer(&cli, &o6);
    ck_assert_int_eq(weft_dgram_send(cli.sock, "hello", 5, port, "::1"), 1);
    ck_assert(spin_until(&cli.messages, 1, 3000));
    ck_assert_int_eq(srv.last_ri.size, 5); /* cut to max_message 4 */
    ck_assert(srv.last_ri.truncated);
    ck_assert_int_eq(cli.last_len, 4);
    finish(&srv, &cli);
    ck_assert_str_eq(srv.log.buf, "listening,message,close");
    ck_assert_int_eq(tu_fd_count(), fds); /* the fd was closed with it */
}
END_TEST

START_TEST(open_over_a_connected_socket_sends_to_its_peer)
{
    peer srv;
    open_peer(&srv, NULL);
    int port = bound_port(&srv, "127.0.0.1");
    int cport;
    int fd = udp_socket_bound(AF_INET, "127.0.0.1", &cport);
    connect_loopback(fd, port);
    peer cli;
    memset(&cli, 0, sizeof(cli));
    ck_assert_int_eq(
        weft_dgram_open(tu_loop, fd, NULL, on_message, &cli, &cli.sock), 0);
    listen_all(&cli);
    weft_address ra;
    ck_assert_int_eq(weft_dgram_remote_address(cli.sock, &ra), 0);
    ck_assert_int_eq(ra.port, port);
    ck_assert_int_eq(weft_dgram_send(cli.sock, "to-peer", 7, 0, NULL), 1);
    ck_assert_int_eq(weft_dgram_send(cli.sock, "x", 1, port, "127.0.0.1"),
                     WEFT_EISCONN);
    ck_assert(spin_until(&srv.messages, 1, 3000));
    ck_assert(memcmp(srv.last, "to-peer", 7) == 0);
    ck_assert_int_eq(srv.last_ri.port, cport);
    finish(&srv, &cli);
    ck_assert_str_eq(cli.log.buf, "listening,close"); /* no 'connect' */
}
END_TEST

START_TEST(open_over_an_unbound_socket_binds_later)
{
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    ck_assert_int_ge(fd, 0);
    peer p;
    memset(&p, 0, sizeof(p));
    ck_assert_int_eq(weft_dgram_open(tu_loop, fd, NULL, on_message, &p,
                                     &p.sock),
                     0);
    listen_all(&p);
    weft_address a;
    ck_assert_int_eq(weft_dgram_address(p.sock, &a), WEFT_ENOTRUNNING);
    ck_assert_int_gt(bound_port(&p, "127.0.0.1"), 0);
    weft_loop_run_mode(tu_loop, WEFT_RUN_NOWAIT);
    finish(&p, NULL);
    ck_assert_str_eq(p.log.buf, "listening,close");
}
END_TEST

START_TEST(open_refuses_what_is_not_a_udp_socket_and_leaves_it_alone)
{
    weft_dgram *s = (weft_dgram *)1;
    ck_assert_int_eq(weft_dgram_open(tu_loop, -1, NULL, NULL, NULL, &s),
                     WEFT_EBADF);
    ck_assert_ptr_null(s);
    int p[2];
    ck_assert_int_eq(pipe(p), 0);
    ck_assert_int_eq(weft_dgram_open(tu_loop, p[0], NULL, NULL, NULL, &s),
                     WEFT_ENOTSOCK);
    int tcp = socket(AF_INET, SOCK_STREAM, 0);
    ck_assert_int_eq(weft_dgram_open(tu_loop, tcp, NULL, NULL, NULL, &s),
                     WEFT_EINVAL);
    int unx = socket(AF_UNIX, SOCK_DGRAM, 0);
    ck_assert_int_eq(weft_dgram_open(tu_loop, unx, NULL, NULL, NULL, &s),
                     WEFT_EINVAL);
    int udp = socket(AF_INET, SOCK_DGRAM, 0);
    weft_dgram_options v6 = {.family = 6};
    ck_assert_int_eq(weft_dgram_open(tu_loop, udp, &v6, NULL, NULL, &s),
                     WEFT_EINVAL);
    ck_assert_ptr_null(s);
    /* every one still open and as it was: blocking, inheritable */
    int all[] = {p[0], p[1], tcp, unx, udp};
    for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++) {
        ck_assert_int_ge(fcntl(all[i], F_GETFD), 0);
        ck_assert(!(fcntl(all[i], F_GETFL) & O_NONBLOCK));
        ck_assert(!(fcntl(all[i], F_GETFD) & FD_CLOEXEC));
        close(all[i]);
    }
}
END_TEST

START_TEST(unref_socket_does_not_keep_the_loop_alive)
{
    peer p;
    open_peer(&p, NULL);
    bound_port(&p, "127.0.0.1");
    weft_dgram_unref(p.sock);
    ck_assert_int_eq(weft_loop_run_mode(tu_loop, WEFT_RUN_DEFAULT), 0);
    ck_assert_str_eq(p.log.buf, "listening");
    weft_dgram_ref(p.sock);
    ck_assert(weft_loop_alive(tu_loop));
    finish(&p, NULL);
}
END_TEST

/* ---- GSO and GRO ----------------------------------------------------------- */

typedef struct segs {
    int messages;
    size_t sizes[64];
    bool ok;
} segs;

static void on_seg(weft_dgram *s, const char *data, size_t len,
                   const weft_dgram_rinfo *ri, void *ctx)
{
    (void)s;
    segs *g = ctx;
    if (g->messages < 64)
        g->sizes[g->messages] = len;
    /* every byte of a datagram is its index in the send */
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)data[i] != (unsigned char)(g->messages + 1))
            g->ok = false;
    ck_assert(!ri->truncated);
    ck_assert_int_eq(data[len], '\0');
    g->messages++;
}

static void segments_arrive_one_by_one(bool gro)
{
    weft_dgram_options o = {.gro = gro};
    segs g = {.ok = true};
    weft_dgram *rx, *tx;
    ck_assert_int_eq(weft_dgram_create_socket(tu_loop, &o, on_seg, &g, &rx),
                     0);
    ck_assert_int_eq(weft_dgram_create_socket(tu_loop, NULL, NULL, NULL, &tx),
                     0);
    ck_assert_int_eq(weft_dgram_bind(rx, 0, "127.0.0.1", NULL, NULL), 0);
    weft_address a;
    weft_dgram_address(rx, &a);
    static char buf[12500];
    for (size_t i = 0; i < sizeof(buf); i++)
        buf[i] = (char)(i / 1200 + 1); /* 10 x 1200, then 500 */
    ck_assert_int_eq(weft_dgram_send_segments(tx, buf, sizeof(buf), 1200,
                                              a.port, NULL), 1);
    ck_assert_int_eq(weft_dgram_send_segments(tx, buf, 70000, 1200, a.port,
                                              NULL), WEFT_EINVAL);
    ck_assert(spin_until(&g.messages, 11, 3000));
    weft_dgram_close(rx, NULL, NULL);
    weft_dgram_close(tx, NULL, NULL);
    tu_run(2000);
    ck_assert_int_eq(g.messages, 11);
    ck_assert(g.ok);
    for (int i = 0; i < 10; i++)
        ck_assert_int_eq(g.sizes[i], 1200);
    ck_assert_int_eq(g.sizes[10], 500);
}

START_TEST(send_segments_arrive_as_separate_datagrams_with_gro)
{
    segments_arrive_one_by_one(true);
}
END_TEST

START_TEST(send_segments_arrive_as_separate_datagrams_without_gro)
{
    segments_arrive_one_by_one(false);
}
END_TEST

/* ---- Node's dgram on the other side -------------------------------------- */

/* Node's output is read with the test's loop turning, so that the weft
 * socket it talks to can answer it meanwhile. */
static void spawn_node(tu_child *c, char *const argv[])
{
    tu_spawn_opts o = {.loop = tu_loop};
    tu_spawn(c, argv, &o);
}

START_TEST(weft_client_round_trips_with_node_dgram_echo_server)
{
    char *argv[] = {"node", NODE_DIR "/dgram_peer.js", "echo", NULL};
    tu_child c;
    spawn_node(&c, argv);
    char line[64];
    ck_assert_msg(tu_child_read_line(&c, line, sizeof(line), 10000),
                  "node printed '%s'", line);
    int port = atoi(line);
    ck_assert_int_gt(port, 0);
    peer cli;
    open_peer(&cli, NULL);
    ck_assert_int_eq(weft_dgram_connect(cli.sock, port, NULL, NULL, NULL), 0);
    weft_buf b[2] = {{"two ", 4}, {"pieces", 6}};
    ck_assert_int_eq(weft_dgram_sendv(cli.sock, b, 2, 0, NULL), 1);
    ck_assert(spin_until(&cli.messages, 1, 5000));
    ck_assert_int_eq(cli.last_len, 10);
    ck_assert(memcmp(cli.last, "two pieces", 10) == 0);
    ck_assert_int_eq(cli.last_ri.port, port);
    ck_assert_int_eq(weft_dgram_send(cli.sock, "bye", 3, 0, NULL), 1);
    ck_assert(spin_until(&cli.messages, 2, 5000));
    finish(&cli, NULL);
    int status = tu_child_reap(&c, 10000);
    ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}
END_TEST

START_TEST(node_dgram_client_round_trips_with_weft_echo_server)
{
    peer srv;
    open_peer(&srv, NULL);
    srv.echo = true;
    int port = bound_port(&srv, "127.0.0.1");
    char ps[16];
    snprintf(ps, sizeof(ps), "%d", port);
    char *argv[] = {"node", NODE_DIR "/dgram_peer.js", "client", ps, "200",
                    NULL};
    tu_child c;
    spawn_node(&c, argv);
    char line[64];
    ck_assert_msg(tu_child_read_line(&c, line, sizeof(line), 10000),
                  "node printed '%s'", line);
    ck_assert_str_eq(line, "ok 200");
    int status = tu_child_reap(&c, 10000);
    ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    ck_assert_int_ge(srv.messages, 200);
    finish(&srv, NULL);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("dgram");
    TCase *tc = tu_tcase("dgram");
    tcase_add_test(tc, udp4_round_trip_reports_sender_address_family_and_port);
    tcase_add_test(tc, udp6_round_trip_reports_sender_address_family_and_port);
    tcase_add_test(
        tc, dual_stack_udp6_hears_ipv4_peers_as_mapped_and_replies_to_them);
    tcase_add_test(tc, ipv6_only_leaves_the_ipv4_port_to_a_udp4_socket);
    tcase_add_test(tc,
                   an_address_literal_of_the_other_family_is_einval_as_in_node);
    tcase_add_test(tc,
                   connected_send_goes_to_the_peer_and_disconnect_forgets_it);
    tcase_add_test(tc, disconnect_keeps_the_port_the_kernel_chose);
    tcase_add_test(tc, disconnect_keeps_the_port_connect_bound_implicitly);
    tcase_add_test(tc, sendv_pieces_arrive_as_one_datagram);
    tcase_add_test(
        tc, datagram_longer_than_max_message_is_reported_truncated_with_size);
    tcase_add_test(tc,
                   multicast_on_loopback_join_receive_leave_no_longer_receive);
    tcase_add_test(tc,
                   source_specific_multicast_join_receives_from_that_source);
    tcase_add_test(tc, options_set_and_read_back);
    tcase_add_test(
        tc, unreachable_connected_peer_gives_econnrefused_and_stays_open);
    tcase_add_test(tc, unhandled_error_is_reported_and_closes_the_socket);
    tcase_add_test(tc, bad_arguments_are_refused);
    tcase_add_test(
        tc, kernel_refusal_queues_sends_counts_them_and_drains_in_order);
    tcase_add_test(tc, sends_during_a_name_lookup_wait_in_a_bounded_queue);
    tcase_add_test(tc, empty_datagrams_cannot_grow_the_queue_without_bound);
    tcase_add_test(tc, send_segments_the_queue_cannot_hold_whole_sends_none);
    tcase_add_test(tc, bind_to_a_name_looks_it_up_then_listens);
    tcase_add_test(tc,
                   send_to_a_host_name_looks_it_up_once_and_keeps_the_order);
    tcase_add_test(
        tc, send_to_a_name_that_does_not_resolve_reports_it_and_stays_open);
    tcase_add_test(tc, a_long_name_that_does_not_resolve_leaves_the_queue_too);
    tcase_add_test(tc, close_while_a_send_waits_for_its_name_drops_it_cleanly);
    tcase_add_test(tc, echo_inside_message_answers_every_datagram_of_a_batch);
    tcase_add_test(
        tc, batch_sent_while_connected_leaves_for_that_peer_after_disconnect);
    tcase_add_test(
        tc, queue_sent_while_connected_leaves_for_that_peer_after_disconnect);
    tcase_add_test(tc,
                   refused_batch_keeps_its_place_ahead_of_later_queued_sends);
    tcase_add_test(tc, close_inside_message_stops_delivery_and_closes_once);
    tcase_add_test(tc, batch_entries_dropped_for_want_of_queue_room_are_counted);
    tcase_add_test(
        tc, listeners_changed_inside_message_apply_from_the_next_datagram);
    tcase_add_test(tc, quiet_ping_pong_does_not_pay_an_empty_read_per_datagram);
    tcase_add_test(
        tc, datagrams_that_arrive_during_a_batch_are_read_in_the_same_turn);
    tcase_add_test(tc,
                   flood_while_slow_neither_grows_memory_nor_blocks_the_loop);
    tcase_add_test(tc, unref_socket_does_not_keep_the_loop_alive);
    tcase_add_test(tc, open_over_a_bound_socket_listens_and_answers);
    tcase_add_test(tc, open_over_a_connected_socket_sends_to_its_peer);
    tcase_add_test(tc, open_over_an_unbound_socket_binds_later);
    tcase_add_test(tc,
                   open_refuses_what_is_not_a_udp_socket_and_leaves_it_alone);
    tcase_add_test(tc, send_segments_arrive_as_separate_datagrams_with_gro);
    tcase_add_test(tc, send_segments_arrive_as_separate_datagrams_without_gro);
    tcase_add_test(tc, weft_client_round_trips_with_node_dgram_echo_server);
    tcase_add_test(tc, node_dgram_client_round_trips_with_weft_echo_server);
    suite_add_tcase(s, tc);
    return tu_run_suite(s);
}
