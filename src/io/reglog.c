/* reglog.c -- DATA_DIR/registry.log: append, replay, torn tails, reset.
 *
 * Records are framed by length and CRC-32C so that replay can tell a torn
 * tail (dropped) from corruption (refused); payloads use wire's registry
 * codec, with the same checks as the snapshot. The file format and the
 * replay rule are in reglog.h.
 */
#include "io/reglog.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/strmap.h"
#include "io/datadir.h"
#include "wire/wire.h"

#define RECORD_BASE_BYTES 256 /* message header and the digest */

/* ------------------------------------------------------------ CRC-32C */

static uint32_t crc_table[256];
static int crc_ready;

static void crc_init(void)
{
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++)
            c = c & 1 ? (c >> 1) ^ 0x82F63B78u : c >> 1; /* reflected Castagnoli */
        crc_table[i] = c;
    }
    crc_ready = 1;
}

uint32_t shoal_crc32c(const void *data, size_t len)
{
    const uint8_t *p = data;
    uint32_t c = 0xFFFFFFFFu;
    if (!crc_ready)
        crc_init(); /* idempotent: a race only computes the same table twice */
    while (len--)
        c = crc_table[(c ^ *p++) & 0xFF] ^ (c >> 8);
    return c ^ 0xFFFFFFFFu;
}

static uint32_t get_le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static void put_le32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}

/* ------------------------------------------------------------- replay */

/* The store's events by id: index + 1, keys borrowed from the events. */
struct ids {
    struct shoal_strmap map;
    size_t cap; /* of st->msg.events */
};

static int ids_build(struct ids *x, struct shoal_regstore *st)
{
    memset(x, 0, sizeof(*x));
    x->cap = st->msg.n_events;
    for (uint32_t i = 0; i < st->msg.n_events; i++)
        if (shoal_strmap_put(&x->map, st->msg.events[i].id, (void *)(uintptr_t)(i + 1)) != 0)
            return SHOAL_ENOMEM;
    return 0;
}

/* Moves ev into the store: replaces or adds its id, or removes it for a
 * tombstone. ev is zeroed (its strings now belong to the store). */
static int apply(struct ids *x, struct shoal_regstore *st, struct shoal_instance *ev)
{
    struct shoal_reg_msg *m = &st->msg;
    size_t at = (size_t)(uintptr_t)shoal_strmap_get(&x->map, ev->id);
    if (ev->deleted) {
        if (at) {
            size_t i = at - 1, last = m->n_events - 1;
            shoal_strmap_del(&x->map, m->events[i].id);
            shoal_instance_clear(&m->events[i]);
            if (i != last) {
                m->events[i] = m->events[last];
                if (shoal_strmap_put(&x->map, m->events[i].id, (void *)(uintptr_t)(i + 1)) != 0)
                    return SHOAL_ENOMEM; /* cannot: the key was present, no growth */
            }
            memset(&m->events[last], 0, sizeof(m->events[last]));
            m->n_events--;
        }
        shoal_instance_clear(ev);
        return 0;
    }
    if (at) {
        size_t i = at - 1;
        shoal_strmap_del(&x->map, m->events[i].id);
        shoal_instance_clear(&m->events[i]);
        m->events[i] = *ev;
        memset(ev, 0, sizeof(*ev));
        return shoal_strmap_put(&x->map, m->events[i].id, (void *)(uintptr_t)(i + 1));
    }
    if (m->n_events >= SHOAL_REG_MAX_EVENTS)
        return SHOAL_ETOOBIG;
    if (m->n_events == x->cap) {
        size_t ncap = x->cap ? x->cap * 2 : 64;
        struct shoal_instance *v = realloc(m->events, ncap * sizeof(*v));
        if (!v)
            return SHOAL_ENOMEM;
        m->events = v;
        x->cap = ncap;
    }
    size_t i = m->n_events;
    if (shoal_strmap_put(&x->map, ev->id, (void *)(uintptr_t)(i + 1)) != 0)
        return SHOAL_ENOMEM;
    m->events[i] = *ev;
    m->n_events++;
    memset(ev, 0, sizeof(*ev));
    return 0;
}

