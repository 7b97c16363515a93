/*
 * encoding.c - the string encodings of setEncoding() and write(string):
 * incremental decoders (received bytes -> text) and encoders (a caller's
 * string -> bytes to send).
 *
 * Owns the byte-level rules of each encoding and the few bytes of state a
 * decoder carries between reads. Knows nothing about streams, buffers or
 * the loop: every function writes into caller memory sized with the
 * *_max() functions, and nothing here allocates.
 *
 * The reference for every rule is Node 20: decoders answer as
 * `new StringDecoder(enc)` with .write() per chunk then .end(), encoders
 * as Buffer.from(string, enc). tests/vectors/ holds Node's own answers;
 * docs/encoding.md lists the decisions.
 */
#include "encoding.h"
#include "weft.h"

#include <stdbool.h>
#include <string.h>

/* ---- names --------------------------------------------------------------- */

static bool name_equals(const char *name, const char *lower)
{
    for (; *lower != '\0'; name++, lower++) {
        unsigned char c = (unsigned char)*name;
        if (c >= 'A' && c <= 'Z')
            c = (unsigned char)(c - 'A' + 'a');
        if (c != (unsigned char)*lower)
            return false;
    }
    return *name == '\0';
}

int weft__enc_parse(const char *name)
{
    static const struct {
        const char *name;
        int enc;
    } names[] = {
        {"utf8", WEFT__ENC_UTF8},     {"utf-8", WEFT__ENC_UTF8},
        {"ascii", WEFT__ENC_ASCII},   {"latin1", WEFT__ENC_LATIN1},
        {"binary", WEFT__ENC_LATIN1}, {"base64", WEFT__ENC_BASE64},
        {"hex", WEFT__ENC_HEX},       {"base64url", WEFT__ENC_BASE64URL},
    };

    if (name == NULL)
        return WEFT__ENC_RAW;
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        if (name_equals(name, names[i].name))
            return names[i].enc;
    return WEFT_EENCODING;
}

/* ---- utf8 decoding ------------------------------------------------------- */

static const char replacement[3] = {'\xEF', '\xBF', '\xBD'}; /* U+FFFD */

#define HIGH_BITS 0x8080808080808080ull

static inline uint64_t load64(const uint8_t *p)
{
    uint64_t v;
    memcpy(&v, p, sizeof(v));
    return v;
}

static inline bool is_cont(uint8_t b)
{
    return (b & 0xC0) == 0x80;
}

/*
 * At a character boundary: the length (1..4) of the well-formed character
 * at `p`, or 0 with *bad set to the length of the maximal subpart to
 * replace by one U+FFFD (a lead byte plus the continuation bytes that
 * were still acceptable after it, or a lone byte). The rules are the
 * WHATWG decoder's, which is what V8 applies when Node makes a string.
 */
static inline size_t utf8_char(const uint8_t *p, size_t avail, size_t *bad)
{
    uint8_t b = p[0], lo = 0x80, hi = 0xBF;
    size_t n;

    if (b < 0x80)
        return 1;
    if (b >= 0xC2 && b <= 0xDF) {
        n = 2;
    } else if (b >= 0xE0 && b <= 0xEF) {
        /* E0 would be overlong below A0; ED would be a surrogate. */
        n = 3;
        if (b == 0xE0)
            lo = 0xA0;
        if (b == 0xED)
            hi = 0x9F;
    } else if (b >= 0xF0 && b <= 0xF4) {
        /* F0 would be overlong below 90; F4 beyond U+10FFFF above 8F. */
        n = 4;
        if (b == 0xF0)
            lo = 0x90;
        if (b == 0xF4)
            hi = 0x8F;
    } else {
        /* 80..BF stray continuation, C0/C1 overlong, F5..FF too big. */
        *bad = 1;
        return 0;
    }
    if (avail < 2 || p[1] < lo || p[1] > hi) {
        *bad = 1;
        return 0;
    }
    for (size_t k = 2; k < n; k++) {
        if (avail <= k || !is_cont(p[k])) {
            *bad = k;
            return 0;
        }
    }
    return n;
}

