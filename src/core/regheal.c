/* regheal.c -- what makes the registry's replicas whole again (see
 * registry.h, DESIGN.md registry rules, docs/faults.md).
 *
 * Concepts: an owner's liveness (membership's word) decides what is served;
 * a dead owner's instances are reaped after reap_ms, tombstones collected
 * after tombstone_ttl_ms, and a collected tombstone raises the owner's
 * floor, below which only the owner itself may add (so a deregistered
 * instance never comes back). An owner seen alive again is "unverified"
 * until a sync with the owner itself: its own full state is authoritative
 * and sweeps what it no longer holds. Start-up checks refuse retention
 * times that would let a deregistration be undone.
 */
#include <stdlib.h>
#include <string.h>

#include "core/registry_int.h"

/* Same content (generation, entry count and hash) but a lower highest
 * version: the versions in between were tombstones collected before they
 * reached us (a partition longer than the tombstone TTL). Nothing is
 * missing, so take the version; else the digests would differ forever. */
void shoal_reg__adopt_versions(struct shoal_registry *r, const struct shoal_reg_digest *d, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        struct owner *o = shoal_reg__owner_get(r, d[i].owner, false);
        if (o && o != r->self && o->generation == d[i].generation && o->hash == d[i].hash &&
            o->count == d[i].count && d[i].version > o->max_version) {
            o->max_version = d[i].version;
        }
    }
}

/* An owner's own full state (its sync stream's last part): it is the only
 * writer, so what it no longer holds at or below the newest version it sent
 * was deregistered and collected there. Drop it here too: that is what
 * makes a stale replica whole again whatever it missed. Then what we hold
 * of it is verified. */
void shoal_reg__owner_stream_done(struct shoal_registry *r, struct owner *o, uint64_t conn)
{
    if (o->sweep_conn == conn && conn) {
        for (size_t k = 0; k < o->ids.cap;) {
            struct entry *e = o->ids.slots[k].value;
            if (o->ids.slots[k].key && e->seen_conn != conn && e->in.version <= o->sweep_max) {
                shoal_reg__entry_drop(r, e);
                r->stats.swept++;
                continue; /* backward shift may have moved a key here */
            }
            k++;
        }
    }
    o->sweep_conn = 0;
    o->sweep_max = 0;
    o->want_owner_sync = false;
    r->verify_busy_until = 0; /* the next owner sync may start */
    r->next_verify = 0;
    if (o->unverified) {
        o->unverified = false;
        r->stats.verified++;
        shoal_reg__owner_services_bump(r, o);
    }
}

void shoal_reg__owner_services_bump(struct shoal_registry *r, struct owner *o)
{
    for (size_t i = 0; i < o->ids.cap; i++) {
        const struct entry *e = o->ids.slots[i].value;
        if (o->ids.slots[i].key && e->spos)
            shoal_reg__service_bump(r, e->in.service);
    }
    shoal_reg__notify(r, SHOAL_REG_OWNER, NULL, o->name, NULL);
}

void shoal_registry_owner_status(struct shoal_registry *r, int64_t now, const char *owner,
                                 uint8_t status, uint64_t generation)
{
    if (strcmp(owner, r->cfg.self) == 0)
        return;
    bool known = shoal_reg__owner_get(r, owner, false) != NULL;
    struct owner *o = shoal_reg__owner_get(r, owner, true);
    if (!o)
        return;
    bool was_live = known && is_live_status(o->status);
    o->status = status;
    if (!is_live_status(status)) {
        o->unverified = false;
        o->want_owner_sync = false;
    }
    if (status == SHOAL_LEFT) {
        /* A leaver deregistered its own; whatever is left of it goes now.
         * The floor keeps its late events from bringing anything back. */
        shoal_reg__owner_wipe(r, o);
        o->floor = o->max_version; /* also keeps its late events out */
    } else if (generation > o->generation) {
        /* Restarted: it re-announces what it still has under the new one. */
        if (o->count)
            r->stats.generation_wipes++;
        shoal_reg__owner_wipe(r, o);
        o->generation = generation;
        o->max_version = o->floor = 0;
    }
    if (status == SHOAL_DEAD) {
        if (!o->dead_since)
            o->dead_since = now;
        if (o->dead_since + (int64_t)r->cfg.reap_ms < r->next_reap)
            r->next_reap = o->dead_since + r->cfg.reap_ms;
    } else {
        o->dead_since = 0;
    }
    if (!was_live && is_live_status(status)) {
        /* Back from dead (a healed partition, a pause): deregistrations
         * may have been missed meanwhile. Hold its instances back until the
         * owner itself has compared states with us (regheal), at most
         * VERIFY_MAX_MS; ask it at once. */
        if (o->count && r->cfg.member_addr) {
            o->unverified = true;
            o->verify_deadline = now + VERIFY_MAX_MS;
            o->next_verify = now;
            o->want_owner_sync = true;
            if (now < r->next_verify)
                r->next_verify = now;
        }
        /* A node that has never completed a sync (a restarted seed whose
         * --join named only itself) gets the registry from the first
         * member it meets. */
        if (!r->synced && now >= r->next_first_sync && r->cfg.member_addr) {
            struct shoal_addr a;
            r->next_first_sync = now + VERIFY_RETRY_MS;
            if (r->cfg.member_addr(r->cfg.ud, o->name, &a))
                shoal_registry_sync_with(r, now, &a);
        }
    }
    if (was_live != is_live_status(status))
        shoal_reg__owner_services_bump(r, o);
}

/* Owner syncs asked for (back from dead, floor refusals): one stream to
 * the owner itself, retried while unverified; the hold ends at the
 * deadline whatever happened (the owner may not accept streams). */
