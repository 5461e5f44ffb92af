/* registry.h -- the replicated service registry, as a sans-IO state machine.
 *
 * A single-writer replicated map (DESIGN.md, registry rules): every instance
 * is owned by the node it registered with; only the owner changes it, and
 * every change is an event carrying the owner's (generation, version).
 * Replicas apply an event only if it is newer than what they hold for that
 * (owner, id); a deregistration leaves a tombstone. Events spread by gossip
 * (UDP, one datagram at a time) and anti-entropy repairs the rest: per-owner
 * digests are exchanged and owners that differ are sent in full over a
 * stream (TCP). Like swim.h, time and randomness come from the caller and
 * output goes through callbacks.
 */
#ifndef SHOAL_CORE_REGISTRY_H
#define SHOAL_CORE_REGISTRY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/addr.h"
#include "core/msg.h"

/* Limits (documented in the README; enforced by shoal_instance_validate). */
#define SHOAL_ID_MAX 128       /* id: 1..127 of [A-Za-z0-9._:-] */
#define SHOAL_SERVICE_MAX 64   /* service: 1..63 of [a-z0-9-], starts alnum (a DNS label) */
#define SHOAL_HOST_MAX 256     /* address: 1..255 of [A-Za-z0-9.:-] (IP or host name) */
#define SHOAL_TAG_MAX 64       /* tag: 1..63 printable, no space or ',' */
#define SHOAL_TAGS_MAX 32      /* tags per instance */
#define SHOAL_META_KEY_MAX 64  /* key: 1..63 of [A-Za-z0-9._-] */
#define SHOAL_META_VALUE_MAX 4096 /* value: 0..4095 bytes of UTF-8 text */
#define SHOAL_METAS_MAX 64     /* pairs per instance */
#define SHOAL_META_TOTAL_MAX 16384 /* all keys and values together */
#define SHOAL_CHECKS_MAX 8          /* active checks per instance */
#define SHOAL_CHECK_TARGET_MAX 256  /* URL or HOST:PORT: 1..255 printable ASCII */
#define SHOAL_CHECK_OUTPUT_MAX 256  /* last result text: 0..255 bytes (truncated) */
#define SHOAL_CHECK_INTERVAL_DEFAULT 10000
#define SHOAL_CHECK_TIMEOUT_DEFAULT 2000
#define SHOAL_CHECK_DAMP_MAX 100    /* rise/fall: consecutive results, 0 = agent default */
#define SHOAL_REG_SIG_BYTES 64      /* the owner's Ed25519 signature of an event */
#define SHOAL_REG_PK_BYTES 32
#define SHOAL_REG_HASH_BYTES 32     /* BLAKE2b-256 of an event's canonical bytes */

enum shoal_health {
    SHOAL_PASSING = 0,
    SHOAL_WARNING = 1,
    SHOAL_CRITICAL = 2,
};
#define SHOAL_HEALTH_COUNT 3
const char *shoal_health_name(int h); /* "passing", "warning", "critical" */
int shoal_health_parse(const char *s); /* or -1 */

struct shoal_kv {
    char *key;
    char *value;
};

enum shoal_check_kind {
    SHOAL_CHECK_HTTP = 0, /* GET target: 2xx passing, 429 warning, else critical */
    SHOAL_CHECK_TCP = 1,  /* connect to HOST:PORT within the timeout */
};
const char *shoal_check_kind_name(int k); /* "http", "tcp" */

/* One active check, run by the instance's owner (src/io/checks.c). The
 * spec is kind..fall; status and output are the owner's last result. */
struct shoal_check {
    uint8_t kind;         /* enum shoal_check_kind */
    char *target;         /* URL (http://...) or HOST:PORT */
    uint32_t interval_ms; /* 100..86400000 */
    uint32_t timeout_ms;  /* 1..interval_ms-1 */
    uint8_t rise;         /* successes before passing; 0 = agent default */
    uint8_t fall;         /* failures before warning/critical; 0 = agent default */
    uint8_t status;       /* enum shoal_health; a new check starts critical */
    char *output;         /* last result text, NULL = none yet */
};

