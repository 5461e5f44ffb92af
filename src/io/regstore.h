/* regstore.h -- DATA_DIR/registry: our own instances across restarts.
 *
 * The file is one registry payload as wire encodes it (no envelope): a
 * SHOAL_REG_SYNC_DATA message whose events are our live instances and whose
 * only digest is {owner: self, version: our version counter}
 * (docs/registry-interfaces.md). It is a snapshot: DATA_DIR/registry.log
 * (io/reglog.h) holds the changes made after it, appended and fdatasynced
 * in batches before any acknowledgement; loading replays the log over the
 * snapshot. The snapshot is replaced atomically (datadir.h) at start and
 * when the log has grown past about twice its size (compaction). A file
 * that cannot be read back is never skipped or "repaired": the agent
 * refuses to start, so no registration is silently lost.
 */
#ifndef SHOAL_IO_REGSTORE_H
#define SHOAL_IO_REGSTORE_H

#include <stddef.h>
#include <stdint.h>

#include "core/registry.h"
#include "shoal/error.h"

#define SHOAL_REGSTORE_FILE "registry"

/* What was saved: instances (malloc'd; shoal_regstore_clear) and the
 * version counter they were saved with. */
struct shoal_regstore {
    struct shoal_reg_msg msg;   /* msg.events / msg.n_events: the instances */
    char owner[SHOAL_NAME_MAX]; /* the name they were saved under */
    uint64_t version;
    /* What DATA_DIR/registry.log added: records and events replayed, and
     * the bytes of a torn tail dropped (reglog.h). */
    uint64_t log_records, log_events, log_torn_bytes;
};

/* Reads DIR/registry and replays DIR/registry.log over it. A missing file
 * is an empty store (returns 0). On
 * error *why holds a sentence for the operator. Returns 0, SHOAL_EINVAL
 * (the file is corrupt), SHOAL_ETOOBIG, SHOAL_ENOMEM or -errno. */
int shoal_regstore_load(const char *dir, struct shoal_regstore *out, char *why,
                        size_t whylen) SHOAL_MUST_CHECK;
void shoal_regstore_clear(struct shoal_regstore *s);

/* Encodes the file's content for our instances into *buf (calls malloc;
 * the caller frees). Returns 0, SHOAL_ETOOBIG (over SHOAL_STREAM_FRAME_MAX,
 * which the loader could not read back), SHOAL_EINVAL or SHOAL_ENOMEM. */
int shoal_regstore_encode(const char *self, const struct shoal_registry *r, uint8_t **buf,
                          size_t *len) SHOAL_MUST_CHECK;

/* Encodes our instances and version and replaces DIR/registry durably.
 * Returns 0, SHOAL_ETOOBIG, SHOAL_ENOMEM or -errno. */
int shoal_regstore_save(const char *dir, const char *self,
                        const struct shoal_registry *r) SHOAL_MUST_CHECK;

#endif
