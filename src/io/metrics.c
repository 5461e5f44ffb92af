/* metrics.c -- renders the agent's counters as Prometheus text (format
 * 0.0.4, io/metrics.h) and counts member flaps from SWIM events. Families
 * are written in a fixed order, each with HELP and TYPE, so a scrape always
 * has the same series (zeros included) and `promtool check metrics` passes.
 */
#include "io/metrics.h"
#include "io/procinfo.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/registry.h"
#include "core/swim.h"
#include "io/checks.h"
#include "io/dns.h"
#include "io/node.h"
#include "io/stream.h"
#include "wire/wire.h"

void shoal_metrics_init(struct shoal_metrics *m) { memset(m, 0, sizeof(*m)); }

static void forget_dead(struct shoal_metrics *m, size_t i) { m->dead[i] = m->dead[--m->n_dead]; }

void shoal_metrics_event(struct shoal_metrics *m, int64_t now_ms, const struct shoal_event *ev)
{
    if (!m || !ev->member)
        return;
    const char *name = ev->member->name;
    size_t i;
    for (i = 0; i < m->n_dead && strcmp(m->dead[i].name, name) != 0; i++)
        ;
    bool known = i < m->n_dead;
    if (ev->type == SHOAL_EV_MEMBER_REAPED) {
        if (known)
            forget_dead(m, i);
        return;
    }
    if (ev->type != SHOAL_EV_MEMBER_STATUS)
        return;
    if (ev->member->status == SHOAL_DEAD) {
        if (!known) {
            if (m->n_dead == SHOAL_METRICS_FLAP_SLOTS) { /* forget the oldest death */
                size_t oldest = 0;
                for (size_t k = 1; k < m->n_dead; k++)
                    if (m->dead[k].dead_ms < m->dead[oldest].dead_ms)
                        oldest = k;
                forget_dead(m, oldest);
            }
            i = m->n_dead++;
            snprintf(m->dead[i].name, sizeof(m->dead[i].name), "%s", name);
        }
        m->dead[i].dead_ms = now_ms;
    } else if (known && ev->member->status == SHOAL_ALIVE) {
        if (now_ms - m->dead[i].dead_ms <= SHOAL_METRICS_FLAP_WINDOW_MS)
            m->flaps++;
        forget_dead(m, i);
    } else if (known && ev->member->status == SHOAL_LEFT) {
        forget_dead(m, i);
    }
}

/* ---- the text ---- */

struct buf {
    char *p;
    size_t len, cap;
    bool oom;
};

