/* http.c -- the agent's HTTP/1.1 server on libev (implements io/http.h).
 *
 * Per connection: a read and a write ev_io and one ev_timer. http_parser is
 * paused at the end of every request, so the handler runs outside parser
 * callbacks and pipelined requests are answered in order; a deferred request
 * keeps it paused (later requests wait in the input buffer) until
 * shoal_http_reply(). Responses carry Content-Length. Limits: body
 * SHOAL_HTTP_MAX_BODY (413), head 16 KB (431), 1024 connections (503), 60 s
 * idle. Errors end in a lingering close, so the client reads the error.
 */
#define _GNU_SOURCE /* accept4 */
#include "io/http.h"

#include <arpa/inet.h>
#include <errno.h>
#include <ev.h>
#include <http_parser.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "io/log.h"
#include "shoal/error.h"

#define HTTP_MAX_HEAD (16 * 1024)   /* request line + header bytes -> 431 */
#define HTTP_MAX_CONNS 1024         /* more are answered 503 and closed */
#define HTTP_IDLE_S 60.0            /* no bytes either way for this long: close */
#define HTTP_LINGER_S 2.0           /* drain time after an error response */
#define HTTP_ACCEPT_BACKOFF_S 0.1   /* out of fds: retry accept after this */
#define HTTP_IN_HIGH (64 * 1024)    /* unparsed input above this: stop reading */
#define HTTP_OUT_HIGH (1024 * 1024) /* unsent output above this: stop parsing */
#define HTTP_READ_CHUNK (16 * 1024)
#define HTTP_ID_BUCKETS 256 /* power of two; ids are sequential */
#define HTTP_ACCEPT_BATCH 64

/* A growable byte buffer; bytes [off, len) are pending. */
struct http_buf {
    char *p;
    size_t off, len, cap;
};

struct http_conn {
    struct shoal_http_server *srv;
    uint64_t id;
    int fd;
    ev_io rw, ww;
    ev_timer timer; /* idle timeout, or the linger deadline */
    http_parser parser;
    struct http_buf in;  /* received, not yet parsed */
    struct http_buf out; /* queued responses, not yet sent */
    /* the request being parsed */
    struct http_buf url, body;
    size_t head_bytes;
    int reject;          /* status to answer when a callback stops the parser */
    char hdr_name[16];   /* lower-cased prefix of the current header name */
    size_t hdr_name_len; /* full length seen so far (may exceed the buffer) */
    char expect[16];     /* value of an Expect header, truncated */
    size_t expect_len;
    char inm[128];       /* value of an If-None-Match header, truncated */
    size_t inm_len;
    bool hdr_in_value, is_expect, is_inm;
    /* the request parsed last: read by dispatch and by a deferred reply */
    bool have_req, keepalive, is_head;
    bool awaiting;    /* a deferred request waits for shoal_http_reply() */
    bool close_after; /* close once out is flushed; parse nothing more */
    bool peer_eof, lingering, write_failed;
    struct http_conn *prev, *next; /* every connection of the server */
    struct http_conn *hnext;       /* id hash chain */
};

struct shoal_http_server {
    struct ev_loop *loop;
    int fd;
    ev_io accept_w;
    ev_timer backoff;
    shoal_http_handler handler;
    void *ud;
    double idle_s; /* HTTP_IDLE_S unless shoal_http_server_set_idle_timeout() */
    uint64_t next_id;
    size_t nconns;
    struct http_conn *conns;
    struct http_conn *by_id[HTTP_ID_BUCKETS];
    int depth;           /* nested entries from libev or shoal_http_reply() */
    bool dying;          /* shoal_http_server_free() was called inside a handler */
    bool accept_failing; /* out of fds: accept is retried on a timer */
};

/* ---- buffers ---- */

static int buf_reserve(struct http_buf *b, size_t extra)
{
    if (b->cap - b->len >= extra)
        return 0;
    if (extra > SIZE_MAX / 2 - b->len)
        return SHOAL_ENOMEM;
    size_t cap = b->cap ? b->cap : 256;
    while (cap - b->len < extra)
        cap *= 2;
    char *p = realloc(b->p, cap);
    if (!p)
        return SHOAL_ENOMEM;
    b->p = p;
    b->cap = cap;
    return 0;
}

