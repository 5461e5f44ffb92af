/* stream.c -- TCP connections on libev that carry length-prefixed frames.
 *
 * Per connection: a read and a write ev_io, one ev_timer (the connect
 * deadline while connecting, then the idle timeout, re-armed with
 * ev_timer_again on every byte), an input buffer that grows to one frame
 * at most, and an output buffer bounded by out_max. Frames are handed up
 * from inside the read callback; a callee that sends on the connection
 * being read, and fails, only marks it dead (`busy`), and the read
 * callback closes it once the callee has returned. Reads take at most
 * STREAM_READ_BUDGET bytes per wakeup so a bulk sync cannot starve timers.
 */
#define _GNU_SOURCE /* accept4 */
#include "io/stream.h"

#include <errno.h>
#include <ev.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "io/log.h"
#include "io/udp.h"
#include "shoal/error.h"
#include "wire/wire.h"

/* A frame: prefix and envelope, as wire cuts them. */
#define STREAM_FRAME_MAX (SHOAL_STREAM_FRAME_MAX + SHOAL_FRAME_PREFIX_BYTES)
#define STREAM_READ_CHUNK (64 * 1024)    /* recv() size and buffer growth step */
#define STREAM_READ_BUDGET (1024 * 1024) /* bytes per wakeup per connection */
#define STREAM_ACCEPT_BATCH 64
#define STREAM_ACCEPT_BACKOFF_S 0.1  /* after EMFILE and the like */
#define STREAM_KEEP_BUF (256 * 1024) /* empty buffers larger than this are freed */

struct conn {
    struct shoal_stream *s;
    struct conn *prev, *next;
    uint64_t id;
    int fd;
    struct shoal_addr peer;
    bool outgoing, connecting;
    bool busy;     /* inside a frame callback: close later */
    bool dead;     /* to be closed as soon as not busy */
    bool peer_eof; /* the peer closed its side: close once flushed */
    char why[96];  /* close reason, for the log */
    ev_io rio, wio;
    ev_timer timer;
    uint8_t *in;
    size_t in_len, in_cap;
    uint8_t *out;
    size_t out_off, out_len, out_cap;
};

struct shoal_stream {
    struct ev_loop *loop;
    struct shoal_stream_config cfg;
    int fd;
    ev_io accept_io;
    ev_timer backoff;
    struct shoal_addr local;
    struct conn *conns;
    uint64_t next_id;
    uint64_t accept_errors, errors;
    struct shoal_stream_counters counters;
};

static bool log_sampled(uint64_t count) { return (count & (count - 1)) == 0 || count % 1024 == 0; }

/* ------------------------------------------------------------ lifetime */

static void conn_close(struct conn *c)
{
    struct shoal_stream *s = c->s;
    char a[SHOAL_ADDR_STRLEN];

    if (shoal_log_enabled(SHOAL_LOG_DEBUG))
        shoal_log_debug("stream", "connection %llu %s %s closed: %s", (unsigned long long)c->id,
                        c->outgoing ? "to" : "from", shoal_addr_format(&c->peer, a, sizeof(a)),
                        c->why[0] ? c->why : "shutdown");
    ev_io_stop(s->loop, &c->rio);
    ev_io_stop(s->loop, &c->wio);
    ev_timer_stop(s->loop, &c->timer);
    close(c->fd);
    if (c->prev)
        c->prev->next = c->next;
    else
        s->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    s->counters.open--;
    free(c->in);
    free(c->out);
    free(c);
}

/* Closes c now, or once the frame callback running on it has returned.
 * Ends other than idle, the peer's close or shutdown are errors: counted
 * under `counter` and logged (sampled) at warn. */
