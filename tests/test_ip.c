/*
 * test_ip.c - weft_is_ip / weft_is_ipv4 / weft_is_ipv6 against Node 20's
 * net.isIP answers (tests/vectors/ip.txt, made by tools/gen-vectors.js),
 * against the regex-shaped reference in fuzz/reference.h, and on named
 * edge cases.
 */
#include "weft.h"

#include "../fuzz/reference.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#ifndef WEFT_SOURCE_DIR
#define WEFT_SOURCE_DIR "."
#endif

/*
 * The three answers must agree with each other and with `want`. (Plain
 * ifs: Check reports every passing ck_assert to the parent process,
 * which would cost more than the parsing.)
 */
static void check_ip(const char *s, int want)
{
    int got = weft_is_ip(s);

    if (got != want)
        ck_abort_msg("weft_is_ip(\"%s\") = %d, want %d", s, got, want);
    if (weft_is_ipv4(s) != (want == 4))
        ck_abort_msg("weft_is_ipv4(\"%s\") disagrees", s);
    if (weft_is_ipv6(s) != (want == 6))
        ck_abort_msg("weft_is_ipv6(\"%s\") disagrees", s);
}

static int hex_nibble(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

/* Undoes ip.txt's \xHH escapes in place; false if one is malformed. */
static bool unescape(char *s)
{
    char *w = s;

    for (const char *r = s; *r != '\0'; r++) {
        if (*r == '\\') {
            int hi, lo;
            if (r[1] != 'x')
                return false;
            hi = hex_nibble(r[2]);
            lo = hex_nibble(hi < 0 ? '\0' : r[3]);
            if (hi < 0 || lo < 0)
                return false;
            *w++ = (char)(hi * 16 + lo);
            r += 3;
        } else {
            *w++ = *r;
        }
    }
    *w = '\0';
    return true;
}

START_TEST(node_vectors_match)
{
    const char *path = WEFT_SOURCE_DIR "/tests/vectors/ip.txt";
    FILE *f = fopen(path, "r");
    char *line = NULL;
    size_t cap = 0, count[7] = {0};
    ssize_t n;

    ck_assert_msg(f != NULL, "cannot open %s (run node tools/gen-vectors.js)",
                  path);
    while ((n = getline(&line, &cap, f)) > 0) {
        int want;

        if (line[n - 1] == '\n')
            line[--n] = '\0';
        if (line[0] == '#' || n == 0)
            continue;
        ck_assert_msg(n >= 2 && line[1] == ' ', "bad vector line: %s", line);
        want = line[0] - '0';
        ck_assert_msg(want == 0 || want == 4 || want == 6, "bad answer: %s",
                      line);
        ck_assert_msg(unescape(line + 2), "bad escape: %s", line);
        check_ip(line + 2, want);
        /* The reference model must agree too, or it is no reference. */
        if (ref_is_ip(line + 2) != want)
            ck_abort_msg("reference model on \"%s\"", line + 2);
        count[want]++;
    }
    free(line);
    fclose(f);
    fprintf(stderr, "ip.txt: %zu not IP, %zu IPv4, %zu IPv6\n", count[0],
            count[4], count[6]);
    ck_assert_uint_ge(count[0], 1000);
    ck_assert_uint_ge(count[4], 500);
    ck_assert_uint_ge(count[6], 1000);
}
END_TEST

START_TEST(null_is_not_an_address)
{
    ck_assert_int_eq(weft_is_ip(NULL), 0);
    ck_assert(!weft_is_ipv4(NULL));
    ck_assert(!weft_is_ipv6(NULL));
}
END_TEST

START_TEST(empty_string_is_not_an_address)
{
    check_ip("", 0);
}
END_TEST

START_TEST(ipv4_dotted_quad_is_4)
{
    check_ip("127.0.0.1", 4);
    check_ip("0.0.0.0", 4);
    check_ip("255.255.255.255", 4);
    check_ip("10.20.30.40", 4);
}
END_TEST

START_TEST(ipv4_leading_zero_is_rejected_but_lone_zero_allowed)
{
    check_ip("01.2.3.4", 0);
    check_ip("1.2.3.04", 0);
    check_ip("00.0.0.0", 0);
    check_ip("1.0.3.0", 4);
}
END_TEST

START_TEST(ipv4_part_above_255_is_rejected)
{
    check_ip("256.0.0.0", 0);
    check_ip("1.2.3.999", 0);
    check_ip("1.2.3.1000", 0);
}
END_TEST

START_TEST(ipv4_short_long_octal_hex_forms_are_rejected)
{
    check_ip("1.2.3", 0);
    check_ip("1.2.3.4.5", 0);
    check_ip("127.1", 0);
    check_ip("2130706433", 0);
    check_ip("0x7f.0.0.1", 0);
    check_ip("1.2.3.", 0);
    check_ip(".1.2.3", 0);
    check_ip("1..2.3", 0);
}
END_TEST

START_TEST(ipv4_with_whitespace_sign_or_zone_is_rejected)
{
    check_ip(" 1.2.3.4", 0);
    check_ip("1.2.3.4 ", 0);
    check_ip("1.2.3.4\n", 0);
    check_ip("+1.2.3.4", 0);
    check_ip("1.2.3.4%eth0", 0);
    check_ip("1.2.3.4/24", 0);
}
END_TEST

START_TEST(ipv6_full_and_compressed_forms_are_6)
{
    check_ip("1:2:3:4:5:6:7:8", 6);
    check_ip("2001:db8::1", 6);
    check_ip("::", 6);
    check_ip("::1", 6);
    check_ip("1::", 6);
    check_ip("FE80::ABCD", 6);
    check_ip("0000:0000:0000:0000:0000:0000:0000:0000", 6);
}
END_TEST

START_TEST(ipv6_compression_may_stand_for_one_group_at_either_end)
{
    check_ip("1:2:3:4:5:6:7::", 6);
    check_ip("::2:3:4:5:6:7:8", 6);
    check_ip("1::3:4:5:6:7:8", 6);
}
END_TEST

START_TEST(ipv6_with_too_many_groups_is_rejected)
{
    check_ip("1:2:3:4:5:6:7:8:9", 0);
    check_ip("1:2:3:4:5:6:7:8::", 0);
    check_ip("::1:2:3:4:5:6:7:8", 0);
    check_ip("1:2:3:4:5:6:7", 0);
}
END_TEST

START_TEST(ipv6_with_two_compressions_or_stray_colons_is_rejected)
{
    check_ip("1::2::3", 0);
    check_ip(":::", 0);
    check_ip(":1", 0);
    check_ip("1:", 0);
    check_ip("::1:", 0);
    check_ip("1:::2", 0);
}
END_TEST

START_TEST(ipv6_group_of_five_hex_digits_is_rejected)
{
    check_ip("12345::", 0);
    check_ip("::00000", 0);
    check_ip("g::", 0);
}
END_TEST

START_TEST(ipv6_ipv4_tail_counts_as_two_groups)
{
    check_ip("::ffff:127.0.0.1", 6);
    check_ip("::1.2.3.4", 6);
    check_ip("1:2:3:4:5:6:1.2.3.4", 6);
    check_ip("1:2:3:4:5::1.2.3.4", 6);
    check_ip("1:2:3:4:5:6::1.2.3.4", 0);
    check_ip("1:2:3:4:5:6:7:1.2.3.4", 0);
}
END_TEST

START_TEST(ipv6_ipv4_tail_must_be_last_and_strict)
{
    check_ip("::1.2.3.4:5", 0);
    check_ip("1.2.3.4::", 0);
    check_ip("::ffff:01.2.3.4", 0);
    check_ip("::ffff:1.2.3", 0);
    check_ip("::ffff:256.1.1.1", 0);
}
END_TEST

START_TEST(ipv6_zone_of_letters_digits_dash_dot_colon_is_accepted)
{
    check_ip("fe80::1%eth0", 6);
    check_ip("fe80::1%en0.1-a:b", 6);
    check_ip("fe80::1%:.-", 6);
    check_ip("::%a", 6);
    check_ip("1:2:3:4:5:6:1.2.3.4%z", 6);
}
END_TEST

START_TEST(ipv6_empty_or_odd_zone_is_rejected)
{
    check_ip("fe80::1%", 0);
    check_ip("fe80::1%eth_0", 0);
    check_ip("fe80::1%a%b", 0);
    check_ip("fe80::1%a b", 0);
    check_ip("fe80::1%\xC3\xA9", 0);
}
END_TEST

START_TEST(brackets_prefixes_and_names_are_rejected)
{
    check_ip("[::1]", 0);
    check_ip("::/0", 0);
    check_ip("localhost", 0);
}
END_TEST

/*
 * A megabyte of almost-an-address answers fast: the parser reads each
 * byte at most a few times and gives up early on too many groups.
 */
START_TEST(huge_inputs_answer_in_bounded_time)
{
    size_t n = 1 << 20;
    char *s = malloc(n + 16);
    struct timespec t0, t1;
    double ms;

    ck_assert_ptr_nonnull(s);
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (size_t i = 0; i < n; i++)
        s[i] = i % 2 ? ':' : '1';
    s[n] = '\0';
    check_ip(s, 0);
    memset(s, ':', n);
    check_ip(s, 0);
    for (size_t i = 0; i < n; i++)
        s[i] = i % 2 ? '.' : '1';
    check_ip(s, 0);
    memcpy(s, "fe80::1%", 8);
    memset(s + 8, 'x', n - 8);
    check_ip(s, 6);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    ms = (double)(t1.tv_sec - t0.tv_sec) * 1e3 +
         (double)(t1.tv_nsec - t0.tv_nsec) / 1e6;
    ck_assert_msg(ms < 2000, "took %.0f ms", ms);
    free(s);
}
END_TEST

static uint64_t rng = 0x243F6A8885A308D3ull;

static uint32_t rnd_below(uint32_t n)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (uint32_t)((rng >> 16) % n);
}

