/* test_checks_core.c -- the registry core's side of active checks: new
 * checks start critical, results move health (worst of checks and TTL),
 * a version only when a status or the health changes, updates keep a
 * check's last result, deregister_critical_after, and the limits.
 * One registry, no network (send drops), virtual time. */
#include <stdint.h>
#include <string.h>

#include "core/registry.h"
#include "shoal/error.h"
#include "test.h"

static void drop(void *ud, const struct shoal_reg_peer *to, const struct shoal_reg_msg *m) {}

static struct shoal_registry *mk(void)
{
    struct shoal_registry_config c;
    shoal_registry_config_defaults(&c);
    snprintf(c.self, sizeof(c.self), "n0");
    c.generation = 1;
    c.send = drop;
    c.sync_interval_ms = 0;
    int err = 0;
    struct shoal_registry *r = shoal_registry_new(&c, &err);
    CHECK(r && err == 0);
    return r;
}

static struct shoal_check chk(uint8_t kind, const char *target)
{
    struct shoal_check c = {.kind = kind, .target = (char *)target};
    shoal_check_defaults(&c);
    return c;
}

static const struct shoal_instance *own(struct shoal_registry *r, const char *id)
{
    const struct shoal_instance *v[16];
    size_t n = shoal_registry_own(r, v, 16);
    for (size_t i = 0; i < n && i < 16; i++)
        if (strcmp(v[i]->id, id) == 0)
            return v[i];
    return NULL;
}

static struct shoal_instance spec_of(const char *id, struct shoal_check *c, uint32_t n)
{
    return (struct shoal_instance){.id = (char *)id,
                                   .service = "web",
                                   .address = "127.0.0.1",
                                   .port = 80,
                                   .n_checks = n,
                                   .checks = c};
}

TEST(starts_critical, "a new check starts critical; a pass makes the instance passing")
{
    struct shoal_registry *r = mk();
    struct shoal_check c[2] = {chk(SHOAL_CHECK_HTTP, "http://127.0.0.1:1/h"),
                               chk(SHOAL_CHECK_TCP, "127.0.0.1:2")};
    struct shoal_instance s = spec_of("a", c, 2);
    CHECK(shoal_registry_register(r, 0, 0, &s, NULL) == 0);
    CHECK_EQ(own(r, "a")->health, SHOAL_CRITICAL);
    CHECK_EQ(own(r, "a")->checks[0].status, SHOAL_CRITICAL);
    CHECK(shoal_registry_check_result(r, 10, "a", 0, SHOAL_PASSING, "HTTP 200") == 0);
    CHECK_EQ(own(r, "a")->health, SHOAL_CRITICAL); /* the tcp check has not passed */
    CHECK(shoal_registry_check_result(r, 20, "a", 1, SHOAL_PASSING, "ok") == 0);
    CHECK_EQ(own(r, "a")->health, SHOAL_PASSING);
    CHECK(strcmp(own(r, "a")->checks[0].output, "HTTP 200") == 0);
    shoal_registry_free(r);
}

TEST(worst_wins, "health is the worst of the checks: one warning makes it warning")
{
    struct shoal_registry *r = mk();
    struct shoal_check c[2] = {chk(SHOAL_CHECK_HTTP, "http://127.0.0.1:1/h"),
                               chk(SHOAL_CHECK_TCP, "127.0.0.1:2")};
    struct shoal_instance s = spec_of("a", c, 2);
    CHECK(shoal_registry_register(r, 0, 0, &s, NULL) == 0);
    CHECK(shoal_registry_check_result(r, 1, "a", 0, SHOAL_WARNING, "429") == 0);
    CHECK(shoal_registry_check_result(r, 1, "a", 1, SHOAL_PASSING, "ok") == 0);
    CHECK_EQ(own(r, "a")->health, SHOAL_WARNING);
    CHECK(shoal_registry_check_result(r, 2, "a", 1, SHOAL_CRITICAL, "refused") == 0);
    CHECK_EQ(own(r, "a")->health, SHOAL_CRITICAL);
    shoal_registry_free(r);
}

