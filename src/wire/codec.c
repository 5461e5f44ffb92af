/* codec.c -- struct shoal_msg <-> protobuf-c Packet (proto/shoal.proto).
 *
 * encode builds the Packet on the stack, pointing at the caller's strings, so
 * it allocates nothing. decode unpacks with a bump allocator over a stack
 * arena (falling back to malloc for oversized inputs), then checks every
 * field before it copies anything into the caller's struct: a bad field is
 * SHOAL_EINVAL with the field's name, bytes protobuf-c rejects are
 * SHOAL_EDECODE. Unknown fields are skipped (proto3), so newer agents can add some.
 */
#include <stdalign.h>
#include <stdlib.h>
#include <string.h>

#include "proto/shoal.pb-c.h"
#include "wire/wire.h"

/* ---- encode ------------------------------------------------------------ */

/* protobuf-c wants non-const pointers; it never writes through them on pack. */
static char *str_field(const char *s)
{
    return (char *)(uintptr_t)s;
}

static void addr_to_pb(const struct shoal_addr *a, Shoal__Addr *pb)
{
    shoal__addr__init(pb);
    pb->family = a->family;
    pb->ip.data = (uint8_t *)(uintptr_t)a->ip;
    /* Only 4 and 6 carry an address; anything else is sent as is and the
     * receiver rejects it (a core bug should show up there, not vanish). */
    pb->ip.len = a->family == 4 ? 4 : a->family == 6 ? 16 : 0;
    pb->port = a->port;
}

static bool str_terminated(const char *s)
{
    return memchr(s, 0, SHOAL_NAME_MAX) != NULL;
}

int shoal_wire_encode(const struct shoal_msg *m, uint8_t *buf, size_t cap)
{
    Shoal__Packet pkt;
    Shoal__Addr target_addr;
    Shoal__MemberUpdate ups[SHOAL_MSG_MAX_UPDATES];
    Shoal__Addr up_addrs[SHOAL_MSG_MAX_UPDATES];
    Shoal__MemberUpdate *up_ptrs[SHOAL_MSG_MAX_UPDATES];

    /* A struct that cannot be a valid message is our own caller's bug. */
    if (m->n_updates > SHOAL_MSG_MAX_UPDATES || !str_terminated(m->from) ||
        !str_terminated(m->target))
        return SHOAL_EINVAL;

    shoal__packet__init(&pkt);
    pkt.type = m->type;
    pkt.seq = m->seq;
    pkt.part = m->part;
    pkt.from = str_field(m->from);
    pkt.target = str_field(m->target);
    if (m->target_addr.family != 0) {
        addr_to_pb(&m->target_addr, &target_addr);
        pkt.target_addr = &target_addr;
    }
    for (uint32_t i = 0; i < m->n_updates; i++) {
        const struct shoal_update *u = &m->updates[i];
        if (!str_terminated(u->name) || !str_terminated(u->from))
            return SHOAL_EINVAL;
        shoal__member_update__init(&ups[i]);
        addr_to_pb(&u->addr, &up_addrs[i]);
        ups[i].name = str_field(u->name);
        ups[i].addr = &up_addrs[i];
        ups[i].generation = u->generation;
        ups[i].incarnation = u->incarnation;
        ups[i].status = u->status;
        ups[i].from = str_field(u->from);
        up_ptrs[i] = &ups[i];
    }
    pkt.n_updates = m->n_updates;
    pkt.updates = m->n_updates ? up_ptrs : NULL;

    size_t need = shoal__packet__get_packed_size(&pkt);
    if (need > cap || need > (size_t)INT32_MAX)
        return SHOAL_ETOOBIG;
    size_t n = shoal__packet__pack(&pkt, buf);
    return (int)n;
}

/* ---- decode ------------------------------------------------------------ */

/* A full 1400 B datagram of 48 updates unpacks into about 10 KiB; the arena
 * covers that without touching malloc. Hostile or larger inputs spill to
 * the heap, and free_unpacked() gives those blocks back. */
#define ARENA_BYTES 16384

struct arena {
    alignas(max_align_t) uint8_t mem[ARENA_BYTES];
    size_t used;
};

static void *arena_alloc(void *ud, size_t size)
{
    struct arena *a = ud;
    size_t al = alignof(max_align_t);
    size_t rounded = (size + al - 1) & ~(al - 1);
    if (rounded >= size && rounded <= ARENA_BYTES - a->used) {
        void *p = a->mem + a->used;
        a->used += rounded;
        return p;
    }
    return malloc(size);
}

static void arena_free(void *ud, void *p)
{
    struct arena *a = ud;
    uint8_t *b = p;
    if (b >= a->mem && b < a->mem + ARENA_BYTES)
        return;
    free(p);
}

/* Copies a checked string (strlen < SHOAL_NAME_MAX) into a name field,
 * zero-padded so that equal messages are equal byte for byte. protobuf-c
 * hands strings over NUL-terminated: a name with an embedded NUL is read up
 * to it, and what is read is what gets checked. */