/*
 * Appends a random piece of an address (or of something close to one);
 * `v4` keeps to decimal parts and dots.
 */
static size_t random_piece(char *s, bool v4)
{
    static const char junk[] = "g%-x /_[";
    size_t n = 0;

    if (v4) {
        /* "n." with n mostly in range, sometimes too big or zero-led */
        switch (rnd_below(8)) {
        case 0:
            return (size_t)sprintf(s, "%u.", rnd_below(1000));
        case 1:
            return (size_t)sprintf(s, "0%u.", rnd_below(30));
        default:
            return (size_t)sprintf(s, "%u.", rnd_below(256));
        }
    }
    switch (rnd_below(10)) {
    case 0:
    case 1:
    case 2:
    case 3: /* a group: 0 to 5 hex digits */
        for (uint32_t k = rnd_below(6); k > 0; k--)
            s[n++] = "0123456789abcdefABCDEF"[rnd_below(22)];
        return n;
    case 4: /* a decimal part, leading zeros and all */
        return (size_t)sprintf(s, "%u", rnd_below(300));
    case 5:
        s[0] = '0';
        return 1;
    case 6:
    case 7:
        s[0] = ':';
        return 1;
    case 8:
        s[0] = '.';
        return 1;
    default:
        s[0] = junk[rnd_below(sizeof(junk) - 1)];
        return 1;
    }
}

