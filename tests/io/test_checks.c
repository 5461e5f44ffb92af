/* test_checks.c -- the active-check runner (io/checks.c) on the real libev
 * loop with real sockets: a tiny HTTP server in the same loop answers
 * 200 / 429 / 500 / never (hang) by path, a TCP listener accepts; results
 * go into a real registry. Covers statuses, a hung backend's timeout, TCP
 * refused, damping (rise/fall), bounded concurrency and that 200 checks do
 * not hold up a 10 ms timer. */
#define _GNU_SOURCE /* accept4 */
#include <arpa/inet.h>
#include <ev.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "core/registry.h"
#include "io/checks.h"
#include "shoal/error.h"
#include "test.h"
#include "wire/wire.h"

static struct ev_loop *loop;
static struct shoal_registry *reg;
static struct shoal_checks *cs;
static int http_port, tcp_port;
static int fail_code = 200; /* what /flaky answers */
static int results;         /* result callbacks */
static int hung_fds[64], n_hung;

/* ---- a tiny HTTP/1.1 server in the loop ---- */

struct conn {
    ev_io io;
    char buf[2048];
    size_t len;
};

static void conn_read(struct ev_loop *l, ev_io *w, int revents)
{
    struct conn *c = (struct conn *)w;
    ssize_t n = read(w->fd, c->buf + c->len, sizeof(c->buf) - 1 - c->len);
    if (n <= 0)
        goto done;
    c->len += (size_t)n;
    c->buf[c->len] = 0;
    if (!strstr(c->buf, "\r\n\r\n"))
        return;
    int code = strncmp(c->buf, "GET /ok ", 8) == 0       ? 200
               : strncmp(c->buf, "GET /busy ", 10) == 0  ? 429
               : strncmp(c->buf, "GET /err ", 9) == 0    ? 500
               : strncmp(c->buf, "GET /flaky ", 11) == 0 ? fail_code
               : strncmp(c->buf, "GET /hang ", 10) == 0  ? 0
                                                         : 404;
    if (code == 0) { /* hold it open, say nothing */
        ev_io_stop(l, w);
        hung_fds[n_hung++ % 64] = w->fd;
        free(c);
        return;
    }
    char resp[160];
    int m = snprintf(resp, sizeof(resp),
                     "HTTP/1.1 %d X\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello", code);
    CHECK(write(w->fd, resp, (size_t)m) == m);
done:
    ev_io_stop(l, w);
    close(w->fd);
    free(c);
}

static void http_accept(struct ev_loop *l, ev_io *w, int revents)
{
    int fd = accept4(w->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0)
        return;
    struct conn *c = calloc(1, sizeof(*c));
    CHECK(c);
    ev_io_init(&c->io, conn_read, fd, EV_READ);
    ev_io_start(l, &c->io);
}

static void tcp_accept(struct ev_loop *l, ev_io *w, int revents)
{
    int fd = accept4(w->fd, NULL, NULL, SOCK_CLOEXEC);
    if (fd >= 0)
        close(fd);
}

static int listener(int *port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(a);
    CHECK(fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0 && listen(fd, 1024) == 0);
    CHECK(getsockname(fd, (struct sockaddr *)&a, &len) == 0);
    *port = ntohs(a.sin_port);
    return fd;
}

/* A port with nothing listening (bound then closed). */
static int dead_port(void)
{
    int p, fd = listener(&p);
    close(fd);
    return p;
}

static ev_io http_w, tcp_w;

static void on_result(void *ud, const char *id, uint32_t index, uint8_t status, const char *out)
{
    results++;
    CHECK(shoal_registry_check_result(reg, 0, id, index, status, out) == 0);
}

static void drop(void *ud, const struct shoal_reg_peer *to, const struct shoal_reg_msg *m) {}

