/* test_client.c -- the C client library (include/shoal/client.h) against
 * real agents.
 *
 * Each test starts its own `shoal agent` (SHOAL_BIN, else ../shoal next to
 * this binary) on free loopback ports, registers instances through the
 * agent's HTTP API and checks what the client's cache serves: updates that
 * arrive through the blocking query without extra requests (the client's
 * request counter), picks served while the agent is away, the retry
 * schedule in injected time, the error when no agent answers, every
 * strategy, and picks from 4 threads while the set changes.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>

#include "shoal/client.h"
#include "test.h"

/* ---- agents ---- */

static const char *shoal_bin(void)
{
    static char path[PATH_MAX];
    const char *env = getenv("SHOAL_BIN");
    if (env)
        return env;
    char self[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
    CHECK(n > 0);
    self[n] = 0;
    snprintf(path, sizeof(path), "%s/../shoal", dirname(self));
    CHECKF(access(path, X_OK) == 0, "%s not found: build the shoal target or set SHOAL_BIN", path);
    return path;
}

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void sleep_ms(unsigned ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000};
    nanosleep(&ts, NULL);
}

/* A port free for TCP and UDP now (the agent binds both on --bind). */
static int free_port(void)
{
    for (;;) {
        int t = socket(AF_INET, SOCK_STREAM, 0), u = socket(AF_INET, SOCK_DGRAM, 0);
        struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        socklen_t sl = sizeof(sin);
        CHECK(t >= 0 && u >= 0);
        CHECK(bind(t, (struct sockaddr *)&sin, sizeof(sin)) == 0);
        CHECK(getsockname(t, (struct sockaddr *)&sin, &sl) == 0);
        int ok = bind(u, (struct sockaddr *)&sin, sizeof(sin)) == 0;
        int port = ntohs(sin.sin_port);
        close(t);
        close(u);
        if (ok)
            return port;
    }
}

struct agent {
    pid_t pid;
    int bind_port, http_port;
    char http[32];
    char dir[64];
};

/* Sends one request to the agent; returns the status, or -1 if it cannot
 * be reached. The response body goes to body (if not NULL). */
static int http_req(const char *hostport, const char *method, const char *path,
                    const char *json, char *body, size_t cap)
{
    char host[32];
    snprintf(host, sizeof(host), "%s", hostport);
    char *colon = strrchr(host, ':');
    *colon = 0;
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(colon + 1))};
    inet_pton(AF_INET, host, &sin.sin_addr);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    CHECK(fd >= 0);
    if (connect(fd, (struct sockaddr *)&sin, sizeof(sin)) < 0) {
        close(fd);
        return -1;
    }
    char req[4096];
    int n = snprintf(req, sizeof(req),
                     "%s %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n"
                     "Content-Type: application/json\r\nContent-Length: %zu\r\n\r\n%s",
                     method, path, hostport, json ? strlen(json) : 0, json ? json : "");
    CHECK(write(fd, req, (size_t)n) == n);
    char resp[65536];
    size_t len = 0;
    for (ssize_t r; len + 1 < sizeof(resp) && (r = read(fd, resp + len, sizeof(resp) - 1 - len)) > 0;)
        len += (size_t)r;
    resp[len] = 0;
    close(fd);
    int status = -1;
    if (sscanf(resp, "HTTP/1.1 %d", &status) != 1)
        return -1;
    if (body) {
        char *b = strstr(resp, "\r\n\r\n");
        snprintf(body, cap, "%s", b ? b + 4 : "");
    }
    return status;
}

static void agent_spawn(struct agent *a)
{
    char bind[32], logp[128];
    snprintf(bind, sizeof(bind), "127.0.0.1:%d", a->bind_port);
    snprintf(a->http, sizeof(a->http), "127.0.0.1:%d", a->http_port);
    snprintf(logp, sizeof(logp), "%s/agent.log", a->dir);
    const char *bin = shoal_bin();
    pid_t parent = getpid();
    a->pid = fork();
    CHECK(a->pid >= 0);
    if (a->pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL); /* a failed test leaves no agent behind */
        if (getppid() != parent)
            _exit(1);
        int fd = open(logp, O_WRONLY | O_CREAT | O_APPEND, 0644);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
        }
        char data[96];
        snprintf(data, sizeof(data), "%s/data", a->dir);
        execl(bin, "shoal", "agent", "--name", "n1", "--bind", bind, "--http", a->http,
              "--data-dir", data, (char *)NULL);
        _exit(127);
    }
    uint64_t end = now_ms() + 20000;
    while (http_req(a->http, "GET", "/v1/info", NULL, NULL, 0) != 200) {
        CHECKF(now_ms() < end, "agent on %s did not answer within 20 s (log %s)", a->http, logp);
        sleep_ms(20);
    }
}