/* Fills a check's unset interval (0: 10s) and timeout (0: 2s, or half the
 * interval if that is shorter), as every entry point does before validation. */
void shoal_check_defaults(struct shoal_check *c);

/* One instance as registered and as replicated (an event is one of these).
 * Every pointer is owned by the struct: free with shoal_instance_clear(). */
struct shoal_instance {
    char owner[SHOAL_NAME_MAX];
    char *id;
    char *service;
    char *address;
    uint16_t port;
    uint32_t n_tags;
    char **tags;
    uint32_t n_meta;
    struct shoal_kv *meta;
    uint8_t health;        /* enum shoal_health */
    uint32_t ttl_ms;       /* 0: no TTL */
    int64_t registered_ms; /* unix ms, the owner's clock */
    int64_t heartbeat_ms;  /* unix ms of the last TTL pass at the owner; 0 = never */
    uint32_t n_checks;
    struct shoal_check *checks;
    uint32_t deregister_critical_after_ms; /* critical this long: owner deregisters; 0 off */
    uint64_t generation;   /* owner's generation when written */
    uint64_t version;      /* owner's version counter: grows with every change */
    bool deleted;          /* a tombstone: only owner, id, generation, version count */
    /* The owner's signature over the event's canonical bytes
     * (wire/statement.h), relayed unchanged with the event. */
    bool has_sig;
    uint8_t sig[SHOAL_REG_SIG_BYTES];
};

/* Deep copy; returns 0 or SHOAL_ENOMEM (dst is cleared then). */
int shoal_instance_copy(struct shoal_instance *dst, const struct shoal_instance *src);
void shoal_instance_clear(struct shoal_instance *in);
/* Checks every limit above. Returns 0, or SHOAL_EINVAL with *why set to a
 * static sentence naming the field ("service must be 1..63 of [a-z0-9-]"). */
int shoal_instance_validate(const struct shoal_instance *in, const char **why);
/* One field's limits (the pieces of shoal_instance_validate, shared with
 * the CLI's early checks): NULL if fine, else a static sentence. */
/* NULL, or why a check (after shoal_check_defaults) is not acceptable. */
const char *shoal_check_invalid(const struct shoal_check *c);
const char *shoal_check_id(const char *s);
const char *shoal_check_service(const char *s);
const char *shoal_check_address(const char *s);
const char *shoal_check_tag(const char *s);
const char *shoal_check_meta_key(const char *s);
/* len (may be NULL) gets the value's length. */
const char *shoal_check_meta_value(const char *s, size_t *len);
/* Conservative encoded size (protobuf) of the instance as an event. */
uint32_t shoal_instance_cost(const struct shoal_instance *in);
/* Same content as registered (service, address, port, tags, meta, ttl,
 * check specs, deregister_critical_after)? */
bool shoal_instance_same_spec(const struct shoal_instance *a, const struct shoal_instance *b);

/* Per-owner summary used by anti-entropy. hash is the XOR over the owner's
 * entries (tombstones included) of a 64-bit hash of (id, version, deleted). */
struct shoal_reg_digest {
    char owner[SHOAL_NAME_MAX];
    uint64_t generation;
    uint64_t version; /* highest held */
    uint64_t hash;
    uint32_t count; /* entries, tombstones included */
};

/* An owner's signed statement over its whole entry set: anti-entropy sends
 * it with those entries, so that a receiver checks one signature for the
 * set instead of one per event (wire/statement.h defines root and sig). */
struct shoal_reg_proof {
    char owner[SHOAL_NAME_MAX];
    uint64_t generation;
    uint64_t version; /* highest version in the set */
    uint32_t count;   /* entries, tombstones included */
    uint8_t root[SHOAL_REG_HASH_BYTES];
    uint8_t sig[SHOAL_REG_SIG_BYTES];
};

