/* registry.c -- the replicated service registry (see registry.h).
 *
 * Concepts: an owner record per member (its generation, highest version,
 * digest hash, liveness); an entry per (owner, id), live or tombstone, held
 * in the owner's id map; a service index (service -> live entries) for
 * queries and change indices; a gossip queue of entries whose newest event
 * still has sends left. Events are applied by one rule: newer (generation,
 * version) than what is held wins; a newer generation wipes the old one.
 */
#include "core/registry.h"
#include "core/registry_int.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/regauth.h"
#include "core/regproof.h"
#include "core/strmap.h"
#include "shoal/error.h"

/* ---------------------------------------------------------------- small */

void shoal_registry_config_defaults(struct shoal_registry_config *c)
{
    memset(c, 0, sizeof(*c));
    c->gossip_interval_ms = 200;
    c->gossip_fanout = 3;
    c->retransmit_mult = 4;
    c->sync_interval_ms = 30000;
    c->tombstone_ttl_ms = 86400000;
    c->reap_ms = 3600000;
    c->ttl_deregister_mult = 2;
    c->max_datagram = 1400;
    c->max_stream_part = 1u << 20;
    shoal_regauth_caps_defaults(c);
}

static bool grow(void **v, size_t *cap, size_t need, size_t size)
{
    if (need <= *cap)
        return true;
    size_t ncap = *cap ? *cap : 16;
    while (ncap < need)
        ncap *= 2;
    void *nv = realloc(*v, ncap * size);
    if (!nv)
        return false;
    *v = nv;
    *cap = ncap;
    return true;
}

static uint64_t entry_hash(const struct shoal_instance *in)
{
    uint64_t h = shoal_strhash(in->id) ^ (in->version * 0x9e3779b97f4a7c15ULL);
    h ^= in->deleted ? 0x5bd1e9955bd1e995ULL : 0;
    h ^= h >> 31;
    h *= 0xbf58476d1ce4e5b9ULL;
    return h ^ (h >> 29);
}

/* Adds (sign 1) or removes (-1) an entry's share of the cap counters. */
static void account(struct shoal_registry *r, struct owner *o, const struct entry *e, int sign)
{
    if (sign > 0) {
        o->bytes += e->cost;
        r->total_count++;
        r->total_bytes += e->cost;
    } else {
        o->bytes -= e->cost;
        r->total_count--;
        r->total_bytes -= e->cost;
    }
}

void shoal_reg__notify(struct shoal_registry *r, enum shoal_reg_change_kind kind,
                       const char *service, const char *owner, const char *id)
{
    if (!r->cfg.changed)
        return;
    struct shoal_reg_change c = {.kind = kind, .service = service, .owner = owner, .id = id,
                                 .own = owner && strcmp(owner, r->cfg.self) == 0};
    r->cfg.changed(r->cfg.ud, &c);
}

/* ------------------------------------------------------------- services */

static struct service *service_get(struct shoal_registry *r, const char *name, bool create)
{
    struct service *s = shoal_strmap_get(&r->services, name);
    if (s || !create)
        return s;
    s = calloc(1, sizeof(*s));
    if (!s || !(s->name = strdup(name)) || shoal_strmap_put(&r->services, s->name, s) != 0) {
        if (s)
            free(s->name);
        free(s);
        return NULL;
    }
    return s;
}

void shoal_reg__service_bump(struct shoal_registry *r, const char *name)
{
    struct service *s = service_get(r, name, true);
    r->index++;
    if (s)
        s->index = r->index;
}

static void service_add(struct shoal_registry *r, struct entry *e)
{
    struct service *s = service_get(r, e->in.service, true);
    if (!s || !grow((void **)&s->v, &s->cap, s->n + 1, sizeof(*s->v)))
        return; /* out of memory: the entry is held but not served */
    s->v[s->n++] = e;
    e->spos = (uint32_t)s->n;
}

static void service_remove(struct shoal_registry *r, struct entry *e)
{
    if (!e->spos)
        return;
    struct service *s = service_get(r, e->in.service, false);
    if (s) {
        size_t i = e->spos - 1;
        s->v[i] = s->v[--s->n];
        s->v[i]->spos = (uint32_t)i + 1;
    }
    e->spos = 0;
}

/* --------------------------------------------------------------- queue */

static void queue_push(struct shoal_registry *r, struct entry *e, int64_t now)
{
    (void)now;
    /* Anti-entropy already converges whoever takes part in it; queueing
     * its (possibly 100,000) events would only flood gossip. */
    if (r->applying_sync)
        return;
    if (!e->qpos) {
        if (!grow((void **)&r->q, &r->qcap, r->qn + 1, sizeof(*r->q)))
            return; /* anti-entropy will carry it */
        r->q[r->qn].e = e;
        e->qpos = (uint32_t)++r->qn;
    }
    struct qitem *it = &r->q[e->qpos - 1];
    it->transmits = 0;
    it->order = ++r->qorder;
    /* New news goes out at once, without moving the regular ticks: a node
     * the push missed is then reached by whichever node ticks next, not
     * by all of them together a whole interval later. */
    r->push_pending = true;
}

static void queue_remove(struct shoal_registry *r, struct entry *e)
{
    if (!e->qpos)
        return;
    size_t i = e->qpos - 1;
    r->q[i] = r->q[--r->qn];
    r->q[i].e->qpos = (uint32_t)i + 1;
    e->qpos = 0;
}

/* ------------------------------------------------------------- entries */

struct owner *shoal_reg__owner_get(struct shoal_registry *r, const char *name, bool create)
{
    struct owner *o = shoal_strmap_get(&r->owners, name);
    if (o || !create)
        return o;
    o = calloc(1, sizeof(*o));
    if (!o)
        return NULL;
    memcpy(o->name, name, strnlen(name, SHOAL_NAME_MAX - 1));
    o->status = SHOAL_ALIVE; /* until membership says otherwise */
    if (shoal_strmap_put(&r->owners, o->name, o) != 0) {
        free(o);
        return NULL;
    }
    return o;
}

static void own_remove(struct shoal_registry *r, struct entry *e)
{
    if (!e->opos)
        return;
    size_t i = e->opos - 1;
    r->own_cost -= e->ocost;
    e->ocost = 0;
    r->own[i] = r->own[--r->n_own];
    r->own[i]->opos = (uint32_t)i + 1;
    e->opos = 0;
}

static void own_add(struct shoal_registry *r, struct entry *e)
{
    if (e->opos) { /* an update: its size may have changed */
        r->own_cost -= e->ocost;
        e->ocost = shoal_instance_cost(&e->in);
        r->own_cost += e->ocost;
        return;
    }
    if (!grow((void **)&r->own, &r->cap_own, r->n_own + 1, sizeof(*r->own)))
        return;
    r->own[r->n_own++] = e;
    e->opos = (uint32_t)r->n_own;
    e->ocost = shoal_instance_cost(&e->in);
    r->own_cost += e->ocost;
}

/* Forgets an entry entirely (digest included). */
void shoal_reg__entry_drop(struct shoal_registry *r, struct entry *e)
{
    struct owner *o = e->owner;
    queue_remove(r, e);
    own_remove(r, e);
    if (e->spos) {
        service_remove(r, e);
        shoal_reg__service_bump(r, e->in.service);
        shoal_reg__notify(r, SHOAL_REG_REMOVED, e->in.service, o->name, e->in.id);
    }
    o->hash ^= e->hash;
    o->count--;
    o->proof_ok = false;
    account(r, o, e, -1);
    shoal_strmap_del(&o->ids, e->in.id);
    shoal_instance_clear(&e->in);
    free(e);
}

