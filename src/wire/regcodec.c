/* regcodec.c -- struct shoal_reg_msg <-> protobuf-c Packet types 8..11.
 *
 * Registry payloads range from one gossip datagram to a 4 MiB stream frame,
 * so decode works in three steps. A prescan walks the protobuf framing
 * without allocating: it refuses what protobuf-c would refuse to frame and
 * counts events, digests, wants and each event's tags and meta, so that an
 * oversized message is refused before anything is unpacked. protobuf-c then
 * unpacks into a bump arena (stack first, then growing heap chunks) with a
 * budget proportional to the input, so that hostile encodings cannot turn a
 * frame into gigabytes. Last every field is checked, and only then copied
 * into malloc'ed strings the caller frees with shoal_reg_msg_free().
 * shoal_wire_payload_type() reuses the framing walk to read the type alone.
 */
#include <limits.h>
#include <stdalign.h>
#include <stdlib.h>
#include <string.h>

#include "core/registry.h"
#include "proto/shoal.pb-c.h"
#include "wire/wire.h"

/* ---- framing walk ------------------------------------------------------ */

enum { WT_VARINT = 0, WT_I64 = 1, WT_LEN = 2, WT_I32 = 5 };

struct pb_field {
    uint32_t tag;
    unsigned wt;
    uint64_t v;          /* WT_VARINT: the value (low 64 bits) */
    const uint8_t *data; /* WT_LEN: the bytes after the length */
    size_t len;
};

/* Reads the field at *p, with protobuf-c 1.4's framing rules: a tag of at
 * most 5 bytes, never a one-byte 0 (a longer encoding of 0 passes, as an
 * unknown field), wire types 0, 1, 2 and 5 only (no groups), varints of at
 * most 10 bytes, lengths of at most 5 bytes that stay inside the input.
 * Returns 1 and advances *p, 0 at the end, -1 if malformed. */
static int pb_next(const uint8_t **p, const uint8_t *end, struct pb_field *f)
{
    const uint8_t *at = *p;
    size_t rem = (size_t)(end - at);
    size_t used = 1;
    if (rem == 0)
        return 0;

    uint32_t tag = (uint32_t)(at[0] & 0x7f) >> 3;
    f->wt = at[0] & 7;
    if (at[0] & 0x80) {
        size_t max = rem < 5 ? rem : 5;
        unsigned shift = 4;
        for (;;) {
            if (used == max)
                return -1;
            uint8_t b = at[used++];
            tag |= (uint32_t)(b & 0x7f) << shift;
            if (!(b & 0x80))
                break;
            shift += 7;
        }
    }
    if (tag == 0 && used == 1)
        return -1;
    f->tag = tag;
    at += used;
    rem -= used;

    switch (f->wt) {
    case WT_VARINT: {
        size_t max = rem < 10 ? rem : 10;
        uint64_t v = 0;
        size_t i = 0;
        for (;; i++) {
            if (i == max)
                return -1;
            v |= (uint64_t)(at[i] & 0x7f) << (7 * i);
            if (!(at[i] & 0x80))
                break;
        }
        f->v = v;
        at += i + 1;
        break;
    }
    case WT_I64:
        if (rem < 8)
            return -1;
        at += 8;
        break;
    case WT_I32:
        if (rem < 4)
            return -1;
        at += 4;
        break;
    case WT_LEN: {
        size_t max = rem < 5 ? rem : 5;
        uint64_t n = 0;
        size_t i = 0;
        for (;; i++) {
            if (i == max)
                return -1;
            n |= (uint64_t)(at[i] & 0x7f) << (7 * i);
            if (!(at[i] & 0x80))
                break;
        }
        at += i + 1;
        rem -= i + 1;
        if (n > rem)
            return -1;
        f->data = at;
        f->len = (size_t)n;
        at += n;
        break;
    }
    default:
        return -1;
    }
    *p = at;
    return 1;
}

int shoal_wire_payload_type(const uint8_t *payload, size_t len)
{
    struct pb_field f;
    uint32_t type = 0;
    int r;
    if (len == 0)
        return 0;
    const uint8_t *p = payload, *end = payload + len;
    while ((r = pb_next(&p, end, &f)) > 0) {
        if (f.tag != 1)
            continue;
        /* protobuf-c refuses a uint32 with another wire type; a repeated
         * one wins, truncated to 32 bits. */
        if (f.wt != WT_VARINT)
            return SHOAL_EDECODE;
        type = (uint32_t)f.v;
    }
    if (r < 0)
        return SHOAL_EDECODE;
    return type > INT_MAX ? INT_MAX : (int)type;
}

