/*
 * test_lookup.c - weft_dns_lookup(), Node's dns.lookup(host, {all: true,
 * family}): the answer is exactly getaddrinfo's (SOCK_STREAM hints), in
 * its order, for each family; an IP literal answers itself on a later
 * turn; a bad name is ENOTFOUND; a cancelled lookup never calls back and
 * leaks nothing, wherever its request is; bad arguments call nothing.
 *
 * No test depends on a DNS server (this sandbox has none): "localhost"
 * comes from /etc/hosts, and the expected answers are asked of
 * getaddrinfo itself rather than written down. The bad name is under
 * ".invalid" (RFC 6761), which fails in about a millisecond here.
 */
#include "testutil.h"
#include "internal.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#define BAD_NAME "nonexistent.invalid"

/* ---- what getaddrinfo says, in weft's terms ---------------------------- */

typedef struct answer {
    int err;
    size_t n;
    weft_address a[32];
} answer;

static int gai_err(int rc)
{
    switch (rc) {
    case 0:
        return 0;
    case EAI_AGAIN:
        return WEFT_EAI_AGAIN;
    case EAI_MEMORY:
        return WEFT_ENOMEM;
    default:
        return WEFT_ENOTFOUND;
    }
}

static void expected(const char *host, int family, answer *out)
{
    memset(out, 0, sizeof(*out));
    struct addrinfo hints = {0}, *res = NULL;
    hints.ai_family = family == 4   ? AF_INET
                      : family == 6 ? AF_INET6
                                    : AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    out->err = gai_err(getaddrinfo(host, NULL, &hints, &res));
    if (out->err != 0)
        return;
    for (struct addrinfo *ai = res; ai != NULL && out->n < 32;
         ai = ai->ai_next) {
        weft_address *a = &out->a[out->n++];
        a->family = ai->ai_family == AF_INET ? 4 : 6;
        const void *p =
            ai->ai_family == AF_INET
                ? (const void *)&((struct sockaddr_in *)ai->ai_addr)->sin_addr
                : (const void *)&((struct sockaddr_in6 *)ai->ai_addr)
                      ->sin6_addr;
        inet_ntop(ai->ai_family, p, a->address, sizeof(a->address));
    }
    freeaddrinfo(res);
}

/* ---- a lookup that records its answer ----------------------------------- */

typedef struct got {
    answer ans;
    int calls;
    weft_dns_req *req;
    struct got *cancel; /* cancelled from this one's callback */
    char name[16];
} got;

static void got_cb(weft_dns_req *req, int err, const weft_address *addrs,
                   size_t n, void *ctx)
{
    got *g = ctx;
    ck_assert_ptr_eq(req, g->req);
    g->calls++;
    g->ans.err = err;
    g->ans.n = n;
    ck_assert_uint_le(n, 32);
    if (n > 0)
        ck_assert_ptr_nonnull(addrs);
    else
        ck_assert_int_ne(err, 0);
    for (size_t i = 0; i < n; i++)
        g->ans.a[i] = addrs[i];
    tu_log(g->name[0] ? g->name : "lookup");
    if (g->cancel != NULL && g->cancel->calls == 0)
        weft_dns_cancel(g->cancel->req);
    /* Cancelling oneself inside one's own callback is harmless. */
    weft_dns_cancel(req);
}

static void lookup(const char *host, int family, got *g)
{
    ck_assert_int_eq(weft_dns_lookup(tu_loop, host, family, got_cb, g, &g->req),
                     0);
    ck_assert_int_eq(g->calls, 0); /* never inside the call */
}

static void assert_same(const answer *want, const answer *have)
{
    ck_assert_int_eq(have->err, want->err);
    ck_assert_uint_eq(have->n, want->n);
    for (size_t i = 0; i < want->n; i++) {
        ck_assert_int_eq(have->a[i].family, want->a[i].family);
        ck_assert_int_eq(have->a[i].port, 0);
        ck_assert_str_eq(have->a[i].address, want->a[i].address);
    }
}

static void check_against_getaddrinfo(const char *host, int family)
{
    answer want;
    expected(host, family, &want);
    got g = {0};
    lookup(host, family, &g);
    tu_run(10000);
    ck_assert_int_eq(g.calls, 1);
    assert_same(&want, &g.ans);
    printf("lookup %s family %d: %s, %zu address(es)%s%s\n", host, family,
           g.ans.err ? weft_err_name(g.ans.err) : "ok", g.ans.n,
           g.ans.n ? ", first " : "", g.ans.n ? g.ans.a[0].address : "");
}

static void mark(weft_timer *t, void *ctx)
{
    (void)t;
    (void)ctx;
    tu_log("timer");
}

