/* msg.h -- the decoded form of every SWIM message core sends and receives.
 *
 * core fills and reads these structs; wire/ maps them to protobuf-c and the
 * signed envelope. A message is one datagram: a body (ping, ack, ...) plus
 * piggybacked member updates (the dissemination component of SWIM, sec. 4).
 */
#ifndef SHOAL_CORE_MSG_H
#define SHOAL_CORE_MSG_H

#include <stdbool.h>
#include <stdint.h>

#include "core/addr.h"

#define SHOAL_NAME_MAX 64        /* bytes with the NUL: names are 1..63 chars */
#define SHOAL_MSG_MAX_UPDATES 48 /* more never fit in a datagram; decoders reject more */

/* Datagram budget: the whole signed datagram is at most max_datagram bytes
 * (1400 by default, memberlist's UDPBufferSize). The envelope takes
 * SHOAL_ENVELOPE_BYTES; the rest is the protobuf payload. core budgets the
 * payload with the conservative per-field costs below, and a wire unit test
 * checks they are never below what protobuf-c really encodes. */
#define SHOAL_ENVELOPE_BYTES 172
#define SHOAL_MSG_BASE_BYTES 48   /* type, seq, part, addr, tags; plus names */
#define SHOAL_UPDATE_BASE_BYTES 56 /* per update, plus its name and from */

enum shoal_status {
    SHOAL_ALIVE = 0,
    SHOAL_SUSPECT = 1,
    SHOAL_DEAD = 2,
    SHOAL_LEFT = 3, /* a graceful dead */
};
#define SHOAL_STATUS_COUNT 4

/* What one node says about one member. Ordering of claims about the same
 * member is by (generation, incarnation); see shoal_update_overrides(). */
struct shoal_update {
    char name[SHOAL_NAME_MAX];
    struct shoal_addr addr;
    uint64_t generation; /* grows on every restart of the member */
    uint32_t incarnation; /* raised only by the member itself, to refute */
    uint8_t status;       /* enum shoal_status */
    char from[SHOAL_NAME_MAX]; /* who suspected/declared it; "" for alive */
};

enum shoal_msg_type {
    SHOAL_MSG_PING = 1,     /* seq, target: "are you there?" */
    SHOAL_MSG_ACK = 2,      /* seq: answer to a ping (possibly relayed) */
    SHOAL_MSG_NACK = 3,     /* seq: relay got no ack from the target */
    SHOAL_MSG_PING_REQ = 4, /* seq, target, target_addr: "ping it for me" */
    SHOAL_MSG_GOSSIP = 5,   /* updates only */
    SHOAL_MSG_PUSHPULL_REQ = 6,  /* part k of the sender's full state */
    SHOAL_MSG_PUSHPULL_RESP = 7, /* part k of the responder's full state */
};
#define SHOAL_MSG_TYPE_MAX 7

struct shoal_msg {
    uint8_t type; /* enum shoal_msg_type */
    uint32_t seq;
    uint32_t part; /* push-pull: index of this part; part 0 of a REQ asks for a RESP */
    char from[SHOAL_NAME_MAX];   /* sender's member name, always set */
    char target[SHOAL_NAME_MAX]; /* PING, PING_REQ */
    struct shoal_addr target_addr; /* PING_REQ */
    uint32_t n_updates;
    struct shoal_update updates[SHOAL_MSG_MAX_UPDATES];
};

/* Conservative encoded size of one update and of a message without updates. */
static inline uint32_t shoal_update_cost(const struct shoal_update *u)
{
    uint32_t n = SHOAL_UPDATE_BASE_BYTES;
    for (const char *p = u->name; *p; p++)
        n++;
    for (const char *p = u->from; *p; p++)
        n++;
    return n;
}

/* Names are 1..63 of [A-Za-z0-9._-], starting with a letter or digit. */
bool shoal_name_valid(const char *name);
/* "alive", "suspect", "dead", "left"; "?" for anything else. */
const char *shoal_status_name(int status);
/* Returns the status for a name, or -1. */
int shoal_status_parse(const char *s);

#endif