/* Packet and Instance field numbers the prescan looks at (proto/shoal.proto). */
#define PKT_TYPE 1
#define PKT_UPDATES 7
#define PKT_EVENTS 8
#define PKT_DIGESTS 9
#define PKT_WANTS 10
#define PKT_PROOFS 12
#define INS_TAGS 6
#define INS_META 7

/* Walks the whole payload: SHOAL_EDECODE for bad framing anywhere (also
 * inside events), a type that is not a varint or message or string fields
 * that are not length-delimited (protobuf-c refuses those too, and so
 * shoal_wire_payload_type's refusals are a subset); else SHOAL_EINVAL with
 * *bad for the first count over its limit; else 0. Counts are judged before
 * anything is unpacked, so an oversized message is SHOAL_EINVAL even if some
 * field deeper down would not unpack. */
static int prescan(const uint8_t *buf, size_t len, const char **bad)
{
    const uint8_t *p = buf, *end = buf + len;
    size_t n_events = 0, n_digests = 0, n_wants = 0, n_updates = 0, n_proofs = 0;
    struct pb_field f;
    int r;
    *bad = NULL;
    while ((r = pb_next(&p, end, &f)) > 0) {
        if (f.tag == PKT_TYPE && f.wt != WT_VARINT)
            return SHOAL_EDECODE;
        bool repeated_len = f.tag == PKT_UPDATES || f.tag == PKT_EVENTS || f.tag == PKT_DIGESTS ||
                            f.tag == PKT_WANTS || f.tag == PKT_PROOFS;
        if (!repeated_len)
            continue;
        if (f.wt != WT_LEN)
            return SHOAL_EDECODE;
        if (f.tag == PKT_UPDATES) {
            n_updates++;
        } else if (f.tag == PKT_DIGESTS) {
            n_digests++;
        } else if (f.tag == PKT_WANTS) {
            n_wants++;
        } else if (f.tag == PKT_PROOFS) {
            n_proofs++;
        } else {
            const uint8_t *q = f.data, *qend = f.data + f.len;
            size_t n_tags = 0, n_meta = 0;
            struct pb_field g;
            int s;
            n_events++;
            while ((s = pb_next(&q, qend, &g)) > 0) {
                if (g.tag != INS_TAGS && g.tag != INS_META)
                    continue;
                if (g.wt != WT_LEN)
                    return SHOAL_EDECODE;
                if (g.tag == INS_TAGS)
                    n_tags++;
                else
                    n_meta++;
            }
            if (s < 0)
                return SHOAL_EDECODE;
            if (!*bad && n_tags > SHOAL_TAGS_MAX)
                *bad = "event.tags";
            if (!*bad && n_meta > SHOAL_METAS_MAX)
                *bad = "event.meta";
        }
    }
    if (r < 0)
        return SHOAL_EDECODE;
    if (n_updates > 0)
        *bad = "updates";
    else if (n_events > SHOAL_REG_MAX_EVENTS)
        *bad = "events";
    else if (n_digests > SHOAL_REG_MAX_DIGESTS)
        *bad = "digests";
    else if (n_wants > SHOAL_REG_MAX_WANTS)
        *bad = "wants";
    else if (n_proofs > SHOAL_REG_MAX_PROOFS)
        *bad = "proofs";
    return *bad ? SHOAL_EINVAL : 0;
}

/* ---- unpack arena ------------------------------------------------------ */

/* A gossip datagram (at most 1228 B of payload) unpacks within the stack
 * part. Larger payloads take heap chunks that start at 64 KiB and double up
 * to 1 MiB; a request larger than half a chunk gets a chunk of its own. The
 * budget caps the heap at ARENA_RATIO times the input plus ARENA_SLACK.
 * Measured with protobuf-c 1.4.1, the densest valid payloads unpack into at
 * most 26 times their size (digests or wants with one-letter names; then
 * empty meta pairs 24x, tombstones with one-letter names 20x: test_wire
 * decodes each), while a frame of unknown 2-byte fields reaches 37x, and
 * inside events 58x: those are refused. Nothing is freed before the whole
 * unpack is. */
#define ARENA_STACK 16384
#define ARENA_CHUNK_MIN (64u << 10)
#define ARENA_CHUNK_MAX (1u << 20)
#define ARENA_RATIO 32
#define ARENA_SLACK (1u << 20)

struct chunk {
    struct chunk *next;
    size_t cap, used;
    /* the chunk's memory follows, aligned */
};

#define CHUNK_HDR ((sizeof(struct chunk) + alignof(max_align_t) - 1) & ~(alignof(max_align_t) - 1))

