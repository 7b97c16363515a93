/*
 * reference.h - slow, obvious models of the encodings and of Node's
 * address grammar, for the fuzz targets and the unit tests to check
 * src/encoding.c and src/ip.c against.
 *
 * Each model is written from the specification (the WHATWG Encoding
 * standard's UTF-8 decoder, Node's documented base64 and hex rules, the
 * regular expressions of Node's lib/internal/net.js), in a different
 * shape from weft's code on purpose: a bug would have to be made twice,
 * in two different ways, to go unnoticed. Speed does not matter here.
 */
#ifndef WEFT_FUZZ_REFERENCE_H
#define WEFT_FUZZ_REFERENCE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* ---- utf8 ---------------------------------------------------------------- */

static inline size_t ref_put_code_point(uint32_t cp, char *out)
{
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xC0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xE0 | (cp >> 12));
        out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | (cp >> 18));
    out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    out[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

/*
 * The WHATWG "UTF-8 decoder" algorithm, step by step, for a complete
 * input: code point, bytes needed/seen, and the lower/upper boundary of
 * the next byte; an unexpected byte ends the sequence with U+FFFD and is
 * then processed again on its own. Output: at most 3 bytes per input byte.
 */
static inline size_t ref_utf8_decode(const uint8_t *in, size_t len, char *out)
{
    uint32_t cp = 0;
    int needed = 0, seen = 0;
    uint8_t lower = 0x80, upper = 0xBF;
    size_t o = 0, i = 0;

    for (;;) {
        uint8_t b;

        if (i == len) {
            if (needed != 0)
                o += ref_put_code_point(0xFFFD, out + o);
            return o;
        }
        b = in[i];
        if (needed == 0) {
            i++;
            if (b <= 0x7F) {
                out[o++] = (char)b;
            } else if (b >= 0xC2 && b <= 0xDF) {
                needed = 1;
                cp = b & 0x1F;
            } else if (b >= 0xE0 && b <= 0xEF) {
                if (b == 0xE0)
                    lower = 0xA0;
                if (b == 0xED)
                    upper = 0x9F;
                needed = 2;
                cp = b & 0x0F;
            } else if (b >= 0xF0 && b <= 0xF4) {
                if (b == 0xF0)
                    lower = 0x90;
                if (b == 0xF4)
                    upper = 0x8F;
                needed = 3;
                cp = b & 0x07;
            } else {
                o += ref_put_code_point(0xFFFD, out + o);
            }
            continue;
        }
        if (b < lower || b > upper) {
            cp = 0;
            needed = seen = 0;
            lower = 0x80;
            upper = 0xBF;
            o += ref_put_code_point(0xFFFD, out + o);
            continue; /* `b` again, as a new start */
        }
        lower = 0x80;
        upper = 0xBF;
        cp = (cp << 6) | (b & 0x3F);
        seen++;
        i++;
        if (seen == needed) {
            o += ref_put_code_point(cp, out + o);
            cp = 0;
            needed = seen = 0;
        }
    }
}

/* True if `in` is well-formed UTF-8 (decoding changes nothing). */
static inline bool ref_utf8_valid(const uint8_t *in, size_t len)
{
    for (size_t i = 0; i < len;) {
        uint32_t cp;
        size_t n;

        if (in[i] < 0x80) {
            i++;
            continue;
        }
        if ((in[i] & 0xE0) == 0xC0)
            n = 2, cp = in[i] & 0x1F;
        else if ((in[i] & 0xF0) == 0xE0)
            n = 3, cp = in[i] & 0x0F;
        else if ((in[i] & 0xF8) == 0xF0)
            n = 4, cp = in[i] & 0x07;
        else
            return false;
        if (len - i < n)
            return false;
        for (size_t k = 1; k < n; k++) {
            if ((in[i + k] & 0xC0) != 0x80)
                return false;
            cp = (cp << 6) | (in[i + k] & 0x3F);
        }
        if ((n == 2 && cp < 0x80) || (n == 3 && cp < 0x800) ||
            (n == 4 && cp < 0x10000) || cp > 0x10FFFF ||
            (cp >= 0xD800 && cp <= 0xDFFF))
            return false;
        i += n;
    }
    return true;
}

/*
 * Node's StringDecoder('utf8'), one write() at a time, modelled on what
 * src/string_decoder.cc does: bytes owed to a character held from the
 * last chunk are taken from the head of this one while they are
 * continuation bytes; then, if the chunk ends in a non-ASCII byte, up to
 * 4 bytes back are searched for the lead that byte belongs to, and a lead
 * that announces more bytes than are there is held with what follows it.
 * What is not held is decoded by ref_utf8_decode() in two independent
 * pieces: the completed held character, and the rest.
 */
struct ref_node_utf8 {
    uint8_t held[4];
    size_t buffered, missing;
};

static inline size_t ref_node_utf8_write(struct ref_node_utf8 *st,
                                         const uint8_t *data, size_t n,
                                         char *out)
{
    size_t o = 0, buffered = 0, missing = 0;

    if (st->missing > 0) {
        size_t found;
        for (size_t i = 0; i < n && i < st->missing; i++) {
            if ((data[i] & 0xC0) != 0x80) {
                st->missing = 0;
                memcpy(st->held + st->buffered, data, i);
                st->buffered += i;
                data += i;
                n -= i;
                break;
            }
        }
        found = n < st->missing ? n : st->missing;
        memcpy(st->held + st->buffered, data, found);
        data += found;
        n -= found;
        st->missing -= found;
        st->buffered += found;
        if (st->missing > 0)
            return 0;
        o = ref_utf8_decode(st->held, st->buffered, out);
        st->buffered = 0;
    }
    if (n == 0)
        return o;
    if (data[n - 1] & 0x80) {
        for (size_t i = n - 1;; i--) {
            buffered++;
            if ((data[i] & 0xC0) == 0x80) {
                if (buffered >= 4 || i == 0) {
                    buffered = 0;
                    break;
                }
                continue;
            }
            if ((data[i] & 0xE0) == 0xC0)
                missing = 2;
            else if ((data[i] & 0xF0) == 0xE0)
                missing = 3;
            else if ((data[i] & 0xF8) == 0xF0)
                missing = 4;
            else
                buffered = 0;
            if (buffered >= missing)
                buffered = missing = 0;
            missing -= buffered;
            break;
        }
    }
    o += ref_utf8_decode(data, n - buffered, out + o);
    memcpy(st->held, data + n - buffered, buffered);
    st->buffered = buffered;
    st->missing = missing;
    return o;
}

static inline size_t ref_node_utf8_end(struct ref_node_utf8 *st, char *out)
{
    size_t o = ref_utf8_decode(st->held, st->buffered, out);
    st->buffered = st->missing = 0;
    return o;
}

/* ---- base64 and hex text of bytes (the decoders' side) ------------------- */

/* RFC 4648 text of `in`, as a bit stream read 6 bits at a time. */
static inline size_t ref_base64_text(const uint8_t *in, size_t len, bool url,
                                     char *out)
{
    const char *std =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    const char *safe =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    const char *alpha = url ? safe : std;
    size_t o = 0, bits = 0;
    uint32_t acc = 0;

    for (size_t i = 0; i < len; i++) {
        acc = (acc << 8) | in[i];
        bits += 8;
        while (bits >= 6) {
            bits -= 6;
            out[o++] = alpha[(acc >> bits) & 63];
        }
    }
    if (bits > 0)
        out[o++] = alpha[(acc << (6 - bits)) & 63];
    while (!url && o % 4 != 0)
        out[o++] = '=';
    return o;
}

/* ---- Buffer.from(s, 'base64') and (s, 'hex') (the encoders' side) -------- */

static inline int ref_base64_symbol(uint8_t c)
{
    const char *all =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    const char *p;

    if (c == '-')
        return 62;
    if (c == '_')
        return 63;
    if (c == 0)
        return -1;
    p = strchr(all, c);
    return p != NULL ? (int)(p - all) : -1;
}

/*
 * Node's lenient base64: symbols of either alphabet are taken in order,
 * everything else skipped, the first '=' ends the input; the symbols are
 * then read as a bit stream, 8 bits per byte, leftover bits dropped.
 */
static inline size_t ref_base64_bytes(const uint8_t *in, size_t len,
                                      uint8_t *out)
{
    size_t o = 0, bits = 0;
    uint32_t acc = 0;

    for (size_t i = 0; i < len && in[i] != '='; i++) {
        int v = ref_base64_symbol(in[i]);
        if (v < 0)
            continue;
        acc = (acc << 6) | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[o++] = (uint8_t)(acc >> bits);
        }
    }
    return o;
}

