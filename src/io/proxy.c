/* proxy.c -- the libev TCP proxy of `shoal proxy` (see proxy.h).
 *
 * A connection is two sockets (client, backend) and two bounded buffers:
 * up (client -> backend) and down (backend -> client). Each socket has one
 * ev_io whose events are recomputed after every step from the buffers'
 * state: read a side only while the buffer it fills has room, write a side
 * only while the buffer it drains has bytes. So memory per connection is
 * fixed (2 x SHOAL_PROXY_BUF) and a slow reader slows its writer down
 * through TCP flow control instead of growing a queue.
 *
 * Backends are individually allocated and carry a serial number; a
 * connection remembers the serials it tried, so a backend that leaves and
 * comes back (new serial) may be tried again, and a freed pointer is never
 * compared.
 */
#define _GNU_SOURCE /* accept4 */
#include "io/proxy.h"

#include <arpa/inet.h>
#include <errno.h>
#include <ev.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/balance.h"
#include "core/rng.h"
#include "io/log.h"
#include "io/udp.h" /* shoal_addr_to_sockaddr */
#include "shoal/error.h"

#define ACCEPT_BATCH 64 /* accepts per wake-up, so the loop stays fair */
#define DEFAULT_CONNECT_TIMEOUT_MS 2000

struct backend {
    struct shoal_proxy_backend def;
    uint64_t serial;
    uint32_t active; /* connections spliced or connecting to it */
};

struct dir_buf {
    uint8_t data[SHOAL_PROXY_BUF];
    size_t off, len;
    bool eof;  /* the side it reads from sent FIN */
    bool shut; /* shutdown(SHUT_WR) done on the side it writes to */
};

enum conn_state { CONN_CONNECTING, CONN_SPLICING };

struct conn {
    struct shoal_proxy *p;
    struct conn *prev, *next; /* in p->conns */
    enum conn_state state;
    int cfd, bfd;
    ev_io cio, bio;
    ev_timer timer; /* connect timeout */
    struct backend *be;
    char client_ip[INET6_ADDRSTRLEN];
    uint64_t *tried; /* serials tried, up to ntried_max */
    size_t ntried, ntried_max;
    struct dir_buf up, down;
};

struct shoal_proxy {
    struct ev_loop *loop;
    ev_io lio;
    int lfd;
    struct shoal_addr local;
    int lb;
    double connect_timeout;
    uint64_t rr;
    struct shoal_rng rng;
    struct backend **be;
    size_t nbe;
    uint64_t next_serial;
    struct conn *conns;
    struct shoal_proxy_stats st;
};

/* ---- connection teardown ---- */

static void conn_free(struct conn *c)
{
    struct shoal_proxy *p = c->p;
    ev_io_stop(p->loop, &c->cio);
    ev_io_stop(p->loop, &c->bio);
    ev_timer_stop(p->loop, &c->timer);
    if (c->cfd >= 0)
        close(c->cfd);
    if (c->bfd >= 0)
        close(c->bfd);
    if (c->be)
        c->be->active--;
    if (c->prev)
        c->prev->next = c->next;
    else
        p->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    p->st.active--;
    free(c->tried);
    free(c);
}

/* Sets the events a watcher waits for; a watcher with none is stopped. */
static void io_want(struct ev_loop *loop, ev_io *w, int fd, int events)
{
    if (ev_is_active(w) && (w->events & (EV_READ | EV_WRITE)) == events)
        return;
    ev_io_stop(loop, w);
    if (events) {
        ev_io_set(w, fd, events);
        ev_io_start(loop, w);
    }
}

/* ---- splicing ---- */

/* Reads from fd into b. Returns 0, or -1 when the connection must end. */
static int dir_read(int fd, struct dir_buf *b, uint64_t *count)
{
    if (b->eof)
        return 0;
    if (b->len == 0)
        b->off = 0;
    if (b->off + b->len == sizeof(b->data) && b->off > 0) {
        memmove(b->data, b->data + b->off, b->len);
        b->off = 0;
    }
    size_t room = sizeof(b->data) - b->off - b->len;
    if (room == 0)
        return 0;
    ssize_t n = recv(fd, b->data + b->off + b->len, room, 0);
    if (n > 0) {
        b->len += (size_t)n;
        *count += (uint64_t)n;
        return 0;
    }
    if (n == 0) {
        b->eof = true;
        return 0;
    }
    if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
        return 0;
    return -1;
}