struct arena {
    alignas(max_align_t) uint8_t stack[ARENA_STACK];
    size_t stack_used;
    struct chunk *cur;   /* the chunk being filled */
    struct chunk *full;  /* the others */
    size_t heap, budget; /* bytes of chunks, and their cap */
    size_t next_cap;
};

static void arena_init(struct arena *a, size_t input_len)
{
    a->stack_used = 0;
    a->cur = a->full = NULL;
    a->heap = 0;
    a->budget = input_len * ARENA_RATIO + ARENA_SLACK;
    a->next_cap = ARENA_CHUNK_MIN;
}

static struct chunk *chunk_new(struct arena *a, size_t cap)
{
    if (cap > a->budget - a->heap)
        return NULL;
    struct chunk *c = malloc(CHUNK_HDR + cap);
    if (!c)
        return NULL;
    c->cap = cap;
    c->used = 0;
    a->heap += cap;
    return c;
}

static void *arena_alloc(void *ud, size_t size)
{
    struct arena *a = ud;
    size_t al = alignof(max_align_t);
    size_t rounded = (size + al - 1) & ~(al - 1);
    if (rounded < size)
        return NULL;
    if (rounded <= ARENA_STACK - a->stack_used) {
        void *p = a->stack + a->stack_used;
        a->stack_used += rounded;
        return p;
    }
    if (a->cur && rounded <= a->cur->cap - a->cur->used) {
        void *p = (uint8_t *)a->cur + CHUNK_HDR + a->cur->used;
        a->cur->used += rounded;
        return p;
    }
    if (rounded > a->next_cap / 2) {
        /* Its own chunk, kept aside: the current one keeps filling. */
        struct chunk *c = chunk_new(a, rounded);
        if (!c)
            return NULL;
        c->used = rounded;
        c->next = a->full;
        a->full = c;
        return (uint8_t *)c + CHUNK_HDR;
    }
    struct chunk *c = chunk_new(a, a->next_cap);
    if (!c)
        return NULL;
    if (a->next_cap < ARENA_CHUNK_MAX)
        a->next_cap *= 2;
    if (a->cur) {
        a->cur->next = a->full;
        a->full = a->cur;
    }
    a->cur = c;
    c->used = rounded;
    return (uint8_t *)c + CHUNK_HDR;
}

static void arena_free(void *ud, void *p)
{
    /* Everything goes at once in arena_release(). */
    (void)ud;
    (void)p;
}

static void arena_release(struct arena *a)
{
    if (a->cur) {
        a->cur->next = a->full;
        a->full = a->cur;
        a->cur = NULL;
    }
    while (a->full) {
        struct chunk *next = a->full->next;
        free(a->full);
        a->full = next;
    }
}

/* ---- checks ------------------------------------------------------------ */

static bool name_ok(const char *s)
{
    return s && shoal_name_valid(s);
}

/* id: 1..127 of [A-Za-z0-9._:-], starting with a letter or digit, as
 * shoal_instance_validate() wants it; checked here for tombstones too. */
static bool id_ok(const char *s)
{
    size_t n = 0;
    if (!s)
        return false;
    for (; s[n]; n++) {
        char c = s[n];
        bool alnum = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
        bool punct = c == '.' || c == '_' || c == ':' || c == '-';
        if (!(alnum || (n > 0 && punct)) || n + 1 >= SHOAL_ID_MAX)
            return false;
    }
    return n >= 1;
}

static const char *empty_if_null(const char *s)
{
    return s ? s : "";
}

/* A view of a Packet event as a shoal_instance, pointing into the unpacked
 * Packet, so it can be validated before anything is copied. */
