/* node.h -- one SWIM member on a libev loop: core + wire + UDP + one timer.
 *
 * This is the glue the agent runs and the adapter tests instantiate (several
 * per loop, no HTTP, no argv). Datagrams are opened by wire and fed to core;
 * what core sends is sealed and sent; a single ev_timer is re-armed to
 * shoal_swim_next_deadline() after every input. Time is CLOCK_MONOTONIC in
 * milliseconds (shoal_node_clock_ms), never the loop's wall-clock ev_now().
 */
#ifndef SHOAL_IO_NODE_H
#define SHOAL_IO_NODE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/swim.h"
#include "wire/wire.h"

struct ev_loop;
struct shoal_node;

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

    /* Optional observers; they must not free the node. event is called after
     * the node has logged the event; left is called once, when a leave
     * started with shoal_node_leave() is done (shoal_swim_leave_done()). */
    void (*event)(void *ud, const struct shoal_event *ev);
    void (*left)(void *ud);
    void *ud;
};

struct shoal_node_counters {
    uint64_t packets_in, packets_out, bytes_in, bytes_out;
    uint64_t drops[SHOAL_DROP_COUNT]; /* by enum shoal_drop */
    uint64_t seal_errors;             /* core produced a message wire refused */
    uint64_t send_errors;             /* sendto failed; the datagram is lost */
    uint64_t timer_fires;             /* ev_timer callbacks (spin detection) */
    uint64_t stuck_deadlines;         /* a tick left the deadline at or before now */
};

/* Binds the UDP socket, creates wire and core, starts the watchers. Calls
 * malloc; free with shoal_node_free(). Returns NULL and sets *err (negative
 * SHOAL_E*, or -errno from the socket, e.g. -EADDRINUSE) on failure. */
struct shoal_node *shoal_node_new(struct ev_loop *loop, const struct shoal_node_config *c,
                                  int *err);
/* Stops the watchers, closes the socket, frees core and wire. NULL is ok. */
void shoal_node_free(struct shoal_node *n);

/* Starts joining through seeds. Returns 0, SHOAL_EINVAL (bad seeds) or
 * SHOAL_ESTATE (leaving). */
int shoal_node_join(struct shoal_node *n, const struct shoal_addr *seeds, size_t count);
/* Starts a graceful leave; the left observer fires when it is done. */
void shoal_node_leave(struct shoal_node *n);
bool shoal_node_leaving(const struct shoal_node *n);

/* Borrowed views, valid until shoal_node_free(). */
struct shoal_swim *shoal_node_swim(const struct shoal_node *n);
const struct shoal_node_counters *shoal_node_counters(const struct shoal_node *n);
const struct shoal_addr *shoal_node_addr(const struct shoal_node *n);  /* advertised */
const struct shoal_addr *shoal_node_bound(const struct shoal_node *n); /* socket */
bool shoal_node_has_cluster_key(const struct shoal_node *n);

/* The node's clock: CLOCK_MONOTONIC in milliseconds. */
int64_t shoal_node_clock_ms(void);

#endif