static bool all_zero(const uint8_t *p, size_t n)
{
    while (n--)
        if (*p++)
            return false;
    return true;
}

/* Checks one decoded record against what the log promises. */
static bool record_ok(const struct shoal_reg_msg *m, const struct shoal_regstore *st,
                      uint64_t counter, char *why, size_t whylen)
{
    if (m->type != SHOAL_REG_SYNC_DATA || m->n_digests != 1 || m->n_wants) {
        snprintf(why, whylen, "it is not a log record (type %u, %u digests)", m->type,
                 m->n_digests);
        return false;
    }
    const struct shoal_reg_digest *d = &m->digests[0];
    if (!d->owner[0] || (st->owner[0] && strcmp(d->owner, st->owner) != 0)) {
        snprintf(why, whylen, "it belongs to '%s', not '%s'", d->owner, st->owner);
        return false;
    }
    if (d->version < counter) {
        snprintf(why, whylen, "its counter %llu is below the one before it (%llu)",
                 (unsigned long long)d->version, (unsigned long long)counter);
        return false;
    }
    for (uint32_t i = 0; i < m->n_events; i++) {
        const struct shoal_instance *in = &m->events[i];
        if (strcmp(in->owner, d->owner) != 0 || in->version > d->version) {
            snprintf(why, whylen, "event %u (%s) has owner '%s' and version %llu (counter %llu)",
                     i, in->id, in->owner, (unsigned long long)in->version,
                     (unsigned long long)d->version);
            return false;
        }
    }
    return true;
}

int shoal_reglog_replay(const char *dir, struct shoal_regstore *st,
                        struct shoal_reglog_replay *out, char *why, size_t whylen)
{
    uint8_t *buf = NULL;
    size_t len = 0, pos;
    struct ids x;
    char sub[256];
    int rc;
    const uint64_t floor = st->version; /* events at or below: the snapshot has them */
    uint64_t counter = 0;               /* the previous record's */