static void agent_start(struct agent *a)
{
    memset(a, 0, sizeof(*a));
    snprintf(a->dir, sizeof(a->dir), "/tmp/shoal-client-XXXXXX");
    CHECK(mkdtemp(a->dir) != NULL);
    a->bind_port = free_port();
    a->http_port = free_port();
    agent_spawn(a);
}

static void agent_kill(struct agent *a)
{
    if (a->pid > 0) {
        kill(a->pid, SIGKILL);
        waitpid(a->pid, NULL, 0);
        a->pid = 0;
    }
}

static void agent_stop(struct agent *a)
{
    agent_kill(a);
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", a->dir);
    CHECK(system(cmd) == 0);
}

static void reg(struct agent *a, const char *id, int port, const char *extra)
{
    char json[1024], body[4096];
    snprintf(json, sizeof(json),
             "{\"id\":\"%s\",\"service\":\"web\",\"address\":\"10.0.0.%d\",\"port\":%d%s%s}", id,
             port % 250 + 1, port, extra ? "," : "", extra ? extra : "");
    int st = http_req(a->http, "POST", "/v1/register", json, body, sizeof(body));
    CHECKF(st == 200, "register %s: %d %s", id, st, body);
}

static void dereg(struct agent *a, const char *id)
{
    char path[256], body[4096];
    snprintf(path, sizeof(path), "/v1/deregister/%s", id);
    int st = http_req(a->http, "POST", path, NULL, body, sizeof(body));
    CHECKF(st == 200, "deregister %s: %d %s", id, st, body);
}

static struct shoal_client *client_for(struct agent *a, uint32_t wait_ms)
{
    struct shoal_client_options o = {.agent = a->http, .watch_wait_ms = wait_ms, .seed = 42,
                                     .retry = {.max_attempts = 3, .base_ms = 20, .max_ms = 200}};
    int err = 1;
    struct shoal_client *c = shoal_client_new(&o, &err);
    CHECKF(c && err == 0, "shoal_client_new: %s", shoal_strerror(err));
    return c;
}

/* Picks round-robin until an instance with id shows (want) or no longer
 * shows (!want) in n consecutive picks, for at most ms; returns the time. */
static uint64_t wait_for(struct shoal_client *c, const char *id, bool want, unsigned n,
                         unsigned ms)
{
    uint64_t t0 = now_ms();
    for (;;) {
        bool seen = false;
        for (unsigned i = 0; i < n; i++) {
            struct shoal_endpoint e;
            int rc = shoal_client_pick(c, "web", SHOAL_CLIENT_ROUND_ROBIN, NULL, &e);
            if (rc == 0 && strcmp(e.id, id) == 0)
                seen = true;
            CHECKF(rc == 0 || rc == SHOAL_ENOENT, "pick: %s", shoal_strerror(rc));
        }
        if (seen == want)
            return now_ms() - t0;
        CHECKF(now_ms() - t0 < ms, "%s did not %s the cache within %u ms", id,
               want ? "reach" : "leave", ms);
        sleep_ms(2);
    }
}

/* ---- cache updates ---- */

TEST(cache_follows_register_and_deregister,
     "cache sees a register and a deregister through the blocking query, no extra request")
{
    struct agent a;
    agent_start(&a);
    reg(&a, "web-1", 8001, NULL);
    struct shoal_client *c = client_for(&a, 30000); /* no wait ends during the test */
    struct shoal_endpoint e;
    CHECK_EQ(shoal_client_pick(c, "web", SHOAL_CLIENT_ROUND_ROBIN, NULL, &e), 0);
    CHECK(strcmp(e.id, "web-1") == 0 && strcmp(e.owner, "n1") == 0 && e.port == 8001 &&
          strcmp(e.address, "10.0.0.2") == 0 && strcmp(e.service, "web") == 0);
    struct shoal_client_stats st;
    shoal_client_stats(c, &st);
    CHECK_EQ(st.updates, 1);
    CHECK(st.requests >= 1 && st.requests <= 2); /* the fetch, maybe the first watch */

    reg(&a, "web-2", 8002, NULL);
    uint64_t t = wait_for(c, "web-2", true, 4, 2000);
    fprintf(stderr, "register seen after %llu ms\n", (unsigned long long)t);
    shoal_client_stats(c, &st);
    /* one answer per change: the fetch, the query that returned web-2, and
     * possibly the next one already waiting */
    CHECK_EQ(st.updates, 2);
    CHECKF(st.requests == 2 || st.requests == 3, "requests %llu", (unsigned long long)st.requests);
    CHECK_EQ(st.request_errors, 0);

    dereg(&a, "web-1");
    t = wait_for(c, "web-1", false, 4, 2000);
    fprintf(stderr, "deregister seen after %llu ms\n", (unsigned long long)t);
    sleep_ms(200); /* nothing else happens: no polling */
    shoal_client_stats(c, &st);
    CHECK_EQ(st.updates, 3);
    CHECK_EQ(st.requests, 4);
    CHECK_EQ(st.request_errors, 0);
    for (int i = 0; i < 10; i++) {
        CHECK_EQ(shoal_client_pick(c, "web", SHOAL_CLIENT_RANDOM, NULL, &e), 0);
        CHECK(strcmp(e.id, "web-2") == 0);
    }
    dereg(&a, "web-2");
    uint64_t end = now_ms() + 2000;
    while (shoal_client_pick(c, "web", SHOAL_CLIENT_ROUND_ROBIN, NULL, &e) != SHOAL_ENOENT) {
        CHECKF(now_ms() < end, "the last deregister did not empty the cache");
        sleep_ms(2);
    }
    char msg[256];
    CHECK(strstr(shoal_client_last_error(c, msg, sizeof(msg)), "no passing instance of 'web'"));
    shoal_client_free(c);
    agent_stop(&a);
}

