/* fallback.c -- the TCP fallback probe's frames (see fallback.h).
 *
 * A ping over TCP carries no piggybacked updates: it only proves the target
 * is up and reachable. It is encoded as a swim payload (the same codec as
 * a datagram) inside a stream frame, so it is signed and checked like any
 * other frame.
 */
#include "io/fallback.h"

#include <stdlib.h>
#include <string.h>

#include "core/msg.h"
#include "io/stream.h"
#include "shoal/error.h"
#include "wire/wire.h"

#define FALLBACK_PAYLOAD_MAX 512 /* a ping without updates is ~100 B */

int shoal_fallback_send(struct shoal_wire *w, struct shoal_stream *st, uint64_t conn,
                        const struct shoal_addr *to, uint8_t type, const char *from,
                        const char *target, uint32_t seq)
{
    struct shoal_msg *m = calloc(1, sizeof(*m)); /* ~7 KiB: not on the stack */
    uint8_t frame[SHOAL_FRAME_OVERHEAD + FALLBACK_PAYLOAD_MAX];
    if (!m)
        return SHOAL_ENOMEM;
    m->type = type;
    m->seq = seq;
    strncpy(m->from, from, SHOAL_NAME_MAX - 1);
    if (target)
        strncpy(m->target, target, SHOAL_NAME_MAX - 1);
    int len = shoal_wire_encode(m, frame + SHOAL_FRAME_OVERHEAD, FALLBACK_PAYLOAD_MAX);
    free(m);
    if (len < 0)
        return len;
    len = shoal_wire_seal_frame(w, frame + SHOAL_FRAME_OVERHEAD, (size_t)len, frame,
                                sizeof(frame));
    if (len < 0)
        return len;
    return shoal_stream_send(st, conn, to, frame, (size_t)len, NULL);
}

int shoal_fallback_parse(const uint8_t *payload, size_t plen, uint8_t *type, uint32_t *seq,
                         char *target, const char **bad)
{
    struct shoal_msg *m = calloc(1, sizeof(*m));
    if (!m)
        return SHOAL_ENOMEM;
    int rc = shoal_wire_decode(payload, plen, m, bad);
    if (rc == 0 && m->type != SHOAL_MSG_PING && m->type != SHOAL_MSG_ACK) {
        rc = SHOAL_EINVAL;
        if (bad)
            *bad = "type";
    }
    if (rc == 0 && m->n_updates) {
        rc = SHOAL_EINVAL; /* a fallback ping carries nothing else */
        if (bad)
            *bad = "updates";
    }
    if (rc == 0) {
        *type = m->type;
        *seq = m->seq;
        memcpy(target, m->target, SHOAL_NAME_MAX);
        target[SHOAL_NAME_MAX - 1] = 0;
    }
    free(m);
    return rc;
}