/* ---- tests -------------------------------------------------------------- */

START_TEST(localhost_gives_what_getaddrinfo_gives_in_its_order)
{
    check_against_getaddrinfo("localhost", 0);
}
END_TEST

START_TEST(family_4_and_6_filter_as_getaddrinfo_does)
{
    /* Family 6 may be ENOTFOUND (no ::1 for localhost in /etc/hosts). */
    check_against_getaddrinfo("localhost", 4);
    check_against_getaddrinfo("localhost", 6);
}
END_TEST

START_TEST(ip_literal_answers_itself_on_a_later_turn)
{
    got v4 = {.name = "v4"}, v6 = {.name = "v6"}, other = {.name = "other"},
        zone = {.name = "zone"};
    lookup("127.0.0.1", 0, &v4);
    lookup("::1", 6, &v6);
    /* As Node: a literal is its own answer, whatever family asked for. */
    lookup("127.0.0.1", 6, &other);
    /* Returned as written, zone kept, so it can be connected to. */
    lookup("fe80::1%1", 0, &zone);
    /* A 0 ms timer set after the lookups still comes first. */
    weft_set_timeout(tu_loop, 0, mark, NULL);
    tu_run(5000);
    ck_assert_str_eq(tu_log_str(), "timer,v4,v6,other,zone");
    ck_assert_int_eq(v4.ans.err, 0);
    ck_assert_uint_eq(v4.ans.n, 1);
    ck_assert_int_eq(v4.ans.a[0].family, 4);
    ck_assert_int_eq(v4.ans.a[0].port, 0);
    ck_assert_str_eq(v4.ans.a[0].address, "127.0.0.1");
    ck_assert_uint_eq(v6.ans.n, 1);
    ck_assert_int_eq(v6.ans.a[0].family, 6);
    ck_assert_str_eq(v6.ans.a[0].address, "::1");
    ck_assert_uint_eq(other.ans.n, 1);
    ck_assert_int_eq(other.ans.a[0].family, 4);
    ck_assert_uint_eq(zone.ans.n, 1);
    ck_assert_int_eq(zone.ans.a[0].family, 6);
    ck_assert_str_eq(zone.ans.a[0].address, "fe80::1%1");
}
END_TEST

START_TEST(bad_name_gives_enotfound)
{
    answer want;
    expected(BAD_NAME, 0, &want);
    /* What the resolver says here without a network. */
    ck_assert_msg(want.err == WEFT_ENOTFOUND || want.err == WEFT_EAI_AGAIN,
                  "getaddrinfo said %s", weft_err_name(want.err));
    got g = {0};
    lookup(BAD_NAME, 0, &g);
    tu_run(15000);
    ck_assert_int_eq(g.calls, 1);
    /* The same two answers getaddrinfo may give: which one depends on
     * whether this host's resolver answered in time, which can differ
     * between two calls a moment apart on a loaded machine. */
    ck_assert_msg(g.ans.err == WEFT_ENOTFOUND || g.ans.err == WEFT_EAI_AGAIN,
                  "weft said %s, getaddrinfo %s", weft_err_name(g.ans.err),
                  weft_err_name(want.err));
    ck_assert_uint_eq(g.ans.n, 0);
}
END_TEST

START_TEST(a_lookup_keeps_the_loop_alive_until_its_callback)
{
    ck_assert(!weft_loop_alive(tu_loop));
    got g = {0};
    lookup("localhost", 0, &g);
    ck_assert(weft_loop_alive(tu_loop));
    ck_assert_int_eq(weft_loop_run(tu_loop), 0);
    ck_assert_int_eq(g.calls, 1);
    ck_assert(!weft_loop_alive(tu_loop));
}
END_TEST

START_TEST(cancel_before_the_result_never_calls_back)
{
    /* The result arrives after the cancel and is dropped by the loop: a
     * timer keeps the loop running long enough for it. */
    got g = {0}, lit = {0};
    lookup("localhost", 0, &g);
    lookup("127.0.0.1", 0, &lit);
    weft_dns_cancel(g.req);
    weft_dns_cancel(lit.req);
    weft_dns_cancel(NULL);
    /* A cancelled lookup no longer keeps the loop alive. */
    ck_assert(!weft_loop_alive(tu_loop));
    weft_set_timeout(tu_loop, 200, mark, NULL);
    tu_run(5000);
    ck_assert_int_eq(g.calls, 0);
    ck_assert_int_eq(lit.calls, 0);
    ck_assert_str_eq(tu_log_str(), "timer");
}
END_TEST