TEST(watch_with_tags, "a watch with tags caches only the instances carrying them")
{
    struct agent a;
    agent_start(&a);
    reg(&a, "web-1", 8001, "\"tags\":[\"v1\"]");
    reg(&a, "web-2", 8002, "\"tags\":[\"v2\",\"canary\"]");
    struct shoal_client *c = client_for(&a, 30000);
    const char *tags[] = {"v2", "canary"};
    CHECK_EQ(shoal_client_watch(c, "web", tags, 2), 0);
    CHECK_EQ(shoal_client_watch(c, "web", tags, 2), 0);
    CHECK_EQ(shoal_client_watch(c, "web", tags, 1), SHOAL_EEXIST);
    for (int i = 0; i < 20; i++) {
        struct shoal_endpoint e;
        CHECK_EQ(shoal_client_pick(c, "web", SHOAL_CLIENT_ROUND_ROBIN, NULL, &e), 0);
        CHECK(strcmp(e.id, "web-2") == 0);
    }
    reg(&a, "web-3", 8003, "\"tags\":[\"canary\",\"v2\"]");
    wait_for(c, "web-3", true, 4, 2000);
    CHECK_EQ(shoal_client_watch(c, "Bad_Name", NULL, 0), SHOAL_EINVAL);
    shoal_client_free(c);
    agent_stop(&a);
}

TEST(empty_service_does_not_poll, "a service with no instance is watched, not polled, until one comes")
{
    struct agent a;
    agent_start(&a);
    struct shoal_client *c = client_for(&a, 30000);
    struct shoal_endpoint e;
    CHECK_EQ(shoal_client_pick(c, "web", SHOAL_CLIENT_RANDOM, NULL, &e), SHOAL_ENOENT);
    sleep_ms(300);
    struct shoal_client_stats st;
    shoal_client_stats(c, &st);
    CHECKF(st.requests == 2 && st.updates == 1, "requests %llu updates %llu",
           (unsigned long long)st.requests, (unsigned long long)st.updates);
    reg(&a, "web-1", 8001, NULL);
    wait_for(c, "web-1", true, 1, 2000);
    shoal_client_free(c);
    agent_stop(&a);
}

/* ---- the agent away ---- */

TEST(cache_survives_agent_restart,
     "picks keep working from the cache while the agent is away, and it resumes after")
{
    struct agent a;
    agent_start(&a);
    reg(&a, "web-1", 8001, NULL);
    struct shoal_client *c = client_for(&a, 30000);
    struct shoal_endpoint e;
    CHECK_EQ(shoal_client_pick(c, "web", SHOAL_CLIENT_ROUND_ROBIN, NULL, &e), 0);
    sleep_ms(100); /* the blocking query is open */
    agent_kill(&a);
    uint64_t end = now_ms() + 1000;
    while (now_ms() < end) {
        CHECK_EQ(shoal_client_pick(c, "web", SHOAL_CLIENT_RANDOM, NULL, &e), 0);
        CHECK(strcmp(e.id, "web-1") == 0);
        sleep_ms(1);
    }
    struct shoal_client_stats st;
    shoal_client_stats(c, &st);
    CHECKF(st.request_errors >= 2, "the watcher noticed and retried (%llu errors)",
           (unsigned long long)st.request_errors);
    char msg[512];
    CHECKF(strstr(shoal_client_last_error(c, msg, sizeof(msg)), "watch of web"), "%s", msg);
    agent_spawn(&a); /* same data dir: web-1 comes back under a new generation */
    reg(&a, "web-2", 8002, NULL);
    uint64_t t = wait_for(c, "web-2", true, 4, 5000);
    fprintf(stderr, "change after restart seen in %llu ms\n", (unsigned long long)t);
    wait_for(c, "web-1", true, 4, 1000);
    shoal_client_free(c);
    agent_stop(&a);
}

