/* regsim_util.h -- the registry on the deterministic simulator: every node
 * runs a shoal_swim core (driven by sim_util) and a shoal_registry core,
 * glued as src/io/node.c glues them.
 *
 * Glue (node.c): swim's JOIN/STATUS events -> shoal_registry_owner_status,
 * REAPED -> owner_status(LEFT), JOINED -> shoal_registry_sync_with(seed);
 * the registry's peers are shoal_swim_random_members. A restarted node
 * comes back with generation + 1 and restores what it had persisted (its
 * live own instances and version counter at the crash).
 * Registry traffic has its own virtual network on sim_util's clock: the
 * clock advances 1 ms at a time (swim first, then registry deliveries,
 * then registry deadlines). Every registry message goes through the real
 * payload codec (shoal_wire_encode_reg when sent, shoal_wire_decode_reg
 * when delivered). Datagrams share the swim network's loss, latency and
 * partitions, and may be duplicated with a long delay (old news arriving
 * late). A stream is reliable and in order with a connect round trip
 * and a bandwidth, but is lost (with what is in flight) when either end
 * crashes or restarts or a partition separates them.
 * An oracle watches every replica through the changed callback: a mirror
 * of what each replica serves, the deregistrations made by owners, and any
 * instance that comes back after a replica dropped it for good.
 */
#ifndef SHOAL_REGSIM_UTIL_H
#define SHOAL_REGSIM_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/registry.h"
#include "sim_util.h"

/* Virtual wall clock of every node: unix ms at virtual time 0. */
#define REGSIM_EPOCH_MS 1700000000000LL

/* Registry network counters. Those under "Failures" are each a bug in a
 * core, the codec or the sim: counted, never asserted on, so that a test
 * can print them (regsim_clean()). */
struct regsim_net_stats {
    uint64_t dgrams_sent, dgrams_delivered, dgrams_lost, dgrams_blocked, dgrams_to_down;
    uint64_t dgrams_duplicated;
    uint64_t dgram_bytes, max_dgram;
    uint64_t streams_opened, connect_failed, stream_msgs_sent, stream_msgs_delivered;
    uint64_t stream_msgs_lost, stream_bytes, max_frame;
    /* Failures. */
    uint64_t too_big, encode_errors, decode_errors, wrong_transport, unroutable, bad_conn;
    uint64_t stuck_deadlines, start_errors;
};

/* Oracle findings. Any non-zero count is a bug. */
struct regsim_oracle_stats {
    uint64_t changes;         /* notifications seen */
    uint64_t deregistrations; /* owners' own instances removed (API, TTL, leave) */
    uint64_t comebacks;       /* an instance back at a (generation, version) dropped for good */
    uint64_t backwards;       /* an update to an older (generation, version) */
    uint64_t phantoms;        /* an instance no owner ever registered */
    uint64_t lookup_misses;   /* ADDED/UPDATED but the replica does not serve it */
};

/* Called on every registry change of every node (after the oracle), with the
 * instance's (generation, version) for ADDED/UPDATED (else 0, 0). */
typedef void (*regsim_observer_fn)(void *ud, size_t node, const struct shoal_reg_change *c,
                                   uint64_t generation, uint64_t version, int64_t now);

struct regsim;

/* A registry simulator for up to n nodes over a fresh sim_new(seed, n).
 * Calls malloc; free with regsim_free() (frees the sim too). NULL if out of
 * memory. */
struct regsim *regsim_new(uint64_t seed, size_t n);
void regsim_free(struct regsim *rs);

/* The membership simulator underneath: for its views and swim config. Do
 * not start, crash, partition or run it directly. */
struct sim *regsim_sim(struct regsim *rs);
/* The registry config every node starts from (shoal_registry_config_defaults
 * with node.c's overrides from swim); self, generation and callbacks are
 * set per node. Edit before starting nodes. */
struct shoal_registry_config *regsim_base_config(struct regsim *rs);
size_t regsim_size(const struct regsim *rs);
uint64_t regsim_seed(const struct regsim *rs);
int64_t regsim_now(const struct regsim *rs);
void regsim_set_observer(struct regsim *rs, regsim_observer_fn fn, void *ud);

/* Network: applies to swim and registry traffic alike. */
void regsim_set_latency(struct regsim *rs, uint32_t min_ms, uint32_t max_ms);
void regsim_set_loss(struct regsim *rs, double p);
/* Registry datagrams only: with probability p a datagram is also
 * delivered a second time, up to max_delay_ms later (default off). */
void regsim_set_duplication(struct regsim *rs, double p, uint32_t max_delay_ms);
/* Stream throughput in bytes per virtual ms (default 125000: 1 Gbit/s). */
void regsim_set_bandwidth(struct regsim *rs, uint32_t bytes_per_ms);
void regsim_partition(struct regsim *rs, const int *group);
void regsim_heal(struct regsim *rs);

/* Lifecycle (sim_util's, plus the registry). seed_node < 0 starts alone.
 * Return 0, SHOAL_ESTATE, or a core's error. */
