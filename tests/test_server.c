/*
 * test_server.c - net.Server as the seed describes it: createServer,
 * listen (port, host, path, fd), close, maxConnections, connections, the
 * 'connection' / 'listening' / 'close' / 'error' events, and bad input.
 */
#include "testutil.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- listeners that log ------------------------------------------------ */

static void srv_listening(weft_server *srv, void *ctx)
{
    (void)srv;
    tu_log(ctx ? ctx : "listening");
}

static void srv_close(weft_server *srv, void *ctx)
{
    (void)srv;
    (void)ctx;
    tu_log("server-close");
}

static void srv_error(weft_server *srv, int err, const char *msg, void *ctx)
{
    (void)srv;
    (void)ctx;
    tu_logf("server-error:%s", weft_err_name(err));
    ck_assert_ptr_nonnull(msg);
}

static void cli_close(weft_stream *s, bool had_error, void *ctx)
{
    (void)s;
    tu_logf("%s-close:%d", ctx ? (char *)ctx : "client", had_error);
}

/* ---- createServer + listen --------------------------------------------- */

typedef struct {
    weft_server *srv;
    int connections;
    int connects; /* server-side 'connect' events */
    weft_stream *last;
} srv_state;

static void count_connect(weft_stream *s, void *ctx)
{
    srv_state *st = ctx;
    (void)s;
    st->connects++;
    tu_log("server-stream-connect");
}

static void on_conn_close_server(weft_server *srv, weft_stream *s, void *ctx)
{
    srv_state *st = ctx;
    st->connections++;
    st->last = s;
    tu_log("connection");
    ck_assert_ptr_eq(weft_stream_server(s), srv);
    ck_assert_int_eq(weft_stream_ready_state(s), WEFT_OPEN);
    weft_stream_on_connect(s, count_connect, st);
    weft_server_close(srv);
    weft_stream_end(s, NULL, 0);
}

START_TEST(create_server_sets_connection_listener_and_connect_follows)
{
    srv_state st = {0};
    int port;
    st.srv = tu_server(on_conn_close_server, &st, &port);
    weft_server_on_close(st.srv, srv_close, NULL);
    weft_stream *c;
    ck_assert_int_eq(weft_create_connection(tu_loop, port, "127.0.0.1", &c),
                     0);
    weft_stream_on_close(c, cli_close, NULL);
    tu_run(5000);
    ck_assert_int_eq(st.connections, 1);
    ck_assert_int_eq(st.connects, 1);
    /* 'connect' on the server side comes right after 'connection'. */
    ck_assert_str_eq(tu_log_str(), "connection,server-stream-connect,"
                                   "client-close:0,server-close");
}
END_TEST

START_TEST(listen_callback_and_listening_event_are_asynchronous)
{
    weft_server *srv = weft_create_server(tu_loop, NULL, NULL);
    weft_server_on_listening(srv, srv_listening, "event");
    ck_assert_int_eq(weft_server_listen(srv, 0, "127.0.0.1", srv_listening,
                                        "callback"),
                     0);
    ck_assert_str_eq(tu_log_str(), "");
    weft_server_unref(srv);
    tu_run(2000);
    ck_assert_str_eq(tu_log_str(), "event,callback");
    ck_assert_int_eq(weft_server_close(srv), 0);
    tu_run(2000);
}
END_TEST

START_TEST(listen_without_host_binds_ipv4_any_and_port_zero_picks_one)
{
    weft_server *srv = weft_create_server(tu_loop, NULL, NULL);
    ck_assert_int_eq(weft_server_listen(srv, 0, NULL, NULL, NULL), 0);
    weft_address a;
    ck_assert_int_eq(weft_server_address(srv, &a), 0);
    ck_assert_int_eq(a.family, 4);
    ck_assert_str_eq(a.address, "0.0.0.0");
    ck_assert_int_gt(a.port, 0);
    weft_server_close(srv);
    tu_run(2000);
}
END_TEST