/* ---- retry ---- */

struct fake_time {
    uint64_t now;
    unsigned nsleeps;
    uint64_t sleeps[256];
};

static uint64_t fake_clock(void *ctx)
{
    return ((struct fake_time *)ctx)->now;
}

static void fake_sleep(void *ctx, uint64_t ms)
{
    struct fake_time *t = ctx;
    CHECK(t->nsleeps < 256);
    t->sleeps[t->nsleeps++] = ms;
    t->now += ms;
}

/* A loopback port where nobody listens. */
static int dead_port(void)
{
    return free_port();
}

static uint64_t cap_of(uint64_t base, uint64_t max, unsigned k)
{
    uint64_t c = base << k;
    return c < max ? c : max;
}

TEST(retry_schedule_in_injected_time,
     "discovery retries with full-jitter backoff: bounded sleeps, attempts, total time")
{
    char agent[32];
    snprintf(agent, sizeof(agent), "127.0.0.1:%d", dead_port());
    double frac[5] = {0};
    unsigned runs = 200;
    for (unsigned r = 0; r < runs; r++) {
        struct fake_time ft = {.now = 1000000};
        struct shoal_client_options o = {
            .agent = agent, .seed = 1000 + r, .clock = fake_clock, .sleep = fake_sleep,
            .time_ctx = &ft,
            .retry = {.max_attempts = 6, .base_ms = 100, .max_ms = 1000, .deadline_ms = 100000}};
        struct shoal_client *c = shoal_client_new(&o, NULL);
        CHECK(c);
        CHECK_EQ(shoal_client_watch(c, "web", NULL, 0), SHOAL_ECONN);
        CHECK_EQ(ft.nsleeps, 5); /* 6 attempts, a sleep between each two */
        uint64_t sum = 0;
        for (unsigned k = 0; k < ft.nsleeps; k++) {
            uint64_t cap = cap_of(100, 1000, k);
            CHECKF(ft.sleeps[k] <= cap, "run %u sleep %u = %llu > %llu", r, k,
                   (unsigned long long)ft.sleeps[k], (unsigned long long)cap);
            frac[k] += (double)ft.sleeps[k] / (double)cap;
            sum += ft.sleeps[k];
        }
        CHECK_EQ(ft.now - 1000000, sum);
        struct shoal_client_stats st;
        shoal_client_stats(c, &st);
        CHECK_EQ(st.requests, 6);
        CHECK_EQ(st.request_errors, 6);
        shoal_client_free(c);
    }
    /* full jitter: uniform in [0, cap], so the mean fraction is 1/2 */
    for (unsigned k = 0; k < 5; k++) {
        frac[k] /= runs;
        CHECKF(frac[k] > 0.4 && frac[k] < 0.6, "sleep %u mean fraction of its cap %.3f", k,
               frac[k]);
    }
}

TEST(retry_stops_at_the_deadline, "discovery stops before an attempt would start past the deadline")
{
    char agent[32];
    snprintf(agent, sizeof(agent), "127.0.0.1:%d", dead_port());
    for (unsigned r = 0; r < 50; r++) {
        struct fake_time ft = {.now = 5};
        struct shoal_client_options o = {
            .agent = agent, .seed = 7 + r, .clock = fake_clock, .sleep = fake_sleep,
            .time_ctx = &ft,
            .retry = {.max_attempts = 1000, .base_ms = 100, .max_ms = 800, .deadline_ms = 3000}};
        struct shoal_client *c = shoal_client_new(&o, NULL);
        CHECK(c);
        CHECK_EQ(shoal_client_watch(c, "web", NULL, 0), SHOAL_ECONN);
        uint64_t total = ft.now - 5;
        CHECKF(total <= 3000, "run %u slept %llu ms past a 3000 ms deadline", r,
               (unsigned long long)total);
        /* it gave up only when one more capped draw could not fit: at most
         * one maximal sleep (800) before the deadline */
        CHECKF(total > 3000 - 800, "run %u gave up early at %llu ms", r,
               (unsigned long long)total);
        struct shoal_client_stats st;
        shoal_client_stats(c, &st);
        CHECK_EQ(st.requests, ft.nsleeps + 1);
        CHECK(st.requests < 1000);
        shoal_client_free(c);
    }
}

