/* api.h -- the agent's HTTP/JSON API handlers (docs/interfaces.md).
 *
 *   GET  /v1/members  every member, self included, sorted by name
 *   GET  /v1/info     this node: identity, counters, drops, protocol stats
 *   POST /v1/join     {"addrs":["IP:PORT", ...]} -> {"joining":N}
 *   POST /v1/leave    -> {"leaving":true}; the agent leaves and exits
 * Errors are {"error":"message"} with 400, 404, 405 or 500. The handler has
 * the signature of shoal_http_handler, with a struct shoal_api as ud.
 */
#ifndef SHOAL_IO_API_H
#define SHOAL_IO_API_H

#include <stdint.h>

#include "io/http.h"

struct shoal_node;

struct shoal_api {
    struct shoal_node *node;
    /* Called for POST /v1/leave (every time; the callee ignores repeats).
     * The response is filled after it returns, so it must not stop the
     * HTTP server synchronously. */
    void (*leave)(void *ud);
    void *ud;
};

/* A shoal_http_handler: ud is a struct shoal_api *. resp->body is malloc'd. */
void shoal_api_handle(void *ud, uint64_t conn_id, const struct shoal_http_req *req,
                      struct shoal_http_resp *resp);

#endif
