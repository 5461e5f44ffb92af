/* client.c -- the CLI's blocking HTTP/1.1 client (see client.h).
 *
 * The socket is non-blocking and every step waits in ppoll() with a timeout:
 * connect, each send and each receive. ppoll's signal mask is how a caller
 * that blocks SIGINT/SIGTERM lets them interrupt a wait without a race. Responses are parsed by
 * http-parser; the body is complete at Content-Length, at the last chunk, or at EOF when the agent
 * gave no length.
 */
#define _GNU_SOURCE /* asprintf */
#include "cli/client.h"

#include <arpa/inet.h>
#include <errno.h>
#include <http_parser.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "cli/cli.h"

struct client_state {
    struct shoal_cli_http_resp *out;
    size_t cap;
    bool done, too_big, oom;
};

static int on_body(http_parser *p, const char *at, size_t n)
{
    struct client_state *st = p->data;
    struct shoal_cli_http_resp *r = st->out;
    if (r->body_len + n > SHOAL_CLI_HTTP_MAX_BODY) {
        st->too_big = true;
        return -1;
    }
    if (r->body_len + n + 1 > st->cap) {
        size_t cap = st->cap ? st->cap : 4096;
        while (cap < r->body_len + n + 1)
            cap *= 2;
        char *b = realloc(r->body, cap);
        if (!b) {
            st->oom = true;
            return -1;
        }
        r->body = b;
        st->cap = cap;
    }
    memcpy(r->body + r->body_len, at, n);
    r->body_len += n;
    r->body[r->body_len] = 0;
    return 0;
}

static int on_message_complete(http_parser *p)
{
    struct client_state *st = p->data;
    if (p->status_code >= 100 && p->status_code < 200) {
        st->out->body_len = 0; /* an interim response: the real one follows */
        return 0;
    }
    st->out->status = (int)p->status_code;
    st->done = true;
    http_parser_pause(p, 1);
    return 0;
}

static const http_parser_settings client_settings = {
    .on_body = on_body,
    .on_message_complete = on_message_complete,
};

/* Waits up to timeout_ms for events on fd, under o->sigmask. Returns 0, or -1
 * with errno set: ETIMEDOUT, EINTR when cancelled (o->stop), or poll's. */
static int wait_fd(int fd, short events, int timeout_ms, const struct shoal_cli_http_opts *o)
{
    struct pollfd p = {.fd = fd, .events = events};
    struct timespec now, end;
    clock_gettime(CLOCK_MONOTONIC, &end);
    end.tv_sec += timeout_ms / 1000;
    end.tv_nsec += (long)(timeout_ms % 1000) * 1000000;
    if (end.tv_nsec >= 1000000000) {
        end.tv_sec++;
        end.tv_nsec -= 1000000000;
    }
    for (;;) {
        clock_gettime(CLOCK_MONOTONIC, &now);
        struct timespec left = {end.tv_sec - now.tv_sec, end.tv_nsec - now.tv_nsec};
        if (left.tv_nsec < 0) {
            left.tv_sec--;
            left.tv_nsec += 1000000000;
        }
        if (left.tv_sec < 0)
            left = (struct timespec){0, 0};
        int n = ppoll(&p, 1, &left, o->sigmask);
        if (n > 0)
            return 0;
        if (n == 0) {
            errno = ETIMEDOUT;
            return -1;
        }
        if (errno != EINTR || (o->stop && *o->stop)) /* errno stays EINTR when cancelled */
            return -1;
    }
}

static int connect_to(const struct shoal_addr *a, const struct shoal_cli_http_opts *o, int *sys_err)
{
    struct sockaddr_storage ss;
    socklen_t sl;
    memset(&ss, 0, sizeof(ss));
    if (a->family == 4) {
        struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
        sin->sin_family = AF_INET;
        sin->sin_port = htons(a->port);
        memcpy(&sin->sin_addr, a->ip, 4);
        sl = sizeof(*sin);
    } else if (a->family == 6) {
        struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;
        sin6->sin6_family = AF_INET6;
        sin6->sin6_port = htons(a->port);
        memcpy(&sin6->sin6_addr, a->ip, 16);
        sl = sizeof(*sin6);
    } else {
        return SHOAL_EINVAL;
    }
    int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        *sys_err = errno;
        return SHOAL_ECONN;
    }
    if (connect(fd, (struct sockaddr *)&ss, sl) < 0) {
        int e = errno, soerr = 0;
        socklen_t len = sizeof(soerr);
        if (e != EINPROGRESS && e != EINTR) {
            *sys_err = e;
            close(fd);
            return SHOAL_ECONN;
        }
        int t =
            o->timeout_ms < SHOAL_CLI_HTTP_TIMEOUT_MS ? o->timeout_ms : SHOAL_CLI_HTTP_TIMEOUT_MS;
        if (wait_fd(fd, POLLOUT, t, o) < 0) {
            *sys_err = errno;
            close(fd);
            return SHOAL_ECONN;
        }
        if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &len) < 0 || soerr) {
            *sys_err = soerr ? soerr : errno;
            close(fd);
            return SHOAL_ECONN;
        }
    }
    return fd;
}

