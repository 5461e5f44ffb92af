/* client_example.c -- a C service using libshoalclient end to end.
 *
 * It registers itself with the local agent, lists its service, watches it,
 * waits for the change callback that says another instance appeared, picks
 * an instance other than itself, then deregisters and exits 0.
 *
 *   cc client_example.c $(pkg-config --cflags --libs shoal-client) -o client_example
 *   ./client_example AGENT SERVICE ID PORT      (AGENT: HOST:PORT of the HTTP API)
 *
 * Prints one line per step ("registered", "listed", "ready", "change",
 * "picked", "deregistered"); any failure: the library's message, exit 1.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <shoal/client.h>

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static size_t last_passing;
static int changes;

static void on_change(void *ud, const char *service, size_t passing)
{
    (void)ud;
    pthread_mutex_lock(&mu);
    last_passing = passing;
    changes++;
    pthread_cond_broadcast(&cv);
    pthread_mutex_unlock(&mu);
    printf("change: %s has %zu passing\n", service, passing);
    fflush(stdout);
}

static int fail(struct shoal_client *c, const char *what, int rc)
{
    char msg[512];
    fprintf(stderr, "client_example: %s: %s (%s)\n", what,
            c ? shoal_client_last_error(c, msg, sizeof(msg)) : "", shoal_strerror(rc));
    shoal_client_free(c);
    return 1;
}

int main(int argc, char **argv)
{
    if (argc != 5) {
        fprintf(stderr, "usage: client_example AGENT SERVICE ID PORT\n");
        return 2;
    }
    const char *service = argv[2], *id = argv[3];
    struct shoal_client_options o = {.agent = argv[1]};
    char why[512];
    int rc;
    struct shoal_client *c = shoal_client_new_ex(&o, &rc, why, sizeof(why));
    if (!c) {
        fprintf(stderr, "client_example: %s\n", why);
        return 1;
    }

    const char *tags[] = {"example"};
    struct shoal_client_meta meta[] = {{"lang", "c"}};
    struct shoal_client_registration reg = {
        .service = service, .id = id, .address = "127.0.0.1", .port = (uint16_t)atoi(argv[4]),
        .tags = tags, .ntags = 1, .meta = meta, .nmeta = 1};
    if ((rc = shoal_client_register(c, &reg)) != 0)
        return fail(c, "register", rc);
    printf("registered %s\n", id);

    struct shoal_client_instances *l;
    if ((rc = shoal_client_list(c, service, 0, &l)) != 0)
        return fail(c, "list", rc);
    for (size_t i = 0; i < l->n; i++) {
        const struct shoal_client_instance *e = &l->v[i];
        printf("listed %s %s:%u %s owner=%s (%s) tags=%s meta=%s=%s\n", e->id, e->address,
               e->port, e->status, e->owner, e->owner_status, e->ntags ? e->tags[0] : "-",
               e->nmeta ? e->meta[0].key : "-", e->nmeta ? e->meta[0].value : "-");
    }
    shoal_client_instances_free(l);

    shoal_client_on_change(c, on_change, NULL);
    if ((rc = shoal_client_watch(c, service, NULL, 0)) != 0)
        return fail(c, "watch", rc);
    printf("ready\n");
    fflush(stdout);

    /* Wait (30 s at most) until a change shows a second instance. */
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += 30;
    pthread_mutex_lock(&mu);
    while (last_passing < 2)
        if (pthread_cond_timedwait(&cv, &mu, &until) != 0)
            break;
    size_t seen = last_passing;
    pthread_mutex_unlock(&mu);
    if (seen < 2) {
        fprintf(stderr, "client_example: no second instance within 30 s\n");
        shoal_client_free(c);
        return 1;
    }

    /* Round-robin visits every instance: the other one comes within two picks. */
    struct shoal_endpoint ep;
    for (int i = 0; i < 2; i++) {
        if ((rc = shoal_client_pick(c, service, SHOAL_CLIENT_ROUND_ROBIN, NULL, &ep)) != 0)
            return fail(c, "pick", rc);
        if (strcmp(ep.id, id) != 0)
            break;
    }
    printf("picked %s %s:%u owner=%s\n", ep.id, ep.address, ep.port, ep.owner);
    if ((rc = shoal_client_deregister(c, id)) != 0)
        return fail(c, "deregister", rc);
    printf("deregistered %s\n", id);
    shoal_client_free(c);
    return strcmp(ep.id, id) != 0 ? 0 : 1;
}