/* Writes b to fd; after the last byte of a finished direction, half-closes
 * fd. Returns 0, or -1 when the connection must end. */
static int dir_write(int fd, struct dir_buf *b)
{
    if (b->len > 0) {
        ssize_t n = send(fd, b->data + b->off, b->len, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
                return 0;
            return -1;
        }
        b->off += (size_t)n;
        b->len -= (size_t)n;
    }
    if (b->len == 0 && b->eof && !b->shut) {
        b->shut = true;
        if (shutdown(fd, SHUT_WR) != 0 && errno != ENOTCONN)
            return -1;
    }
    return 0;
}

static int want_events(const struct dir_buf *in, const struct dir_buf *out)
{
    int ev = 0;
    if (!in->eof && in->len < sizeof(in->data)) /* dir_read compacts if needed */
        ev |= EV_READ;
    if (out->len > 0)
        ev |= EV_WRITE;
    return ev;
}

/* One step of both directions; ends the connection when both are done. */
static void conn_pump(struct conn *c, int cev, int bev)
{
    struct shoal_proxy *p = c->p;
    if ((cev & EV_READ) && dir_read(c->cfd, &c->up, &p->st.bytes_up) < 0)
        goto end;
    if ((bev & EV_READ) && dir_read(c->bfd, &c->down, &p->st.bytes_down) < 0)
        goto end;
    /* Write whatever is buffered right away rather than waiting a loop
     * iteration for writability: the socket is almost always writable. */
    if (dir_write(c->bfd, &c->up) < 0 || dir_write(c->cfd, &c->down) < 0)
        goto end;
    if (c->up.shut && c->down.shut) {
        conn_free(c);
        return;
    }
    io_want(p->loop, &c->cio, c->cfd, want_events(&c->up, &c->down));
    io_want(p->loop, &c->bio, c->bfd, want_events(&c->down, &c->up));
    return;
end:
    conn_free(c); /* a reset or error on either side: close both */
}

static void client_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    struct conn *c = w->data;
    conn_pump(c, revents, 0);
}

/* ---- connecting ---- */

static void conn_try_next(struct conn *c);

static void splice_start(struct conn *c)
{
    struct shoal_proxy *p = c->p;
    ev_timer_stop(p->loop, &c->timer);
    c->state = CONN_SPLICING;
    p->st.connected++;
    int one = 1;
    (void)setsockopt(c->bfd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    conn_pump(c, EV_READ, EV_READ);
}

static void connect_failed(struct conn *c, const char *why)
{
    struct shoal_proxy *p = c->p;
    char a[SHOAL_ADDR_STRLEN];
    p->st.failed_connect++;
    shoal_log_info("proxy", "connect to %s (%s) failed: %s", c->be->def.key,
                   shoal_addr_format(&c->be->def.addr, a, sizeof(a)), why);
    ev_io_stop(p->loop, &c->bio);
    ev_timer_stop(p->loop, &c->timer);
    close(c->bfd);
    c->bfd = -1;
    c->be->active--;
    c->be = NULL;
    conn_try_next(c);
}

static void backend_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    struct conn *c = w->data;
    if (c->state == CONN_SPLICING) {
        conn_pump(c, 0, revents);
        return;
    }
    int soerr = 0;
    socklen_t sl = sizeof(soerr);
    if (getsockopt(c->bfd, SOL_SOCKET, SO_ERROR, &soerr, &sl) != 0)
        soerr = errno;
    if (soerr) {
        connect_failed(c, strerror(soerr));
        return;
    }
    splice_start(c);
}

static void timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    connect_failed(w->data, "timed out");
}

static bool tried(const struct conn *c, uint64_t serial)
{
    for (size_t i = 0; i < c->ntried; i++)
        if (c->tried[i] == serial)
            return true;
    return false;
}

/* Picks an untried backend and starts connecting; closes the client when
 * none is left (or the attempt bound, the candidate count at accept, is
 * reached). */