static int buf_append(struct http_buf *b, const char *data, size_t n)
{
    int rc = buf_reserve(b, n);
    if (rc)
        return rc;
    memcpy(b->p + b->len, data, n);
    b->len += n;
    return 0;
}

static size_t buf_pending(const struct http_buf *b) { return b->len - b->off; }

/* Moves the pending bytes to the front, and gives memory back once a large
 * burst (a big body, a long pipeline) is gone. */
static void buf_compact(struct http_buf *b)
{
    if (b->off == b->len) {
        b->off = b->len = 0;
        if (b->cap > 64 * 1024) {
            free(b->p);
            b->p = NULL;
            b->cap = 0;
        }
    } else if (b->off > 0) {
        memmove(b->p, b->p + b->off, b->len - b->off);
        b->len -= b->off;
        b->off = 0;
    }
}

static void buf_free(struct http_buf *b)
{
    free(b->p);
    memset(b, 0, sizeof(*b));
}

/* ---- connection table ---- */

static struct http_conn *conn_find(struct shoal_http_server *s, uint64_t id)
{
    struct http_conn *c = s->by_id[id & (HTTP_ID_BUCKETS - 1)];
    while (c && c->id != id)
        c = c->hnext;
    return c;
}

static void conn_link(struct shoal_http_server *s, struct http_conn *c)
{
    struct http_conn **bucket = &s->by_id[c->id & (HTTP_ID_BUCKETS - 1)];
    c->hnext = *bucket;
    *bucket = c;
    c->next = s->conns;
    if (s->conns)
        s->conns->prev = c;
    s->conns = c;
    s->nconns++;
}

static void conn_unlink(struct shoal_http_server *s, struct http_conn *c)
{
    struct http_conn **pp = &s->by_id[c->id & (HTTP_ID_BUCKETS - 1)];
    while (*pp != c)
        pp = &(*pp)->hnext;
    *pp = c->hnext;
    if (c->prev)
        c->prev->next = c->next;
    else
        s->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    s->nconns--;
}

static void conn_close(struct http_conn *c)
{
    struct shoal_http_server *s = c->srv;
    ev_io_stop(s->loop, &c->rw);
    ev_io_stop(s->loop, &c->ww);
    ev_timer_stop(s->loop, &c->timer);
    close(c->fd);
    conn_unlink(s, c);
    buf_free(&c->in);
    buf_free(&c->out);
    buf_free(&c->url);
    buf_free(&c->body);
    free(c);
}

/* ---- responses ---- */

static const char *status_text(int status)
{
    const char *t = http_status_str((enum http_status)status);
    return t[0] == '<' ? "Unknown" : t; /* http-parser says "<unknown>" */
}

/* Queues one response; takes ownership of body. 1xx, 204 and 304 carry no
 * body (RFC 9110 6.4.1); a HEAD response announces the length it omits. */
static int conn_queue_response(struct http_conn *c, int status, const char *content_type,
                               const char *headers, char *body)
{
    char head[512 + SHOAL_HTTP_EXTRA_HEADERS];
    size_t blen = body ? strlen(body) : 0;
    int n;

    if (status == 0)
        status = 200;
    if (status < 100 || status > 999)
        status = 500;
    bool no_body = status < 200 || status == 204 || status == 304;
    if (!content_type)
        content_type = "application/json";
    if (!headers || strlen(headers) >= SHOAL_HTTP_EXTRA_HEADERS)
        headers = "";
    if (no_body) {
        blen = 0;
        n = snprintf(head, sizeof(head), "HTTP/1.1 %d %s\r\n%sConnection: %s\r\n\r\n", status,
                     status_text(status), headers, c->keepalive ? "keep-alive" : "close");
    } else {
        n = snprintf(head, sizeof(head),
                     "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
                     "%sConnection: %s\r\n\r\n",
                     status, status_text(status), content_type, blen, headers,
                     c->keepalive ? "keep-alive" : "close");
    }
    int rc =
        (n < 0 || (size_t)n >= sizeof(head)) ? SHOAL_EINVAL : buf_append(&c->out, head, (size_t)n);
    if (rc == 0 && !c->is_head && blen)
        rc = buf_append(&c->out, body, blen);
    free(body);
    if (!c->keepalive)
        c->close_after = true;
    return rc;
}

