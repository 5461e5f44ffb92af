/* test_cli_args.c -- the `shoal` CLI, run as a real process.
 *
 * Runs the built binary (SHOAL_BIN, else ../shoal next to this test) with
 * arguments and checks exit status, stdout and stderr exactly. The agent it
 * talks to is a fake: io/http.c serving canned answers in a forked child
 * (matched on method, path, query and body; a route may also hold its
 * request unanswered, like a blocking query), or a raw socket for broken
 * agents (silent, truncated, no Content-Length). `shoal watch` runs in the
 * background while the test changes the fake agent, then gets a signal.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <ev.h>
#include <fcntl.h>
#include <jansson.h>
#include <libgen.h>
#include <limits.h>
#include <netinet/in.h>
#include <regex.h>
#include <stdarg.h>
#include <stdbool.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>

#include "io/http.h"
#include "test.h"

/* ---- running the binary ---- */

struct run {
    int status; /* exit status, or -signal */
    char out[65536];
    char err[65536];
};

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

/* Reads fd from the start into buf (NUL-terminated); returns the length. */
static size_t slurp(int fd, char *buf, size_t cap)
{
    size_t len = 0;
    lseek(fd, 0, SEEK_SET);
    for (ssize_t n; len + 1 < cap && (n = read(fd, buf + len, cap - 1 - len)) > 0;)
        len += (size_t)n;
    buf[len] = 0;
    close(fd);
    return len;
}

/* A running shoal: its stdout and stderr go to unlinked temporary files. */
struct proc {
    pid_t pid;
    int ofd, efd;
};

/* Starts shoal with argv (argv[0] is "shoal", NULL-terminated). env_http sets
 * SHOAL_HTTP_ADDR (NULL unsets it). */
static void spawn(struct proc *p, const char *env_http, char **argv)
{
    char outp[] = "/tmp/shoal-cli-out-XXXXXX", errp[] = "/tmp/shoal-cli-err-XXXXXX";
    p->ofd = mkstemp(outp);
    p->efd = mkstemp(errp);
    CHECK(p->ofd >= 0 && p->efd >= 0);
    unlink(outp);
    unlink(errp);
    const char *bin = shoal_bin();
    p->pid = fork();
    CHECK(p->pid >= 0);
    if (p->pid == 0) {
        dup2(p->ofd, 1);
        dup2(p->efd, 2);
        if (env_http)
            setenv("SHOAL_HTTP_ADDR", env_http, 1);
        else
            unsetenv("SHOAL_HTTP_ADDR");
        execv(bin, argv);
        _exit(127);
    }
}

/* Waits for p to exit and collects its status and output. */
static void finish(struct proc *p, struct run *r)
{
    int st;
    CHECK(waitpid(p->pid, &st, 0) == p->pid);
    r->status = WIFEXITED(st) ? WEXITSTATUS(st) : -WTERMSIG(st);
    slurp(p->ofd, r->out, sizeof(r->out));
    slurp(p->efd, r->err, sizeof(r->err));
}

/* Collects the arguments after env_http (NULL-terminated) into argv. */
#define MAX_ARGS 128
static void collect_args(char **argv, va_list ap)
{
    int argc = 0;
    argv[argc++] = "shoal";
    for (char *a; (a = va_arg(ap, char *)) && argc < MAX_ARGS - 1;)
        argv[argc++] = a;
    argv[argc] = NULL;
}

/* Runs shoal with the given arguments (NULL-terminated) to the end. */
static void run_env(struct run *r, const char *env_http, ...)
{
    char *argv[MAX_ARGS];
    struct proc p;
    va_list ap;
    va_start(ap, env_http);
    collect_args(argv, ap);
    va_end(ap);
    spawn(&p, env_http, argv);
    finish(&p, r);
}
#define run(r, ...) run_env(r, NULL, __VA_ARGS__, (char *)NULL)

/* Starts shoal in the background (SHOAL_HTTP_ADDR unset). */
static void start_bg(struct proc *p, ...)
{
    char *argv[MAX_ARGS];
    va_list ap;
    va_start(ap, p);
    collect_args(argv, ap);
    va_end(ap);
    spawn(p, NULL, argv);
}

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static size_t count_of(const char *hay, const char *needle)
{
    size_t n = 0;
    for (const char *p = hay; (p = strstr(p, needle)) != NULL; p += strlen(needle))
        n++;
    return n;
}

/* Waits up to timeout_ms until fd (a running shoal's stdout or stderr) holds
 * want at least n times; fails the test otherwise. */
static void wait_for(int fd, const char *want, size_t n, int timeout_ms)
{
    static char buf[65536];
    long long end = now_ms() + timeout_ms;
    for (;;) {
        ssize_t len = pread(fd, buf, sizeof(buf) - 1, 0);
        buf[len > 0 ? len : 0] = 0;
        if (count_of(buf, want) >= n)
            return;
        CHECKF(now_ms() < end, "no %zu x \"%s\" after %d ms in:\n%s", n, want, timeout_ms, buf);
        usleep(20000);
    }
}

#define CHECK_STR(got, want) CHECKF(strcmp((got), (want)) == 0, "got:\n%s\nwant:\n%s", got, want)
#define CHECK_HAS(got, want) CHECKF(strstr((got), (want)) != NULL, "no \"%s\" in:\n%s", want, got)

/* ---- a fake agent: canned answers from io/http.c in a child process ---- */

struct route {
    const char *method, *path;
    int status;
    const char *body;
    const char *want_body; /* if set, only this request body matches (none: 400) */
    const char *query;     /* if set, only a request with exactly this query matches */
    bool hold;             /* never answer (a blocking query that does not fire) */
};

static struct route routes[12];
/* ROUTE(method, path, status, body[, .want_body = ...][, .query = ...][, .hold = true]) */
#define ROUTE(m, p, st, b, ...)                                                                    \
    (struct route) { .method = (m), .path = (p), .status = (st), .body = (b), __VA_ARGS__ }
static char fake_addr[SHOAL_ADDR_STRLEN];
static pid_t fake_pid;
/* The fake agent writes "held\n" here for every request it holds, so a test
 * knows the CLI's request is in flight (and its signal handlers installed)
 * before it sends a signal. A temp file: wait_for() reads it from offset 0. */
static int fake_holds_fd = -1;

static char *xstrdup(const char *s)
{
    char *p = strdup(s);
    CHECK(p != NULL);
    return p;
}

static void fake_handler(void *ud, uint64_t id, const struct shoal_http_req *req,
                         struct shoal_http_resp *resp)
{
    bool other_body = false;
    for (struct route *r = routes; r->path; r++) {
        if (strcmp(r->method, req->method) || strcmp(r->path, req->path) ||
            (r->query && strcmp(r->query, req->query)))
            continue;
        if (r->want_body && strcmp(r->want_body, req->body) != 0) {
            other_body = true;
            continue;
        }
        if (r->hold) {
            if (fake_holds_fd >= 0 && write(fake_holds_fd, "held\n", 5) != 5)
                _exit(3);
            resp->deferred = true;
            return;
        }
        resp->status = r->status;
        resp->body = xstrdup(r->body);
        resp->content_type = r->status == 404 ? "text/plain" : NULL;
        return;
    }
    /* the CLI prints the error, so a failing test shows what was sent */
    json_t *e = json_pack("{s:s++}", "error",
                          other_body ? "fake agent got body " : "fake agent: no route for ",
                          other_body ? req->body : req->path, other_body ? "" : req->query);
    resp->status = other_body ? 400 : 404;
    resp->body = json_dumps(e, JSON_COMPACT);
    json_decref(e);
    CHECK(resp->body != NULL);
}