enum shoal_reg_msg_type {
    SHOAL_REG_GOSSIP = 8,    /* datagram: events, and notices (digests) of events too big for one */
    SHOAL_REG_SYNC_REQ = 9,  /* stream: the initiator's digests */
    SHOAL_REG_SYNC_RESP = 10, /* stream: events where the responder differs, and owners it wants */
    SHOAL_REG_SYNC_DATA = 11, /* stream: events for the wanted owners */
};

/* A registry message. Arrays are owned by whoever built it: core's are valid
 * during the send callback; wire's decoder allocates (shoal_reg_msg_free). */
struct shoal_reg_msg {
    uint8_t type;
    char from[SHOAL_NAME_MAX];
    uint32_t part;  /* stream messages may come in parts, 0.. */
    bool last;      /* the last part of this message */
    uint32_t n_events;
    struct shoal_instance *events;
    uint32_t n_digests;
    struct shoal_reg_digest *digests;
    uint32_t n_wants;
    char (*wants)[SHOAL_NAME_MAX];
    uint32_t n_proofs; /* stream messages only */
    struct shoal_reg_proof *proofs;
};
void shoal_reg_msg_free(struct shoal_reg_msg *m); /* frees arrays and events */

/* Where a message goes or came from. conn 0 with stream=false is a datagram;
 * stream=true with conn 0 asks the caller to open a new stream (TCP) to addr;
 * a message received on a stream has its conn set, and replies go back on it. */
struct shoal_reg_peer {
    struct shoal_addr addr;
    uint64_t conn;
    bool stream;
};

enum shoal_reg_change_kind {
    SHOAL_REG_ADDED,   /* a new (owner, id) is visible */
    SHOAL_REG_UPDATED, /* its content or health changed */
    SHOAL_REG_REMOVED, /* deregistered, wiped by a new generation, or reaped */
    SHOAL_REG_OWNER,   /* the owner's liveness changed what is served */
};

struct shoal_reg_change {
    enum shoal_reg_change_kind kind;
    const char *service; /* NULL for OWNER */
    const char *owner;
    const char *id;      /* NULL for OWNER */
    bool own;            /* one of our own instances: persist before acknowledging */
};

struct shoal_principals;

struct shoal_registry_config {
    char self[SHOAL_NAME_MAX];
    uint64_t generation;

    uint32_t gossip_interval_ms;   /* 200 */
    uint32_t gossip_fanout;        /* 3 */
    uint32_t retransmit_mult;      /* 4: sends per event = mult * ceil(log10(N+1)) */
    uint32_t sync_interval_ms;     /* 30000: anti-entropy with a random member; 0 = off */
    uint32_t tombstone_ttl_ms;     /* 86400000: tombstones kept this long */
    uint32_t reap_ms;              /* 3600000: a dead owner's instances removed after */
    uint32_t ttl_deregister_mult;  /* 2: critical by TTL this many TTLs, then deregistered */
    uint32_t max_datagram;         /* 1400 */
    uint32_t max_stream_part;      /* 1048576: bytes of events per stream part */

    void *ud;
    void (*send)(void *ud, const struct shoal_reg_peer *to, const struct shoal_reg_msg *m);
    /* Up to k distinct random live members other than self; returns count. */
    size_t (*peers)(void *ud, size_t k, struct shoal_addr *out);
    /* Optional: something visible changed (watchers, persistence). */
    void (*changed)(void *ud, const struct shoal_reg_change *c);