static char *strdup_or_null(const char *s)
{
    size_t n = strlen(s) + 1;
    char *p = malloc(n);
    if (p)
        memcpy(p, s, n);
    return p;
}

/* Answers a request the server itself refuses, then closes. msg is a fixed
 * string without quotes or backslashes, so it needs no JSON escaping. */
static int conn_reject(struct http_conn *c, int status, const char *msg)
{
    char tmp[160];
    snprintf(tmp, sizeof(tmp), "{\"error\":\"%s\"}", msg);
    c->keepalive = false;
    c->is_head = false;
    return conn_queue_response(c, status, NULL, NULL, strdup_or_null(tmp));
}

/* ---- parser callbacks: they only collect the request ---- */

static int on_message_begin(http_parser *p)
{
    struct http_conn *c = p->data;
    c->url.len = c->body.len = 0;
    c->head_bytes = 0;
    c->reject = 0;
    c->hdr_name_len = c->expect_len = c->inm_len = 0;
    c->hdr_in_value = c->is_expect = c->is_inm = false;
    return 0;
}

static int head_grow(struct http_conn *c, size_t n)
{
    c->head_bytes += n;
    if (c->head_bytes > HTTP_MAX_HEAD) {
        c->reject = 431;
        return -1;
    }
    return 0;
}

static int on_url(http_parser *p, const char *at, size_t n)
{
    struct http_conn *c = p->data;
    if (head_grow(c, n))
        return -1;
    if (buf_append(&c->url, at, n)) {
        c->reject = 500;
        return -1;
    }
    return 0;
}

static int on_header_field(http_parser *p, const char *at, size_t n)
{
    struct http_conn *c = p->data;
    if (head_grow(c, n))
        return -1;
    if (c->hdr_in_value) { /* a new header starts */
        c->hdr_in_value = false;
        c->hdr_name_len = 0;
    }
    for (size_t i = 0; i < n; i++, c->hdr_name_len++) {
        if (c->hdr_name_len < sizeof(c->hdr_name)) {
            char ch = at[i];
            c->hdr_name[c->hdr_name_len] = (ch >= 'A' && ch <= 'Z') ? (char)(ch + 32) : ch;
        }
    }
    return 0;
}

static int on_header_value(http_parser *p, const char *at, size_t n)
{
    struct http_conn *c = p->data;
    if (head_grow(c, n))
        return -1;
    if (!c->hdr_in_value) {
        c->hdr_in_value = true;
        c->is_expect = c->hdr_name_len == 6 && memcmp(c->hdr_name, "expect", 6) == 0;
        c->is_inm = c->hdr_name_len == 13 && memcmp(c->hdr_name, "if-none-match", 13) == 0;
    }
    if (c->is_expect) {
        for (size_t i = 0; i < n && c->expect_len < sizeof(c->expect); i++)
            c->expect[c->expect_len++] = at[i];
    }
    if (c->is_inm) { /* kept NUL-terminated; a longer value is cut (it then matches nothing) */
        for (size_t i = 0; i < n && c->inm_len + 1 < sizeof(c->inm); i++)
            c->inm[c->inm_len++] = at[i];
    }
    return 0;
}

static int on_headers_complete(http_parser *p)
{
    struct http_conn *c = p->data;
    if (p->http_major != 1) {
        c->reject = 505;
        return -1;
    }
    if ((p->flags & F_CONTENTLENGTH) && p->content_length > SHOAL_HTTP_MAX_BODY) {
        c->reject = 413;
        return -1;
    }
    /* curl and others wait for this before sending a body (RFC 9110 10.1.1).
     * Earlier responses are already queued, so the order stays right. */
    if (c->expect_len == 12 && strncasecmp(c->expect, "100-continue", 12) == 0 &&
        p->http_major == 1 && p->http_minor >= 1 && (p->flags & F_CONTENTLENGTH) &&
        p->content_length > 0) {
        static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
        if (buf_append(&c->out, cont, sizeof(cont) - 1)) {
            c->reject = 500;
            return -1;
        }
    }
    return 0;
}

