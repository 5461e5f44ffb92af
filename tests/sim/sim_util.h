/* sim_util.h -- a deterministic simulator: many shoal_swim cores in one process.
 *
 * A virtual clock and a virtual network drive N cores. One min-heap orders
 * message deliveries and node deadlines by (time, insertion number), so a run
 * is a pure function of its seed. Every message passes through the real
 * payload codec (shoal_wire_encode when sent, shoal_wire_decode when
 * delivered) and must fit max_datagram - SHOAL_ENVELOPE_BYTES. The network
 * draws a latency per message, loses messages with a probability, honours
 * one-way blocks, and drops messages to paused or crashed nodes. Every node's
 * events are recorded, and a trace hash over all of it proves determinism.
 */
#ifndef SHOAL_SIM_UTIL_H
#define SHOAL_SIM_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/swim.h"

#define SIM_BASE_PORT 10000 /* node i is 127.0.0.1:(SIM_BASE_PORT + i), no socket */
#define SIM_ABSENT (1u << SHOAL_STATUS_COUNT) /* status mask bit: not in the table */
#define SIM_MASK(st) (1u << (st))

enum sim_state {
    SIM_OFF,     /* never started */
    SIM_UP,      /* running */
    SIM_PAUSED,  /* no ticks; messages to it are dropped (a full socket) */
    SIM_LEAVING, /* running a graceful leave */
    SIM_LEFT,    /* stopped after its leave */
    SIM_CRASHED, /* stopped without a word */
};

/* One recorded shoal_event. subject is the node index of ev->member, or -1. */
struct sim_event_rec {
    int64_t at_ms;
    uint64_t generation;
    uint32_t incarnation;
    int32_t observer;
    int32_t subject;
    uint8_t type;       /* enum shoal_event_type */
    uint8_t status;     /* member status after the event */
    uint8_t old_status; /* MEMBER_STATUS only */
    bool subject_live;  /* subject was SIM_UP with this generation at that time */
};

/* Filter for sim_count_events(); -1 (or 0 for until_ms) means "any". */
struct sim_filter {
    int observer, subject, type, status;
    int64_t since_ms, until_ms;
};

struct sim_net_stats {
    uint64_t sent, delivered, bytes, max_payload;
    uint64_t lost, blocked, to_paused, to_down;
    uint64_t by_type[SHOAL_MSG_TYPE_MAX + 1];
    /* Failures: each one is a bug in the core, the codec or the sim. */
    uint64_t too_big, encode_errors, decode_errors, codec_mismatch, unroutable;
    uint64_t stuck_deadlines, start_errors;
};

struct sim;

/* A simulator for up to n nodes (none started), all randomness derived from
 * seed. Latency defaults to uniform 1..10 ms, loss to 0. Calls malloc; free
 * with sim_free(), which frees every core. NULL if out of memory. */
struct sim *sim_new(uint64_t seed, size_t n);
void sim_free(struct sim *s);

/* The config every node starts from (defaults of shoal_swim_config_defaults);
 * name, addr, generation, seed and callbacks are set per node. Edit before
 * starting nodes. */
struct shoal_swim_config *sim_base_config(struct sim *s);
size_t sim_size(const struct sim *s);
uint64_t sim_seed(const struct sim *s);
int64_t sim_now(const struct sim *s);

/* Network. Blocks and loss apply to messages sent from now on. */
void sim_set_latency(struct sim *s, uint32_t min_ms, uint32_t max_ms);
void sim_set_loss(struct sim *s, double p);
void sim_block(struct sim *s, size_t from, size_t to, bool blocked);
/* group[i] per node: messages between different groups are blocked. */
void sim_partition(struct sim *s, const int *group);
void sim_heal(struct sim *s); /* removes every block */

/* Node lifecycle. seed_node < 0 starts alone, else joins through it.
 * Returns 0, SHOAL_ESTATE if the node is not in a state to do it, or the
 * error of shoal_swim_new/join. */
int sim_start(struct sim *s, size_t i, int seed_node);
/* Starts node i at a later virtual time (staggered joins). Returns 0 or
 * SHOAL_ESTATE (bad index, node not off, time in the past). */
int sim_start_at(struct sim *s, size_t i, int64_t at_ms, int seed_node);
int sim_pause(struct sim *s, size_t i);
int sim_resume(struct sim *s, size_t i);
int sim_crash(struct sim *s, size_t i);
/* A crashed or left node comes back: a fresh core, generation + 1, same
 * name and address, joining through seed_node. */
int sim_restart(struct sim *s, size_t i, int seed_node);
/* Graceful leave; the node stops at shoal_swim_leave_done() or after
 * leave_timeout_ms (3 s, the agent's default). */
int sim_leave(struct sim *s, size_t i);

/* Runs every event up to and including t_ms; the clock ends at t_ms. */
void sim_run_until(struct sim *s, int64_t t_ms);
void sim_run_for(struct sim *s, int64_t dt_ms);
/* Runs until pred holds (checked every step_ms) or deadline_ms passes.
 * Returns the virtual time pred first held, or -1. */
int64_t sim_run_until_true(struct sim *s, int64_t deadline_ms, int64_t step_ms,
                           bool (*pred)(struct sim *s, void *ud), void *ud);

/* Views. */
enum sim_state sim_node_state(const struct sim *s, size_t i);
struct shoal_swim *sim_swim(struct sim *s, size_t i); /* NULL unless running */
uint64_t sim_generation(const struct sim *s, size_t i);
/* Node index of a member name "n<i>", or -1. */
int sim_name_index(const struct sim *s, const char *name);
/* Member x in node y's table: its status, or -1 if absent or y not running. */
int sim_view(const struct sim *s, size_t y, size_t x, struct shoal_member_info *out);
/* Every running node (y != x, not leaving) sees x with a status in mask
 * (SIM_ABSENT allowed as a bit). On false, why names the first who does not. */
bool sim_all_see(const struct sim *s, size_t x, unsigned mask, char *why, size_t len);
/* Converged: every SIM_UP node sees every SIM_UP node alive with its current
 * generation and incarnation (one identical view), every crashed node dead
 * or absent, every left node left or absent, never-started nodes absent.
 * Paused and leaving nodes are neither observers nor checked. */
bool sim_converged(const struct sim *s, char *why, size_t len);
/* How many (observer, member) pairs break the converged rule; 0 if
 * converged. why describes the first. */
size_t sim_divergence(const struct sim *s, char *why, size_t len);
/* Sum of the stats of every running core (a crash takes a core's with it). */
void sim_core_stats(const struct sim *s, struct shoal_swim_stats *sum);

/* Recorded events. */
size_t sim_count_events(const struct sim *s, const struct sim_filter *f);
const struct sim_event_rec *sim_events(const struct sim *s, size_t *n);
/* Times a node was declared dead while it was up with that generation. */
size_t sim_false_deaths(const struct sim *s, char *why, size_t len);
/* Refutations beyond one per claimed incarnation (suspect or dead events
 * about a running node in its current generation), summed over running
 * nodes; 0 is the invariant. why names the first node over. */
uint64_t sim_refutation_excess(struct sim *s, char *why, size_t len);

uint64_t sim_trace_hash(const struct sim *s);
const struct sim_net_stats *sim_net_stats(const struct sim *s);
/* True if no failure was counted (size, codec, routing, stuck deadline,
 * a scheduled start that failed). */
bool sim_clean(const struct sim *s, char *why, size_t len);
/* One line of network statistics, for the test log. */
void sim_print_stats(const struct sim *s, const char *label);

#endif
