/* client.h -- the CLI's small blocking HTTP/1.1 client.
 *
 * One request per connection ("Connection: close"): connect, send, read the
 * status line, headers and body (parsed with http-parser in response mode).
 * Every wait is bounded by a timeout, so a hung agent cannot hang the CLI.
 */
#ifndef SHOAL_CLI_CLIENT_H
#define SHOAL_CLI_CLIENT_H

#include <stddef.h>

#include "core/addr.h"
#include "shoal/error.h"

#define SHOAL_CLI_HTTP_TIMEOUT_MS 5000      /* connect, and each wait for bytes */
#define SHOAL_CLI_HTTP_MAX_BODY (64u << 20) /* a response larger than this is refused */

struct shoal_cli_http_resp {
    int status;
    char *body; /* malloc'd, NUL-terminated; free with shoal_cli_http_resp_free() */
    size_t body_len;
};

/* Sends method path (body may be NULL; it is sent as application/json) to
 * addr and reads the whole response into *out. Returns 0, or:
 *   SHOAL_ECONN   connecting failed or timed out (*sys_err = errno)
 *   SHOAL_EIO     sending or receiving failed or timed out (*sys_err = errno)
 *   SHOAL_ETRUNC  the agent closed the connection before a full response
 *   SHOAL_EDECODE the response is not valid HTTP
 *   SHOAL_ETOOBIG the body exceeds SHOAL_CLI_HTTP_MAX_BODY
 *   SHOAL_ENOMEM
 * *sys_err is 0 unless a system call failed. Calls malloc (out->body). */
int shoal_cli_http_request(const struct shoal_addr *addr, const char *method, const char *path,
                           const char *body, int timeout_ms, struct shoal_cli_http_resp *out,
                           int *sys_err) SHOAL_MUST_CHECK;

void shoal_cli_http_resp_free(struct shoal_cli_http_resp *r);

#endif