/* Drops every entry of o (a new generation, a left or reaped owner). */
void shoal_reg__owner_wipe(struct shoal_registry *r, struct owner *o)
{
    for (size_t i = 0; i < o->ids.cap;) {
        if (o->ids.slots[i].key) {
            shoal_reg__entry_drop(r, o->ids.slots[i].value);
            continue; /* backward shift may have moved another key here */
        }
        i++;
    }
}

/* Applies one event: the single rule of the replicated map. Returns the
 * entry if it changed what we hold, else NULL. */
static struct entry *apply_event(struct shoal_registry *r, const struct shoal_instance *ev,
                                 int64_t now, bool local)
{
    if (!local && strcmp(ev->owner, r->cfg.self) == 0) {
        r->stats.events_stale++; /* only we write our instances */
        return NULL;
    }
    struct owner *o = shoal_reg__owner_get(r, ev->owner, false);
    bool unknown = !o;
    if (!o && !(o = shoal_reg__owner_get(r, ev->owner, true)))
        return NULL;
    if (unknown && !local) {
        /* Membership has not vouched for this owner (it may have died
         * before we joined: we learn members only from alive claims). Its
         * instances are held but not served until it is reported alive,
         * and are reaped if it never is. */
        o->status = SHOAL_DEAD;
        o->dead_since = now;
    }
    if (o->status == SHOAL_DEAD && o->dead_since + (int64_t)r->cfg.reap_ms < r->next_reap)
        r->next_reap = o->dead_since + (int64_t)r->cfg.reap_ms; /* also for late arrivals */
    if (ev->generation < o->generation) {
        r->stats.events_stale++;
        return NULL;
    }
    if (ev->generation > o->generation) {
        if (o->count)
            r->stats.generation_wipes++;
        shoal_reg__owner_wipe(r, o);
        o->generation = ev->generation;
        o->max_version = o->floor = 0;
    }
    struct entry *e = shoal_strmap_get(&o->ids, ev->id);
    if (e && ev->version <= e->in.version) {
        r->stats.events_stale++;
        return NULL;
    }
    if (!e && ev->version <= o->floor) {
        /* At or below a tombstone we collected: it may be that one's id
         * coming back, so only the owner itself (which never sends a
         * deregistered id live again) may add it, live or tombstone. A
         * refusal of a live event from anyone else means we may lack one
         * of the owner's live instances: ask the owner (rate-limited). */
        bool from_owner = r->owner_conn && strcmp(ev->owner, r->owner_from) == 0;
        if (!from_owner || o->status == SHOAL_LEFT) {
            r->stats.events_stale++;
            if (!ev->deleted && !local && is_live_status(o->status)) {
                r->stats.floor_refusals++;
                o->want_owner_sync = true;
                if (now < r->next_verify)
                    r->next_verify = now;
            }
            return NULL;
        }
    }
    bool created = !e;
    if (created) {
        e = calloc(1, sizeof(*e));
        if (!e)
            return NULL;
        e->owner = o;
    } else {
        o->hash ^= e->hash;
        o->count--;
        account(r, o, e, -1);
        shoal_strmap_del(&o->ids, e->in.id);
    }
    bool was_live = e->spos != 0;
    char *old_service = was_live ? strdup(e->in.service) : NULL;
    if (was_live)
        service_remove(r, e);
    struct shoal_instance copy;
    if (shoal_instance_copy(&copy, ev) != 0) {
        /* Out of memory: keep the old state (or nothing) consistent. */
        if (!created) {
            shoal_strmap_put(&o->ids, e->in.id, e);
            o->hash ^= e->hash;
            o->count++;
            account(r, o, e, 1);
            if (was_live)
                service_add(r, e);
        } else {
            free(e);
        }
        free(old_service);
        return NULL;
    }
    shoal_instance_clear(&e->in);
    e->in = copy;
    e->has_sh = false;
    o->proof_ok = false;
    if (!e->in.deleted)
        e->tomb_at = 0;
    else if (!e->tomb_at)
        e->tomb_at = now;
    e->hash = entry_hash(&e->in);
    e->cost = shoal_instance_cost(&e->in);
    o->hash ^= e->hash;
    o->count++;
    account(r, o, e, 1);
    if (e->in.version > o->max_version)
        o->max_version = e->in.version;
    shoal_strmap_put(&o->ids, e->in.id, e);
    r->stats.events_applied++;

    if (!e->in.deleted) {
        service_add(r, e);
        shoal_reg__service_bump(r, e->in.service);
        if (old_service && strcmp(old_service, e->in.service) != 0)
            shoal_reg__service_bump(r, old_service);
        shoal_reg__notify(r, was_live ? SHOAL_REG_UPDATED : SHOAL_REG_ADDED, e->in.service, o->name,
               e->in.id);
    } else if (was_live) {
        shoal_reg__service_bump(r, old_service);
        shoal_reg__notify(r, SHOAL_REG_REMOVED, old_service, o->name, e->in.id);
    }
    free(old_service);
    if (o == r->self) {
        if (e->in.deleted)
            own_remove(r, e);
        else
            own_add(r, e);
    }
    queue_push(r, e, now);
    return e;
}

/* ------------------------------------------------------------ authority */

/* What the caps see of ev's owner and id. An event of a newer generation
 * replaces everything the owner held. */
static struct shoal_regauth_held held_for(const struct shoal_registry *r, const struct owner *o,
                                          const struct shoal_instance *ev)
{
    struct shoal_regauth_held h = {0, 0, r->total_count, r->total_bytes, true, 0};
    if (!o)
        return h;
    if (ev->generation > o->generation) {
        h.total_count -= o->count;
        h.total_bytes -= o->bytes;
        return h;
    }
    const struct entry *e = shoal_strmap_get(&o->ids, ev->id);
    h.owner_count = o->count;
    h.owner_bytes = o->bytes;
    h.is_new = !e;
    h.old_cost = e ? e->cost : 0;
    return h;
}

/* Owners of one message whose signatures failed. Past FORGED_OWNERS_MAX
 * the whole rest of the message is refused. */
#define FORGED_OWNERS_MAX 16
struct forged {
    const char *owners[FORGED_OWNERS_MAX];
    size_t n;
    bool all;
};

static bool forged_has(const struct forged *f, const char *owner)
{
    for (size_t i = 0; i < f->n && !f->all; i++)
        if (strcmp(f->owners[i], owner) == 0)
            return true;
    return f->all;
}

/* The authority rules for an event from another node (core/regauth.h):
 * cheap checks first, the owner's signature last and only for an event
 * that could change what we hold (so each is verified once: a copy that
 * comes again is stale). After a forgery, the rest of its message is
 * refused unverified for that owner (an honest relay passes on only what
 * it verified; one holding an owner's events signed with a key since
 * rotated harms only that owner's), and for every owner after
 * FORGED_OWNERS_MAX forged ones: a message costs at most that many
 * verifications that fail. */
static bool admit(struct shoal_registry *r, const struct shoal_instance *ev, struct forged *forged,
                  bool by_proof)
{
    if (strcmp(ev->owner, r->cfg.self) == 0)
        return true; /* apply_event refuses it: only we write ours */
    int reason = -1;
    const uint8_t *pk = NULL;
    const struct owner *o = shoal_reg__owner_get(r, ev->owner, false);
    if (forged_has(forged, ev->owner))
        reason = SHOAL_REG_REFUSE_AFTER_FORGERY;
    else if (r->cfg.principals)
        reason = shoal_regauth_speaker(r->cfg.principals, ev, &pk);
    if (reason < 0 && o) {
        const struct entry *e =
            ev->generation == o->generation ? shoal_strmap_get(&o->ids, ev->id) : NULL;
        if (ev->generation < o->generation || (e && ev->version <= e->in.version))
            return true; /* stale: apply_event counts it */
    }
    if (reason < 0) {
        struct shoal_regauth_held h = held_for(r, o, ev);
        reason = shoal_regauth_caps_check(&r->cfg, &h, shoal_instance_cost(ev));
    }
    if (reason < 0 && pk && !by_proof) {
        r->stats.sig_verified++;
        if (!r->cfg.verify || !r->cfg.verify(r->cfg.ud, ev, pk)) {
            reason = SHOAL_REG_REFUSE_BAD_SIGNATURE;
            if (forged->n < FORGED_OWNERS_MAX)
                forged->owners[forged->n++] = ev->owner;
            else
                forged->all = true;
        }
    }
    if (reason < 0)
        return true;
    r->stats.refused[reason]++;
    r->unknown_refused |= reason == SHOAL_REG_REFUSE_UNKNOWN_OWNER;
    return false;
}