/* A port that was free a moment ago. */
static uint16_t free_port(void)
{
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t sl = sizeof(sin);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    CHECK(fd >= 0 && bind(fd, (struct sockaddr *)&sin, sl) == 0);
    CHECK(getsockname(fd, (struct sockaddr *)&sin, &sl) == 0);
    close(fd);
    return ntohs(sin.sin_port);
}

/* Starts the fake agent on host ("127.0.0.1" or "[::1]") and port (0: a free
 * one) serving routes. The server listens before the fork, so the CLI can
 * connect at once. */
static void fake_start_on(const char *host, uint16_t port)
{
    struct shoal_addr a;
    int err;
    snprintf(fake_addr, sizeof(fake_addr), "%s:%u", host, port ? port : free_port());
    CHECK_EQ(shoal_addr_parse(fake_addr, &a), 0);
    FILE *holds = tmpfile();
    CHECK(holds != NULL);
    fake_holds_fd = dup(fileno(holds));
    fclose(holds);
    CHECK(fake_holds_fd >= 0);
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    CHECK(loop != NULL);
    struct shoal_http_server *s = shoal_http_server_new(loop, &a, fake_handler, NULL, &err);
    CHECKF(s != NULL, "fake agent on %s: %d", fake_addr, err);
    fake_pid = fork();
    CHECK(fake_pid >= 0);
    if (fake_pid == 0) {
        ev_loop_fork(loop);
        ev_run(loop, 0);
        _exit(0);
    }
    shoal_http_server_free(s);
    ev_loop_destroy(loop);
}

static void fake_start_at(const char *host) { fake_start_on(host, 0); }
static void fake_start(void) { fake_start_at("127.0.0.1"); }

static void fake_stop(void)
{
    kill(fake_pid, SIGKILL);
    waitpid(fake_pid, NULL, 0);
    if (fake_holds_fd >= 0)
        close(fake_holds_fd);
    fake_holds_fd = -1;
}

/* A raw "agent" that accepts one connection, reads the request head, writes
 * reply (NULL: says nothing and keeps the connection open) and closes. */
static void raw_start(const char *reply)
{
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    int one = 1, fd = socket(AF_INET, SOCK_STREAM, 0);
    uint16_t port = free_port();
    sin.sin_port = htons(port);
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    CHECK(fd >= 0 && bind(fd, (struct sockaddr *)&sin, sizeof(sin)) == 0 && listen(fd, 8) == 0);
    snprintf(fake_addr, sizeof(fake_addr), "127.0.0.1:%u", port);
    fake_pid = fork();
    CHECK(fake_pid >= 0);
    if (fake_pid == 0) {
        int c = accept(fd, NULL, NULL);
        char buf[8192];
        size_t len = 0;
        while (len < sizeof(buf) - 1 && !memmem(buf, len, "\r\n\r\n", 4)) {
            ssize_t n = read(c, buf + len, sizeof(buf) - 1 - len);
            if (n <= 0)
                _exit(1);
            len += (size_t)n;
        }
        if (!reply)
            pause();
        CHECK(write(c, reply, strlen(reply)) == (ssize_t)strlen(reply));
        close(c);
        _exit(0);
    }
    close(fd);
}

/* ---- canned API answers (docs/interfaces.md) ---- */

static const char canned_members[] =
    "{\"members\":[{\"name\":\"a\",\"addr\":\"127.0.0.1:7946\",\"status\":\"alive\","
    "\"incarnation\":0,\"generation\":3},"
    "{\"name\":\"node-long-name\",\"addr\":\"[::1]:7950\",\"status\":\"suspect\","
    "\"incarnation\":12,\"generation\":1},"
    "{\"name\":\"n2\",\"addr\":\"10.0.0.2:7946\",\"status\":\"dead\",\"incarnation\":3,"
    "\"generation\":2}]}";

static const char canned_info[] =
    "{\"name\":\"n1\",\"addr\":\"127.0.0.1:7946\",\"generation\":3,\"incarnation\":0,"
    "\"health\":0,\"members\":{\"alive\":2,\"suspect\":0,\"dead\":1,\"left\":0},"
    "\"packets\":{\"in\":10,\"out\":12},\"bytes\":{\"in\":1200,\"out\":1300},"
    "\"drops\":{\"too_large\":0,\"truncated\":1,\"unsigned\":0,\"bad_signature\":7,"
    "\"not_endorsed\":0,\"replay\":2,\"decode\":0,\"invalid\":0},"
    "\"protocol\":{\"probes_sent\":5,\"probes_failed\":1,\"ping_reqs_sent\":1,"
    "\"suspicions\":1,\"refutes\":0,\"deaths\":1,\"conflicts\":0,\"updates_applied\":4,"
    "\"pushpulls\":1},\"joining\":false,\"cluster_key\":true}";

/* ---- tests ---- */

TEST(members_table, "members prints an aligned NAME ADDR STATUS INCARNATION table")
{
    routes[0] = ROUTE("GET", "/v1/members", 200, canned_members);
    fake_start();
    struct run r;
    run(&r, "members", "--http", fake_addr);
    fake_stop();
    CHECKF(r.status == 0, "exit %d: %s", r.status, r.err);
    CHECK_STR(r.out, "NAME            ADDR            STATUS   INCARNATION\n"
                     "a               127.0.0.1:7946  alive    0\n"
                     "node-long-name  [::1]:7950      suspect  12\n"
                     "n2              10.0.0.2:7946   dead     3\n");
    CHECK_STR(r.err, "");
}

TEST(members_json, "members --format json prints the API object unchanged")
{
    routes[0] = ROUTE("GET", "/v1/members", 200, canned_members);
    fake_start();
    struct run r;
    run(&r, "members", "--format", "json", "--http", fake_addr);
    fake_stop();
    CHECK_EQ(r.status, 0);
    char want[sizeof(canned_members) + 1];
    snprintf(want, sizeof(want), "%s\n", canned_members);
    CHECK_STR(r.out, want);
    json_error_t e;
    json_t *j = json_loads(r.out, 0, &e);
    CHECKF(json_is_array(json_object_get(j, "members")), "%s", e.text);
    json_decref(j);
}

TEST(members_hostile, "members shows missing fields as - and control characters as ?")
{
    routes[0] = ROUTE("GET", "/v1/members", 200, "{\"members\":[{\"name\":\"ev\\u001b[2Jil\"},7]}");
    fake_start();
    struct run r;
    run(&r, "members", "--http", fake_addr);
    fake_stop();
    CHECK_EQ(r.status, 0);
    CHECK_STR(r.out, "NAME      ADDR  STATUS  INCARNATION\n"
                     "ev?[2Jil  -     -       -\n"
                     "-         -     -       -\n");
}