    /* Authority (core/regauth.h). principals: who speaks for which owner
     * name, and the service scope of each (the agent's table, borrowed);
     * NULL turns the owner checks off (unit tests of other behaviour only).
     * sign: signs one of our events (sig out), 0 or SHOAL_E*; called lazily,
     * just before an event of ours is first sent. verify: is sig a valid
     * signature of ev by pk? Both are the wire layer's (wire/statement.h). */
    const struct shoal_principals *principals;
    int (*sign)(void *ud, const struct shoal_instance *ev, uint8_t sig[SHOAL_REG_SIG_BYTES]);
    bool (*verify)(void *ud, const struct shoal_instance *ev,
                   const uint8_t pk[SHOAL_REG_PK_BYTES]);
    /* Owner proofs (core/regproof.h); all four or none (then none are sent
     * and every event is verified alone). event_hash: the hash of ev's
     * canonical bytes; set_root: the root of n sorted hashes; sign_proof
     * fills p->sig (0 or SHOAL_E*); verify_proof checks it against pk. */
    void (*event_hash)(void *ud, const struct shoal_instance *ev,
                       uint8_t out[SHOAL_REG_HASH_BYTES]);
    void (*set_root)(void *ud, const uint8_t (*sorted)[SHOAL_REG_HASH_BYTES], size_t n,
                     uint8_t root[SHOAL_REG_HASH_BYTES]);
    int (*sign_proof)(void *ud, struct shoal_reg_proof *p);
    bool (*verify_proof)(void *ud, const struct shoal_reg_proof *p,
                         const uint8_t pk[SHOAL_REG_PK_BYTES]);
    /* Caps on what is held (0 = the default). Per owner: entries (instances
     * and tombstones) and their encoded bytes; in total, over every owner. */
    uint32_t max_owner_instances;  /* 10000 */
    uint64_t max_owner_bytes;      /* 16 MiB */
    uint32_t max_instances;        /* 1000000 */
    uint64_t max_bytes;            /* 1 GiB */
    /* Optional: the address of a live member, to sync with an owner itself
     * (back from dead, or what only it can vouch for). false if unknown. */
    bool (*member_addr)(void *ud, const char *name, struct shoal_addr *out);
};

/* Why an event from another node was refused (counted per reason). */
#define SHOAL_REG_REFUSE_MAP(X)                                                \
    X(UNKNOWN_OWNER, "unknown_owner")     /* no principal for the owner name */ \
    X(UNSIGNED, "unsigned")               /* no signature */                   \
    X(BAD_SIGNATURE, "bad_signature")     /* not signed by the owner's key */  \
    X(AFTER_FORGERY, "after_forgery")     /* later events of a message with a forgery */ \
    X(OUT_OF_SCOPE, "out_of_scope")       /* service outside the owner's scope */ \
    X(OWNER_INSTANCES, "owner_instances") /* the owner's entry cap */          \
    X(OWNER_BYTES, "owner_bytes")         /* the owner's byte cap */           \
    X(TOTAL_INSTANCES, "total_instances") /* the registry's entry cap */       \
    X(TOTAL_BYTES, "total_bytes")         /* the registry's byte cap */

enum shoal_reg_refuse {
#define SHOAL_REG_REFUSE_ENUM(n, s) SHOAL_REG_REFUSE_##n,
    SHOAL_REG_REFUSE_MAP(SHOAL_REG_REFUSE_ENUM)
#undef SHOAL_REG_REFUSE_ENUM
    SHOAL_REG_REFUSE_COUNT
};
const char *shoal_reg_refuse_name(int reason);

/* The relation of the retention times, checked at start-up. NULL if the
 * settings are safe, else a static sentence saying what to change.
 * member_reap_ms is membership's dead-member retention (0: not checked). */
const char *shoal_registry_config_check(const struct shoal_registry_config *c,
                                        uint32_t member_reap_ms);