void shoal_registry_principals_changed(struct shoal_registry *r)
{
    r->principals_grew = true;
}

/* Events refused for an unknown owner come back by anti-entropy once the
 * principal table has grown: not held meanwhile (no memory to bound), and
 * at most one such exchange per NOTICE_SYNC_GAP_MS. */
static bool unknown_sync_due(const struct shoal_registry *r)
{
    return r->unknown_refused && r->principals_grew;
}

static void unknown_sync_tick(struct shoal_registry *r, int64_t now)
{
    struct shoal_addr peer;
    if (!unknown_sync_due(r) || now < r->next_unknown_sync)
        return;
    r->unknown_refused = r->principals_grew = false;
    r->next_unknown_sync = now + NOTICE_SYNC_GAP_MS;
    if (r->cfg.peers && r->cfg.peers(r->cfg.ud, 1, &peer) == 1)
        shoal_registry_sync_with(r, now, &peer);
}

/* One of ours changed in place (no new version): sign and hash it again. */
static void own_touched(struct shoal_registry *r, struct entry *e)
{
    e->in.has_sig = false;
    e->has_sh = false;
    r->self->proof_ok = false;
}

static void entry_sign(struct shoal_registry *r, struct entry *e);

/* The root of o's entries (hashes cached per entry). False without the
 * proof callbacks or memory. */
static bool owner_root(struct shoal_registry *r, struct owner *o, uint8_t root[SHOAL_REG_HASH_BYTES])
{
    if (!r->cfg.event_hash || !r->cfg.set_root)
        return false;
    uint8_t (*h)[SHOAL_REG_HASH_BYTES] = malloc((o->count ? o->count : 1) * sizeof(*h));
    size_t k = 0;
    if (!h)
        return false;
    for (size_t i = 0; i < o->ids.cap; i++) {
        struct entry *e = o->ids.slots[i].value;
        if (!o->ids.slots[i].key)
            continue;
        if (o == r->self)
            entry_sign(r, e); /* the hash covers the signature we send */
        if (!e->has_sh) {
            r->cfg.event_hash(r->cfg.ud, &e->in, e->sh);
            e->has_sh = true;
        }
        memcpy(h[k++], e->sh, SHOAL_REG_HASH_BYTES);
    }
    shoal_regproof_sort(h, k);
    r->cfg.set_root(r->cfg.ud, (const uint8_t(*)[SHOAL_REG_HASH_BYTES])h, k, root);
    free(h);
    return true;
}

/* A proof over o's entries as held: ours is signed afresh when it is
 * stale; another owner's is the one it signed, if it still covers exactly
 * what we hold. NULL if there is none. */
static const struct shoal_reg_proof *owner_proof(struct shoal_registry *r, struct owner *o)
{
    if (o->proof_ok)
        return o->proof;
    if (o != r->self || !r->cfg.sign_proof || !o->count)
        return NULL;
    if (!o->proof && !(o->proof = calloc(1, sizeof(*o->proof))))
        return NULL;
    struct shoal_reg_proof *p = o->proof;
    memcpy(p->owner, o->name, SHOAL_NAME_MAX);
    p->generation = o->generation;
    p->version = o->max_version;
    p->count = o->count;
    if (!owner_root(r, o, p->root) || r->cfg.sign_proof(r->cfg.ud, p) != 0)
        return NULL;
    o->proof_ok = true;
    return p;
}

/* A proof that held for a message's events: kept if, with them applied, it
 * covers exactly what we hold of its owner (then we can relay it). */
static void owner_keep_proof(struct shoal_registry *r, const struct shoal_reg_proof *p)
{
    struct owner *o = shoal_reg__owner_get(r, p->owner, false);
    uint8_t root[SHOAL_REG_HASH_BYTES];
    if (!o || o == r->self || o->generation != p->generation || o->max_version != p->version ||
        o->count != p->count || !owner_root(r, o, root) || memcmp(root, p->root, sizeof(root)))
        return;
    if (!o->proof && !(o->proof = malloc(sizeof(*o->proof))))
        return;
    *o->proof = *p;
    o->proof_ok = true;
}

/* Our events are signed once, just before they are first sent. */
static void entry_sign(struct shoal_registry *r, struct entry *e)
{
    if (e->owner != r->self || e->in.has_sig || !r->cfg.sign)
        return;
    if (r->cfg.sign(r->cfg.ud, &e->in, e->in.sig) == 0)
        e->in.has_sig = true;
    e->has_sh = false; /* it covers the signature */
}

/* The owner's side: its certificate's scope and the caps. */
static int own_admit(struct shoal_registry *r, const struct shoal_instance *in, const char **why)
{
    if (shoal_regauth_own_scope(r->cfg.principals, r->cfg.self, in->service, r->why,
                                sizeof(r->why)) != 0) {
        *why = r->why;
        return SHOAL_EPERM;
    }
    struct shoal_regauth_held h = held_for(r, r->self, in);
    int reason = shoal_regauth_caps_check(&r->cfg, &h, shoal_instance_cost(in));
    if (reason < 0)
        return 0;
    r->stats.refused[reason]++;
    shoal_regauth_cap_why(reason, &r->cfg, r->why, sizeof(r->why));
    *why = r->why;
    return SHOAL_ETOOBIG;
}

/* ---------------------------------------------------------- the owner */

static struct entry *own_entry(struct shoal_registry *r, const char *id)
{
    struct entry *e = shoal_strmap_get(&r->self->ids, id);
    return e && !e->in.deleted ? e : NULL;
}

static void own_deadline_note(struct shoal_registry *r, const struct entry *e);

/* Writes a new version of one of ours: base is the new content (it may
 * borrow the old entry's strings). ttl_base carries over to the new state.
 * Returns 0 or SHOAL_ENOMEM. */
static int own_write(struct shoal_registry *r, int64_t now, struct shoal_instance *base,
                     int64_t ttl_base)
{
    struct entry *old = base->deleted ? NULL : own_entry(r, base->id);
    int64_t since = old && old->in.health == SHOAL_CRITICAL ? old->critical_since : now;
    memcpy(base->owner, r->cfg.self, SHOAL_NAME_MAX);
    base->generation = r->cfg.generation;
    base->version = ++r->own_version;
    base->has_sig = false; /* signed when first sent (entry_sign) */
    struct entry *e = apply_event(r, base, now, true);
    if (!e)
        return SHOAL_ENOMEM;
    e->ttl_base = ttl_base;
    e->critical_since = since;
    own_deadline_note(r, e);
    return 0;
}

/* The instance's health: the worst of its checks and its TTL state. */
static uint8_t worst_health(const struct shoal_check *checks, uint32_t n, uint8_t ttl_health)
{
    uint8_t h = ttl_health;
    for (uint32_t i = 0; i < n; i++)
        if (checks[i].status > h)
            h = checks[i].status;
    return h;
}

