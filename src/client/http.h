/* http.h -- the client library's blocking HTTP/1.1 GET (private).
 *
 * One request per connection ("Connection: close"), every wait bounded by a
 * timeout and interruptible: poll() also watches a wake fd, so that
 * shoal_client_free() can end a blocking query that waits for minutes.
 * The agent always answers with Content-Length (io/http.c); a body without
 * one ends at EOF. Chunked bodies are refused (the agent never sends them).
 */
#ifndef SHOAL_CLIENT_HTTP_H
#define SHOAL_CLIENT_HTTP_H

#include <stddef.h>

#include "core/addr.h"

#define SHOAL_CLIENT_HTTP_MAX (64u << 20) /* larger responses are refused */

struct shoal_client_http_resp {
    int status;
    char *body; /* malloc'd, NUL-terminated; the caller frees it */
    size_t body_len;
};

/* GETs path from addr; each wait (connect, send, receive) lasts at most
 * timeout_ms. wake_fd (or -1): readable means give up. Returns 0 with *out
 * filled (any status), or SHOAL_ECONN (connect failed: *sys_err), SHOAL_EIO
 * (send/receive failed or timed out: *sys_err; ECANCELED when woken),
 * SHOAL_ETRUNC, SHOAL_EDECODE, SHOAL_ETOOBIG, SHOAL_ENOMEM. Calls malloc. */
int shoal_client_http_get(const struct shoal_addr *addr, const char *path, int timeout_ms,
                          int wake_fd, struct shoal_client_http_resp *out, int *sys_err);

/* The same with any method and an optional JSON body (NULL: none). */
int shoal_client_http_request(const struct shoal_addr *addr, const char *method, const char *path,
                              const char *body, int timeout_ms, int wake_fd,
                              struct shoal_client_http_resp *out, int *sys_err);

#endif
