/* test_http.c -- the HTTP server (io/http.c) against the real libev.
 *
 * Each test runs the server on a fresh loop in its own (forked) process and
 * talks to it over real loopback sockets. The client side is non-blocking and
 * "pumps" the server loop while it waits, so one thread plays both parts and
 * every interleaving is deterministic; only curl runs in a separate process.
 * Waits are bounded by the harness timeout, never by wall-clock guesses.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <ev.h>
#include <fcntl.h>
#include <http_parser.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/resource.h>
#include <sys/socket.h>

#include "io/http.h"
#include "shoal/error.h"
#include "test.h"

/* ---- the server under test ---- */

static struct ev_loop *loop;
static struct shoal_http_server *srv;
static struct shoal_addr srv_addr;

static struct {
    int calls;
    uint64_t last_id;
    uint64_t deferred_id;
    size_t last_body_len;
    char last_method[16];
} hs;

static char *xstrdup(const char *s)
{
    char *p = strdup(s);
    CHECK(p != NULL);
    return p;
}

#define BIG_BODY (4 * 1024 * 1024) /* larger than any socket buffer */

/* /defer defers; /free frees the server from inside the handler; /big sends
 * 4 MB; /status/N answers N; /q echoes the decoded query value "name";
 * anything else echoes "METHOD PATH?QUERY id=ID len=N\nBODY" as text. */
static void handler(void *ud, uint64_t id, const struct shoal_http_req *req,
                    struct shoal_http_resp *resp)
{
    char *body = NULL;
    hs.calls++;
    hs.last_id = id;
    hs.last_body_len = req->body_len;
    snprintf(hs.last_method, sizeof(hs.last_method), "%s", req->method);
    CHECK(strlen(req->body) == req->body_len || memchr(req->body, 0, req->body_len));

    if (strcmp(req->path, "/defer") == 0) {
        hs.deferred_id = id;
        resp->deferred = true;
    } else if (strcmp(req->path, "/free") == 0) {
        shoal_http_server_free(srv);
        srv = NULL;
        resp->body = xstrdup("{}");
    } else if (strcmp(req->path, "/big") == 0) {
        body = malloc(BIG_BODY + 1);
        CHECK(body != NULL);
        for (size_t i = 0; i < BIG_BODY; i++)
            body[i] = (char)('a' + i % 26);
        body[BIG_BODY] = 0;
        resp->body = body;
        resp->content_type = "text/plain";
    } else if (strncmp(req->path, "/status/", 8) == 0) {
        resp->status = atoi(req->path + 8);
        resp->body = xstrdup("{\"status\":true}");
    } else if (strcmp(req->path, "/q") == 0) {
        char v[64];
        if (shoal_http_query_get(req->query, "name", v, sizeof(v))) {
            resp->body = xstrdup(v);
            resp->content_type = "text/plain";
        } else {
            resp->status = 404;
        }
    } else {
        CHECK(asprintf(&body, "%s %s?%s id=%llu len=%zu\n%s", req->method, req->path, req->query,
                       (unsigned long long)id, req->body_len, req->body) > 0);
        resp->body = body;
        resp->content_type = "text/plain";
    }
}

/* A port that was free a moment ago (bind port 0, read it, close). */
static uint16_t free_port(int family)
{
    struct sockaddr_storage ss = {0};
    socklen_t sl = family == AF_INET ? sizeof(struct sockaddr_in) : sizeof(struct sockaddr_in6);
    ss.ss_family = (sa_family_t)family;
    if (family == AF_INET)
        ((struct sockaddr_in *)&ss)->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    else
        ((struct sockaddr_in6 *)&ss)->sin6_addr = in6addr_loopback;
    int fd = socket(family, SOCK_STREAM, 0);
    CHECK(fd >= 0);
    CHECK(bind(fd, (struct sockaddr *)&ss, sl) == 0);
    CHECK(getsockname(fd, (struct sockaddr *)&ss, &sl) == 0);
    close(fd);
    return ntohs(family == AF_INET ? ((struct sockaddr_in *)&ss)->sin_port
                                   : ((struct sockaddr_in6 *)&ss)->sin6_port);
}

static void ensure_loop(void)
{
    if (!loop)
        loop = ev_loop_new(EVFLAG_AUTO);
    CHECK(loop != NULL);
}

static void start_server_at(const char *host_fmt, int family)
{
    char buf[SHOAL_ADDR_STRLEN];
    int err = 1;
    ensure_loop();
    snprintf(buf, sizeof(buf), host_fmt, free_port(family));
    CHECK_EQ(shoal_addr_parse(buf, &srv_addr), 0);
    srv = shoal_http_server_new(loop, &srv_addr, handler, NULL, &err);
    CHECKF(srv != NULL, "server on %s: %d", buf, err);
    CHECK_EQ(err, 0);
}