static void conn_end(struct conn *c, uint64_t *counter, const char *why)
{
    struct shoal_stream *s = c->s;
    char a[SHOAL_ADDR_STRLEN];

    if (c->dead)
        return;
    c->dead = true;
    snprintf(c->why, sizeof(c->why), "%s", why);
    if (counter)
        (*counter)++;
    if (counter && counter != &s->counters.closed_idle && counter != &s->counters.closed_eof &&
        log_sampled(++s->errors))
        shoal_log_warn("stream", "connection %llu %s %s: %s (%llu stream errors so far)",
                       (unsigned long long)c->id, c->outgoing ? "to" : "from",
                       shoal_addr_format(&c->peer, a, sizeof(a)), why,
                       (unsigned long long)s->errors);
    if (!c->busy)
        conn_close(c);
}

static void conn_touch(struct conn *c)
{
    if (!c->connecting)
        ev_timer_again(c->s->loop, &c->timer);
}

static struct conn *conn_find(const struct shoal_stream *s, uint64_t id)
{
    /* Linear: at most max_conns (256) connections. */
    for (struct conn *c = s->conns; c; c = c->next)
        if (c->id == id)
            return c;
    return NULL;
}

static void conn_readable(struct ev_loop *loop, ev_io *w, int revents);
static void conn_writable(struct ev_loop *loop, ev_io *w, int revents);
static void conn_timeout(struct ev_loop *loop, ev_timer *w, int revents);

static struct conn *conn_new(struct shoal_stream *s, int fd, const struct shoal_addr *peer,
                             bool outgoing, bool connecting)
{
    struct conn *c = calloc(1, sizeof(*c));
    if (!c)
        return NULL;
    c->s = s;
    c->id = ++s->next_id;
    c->fd = fd;
    c->peer = *peer;
    c->outgoing = outgoing;
    c->connecting = connecting;
    ev_io_init(&c->rio, conn_readable, fd, EV_READ);
    ev_io_init(&c->wio, conn_writable, fd, EV_WRITE);
    ev_init(&c->timer, conn_timeout);
    c->rio.data = c->wio.data = c->timer.data = c;
    if (connecting) {
        ev_timer_set(&c->timer, s->cfg.connect_timeout_s, 0.);
        ev_timer_start(s->loop, &c->timer);
        ev_io_start(s->loop, &c->wio); /* writable = connected (or failed) */
    } else {
        c->timer.repeat = s->cfg.idle_timeout_s;
        ev_timer_again(s->loop, &c->timer);
        ev_io_start(s->loop, &c->rio);
    }
    c->next = s->conns;
    if (s->conns)
        s->conns->prev = c;
    s->conns = c;
    s->counters.open++;
    return c;
}

static void set_nodelay(int fd)
{
    int on = 1;
    /* Frames are written whole; do not hold the tail of one back. */
    (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof(on));
}

/* ------------------------------------------------------------ writing */

/* Writes what is queued; stops the write watcher once empty. */
static void conn_flush(struct conn *c)
{
    struct shoal_stream *s = c->s;

    while (!c->dead && !c->connecting && c->out_off < c->out_len) {
        ssize_t n = send(c->fd, c->out + c->out_off, c->out_len - c->out_off, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            ev_io_start(s->loop, &c->wio);
            return;
        }
        if (n < 0) {
            conn_end(c, &s->counters.closed_error, strerror(errno));
            return;
        }
        c->out_off += (size_t)n;
        s->counters.bytes_out += (uint64_t)n;
        conn_touch(c);
    }
    if (c->dead || c->connecting)
        return;
    ev_io_stop(s->loop, &c->wio);
    c->out_off = c->out_len = 0;
    if (c->out_cap > STREAM_KEEP_BUF) {
        free(c->out);
        c->out = NULL;
        c->out_cap = 0;
    }
    if (c->peer_eof)
        conn_end(c, &s->counters.closed_eof, "closed by the peer");
}

