/* dns.c -- the DNS server's sockets (io/dns.h): a shoal_udp socket for
 * datagrams and a TCP listener whose connections carry length-prefixed
 * queries. Answers come from io/dnswire.c; this file only moves bytes,
 * enforces the TCP limits (idle timeout, connection cap, output queue) and
 * counts what it refuses.
 */
#define _GNU_SOURCE /* accept4 */
#include "io/dns.h"

#include <errno.h>
#include <ev.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "io/log.h"
#include "io/udp.h"
#include "shoal/error.h"

struct dns_conn {
    struct shoal_dns_server *s;
    struct dns_conn *next, *prev;
    int fd;
    ev_io rio, wio;
    ev_timer idle;
    uint8_t *in; /* 2 + 65535 bytes: one frame at most */
    size_t in_len;
    uint8_t *out; /* queued answers, with their length prefixes */
    size_t out_len, out_off, out_cap;
};

struct shoal_dns_server {
    struct ev_loop *loop;
    struct shoal_udp *udp;
    int lfd;
    ev_io accept_w;
    struct dns_conn *conns;
    struct shoal_dns_responder resp;
    struct shoal_addr addr;
    double idle_s;
    uint8_t reply[SHOAL_DNS_TCP_MAX + 2];
};

static void udp_recv(void *ud, const uint8_t *buf, size_t len, const struct shoal_addr *src)
{
    struct shoal_dns_server *s = ud;
    if (len > SHOAL_DNS_UDP_MAX_QUERY) {
        shoal_dns_count_drop(&s->resp);
        return;
    }
    size_t n = shoal_dns_respond(&s->resp, buf, len, false, s->reply, SHOAL_DNS_UDP_MAX);
    if (n)
        (void)shoal_udp_send(s->udp, src, s->reply, n); /* lost if the buffer is full, as UDP may */
}

static void conn_close(struct dns_conn *c)
{
    struct shoal_dns_server *s = c->s;
    ev_io_stop(s->loop, &c->rio);
    ev_io_stop(s->loop, &c->wio);
    ev_timer_stop(s->loop, &c->idle);
    close(c->fd);
    if (c->prev)
        c->prev->next = c->next;
    else
        s->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    s->resp.c.tcp_open--;
    free(c->in);
    free(c->out);
    free(c);
}

/* Writes what is queued; returns false if the connection was closed. */
static bool conn_flush(struct dns_conn *c)
{
    while (c->out_off < c->out_len) {
        ssize_t w = send(c->fd, c->out + c->out_off, c->out_len - c->out_off, MSG_NOSIGNAL);
        if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            ev_io_start(c->s->loop, &c->wio);
            return true;
        }
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            conn_close(c);
            return false;
        }
        c->out_off += (size_t)w;
    }
    c->out_off = c->out_len = 0;
    ev_io_stop(c->s->loop, &c->wio);
    return true;
}

/* Queues one answer (n bytes in s->reply after its 2-byte prefix). */
static bool conn_queue(struct dns_conn *c, size_t n)
{
    uint8_t *frame = c->s->reply;
    frame[0] = (uint8_t)(n >> 8);
    frame[1] = (uint8_t)n;
    if (c->out_len - c->out_off + n + 2 > SHOAL_DNS_TCP_MAX_QUEUE) {
        conn_close(c); /* the client sends but does not read */
        return false;
    }
    if (c->out_off && c->out_off == c->out_len)
        c->out_off = c->out_len = 0;
    if (c->out_len + n + 2 > c->out_cap) {
        size_t cap = c->out_cap ? c->out_cap : 4096;
        while (cap < c->out_len + n + 2)
            cap *= 2;
        uint8_t *p = realloc(c->out, cap);
        if (!p) {
            conn_close(c);
            return false;
        }
        c->out = p;
        c->out_cap = cap;
    }
    memcpy(c->out + c->out_len, frame, n + 2);
    c->out_len += n + 2;
    return true;
}

static void conn_read(struct ev_loop *loop, ev_io *w, int revents)
{
    struct dns_conn *c = w->data;
    struct shoal_dns_server *s = c->s;
    for (;;) {
        size_t want =
            c->in_len < 2 ? 2 - c->in_len : 2u + (size_t)(c->in[0] << 8 | c->in[1]) - c->in_len;
        ssize_t r = recv(c->fd, c->in + c->in_len, want, 0);
        if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return;
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            conn_close(c);
            return;
        }
        c->in_len += (size_t)r;
        if (c->in_len < 2)
            continue;
        size_t flen = (size_t)(c->in[0] << 8 | c->in[1]);
        if (c->in_len < 2 + flen)
            continue;
        /* One complete query: answer it, then look for the next. */
        c->in_len = 0;
        ev_timer_again(loop, &c->idle);
        size_t n =
            shoal_dns_respond(&s->resp, c->in + 2, flen, true, s->reply + 2, SHOAL_DNS_TCP_MAX);
        if (n && (!conn_queue(c, n) || !conn_flush(c)))
            return;
    }
}