static void start_server(void) { start_server_at("127.0.0.1:%u", AF_INET); }

static int count_fds(void)
{
    int n = 0;
    DIR *d = opendir("/proc/self/fd");
    CHECK(d != NULL);
    for (struct dirent *e; (e = readdir(d));)
        n += e->d_name[0] != '.';
    closedir(d);
    return n - 1; /* the DIR's own fd */
}

/* Runs the server loop for whatever is ready, then waits up to 1 ms on fd. */
static bool pump_wait(int fd, short events)
{
    ev_run(loop, EVRUN_NOWAIT);
    struct pollfd p = {.fd = fd, .events = events};
    return fd >= 0 ? poll(&p, 1, 1) > 0 : (poll(NULL, 0, 1), false);
}

/* ---- a non-blocking test client with its own response parser ---- */

struct client {
    int fd;
    http_parser p;
    char *in;
    size_t in_off, in_len, in_cap;
    bool eof;
    /* the response being read */
    int status;
    char *body;
    size_t body_len, body_cap;
    char hdrs[2048]; /* "name: value\n" lines, names lower-cased */
    size_t hdrs_len;
    bool in_value, done;
    bool head; /* the request was HEAD: the response has no body */
};

static void hdrs_add(struct client *c, const char *at, size_t n, bool lower)
{
    for (size_t i = 0; i < n && c->hdrs_len + 3 < sizeof(c->hdrs); i++) {
        char ch = at[i];
        c->hdrs[c->hdrs_len++] = lower && ch >= 'A' && ch <= 'Z' ? (char)(ch + 32) : ch;
    }
    c->hdrs[c->hdrs_len] = 0;
}

static int cl_on_begin(http_parser *p)
{
    struct client *c = p->data;
    c->body_len = c->hdrs_len = 0;
    c->hdrs[0] = 0;
    c->in_value = false;
    return 0;
}

static int cl_on_field(http_parser *p, const char *at, size_t n)
{
    struct client *c = p->data;
    if (c->in_value)
        hdrs_add(c, "\n", 1, false);
    c->in_value = false;
    hdrs_add(c, at, n, true);
    return 0;
}

static int cl_on_value(http_parser *p, const char *at, size_t n)
{
    struct client *c = p->data;
    if (!c->in_value)
        hdrs_add(c, ": ", 2, false);
    c->in_value = true;
    hdrs_add(c, at, n, false);
    return 0;
}

static int cl_on_headers_complete(http_parser *p)
{
    struct client *c = p->data;
    return c->head ? 1 : 0; /* 1: this response has no body */
}

static int cl_on_body(http_parser *p, const char *at, size_t n)
{
    struct client *c = p->data;
    if (c->body_len + n + 1 > c->body_cap) {
        c->body_cap = (c->body_len + n + 1) * 2;
        c->body = realloc(c->body, c->body_cap);
        CHECK(c->body != NULL);
    }
    memcpy(c->body + c->body_len, at, n);
    c->body_len += n;
    c->body[c->body_len] = 0;
    return 0;
}

static int cl_on_complete(http_parser *p)
{
    struct client *c = p->data;
    c->status = (int)p->status_code;
    if (c->in_value)
        hdrs_add(c, "\n", 1, false);
    if (!c->body) {
        c->body_cap = 1;
        c->body = calloc(1, 1);
        CHECK(c->body != NULL);
    }
    c->body[c->body_len] = 0;
    c->done = true;
    http_parser_pause(p, 1);
    return 0;
}

static const http_parser_settings cl_settings = {
    .on_message_begin = cl_on_begin,
    .on_header_field = cl_on_field,
    .on_header_value = cl_on_value,
    .on_headers_complete = cl_on_headers_complete,
    .on_body = cl_on_body,
    .on_message_complete = cl_on_complete,
};

static struct client *cl_connect_to(const struct shoal_addr *a)
{
    struct client *c = calloc(1, sizeof(*c));
    struct sockaddr_storage ss = {0};
    socklen_t sl;
    CHECK(c != NULL);
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
    c->fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    CHECK(c->fd >= 0);
    /* loopback connects complete in the kernel's backlog, without the loop */
    CHECKF(connect(c->fd, (struct sockaddr *)&ss, sl) == 0, "connect: %s", strerror(errno));
    CHECK(fcntl(c->fd, F_SETFL, O_NONBLOCK) == 0);
    http_parser_init(&c->p, HTTP_RESPONSE);
    c->p.data = c;
    return c;
}

static struct client *cl_connect(void) { return cl_connect_to(&srv_addr); }

static void cl_free(struct client *c)
{
    if (c->fd >= 0)
        close(c->fd);
    free(c->in);
    free(c->body);
    free(c);
}