static void put(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void put(struct buf *b, const char *fmt, ...)
{
    for (int attempt = 0; attempt < 2 && !b->oom; attempt++) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
        va_end(ap);
        if (n < 0) {
            b->oom = true;
            return;
        }
        if ((size_t)n < b->cap - b->len) {
            b->len += (size_t)n;
            return;
        }
        size_t cap = b->cap * 2 + (size_t)n;
        char *p = realloc(b->p, cap);
        if (!p) {
            b->oom = true;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
}

static void family(struct buf *b, const char *name, const char *type, const char *help)
{
    put(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* One family with a single unlabelled sample. */
static void scalar(struct buf *b, const char *name, const char *type, const char *help, uint64_t v)
{
    family(b, name, type, help);
    put(b, "%s %" PRIu64 "\n", name, v);
}

static void sample(struct buf *b, const char *name, const char *label, const char *value,
                   uint64_t v)
{
    put(b, "%s{%s=\"%s\"} %" PRIu64 "\n", name, label, value, v);
}

static void membership(struct buf *b, const struct shoal_metrics *m, struct shoal_node *node)
{
    struct shoal_swim *s = shoal_node_swim(node);
    const struct shoal_swim_stats *st = shoal_swim_stats(s);
    const struct shoal_node_counters *c = shoal_node_counters(node);
    size_t counts[SHOAL_STATUS_COUNT] = {0};

    shoal_swim_count_by_status(s, counts);
    family(b, "shoal_members", "gauge", "Members in this node's view (self included), by status.");
    for (int i = 0; i < SHOAL_STATUS_COUNT; i++)
        sample(b, "shoal_members", "status", shoal_status_name(i), counts[i]);
    scalar(b, "shoal_health_score", "gauge",
           "Lifeguard local health (awareness) score; 0 is healthy.", shoal_swim_health(s));
    scalar(b, "shoal_probes_sent_total", "counter", "Direct probes (pings) sent.", st->probes_sent);
    scalar(b, "shoal_probes_failed_total", "counter",
           "Probes that got no ack, direct or indirect, in time.", st->probes_failed);
    scalar(b, "shoal_ping_reqs_sent_total", "counter", "Indirect probe requests sent.",
           st->ping_reqs_sent);
    scalar(b, "shoal_suspicions_total", "counter", "Members this node started to suspect.",
           st->suspicions);
    scalar(b, "shoal_refutations_total", "counter",
           "Suspicions of this node it refuted with a higher incarnation.", st->refutes);
    scalar(b, "shoal_deaths_total", "counter", "Members this node declared or learned dead.",
           st->deaths);
    scalar(b, "shoal_flaps_total", "counter",
           "Members seen dead and then alive again within a minute.", m ? m->flaps : 0);
    scalar(b, "shoal_conflicts_total", "counter", "Two live nodes seen claiming one name.",
           st->conflicts);
    scalar(b, "shoal_pushpulls_total", "counter", "Full state exchanges (push-pull).",
           st->pushpulls);
    scalar(b, "shoal_member_updates_applied_total", "counter",
           "Membership updates that changed this node's view.", st->updates_applied);

    family(b, "shoal_packets_total", "counter", "Datagrams received and sent on the SWIM port.");
    sample(b, "shoal_packets_total", "direction", "in", c->packets_in);
    sample(b, "shoal_packets_total", "direction", "out", c->packets_out);
    family(b, "shoal_bytes_total", "counter", "Datagram bytes received and sent on the SWIM port.");
    sample(b, "shoal_bytes_total", "direction", "in", c->bytes_in);
    sample(b, "shoal_bytes_total", "direction", "out", c->bytes_out);
    family(b, "shoal_drops_total", "counter", "Datagrams refused, by reason.");
    for (int i = 0; i < SHOAL_DROP_COUNT; i++)
        sample(b, "shoal_drops_total", "reason", shoal_drop_name(i), c->drops[i]);
    family(b, "shoal_stream_frame_drops_total", "counter",
           "Stream (TCP) frames refused, by reason.");
    for (int i = 0; i < SHOAL_DROP_COUNT; i++)
        sample(b, "shoal_stream_frame_drops_total", "reason", shoal_drop_name(i),
               c->frame_drops[i]);
}

static void registry(struct buf *b, struct shoal_node *node)
{
    const struct shoal_registry *r = shoal_node_registry(node);
    const struct shoal_registry_stats *st = shoal_registry_stats(r);
    const struct shoal_stream_counters *sc = shoal_node_stream_counters(node);
    size_t by_health[SHOAL_HEALTH_COUNT], tombstones;

    shoal_registry_counts(r, by_health, &tombstones);
    family(b, "shoal_registry_instances", "gauge",
           "Instances in this replica (tombstones excluded), by health status.");
    for (int i = 0; i < SHOAL_HEALTH_COUNT; i++)
        sample(b, "shoal_registry_instances", "status", shoal_health_name(i), by_health[i]);
    scalar(b, "shoal_registry_tombstones", "gauge", "Deregistrations remembered (tombstones).",
           tombstones);
    scalar(b, "shoal_registry_own_instances", "gauge", "Instances owned by this node.",
           shoal_registry_own(r, NULL, 0));
    scalar(b, "shoal_registry_services", "gauge", "Distinct services in this replica.",
           shoal_registry_services(r, NULL, 0));
    scalar(b, "shoal_registry_events_applied_total", "counter",
           "Registry events that changed this replica.", st->events_applied);
    scalar(b, "shoal_registry_events_stale_total", "counter",
           "Registry events ignored as no newer than what is held.", st->events_stale);
    scalar(b, "shoal_registry_events_sent_total", "counter", "Registry events gossiped.",
           st->events_sent);
    family(b, "shoal_registry_events_refused_total", "counter",
           "Registry events refused by the owner rules or the caps, by reason.");
    for (int i = 0; i < SHOAL_REG_REFUSE_COUNT; i++)
        sample(b, "shoal_registry_events_refused_total", "reason", shoal_reg_refuse_name(i),
               st->refused[i]);
    scalar(b, "shoal_registry_signatures_verified_total", "counter",
           "Owner signatures of registry events checked.", st->sig_verified);
    family(b, "shoal_registry_syncs_total", "counter",
           "Anti-entropy exchanges, by role (started here or served for a peer).");
    sample(b, "shoal_registry_syncs_total", "role", "started", st->syncs_started);
    sample(b, "shoal_registry_syncs_total", "role", "served", st->syncs_served);
    family(b, "shoal_registry_sync_events_total", "counter",
           "Events carried by anti-entropy, by direction.");
    sample(b, "shoal_registry_sync_events_total", "direction", "sent", st->sync_events_sent);
    sample(b, "shoal_registry_sync_events_total", "direction", "received",
           st->sync_events_received);
    family(b, "shoal_stream_bytes_total", "counter",
           "Bytes on registry streams (TCP: anti-entropy and large events), by direction.");
    sample(b, "shoal_stream_bytes_total", "direction", "in", sc->bytes_in);
    sample(b, "shoal_stream_bytes_total", "direction", "out", sc->bytes_out);
    family(b, "shoal_stream_frames_total", "counter", "Frames on registry streams, by direction.");
    sample(b, "shoal_stream_frames_total", "direction", "in", sc->frames_in);
    sample(b, "shoal_stream_frames_total", "direction", "out", sc->frames_out);
    scalar(b, "shoal_stream_connections", "gauge", "Registry stream connections open.", sc->open);
}

static void dns(struct buf *b, const struct shoal_metrics *m)
{
    static const struct shoal_dns_counters none;
    const struct shoal_dns_counters *c = m && m->dns ? shoal_dns_server_counters(m->dns) : &none;
    family(b, "shoal_dns_queries_total", "counter",
           "DNS queries that parsed, by question type (A, AAAA, SRV, other).");
    for (int i = 0; i < SHOAL_DNS_Q_COUNT; i++)
        sample(b, "shoal_dns_queries_total", "type", shoal_dns_qkind_name(i), c->queries[i]);
    family(b, "shoal_dns_responses_total", "counter",
           "DNS messages received, by outcome (dropped: no reply sent).");
    for (int i = 0; i < SHOAL_DNS_R_COUNT; i++)
        sample(b, "shoal_dns_responses_total", "result", shoal_dns_result_name(i), c->results[i]);
    family(b, "shoal_dns_tcp_connections_total", "counter",
           "DNS TCP connections accepted, rejected (over the cap) and closed idle.");
    sample(b, "shoal_dns_tcp_connections_total", "event", "accepted", c->tcp_accepted);
    sample(b, "shoal_dns_tcp_connections_total", "event", "rejected", c->tcp_rejected);
    sample(b, "shoal_dns_tcp_connections_total", "event", "closed_idle", c->tcp_closed_idle);
    scalar(b, "shoal_dns_tcp_connections", "gauge", "DNS TCP connections open.", c->tcp_open);
}

/* ---- health checks (io/checks.h keeps the counters; this only prints) ---- */
static void checks(struct buf *b, const struct shoal_metrics *m)
{
    static const struct shoal_checks_stats none;
    const struct shoal_checks_stats *c = m && m->checks ? shoal_checks_stats(m->checks) : &none;
    scalar(b, "shoal_checks_run_total", "counter", "Active check probes run by this node.", c->run);
    scalar(b, "shoal_checks_failed_total", "counter",
           "Probes whose raw result was not passing (before damping).", c->failed);
    scalar(b, "shoal_checks_timeouts_total", "counter", "Probes that hit their timeout.",
           c->timeouts);
    scalar(b, "shoal_checks_configured", "gauge", "Active checks configured on our instances.",
           c->configured);
    scalar(b, "shoal_checks_in_flight", "gauge", "Probes running now.", c->in_flight);
    scalar(b, "shoal_checks_queued", "gauge", "Probes waiting for a free slot.", c->queued);
    family(b, "shoal_check_duration_seconds", "histogram", "How long each probe took.");
    for (int i = 0; i < SHOAL_CHECKS_LATENCY_BUCKETS; i++)
        put(b, "shoal_check_duration_seconds_bucket{le=\"%g\"} %" PRIu64 "\n",
            shoal_checks_latency_bounds[i], c->latency_buckets[i]);
    put(b, "shoal_check_duration_seconds_bucket{le=\"+Inf\"} %" PRIu64 "\n", c->latency_count);
    put(b, "shoal_check_duration_seconds_sum %.6f\n", c->latency_sum_s);
    put(b, "shoal_check_duration_seconds_count %" PRIu64 "\n", c->latency_count);
}

/* The build, and the process figures Prometheus' client libraries export
 * under the same names (process_*), so standard dashboards work. */
static void process(struct buf *b)
{
    struct shoal_procstat ps;
    family(b, "shoal_build_info", "gauge", "Always 1; the labels say which build runs.");
    put(b, "shoal_build_info{version=\"%s\",build=\"%s\"} 1\n", shoal_procinfo_version(),
        shoal_procinfo_build());
    if (!shoal_procinfo_read(&ps))
        return; /* no /proc: nothing rather than zeros */
    family(b, "process_cpu_seconds_total", "counter", "User and system CPU time spent.");
    put(b, "process_cpu_seconds_total %.2f\n", ps.cpu_user_s + ps.cpu_system_s);
    scalar(b, "process_resident_memory_bytes", "gauge", "Resident memory size.", ps.rss_bytes);
    scalar(b, "process_open_fds", "gauge", "Open file descriptors.", ps.open_fds);
    if (ps.max_fds)
        scalar(b, "process_max_fds", "gauge", "The limit of open file descriptors.", ps.max_fds);
    if (shoal_procinfo_start_time() > 0) {
        family(b, "process_start_time_seconds", "gauge", "Start time, seconds since the epoch.");
        put(b, "process_start_time_seconds %.3f\n", shoal_procinfo_start_time());
    }
}

char *shoal_metrics_render(const struct shoal_metrics *m, struct shoal_node *node)
{
    struct buf b = {.cap = 16384};
    if (!(b.p = malloc(b.cap)))
        return NULL;
    b.p[0] = 0;
    membership(&b, m, node);
    registry(&b, node);
    dns(&b, m);
    checks(&b, m);
    process(&b);
    if (b.oom) {
        free(b.p);
        return NULL;
    }
    return b.p;
}
