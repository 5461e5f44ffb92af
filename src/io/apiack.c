/* apiack.c -- replies held until the change they acknowledge is durable.
 *
 * A FIFO of (connection, status, body). shoal_api_ack_done() detaches the
 * whole queue before answering, so replies that a write triggered while
 * answering (none today) would wait for the next write rather than be
 * answered by this one.
 */
#include "io/apiack.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/datadir.h"
#include "io/http.h"
#include "shoal/error.h"

struct api_ack {
    struct api_ack *next;
    uint64_t conn;
    int status;
    char *body;
    char what[16];
    char id[128];
};

struct api_acks {
    struct api_ack *head, **tail;
    size_t n;
};

int shoal_api_ack_defer(struct shoal_api *api, uint64_t conn_id, struct shoal_http_resp *resp,
                        const char *what, const char *id)
{
    if (!api->http)
        return SHOAL_ESTATE;
    if (!api->acks) {
        if (!(api->acks = calloc(1, sizeof(*api->acks))))
            return SHOAL_ENOMEM;
        api->acks->tail = &api->acks->head;
    }
    struct api_ack *a = calloc(1, sizeof(*a));
    if (!a)
        return SHOAL_ENOMEM;
    a->conn = conn_id;
    a->status = resp->status ? resp->status : 200;
    a->body = resp->body;
    snprintf(a->what, sizeof(a->what), "%s", what);
    snprintf(a->id, sizeof(a->id), "%s", id);
    *api->acks->tail = a;
    api->acks->tail = &a->next;
    api->acks->n++;
    resp->body = NULL;
    resp->deferred = true;
    return 0;
}

void shoal_api_ack_done(struct shoal_api *api, int rc)
{
    if (!api->acks || !api->acks->head)
        return;
    struct api_ack *a = api->acks->head;
    api->acks->head = NULL;
    api->acks->tail = &api->acks->head;
    api->acks->n = 0;
    while (a) {
        struct api_ack *next = a->next;
        if (rc == 0) {
            shoal_http_reply(api->http, a->conn, a->status, "application/json", a->body);
        } else {
            char msg[512];
            free(a->body);
            snprintf(msg, sizeof(msg),
                     "%s %s, but it could not be saved to the data dir (%s); the agent keeps "
                     "retrying",
                     a->what, a->id, shoal_datadir_strerror(rc));
            json_t *v = json_pack("{s:s}", "error", msg);
            char *body = v ? json_dumps(v, JSON_COMPACT) : NULL;
            json_decref(v);
            shoal_http_reply(api->http, a->conn, 500, "application/json",
                             body ? body : strdup("{\"error\":\"out of memory\"}"));
        }
        free(a);
        a = next;
    }
}

size_t shoal_api_ack_waiting(const struct shoal_api *api) { return api->acks ? api->acks->n : 0; }

void shoal_api_ack_close(struct shoal_api *api)
{
    if (!api->acks)
        return;
    for (struct api_ack *a = api->acks->head, *next; a; a = next) {
        next = a->next;
        free(a->body);
        free(a);
    }
    free(api->acks);
    api->acks = NULL;
}
