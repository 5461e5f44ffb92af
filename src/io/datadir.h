/* datadir.h -- the agent's data directory: lock, generation, durable files.
 *
 * DIR/generation holds one decimal number, the member's generation. It is
 * raised at every start and written atomically (temp file, fsync, rename,
 * fsync of the directory) before the node speaks, so a restarted node is
 * never shadowed by its old, dead self. DIR/lock is held with flock() for
 * the life of the agent: two agents must not share one identity.
 * DIR/identity.key belongs to wire (shoal_identity_load_or_create).
 */
#ifndef SHOAL_IO_DATADIR_H
#define SHOAL_IO_DATADIR_H

#include <stddef.h>
#include <stdint.h>

#include "shoal/error.h"

/* Creates dir (and missing parents, mode 0700) if needed. Returns 0 or
 * -errno. */
int shoal_datadir_prepare(const char *dir) SHOAL_MUST_CHECK;

/* Takes an exclusive, non-blocking lock on DIR/lock. Returns a file
 * descriptor to keep open (closing it releases the lock), -EWOULDBLOCK if
 * another process holds it, or another -errno. */
int shoal_datadir_lock(const char *dir) SHOAL_MUST_CHECK;

/* Reads DIR/generation (0 when missing), takes the larger of that plus one
 * and floor, writes it back durably and returns it in *gen. The caller
 * passes the wall clock in seconds as floor, so a node whose data dir was
 * lost still comes back newer than its old self (DESIGN.md). Returns 0, -errno on an I/O error,
 * SHOAL_EINVAL if the file is not one decimal number (it is left alone),
 * SHOAL_ERANGE if the counter would overflow. */
int shoal_datadir_next_generation(const char *dir, uint64_t floor, uint64_t *gen) SHOAL_MUST_CHECK;

/* Replaces DIR/name with len bytes of data durably: DIR/name.tmp is
 * written and fsynced, renamed over DIR/name, and DIR is fsynced. A crash
 * leaves the old or the new content, never a mix. Returns 0 or -errno. */
int shoal_datadir_write_file(const char *dir, const char *name, const void *data,
                             size_t len) SHOAL_MUST_CHECK;

/* Reads all of DIR/name (a regular file of at most max bytes) into *data
 * (calls malloc; the caller frees). Returns 0, -ENOENT when it does not
 * exist, SHOAL_ETOOBIG when larger than max, -EINVAL when not a regular
 * file, SHOAL_ENOMEM, or another -errno. */
int shoal_datadir_read_file(const char *dir, const char *name, size_t max, uint8_t **data,
                            size_t *len) SHOAL_MUST_CHECK;

/* Describes an error from this module (-errno or SHOAL_E*). */
const char *shoal_datadir_strerror(int err);

#endif