START_TEST(cancel_queued_and_resolving_lookups_then_close_leaks_nothing)
{
    /* More lookups than the pool has threads: some are queued when
     * cancelled (freed at once), some resolving (freed by the worker or
     * the loop). Then close the loop under those still resolving. */
    enum { N = 16 };
    weft_loop *l = weft_loop_new();
    ck_assert_ptr_nonnull(l);
    got g[N];
    memset(g, 0, sizeof(g));
    for (int i = 0; i < N; i++)
        ck_assert_int_eq(weft_dns_lookup(l, i % 2 ? "localhost" : BAD_NAME, 0,
                                         got_cb, &g[i], &g[i].req),
                         0);
    for (int i = 0; i < N; i += 2)
        weft_dns_cancel(g[i].req);
    /* The uncancelled half is orphaned by the close: no callback either. */
    ck_assert_int_eq(weft_loop_close(l), 0);
    /* Let the workers finish and free what they held, so a leak would
     * show at exit rather than hide on a worker's stack. */
    tu_wait_lookups_done();
    for (int i = 0; i < N; i++)
        ck_assert_int_eq(g[i].calls, 0);
}
END_TEST

START_TEST(cancel_inside_another_lookups_callback)
{
    /* Two pool lookups: whichever answers first cancels the other, which
     * may already wait in the same batch of results. */
    got a = {.name = "a"}, b = {.name = "b"};
    a.cancel = &b;
    b.cancel = &a;
    lookup("localhost", 0, &a);
    lookup("localhost", 0, &b);
    /* A literal (answered first) cancels a pool lookup. */
    got lit = {.name = "lit"}, pool = {.name = "pool"};
    lit.cancel = &pool;
    lookup("127.0.0.1", 0, &lit);
    lookup("localhost", 0, &pool);
    tu_run(10000);
    ck_assert_int_eq(a.calls + b.calls, 1);
    ck_assert_int_eq(lit.calls, 1);
    ck_assert_int_eq(pool.calls, 0);
}
END_TEST

START_TEST(bad_arguments_give_einval_and_no_callback)
{
    got g = {0};
    weft_dns_req *req = (weft_dns_req *)&g; /* must stay untouched */
    ck_assert_int_eq(weft_dns_lookup(tu_loop, NULL, 0, got_cb, &g, &req),
                     WEFT_EINVAL);
    ck_assert_int_eq(weft_dns_lookup(tu_loop, "", 0, got_cb, &g, &req),
                     WEFT_EINVAL);
    ck_assert_int_eq(weft_dns_lookup(tu_loop, "localhost", 5, got_cb, &g, &req),
                     WEFT_EINVAL);
    ck_assert_int_eq(
        weft_dns_lookup(tu_loop, "localhost", -1, got_cb, &g, &req),
        WEFT_EINVAL);
    ck_assert_int_eq(weft_dns_lookup(tu_loop, "localhost", 0, NULL, &g, &req),
                     WEFT_EINVAL);
    static char longname[1100];
    memset(longname, 'a', sizeof(longname) - 1);
    ck_assert_int_eq(weft_dns_lookup(tu_loop, longname, 0, got_cb, &g, &req),
                     WEFT_EINVAL);
    weft__alloc_fail_at = 1;
    ck_assert_int_eq(weft_dns_lookup(tu_loop, "localhost", 0, got_cb, &g, &req),
                     WEFT_ENOMEM);
    weft__alloc_fail_at = 0;
    ck_assert_ptr_eq(req, (weft_dns_req *)&g);
    ck_assert(!weft_loop_alive(tu_loop));
    weft_set_timeout(tu_loop, 50, mark, NULL);
    tu_run(5000);
    ck_assert_int_eq(g.calls, 0);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("lookup");
    TCase *tc = tu_tcase("lookup");
    tcase_add_test(tc, localhost_gives_what_getaddrinfo_gives_in_its_order);
    tcase_add_test(tc, family_4_and_6_filter_as_getaddrinfo_does);
    tcase_add_test(tc, ip_literal_answers_itself_on_a_later_turn);
    tcase_add_test(tc, bad_name_gives_enotfound);
    tcase_add_test(tc, a_lookup_keeps_the_loop_alive_until_its_callback);
    tcase_add_test(tc, cancel_before_the_result_never_calls_back);
    tcase_add_test(
        tc, cancel_queued_and_resolving_lookups_then_close_leaks_nothing);
    tcase_add_test(tc, cancel_inside_another_lookups_callback);
    tcase_add_test(tc, bad_arguments_give_einval_and_no_callback);
    suite_add_tcase(s, tc);
    return tu_run_suite(s);
}