int shoal_registry_register(struct shoal_registry *r, int64_t now, int64_t wall_ms,
                            const struct shoal_instance *spec, const char **why)
{
    struct shoal_instance in = *spec;
    struct shoal_check checks[SHOAL_CHECKS_MAX];
    in.health = SHOAL_PASSING;
    in.deleted = false;
    if (shoal_instance_validate(&in, why) != 0)
        return SHOAL_EINVAL;
    struct entry *e = own_entry(r, spec->id);
    if (e && shoal_instance_same_spec(&e->in, spec))
        return 0; /* idempotent */
    in.generation = r->cfg.generation;
    int refused = own_admit(r, &in, why);
    if (refused)
        return refused;
    /* A new check starts critical (as Consul's do): not served until its
     * first pass. A check kept by an update (same kind and target) keeps
     * its last result. */
    for (uint32_t i = 0; i < in.n_checks; i++) {
        checks[i] = spec->checks[i];
        checks[i].status = SHOAL_CRITICAL;
        checks[i].output = NULL;
        for (uint32_t k = 0; e && k < e->in.n_checks; k++) {
            const struct shoal_check *o = &e->in.checks[k];
            if (o->kind == checks[i].kind && strcmp(o->target, checks[i].target) == 0) {
                checks[i].status = o->status;
                checks[i].output = o->output;
                break;
            }
        }
    }
    in.checks = in.n_checks ? checks : NULL;
    uint8_t ttl_health;
    if (e) {
        /* An update keeps its history: registration time, heartbeat and,
         * if the TTL is unchanged, the TTL state. */
        in.registered_ms = e->in.registered_ms;
        in.heartbeat_ms = e->in.heartbeat_ms;
        ttl_health = e->in.ttl_ms == spec->ttl_ms ? e->ttl_health
                                                  : (spec->ttl_ms ? SHOAL_CRITICAL : SHOAL_PASSING);
    } else {
        in.registered_ms = wall_ms;
        in.heartbeat_ms = 0;
        ttl_health = spec->ttl_ms ? SHOAL_CRITICAL : SHOAL_PASSING; /* no heartbeat yet */
    }
    in.health = worst_health(in.checks, in.n_checks, ttl_health);
    int rc = own_write(r, now, &in, e && e->in.ttl_ms == spec->ttl_ms ? e->ttl_base : now);
    if (rc == 0)
        own_entry(r, spec->id)->ttl_health = ttl_health;
    return rc;
}

static int own_update(struct shoal_registry *r, int64_t now, struct entry *e, uint8_t health,
                      bool deleted)
{
    struct shoal_instance in = e->in;
    in.health = health;
    in.deleted = deleted;
    return own_write(r, now, &in, e->ttl_base);
}

int shoal_registry_deregister(struct shoal_registry *r, int64_t now, const char *id)
{
    struct entry *e = own_entry(r, id);
    if (!e)
        return SHOAL_ENOENT;
    return own_update(r, now, e, e->in.health, true);
}

int shoal_registry_heartbeat(struct shoal_registry *r, int64_t now, int64_t wall_ms, const char *id)
{
    return shoal_registry_ttl_set(r, now, wall_ms, id, SHOAL_PASSING);
}

int shoal_registry_ttl_set(struct shoal_registry *r, int64_t now, int64_t wall_ms, const char *id,
                           uint8_t health)
{
    struct entry *e = own_entry(r, id);
    if (!e)
        return SHOAL_ENOENT;
    if (!e->in.ttl_ms || health >= SHOAL_HEALTH_COUNT)
        return SHOAL_EINVAL;
    e->ttl_base = now;
    e->in.heartbeat_ms = wall_ms; /* exact here; replicas see it with the next change */
    own_touched(r, e); /* what we send must match what we signed */
    e->ttl_health = health;
    own_deadline_note(r, e);
    uint8_t h = worst_health(e->in.checks, e->in.n_checks, health);
    if (e->in.health == h)
        return 0;
    return own_update(r, now, e, h, false);
}

/* Active-check output is kept as printable ASCII: it comes from backends
 * we do not control and must pass shoal_instance_validate on every replica. */
static char *output_dup(const char *s)
{
    size_t n = s ? strlen(s) : 0;
    if (n >= SHOAL_CHECK_OUTPUT_MAX)
        n = SHOAL_CHECK_OUTPUT_MAX - 1;
    char *d = malloc(n + 1);
    if (!d)
        return NULL;
    for (size_t i = 0; i < n; i++)
        d[i] = s[i] >= 0x20 && s[i] < 0x7f ? s[i] : '?';
    d[n] = 0;
    return d;
}

int shoal_registry_check_result(struct shoal_registry *r, int64_t now, const char *id,
                                uint32_t index, uint8_t status, const char *output)
{
    struct entry *e = own_entry(r, id);
    if (!e || index >= e->in.n_checks)
        return SHOAL_ENOENT;
    if (status >= SHOAL_HEALTH_COUNT)
        return SHOAL_EINVAL;
    char *out = output_dup(output ? output : "");
    if (!out)
        return SHOAL_ENOMEM;
    struct shoal_check *c = &e->in.checks[index];
    if (c->status == status) {
        free(c->output); /* replicas see it with the next change */
        c->output = out;
        own_touched(r, e);
        return 0;
    }
    struct shoal_check checks[SHOAL_CHECKS_MAX];
    memcpy(checks, e->in.checks, e->in.n_checks * sizeof(*checks));
    checks[index].status = status;
    checks[index].output = out;
    struct shoal_instance in = e->in;
    in.checks = checks;
    in.health = worst_health(checks, in.n_checks, e->ttl_health);
    in.deleted = false;
    int rc = own_write(r, now, &in, e->ttl_base);
    free(out);
    return rc;
}

int shoal_registry_set_health(struct shoal_registry *r, int64_t now, const char *id,
                              uint8_t health)
{
    struct entry *e = own_entry(r, id);
    if (!e)
        return SHOAL_ENOENT;
    if (health >= SHOAL_HEALTH_COUNT)
        return SHOAL_EINVAL;
    if (e->in.health == health)
        return 0;
    return own_update(r, now, e, health, false);
}

int shoal_registry_restore(struct shoal_registry *r, int64_t now,
                           const struct shoal_instance *own, size_t n, uint64_t last_version)
{
    if (last_version > r->own_version)
        r->own_version = last_version;
    for (size_t i = 0; i < n; i++) {
        struct shoal_instance in = own[i];
        in.deleted = false;
        if (in.health >= SHOAL_HEALTH_COUNT || shoal_instance_validate(&in, NULL) != 0)
            return SHOAL_EINVAL;
        int rc = own_write(r, now, &in, now); /* the TTL restarts with us */
        if (rc)
            return rc;
        own_entry(r, in.id)->ttl_health = in.ttl_ms ? in.health : SHOAL_PASSING;
    }
    return 0;
}

int shoal_registry_resign(struct shoal_registry *r, int64_t now)
{
    struct owner *o = r->self;
    size_t n = 0;
    struct entry **v = malloc((o->count ? o->count : 1) * sizeof(*v));
    if (!v)
        return SHOAL_ENOMEM;
    for (size_t i = 0; i < o->ids.cap; i++)
        if (o->ids.slots[i].key)
            v[n++] = o->ids.slots[i].value;
    int rc = 0;
    /* apply_event keeps each entry's struct: the pointers stay valid. */
    for (size_t i = 0; i < n && rc == 0; i++) {
        struct shoal_instance in = v[i]->in;
        int64_t tomb_at = v[i]->tomb_at;
        rc = own_write(r, now, &in, v[i]->ttl_base);
        v[i]->tomb_at = tomb_at;
    }
    free(v);
    return rc;
}