static void cl_send(struct client *c, const char *data, size_t len)
{
    while (len > 0) {
        ssize_t n = send(c->fd, data, len, MSG_NOSIGNAL);
        if (n > 0) {
            data += n;
            len -= (size_t)n;
        } else {
            CHECKF(n < 0 && (errno == EAGAIN || errno == EINTR), "send: %s", strerror(errno));
            pump_wait(c->fd, POLLOUT);
        }
    }
}

static void cl_sends(struct client *c, const char *s) { cl_send(c, s, strlen(s)); }

/* Reads input into c->in; sets eof on EOF or reset. */
static void cl_fill(struct client *c)
{
    if (c->in_cap - c->in_len < 65536) {
        c->in_cap = c->in_cap * 2 + 65536;
        c->in = realloc(c->in, c->in_cap);
        CHECK(c->in != NULL);
    }
    ssize_t n = recv(c->fd, c->in + c->in_len, c->in_cap - c->in_len, 0);
    if (n > 0)
        c->in_len += (size_t)n;
    else if (n == 0 || (errno != EAGAIN && errno != EINTR))
        c->eof = true;
}

/* Waits for the next complete response. Returns false on EOF before one. */
static bool cl_read(struct client *c)
{
    for (;;) {
        if (c->in_len > c->in_off) {
            size_t n =
                http_parser_execute(&c->p, &cl_settings, c->in + c->in_off, c->in_len - c->in_off);
            c->in_off += n;
            if (c->done) {
                c->done = false;
                http_parser_pause(&c->p, 0);
                return true;
            }
            CHECKF(HTTP_PARSER_ERRNO(&c->p) == HPE_OK, "bad response: %s",
                   http_errno_description(HTTP_PARSER_ERRNO(&c->p)));
        }
        if (c->eof)
            return false;
        if (pump_wait(c->fd, POLLIN))
            cl_fill(c);
    }
}

/* Waits until the server closes the connection, discarding any bytes. */
static void cl_wait_eof(struct client *c)
{
    while (!c->eof)
        if (pump_wait(c->fd, POLLIN))
            cl_fill(c);
}

static bool has_header(const struct client *c, const char *line)
{
    return strstr(c->hdrs, line) != NULL;
}

/* Sends one request and reads its response. */
static void cl_roundtrip(struct client *c, const char *req, int want_status)
{
    cl_sends(c, req);
    CHECKF(cl_read(c), "no response to %s", req);
    CHECKF(c->status == want_status, "status %d, want %d", c->status, want_status);
}

/* Pumps the loop until the process holds exactly n fds. */
static void wait_fds(int n)
{
    while (count_fds() != n)
        pump_wait(-1, 0);
}

/* ---- tests ---- */

TEST(get_and_post_round_trip, "GET and POST round trip with body, status and content type")
{
    start_server();
    struct client *c = cl_connect();

    cl_roundtrip(c, "GET /v1/members HTTP/1.1\r\nHost: x\r\n\r\n", 200);
    CHECK(strncmp(c->body, "GET /v1/members? id=", 20) == 0);
    CHECK(has_header(c, "content-type: text/plain\n"));
    CHECK(has_header(c, "connection: keep-alive\n"));
    CHECK(strcmp(hs.last_method, "GET") == 0);

    cl_roundtrip(c,
                 "POST /v1/join?x=1 HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\n\r\n"
                 "hello world",
                 200);
    CHECKF(strstr(c->body, "POST /v1/join?x=1 ") == c->body, "%s", c->body);
    CHECK(strstr(c->body, "len=11\nhello world") != NULL);
    CHECK_EQ(hs.last_body_len, 11);

    cl_roundtrip(c, "GET /status/404 HTTP/1.1\r\n\r\n", 404);
    CHECK(has_header(c, "content-type: application/json\n"));
    CHECK(strcmp(c->body, "{\"status\":true}") == 0);

    cl_roundtrip(c, "GET /status/204 HTTP/1.1\r\n\r\n", 204);
    CHECK_EQ(c->body_len, 0);

    /* HEAD: the length of the body, but no body */
    c->head = true;
    cl_roundtrip(c, "HEAD /status/200 HTTP/1.1\r\n\r\n", 200);
    c->head = false;
    CHECK(has_header(c, "content-length: 15\n"));
    CHECK(strcmp(hs.last_method, "HEAD") == 0);
    CHECK_EQ(hs.calls, 5);

    /* chunked request bodies are joined */
    cl_roundtrip(c,
                 "PUT /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
                 "3\r\nabc\r\n4\r\ndefg\r\n0\r\n\r\n",
                 200);
    CHECK(strstr(c->body, "len=7\nabcdefg") != NULL);
    cl_free(c);
}