static void conn_writable(struct ev_loop *loop, ev_io *w, int revents)
{
    struct conn *c = w->data;
    struct shoal_stream *s = c->s;

    if (c->connecting) {
        int err = 0;
        socklen_t len = sizeof(err);
        if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0)
            err = errno;
        if (err) {
            conn_end(c, &s->counters.connect_failures, strerror(err));
            return;
        }
        c->connecting = false;
        ev_timer_stop(loop, &c->timer);
        c->timer.repeat = s->cfg.idle_timeout_s;
        ev_timer_again(loop, &c->timer);
        ev_io_start(loop, &c->rio);
    }
    conn_flush(c);
}

static int conn_queue(struct conn *c, const uint8_t *frame, size_t len)
{
    struct shoal_stream *s = c->s;
    size_t pending = c->out_len - c->out_off;

    if (pending + len > s->cfg.out_max) {
        conn_end(c, &s->counters.closed_overflow, "output buffer full");
        return SHOAL_ETOOBIG;
    }
    if (c->out_off && c->out_len + len > c->out_cap) {
        memmove(c->out, c->out + c->out_off, pending);
        c->out_off = 0;
        c->out_len = pending;
    }
    if (c->out_len + len > c->out_cap) {
        size_t cap = c->out_cap ? c->out_cap : STREAM_READ_CHUNK;
        while (cap < c->out_len + len)
            cap *= 2;
        uint8_t *p = realloc(c->out, cap);
        if (!p) {
            conn_end(c, &s->counters.closed_error, "out of memory");
            return SHOAL_ENOMEM;
        }
        c->out = p;
        c->out_cap = cap;
    }
    memcpy(c->out + c->out_len, frame, len);
    c->out_len += len;
    s->counters.frames_out++;
    conn_flush(c);
    return 0;
}

/* ------------------------------------------------------------ reading */

/* Hands up every whole frame in the input buffer. Returns false if the
 * connection must go (a frame too large). */
static bool conn_frames(struct conn *c, bool *delivered)
{
    struct shoal_stream *s = c->s;
    size_t off = 0;

    while (!c->dead && c->in_len > off) {
        int total = shoal_wire_frame_length(c->in + off, c->in_len - off);
        if (total < 0) {
            conn_end(c, &s->counters.closed_too_large, "frame too large");
            return false;
        }
        if (total == 0 || c->in_len - off < (size_t)total)
            break;
        s->counters.frames_in++;
        *delivered = true;
        s->cfg.frame(s->cfg.ud, c->id, &c->peer, c->in + off, (size_t)total);
        off += (size_t)total;
    }
    if (off) {
        memmove(c->in, c->in + off, c->in_len - off);
        c->in_len -= off;
    }
    if (c->in_len == 0 && c->in_cap > STREAM_KEEP_BUF) {
        free(c->in);
        c->in = NULL;
        c->in_cap = 0;
    }
    return !c->dead;
}