/*
 * Random strings built from groups, decimal parts and separators, so
 * that a fair share are addresses: weft and the regex-shaped model in
 * fuzz/reference.h must give the same answer for each.
 */
START_TEST(random_strings_match_reference_model)
{
    size_t hits[7] = {0};
    char s[256];

    for (int t = 0; t < 40000; t++) {
        size_t len = 0;
        bool v4 = t % 4 == 0;
        int want;

        for (uint32_t k = v4 ? 3 + rnd_below(3) : 1 + rnd_below(24);
             k > 0 && len < 200; k--)
            len += random_piece(s + len, v4);
        if (v4 && rnd_below(4) != 0)
            len--; /* drop the final dot */
        s[len] = '\0';
        want = ref_is_ip(s);
        check_ip(s, want);
        hits[want]++;
    }
    fprintf(stderr, "random addresses: %zu not IP, %zu IPv4, %zu IPv6\n",
            hits[0], hits[4], hits[6]);
}
END_TEST

static Suite *ip_suite(void)
{
    Suite *s = suite_create("ip");
    TCase *node = tcase_create("node");
    TCase *v4 = tcase_create("ipv4");
    TCase *v6 = tcase_create("ipv6");
    TCase *other = tcase_create("other");

    tcase_set_timeout(node, 60);
    tcase_add_test(node, node_vectors_match);
    tcase_add_test(node, random_strings_match_reference_model);
    suite_add_tcase(s, node);

    tcase_add_test(v4, ipv4_dotted_quad_is_4);
    tcase_add_test(v4, ipv4_leading_zero_is_rejected_but_lone_zero_allowed);
    tcase_add_test(v4, ipv4_part_above_255_is_rejected);
    tcase_add_test(v4, ipv4_short_long_octal_hex_forms_are_rejected);
    tcase_add_test(v4, ipv4_with_whitespace_sign_or_zone_is_rejected);
    suite_add_tcase(s, v4);

    tcase_add_test(v6, ipv6_full_and_compressed_forms_are_6);
    tcase_add_test(v6, ipv6_compression_may_stand_for_one_group_at_either_end);
    tcase_add_test(v6, ipv6_with_too_many_groups_is_rejected);
    tcase_add_test(v6, ipv6_with_two_compressions_or_stray_colons_is_rejected);
    tcase_add_test(v6, ipv6_group_of_five_hex_digits_is_rejected);
    tcase_add_test(v6, ipv6_ipv4_tail_counts_as_two_groups);
    tcase_add_test(v6, ipv6_ipv4_tail_must_be_last_and_strict);
    tcase_add_test(v6, ipv6_zone_of_letters_digits_dash_dot_colon_is_accepted);
    tcase_add_test(v6, ipv6_empty_or_odd_zone_is_rejected);
    suite_add_tcase(s, v6);

    tcase_add_test(other, null_is_not_an_address);
    tcase_add_test(other, empty_string_is_not_an_address);
    tcase_add_test(other, brackets_prefixes_and_names_are_rejected);
    tcase_add_test(other, huge_inputs_answer_in_bounded_time);
    suite_add_tcase(s, other);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(ip_suite());
    int failed;

    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