/*
 * The fast path validates 16-byte blocks. Its state says what the next
 * block owes the current one (continuation bytes of a character that
 * straddles the cut); BLOCK_START means a character boundary.
 * utf8_block() returns false, changing nothing, when a block holds an
 * error; utf8_char() then finds where, and what to replace.
 *
 * Measured on this project's machine (bench/utf8_decode.c): the DFA gave
 * 1.7-1.9 GB/s on mixed text; an SSE2 version checking byte classes with
 * masks was slower (1.4 GB/s, about 6 instructions a byte), and running
 * two DFA chains in lockstep gained nothing: the loads, not the chain of
 * shifts, are the limit.
 */
#define BLOCK 16

/*
 * A DFA over bytes, one shift per byte: each state is a multiple of 6,
 * and the row of a byte holds, in the 6 bits at offset S, the state that
 * follows state S. ERROR is 0, so every row's low 6 bits are 0 and the
 * state stays ERROR once reached.
 */
enum {
    DFA_ERROR = 0,
    DFA_ACCEPT = 6,
    DFA_CONT1 = 12, /* one continuation byte (80..BF) to go */
    DFA_CONT2 = 18,
    DFA_CONT3 = 24,
    DFA_E0 = 30, /* after E0: A0..BF, then one more */
    DFA_ED = 36, /* after ED: 80..9F, then one more */
    DFA_F0 = 42, /* after F0: 90..BF, then two more */
    DFA_F4 = 48, /* after F4: 80..8F, then two more */
};
#define BLOCK_START DFA_ACCEPT

#define DFA_T(from, to) ((uint64_t)(to) << (from))
#define DFA_ANY_CONT                                                           \
    (DFA_T(DFA_CONT1, DFA_ACCEPT) | DFA_T(DFA_CONT2, DFA_CONT1) |              \
     DFA_T(DFA_CONT3, DFA_CONT2))
#define ROW_ASCII DFA_T(DFA_ACCEPT, DFA_ACCEPT)
#define ROW_80_8F                                                              \
    (DFA_ANY_CONT | DFA_T(DFA_ED, DFA_CONT1) | DFA_T(DFA_F4, DFA_CONT2))
#define ROW_90_9F                                                              \
    (DFA_ANY_CONT | DFA_T(DFA_ED, DFA_CONT1) | DFA_T(DFA_F0, DFA_CONT2))
#define ROW_A0_BF                                                              \
    (DFA_ANY_CONT | DFA_T(DFA_E0, DFA_CONT1) | DFA_T(DFA_F0, DFA_CONT2))
#define ROW_NEVER 0 /* C0, C1, F5..FF */
#define ROW_LEAD2 DFA_T(DFA_ACCEPT, DFA_CONT1)
#define ROW_E0    DFA_T(DFA_ACCEPT, DFA_E0)
#define ROW_LEAD3 DFA_T(DFA_ACCEPT, DFA_CONT2)
#define ROW_ED    DFA_T(DFA_ACCEPT, DFA_ED)
#define ROW_F0    DFA_T(DFA_ACCEPT, DFA_F0)
#define ROW_LEAD4 DFA_T(DFA_ACCEPT, DFA_CONT3)
#define ROW_F4    DFA_T(DFA_ACCEPT, DFA_F4)

