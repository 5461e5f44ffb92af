/* node.h -- one shoal member on a libev loop: SWIM + registry + wire + UDP
 * + TCP stream + one timer.
 *
 * This is the glue the agent runs and the adapter tests instantiate (several
 * per loop, no HTTP, no argv). Datagrams and stream frames are verified by
 * wire and fed to the SWIM core (types 1..7) or the registry (8..11); what
 * either core sends is sealed and sent; a single ev_timer is re-armed to the
 * earlier of both cores' deadlines after every input. Time is
 * CLOCK_MONOTONIC in milliseconds (shoal_node_clock_ms), never the loop's
 * wall-clock ev_now(). Our own instances are written to DATA_DIR/registry
 * before an input that changed them returns (io/regstore.h).
 */
#ifndef SHOAL_IO_NODE_H
#define SHOAL_IO_NODE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/registry.h"
#include "core/swim.h"
#include "wire/wire.h"

struct ev_loop;
struct shoal_node;
struct shoal_stream_counters;

struct shoal_node_config {
    /* Name, generation, seed and protocol constants. swim.addr is the
     * advertised address; family 0 means "the bound address" (useful with
     * port 0). swim.send/event/ud are the node's own and are ignored here. */
    struct shoal_swim_config swim;
    struct shoal_addr bind; /* port 0 = any free port */
    struct shoal_identity identity;
    bool has_cluster_key;
    uint8_t cluster_pk[SHOAL_PK_BYTES];
    uint64_t seq_start; /* wire replay counter start; grows across restarts */

    /* Registry constants (sync, reap, tombstone TTL, ...). A zeroed struct
     * (max_stream_part 0) means shoal_registry_config_defaults(). self,
     * generation, gossip interval and fanout, retransmit mult and
     * max_datagram are always taken from swim; callbacks are the node's. */
    struct shoal_registry_config registry;
    /* Our instances as loaded from the data dir (shoal_regstore_load), and
     * the version counter they were saved with: restored before anything
     * else. Borrowed during shoal_node_new() only. */
    const struct shoal_instance *restore;
    size_t n_restore;
    uint64_t restore_version;
    /* Our own service-name scope: comma-separated globs (core/principal.h),
     * NULL or "" for any name. INTERIM until our certificate gives it. */
    const char *own_scope;
    /* INTERIM likewise: "NAME=PATTERN,..." scopes given to the principals
     * learned from envelopes (borrowed during shoal_node_new() only). */
    const char *const *peer_scopes;
    size_t n_peer_scopes;
    /* Where our instances are persisted (DIR/registry); NULL: nowhere. */
    const char *data_dir;

    /* Optional observers; they must not free the node. event is called after
     * the node has logged the event; left is called once, when a leave
     * started with shoal_node_leave() is done (shoal_swim_leave_done()). */
    void (*event)(void *ud, const struct shoal_event *ev);
    void (*left)(void *ud);
    /* Called after an input that changed what registry queries return
     * (blocking queries); outside core, so it may query and call the node. */
    void (*reg_changed)(void *ud);
    /* Called after every attempt to write our changes (shoal_node_persist(),
     * also from the loop's group commit) with its result: 0 when everything
     * acknowledged so far is durable, else the error. For deferred
     * acknowledgements (the API's). */
    void (*persisted)(void *ud, int rc);
    void *ud;
};

struct shoal_node_counters {
    uint64_t packets_in, packets_out, bytes_in, bytes_out;
    uint64_t drops[SHOAL_DROP_COUNT];        /* by enum shoal_drop */
    uint64_t seal_errors;                    /* core produced a message wire refused */
    uint64_t send_errors;                    /* sendto failed; the datagram is lost */
    uint64_t timer_fires;                    /* ev_timer callbacks (spin detection) */
    uint64_t stuck_deadlines;                /* a tick left the deadline at or before now */
    uint64_t reg_in, reg_out;                /* registry messages, datagrams and frames */
    uint64_t frame_drops[SHOAL_DROP_COUNT];  /* stream frames refused, by reason */
    uint64_t stream_errors;                  /* a stream send failed; the message is lost */
    uint64_t persist_writes, persist_errors; /* DATA_DIR/registry(.log) */
    uint64_t persist_appends;                /* log appends (one fdatasync each) */
    uint64_t persist_compactions;            /* snapshots written (log emptied) */
};