void shoal_registry_leave(struct shoal_registry *r, int64_t now)
{
    while (r->n_own > 0) {
        struct entry *e = r->own[r->n_own - 1];
        if (own_update(r, now, e, e->in.health, true) != 0)
            break; /* out of memory: the owner's death still removes them */
    }
}

size_t shoal_registry_own(const struct shoal_registry *r, const struct shoal_instance **out,
                          size_t max)
{
    for (size_t i = 0; i < r->n_own && i < max; i++)
        out[i] = &r->own[i]->in;
    return r->n_own;
}

uint64_t shoal_registry_own_version(const struct shoal_registry *r)
{
    return r->own_version;
}

const struct shoal_instance *shoal_registry_own_get(const struct shoal_registry *r, const char *id)
{
    const struct entry *e = shoal_strmap_get(&r->self->ids, id);
    return e && !e->in.deleted ? &e->in : NULL;
}

size_t shoal_registry_own_cost(const struct shoal_registry *r) { return r->own_cost; }

/* TTL (the design this project came from, Consul's TTL checks): a TTL
 * instance not heartbeated within its TTL turns critical; after a further
 * time its owner deregisters it: the instance's deregister_critical_after
 * when set, else ttl_deregister_mult TTLs (twice the TTL by default). */
static int64_t ttl_deadline(const struct shoal_registry *r, const struct entry *e)
{
    if (!e->in.ttl_ms)
        return NEVER;
    int64_t critical_at = e->ttl_base + e->in.ttl_ms;
    if (e->ttl_health != SHOAL_CRITICAL)
        return critical_at;
    if (e->in.deregister_critical_after_ms)
        return NEVER; /* dca_deadline decides */
    return critical_at + (int64_t)e->in.ttl_ms * r->cfg.ttl_deregister_mult;
}

/* deregister_critical_after (Consul's DeregisterCriticalServiceAfter): an
 * instance critical, for any reason, that long is deregistered. */
static int64_t dca_deadline(const struct entry *e)
{
    if (!e->in.deregister_critical_after_ms || e->in.health != SHOAL_CRITICAL)
        return NEVER;
    return e->critical_since + e->in.deregister_critical_after_ms;
}

/* The earliest either deadline of e can be, whatever its health. */
static void own_deadline_note(struct shoal_registry *r, const struct entry *e)
{
    int64_t d = NEVER;
    if (e->in.ttl_ms)
        d = e->ttl_base + e->in.ttl_ms;
    if (e->in.deregister_critical_after_ms &&
        e->critical_since + (int64_t)e->in.deregister_critical_after_ms < d)
        d = e->critical_since + e->in.deregister_critical_after_ms;
    if (d < r->own_deadline)
        r->own_deadline = d;
}

static void ttl_tick(struct shoal_registry *r, int64_t now)
{
    if (now < r->own_deadline)
        return;
    for (size_t i = 0; i < r->n_own;) {
        struct entry *e = r->own[i];
        int rc;
        if (dca_deadline(e) <= now) {
            rc = own_update(r, now, e, e->in.health, true);
        } else if (ttl_deadline(r, e) > now) {
            i++;
            continue;
        } else if (e->ttl_health != SHOAL_CRITICAL) {
            /* The deadline moves on to the deregistration: no loop. */
            e->ttl_health = SHOAL_CRITICAL;
            uint8_t h = worst_health(e->in.checks, e->in.n_checks, SHOAL_CRITICAL);
            rc = h != e->in.health ? own_update(r, now, e, h, false) : 0;
        } else {
            rc = own_update(r, now, e, e->in.health, true);
        }
        /* Any change may move entries within r->own: restart the scan. */
        i = rc == 0 ? 0 : i + 1;
    }
    r->own_deadline = NEVER;
    for (size_t i = 0; i < r->n_own; i++) {
        int64_t t = ttl_deadline(r, r->own[i]), c = dca_deadline(r->own[i]);
        if (t < r->own_deadline)
            r->own_deadline = t;
        if (c < r->own_deadline)
            r->own_deadline = c;
    }
}

/* ------------------------------------------------------------- gossip */

static uint32_t n_members(const struct shoal_registry *r)
{
    uint32_t n = 0;
    for (size_t i = 0; i < r->owners.cap; i++) {
        const struct owner *o = r->owners.slots[i].value;
        if (r->owners.slots[i].key && is_live_status(o->status))
            n++;
    }
    return n ? n : 1;
}

static uint32_t retransmit_limit(const struct shoal_registry *r)
{
    uint32_t l = r->cfg.retransmit_mult * (uint32_t)ceil(log10((double)n_members(r) + 1.0));
    return l ? l : 1;
}

static struct shoal_instance *ev_slot(struct shoal_registry *r, size_t i)
{
    if (!grow((void **)&r->ev, &r->ev_cap, i + 1, sizeof(*r->ev)))
        return NULL;
    return &r->ev[i];
}

static struct shoal_reg_digest *dg_slot(struct shoal_registry *r, size_t i)
{
    if (!grow((void **)&r->dg, &r->dg_cap, i + 1, sizeof(*r->dg)))
        return NULL;
    return &r->dg[i];
}

static void msg_init(struct shoal_registry *r, struct shoal_reg_msg *m, uint8_t type)
{
    memset(m, 0, sizeof(*m));
    m->type = type;
    memcpy(m->from, r->cfg.self, SHOAL_NAME_MAX);
    m->events = r->ev;
    m->digests = r->dg;
    m->wants = r->wants;
    m->proofs = r->pf;
}

void shoal_reg__digest_of(const struct owner *o, struct shoal_reg_digest *d)
{
    memset(d, 0, sizeof(*d));
    memcpy(d->owner, o->name, SHOAL_NAME_MAX);
    d->generation = o->generation;
    d->version = o->max_version;
    d->hash = o->hash;
    d->count = o->count;
}

static int by_priority(const void *a, const void *b)
{
    const struct qitem *x = a, *y = b;
    if (x->transmits != y->transmits)
        return x->transmits < y->transmits ? -1 : 1;
    return x->order > y->order ? -1 : (x->order < y->order ? 1 : 0);
}

#define DATAGRAM_BASE 64 /* Packet fields besides events: type, from, flags */

/* Fills one datagram for `to` from the queue, in priority order, from
 * position *pos on. Events too big for any datagram become a notice (the
 * owner's digest): the receiver then pulls by anti-entropy. */
static bool gossip_datagram(struct shoal_registry *r, const struct shoal_addr *to, size_t *pos,
                            uint32_t limit)
{
    struct shoal_reg_msg m;
    msg_init(r, &m, SHOAL_REG_GOSSIP);
    uint32_t room = r->cfg.max_datagram - SHOAL_ENVELOPE_BYTES - DATAGRAM_BASE -
                    (uint32_t)strlen(r->cfg.self);
    uint32_t budget = room;
    size_t i = *pos;
    for (; i < r->qn; i++) {
        struct qitem *it = &r->q[i];
        uint32_t cost = shoal_instance_cost(&it->e->in);
        if (cost > room) {
            struct owner *o = it->e->owner;
            uint32_t dcost = 48 + (uint32_t)strlen(o->name); /* digest, worst case 41 + n */
            if (dcost > budget)
                break;
            bool dup = false;
            for (uint32_t k = 0; k < m.n_digests; k++)
                dup |= strcmp(m.digests[k].owner, o->name) == 0;
            if (!dup) {
                struct shoal_reg_digest *d = dg_slot(r, m.n_digests);
                if (!d)
                    break;
                m.digests = r->dg;
                shoal_reg__digest_of(o, d);
                m.n_digests++;
                budget -= dcost;
                r->stats.notices_sent++;
            }
        } else {
            if (cost > budget)
                break;
            struct shoal_instance *slot = ev_slot(r, m.n_events);
            if (!slot)
                break;
            m.events = r->ev;
            entry_sign(r, it->e);
            *slot = it->e->in;
            m.n_events++;
            budget -= cost;
        }
        it->transmits++;
    }
    *pos = i;
    if (!m.n_events && !m.n_digests)
        return false;
    struct shoal_reg_peer p = {.addr = *to};
    r->stats.events_sent += m.n_events;
    r->cfg.send(r->cfg.ud, &p, &m);
    (void)limit;
    return true;
}