/* clang-format off */
#define R8(x) x, x, x, x, x, x, x, x
#define R16(x) R8(x), R8(x)
static const uint64_t dfa[256] = {
    R16(ROW_ASCII), R16(ROW_ASCII), R16(ROW_ASCII), R16(ROW_ASCII), /* 00 */
    R16(ROW_ASCII), R16(ROW_ASCII), R16(ROW_ASCII), R16(ROW_ASCII), /* 40 */
    R16(ROW_80_8F),                                                 /* 80 */
    R16(ROW_90_9F),                                                 /* 90 */
    R16(ROW_A0_BF), R16(ROW_A0_BF),                                 /* A0 */
    ROW_NEVER, ROW_NEVER, ROW_LEAD2, ROW_LEAD2,                     /* C0 */
    ROW_LEAD2, ROW_LEAD2, ROW_LEAD2, ROW_LEAD2,
    R8(ROW_LEAD2),
    R16(ROW_LEAD2),                                                 /* D0 */
    ROW_E0, ROW_LEAD3, ROW_LEAD3, ROW_LEAD3,                        /* E0 */
    ROW_LEAD3, ROW_LEAD3, ROW_LEAD3, ROW_LEAD3,
    ROW_LEAD3, ROW_LEAD3, ROW_LEAD3, ROW_LEAD3,
    ROW_LEAD3, ROW_ED, ROW_LEAD3, ROW_LEAD3,
    ROW_F0, ROW_LEAD4, ROW_LEAD4, ROW_LEAD4,                        /* F0 */
    ROW_F4, ROW_NEVER, ROW_NEVER, ROW_NEVER,
    R8(ROW_NEVER),
};
#undef R8
#undef R16
/* clang-format on */

static inline bool utf8_block(const uint8_t *p, uint64_t *state)
{
    uint64_t s = *state;

    if (s == DFA_ACCEPT && ((load64(p) | load64(p + 8)) & HIGH_BITS) == 0)
        return true; /* ASCII at a character boundary */
        /* Unrolled by hand: the shifts form one chain, the loads do not. */
#define STEP(k) s = dfa[p[k]] >> (s & 63)
    /* clang-format off */
    STEP(0); STEP(1); STEP(2); STEP(3); STEP(4); STEP(5); STEP(6); STEP(7);
    STEP(8); STEP(9); STEP(10); STEP(11); STEP(12); STEP(13); STEP(14);
    STEP(15);
    /* clang-format on */
#undef STEP
    s &= 63;
    if (s == DFA_ERROR)
        return false;
    *state = s;
    return true;
}

/*
 * From the character boundary `i`, the boundary where the first
 * ill-formed sequence starts, or `len` if the rest is well-formed (a
 * sequence cut short by the end of `in` counts as ill-formed).
 *
 * Blocks go through utf8_block() until one holds an error; from the last
 * boundary before it the text is walked character by character, as are
 * the last few bytes. *slow_until remembers the end of the failed block
 * so that the next call, after the caller has replaced the error, walks
 * the rest of that block too instead of running the DFA over it again:
 * without it, text with an error every few bytes would cost up to 16
 * DFA passes a byte.
 */
static size_t utf8_valid_until(const uint8_t *in, size_t i, size_t len,
                               size_t *slow_until)
{
    uint64_t state = BLOCK_START;
    size_t n, bad;

    while (i < *slow_until && i < len) {
        if ((n = utf8_char(in + i, len - i, &bad)) == 0)
            return i;
        i += n;
    }
    while (len - i >= BLOCK && utf8_block(in + i, &state))
        i += BLOCK;
    if (len - i >= BLOCK)
        *slow_until = i + BLOCK;
    if (state != BLOCK_START) {
        /* Back to the lead byte of the character open at `i`. */
        do
            i--;
        while (is_cont(in[i]));
    }
    while (i < len) {
        if ((n = utf8_char(in + i, len - i, &bad)) == 0)
            return i;
        i += n;
    }
    return len;
}

/*
 * Decodes `in` as a complete text (its end is the end of input) into `out`
 * and returns the bytes written: well-formed characters are copied, each
 * maximal subpart of an ill-formed one becomes U+FFFD. Valid runs are
 * copied with one memcpy each, never byte by byte.
 */
static size_t utf8_text(const uint8_t *in, size_t len, char *out)
{
    size_t i = 0, o = 0, slow_until = 0;

    for (;;) {
        size_t end = utf8_valid_until(in, i, len, &slow_until), bad = 0;

        if (end > i) {
            memcpy(out + o, in + i, end - i);
            o += end - i;
        }
        if (end == len)
            return o;
        (void)utf8_char(in + end, len - end, &bad);
        out[o++] = replacement[0];
        out[o++] = replacement[1];
        out[o++] = replacement[2];
        i = end + bad;
    }
}