static void instance_view(const Shoal__Instance *pb, struct shoal_instance *in,
                          struct shoal_kv kv[SHOAL_METAS_MAX],
                          struct shoal_check ck[SHOAL_CHECKS_MAX])
{
    memset(in, 0, sizeof(*in));
    memcpy(in->owner, pb->owner, strlen(pb->owner) + 1); /* checked: < SHOAL_NAME_MAX */
    in->id = pb->id;
    in->generation = pb->generation;
    in->version = pb->version;
    in->deleted = pb->deleted;
    if (pb->deleted)
        return;
    in->service = (char *)(uintptr_t)empty_if_null(pb->service);
    in->address = (char *)(uintptr_t)empty_if_null(pb->address);
    in->port = (uint16_t)pb->port;
    in->n_tags = (uint32_t)pb->n_tags;
    in->tags = pb->n_tags ? pb->tags : NULL;
    in->n_meta = (uint32_t)pb->n_meta;
    for (size_t i = 0; i < pb->n_meta; i++) {
        kv[i].key = pb->meta[i]->key;
        kv[i].value = pb->meta[i]->value;
    }
    in->meta = pb->n_meta ? kv : NULL;
    in->health = (uint8_t)pb->health;
    in->ttl_ms = pb->ttl_ms;
    in->registered_ms = pb->registered_ms;
    in->heartbeat_ms = pb->heartbeat_ms;
    in->deregister_critical_after_ms = pb->deregister_critical_after_ms;
    in->n_checks = (uint32_t)pb->n_checks; /* checked: <= SHOAL_CHECKS_MAX */
    for (size_t i = 0; i < pb->n_checks; i++) {
        const Shoal__Check *c = pb->checks[i];
        ck[i] = (struct shoal_check){(uint8_t)c->kind, c->target, c->interval_ms, c->timeout_ms,
                                     (uint8_t)c->rise, (uint8_t)c->fall, (uint8_t)c->status,
                                     c->output && c->output[0] ? c->output : NULL};
    }
    in->checks = pb->n_checks ? ck : NULL;
}

/* Checks one event; returns NULL or the bad field (or validate's sentence). */
static const char *event_check(const Shoal__Instance *pb)
{
    if (!name_ok(pb->owner))
        return "event.owner";
    if (!id_ok(pb->id))
        return "event.id";
    if (pb->sig.len != 0 && pb->sig.len != SHOAL_REG_SIG_BYTES)
        return "event.sig"; /* absent (refused later, counted) or one signature */
    if (pb->deleted)
        return NULL; /* a tombstone's content is not read */
    /* What the view's narrower types would hide, and the counts it needs. */
    if (pb->port > 65535)
        return "event.port";
    if (pb->health >= SHOAL_HEALTH_COUNT)
        return "event.health";
    if (pb->n_tags > SHOAL_TAGS_MAX)
        return "event.tags";
    if (pb->n_meta > SHOAL_METAS_MAX)
        return "event.meta";
    for (size_t i = 0; i < pb->n_tags; i++)
        if (!pb->tags[i])
            return "event.tags";
    for (size_t i = 0; i < pb->n_meta; i++)
        if (!pb->meta[i]->key || !pb->meta[i]->value)
            return "event.meta";
    if (pb->n_checks > SHOAL_CHECKS_MAX)
        return "event.checks";
    for (size_t i = 0; i < pb->n_checks; i++) {
        const Shoal__Check *c = pb->checks[i];
        if (!c->target || c->kind > SHOAL_CHECK_TCP || c->status >= SHOAL_HEALTH_COUNT ||
            c->rise > SHOAL_CHECK_DAMP_MAX || c->fall > SHOAL_CHECK_DAMP_MAX)
            return "event.checks";
    }
    struct shoal_instance view;
    struct shoal_kv kv[SHOAL_METAS_MAX];
    struct shoal_check ck[SHOAL_CHECKS_MAX];
    const char *why = NULL;
    instance_view(pb, &view, kv, ck);
    if (shoal_instance_validate(&view, &why) != 0)
        return why ? why : "event";
    return NULL;
}

static const char *packet_check(const Shoal__Packet *pkt)
{
    if (pkt->type < SHOAL_REG_GOSSIP || pkt->type > SHOAL_REG_SYNC_DATA)
        return "type";
    if (!name_ok(pkt->from))
        return "from";
    /* SWIM's fields have no meaning here; a sender that sets them is broken. */
    if (pkt->n_updates)
        return "updates";
    if (pkt->target && pkt->target[0])
        return "target";
    if (pkt->target_addr)
        return "target_addr";
    if (pkt->n_events > SHOAL_REG_MAX_EVENTS)
        return "events";
    if (pkt->n_digests > SHOAL_REG_MAX_DIGESTS)
        return "digests";
    if (pkt->n_wants > SHOAL_REG_MAX_WANTS)
        return "wants";
    for (size_t i = 0; i < pkt->n_events; i++) {
        const char *bad = event_check(pkt->events[i]);
        if (bad)
            return bad;
    }
    for (size_t i = 0; i < pkt->n_digests; i++)
        if (!name_ok(pkt->digests[i]->owner))
            return "digest.owner";
    for (size_t i = 0; i < pkt->n_wants; i++)
        if (!name_ok(pkt->wants[i]))
            return "want";
    if (pkt->n_proofs > SHOAL_REG_MAX_PROOFS)
        return "proofs";
    for (size_t i = 0; i < pkt->n_proofs; i++) {
        const Shoal__OwnerProof *p = pkt->proofs[i];
        if (!name_ok(p->owner))
            return "proof.owner";
        if (p->root.len != SHOAL_REG_HASH_BYTES)
            return "proof.root";
        if (p->sig.len != SHOAL_REG_SIG_BYTES)
            return "proof.sig";
    }
    return NULL;
}

