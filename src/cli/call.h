/* call.h -- one call to the agent's HTTP API, every failure reported.
 *
 * Every command talks to the agent through shoal_cli_call(), which turns
 * each failure -- unreachable agent, broken HTTP, invalid JSON, an
 * {"error":...} answer -- into one line on stderr, so a command only handles
 * the answer it wanted. `shoal watch` survives an agent that goes away: it
 * asks for that case to be handed back instead (shoal_cli_call_ex).
 */
#ifndef SHOAL_CLI_CALL_H
#define SHOAL_CLI_CALL_H

#include <jansson.h>
#include <stddef.h>

#include "cli/cli.h"
#include "cli/client.h"

/* An answer in 2xx with a JSON object for a body. */
struct shoal_cli_reply {
    struct shoal_cli_http_resp http; /* status and the raw body */
    json_t *root;                    /* the body parsed: always an object */
};
void shoal_cli_reply_free(struct shoal_cli_reply *r);

#define SHOAL_CLI_CALL_LOST (-1) /* shoal_cli_call_ex: the agent could not be reached */

/* Sends method path (body NULL for none) to the agent at a->http. Returns 0
 * with *r filled (free with shoal_cli_reply_free()); else SHOAL_CLI_FAIL
 * after printing why on stderr. Calls malloc. */
int shoal_cli_call(const struct shoal_cli_args *a, const char *method, const char *path,
                   const char *body, struct shoal_cli_reply *r) SHOAL_MUST_CHECK;

/* The same with request options (opts may be NULL). If lost is not NULL, a
 * failure to reach the agent -- connecting, sending or receiving failed,
 * timed out or was cancelled, or the connection closed before a full answer
 * -- is not printed: its reason goes into lost (without "shoal: ") and
 * SHOAL_CLI_CALL_LOST is returned. */
int shoal_cli_call_ex(const struct shoal_cli_args *a, const char *method, const char *path,
                      const char *body, const struct shoal_cli_http_opts *opts,
                      struct shoal_cli_reply *r, char *lost, size_t lost_len) SHOAL_MUST_CHECK;

/* GETs path and prints the array under `field`: the body as is with
 * --format json, else a table of the given columns (keys[i] under heads[i];
 * "-" for a missing value). Returns SHOAL_CLI_OK or SHOAL_CLI_FAIL. */
int shoal_cli_list(const struct shoal_cli_args *a, const char *path, const char *field,
                   const char *const *heads, const char *const *keys, size_t ncols);

#endif