static void conn_readable(struct ev_loop *loop, ev_io *w, int revents)
{
    struct conn *c = w->data;
    struct shoal_stream *s = c->s;
    size_t budget = STREAM_READ_BUDGET;
    bool delivered = false;

    c->busy = true;
    while (!c->dead && budget) {
        if (c->in_cap - c->in_len < STREAM_READ_CHUNK) {
            /* Room for one more chunk; a frame never needs more than
             * STREAM_FRAME_MAX, and a chunk past it holds the next one's
             * start. */
            size_t cap = c->in_cap ? c->in_cap * 2 : STREAM_READ_CHUNK;
            if (cap < c->in_len + STREAM_READ_CHUNK)
                cap = c->in_len + STREAM_READ_CHUNK;
            if (cap > STREAM_FRAME_MAX + STREAM_READ_CHUNK)
                cap = STREAM_FRAME_MAX + STREAM_READ_CHUNK;
            if (cap > c->in_cap) {
                uint8_t *p = realloc(c->in, cap);
                if (!p) {
                    conn_end(c, &s->counters.closed_error, "out of memory");
                    break;
                }
                c->in = p;
                c->in_cap = cap;
            }
        }
        size_t room = c->in_cap - c->in_len;
        ssize_t n = recv(c->fd, c->in + c->in_len, room < budget ? room : budget, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            break;
        if (n < 0) {
            conn_end(c, &s->counters.closed_error, strerror(errno));
            break;
        }
        if (n == 0) {
            c->peer_eof = true;
            break;
        }
        c->in_len += (size_t)n;
        budget -= (size_t)n;
        s->counters.bytes_in += (uint64_t)n;
        conn_touch(c);
        if (!conn_frames(c, &delivered))
            break;
    }
    if (!c->dead && c->peer_eof) {
        /* Half-closed: no more frames come; send what is queued, then go. */
        ev_io_stop(loop, &c->rio);
        if (c->in_len)
            conn_end(c, &s->counters.closed_error, "closed by the peer inside a frame");
        else if (c->out_off == c->out_len)
            conn_end(c, &s->counters.closed_eof, "closed by the peer");
    }
    c->busy = false;
    if (c->dead)
        conn_close(c);
    if (delivered && s->cfg.batch)
        s->cfg.batch(s->cfg.ud);
}

static void conn_timeout(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct conn *c = w->data;
    struct shoal_stream *s = c->s;
    if (c->connecting)
        conn_end(c, &s->counters.connect_failures, "connect timed out");
    else
        conn_end(c, &s->counters.closed_idle, "idle");
}

/* ------------------------------------------------------------ listening */

static void stream_accept(struct ev_loop *loop, ev_io *w, int revents)
{
    struct shoal_stream *s = w->data;

    for (int i = 0; i < STREAM_ACCEPT_BATCH; i++) {
        struct sockaddr_storage ss;
        socklen_t sl = sizeof(ss);
        struct shoal_addr peer;
        int fd = accept4(s->fd, (struct sockaddr *)&ss, &sl, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return;
            /* Out of descriptors or memory: pause rather than spin. */
            s->accept_errors++;
            if (log_sampled(s->accept_errors))
                shoal_log_warn("stream", "accept: %s (%llu so far); pausing %.0f ms",
                               strerror(errno), (unsigned long long)s->accept_errors,
                               STREAM_ACCEPT_BACKOFF_S * 1000);
            ev_io_stop(loop, &s->accept_io);
            ev_timer_set(&s->backoff, STREAM_ACCEPT_BACKOFF_S, 0.);
            ev_timer_start(loop, &s->backoff);
            return;
        }
        if (shoal_addr_from_sockaddr(&ss, &peer) != 0 || s->counters.open >= s->cfg.max_conns) {
            s->counters.rejected++;
            if (log_sampled(s->counters.rejected))
                shoal_log_warn("stream", "refused a connection: %llu open (max %zu; %llu refused)",
                               (unsigned long long)s->counters.open, s->cfg.max_conns,
                               (unsigned long long)s->counters.rejected);
            close(fd);
            continue;
        }
        set_nodelay(fd);
        if (!conn_new(s, fd, &peer, false, false)) {
            s->counters.rejected++;
            close(fd);
            continue;
        }
        s->counters.accepted++;
    }
}

static void stream_backoff_done(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct shoal_stream *s = w->data;
    ev_io_start(loop, &s->accept_io);
}

struct shoal_stream *shoal_stream_new(struct ev_loop *loop, const struct shoal_stream_config *c,
                                      int *err)
{
    struct sockaddr_storage ss;
    size_t sl = shoal_addr_to_sockaddr(&c->bind, &ss);
    struct shoal_stream *s;
    int e, fd = -1, on = 1;

    if (!sl || !c->frame || !c->out_max || !c->max_conns || c->connect_timeout_s <= 0 ||
        c->idle_timeout_s <= 0) {
        if (err)
            *err = SHOAL_EINVAL;
        return NULL;
    }
    s = calloc(1, sizeof(*s));
    if (!s) {
        if (err)
            *err = SHOAL_ENOMEM;
        return NULL;
    }
    fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        goto fail_errno;
    /* Lets a restarted agent listen while old connections sit in
     * TIME_WAIT; it never lets two listeners share the port on Linux. */
    (void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on));
    if (ss.ss_family == AF_INET6) {
        int off = 0;
        (void)setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &off, sizeof(off));
    }
    if (bind(fd, (struct sockaddr *)&ss, (socklen_t)sl) != 0 || listen(fd, SOMAXCONN) != 0)
        goto fail_errno;
    socklen_t got = sizeof(ss);
    if (getsockname(fd, (struct sockaddr *)&ss, &got) != 0)
        goto fail_errno;
    (void)shoal_addr_from_sockaddr(&ss, &s->local);
    s->local.family = c->bind.family;
    memcpy(s->local.ip, c->bind.ip, sizeof(s->local.ip));

    s->loop = loop;
    s->cfg = *c;
    s->fd = fd;
    ev_io_init(&s->accept_io, stream_accept, fd, EV_READ);
    s->accept_io.data = s;
    ev_init(&s->backoff, stream_backoff_done);
    s->backoff.data = s;
    ev_io_start(loop, &s->accept_io);
    return s;

