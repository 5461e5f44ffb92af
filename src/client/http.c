/* http.c -- the client library's blocking HTTP/1.1 GET (see http.h).
 *
 * Non-blocking socket, every step waits in poll() on the socket and the wake
 * fd. The response head is parsed here (status line, Content-Length,
 * Transfer-Encoding) rather than with http-parser, so that the installed
 * library needs only jansson and pthreads.
 */
#define _GNU_SOURCE
#include "client/http.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "shoal/error.h"

/* Waits for events on fd; 0, or -1 with errno ETIMEDOUT/ECANCELED/poll's. */
static int wait_fd(int fd, short events, int timeout_ms, int wake_fd)
{
    struct pollfd p[2] = {{.fd = fd, .events = events}, {.fd = wake_fd, .events = POLLIN}};
    for (;;) {
        int n = poll(p, wake_fd >= 0 ? 2 : 1, timeout_ms);
        if (n < 0 && errno == EINTR)
            continue; /* the timeout restarts: bounded by the caller's deadline anyway */
        if (n < 0)
            return -1;
        if (n == 0) {
            errno = ETIMEDOUT;
            return -1;
        }
        if (wake_fd >= 0 && p[1].revents) {
            errno = ECANCELED;
            return -1;
        }
        return 0;
    }
}

static int connect_to(const struct shoal_addr *a, int timeout_ms, int wake_fd, int *sys_err)
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
    } else {
        struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;
        sin6->sin6_family = AF_INET6;
        sin6->sin6_port = htons(a->port);
        memcpy(&sin6->sin6_addr, a->ip, 16);
        sl = sizeof(*sin6);
    }
    int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        *sys_err = errno;
        return SHOAL_ECONN;
    }
    if (connect(fd, (struct sockaddr *)&ss, sl) < 0) {
        int soerr = 0;
        socklen_t len = sizeof(soerr);
        if (errno != EINPROGRESS && errno != EINTR) {
            *sys_err = errno;
            close(fd);
            return SHOAL_ECONN;
        }
        if (wait_fd(fd, POLLOUT, timeout_ms, wake_fd) < 0 ||
            getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &len) < 0 || soerr) {
            *sys_err = soerr ? soerr : errno;
            close(fd);
            return SHOAL_ECONN;
        }
    }
    return fd;
}

/* Finds the end of the head; parses status and Content-Length (-1 if none). */
static int parse_head(const char *buf, size_t len, size_t *head_len, int *status,
                      long long *clen)
{
    const char *end = memmem(buf, len, "\r\n\r\n", 4);
    if (!end)
        return 1; /* need more */
    *head_len = (size_t)(end - buf) + 4;
    if (len < 12 || strncmp(buf, "HTTP/1.", 7) != 0 || buf[8] != ' ')
        return SHOAL_EDECODE;
    char *e;
    long st = strtol(buf + 9, &e, 10);
    if (st < 100 || st > 599 || e != buf + 12)
        return SHOAL_EDECODE;
    *status = (int)st;
    *clen = -1;
    for (const char *l = memchr(buf, '\n', *head_len) + 1; l < end;
         l = memchr(l, '\n', (size_t)(end + 2 - l)) + 1) {
        if (strncasecmp(l, "Content-Length:", 15) == 0) {
            long long v = strtoll(l + 15, &e, 10);
            if (v < 0 || e == l + 15)
                return SHOAL_EDECODE;
            *clen = v;
        } else if (strncasecmp(l, "Transfer-Encoding:", 18) == 0) {
            return SHOAL_EDECODE; /* the agent never sends chunked bodies */
        }
    }
    return 0;
}

int shoal_client_http_get(const struct shoal_addr *addr, const char *path, int timeout_ms,
                          int wake_fd, struct shoal_client_http_resp *out, int *sys_err)
{
    return shoal_client_http_request(addr, "GET", path, NULL, timeout_ms, wake_fd, out, sys_err);
}

int shoal_client_http_request(const struct shoal_addr *addr, const char *method, const char *path,
                              const char *body, int timeout_ms, int wake_fd,
                              struct shoal_client_http_resp *out, int *sys_err)
{
    char host[SHOAL_ADDR_STRLEN], *req = NULL, *buf = NULL;
    size_t len = 0, cap = 0, head_len = 0;
    long long clen = -1;
    bool have_head = false;
    int rc = 0;

    memset(out, 0, sizeof(*out));
    *sys_err = 0;
    shoal_addr_format(addr, host, sizeof(host));
    int rlen = body ? asprintf(&req,
                               "%s %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: shoal-client\r\n"
                               "Accept: application/json\r\nConnection: close\r\n"
                               "Content-Type: application/json\r\nContent-Length: %zu\r\n\r\n%s",
                               method, path, host, strlen(body), body)
                    : asprintf(&req,
                               "%s %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: shoal-client\r\n"
                               "Accept: application/json\r\nConnection: close\r\n"
                               "Content-Length: 0\r\n\r\n",
                               method, path, host);
    if (rlen < 0)
        return SHOAL_ENOMEM;
    int fd = connect_to(addr, timeout_ms, wake_fd, sys_err);
    if (fd < 0) {
        free(req);
        return fd;
    }
    for (size_t off = 0; off < (size_t)rlen;) {
        ssize_t n = send(fd, req + off, (size_t)rlen - off, MSG_NOSIGNAL);
        if (n > 0) {
            off += (size_t)n;
        } else if (n < 0 && errno == EINTR) {
            continue;
        } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            if (wait_fd(fd, POLLOUT, timeout_ms, wake_fd) < 0) {
                *sys_err = errno;
                rc = SHOAL_EIO;
                goto out;
            }
        } else {
            *sys_err = errno;
            rc = SHOAL_EIO;
            goto out;
        }
    }
    for (;;) {
        if (len + 16384 + 1 > cap) {
            size_t ncap = cap ? cap * 2 : 32768;
            if (ncap > SHOAL_CLIENT_HTTP_MAX + 65536) {
                rc = SHOAL_ETOOBIG;
                goto out;
            }
            char *nb = realloc(buf, ncap);
            if (!nb) {
                rc = SHOAL_ENOMEM;
                goto out;
            }
            buf = nb;
            cap = ncap;
        }
        ssize_t n = recv(fd, buf + len, cap - len - 1, 0);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if ((errno == EAGAIN || errno == EWOULDBLOCK) &&
                wait_fd(fd, POLLIN, timeout_ms, wake_fd) == 0)
                continue;
            *sys_err = errno;
            rc = SHOAL_EIO;
            goto out;
        }
        len += (size_t)n;
        if (!have_head) {
            int h = parse_head(buf, len, &head_len, &out->status, &clen);
            if (h < 0) {
                rc = h;
                goto out;
            }
            if (h == 0) {
                have_head = true;
                if (clen > (long long)SHOAL_CLIENT_HTTP_MAX) {
                    rc = SHOAL_ETOOBIG;
                    goto out;
                }
            }
        }
        if (have_head && clen >= 0 && len - head_len >= (size_t)clen)
            break;
        if (n == 0) {
            if (!have_head || clen >= 0) {
                rc = SHOAL_ETRUNC;
                goto out;
            }
            break; /* a body without a length ends at EOF */
        }
    }
    out->body_len = clen >= 0 ? (size_t)clen : len - head_len;
    memmove(buf, buf + head_len, out->body_len);
    buf[out->body_len] = 0;
    out->body = buf;
    buf = NULL;
out:
    free(req);
    free(buf);
    close(fd);
    return rc;
}
