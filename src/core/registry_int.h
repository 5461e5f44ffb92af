/* registry_int.h -- the registry's private state, shared by registry.c
 * (events, gossip, anti-entropy, queries) and regheal.c (owners' liveness,
 * reap, tombstone collection, floors and the syncs that make replicas whole
 * again). Nothing outside src/core/registry*.c and regheal.c includes it.
 * Internal functions are named shoal_reg__*.
 */
#ifndef SHOAL_CORE_REGISTRY_INT_H
#define SHOAL_CORE_REGISTRY_INT_H

#include <stdbool.h>
#include <stdint.h>

#include "core/registry.h"
#include "core/strmap.h"

#define NEVER INT64_MAX
#define GOSSIP_DATAGRAMS_PER_PEER 8 /* per tick: lets a burst drain quickly */
#define NOTICE_SYNC_GAP_MS 1000     /* one notice-driven sync in flight, or one per second */
#define REGOSSIP_MAX 64             /* sync messages this small are gossiped on */
#define VERIFY_RETRY_MS 1000        /* an owner sync not answered: ask again */
#define VERIFY_MAX_MS 10000         /* then serve what we hold anyway (counted) */
#define RESP_DIGESTS_MAX 4096       /* digests on a sync answer's last part */
#define OWNER_SYNC_GAP_MS 5000      /* floor refusals ask the owner at most this often */

struct owner;

struct entry {
    struct shoal_instance in; /* in.owner/in.id are the key */
    struct owner *owner;
    uint64_t hash;      /* this entry's share of the owner digest */
    uint32_t cost;      /* its bytes, as the caps count them */
    bool has_sh;        /* sh is the hash of in's canonical bytes (proofs) */
    uint8_t sh[SHOAL_REG_HASH_BYTES];
    int64_t tomb_at;    /* when it became a tombstone here */
    uint64_t seen_conn; /* the last owner sync stream that carried it */
    uint32_t qpos;      /* gossip queue position + 1; 0 = not queued */
    uint32_t spos;      /* service vector position + 1; 0 = not indexed */
    uint32_t opos;      /* own vector position + 1 (our own entries) */
    uint32_t ocost;     /* shoal_instance_cost while in the own vector */
    /* Our own TTL instances: when the TTL last passed (or registration). */
    int64_t ttl_base;
    /* Our own instances: the TTL's part of the health (passing without a
     * TTL), and since when the instance is critical (valid while it is). */
    uint8_t ttl_health;
    int64_t critical_since;
};

struct owner {
    char name[SHOAL_NAME_MAX];
    uint64_t generation;
    uint64_t max_version;
    uint64_t floor; /* newest tombstone collected (or all, once left) */
    uint64_t hash;
    uint32_t count;
    uint64_t bytes;                /* the entries' costs (caps) */
    struct shoal_reg_proof *proof; /* the owner's proof over its set, or NULL */
    bool proof_ok;                 /* ...and it covers exactly what we hold */
    uint8_t status; /* membership status (enum shoal_status) */
    int64_t dead_since;
    /* Back from dead: what we hold may be stale (deregistrations missed),
     * so it is not served until a sync with the owner itself (regheal). */
    bool unverified;
    int64_t verify_deadline, next_verify;
    int64_t next_owner_sync; /* floor refusals: ask the owner, rate-limited */
    uint64_t sweep_conn;     /* owner sync stream whose entries are marked */
    uint64_t sweep_max;      /* highest version the owner sent on it */
    bool want_owner_sync;
    struct shoal_strmap ids; /* id -> struct entry */
};

struct service {
    char *name;
    struct entry **v;
    size_t n, cap;
    uint64_t index;
};

struct qitem {
    struct entry *e;
    uint32_t transmits;
    uint64_t order; /* newer events have higher order */
};

