/* test_cli_args.c -- the `shoal` CLI, run as a real process.
 *
 * Runs the built binary (SHOAL_BIN, else ../shoal next to this test) with
 * arguments and checks exit status, stdout and stderr exactly. The agent it
 * talks to is a fake: io/http.c serving canned answers in a forked child, or
 * a raw socket for broken agents (silent, truncated, no Content-Length).
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
#include <stdarg.h>
#include <stdbool.h>
#include <sys/socket.h>
#include <sys/stat.h>

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

/* Runs shoal with the given arguments (NULL-terminated). env_http sets
 * SHOAL_HTTP_ADDR (NULL unsets it). */
static void run_env(struct run *r, const char *env_http, ...)
{
    char *argv[32];
    int argc = 0;
    va_list ap;
    argv[argc++] = "shoal";
    va_start(ap, env_http);
    for (char *a; (a = va_arg(ap, char *)) && argc < 31;)
        argv[argc++] = a;
    va_end(ap);
    argv[argc] = NULL;

    char outp[] = "/tmp/shoal-cli-out-XXXXXX", errp[] = "/tmp/shoal-cli-err-XXXXXX";
    int ofd = mkstemp(outp), efd = mkstemp(errp);
    CHECK(ofd >= 0 && efd >= 0);
    unlink(outp);
    unlink(errp);
    const char *bin = shoal_bin();
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        dup2(ofd, 1);
        dup2(efd, 2);
        if (env_http)
            setenv("SHOAL_HTTP_ADDR", env_http, 1);
        else
            unsetenv("SHOAL_HTTP_ADDR");
        execv(bin, argv);
        _exit(127);
    }
    int st;
    CHECK(waitpid(pid, &st, 0) == pid);
    r->status = WIFEXITED(st) ? WEXITSTATUS(st) : -WTERMSIG(st);
    slurp(ofd, r->out, sizeof(r->out));
    slurp(efd, r->err, sizeof(r->err));
}
#define run(r, ...) run_env(r, NULL, __VA_ARGS__, (char *)NULL)

#define CHECK_STR(got, want) CHECKF(strcmp((got), (want)) == 0, "got:\n%s\nwant:\n%s", got, want)
#define CHECK_HAS(got, want) CHECKF(strstr((got), (want)) != NULL, "no \"%s\" in:\n%s", want, got)

/* ---- a fake agent: canned answers from io/http.c in a child process ---- */

struct route {
    const char *method, *path;
    int status;
    const char *body;
    const char *want_body; /* if set, any other request body gets 400 */
};

static struct route routes[8];
static char fake_addr[SHOAL_ADDR_STRLEN];
static pid_t fake_pid;

static char *xstrdup(const char *s)
{
    char *p = strdup(s);
    CHECK(p != NULL);
    return p;
}

static void fake_handler(void *ud, uint64_t id, const struct shoal_http_req *req,
                         struct shoal_http_resp *resp)
{
    for (struct route *r = routes; r->path; r++) {
        if (strcmp(r->method, req->method) || strcmp(r->path, req->path))
            continue;
        if (r->want_body && strcmp(r->want_body, req->body) != 0) {
            resp->status = 400;
            CHECK(asprintf(&resp->body, "{\"error\":\"fake agent got body %s\"}", req->body) > 0);
            return;
        }
        resp->status = r->status;
        resp->body = xstrdup(r->body);
        resp->content_type = r->status == 404 ? "text/plain" : NULL;
        return;
    }
    resp->status = 404;
    resp->body = xstrdup("{\"error\":\"fake agent: no such route\"}");
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

/* Starts the fake agent on host ("127.0.0.1" or "[::1]") serving routes. The
 * server listens before the fork, so the CLI can connect at once. */
static void fake_start_at(const char *host)
{
    struct shoal_addr a;
    int err;
    snprintf(fake_addr, sizeof(fake_addr), "%s:%u", host, free_port());
    CHECK_EQ(shoal_addr_parse(fake_addr, &a), 0);
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

static void fake_start(void) { fake_start_at("127.0.0.1"); }

static void fake_stop(void)
{
    kill(fake_pid, SIGKILL);
    waitpid(fake_pid, NULL, 0);
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
    routes[0] = (struct route){"GET", "/v1/members", 200, canned_members, NULL};
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
    routes[0] = (struct route){"GET", "/v1/members", 200, canned_members, NULL};
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
    routes[0] = (struct route){"GET", "/v1/members", 200,
                               "{\"members\":[{\"name\":\"ev\\u001b[2Jil\"},7]}", NULL};
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
    routes[0] = (struct route){"GET", "/v1/info", 200, canned_info, NULL};
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

TEST(join_body, "join posts the addresses as {\"addrs\":[...]}")
{
    routes[0] = (struct route){"POST", "/v1/join", 200, "{\"joining\":2}",
                               "{\"addrs\":[\"127.0.0.1:7946\",\"[::1]:7950\"]}"};
    fake_start();
    struct run r;
    run(&r, "join", "127.0.0.1:7946", "--http", fake_addr, "[::1]:7950");
    fake_stop();
    CHECKF(r.status == 0, "exit %d: %s", r.status, r.err);
    CHECK_STR(r.out, "joining: contacting 2 of 2 addresses\n");
}

TEST(leave_posts, "leave posts /v1/leave and reports it")
{
    routes[0] = (struct route){"POST", "/v1/leave", 200, "{\"leaving\":true}", ""};
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
    routes[0] = (struct route){"GET", "/v1/members", 500, "{\"error\":\"registry on fire\"}", NULL};
    routes[1] = (struct route){"GET", "/v1/info", 200, "{\"name\": oops", NULL};
    routes[2] = (struct route){"POST", "/v1/join", 404, "not json", NULL};
    routes[3] = (struct route){"POST", "/v1/leave", 200, "[1,2]", NULL};
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
    routes[0] = (struct route){"GET", "/v1/members", 200, "{\"members\":[]}", NULL};
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
    routes[0] = (struct route){"GET", "/v1/members", 200, canned_members, NULL};
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
        {{"join"}, "shoal join: needs at least 1 IP:PORT\n"},
        {{"join", "1.2.3.4:5", "1.2.3.4"},
         "shoal join: bad address '1.2.3.4' (want IP:PORT or [IPv6]:PORT)\n"},
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
    static const char *const cmds[] = {"members", "info",    "join", "leave",
                                       "keygen",  "version", "help"};
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

TEST_MAIN()