TEST(version_only_on_change, "a new version only when a status changes, not for output alone")
{
    struct shoal_registry *r = mk();
    struct shoal_check c[1] = {chk(SHOAL_CHECK_TCP, "127.0.0.1:2")};
    struct shoal_instance s = spec_of("a", c, 1);
    CHECK(shoal_registry_register(r, 0, 0, &s, NULL) == 0);
    CHECK(shoal_registry_check_result(r, 1, "a", 0, SHOAL_PASSING, "ok 1ms") == 0);
    uint64_t v = own(r, "a")->version;
    CHECK(shoal_registry_check_result(r, 2, "a", 0, SHOAL_PASSING, "ok 2ms") == 0);
    CHECK_EQ(own(r, "a")->version, v);
    CHECK(strcmp(own(r, "a")->checks[0].output, "ok 2ms") == 0);
    CHECK(shoal_registry_check_result(r, 3, "a", 0, SHOAL_CRITICAL, "refused") == 0);
    CHECK_EQ(own(r, "a")->version, v + 1);
    CHECK(shoal_registry_check_result(r, 3, "a", 1, SHOAL_PASSING, "") == SHOAL_ENOENT);
    CHECK(shoal_registry_check_result(r, 3, "zz", 0, SHOAL_PASSING, "") == SHOAL_ENOENT);
    CHECK(shoal_registry_check_result(r, 3, "a", 0, 7, "") == SHOAL_EINVAL);
    shoal_registry_free(r);
}

TEST(output_sanitized, "output is cut to 255 bytes and control bytes are replaced")
{
    struct shoal_registry *r = mk();
    struct shoal_check c[1] = {chk(SHOAL_CHECK_TCP, "127.0.0.1:2")};
    struct shoal_instance s = spec_of("a", c, 1);
    char big[1000];
    memset(big, 'x', sizeof(big) - 1);
    big[sizeof(big) - 1] = 0;
    big[3] = '\n';
    big[4] = (char)0xff;
    CHECK(shoal_registry_register(r, 0, 0, &s, NULL) == 0);
    CHECK(shoal_registry_check_result(r, 1, "a", 0, SHOAL_PASSING, big) == 0);
    const char *o = own(r, "a")->checks[0].output;
    CHECK_EQ(strlen(o), SHOAL_CHECK_OUTPUT_MAX - 1);
    CHECK(o[3] == '?' && o[4] == '?');
    CHECK(shoal_instance_validate(own(r, "a"), NULL) == 0);
    shoal_registry_free(r);
}

TEST(ttl_and_checks, "a TTL counts as a check: heartbeat alone is not enough if a check fails")
{
    struct shoal_registry *r = mk();
    struct shoal_check c[1] = {chk(SHOAL_CHECK_TCP, "127.0.0.1:2")};
    struct shoal_instance s = spec_of("a", c, 1);
    s.ttl_ms = 1000;
    CHECK(shoal_registry_register(r, 0, 0, &s, NULL) == 0);
    CHECK(shoal_registry_heartbeat(r, 10, 10, "a") == 0);
    CHECK_EQ(own(r, "a")->health, SHOAL_CRITICAL);
    CHECK(shoal_registry_check_result(r, 20, "a", 0, SHOAL_PASSING, "ok") == 0);
    CHECK_EQ(own(r, "a")->health, SHOAL_PASSING);
    /* The TTL lapses: critical although the check passes. */
    shoal_registry_tick(r, 1500);
    CHECK_EQ(own(r, "a")->health, SHOAL_CRITICAL);
    CHECK(shoal_registry_heartbeat(r, 1600, 1600, "a") == 0);
    CHECK_EQ(own(r, "a")->health, SHOAL_PASSING);
    shoal_registry_free(r);
}

TEST(update_keeps_result,
     "re-registering with the same check keeps its result; a new one starts critical")
{
    struct shoal_registry *r = mk();
    struct shoal_check c[2] = {chk(SHOAL_CHECK_TCP, "127.0.0.1:2"),
                               chk(SHOAL_CHECK_HTTP, "http://127.0.0.1:3/")};
    struct shoal_instance s = spec_of("a", c, 1);
    CHECK(shoal_registry_register(r, 0, 0, &s, NULL) == 0);
    CHECK(shoal_registry_check_result(r, 1, "a", 0, SHOAL_PASSING, "ok") == 0);
    uint64_t v = own(r, "a")->version;
    CHECK(shoal_registry_register(r, 2, 2, &s, NULL) == 0); /* same spec: no-op */
    CHECK_EQ(own(r, "a")->version, v);
    s.port = 81;
    CHECK(shoal_registry_register(r, 3, 3, &s, NULL) == 0);
    CHECK_EQ(own(r, "a")->health, SHOAL_PASSING);
    s.n_checks = 2;
    CHECK(shoal_registry_register(r, 4, 4, &s, NULL) == 0);
    CHECK_EQ(own(r, "a")->checks[0].status, SHOAL_PASSING);
    CHECK_EQ(own(r, "a")->checks[1].status, SHOAL_CRITICAL);
    CHECK_EQ(own(r, "a")->health, SHOAL_CRITICAL);
    shoal_registry_free(r);
}