TEST(query_get_decodes, "query values are found by key and URL-decoded")
{
    char v[32];
    const char *q = "a=1&name=web%20api+x&empty=&bare&pct=%zz%4&k%65y=v&a=2&nul=%00&pl=%2B";
    CHECK(shoal_http_query_get(q, "a", v, sizeof(v)) && strcmp(v, "1") == 0);
    CHECK(shoal_http_query_get(q, "name", v, sizeof(v)) && strcmp(v, "web api x") == 0);
    CHECK(shoal_http_query_get(q, "empty", v, sizeof(v)) && strcmp(v, "") == 0);
    CHECK(shoal_http_query_get(q, "bare", v, sizeof(v)) && strcmp(v, "") == 0);
    CHECK(shoal_http_query_get(q, "pct", v, sizeof(v)) && strcmp(v, "%zz%4") == 0);
    CHECK(shoal_http_query_get(q, "key", v, sizeof(v)) && strcmp(v, "v") == 0);
    CHECK(shoal_http_query_get(q, "nul", v, sizeof(v)) && strcmp(v, "%00") == 0);
    CHECK(shoal_http_query_get(q, "pl", v, sizeof(v)) && strcmp(v, "+") == 0);
    CHECK(!shoal_http_query_get(q, "missing", v, sizeof(v)) && v[0] == 0);
    CHECK(!shoal_http_query_get(q, "nam", v, sizeof(v)));
    CHECK(!shoal_http_query_get("", "a", v, sizeof(v)));
    CHECK(!shoal_http_query_get(NULL, "a", v, sizeof(v)));
    /* too long for out: absent, not truncated */
    CHECK(!shoal_http_query_get(q, "name", v, 9) && v[0] == 0);
    CHECK(shoal_http_query_get(q, "name", v, 10) && strcmp(v, "web api x") == 0);
    CHECK(!shoal_http_query_get(q, "a", v, 0));

    /* and through the server */
    start_server();
    struct client *c = cl_connect();
    cl_roundtrip(c, "GET /q?x=1&name=a%26b%3Dc+d HTTP/1.1\r\n\r\n", 200);
    CHECK(strcmp(c->body, "a&b=c d") == 0);
    cl_roundtrip(c, "GET /q HTTP/1.1\r\n\r\n", 404);
    cl_free(c);
}

TEST(keep_alive, "keep-alive serves two requests on one connection with one id")
{
    start_server();
    struct client *c = cl_connect();
    cl_roundtrip(c, "GET /one HTTP/1.1\r\n\r\n", 200);
    uint64_t id1 = hs.last_id;
    cl_roundtrip(c, "GET /two HTTP/1.1\r\n\r\n", 200);
    CHECK_EQ(hs.last_id, id1);
    CHECK(strncmp(c->body, "GET /two?", 9) == 0);
    /* a second connection has a new id */
    struct client *c2 = cl_connect();
    cl_roundtrip(c2, "GET /three HTTP/1.1\r\n\r\n", 200);
    CHECK(hs.last_id != id1);
    cl_free(c);
    cl_free(c2);
}

TEST(pipelined, "pipelined requests are answered in order")
{
    start_server();
    struct client *c = cl_connect();
    cl_sends(c, "GET /a HTTP/1.1\r\n\r\n"
                "POST /b HTTP/1.1\r\nContent-Length: 3\r\n\r\nxyz"
                "GET /status/201 HTTP/1.1\r\n\r\n"
                "GET /c HTTP/1.1\r\nConnection: close\r\n\r\n"
                "GET /never HTTP/1.1\r\n\r\n");
    CHECK(cl_read(c) && c->status == 200 && strncmp(c->body, "GET /a?", 7) == 0);
    CHECK(cl_read(c) && c->status == 200 && strstr(c->body, "POST /b?") == c->body);
    CHECK(strstr(c->body, "\nxyz") != NULL);
    CHECK(cl_read(c) && c->status == 201);
    CHECK(cl_read(c) && c->status == 200 && strncmp(c->body, "GET /c?", 7) == 0);
    CHECK(has_header(c, "connection: close\n"));
    /* nothing after Connection: close is served */
    CHECK(!cl_read(c));
    CHECK_EQ(hs.calls, 4);
    cl_free(c);
}

static void reply_later_cb(struct ev_loop *l, ev_timer *w, int revents)
{
    bool *ok = w->data;
    *ok = shoal_http_reply(srv, hs.deferred_id, 202, "text/plain", xstrdup("later"));
}