static int on_body(http_parser *p, const char *at, size_t n)
{
    struct http_conn *c = p->data;
    if (c->body.len + n > SHOAL_HTTP_MAX_BODY) { /* chunked bodies end up here */
        c->reject = 413;
        return -1;
    }
    if (buf_append(&c->body, at, n)) {
        c->reject = 500;
        return -1;
    }
    return 0;
}

static int on_message_complete(http_parser *p)
{
    struct http_conn *c = p->data;
    c->have_req = true;
    /* An Upgrade or CONNECT ends HTTP on this connection: answer and close. */
    c->keepalive = http_should_keep_alive(p) && !p->upgrade;
    c->is_head = p->method == HTTP_HEAD;
    http_parser_pause(p, 1); /* the request is handled outside the parser */
    return 0;
}

static const http_parser_settings parser_settings = {
    .on_message_begin = on_message_begin,
    .on_url = on_url,
    .on_header_field = on_header_field,
    .on_header_value = on_header_value,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_message_complete = on_message_complete,
};

/* ---- request processing ---- */

static void conn_update_watchers(struct http_conn *c)
{
    struct ev_loop *loop = c->srv->loop;
    bool want_write = buf_pending(&c->out) > 0;
    bool want_read =
        !c->peer_eof && (c->lingering || (!c->close_after && buf_pending(&c->in) < HTTP_IN_HIGH &&
                                          buf_pending(&c->out) < HTTP_OUT_HIGH));
    if (want_write && !ev_is_active(&c->ww))
        ev_io_start(loop, &c->ww);
    else if (!want_write && ev_is_active(&c->ww))
        ev_io_stop(loop, &c->ww);
    if (want_read && !ev_is_active(&c->rw))
        ev_io_start(loop, &c->rw);
    else if (!want_read && ev_is_active(&c->rw))
        ev_io_stop(loop, &c->rw);
    /* A deferred request may wait as long as its handler wants (blocking
     * queries carry their own timeout), so it is not idle. */
    if (c->awaiting && !c->lingering)
        ev_timer_stop(loop, &c->timer);
    else if (!ev_is_active(&c->timer))
        ev_timer_again(loop, &c->timer);
}

static void conn_touch(struct http_conn *c)
{
    if (!c->lingering && !c->awaiting)
        ev_timer_again(c->srv->loop, &c->timer);
}

/* Sends what the socket takes. Returns 0, or -1 when the connection must be
 * closed now (write error, or an error response fully sent to a peer that
 * already closed its side). */
static int conn_flush(struct http_conn *c)
{
    bool progress = false;
    while (buf_pending(&c->out) > 0) {
        ssize_t n = send(c->fd, c->out.p + c->out.off, buf_pending(&c->out), MSG_NOSIGNAL);
        if (n > 0) {
            c->out.off += (size_t)n;
            progress = true;
        } else if (n < 0 && errno == EINTR) {
            continue;
        } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            break;
        } else {
            c->write_failed = true;
            return -1;
        }
    }
    buf_compact(&c->out);
    if (progress)
        conn_touch(c);
    if (c->close_after && buf_pending(&c->out) == 0 && !c->lingering) {
        if (c->peer_eof)
            return -1;
        /* Lingering close: a close() with unread input would send a reset
         * that can destroy the response before the client reads it. */
        shutdown(c->fd, SHUT_WR);
        c->lingering = true;
        c->in.off = c->in.len = 0;
        c->timer.repeat = HTTP_LINGER_S;
        ev_timer_again(c->srv->loop, &c->timer);
    }
    conn_update_watchers(c);
    return 0;
}