TEST(clear_error_when_agent_down, "an agent that is down gives SHOAL_ECONN and a clear message")
{
    int port = dead_port();
    char agent[32], msg[512], want[128];
    snprintf(agent, sizeof(agent), "127.0.0.1:%d", port);
    struct shoal_client_options o = {.agent = agent, .seed = 3,
                                     .retry = {.max_attempts = 4, .base_ms = 10, .max_ms = 40}};
    struct shoal_client *c = shoal_client_new(&o, NULL);
    CHECK(c);
    uint64_t t0 = now_ms();
    struct shoal_endpoint e;
    CHECK_EQ(shoal_client_pick(c, "web", SHOAL_CLIENT_RANDOM, NULL, &e), SHOAL_ECONN);
    uint64_t took = now_ms() - t0;
    CHECKF(took <= 10 + 20 + 40 + 500, "took %llu ms", (unsigned long long)took);
    shoal_client_last_error(c, msg, sizeof(msg));
    fprintf(stderr, "message: %s\n", msg);
    snprintf(want, sizeof(want), "cannot reach the agent at %s for 'web' after 4 attempts", agent);
    CHECKF(strstr(msg, want) && strstr(msg, "Connection refused"), "%s", msg);
    CHECK_EQ(shoal_client_acquire(c, "web", &e), SHOAL_ECONN);
    char small[8];
    CHECK(strlen(shoal_client_last_error(c, small, sizeof(small))) == 7);

    /* the agent comes up on that address: the next call discovers */
    struct agent a;
    memset(&a, 0, sizeof(a));
    snprintf(a.dir, sizeof(a.dir), "/tmp/shoal-client-XXXXXX");
    CHECK(mkdtemp(a.dir) != NULL);
    a.bind_port = free_port();
    a.http_port = port;
    agent_spawn(&a);
    CHECK_EQ(shoal_client_pick(c, "web", SHOAL_CLIENT_RANDOM, NULL, &e), SHOAL_ENOENT);
    reg(&a, "web-1", 8001, NULL);
    wait_for(c, "web-1", true, 1, 2000);
    shoal_client_free(c);
    agent_stop(&a);

    int err = 0;
    o.agent = "not-an-address";
    CHECK(shoal_client_new(&o, &err) == NULL && err == SHOAL_EINVAL);
}

/* ---- strategies ---- */

static int idx_of(const struct shoal_endpoint *e)
{
    CHECK(strncmp(e->id, "web-", 4) == 0);
    int i = atoi(e->id + 4);
    CHECK(i >= 1 && i <= 3);
    return i - 1;
}