TEST(deferred_from_timer, "a deferred reply sent from an ev_timer reaches the client")
{
    start_server();
    struct client *c = cl_connect();
    bool ok = false;
    ev_timer t;
    ev_timer_init(&t, reply_later_cb, 0.05, 0.);
    t.data = &ok;

    cl_sends(c, "GET /defer HTTP/1.1\r\n\r\n");
    while (hs.calls == 0)
        pump_wait(c->fd, POLLIN);
    ev_timer_start(loop, &t);
    CHECK(cl_read(c));
    CHECK(ok);
    CHECK_EQ(c->status, 202);
    CHECK(strcmp(c->body, "later") == 0);
    /* answered once: a second reply is refused, and the body still freed */
    CHECK(!shoal_http_reply(srv, hs.deferred_id, 200, NULL, xstrdup("twice")));
    /* the connection lives on */
    cl_roundtrip(c, "GET /after HTTP/1.1\r\n\r\n", 200);
    CHECK_EQ(hs.last_id, hs.deferred_id);
    cl_free(c);
}

TEST(deferred_blocks_pipeline, "requests pipelined behind a deferred one wait for its reply")
{
    start_server();
    struct client *c = cl_connect();
    bool ok = false;
    ev_timer t;
    ev_timer_init(&t, reply_later_cb, 0.05, 0.);
    t.data = &ok;

    cl_sends(c, "GET /defer HTTP/1.1\r\n\r\nGET /next HTTP/1.1\r\n\r\n");
    while (hs.calls == 0)
        pump_wait(c->fd, POLLIN);
    /* the loop runs, but /next is not handled before /defer is answered */
    for (int i = 0; i < 20; i++)
        pump_wait(c->fd, POLLIN);
    CHECK_EQ(hs.calls, 1);
    ev_timer_start(loop, &t);
    CHECK(cl_read(c) && c->status == 202 && strcmp(c->body, "later") == 0);
    CHECK(cl_read(c) && c->status == 200 && strncmp(c->body, "GET /next?", 10) == 0);
    CHECK_EQ(hs.calls, 2);
    cl_free(c);
}

TEST(reply_to_closed, "a reply to a connection that closed is refused")
{
    start_server();
    struct client *c = cl_connect();
    cl_sends(c, "GET /defer HTTP/1.1\r\n\r\n");
    while (hs.calls == 0)
        pump_wait(c->fd, POLLIN);
    close(c->fd);
    c->fd = -1;
    /* While a request is deferred the only armed watchers are the listener
     * and that connection's reader: one blocking iteration sees the EOF. */
    ev_run(loop, EVRUN_ONCE);
    CHECK(!shoal_http_reply(srv, hs.deferred_id, 200, NULL, xstrdup("gone")));
    /* ids never handed out, and a NULL server, are refused too */
    CHECK(!shoal_http_reply(srv, hs.deferred_id + 1000, 200, NULL, xstrdup("x")));
    CHECK(!shoal_http_reply(NULL, 1, 200, NULL, xstrdup("x")));
    cl_free(c);
}

TEST(body_too_large, "a body over SHOAL_HTTP_MAX_BODY gets 413 and the connection closes")
{
    char req[256];
    start_server();
    struct client *c = cl_connect();
    snprintf(req, sizeof(req), "POST /x HTTP/1.1\r\nContent-Length: %d\r\n\r\nsome of it",
             SHOAL_HTTP_MAX_BODY + 1);
    cl_roundtrip(c, req, 413);
    CHECK(strstr(c->body, "\"error\"") != NULL);
    CHECK(has_header(c, "connection: close\n"));
    cl_wait_eof(c);
    cl_free(c);

    /* a chunked body is cut off when it grows past the limit */
    c = cl_connect();
    cl_sends(c, "POST /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n");
    char *chunk = malloc(65536 + 16);
    CHECK(chunk != NULL);
    int n = snprintf(chunk, 16, "10000\r\n");
    memset(chunk + n, 'z', 65536);
    memcpy(chunk + n + 65536, "\r\n", 2);
    for (int i = 0; i < SHOAL_HTTP_MAX_BODY / 65536 + 1 && !c->eof; i++) {
        cl_send(c, chunk, (size_t)n + 65536 + 2);
        if (pump_wait(c->fd, POLLIN))
            break; /* the 413 is here */
    }
    CHECK(cl_read(c));
    CHECK_EQ(c->status, 413);
    CHECK_EQ(hs.calls, 0);
    free(chunk);
    cl_free(c);
}

TEST(body_at_limit, "a body of exactly SHOAL_HTTP_MAX_BODY bytes is accepted")
{
    start_server();
    struct client *c = cl_connect();
    char head[128];
    snprintf(head, sizeof(head), "POST /x HTTP/1.1\r\nContent-Length: %d\r\n\r\n",
             SHOAL_HTTP_MAX_BODY);
    char *body = malloc(SHOAL_HTTP_MAX_BODY);
    CHECK(body != NULL);
    memset(body, 'b', SHOAL_HTTP_MAX_BODY);
    cl_sends(c, head);
    cl_send(c, body, SHOAL_HTTP_MAX_BODY);
    CHECK(cl_read(c));
    CHECK_EQ(c->status, 200);
    CHECK_EQ(hs.last_body_len, SHOAL_HTTP_MAX_BODY);
    free(body);
    cl_free(c);
}