/* ---- copy out ---------------------------------------------------------- */

static void copy_name(char dst[SHOAL_NAME_MAX], const char *src)
{
    size_t n = strlen(src);
    memset(dst, 0, SHOAL_NAME_MAX);
    memcpy(dst, src, n);
}

/* Deep-copies a checked event. Counts grow only as their entries are
 * allocated, so that on SHOAL_ENOMEM shoal_instance_clear() frees exactly
 * what was made. */
static int event_copy(const Shoal__Instance *pb, struct shoal_instance *in)
{
    copy_name(in->owner, pb->owner);
    in->generation = pb->generation;
    in->version = pb->version;
    in->deleted = pb->deleted;
    in->has_sig = pb->sig.len == SHOAL_REG_SIG_BYTES;
    if (in->has_sig)
        memcpy(in->sig, pb->sig.data, SHOAL_REG_SIG_BYTES);
    in->id = strdup(pb->id);
    if (!in->id)
        return SHOAL_ENOMEM;
    if (pb->deleted) {
        in->service = strdup("");
        in->address = strdup("");
        return in->service && in->address ? 0 : SHOAL_ENOMEM;
    }
    in->service = strdup(empty_if_null(pb->service));
    in->address = strdup(empty_if_null(pb->address));
    if (!in->service || !in->address)
        return SHOAL_ENOMEM;
    in->port = (uint16_t)pb->port;
    in->health = (uint8_t)pb->health;
    in->ttl_ms = pb->ttl_ms;
    in->registered_ms = pb->registered_ms;
    in->heartbeat_ms = pb->heartbeat_ms;
    if (pb->n_tags) {
        in->tags = malloc(pb->n_tags * sizeof(*in->tags));
        if (!in->tags)
            return SHOAL_ENOMEM;
        for (size_t i = 0; i < pb->n_tags; i++) {
            in->tags[i] = strdup(pb->tags[i]);
            if (!in->tags[i])
                return SHOAL_ENOMEM;
            in->n_tags++;
        }
    }
    if (pb->n_meta) {
        in->meta = calloc(pb->n_meta, sizeof(*in->meta));
        if (!in->meta)
            return SHOAL_ENOMEM;
        for (size_t i = 0; i < pb->n_meta; i++) {
            struct shoal_kv *kv = &in->meta[in->n_meta++];
            kv->key = strdup(pb->meta[i]->key);
            kv->value = strdup(pb->meta[i]->value);
            if (!kv->key || !kv->value)
                return SHOAL_ENOMEM;
        }
    }
    in->deregister_critical_after_ms = pb->deregister_critical_after_ms;
    if (pb->n_checks) {
        in->checks = calloc(pb->n_checks, sizeof(*in->checks));
        if (!in->checks)
            return SHOAL_ENOMEM;
        for (size_t i = 0; i < pb->n_checks; i++) {
            const Shoal__Check *c = pb->checks[i];
            struct shoal_check *d = &in->checks[in->n_checks++];
            *d = (struct shoal_check){(uint8_t)c->kind, strdup(c->target), c->interval_ms,
                                      c->timeout_ms, (uint8_t)c->rise, (uint8_t)c->fall,
                                      (uint8_t)c->status, NULL};
            if (c->output && c->output[0] && !(d->output = strdup(c->output)))
                return SHOAL_ENOMEM;
            if (!d->target)
                return SHOAL_ENOMEM;
        }
    }
    return 0;
}