TEST(info_table, "info prints aligned key: value lines, drops by reason included")
{
    routes[0] = ROUTE("GET", "/v1/info", 200, canned_info);
    fake_start();
    struct run r;
    run(&r, "info", "--http", fake_addr);
    fake_stop();
    CHECKF(r.status == 0, "exit %d: %s", r.status, r.err);
    CHECK(strncmp(r.out, "name:              n1\n", 22) == 0);
    CHECK_HAS(r.out, "\ndrops:\n  too_large:       0\n  truncated:       1\n");
    CHECK_HAS(r.out, "\n  bad_signature:   7\n");
    CHECK_HAS(r.out, "\n  replay:          2\n");
    CHECK_HAS(r.out, "\nmembers:\n  alive:           2\n");
    CHECK_HAS(r.out, "\n  updates_applied: 4\n");
    CHECK_HAS(r.out, "\ncluster_key:       true\n");
    /* every value starts in the same column */
    for (char *line = r.out; *line; line = strchr(line, '\n') + 1) {
        char *colon = strchr(line, ':'), *nl = strchr(line, '\n');
        if (colon + 1 != nl)
            CHECKF(colon - line <= 18 && line[19] != ' ' && line[18] == ' ', "%.*s",
                   (int)(nl - line), line);
    }

    fake_start();
    run(&r, "info", "--format", "json", "--http", fake_addr);
    fake_stop();
    CHECK_EQ(r.status, 0);
    CHECK(strncmp(r.out, canned_info, strlen(canned_info)) == 0);
}

TEST(join_body, "join posts the addresses and the wait, and prints who answered")
{
    routes[0] = ROUTE("POST", "/v1/join", 200, "{\"joined\":\"127.0.0.1:7946\",\"members\":3}",
                      .want_body = "{\"addrs\":[\"127.0.0.1:7946\",\"[::1]:7950\","
                                   "\"seeds.example:7946\"],\"wait\":\"2000ms\"}");
    fake_start();
    struct run r;
    run(&r, "join", "127.0.0.1:7946", "--http", fake_addr, "[::1]:7950", "seeds.example:7946",
        "--wait", "2s");
    fake_stop();
    CHECKF(r.status == 0, "exit %d: %s", r.status, r.err);
    CHECK_STR(r.out, "joined through 127.0.0.1:7946 (3 members known)\n");
}

TEST(join_fails, "join exits 1 with the agent's reason when no node answers")
{
    routes[0] = ROUTE("POST", "/v1/join", 504,
                      "{\"error\":\"no answer within 5.0s from 127.0.0.1:7999\"}");
    fake_start();
    struct run r;
    run(&r, "join", "127.0.0.1:7999", "--http", fake_addr);
    fake_stop();
    CHECKF(r.status == 1, "exit %d: %s", r.status, r.err);
    CHECKF(strstr(r.err, "no answer within 5.0s from 127.0.0.1:7999") != NULL, "%s", r.err);
}

TEST(leave_posts, "leave posts /v1/leave and reports it")
{
    routes[0] = ROUTE("POST", "/v1/leave", 200, "{\"leaving\":true}", .want_body = "");
    fake_start();
    struct run r;
    run(&r, "leave", "--http", fake_addr);
    fake_stop();
    CHECKF(r.status == 0, "exit %d: %s", r.status, r.err);
    char want[128];
    snprintf(want, sizeof(want), "agent at %s is leaving the cluster\n", fake_addr);
    CHECK_STR(r.out, want);
}

TEST(api_errors, "an API error prints the agent's message and exits 1")
{
    routes[0] = ROUTE("GET", "/v1/members", 500, "{\"error\":\"registry on fire\"}");
    routes[1] = ROUTE("GET", "/v1/info", 200, "{\"name\": oops");
    routes[2] = ROUTE("POST", "/v1/join", 404, "not json");
    routes[3] = ROUTE("POST", "/v1/leave", 200, "[1,2]");
    fake_start();
    struct run r;
    char want[128];
    run(&r, "members", "--http", fake_addr);
    CHECK_EQ(r.status, 1);
    CHECK_STR(r.out, "");
    CHECK_STR(r.err, "shoal: registry on fire\n");

    run(&r, "info", "--http", fake_addr);
    CHECK_EQ(r.status, 1);
    snprintf(want, sizeof(want), "shoal: agent at %s sent invalid JSON: ", fake_addr);
    CHECK(strncmp(r.err, want, strlen(want)) == 0);

    run(&r, "join", "1.2.3.4:5", "--http", fake_addr);
    CHECK_EQ(r.status, 1);
    snprintf(want, sizeof(want), "shoal: agent at %s answered HTTP 404\n", fake_addr);
    CHECK_STR(r.err, want);

    run(&r, "leave", "--http", fake_addr);
    CHECK_EQ(r.status, 1);
    snprintf(want, sizeof(want), "shoal: agent at %s sent invalid JSON: not an object\n",
             fake_addr);
    CHECK_STR(r.err, want);
    fake_stop();
}

TEST(unreachable, "an agent that is not there: cannot reach, strerror, exit 1")
{
    struct run r;
    char addr[64], want[128];
    snprintf(addr, sizeof(addr), "127.0.0.1:%u", free_port());
    run(&r, "members", "--http", addr);
    CHECK_EQ(r.status, 1);
    CHECK_STR(r.out, "");
    snprintf(want, sizeof(want), "shoal: cannot reach agent at %s: Connection refused\n", addr);
    CHECK_STR(r.err, want);
}

TEST(silent_agent, "an agent that accepts but never answers times out with exit 1")
{
    struct run r;
    char want[128];
    raw_start(NULL);
    run(&r, "info", "--http", fake_addr);
    fake_stop();
    CHECK_EQ(r.status, 1);
    snprintf(want, sizeof(want), "shoal: cannot reach agent at %s: Connection timed out\n",
             fake_addr);
    CHECK_STR(r.err, want);
}

TEST(raw_responses, "responses without Content-Length, or cut short, are handled")
{
    struct run r;
    char want[160];
    raw_start("HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n{\"members\":[]}");
    run(&r, "members", "--http", fake_addr);
    fake_stop();
    CHECKF(r.status == 0, "%s", r.err);
    CHECK_STR(r.out, "NAME  ADDR  STATUS  INCARNATION\n");

    raw_start("HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{\"members\":");
    run(&r, "members", "--http", fake_addr);
    fake_stop();
    CHECK_EQ(r.status, 1);
    snprintf(want, sizeof(want),
             "shoal: agent at %s closed the connection before answering in full\n", fake_addr);
    CHECK_STR(r.err, want);

    raw_start("SSH-2.0-OpenSSH_9.2\r\n\r\n");
    run(&r, "members", "--http", fake_addr);
    fake_stop();
    CHECK_EQ(r.status, 1);
    snprintf(want, sizeof(want), "shoal: agent at %s sent a malformed HTTP response\n", fake_addr);
    CHECK_STR(r.err, want);

    /* chunked */
    raw_start("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
              "5\r\n{\"mem\r\n9\r\nbers\":[]}\r\n0\r\n\r\n");
    run(&r, "members", "--format", "json", "--http", fake_addr);
    fake_stop();
    CHECK_EQ(r.status, 0);
    CHECK_STR(r.out, "{\"members\":[]}\n");
}

TEST(http_default, "--http defaults to $SHOAL_HTTP_ADDR, and --http overrides it")
{
    routes[0] = ROUTE("GET", "/v1/members", 200, "{\"members\":[]}");
    fake_start();
    struct run r;
    char other[64];
    snprintf(other, sizeof(other), "127.0.0.1:%u", free_port());

    run_env(&r, fake_addr, "members", (char *)NULL);
    CHECKF(r.status == 0, "%s", r.err);
    run_env(&r, other, "members", "--http", fake_addr, (char *)NULL);
    CHECKF(r.status == 0, "%s", r.err);
    run_env(&r, fake_addr, "members", "--http", other, (char *)NULL);
    CHECK_EQ(r.status, 1);
    CHECK_HAS(r.err, other);
    fake_stop();

    run_env(&r, "nonsense", "members", (char *)NULL);
    CHECK_EQ(r.status, 2);
    CHECK_HAS(r.err, "shoal members: bad SHOAL_HTTP_ADDR address 'nonsense'");
    /* unset: the documented default */
    run(&r, "info");
    CHECK(r.status == 0 || r.status == 1); /* 0 if an agent happens to run there */
    if (r.status == 1)
        CHECK_HAS(r.err, "shoal: cannot reach agent at 127.0.0.1:7947: ");
}

