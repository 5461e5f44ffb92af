/* test_hostport.c -- HOST:PORT as --join, --retry-join, /v1/join and the
 * client library's agent address take it (core/addr.h): IP addresses,
 * [IPv6], or DNS host names by their rules; everything else refused.
 */
#include "test.h"

#include <string.h>

#include "core/addr.h"
#include "shoal/error.h"

TEST(hostport_accepts, "IPs, [IPv6] and host names with a port 1-65535 are accepted")
{
    static const struct {
        const char *in, *host;
        uint16_t port;
    } ok[] = {
        {"127.0.0.1:7946", "127.0.0.1", 7946},
        {"[::1]:1", "::1", 1},
        {"seeds.internal:7946", "seeds.internal", 7946},
        {"shoal-seeds.shoal.svc.cluster.local.:65535", "shoal-seeds.shoal.svc.cluster.local.",
         65535},
        {"localhost:80", "localhost", 80},
        {"a:1", "a", 1},
        {"3com.example:9", "3com.example", 9},
    };
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        char host[SHOAL_HOST_MAX];
        uint16_t port = 0;
        CHECKF(shoal_hostport_split(ok[i].in, host, sizeof(host), &port) == 0, "%s", ok[i].in);
        CHECKF(strcmp(host, ok[i].host) == 0, "%s: host %s", ok[i].in, host);
        CHECK_EQ(port, ok[i].port);
    }
}

TEST(hostport_refuses, "bad names, ports, bare IPv6 and near-IPs are refused")
{
    static const char *const bad[] = {
        "", ":1", "host", "host:", "host:0", "host:65536", "host:1x", "host:-1",
        "bad host:1", "bad_host:1", "-lead.example:1", "trail-.example:1", "a..b:1",
        ".a:1", "::1:7946", "[::1]7946", "[nope]:1", "1.2.3:4", "256.1.1.1:1",
        "x\x01y:1", "host:+1",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char host[SHOAL_HOST_MAX];
        uint16_t port;
        CHECKF(shoal_hostport_split(bad[i], host, sizeof(host), &port) == SHOAL_EINVAL, "'%s'",
               bad[i]);
    }
    /* a 64-character label; names of 255 and 253 characters */
    char longlabel[80], longname[300];
    memset(longlabel, 'a', 64);
    strcpy(longlabel + 64, ":1");
    CHECK(shoal_hostport_split(longlabel, longname, sizeof(longname), &(uint16_t){0}) ==
          SHOAL_EINVAL);
    for (int i = 0; i < 255; i++)
        longname[i] = i % 2 ? '.' : 'a';
    longname[255] = 0; /* 255 characters: too long */
    CHECK(!shoal_hostname_valid(longname));
    longname[253] = 0;
    CHECK(shoal_hostname_valid(longname));
    /* the host buffer is respected */
    char small[4];
    CHECK(shoal_hostport_split("example.com:1", small, sizeof(small), &(uint16_t){0}) ==
          SHOAL_EINVAL);
}

TEST_MAIN()