static int packet_copy(const Shoal__Packet *pkt, struct shoal_reg_msg *out)
{
    out->type = (uint8_t)pkt->type;
    copy_name(out->from, pkt->from);
    out->part = pkt->part;
    out->last = pkt->last;
    if (pkt->n_events) {
        out->events = calloc(pkt->n_events, sizeof(*out->events));
        if (!out->events)
            return SHOAL_ENOMEM;
        for (size_t i = 0; i < pkt->n_events; i++) {
            out->n_events++;
            int rc = event_copy(pkt->events[i], &out->events[i]);
            if (rc)
                return rc;
        }
    }
    if (pkt->n_digests) {
        out->digests = calloc(pkt->n_digests, sizeof(*out->digests));
        if (!out->digests)
            return SHOAL_ENOMEM;
        for (size_t i = 0; i < pkt->n_digests; i++) {
            const Shoal__Digest *pd = pkt->digests[i];
            struct shoal_reg_digest *d = &out->digests[i];
            copy_name(d->owner, pd->owner);
            d->generation = pd->generation;
            d->version = pd->version;
            d->hash = pd->hash;
            d->count = pd->count;
        }
        out->n_digests = (uint32_t)pkt->n_digests;
    }
    if (pkt->n_wants) {
        out->wants = malloc(pkt->n_wants * sizeof(*out->wants));
        if (!out->wants)
            return SHOAL_ENOMEM;
        for (size_t i = 0; i < pkt->n_wants; i++)
            copy_name(out->wants[i], pkt->wants[i]);
        out->n_wants = (uint32_t)pkt->n_wants;
    }
    if (pkt->n_proofs) {
        out->proofs = calloc(pkt->n_proofs, sizeof(*out->proofs));
        if (!out->proofs)
            return SHOAL_ENOMEM;
        for (size_t i = 0; i < pkt->n_proofs; i++) {
            const Shoal__OwnerProof *pp = pkt->proofs[i];
            struct shoal_reg_proof *p = &out->proofs[i];
            copy_name(p->owner, pp->owner);
            p->generation = pp->generation;
            p->version = pp->version;
            p->count = pp->count;
            memcpy(p->root, pp->root.data, SHOAL_REG_HASH_BYTES);
            memcpy(p->sig, pp->sig.data, SHOAL_REG_SIG_BYTES);
        }
        out->n_proofs = (uint32_t)pkt->n_proofs;
    }
    return 0;
}

int shoal_wire_decode_reg(const uint8_t *buf, size_t len, struct shoal_reg_msg *out,
                          const char **bad_field)
{
    const char *bad = NULL;
    memset(out, 0, sizeof(*out));
    if (bad_field)
        *bad_field = NULL;
    if (len > SHOAL_STREAM_FRAME_MAX)
        return SHOAL_ETOOBIG;
    if (len == 0) {
        /* An empty Packet: type 0. */
        if (bad_field)
            *bad_field = "type";
        return SHOAL_EINVAL;
    }

    int rc = prescan(buf, len, &bad);
    if (rc) {
        if (rc == SHOAL_EINVAL && bad_field)
            *bad_field = bad;
        return rc;
    }

    /* The arena is 16 KiB on the stack; registry payloads arrive one at a
     * time from the io loop, never on a deep stack. */
    struct arena arena;
    ProtobufCAllocator alloc = {arena_alloc, arena_free, &arena};
    arena_init(&arena, len);
    Shoal__Packet *pkt = shoal__packet__unpack(&alloc, len, buf);
    if (!pkt) {
        arena_release(&arena);
        return SHOAL_EDECODE;
    }
    bad = packet_check(pkt);
    if (bad) {
        arena_release(&arena);
        if (bad_field)
            *bad_field = bad;
        return SHOAL_EINVAL;
    }
    rc = packet_copy(pkt, out);
    arena_release(&arena);
    if (rc) {
        shoal_reg_msg_free(out);
        memset(out, 0, sizeof(*out));
    }
    return rc;
}

/* ---- encode ------------------------------------------------------------ */

static bool str_terminated(const char *s)
{
    return memchr(s, 0, SHOAL_NAME_MAX) != NULL;
}

/* protobuf-c wants non-const pointers; it never writes through them on pack. */
static char *str_field(const char *s)
{
    return (char *)(uintptr_t)empty_if_null(s);
}

