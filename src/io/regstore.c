/* regstore.c -- DATA_DIR/registry: encode, replace durably, load and check.
 *
 * Saving encodes a SHOAL_REG_SYNC_DATA payload with wire's registry codec
 * (the same checks as on the network) and hands it to
 * shoal_datadir_write_file (temp, fsync, rename, fsync dir). Loading
 * decodes it with the same codec and then checks what only a stored file
 * promises: one digest carrying the counter, live instances only, one
 * owner, unique ids, no version above the counter.
 */
#include "io/regstore.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/strmap.h"
#include "io/datadir.h"
#include "io/reglog.h"
#include "wire/wire.h"

#define REGSTORE_BASE_BYTES 256 /* message header and the digest */

void shoal_regstore_clear(struct shoal_regstore *s)
{
    shoal_reg_msg_free(&s->msg);
    memset(s, 0, sizeof(*s));
}

static int snapshot_load(const char *dir, struct shoal_regstore *out, char *why, size_t whylen)
{
    uint8_t *buf = NULL;
    size_t len = 0;
    const char *bad = NULL;
    int rc;

    memset(out, 0, sizeof(*out));
    if (whylen)
        why[0] = 0;
    rc = shoal_datadir_read_file(dir, SHOAL_REGSTORE_FILE, SHOAL_STREAM_FRAME_MAX, &buf, &len);
    if (rc == -ENOENT)
        return 0;
    if (rc == SHOAL_ETOOBIG) {
        snprintf(why, whylen, "it is larger than %u bytes", SHOAL_STREAM_FRAME_MAX);
        return SHOAL_EINVAL;
    }
    if (rc != 0) {
        snprintf(why, whylen, "cannot read it: %s", shoal_datadir_strerror(rc));
        return rc;
    }
    rc = shoal_wire_decode_reg(buf, len, &out->msg, &bad);
    free(buf);
    if (rc == SHOAL_ENOMEM) {
        snprintf(why, whylen, "out of memory while decoding it");
        return rc;
    }
    if (rc != 0) {
        snprintf(why, whylen, "it does not decode (%s%s%s)", shoal_strerror(rc), bad ? ": " : "",
                 bad ? bad : "");
        memset(out, 0, sizeof(*out));
        return SHOAL_EINVAL;
    }
    const struct shoal_reg_msg *m = &out->msg;
    struct shoal_strmap seen = {0};
    if (m->type != SHOAL_REG_SYNC_DATA)
        snprintf(why, whylen, "it holds a type %u message, not the registry's (%u)", m->type,
                 SHOAL_REG_SYNC_DATA);
    else if (m->n_digests != 1 || m->n_wants)
        snprintf(why, whylen, "it must hold exactly one digest (the version counter), not %u",
                 m->n_digests);
    else if (!m->digests[0].owner[0])
        snprintf(why, whylen, "its digest names no owner");
    for (uint32_t i = 0; !why[0] && i < m->n_events; i++) {
        const struct shoal_instance *in = &m->events[i];
        if (in->deleted)
            snprintf(why, whylen, "event %u (%s) is a tombstone", i, in->id);
        else if (strcmp(in->owner, m->digests[0].owner) != 0)
            snprintf(why, whylen, "event %u (%s) belongs to '%s', not '%s'", i, in->id, in->owner,
                     m->digests[0].owner);
        else if (in->version > m->digests[0].version)
            snprintf(why, whylen, "event %u (%s) has version %llu above the counter %llu", i,
                     in->id, (unsigned long long)in->version,
                     (unsigned long long)m->digests[0].version);
        else if (shoal_strmap_get(&seen, in->id))
            snprintf(why, whylen, "id '%s' appears twice", in->id);
        else if (shoal_strmap_put(&seen, in->id, (void *)in) != 0)
            snprintf(why, whylen, "out of memory while checking it");
    }
    shoal_strmap_close(&seen);
    if (why[0]) {
        shoal_regstore_clear(out);
        return SHOAL_EINVAL;
    }
    memcpy(out->owner, m->digests[0].owner, SHOAL_NAME_MAX);
    out->version = m->digests[0].version;
    return 0;
}

int shoal_regstore_load(const char *dir, struct shoal_regstore *out, char *why, size_t whylen)
{
    struct shoal_reglog_replay rp;
    char sub[400];
    int rc = snapshot_load(dir, out, why, whylen);
    if (rc != 0)
        return rc;
    rc = shoal_reglog_replay(dir, out, &rp, sub, sizeof(sub));
    if (rc != 0) {
        snprintf(why, whylen, "%s: %s", SHOAL_REGLOG_FILE, sub);
        shoal_regstore_clear(out);
        return rc;
    }
    out->log_records = rp.records;
    out->log_events = rp.events;
    out->log_torn_bytes = rp.torn_bytes;
    return 0;
}

int shoal_regstore_encode(const char *self, const struct shoal_registry *r, uint8_t **buf,
                          size_t *len)
{
    size_t n = shoal_registry_own(r, NULL, 0), cap = REGSTORE_BASE_BYTES;
    const struct shoal_instance **own = calloc(n ? n : 1, sizeof(*own));
    struct shoal_instance *events = calloc(n ? n : 1, sizeof(*events));
    struct shoal_reg_digest d = {.version = shoal_registry_own_version(r)};
    struct shoal_reg_msg m = {.type = SHOAL_REG_SYNC_DATA, .last = true};
    int rc = SHOAL_ENOMEM;

    *buf = NULL;
    *len = 0;
    if (!own || !events)
        goto out;
    n = shoal_registry_own(r, own, n);
    for (size_t i = 0; i < n; i++) {
        events[i] = *own[i]; /* shallow: the strings stay the registry's */
        cap += shoal_instance_cost(own[i]);
    }
    snprintf(d.owner, sizeof(d.owner), "%s", self);
    snprintf(m.from, sizeof(m.from), "%s", self);
    m.events = events;
    m.n_events = (uint32_t)n;
    m.digests = &d;
    m.n_digests = 1;
    if (cap > SHOAL_STREAM_FRAME_MAX)
        cap = SHOAL_STREAM_FRAME_MAX;
    /* instance_cost is an upper bound, so one try normally fits; the loop
     * only guards against that bound being wrong. */
    for (;;) {
        uint8_t *b = malloc(cap);
        if (!b) {
            rc = SHOAL_ENOMEM;
            goto out;
        }
        rc = shoal_wire_encode_reg(&m, b, cap);
        if (rc >= 0) {
            *buf = b;
            *len = (size_t)rc;
            rc = 0;
            goto out;
        }
        free(b);
        if (rc != SHOAL_ETOOBIG || cap >= SHOAL_STREAM_FRAME_MAX)
            goto out;
        cap = cap * 2 > SHOAL_STREAM_FRAME_MAX ? SHOAL_STREAM_FRAME_MAX : cap * 2;
    }
out:
    free(own);
    free(events);
    return rc;
}

int shoal_regstore_save(const char *dir, const char *self, const struct shoal_registry *r)
{
    uint8_t *buf;
    size_t len;
    int rc = shoal_regstore_encode(self, r, &buf, &len);
    if (rc != 0)
        return rc;
    rc = shoal_datadir_write_file(dir, SHOAL_REGSTORE_FILE, buf, len);
    free(buf);
    return rc;
}