static void close_on_connect(weft_stream *s, void *ctx)
{
    (void)ctx;
    const char *ra = weft_stream_remote_address(s);
    tu_logf("connect:%s", ra ? ra : "null");
    weft_stream_destroy(s);
}

static void close_server_on_conn(weft_server *srv, weft_stream *s, void *ctx)
{
    (void)ctx;
    const char *ra = weft_stream_remote_address(s);
    tu_logf("remote:%s", ra ? ra : "null");
    ck_assert_int_gt(weft_stream_remote_port(s), 0);
    weft_server_close(srv);
}

static void listen_and_connect_v6(const char *listen_host)
{
    weft_server *srv = weft_create_server(tu_loop, close_server_on_conn, NULL);
    ck_assert_int_eq(weft_server_listen(srv, 0, listen_host, NULL, NULL), 0);
    weft_address a;
    ck_assert_int_eq(weft_server_address(srv, &a), 0);
    ck_assert_int_eq(a.family, 6);
    weft_stream *c;
    ck_assert_int_eq(weft_create_connection(tu_loop, a.port, "::1", &c), 0);
    weft_stream_on_connect(c, close_on_connect, NULL);
    tu_run(5000);
    ck_assert_str_eq(tu_log_str(), "remote:::1,connect:::1");
}

START_TEST(listen_on_ipv6_loopback)
{
    listen_and_connect_v6("::1");
}
END_TEST

START_TEST(listen_on_ipv6_any)
{
    listen_and_connect_v6("::");
}
END_TEST

static void check_address_and_close(weft_server *srv, void *ctx)
{
    (void)ctx;
    weft_address a;
    ck_assert_int_eq(weft_server_address(srv, &a), 0);
    tu_logf("listening:%s", a.address);
    weft_server_close(srv);
}

START_TEST(listen_on_a_name_resolves_it_first)
{
    weft_server *srv = weft_create_server(tu_loop, NULL, NULL);
    ck_assert_int_eq(weft_server_listen(srv, 0, "localhost",
                                        check_address_and_close, NULL),
                     0);
    weft_server_on_close(srv, srv_close, NULL);
    tu_run(5000);
    /* localhost is 127.0.0.1 in this machine's /etc/hosts */
    ck_assert_str_eq(tu_log_str(), "listening:127.0.0.1,server-close");
}
END_TEST

START_TEST(listen_on_a_port_in_use_is_eaddrinuse)
{
    int port;
    weft_server *a = tu_server(NULL, NULL, &port);
    weft_server *b = weft_create_server(tu_loop, NULL, NULL);
    weft_server_on_listening(b, srv_listening, NULL);
    ck_assert_int_eq(weft_server_listen(b, port, "127.0.0.1", srv_listening,
                                        NULL),
                     WEFT_EADDRINUSE);
    /* The failed listen scheduled nothing; close releases b quietly. */
    ck_assert_int_eq(weft_server_close(b), WEFT_ENOTRUNNING);
    weft_server_close(a);
    tu_run(2000);
    ck_assert_str_eq(tu_log_str(), "");
}
END_TEST

/* Two servers on one port with reusePort: both listen, the kernel
 * spreads the connections over them. */
#define RP_CLIENTS 64

static struct {
    weft_server *srv[2];
    int got[2];
    int closed;
} rp;

static void rp_conn(weft_server *srv, weft_stream *s, void *ctx)
{
    (void)s;
    rp.got[(intptr_t)ctx]++;
    (void)srv;
    weft_stream_end(s, NULL, 0);
}

static void rp_close(weft_stream *s, bool had_error, void *ctx)
{
    (void)s;
    (void)had_error;
    (void)ctx;
    if (++rp.closed == RP_CLIENTS) {
        weft_server_close(rp.srv[0]);
        weft_server_close(rp.srv[1]);
    }
}