TEST(ipv6_http, "--http takes an [IPv6]:PORT address")
{
    int fd = socket(AF_INET6, SOCK_STREAM, 0);
    struct sockaddr_in6 sin6 = {.sin6_family = AF_INET6, .sin6_addr = IN6ADDR_LOOPBACK_INIT};
    if (fd < 0 || bind(fd, (struct sockaddr *)&sin6, sizeof(sin6)) < 0) {
        fprintf(stderr, "skipped: this host has no IPv6 loopback\n");
        return;
    }
    close(fd);
    routes[0] = ROUTE("GET", "/v1/members", 200, canned_members);
    fake_start_at("[::1]");
    struct run r;
    run(&r, "members", "--http", fake_addr);
    fake_stop();
    CHECKF(r.status == 0, "%s", r.err);
    CHECK_HAS(r.out, "node-long-name");
}

/* Usage errors: exit 2, nothing on stdout, the first stderr line exact,
 * then the command's usage. */
TEST(usage_errors, "bad flags and arguments exit 2 naming the problem, with usage")
{
    static const struct {
        const char *args[5];
        const char *line;
    } cases[] = {
        {{"members", "--x"}, "shoal members: unknown flag --x\n"},
        {{"members", "--x=1"}, "shoal members: unknown flag --x\n"},
        {{"members", "-x"}, "shoal members: unknown flag -x\n"},
        {{"members", "--format", "yaml"},
         "shoal members: bad --format 'yaml' (want table or json)\n"},
        {{"members", "--http"}, "shoal members: flag --http needs a value\n"},
        {{"members", "--http", "localhost"},
         "shoal members: bad --http address 'localhost' (want IP:PORT or [IPv6]:PORT)\n"},
        {{"members", "--help=yes"}, "shoal members: flag --help takes no value\n"},
        {{"info", "extra"}, "shoal info: unexpected argument 'extra'\n"},
        {{"leave", "--format", "json"}, "shoal leave: unknown flag --format\n"},
        {{"join"}, "shoal join: needs at least 1 HOST:PORT\n"},
        {{"join", "1.2.3.4:5", "1.2.3.4"},
         "shoal join: bad address '1.2.3.4' (want HOST:PORT, HOST an IP address, [IPv6] or a "
         "DNS name, and a port 1-65535)\n"},
        {{"keygen"}, "shoal keygen: --out FILE is required\n"},
        {{"keygen", "--out", "k", "x"}, "shoal keygen: unexpected argument 'x'\n"},
        {{"version", "--json"}, "shoal version: unknown flag --json\n"},
        {{"help", "nope"}, "shoal help: unknown command 'nope'\n"},
        {{"frobnicate"}, "shoal: unknown command 'frobnicate'\n"},
        {{"--frobnicate"}, "shoal: unknown flag --frobnicate\n"},
        {{NULL}, "usage: shoal COMMAND [FLAGS]\n"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct run r;
        const char *const *a = cases[i].args;
        run(&r, a[0], a[1], a[2], a[3], a[4]);
        CHECKF(r.status == 2, "case %zu: exit %d", i, r.status);
        CHECKF(strcmp(r.out, "") == 0, "case %zu: stdout %s", i, r.out);
        CHECKF(strncmp(r.err, cases[i].line, strlen(cases[i].line)) == 0,
               "case %zu: stderr:\n%s\nwant first line:\n%s", i, r.err, cases[i].line);
        CHECKF(strstr(r.err, "usage: shoal ") != NULL, "case %zu: no usage in %s", i, r.err);
    }
}

TEST(help_texts, "every command has --help; help and version go to stdout, exit 0")
{
    static const char *const cmds[] = {
        "members",  "info",      "join",  "leave",  "register", "deregister", "heartbeat",
        "services", "instances", "watch", "keygen", "version",  "help"};
    struct run r;
    char want[64];
    for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++) {
        snprintf(want, sizeof(want), "usage: shoal %s", cmds[i]);
        run(&r, cmds[i], "--help");
        CHECKF(r.status == 0 && strncmp(r.out, want, strlen(want)) == 0, "%s --help: %d %s",
               cmds[i], r.status, r.out);
        CHECK_STR(r.err, "");
        run(&r, "help", cmds[i]);
        CHECKF(r.status == 0 && strncmp(r.out, want, strlen(want)) == 0, "help %s", cmds[i]);
        run(&r, cmds[i], "-h");
        CHECK(r.status == 0 && strncmp(r.out, want, strlen(want)) == 0);
    }
    run(&r, "members", "--help");
    CHECK_HAS(r.out, "--format table|json");
    CHECK_HAS(r.out, "--http IP:PORT");
    CHECK_HAS(r.out, "$SHOAL_HTTP_ADDR, else 127.0.0.1:7947");
    run(&r, "keygen", "--help");
    CHECK_HAS(r.out, "--out FILE");

    run(&r, "help");
    CHECK_EQ(r.status, 0);
    for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++) {
        snprintf(want, sizeof(want), "\n  %s ", cmds[i]);
        CHECK_HAS(r.out, want);
    }
    CHECK_HAS(r.out, "\n  agent ");
    run(&r, "--help");
    CHECK(r.status == 0 && strncmp(r.out, "usage: shoal COMMAND", 20) == 0);

    run(&r, "version");
    CHECK_EQ(r.status, 0);
    CHECK_STR(r.out, "shoal 0.1.0\n");
    run(&r, "--version");
    CHECK_STR(r.out, "shoal 0.1.0\n");
}

TEST(keygen_file, "keygen writes a 0600 key, prints its path, and never overwrites")
{
    char dir[] = "/tmp/shoal-keygen-XXXXXX", path[64], before[4096], after[4096];
    struct stat st;
    struct run r;
    CHECK(mkdtemp(dir) != NULL);
    snprintf(path, sizeof(path), "%s/cluster.key", dir);

    run(&r, "keygen", "--out", path);
    CHECKF(r.status == 0, "exit %d: %s", r.status, r.err);
    char want[80];
    snprintf(want, sizeof(want), "%s\n", path);
    CHECK_STR(r.out, want);
    CHECK(stat(path, &st) == 0);
    CHECKF((st.st_mode & 0777) == 0600, "mode %o", st.st_mode & 0777);
    CHECK(st.st_size > 0);
    int fd = open(path, O_RDONLY);
    CHECK(fd >= 0);
    size_t nbefore = slurp(fd, before, sizeof(before));

    run(&r, "keygen", "--out", path);
    CHECK_EQ(r.status, 1);
    CHECK_STR(r.out, "");
    CHECK_HAS(r.err, "already exists");
    fd = open(path, O_RDONLY);
    CHECK(fd >= 0);
    CHECK(slurp(fd, after, sizeof(after)) == nbefore && memcmp(before, after, nbefore) == 0);

    snprintf(path, sizeof(path), "%s/no/such/dir/k", dir);
    run(&r, "keygen", "--out", path);
    CHECK_EQ(r.status, 1);
    CHECK_HAS(r.err, "shoal keygen: cannot write ");

    snprintf(path, sizeof(path), "%s/cluster.key", dir);
    unlink(path);
    rmdir(dir);
}

