/*
 * ip.c - net.isIP / isIPv4 / isIPv6: is a string an IP address literal?
 *
 * Owns the address grammar Node 20 accepts. Knows nothing about sockets
 * or resolution: it never calls inet_pton (which accepts forms Node
 * rejects, such as leading zeros in an IPv4 tail) and never allocates or
 * consults the locale. Every function reads its input once, left to
 * right, and stops at the first character that cannot belong to an
 * address, so the time is bounded by the input's length.
 *
 * The grammar, as Node's regular expressions in lib/internal/net.js
 * define it:
 *
 *   IPv4     = dec "." dec "." dec "." dec
 *   dec      = "0" | [1-9][0-9]? | "1"[0-9][0-9] | "2"[0-4][0-9] | "25"[0-5]
 *              (0..255, no leading zeros)
 *   IPv6     = body [ "%" zone ]
 *   zone     = one or more of [0-9A-Za-z] "-" "." ":"
 *   body     = 8 groups, or 6 groups ":" IPv4           (no "::")
 *            | groups "::" groups                        (one "::")
 *   group    = 1 to 4 hex digits; elements are separated by ":"
 *
 * With "::", the groups on both sides number at most 7 together, an IPv4
 * tail counting as 2 and allowed only as the last element after "::".
 */
#include "weft.h"

#include <stddef.h>

static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

static bool is_hex(char c)
{
    return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

static bool is_zone_char(char c)
{
    return is_digit(c) || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
           c == '-' || c == '.' || c == ':';
}

/*
 * Parses a dotted quad at `p`; returns the character after it, or NULL.
 * What follows is the caller's to judge.
 */
static const char *parse_ipv4(const char *p)
{
    for (int part = 0; part < 4; part++) {
        int value = 0, digits = 0;

        if (part > 0) {
            if (*p != '.')
                return NULL;
            p++;
        }
        while (is_digit(*p) && digits < 3) {
            value = value * 10 + (*p - '0');
            digits++;
            p++;
        }
        if (digits == 0 || is_digit(*p) || value > 255)
            return NULL;
        if (digits > 1 && p[-digits] == '0')
            return NULL;
    }
    return p;
}

/* The end of an IPv6 body: the end of input or the start of a zone. */
static bool body_end(char c)
{
    return c == '\0' || c == '%';
}

/* Parses an IPv6 body at `p`; returns the character after it, or NULL. */
static const char *parse_ipv6_body(const char *p)
{
    int groups = 0;
    bool compressed = false;

    if (p[0] == ':') {
        if (p[1] != ':')
            return NULL;
        compressed = true;
        p += 2;
        if (body_end(*p))
            return p;
    }
    for (;;) {
        const char *q = parse_ipv4(p);
        int digits = 0;

        if (q != NULL && body_end(*q)) {
            /* An IPv4 tail is only ever the last element. */
            groups += 2;
            p = q;
            break;
        }
        while (is_hex(p[digits]) && digits < 4)
            digits++;
        if (digits == 0 || is_hex(p[digits]))
            return NULL;
        p += digits;
        /* Nine elements are already too many: stop reading early. */
        if (++groups > 8)
            return NULL;
        if (*p != ':')
            break;
        if (p[1] == ':') {
            if (compressed)
                return NULL;
            compressed = true;
            p += 2;
            if (body_end(*p))
                break;
        } else {
            p++;
        }
    }
    if (compressed ? groups > 7 : groups != 8)
        return NULL;
    return p;
}

bool weft_is_ipv4(const char *input)
{
    const char *end;

    if (input == NULL)
        return false;
    end = parse_ipv4(input);
    return end != NULL && *end == '\0';
}

bool weft_is_ipv6(const char *input)
{
    const char *p;

    if (input == NULL)
        return false;
    p = parse_ipv6_body(input);
    if (p == NULL)
        return false;
    if (*p == '%') {
        p++;
        if (*p == '\0')
            return false;
        while (is_zone_char(*p))
            p++;
    }
    return *p == '\0';
}

int weft_is_ip(const char *input)
{
    if (weft_is_ipv4(input))
        return 4;
    if (weft_is_ipv6(input))
        return 6;
    return 0;
}
