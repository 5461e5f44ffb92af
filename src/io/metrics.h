/* metrics.h -- GET /metrics: the agent's counters in Prometheus text
 * exposition format 0.0.4 (HELP and TYPE for every family, names shoal_*).
 *
 * Most values are read at render time from the node (SWIM stats, node and
 * stream counters, registry counts) and the DNS server. Flaps are counted
 * here, from the node's SWIM events: a member seen dead and then alive
 * again within SHOAL_METRICS_FLAP_WINDOW_MS is one flap.
 */
#ifndef SHOAL_IO_METRICS_H
#define SHOAL_IO_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include "core/msg.h"

struct shoal_event;
struct shoal_node;
struct shoal_dns_server;
struct shoal_checks;

#define SHOAL_METRICS_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"
#define SHOAL_METRICS_FLAP_WINDOW_MS 60000
#define SHOAL_METRICS_FLAP_SLOTS 256 /* deaths remembered; the oldest is forgotten first */

struct shoal_metrics {
    uint64_t flaps;
    struct {
        char name[SHOAL_NAME_MAX];
        int64_t dead_ms;
    } dead[SHOAL_METRICS_FLAP_SLOTS];
    size_t n_dead;
    const struct shoal_dns_server *dns; /* optional, borrowed */
    const struct shoal_checks *checks;  /* optional, borrowed (io/checks.h) */
};

/* Zeroes m (no DNS server). */
void shoal_metrics_init(struct shoal_metrics *m);
/* Feeds one SWIM event (the node's event observer) seen at now_ms. */
void shoal_metrics_event(struct shoal_metrics *m, int64_t now_ms, const struct shoal_event *ev);
/* The exposition text for node (m may be NULL: no flaps, no DNS). Returns a
 * malloc'd NUL-terminated string (the caller frees it), or NULL without memory. */
char *shoal_metrics_render(const struct shoal_metrics *m, struct shoal_node *node);

#endif