/* Runs the handler on the request just parsed and queues its response. */
static int conn_dispatch(struct http_conn *c)
{
    struct shoal_http_server *s = c->srv;
    struct http_parser_url u;
    struct shoal_http_req req;
    struct shoal_http_resp resp = {0};
    const char *path = "/", *query = "";
    size_t plen = 1, qlen = 0;

    /* the URL and the body become NUL-terminated strings */
    if (buf_reserve(&c->url, 1) || buf_reserve(&c->body, 1))
        return conn_reject(c, 500, "out of memory");
    c->url.p[c->url.len] = 0;
    c->body.p[c->body.len] = 0;

    http_parser_url_init(&u);
    if (http_parser_parse_url(c->url.p, c->url.len, c->parser.method == HTTP_CONNECT, &u))
        return conn_reject(c, 400, "invalid URL");
    if (u.field_set & (1 << UF_PATH)) {
        path = c->url.p + u.field_data[UF_PATH].off;
        plen = u.field_data[UF_PATH].len;
    }
    if (u.field_set & (1 << UF_QUERY)) {
        query = c->url.p + u.field_data[UF_QUERY].off;
        qlen = u.field_data[UF_QUERY].len;
    }
    char *pq = malloc(plen + qlen + 2);
    if (!pq)
        return conn_reject(c, 500, "out of memory");
    memcpy(pq, path, plen);
    pq[plen] = 0;
    memcpy(pq + plen + 1, query, qlen);
    pq[plen + 1 + qlen] = 0;

    req.method = http_method_str((enum http_method)c->parser.method);
    req.path = pq;
    req.query = pq + plen + 1;
    req.body = c->body.p;
    req.body_len = c->body.len;
    c->inm[c->inm_len] = 0;
    req.if_none_match = c->inm;

    s->depth++;
    s->handler(s->ud, c->id, &req, &resp);
    s->depth--;
    free(pq);
    c->url.len = c->body.len = 0;
    if (c->url.cap > 4096)
        buf_free(&c->url);
    if (c->body.cap > 4096)
        buf_free(&c->body);

    if (resp.deferred) {
        free(resp.body);
        c->awaiting = true;
        return 0;
    }
    return conn_queue_response(c, resp.status, resp.content_type, resp.headers, resp.body);
}

/* Parses buffered input and answers complete requests in order, then sends.
 * Returns 0, or -1 when the connection must be closed now. */
static int conn_process(struct http_conn *c)
{
    struct shoal_http_server *s = c->srv;
    while (!c->awaiting && !c->close_after && !s->dying && buf_pending(&c->in) > 0 &&
           buf_pending(&c->out) < HTTP_OUT_HIGH) {
        size_t n = http_parser_execute(&c->parser, &parser_settings, c->in.p + c->in.off,
                                       buf_pending(&c->in));
        c->in.off += n;
        if (c->have_req) {
            c->have_req = false;
            http_parser_pause(&c->parser, 0);
            if (conn_dispatch(c) < 0)
                return -1; /* out of memory */
            continue;
        }
        enum http_errno e = HTTP_PARSER_ERRNO(&c->parser);
        if (e != HPE_OK) {
            int status = c->reject ? c->reject : e == HPE_HEADER_OVERFLOW ? 431 : 400;
            const char *msg = status == 413   ? "request body too large"
                              : status == 431 ? "request header too large"
                              : status == 505 ? "HTTP version not supported"
                              : status == 500 ? "out of memory"
                                              : http_errno_description(e);
            if (conn_reject(c, status, msg) < 0)
                return -1;
            break;
        }
        if (n == 0)
            break; /* cannot happen without an error; never spin */
    }
    if (s->dying)
        return 0;
    buf_compact(&c->in);
    if (buf_pending(&c->in) == 0)
        buf_free(&c->in); /* idle keep-alive connections hold no read buffer */
    return conn_flush(c);
}

/* ---- libev callbacks ---- */

static void server_destroy(struct shoal_http_server *s);

static void server_leave(struct shoal_http_server *s)
{
    if (--s->depth == 0 && s->dying)
        server_destroy(s);
}