TEST(agent_dispatch, "shoal agent hands its arguments to the agent")
{
    struct run r;
    run(&r, "agent", "--no-such-flag");
    CHECKF(r.status == 2, "exit %d: %s", r.status, r.err);
    CHECK_HAS(r.err, "--no-such-flag");
    run(&r, "help", "agent");
    CHECKF(r.status == 0, "exit %d", r.status);
    CHECK_HAS(r.out, "usage: shoal agent");
}

/* ---- the registry commands (docs/registry-interfaces.md) ---- */

/* Runs shoal with args (NULL-terminated), SHOAL_HTTP_ADDR unset. */
static void run_argv(struct run *r, const char *const *args)
{
    char *argv[MAX_ARGS];
    int argc = 0;
    struct proc p;
    argv[argc++] = "shoal";
    for (; *args && argc < MAX_ARGS - 1; args++)
        argv[argc++] = (char *)*args;
    argv[argc] = NULL;
    spawn(&p, NULL, argv);
    finish(&p, r);
}

TEST(register_body, "register posts every field as the API's JSON and prints registered ID")
{
    routes[0] =
        ROUTE("POST", "/v1/register", 200, "{\"registered\":\"web-1\",\"version\":3}",
              .want_body =
                  "{\"id\":\"web-1\",\"service\":\"web\",\"address\":\"127.0.0.1\",\"port\":8080,"
                  "\"tags\":[\"v1\",\"primary\"],\"meta\":{\"version\":\"1.2\",\"dsn\":\"a=b c\","
                  "\"empty\":\"\"},\"ttl\":10000}");
    routes[1] =
        ROUTE("POST", "/v1/register", 200, "{\"registered\":\"db:1\",\"version\":4}",
              .want_body = "{\"id\":\"db:1\",\"service\":\"db\",\"address\":\"::1\",\"port\":1}");
    fake_start();
    struct run r;
    run(&r, "register", "--service", "web", "--id", "web-1", "--address", "127.0.0.1", "--port",
        "8080", "--tag", "v1", "--meta", "version=1.2", "--ttl", "10s", "--tag", "primary",
        "--meta", "dsn=a=b c", "--meta", "empty=", "--http", fake_addr);
    CHECKF(r.status == 0, "exit %d: %s", r.status, r.err);
    CHECK_STR(r.out, "registered web-1\n");
    CHECK_STR(r.err, "");

    /* optional fields left out entirely; an ID with ':' and an IPv6 address */
    run(&r, "register", "--port", "1", "--address", "::1", "--id", "db:1", "--service", "db",
        "--http", fake_addr);
    fake_stop();
    CHECKF(r.status == 0, "exit %d: %s", r.status, r.err);
    CHECK_STR(r.out, "registered db:1\n");
}

TEST(register_agent_error, "register passes the agent's 400 message through, exit 1")
{
    routes[0] =
        ROUTE("POST", "/v1/register", 400, "{\"error\":\"address must be an IP or host name\"}");
    fake_start();
    struct run r;
    run(&r, "register", "--service", "web", "--id", "w", "--address", "h", "--port", "80", "--http",
        fake_addr);
    fake_stop();
    CHECK_EQ(r.status, 1);
    CHECK_STR(r.out, "");
    CHECK_STR(r.err, "shoal: address must be an IP or host name\n");
}

TEST(registry_usage_errors, "bad registry flags exit 2 naming the flag, before any request")
{
#define REG "register", "--service", "web", "--id", "w1", "--address", "10.0.0.1"
    static char big[5000];
    memset(big, 'x', sizeof(big) - 1);
    memcpy(big, "k=", 2);
    static char big2[5000], big3[5000], big4[5000], huge[4200];
    memcpy(big2, big, sizeof(big));
    memcpy(big3, big, sizeof(big));
    memcpy(big4, big, sizeof(big));
    big2[0] = 'l', big3[0] = 'm', big4[0] = 'n';
    big[4090] = big2[4090] = big3[4090] = big4[4090] = 0; /* 4 x 4089 bytes of key and value */
    memset(huge, 'v', sizeof(huge) - 1);
    memcpy(huge, "k=", 2); /* a 4197-byte value */
    static const struct {
        const char *args[20];
        const char *line;
    } cases[] = {
        {{"register", "--id", "w", "--address", "h", "--port", "1"},
         "shoal register: --service NAME is required\n"},
        {{"register", "--service", "web", "--address", "h", "--port", "1"},
         "shoal register: --id ID is required\n"},
        {{"register", "--service", "web", "--id", "w", "--port", "1"},
         "shoal register: --address HOST is required\n"},
        {{REG}, "shoal register: --port N is required\n"},
        {{"register", "--service", "web", "--id", ".w", "--address", "10.0.0.1", "--port", "1"},
         "shoal register: bad --id '.w' (want"},
        {{REG, "--port", "0"}, "shoal register: bad --port '0' (want 1..65535)\n"},
        {{REG, "--port", "65536"}, "shoal register: bad --port '65536' (want 1..65535)\n"},
        {{REG, "--port", "80x"}, "shoal register: bad --port '80x' (want 1..65535)\n"},
        {{REG, "--port", "-1"}, "shoal register: bad --port '-1' (want 1..65535)\n"},
        {{REG, "--port", "80", "--ttl", "10x"},
         "shoal register: bad --ttl '10x' (want a duration above zero such as 250ms, 10s, 1m, "
         "or bare milliseconds)\n"},
        {{REG, "--port", "80", "--ttl", "0s"}, "shoal register: bad --ttl '0s' (want a duration"},
        {{REG, "--port", "80", "--ttl"}, "shoal register: flag --ttl needs a value\n"},
        {{REG, "--port", "80", "--meta", "=v"},
         "shoal register: bad --meta '=v' (want K=V with K 1..63 of [A-Za-z0-9._-])\n"},
        {{REG, "--port", "80", "--meta", "novalue"},
         "shoal register: bad --meta 'novalue' (want K=V with K 1..63 of [A-Za-z0-9._-])\n"},
        {{REG, "--port", "80", "--meta", "a b=1"}, "shoal register: bad --meta 'a b=1' (want"},
        {{REG, "--port", "80", "--meta", "k=\xff"},
         "shoal register: bad --meta 'k=\xff' (want K=V with V at most 4095 bytes of UTF-8 text, "
         "no control characters)\n"},
        /* What the agent refuses, the CLI refuses first (shared checks). */
        {{REG, "--port", "80", "--meta", "k=a\x01b"}, "shoal register: bad --meta 'k=a\x01b' (want"},
        {{REG, "--port", "80", "--tag", "caf\xc3\xa9"}, "shoal register: bad --tag 'caf\xc3\xa9' (want"},
        {{REG, "--port", "80", "--meta", huge}, "shoal register: bad --meta 'k=vvv"},
        {{REG, "--port", "80", "--meta", "a=1", "--meta", "a=2"},
         "shoal register: --meta key 'a' given twice\n"},
        {{REG, "--port", "80", "--meta", big, "--meta", big2, "--meta", big3, "--meta", big4,
          "--meta", "o=0123456789012345678901234567890123456789"},
         "shoal register: --meta keys and values total 16397 bytes (at most 16384)\n"},
        {{REG, "--port", "80", "--tag", "a,b"},
         "shoal register: bad --tag 'a,b' (want 1..63 printable ASCII characters, no space or "
         "comma)\n"},
        {{REG, "--port", "80", "--tag", ""}, "shoal register: bad --tag '' (want"},
        {{REG, "--port", "80", "--tag", "a b"}, "shoal register: bad --tag 'a b' (want"},
        {{"register", "--service", "Web", "--id", "w", "--address", "h", "--port", "1"},
         "shoal register: bad --service 'Web' (want 1..63 of [a-z0-9-], starting with a letter "
         "or digit)\n"},
        {{"register", "--service", "-web", "--id", "w", "--address", "h", "--port", "1"},
         "shoal register: bad --service '-web' (want"},
        {{"register", "--service", "web", "--id", "a/b", "--address", "h", "--port", "1"},
         "shoal register: bad --id 'a/b' (want 1..127 of [A-Za-z0-9._:-], starting with a letter or digit)\n"},
        {{"register", "--service", "web", "--id", "w", "--address", "h_1", "--port", "1"},
         "shoal register: bad --address 'h_1' (want an IP address or host name: 1..255 of "
         "[A-Za-z0-9.:-])\n"},
        {{"register", "--service", "web", "--id", "w", "--address", "h", "--port", "1", "x"},
         "shoal register: unexpected argument 'x'\n"},
        {{REG, "--port", "80", "--all"}, "shoal register: unknown flag --all\n"},
        {{"deregister"}, "shoal deregister: needs at least 1 ID\n"},
        {{"deregister", "a b"},
         "shoal deregister: bad ID 'a b' (want 1..127 of [A-Za-z0-9._:-], starting with a letter or digit)\n"},
        {{"deregister", "a", "b"}, "shoal deregister: unexpected argument 'b'\n"},
        {{"heartbeat", "--format", "json", "a"}, "shoal heartbeat: unknown flag --format\n"},
        {{"heartbeat", "a?b"}, "shoal heartbeat: bad ID 'a?b' (want"},
        {{"services", "web"}, "shoal services: unexpected argument 'web'\n"},
        {{"instances"}, "shoal instances: needs at least 1 NAME\n"},
        {{"instances", "Web"},
         "shoal instances: bad service name 'Web' (want 1..63 of [a-z0-9-], starting with a "
         "letter or digit)\n"},
        {{"instances", "web", "--all=1"}, "shoal instances: flag --all takes no value\n"},
        {{"instances", "web", "--meta", "k"}, "shoal instances: bad --meta 'k' (want K=V"},
        {{"instances", "web", "--ttl", "1s"}, "shoal instances: unknown flag --ttl\n"},
        {{"watch", "web", "--format", "yaml"},
         "shoal watch: bad --format 'yaml' (want table or json)\n"},
        {{"watch", "web", "--tag", "x,y"}, "shoal watch: bad --tag 'x,y' (want"},
        {{"watch"}, "shoal watch: needs at least 1 NAME\n"},
    };
#undef REG
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct run r;
        run_argv(&r, cases[i].args);
        CHECKF(r.status == 2, "case %zu: exit %d: %s", i, r.status, r.err);
        CHECKF(strcmp(r.out, "") == 0, "case %zu: stdout %s", i, r.out);
        CHECKF(strncmp(r.err, cases[i].line, strlen(cases[i].line)) == 0,
               "case %zu: stderr:\n%s\nwant first line:\n%s", i, r.err, cases[i].line);
        CHECKF(strstr(r.err, "usage: shoal ") != NULL, "case %zu: no usage in %s", i, r.err);
    }
}