static void gossip_send(struct shoal_registry *r)
{
    if (!r->qn || !r->cfg.peers)
        return;
    struct shoal_addr peers[64];
    size_t k = r->cfg.gossip_fanout < 64 ? r->cfg.gossip_fanout : 64;
    size_t np = r->cfg.peers(r->cfg.ud, k, peers);
    uint32_t limit = retransmit_limit(r);
    qsort(r->q, r->qn, sizeof(*r->q), by_priority);
    for (size_t i = 0; i < r->qn; i++)
        r->q[i].e->qpos = (uint32_t)i + 1;
    for (size_t p = 0; p < np; p++) {
        size_t pos = 0;
        for (int d = 0; d < GOSSIP_DATAGRAMS_PER_PEER && pos < r->qn; d++)
            if (!gossip_datagram(r, &peers[p], &pos, limit))
                break;
    }
    /* Drop what has been sent enough times. */
    for (size_t i = 0; i < r->qn;) {
        if (r->q[i].transmits >= limit) {
            queue_remove(r, r->q[i].e);
            continue;
        }
        i++;
    }
}

/* --------------------------------------------------------- anti-entropy */

static size_t all_digests(struct shoal_registry *r)
{
    size_t n = 0;
    for (size_t i = 0; i < r->owners.cap; i++) {
        const struct owner *o = r->owners.slots[i].value;
        if (!r->owners.slots[i].key || (!o->count && !o->max_version))
            continue;
        struct shoal_reg_digest *d = dg_slot(r, n);
        if (!d)
            break;
        shoal_reg__digest_of(o, d);
        n++;
    }
    return n;
}

void shoal_registry_sync_with(struct shoal_registry *r, int64_t now, const struct shoal_addr *addr)
{
    (void)now;
    struct shoal_reg_msg m;
    size_t n = all_digests(r);
    msg_init(r, &m, SHOAL_REG_SYNC_REQ);
    m.n_digests = (uint32_t)n;
    m.last = true;
    struct shoal_reg_peer p = {.addr = *addr, .stream = true};
    r->stats.syncs_started++;
    r->cfg.send(r->cfg.ud, &p, &m);
}

/* Sends every entry of the listed owners on the stream `to`, in parts of at
 * most max_stream_part bytes; wants (may be 0) ride on the last part. */
static void send_owners(struct shoal_registry *r, const struct shoal_reg_peer *to, uint8_t type,
                        struct owner **owners, size_t n_owners, size_t n_wants)
{
    struct shoal_reg_msg m;
    msg_init(r, &m, type);
    uint32_t budget = r->cfg.max_stream_part;
    for (size_t k = 0; k < n_owners; k++) {
        struct owner *o = owners[k];
        /* An owner with a proof goes whole in one part, with its proof. */
        const struct shoal_reg_proof *p =
            o->bytes <= SHOAL_REGPROOF_PART_MAX ? owner_proof(r, o) : NULL;
        if (p && m.n_events && o->bytes > budget) {
            r->cfg.send(r->cfg.ud, to, &m);
            uint32_t part = m.part + 1;
            msg_init(r, &m, type);
            m.part = part;
            budget = r->cfg.max_stream_part;
        }
        if (p && grow((void **)&r->pf, &r->pf_cap, m.n_proofs + 1, sizeof(*r->pf))) {
            m.proofs = r->pf;
            r->pf[m.n_proofs++] = *p;
            r->stats.proofs_sent++;
        }
        for (size_t i = 0; i < o->ids.cap; i++) {
            if (!o->ids.slots[i].key)
                continue;
            struct entry *e = o->ids.slots[i].value;
            uint32_t cost = shoal_instance_cost(&e->in);
            if (!p && m.n_events && cost > budget) {
                r->cfg.send(r->cfg.ud, to, &m);
                uint32_t part = m.part + 1;
                msg_init(r, &m, type);
                m.part = part;
                budget = r->cfg.max_stream_part;
            }
            struct shoal_instance *slot = ev_slot(r, m.n_events);
            if (!slot)
                continue;
            m.events = r->ev;
            entry_sign(r, e);
            *slot = e->in;
            m.n_events++;
            budget = cost > budget ? 0 : budget - cost;
            r->stats.sync_events_sent++;
        }
    }
    m.n_wants = (uint32_t)n_wants;
    m.last = true;
    /* The sent owners' digests ride on the last part: a receiver whose
     * content then matches adopts the version (adopt_versions). */
    for (size_t k = 0; k < n_owners && k < RESP_DIGESTS_MAX; k++) {
        struct shoal_reg_digest *d = dg_slot(r, m.n_digests);
        if (!d)
            break;
        m.digests = r->dg;
        shoal_reg__digest_of(owners[k], d);
        m.n_digests++;
    }
    r->cfg.send(r->cfg.ud, to, &m);
}


static bool digest_equal(const struct owner *o, const struct shoal_reg_digest *d)
{
    return o->generation == d->generation && o->max_version == d->version &&
           o->hash == d->hash && o->count == d->count;
}

/* Does the digest hold anything we lack? (newer generation or version, or
 * the same version with other content: then both sides send). */
static bool they_have_more(const struct owner *o, const struct shoal_reg_digest *d)
{
    if (!o)
        return d->count > 0 || d->version > 0;
    if (d->generation != o->generation)
        return d->generation > o->generation;
    return !digest_equal(o, d) && (d->version >= o->max_version);
}

static bool we_have_more(const struct owner *o, const struct shoal_reg_digest *d)
{
    if (!d)
        return o->count > 0;
    if (d->generation != o->generation)
        return o->generation > d->generation;
    return !digest_equal(o, d) && (o->max_version >= d->version);
}

static void on_sync_req(struct shoal_registry *r, const struct shoal_reg_peer *src,
                        const struct shoal_reg_msg *m)
{
    r->stats.syncs_served++;
    shoal_reg__adopt_versions(r, m->digests, m->n_digests);
    struct owner **send = calloc(r->owners.n + 1, sizeof(*send));
    size_t n_send = 0, n_wants = 0;
    if (!send)
        return;
    for (uint32_t i = 0; i < m->n_digests; i++) {
        const struct shoal_reg_digest *d = &m->digests[i];
        struct owner *o = shoal_reg__owner_get(r, d->owner, false);
        if (strcmp(d->owner, r->cfg.self) != 0 && they_have_more(o, d) &&
            grow((void **)&r->wants, &r->wants_cap, n_wants + 1, sizeof(*r->wants)))
            memcpy(r->wants[n_wants++], d->owner, SHOAL_NAME_MAX);
    }
    for (size_t i = 0; i < r->owners.cap; i++) {
        struct owner *o = r->owners.slots[i].value;
        if (!r->owners.slots[i].key)
            continue;
        const struct shoal_reg_digest *d = NULL;
        for (uint32_t k = 0; k < m->n_digests && !d; k++)
            if (strcmp(m->digests[k].owner, o->name) == 0)
                d = &m->digests[k];
        if (we_have_more(o, d))
            send[n_send++] = o;
    }
    send_owners(r, src, SHOAL_REG_SYNC_RESP, send, n_send, n_wants);
    free(send);
}

