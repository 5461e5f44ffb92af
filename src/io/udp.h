/* udp.h -- a non-blocking UDP socket on a libev loop.
 *
 * The socket is bound at creation (no SO_REUSEADDR: a port that is taken is
 * an error, not a shared socket). Readability drains the socket with
 * recvfrom() until EAGAIN, at most SHOAL_UDP_BATCH datagrams per wakeup so a
 * flood cannot starve timers and the HTTP API; libev calls again while data
 * remains. Each datagram goes to the recv callback with its real length up to
 * max_datagram + 1 bytes, so a caller can tell an oversize datagram apart.
 */
#ifndef SHOAL_IO_UDP_H
#define SHOAL_IO_UDP_H

#include <stddef.h>
#include <stdint.h>

#include "core/addr.h"
#include "shoal/error.h"

struct ev_loop;
struct shoal_udp;

#define SHOAL_UDP_BATCH 64

/* buf is valid only during the call. len may be max_datagram + 1, meaning
 * "larger than max_datagram" (the rest was discarded by the kernel). */
typedef void (*shoal_udp_recv_fn)(void *ud, const uint8_t *buf, size_t len,
                                  const struct shoal_addr *src);
/* Called once after each drained batch (e.g. to re-arm a timer). Optional. */
typedef void (*shoal_udp_batch_fn)(void *ud);

/* Opens a UDP socket bound to bind (port 0 = any free port) and starts
 * reading on loop. Calls malloc; free with shoal_udp_free(). Returns NULL and
 * sets *err to -errno (from socket/bind) or a SHOAL_E* code on failure. */
struct shoal_udp *shoal_udp_new(struct ev_loop *loop, const struct shoal_addr *bind,
                                size_t max_datagram, shoal_udp_recv_fn recv,
                                shoal_udp_batch_fn batch, void *ud, int *err);
/* Stops reading, closes the socket and frees u. NULL is allowed. */
void shoal_udp_free(struct shoal_udp *u);

/* Sends one datagram. Returns 0, or -errno (EAGAIN when the socket buffer is
 * full: the datagram is dropped, as UDP may do anyway). */
int shoal_udp_send(struct shoal_udp *u, const struct shoal_addr *to, const uint8_t *buf,
                   size_t len);

/* The address the socket is really bound to (the chosen port if 0). */
void shoal_udp_local_addr(const struct shoal_udp *u, struct shoal_addr *out);

/* Converts between struct shoal_addr and a sockaddr. to_sockaddr returns the
 * length, or 0 for an unset family. */
struct sockaddr_storage;
size_t shoal_addr_to_sockaddr(const struct shoal_addr *a, struct sockaddr_storage *ss);
int shoal_addr_from_sockaddr(const struct sockaddr_storage *ss, struct shoal_addr *out);

/* Describes an error from this module: -errno via strerror, else
 * shoal_strerror. */
const char *shoal_udp_strerror(int err);

#endif