static void conn_try_next(struct conn *c)
{
    struct shoal_proxy *p = c->p;
    for (;;) {
        struct shoal_lb_candidate cand[SHOAL_PROXY_MAX_BACKENDS];
        struct backend *map[SHOAL_PROXY_MAX_BACKENDS];
        size_t n = 0;
        if (c->ntried < c->ntried_max)
            for (size_t i = 0; i < p->nbe; i++) {
                struct backend *b = p->be[i];
                if (tried(c, b->serial))
                    continue;
                cand[n] = (struct shoal_lb_candidate){b->def.key, b->def.weight, b->active};
                map[n++] = b;
            }
        int k = shoal_lb_pick(p->lb, cand, n, &p->rr, &p->rng, c->client_ip);
        if (k < 0 || (size_t)k >= n) {
            if (c->ntried == 0)
                p->st.no_instance++;
            conn_free(c);
            return;
        }
        struct backend *b = map[k];
        if (c->ntried > 0)
            p->st.retries++;
        c->tried[c->ntried++] = b->serial;

        struct sockaddr_storage ss;
        size_t sl = shoal_addr_to_sockaddr(&b->def.addr, &ss);
        int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0) {
            shoal_log_warn("proxy", "socket: %s", strerror(errno));
            p->st.failed_connect++;
            continue;
        }
        c->bfd = fd;
        c->be = b;
        b->active++;
        if (connect(fd, (struct sockaddr *)&ss, (socklen_t)sl) == 0) {
            ev_io_set(&c->bio, fd, EV_WRITE);
            splice_start(c);
            return;
        }
        if (errno != EINPROGRESS) {
            /* Refused at once (loopback): count it and try the next one here,
             * a loop rather than recursion through connect_failed(). */
            char a[SHOAL_ADDR_STRLEN];
            p->st.failed_connect++;
            shoal_log_info("proxy", "connect to %s (%s) failed: %s", b->def.key,
                           shoal_addr_format(&b->def.addr, a, sizeof(a)), strerror(errno));
            close(fd);
            c->bfd = -1;
            b->active--;
            c->be = NULL;
            continue;
        }
        c->state = CONN_CONNECTING;
        ev_io_set(&c->bio, fd, EV_WRITE);
        ev_io_start(p->loop, &c->bio);
        ev_timer_set(&c->timer, p->connect_timeout, 0.);
        ev_timer_start(p->loop, &c->timer);
        return;
    }
}

/* ---- accepting ---- */

static void accept_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    struct shoal_proxy *p = w->data;
    for (int i = 0; i < ACCEPT_BATCH; i++) {
        struct sockaddr_storage ss;
        socklen_t sl = sizeof(ss);
        int fd = accept4(p->lfd, (struct sockaddr *)&ss, &sl, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            if (errno != EAGAIN && errno != EWOULDBLOCK)
                shoal_log_warn("proxy", "accept: %s", strerror(errno));
            return; /* EMFILE and the like: libev wakes us again */
        }
        p->st.accepted++;
        struct conn *c = calloc(1, sizeof(*c));
        size_t maxtry = p->nbe ? p->nbe : 1;
        uint64_t *t = c ? calloc(maxtry, sizeof(*t)) : NULL;
        if (!t) {
            free(c);
            close(fd);
            shoal_log_warn("proxy", "out of memory: connection dropped");
            continue;
        }
        int one = 1;
        (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        c->p = p;
        c->cfd = fd;
        c->bfd = -1;
        c->tried = t;
        c->ntried_max = p->nbe;
        struct shoal_addr peer;
        if (shoal_addr_from_sockaddr(&ss, &peer) == 0)
            inet_ntop(peer.family == 4 ? AF_INET : AF_INET6, peer.ip, c->client_ip,
                      sizeof(c->client_ip));
        ev_io_init(&c->cio, client_cb, fd, EV_READ);
        c->cio.data = c;
        ev_io_init(&c->bio, backend_cb, -1, EV_WRITE);
        c->bio.data = c;
        ev_timer_init(&c->timer, timer_cb, 0., 0.);
        c->timer.data = c;
        c->next = p->conns;
        if (p->conns)
            p->conns->prev = c;
        p->conns = c;
        p->st.active++;
        conn_try_next(c);
    }
}

/* ---- the backend set ---- */

static bool same_backend(const struct backend *a, const struct shoal_proxy_backend *b)
{
    return strcmp(a->def.key, b->key) == 0 && shoal_addr_eq(&a->def.addr, &b->addr);
}

