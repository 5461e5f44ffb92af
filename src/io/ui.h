/* ui.h -- the web UI served by every agent (docs/ui.md).
 *
 *   GET /ui/                 the dashboard (index.html), revalidated by ETag
 *   GET /ui/app.HASH.js|css  its script and style, immutable (name = content hash)
 *   GET /v1/cluster          members and per-service health counts in one
 *                            answer; blocking with index=N&wait=D like
 *                            /v1/instances: answered when a member changes
 *                            or the registry does, or when D passes
 * The files come from src/io/ui/, embedded at build time (io/ui_assets.h).
 */
#ifndef SHOAL_IO_UI_H
#define SHOAL_IO_UI_H

#include <stdbool.h>
#include <stdint.h>

#include "io/http.h"

struct shoal_api;

#define SHOAL_UI_MAX_WAITERS 1024 /* blocking /v1/cluster queries at once; then 503 */

/* The API's route hook: answers req if it is one of the paths above and
 * returns true; returns false for any other path. */
bool shoal_ui_handle(struct shoal_api *api, uint64_t conn_id, const struct shoal_http_req *req,
                     struct shoal_http_resp *resp);

/* Something the UI shows changed: a member (members=true) or the registry.
 * Safe to call from inside core's callbacks: waiting queries are answered
 * from the loop a moment later, once per burst. */
void shoal_ui_notify(struct shoal_api *api, bool members);

/* Drops the waiting queries and frees the UI's state (shoal_api_close). */
void shoal_ui_close(struct shoal_api *api);

#endif