/* Binds the UDP socket and the TCP listener (same IP:PORT), creates wire
 * and both cores, restores c->restore, starts the watchers. Calls malloc;
 * free with shoal_node_free(). Returns NULL and sets *err (negative SHOAL_E*:
 * SHOAL_EINVAL for a bad config or restore; or -errno from a socket, e.g.
 * -EADDRINUSE) on failure. */
struct shoal_node *shoal_node_new(struct ev_loop *loop, const struct shoal_node_config *c,
                                  int *err);
/* Stops the watchers, closes the socket, frees core and wire. NULL is ok. */
void shoal_node_free(struct shoal_node *n);

/* Starts joining through seeds. Returns 0, SHOAL_EINVAL (bad seeds) or
 * SHOAL_ESTATE (leaving). */
int shoal_node_join(struct shoal_node *n, const struct shoal_addr *seeds, size_t count);
/* Starts a graceful leave: our instances are deregistered (and that spread)
 * first, then the member leaves; the left observer fires when it is done.
 * DATA_DIR/registry keeps what was registered, so a restart restores it. */
void shoal_node_leave(struct shoal_node *n);
bool shoal_node_leaving(const struct shoal_node *n);

/* Our own instances (registry.h), with the node's clocks. Each returns
 * what the registry returns (0, SHOAL_EINVAL with *why, SHOAL_ENOENT), or
 * SHOAL_ESTATE while leaving; register also SHOAL_ETOOBIG with *why when
 * our instances would no longer fit DATA_DIR/registry. The change is
 * written once the loop has handled every ready input (group commit: one
 * log append and one fdatasync for all of them), or by an explicit
 * shoal_node_persist(): acknowledge it only once shoal_node_durable() or
 * the persisted observer says so. */
int shoal_node_register(struct shoal_node *n, const struct shoal_instance *spec, const char **why);
int shoal_node_deregister(struct shoal_node *n, const char *id);
int shoal_node_heartbeat(struct shoal_node *n, const char *id);
int shoal_node_set_health(struct shoal_node *n, const char *id, uint8_t health);
/* A TTL update with a status: shoal_registry_ttl_set. */
int shoal_node_ttl_set(struct shoal_node *n, const char *id, uint8_t health);
/* An active check's damped result (io/checks.h): shoal_registry_check_result. */
int shoal_node_check_result(struct shoal_node *n, const char *id, uint32_t index,
                            uint8_t status, const char *output);
/* Writes our changes since the last write (or since a failed one) now:
 * appended to DATA_DIR/registry.log, or a new snapshot DATA_DIR/registry
 * when the log is due for compaction (io/reglog.h). Calls the persisted
 * observer. Returns 0, or -errno / SHOAL_E* of the failed write (logged;
 * it is retried after the next input). */
int shoal_node_persist(struct shoal_node *n);
/* True when nothing changed since the last successful write (or nothing
 * is persisted at all): an acknowledgement now is truthful. */
bool shoal_node_durable(const struct shoal_node *n);
/* Asks for a write at the end of this loop iteration even if nothing new
 * changed (a deferred acknowledgement waits for it). */
void shoal_node_persist_soon(struct shoal_node *n);

/* Borrowed views, valid until shoal_node_free(). */
struct shoal_swim *shoal_node_swim(const struct shoal_node *n);
struct shoal_registry *shoal_node_registry(const struct shoal_node *n);
/* Who speaks for which name: the node's table, read by the registry's
 * owner checks; filled with our own principal at start (and, until
 * certificates, from verified envelopes). */
struct shoal_principals *shoal_node_principals(struct shoal_node *n);
const struct shoal_stream_counters *shoal_node_stream_counters(const struct shoal_node *n);
const struct shoal_node_counters *shoal_node_counters(const struct shoal_node *n);
const struct shoal_addr *shoal_node_addr(const struct shoal_node *n);  /* advertised */
const struct shoal_addr *shoal_node_bound(const struct shoal_node *n); /* socket */
bool shoal_node_has_cluster_key(const struct shoal_node *n);

/* The node's clock: CLOCK_MONOTONIC in milliseconds. */
int64_t shoal_node_clock_ms(void);
/* Wall-clock unix milliseconds (registration and heartbeat times). */
int64_t shoal_node_wall_ms(void);

#endif