START_TEST(reuse_port_lets_two_servers_share_a_port)
{
    memset(&rp, 0, sizeof(rp));
    for (int i = 0; i < 2; i++) {
        rp.srv[i] = weft_create_server(tu_loop, rp_conn, (void *)(intptr_t)i);
        weft_server_set_reuse_port(rp.srv[i], true);
    }
    ck_assert_int_eq(
        weft_server_listen(rp.srv[0], 0, "127.0.0.1", NULL, NULL), 0);
    weft_address a;
    ck_assert_int_eq(weft_server_address(rp.srv[0], &a), 0);
    ck_assert_int_eq(
        weft_server_listen(rp.srv[1], a.port, "127.0.0.1", NULL, NULL), 0);
    /* A third server without the option is refused, as without any. */
    weft_server *plain = weft_create_server(tu_loop, NULL, NULL);
    ck_assert_int_eq(weft_server_listen(plain, a.port, "127.0.0.1", NULL,
                                        NULL),
                     WEFT_EADDRINUSE);
    weft_server_close(plain);
    for (int i = 0; i < RP_CLIENTS; i++) {
        weft_stream *c;
        ck_assert_int_eq(
            weft_create_connection(tu_loop, a.port, "127.0.0.1", &c), 0);
        weft_stream_on_close(c, rp_close, NULL);
    }
    tu_run(5000);
    ck_assert_int_eq(rp.got[0] + rp.got[1], RP_CLIENTS);
    /* Spread by the kernel's hash: both get some (all 64 on one side has
     * a chance of 2^-63). */
    ck_assert_int_gt(rp.got[0], 0);
    ck_assert_int_gt(rp.got[1], 0);
}
END_TEST

START_TEST(listen_on_a_name_reports_eaddrinuse_as_error_event)
{
    int port;
    weft_server *a = tu_server(NULL, NULL, &port);
    weft_server *b = weft_create_server(tu_loop, NULL, NULL);
    weft_server_on_error(b, srv_error, NULL);
    weft_server_on_listening(b, srv_listening, NULL);
    /* localhost is 127.0.0.1 on this machine's /etc/hosts. */
    ck_assert_int_eq(weft_server_listen(b, port, "localhost", NULL, NULL), 0);
    weft_server_unref(a);
    tu_run(5000);
    ck_assert_str_eq(tu_log_str(), "server-error:EADDRINUSE");
    weft_server_close(a);
    ck_assert_int_eq(weft_server_close(b), WEFT_ENOTRUNNING);
    tu_run(2000);
}
END_TEST

START_TEST(listen_on_a_privileged_port_without_privilege_is_eacces)
{
    if (geteuid() == 0)
        ck_assert_int_eq(setuid(65534), 0); /* this forked test only */
    weft_server *srv = weft_create_server(tu_loop, NULL, NULL);
    ck_assert_int_eq(weft_server_listen(srv, 80, "127.0.0.1", NULL, NULL),
                     WEFT_EACCES);
    weft_server_close(srv);
}
END_TEST

