/* stream.h -- the TCP stream transport for registry anti-entropy and events
 * too large for a datagram.
 *
 * Listens on TCP at the node's UDP address (docs/registry-interfaces.md).
 * Both directions carry frames (wire.h: a 4-byte big-endian length, then
 * a sealed envelope); this module only cuts the byte stream into frames,
 * bounded by SHOAL_STREAM_FRAME_MAX, and hands each whole frame up. A send
 * with conn 0 opens a new connection; a reply names the connection a frame
 * came in on. Every connection id is new (never reused), so a reply to a
 * connection that has gone away is refused, never misdelivered.
 *
 * Everything is non-blocking: connects, and writes through a bounded output
 * buffer and a write watcher. A connection is closed, and the reason
 * counted and logged at debug, when it fails to connect in time, stays idle
 * too long, overflows its output buffer, sends a frame that is too large, or
 * errors. Nothing here ever aborts the agent.
 */
#ifndef SHOAL_IO_STREAM_H
#define SHOAL_IO_STREAM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/addr.h"

struct ev_loop;
struct shoal_stream;

/* One whole frame (length prefix included), valid during the call. The
 * callee may send (on this or any connection) but must not free the
 * stream. */
typedef void (*shoal_stream_frame_fn)(void *ud, uint64_t conn, const struct shoal_addr *peer,
                                      const uint8_t *frame, size_t len);
/* Called once after each read that delivered frames (e.g. re-arm timers). */
typedef void (*shoal_stream_batch_fn)(void *ud);

struct shoal_stream_config {
    struct shoal_addr bind;   /* IP:PORT to listen on (port 0: any) */
    size_t out_max;           /* bytes queued per connection, then it is closed */
    size_t max_conns;         /* open connections, both directions */
    double connect_timeout_s; /* an outgoing connect must finish within */
    double idle_timeout_s;    /* no bytes either way for this long: closed */
    shoal_stream_frame_fn frame;
    shoal_stream_batch_fn batch; /* optional */
    void *ud;
};

/* Defaults: 64 MB output, 256 connections, connect 5 s, idle 10 s. */
#define SHOAL_STREAM_OUT_MAX (64u * 1024 * 1024)
#define SHOAL_STREAM_MAX_CONNS 256
#define SHOAL_STREAM_CONNECT_TIMEOUT_S 5.0
#define SHOAL_STREAM_IDLE_TIMEOUT_S 10.0

struct shoal_stream_counters {
    uint64_t accepted, connects, connect_failures; /* connections by origin */
    uint64_t rejected;                             /* accepted over max_conns and closed */
    uint64_t closed_idle, closed_error, closed_overflow, closed_too_large, closed_eof;
    uint64_t frames_in, frames_out, bytes_in, bytes_out;
    uint64_t send_unknown_conn; /* a reply to a connection that is gone */
    uint64_t open;              /* connections open now */
};

/* Listens on c->bind and serves on loop. Calls malloc; free with
 * shoal_stream_free(), which closes every connection. Returns NULL and sets
 * *err (-errno from socket/bind/listen, or SHOAL_EINVAL) on failure. */
struct shoal_stream *shoal_stream_new(struct ev_loop *loop, const struct shoal_stream_config *c,
                                      int *err);
void shoal_stream_free(struct shoal_stream *s); /* NULL is ok */

/* Queues one frame (len bytes, prefix included; copied). conn 0: opens a
 * new connection to `to` and, if *opened is not NULL, stores its id there.
 * Returns 0, SHOAL_ENOENT (conn is gone), SHOAL_ETOOBIG (not a frame of a
 * valid size; or the output buffer would overflow: the connection is closed),
 * SHOAL_ESTATE (too many connections) or -errno (socket/connect). */
int shoal_stream_send(struct shoal_stream *s, uint64_t conn, const struct shoal_addr *to,
                      const uint8_t *frame, size_t len, uint64_t *opened);
/* Is the connection still open? */
bool shoal_stream_conn_open(const struct shoal_stream *s, uint64_t conn);

void shoal_stream_local_addr(const struct shoal_stream *s, struct shoal_addr *out);
const struct shoal_stream_counters *shoal_stream_counters(const struct shoal_stream *s);

#endif