    memset(out, 0, sizeof(*out));
    memset(&x, 0, sizeof(x));
    if (whylen)
        why[0] = 0;
    rc = shoal_datadir_read_file(dir, SHOAL_REGLOG_FILE, SHOAL_REGLOG_MAX, &buf, &len);
    if (rc == -ENOENT)
        return 0;
    if (rc == SHOAL_ETOOBIG) {
        snprintf(why, whylen, "it is larger than %u bytes", SHOAL_REGLOG_MAX);
        return SHOAL_EINVAL;
    }
    if (rc != 0) {
        snprintf(why, whylen, "cannot read it: %s", shoal_datadir_strerror(rc));
        return rc;
    }
    if (len < SHOAL_REGLOG_HEADER) {
        /* A crash while the empty log was being created. */
        rc = memcmp(buf, SHOAL_REGLOG_MAGIC, len) == 0 || all_zero(buf, len) ? 0 : SHOAL_EINVAL;
        if (rc)
            snprintf(why, whylen, "it does not start with %s", SHOAL_REGLOG_MAGIC);
        out->torn_bytes = len;
        goto done;
    }
    if (memcmp(buf, SHOAL_REGLOG_MAGIC, SHOAL_REGLOG_HEADER) != 0) {
        snprintf(why, whylen, "it does not start with %s", SHOAL_REGLOG_MAGIC);
        rc = SHOAL_EINVAL;
        goto done;
    }
    if ((rc = ids_build(&x, st)) != 0) {
        snprintf(why, whylen, "out of memory");
        goto done;
    }
    for (pos = SHOAL_REGLOG_HEADER; pos < len;) {
        size_t rem = len - pos;
        if (rem < SHOAL_REGLOG_RECORD_HEADER)
            break; /* torn: a header cut short */
        uint32_t plen = get_le32(buf + pos), crc = get_le32(buf + pos + 4);
        if (plen == 0 && all_zero(buf + pos, rem))
            break; /* torn: the file grew but the data never landed */
        if (plen == 0 || plen > SHOAL_STREAM_FRAME_MAX) {
            snprintf(why, whylen, "record at byte %zu has length %u", pos, plen);
            rc = SHOAL_EINVAL;
            goto done;
        }
        if ((size_t)plen > rem - SHOAL_REGLOG_RECORD_HEADER)
            break; /* torn: the payload cut short */
        const uint8_t *p = buf + pos + SHOAL_REGLOG_RECORD_HEADER;
        size_t next = pos + SHOAL_REGLOG_RECORD_HEADER + plen;
        if (shoal_crc32c(p, plen) != crc) {
            if (next == len)
                break; /* torn: the last record's bytes only partly written */
            snprintf(why, whylen, "record at byte %zu fails its checksum, and records follow it",
                     pos);
            rc = SHOAL_EINVAL;
            goto done;
        }
        struct shoal_reg_msg m;
        const char *bad = NULL;
        rc = shoal_wire_decode_reg(p, plen, &m, &bad);
        if (rc == SHOAL_ENOMEM) {
            snprintf(why, whylen, "out of memory");
            goto done;
        }
        if (rc != 0) {
            snprintf(why, whylen, "record at byte %zu does not decode (%s%s%s)", pos,
                     shoal_strerror(rc), bad ? ": " : "", bad ? bad : "");
            rc = SHOAL_EINVAL;
            goto done;
        }
        if (!record_ok(&m, st, counter, sub, sizeof(sub))) {
            snprintf(why, whylen, "record at byte %zu: %s", pos, sub);
            shoal_reg_msg_free(&m);
            rc = SHOAL_EINVAL;
            goto done;
        }
        if (!st->owner[0])
            memcpy(st->owner, m.digests[0].owner, SHOAL_NAME_MAX);
        counter = m.digests[0].version;
        for (uint32_t i = 0; rc == 0 && i < m.n_events; i++) {
            if (m.events[i].version <= floor)
                continue; /* the snapshot was written after it */
            rc = apply(&x, st, &m.events[i]);
            out->events++;
        }
        shoal_reg_msg_free(&m);
        if (rc != 0) {
            snprintf(why, whylen, "%s while applying record at byte %zu",
                     rc == SHOAL_ENOMEM ? "out of memory" : "too many instances", pos);
            rc = rc == SHOAL_ENOMEM ? rc : SHOAL_EINVAL;
            goto done;
        }
        out->records++;
        pos = next;
    }
    out->valid_end = pos;
    out->torn_bytes = len - pos;
    if (counter > st->version)
        st->version = counter;
    rc = 0;
done:
    shoal_strmap_close(&x.map);
    free(buf);
    return rc;
}

/* ------------------------------------------------------------- append */