static int send_all(int fd, const char *p, size_t len, const struct shoal_cli_http_opts *o,
                    int *sys_err)
{
    while (len > 0) {
        ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
        if (n > 0) {
            p += n;
            len -= (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) &&
            wait_fd(fd, POLLOUT, o->timeout_ms, o) == 0)
            continue;
        *sys_err = errno;
        return SHOAL_EIO;
    }
    return 0;
}

static int read_response(int fd, const struct shoal_cli_http_opts *o,
                         struct shoal_cli_http_resp *out, int *sys_err)
{
    struct client_state st = {.out = out};
    http_parser parser;
    char buf[16384];

    http_parser_init(&parser, HTTP_RESPONSE);
    parser.data = &st;
    for (;;) {
        ssize_t n = recv(fd, buf, sizeof(buf), 0);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if ((errno == EAGAIN || errno == EWOULDBLOCK) &&
                wait_fd(fd, POLLIN, o->timeout_ms, o) == 0)
                continue;
            *sys_err = errno;
            return SHOAL_EIO;
        }
        /* n == 0 tells the parser about EOF (ends a body without a length) */
        size_t used = http_parser_execute(&parser, &client_settings, buf, (size_t)n);
        if (st.done)
            return 0;
        if (st.too_big)
            return SHOAL_ETOOBIG;
        if (st.oom)
            return SHOAL_ENOMEM;
        if (HTTP_PARSER_ERRNO(&parser) != HPE_OK || used != (size_t)n)
            return n == 0 ? SHOAL_ETRUNC : SHOAL_EDECODE;
        if (n == 0)
            return SHOAL_ETRUNC;
    }
}

int shoal_cli_http_request(const struct shoal_addr *addr, const char *method, const char *path,
                           const char *body, const struct shoal_cli_http_opts *opts,
                           struct shoal_cli_http_resp *out, int *sys_err)
{
    struct shoal_cli_http_opts o = opts ? *opts : (struct shoal_cli_http_opts){0};
    char host[SHOAL_ADDR_STRLEN], *req = NULL;
    size_t blen = body ? strlen(body) : 0;
    bool has_body = body || strcmp(method, "POST") == 0 || strcmp(method, "PUT") == 0;
    int rc, len;

    memset(out, 0, sizeof(*out));
    *sys_err = 0;
    shoal_addr_format(addr, host, sizeof(host));
    if (has_body)
        len = asprintf(&req,
                       "%s %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: shoal/%s\r\n"
                       "Accept: application/json\r\nConnection: close\r\n"
                       "Content-Type: application/json\r\nContent-Length: %zu\r\n\r\n%s",
                       method, path, host, SHOAL_VERSION, blen, body ? body : "");
    else
        len = asprintf(&req,
                       "%s %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: shoal/%s\r\n"
                       "Accept: application/json\r\nConnection: close\r\n\r\n",
                       method, path, host, SHOAL_VERSION);
    if (len < 0)
        return SHOAL_ENOMEM;
    if (o.timeout_ms <= 0)
        o.timeout_ms = SHOAL_CLI_HTTP_TIMEOUT_MS;

    int fd = connect_to(addr, &o, sys_err);
    if (fd < 0) {
        free(req);
        return fd;
    }
    rc = send_all(fd, req, (size_t)len, &o, sys_err);
    free(req);
    if (rc == 0)
        rc = read_response(fd, &o, out, sys_err);
    close(fd);
    if (rc == 0 && !out->body) {
        out->body = calloc(1, 1);
        if (!out->body)
            rc = SHOAL_ENOMEM;
    }
    if (rc) {
        int status = out->status;
        shoal_cli_http_resp_free(out);
        out->status = status;
    }
    return rc;
}

void shoal_cli_http_resp_free(struct shoal_cli_http_resp *r)
{
    free(r->body);
    memset(r, 0, sizeof(*r));
}