static inline int ref_hex_nibble(uint8_t c)
{
    const char *lower = "0123456789abcdef", *upper = "0123456789ABCDEF";
    for (int i = 0; i < 16; i++)
        if (c == (uint8_t)lower[i] || c == (uint8_t)upper[i])
            return i;
    return -1;
}

/* Node's Buffer.from(s, 'hex'): whole pairs, up to the first bad one. */
static inline size_t ref_hex_bytes(const uint8_t *in, size_t len, uint8_t *out)
{
    size_t n = 0;

    while (2 * n + 1 < len) {
        int hi = ref_hex_nibble(in[2 * n]), lo = ref_hex_nibble(in[2 * n + 1]);
        if (hi < 0 || lo < 0)
            break;
        out[n++] = (uint8_t)(hi * 16 + lo);
    }
    return n;
}

/* ---- addresses ----------------------------------------------------------- */

/* One decimal part of Node's IPv4 pattern: 0..255 with no leading zero. */
static inline bool ref_v4_part(const char *s, size_t len)
{
    int v = 0;

    if (len == 0 || len > 3 || (len > 1 && s[0] == '0'))
        return false;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        v = v * 10 + (s[i] - '0');
    }
    return v <= 255;
}

static inline bool ref_is_ipv4_n(const char *s, size_t len)
{
    size_t start = 0, parts = 0;

    for (size_t i = 0; i <= len; i++) {
        if (i == len || s[i] == '.') {
            if (!ref_v4_part(s + start, i - start))
                return false;
            parts++;
            start = i + 1;
        }
    }
    return parts == 4;
}