struct shoal_registry_stats {
    uint64_t events_applied, events_stale, events_sent, notices_sent;
    uint64_t syncs_started, syncs_served, sync_events_sent, sync_events_received;
    uint64_t tombstones_collected, reaped, generation_wipes;
    uint64_t refused[SHOAL_REG_REFUSE_COUNT]; /* by enum shoal_reg_refuse */
    uint64_t sig_verified;                    /* owner signatures checked */
    uint64_t proofs_sent, proofs_verified, proofs_failed; /* owner proofs */
    uint64_t events_by_proof; /* events admitted under an owner proof */
    uint64_t floor_refusals;  /* live events below a collected tombstone, not from the owner */
    uint64_t owner_syncs;     /* syncs asked of an owner (back from dead, refusals) */
    uint64_t verified;        /* owners back from dead whose sync with them completed */
    uint64_t verify_timeouts; /* ... that did not complete in time: served anyway */
    uint64_t swept;           /* entries an owner's full state no longer had */
    uint64_t regossiped;      /* events from small anti-entropy messages gossiped on */
};

struct shoal_registry;

void shoal_registry_config_defaults(struct shoal_registry_config *c);
/* Calls malloc; free with shoal_registry_free(). NULL on a bad config. */
struct shoal_registry *shoal_registry_new(const struct shoal_registry_config *c, int *err);
void shoal_registry_free(struct shoal_registry *r);

/* ---- the owner's side: only these change our own instances ---- */

/* Registers (or, for an existing id, updates) one of our instances. Only
 * id, service, address, port, tags, meta, ttl_ms, the checks' specs and
 * deregister_critical_after_ms of spec are read. The
 * same spec twice is a no-op (idempotent). A TTL instance starts critical.
 * Returns 0, or SHOAL_EINVAL with *why. */
int shoal_registry_register(struct shoal_registry *r, int64_t now, int64_t wall_ms,
                            const struct shoal_instance *spec, const char **why);
/* Returns 0 or SHOAL_ENOENT. */
int shoal_registry_deregister(struct shoal_registry *r, int64_t now, const char *id);
/* TTL pass: marks it passing. SHOAL_ENOENT, or SHOAL_EINVAL if it has no TTL. */
int shoal_registry_heartbeat(struct shoal_registry *r, int64_t now, int64_t wall_ms,
                             const char *id);
/* A TTL update with a status (Consul's check pass/warn/fail): like a
 * heartbeat, it restarts the TTL, and the TTL state becomes health.
 * SHOAL_ENOENT, or SHOAL_EINVAL if it has no TTL or health is not one. */
int shoal_registry_ttl_set(struct shoal_registry *r, int64_t now, int64_t wall_ms, const char *id,
                           uint8_t health);
/* Sets the health of one of ours (active checks). 0 or SHOAL_ENOENT. */
int shoal_registry_set_health(struct shoal_registry *r, int64_t now, const char *id,
                              uint8_t health);
/* A result of active check `index` of our instance `id` (after damping).
 * Health becomes the worst of the checks and the TTL state. A new version
 * is written only if the check's status or the health changes; otherwise
 * the output is updated in place (replicas see it with the next change).
 * output may be NULL; it is truncated to SHOAL_CHECK_OUTPUT_MAX-1 bytes.
 * Returns 0, SHOAL_ENOENT (no such instance or check) or SHOAL_EINVAL. */
int shoal_registry_check_result(struct shoal_registry *r, int64_t now, const char *id,
                                uint32_t index, uint8_t status, const char *output);
/* Restores our instances after a restart (from the data dir) and continues
 * versions after last_version; they are re-announced under the current
 * generation. Call once, before anything else. */
int shoal_registry_restore(struct shoal_registry *r, int64_t now,
                           const struct shoal_instance *own, size_t n, uint64_t last_version);
/* Our signing key changed (certificate rotation to a new key): every entry
 * of ours, tombstones too, is written again under a new version, so that
 * replicas replace what they hold signed with the old key. Returns 0 or
 * SHOAL_ENOMEM (then some are re-signed, the rest keep the old key). */
