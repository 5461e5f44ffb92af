/* consul_api.h -- the Consul-compatible HTTP API on the agent's port.
 *
 * The agent, catalog, health and status endpoints that discovery clients
 * use (python-consul, consul-template, Prometheus' consul_sd), in Consul's
 * JSON shapes, with blocking queries (?index=&wait=) and the X-Consul-Index,
 * X-Consul-KnownLeader and X-Consul-LastContact headers; and Prometheus'
 * http_sd at GET /v1/sd/prometheus. docs/consul.md lists every endpoint and
 * how it differs from Consul. Registrations go through the native register
 * route (shoal_api_native), so they obey exactly the native rules.
 */
#ifndef SHOAL_IO_CONSUL_API_H
#define SHOAL_IO_CONSUL_API_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "io/api.h"

#define SHOAL_CONSUL_WAIT_DEFAULT_MS 300000 /* Consul's default wait: 5 minutes */
#define SHOAL_CONSUL_WAIT_MAX_MS 600000     /* and its cap: 10 minutes */

/* Answers req if its path is a Consul or http_sd path; false otherwise
 * (resp untouched). */
bool shoal_consul_handle(struct shoal_api *api, uint64_t conn_id, const struct shoal_http_req *req,
                         struct shoal_http_resp *resp);
/* Answers the blocking queries whose index moved. */
void shoal_consul_registry_changed(struct shoal_api *api);
/* Blocking queries waiting now. */
size_t shoal_consul_waiting(const struct shoal_api *api);
/* Drops the waiting queries and frees the state. */
void shoal_consul_close(struct shoal_api *api);

#endif