TEST(every_strategy, "every strategy picks from the cache, weights honoured")
{
    struct agent a;
    agent_start(&a);
    reg(&a, "web-1", 8001, NULL);
    reg(&a, "web-2", 8002, "\"meta\":{\"weight\":\"1\"}");
    reg(&a, "web-3", 8003, "\"meta\":{\"weight\":\"2\"}");
    struct shoal_client *c = client_for(&a, 30000);
    struct shoal_endpoint e;
    int n[3] = {0};

    /* round-robin: exactly the weights over whole cycles */
    for (int i = 0; i < 400; i++) {
        CHECK_EQ(shoal_client_pick(c, "web", SHOAL_CLIENT_ROUND_ROBIN, NULL, &e), 0);
        n[idx_of(&e)]++;
    }
    CHECKF(n[0] == 100 && n[1] == 100 && n[2] == 200, "rr %d %d %d", n[0], n[1], n[2]);
    CHECK(e.weight == 2 || e.weight == 1);

    /* random: 1/4, 1/4, 1/2 within 5 sigma (seed 42) */
    memset(n, 0, sizeof(n));
    for (int i = 0; i < 40000; i++) {
        CHECK_EQ(shoal_client_pick(c, "web", SHOAL_CLIENT_RANDOM, NULL, &e), 0);
        n[idx_of(&e)]++;
    }
    CHECKF(abs(n[0] - 10000) < 450 && abs(n[1] - 10000) < 450 && abs(n[2] - 20000) < 500,
           "random %d %d %d", n[0], n[1], n[2]);

    /* least-conn: acquires spread by weight; a release makes room again */
    memset(n, 0, sizeof(n));
    for (int i = 0; i < 8; i++) {
        CHECK_EQ(shoal_client_acquire(c, "web", &e), 0);
        n[idx_of(&e)]++;
    }
    CHECKF(n[0] == 2 && n[1] == 2 && n[2] == 4, "least-conn %d %d %d", n[0], n[1], n[2]);
    CHECK_EQ(shoal_client_release(c, "web", "web-1"), 0);
    CHECK_EQ(shoal_client_acquire(c, "web", &e), 0);
    CHECK(strcmp(e.id, "web-1") == 0);
    CHECK_EQ(shoal_client_release(c, "web", "n1/web-2"), 0);
    CHECK_EQ(shoal_client_pick(c, "web", SHOAL_CLIENT_LEAST_CONN, NULL, &e), 0);
    CHECK(strcmp(e.id, "web-2") == 0);
    CHECK_EQ(shoal_client_pick(c, "web", SHOAL_CLIENT_LEAST_CONN, NULL, &e), 0);
    CHECK(strcmp(e.id, "web-2") == 0); /* a plain pick does not count */
    CHECK_EQ(shoal_client_release(c, "web", "web-2"), 0);
    CHECK_EQ(shoal_client_release(c, "web", "web-2"), SHOAL_ENOENT); /* none in use */
    CHECK_EQ(shoal_client_release(c, "web", "web-9"), SHOAL_ENOENT);
    CHECK_EQ(shoal_client_release(c, "db", "web-1"), SHOAL_ENOENT);
    /* the counts survive a cache update */
    reg(&a, "web-0", 8000, "\"tags\":[\"x\"]");
    wait_for(c, "web-0", true, 8, 2000);
    dereg(&a, "web-0");
    wait_for(c, "web-0", false, 8, 2000);
    CHECK_EQ(shoal_client_release(c, "web", "web-3"), 0);
    CHECK_EQ(shoal_client_release(c, "web", "web-3"), 0);
    CHECK_EQ(shoal_client_release(c, "web", "web-3"), 0);
    CHECK_EQ(shoal_client_release(c, "web", "web-3"), 0);
    CHECK_EQ(shoal_client_release(c, "web", "web-3"), SHOAL_ENOENT);

    /* ip-hash: one key, one instance; many keys, all instances */
    memset(n, 0, sizeof(n));
    for (int k = 0; k < 300; k++) {
        char key[32];
        snprintf(key, sizeof(key), "192.0.2.%d", k);
        CHECK_EQ(shoal_client_pick(c, "web", SHOAL_CLIENT_IP_HASH, key, &e), 0);
        char first[SHOAL_CLIENT_ID_MAX];
        snprintf(first, sizeof(first), "%s", e.id);
        n[idx_of(&e)]++;
        for (int i = 0; i < 5; i++) {
            CHECK_EQ(shoal_client_pick(c, "web", SHOAL_CLIENT_IP_HASH, key, &e), 0);
            CHECK(strcmp(e.id, first) == 0);
        }
    }
    CHECKF(n[0] > 30 && n[1] > 30 && n[2] > 90, "ip-hash %d %d %d", n[0], n[1], n[2]);
    CHECK_EQ(shoal_client_pick(c, "web", SHOAL_CLIENT_IP_HASH, NULL, &e), 0);

    CHECK_EQ(shoal_client_pick(c, "web", 4, NULL, &e), SHOAL_EINVAL);
    CHECK_EQ(shoal_client_pick(c, "web", -1, NULL, &e), SHOAL_EINVAL);
    CHECK_EQ(shoal_client_pick(c, "nothing-here", SHOAL_CLIENT_RANDOM, NULL, &e), SHOAL_ENOENT);
    shoal_client_free(c);
    agent_stop(&a);
}

/* ---- threads ---- */

static atomic_int pickers_done;

struct picker {
    struct shoal_client *c;
    int lb;
    long ok, bad;
};

static void *picker_main(void *arg)
{
    struct picker *p = arg;
    char key[32];
    for (int i = 0; i < 100000; i++) {
        struct shoal_endpoint e;
        int rc;
        snprintf(key, sizeof(key), "10.1.%d.%d", (i >> 8) & 255, i & 255);
        if (p->lb == SHOAL_CLIENT_LEAST_CONN && (i & 1) == 0) {
            rc = shoal_client_acquire(p->c, "web", &e);
            if (rc == 0 && shoal_client_release(p->c, "web", e.id) != 0)
                p->bad++;
        } else {
            rc = shoal_client_pick(p->c, "web", p->lb, key, &e);
        }
        if (rc == 0 && e.port >= 8001 && e.port <= 8004 && strncmp(e.id, "web-", 4) == 0)
            p->ok++;
        else
            p->bad++;
    }
    atomic_fetch_add(&pickers_done, 1);
    return NULL;
}