static void copy_name(char dst[SHOAL_NAME_MAX], const char *src)
{
    size_t n = strlen(src);
    memset(dst, 0, SHOAL_NAME_MAX);
    memcpy(dst, src, n);
}

static bool name_ok(const char *s)
{
    return s && shoal_name_valid(s);
}

static bool name_or_empty_ok(const char *s)
{
    return s && (s[0] == 0 || shoal_name_valid(s));
}

/* Checks one Addr; on failure *field says which part was wrong. */
static bool addr_check(const Shoal__Addr *pb, const char *f_family, const char *f_ip,
                       const char *f_port, const char **field)
{
    if (pb->family == 4) {
        if (pb->ip.len != 4) {
            *field = f_ip;
            return false;
        }
    } else if (pb->family == 6) {
        if (pb->ip.len != 16) {
            *field = f_ip;
            return false;
        }
    } else {
        *field = f_family;
        return false;
    }
    if (pb->port == 0 || pb->port > 65535) {
        *field = f_port;
        return false;
    }
    return true;
}

static void addr_copy(const Shoal__Addr *pb, struct shoal_addr *a)
{
    memset(a, 0, sizeof(*a));
    a->family = (uint8_t)pb->family;
    memcpy(a->ip, pb->ip.data, pb->ip.len);
    a->port = (uint16_t)pb->port;
}

static bool type_needs_target(uint32_t type)
{
    return type == SHOAL_MSG_PING || type == SHOAL_MSG_PING_REQ;
}

/* Checks every field of pkt; returns NULL or the name of the bad one. */
static const char *packet_check(const Shoal__Packet *pkt)
{
    const char *field = NULL;
    if (pkt->type < 1 || pkt->type > SHOAL_MSG_TYPE_MAX)
        return "type";
    if (!name_ok(pkt->from))
        return "from";
    /* target is required by PING and PING_REQ and must be a name if sent. */
    if (!pkt->target || (pkt->target[0] == 0 && type_needs_target(pkt->type)) ||
        !name_or_empty_ok(pkt->target))
        return "target";
    if (pkt->target_addr) {
        if (!addr_check(pkt->target_addr, "target_addr.family", "target_addr.ip",
                        "target_addr.port", &field))
            return field;
    } else if (pkt->type == SHOAL_MSG_PING_REQ) {
        return "target_addr";
    }
    if (pkt->n_updates > SHOAL_MSG_MAX_UPDATES)
        return "updates";
    for (size_t i = 0; i < pkt->n_updates; i++) {
        const Shoal__MemberUpdate *u = pkt->updates[i];
        if (!name_ok(u->name))
            return "update.name";
        if (!u->addr)
            return "update.addr";
        if (!addr_check(u->addr, "update.addr.family", "update.addr.ip",
                        "update.addr.port", &field))
            return field;
        if (u->status >= SHOAL_STATUS_COUNT)
            return "update.status";
        if (!name_or_empty_ok(u->from))
            return "update.from";
    }
    return NULL;
}

int shoal_wire_decode(const uint8_t *buf, size_t len, struct shoal_msg *out,
                      const char **bad_field)
{
    struct arena arena;
    ProtobufCAllocator alloc = {arena_alloc, arena_free, &arena};
    arena.used = 0;

    if (bad_field)
        *bad_field = NULL;
    Shoal__Packet *pkt = shoal__packet__unpack(&alloc, len, buf);
    if (!pkt)
        return SHOAL_EDECODE;

    const char *bad = packet_check(pkt);
    if (bad) {
        shoal__packet__free_unpacked(pkt, &alloc);
        if (bad_field)
            *bad_field = bad;
        return SHOAL_EINVAL;
    }

    /* Everything below was checked: names fit, addresses are 4/6 with a
     * port, counts are within the struct's arrays. */
    out->type = (uint8_t)pkt->type;
    out->seq = pkt->seq;
    out->part = pkt->part;
    copy_name(out->from, pkt->from);
    copy_name(out->target, pkt->target);
    if (pkt->target_addr)
        addr_copy(pkt->target_addr, &out->target_addr);
    else
        memset(&out->target_addr, 0, sizeof(out->target_addr));
    out->n_updates = (uint32_t)pkt->n_updates;
    for (size_t i = 0; i < pkt->n_updates; i++) {
        const Shoal__MemberUpdate *pu = pkt->updates[i];
        struct shoal_update *u = &out->updates[i];
        memset(u, 0, sizeof(*u));
        copy_name(u->name, pu->name);
        addr_copy(pu->addr, &u->addr);
        u->generation = pu->generation;
        u->incarnation = pu->incarnation;
        u->status = (uint8_t)pu->status;
        copy_name(u->from, pu->from);
    }
    shoal__packet__free_unpacked(pkt, &alloc);
    return 0;
}