static void setup(uint32_t max_in_flight)
{
    loop = ev_loop_new(EVFLAG_AUTO);
    ev_io_init(&http_w, http_accept, listener(&http_port), EV_READ);
    ev_io_init(&tcp_w, tcp_accept, listener(&tcp_port), EV_READ);
    ev_io_start(loop, &http_w);
    ev_io_start(loop, &tcp_w);
    struct shoal_registry_config rc;
    shoal_registry_config_defaults(&rc);
    snprintf(rc.self, sizeof(rc.self), "n0");
    rc.generation = 1;
    rc.send = drop;
    rc.sync_interval_ms = 0;
    int err;
    reg = shoal_registry_new(&rc, &err);
    CHECK(reg);
    struct shoal_checks_config cc;
    shoal_checks_config_defaults(&cc);
    cc.reg = reg;
    cc.result = on_result;
    cc.first_max_ms = 50;
    cc.poll_ms = 20;
    if (max_in_flight)
        cc.max_in_flight = max_in_flight;
    cs = shoal_checks_new(loop, &cc, &err);
    CHECK(cs && err == 0);
}

static void stop_cb(struct ev_loop *l, ev_timer *w, int revents) { ev_break(l, EVBREAK_ALL); }

static void run_ms(int ms)
{
    ev_timer t;
    ev_timer_init(&t, stop_cb, ms / 1000.0, 0.);
    ev_timer_start(loop, &t);
    ev_run(loop, 0);
    ev_timer_stop(loop, &t);
}

static struct shoal_check mkcheck(uint8_t kind, const char *target, uint32_t interval,
                                  uint32_t timeout)
{
    return (struct shoal_check){
        .kind = kind, .target = strdup(target), .interval_ms = interval, .timeout_ms = timeout};
}

static void reg_one(const char *id, struct shoal_check *c, uint32_t n)
{
    struct shoal_instance s = {.id = (char *)id,
                               .service = "web",
                               .address = "127.0.0.1",
                               .port = 80,
                               .n_checks = n,
                               .checks = c};
    const char *why = NULL;
    CHECKF(shoal_registry_register(reg, 0, 0, &s, &why) == 0, "%s", why ? why : "");
}

static const struct shoal_instance *own(const char *id)
{
    static const struct shoal_instance *v[1024];
    size_t n = shoal_registry_own(reg, v, 1024);
    for (size_t i = 0; i < n && i < 1024; i++)
        if (strcmp(v[i]->id, id) == 0)
            return v[i];
    return NULL;
}

static char *url(const char *path)
{
    static char b[8][64];
    static int k;
    char *s = b[k++ % 8];
    snprintf(s, 64, "http://127.0.0.1:%d%s", http_port, path);
    return s;
}

static char *hostport(int port)
{
    static char b[8][32];
    static int k;
    char *s = b[k++ % 8];
    snprintf(s, 32, "127.0.0.1:%d", port);
    return s;
}

TEST(http_statuses, "HTTP: 2xx passing, 429 warning, 500 critical, a hung backend times out")
{
    setup(0);
    struct shoal_check c[4] = {
        mkcheck(SHOAL_CHECK_HTTP, url("/ok"), 1000, 300),
        mkcheck(SHOAL_CHECK_HTTP, url("/busy"), 1000, 300),
        mkcheck(SHOAL_CHECK_HTTP, url("/err"), 1000, 300),
        mkcheck(SHOAL_CHECK_HTTP, url("/hang"), 1000, 300),
    };
    reg_one("a", c, 4);
    run_ms(700);
    const struct shoal_instance *in = own("a");
    CHECK_EQ(in->checks[0].status, SHOAL_PASSING);
    CHECK(strstr(in->checks[0].output, ": 200 hello"));
    CHECK_EQ(in->checks[1].status, SHOAL_WARNING);
    CHECK_EQ(in->checks[2].status, SHOAL_CRITICAL);
    CHECK(strstr(in->checks[2].output, ": 500"));
    CHECK_EQ(in->checks[3].status, SHOAL_CRITICAL);
    CHECKF(strstr(in->checks[3].output, "imed out") != NULL, "%s", in->checks[3].output);
    CHECK_EQ(in->health, SHOAL_CRITICAL);
    const struct shoal_checks_stats *st = shoal_checks_stats(cs);
    CHECK(st->run >= 4 && st->failed >= 3 && st->timeouts >= 1);
    CHECK_EQ(st->latency_count, st->run);
    CHECK(st->latency_buckets[SHOAL_CHECKS_LATENCY_BUCKETS - 1] == st->run);
    shoal_checks_free(cs);
}

