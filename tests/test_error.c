/* test_error.c - the error table: names, messages, errno mapping. */
#include "internal.h"
#include "testutil.h"

#include <string.h>

START_TEST(every_code_has_a_name_and_message)
{
#define CHECK_(name, value, msg)                                               \
    ck_assert_str_eq(weft_err_name(WEFT_##name), #name);                       \
    ck_assert_str_eq(weft_strerror(WEFT_##name), msg);                         \
    ck_assert_int_lt(WEFT_##name, 0);
    WEFT_ERRNO_MAP(CHECK_)
#undef CHECK_
}
END_TEST

START_TEST(errno_backed_codes_are_negated_errno)
{
    ck_assert_int_eq(WEFT_ECONNREFUSED, -ECONNREFUSED);
    ck_assert_int_eq(WEFT_EADDRINUSE, -EADDRINUSE);
    ck_assert_int_eq(weft__err(ECONNRESET), WEFT_ECONNRESET);
}
END_TEST

START_TEST(unknown_codes_are_named_unknown_and_errno_folds_to_eio)
{
    ck_assert_str_eq(weft_err_name(12345), "UNKNOWN");
    ck_assert_str_eq(weft_strerror(-99999), "unknown error");
    ck_assert_int_eq(weft__err(EDOM), WEFT_EIO);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("error");
    TCase *tc = tcase_create("table");
    tcase_add_test(tc, every_code_has_a_name_and_message);
    tcase_add_test(tc, errno_backed_codes_are_negated_errno);
    tcase_add_test(tc, unknown_codes_are_named_unknown_and_errno_folds_to_eio);
    suite_add_tcase(s, tc);
    return tu_run_suite(s);
}
