/*
 * fuzz_decode.c - every decoder (setEncoding), one target: the first
 * byte picks the encoding, the second seeds where the input is cut, the
 * rest is the input. Checks: cut decoding equals whole decoding; no call
 * writes more than weft__decode_max() promised (each call gets a buffer
 * of exactly that size, so ASan sees an overrun); the text is well-formed
 * UTF-8; and the whole output equals the reference model's.
 */
#include "encoding.h"
#include "reference.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const int encodings[] = {
    WEFT__ENC_RAW, WEFT__ENC_UTF8,   WEFT__ENC_ASCII,     WEFT__ENC_LATIN1,
    WEFT__ENC_HEX, WEFT__ENC_BASE64, WEFT__ENC_BASE64URL,
};

/*
 * Decodes in[0..len) into `all`; with `cut`, the input is written in
 * pieces, cut where a PRNG seeded with `seed` says (about 1 in 4 bytes).
 */
static size_t decode(int enc, const uint8_t *in, size_t len, bool cut,
                     uint32_t seed, char *all)
{
    weft__decoder d;
    size_t total = 0, prev = 0;

    weft__decoder_init(&d, enc);
    for (size_t i = 0; i <= len; i++) {
        size_t max, n;
        char *piece;

        seed = seed * 1103515245u + 12345u;
        if (i < len && (!cut || (seed >> 16) % 4 != 0))
            continue; /* no cut here */
        max = weft__decode_max(&d, i - prev);
        piece = malloc(max ? max : 1);
        n = weft__decode(&d, in + prev, i - prev, piece);
        if (n > max)
            abort();
        memcpy(all + total, piece, n);
        total += n;
        free(piece);
        prev = i;
    }
    {
        size_t max = weft__decode_max(&d, 0), n;
        char *piece = malloc(max ? max : 1);
        n = weft__decode_end(&d, piece);
        if (n > max || d.have != 0)
            abort();
        memcpy(all + total, piece, n);
        total += n;
        free(piece);
    }
    return total;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int enc;
    uint32_t seed;
    size_t len, bound, whole_len, cut_len, ref_len = 0;
    const uint8_t *in;
    char *whole, *cut, *ref;
    weft__decoder fresh;

    if (size < 2)
        return 0;
    enc = encodings[data[0] % (sizeof(encodings) / sizeof(encodings[0]))];
    seed = data[1];
    in = data + 2;
    len = size - 2;

    weft__decoder_init(&fresh, enc);
    bound = weft__decode_max(&fresh, len);
    whole = malloc(bound + 1);
    cut = malloc(bound + 1);
    ref = malloc(4 * len + 8);
    whole_len = decode(enc, in, len, false, 0, whole);
    cut_len = decode(enc, in, len, true, seed, cut);
    if (cut_len != whole_len || memcmp(cut, whole, whole_len) != 0)
        abort();

    switch (enc) {
    case WEFT__ENC_UTF8:
        ref_len = ref_utf8_decode(in, len, ref);
        break;
    case WEFT__ENC_BASE64:
    case WEFT__ENC_BASE64URL:
        ref_len = ref_base64_text(in, len, enc == WEFT__ENC_BASE64URL, ref);
        break;
    case WEFT__ENC_HEX:
        for (size_t i = 0; i < len; i++) {
            ref[ref_len++] = "0123456789abcdef"[in[i] >> 4];
            ref[ref_len++] = "0123456789abcdef"[in[i] & 15];
        }
        break;
    case WEFT__ENC_ASCII:
        for (size_t i = 0; i < len; i++)
            ref[ref_len++] = (char)(in[i] & 0x7F);
        break;
    case WEFT__ENC_LATIN1:
        for (size_t i = 0; i < len; i++)
            ref_len += ref_put_code_point(in[i], ref + ref_len);
        break;
    default:
        memcpy(ref, in, len);
        ref_len = len;
        break;
    }
    if (ref_len != whole_len || memcmp(ref, whole, whole_len) != 0)
        abort();
    if (enc != WEFT__ENC_RAW &&
        !ref_utf8_valid((const uint8_t *)whole, whole_len))
        abort();
    free(whole);
    free(cut);
    free(ref);
    return 0;
}
