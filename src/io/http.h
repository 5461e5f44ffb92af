/* http.h -- a small HTTP/1.1 server on libev for the agent's JSON API.
 *
 * Requests are parsed with Debian's http-parser (nodejs/http-parser); each
 * complete request is handed to one handler callback that fills a response.
 * Keep-alive is supported; bodies over SHOAL_HTTP_MAX_BODY get 413, bad
 * requests 400, and neither disturbs other connections.
 *
 * A handler may also defer: it keeps the connection id it was given and
 * answers later with shoal_http_reply() (blocking queries). Ids are never
 * reused, so a reply to a connection that went away is simply refused.
 */
#ifndef SHOAL_IO_HTTP_H
#define SHOAL_IO_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/addr.h"

struct ev_loop;
struct shoal_http_server;

#define SHOAL_HTTP_MAX_BODY (1024 * 1024)
#define SHOAL_HTTP_EXTRA_HEADERS 1024 /* bytes of handler-given header lines (the UI's CSP, ETag, ...) */

struct shoal_http_req {
    const char *method; /* "GET", "POST", "PUT", "DELETE", ... */
    const char *path;   /* "/v1/members" (no query string) */
    const char *query;  /* "index=3&wait=10s" or "" */
    const char *body;   /* NUL-terminated; "" when none */
    size_t body_len;
    const char *if_none_match; /* the If-None-Match header (cut at 127 bytes), "" if none */
};

struct shoal_http_resp {
    int status;               /* 200 when the handler leaves it at 0 */
    char *body;               /* malloc'd by the handler; the server frees it */
    const char *content_type; /* "application/json" when NULL */
    bool deferred;            /* handler will call shoal_http_reply() later */
    /* Extra header lines, each "Name: value\r\n" (e.g. X-Consul-Index);
     * "" for none. The handler writes them in place. */
    char headers[SHOAL_HTTP_EXTRA_HEADERS];
};

typedef void (*shoal_http_handler)(void *ud, uint64_t conn_id,
                                   const struct shoal_http_req *req,
                                   struct shoal_http_resp *resp);

/* Listens on bind (TCP) and serves on loop. Calls malloc; free with
 * shoal_http_server_free(), which closes every connection. Returns NULL and
 * sets *err (negative SHOAL_E*, or -errno from bind/listen) on failure. */
struct shoal_http_server *shoal_http_server_new(struct ev_loop *loop,
                                                const struct shoal_addr *bind,
                                                shoal_http_handler h, void *ud, int *err);
void shoal_http_server_free(struct shoal_http_server *s);

/* Closes connections idle (no bytes either way) for this long; 60 s unless
 * set. Applies to connections that go idle after the call. */
void shoal_http_server_set_idle_timeout(struct shoal_http_server *s, double seconds);

/* Answers a deferred request; takes ownership of body (malloc'd). Returns
 * false if the connection went away meanwhile (body is freed then too). */
bool shoal_http_reply(struct shoal_http_server *s, uint64_t conn_id, int status,
                      const char *content_type, char *body);
/* The same with extra header lines (as shoal_http_resp.headers; NULL for none). */
bool shoal_http_reply_headers(struct shoal_http_server *s, uint64_t conn_id, int status,
                              const char *content_type, const char *headers, char *body);

/* Does connection conn_id still wait for shoal_http_reply()? False once the
 * client has gone away: a deferred answer need not be built then. */
bool shoal_http_awaiting(struct shoal_http_server *s, uint64_t conn_id);

/* The IP address (text) of the peer of connection conn_id, into out.
 * Returns false if the connection is gone or has no IP peer. */
bool shoal_http_peer(struct shoal_http_server *s, uint64_t conn_id, char *out, size_t outlen);

/* URL-decodes s[0..n) ('+' is a space, %XX a byte; a '%' not followed by
 * two hex digits, or encoding NUL, is kept as written) into out, with a NUL.
 * Returns the decoded length, or -1 if it does not fit in outlen. */
long shoal_http_url_decode(const char *s, size_t n, char *out, size_t outlen);

/* Decodes a query-string value: finds key in "a=1&b=2", URL-decodes it into
 * out (NUL-terminated). Returns true if present. */
bool shoal_http_query_get(const char *query, const char *key, char *out, size_t outlen);

#endif