fail_errno:
    e = errno;
    if (fd >= 0)
        close(fd);
    free(s);
    if (err)
        *err = -e;
    return NULL;
}

void shoal_stream_free(struct shoal_stream *s)
{
    if (!s)
        return;
    while (s->conns)
        conn_close(s->conns);
    ev_io_stop(s->loop, &s->accept_io);
    ev_timer_stop(s->loop, &s->backoff);
    close(s->fd);
    free(s);
}

/* ------------------------------------------------------------ sending */

static int stream_connect(struct shoal_stream *s, const struct shoal_addr *to, struct conn **out)
{
    struct sockaddr_storage ss;
    size_t sl = shoal_addr_to_sockaddr(to, &ss);
    bool connecting = false;
    int fd;

    if (!sl)
        return SHOAL_EINVAL;
    if (s->counters.open >= s->cfg.max_conns)
        return SHOAL_ESTATE;
    fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    set_nodelay(fd);
    s->counters.connects++;
    while (connect(fd, (struct sockaddr *)&ss, (socklen_t)sl) != 0) {
        if (errno == EINTR)
            continue;
        if (errno == EINPROGRESS) {
            connecting = true;
            break;
        }
        int e = errno;
        close(fd);
        s->counters.connect_failures++;
        return -e;
    }
    struct conn *c = conn_new(s, fd, to, true, connecting);
    if (!c) {
        close(fd);
        s->counters.connect_failures++;
        return SHOAL_ENOMEM;
    }
    *out = c;
    return 0;
}

int shoal_stream_send(struct shoal_stream *s, uint64_t conn, const struct shoal_addr *to,
                      const uint8_t *frame, size_t len, uint64_t *opened)
{
    struct conn *c = NULL;
    int rc;

    if (len > STREAM_FRAME_MAX || len < SHOAL_FRAME_OVERHEAD)
        return SHOAL_ETOOBIG;
    if (conn == 0) {
        if ((rc = stream_connect(s, to, &c)) != 0)
            return rc;
        if (opened)
            *opened = c->id;
    } else {
        c = conn_find(s, conn);
        if (!c || c->dead) {
            s->counters.send_unknown_conn++;
            return SHOAL_ENOENT;
        }
    }
    return conn_queue(c, frame, len);
}

bool shoal_stream_conn_open(const struct shoal_stream *s, uint64_t conn)
{
    const struct conn *c = conn_find(s, conn);
    return c && !c->dead;
}

void shoal_stream_local_addr(const struct shoal_stream *s, struct shoal_addr *out)
{
    *out = s->local;
}

const struct shoal_stream_counters *shoal_stream_counters(const struct shoal_stream *s)
{
    return &s->counters;
}
