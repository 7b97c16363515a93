/*
 * utf8_decode.c - throughput of weft's utf8 decoder (setEncoding('utf8'))
 * on valid text, in GB/s of input. Not a test: run it on demand.
 *
 *   gcc -std=c11 -D_GNU_SOURCE -O2 -Iinclude -Isrc src/encoding.c \
 *       bench/utf8_decode.c -o /tmp/utf8_decode && /tmp/utf8_decode
 *
 * The text is decoded in 64 KiB chunks through weft__decode(), as a
 * stream's reads would be, so the chunk-boundary logic is included. Each
 * workload runs 7 rounds of at least 0.2 s of CPU time; the median, min
 * and max are printed. The rate is bytes per second of this thread's CPU
 * time, because the host is shared and noisy (see ../shared/BENCH.md):
 * time spent descheduled is not the decoder's. The wall-clock median is
 * printed beside it.
 */
#include "encoding.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define TEXT_BYTES (1u << 20) /* what a busy stream has in flight */
#define CHUNK      (64u << 10)
#define ROUNDS     7

/* Phrases in several scripts: 1-, 2-, 3- and 4-byte characters mixed. */
static const char *const mixed_phrases[] = {
    "The quick brown fox jumps over the lazy dog. ",
    "Voix ambigu\xC3\xAB d'un c\xC5\x93ur qui, au z\xC3\xA9phyr, pr\xC3\xA9"
    "f\xC3\xA8re les jattes de kiwis. ",
    "\xD0\xA1\xD1\x8A\xD0\xB5\xD1\x88\xD1\x8C \xD0\xB6\xD0\xB5 \xD0\xB5\xD1"
    "\x89\xD1\x91 \xD1\x8D\xD1\x82\xD0\xB8\xD1\x85 \xD0\xBC\xD1\x8F\xD0\xB3"
    "\xD0\xBA\xD0\xB8\xD1\x85 \xD0\xB1\xD1\x83\xD0\xBB\xD0\xBE\xD0\xBA. ",
    "\xCE\x93\xCE\xB1\xCE\xB6\xCE\xAD\xCE\xB5\xCF\x82 \xCE\xBA\xCE\xB1\xE1"
    "\xBD\xB6 \xCE\xBC\xCF\x85\xCF\x81\xCF\x84\xCE\xB9\xE1\xBD\xB2\xCF\x82. ",
    "\xE6\x97\xA5\xE6\x9C\xAC\xE8\xAA\x9E\xE3\x81\xAE\xE6\x96\x87\xE7\xAB"
    "\xA0\xE3\x81\xA7\xE3\x81\x99\xE3\x80\x82",
    "\xE4\xBD\xA0\xE5\xA5\xBD\xEF\xBC\x8C\xE4\xB8\x96\xE7\x95\x8C\xEF\xBC"
    "\x81",
    "emoji \xF0\x9F\x98\x80\xF0\x9F\x9A\x80\xF0\x9F\x8E\x89 ok. ",
    "{\"id\": 12345, \"name\": \"caf\xC3\xA9\", \"tags\": [\"a\", \"b\"]}\n",
};

static const char *const ascii_phrases[] = {
    "The quick brown fox jumps over the lazy dog. ",
    "GET /index.html HTTP/1.1\r\nHost: example.com\r\n\r\n",
    "{\"id\": 12345, \"name\": \"cafe\", \"tags\": [\"a\", \"b\"]}\n",
    "Lorem ipsum dolor sit amet, consectetur adipiscing elit. ",
};

static double clock_s(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static size_t fill(char *buf, size_t cap, const char *const *phrases, size_t n)
{
    size_t len = 0;
    unsigned x = 12345;

    for (;;) {
        const char *p;
        size_t l;

        x = x * 1103515245u + 12345u;
        p = phrases[(x >> 16) % n];
        l = strlen(p);
        if (len + l > cap)
            return len;
        memcpy(buf + len, p, l);
        len += l;
    }
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Decodes `text` in chunks; returns bytes written (to keep it live). */
static size_t decode_all(const uint8_t *text, size_t len, char *out)
{
    weft__decoder d;
    size_t o = 0;

    weft__decoder_init(&d, WEFT__ENC_UTF8);
    for (size_t off = 0; off < len; off += CHUNK) {
        size_t n = len - off < CHUNK ? len - off : CHUNK;
        o += weft__decode(&d, text + off, n, out + o);
    }
    return o + weft__decode_end(&d, out + o);
}

static double run(const char *name, const uint8_t *text, size_t len)
{
    char *out = malloc(3 * len + 16);
    double gbps[ROUNDS], wall[ROUNDS];
    size_t n = decode_all(text, len, out); /* warm-up and check */

    if (n != len || memcmp(out, text, len) != 0) {
        fprintf(stderr, "%s: valid text was changed by decoding\n", name);
        exit(1);
    }
    for (int r = 0; r < ROUNDS; r++) {
        double c0 = clock_s(CLOCK_THREAD_CPUTIME_ID),
               t0 = clock_s(CLOCK_MONOTONIC);
        double c;
        size_t bytes = 0;
        do {
            bytes += decode_all(text, len, out);
        } while ((c = clock_s(CLOCK_THREAD_CPUTIME_ID) - c0) < 0.2);
        gbps[r] = (double)bytes / c / 1e9;
        wall[r] = (double)bytes / (clock_s(CLOCK_MONOTONIC) - t0) / 1e9;
    }
    qsort(gbps, ROUNDS, sizeof(gbps[0]), cmp_double);
    qsort(wall, ROUNDS, sizeof(wall[0]), cmp_double);
    printf("%-26s %6.2f GB/s per CPU second (min %.2f, max %.2f); "
           "wall-clock median %.2f GB/s\n",
           name, gbps[ROUNDS / 2], gbps[0], gbps[ROUNDS - 1], wall[ROUNDS / 2]);
    free(out);
    return gbps[ROUNDS / 2];
}

int main(void)
{
    uint8_t *text = malloc(TEXT_BYTES);
    size_t len, multi = 0;

    len = fill((char *)text, TEXT_BYTES, mixed_phrases,
               sizeof(mixed_phrases) / sizeof(mixed_phrases[0]));
    for (size_t i = 0; i < len; i++)
        multi += text[i] >= 0x80;
    printf("utf8 decoder, %u KiB chunks, %.1f MiB of text\n", CHUNK >> 10,
           (double)len / (1 << 20));
    printf("mixed text: %.0f%% of bytes in multi-byte characters\n",
           100.0 * (double)multi / (double)len);
    run("mixed ASCII + multi-byte", text, len);
    len = fill((char *)text, TEXT_BYTES, ascii_phrases,
               sizeof(ascii_phrases) / sizeof(ascii_phrases[0]));
    run("pure ASCII", text, len);
    free(text);
    return 0;
}
