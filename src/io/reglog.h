/* reglog.h -- DATA_DIR/registry.log: our changes since the last snapshot.
 *
 * DATA_DIR/registry (io/regstore.h) is a snapshot of our instances; this
 * log holds what changed after it, so a registration costs one append and
 * one fdatasync whatever the node owns (issue 14, item 7). The file is the
 * 8 bytes "SHOALRL1" and then records: a 4-byte little-endian payload
 * length, the payload's CRC-32C (4 bytes, little-endian) and the payload,
 * a SHOAL_REG_SYNC_DATA message as wire encodes it whose events are the
 * instances that changed (a tombstone for one deregistered) and whose one
 * digest is {owner: self, version: our version counter after them}.
 *
 * Replay applies, in file order, each event whose version is above the
 * snapshot's counter: so a log that outlived the snapshot written over it
 * (a crash between compaction's rename and the log's reset) changes
 * nothing. A record cut short at the end of the file (a crash mid-append:
 * short header, length past the end, or a checksum that fails on the last
 * record) is the torn tail of a write nobody was told about: it is dropped
 * and the file truncated there before the next append. Anything else that
 * does not check out is corruption, and the agent refuses to start.
 */
#ifndef SHOAL_IO_REGLOG_H
#define SHOAL_IO_REGLOG_H

#include <stddef.h>
#include <stdint.h>

#include "io/regstore.h"
#include "shoal/error.h"

#define SHOAL_REGLOG_FILE "registry.log"
#define SHOAL_REGLOG_MAGIC "SHOALRL1"
#define SHOAL_REGLOG_HEADER 8u
#define SHOAL_REGLOG_RECORD_HEADER 8u
/* Largest log read back or appended to; compaction keeps it far below
 * (about twice the snapshot, at least SHOAL_REGLOG_COMPACT_MIN). */
#define SHOAL_REGLOG_MAX (64u << 20)
#define SHOAL_REGLOG_COMPACT_MIN (1u << 20)

struct shoal_reglog {
    int fd; /* -1: closed */
    char *path;
    uint64_t size;    /* bytes in the file, all of them valid records */
    uint64_t appends; /* records appended since open */
};

/* What replay found, for the log line and the tests. */
struct shoal_reglog_replay {
    uint64_t records;     /* applied records */
    uint64_t events;      /* events above the snapshot's counter */
    uint64_t valid_end;   /* where the valid records end (0: no file) */
    uint64_t torn_bytes;  /* dropped at the end */
};

/* CRC-32C (Castagnoli) of len bytes, starting from 0. */
uint32_t shoal_crc32c(const void *data, size_t len);

/* Applies DIR/registry.log to st (loaded from DIR/registry; the events
 * are moved into st->msg, st->version raised). A missing file changes
 * nothing. Returns 0, SHOAL_EINVAL with *why (corrupt: the agent must not
 * start), SHOAL_ENOMEM or -errno. */
int shoal_reglog_replay(const char *dir, struct shoal_regstore *st,
                        struct shoal_reglog_replay *out, char *why,
                        size_t whylen) SHOAL_MUST_CHECK;

/* Opens DIR/registry.log for appending: truncated to valid_end (from
 * replay; 0 or anything below the header starts an empty log) and synced.
 * Calls malloc; shoal_reglog_close(). Returns 0 or -errno / SHOAL_ENOMEM. */
int shoal_reglog_open(struct shoal_reglog *l, const char *dir, uint64_t valid_end) SHOAL_MUST_CHECK;
void shoal_reglog_close(struct shoal_reglog *l);

/* Appends len bytes (one or more whole records from shoal_reglog_record)
 * with one write and one fdatasync. On failure the file is cut back to
 * where it was, so a failed append leaves no torn record behind. Returns 0,
 * SHOAL_ETOOBIG (the log would pass SHOAL_REGLOG_MAX), SHOAL_ESTATE (the
 * log could not be cut back: compact before the next append) or -errno. */
int shoal_reglog_append(struct shoal_reglog *l, const uint8_t *buf, size_t len) SHOAL_MUST_CHECK;

/* After a snapshot holds everything: empties the log (header only), synced.
 * Returns 0 or -errno. */
int shoal_reglog_reset(struct shoal_reglog *l) SHOAL_MUST_CHECK;

/* Encodes one record of our changes into *buf (grown with realloc as
 * needed; *cap its size) at offset *len, advancing *len. events are
 * shallow (tombstones need owner, id, generation, version). Returns 0,
 * SHOAL_ETOOBIG, SHOAL_EINVAL or SHOAL_ENOMEM. */
int shoal_reglog_record(const char *self, uint64_t counter, const struct shoal_instance *events,
                        size_t n, uint8_t **buf, size_t *cap, size_t *len) SHOAL_MUST_CHECK;

#endif
