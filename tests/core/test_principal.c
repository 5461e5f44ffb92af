/* test_principal.c -- the name -> key table and the service-scope glob. */
#include <stdint.h>

#include "core/principal.h"
#include "shoal/error.h"
#include "test.h"

static struct shoal_principal mk(const char *name, uint8_t keybyte)
{
    struct shoal_principal p;
    memset(&p, 0, sizeof p);
    snprintf(p.name, sizeof p.name, "%s", name);
    memset(p.pk, keybyte, sizeof p.pk);
    p.not_before = 100;
    p.not_after = 200;
    return p;
}

TEST(glob_rules, "scope globs match whole names with * and ?")
{
    CHECK(shoal_glob_match("web*", "web"));
    CHECK(shoal_glob_match("web*", "web-frontend"));
    CHECK(!shoal_glob_match("web*", "payments"));
    CHECK(!shoal_glob_match("web*", "a-web"));
    CHECK(shoal_glob_match("*-api", "users-api"));
    CHECK(!shoal_glob_match("*-api", "users-api2"));
    CHECK(shoal_glob_match("db?", "db1"));
    CHECK(!shoal_glob_match("db?", "db"));
    CHECK(shoal_glob_match("*", "anything"));
    CHECK(shoal_glob_match("a*b*c", "axxbyyc"));
    CHECK(!shoal_glob_match("a*b*c", "axxbyy"));
    CHECK(shoal_glob_match("payments", "payments"));
    CHECK(!shoal_glob_match("payments", "payment"));
    /* a pathological pattern stays fast (greedy matcher, no exponential backtracking) */
    char name[64];
    memset(name, 'a', 62);
    name[62] = 0;
    CHECK(!shoal_glob_match("*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*b", name));
}

TEST(scope_syntax, "scope patterns are checked")
{
    CHECK(shoal_scope_check("web*") == 0);
    CHECK(shoal_scope_check("") == SHOAL_EINVAL);
    CHECK(shoal_scope_check("Web") == SHOAL_EINVAL);
    CHECK(shoal_scope_check("web,db") == SHOAL_EINVAL);
    char longp[80];
    memset(longp, 'a', 70);
    longp[70] = 0;
    CHECK(shoal_scope_check(longp) == SHOAL_EINVAL);
}

TEST(table_binds, "a name is bound to one key until the caller allows a rotation")
{
    struct shoal_principals t;
    shoal_principals_init(&t, 2);
    struct shoal_principal a = mk("n1", 1), a2 = mk("n1", 2), b = mk("n2", 3),
                           c = mk("n3", 4);
    CHECK(shoal_principals_put(&t, &a, false) == 0);
    CHECK(shoal_principal_speaks_for(&t, "n1", a.pk));
    CHECK(!shoal_principal_speaks_for(&t, "n1", a2.pk));
    CHECK(shoal_principals_put(&t, &a2, false) == SHOAL_EEXIST);
    CHECK(shoal_principal_speaks_for(&t, "n1", a.pk)); /* unchanged */
    CHECK(shoal_principals_put(&t, &a2, true) == 0);
    CHECK(shoal_principal_speaks_for(&t, "n1", a2.pk));
    CHECK(shoal_principals_put(&t, &b, false) == 0);
    CHECK(shoal_principals_put(&t, &c, false) == SHOAL_ERANGE); /* full */
    CHECK(shoal_principals_get(&t, "n3") == NULL);
    CHECK(shoal_principals_count(&t) == 2);
    CHECK(shoal_principals_del(&t, "n2"));
    CHECK(!shoal_principals_del(&t, "n2"));
    CHECK(shoal_principals_put(&t, &c, false) == 0);
    shoal_principals_close(&t);
}

TEST(scope_and_validity, "scope and validity window")
{
    struct shoal_principal p = mk("n1", 1);
    CHECK(shoal_principal_allows_service(&p, "payments")); /* no scope: any */
    p.n_scopes = 2;
    snprintf(p.scopes[0], SHOAL_SCOPE_MAX, "web*");
    snprintf(p.scopes[1], SHOAL_SCOPE_MAX, "cache");
    CHECK(shoal_principal_allows_service(&p, "web-1"));
    CHECK(shoal_principal_allows_service(&p, "cache"));
    CHECK(!shoal_principal_allows_service(&p, "payments"));
    CHECK(!shoal_principal_valid_at(&p, 99));
    CHECK(shoal_principal_valid_at(&p, 100));
    CHECK(shoal_principal_valid_at(&p, 200));
    CHECK(!shoal_principal_valid_at(&p, 201));
    struct shoal_principals t;
    shoal_principals_init(&t, 0);
    snprintf(p.scopes[1], SHOAL_SCOPE_MAX, "Bad!");
    CHECK(shoal_principals_put(&t, &p, false) == SHOAL_EINVAL);
    shoal_principals_close(&t);
}
TEST_MAIN()
