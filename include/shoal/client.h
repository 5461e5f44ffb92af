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

/* Creates a client (no request is made yet). opts may be NULL. The agent's
 * address is IP:PORT, [IPv6]:PORT or HOST:PORT (a host name is resolved now,
 * its first address kept). Returns the client, or NULL with *err (if err is
 * not NULL) = SHOAL_EINVAL (bad or unresolvable agent address) or
 * SHOAL_ENOMEM. Calls malloc: free with shoal_client_free(). */
struct shoal_client *shoal_client_new(const struct shoal_client_options *opts, int *err);
/* The same, with the reason of a failure written into why (why_len bytes,
 * NUL-terminated), e.g. "agent address 'localhost:x' is not HOST:PORT ...". */
struct shoal_client *shoal_client_new_ex(const struct shoal_client_options *opts, int *err,
                                         char *why, size_t why_len);

/* Called from a watcher thread each time a watched service's cache changes
 * (not for the first fetch): the service and its number of passing
 * instances now. It runs outside the client's locks (it may pick) and must
 * not call shoal_client_free. fn NULL: no more calls. */
typedef void (*shoal_client_change_fn)(void *ud, const char *service, size_t passing);
void shoal_client_on_change(struct shoal_client *c, shoal_client_change_fn fn, void *ud);

/* A metadata pair. */
struct shoal_client_meta {
    const char *key, *value;
};

/* One instance as the agent lists it. Strings belong to the list. */
struct shoal_client_instance {
    const char *id, *service, *address, *owner;
    uint16_t port;
    const char *status;       /* "passing", "warning", "critical" */
    const char *owner_status; /* "alive", "suspect", "dead", "left", "unknown" */
    const char *const *tags;
    size_t ntags;
    const struct shoal_client_meta *meta;
    size_t nmeta;
    uint32_t ttl_ms;  /* 0: none */
    uint64_t version; /* the owner's version of it */
};

struct shoal_client_instances {
    size_t n;
    struct shoal_client_instance *v; /* sorted by (owner, id), as the agent answers */
    uint64_t index;                  /* the service's index (blocking queries) */
    void *priv_;
};

/* Lists service's instances with one request (not from the cache): passing
 * ones of live owners, or every one when all is non-zero. *out is malloc'd:
 * free with shoal_client_instances_free(). Returns 0, SHOAL_EINVAL,
 * SHOAL_ECONN, SHOAL_EIO, SHOAL_EDECODE or SHOAL_ENOMEM (message in
 * shoal_client_last_error). */
int shoal_client_list(struct shoal_client *c, const char *service, int all,
                      struct shoal_client_instances **out) SHOAL_MUST_CHECK;
void shoal_client_instances_free(struct shoal_client_instances *l);

/* An instance the caller registers with its local agent, which owns it. */
struct shoal_client_registration {
    const char *service, *id, *address; /* required */
    uint16_t port;                      /* required, 1..65535 */
    const char *const *tags;
    size_t ntags;
    const struct shoal_client_meta *meta;
    size_t nmeta;
    uint32_t ttl_ms; /* 0: none; else heartbeat within every ttl_ms */
};

/* Registers (or updates: the same id again) an instance; returns once the
 * agent has stored it. Deregisters one, or heartbeats a TTL instance, by
 * id. Each returns 0, SHOAL_EINVAL (the agent's reason in
 * shoal_client_last_error), SHOAL_ENOENT (no such own instance),
 * SHOAL_ETOOBIG, SHOAL_ECONN, SHOAL_EIO or SHOAL_ENOMEM. */
int shoal_client_register(struct shoal_client *c,
                          const struct shoal_client_registration *r) SHOAL_MUST_CHECK;
int shoal_client_deregister(struct shoal_client *c, const char *id) SHOAL_MUST_CHECK;
int shoal_client_heartbeat(struct shoal_client *c, const char *id) SHOAL_MUST_CHECK;

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