int shoal_proxy_set_backends(struct shoal_proxy *p, const struct shoal_proxy_backend *b, size_t n)
{
    if (n > SHOAL_PROXY_MAX_BACKENDS) {
        shoal_log_warn("proxy", "%zu instances: using the first %d", n, SHOAL_PROXY_MAX_BACKENDS);
        n = SHOAL_PROXY_MAX_BACKENDS;
    }
    struct backend **nbe = calloc(n ? n : 1, sizeof(*nbe));
    bool *kept = calloc(p->nbe ? p->nbe : 1, sizeof(*kept));
    if (!nbe || !kept)
        goto oom;
    for (size_t i = 0; i < n; i++) {
        for (size_t j = 0; j < p->nbe && !nbe[i]; j++)
            if (!kept[j] && same_backend(p->be[j], &b[i])) {
                kept[j] = true;
                nbe[i] = p->be[j];
            }
        if (!nbe[i]) {
            nbe[i] = calloc(1, sizeof(**nbe));
            if (!nbe[i])
                goto oom;
            nbe[i]->serial = ++p->next_serial;
        }
    }
    /* Committed: nothing below fails. */
    for (size_t i = 0; i < n; i++) {
        nbe[i]->def = b[i];
        nbe[i]->def.key[SHOAL_PROXY_KEY_MAX - 1] = 0;
        if (nbe[i]->def.weight == 0)
            nbe[i]->def.weight = 1;
    }
    struct backend **old = p->be;
    size_t nold = p->nbe;
    p->be = nbe;
    p->nbe = n;
    p->st.backends = n;
    for (size_t j = 0; j < nold; j++) {
        if (kept[j])
            continue;
        struct backend *gone = old[j];
        struct conn *c = p->conns, *next;
        for (; c; c = next) {
            next = c->next;
            if (c->be != gone)
                continue;
            if (c->state == CONN_CONNECTING) {
                /* Not spliced yet: the client loses nothing by a retry. */
                ev_io_stop(p->loop, &c->bio);
                ev_timer_stop(p->loop, &c->timer);
                close(c->bfd);
                c->bfd = -1;
                gone->active--;
                c->be = NULL;
                conn_try_next(c); /* may free c and others' next is unaffected */
            } else {
                p->st.removed++;
                conn_free(c);
            }
        }
        free(gone);
    }
    free(old);
    free(kept);
    return 0;
oom:
    if (nbe)
        for (size_t i = 0; i < n; i++) {
            bool reused = false;
            for (size_t j = 0; j < p->nbe; j++)
                reused |= nbe[i] == p->be[j];
            if (!reused)
                free(nbe[i]);
        }
    free(nbe);
    free(kept);
    return SHOAL_ENOMEM;
}

/* ---- life cycle ---- */

struct shoal_proxy *shoal_proxy_new(struct ev_loop *loop, const struct shoal_proxy_opts *opts,
                                    int *err)
{
    struct sockaddr_storage ss;
    size_t sl = shoal_addr_to_sockaddr(&opts->listen, &ss);
    if (!sl || opts->lb < 0 || opts->lb >= SHOAL_LB_COUNT) {
        if (err)
            *err = SHOAL_EINVAL;
        return NULL;
    }
    struct shoal_proxy *p = calloc(1, sizeof(*p));
    if (!p) {
        if (err)
            *err = SHOAL_ENOMEM;
        return NULL;
    }
    int one = 1, e;
    int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        goto fail_errno;
    (void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (bind(fd, (struct sockaddr *)&ss, (socklen_t)sl) != 0 || listen(fd, 511) != 0)
        goto fail_errno;
    socklen_t got = sizeof(ss);
    if (getsockname(fd, (struct sockaddr *)&ss, &got) != 0)
        goto fail_errno;
    (void)shoal_addr_from_sockaddr(&ss, &p->local);
    p->loop = loop;
    p->lfd = fd;
    p->lb = opts->lb;
    p->connect_timeout =
        (opts->connect_timeout_ms ? opts->connect_timeout_ms : DEFAULT_CONNECT_TIMEOUT_MS) / 1e3;
    shoal_rng_seed(&p->rng, opts->seed);
    ev_io_init(&p->lio, accept_cb, fd, EV_READ);
    p->lio.data = p;
    ev_io_start(loop, &p->lio);
    return p;

fail_errno:
    e = errno;
    if (fd >= 0)
        close(fd);
    free(p);
    if (err)
        *err = -e;
    return NULL;
}

void shoal_proxy_free(struct shoal_proxy *p)
{
    if (!p)
        return;
    while (p->conns)
        conn_free(p->conns);
    ev_io_stop(p->loop, &p->lio);
    close(p->lfd);
    for (size_t i = 0; i < p->nbe; i++)
        free(p->be[i]);
    free(p->be);
    free(p);
}

struct shoal_addr shoal_proxy_local(const struct shoal_proxy *p) { return p->local; }

void shoal_proxy_get_stats(const struct shoal_proxy *p, struct shoal_proxy_stats *out)
{
    *out = p->st;
}