/*
 * Matches `s` against one pattern over the tokens 'H' (1 to 4 hex
 * digits), '4' (an IPv4 address, always last) and ':' (itself).
 */
static inline bool ref_match_tokens(const char *s, size_t len, const char *pat)
{
    size_t i = 0;

    for (; *pat != '\0'; pat++) {
        if (*pat == ':') {
            if (i >= len || s[i] != ':')
                return false;
            i++;
        } else if (*pat == 'H') {
            size_t n = 0;
            while (i + n < len && n < 5 &&
                   ref_hex_nibble((uint8_t)s[i + n]) >= 0)
                n++;
            if (n == 0 || n > 4)
                return false;
            i += n;
        } else {
            return pat[1] == '\0' && ref_is_ipv4_n(s + i, len - i);
        }
    }
    return i == len;
}

/*
 * Node's IPv6 regular expression, alternative by alternative: k groups
 * "H:" then one of the endings the alternative allows (k = 0 starts with
 * a bare ':'), expanded into literal token patterns and tried in turn.
 */
static inline bool ref_ipv6_body(const char *s, size_t len)
{
    char pat[64];

    for (int k = 0; k <= 7; k++) {
        size_t base = 0;

        if (k == 0)
            pat[base++] = ':';
        for (int g = 0; g < k; g++) {
            pat[base++] = 'H';
            pat[base++] = ':';
        }
        if (k == 7) {
            /* (H:){7}(H|:) */
            pat[base] = 'H', pat[base + 1] = '\0';
            if (ref_match_tokens(s, len, pat))
                return true;
            pat[base] = ':', pat[base + 1] = '\0';
            if (ref_match_tokens(s, len, pat))
                return true;
            continue;
        }
        if (k == 6) {
            /* (H:){6}(V4|:H|:) */
            static const char *const ends[] = {"4", ":H", ":"};
            for (int e = 0; e < 3; e++) {
                strcpy(pat + base, ends[e]);
                if (ref_match_tokens(s, len, pat))
                    return true;
            }
            continue;
        }
        /* (:H){0,5-k}:V4 | (:H){1,7-k} | : */
        for (int j = 0; j <= 5 - k; j++) {
            size_t p = base;
            for (int r = 0; r < j; r++)
                pat[p++] = ':', pat[p++] = 'H';
            pat[p++] = ':', pat[p++] = '4', pat[p] = '\0';
            if (ref_match_tokens(s, len, pat))
                return true;
        }
        for (int j = 1; j <= 7 - k; j++) {
            size_t p = base;
            for (int r = 0; r < j; r++)
                pat[p++] = ':', pat[p++] = 'H';
            pat[p] = '\0';
            if (ref_match_tokens(s, len, pat))
                return true;
        }
        pat[base] = ':', pat[base + 1] = '\0';
        if (ref_match_tokens(s, len, pat))
            return true;
    }
    return false;
}

/* Node's net.isIP for the C string `s`: 0, 4 or 6. */
static inline int ref_is_ip(const char *s)
{
    size_t len = strlen(s), body = len;
    const char *pct;

    if (ref_is_ipv4_n(s, len))
        return 4;
    pct = memchr(s, '%', len);
    if (pct != NULL) {
        const char *zone_ok = "0123456789abcdefghijklmnopqrstuvwxyz"
                              "ABCDEFGHIJKLMNOPQRSTUVWXYZ-.:";
        body = (size_t)(pct - s);
        if (len - body < 2)
            return 0;
        for (size_t i = body + 1; i < len; i++)
            if (strchr(zone_ok, s[i]) == NULL)
                return 0;
    }
    return ref_ipv6_body(s, body) ? 6 : 0;
}

#endif