static void on_sync_resp_last(struct shoal_registry *r, const struct shoal_reg_peer *src,
                              const struct shoal_reg_msg *m)
{
    if (!m->n_wants)
        return;
    struct owner **send = calloc(m->n_wants, sizeof(*send));
    size_t n = 0;
    if (!send)
        return;
    for (uint32_t i = 0; i < m->n_wants; i++) {
        struct owner *o = shoal_reg__owner_get(r, m->wants[i], false);
        if (o)
            send[n++] = o;
    }
    send_owners(r, src, SHOAL_REG_SYNC_DATA, send, n, 0);
    free(send);
}


/* A sync to pull what a notice announced. */
static void notice_sync(struct shoal_registry *r, int64_t now, const struct shoal_addr *addr)
{
    struct shoal_addr a = *addr; /* addr may be r->notice_addr */
    r->notice_pending = false;
    r->notice_inflight = true;
    r->notice_inflight_addr = a;
    r->last_notice_sync = now;
    shoal_registry_sync_with(r, now, &a);
}

void shoal_registry_recv(struct shoal_registry *r, int64_t now, const struct shoal_reg_peer *src,
                         const struct shoal_reg_msg *m)
{
    bool stream = m->type != SHOAL_REG_GOSSIP;
    bool owner_stream = stream && src->conn &&
                        (m->type == SHOAL_REG_SYNC_RESP || m->type == SHOAL_REG_SYNC_DATA);
    struct owner *sender = owner_stream ? shoal_reg__owner_get(r, m->from, false) : NULL;
    /* A small anti-entropy message (a repair, a pulled notice) is gossiped
     * on like fresh news; a big one (a join) is not, it would flood. */
    r->applying_sync = stream && m->n_events > REGOSSIP_MAX;
    if (sender && sender != r->self) {
        r->owner_conn = src->conn;
        r->owner_from = sender->name;
    }
    struct forged forged = {.n = 0};
    /* Owner proofs (stream only): one signature for an owner's whole set. */
    bool *pre = stream && m->n_proofs ? calloc(m->n_events + m->n_proofs + 1, sizeof(bool)) : NULL;
    if (pre)
        shoal_regproof_mark(&r->cfg, m, pre, pre + m->n_events, &r->stats);
    for (uint32_t i = 0; i < m->n_events; i++) {
        const struct shoal_instance *ev = &m->events[i];
        struct entry *e = admit(r, ev, &forged, pre && pre[i]) ? apply_event(r, ev, now, false)
                                                                : NULL;
        if (stream)
            r->stats.sync_events_received++;
        if (e && stream && !r->applying_sync)
            r->stats.regossiped++;
        if (r->owner_conn && strcmp(ev->owner, r->owner_from) == 0 &&
            ev->generation == sender->generation) {
            e = shoal_strmap_get(&sender->ids, ev->id);
            if (e)
                e->seen_conn = src->conn;
            if (sender->sweep_conn != src->conn)
                sender->sweep_max = 0;
            sender->sweep_conn = src->conn;
            if (ev->version > sender->sweep_max)
                sender->sweep_max = ev->version;
        }
    }
    r->owner_conn = 0;
    r->owner_from = NULL;
    r->applying_sync = false;
    for (uint32_t k = 0; pre && k < m->n_proofs; k++)
        if (pre[m->n_events + k])
            owner_keep_proof(r, &m->proofs[k]);
    free(pre);
    switch (m->type) {
    case SHOAL_REG_GOSSIP:
        /* Notices: an event too big for a datagram; pull it by anti-entropy.
         * While one such sync is in flight (at most a second), remember the
         * notice for when it ends: a dropped notice would wait for the
         * periodic sync. */
        for (uint32_t i = 0; i < m->n_digests; i++) {
            const struct shoal_reg_digest *d = &m->digests[i];
            struct owner *o = shoal_reg__owner_get(r, d->owner, false);
            if (strcmp(d->owner, r->cfg.self) == 0 || !they_have_more(o, d))
                continue;
            if (!r->notice_inflight || now - r->last_notice_sync >= NOTICE_SYNC_GAP_MS) {
                notice_sync(r, now, &src->addr);
            } else {
                r->notice_pending = true;
                r->notice_addr = src->addr;
            }
            break;
        }
        break;
    case SHOAL_REG_SYNC_REQ:
        on_sync_req(r, src, m);
        break;
    case SHOAL_REG_SYNC_RESP:
    case SHOAL_REG_SYNC_DATA:
        if (!m->last)
            break;
        r->synced = true;
        if (m->type == SHOAL_REG_SYNC_RESP && r->notice_inflight &&
            shoal_addr_eq(&src->addr, &r->notice_inflight_addr)) {
            r->notice_inflight = false;
            if (r->notice_pending)
                notice_sync(r, now, &r->notice_addr);
        }
        shoal_reg__adopt_versions(r, m->digests, m->n_digests);
        if (sender && sender != r->self && is_live_status(sender->status))
            shoal_reg__owner_stream_done(r, sender, src->conn);
        if (m->type == SHOAL_REG_SYNC_RESP)
            on_sync_resp_last(r, src, m);
        break;
    default:
        break;
    }
}







void shoal_registry_tick(struct shoal_registry *r, int64_t now)
{
    ttl_tick(r, now);
    unknown_sync_tick(r, now);
    if (now >= r->next_gc) {
        r->next_gc = now + shoal_reg__gc_interval(r);
        shoal_reg__gc_tick(r, now);
    }
    if (now >= r->next_reap)
        shoal_reg__reap_tick(r, now);
    if (now >= r->next_verify)
        shoal_reg__verify_tick(r, now);
    if (r->notice_pending && now - r->last_notice_sync >= NOTICE_SYNC_GAP_MS)
        notice_sync(r, now, &r->notice_addr);
    if (r->cfg.sync_interval_ms && now >= r->next_sync) {
        struct shoal_addr peer;
        /* Jittered over [interval/2, 3*interval/2) so that nodes started
         * together do not all exchange at once (memberlist staggers too). */
        uint32_t iv = r->cfg.sync_interval_ms;
        r->next_sync = now + iv / 2 +
                       (int64_t)((shoal_strhash(r->cfg.self) + r->stats.syncs_started * 7919u) % iv);
        if (r->cfg.peers && r->cfg.peers(r->cfg.ud, 1, &peer) == 1)
            shoal_registry_sync_with(r, now, &peer);
    }
    if (now >= r->next_gossip) {
        /* Keep this node's phase: ticks of different nodes stay spread
         * over the interval even after an idle spell. */
        int64_t iv = r->cfg.gossip_interval_ms;
        r->next_gossip += ((now - r->next_gossip) / iv + 1) * iv;
        r->push_pending = false;
        r->next_push = now + r->cfg.gossip_interval_ms / 10;
        gossip_send(r);
    } else if (r->push_pending && now >= r->next_push) {
        r->push_pending = false;
        r->next_push = now + r->cfg.gossip_interval_ms / 10;
        gossip_send(r);
    }
}

int64_t shoal_registry_next_deadline(const struct shoal_registry *r)
{
    int64_t d = r->next_gc < r->next_reap ? r->next_gc : r->next_reap;
    if (r->next_verify < d)
        d = r->next_verify;
    if (r->notice_pending && r->last_notice_sync + NOTICE_SYNC_GAP_MS < d)
        d = r->last_notice_sync + NOTICE_SYNC_GAP_MS;
    if (r->push_pending && r->next_push < d)
        d = r->next_push; /* INT64_MIN until the first push: now */
    if (r->qn && r->next_gossip < d)
        d = r->next_gossip;
    if (r->cfg.sync_interval_ms && r->next_sync < d)
        d = r->next_sync;
    if (r->own_deadline < d)
        d = r->own_deadline;
    if (unknown_sync_due(r) && r->next_unknown_sync < d)
        d = r->next_unknown_sync;
    return d;
}

