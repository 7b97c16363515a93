/*
 * test_encoding.c - src/encoding.c against Node 20's own answers
 * (tests/vectors/, made by tools/gen-vectors.js), against the reference
 * models in fuzz/reference.h, and against itself cut into pieces: for
 * every encoding, decoding a byte string in chunks must give exactly what
 * decoding it whole gives.
 *
 * Every output buffer is allocated at exactly the size weft__decode_max()
 * or weft__encode_max() promises, so under ASan a write past the promise
 * fails the test.
 */
#include "encoding.h"
#include "weft.h"

#include "../fuzz/reference.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef WEFT_SOURCE_DIR
#define WEFT_SOURCE_DIR "."
#endif
#define VECTORS WEFT_SOURCE_DIR "/tests/vectors/"

/*
 * Check's ck_assert_* report every passing assertion to the parent
 * process (a write per call), which costs more than a decode; the hot
 * loops below assert with this instead.
 */
#define REQUIRE(expr)                                                          \
    do {                                                                       \
        if (!(expr))                                                           \
            ck_abort_msg("%s:%d: failed: %s", __FILE__, __LINE__, #expr);      \
    } while (0)

static const int all_encodings[] = {
    WEFT__ENC_RAW, WEFT__ENC_UTF8,   WEFT__ENC_ASCII,     WEFT__ENC_LATIN1,
    WEFT__ENC_HEX, WEFT__ENC_BASE64, WEFT__ENC_BASE64URL,
};
#define N_ENCODINGS (sizeof(all_encodings) / sizeof(all_encodings[0]))

/* ---- helpers ------------------------------------------------------------- */

/* A small deterministic PRNG (xorshift64*), so failures reproduce. */
static uint64_t rng_state = 0x9E3779B97F4A7C15ull;

static uint32_t rnd(void)
{
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return (uint32_t)((rng_state * 0x2545F4914F6CDD1Dull) >> 32);
}

static uint32_t rnd_below(uint32_t n)
{
    return n == 0 ? 0 : rnd() % n;
}

/* Interesting UTF-8 pieces, valid and not, for inputs that hit every rule. */
static size_t utf8_piece(uint8_t *out)
{
    static const uint8_t edges[] = {0x00, 0x41, 0x7F, 0x80, 0x8F, 0x90, 0x9F,
                                    0xA0, 0xBF, 0xC0, 0xC1, 0xC2, 0xDF, 0xE0,
                                    0xE1, 0xEC, 0xED, 0xEE, 0xEF, 0xF0, 0xF1,
                                    0xF3, 0xF4, 0xF5, 0xF7, 0xF8, 0xFF};
    uint32_t cp;

    switch (rnd_below(8)) {
    case 0:
        out[0] = (uint8_t)rnd_below(0x80);
        return 1;
    case 1:
        cp = 0x80 + rnd_below(0x780);
        return ref_put_code_point(cp, (char *)out);
    case 2:
        cp = 0x800 + rnd_below(0xF800);
        if (cp >= 0xD800 && cp <= 0xDFFF)
            cp = 0xFFFD;
        return ref_put_code_point(cp, (char *)out);
    case 3:
        cp = 0x10000 + rnd_below(0x100000);
        return ref_put_code_point(cp, (char *)out);
    case 4: {
        size_t n = ref_put_code_point(0x800 + rnd_below(0x10F800), (char *)out);
        return 1 + rnd_below((uint32_t)n - 1); /* cut short */
    }
    case 5:
        out[0] = 0x80 | (uint8_t)rnd_below(0x40);
        return 1;
    default:
        out[0] = edges[rnd_below(sizeof(edges))];
        return 1;
    }
}

/* Random bytes, mostly UTF-8-flavoured when `enc` is utf8. */
static size_t random_input(int enc, uint8_t *buf, size_t max)
{
    size_t len = rnd_below((uint32_t)max + 1), n = 0;

    if (enc != WEFT__ENC_UTF8 || rnd_below(4) == 0) {
        for (size_t i = 0; i < len; i++)
            buf[i] = (uint8_t)rnd();
        return len;
    }
    while (n + 4 <= len)
        n += utf8_piece(buf + n);
    return n;
}

/* Sorted random cut offsets in 1..len-1; returns how many. */
static size_t random_cuts(size_t len, size_t *cuts)
{
    size_t n = 0;
    uint32_t density = 1 + rnd_below(4);

    for (size_t p = 1; p < len; p++)
        if (rnd_below(8) < density)
            cuts[n++] = p;
    return n;
}

/*
 * Decodes in[0..len) written in pieces cut at `cuts` (ascending offsets),
 * then ends. Returns a malloc'd buffer of the output (*out_len bytes),
 * allocated at exactly the bound weft__decode_max() promised for the whole
 * input, and checks every piece against the bound promised for it. With
 * `own_buffers`, each piece is also decoded into its own allocation of
 * exactly its bound, so that ASan catches a write past any promise; the
 * exhaustive loops skip that for speed.
 */
static char *decode_cut_opt(int enc, const uint8_t *in, size_t len,
                            const size_t *cuts, size_t ncuts, size_t *out_len,
                            bool own_buffers)
{
    weft__decoder d;
    size_t bound, total = 0, prev = 0;
    char *all;

    weft__decoder_init(&d, enc);
    bound = weft__decode_max(&d, len);
    all = malloc(bound + 1);
    REQUIRE(all != NULL);
    for (size_t k = 0; k <= ncuts + 1; k++) {
        size_t end = k < ncuts ? cuts[k] : len, max, n;
        bool last = k == ncuts + 1; /* the end() call */
        char *piece;

        REQUIRE(end >= prev);
        max = weft__decode_max(&d, last ? 0 : end - prev);
        REQUIRE(total + max <= bound);
        piece = own_buffers ? malloc(max + 1) : all + total;
        REQUIRE(piece != NULL);
        n = last ? weft__decode_end(&d, piece)
                 : weft__decode(&d, in + prev, end - prev, piece);
        REQUIRE(n <= max);
        if (own_buffers) {
            memcpy(all + total, piece, n);
            free(piece);
        }
        total += n;
        prev = end;
    }
    REQUIRE(d.have == 0);
    *out_len = total;
    return all;
}

static char *decode_cut(int enc, const uint8_t *in, size_t len,
                        const size_t *cuts, size_t ncuts, size_t *out_len)
{
    return decode_cut_opt(enc, in, len, cuts, ncuts, out_len, true);
}

static char *decode_whole(int enc, const uint8_t *in, size_t len,
                          size_t *out_len)
{
    return decode_cut(enc, in, len, NULL, 0, out_len);
}

static void assert_bytes_eq(const char *what, const void *got, size_t got_len,
                            const void *want, size_t want_len)
{
    if (got_len != want_len || memcmp(got, want, got_len) != 0) {
        fprintf(stderr, "%s: got %zu bytes, want %zu:\n  got  ", what, got_len,
                want_len);
        for (size_t i = 0; i < got_len; i++)
            fprintf(stderr, "%02x", ((const uint8_t *)got)[i]);
        fprintf(stderr, "\n  want ");
        for (size_t i = 0; i < want_len; i++)
            fprintf(stderr, "%02x", ((const uint8_t *)want)[i]);
        fprintf(stderr, "\n");
        ck_abort_msg("%s: output differs", what);
    }
}

/* Decodes the whole input and compares with `want`. */
static void check_decode(int enc, const void *in, size_t len, const void *want,
                         size_t want_len)
{
    size_t n;
    char *out = decode_whole(enc, in, len, &n);
    assert_bytes_eq("decode", out, n, want, want_len);
    free(out);
}

/* ---- vector files -------------------------------------------------------- */

static int hex_nibble(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

/* Parses a hex field ("-" is empty) into a new buffer; NULL if malformed. */
static uint8_t *parse_hex(const char *s, size_t *len)
{
    size_t n = strlen(s);
    uint8_t *out;

    if (strcmp(s, "-") == 0)
        n = 0;
    if (n % 2 != 0)
        return NULL;
    out = malloc(n / 2 + 1);
    if (out == NULL)
        return NULL;
    for (size_t i = 0; i < n / 2; i++) {
        int hi = hex_nibble(s[2 * i]), lo = hex_nibble(s[2 * i + 1]);
        if (hi < 0 || lo < 0) {
            free(out);
            return NULL;
        }
        out[i] = (uint8_t)(hi * 16 + lo);
    }
    *len = n / 2;
    return out;
}

/*
 * Splits `line` in place into at most `max` space-separated fields;
 * returns the count. Comment and blank lines give 0.
 */
static size_t split_fields(char *line, char **fields, size_t max)
{
    size_t n = 0;
    char *save = NULL, *tok;

    line[strcspn(line, "\r\n")] = '\0';
    if (line[0] == '#' || line[0] == '\0')
        return 0;
    for (tok = strtok_r(line, " ", &save); tok != NULL && n < max;
         tok = strtok_r(NULL, " ", &save))
        fields[n++] = tok;
    return n;
}

static FILE *open_vectors(const char *name)
{
    char path[4096];
    FILE *f;

    snprintf(path, sizeof(path), "%s%s", VECTORS, name);
    f = fopen(path, "r");
    ck_assert_msg(f != NULL, "cannot open %s (run node tools/gen-vectors.js)",
                  path);
    return f;
}

static int parse_enc(const char *name)
{
    int enc = weft__enc_parse(name);
    ck_assert_msg(enc > WEFT__ENC_RAW, "vector names unknown encoding %s",
                  name);
    return enc;
}

/*
 * decode.txt: Node's whole-input output. Each vector is checked whole, at
 * every single cut, fed a byte at a time, and (up to 12 bytes) at every
 * set of cuts; all must equal Node's output.
 */
START_TEST(node_decode_vectors_match_whole_and_at_every_cut)
{
    FILE *f = open_vectors("decode.txt");
    char *line = NULL, *fld[4];
    size_t cap = 0, vectors = 0, checks = 0;
    size_t *cuts = malloc(4096 * sizeof(*cuts));

    ck_assert_ptr_nonnull(cuts);
    while (getline(&line, &cap, f) > 0) {
        size_t inlen, wantlen, n;
        uint8_t *in, *want;
        char *out;
        int enc;

        size_t nf = split_fields(line, fld, 4);
        if (nf == 0)
            continue;
        REQUIRE(nf == 3);
        enc = parse_enc(fld[0]);
        in = parse_hex(fld[1], &inlen);
        want = parse_hex(fld[2], &wantlen);
        REQUIRE(in && want && inlen < 4096);

        check_decode(enc, in, inlen, want, wantlen);
        checks++;
        for (size_t c = 0; c <= inlen; c++) {
            cuts[0] = c;
            out = decode_cut(enc, in, inlen, cuts, 1, &n);
            assert_bytes_eq(fld[1], out, n, want, wantlen);
            free(out);
            checks++;
        }
        for (size_t c = 0; c + 1 < inlen; c++)
            cuts[c] = c + 1;
        out = decode_cut(enc, in, inlen, cuts, inlen > 0 ? inlen - 1 : 0, &n);
        assert_bytes_eq(fld[1], out, n, want, wantlen);
        free(out);
        checks++;
        if (inlen >= 2 && inlen <= 12) {
            for (uint32_t mask = 1; mask < (1u << (inlen - 1)); mask++) {
                size_t nc = 0;
                for (size_t b = 0; b + 1 < inlen; b++)
                    if (mask & (1u << b))
                        cuts[nc++] = b + 1;
                out = decode_cut_opt(enc, in, inlen, cuts, nc, &n, false);
                assert_bytes_eq(fld[1], out, n, want, wantlen);
                free(out);
                checks++;
            }
        }
        free(in);
        free(want);
        vectors++;
    }
    free(line);
    free(cuts);
    fclose(f);
    fprintf(stderr, "decode.txt: %zu vectors, %zu decodes checked\n", vectors,
            checks);
    REQUIRE(vectors >= 4000);
}
END_TEST

/*
 * decode-chunks.txt: Node's output for each write() of a cut input, then
 * end(). weft must not only produce the same text in total but hand it
 * out in the same pieces, so 'data' events match Node's.
 */
START_TEST(node_decode_vectors_match_each_chunk_output)
{
    FILE *f = open_vectors("decode-chunks.txt");
    char *line = NULL, *fld[5];
    size_t cap = 0, vectors = 0;

    while (getline(&line, &cap, f) > 0) {
        size_t inlen, prev = 0, k = 0;
        char *save = NULL, *want_hex, *cut_s, *csave = NULL;
        uint8_t *in;
        weft__decoder d;

        size_t nf = split_fields(line, fld, 5);
        if (nf == 0)
            continue;
        REQUIRE(nf == 4);
        weft__decoder_init(&d, parse_enc(fld[0]));
        in = parse_hex(fld[1], &inlen);
        REQUIRE(in != NULL);
        cut_s = strcmp(fld[2], "-") == 0 ? NULL : strtok_r(fld[2], ",", &csave);
        for (want_hex = strtok_r(fld[3], ",", &save); want_hex != NULL;
             want_hex = strtok_r(NULL, ",", &save), k++) {
            size_t wantlen, n, end;
            uint8_t *want = parse_hex(want_hex, &wantlen);
            char *out;

            REQUIRE(want != NULL);
            if (prev > inlen) {
                /* Past the last write(): this field is end()'s output. */
                out = malloc(weft__decode_max(&d, 0) + 1);
                n = weft__decode_end(&d, out);
            } else {
                end = cut_s != NULL ? strtoul(cut_s, NULL, 10) : inlen;
                REQUIRE(end <= inlen);
                REQUIRE(end >= prev);
                out = malloc(weft__decode_max(&d, end - prev) + 1);
                n = weft__decode(&d, in + prev, end - prev, out);
                prev = end == inlen ? inlen + 1 : end;
                if (cut_s != NULL)
                    cut_s = strtok_r(NULL, ",", &csave);
            }
            assert_bytes_eq(fld[1], out, n, want, wantlen);
            free(out);
            free(want);
        }
        REQUIRE(prev == inlen + 1 && k >= 2);
        REQUIRE(d.have == 0);
        free(in);
        vectors++;
    }
    free(line);
    fclose(f);
    fprintf(stderr, "decode-chunks.txt: %zu vectors\n", vectors);
    REQUIRE(vectors >= 600);
}
END_TEST

/* encode.txt: Buffer.from(s, enc) for one character per byte of s. */
START_TEST(node_encode_vectors_match)
{
    FILE *f = open_vectors("encode.txt");
    char *line = NULL, *fld[4];
    size_t cap = 0, vectors = 0;

    while (getline(&line, &cap, f) > 0) {
        size_t inlen, wantlen, n, max;
        uint8_t *in, *want, *out;
        char *exact;
        int enc;

        size_t nf = split_fields(line, fld, 4);
        if (nf == 0)
            continue;
        REQUIRE(nf == 3);
        enc = parse_enc(fld[0]);
        in = parse_hex(fld[1], &inlen);
        want = parse_hex(fld[2], &wantlen);
        REQUIRE(in && want);
        /* Exactly `inlen` bytes, not NUL-terminated: overreads trip ASan. */
        exact = malloc(inlen ? inlen : 1);
        memcpy(exact, in, inlen);
        max = weft__encode_max(enc, inlen);
        out = malloc(max ? max : 1);
        n = weft__encode(enc, exact, inlen, out);
        REQUIRE(n <= max);
        assert_bytes_eq(fld[1], out, n, want, wantlen);
        free(exact);
        free(out);
        free(in);
        free(want);
        vectors++;
    }
    free(line);
    fclose(f);
    fprintf(stderr, "encode.txt: %zu vectors\n", vectors);
    ck_assert_uint_ge(vectors, 1100);
}
END_TEST

/* ---- properties ---------------------------------------------------------- */

#define PROP_INPUTS   3000
#define PROP_CUT_SETS 4

/*
 * For every encoding, random inputs decoded in random pieces (and one
 * byte at a time) give what decoding them whole gives, and every piece
 * stays within weft__decode_max().
 */
START_TEST(random_cuts_decode_like_whole_for_every_encoding)
{
    uint8_t in[300];
    size_t cuts[300];
    size_t checks = 0;

    for (size_t e = 0; e < N_ENCODINGS; e++) {
        int enc = all_encodings[e];
        for (int t = 0; t < PROP_INPUTS; t++) {
            size_t len = random_input(enc, in, t % 10 == 0 ? 256 : 40);
            size_t wlen, n;
            char *whole = decode_whole(enc, in, len, &wlen);

            for (int s = 0; s < PROP_CUT_SETS; s++) {
                size_t nc = random_cuts(len, cuts);
                char *out = decode_cut(enc, in, len, cuts, nc, &n);
                assert_bytes_eq("random cuts", out, n, whole, wlen);
                free(out);
                checks++;
            }
            for (size_t c = 0; c + 1 < len; c++)
                cuts[c] = c + 1;
            {
                char *out =
                    decode_cut(enc, in, len, cuts, len ? len - 1 : 0, &n);
                assert_bytes_eq("byte at a time", out, n, whole, wlen);
                free(out);
                checks++;
            }
            free(whole);
        }
    }
    fprintf(stderr, "split==whole: %zu cut decodes over %zu inputs\n", checks,
            (size_t)PROP_INPUTS * N_ENCODINGS);
}
END_TEST

/*
 * Every string of up to 4 bytes over the bytes where UTF-8's rules
 * change, decoded whole and at every set of cuts, equals the WHATWG
 * reference decoder's output.
 */
START_TEST(utf8_all_short_strings_match_reference_at_every_cut_set)
{
    static const uint8_t alpha[] = {
        0x00, 0x41, 0x7F, 0x80, 0x8F, 0x90, 0x9F, 0xA0, 0xBF, 0xC0, 0xC1,
        0xC2, 0xDF, 0xE0, 0xE1, 0xED, 0xEF, 0xF0, 0xF4, 0xF5, 0xF8, 0xFF};
    const size_t A = sizeof(alpha);
    size_t checks = 0;

    for (size_t len = 0; len <= 4; len++) {
        size_t total = 1;
        for (size_t i = 0; i < len; i++)
            total *= A;
        for (size_t x = 0; x < total; x++) {
            uint8_t in[4];
            char want[16];
            size_t y = x, wlen, cuts[3];

            for (size_t i = 0; i < len; i++, y /= A)
                in[i] = alpha[y % A];
            wlen = ref_utf8_decode(in, len, want);
            for (uint32_t mask = 0; mask < (len ? 1u << (len - 1) : 1u);
                 mask++) {
                size_t nc = 0, n;
                char *out;
                for (size_t b = 0; b + 1 < len; b++)
                    if (mask & (1u << b))
                        cuts[nc++] = b + 1;
                out = decode_cut_opt(WEFT__ENC_UTF8, in, len, cuts, nc, &n,
                                     false);
                assert_bytes_eq("short utf8", out, n, want, wlen);
                free(out);
                checks++;
            }
        }
    }
    fprintf(stderr, "utf8 short strings: %zu decodes checked\n", checks);
}
END_TEST

/* Every 2-byte string, whole and cut in the middle, against the reference. */
START_TEST(utf8_every_two_byte_string_matches_reference)
{
    for (unsigned a = 0; a < 256; a++) {
        for (unsigned b = 0; b < 256; b++) {
            uint8_t in[2] = {(uint8_t)a, (uint8_t)b};
            char want[8];
            size_t wlen = ref_utf8_decode(in, 2, want), n, cut = 1;
            char *out = decode_whole(WEFT__ENC_UTF8, in, 2, &n);
            assert_bytes_eq("two bytes", out, n, want, wlen);
            free(out);
            out = decode_cut(WEFT__ENC_UTF8, in, 2, &cut, 1, &n);
            assert_bytes_eq("two bytes cut", out, n, want, wlen);
            free(out);
        }
    }
}
END_TEST

/* Long random inputs (which exercise the 16-byte ASCII path) vs reference. */
START_TEST(utf8_random_inputs_match_reference)
{
    static uint8_t in[4096];
    static char want[3 * 4096];

    for (int t = 0; t < 2000; t++) {
        size_t len = random_input(WEFT__ENC_UTF8, in, t % 20 == 0 ? 4000 : 200);
        size_t wlen, n;
        char *out;

        /* Long ASCII runs around the multi-byte pieces. */
        if (t % 3 == 0)
            for (size_t i = 0; i < len; i++)
                if (rnd_below(8) != 0)
                    in[i] = (uint8_t)(0x20 + rnd_below(0x5F));
        wlen = ref_utf8_decode(in, len, want);
        out = decode_whole(WEFT__ENC_UTF8, in, len, &n);
        assert_bytes_eq("random utf8", out, n, want, wlen);
        free(out);
    }
}
END_TEST

/*
 * The fast path checks 16-byte blocks: short strings (valid and not)
 * placed at every offset across a block boundary, inside ASCII or inside
 * multi-byte text, must still decode as the reference says.
 */
START_TEST(utf8_sequences_at_every_block_offset_match_reference)
{
    static const uint8_t alpha[] = {0x41, 0x80, 0x8F, 0x90, 0x9F, 0xA0,
                                    0xBF, 0xC0, 0xC2, 0xDF, 0xE0, 0xE1,
                                    0xED, 0xEF, 0xF0, 0xF3, 0xF4, 0xF5};
    const size_t A = sizeof(alpha);
    uint8_t in[64];
    char want[3 * 64];
    size_t checks = 0;

    for (int fill = 0; fill < 2; fill++) {
        for (size_t x = 0; x < A * A * A; x++) {
            for (size_t off = 10; off <= 34; off++) {
                size_t n, wlen;
                char *out;

                /* ASCII, or U+00E9 (C3 A9) pairs; odd offsets split one. */
                for (size_t i = 0; i < sizeof(in); i++)
                    in[i] = fill ? (i % 2 ? 0xA9 : 0xC3) : 'a';
                in[off] = alpha[x % A];
                in[off + 1] = alpha[x / A % A];
                in[off + 2] = alpha[x / A / A];
                wlen = ref_utf8_decode(in, sizeof(in), want);
                out = decode_cut_opt(WEFT__ENC_UTF8, in, sizeof(in), NULL, 0,
                                     &n, false);
                assert_bytes_eq("block offset", out, n, want, wlen);
                free(out);
                checks++;
            }
        }
    }
    fprintf(stderr, "utf8 block offsets: %zu decodes checked\n", checks);
}
END_TEST

/*
 * Random inputs in random pieces: each write() gives exactly what the
 * model of Node's StringDecoder gives (per 'data' event, not in total).
 */
START_TEST(utf8_random_chunks_match_node_model_per_write)
{
    uint8_t in[300];
    size_t cuts[300];
    char got[1024], want[1024];

    for (int t = 0; t < 5000; t++) {
        size_t len = random_input(WEFT__ENC_UTF8, in, t % 10 ? 40 : 256);
        size_t nc = random_cuts(len, cuts), prev = 0, n, m;
        struct ref_node_utf8 model = {{0}, 0, 0};
        weft__decoder d;

        weft__decoder_init(&d, WEFT__ENC_UTF8);
        for (size_t k = 0; k <= nc; k++) {
            size_t end = k < nc ? cuts[k] : len;
            n = weft__decode(&d, in + prev, end - prev, got);
            m = ref_node_utf8_write(&model, in + prev, end - prev, want);
            assert_bytes_eq("write", got, n, want, m);
            prev = end;
        }
        n = weft__decode_end(&d, got);
        m = ref_node_utf8_end(&model, want);
        assert_bytes_eq("end", got, n, want, m);
    }
}
END_TEST

/* Valid UTF-8, however it is cut, comes out byte for byte unchanged. */
START_TEST(utf8_valid_text_passes_through_unchanged)
{
    uint8_t in[1024];
    size_t cuts[1024];

    for (int t = 0; t < 2000; t++) {
        size_t len = 0, n, nc;
        char *out;
        size_t want = rnd_below(200);

        while (len + 4 <= sizeof(in) && len < want) {
            uint32_t cp;
            switch (rnd_below(4)) {
            case 0:
                cp = rnd_below(0x80);
                break;
            case 1:
                cp = 0x80 + rnd_below(0x780);
                break;
            case 2:
                cp = 0x800 + rnd_below(0xF800);
                if (cp >= 0xD800 && cp <= 0xDFFF)
                    cp = 0xE000;
                break;
            default:
                cp = 0x10000 + rnd_below(0x100000);
                break;
            }
            len += ref_put_code_point(cp, (char *)in + len);
        }
        REQUIRE(ref_utf8_valid(in, len));
        nc = random_cuts(len, cuts);
        out = decode_cut(WEFT__ENC_UTF8, in, len, cuts, nc, &n);
        assert_bytes_eq("valid utf8", out, n, in, len);
        free(out);
    }
}
END_TEST

/* base64/base64url/hex decoders against the bit-stream reference. */
START_TEST(base64_and_hex_decoders_match_reference)
{
    uint8_t in[300];
    char want[1024];

    for (int t = 0; t < 3000; t++) {
        size_t len = random_input(WEFT__ENC_RAW, in, 64), wlen, n;
        char *out;

        wlen = ref_base64_text(in, len, false, want);
        out = decode_whole(WEFT__ENC_BASE64, in, len, &n);
        assert_bytes_eq("base64", out, n, want, wlen);
        free(out);
        wlen = ref_base64_text(in, len, true, want);
        out = decode_whole(WEFT__ENC_BASE64URL, in, len, &n);
        assert_bytes_eq("base64url", out, n, want, wlen);
        free(out);
        wlen = 0;
        for (size_t i = 0; i < len; i++)
            wlen += (size_t)snprintf(want + wlen, 3, "%02x", in[i]);
        out = decode_whole(WEFT__ENC_HEX, in, len, &n);
        assert_bytes_eq("hex", out, n, want, wlen);
        free(out);
    }
}
END_TEST

/* Random strings through base64 and hex encoders vs the references. */
START_TEST(base64_and_hex_encoders_match_reference)
{
    static const char alpha[] = "ABCXYZabcxyz0189+/-_= \n\t.*\x80\xff";
    uint8_t want[300], *out;
    char *in;

    for (int t = 0; t < 20000; t++) {
        size_t len = rnd_below(t % 50 == 0 ? 256 : 24), wlen, n;

        in = malloc(len ? len : 1);
        for (size_t i = 0; i < len; i++)
            in[i] = rnd_below(4) == 0 ? (char)rnd()
                                      : alpha[rnd_below(sizeof(alpha) - 1)];
        if (t % 2 == 0) /* mostly hex digits, for the hex encoder */
            for (size_t i = 0; i < len; i++)
                if (rnd_below(16) != 0)
                    in[i] = "0123456789abcdefABCDEF"[rnd_below(22)];
        out = malloc(weft__encode_max(WEFT__ENC_BASE64, len) + 1);
        wlen = ref_base64_bytes((const uint8_t *)in, len, want);
        n = weft__encode(WEFT__ENC_BASE64, in, len, out);
        REQUIRE(n <= weft__encode_max(WEFT__ENC_BASE64, len));
        assert_bytes_eq("base64 encode", out, n, want, wlen);
        n = weft__encode(WEFT__ENC_BASE64URL, in, len, out);
        assert_bytes_eq("base64url encode", out, n, want, wlen);
        free(out);
        out = malloc(weft__encode_max(WEFT__ENC_HEX, len) + 1);
        wlen = ref_hex_bytes((const uint8_t *)in, len, want);
        n = weft__encode(WEFT__ENC_HEX, in, len, out);
        REQUIRE(n <= weft__encode_max(WEFT__ENC_HEX, len));
        assert_bytes_eq("hex encode", out, n, want, wlen);
        free(out);
        free(in);
    }
}
END_TEST

/* Bytes -> base64 text (decoder) -> bytes (encoder) is the identity. */
START_TEST(base64_text_round_trips_through_encoder)
{
    uint8_t in[300], back[300];

    for (int t = 0; t < 3000; t++) {
        size_t len = random_input(WEFT__ENC_RAW, in, 200), n, m;
        for (int url = 0; url < 2; url++) {
            char *text = decode_whole(
                url ? WEFT__ENC_BASE64URL : WEFT__ENC_BASE64, in, len, &n);
            m = weft__encode(WEFT__ENC_BASE64, text, n, back);
            assert_bytes_eq("round trip", back, m, in, len);
            free(text);
        }
        {
            char *text = decode_whole(WEFT__ENC_HEX, in, len, &n);
            m = weft__encode(WEFT__ENC_HEX, text, n, back);
            assert_bytes_eq("hex round trip", back, m, in, len);
            free(text);
        }
    }
}
END_TEST

/* ---- utf8: named behaviours ---------------------------------------------- */

#define FFFD "\xEF\xBF\xBD"
#define CHECK(enc, in, want)                                                   \
    check_decode(enc, in, sizeof(in) - 1, want, sizeof(want) - 1)

START_TEST(utf8_overlong_two_byte_form_gives_two_replacements)
{
    CHECK(WEFT__ENC_UTF8, "\xC0\x80", FFFD FFFD);
    CHECK(WEFT__ENC_UTF8, "\xC1\xBF", FFFD FFFD);
}
END_TEST

START_TEST(utf8_overlong_three_and_four_byte_forms_replace_each_byte)
{
    CHECK(WEFT__ENC_UTF8, "\xE0\x80\x80", FFFD FFFD FFFD);
    CHECK(WEFT__ENC_UTF8, "\xE0\x9F\xBF", FFFD FFFD FFFD);
    CHECK(WEFT__ENC_UTF8, "\xF0\x8F\xBF\xBF", FFFD FFFD FFFD FFFD);
}
END_TEST

START_TEST(utf8_surrogates_replace_each_byte)
{
    CHECK(WEFT__ENC_UTF8, "\xED\xA0\x80", FFFD FFFD FFFD);
    CHECK(WEFT__ENC_UTF8, "\xED\xBF\xBF", FFFD FFFD FFFD);
    CHECK(WEFT__ENC_UTF8, "\xED\x9F\xBF", "\xED\x9F\xBF"); /* U+D7FF */
}
END_TEST

START_TEST(utf8_above_10FFFF_replaces_each_byte)
{
    CHECK(WEFT__ENC_UTF8, "\xF4\x90\x80\x80", FFFD FFFD FFFD FFFD);
    CHECK(WEFT__ENC_UTF8, "\xF4\x8F\xBF\xBF", "\xF4\x8F\xBF\xBF");
    CHECK(WEFT__ENC_UTF8, "\xF5\x80\x80\x80", FFFD FFFD FFFD FFFD);
}
END_TEST

START_TEST(utf8_bytes_F5_to_FF_and_C0_C1_are_one_replacement_each)
{
    static const uint8_t never[] = {0xC0, 0xC1, 0xF5, 0xF6, 0xF7, 0xF8, 0xF9,
                                    0xFA, 0xFB, 0xFC, 0xFD, 0xFE, 0xFF};
    for (size_t i = 0; i < sizeof(never); i++) {
        uint8_t in[2] = {never[i], 'a'};
        check_decode(WEFT__ENC_UTF8, in, 2, FFFD "a", 4);
    }
}
END_TEST

START_TEST(utf8_stray_continuation_bytes_replace_one_each)
{
    CHECK(WEFT__ENC_UTF8,
          "a\x80\xBF"
          "b",
          "a" FFFD FFFD "b");
    CHECK(WEFT__ENC_UTF8, "\xC3\xA9\xA9", "\xC3\xA9" FFFD);
}
END_TEST

START_TEST(utf8_truncated_sequence_then_ascii_is_one_replacement)
{
    CHECK(WEFT__ENC_UTF8,
          "\xE2\x82"
          "A",
          FFFD "A");
    CHECK(WEFT__ENC_UTF8,
          "\xF0\x9F\x98"
          "A",
          FFFD "A");
    CHECK(WEFT__ENC_UTF8, "\xF0\x9F\xC3\xA9", FFFD "\xC3\xA9");
}
END_TEST

/* Writes pieces one by one, checking each output, then end(). */
static void check_pieces(int enc, const char *const *pieces,
                         const char *const *outs, const char *end_out)
{
    weft__decoder d;
    char buf[64];
    size_t n;

    weft__decoder_init(&d, enc);
    for (size_t i = 0; pieces[i] != NULL; i++) {
        size_t len = strlen(pieces[i]);
        ck_assert_uint_le(weft__decode_max(&d, len), sizeof(buf));
        n = weft__decode(&d, (const uint8_t *)pieces[i], len, buf);
        assert_bytes_eq(pieces[i], buf, n, outs[i], strlen(outs[i]));
    }
    n = weft__decode_end(&d, buf);
    assert_bytes_eq("end", buf, n, end_out, strlen(end_out));
}

START_TEST(utf8_euro_split_in_three_is_delivered_with_last_chunk)
{
    /* Octal escapes: "\xACb" would read as one hex escape. */
    const char *in[] = {"a\342", "\202", "\254b", NULL};
    const char *out[] = {"a", "", "\342\202\254b"};
    check_pieces(WEFT__ENC_UTF8, in, out, "");
}
END_TEST

START_TEST(utf8_emoji_split_in_two_is_delivered_with_later_chunk)
{
    const char *in[] = {"\xF0\x9F", "\x98\x80", NULL};
    const char *out[] = {"", "\xF0\x9F\x98\x80"};
    check_pieces(WEFT__ENC_UTF8, in, out, "");
}
END_TEST

START_TEST(utf8_truncated_sequence_at_end_is_flushed_as_one_replacement)
{
    const char *in[] = {"ok\xF0\x9F\x98", NULL};
    const char *out[] = {"ok"};
    check_pieces(WEFT__ENC_UTF8, in, out, FFFD);
}
END_TEST

START_TEST(utf8_held_sequence_cut_short_by_next_chunk_becomes_replacement)
{
    const char *in[] = {"\xE2\x82", "x", NULL};
    const char *out[] = {"", FFFD "x"};
    check_pieces(WEFT__ENC_UTF8, in, out, "");
}
END_TEST

/* Node holds any byte shaped like a lead, even C0, which never is one. */
START_TEST(utf8_lead_shaped_C0_is_held_like_node_then_replaced)
{
    const char *in[] = {"a\xC0", "\200b", NULL};
    const char *out[] = {"a", FFFD FFFD "b"};
    check_pieces(WEFT__ENC_UTF8, in, out, "");
}
END_TEST

START_TEST(utf8_empty_write_keeps_held_bytes)
{
    const char *in[] = {"\xC3", "", "\xA9", NULL};
    const char *out[] = {"", "", "\xC3\xA9"};
    check_pieces(WEFT__ENC_UTF8, in, out, "");
}
END_TEST

START_TEST(utf8_decoder_starts_clean_after_end)
{
    weft__decoder d;
    char buf[16];
    size_t n;

    weft__decoder_init(&d, WEFT__ENC_UTF8);
    ck_assert_uint_eq(weft__decode(&d, (const uint8_t *)"\xE2\x82", 2, buf), 0);
    ck_assert_uint_eq(weft__decode_end(&d, buf), 3);
    ck_assert_uint_eq(weft__decode_end(&d, buf), 0);
    n = weft__decode(&d, (const uint8_t *)"\xAC", 1, buf);
    assert_bytes_eq("after end", buf, n, FFFD, 3);
}
END_TEST

START_TEST(utf8_long_ascii_text_passes_through)
{
    char in[1000];
    for (size_t i = 0; i < sizeof(in); i++)
        in[i] = (char)(0x20 + i % 0x5F);
    check_decode(WEFT__ENC_UTF8, in, sizeof(in), in, sizeof(in));
    in[997] = (char)0x80; /* an error after a long fast-path run */
    {
        char want[1002];
        memcpy(want, in, 997);
        memcpy(want + 997, FFFD, 3);
        memcpy(want + 1000, in + 998, 2);
        check_decode(WEFT__ENC_UTF8, in, sizeof(in), want, sizeof(want));
    }
}
END_TEST

/* ---- other decoders ------------------------------------------------------ */

START_TEST(ascii_clears_the_high_bit)
{
    CHECK(WEFT__ENC_ASCII, "A\xFF\x80\xC3\xA9",
          "A\x7F\x00"
          "C)");
}
END_TEST

START_TEST(latin1_high_bytes_become_two_byte_utf8)
{
    CHECK(WEFT__ENC_LATIN1, "A\xE9\xFF\x80", "A\xC3\xA9\xC3\xBF\xC2\x80");
}
END_TEST

START_TEST(hex_writes_lowercase_pairs)
{
    CHECK(WEFT__ENC_HEX, "\x01\xAB\xFF", "01abff");
}
END_TEST

START_TEST(base64_carries_remainder_and_pads_at_end)
{
    const char *in[] = {"\x01", "\x02", "\x03\x04", NULL};
    const char *out[] = {"", "", "AQID"};
    check_pieces(WEFT__ENC_BASE64, in, out, "BA==");
}
END_TEST

START_TEST(base64url_uses_url_alphabet_without_padding)
{
    const char *in[] = {"\xFB\xFF", "\xBF\x04\xFF", NULL};
    const char *out[] = {"", "-_-_"};
    check_pieces(WEFT__ENC_BASE64URL, in, out, "BP8");
}
END_TEST

START_TEST(raw_decoder_copies_bytes)
{
    CHECK(WEFT__ENC_RAW, "a\x00\xFF", "a\x00\xFF");
}
END_TEST

START_TEST(unknown_encoding_number_decodes_as_raw)
{
    weft__decoder d;
    weft__decoder_init(&d, 99);
    ck_assert_int_eq(d.enc, WEFT__ENC_RAW);
    weft__decoder_init(&d, -3);
    ck_assert_int_eq(d.enc, WEFT__ENC_RAW);
}
END_TEST

/* write(NULL, 0) is a no-op in every encoding, even with bytes held. */
START_TEST(empty_write_with_null_pointer_changes_nothing)
{
    for (size_t e = 0; e < N_ENCODINGS; e++) {
        weft__decoder d;
        char out[16];
        uint8_t one = 0xE2;
        uint8_t out8[4];

        weft__decoder_init(&d, all_encodings[e]);
        ck_assert_uint_eq(weft__decode(&d, NULL, 0, out), 0);
        (void)weft__decode(&d, &one, 1, out);
        {
            uint8_t have = d.have;
            ck_assert_uint_eq(weft__decode(&d, NULL, 0, out), 0);
            ck_assert_uint_eq(d.have, have);
        }
        ck_assert_uint_eq(weft__encode(all_encodings[e], NULL, 0, out8), 0);
    }
}
END_TEST

START_TEST(decoder_state_fits_in_eight_bytes)
{
    ck_assert_uint_le(sizeof(weft__decoder), 8);
}
END_TEST

START_TEST(decode_max_covers_held_bytes)
{
    weft__decoder d;
    char buf[32];

    weft__decoder_init(&d, WEFT__ENC_UTF8);
    weft__decode(&d, (const uint8_t *)"\xF0\x9F\x98", 3, buf);
    ck_assert_uint_ge(weft__decode_max(&d, 0), 9);
    ck_assert_uint_ge(weft__decode_max(&d, 1), 12);
    weft__decoder_init(&d, WEFT__ENC_BASE64);
    weft__decode(&d, (const uint8_t *)"\x01\x02", 2, buf);
    ck_assert_uint_ge(weft__decode_max(&d, 0), 4);
    ck_assert_uint_ge(weft__decode_max(&d, 2), 8);
    ck_assert_uint_eq(weft__decode_max(&d, SIZE_MAX), SIZE_MAX);
}
END_TEST

/* ---- names --------------------------------------------------------------- */

START_TEST(enc_parse_knows_node_names_in_any_case)
{
    ck_assert_int_eq(weft__enc_parse("utf8"), WEFT__ENC_UTF8);
    ck_assert_int_eq(weft__enc_parse("UTF-8"), WEFT__ENC_UTF8);
    ck_assert_int_eq(weft__enc_parse("Utf8"), WEFT__ENC_UTF8);
    ck_assert_int_eq(weft__enc_parse("ascii"), WEFT__ENC_ASCII);
    ck_assert_int_eq(weft__enc_parse("latin1"), WEFT__ENC_LATIN1);
    ck_assert_int_eq(weft__enc_parse("BINARY"), WEFT__ENC_LATIN1);
    ck_assert_int_eq(weft__enc_parse("base64"), WEFT__ENC_BASE64);
    ck_assert_int_eq(weft__enc_parse("Base64URL"), WEFT__ENC_BASE64URL);
    ck_assert_int_eq(weft__enc_parse("HEX"), WEFT__ENC_HEX);
}
END_TEST

START_TEST(enc_parse_null_means_raw)
{
    ck_assert_int_eq(weft__enc_parse(NULL), WEFT__ENC_RAW);
}
END_TEST

START_TEST(enc_parse_rejects_unknown_names)
{
    static const char *const bad[] = {"",       "utf",     "utf8 ", " utf8",
                                      "utf-16", "utf16le", "ucs2",  "latin-1",
                                      "base",   "hexx",    "raw",   "buffer"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        ck_assert_int_eq(weft__enc_parse(bad[i]), WEFT_EENCODING);
}
END_TEST

/* ---- encoders ------------------------------------------------------------ */

/* Encodes exactly `len` bytes held in their own allocation (no NUL). */
static void check_encode(int enc, const char *in, size_t len, const void *want,
                         size_t want_len)
{
    char *exact = malloc(len ? len : 1);
    size_t max = weft__encode_max(enc, len), n;
    uint8_t *out = malloc(max ? max : 1);

    memcpy(exact, in, len);
    n = weft__encode(enc, exact, len, out);
    ck_assert_uint_le(n, max);
    assert_bytes_eq("encode", out, n, want, want_len);
    free(exact);
    free(out);
}
#define CHECK_ENC(enc, in, want)                                               \
    check_encode(enc, in, sizeof(in) - 1, want, sizeof(want) - 1)

START_TEST(base64_encoder_accepts_missing_padding)
{
    CHECK_ENC(WEFT__ENC_BASE64, "QUJDRA", "ABCD");
    CHECK_ENC(WEFT__ENC_BASE64, "QUJDRA==", "ABCD");
    CHECK_ENC(WEFT__ENC_BASE64, "QUI", "AB");
}
END_TEST

START_TEST(base64_encoder_accepts_url_safe_alphabet)
{
    CHECK_ENC(WEFT__ENC_BASE64, "-_-_", "\xFB\xFF\xBF");
    CHECK_ENC(WEFT__ENC_BASE64URL, "+/+/", "\xFB\xFF\xBF");
}
END_TEST

START_TEST(base64_encoder_skips_whitespace_and_junk)
{
    CHECK_ENC(WEFT__ENC_BASE64, "QU JD\nR\tA*=", "ABCD");
    CHECK_ENC(WEFT__ENC_BASE64, "Q Q Q Q", "A\x04\x10");
}
END_TEST

START_TEST(base64_encoder_stops_at_first_equals_sign)
{
    CHECK_ENC(WEFT__ENC_BASE64, "QQ==QQ==", "A");
    CHECK_ENC(WEFT__ENC_BASE64, "QUJD=RA", "ABC");
    CHECK_ENC(WEFT__ENC_BASE64, "=QUJD", "");
}
END_TEST

START_TEST(base64_encoder_drops_a_lone_final_symbol)
{
    CHECK_ENC(WEFT__ENC_BASE64, "Q", "");
    CHECK_ENC(WEFT__ENC_BASE64, "QUJDR", "ABC");
}
END_TEST

START_TEST(base64_encoder_reads_nothing_past_len)
{
    /* "QUJD" followed by bytes that must not be read. */
    check_encode(WEFT__ENC_BASE64, "QUJDRA==", 4, "ABC", 3);
    check_encode(WEFT__ENC_BASE64, "", 0, "", 0);
}
END_TEST

START_TEST(hex_encoder_stops_at_first_invalid_pair)
{
    CHECK_ENC(WEFT__ENC_HEX, "0aZZ12", "\x0a");
    CHECK_ENC(WEFT__ENC_HEX, "0g12", "");
    CHECK_ENC(WEFT__ENC_HEX, "12 34", "\x12");
}
END_TEST

START_TEST(hex_encoder_drops_odd_trailing_nibble)
{
    CHECK_ENC(WEFT__ENC_HEX, "abc", "\xab");
    CHECK_ENC(WEFT__ENC_HEX, "1", "");
}
END_TEST

START_TEST(hex_encoder_accepts_upper_and_lower_case)
{
    CHECK_ENC(WEFT__ENC_HEX, "aBcDeF09", "\xab\xcd\xef\x09");
}
END_TEST

START_TEST(text_encoders_copy_bytes_unchanged)
{
    static const int encs[] = {WEFT__ENC_RAW, WEFT__ENC_UTF8, WEFT__ENC_ASCII,
                               WEFT__ENC_LATIN1};
    for (size_t i = 0; i < 4; i++) {
        /* Invalid UTF-8 too: weft sends the caller's bytes as they are. */
        CHECK_ENC(encs[i], "h\xC3\xA9\xFF\x80", "h\xC3\xA9\xFF\x80");
        ck_assert_uint_eq(weft__encode_max(encs[i], 5), 5);
    }
}
END_TEST

START_TEST(unknown_encoding_number_encodes_nothing)
{
    uint8_t out[8];
    ck_assert_uint_eq(weft__encode(99, "abcd", 4, out), 0);
}
END_TEST

START_TEST(encode_max_is_tight_for_valid_input)
{
    ck_assert_uint_eq(weft__encode_max(WEFT__ENC_BASE64, 4), 3);
    ck_assert_uint_eq(weft__encode_max(WEFT__ENC_BASE64, 6), 4);
    ck_assert_uint_eq(weft__encode_max(WEFT__ENC_BASE64, 7), 5);
    ck_assert_uint_eq(weft__encode_max(WEFT__ENC_HEX, 7), 3);
    ck_assert_uint_ge(weft__encode_max(WEFT__ENC_BASE64, SIZE_MAX),
                      SIZE_MAX / 4 * 3);
}
END_TEST

/* ---- runner -------------------------------------------------------------- */

static Suite *encoding_suite(void)
{
    Suite *s = suite_create("encoding");
    TCase *node = tcase_create("node");
    TCase *prop = tcase_create("properties");
    TCase *utf8 = tcase_create("utf8");
    TCase *other = tcase_create("decoders");
    TCase *names = tcase_create("names");
    TCase *enc = tcase_create("encoders");

    tcase_set_timeout(node, 60);
    tcase_set_timeout(prop, 60);
    tcase_add_test(node, node_decode_vectors_match_whole_and_at_every_cut);
    tcase_add_test(node, node_decode_vectors_match_each_chunk_output);
    tcase_add_test(node, node_encode_vectors_match);
    suite_add_tcase(s, node);

    tcase_add_test(prop, random_cuts_decode_like_whole_for_every_encoding);
    tcase_add_test(prop,
                   utf8_all_short_strings_match_reference_at_every_cut_set);
    tcase_add_test(prop, utf8_every_two_byte_string_matches_reference);
    tcase_add_test(prop, utf8_random_inputs_match_reference);
    tcase_add_test(prop, utf8_sequences_at_every_block_offset_match_reference);
    tcase_add_test(prop, utf8_random_chunks_match_node_model_per_write);
    tcase_add_test(prop, utf8_valid_text_passes_through_unchanged);
    tcase_add_test(prop, base64_and_hex_decoders_match_reference);
    tcase_add_test(prop, base64_and_hex_encoders_match_reference);
    tcase_add_test(prop, base64_text_round_trips_through_encoder);
    suite_add_tcase(s, prop);

    tcase_add_test(utf8, utf8_overlong_two_byte_form_gives_two_replacements);
    tcase_add_test(utf8,
                   utf8_overlong_three_and_four_byte_forms_replace_each_byte);
    tcase_add_test(utf8, utf8_surrogates_replace_each_byte);
    tcase_add_test(utf8, utf8_above_10FFFF_replaces_each_byte);
    tcase_add_test(utf8,
                   utf8_bytes_F5_to_FF_and_C0_C1_are_one_replacement_each);
    tcase_add_test(utf8, utf8_stray_continuation_bytes_replace_one_each);
    tcase_add_test(utf8, utf8_truncated_sequence_then_ascii_is_one_replacement);
    tcase_add_test(utf8, utf8_euro_split_in_three_is_delivered_with_last_chunk);
    tcase_add_test(utf8, utf8_emoji_split_in_two_is_delivered_with_later_chunk);
    tcase_add_test(
        utf8, utf8_truncated_sequence_at_end_is_flushed_as_one_replacement);
    tcase_add_test(
        utf8, utf8_held_sequence_cut_short_by_next_chunk_becomes_replacement);
    tcase_add_test(utf8, utf8_lead_shaped_C0_is_held_like_node_then_replaced);
    tcase_add_test(utf8, utf8_empty_write_keeps_held_bytes);
    tcase_add_test(utf8, utf8_decoder_starts_clean_after_end);
    tcase_add_test(utf8, utf8_long_ascii_text_passes_through);
    suite_add_tcase(s, utf8);

    tcase_add_test(other, ascii_clears_the_high_bit);
    tcase_add_test(other, latin1_high_bytes_become_two_byte_utf8);
    tcase_add_test(other, hex_writes_lowercase_pairs);
    tcase_add_test(other, base64_carries_remainder_and_pads_at_end);
    tcase_add_test(other, base64url_uses_url_alphabet_without_padding);
    tcase_add_test(other, raw_decoder_copies_bytes);
    tcase_add_test(other, unknown_encoding_number_decodes_as_raw);
    tcase_add_test(other, empty_write_with_null_pointer_changes_nothing);
    tcase_add_test(other, decoder_state_fits_in_eight_bytes);
    tcase_add_test(other, decode_max_covers_held_bytes);
    suite_add_tcase(s, other);

    tcase_add_test(names, enc_parse_knows_node_names_in_any_case);
    tcase_add_test(names, enc_parse_null_means_raw);
    tcase_add_test(names, enc_parse_rejects_unknown_names);
    suite_add_tcase(s, names);

    tcase_add_test(enc, base64_encoder_accepts_missing_padding);
    tcase_add_test(enc, base64_encoder_accepts_url_safe_alphabet);
    tcase_add_test(enc, base64_encoder_skips_whitespace_and_junk);
    tcase_add_test(enc, base64_encoder_stops_at_first_equals_sign);
    tcase_add_test(enc, base64_encoder_drops_a_lone_final_symbol);
    tcase_add_test(enc, base64_encoder_reads_nothing_past_len);
    tcase_add_test(enc, hex_encoder_stops_at_first_invalid_pair);
    tcase_add_test(enc, hex_encoder_drops_odd_trailing_nibble);
    tcase_add_test(enc, hex_encoder_accepts_upper_and_lower_case);
    tcase_add_test(enc, text_encoders_copy_bytes_unchanged);
    tcase_add_test(enc, unknown_encoding_number_encodes_nothing);
    tcase_add_test(enc, encode_max_is_tight_for_valid_input);
    suite_add_tcase(s, enc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(encoding_suite());
    int failed;

    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