TEST(garbage_400, "garbage gets 400 and a close, other connections are unaffected")
{
    start_server();
    struct client *good = cl_connect();
    cl_roundtrip(good, "GET /before HTTP/1.1\r\n\r\n", 200);

    const char *bad[] = {
        "\x01\x02\x03 garbage\r\n\r\n",
        "GET / HTTP/1.1\r\nContent-Length: x\r\n\r\n",
        "GET / HTTP/1.1\r\nBad Header\r\n\r\n",
        "GET http://[::1 HTTP/1.1\r\n\r\n",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct client *c = cl_connect();
        cl_sends(c, bad[i]);
        CHECKF(cl_read(c), "no answer to bad request %zu", i);
        CHECKF(c->status == 400, "bad request %zu got %d", i, c->status);
        CHECK(strstr(c->body, "{\"error\":\"") == c->body);
        cl_wait_eof(c);
        cl_free(c);
    }
    /* a version other than 1.x */
    struct client *c = cl_connect();
    cl_roundtrip(c, "GET / HTTP/2.0\r\n\r\n", 505);
    cl_wait_eof(c);
    cl_free(c);
    CHECK_EQ(hs.calls, 1);
    cl_roundtrip(good, "GET /after HTTP/1.1\r\n\r\n", 200);
    cl_free(good);
}

TEST(header_too_large, "a request head over 16 KB gets 431")
{
    start_server();
    struct client *c = cl_connect();
    size_t n = 20 * 1024;
    char *req = malloc(n + 64);
    CHECK(req != NULL);
    int h = snprintf(req, 64, "GET / HTTP/1.1\r\nX-Big: ");
    memset(req + h, 'h', n);
    strcpy(req + h + n, "\r\n\r\n");
    cl_sends(c, req);
    CHECK(cl_read(c));
    CHECK_EQ(c->status, 431);
    cl_wait_eof(c);
    CHECK_EQ(hs.calls, 0);
    free(req);
    cl_free(c);
}

TEST(expect_continue, "Expect: 100-continue gets an interim 100 before the body is sent")
{
    start_server();
    struct client *c = cl_connect();
    cl_sends(c, "POST /e HTTP/1.1\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n");
    CHECK(cl_read(c));
    CHECK_EQ(c->status, 100);
    CHECK_EQ(hs.calls, 0);
    cl_sends(c, "body");
    CHECK(cl_read(c));
    CHECK_EQ(c->status, 200);
    CHECK(strstr(c->body, "len=4\nbody") != NULL);
    cl_free(c);
}

TEST(large_response, "a 4 MB response is sent in full through a slow reader")
{
    start_server();
    struct client *c = cl_connect();
    cl_roundtrip(c, "GET /big HTTP/1.1\r\n\r\n", 200);
    CHECK_EQ(c->body_len, BIG_BODY);
    for (size_t i = 0; i < BIG_BODY; i += 4099)
        CHECK(c->body[i] == (char)('a' + i % 26));
    cl_roundtrip(c, "GET /small HTTP/1.1\r\n\r\n", 200);
    cl_free(c);
}

TEST(http10_closes, "an HTTP/1.0 request without keep-alive is answered and closed")
{
    start_server();
    struct client *c = cl_connect();
    cl_roundtrip(c, "GET /old HTTP/1.0\r\n\r\n", 200);
    CHECK(has_header(c, "connection: close\n"));
    cl_wait_eof(c);
    cl_free(c);

    c = cl_connect();
    cl_roundtrip(c, "GET /old HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", 200);
    cl_roundtrip(c, "GET /old2 HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", 200);
    cl_free(c);
}

TEST(no_fd_leak, "many connections opened and closed leave no fd behind")
{
    start_server();
    int base = count_fds();
    for (int round = 0; round < 3; round++) {
        struct client *cs[100];
        for (int i = 0; i < 100; i++)
            cs[i] = cl_connect();
        for (int i = 0; i < 100; i++) {
            switch (i % 4) {
            case 0: /* a full exchange */
                cl_roundtrip(cs[i], "GET /x HTTP/1.1\r\n\r\n", 200);
                break;
            case 1: /* half a request */
                cl_sends(cs[i], "POST /x HTTP/1.1\r\nContent-Length: 10\r\n\r\nabc");
                break;
            case 2: /* a deferred request never answered */
                cl_sends(cs[i], "GET /defer HTTP/1.1\r\n\r\n");
                break;
            default: /* nothing at all */
                break;
            }
        }
        for (int i = 0; i < 50; i++)
            pump_wait(-1, 0);
        for (int i = 0; i < 100; i++)
            cl_free(cs[i]);
        wait_fds(base);
    }
    CHECK(hs.calls >= 3 * 50);
}