int shoal_registry_resign(struct shoal_registry *r, int64_t now);
/* Graceful leave: deregisters all our instances and spreads it at once. */
void shoal_registry_leave(struct shoal_registry *r, int64_t now);
/* Our live instances (not tombstones), for persistence; and our version. */
size_t shoal_registry_own(const struct shoal_registry *r, const struct shoal_instance **out,
                          size_t max);
uint64_t shoal_registry_own_version(const struct shoal_registry *r);
/* One of our live instances by id (O(1)), or NULL; borrowed until the
 * next change. */
const struct shoal_instance *shoal_registry_own_get(const struct shoal_registry *r, const char *id);
/* The sum of shoal_instance_cost() over our live instances, kept as they
 * change (an upper bound of their encoded size). */
size_t shoal_registry_own_cost(const struct shoal_registry *r);

/* ---- replication ---- */

void shoal_registry_recv(struct shoal_registry *r, int64_t now, const struct shoal_reg_peer *src,
                         const struct shoal_reg_msg *m);
/* Starts an anti-entropy exchange with addr now (also done on join). */
void shoal_registry_sync_with(struct shoal_registry *r, int64_t now, const struct shoal_addr *addr);
/* What membership says about an owner (swim events). Dead: its instances
 * stop being served at once and are reaped after reap_ms; left or reaped
 * from membership: removed; alive at a newer generation: the old
 * generation's instances are wiped (the owner re-announces what it has). */
void shoal_registry_owner_status(struct shoal_registry *r, int64_t now, const char *owner,
                                 uint8_t status, uint64_t generation);
void shoal_registry_tick(struct shoal_registry *r, int64_t now);
/* The principal table (config.principals) gained or changed a name: events
 * refused meanwhile for an unknown owner are pulled again by anti-entropy
 * with a random member at the next tick. */
void shoal_registry_principals_changed(struct shoal_registry *r);
int64_t shoal_registry_next_deadline(const struct shoal_registry *r);

/* ---- queries (any node, from its own replica) ---- */

struct shoal_query {
    const char *service;
    const char *const *tags; /* all must be present */
    size_t n_tags;
    const struct shoal_kv *meta; /* all must match exactly */
    size_t n_meta;
    bool all; /* include warning/critical and dead owners' instances */
};

/* Matching instances (never tombstones), sorted by (owner, id). Writes up to
 * max pointers (valid until the registry next changes) and returns how many
 * match in total. Without `all`, only passing instances of live owners. */
size_t shoal_registry_query(const struct shoal_registry *r, const struct shoal_query *q,
                            const struct shoal_instance **out, size_t max);
/* Is the owner served (known alive or suspect)? */
bool shoal_registry_owner_live(const struct shoal_registry *r, const char *owner);

struct shoal_service_summary {
    const char *name;
    size_t passing; /* passing instances of live owners */
    size_t total;   /* all instances */
};
/* Every service with counts, sorted by name; returns the total count. */
size_t shoal_registry_services(const struct shoal_registry *r, struct shoal_service_summary *out,
                               size_t max);

/* Change index for blocking queries: grows whenever what a query of
 * `service` may return changes (NULL: anything). Starts at 1. */
uint64_t shoal_registry_index(const struct shoal_registry *r, const char *service);
/* Raises the change index to at least floor (the agent's persisted lease,
 * so an index never goes backward across restarts); a service not seen
 * since answers floor. Call before anything else. */
void shoal_registry_index_floor(struct shoal_registry *r, uint64_t floor);

/* Per-owner digests (ours included), sorted by owner. */
size_t shoal_registry_digests(const struct shoal_registry *r, struct shoal_reg_digest *out,
                              size_t max);
/* Counts of non-tombstone instances by health; tombstones separately. */
void shoal_registry_counts(const struct shoal_registry *r, size_t by_health[SHOAL_HEALTH_COUNT],
                           size_t *tombstones);
const struct shoal_registry_stats *shoal_registry_stats(const struct shoal_registry *r);

#endif