int regsim_start(struct regsim *rs, size_t i, int seed_node);
/* Crash: both cores stop; the node's persisted state is its live own
 * instances and version counter as of now. */
int regsim_crash(struct regsim *rs, size_t i);
/* Restart a crashed node: generation + 1, restores its persisted state,
 * joins through seed_node. */
int regsim_restart(struct regsim *rs, size_t i, int seed_node);

/* The owner's API, as the agent calls it (wall clock = epoch + now). */
int regsim_register(struct regsim *rs, size_t i, const struct shoal_instance *spec,
                    const char **why);
int regsim_deregister(struct regsim *rs, size_t i, const char *id);
int regsim_heartbeat(struct regsim *rs, size_t i, const char *id);
int regsim_set_health(struct regsim *rs, size_t i, const char *id, uint8_t health);

/* Runs everything up to and including t_ms; the clock ends at t_ms. */
void regsim_run_until(struct regsim *rs, int64_t t_ms);
void regsim_run_for(struct regsim *rs, int64_t dt_ms);
/* Runs until pred holds (checked every step_ms) or deadline_ms passes.
 * Returns the virtual time pred first held, or -1. */
int64_t regsim_run_until_true(struct regsim *rs, int64_t deadline_ms, int64_t step_ms,
                              bool (*pred)(struct regsim *rs, void *ud), void *ud);

/* Views. */
struct shoal_registry *regsim_registry(struct regsim *rs, size_t i); /* NULL unless running */
bool regsim_running(const struct regsim *rs, size_t i);
/* Live (non-tombstone) instances node i holds, as its notifications say. */
size_t regsim_visible(const struct regsim *rs, size_t i);
void regsim_registry_stats(const struct regsim *rs, struct shoal_registry_stats *sum);
const struct regsim_net_stats *regsim_net_stats(const struct regsim *rs);
const struct regsim_oracle_stats *regsim_oracle_stats(const struct regsim *rs);
/* Deregistrations the owners made that are still held live by a running
 * node at a (generation, version) not newer than the deregistration's.
 * why names the first. */
size_t regsim_stale_held(const struct regsim *rs, char *why, size_t len);

/* ---- authority (core/regauth.h) ---- */

/* Gives every node an Ed25519 key and every registry the same principal
 * table (every node's name bound to its key, no scope) and the owner
 * signature callbacks of node.c. Call before starting any node. */
int regsim_enable_authority(struct regsim *rs);
/* Node i's principal gets the scope pattern (e.g. "web*"). */
int regsim_set_scope(struct regsim *rs, size_t i, const char *pattern);
/* Signs ev with node i's key (what node i says; a forgery if ev is not
 * i's own). */
int regsim_sign_as(struct regsim *rs, size_t i, struct shoal_instance *ev);
const char *regsim_name(const struct regsim *rs, size_t i);
/* Sends one gossip datagram of events from node `from` to node `to` on the
 * registry network (latency applies): a liar's tool. 0 or SHOAL_E*. */
int regsim_inject(struct regsim *rs, size_t from, size_t to, const struct shoal_instance *evs,
                  uint32_t n);

/* ---- convergence ---- */

/* Node i's replica is exactly the union of every running owner's own live
 * instances (content, generation, version and health), its notification
 * mirror agrees, and its service summary serves exactly the passing ones.
 * On false why names the first difference. Calls malloc. */
bool regsim_replica_ok(struct regsim *rs, size_t i, char *why, size_t len);
/* Every running node's digests of the running owners (tombstones and all)
 * equal each running owner's digest of itself, so all are identical. A dead
 * owner's leftovers are not compared: regsim_replica_ok checks that none of
 * its instances is held live. */
bool regsim_digests_agree(struct regsim *rs, char *why, size_t len);
/* Membership as the registry needs it: every running node sees every
 * other running node alive or suspect (served) at its current generation,
 * every crashed node dead or absent. Unlike sim_converged() it does not
 * ask for one incarnation everywhere, which 10% loss keeps moving. */
bool regsim_members_ok(const struct regsim *rs, char *why, size_t len);
/* regsim_members_ok(), regsim_digests_agree() and regsim_replica_ok() for
 * every running node. */
bool regsim_converged(struct regsim *rs, char *why, size_t len);
/* How many running nodes fail regsim_replica_ok (0 if converged). */
size_t regsim_divergent(struct regsim *rs, char *why, size_t len);

/* Prints (stderr), for the first (node, owner) pair the last
 * regsim_digests_agree/regsim_divergent/regsim_replica_ok call found wrong:
 * both nodes' starts, crashes and restarts, the node's swim events about
 * the owner, and what its membership and registry say of it now. */
void regsim_explain(const struct regsim *rs);

/* No failure counted by the network, the scheduler or the oracle, and
 * sim_clean() of the membership sim. */
bool regsim_clean(const struct regsim *rs, char *why, size_t len);
/* Trace over swim (sim_trace_hash), every registry delivery and change. */
uint64_t regsim_trace_hash(const struct regsim *rs);
/* One line of registry network statistics, for the test log. */
void regsim_print_stats(const struct regsim *rs, const char *label);

#endif