static int sync_dir_of(const char *path)
{
    char d[PATH_MAX];
    snprintf(d, sizeof(d), "%s", path);
    char *slash = strrchr(d, '/');
    if (slash)
        *slash = 0;
    int fd = open(slash ? d : ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    int rc = fsync(fd) == 0 ? 0 : -errno;
    close(fd);
    return rc;
}

static int write_all(int fd, const void *data, size_t len)
{
    const uint8_t *p = data;
    while (len) {
        ssize_t w = write(fd, p, len);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            return -errno;
        p += w;
        len -= (size_t)w;
    }
    return 0;
}

int shoal_reglog_open(struct shoal_reglog *l, const char *dir, uint64_t valid_end)
{
    char path[PATH_MAX];
    struct stat sb;
    int rc;

    memset(l, 0, sizeof(*l));
    l->fd = -1;
    if (snprintf(path, sizeof(path), "%s/%s", dir, SHOAL_REGLOG_FILE) >= (int)sizeof(path))
        return -ENAMETOOLONG;
    if (!(l->path = strdup(path)))
        return SHOAL_ENOMEM;
    bool existed = stat(path, &sb) == 0;
    l->fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (l->fd < 0) {
        rc = -errno;
        goto fail;
    }
    if (valid_end < SHOAL_REGLOG_HEADER) {
        if (ftruncate(l->fd, 0) != 0 || pwrite(l->fd, SHOAL_REGLOG_MAGIC, SHOAL_REGLOG_HEADER, 0) !=
                                            (ssize_t)SHOAL_REGLOG_HEADER) {
            rc = errno ? -errno : -EIO;
            goto fail;
        }
        valid_end = SHOAL_REGLOG_HEADER;
    } else if (ftruncate(l->fd, (off_t)valid_end) != 0) { /* drops a torn tail */
        rc = -errno;
        goto fail;
    }
    if (lseek(l->fd, (off_t)valid_end, SEEK_SET) < 0 || fsync(l->fd) != 0) {
        rc = -errno;
        goto fail;
    }
    if (!existed && (rc = sync_dir_of(path)) != 0)
        goto fail;
    l->size = valid_end;
    return 0;
fail:
    shoal_reglog_close(l);
    return rc;
}

void shoal_reglog_close(struct shoal_reglog *l)
{
    if (l->fd >= 0)
        close(l->fd);
    free(l->path);
    memset(l, 0, sizeof(*l));
    l->fd = -1;
}

int shoal_reglog_append(struct shoal_reglog *l, const uint8_t *buf, size_t len)
{
    if (l->fd < 0)
        return -EBADF;
    if (l->size + len > SHOAL_REGLOG_MAX)
        return SHOAL_ETOOBIG;
    int rc = write_all(l->fd, buf, len);
    if (rc == 0 && fdatasync(l->fd) != 0)
        rc = -errno;
    if (rc == 0) {
        l->size += len;
        l->appends++;
        return 0;
    }
    /* Cut back what may have landed: no torn record stays in the middle
     * of the log, where replay would take it for corruption. */
    if (ftruncate(l->fd, (off_t)l->size) != 0 || lseek(l->fd, (off_t)l->size, SEEK_SET) < 0)
        return SHOAL_ESTATE;
    return rc;
}

int shoal_reglog_reset(struct shoal_reglog *l)
{
    if (l->fd < 0)
        return -EBADF;
    if (ftruncate(l->fd, SHOAL_REGLOG_HEADER) != 0 ||
        lseek(l->fd, SHOAL_REGLOG_HEADER, SEEK_SET) < 0 || fdatasync(l->fd) != 0)
        return -errno;
    l->size = SHOAL_REGLOG_HEADER;
    return 0;
}

int shoal_reglog_record(const char *self, uint64_t counter, const struct shoal_instance *events,
                        size_t n, uint8_t **buf, size_t *cap, size_t *len)
{
    struct shoal_reg_digest d = {.version = counter};
    struct shoal_reg_msg m = {.type = SHOAL_REG_SYNC_DATA, .last = true};
    size_t need = RECORD_BASE_BYTES + SHOAL_REGLOG_RECORD_HEADER;

    if (n > SHOAL_REG_MAX_EVENTS)
        return SHOAL_ETOOBIG;
    for (size_t i = 0; i < n; i++)
        need += shoal_instance_cost(&events[i]);
    snprintf(d.owner, sizeof(d.owner), "%s", self);
    snprintf(m.from, sizeof(m.from), "%s", self);
    m.events = (struct shoal_instance *)events; /* encode only reads */
    m.n_events = (uint32_t)n;
    m.digests = &d;
    m.n_digests = 1;
    for (;;) {
        if (*cap - *len < need) {
            size_t ncap = *len + need;
            uint8_t *b = realloc(*buf, ncap);
            if (!b)
                return SHOAL_ENOMEM;
            *buf = b;
            *cap = ncap;
        }
        size_t room = *cap - *len - SHOAL_REGLOG_RECORD_HEADER;
        if (room > SHOAL_STREAM_FRAME_MAX)
            room = SHOAL_STREAM_FRAME_MAX;
        uint8_t *rec = *buf + *len;
        int rc = shoal_wire_encode_reg(&m, rec + SHOAL_REGLOG_RECORD_HEADER, room);
        if (rc > 0) {
            put_le32(rec, (uint32_t)rc);
            put_le32(rec + 4, shoal_crc32c(rec + SHOAL_REGLOG_RECORD_HEADER, (size_t)rc));
            *len += SHOAL_REGLOG_RECORD_HEADER + (size_t)rc;
            return 0;
        }
        /* instance_cost is an upper bound, so the first try normally fits. */
        if (rc != SHOAL_ETOOBIG || room >= SHOAL_STREAM_FRAME_MAX)
            return rc < 0 ? rc : SHOAL_EINVAL;
        need *= 2;
    }
}
