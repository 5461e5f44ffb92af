/* udp.c -- the libev UDP transport: bind, drain-on-readable, sendto.
 *
 * Reading is level-triggered: after SHOAL_UDP_BATCH datagrams the callback
 * returns and libev wakes it again, so timers and HTTP get their turn even
 * under a flood. The receive buffer is one byte larger than max_datagram:
 * a datagram that fills it was too large, and the caller drops it by reason.
 */
#include "io/udp.h"

#include <arpa/inet.h>
#include <errno.h>
#include <ev.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "io/log.h"

struct shoal_udp {
    struct ev_loop *loop;
    ev_io io;
    int fd;
    int family;
    struct shoal_addr local;
    size_t buf_len; /* max_datagram + 1 */
    shoal_udp_recv_fn recv;
    shoal_udp_batch_fn batch;
    void *ud;
    uint8_t buf[]; /* buf_len bytes */
};

size_t shoal_addr_to_sockaddr(const struct shoal_addr *a, struct sockaddr_storage *ss)
{
    memset(ss, 0, sizeof(*ss));
    if (a->family == 4) {
        struct sockaddr_in *sin = (struct sockaddr_in *)ss;
        sin->sin_family = AF_INET;
        sin->sin_port = htons(a->port);
        memcpy(&sin->sin_addr, a->ip, 4);
        return sizeof(*sin);
    }
    if (a->family == 6) {
        struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;
        sin6->sin6_family = AF_INET6;
        sin6->sin6_port = htons(a->port);
        memcpy(&sin6->sin6_addr, a->ip, 16);
        return sizeof(*sin6);
    }
    return 0;
}

int shoal_addr_from_sockaddr(const struct sockaddr_storage *ss, struct shoal_addr *out)
{
    memset(out, 0, sizeof(*out));
    if (ss->ss_family == AF_INET) {
        const struct sockaddr_in *sin = (const struct sockaddr_in *)ss;
        out->family = 4;
        out->port = ntohs(sin->sin_port);
        memcpy(out->ip, &sin->sin_addr, 4);
        return 0;
    }
    if (ss->ss_family == AF_INET6) {
        const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)ss;
        /* A v4-mapped source on a dual-stack socket is reported as IPv4 so
         * that it compares equal to the address the member advertises. */
        if (IN6_IS_ADDR_V4MAPPED(&sin6->sin6_addr)) {
            out->family = 4;
            memcpy(out->ip, &sin6->sin6_addr.s6_addr[12], 4);
        } else {
            out->family = 6;
            memcpy(out->ip, &sin6->sin6_addr, 16);
        }
        out->port = ntohs(sin6->sin6_port);
        return 0;
    }
    return SHOAL_EINVAL;
}

const char *shoal_udp_strerror(int err)
{
    if (err > SHOAL_ERR_FIRST_ && err < SHOAL_ERR_LAST_)
        return shoal_strerror(err);
    return err < 0 ? strerror(-err) : shoal_strerror(err);
}

static void udp_readable(struct ev_loop *loop, ev_io *w, int revents)
{
    struct shoal_udp *u = w->data;
    int got = 0;

    for (int i = 0; i < SHOAL_UDP_BATCH; i++) {
        struct sockaddr_storage ss;
        socklen_t sl = sizeof(ss);
        ssize_t n = recvfrom(u->fd, u->buf, u->buf_len, 0, (struct sockaddr *)&ss, &sl);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                break;
            /* ICMP errors surface here on some systems; they concern one
             * earlier send, not the socket, so keep reading. */
            if (errno == ECONNREFUSED || errno == EHOSTUNREACH || errno == ENETUNREACH)
                continue;
            shoal_log_warn("udp", "recvfrom: %s", strerror(errno));
            break;
        }
        struct shoal_addr src;
        if (shoal_addr_from_sockaddr(&ss, &src) != 0)
            continue;
        got++;
        u->recv(u->ud, u->buf, (size_t)n, &src);
    }
    if (got && u->batch)
        u->batch(u->ud);
}

struct shoal_udp *shoal_udp_new(struct ev_loop *loop, const struct shoal_addr *bind_addr,
                                size_t max_datagram, shoal_udp_recv_fn recv,
                                shoal_udp_batch_fn batch, void *ud, int *err)
{
    struct sockaddr_storage ss;
    size_t sl = shoal_addr_to_sockaddr(bind_addr, &ss);
    struct shoal_udp *u;
    int e, fd;

    if (!sl || !recv || max_datagram == 0 || max_datagram > 65535) {
        if (err)
            *err = SHOAL_EINVAL;
        return NULL;
    }
    u = calloc(1, sizeof(*u) + max_datagram + 1);
    if (!u) {
        if (err)
            *err = SHOAL_ENOMEM;
        return NULL;
    }
    fd = socket(ss.ss_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        goto fail_errno;
    if (ss.ss_family == AF_INET6) {
        /* [::]:port serves IPv4 too unless the system says otherwise. */
        int off = 0;
        (void)setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &off, sizeof(off));
    }
    if (bind(fd, (struct sockaddr *)&ss, (socklen_t)sl) != 0)
        goto fail_errno;
    socklen_t got = sizeof(ss);
    if (getsockname(fd, (struct sockaddr *)&ss, &got) != 0)
        goto fail_errno;
    (void)shoal_addr_from_sockaddr(&ss, &u->local);
    /* getsockname on a dual-stack wildcard reports "::"; keep the family
     * the caller asked for in either case. */
    u->local.family = bind_addr->family;
    memcpy(u->local.ip, bind_addr->ip, sizeof(u->local.ip));

    u->loop = loop;
    u->fd = fd;
    u->family = ss.ss_family;
    u->buf_len = max_datagram + 1;
    u->recv = recv;
    u->batch = batch;
    u->ud = ud;
    ev_io_init(&u->io, udp_readable, fd, EV_READ);
    u->io.data = u;
    ev_io_start(loop, &u->io);
    return u;

fail_errno:
    e = errno;
    if (fd >= 0)
        close(fd);
    free(u);
    if (err)
        *err = -e;
    return NULL;
}

void shoal_udp_free(struct shoal_udp *u)
{
    if (!u)
        return;
    ev_io_stop(u->loop, &u->io);
    close(u->fd);
    free(u);
}

int shoal_udp_send(struct shoal_udp *u, const struct shoal_addr *to, const uint8_t *buf, size_t len)
{
    struct sockaddr_storage ss;
    size_t sl;

    if (u->family == AF_INET6 && to->family == 4) {
        /* A dual-stack socket reaches IPv4 peers through v4-mapped addresses. */
        struct shoal_addr mapped = {.family = 6, .port = to->port};
        mapped.ip[10] = 0xff;
        mapped.ip[11] = 0xff;
        memcpy(&mapped.ip[12], to->ip, 4);
        sl = shoal_addr_to_sockaddr(&mapped, &ss);
    } else {
        sl = shoal_addr_to_sockaddr(to, &ss);
    }
    if (!sl)
        return SHOAL_EINVAL;
    for (;;) {
        ssize_t n = sendto(u->fd, buf, len, 0, (struct sockaddr *)&ss, (socklen_t)sl);
        if (n >= 0)
            return 0;
        if (errno != EINTR)
            return -errno;
    }
}

void shoal_udp_local_addr(const struct shoal_udp *u, struct shoal_addr *out) { *out = u->local; }