TEST(free_closes_all, "freeing the server closes every connection and the listener")
{
    ensure_loop();
    int base = count_fds();
    start_server();
    struct client *a = cl_connect(), *b = cl_connect();
    cl_roundtrip(a, "GET /x HTTP/1.1\r\n\r\n", 200);
    cl_sends(b, "GET /defer HTTP/1.1\r\n\r\n");
    while (hs.calls < 2)
        pump_wait(b->fd, POLLIN);
    shoal_http_server_free(srv);
    srv = NULL;
    CHECK_EQ(count_fds(), base + 2); /* the two clients */
    cl_wait_eof(a);
    cl_wait_eof(b);
    shoal_http_server_free(NULL);
    cl_free(a);
    cl_free(b);
}

TEST(free_inside_handler, "freeing the server from inside its handler is safe")
{
    ensure_loop();
    int base = count_fds();
    start_server();
    struct client *a = cl_connect(), *b = cl_connect();
    cl_roundtrip(a, "GET /x HTTP/1.1\r\n\r\n", 200);
    cl_sends(b, "GET /defer HTTP/1.1\r\n\r\n");
    cl_sends(a, "GET /free HTTP/1.1\r\n\r\nGET /x HTTP/1.1\r\n\r\n");
    cl_wait_eof(a);
    cl_wait_eof(b);
    CHECK(srv == NULL);
    CHECK_EQ(hs.calls, 3); /* the request after /free was not handled */
    CHECK_EQ(count_fds(), base + 2);
    cl_free(a);
    cl_free(b);
}

TEST(bind_errors, "bind errors come back as -errno, a bad address as SHOAL_EINVAL")
{
    int err = 0;
    start_server();
    CHECK(shoal_http_server_new(loop, &srv_addr, handler, NULL, &err) == NULL);
    CHECK_EQ(err, -EADDRINUSE);

    struct shoal_addr bad = srv_addr;
    bad.family = 0;
    err = 0;
    CHECK(shoal_http_server_new(loop, &bad, handler, NULL, &err) == NULL);
    CHECK_EQ(err, SHOAL_EINVAL);

    /* an address this host does not have */
    CHECK_EQ(shoal_addr_parse("192.0.2.1:7947", &bad), 0);
    CHECK(shoal_http_server_new(loop, &bad, handler, NULL, &err) == NULL);
    CHECK_EQ(err, -EADDRNOTAVAIL);
    CHECK(shoal_http_server_new(loop, &srv_addr, NULL, NULL, &err) == NULL);
    CHECK_EQ(err, SHOAL_EINVAL);
}

TEST(ipv6, "the server listens and answers on IPv6")
{
    int fd = socket(AF_INET6, SOCK_STREAM, 0);
    struct sockaddr_in6 sin6 = {.sin6_family = AF_INET6, .sin6_addr = IN6ADDR_LOOPBACK_INIT};
    if (fd < 0 || bind(fd, (struct sockaddr *)&sin6, sizeof(sin6)) < 0) {
        fprintf(stderr, "skipped: this host has no IPv6 loopback\n");
        return;
    }
    close(fd);
    start_server_at("[::1]:%u", AF_INET6);
    CHECK_EQ(srv_addr.family, 6);
    struct client *c = cl_connect();
    cl_roundtrip(c, "GET /six HTTP/1.1\r\n\r\n", 200);
    CHECK(strncmp(c->body, "GET /six?", 9) == 0);
    cl_free(c);
}

TEST(max_connections, "connections beyond the limit of 1024 get 503 and are closed")
{
    enum { LIMIT = 1024 };
    struct rlimit rl;
    CHECK(getrlimit(RLIMIT_NOFILE, &rl) == 0);
    rl.rlim_cur = rl.rlim_max;
    CHECK(setrlimit(RLIMIT_NOFILE, &rl) == 0);
    CHECKF(rl.rlim_cur >= 2 * LIMIT + 64, "needs %d fds, RLIMIT_NOFILE is %llu", 2 * LIMIT + 64,
           (unsigned long long)rl.rlim_cur);

    start_server();
    struct client **cs = calloc(LIMIT, sizeof(*cs));
    CHECK(cs != NULL);
    for (int i = 0; i < LIMIT; i++) {
        cs[i] = cl_connect();
        cl_roundtrip(cs[i], "GET /x HTTP/1.1\r\n\r\n", 200);
    }
    struct client *extra = cl_connect();
    cl_roundtrip(extra, "GET /x HTTP/1.1\r\n\r\n", 503);
    CHECK(strstr(extra->body, "too many connections") != NULL);
    cl_wait_eof(extra);
    cl_free(extra);
    CHECK_EQ(hs.calls, LIMIT);

    /* one leaves, one more fits */
    int fds = count_fds();
    cl_free(cs[0]);
    wait_fds(fds - 2);
    cs[0] = cl_connect();
    cl_roundtrip(cs[0], "GET /x HTTP/1.1\r\n\r\n", 200);
    for (int i = 0; i < LIMIT; i++)
        cl_free(cs[i]);
    free(cs);
}