static void conn_write(struct ev_loop *loop, ev_io *w, int revents) { (void)conn_flush(w->data); }

static void conn_idle(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct dns_conn *c = w->data;
    c->s->resp.c.tcp_closed_idle++;
    conn_close(c);
}

static void on_accept(struct ev_loop *loop, ev_io *w, int revents)
{
    struct shoal_dns_server *s = w->data;
    for (int i = 0; i < SHOAL_UDP_BATCH; i++) {
        int fd = accept4(s->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0)
            return; /* EAGAIN, or EMFILE and friends: try again on the next wakeup */
        struct dns_conn *c = NULL;
        if (s->resp.c.tcp_open >= SHOAL_DNS_TCP_MAX_CONNS || !(c = calloc(1, sizeof(*c))) ||
            !(c->in = malloc(2 + SHOAL_DNS_TCP_MAX))) {
            if (c)
                free(c);
            s->resp.c.tcp_rejected++;
            close(fd);
            continue;
        }
        int on = 1;
        (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof(on));
        c->s = s;
        c->fd = fd;
        ev_io_init(&c->rio, conn_read, fd, EV_READ);
        ev_io_init(&c->wio, conn_write, fd, EV_WRITE);
        ev_init(&c->idle, conn_idle);
        c->idle.repeat = s->idle_s;
        c->rio.data = c->wio.data = c->idle.data = c;
        c->next = s->conns;
        if (s->conns)
            s->conns->prev = c;
        s->conns = c;
        s->resp.c.tcp_open++;
        s->resp.c.tcp_accepted++;
        ev_io_start(loop, &c->rio);
        ev_timer_again(loop, &c->idle);
    }
}

struct shoal_dns_server *shoal_dns_server_new(struct ev_loop *loop, const struct shoal_addr *at,
                                              const struct shoal_registry *registry, uint32_t ttl_s,
                                              uint64_t seed, int *err)
{
    struct shoal_dns_server *s = calloc(1, sizeof(*s));
    struct sockaddr_storage ss;
    int e = 0, on = 1;

    if (!s) {
        *err = SHOAL_ENOMEM;
        return NULL;
    }
    s->loop = loop;
    s->lfd = -1;
    s->resp.registry = registry;
    s->resp.ttl_s = ttl_s;
    s->resp.rng = seed ? seed : 1;
    s->idle_s = SHOAL_DNS_TCP_IDLE_S;
    /* With port 0 the kernel picks UDP's port, which may be taken for TCP:
     * try again with another (a fixed port is tried once). */
    for (int attempt = 0; attempt < 32; attempt++) {
        e = 0;
        s->udp = shoal_udp_new(loop, at, SHOAL_DNS_UDP_MAX_QUERY, udp_recv, NULL, s, &e);
        if (!s->udp)
            goto fail;
        shoal_udp_local_addr(s->udp, &s->addr);
        socklen_t sl = (socklen_t)shoal_addr_to_sockaddr(&s->addr, &ss);
        s->lfd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (s->lfd < 0) {
            e = -errno;
            goto fail;
        }
        (void)setsockopt(s->lfd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on));
        if (sl != 0 && bind(s->lfd, (struct sockaddr *)&ss, sl) == 0 &&
            listen(s->lfd, SOMAXCONN) == 0)
            break;
        e = sl ? -errno : SHOAL_EINVAL;
        close(s->lfd);
        s->lfd = -1;
        shoal_udp_free(s->udp);
        s->udp = NULL;
        if (at->port != 0 || e != -EADDRINUSE)
            goto fail;
    }
    if (s->lfd < 0)
        goto fail;
    ev_io_init(&s->accept_w, on_accept, s->lfd, EV_READ);
    s->accept_w.data = s;
    ev_io_start(loop, &s->accept_w);
    return s;
fail:
    *err = e ? e : SHOAL_EINVAL;
    shoal_dns_server_free(s);
    return NULL;
}

void shoal_dns_server_free(struct shoal_dns_server *s)
{
    if (!s)
        return;
    while (s->conns)
        conn_close(s->conns);
    if (s->lfd >= 0) {
        ev_io_stop(s->loop, &s->accept_w);
        close(s->lfd);
    }
    shoal_udp_free(s->udp);
    free(s);
}

void shoal_dns_server_set_zone(struct shoal_dns_server *s, const struct shoal_dns_zone *z)
{
    s->resp.zone = *z;
}

void shoal_dns_server_set_idle_timeout(struct shoal_dns_server *s, double seconds)
{
    s->idle_s = seconds;
}

const struct shoal_dns_counters *shoal_dns_server_counters(const struct shoal_dns_server *s)
{
    return &s->resp.c;
}

void shoal_dns_server_addr(const struct shoal_dns_server *s, struct shoal_addr *out)
{
    *out = s->addr;
}
