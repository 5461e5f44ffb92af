/* api.h -- the agent's HTTP/JSON API handlers (docs/interfaces.md and
 * docs/registry-interfaces.md).
 *
 *   GET  /v1/members            every member, self included, sorted by name
 *   GET  /v1/info               this node: identity, counters, drops, stats
 *   POST /v1/join               {"addrs":["IP:PORT", ...]} -> {"joining":N}
 *   POST /v1/leave              -> {"leaving":true}; the agent leaves and exits
 *   POST /v1/register           an instance of ours (JSON body)
 *   POST /v1/deregister/ID      POST /v1/heartbeat/ID
 *   GET  /v1/services           GET /v1/instances/NAME (blocking with index)
 *   GET  /v1/resolve/NAME       one passing instance by strategy (core/balance.h)
 *   POST /v1/release/NAME/ID    ends a least-conn lease of resolve (io/resolve.h)
 *   GET  /v1/registry           counts, digests and stats of this replica
 *   GET  /metrics               Prometheus text format 0.0.4 (io/metrics.h)
 *   /v1/agent/.., /v1/catalog/.., /v1/health/.., /v1/status/.., /v1/sd/prometheus:
 *                               Consul's API and Prometheus http_sd (io/consul_api.h);
 *                               a native route wins where paths collide
 *   GET  /ui/, GET /v1/cluster  the web UI and its blocking summary (io/ui.h)
 * Errors are {"error":"message"} with 400, 404, 405, 500 or 503. The handler
 * has the signature of shoal_http_handler, with a struct shoal_api as ud.
 */
#ifndef SHOAL_IO_API_H
#define SHOAL_IO_API_H

#include <jansson.h>

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "io/http.h"

struct ev_loop;
struct shoal_node;
struct shoal_svcset;
struct shoal_metrics;
struct api_waiters;
struct api_acks;
struct shoal_resolver;
struct shoal_ui;

#define SHOAL_API_MAX_WAITERS 4096      /* blocking queries at once; then 503 */
#define SHOAL_API_WAIT_DEFAULT_MS 60000 /* wait= of a blocking query */
#define SHOAL_API_WAIT_MAX_MS 600000

struct shoal_api {
    struct shoal_node *node;
    /* Called for POST /v1/leave (every time; the callee ignores repeats).
     * The response is filled after it returns, so it must not stop the
     * HTTP server synchronously. */
    void (*leave)(void *ud);
    void *ud;
    /* For blocking queries: the server that answers deferred requests and
     * the loop of their timers. Without both, a query answers at once. */
    struct shoal_http_server *http;
    struct ev_loop *loop;
    /* Optional: ids from --config-dir; an API registration or
     * deregistration of one takes it from the files' care. */
    struct shoal_svcset *svc;
    /* Optional: flap counts and the DNS server for GET /metrics. */
    struct shoal_metrics *metrics;
    /* For GET /v1/info "addresses": the agent's own; family 0 = none. */
    struct shoal_addr bind_addr, http_addr, dns_addr;
    /* Optional: POST /v1/join starts a joiner here (io/joiner.h). */
    struct shoal_joinset *joins;
    struct api_waiters *waiters; /* private; shoal_api_close() frees it */
    struct api_acks *acks;       /* private (io/apiack.h); shoal_api_close() frees it */
    struct shoal_resolver *resolver; /* private (io/resolve.h); shoal_api_close() frees it */
    /* The Consul-compatible API (io/consul_api.h): the datacenter name
     * it answers for ("dc1" when NULL), and its private state. */
    const char *datacenter;
    struct shoal_consul *consul; /* private; shoal_api_close() frees it */
    struct shoal_ui *ui; /* private (io/ui.h): /ui/ and /v1/cluster; shoal_api_close() frees it */
};

/* A shoal_http_handler: ud is a struct shoal_api *. resp->body is malloc'd. */
void shoal_api_handle(void *ud, uint64_t conn_id, const struct shoal_http_req *req,
                      struct shoal_http_resp *resp);

/* Routes req through the native table only (no Consul paths): what the
 * Consul handlers call to reuse the native register/deregister rules.
 * Returns false (resp untouched) when no native route matches the path. */
bool shoal_api_native(struct shoal_api *api, uint64_t conn_id, const struct shoal_http_req *req,
                      struct shoal_http_resp *resp);

/* Answers every blocking query whose service index has moved (the node's
 * reg_changed observer calls this). */
void shoal_api_registry_changed(struct shoal_api *api);
/* The node's persisted observer: answers the registrations, deregistrations
 * and heartbeats that waited for that write (rc 0), or fails them (500). */
void shoal_api_persisted(struct shoal_api *api, int rc);
/* Blocking queries waiting now. */
size_t shoal_api_waiting(const struct shoal_api *api);
/* Drops every waiting query (their connections close with the server) and
 * frees what the API allocated. */
void shoal_api_close(struct shoal_api *api);

/* Dumps v (and releases it; NULL means out of memory) into resp as JSON with
 * the given status; 500 with a JSON error when it cannot be dumped. Shared by
 * the native API and the web UI (io/ui.c). */
void shoal_api_reply_json(struct shoal_http_resp *resp, int status, json_t *v);

#endif
