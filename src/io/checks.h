/* checks.h -- the owner's active health checks (HTTP and TCP) on libev.
 *
 * The runner reads our own instances' checks from the registry (it follows
 * shoal_registry_own_version) and probes each on its interval, with a
 * jittered start. HTTP probes run on libcurl's multi-socket interface, its
 * sockets and timeout driven by ev_io/ev_timer; TCP probes are non-blocking
 * connects. Nothing blocks the loop, there is no thread per check, and at
 * most max_in_flight probes run at once (the rest wait in a FIFO). Results
 * are damped (rise/fall consecutive results) and then handed to `result`.
 */
#ifndef SHOAL_IO_CHECKS_H
#define SHOAL_IO_CHECKS_H

#include <stdint.h>

#include "core/registry.h"

struct ev_loop;
struct shoal_checks;

struct shoal_checks_config {
    struct shoal_registry *reg; /* read only: our instances and their checks */
    /* A damped result of check `index` of our instance `id`; the agent
     * passes it to shoal_node_check_result(). */
    void (*result)(void *ud, const char *id, uint32_t index, uint8_t status, const char *output);
    void *ud;
    uint8_t rise;           /* default successes before passing (1, as Consul's 0) */
    uint8_t fall;           /* default failures before warning/critical (1) */
    uint32_t max_in_flight; /* 256 */
    uint32_t poll_ms;       /* how often the registry is looked at for changes (200) */
    uint32_t first_max_ms;  /* a new check first runs within min(this, interval) (1000) */
};

#define SHOAL_CHECKS_LATENCY_BUCKETS 12
/* Upper bounds in seconds of the latency histogram (Prometheus `le`). */
extern const double shoal_checks_latency_bounds[SHOAL_CHECKS_LATENCY_BUCKETS];

/* Counters for /metrics. Buckets are cumulative as Prometheus wants them:
 * latency_buckets[i] counts probes that took <= bounds[i]; +Inf is
 * latency_count. failed counts probes whose raw result was not passing. */
struct shoal_checks_stats {
    uint64_t run, failed, timeouts;
    uint64_t latency_count;
    double latency_sum_s;
    uint64_t latency_buckets[SHOAL_CHECKS_LATENCY_BUCKETS];
    uint32_t configured, in_flight, queued;
};

void shoal_checks_config_defaults(struct shoal_checks_config *c);
/* Calls malloc (and curl_global_init once); free with shoal_checks_free().
 * NULL with *err (SHOAL_EINVAL, SHOAL_ENOMEM) on failure. */
struct shoal_checks *shoal_checks_new(struct ev_loop *loop, const struct shoal_checks_config *c,
                                      int *err);
/* Cancels running probes, stops every watcher. NULL is ok. */
void shoal_checks_free(struct shoal_checks *cs);
/* Looks at the registry now rather than at the next poll. */
void shoal_checks_sync(struct shoal_checks *cs);
const struct shoal_checks_stats *shoal_checks_stats(const struct shoal_checks *cs);

/* Flap damping, pure (exported for tests): feeds one raw result into the
 * consecutive counters and returns the status to report. A passing result
 * reports passing after `rise` in a row; any other after `fall` in a row. */
struct shoal_check_damp {
    uint32_t successes, failures;
};
uint8_t shoal_check_damp_feed(struct shoal_check_damp *d, uint8_t reported, uint8_t result,
                              uint32_t rise, uint32_t fall);

#endif