/*
 * How many bytes at the end of a chunk to hold back, as Node's
 * StringDecoder decides it (src/string_decoder.cc, read for behaviour):
 * if the chunk ends inside a sequence whose lead byte (found at most three
 * bytes back) announces more bytes than the chunk has, the lead and what
 * follows it wait for the next chunk. The lead is judged by its bit
 * pattern only (110xxxxx: 2, 1110xxxx: 3, 11110xxx: 4), so C0, C1 and
 * F5..F7, which can never start a valid character, are held too; the
 * next chunk then turns them into U+FFFD. Holding exactly what Node holds
 * makes every 'data' payload equal to Node's, not just their sum.
 *
 * Returns the count to hold (0..3) and sets *need to the announced length.
 */
static size_t utf8_tail(const uint8_t *in, size_t len, uint8_t *need)
{
    size_t back = 0;

    if (len == 0 || (in[len - 1] & 0x80) == 0)
        return 0;
    for (size_t i = len; i-- > 0;) {
        uint8_t b = in[i];
        size_t n;

        back++;
        if (is_cont(b)) {
            if (back >= 4 || i == 0)
                return 0;
            continue;
        }
        if ((b & 0xE0) == 0xC0)
            n = 2;
        else if ((b & 0xF0) == 0xE0)
            n = 3;
        else if ((b & 0xF8) == 0xF0)
            n = 4;
        else
            return 0;
        if (back >= n)
            return 0;
        *need = (uint8_t)n;
        return back;
    }
    return 0;
}

/*
 * One chunk of utf8. A held sequence is first completed from the head of
 * the chunk, but only with continuation bytes: the first other byte ends
 * it early. The held bytes are then decoded on their own, the rest of the
 * chunk likewise, minus its own incomplete tail.
 *
 * Why the output never depends on where chunks were cut: the held bytes
 * are a lead plus continuation bytes, and they are decoded alone only
 * when the sequence is complete or the next byte is not a continuation
 * byte; either way the WHATWG decoder would have ended that sequence (or
 * its maximal subpart) at the same place in the whole text. The body
 * before a held tail ends just before a lead byte, which likewise ends
 * any sequence still open there. Node 20 behaves the same, checked by
 * tests/vectors/ and the property tests.
 */
static size_t utf8_decode(weft__decoder *d, const uint8_t *in, size_t len,
                          char *out)
{
    size_t o = 0, hold;
    uint8_t need = 0;

    if (len == 0)
        return 0; /* `in` may be NULL; what is held stays held */
    if (d->have > 0) {
        /* need <= 4 always; the second bound says so to the compiler,
         * whose -O2 stringop check cannot see it. */
        while (len > 0 && d->have < d->need && d->have < sizeof(d->part) &&
               is_cont(*in)) {
            d->part[d->have++] = *in++;
            len--;
        }
        if (len == 0 && d->have < d->need)
            return 0;
        o = utf8_text(d->part, d->have, out);
        d->have = 0;
        d->need = 0;
    }
    if (len == 0)
        return o;
    hold = utf8_tail(in, len, &need);
    o += utf8_text(in, len - hold, out + o);
    memcpy(d->part, in + len - hold, hold);
    d->have = (uint8_t)hold;
    d->need = need;
    return o;
}

/* ---- the other decoders -------------------------------------------------- */

static const char hex_digits[16] = "0123456789abcdef";
static const char b64_std[64] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
static const char b64_url[64] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

static size_t ascii_decode(const uint8_t *in, size_t len, char *out)
{
    /* Node clears the high bit of each byte: 0xE9 becomes 'i'. */
    for (size_t i = 0; i < len; i++)
        out[i] = (char)(in[i] & 0x7F);
    return len;
}

static size_t latin1_decode(const uint8_t *in, size_t len, char *out)
{
    size_t o = 0;

    for (size_t i = 0; i < len; i++) {
        if (in[i] < 0x80) {
            out[o++] = (char)in[i];
        } else {
            out[o++] = (char)(0xC0 | (in[i] >> 6));
            out[o++] = (char)(0x80 | (in[i] & 0x3F));
        }
    }
    return o;
}