TEST(registry_limits, "32 tags pass the CLI's checks, 33 are a usage error")
{
    static const char *const head[] = {"register",  "--service", "web",    "--id", "w1",
                                       "--address", "10.0.0.1",  "--port", "80",   "--http"};
    const char *args[MAX_ARGS];
    char addr[64], tags[33][8];
    size_t n = 0;
    struct run r;
    snprintf(addr, sizeof(addr), "127.0.0.1:%u", free_port()); /* nobody there */
    for (size_t i = 0; i < sizeof(head) / sizeof(head[0]); i++)
        args[n++] = head[i];
    args[n++] = addr;
    for (int i = 0; i < 33; i++) {
        snprintf(tags[i], sizeof(tags[i]), "t%d", i);
        args[n++] = "--tag";
        args[n++] = tags[i];
    }
    args[n] = NULL;
    run_argv(&r, args);
    CHECK_EQ(r.status, 2);
    CHECK(strncmp(r.err, "shoal register: at most 32 --tag\n", 33) == 0);
    args[n - 2] = NULL; /* 32 */
    run_argv(&r, args);
    CHECKF(r.status == 1, "exit %d: %s", r.status, r.err);
    CHECK_HAS(r.err, "shoal: cannot reach agent at ");
}

TEST(deregister_heartbeat, "deregister and heartbeat post to /v1/.../ID and pass 404s through")
{
    routes[0] = ROUTE("POST", "/v1/deregister/web-1.a:b", 200, "{\"deregistered\":\"web-1.a:b\"}",
                      .want_body = "");
    routes[1] = ROUTE("POST", "/v1/heartbeat/web-1", 200,
                      "{\"heartbeat\":\"web-1\",\"status\":\"passing\"}", .want_body = "");
    routes[2] =
        ROUTE("POST", "/v1/deregister/web-9", 404, "{\"error\":\"web-9 is not registered here\"}");
    routes[3] = ROUTE("POST", "/v1/heartbeat/db-1", 400, "{\"error\":\"db-1 has no TTL\"}");
    fake_start();
    struct run r;
    run(&r, "deregister", "web-1.a:b", "--http", fake_addr);
    CHECKF(r.status == 0, "exit %d: %s", r.status, r.err);
    CHECK_STR(r.out, "deregistered web-1.a:b\n");
    run(&r, "heartbeat", "--http", fake_addr, "web-1");
    CHECKF(r.status == 0, "exit %d: %s", r.status, r.err);
    CHECK_STR(r.out, "heartbeat web-1: passing\n");
    run(&r, "deregister", "web-9", "--http", fake_addr);
    CHECK_EQ(r.status, 1);
    CHECK_STR(r.out, "");
    CHECK_STR(r.err, "shoal: web-9 is not registered here\n");
    run(&r, "heartbeat", "db-1", "--http", fake_addr);
    CHECK_EQ(r.status, 1);
    CHECK_STR(r.err, "shoal: db-1 has no TTL\n");
    fake_stop();
}

static const char canned_services[] = "{\"services\":[{\"name\":\"api\",\"passing\":0,\"total\":1},"
                                      "{\"name\":\"web-frontend\",\"passing\":12,\"total\":13}]}";

TEST(services_formats, "services prints NAME PASSING TOTAL, or the API object with json")
{
    routes[0] = ROUTE("GET", "/v1/services", 200, canned_services, .query = "");
    fake_start();
    struct run r;
    run(&r, "services", "--http", fake_addr);
    CHECKF(r.status == 0, "exit %d: %s", r.status, r.err);
    CHECK_STR(r.out, "NAME          PASSING  TOTAL\n"
                     "api           0        1\n"
                     "web-frontend  12       13\n");
    run(&r, "services", "--format", "json", "--http", fake_addr);
    CHECK_EQ(r.status, 0);
    char want[sizeof(canned_services) + 1];
    snprintf(want, sizeof(want), "%s\n", canned_services);
    CHECK_STR(r.out, want);
    fake_stop();

    routes[0] = ROUTE("GET", "/v1/services", 200, "{\"services\":[]}");
    fake_start();
    run(&r, "services", "--http", fake_addr);
    fake_stop();
    CHECK_EQ(r.status, 0);
    CHECK_STR(r.out, "NAME  PASSING  TOTAL\n");
}

