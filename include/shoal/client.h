/* shoal/client.h -- the C client library of shoal (libshoalclient).
 *
 * Client-side discovery against the local agent's full replica. For each
 * service it uses, a client keeps a local cache of the passing instances,
 * refreshed by a background thread per service that holds a blocking query
 * (GET /v1/instances/NAME?index=N&wait=D) open: a pick costs no round trip
 * and a change reaches the cache as soon as the agent sees it, without
 * polling. Picks are thread-safe and never wait on the network.
 * The first fetch of a service retries with exponential backoff and full
 * jitter, bounded by attempts and a total deadline.
 * Build with `pkg-config --cflags --libs shoal-client`.
 */
#ifndef SHOAL_CLIENT_H
#define SHOAL_CLIENT_H

#include <stddef.h>
#include <stdint.h>

#include "shoal/error.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The strategies (the same as the agent's resolve API and `shoal resolve`).
 * Every one honours an instance's meta "weight" (1..1000, default 1). */
enum shoal_client_lb {
    SHOAL_CLIENT_ROUND_ROBIN = 0, /* weighted, one counter per service */
    SHOAL_CLIENT_RANDOM = 1,      /* weighted, from the client's seeded generator */
    SHOAL_CLIENT_LEAST_CONN = 2,  /* fewest acquired per unit of weight; ties random */
    SHOAL_CLIENT_IP_HASH = 3,     /* rendezvous hash of client_key: stable when the set changes */
};

/* Injected time (tests): milliseconds of a monotonic clock, and a sleep.
 * ctx is shoal_client_options.time_ctx. */
typedef uint64_t (*shoal_client_clock_fn)(void *ctx);
typedef void (*shoal_client_sleep_fn)(void *ctx, uint64_t ms);

/* Discovery retry: attempt k (k = 0, 1, ...) that fails is followed by a
 * sleep drawn uniformly from [0, min(max_ms, base_ms * 2^k)] ("full
 * jitter"), unless max_attempts attempts were made or the next attempt
 * would start after deadline_ms from the first. 0 in a field: its default. */
struct shoal_client_retry {
    unsigned max_attempts; /* default 5 */
    uint32_t base_ms;      /* default 50 */
    uint32_t max_ms;       /* default 2000 */
    uint32_t deadline_ms;  /* default 10000; also bounds each request's waits */
};

/* Every field may be 0/NULL for its default. The options are copied. */
struct shoal_client_options {
    const char *agent;   /* "IP:PORT" of the agent's HTTP API; default
                          * $SHOAL_HTTP_ADDR, else 127.0.0.1:7947 */
    struct shoal_client_retry retry;
    uint32_t watch_wait_ms; /* the blocking query's wait; default 60000 */
    uint64_t seed;          /* random strategy, least-conn ties, jitter; 0: from the clock */
    shoal_client_clock_fn clock; /* default CLOCK_MONOTONIC */
    shoal_client_sleep_fn sleep; /* default nanosleep; used by the retry of a caller's
                                  * call (the watcher threads wait on a condition
                                  * variable in real time, so free() can wake them) */
    void *time_ctx;
};

#define SHOAL_CLIENT_ID_MAX 128      /* id: 1..127 bytes, NUL */
#define SHOAL_CLIENT_SERVICE_MAX 64  /* service: 1..63 bytes, NUL */
#define SHOAL_CLIENT_ADDRESS_MAX 256 /* address: IP or host name, 1..255 bytes, NUL */
#define SHOAL_CLIENT_OWNER_MAX 256   /* owner node name, NUL */
#define SHOAL_CLIENT_TAGS_MAX 32     /* filter tags per watch */

/* A picked instance: plain fixed-size data, owned by the caller (no free). */
struct shoal_endpoint {
    char service[SHOAL_CLIENT_SERVICE_MAX];
    char id[SHOAL_CLIENT_ID_MAX];
    char owner[SHOAL_CLIENT_OWNER_MAX];
    char address[SHOAL_CLIENT_ADDRESS_MAX];
    uint16_t port;
    uint32_t weight;
};

/* Counters, for tests and monitoring. */
struct shoal_client_stats {
    uint64_t requests;       /* HTTP requests started (fetches and blocking queries) */
    uint64_t request_errors; /* requests that failed (connect, I/O, non-200, bad JSON) */
    uint64_t updates;        /* cache contents replaced (first fetch included) */
    uint64_t picks;          /* successful picks and acquires */
};

struct shoal_client;

/* Creates a client (no request is made yet). opts may be NULL. Returns the
 * client, or NULL with *err (if err is not NULL) = SHOAL_EINVAL (bad agent
 * address) or SHOAL_ENOMEM. Calls malloc: free with shoal_client_free(). */
struct shoal_client *shoal_client_new(const struct shoal_client_options *opts, int *err);

/* Stops the watcher threads (waking their blocking queries), frees c and
 * everything it holds. NULL is a no-op. No other call on c may be running. */
void shoal_client_free(struct shoal_client *c);

/* Starts caching service, restricted to instances carrying every tag of
 * tags[0..ntags) (copied; ntags <= SHOAL_CLIENT_TAGS_MAX). Blocks for the first fetch, with retry;
 * then a watcher thread keeps the cache current. Returns 0 (also if it
 * is already watched with the same tags), SHOAL_EEXIST (watched with other
 * tags), SHOAL_EINVAL (bad name or tags, or the agent refused the query),
 * SHOAL_ECONN (agent unreachable), SHOAL_EIO (the agent kept answering 5xx),
 * SHOAL_EDECODE (its answer is not the expected JSON), SHOAL_ENOMEM; the
 * message is in shoal_client_last_error. A service that failed is fetched
 * again by the next call. First fetches of different services run one at
 * a time; picks of services already cached never wait for them. */
int shoal_client_watch(struct shoal_client *c, const char *service, const char *const *tags,
                       size_t ntags) SHOAL_MUST_CHECK;

/* Picks one passing instance of service with strategy lb (enum
 * shoal_client_lb); client_key is the key hashed by SHOAL_CLIENT_IP_HASH
 * (NULL elsewhere). An unwatched service is watched first (no tags), which
 * blocks like shoal_client_watch; after that a pick reads only the cache.
 * Writes a copy into *out (owned by the caller). Returns 0, SHOAL_ENOENT
 * (no passing instance), SHOAL_EINVAL, or an error of shoal_client_watch. */
int shoal_client_pick(struct shoal_client *c, const char *service, int lb,
                      const char *client_key, struct shoal_endpoint *out) SHOAL_MUST_CHECK;

/* A least-connections pick that also counts the instance as in use until
 * shoal_client_release(). Returns as shoal_client_pick. */
int shoal_client_acquire(struct shoal_client *c, const char *service,
                         struct shoal_endpoint *out) SHOAL_MUST_CHECK;

/* Ends one use counted by shoal_client_acquire. id is the endpoint's id, or
 * "owner/id" when two owners registered the same id. Returns 0, or
 * SHOAL_ENOENT (not watched, not in the cache any more, or not in use). */
int shoal_client_release(struct shoal_client *c, const char *service, const char *id);

/* The message of the last failed call on c in any thread, e.g. "cannot
 * reach the agent at 127.0.0.1:7947 after 5 attempts in 3.1 s: Connection
 * refused"; "" if none. Writes it NUL-terminated into buf (len bytes);
 * returns buf. */
char *shoal_client_last_error(struct shoal_client *c, char *buf, size_t len);

/* Copies the counters into *out. */
void shoal_client_stats(struct shoal_client *c, struct shoal_client_stats *out);

#ifdef __cplusplus
}
#endif

#endif