static size_t hex_decode(const uint8_t *in, size_t len, char *out)
{
    for (size_t i = 0; i < len; i++) {
        out[2 * i] = hex_digits[in[i] >> 4];
        out[2 * i + 1] = hex_digits[in[i] & 0x0F];
    }
    return 2 * len;
}

/* Writes the text of 1 to 3 bytes; padded with '=' to 4 chars if asked. */
static size_t b64_group(const uint8_t *g, size_t n, const char *alphabet,
                        bool pad, char *out)
{
    uint32_t v = (uint32_t)g[0] << 16;
    size_t o = 0;

    if (n > 1)
        v |= (uint32_t)g[1] << 8;
    if (n > 2)
        v |= g[2];
    out[o++] = alphabet[(v >> 18) & 63];
    out[o++] = alphabet[(v >> 12) & 63];
    if (n > 1)
        out[o++] = alphabet[(v >> 6) & 63];
    else if (pad)
        out[o++] = '=';
    if (n > 2)
        out[o++] = alphabet[v & 63];
    else if (pad)
        out[o++] = '=';
    return o;
}

/* Whole 3-byte groups only; a remainder of 1 or 2 bytes waits in `part`. */
static size_t b64_decode(weft__decoder *d, const uint8_t *in, size_t len,
                         const char *alphabet, char *out)
{
    size_t o = 0, full;

    if (len == 0)
        return 0; /* `in` may be NULL */
    if (d->have > 0) {
        while (len > 0 && d->have < 3) {
            d->part[d->have++] = *in++;
            len--;
        }
        if (d->have < 3)
            return 0;
        o = b64_group(d->part, 3, alphabet, false, out);
        d->have = 0;
    }
    full = len - len % 3;
    for (size_t i = 0; i < full; i += 3)
        o += b64_group(in + i, 3, alphabet, false, out + o);
    memcpy(d->part, in + full, len - full);
    d->have = (uint8_t)(len - full);
    return o;
}

/* ---- decoder interface --------------------------------------------------- */

void weft__decoder_init(weft__decoder *d, int enc)
{
    memset(d, 0, sizeof(*d));
    d->enc = (uint8_t)(enc >= WEFT__ENC_RAW && enc <= WEFT__ENC_BASE64URL
                           ? enc
                           : WEFT__ENC_RAW);
}

size_t weft__decode_max(const weft__decoder *d, size_t len)
{
    size_t n = len + d->have;

    if (n < len || n > SIZE_MAX / 4 - 4)
        return SIZE_MAX;
    switch (d->enc) {
    case WEFT__ENC_UTF8:
        /* Every byte may become its own U+FFFD; valid text never grows. */
        return 3 * n;
    case WEFT__ENC_LATIN1:
    case WEFT__ENC_HEX:
        return 2 * len;
    case WEFT__ENC_BASE64:
    case WEFT__ENC_BASE64URL:
        return (n + 2) / 3 * 4;
    default:
        return len;
    }
}

size_t weft__decode(weft__decoder *d, const uint8_t *in, size_t len, char *out)
{
    switch (d->enc) {
    case WEFT__ENC_UTF8:
        return utf8_decode(d, in, len, out);
    case WEFT__ENC_ASCII:
        return ascii_decode(in, len, out);
    case WEFT__ENC_LATIN1:
        return latin1_decode(in, len, out);
    case WEFT__ENC_HEX:
        return hex_decode(in, len, out);
    case WEFT__ENC_BASE64:
        return b64_decode(d, in, len, b64_std, out);
    case WEFT__ENC_BASE64URL:
        return b64_decode(d, in, len, b64_url, out);
    default:
        if (len > 0)
            memcpy(out, in, len);
        return len;
    }
}

size_t weft__decode_end(weft__decoder *d, char *out)
{
    size_t o = 0;

    if (d->have == 0)
        return 0;
    switch (d->enc) {
    case WEFT__ENC_UTF8:
        o = utf8_text(d->part, d->have, out);
        break;
    case WEFT__ENC_BASE64:
        o = b64_group(d->part, d->have, b64_std, true, out);
        break;
    case WEFT__ENC_BASE64URL:
        o = b64_group(d->part, d->have, b64_url, false, out);
        break;
    default:
        break;
    }
    d->have = 0;
    d->need = 0;
    return o;
}