TEST_T(thread_safe_picks, "4 threads x 100k picks while the cache changes", 300)
{
    struct agent a;
    agent_start(&a);
    reg(&a, "web-1", 8001, NULL);
    reg(&a, "web-2", 8002, NULL);
    reg(&a, "web-3", 8003, "\"meta\":{\"weight\":\"3\"}");
    struct shoal_client *c = client_for(&a, 30000);
    CHECK_EQ(shoal_client_watch(c, "web", NULL, 0), 0);
    struct picker p[4];
    pthread_t th[4];
    for (int i = 0; i < 4; i++) {
        p[i] = (struct picker){.c = c, .lb = i};
        CHECK(pthread_create(&th[i], NULL, picker_main, &p[i]) == 0);
    }
    int churn = 0;
    while (atomic_load(&pickers_done) < 4) {
        /* web-4 comes and goes */
        if (churn % 2 == 0)
            reg(&a, "web-4", 8004, NULL);
        else
            dereg(&a, "web-4");
        churn++;
        sleep_ms(5);
    }
    for (int i = 0; i < 4; i++)
        pthread_join(th[i], NULL);
    struct shoal_client_stats st;
    shoal_client_stats(c, &st);
    fprintf(stderr, "%d registry changes during the picks, %llu cache updates\n", churn,
            (unsigned long long)st.updates);
    for (int i = 0; i < 4; i++)
        CHECKF(p[i].ok == 100000 && p[i].bad == 0, "thread %d: %ld ok %ld bad", i, p[i].ok,
               p[i].bad);
    CHECK(st.picks >= 400000);
    CHECK(churn >= 2 && st.updates >= 2);
    /* every acquire was released: least-conn is back to weights */
    int n[3] = {0};
    struct shoal_endpoint e;
    if (churn % 2 == 1) {
        dereg(&a, "web-4");
        wait_for(c, "web-4", false, 10, 2000);
    }
    for (int i = 0; i < 5; i++) {
        CHECK_EQ(shoal_client_acquire(c, "web", &e), 0);
        n[idx_of(&e)]++;
    }
    CHECKF(n[0] == 1 && n[1] == 1 && n[2] == 3, "least-conn after the run %d %d %d", n[0], n[1],
           n[2]);
    shoal_client_free(c);
    agent_stop(&a);
}

/* ---- list, register, deregister, heartbeat, change callback ---- */

static atomic_int changes;
static atomic_size_t last_passing;

static void count_change(void *ud, const char *service, size_t passing)
{
    CHECK(strcmp(service, "web") == 0);
    CHECK(ud == (void *)&changes);
    atomic_store(&last_passing, passing);
    atomic_fetch_add(&changes, 1);
}

TEST(own_instances_and_list,
     "register, list with tags/meta/status/owner, heartbeat, deregister, each error named")
{
    struct agent a;
    agent_start(&a);
    struct shoal_client *c = client_for(&a, 2000);
    char msg[512];
    const char *tags[] = {"v1", "primary"};
    struct shoal_client_meta meta[] = {{"zone", "eu-1"}, {"weight", "3"}};
    struct shoal_client_registration r = {.service = "web", .id = "web-1",
                                          .address = "10.0.0.5", .port = 8080,
                                          .tags = tags, .ntags = 2, .meta = meta, .nmeta = 2};
    CHECK_EQ(shoal_client_register(c, &r), 0);
    struct shoal_client_registration t = {.service = "web", .id = "web-ttl",
                                          .address = "db.example", .port = 8081,
                                          .ttl_ms = 60000};
    CHECK_EQ(shoal_client_register(c, &t), 0);

    struct shoal_client_instances *l;
    CHECK_EQ(shoal_client_list(c, "web", 1, &l), 0);
    CHECK_EQ(l->n, 2);
    const struct shoal_client_instance *e = &l->v[0];
    CHECK(strcmp(e->id, "web-1") == 0 && strcmp(e->address, "10.0.0.5") == 0 && e->port == 8080);
    CHECK(strcmp(e->status, "passing") == 0 && strcmp(e->owner, "n1") == 0 &&
          strcmp(e->owner_status, "alive") == 0);
    CHECK(e->ntags == 2 && strcmp(e->tags[0], "v1") == 0 && strcmp(e->tags[1], "primary") == 0);
    CHECK_EQ(e->nmeta, 2);
    bool zone = false;
    for (size_t i = 0; i < e->nmeta; i++)
        zone |= strcmp(e->meta[i].key, "zone") == 0 && strcmp(e->meta[i].value, "eu-1") == 0;
    CHECK(zone);
    /* a TTL instance starts critical: listed with all, not without */
    CHECK(strcmp(l->v[1].status, "critical") == 0 && l->v[1].ttl_ms == 60000);
    CHECK(l->index > 0);
    shoal_client_instances_free(l);
    CHECK_EQ(shoal_client_list(c, "web", 0, &l), 0);
    CHECK_EQ(l->n, 1);
    shoal_client_instances_free(l);
    CHECK_EQ(shoal_client_heartbeat(c, "web-ttl"), 0);
    CHECK_EQ(shoal_client_list(c, "web", 0, &l), 0);
    CHECK_EQ(l->n, 2);
    shoal_client_instances_free(l);

    /* errors carry the agent's reason */
    CHECK_EQ(shoal_client_heartbeat(c, "web-1"), SHOAL_EINVAL); /* no TTL */
    shoal_client_last_error(c, msg, sizeof(msg));
    CHECKF(strstr(msg, "heartbeat of 'web-1': the agent answered 400") != NULL, "%s", msg);
    CHECK_EQ(shoal_client_deregister(c, "nope"), SHOAL_ENOENT);
    struct shoal_client_registration bad = r;
    bad.service = "Bad_Name";
    CHECK_EQ(shoal_client_register(c, &bad), SHOAL_EINVAL);
    shoal_client_last_error(c, msg, sizeof(msg));
    CHECKF(strstr(msg, "service") != NULL, "%s", msg);
    bad = r;
    bad.port = 0;
    CHECK_EQ(shoal_client_register(c, &bad), SHOAL_EINVAL);
    CHECK_EQ(shoal_client_list(c, "web/../x", 0, &l), SHOAL_EINVAL);

    CHECK_EQ(shoal_client_deregister(c, "web-1"), 0);
    CHECK_EQ(shoal_client_deregister(c, "web-ttl"), 0);
    CHECK_EQ(shoal_client_list(c, "web", 1, &l), 0);
    CHECK_EQ(l->n, 0);
    shoal_client_instances_free(l);
    shoal_client_free(c);

    /* the agent gone: ECONN, and the message says where */
    agent_kill(&a);
    c = client_for(&a, 2000);
    CHECK_EQ(shoal_client_register(c, &r), SHOAL_ECONN);
    shoal_client_last_error(c, msg, sizeof(msg));
    CHECKF(strstr(msg, "cannot reach the agent at 127.0.0.1:") != NULL, "%s", msg);
    shoal_client_free(c);
    agent_stop(&a);
}

