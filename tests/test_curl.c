/*
 * test_curl.c - libcurl driven by weft: its multi-socket interface on
 * weft's fd watchers and timers (examples/curl_glue.c), fetching from a
 * weft HTTP server on the same loop. The proof that a library written
 * for an event loop fits this one.
 */
#include "testutil.h"

#include "curl_glue.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* ---- a small HTTP/1.1 server: GET /N answers body N ------------------ */

/* Bodies from empty to a few hundred KiB: some fit one read, most take
 * many, and the largest meet backpressure on both sides. */
static size_t body_size(int n)
{
    if (n % 10 == 0)
        return (size_t)n; /* 0, 10, 20 ... bytes */
    return (size_t)(tu_mix((uint64_t)n) % (384 * 1024));
}

/* Every third response closes its connection; the rest keep it alive. */
static bool closes_after(int n)
{
    return n % 3 == 0;
}

typedef struct http_stats {
    int connections, requests;
} http_stats;

typedef struct http_conn {
    http_stats *stats;
    bool closing;
    size_t len;
    char buf[4096 + 1];
} http_conn;

static void respond(weft_stream *s, http_conn *c, int n)
{
    size_t len = body_size(n);
    char head[160];
    int h = snprintf(head, sizeof(head),
                     "HTTP/1.1 200 OK\r\nContent-Length: %zu\r\n%s\r\n", len,
                     closes_after(n) ? "Connection: close\r\n" : "");
    char *msg = malloc((size_t)h + len + 1);
    ck_assert_ptr_nonnull(msg);
    memcpy(msg, head, (size_t)h);
    tu_pattern(msg + h, 0, len, (uint64_t)n);
    /* Not pausing on 0: one response queued at most, and curl sends no
     * second request on a connection before reading the first answer. */
    ck_assert_int_ge(weft_stream_write(s, msg, (size_t)h + len), 0);
    free(msg);
    c->stats->requests++;
    if (closes_after(n)) {
        c->closing = true;
        weft_stream_end(s, NULL, 0);
    }
}

static void http_data(weft_stream *s, const char *data, size_t len, void *ctx)
{
    http_conn *c = ctx;
    if (c->closing)
        return;
    ck_assert_uint_le(c->len + len, sizeof(c->buf) - 1);
    memcpy(c->buf + c->len, data, len);
    c->len += len;
    c->buf[c->len] = '\0';
    char *end;
    while (!c->closing && (end = strstr(c->buf, "\r\n\r\n")) != NULL) {
        int n = -1;
        ck_assert_int_eq(sscanf(c->buf, "GET /%d HTTP/1.1", &n), 1);
        respond(s, c, n);
        size_t used = (size_t)(end + 4 - c->buf);
        memmove(c->buf, c->buf + used, c->len - used + 1);
        c->len -= used;
    }
}

static void http_close(weft_stream *s, bool had_error, void *ctx)
{
    (void)s;
    (void)had_error;
    free(ctx);
}

static void http_connection(weft_server *srv, weft_stream *s, void *ctx)
{
    (void)srv;
    http_conn *c = calloc(1, sizeof(*c));
    ck_assert_ptr_nonnull(c);
    c->stats = ctx;
    c->stats->connections++;
    weft_stream_on_data(s, http_data, c);
    weft_stream_on_close(s, http_close, c);
}

/* ---- the client side ------------------------------------------------- */

typedef struct job {
    int n;
    char *body;
    size_t len, cap;
    CURLcode result;
    long status;
    bool done;
} job;

typedef struct fetch {
    curl_glue *glue;
    weft_server *server;
    job *jobs;
    int total, finished;
} fetch;

static size_t on_body(char *data, size_t size, size_t n, void *ctx)
{
    job *j = ctx;
    size_t len = size * n;
    if (j->len + len > j->cap) {
        size_t cap = j->cap ? j->cap : 4096;
        while (cap < j->len + len)
            cap *= 2;
        char *b = realloc(j->body, cap);
        if (b == NULL)
            return 0; /* curl fails the transfer: CURLE_WRITE_ERROR */
        j->body = b;
        j->cap = cap;
    }
    memcpy(j->body + j->len, data, len);
    j->len += len;
    return len;
}

/* Outside curl's callbacks and the glue's: the end of the program. */
static void finish_all(weft_immediate *im, void *ctx)
{
    (void)im;
    fetch *f = ctx;
    curl_glue_free(f->glue); /* closes the kept-alive connections */
    f->glue = NULL;
    if (f->server != NULL)
        weft_server_close(f->server);
}

static void on_done(curl_glue *g, CURL *easy, CURLcode result, void *ctx)
{
    (void)g;
    fetch *f = ctx;
    job *j = NULL;
    curl_easy_getinfo(easy, CURLINFO_PRIVATE, (char **)&j);
    ck_assert_ptr_nonnull(j);
    ck_assert(!j->done);
    j->done = true;
    j->result = result;
    curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &j->status);
    curl_easy_cleanup(easy);
    if (++f->finished == f->total)
        ck_assert_ptr_nonnull(weft_set_immediate(tu_loop, finish_all, f));
}