TEST(fd_exhaustion, "running out of fds pauses accepting, and serving resumes after")
{
    start_server();
    struct client *first = cl_connect();
    cl_roundtrip(first, "GET /x HTTP/1.1\r\n\r\n", 200);

    /* Lower the fd limit just above the highest fd, fill every free slot,
     * then free one: the next client takes it, and the server's accept of
     * that client fails with EMFILE. */
    struct rlimit rl;
    CHECK(getrlimit(RLIMIT_NOFILE, &rl) == 0);
    int maxfd = 0;
    for (int fd = 0; fd < 65536; fd++)
        if (fcntl(fd, F_GETFD) >= 0)
            maxfd = fd;
    struct rlimit low = {.rlim_cur = (rlim_t)maxfd + 8, .rlim_max = rl.rlim_max};
    CHECK(setrlimit(RLIMIT_NOFILE, &low) == 0);
    int *fillers = calloc((size_t)maxfd + 8, sizeof(int)), nfill = 0;
    CHECK(fillers != NULL);
    for (int fd; (fd = dup(first->fd)) >= 0;)
        fillers[nfill++] = fd;
    CHECKF(nfill > 0 && errno == EMFILE, "%d fds: %s", nfill, strerror(errno));
    close(fillers[--nfill]);
    struct client *c = cl_connect();
    cl_sends(c, "GET /late HTTP/1.1\r\n\r\n");
    for (int i = 0; i < 50; i++)
        pump_wait(-1, 0); /* accept fails with EMFILE; the server must not spin or die */
    CHECK_EQ(hs.calls, 1);
    /* the old connection still works */
    cl_roundtrip(first, "GET /x HTTP/1.1\r\n\r\n", 200);
    CHECK(setrlimit(RLIMIT_NOFILE, &rl) == 0);
    while (nfill > 0)
        close(fillers[--nfill]);
    free(fillers);
    CHECK(cl_read(c)); /* accepted once the backoff timer retries */
    CHECK_EQ(c->status, 200);
    CHECK(strncmp(c->body, "GET /late?", 10) == 0);
    cl_free(c);
    cl_free(first);
}

static void curl_once(const char *args, const char *want_body, const char *want_code)
{
    char cmd[4096], out[4096] = {0};
    char addr[SHOAL_ADDR_STRLEN];
    snprintf(cmd, sizeof(cmd), "curl -sS --max-time 20 -w '\\n%%{http_code}' %s 'http://%s/c?k=v'",
             args, shoal_addr_format(&srv_addr, addr, sizeof(addr)));
    FILE *p = popen(cmd, "r");
    CHECK(p != NULL);
    size_t n = fread(out, 1, sizeof(out) - 1, p);
    CHECKF(pclose(p) == 0, "%s failed", cmd);
    out[n] = 0;
    char *nl = strrchr(out, '\n');
    CHECK(nl != NULL);
    CHECKF(strcmp(nl + 1, want_code) == 0, "curl got code %s", nl + 1);
    *nl = 0;
    CHECKF(strstr(out, want_body) != NULL, "curl got body %s", out);
}

TEST(curl, "curl gets answers for a GET and a POST")
{
    CHECKF(system("curl --version >/dev/null 2>&1") == 0, "curl is not installed");
    start_server();
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) { /* the server process */
        ev_loop_fork(loop);
        ev_run(loop, 0);
        _exit(0);
    }
    curl_once("", "GET /c?k=v id=1 len=0\n", "200");
    curl_once("-d hello", "POST /c?k=v id=2 len=5\nhello", "200");
    /* 2 KB: curl sends Expect: 100-continue first and waits for the 100 */
    char big[2100 + 8];
    memcpy(big, "-d ", 3);
    memset(big + 3, 'q', 2048);
    big[3 + 2048] = 0;
    curl_once(big, "POST /c?k=v id=3 len=2048\nqqq", "200");
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
}

TEST_T(idle_timeout, "an idle connection is closed once the idle timeout passes", 60)
{
    start_server();
    shoal_http_server_set_idle_timeout(srv, 1.0);
    struct client *c = cl_connect();
    cl_roundtrip(c, "GET /x HTTP/1.1\r\n\r\n", 200);
    ev_tstamp t0 = ev_time();
    cl_wait_eof(c);
    ev_tstamp idle = ev_time() - t0;
    CHECKF(idle > 0.9, "closed early, after %.1f s", idle);
    cl_free(c);
}

TEST_MAIN()