static int conn_on_readable(struct http_conn *c)
{
    if (c->lingering) {
        char sink[4096];
        ssize_t n = recv(c->fd, sink, sizeof(sink), 0);
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
            return 0;
        return n > 0 ? 0 : -1; /* EOF or error: the client got our answer */
    }
    if (buf_reserve(&c->in, HTTP_READ_CHUNK))
        return -1;
    ssize_t n = recv(c->fd, c->in.p + c->in.len, HTTP_READ_CHUNK, 0);
    if (n < 0)
        return (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) ? 0 : -1;
    if (n == 0) {
        c->peer_eof = true;
        /* A client that goes away cancels its deferred request; otherwise
         * finish sending what is queued (a half-closed client still reads). */
        if (c->awaiting || buf_pending(&c->out) == 0)
            return -1;
        c->close_after = true;
        conn_update_watchers(c);
        return 0;
    }
    c->in.len += (size_t)n;
    conn_touch(c);
    return conn_process(c);
}

static void conn_read_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    struct http_conn *c = w->data;
    struct shoal_http_server *s = c->srv;
    s->depth++;
    if (conn_on_readable(c) < 0 && !s->dying)
        conn_close(c);
    server_leave(s);
}

static void conn_write_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    struct http_conn *c = w->data;
    struct shoal_http_server *s = c->srv;
    s->depth++;
    /* conn_process sends, then resumes parsing if output had backed up */
    if (conn_process(c) < 0 && !s->dying)
        conn_close(c);
    server_leave(s);
}

static void conn_timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct http_conn *c = w->data;
    if (!c->lingering)
        shoal_log_debug("http", "connection %llu idle for %.0fs, closing",
                        (unsigned long long)c->id, c->srv->idle_s);
    conn_close(c);
}

/* Over the connection limit: a short 503 and close. The request bytes that
 * already arrived are drained first, so the close is a FIN, not a reset. */
static void refuse_conn(int fd)
{
    static const char msg[] = "HTTP/1.1 503 Service Unavailable\r\n"
                              "Content-Type: application/json\r\nContent-Length: 32\r\n"
                              "Connection: close\r\n\r\n"
                              "{\"error\":\"too many connections\"}";
    char sink[4096];
    for (int i = 0; i < 4 && recv(fd, sink, sizeof(sink), MSG_DONTWAIT) > 0; i++)
        ;
    ssize_t n = send(fd, msg, sizeof(msg) - 1, MSG_NOSIGNAL | MSG_DONTWAIT);
    (void)n; /* best effort: the connection is being refused anyway */
    shutdown(fd, SHUT_WR);
    close(fd);
}

static int conn_new(struct shoal_http_server *s, int fd)
{
    struct http_conn *c = calloc(1, sizeof(*c));
    if (!c)
        return SHOAL_ENOMEM;
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    c->srv = s;
    c->id = s->next_id++;
    c->fd = fd;
    http_parser_init(&c->parser, HTTP_REQUEST);
    c->parser.data = c;
    ev_io_init(&c->rw, conn_read_cb, fd, EV_READ);
    ev_io_init(&c->ww, conn_write_cb, fd, EV_WRITE);
    ev_init(&c->timer, conn_timer_cb);
    c->timer.repeat = c->srv->idle_s;
    c->rw.data = c->ww.data = c->timer.data = c;
    conn_link(s, c);
    ev_io_start(s->loop, &c->rw);
    ev_timer_again(s->loop, &c->timer);
    return 0;
}