void shoal_reg__verify_tick(struct shoal_registry *r, int64_t now)
{
    r->next_verify = NEVER;
    /* One owner sync at a time: after a heal many owners come back at
     * once, and the first answer already brings most of what the others
     * would (they then answer with little), instead of a storm of full
     * exchanges. The next starts when one is answered, or after 1 s. */
    bool may_start = now >= r->verify_busy_until;
    for (size_t i = 0; i < r->owners.cap; i++) {
        struct owner *o = r->owners.slots[i].value;
        if (!r->owners.slots[i].key || !is_live_status(o->status))
            continue;
        if (o->unverified && now >= o->verify_deadline) {
            o->unverified = false;
            r->stats.verify_timeouts++;
            shoal_reg__owner_services_bump(r, o);
        }
        if (o->want_owner_sync && now >= o->next_verify && now >= o->next_owner_sync &&
            may_start) {
            struct shoal_addr a;
            may_start = false;
            r->verify_busy_until = now + VERIFY_RETRY_MS;
            o->next_verify = now + VERIFY_RETRY_MS;
            if (!o->unverified) {
                o->want_owner_sync = false; /* a refusal: once per gap */
                o->next_owner_sync = now + OWNER_SYNC_GAP_MS;
            }
            if (r->cfg.member_addr && r->cfg.member_addr(r->cfg.ud, o->name, &a)) {
                r->stats.owner_syncs++;
                shoal_registry_sync_with(r, now, &a);
            }
        }
        if (o->unverified && o->verify_deadline < r->next_verify)
            r->next_verify = o->verify_deadline;
        if (o->want_owner_sync) {
            int64_t t = o->next_verify > o->next_owner_sync ? o->next_verify : o->next_owner_sync;
            if (t <= now) /* due, waiting for the one in flight */
                t = r->verify_busy_until > now ? r->verify_busy_until : now + 1;
            if (t < r->next_verify)
                r->next_verify = t;
        }
    }
}

void shoal_reg__reap_tick(struct shoal_registry *r, int64_t now)
{
    r->next_reap = NEVER;
    for (size_t i = 0; i < r->owners.cap; i++) {
        struct owner *o = r->owners.slots[i].value;
        if (!r->owners.slots[i].key || o->status != SHOAL_DEAD || !o->count)
            continue;
        int64_t due = o->dead_since + (int64_t)r->cfg.reap_ms;
        if (now >= due) {
            /* Drop the live entries only; the floor does not move: a
             * death may be false (a long partition), and an owner that
             * comes back in the same generation must get every live
             * instance back by anti-entropy, whatever its version.
             * Tombstones stay until their own collection. */
            for (size_t k = 0; k < o->ids.cap;) {
                struct entry *e = o->ids.slots[k].value;
                if (o->ids.slots[k].key && !e->in.deleted) {
                    shoal_reg__entry_drop(r, e);
                    continue; /* backward shift may have moved a key here */
                }
                k++;
            }
            r->stats.reaped++;
        } else if (due < r->next_reap) {
            r->next_reap = due;
        }
    }
}

/* Tombstones are kept tombstone_ttl_ms: far longer than any event can stay
 * in flight (gossip sends end within seconds; anti-entropy carries the
 * tombstone itself while it exists). Collecting one raises the owner's
 * floor, so an older event for that id is still refused afterwards. */
void shoal_reg__gc_tick(struct shoal_registry *r, int64_t now)
{
    for (size_t i = 0; i < r->owners.cap; i++) {
        struct owner *o = r->owners.slots[i].value;
        if (!r->owners.slots[i].key)
            continue;
        for (size_t k = 0; k < o->ids.cap;) {
            struct entry *e = o->ids.slots[k].value;
            if (o->ids.slots[k].key && e->in.deleted &&
                now - e->tomb_at >= (int64_t)r->cfg.tombstone_ttl_ms) {
                if (e->in.version > o->floor)
                    o->floor = e->in.version;
                shoal_reg__entry_drop(r, e);
                r->stats.tombstones_collected++;
                continue;
            }
            k++;
        }
    }
}

uint32_t shoal_reg__gc_interval(const struct shoal_registry *r)
{
    uint32_t g = r->cfg.tombstone_ttl_ms / 10;
    return g < 1000 ? 1000 : g > 60000 ? 60000 : g;
}

/* Why these relations (docs/faults.md has the story):
 * - a tombstone must outlive the reap: a replica that missed a
 *   deregistration while it held the owner dead keeps the old live copy
 *   until the reap; if the tombstone that would refuse that copy were
 *   collected first, anti-entropy could carry the copy back;
 * - a tombstone must survive two anti-entropy rounds, so that a replica
 *   that missed it by gossip still gets it by a sync before it goes;
 * - membership must remember a dead member at least until its instances
 *   are reaped: a forgotten member's instances are wiped at once, which
 *   would silently cut the registry's reap time short. */
const char *shoal_registry_config_check(const struct shoal_registry_config *c,
                                        uint32_t member_reap_ms)
{
    if (c->tombstone_ttl_ms < c->reap_ms)
        return "--tombstone-ttl must be at least --registry-reap (a deregistered instance could "
               "come back from a replica that held its owner dead)";
    if (c->sync_interval_ms && (uint64_t)c->tombstone_ttl_ms < 2ull * c->sync_interval_ms)
        return "--tombstone-ttl must be at least twice --sync-interval (a replica that missed a "
               "deregistration must get the tombstone by anti-entropy before it is collected)";
    if (member_reap_ms && member_reap_ms < c->reap_ms)
        return "--reap (dead members' retention) must be at least --registry-reap (a forgotten "
               "member's instances would be dropped before their reap time)";
    return NULL;
}
