/*
 * curl_glue.h - libcurl's multi-socket interface driven by a weft loop.
 *
 * curl says which sockets it wants watched (CURLMOPT_SOCKETFUNCTION) and
 * when it next wants to be called (CURLMOPT_TIMERFUNCTION); the glue
 * turns the first into weft fd watchers (weft_poll_*) and the second into
 * one weft timer, and calls curl_multi_socket_action() when either
 * fires. Used by examples/curl-multi.c and tests/test_curl.c; copy it.
 */
#ifndef CURL_GLUE_H
#define CURL_GLUE_H

#include <curl/curl.h>
#include <stddef.h>

#include "weft.h"

typedef struct curl_glue curl_glue;

/*
 * Called once for every easy handle added, when its transfer is over,
 * after the glue has removed it from the multi: the callee owns `easy`
 * again and may curl_easy_cleanup() it, or add new handles. `result` is
 * curl's; CURLE_ABORTED_BY_CALLBACK when weft refused to watch a socket
 * or arm a timer (curl_glue_error() says why) or curl_glue_free() ran
 * first.
 */
typedef void (*curl_glue_done_cb)(curl_glue *g, CURL *easy, CURLcode result,
                                  void *ctx);

/* A multi handle on `loop` (NULL: the default loop); NULL on ENOMEM.
 * curl_global_init() is the caller's, once per program. */
curl_glue *curl_glue_new(weft_loop *loop, curl_glue_done_cb done, void *ctx);

/* The multi, for options such as CURLMOPT_MAX_HOST_CONNECTIONS. Do not
 * change its socket or timer functions. */
CURLM *curl_glue_multi(curl_glue *g);

/* Starts `easy` from the loop; its done callback follows. */
CURLMcode curl_glue_add(curl_glue *g, CURL *easy);

/* Transfers added and not yet done. */
size_t curl_glue_pending(const curl_glue *g);

/* What made the glue abort transfers, or NULL. */
const char *curl_glue_error(const curl_glue *g);

/*
 * Aborts what is still pending (each gets its done callback), closes the
 * multi with its cached connections, then its watchers and timer. Not
 * from inside a done callback.
 */
void curl_glue_free(curl_glue *g);

#endif