static void accept_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    struct shoal_http_server *s = w->data;
    for (int i = 0; i < HTTP_ACCEPT_BATCH; i++) {
        int fd = accept4(s->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
                /* The pending connection stays in the backlog and the listener
                 * stays readable: pause instead of spinning. */
                if (!s->accept_failing) /* once per episode, not every retry */
                    shoal_log_warn("http", "accept: %s; retrying every %.0f ms", strerror(errno),
                                   HTTP_ACCEPT_BACKOFF_S * 1000);
                s->accept_failing = true;
                ev_io_stop(loop, &s->accept_w);
                ev_timer_set(&s->backoff, HTTP_ACCEPT_BACKOFF_S, 0.);
                ev_timer_start(loop, &s->backoff);
            }
            return; /* EAGAIN, or a transient error: wait for the next event */
        }
        if (s->accept_failing)
            shoal_log_info("http", "accepting connections again");
        s->accept_failing = false;
        if (s->nconns >= HTTP_MAX_CONNS) {
            shoal_log_debug("http", "%d connections open; refusing one", HTTP_MAX_CONNS);
            refuse_conn(fd);
        } else if (conn_new(s, fd) < 0) {
            close(fd);
        }
    }
}

static void backoff_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct shoal_http_server *s = w->data;
    ev_io_start(loop, &s->accept_w);
}

/* ---- public API ---- */

struct shoal_http_server *shoal_http_server_new(struct ev_loop *loop,
                                                const struct shoal_addr *bind_addr,
                                                shoal_http_handler h, void *ud, int *err)
{
    struct sockaddr_storage ss;
    socklen_t sl;
    int e = 0, fd = -1, one = 1;

    memset(&ss, 0, sizeof(ss));
    if (!loop || !bind_addr || !h) {
        e = SHOAL_EINVAL;
        goto fail;
    }
    if (bind_addr->family == 4) {
        struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
        sin->sin_family = AF_INET;
        sin->sin_port = htons(bind_addr->port);
        memcpy(&sin->sin_addr, bind_addr->ip, 4);
        sl = sizeof(*sin);
    } else if (bind_addr->family == 6) {
        struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;
        sin6->sin6_family = AF_INET6;
        sin6->sin6_port = htons(bind_addr->port);
        memcpy(&sin6->sin6_addr, bind_addr->ip, 16);
        sl = sizeof(*sin6);
    } else {
        e = SHOAL_EINVAL;
        goto fail;
    }

    fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        e = -errno;
        goto fail;
    }
    /* SO_REUSEADDR: a restarted agent rebinds while old connections sit in
     * TIME_WAIT. V6ONLY: "[::]:7947" means IPv6 only, as written. */
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (ss.ss_family == AF_INET6)
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
    if (bind(fd, (struct sockaddr *)&ss, sl) < 0 || listen(fd, 511) < 0) {
        e = -errno;
        goto fail;
    }

    struct shoal_http_server *s = calloc(1, sizeof(*s));
    if (!s) {
        e = SHOAL_ENOMEM;
        goto fail;
    }
    s->loop = loop;
    s->fd = fd;
    s->handler = h;
    s->idle_s = HTTP_IDLE_S;
    s->ud = ud;
    s->next_id = 1;
    ev_io_init(&s->accept_w, accept_cb, fd, EV_READ);
    s->accept_w.data = s;
    ev_init(&s->backoff, backoff_cb);
    s->backoff.data = s;
    ev_io_start(loop, &s->accept_w);
    if (err)
        *err = 0;
    return s;

fail:
    if (fd >= 0)
        close(fd);
    if (err)
        *err = e;
    return NULL;
}

static void server_destroy(struct shoal_http_server *s)
{
    while (s->conns)
        conn_close(s->conns);
    ev_io_stop(s->loop, &s->accept_w);
    ev_timer_stop(s->loop, &s->backoff);
    close(s->fd);
    free(s);
}

void shoal_http_server_free(struct shoal_http_server *s)
{
    if (!s)
        return;
    if (s->depth > 0) { /* called from a handler: finish when it unwinds */
        s->dying = true;
        ev_io_stop(s->loop, &s->accept_w);
        ev_timer_stop(s->loop, &s->backoff);
        return;
    }
    server_destroy(s);
}

/* Only a connection whose last request was deferred, and not yet answered,
 * takes a reply: a second reply, one for a request that was answered
 * directly, or one made from inside the deferring handler call itself, is
 * refused like one for a closed connection. */
bool shoal_http_reply(struct shoal_http_server *s, uint64_t conn_id, int status,
                      const char *content_type, char *body)
{
    return shoal_http_reply_headers(s, conn_id, status, content_type, NULL, body);
}

