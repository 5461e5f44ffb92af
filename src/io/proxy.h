/* proxy.h -- a libev TCP proxy in front of a service's instances (the
 * sidecar / server-side discovery pattern behind `shoal proxy`).
 *
 * The proxy knows nothing of HTTP or the registry: its owner hands it the
 * current backend set (shoal_proxy_set_backends) whenever the registry
 * changes. Each accepted connection picks a backend through core/balance.h,
 * connects non-blocking (a refused or timed-out connect tries another
 * backend, at most once per backend), then splices bytes both ways through
 * two bounded buffers: a side is not read while the other side's buffer is
 * full (backpressure), an EOF becomes shutdown(SHUT_WR) on the other side
 * (half-close), and the connection ends when both directions are done. A
 * backend that leaves the set has its connections closed on both sides.
 */
#ifndef SHOAL_IO_PROXY_H
#define SHOAL_IO_PROXY_H

#include <stddef.h>
#include <stdint.h>

#include "core/addr.h"

struct ev_loop;
struct shoal_proxy;

#define SHOAL_PROXY_KEY_MAX 192       /* "owner/id" */
#define SHOAL_PROXY_BUF (64 * 1024)   /* per direction and connection */
#define SHOAL_PROXY_MAX_BACKENDS 1024 /* a larger set is cut (warned) */

struct shoal_proxy_backend {
    char key[SHOAL_PROXY_KEY_MAX]; /* stable identity; also what ip-hash hashes */
    struct shoal_addr addr;        /* numeric: the loop never resolves names */
    uint32_t weight;               /* 1..SHOAL_LB_WEIGHT_MAX */
};

struct shoal_proxy_opts {
    struct shoal_addr listen;
    int lb;                      /* enum shoal_lb */
    uint32_t connect_timeout_ms; /* per attempt; 0: 2000 */
    uint64_t seed;               /* random and least-conn ties */
};

struct shoal_proxy_stats {
    uint64_t accepted;       /* client connections accepted */
    uint64_t no_instance;    /* closed at once: no backend (left) to try */
    uint64_t failed_connect; /* connect attempts refused, failed or timed out */
    uint64_t retries;        /* attempts after the first, per connection */
    uint64_t connected;      /* connections spliced to a backend */
    uint64_t removed;        /* closed because their backend left the set */
    uint64_t bytes_up;       /* client -> backend */
    uint64_t bytes_down;     /* backend -> client */
    uint64_t active;         /* live client connections now */
    uint64_t backends;       /* backends in the set now */
};

/* Listens on opts->listen and serves on loop. Calls malloc; free with
 * shoal_proxy_free(), which closes every connection. Returns NULL and sets
 * *err (negative SHOAL_E*, or -errno from socket/bind/listen) on failure. */
struct shoal_proxy *shoal_proxy_new(struct ev_loop *loop, const struct shoal_proxy_opts *opts,
                                    int *err);
void shoal_proxy_free(struct shoal_proxy *p);

/* Replaces the backend set (copied). Backends keep their live-connection
 * counts across calls when key and address are unchanged; connections to a
 * backend no longer in the set are closed (a connect still in progress
 * tries another backend instead). Returns 0 or SHOAL_ENOMEM (set unchanged). */
int shoal_proxy_set_backends(struct shoal_proxy *p, const struct shoal_proxy_backend *b, size_t n);

/* The listening address (with the port the kernel chose for port 0). */
struct shoal_addr shoal_proxy_local(const struct shoal_proxy *p);
void shoal_proxy_get_stats(const struct shoal_proxy *p, struct shoal_proxy_stats *out);

#endif
