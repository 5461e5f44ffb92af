/* swim.h -- the SWIM membership protocol as a sans-IO state machine.
 *
 * One struct shoal_swim is one node's view of the cluster. It is driven by
 * (now, decoded message | deadline reached | local call) and answers through
 * two callbacks: send() for messages and event() for what watchers care about.
 * It never reads a clock, a socket or global randomness: time is passed in as
 * milliseconds on any monotonic scale, randomness comes from the seed.
 *
 * Implements SWIM (Das et al. 2002) with the Lifeguard extensions (Dadgar et
 * al. 2018): local health awareness, dynamic suspicion timeouts, and the
 * suspicion carried to the suspect itself. See ../shared/DESIGN.md.
 */
#ifndef SHOAL_CORE_SWIM_H
#define SHOAL_CORE_SWIM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/msg.h"

struct shoal_swim;

struct shoal_member_info {
    char name[SHOAL_NAME_MAX];
    struct shoal_addr addr;
    uint64_t generation;
    uint32_t incarnation;
    uint8_t status;
    int64_t since_ms; /* when this node last saw the status change */
};

enum shoal_event_type {
    SHOAL_EV_MEMBER_JOIN,   /* a member was learned */
    SHOAL_EV_MEMBER_STATUS, /* status (or generation/address) changed */
    SHOAL_EV_MEMBER_REAPED, /* forgotten after reap_ms as dead/left */
    SHOAL_EV_CONFLICT,      /* two live nodes claim one name */
    SHOAL_EV_JOINED,        /* a join attempt got a full state back */
};

struct shoal_event {
    enum shoal_event_type type;
    const struct shoal_member_info *member; /* valid during the callback */
    uint8_t old_status;                     /* MEMBER_STATUS */
    struct shoal_addr other_addr;           /* CONFLICT: the other claimant */
};

/* Every constant of the protocol, memberlist's LAN profile by default. */
struct shoal_swim_config {
    char name[SHOAL_NAME_MAX];
    struct shoal_addr addr; /* advertised address */
    uint64_t generation;    /* must grow across restarts of this node */
    uint64_t seed;          /* RNG seed */

    uint32_t probe_interval_ms;    /* 1000: one probe per period */
    uint32_t probe_timeout_ms;     /* 500: direct ack deadline */
    uint32_t gossip_interval_ms;   /* 200 */
    uint32_t gossip_fanout;        /* 3 */
    uint32_t indirect_checks;      /* 3: k of the ping-req */
    uint32_t suspicion_mult;       /* 4: min timeout = mult*max(1,log10 N)*probe */
    uint32_t suspicion_max_mult;   /* 6: max timeout = this * min timeout */
    uint32_t retransmit_mult;      /* 4: lambda, sends per update = mult*ceil(log10(N+1)) */
    uint32_t pushpull_interval_ms; /* 30000; 0 disables periodic push-pull */
    uint32_t awareness_max;        /* 8: Lifeguard health score ceiling */
    uint32_t gossip_to_dead_ms;    /* 30000: dead members still get gossip */
    uint32_t reap_ms;              /* 86400000: dead/left members forgotten */
    uint32_t join_retry_min_ms;    /* 1000: join backoff start */
    uint32_t join_retry_max_ms;    /* 30000: join backoff ceiling */
    uint32_t max_datagram;         /* 1400: whole signed datagram */

    void *ud;
    /* Send m to `to`. m is valid only during the call. */
    void (*send)(void *ud, const struct shoal_addr *to, const struct shoal_msg *m);
    /* Optional. ev is valid only during the call. */
    void (*event)(void *ud, const struct shoal_event *ev);
    /* Optional: the TCP fallback probe (memberlist's). When the direct
     * probe of `target` at `to` got no ack, ping it over a stream too, in
     * parallel with the ping-reqs; an answer is reported with
     * shoal_swim_fallback_ack(seq). UDP loss alone then makes no suspicion. */
    void (*fallback_ping)(void *ud, const struct shoal_addr *to, const char *target, uint32_t seq);
};