START_TEST(listen_rejects_bad_arguments)
{
    weft_server *srv = weft_create_server(tu_loop, NULL, NULL);
    ck_assert_int_eq(weft_server_listen(NULL, 0, NULL, NULL, NULL),
                     WEFT_EINVAL);
    ck_assert_int_eq(weft_server_listen(srv, 70000, NULL, NULL, NULL),
                     WEFT_EINVAL);
    ck_assert_int_eq(weft_server_listen(srv, -1, NULL, NULL, NULL),
                     WEFT_EINVAL);
    ck_assert_int_eq(weft_server_listen_path(srv, NULL, NULL, NULL),
                     WEFT_EINVAL);
    ck_assert_int_eq(weft_server_listen_path(srv, "", NULL, NULL),
                     WEFT_EINVAL);
    char longpath[200];
    memset(longpath, 'a', sizeof(longpath) - 1);
    longpath[0] = '/';
    longpath[sizeof(longpath) - 1] = '\0';
    ck_assert_int_eq(weft_server_listen_path(srv, longpath, NULL, NULL),
                     WEFT_ENAMETOOLONG);
    ck_assert_int_eq(weft_server_listen_fd(srv, -1, NULL, NULL), WEFT_EINVAL);
    ck_assert_int_eq(weft_server_listen_fd(srv, 0, NULL, NULL),
                     WEFT_ENOTSOCK);
    ck_assert_int_eq(weft_server_set_max_connections(NULL, 1), WEFT_EINVAL);
    ck_assert_int_eq(weft_server_set_max_connections(srv, -2), WEFT_EINVAL);
    ck_assert_int_eq(weft_server_close(NULL), WEFT_EINVAL);
    weft_address a;
    ck_assert_int_eq(weft_server_address(srv, &a), WEFT_ENOTRUNNING);
    ck_assert_int_eq(weft_server_address(NULL, &a), WEFT_EINVAL);
    ck_assert_int_eq(weft_server_on_connection(NULL, NULL, NULL), WEFT_EINVAL);
    ck_assert_int_eq(weft_server_on_connection(srv, NULL, NULL), WEFT_EINVAL);
    /* Listening twice is refused; the first listen stands. */
    ck_assert_int_eq(weft_server_listen(srv, 0, "127.0.0.1", NULL, NULL), 0);
    ck_assert_int_eq(weft_server_listen(srv, 0, "127.0.0.1", NULL, NULL),
                     WEFT_EINVAL);
    weft_server_close(srv);
    tu_run(2000);
}
END_TEST

/* ---- listen(path) and listenFD ---------------------------------------- */

static void end_on_conn(weft_server *srv, weft_stream *s, void *ctx)
{
    (void)ctx;
    tu_log("connection");
    ck_assert_ptr_null(weft_stream_remote_address(s));
    weft_stream_end_string(s, "bye", NULL);
    weft_server_close(srv);
}

static void log_data(weft_stream *s, const char *data, size_t len, void *ctx)
{
    (void)s;
    (void)ctx;
    tu_logf("data:%.*s", (int)len, data);
}

START_TEST(listen_on_a_path_serves_unix_connections_and_unlinks_at_close)
{
    const char *path = tu_sock_path("listen");
    weft_server *srv = weft_create_server(tu_loop, end_on_conn, NULL);
    weft_server_on_close(srv, srv_close, NULL);
    ck_assert_int_eq(weft_server_listen_path(srv, path, srv_listening, NULL),
                     0);
    struct stat st;
    ck_assert_int_eq(stat(path, &st), 0);
    ck_assert(S_ISSOCK(st.st_mode));
    weft_address a;
    ck_assert_int_eq(weft_server_address(srv, &a), 0);
    ck_assert_int_eq(a.family, 0);
    ck_assert_str_eq(a.address, path);
    /* A second server on the same path is refused. */
    weft_server *b = weft_create_server(tu_loop, NULL, NULL);
    ck_assert_int_eq(weft_server_listen_path(b, path, NULL, NULL),
                     WEFT_EADDRINUSE);
    weft_server_close(b);

    weft_stream *c;
    ck_assert_int_eq(weft_create_connection_path(tu_loop, path, &c), 0);
    weft_stream_on_data(c, log_data, NULL);
    weft_stream_on_close(c, cli_close, NULL);
    tu_run(5000);
    ck_assert_str_eq(tu_log_str(),
                     "listening,connection,data:bye,client-close:0,"
                     "server-close");
    ck_assert_int_eq(stat(path, &st), -1);
}
END_TEST

static void end_on_tcp_conn(weft_server *srv, weft_stream *s, void *ctx)
{
    (void)ctx;
    tu_log("connection");
    ck_assert_str_eq(weft_stream_remote_address(s), "127.0.0.1");
    weft_stream_end_string(s, "bye", NULL);
    weft_server_close(srv);
}

