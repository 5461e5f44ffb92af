/* joiner.h -- joining a cluster through seeds given as HOST:PORT, where
 * HOST may be a DNS name: each attempt resolves every seed again (off the
 * loop, in a thread), asks every address found for the cluster's state
 * (core's join), and succeeds when one of them answers. A failed attempt is
 * logged with its reason and retried after a backoff that doubles from
 * retry_interval_ms up to retry_max_interval_ms; max_attempts 0 = forever.
 */
#ifndef SHOAL_IO_JOINER_H
#define SHOAL_IO_JOINER_H

#include <ev.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/addr.h"

struct shoal_node;
struct shoal_event;
struct shoal_joiner;

#define SHOAL_JOIN_MAX_SEEDS 64 /* HOST:PORT strings per join */
#define SHOAL_JOIN_MAX_ADDRS 16 /* addresses contacted per attempt (core's seed bound) */

struct shoal_joiner_config {
    const char *const *seeds; /* HOST:PORT text, copied */
    size_t n_seeds;
    uint32_t window_ms;          /* how long one attempt waits for an answer */
    uint32_t retry_interval_ms;  /* the first wait between attempts */
    uint32_t retry_max_interval_ms;
    uint32_t max_attempts;       /* 0: until it succeeds */
    const char *what;            /* "retry-join", "api" ... for log lines */
    /* Called once at the end: ok, with the address that answered, or the
     * reason of the last failure; text NULL when shoal_joinset_close()
     * stops it. The joiner is already freed. */
    void (*done)(void *ud, bool ok, const char *text);
    void *ud;
};

/* The joiners of one node: events from the node go to all of them. */
struct shoal_joinset {
    struct ev_loop *loop;
    struct shoal_node *node;
    struct shoal_joiner *head;
    size_t count;
};

/* Starts a joiner (its first attempt now). Returns NULL with *err = SHOAL_E*
 * (bad seed text: SHOAL_EINVAL; SHOAL_ENOMEM); when every seed is an IP
 * address the node is asked at once, and its refusal is returned the same
 * way (SHOAL_EINVAL: only this node's own address; SHOAL_ESTATE: leaving).
 * Calls malloc; it frees itself after done() or with shoal_joinset_close(). */
struct shoal_joiner *shoal_joiner_start(struct shoal_joinset *set,
                                        const struct shoal_joiner_config *cfg, int *err);
/* A node event (SHOAL_EV_JOINED ends the joiners that contacted its address). */
void shoal_joinset_event(struct shoal_joinset *set, const struct shoal_event *ev);
/* Stops every joiner, calling done(ud, false, NULL) (waits for a running
 * resolution). */
void shoal_joinset_close(struct shoal_joinset *set);

#endif