struct shoal_swim_stats {
    uint64_t probes_sent, probes_failed, ping_reqs_sent, acks_relayed, nacks_sent;
    uint64_t suspicions, refutes, deaths, conflicts;
    uint64_t stale_claims; /* suspect/dead about an incarnation of ours already refuted */
    uint64_t fallback_pings, fallback_acks; /* TCP fallback probes sent, answered in time */
    uint64_t probe_suspicions; /* of the suspicions, those our own failed probes started */
    uint64_t updates_applied, updates_stale, gossip_sent, pushpulls;
    uint64_t msgs_in, msgs_out, msgs_ignored;
};

/* Fills c with the defaults above; name/addr/generation/seed/callbacks are
 * left for the caller. */
void shoal_swim_config_defaults(struct shoal_swim_config *c);

/* Creates a node that knows only itself (alive). Calls malloc; free with
 * shoal_swim_free(). Returns NULL on a bad config (sets *err if err). */
struct shoal_swim *shoal_swim_new(const struct shoal_swim_config *c, int64_t now_ms,
                                  int *err);
void shoal_swim_free(struct shoal_swim *s);

/* Feeds a decoded, already verified message from src. */
void shoal_swim_recv(struct shoal_swim *s, int64_t now_ms, const struct shoal_addr *src,
                     const struct shoal_msg *m);
/* Runs everything due at now_ms. Call at (or after) shoal_swim_next_deadline(). */
void shoal_swim_tick(struct shoal_swim *s, int64_t now_ms);
/* The earliest time anything is due; tick then. */
int64_t shoal_swim_next_deadline(const struct shoal_swim *s);

/* The TCP fallback ping of probe seq was answered: the target is alive,
 * though UDP failed (the prober's own health still counts the miss). */
void shoal_swim_fallback_ack(struct shoal_swim *s, int64_t now_ms, uint32_t seq);

/* Starts joining through seeds (push-pull to each, retried with backoff until
 * one answers). Returns 0 or SHOAL_EINVAL. */
int shoal_swim_join(struct shoal_swim *s, int64_t now_ms, const struct shoal_addr *seeds,
                    size_t n);
/* True while a join is still waiting for its first answer. */
bool shoal_swim_joining(const struct shoal_swim *s);

/* Graceful leave: marks self left and spreads it at once. The caller keeps
 * driving the node until shoal_swim_leave_done() or its own timeout. */
void shoal_swim_leave(struct shoal_swim *s, int64_t now_ms);
bool shoal_swim_leave_done(const struct shoal_swim *s);

/* Introspection. Members are listed in table order, self included. */
size_t shoal_swim_member_count(const struct shoal_swim *s);
bool shoal_swim_member_at(const struct shoal_swim *s, size_t i, struct shoal_member_info *out);
bool shoal_swim_member_find(const struct shoal_swim *s, const char *name,
                            struct shoal_member_info *out);
/* Up to k distinct random alive members other than self (their addresses);
 * returns how many. Uses the node's seeded generator. */
size_t shoal_swim_random_members(struct shoal_swim *s, size_t k, struct shoal_addr *out);
/* Counts members (self included) by status into counts[SHOAL_STATUS_COUNT]. */
void shoal_swim_count_by_status(const struct shoal_swim *s, size_t counts[]);
uint32_t shoal_swim_health(const struct shoal_swim *s); /* Lifeguard awareness score */
const struct shoal_swim_stats *shoal_swim_stats(const struct shoal_swim *s);
const struct shoal_swim_config *shoal_swim_config(const struct shoal_swim *s);

/* The precedence rules of DESIGN.md: does update u override what is held
 * (held_gen, held_inc, held_status) about the same member? */
bool shoal_update_overrides(const struct shoal_update *u, uint64_t held_gen,
                            uint32_t held_inc, uint8_t held_status);

#endif
