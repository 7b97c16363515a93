/*
 * curl-multi.c - many downloads at once: libcurl driven by a weft loop.
 *
 *   curl-multi URL...
 *
 * Fetches every URL in parallel on one loop through libcurl's
 * multi-socket interface (curl_glue.c: curl's sockets become weft fd
 * watchers, its timeout a weft timer), and prints one line per URL as it
 * finishes: the HTTP status, the bytes received, the time taken. Every
 * failure (connection, TLS, an HTTP status of 400 or more) is reported
 * on stderr, and the exit status is 1 if anything failed.
 *
 * The same loop could serve weft streams at the same time: that is the
 * point of driving curl this way rather than with curl_multi_perform().
 */
#include <stdio.h>
#include <stdlib.h>

#include "curl_glue.h"
#include "weft.h"

typedef struct job {
    const char *url;
    size_t bytes;
    char errbuf[CURL_ERROR_SIZE];
} job;

static int failures;

/* The body is counted, not kept: the example is about the loop. */
static size_t on_body(char *data, size_t size, size_t n, void *ctx)
{
    (void)data;
    job *j = ctx;
    j->bytes += size * n;
    return size * n;
}

static void on_done(curl_glue *g, CURL *easy, CURLcode result, void *ctx)
{
    (void)ctx;
    job *j = NULL;
    curl_easy_getinfo(easy, CURLINFO_PRIVATE, (char **)&j);
    if (result == CURLE_OK) {
        long status = 0;
        double secs = 0;
        curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &status);
        curl_easy_getinfo(easy, CURLINFO_TOTAL_TIME, &secs);
        printf("%ld %zu bytes %.3f s %s\n", status, j->bytes, secs, j->url);
    } else {
        const char *why = curl_glue_error(g);
        if (why == NULL)
            why = j->errbuf[0] ? j->errbuf : curl_easy_strerror(result);
        fprintf(stderr, "curl-multi: %s: %s\n", j->url, why);
        failures++;
    }
    curl_easy_cleanup(easy);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s URL...\n", argv[0]);
        return 2;
    }
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        fprintf(stderr, "curl-multi: curl_global_init failed\n");
        return 1;
    }
    weft_loop *loop = weft_default_loop();
    curl_glue *g = loop ? curl_glue_new(loop, on_done, NULL) : NULL;
    job *jobs = calloc((size_t)argc, sizeof(*jobs));
    if (g == NULL || jobs == NULL) {
        fprintf(stderr, "curl-multi: out of memory\n");
        return 1;
    }
    for (int i = 1; i < argc; i++) {
        job *j = &jobs[i];
        j->url = argv[i];
        CURL *easy = curl_easy_init();
        if (easy == NULL) {
            fprintf(stderr, "curl-multi: %s: curl_easy_init failed\n", j->url);
            failures++;
            continue;
        }
        curl_easy_setopt(easy, CURLOPT_URL, j->url);
        curl_easy_setopt(easy, CURLOPT_PRIVATE, j);
        curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, on_body);
        curl_easy_setopt(easy, CURLOPT_WRITEDATA, j);
        curl_easy_setopt(easy, CURLOPT_ERRORBUFFER, j->errbuf);
        curl_easy_setopt(easy, CURLOPT_FOLLOWLOCATION, 1L);
        curl_easy_setopt(easy, CURLOPT_FAILONERROR, 1L);
        curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);
        CURLMcode mc = curl_glue_add(g, easy);
        if (mc != CURLM_OK) {
            fprintf(stderr, "curl-multi: %s: %s\n", j->url,
                    curl_multi_strerror(mc));
            curl_easy_cleanup(easy);
            failures++;
        }
    }
    int rc = weft_run();
    if (rc < 0) {
        fprintf(stderr, "curl-multi: loop: %s\n", weft_strerror(rc));
        failures++;
    }
    /* A loop that ran dry with transfers left means curl was waiting on
     * something nobody watched: say so rather than exit quietly. */
    if (curl_glue_pending(g) > 0) {
        fprintf(stderr, "curl-multi: %zu transfers never finished\n",
                curl_glue_pending(g));
    }
    curl_glue_free(g); /* reports (and counts) any left as aborted */
    weft_loop_close(NULL);
    curl_global_cleanup();
    free(jobs);
    return failures ? 1 : 0;
}
