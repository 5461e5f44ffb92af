/* fallback.h -- the TCP fallback probe (memberlist's): a ping and its ack
 * as stream frames, over the stream transport's public API (stream.h).
 *
 * When a direct UDP probe gets no ack, swim asks for one more ping over
 * TCP, in parallel with the ping-reqs; if the target answers before the
 * probe period ends it is not suspected. UDP loss alone then makes no
 * suspicion, while a dead or partitioned node still fails both.
 */
#ifndef SHOAL_IO_FALLBACK_H
#define SHOAL_IO_FALLBACK_H

#include <stddef.h>
#include <stdint.h>

#include "core/addr.h"

struct shoal_stream;
struct shoal_wire;

/* Sends a PING (type SHOAL_MSG_PING) or ACK frame: from us, about target
 * (PING), with seq. conn 0 opens a new connection to `to`. Returns 0 or a
 * negative error (seal or stream). */
int shoal_fallback_send(struct shoal_wire *w, struct shoal_stream *st, uint64_t conn,
                        const struct shoal_addr *to, uint8_t type, const char *from,
                        const char *target, uint32_t seq);

/* A verified stream payload of swim type PING or ACK: decoded into *type,
 * *seq and target (SHOAL_NAME_MAX bytes). Returns 0, or a negative error
 * with *bad naming the field. */
int shoal_fallback_parse(const uint8_t *payload, size_t plen, uint8_t *type, uint32_t *seq,
                         char *target, const char **bad);

#endif
