/* client.h -- the CLI's small blocking HTTP/1.1 client.
 *
 * One request per connection ("Connection: close"): connect, send, read the
 * status line, headers and body (parsed with http-parser in response mode).
 * Every wait is bounded by a timeout, so a hung agent cannot hang the CLI;
 * the timeout is per request because a blocking query (`shoal watch`) waits
 * minutes for its answer. A request can also be cancelled by a signal.
 */
#ifndef SHOAL_CLI_CLIENT_H
#define SHOAL_CLI_CLIENT_H

#include <signal.h>
#include <stddef.h>

#include "core/addr.h"
#include "shoal/error.h"

#define SHOAL_CLI_HTTP_TIMEOUT_MS 5000      /* connect; and each wait for bytes by default */
#define SHOAL_CLI_HTTP_MAX_BODY (64u << 20) /* a response larger than this is refused */

struct shoal_cli_http_resp {
    int status;
    char *body; /* malloc'd, NUL-terminated; free with shoal_cli_http_resp_free() */
    size_t body_len;
};

/* Per-request options; a NULL pointer means all defaults. */
struct shoal_cli_http_opts {
    int timeout_ms; /* each wait for bytes to send or receive; <= 0: SHOAL_CLI_HTTP_TIMEOUT_MS.
                     * Connecting never waits longer than SHOAL_CLI_HTTP_TIMEOUT_MS. */
    /* Cancellation, for callers that block signals and let them in only while
     * waiting (no race between checking *stop and sleeping): every wait runs
     * under *sigmask, and a wait interrupted while *stop is set ends the
     * request with *sys_err = EINTR. Both NULL: waits are never cancelled. */
    const volatile sig_atomic_t *stop;
    const sigset_t *sigmask;
};

/* Sends method path (body may be NULL; it is sent as application/json) to
 * addr and reads the whole response into *out. Returns 0, or:
 *   SHOAL_ECONN   connecting failed, timed out or was cancelled (*sys_err = errno)
 *   SHOAL_EIO     sending or receiving failed, timed out or was cancelled (*sys_err = errno)
 *   SHOAL_ETRUNC  the agent closed the connection before a full response
 *   SHOAL_EDECODE the response is not valid HTTP
 *   SHOAL_ETOOBIG the body exceeds SHOAL_CLI_HTTP_MAX_BODY
 *   SHOAL_ENOMEM
 * *sys_err is 0 unless a system call failed. Calls malloc (out->body). */
int shoal_cli_http_request(const struct shoal_addr *addr, const char *method, const char *path,
                           const char *body, const struct shoal_cli_http_opts *opts,
                           struct shoal_cli_http_resp *out, int *sys_err) SHOAL_MUST_CHECK;

void shoal_cli_http_resp_free(struct shoal_cli_http_resp *r);

#endif