#define INST_WEB1                                                                                  \
    "{\"id\":\"web-1\",\"service\":\"web\",\"address\":\"127.0.0.1\",\"port\":8080,"               \
    "\"tags\":[\"v1\",\"primary\"],\"meta\":{\"version\":\"1.2\",\"zone\":\"eu-1\"},"              \
    "\"status\":\"passing\",\"ttl_ms\":10000,\"registered_at\":\"2026-11-26T14:00:00.123Z\","      \
    "\"last_heartbeat\":\"2026-11-26T14:00:05.000Z\",\"owner\":\"n1\",\"owner_status\":\"alive\"," \
    "\"generation\":17,\"version\":4}"
#define INST_WEB2                                                                                  \
    "{\"id\":\"web-2\",\"service\":\"web\",\"address\":\"::1\",\"port\":8081,\"tags\":[],"         \
    "\"meta\":{},\"status\":\"critical\",\"ttl_ms\":0,"                                            \
    "\"registered_at\":\"2026-11-26T14:00:00.123Z\",\"last_heartbeat\":null,\"owner\":\"n2\","     \
    "\"owner_status\":\"dead\",\"generation\":3,\"version\":1}"

TEST(instances_table, "instances prints ID ADDRESS:PORT STATUS OWNER TAGS META")
{
    routes[0] = ROUTE(
        "GET", "/v1/instances/web", 200,
        "{\"index\":5,\"instances\":[" INST_WEB1 "," INST_WEB2 ","
        "{\"id\":\"ev\\u001b[2Jil\",\"address\":\"10.0.0.9\",\"port\":1,\"status\":\"warning\","
        "\"owner\":\"n3\",\"owner_status\":\"suspect\",\"tags\":[\"x\"],"
        "\"meta\":{\"note\":\"0123456789abcdefghijklmnopqrstuvwxyz\",\"u\":\"\\u00e9\"}}]}",
        .query = "");
    fake_start();
    struct run r;
    run(&r, "instances", "web", "--http", fake_addr);
    fake_stop();
    CHECKF(r.status == 0, "exit %d: %s", r.status, r.err);
    CHECK_STR(
        r.out,
        "ID        ADDRESS:PORT    STATUS    OWNER         TAGS        META\n"
        "web-1     127.0.0.1:8080  passing   n1            v1,primary  version=1.2,zone=eu-1\n"
        "web-2     [::1]:8081      critical  n2 (dead)     -           -\n"
        "ev?[2Jil  10.0.0.9:1      warning   n3 (suspect)  x           "
        "note=0123456789abcdefghijklmnopqrs...,u=\xc3\xa9\n");
    CHECK_STR(r.err, "");
}

TEST(instances_json_query, "instances sends the filters as query parameters; json is the array")
{
    routes[0] = ROUTE("GET", "/v1/instances/web", 200,
                      "{\"index\":7,\"instances\":[" INST_WEB1 "," INST_WEB2 "]}",
                      .query = "all=1&tag=v1&tag=a%2Fb%2Bc&meta=version:1.2&meta=q:a%26b%3D%20c");
    routes[1] =
        ROUTE("GET", "/v1/instances/db", 200, "{\"index\":1,\"instances\":[]}", .query = "");
    fake_start();
    struct run r;
    run(&r, "instances", "web", "--all", "--tag", "v1", "--meta", "version=1.2", "--format", "json",
        "--tag", "a/b+c", "--meta", "q=a&b= c", "--http", fake_addr);
    CHECKF(r.status == 0, "exit %d: %s", r.status, r.err);
    CHECK_STR(r.out, "[" INST_WEB1 "," INST_WEB2 "]\n");
    json_t *j = json_loads(r.out, 0, NULL);
    CHECK(json_is_array(j) && json_array_size(j) == 2);
    json_decref(j);

    run(&r, "instances", "db", "--format", "json", "--http", fake_addr);
    CHECK_EQ(r.status, 0);
    CHECK_STR(r.out, "[]\n");
    run(&r, "instances", "db", "--http", fake_addr);
    CHECK_EQ(r.status, 0);
    CHECK_STR(r.out, "ID  ADDRESS:PORT  STATUS  OWNER  TAGS  META\n");
    fake_stop();
}

TEST(instances_errors, "instances: agent errors pass through; a reply without the list fails")
{
    routes[0] = ROUTE("GET", "/v1/instances/web", 400, "{\"error\":\"meta must be K:V\"}");
    routes[1] = ROUTE("GET", "/v1/instances/db", 200, "{\"index\":3}");
    fake_start();
    struct run r;
    char want[128];
    run(&r, "instances", "web", "--http", fake_addr);
    CHECK_EQ(r.status, 1);
    CHECK_STR(r.err, "shoal: meta must be K:V\n");
    run(&r, "instances", "db", "--http", fake_addr);
    CHECK_EQ(r.status, 1);
    snprintf(want, sizeof(want), "shoal: agent at %s sent no \"instances\"\n", fake_addr);
    CHECK_STR(r.err, want);
    fake_stop();
}

/* Checks that text is exactly: for each set i, a header line
 * "# <UTC time> NAME: N instance(s) (index I)" then lines[i], sets separated
 * by a blank line. */
static void check_watch_output(const char *text, const char *const *heads,
                               const char *const *tables, size_t n)
{
    regex_t re;
    CHECK(regcomp(&re, "^# [0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\\.[0-9]{3}Z ",
                  REG_EXTENDED) == 0);
    const char *p = text;
    for (size_t i = 0; i < n; i++) {
        if (i > 0) {
            CHECKF(*p == '\n', "no blank line before set %zu in:\n%s", i, text);
            p++;
        }
        regmatch_t m;
        CHECKF(regexec(&re, p, 1, &m, 0) == 0, "set %zu: no header in:\n%s", i, p);
        p += m.rm_eo;
        CHECKF(strncmp(p, heads[i], strlen(heads[i])) == 0, "set %zu: header\n%s\nwant\n%s", i, p,
               heads[i]);
        p += strlen(heads[i]);
        CHECKF(strncmp(p, tables[i], strlen(tables[i])) == 0, "set %zu: table\n%s\nwant\n%s", i, p,
               tables[i]);
        p += strlen(tables[i]);
    }
    CHECKF(*p == 0, "more output: %s", p);
    regfree(&re);
}