/* Counts the KV pairs and checks what would make m unwritable. */
static int encode_check(const struct shoal_reg_msg *m, size_t *n_kv)
{
    *n_kv = 0;
    if (m->type < SHOAL_REG_GOSSIP || m->type > SHOAL_REG_SYNC_DATA || !str_terminated(m->from))
        return SHOAL_EINVAL;
    if (m->n_events > SHOAL_REG_MAX_EVENTS || m->n_digests > SHOAL_REG_MAX_DIGESTS ||
        m->n_wants > SHOAL_REG_MAX_WANTS || m->n_proofs > SHOAL_REG_MAX_PROOFS ||
        (m->n_proofs && !m->proofs))
        return SHOAL_EINVAL;
    if ((m->n_events && !m->events) || (m->n_digests && !m->digests) || (m->n_wants && !m->wants))
        return SHOAL_EINVAL;
    for (uint32_t i = 0; i < m->n_events; i++) {
        const struct shoal_instance *in = &m->events[i];
        if (!str_terminated(in->owner) || !in->id)
            return SHOAL_EINVAL;
        if (in->deleted)
            continue;
        if (in->n_tags > SHOAL_TAGS_MAX || in->n_meta > SHOAL_METAS_MAX ||
            (in->n_tags && !in->tags) || (in->n_meta && !in->meta))
            return SHOAL_EINVAL;
        for (uint32_t t = 0; t < in->n_tags; t++)
            if (!in->tags[t])
                return SHOAL_EINVAL;
        for (uint32_t k = 0; k < in->n_meta; k++)
            if (!in->meta[k].key || !in->meta[k].value)
                return SHOAL_EINVAL;
        if (in->n_checks > SHOAL_CHECKS_MAX || (in->n_checks && !in->checks))
            return SHOAL_EINVAL;
        for (uint32_t k = 0; k < in->n_checks; k++)
            if (!in->checks[k].target)
                return SHOAL_EINVAL;
        *n_kv += in->n_meta;
    }
    for (uint32_t i = 0; i < m->n_digests; i++)
        if (!str_terminated(m->digests[i].owner))
            return SHOAL_EINVAL;
    for (uint32_t i = 0; i < m->n_wants; i++)
        if (!str_terminated(m->wants[i]))
            return SHOAL_EINVAL;
    for (uint32_t i = 0; i < m->n_proofs; i++)
        if (!str_terminated(m->proofs[i].owner))
            return SHOAL_EINVAL;
    return 0;
}

/* The Packet is built in one block: on the stack for gossip-sized messages,
 * else malloc'ed. */
#define ENCODE_STACK 8192

static size_t align_up(size_t n)
{
    size_t al = alignof(max_align_t);
    return (n + al - 1) & ~(al - 1);
}

