/*
 * test_emitter.c - Node's EventEmitter rules on weft's listener lists:
 * order, once, removal during an emit, additions during an emit.
 */
#include "internal.h"
#include "testutil.h"

#include <stdio.h>
#include <string.h>

typedef void (*ev_fn)(int arg, void *ctx);

static weft__emitter em;

static void rec(int arg, void *ctx)
{
    tu_logf("%s%d", (const char *)ctx, arg);
}

static void remove_b(int arg, void *ctx)
{
    (void)arg;
    (void)ctx;
    tu_logf("remover%d", weft__emitter_remove(&em, 0, (weft__fn)rec, "b"));
}

static void add_c(int arg, void *ctx)
{
    (void)arg;
    (void)ctx;
    tu_log("adder");
    ck_assert_int_eq(weft__emitter_add(&em, 0, (weft__fn)rec, "c", false), 0);
}

static void emit(int event, int arg)
{
    WEFT__EMIT(&em, event, ev_fn, arg);
}

static void setup(void)
{
    tu_log_reset();
    em = (weft__emitter){0};
}

static void teardown(void)
{
    weft__emitter_free(&em);
}

START_TEST(listeners_run_in_the_order_added_and_per_event)
{
    weft__emitter_add(&em, 0, (weft__fn)rec, "a", false);
    weft__emitter_add(&em, 1, (weft__fn)rec, "x", false);
    weft__emitter_add(&em, 0, (weft__fn)rec, "b", false);
    weft__emitter_add(&em, 0, (weft__fn)rec, "a", false); /* twice: twice */
    emit(0, 1);
    emit(1, 2);
    ck_assert_str_eq(tu_log_str(), "a1,b1,a1,x2");
    ck_assert(weft__emitter_has(&em, 1));
    ck_assert(!weft__emitter_has(&em, 2));
}
END_TEST

START_TEST(once_listener_runs_one_time)
{
    weft__emitter_add(&em, 0, (weft__fn)rec, "o", true);
    weft__emitter_add(&em, 0, (weft__fn)rec, "p", false);
    emit(0, 1);
    emit(0, 2);
    ck_assert_str_eq(tu_log_str(), "o1,p1,p2");
}
END_TEST

START_TEST(listener_removed_during_emit_is_not_called_by_that_emit)
{
    weft__emitter_add(&em, 0, (weft__fn)remove_b, NULL, false);
    weft__emitter_add(&em, 0, (weft__fn)rec, "b", false);
    weft__emitter_add(&em, 0, (weft__fn)rec, "z", false);
    emit(0, 1);
    emit(0, 2);
    ck_assert_str_eq(tu_log_str(), "remover0,z1,remover-2,z2");
    ck_assert_int_eq(em.n, 2); /* compacted once the emit finished */
}
END_TEST

START_TEST(listener_added_during_emit_waits_for_the_next_emit)
{
    weft__emitter_add(&em, 0, (weft__fn)add_c, NULL, true);
    weft__emitter_add(&em, 0, (weft__fn)rec, "a", false);
    emit(0, 1);
    emit(0, 2);
    ck_assert_str_eq(tu_log_str(), "adder,a1,a2,c2");
}
END_TEST

START_TEST(remove_takes_the_latest_match_and_reports_missing)
{
    weft__emitter_add(&em, 0, (weft__fn)rec, "a", false);
    weft__emitter_add(&em, 0, (weft__fn)rec, "b", false);
    weft__emitter_add(&em, 0, (weft__fn)rec, "a", false);
    ck_assert_int_eq(weft__emitter_remove(&em, 0, (weft__fn)rec, "a"), 0);
    emit(0, 1);
    ck_assert_str_eq(tu_log_str(), "a1,b1");
    ck_assert_int_eq(weft__emitter_remove(&em, 0, (weft__fn)rec, "q"),
                     WEFT_ENOENT);
    ck_assert_int_eq(weft__emitter_remove(&em, 1, (weft__fn)rec, "a"),
                     WEFT_ENOENT);
    ck_assert_int_eq(weft__emitter_add(&em, 0, NULL, NULL, false),
                     WEFT_EINVAL);
}
END_TEST

START_TEST(many_listeners_grow_the_list)
{
    static char names[300][8];
    for (int i = 0; i < 300; i++) {
        snprintf(names[i], sizeof(names[i]), "%d:", i);
        ck_assert_int_eq(
            weft__emitter_add(&em, 0, (weft__fn)rec, names[i], false), 0);
    }
    emit(0, 7);
    const char *log = tu_log_str();
    ck_assert(strncmp(log, "0:7,1:7,2:7", 11) == 0);
    ck_assert(strstr(log, "299:7") != NULL);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("emitter");
    TCase *tc = tcase_create("emitter");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, listeners_run_in_the_order_added_and_per_event);
    tcase_add_test(tc, once_listener_runs_one_time);
    tcase_add_test(tc, listener_removed_during_emit_is_not_called_by_that_emit);
    tcase_add_test(tc, listener_added_during_emit_waits_for_the_next_emit);
    tcase_add_test(tc, remove_takes_the_latest_match_and_reports_missing);
    tcase_add_test(tc, many_listeners_grow_the_list);
    suite_add_tcase(s, tc);
    return tu_run_suite(s);
}