TEST(tcp_checks, "TCP: a listener is passing, a closed port critical (refused)")
{
    setup(0);
    struct shoal_check c[2] = {mkcheck(SHOAL_CHECK_TCP, hostport(tcp_port), 1000, 300),
                               mkcheck(SHOAL_CHECK_TCP, hostport(dead_port()), 1000, 300)};
    reg_one("a", c, 2);
    run_ms(400);
    const struct shoal_instance *in = own("a");
    CHECK_EQ(in->checks[0].status, SHOAL_PASSING);
    CHECK_EQ(in->checks[1].status, SHOAL_CRITICAL);
    CHECKF(strstr(in->checks[1].output, "refused") != NULL, "%s", in->checks[1].output);
    shoal_checks_free(cs);
}

TEST(damp_pure, "damping: rise successes before passing, fall failures before critical")
{
    struct shoal_check_damp d = {0};
    uint8_t s = SHOAL_CRITICAL;
    s = shoal_check_damp_feed(&d, s, SHOAL_PASSING, 2, 3);
    CHECK_EQ(s, SHOAL_CRITICAL);
    s = shoal_check_damp_feed(&d, s, SHOAL_PASSING, 2, 3);
    CHECK_EQ(s, SHOAL_PASSING);
    s = shoal_check_damp_feed(&d, s, SHOAL_CRITICAL, 2, 3);
    s = shoal_check_damp_feed(&d, s, SHOAL_WARNING, 2, 3);
    CHECK_EQ(s, SHOAL_PASSING);
    s = shoal_check_damp_feed(&d, s, SHOAL_PASSING, 2, 3); /* resets the failures */
    s = shoal_check_damp_feed(&d, s, SHOAL_CRITICAL, 2, 3);
    s = shoal_check_damp_feed(&d, s, SHOAL_CRITICAL, 2, 3);
    CHECK_EQ(s, SHOAL_PASSING);
    s = shoal_check_damp_feed(&d, s, SHOAL_CRITICAL, 2, 3);
    CHECK_EQ(s, SHOAL_CRITICAL);
}

TEST(damp_live, "damping on a live backend: fall-1 failures do not flip it, fall do")
{
    setup(0);
    struct shoal_check c[1] = {mkcheck(SHOAL_CHECK_HTTP, url("/flaky"), 200, 100)};
    c[0].fall = 3;
    reg_one("a", c, 1);
    run_ms(300); /* first probe within 50 ms */
    CHECK_EQ(own("a")->health, SHOAL_PASSING);
    fail_code = 503;
    int before = results;
    while (results < before + 2)
        run_ms(10);
    CHECK_EQ(own("a")->health, SHOAL_PASSING);
    CHECKF(strstr(own("a")->checks[0].output, "failure 2/3") != NULL, "%s",
           own("a")->checks[0].output);
    while (results < before + 3)
        run_ms(10);
    CHECK_EQ(own("a")->health, SHOAL_CRITICAL);
    fail_code = 200;
    run_ms(250);
    CHECK_EQ(own("a")->health, SHOAL_PASSING);
    shoal_checks_free(cs);
}

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int64_t last_tick, max_gap;
static int ticks;

static void tick_cb(struct ev_loop *l, ev_timer *w, int revents)
{
    int64_t now = mono_ms();
    if (last_tick && now - last_tick > max_gap)
        max_gap = now - last_tick;
    last_tick = now;
    ticks++;
}