TEST(change_callback, "the change callback runs after each change of a watched service")
{
    struct agent a;
    agent_start(&a);
    reg(&a, "web-1", 8001, NULL);
    struct shoal_client *c = client_for(&a, 2000);
    atomic_store(&changes, 0);
    shoal_client_on_change(c, count_change, &changes);
    CHECK_EQ(shoal_client_watch(c, "web", NULL, 0), 0);
    CHECK_EQ(atomic_load(&changes), 0); /* not for the first fetch */
    reg(&a, "web-2", 8002, NULL);
    uint64_t end = now_ms() + 10000;
    while (atomic_load(&last_passing) != 2) {
        CHECKF(now_ms() < end, "no callback with 2 passing within 10 s");
        sleep_ms(5);
    }
    int before = atomic_load(&changes);
    dereg(&a, "web-1");
    while (atomic_load(&last_passing) != 1) {
        CHECKF(now_ms() < end, "no callback with 1 passing within 10 s");
        sleep_ms(5);
    }
    CHECK(atomic_load(&changes) > before);
    shoal_client_on_change(c, NULL, NULL);
    shoal_client_free(c);
    agent_stop(&a);
}

TEST(agent_host_names, "the agent may be a host name; a bad one fails with the reason")
{
    struct agent a;
    agent_start(&a);
    reg(&a, "web-1", 8001, NULL);
    char addr[64], why[512];
    snprintf(addr, sizeof(addr), "localhost:%d", a.http_port);
    struct shoal_client_options o = {.agent = addr};
    int err = 1;
    struct shoal_client *c = shoal_client_new_ex(&o, &err, why, sizeof(why));
    CHECKF(c != NULL && err == 0, "%s", why);
    struct shoal_endpoint ep;
    CHECK_EQ(shoal_client_pick(c, "web", SHOAL_CLIENT_ROUND_ROBIN, NULL, &ep), 0);
    CHECK(strcmp(ep.id, "web-1") == 0);
    shoal_client_free(c);
    static const struct {
        const char *agent, *says;
    } bad[] = {
        {"localhost:7937x", "is not HOST:PORT"},
        {"no such host:1", "is not HOST:PORT"},
        {"nonexistent.invalid:7937", "cannot resolve nonexistent.invalid"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        o.agent = bad[i].agent;
        CHECK(shoal_client_new_ex(&o, &err, why, sizeof(why)) == NULL);
        CHECK_EQ(err, SHOAL_EINVAL);
        CHECKF(strstr(why, bad[i].says) != NULL, "%s: %s", bad[i].agent, why);
    }
    CHECK(shoal_client_new(&o, &err) == NULL && err == SHOAL_EINVAL);
    agent_stop(&a);
}

TEST_MAIN()