START_TEST(listen_fd_accepts_on_a_socket_bound_by_the_caller)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sin = {.sin_family = AF_INET};
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ck_assert_int_eq(bind(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
    /* Not listening yet: refused, and the fd stays the caller's. */
    weft_server *srv = weft_create_server(tu_loop, end_on_tcp_conn, NULL);
    ck_assert_int_eq(weft_server_listen_fd(srv, fd, NULL, NULL), WEFT_EINVAL);
    ck_assert_int_eq(listen(fd, 8), 0);
    socklen_t len = sizeof(sin);
    getsockname(fd, (struct sockaddr *)&sin, &len);
    ck_assert_int_eq(weft_server_listen_fd(srv, fd, srv_listening, NULL), 0);
    weft_stream *c;
    ck_assert_int_eq(
        weft_create_connection(tu_loop, ntohs(sin.sin_port), "127.0.0.1", &c),
        0);
    weft_stream_on_data(c, log_data, NULL);
    tu_run(5000);
    ck_assert_str_eq(tu_log_str(), "listening,connection,data:bye");
    /* The server owned and closed the fd (teardown checks fd counts). */
}
END_TEST

/* ---- close ------------------------------------------------------------ */

typedef struct {
    weft_server *srv;
    weft_stream *server_side;
    int port;
} close_state;

static void keep_conn(weft_server *srv, weft_stream *s, void *ctx)
{
    close_state *st = ctx;
    (void)srv;
    st->server_side = s;
    tu_log("connection");
    weft_stream_on_close(s, cli_close, "server-stream");
}

static void late_refused(weft_stream *s, int err, const char *msg, void *ctx)
{
    (void)s;
    (void)ctx;
    (void)msg;
    tu_logf("late:%s", weft_err_name(err));
}

static void end_later(weft_timer *t, void *ctx)
{
    close_state *st = ctx;
    (void)t;
    tu_logf("connections:%u", weft_server_connections(st->srv));
    weft_stream_end(st->server_side, NULL, 0);
}

static void close_with_open_connection(weft_stream *c, void *ctx)
{
    close_state *st = ctx;
    (void)c;
    tu_log("client-connect");
    ck_assert_int_eq(weft_server_close(st->srv), 0);
    /* Closing twice is refused; 'close' still comes once. */
    ck_assert_int_eq(weft_server_close(st->srv), WEFT_ENOTRUNNING);
    weft_stream *late;
    ck_assert_int_eq(
        weft_create_connection(tu_loop, st->port, "127.0.0.1", &late), 0);
    weft_stream_on_error(late, late_refused, NULL);
    weft_set_timeout(tu_loop, 50, end_later, st);
}

START_TEST(close_stops_accepting_and_waits_for_open_connections)
{
    close_state st = {0};
    st.srv = tu_server(keep_conn, &st, &st.port);
    weft_server_on_close(st.srv, srv_close, NULL);
    weft_stream *c;
    ck_assert_int_eq(weft_create_connection(tu_loop, st.port, "127.0.0.1", &c),
                     0);
    weft_stream_on_connect(c, close_with_open_connection, &st);
    weft_stream_on_close(c, cli_close, NULL);
    tu_run(5000);
    const char *log = tu_log_str();
    /* The late connection is refused; 'close' waits for the last stream. */
    ck_assert_msg(strstr(log, "late:ECONNREFUSED") != NULL, "%s", log);
    ck_assert_msg(strstr(log, "connections:1") != NULL, "%s", log);
    const char *sc = strstr(log, "server-stream-close:0");
    const char *svc = strstr(log, "server-close");
    ck_assert_msg(sc != NULL && svc != NULL && sc < svc, "%s", log);
    ck_assert_str_eq(svc, "server-close");
}
END_TEST

START_TEST(close_on_a_server_not_listening_is_an_error_without_event)
{
    weft_server *srv = weft_create_server(tu_loop, NULL, NULL);
    weft_server_on_close(srv, srv_close, NULL);
    ck_assert_int_eq(weft_server_close(srv), WEFT_ENOTRUNNING);
    tu_run(2000);
    ck_assert_str_eq(tu_log_str(), "");
}
END_TEST

/* ---- maxConnections and connections ----------------------------------- */

typedef struct {
    weft_server *srv;
    int accepted;
    int closed_clients;
    weft_stream *held[4];
} max_state;

static void hold_conn(weft_server *srv, weft_stream *s, void *ctx)
{
    max_state *st = ctx;
    st->held[st->accepted++] = s;
    ck_assert_uint_eq(weft_server_connections(srv), (unsigned)st->accepted);
}

static void max_client_close(weft_stream *s, bool had_error, void *ctx)
{
    max_state *st = ctx;
    (void)s;
    (void)had_error;
    if (++st->closed_clients == 1) {
        /* The over-limit client was dropped: one connection is live. */
        ck_assert_int_eq(st->accepted, 1);
        ck_assert_uint_eq(weft_server_connections(st->srv), 1);
        weft_stream_destroy(st->held[0]);
        weft_server_close(st->srv);
    }
}

static void max_client_data(weft_stream *s, const char *d, size_t n, void *c)
{
    (void)s;
    (void)d;
    (void)n;
    (void)c;
    ck_abort_msg("a dropped connection got data");
}

static void connect_second(weft_stream *first, void *ctx)
{
    max_state *st = ctx;
    (void)first;
    weft_address a;
    weft_server_address(st->srv, &a);
    weft_stream *c;
    ck_assert_int_eq(weft_create_connection(tu_loop, a.port, "127.0.0.1", &c),
                     0);
    weft_stream_on_close(c, max_client_close, st);
    weft_stream_on_data(c, max_client_data, NULL);
}

START_TEST(max_connections_drops_connections_over_the_limit)
{
    max_state st = {0};
    int port;
    st.srv = tu_server(hold_conn, &st, &port);
    ck_assert_int_eq(weft_server_max_connections(st.srv), -1);
    ck_assert_int_eq(weft_server_set_max_connections(st.srv, 1), 0);
    ck_assert_int_eq(weft_server_max_connections(st.srv), 1);
    weft_stream *c;
    ck_assert_int_eq(weft_create_connection(tu_loop, port, "127.0.0.1", &c),
                     0);
    weft_stream_on_connect(c, connect_second, &st);
    tu_run(5000);
    ck_assert_int_eq(st.accepted, 1);
    ck_assert_int_ge(st.closed_clients, 1);
}
END_TEST

typedef struct {
    weft_server *srv;
    int n;
    weft_stream *streams[3];
} count_state;

static void count_conn(weft_server *srv, weft_stream *s, void *ctx)
{
    count_state *st = ctx;
    st->streams[st->n++] = s;
    ck_assert_uint_eq(weft_server_connections(srv), (unsigned)st->n);
    if (st->n == 3) {
        for (int i = 0; i < 3; i++)
            weft_stream_destroy(st->streams[i]);
        /* Destroyed streams count until their 'close' is delivered. */
        ck_assert_uint_eq(weft_server_connections(srv), 3);
        weft_server_close(srv);
    }
}

START_TEST(connections_counts_live_streams)
{
    count_state st = {0};
    int port;
    st.srv = tu_server(count_conn, &st, &port);
    for (int i = 0; i < 3; i++) {
        weft_stream *c;
        ck_assert_int_eq(
            weft_create_connection(tu_loop, port, "127.0.0.1", &c), 0);
    }
    tu_run(5000);
    ck_assert_int_eq(st.n, 3);
}
END_TEST

/* ---- events: many listeners, once, off ------------------------------- */

static void conn_a(weft_server *srv, weft_stream *s, void *ctx)
{
    (void)srv;
    (void)ctx;
    tu_log("a");
    weft_stream_destroy(s);
}

static void conn_b(weft_server *srv, weft_stream *s, void *ctx)
{
    (void)srv;
    (void)s;
    (void)ctx;
    tu_log("b");
}

static void conn_once(weft_server *srv, weft_stream *s, void *ctx)
{
    (void)srv;
    (void)s;
    (void)ctx;
    tu_log("once");
}

static int closes;

static void count_client_close(weft_stream *s, bool e, void *ctx)
{
    weft_server *srv = ctx;
    (void)s;
    (void)e;
    if (++closes == 2)
        weft_server_close(srv);
}

START_TEST(connection_listeners_run_in_order_once_and_off)
{
    int port;
    weft_server *srv = tu_server(conn_a, NULL, &port);
    weft_server_once_connection(srv, conn_once, NULL);
    weft_server_on_connection(srv, conn_b, NULL);
    weft_server_on_connection(srv, conn_b, "other-ctx");
    ck_assert_int_eq(weft_server_off_connection(srv, conn_b, "other-ctx"), 0);
    ck_assert_int_eq(weft_server_off_connection(srv, conn_b, "none"),
                     WEFT_ENOENT);
    closes = 0;
    for (int i = 0; i < 2; i++) {
        weft_stream *c;
        ck_assert_int_eq(
            weft_create_connection(tu_loop, port, "127.0.0.1", &c), 0);
        weft_stream_on_close(c, count_client_close, srv);
    }
    tu_run(5000);
    ck_assert_str_eq(tu_log_str(), "a,once,b,a,b");
}
END_TEST

START_TEST(unrefd_listening_server_does_not_keep_loop_alive)
{
    int port;
    weft_server *srv = tu_server(NULL, NULL, &port);
    weft_server_unref(srv);
    ck_assert(!weft_loop_alive(tu_loop) ||
              weft_loop_run(tu_loop) == 0); /* only 'listening' pending */
    ck_assert_int_eq(weft_loop_run(tu_loop), 0);
    ck_assert(!weft_loop_alive(tu_loop));
    weft_server_ref(srv);
    ck_assert(weft_loop_alive(tu_loop));
    weft_server_close(srv);
    tu_run(2000);
}
END_TEST

START_TEST(set_data_round_trips)
{
    weft_server *srv = weft_create_server(tu_loop, NULL, NULL);
    int x;
    weft_server_set_data(srv, &x);
    ck_assert_ptr_eq(weft_server_data(srv), &x);
    ck_assert_ptr_eq(weft_server_loop(srv), tu_loop);
    weft_server_close(srv);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("server");
    TCase *tc = tu_tcase("server");
    tcase_add_test(tc,
                   create_server_sets_connection_listener_and_connect_follows);
    tcase_add_test(tc, listen_callback_and_listening_event_are_asynchronous);
    tcase_add_test(tc,
                   listen_without_host_binds_ipv4_any_and_port_zero_picks_one);
    tcase_add_test(tc, listen_on_ipv6_loopback);
    tcase_add_test(tc, listen_on_ipv6_any);
    tcase_add_test(tc, listen_on_a_name_resolves_it_first);
    tcase_add_test(tc, listen_on_a_port_in_use_is_eaddrinuse);
    tcase_add_test(tc, reuse_port_lets_two_servers_share_a_port);
    tcase_add_test(tc, listen_on_a_name_reports_eaddrinuse_as_error_event);
    tcase_add_test(tc, listen_on_a_privileged_port_without_privilege_is_eacces);
    tcase_add_test(tc, listen_rejects_bad_arguments);
    tcase_add_test(
        tc, listen_on_a_path_serves_unix_connections_and_unlinks_at_close);
    tcase_add_test(tc, listen_fd_accepts_on_a_socket_bound_by_the_caller);
    tcase_add_test(tc, close_stops_accepting_and_waits_for_open_connections);
    tcase_add_test(tc,
                   close_on_a_server_not_listening_is_an_error_without_event);
    tcase_add_test(tc, max_connections_drops_connections_over_the_limit);
    tcase_add_test(tc, connections_counts_live_streams);
    tcase_add_test(tc, connection_listeners_run_in_order_once_and_off);
    tcase_add_test(tc, unrefd_listening_server_does_not_keep_loop_alive);
    tcase_add_test(tc, set_data_round_trips);
    suite_add_tcase(s, tc);
    return tu_run_suite(s);
}