TEST(no_blocking, "200 checks (a quarter hung 1s) with 32 in flight: a 10 ms timer keeps ticking")
{
    setup(32);
    char id[32];
    for (int i = 0; i < 200; i++) {
        struct shoal_check c[1];
        if (i % 4 == 0)
            c[0] = mkcheck(SHOAL_CHECK_HTTP, url("/hang"), 1500, 1000);
        else if (i % 4 == 1)
            c[0] = mkcheck(SHOAL_CHECK_HTTP, url("/ok"), 500, 100);
        else if (i % 4 == 2)
            c[0] = mkcheck(SHOAL_CHECK_TCP, hostport(tcp_port), 500, 100);
        else
            c[0] = mkcheck(SHOAL_CHECK_TCP, hostport(dead_port()), 500, 100);
        snprintf(id, sizeof(id), "i%d", i);
        reg_one(id, c, 1);
    }
    ev_timer t;
    ev_timer_init(&t, tick_cb, 0.01, 0.01);
    ev_timer_start(loop, &t);
    run_ms(2600);
    ev_timer_stop(loop, &t);
    const struct shoal_checks_stats *st = shoal_checks_stats(cs);
    fprintf(stderr, "probes %llu, ticks %d, max gap %lld ms, in flight %u queued %u\n",
            (unsigned long long)st->run, ticks, (long long)max_gap, st->in_flight, st->queued);
    CHECK_EQ(st->configured, 200);
    CHECK(st->in_flight <= 32);
    CHECK(st->run >= 300); /* the 150 quick ones ran at least twice */
    /* A probe that blocked the loop would stall it for a whole 1 s hang
     * timeout (50 of them); the bound is loose for loaded CI machines. */
    CHECKF(max_gap < 500, "%lld", (long long)max_gap);
    CHECK(ticks >= 100);
    for (int i = 0; i < 200; i++) {
        snprintf(id, sizeof(id), "i%d", i);
        CHECK_EQ(own(id)->health, i % 4 == 1 || i % 4 == 2 ? SHOAL_PASSING : SHOAL_CRITICAL);
    }
    shoal_checks_free(cs);
}

TEST(deregister_cancels, "deregistering an instance stops its probes, hung ones included")
{
    setup(0);
    struct shoal_check c[2] = {mkcheck(SHOAL_CHECK_HTTP, url("/hang"), 1000, 900),
                               mkcheck(SHOAL_CHECK_TCP, hostport(tcp_port), 1000, 900)};
    reg_one("a", c, 2);
    run_ms(100);
    CHECK_EQ(shoal_checks_stats(cs)->configured, 2);
    CHECK(shoal_registry_deregister(reg, 0, "a") == 0);
    run_ms(60);
    CHECK_EQ(shoal_checks_stats(cs)->configured, 0);
    CHECK_EQ(shoal_checks_stats(cs)->in_flight, 0);
    shoal_checks_free(cs);
}

TEST(wire_roundtrip,
     "checks and deregister_critical_after survive the wire codec; bad ones are refused")
{
    struct shoal_check c[2] = {
        {SHOAL_CHECK_HTTP, "http://127.0.0.1:1/h", 10000, 2000, 2, 3, SHOAL_WARNING, "HTTP 429"},
        {SHOAL_CHECK_TCP, "127.0.0.1:5432", 5000, 1000, 0, 0, SHOAL_PASSING, NULL}};
    struct shoal_instance in = {.id = "a",
                                .service = "web",
                                .address = "127.0.0.1",
                                .port = 80,
                                .health = SHOAL_WARNING,
                                .n_checks = 2,
                                .checks = c,
                                .deregister_critical_after_ms = 60000,
                                .generation = 1,
                                .version = 7};
    snprintf(in.owner, sizeof(in.owner), "n0");
    struct shoal_reg_msg m = {.type = SHOAL_REG_GOSSIP, .n_events = 1, .events = &in};
    snprintf(m.from, sizeof(m.from), "n0");
    uint8_t buf[4096];
    int len = shoal_wire_encode_reg(&m, buf, sizeof(buf));
    CHECK(len > 0);
    struct shoal_reg_msg out;
    const char *bad = NULL;
    CHECKF(shoal_wire_decode_reg(buf, (size_t)len, &out, &bad) == 0, "%s", bad ? bad : "");
    CHECK_EQ(out.n_events, 1);
    const struct shoal_instance *d = &out.events[0];
    CHECK_EQ(d->n_checks, 2);
    CHECK_EQ(d->deregister_critical_after_ms, 60000);
    CHECK(shoal_instance_same_spec(d, &in));
    CHECK(d->checks[0].status == SHOAL_WARNING && strcmp(d->checks[0].output, "HTTP 429") == 0);
    CHECK(d->checks[1].output == NULL && d->checks[1].rise == 0);
    shoal_reg_msg_free(&out);
    /* A check the validator refuses (timeout >= interval) fails the decode by name. */
    c[1].timeout_ms = 5000;
    len = shoal_wire_encode_reg(&m, buf, sizeof(buf));
    CHECK(len > 0);
    CHECK(shoal_wire_decode_reg(buf, (size_t)len, &out, &bad) != 0);
    CHECKF(bad && strstr(bad, "timeout"), "%s", bad ? bad : "");
}

TEST_MAIN()
