/* apiack.h -- API acknowledgements that wait for the data dir.
 *
 * A register, deregister or heartbeat is answered only once its change is
 * durable (io/node.h, group commit): its reply is kept here, with the
 * connection it belongs to, until the node's persisted observer reports
 * the write that covers it, then sent (or replaced by a 500 naming the
 * write's error). Every waiting reply belongs to an open HTTP connection
 * with that one request outstanding, so the queue is bounded by the
 * server's connections.
 */
#ifndef SHOAL_IO_APIACK_H
#define SHOAL_IO_APIACK_H

#include <stdint.h>

#include "io/api.h"

/* Takes resp (status and body) into the queue and marks it deferred.
 * Returns 0, or SHOAL_ENOMEM / SHOAL_ESTATE (no HTTP server to answer
 * later) with resp untouched. what and id name the change in an error. */
int shoal_api_ack_defer(struct shoal_api *api, uint64_t conn_id, struct shoal_http_resp *resp,
                        const char *what, const char *id);
/* Answers every queued reply: as kept when rc is 0, else a 500. */
void shoal_api_ack_done(struct shoal_api *api, int rc);
/* Replies waiting now. */
size_t shoal_api_ack_waiting(const struct shoal_api *api);
/* Frees the queue (the connections close with the server). */
void shoal_api_ack_close(struct shoal_api *api);

#endif
