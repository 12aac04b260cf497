#ifndef POD_CURL_LOOP_H
#define POD_CURL_LOOP_H

/* libcurl's multi interface on a p2m loop: curl says which sockets to watch
 * (CURLMOPT_SOCKETFUNCTION) and when to call it back (CURLMOPT_TIMERFUNCTION); the loop's
 * callbacks call curl_multi_socket_action(). curl resolves names with its threaded resolver, so
 * nothing here blocks the loop. Knows nothing of what the requests are: register.c builds them. */

#include <curl/curl.h>

#include "p2m/loop.h"

typedef struct pod_curl_loop pod_curl_loop_t;

/* Called for each finished transfer with curl's result, from the loop's callbacks (never from
 * inside curl's): it may remove and clean up `easy`, and add new transfers. */
typedef void (*pod_curl_loop_done_cb)(void *data, CURL *easy, CURLcode rc);

/* A multi handle on loop (borrowed, outlives it) that calls done(data, ...) as transfers finish.
 * Returns NULL with err. */
pod_curl_loop_t *pod_curl_loop_new(p2m_loop_t *loop, pod_curl_loop_done_cb done, void *data, char *err);

/* The multi handle, for curl_multi_add_handle() and curl_multi_remove_handle(). */
CURLM *pod_curl_loop_multi(pod_curl_loop_t *cl);

/* Cleans up the multi handle (every transfer must have been removed), stops watching its sockets
 * and its timer, and runs the loop's deferred frees. NULL is a no-op. */
void pod_curl_loop_free(pod_curl_loop_t *cl);

#endif