/* ---- encoders ------------------------------------------------------------ */

/*
 * Node's base64 alphabet for decoding: both the standard and the URL-safe
 * characters; 0xFF marks everything else, which is skipped, except '='
 * (0xFE), which ends the input.
 */
#define B64_SKIP 0xFF
#define B64_STOP 0xFE

static uint8_t b64_value(uint8_t c)
{
    if (c >= 'A' && c <= 'Z')
        return (uint8_t)(c - 'A');
    if (c >= 'a' && c <= 'z')
        return (uint8_t)(c - 'a' + 26);
    if (c >= '0' && c <= '9')
        return (uint8_t)(c - '0' + 52);
    if (c == '+' || c == '-')
        return 62;
    if (c == '/' || c == '_')
        return 63;
    if (c == '=')
        return B64_STOP;
    return B64_SKIP;
}

/*
 * Node's Buffer.from(s, 'base64'), for a string whose characters are the
 * bytes of `in`: symbols are taken in order, anything outside both
 * alphabets is skipped, the first '=' ends the input wherever it is, and
 * a final group of 2 or 3 symbols gives 1 or 2 bytes (a lone symbol gives
 * none). Leftover bits are dropped, not checked.
 */
static size_t b64_encode(const char *in, size_t len, uint8_t *out)
{
    const uint8_t *p = (const uint8_t *)in;
    uint32_t acc = 0;
    size_t o = 0, have = 0;

    for (size_t i = 0; i < len; i++) {
        uint8_t v = b64_value(p[i]);
        if (v == B64_STOP)
            break;
        if (v == B64_SKIP)
            continue;
        acc = (acc << 6) | v;
        if (++have == 4) {
            out[o++] = (uint8_t)(acc >> 16);
            out[o++] = (uint8_t)(acc >> 8);
            out[o++] = (uint8_t)acc;
            acc = 0;
            have = 0;
        }
    }
    if (have == 2) {
        out[o++] = (uint8_t)(acc >> 4);
    } else if (have == 3) {
        out[o++] = (uint8_t)(acc >> 10);
        out[o++] = (uint8_t)(acc >> 2);
    }
    return o;
}

static int hex_value(uint8_t c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Node's Buffer.from(s, 'hex'): pairs until the first invalid one. */
static size_t hex_encode(const char *in, size_t len, uint8_t *out)
{
    const uint8_t *p = (const uint8_t *)in;
    size_t o = 0;

    for (size_t i = 0; i + 1 < len; i += 2) {
        int hi = hex_value(p[i]), lo = hex_value(p[i + 1]);
        if (hi < 0 || lo < 0)
            break;
        out[o++] = (uint8_t)(hi << 4 | lo);
    }
    return o;
}

size_t weft__encode_max(int enc, size_t len)
{
    switch (enc) {
    case WEFT__ENC_BASE64:
    case WEFT__ENC_BASE64URL:
        return len / 4 * 3 + len % 4 * 3 / 4;
    case WEFT__ENC_HEX:
        return len / 2;
    default:
        return len;
    }
}

size_t weft__encode(int enc, const char *in, size_t len, uint8_t *out)
{
    switch (enc) {
    case WEFT__ENC_BASE64:
    case WEFT__ENC_BASE64URL:
        return b64_encode(in, len, out);
    case WEFT__ENC_HEX:
        return hex_encode(in, len, out);
    case WEFT__ENC_RAW:
    case WEFT__ENC_UTF8:
    case WEFT__ENC_ASCII:
    case WEFT__ENC_LATIN1:
        /*
         * A C string is already bytes: they are sent unchanged. Node would
         * transcode a JS string (latin1 and ascii keep one byte per
         * character); weft leaves that to the caller.
         */
        if (len > 0)
            memcpy(out, in, len);
        return len;
    default:
        return 0;
    }
}