struct shoal_registry {
    struct shoal_registry_config cfg;
    struct shoal_registry_stats stats;
    struct shoal_strmap owners;   /* name -> struct owner */
    struct shoal_strmap services; /* name -> struct service */
    struct owner *self;
    uint64_t own_version;
    struct entry **own; /* our live entries */
    size_t n_own, cap_own;
    size_t own_cost; /* sum of their ocost: what the data dir must hold */

    struct qitem *q;
    size_t qn, qcap;
    uint64_t qorder;

    uint64_t total_count, total_bytes; /* every owner's entries (caps) */
    char why[256];                     /* the last owner-side refusal */
    /* Events were refused for an owner we had no principal for; once the
     * principal table grows, anti-entropy pulls them again. */
    bool unknown_refused, principals_grew;
    int64_t next_unknown_sync;

    uint64_t index;
    uint64_t index_base; /* the floor this run started from (unseen services) */
    int64_t next_gossip, next_sync, next_gc, next_reap, last_notice_sync;
    bool push_pending;  /* new events to push before the next regular tick */
    /* Pushes are at least a tenth of a gossip interval apart, so that a
     * burst of registrations is one sort and one send per gap, not one per
     * event (issue 14: that sort dominated at 10,000 own instances). */
    int64_t next_push;
    /* No own TTL or deregister-critical-after deadline before this (it may
     * be early, never late): ticks and next_deadline scan r->own only when
     * it has passed, not on every input. */
    int64_t own_deadline;
    bool applying_sync; /* events from a big anti-entropy message are not re-gossiped */
    bool synced;        /* one anti-entropy exchange has completed */
    int64_t next_first_sync;
    bool notice_pending; /* a notice came while one sync was in flight */
    struct shoal_addr notice_addr;
    bool notice_inflight; /* a notice-driven sync awaits its answer (or the gap) */
    struct shoal_addr notice_inflight_addr;
    int64_t next_verify; /* earliest owner sync to ask for or verification deadline */
    int64_t verify_busy_until; /* an owner sync in flight: the next waits (or 1 s) */
    /* While a stream from an owner is applied: its conn and name. */
    uint64_t owner_conn;
    const char *owner_from;

    /* Scratch for building messages (shallow copies of entries). */
    struct shoal_instance *ev;
    size_t ev_cap;
    struct shoal_reg_digest *dg;
    size_t dg_cap;
    char (*wants)[SHOAL_NAME_MAX];
    size_t wants_cap;
    struct shoal_reg_proof *pf;
    size_t pf_cap;
};

static inline bool is_live_status(uint8_t st) { return st == SHOAL_ALIVE || st == SHOAL_SUSPECT; }

/* registry.c */
struct owner *shoal_reg__owner_get(struct shoal_registry *r, const char *name, bool create);
void shoal_reg__entry_drop(struct shoal_registry *r, struct entry *e); /* forgets it entirely */
void shoal_reg__owner_wipe(struct shoal_registry *r, struct owner *o); /* drops every entry */
void shoal_reg__service_bump(struct shoal_registry *r, const char *name);
void shoal_reg__notify(struct shoal_registry *r, enum shoal_reg_change_kind kind,
                       const char *service, const char *owner, const char *id);
void shoal_reg__digest_of(const struct owner *o, struct shoal_reg_digest *d);

/* regheal.c */
void shoal_reg__owner_services_bump(struct shoal_registry *r, struct owner *o);
void shoal_reg__verify_tick(struct shoal_registry *r, int64_t now);
void shoal_reg__reap_tick(struct shoal_registry *r, int64_t now);
void shoal_reg__gc_tick(struct shoal_registry *r, int64_t now);
uint32_t shoal_reg__gc_interval(const struct shoal_registry *r);
void shoal_reg__owner_stream_done(struct shoal_registry *r, struct owner *o, uint64_t conn);
void shoal_reg__adopt_versions(struct shoal_registry *r, const struct shoal_reg_digest *d,
                               size_t n);

#endif