bool shoal_http_reply_headers(struct shoal_http_server *s, uint64_t conn_id, int status,
                              const char *content_type, const char *headers, char *body)
{
    struct http_conn *c = s && !s->dying ? conn_find(s, conn_id) : NULL;
    if (!c || !c->awaiting || c->lingering) {
        free(body);
        return false;
    }
    s->depth++;
    c->awaiting = false;
    int rc = conn_queue_response(c, status, content_type, headers, body);
    if (rc == 0)
        rc = conn_process(c); /* sends, then parses pipelined requests */
    bool ok = !c->write_failed;
    if (rc < 0 && !s->dying)
        conn_close(c);
    server_leave(s);
    return ok;
}

bool shoal_http_awaiting(struct shoal_http_server *s, uint64_t conn_id)
{
    struct http_conn *c = conn_find(s, conn_id);
    return c && c->awaiting && !c->lingering && !c->peer_eof;
}

bool shoal_http_peer(struct shoal_http_server *s, uint64_t conn_id, char *out, size_t outlen)
{
    struct http_conn *c = s ? conn_find(s, conn_id) : NULL;
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    if (!c || outlen == 0 || getpeername(c->fd, (struct sockaddr *)&ss, &len) != 0)
        return false;
    const void *a = NULL;
    if (ss.ss_family == AF_INET)
        a = &((struct sockaddr_in *)&ss)->sin_addr;
    else if (ss.ss_family == AF_INET6)
        a = &((struct sockaddr_in6 *)&ss)->sin6_addr;
    return a && inet_ntop(ss.ss_family, a, out, (socklen_t)outlen) != NULL;
}

static int hexval(char ch)
{
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    if (ch >= 'a' && ch <= 'f')
        return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F')
        return ch - 'A' + 10;
    return -1;
}

/* URL-decodes s[0..n) ('+' is a space, %XX a byte) into out. A '%' not
 * followed by two hex digits, or encoding NUL, is kept as written. Returns the
 * decoded length, or -1 if it does not fit (with the NUL) in outlen. */
long shoal_http_url_decode(const char *s, size_t n, char *out, size_t outlen)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        char ch = s[i];
        if (ch == '+') {
            ch = ' ';
        } else if (ch == '%' && i + 2 < n && hexval(s[i + 1]) >= 0 && hexval(s[i + 2]) >= 0 &&
                   (hexval(s[i + 1]) | hexval(s[i + 2])) != 0) {
            ch = (char)(hexval(s[i + 1]) * 16 + hexval(s[i + 2]));
            i += 2;
        }
        if (o + 1 >= outlen)
            return -1;
        out[o++] = ch;
    }
    if (outlen == 0)
        return -1;
    out[o] = 0;
    return (long)o;
}

/* The first "key" or "key=value" whose decoded key matches wins; a bare key
 * has the value "". A value too long for out is reported as absent (and out
 * set to "") rather than silently truncated. */
bool shoal_http_query_get(const char *query, const char *key, char *out, size_t outlen)
{
    char kbuf[256];
    if (out && outlen)
        out[0] = 0;
    if (!query || !key || !out || outlen == 0)
        return false;
    const char *p = query;
    while (*p) {
        size_t len = strcspn(p, "&");
        const char *eq = memchr(p, '=', len);
        size_t klen = eq ? (size_t)(eq - p) : len;
        if (len > 0 && shoal_http_url_decode(p, klen, kbuf, sizeof(kbuf)) >= 0 && strcmp(kbuf, key) == 0) {
            if (!eq)
                return true;
            if (shoal_http_url_decode(eq + 1, len - klen - 1, out, outlen) < 0) {
                out[0] = 0;
                return false;
            }
            return true;
        }
        p += len;
        if (*p == '&')
            p++;
    }
    return false;
}

void shoal_http_server_set_idle_timeout(struct shoal_http_server *s, double seconds)
{
    s->idle_s = seconds > 0 ? seconds : HTTP_IDLE_S;
}