int shoal_wire_encode_reg(const struct shoal_reg_msg *m, uint8_t *buf, size_t cap)
{
    size_t n_kv;
    int rc = encode_check(m, &n_kv);
    if (rc)
        return rc;

    size_t o_ins = 0;
    size_t o_insp = o_ins + align_up(m->n_events * sizeof(Shoal__Instance));
    size_t o_kv = o_insp + align_up(m->n_events * sizeof(Shoal__Instance *));
    size_t o_kvp = o_kv + align_up(n_kv * sizeof(Shoal__KV));
    size_t o_dig = o_kvp + align_up(n_kv * sizeof(Shoal__KV *));
    size_t o_digp = o_dig + align_up(m->n_digests * sizeof(Shoal__Digest));
    size_t o_want = o_digp + align_up(m->n_digests * sizeof(Shoal__Digest *));
    size_t o_pf = o_want + align_up(m->n_wants * sizeof(char *));
    size_t o_pfp = o_pf + align_up(m->n_proofs * sizeof(Shoal__OwnerProof));
    size_t total = o_pfp + align_up(m->n_proofs * sizeof(Shoal__OwnerProof *));

    alignas(max_align_t) uint8_t stack[ENCODE_STACK];
    uint8_t *block = total <= sizeof(stack) ? stack : malloc(total);
    if (!block)
        return SHOAL_ENOMEM;
    Shoal__Instance *ins = (Shoal__Instance *)(void *)(block + o_ins);
    Shoal__Instance **insp = (Shoal__Instance **)(void *)(block + o_insp);
    Shoal__KV *kv = (Shoal__KV *)(void *)(block + o_kv);
    Shoal__KV **kvp = (Shoal__KV **)(void *)(block + o_kvp);
    Shoal__Digest *dig = (Shoal__Digest *)(void *)(block + o_dig);
    Shoal__Digest **digp = (Shoal__Digest **)(void *)(block + o_digp);
    char **wants = (char **)(void *)(block + o_want);
    Shoal__OwnerProof *pf = (Shoal__OwnerProof *)(void *)(block + o_pf);
    Shoal__OwnerProof **pfp = (Shoal__OwnerProof **)(void *)(block + o_pfp);

    /* Checks (few events have any) in a block of their own. */
    size_t n_ck = 0;
    for (uint32_t i = 0; i < m->n_events; i++)
        n_ck += m->events[i].deleted ? 0 : m->events[i].n_checks;
    Shoal__Check *ck = n_ck ? calloc(n_ck, sizeof(*ck)) : NULL;
    Shoal__Check **ckp = n_ck ? calloc(n_ck, sizeof(*ckp)) : NULL;
    if (n_ck && (!ck || !ckp)) {
        free(ck);
        free(ckp);
        if (block != stack)
            free(block);
        return SHOAL_ENOMEM;
    }

    Shoal__Packet pkt;
    shoal__packet__init(&pkt);
    pkt.type = m->type;
    pkt.part = m->part;
    pkt.last = m->last;
    pkt.from = str_field(m->from);

    size_t k = 0, kc = 0;
    for (uint32_t i = 0; i < m->n_events; i++) {
        const struct shoal_instance *in = &m->events[i];
        Shoal__Instance *pb = &ins[i];
        shoal__instance__init(pb);
        pb->owner = str_field(in->owner);
        pb->id = str_field(in->id);
        pb->generation = in->generation;
        pb->version = in->version;
        pb->deleted = in->deleted;
        if (in->has_sig) {
            /* protobuf-c never writes through it on pack */
            pb->sig.data = (uint8_t *)(uintptr_t)in->sig;
            pb->sig.len = SHOAL_REG_SIG_BYTES;
        }
        insp[i] = pb;
        if (in->deleted)
            continue; /* a tombstone carries nothing else */
        pb->service = str_field(in->service);
        pb->address = str_field(in->address);
        pb->port = in->port;
        pb->n_tags = in->n_tags;
        pb->tags = in->n_tags ? in->tags : NULL;
        pb->n_meta = in->n_meta;
        pb->meta = in->n_meta ? &kvp[k] : NULL;
        for (uint32_t j = 0; j < in->n_meta; j++, k++) {
            shoal__kv__init(&kv[k]);
            kv[k].key = str_field(in->meta[j].key);
            kv[k].value = str_field(in->meta[j].value);
            kvp[k] = &kv[k];
        }
        pb->health = in->health;
        pb->ttl_ms = in->ttl_ms;
        pb->registered_ms = in->registered_ms;
        pb->heartbeat_ms = in->heartbeat_ms;
        pb->deregister_critical_after_ms = in->deregister_critical_after_ms;
        pb->n_checks = in->n_checks;
        pb->checks = in->n_checks ? &ckp[kc] : NULL;
        for (uint32_t j = 0; j < in->n_checks; j++, kc++) {
            const struct shoal_check *c = &in->checks[j];
            shoal__check__init(&ck[kc]);
            ck[kc].kind = c->kind;
            ck[kc].target = str_field(c->target);
            ck[kc].interval_ms = c->interval_ms;
            ck[kc].timeout_ms = c->timeout_ms;
            ck[kc].rise = c->rise;
            ck[kc].fall = c->fall;
            ck[kc].status = c->status;
            ck[kc].output = str_field(c->output ? c->output : "");
            ckp[kc] = &ck[kc];
        }
    }
    pkt.n_events = m->n_events;
    pkt.events = m->n_events ? insp : NULL;

    for (uint32_t i = 0; i < m->n_digests; i++) {
        const struct shoal_reg_digest *d = &m->digests[i];
        shoal__digest__init(&dig[i]);
        dig[i].owner = str_field(d->owner);
        dig[i].generation = d->generation;
        dig[i].version = d->version;
        dig[i].hash = d->hash;
        dig[i].count = d->count;
        digp[i] = &dig[i];
    }
    pkt.n_digests = m->n_digests;
    pkt.digests = m->n_digests ? digp : NULL;

    for (uint32_t i = 0; i < m->n_wants; i++)
        wants[i] = str_field(m->wants[i]);
    pkt.n_wants = m->n_wants;
    pkt.wants = m->n_wants ? wants : NULL;

    for (uint32_t i = 0; i < m->n_proofs; i++) {
        const struct shoal_reg_proof *p = &m->proofs[i];
        shoal__owner_proof__init(&pf[i]);
        pf[i].owner = str_field(p->owner);
        pf[i].generation = p->generation;
        pf[i].version = p->version;
        pf[i].count = p->count;
        pf[i].root.data = (uint8_t *)(uintptr_t)p->root; /* never written on pack */
        pf[i].root.len = SHOAL_REG_HASH_BYTES;
        pf[i].sig.data = (uint8_t *)(uintptr_t)p->sig;
        pf[i].sig.len = SHOAL_REG_SIG_BYTES;
        pfp[i] = &pf[i];
    }
    pkt.n_proofs = m->n_proofs;
    pkt.proofs = m->n_proofs ? pfp : NULL;

    size_t need = shoal__packet__get_packed_size(&pkt);
    if (need > cap || need > (size_t)INT32_MAX)
        rc = SHOAL_ETOOBIG;
    else
        rc = (int)shoal__packet__pack(&pkt, buf);
    free(ck);
    free(ckp);
    if (block != stack)
        free(block);
    return rc;
}