/* ------------------------------------------------------------ queries */

/* Served: live, and not back from dead with a copy the owner has not
 * confirmed yet. */
static bool owner_served(const struct owner *o)
{
    return is_live_status(o->status) && !o->unverified;
}

static bool matches(const struct shoal_registry *r, const struct entry *e,
                    const struct shoal_query *q)
{
    if (!q->all && (e->in.health != SHOAL_PASSING || !owner_served(e->owner)))
        return false;
    (void)r;
    for (size_t i = 0; i < q->n_tags; i++) {
        bool found = false;
        for (uint32_t k = 0; k < e->in.n_tags && !found; k++)
            found = strcmp(e->in.tags[k], q->tags[i]) == 0;
        if (!found)
            return false;
    }
    for (size_t i = 0; i < q->n_meta; i++) {
        bool found = false;
        for (uint32_t k = 0; k < e->in.n_meta && !found; k++)
            found = strcmp(e->in.meta[k].key, q->meta[i].key) == 0 &&
                    strcmp(e->in.meta[k].value, q->meta[i].value) == 0;
        if (!found)
            return false;
    }
    return true;
}

static int by_owner_id(const void *a, const void *b)
{
    const struct shoal_instance *x = *(const struct shoal_instance *const *)a;
    const struct shoal_instance *y = *(const struct shoal_instance *const *)b;
    int c = strcmp(x->owner, y->owner);
    return c ? c : strcmp(x->id, y->id);
}

size_t shoal_registry_query(const struct shoal_registry *r, const struct shoal_query *q,
                            const struct shoal_instance **out, size_t max)
{
    const struct service *s = q->service ? shoal_strmap_get(&r->services, q->service) : NULL;
    size_t n = 0;
    if (!s)
        return 0;
    for (size_t i = 0; i < s->n; i++) {
        if (!matches(r, s->v[i], q))
            continue;
        if (n < max)
            out[n] = &s->v[i]->in;
        n++;
    }
    if (n > 1 && n <= max)
        qsort(out, n, sizeof(*out), by_owner_id);
    return n;
}

bool shoal_registry_owner_live(const struct shoal_registry *r, const char *owner)
{
    const struct owner *o = shoal_strmap_get(&r->owners, owner);
    return o && owner_served(o);
}

static int by_name(const void *a, const void *b)
{
    const struct shoal_service_summary *x = a, *y = b;
    return strcmp(x->name, y->name);
}

size_t shoal_registry_services(const struct shoal_registry *r, struct shoal_service_summary *out,
                               size_t max)
{
    size_t n = 0;
    for (size_t i = 0; i < r->services.cap; i++) {
        const struct service *s = r->services.slots[i].value;
        if (!r->services.slots[i].key || s->n == 0)
            continue;
        if (n < max) {
            size_t passing = 0;
            for (size_t k = 0; k < s->n; k++)
                passing += s->v[k]->in.health == SHOAL_PASSING && owner_served(s->v[k]->owner);
            out[n] = (struct shoal_service_summary){s->name, passing, s->n};
        }
        n++;
    }
    if (n > 1 && n <= max)
        qsort(out, n, sizeof(*out), by_name);
    return n;
}

uint64_t shoal_registry_index(const struct shoal_registry *r, const char *service)
{
    if (!service)
        return r->index;
    const struct service *s = shoal_strmap_get(&r->services, service);
    return s && s->index ? s->index : r->index_base;
}

void shoal_registry_index_floor(struct shoal_registry *r, uint64_t floor)
{
    if (floor > r->index) {
        r->index = floor;
        r->index_base = floor;
    }
}

static int by_digest_owner(const void *a, const void *b)
{
    return strcmp(((const struct shoal_reg_digest *)a)->owner,
                  ((const struct shoal_reg_digest *)b)->owner);
}

size_t shoal_registry_digests(const struct shoal_registry *r, struct shoal_reg_digest *out,
                              size_t max)
{
    size_t n = 0;
    for (size_t i = 0; i < r->owners.cap; i++) {
        const struct owner *o = r->owners.slots[i].value;
        if (!r->owners.slots[i].key || (!o->count && !o->max_version))
            continue;
        if (n < max)
            shoal_reg__digest_of(o, &out[n]);
        n++;
    }
    if (n > 1 && n <= max)
        qsort(out, n, sizeof(*out), by_digest_owner);
    return n;
}

void shoal_registry_counts(const struct shoal_registry *r, size_t by_health[SHOAL_HEALTH_COUNT],
                           size_t *tombstones)
{
    for (int i = 0; i < SHOAL_HEALTH_COUNT; i++)
        by_health[i] = 0;
    *tombstones = 0;
    for (size_t i = 0; i < r->owners.cap; i++) {
        const struct owner *o = r->owners.slots[i].value;
        if (!r->owners.slots[i].key)
            continue;
        for (size_t k = 0; k < o->ids.cap; k++) {
            const struct entry *e = o->ids.slots[k].value;
            if (!o->ids.slots[k].key)
                continue;
            if (e->in.deleted)
                (*tombstones)++;
            else
                by_health[e->in.health]++;
        }
    }
}

const struct shoal_registry_stats *shoal_registry_stats(const struct shoal_registry *r)
{
    return &r->stats;
}

/* ---------------------------------------------------------- lifecycle */


struct shoal_registry *shoal_registry_new(const struct shoal_registry_config *c, int *err)
{
    int e = 0;
    if (!shoal_name_valid(c->self) || !c->send || !c->gossip_interval_ms ||
        !c->retransmit_mult || c->max_datagram < SHOAL_ENVELOPE_BYTES + 512 ||
        c->max_stream_part < 65536 || shoal_registry_config_check(c, 0))
        e = SHOAL_EINVAL;
    struct shoal_registry *r = e ? NULL : calloc(1, sizeof(*r));
    if (!e && !r)
        e = SHOAL_ENOMEM;
    if (r) {
        r->cfg = *c;
        shoal_regauth_caps_defaults(&r->cfg);
        r->index = 1;
        r->index_base = 1;
        r->self = shoal_reg__owner_get(r, c->self, true);
        if (!r->self) {
            free(r);
            r = NULL;
            e = SHOAL_ENOMEM;
        } else {
            r->self->generation = c->generation;
            r->next_sync = c->sync_interval_ms;
            r->last_notice_sync = INT64_MIN / 2;
            r->next_gossip = (int64_t)(shoal_strhash(c->self) % c->gossip_interval_ms);
            r->next_reap = NEVER;
            r->next_verify = NEVER;
            r->next_push = INT64_MIN;
            r->own_deadline = NEVER;
        }
    }
    if (err)
        *err = e;
    return r;
}

void shoal_registry_free(struct shoal_registry *r)
{
    if (!r)
        return;
    for (size_t i = 0; i < r->owners.cap; i++) {
        struct owner *o = r->owners.slots[i].value;
        if (!r->owners.slots[i].key)
            continue;
        for (size_t k = 0; k < o->ids.cap; k++) {
            struct entry *e = o->ids.slots[k].value;
            if (!o->ids.slots[k].key)
                continue;
            shoal_instance_clear(&e->in);
            free(e);
        }
        shoal_strmap_close(&o->ids);
        free(o->proof);
        free(o);
    }
    for (size_t i = 0; i < r->services.cap; i++) {
        struct service *s = r->services.slots[i].value;
        if (!r->services.slots[i].key)
            continue;
        free(s->v);
        free(s->name);
        free(s);
    }
    shoal_strmap_close(&r->owners);
    shoal_strmap_close(&r->services);
    free(r->own);
    free(r->q);
    free(r->ev);
    free(r->dg);
    free(r->wants);
    free(r->pf);
    free(r);
}