TEST(deregister_critical_after, "critical for deregister_critical_after: the owner deregisters it")
{
    struct shoal_registry *r = mk();
    struct shoal_check c[1] = {chk(SHOAL_CHECK_TCP, "127.0.0.1:2")};
    struct shoal_instance s = spec_of("a", c, 1);
    s.deregister_critical_after_ms = 5000;
    CHECK(shoal_registry_register(r, 0, 0, &s, NULL) == 0);
    CHECK(shoal_registry_check_result(r, 100, "a", 0, SHOAL_PASSING, "ok") == 0);
    CHECK(shoal_registry_check_result(r, 1000, "a", 0, SHOAL_CRITICAL, "down") == 0);
    CHECK_EQ(shoal_registry_next_deadline(r) <= 6000, 1);
    /* Output-only updates while critical do not restart the clock. */
    CHECK(shoal_registry_check_result(r, 3000, "a", 0, SHOAL_CRITICAL, "still down") == 0);
    shoal_registry_tick(r, 5999);
    CHECK(own(r, "a") != NULL);
    shoal_registry_tick(r, 6000);
    CHECK(own(r, "a") == NULL);
    shoal_registry_free(r);
}

TEST(recovery_resets_dca, "a pass before deregister_critical_after restarts its clock")
{
    struct shoal_registry *r = mk();
    struct shoal_check c[1] = {chk(SHOAL_CHECK_TCP, "127.0.0.1:2")};
    struct shoal_instance s = spec_of("a", c, 1);
    s.deregister_critical_after_ms = 5000;
    CHECK(shoal_registry_register(r, 0, 0, &s, NULL) == 0);
    shoal_registry_tick(r, 4000);
    CHECK(shoal_registry_check_result(r, 4000, "a", 0, SHOAL_PASSING, "ok") == 0);
    CHECK(shoal_registry_check_result(r, 4500, "a", 0, SHOAL_CRITICAL, "down") == 0);
    shoal_registry_tick(r, 9000);
    CHECK(own(r, "a") != NULL);
    shoal_registry_tick(r, 9500);
    CHECK(own(r, "a") == NULL);
    shoal_registry_free(r);
}

TEST(check_limits, "limits: 8 checks, timeout below interval, URL and HOST:PORT targets")
{
    struct shoal_check c[9];
    for (int i = 0; i < 9; i++)
        c[i] = chk(SHOAL_CHECK_TCP, "127.0.0.1:2");
    struct shoal_instance s = spec_of("a", c, 9);
    const char *why = NULL;
    CHECK(shoal_instance_validate(&s, &why) == SHOAL_EINVAL && strstr(why, "8 checks"));
    s.n_checks = 8;
    CHECK(shoal_instance_validate(&s, NULL) == 0);
    s.n_checks = 1;
    c[0].timeout_ms = c[0].interval_ms;
    CHECK(shoal_instance_validate(&s, &why) == SHOAL_EINVAL && strstr(why, "timeout"));
    c[0] = chk(SHOAL_CHECK_TCP, "127.0.0.1");
    CHECK(shoal_instance_validate(&s, &why) == SHOAL_EINVAL && strstr(why, "IP:PORT"));
    /* A host name would never connect (the prober does not resolve): refused. */
    c[0] = chk(SHOAL_CHECK_TCP, "db.local:5432");
    CHECK(shoal_instance_validate(&s, &why) == SHOAL_EINVAL && strstr(why, "not a host name"));
    c[0] = chk(SHOAL_CHECK_TCP, "[::1]:5432");
    CHECK(shoal_instance_validate(&s, NULL) == 0);
    c[0] = chk(SHOAL_CHECK_HTTP, "ftp://x/");
    CHECK(shoal_instance_validate(&s, &why) == SHOAL_EINVAL && strstr(why, "URL"));
    c[0] = chk(SHOAL_CHECK_HTTP, "http://a b/");
    CHECK(shoal_instance_validate(&s, &why) == SHOAL_EINVAL);
    c[0] = chk(SHOAL_CHECK_TCP, "127.0.0.1:2");
    c[0].interval_ms = 1000;
    c[0].timeout_ms = 0;
    shoal_check_defaults(&c[0]);
    CHECK_EQ(c[0].timeout_ms, 500); /* half a short interval */
    struct shoal_instance copy;
    c[0].output = "x";
    CHECK(shoal_instance_copy(&copy, &s) == 0);
    CHECK(shoal_instance_same_spec(&copy, &s));
    CHECK(strcmp(copy.checks[0].output, "x") == 0 && copy.checks[0].output != c[0].output);
    copy.checks[0].interval_ms++;
    CHECK(!shoal_instance_same_spec(&copy, &s));
    shoal_instance_clear(&copy);
}

TEST_MAIN()