static void add_fetch(fetch *f, job *j, int port)
{
    char url[64];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/%d", port, j->n);
    CURL *easy = curl_easy_init();
    ck_assert_ptr_nonnull(easy);
    curl_easy_setopt(easy, CURLOPT_URL, url); /* curl copies it */
    curl_easy_setopt(easy, CURLOPT_PRIVATE, j);
    curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(easy, CURLOPT_WRITEDATA, j);
    curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(easy, CURLOPT_TIMEOUT, 20L);
    ck_assert_int_eq(curl_glue_add(f->glue, easy), CURLM_OK);
}

static void free_jobs(fetch *f)
{
    for (int i = 0; i < f->total; i++)
        free(f->jobs[i].body);
    free(f->jobs);
}

#define PARALLEL 50

START_TEST(fifty_parallel_fetches_arrive_byte_exact)
{
    http_stats stats = {0};
    int port;
    fetch f = {.total = PARALLEL};
    f.server = tu_server(http_connection, &stats, &port);
    f.glue = curl_glue_new(tu_loop, on_done, &f);
    ck_assert_ptr_nonnull(f.glue);
    /* Fewer connections than transfers: curl queues the rest and reuses
     * kept-alive connections, so the same fd comes back to the watcher
     * after curl said REMOVE. */
    curl_multi_setopt(curl_glue_multi(f.glue), CURLMOPT_MAX_HOST_CONNECTIONS,
                      8L);
    f.jobs = calloc(PARALLEL, sizeof(*f.jobs));
    ck_assert_ptr_nonnull(f.jobs);
    for (int i = 0; i < PARALLEL; i++) {
        f.jobs[i].n = i;
        add_fetch(&f, &f.jobs[i], port);
    }
    tu_run(30000);
    ck_assert_ptr_null(f.glue);
    ck_assert_int_eq(f.finished, PARALLEL);
    for (int i = 0; i < PARALLEL; i++) {
        job *j = &f.jobs[i];
        ck_assert_msg(j->result == CURLE_OK, "GET /%d: %s", i,
                      curl_easy_strerror(j->result));
        ck_assert_int_eq(j->status, 200);
        ck_assert_uint_eq(j->len, body_size(i));
        ck_assert_uint_eq(tu_pattern_diff(j->body, 0, j->len, (uint64_t)i),
                          j->len);
    }
    ck_assert_int_eq(stats.requests, PARALLEL);
    /* Kept-alive connections were reused. */
    ck_assert_int_lt(stats.connections, PARALLEL);
    free_jobs(&f);
}
END_TEST

/* A port nothing listens on (just released; loopback only). */
static int dead_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sin = {.sin_family = AF_INET};
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof(sin);
    ck_assert_int_eq(bind(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
    ck_assert_int_eq(getsockname(fd, (struct sockaddr *)&sin, &len), 0);
    close(fd);
    return ntohs(sin.sin_port);
}

START_TEST(refused_connection_is_reported_as_curl_error)
{
    fetch f = {.total = 2};
    f.glue = curl_glue_new(tu_loop, on_done, &f);
    f.jobs = calloc(2, sizeof(*f.jobs));
    ck_assert_ptr_nonnull(f.jobs);
    int port = dead_port();
    for (int i = 0; i < 2; i++)
        add_fetch(&f, &f.jobs[i], port);
    tu_run(10000);
    for (int i = 0; i < 2; i++)
        ck_assert_int_eq(f.jobs[i].result, CURLE_COULDNT_CONNECT);
    free_jobs(&f);
}
END_TEST

/* A server that accepts and never answers. */
static void silent_connection(weft_server *srv, weft_stream *s, void *ctx)
{
    (void)srv;
    (void)s;
    int *n = ctx;
    ++*n;
}

static void free_glue_now(weft_timer *t, void *ctx)
{
    (void)t;
    fetch *f = ctx;
    curl_glue_free(f->glue); /* aborts each: on_done, then finish_all */
    f->glue = NULL;
}

START_TEST(free_with_transfers_in_flight_aborts_each_and_closes_sockets)
{
    int accepted = 0, port;
    fetch f = {.total = 5};
    f.server = tu_server(silent_connection, &accepted, &port);
    f.glue = curl_glue_new(tu_loop, on_done, &f);
    f.jobs = calloc(5, sizeof(*f.jobs));
    ck_assert_ptr_nonnull(f.jobs);
    for (int i = 0; i < 5; i++)
        add_fetch(&f, &f.jobs[i], port);
    weft_set_timeout(tu_loop, 100, free_glue_now, &f);
    tu_run(10000);
    ck_assert_int_eq(accepted, 5);
    for (int i = 0; i < 5; i++)
        ck_assert_int_eq(f.jobs[i].result, CURLE_ABORTED_BY_CALLBACK);
    free_jobs(&f);
}
END_TEST

int main(void)
{
    /* Once per program, before any test forks (curl's rule). */
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
        return 1;
    Suite *s = suite_create("curl");
    TCase *tc = tu_tcase("curl");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, fifty_parallel_fetches_arrive_byte_exact);
    tcase_add_test(tc, refused_connection_is_reported_as_curl_error);
    tcase_add_test(
        tc, free_with_transfers_in_flight_aborts_each_and_closes_sockets);
    suite_add_tcase(s, tc);
    int rc = tu_run_suite(s);
    curl_global_cleanup();
    return rc;
}