TEST(watch_prints_changes, "watch prints the set, again when the index changes, exits 0 on SIGTERM")
{
    routes[0] = ROUTE("GET", "/v1/instances/web", 200,
                      "{\"index\":5,\"instances\":[" INST_WEB1 "]}", .query = "tag=v1");
    routes[1] = ROUTE("GET", "/v1/instances/web", 200,
                      "{\"index\":6,\"instances\":[" INST_WEB1 "," INST_WEB2 "]}",
                      .query = "tag=v1&index=5&wait=5m");
    routes[2] =
        ROUTE("GET", "/v1/instances/web", 0, NULL, .query = "tag=v1&index=6&wait=5m", .hold = true);
    fake_start();
    struct proc p;
    struct run r;
    start_bg(&p, "watch", "web", "--tag", "v1", "--http", fake_addr, (char *)NULL);
    wait_for(p.ofd, "\n# ", 1, 10000); /* the second set's header */
    wait_for(p.ofd, "web-2", 1, 10000);
    wait_for(fake_holds_fd, "held", 1, 20000); /* now waiting on index=6 */
    kill(p.pid, SIGTERM);
    finish(&p, &r);
    fake_stop();
    CHECKF(r.status == 0, "exit %d: %s", r.status, r.err);
    CHECK_STR(r.err, "");
    static const char *const heads[] = {"web: 1 instance (index 5)\n",
                                        "web: 2 instances (index 6)\n"};
    static const char *const tables[] = {
        "ID     ADDRESS:PORT    STATUS   OWNER  TAGS        META\n"
        "web-1  127.0.0.1:8080  passing  n1     v1,primary  version=1.2,zone=eu-1\n",
        "ID     ADDRESS:PORT    STATUS    OWNER      TAGS        META\n"
        "web-1  127.0.0.1:8080  passing   n1         v1,primary  version=1.2,zone=eu-1\n"
        "web-2  [::1]:8081      critical  n2 (dead)  -           -\n"};
    check_watch_output(r.out, heads, tables, 2);
}

TEST(watch_json_dedup, "watch --format json prints one array per change, none for an equal set")
{
    routes[0] =
        ROUTE("GET", "/v1/instances/web", 200, "{\"index\":5,\"instances\":[]}", .query = "all=1");
    /* the index moves but the set is the same: nothing printed */
    routes[1] = ROUTE("GET", "/v1/instances/web", 200, "{\"index\":6,\"instances\":[]}",
                      .query = "all=1&index=5&wait=5m");
    routes[2] =
        ROUTE("GET", "/v1/instances/web", 200, "{\"index\":9,\"instances\":[" INST_WEB2 "]}",
              .query = "all=1&index=6&wait=5m");
    routes[3] =
        ROUTE("GET", "/v1/instances/web", 0, NULL, .query = "all=1&index=9&wait=5m", .hold = true);
    fake_start();
    struct proc p;
    struct run r;
    start_bg(&p, "watch", "web", "--all", "--format", "json", "--http", fake_addr, (char *)NULL);
    wait_for(p.ofd, "web-2", 1, 10000);
    wait_for(fake_holds_fd, "held", 1, 20000); /* the blocking query is in flight */
    kill(p.pid, SIGINT);
    finish(&p, &r);
    fake_stop();
    CHECKF(r.status == 0, "exit %d: %s", r.status, r.err);
    CHECK_STR(r.out, "[]\n[" INST_WEB2 "]\n");
    CHECK_STR(r.err, "");
}

TEST(watch_signal_midrequest, "watch ends at once with exit 0 on SIGINT while a request hangs")
{
    routes[0] = ROUTE("GET", "/v1/instances/web", 0, NULL, .hold = true);
    fake_start();
    struct proc p;
    struct run r;
    start_bg(&p, "watch", "web", "--http", fake_addr, (char *)NULL);
    wait_for(fake_holds_fd, "held", 1, 20000); /* the request hangs: handlers are set */
    long long t0 = now_ms();
    kill(p.pid, SIGINT);
    finish(&p, &r);
    fake_stop();
    CHECKF(r.status == 0, "exit %d: %s", r.status, r.err);
    /* "at once": the request itself would hang for 5 minutes; a bound far
     * below that and far above any scheduling delay tells the two apart */
    CHECKF(now_ms() - t0 < 30000, "took %lld ms", now_ms() - t0);
    CHECK_STR(r.out, "");
    CHECK_STR(r.err, "");
}

TEST(watch_first_failure, "watch with no agent to start with fails like any command")
{
    struct run r;
    char addr[64], want[128];
    snprintf(addr, sizeof(addr), "127.0.0.1:%u", free_port());
    run(&r, "watch", "web", "--http", addr);
    CHECK_EQ(r.status, 1);
    snprintf(want, sizeof(want), "shoal: cannot reach agent at %s: Connection refused\n", addr);
    CHECK_STR(r.err, want);

    routes[0] = ROUTE("GET", "/v1/instances/web", 500, "{\"error\":\"boom\"}");
    fake_start();
    run(&r, "watch", "web", "--http", fake_addr);
    fake_stop();
    CHECK_EQ(r.status, 1);
    CHECK_STR(r.err, "shoal: boom\n");
}

TEST(watch_outage, "watch warns once when the agent goes away and carries on when it is back")
{
    uint16_t port = free_port();
    routes[0] = ROUTE("GET", "/v1/instances/web", 200,
                      "{\"index\":5,\"instances\":[" INST_WEB1 "]}", .query = "");
    routes[1] =
        ROUTE("GET", "/v1/instances/web", 0, NULL, .query = "index=5&wait=5m", .hold = true);
    fake_start_on("127.0.0.1", port);
    struct proc p;
    struct run r;
    start_bg(&p, "watch", "web", "--format", "json", "--http", fake_addr, (char *)NULL);
    wait_for(p.ofd, "web-1", 1, 10000);
    wait_for(fake_holds_fd, "held", 1, 20000);
    fake_stop(); /* the held blocking query is cut */
    wait_for(p.efd, "retrying", 1, 10000);
    sleep(2); /* several failed tries: still one warning */

    /* back, restarted: its index starts anew */
    routes[0].body = "{\"index\":2,\"instances\":[" INST_WEB2 "]}";
    routes[1].query = "index=2&wait=5m";
    fake_start_on("127.0.0.1", port);
    wait_for(p.ofd, "web-2", 1, 15000);
    wait_for(fake_holds_fd, "held", 1, 20000);
    kill(p.pid, SIGTERM);
    finish(&p, &r);
    fake_stop();
    CHECKF(r.status == 0, "exit %d: %s", r.status, r.err);
    CHECK_STR(r.out, "[" INST_WEB1 "]\n[" INST_WEB2 "]\n");
    char want[256];
    snprintf(want, sizeof(want),
             "shoal watch: agent at %s closed the connection before answering in full; "
             "retrying for up to 60 s\nshoal watch: agent at %s is back\n",
             fake_addr, fake_addr);
    CHECK_STR(r.err, want);
}

TEST_T(watch_gives_up, "watch exits 1 after 60 s without an agent", 120)
{
    routes[0] =
        ROUTE("GET", "/v1/instances/web", 200, "{\"index\":5,\"instances\":[]}", .query = "");
    routes[1] =
        ROUTE("GET", "/v1/instances/web", 0, NULL, .query = "index=5&wait=5m", .hold = true);
    fake_start();
    struct proc p;
    struct run r;
    start_bg(&p, "watch", "web", "--http", fake_addr, (char *)NULL);
    wait_for(p.ofd, "ID ", 1, 10000);
    wait_for(fake_holds_fd, "held", 1, 20000);
    long long t0 = now_ms();
    fake_stop();
    finish(&p, &r);
    long long took = now_ms() - t0;
    CHECK_EQ(r.status, 1);
    /* the lower bound is the rule; the upper one only tells "gave up" from
     * "never gave up" (the test's own timeout is 120 s) */
    CHECKF(took >= 59000 && took < 110000, "gave up after %lld ms", took);
    char want[256];
    snprintf(want, sizeof(want),
             "shoal watch: no agent at %s for 60 s (cannot reach agent at %s: Connection "
             "refused); giving up\n",
             fake_addr, fake_addr);
    CHECK_HAS(r.err, want);
    CHECK_EQ(count_of(r.err, "\n"), 2); /* the one warning, then giving up */
}

TEST_MAIN()
