/* check.c -- the CLI's early checks of registry input (cli.h).
 *
 * The limits are core/registry.h's (shoal_instance_validate applies them at
 * the agent, which stays the authority). Checking them here too means a typo
 * gets a usage error naming the flag before anything is sent. The "want"
 * texts spell the limits out; the static_asserts keep them in step.
 */
#include <assert.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"

static_assert(SHOAL_SERVICE_MAX == 64, "update the --service text");
static_assert(SHOAL_ID_MAX == 128, "update the --id text");
static_assert(SHOAL_HOST_MAX == 256, "update the --address text");
static_assert(SHOAL_TAG_MAX == 64, "update the --tag text");
static_assert(SHOAL_META_KEY_MAX == 64 && SHOAL_META_VALUE_MAX == 4096, "update the --meta text");

/* The predicates are core's (shared with the agent's validation); the
 * texts here say what a flag wants. */
const char *shoal_cli_check_service(const char *s)
{
    return shoal_check_service(s) ? "1..63 of [a-z0-9-], starting with a letter or digit" : NULL;
}

const char *shoal_cli_check_id(const char *s)
{
    return shoal_check_id(s) ? "1..127 of [A-Za-z0-9._:-], starting with a letter or digit"
                             : NULL;
}

const char *shoal_cli_check_address(const char *s)
{
    return shoal_check_address(s) ? "an IP address or host name: 1..255 of [A-Za-z0-9.:-]"
                                  : NULL;
}

const char *shoal_cli_check_tag(const char *s)
{
    return shoal_check_tag(s) ? "1..63 printable ASCII characters, no space or comma" : NULL;
}

const char *shoal_cli_check_port(const char *s, uint16_t *out)
{
    char *end;
    errno = 0;
    unsigned long v = strtoul(s, &end, 10);
    if (*s < '0' || *s > '9' || *end || errno || v < 1 || v > 65535)
        return "1..65535";
    *out = (uint16_t)v;
    return NULL;
}

const char *shoal_cli_check_ttl(const char *s, uint32_t *out_ms)
{
    uint32_t ms;
    if (shoal_duration_parse(s, &ms) != 0 || ms == 0)
        return "a duration above zero such as 250ms, 10s, 1m, or bare milliseconds";
    *out_ms = ms;
    return NULL;
}

const char *shoal_cli_check_url(const char *s)
{
    size_t n = strlen(s);
    if ((strncmp(s, "http://", 7) != 0 && strncmp(s, "https://", 8) != 0) || n < 8 ||
        n >= SHOAL_CHECK_TARGET_MAX)
        return "an http:// or https:// URL of at most 255 characters";
    for (size_t i = 0; i < n; i++)
        if (s[i] <= 0x20 || s[i] >= 0x7f)
            return "an http:// or https:// URL without spaces";
    return NULL;
}

const char *shoal_cli_check_join_addr(const char *s)
{
    char host[SHOAL_HOST_MAX];
    uint16_t port;
    if (shoal_hostport_split(s, host, sizeof(host), &port) != 0)
        return "HOST:PORT, HOST an IP address, [IPv6] or a DNS name, and a port 1-65535";
    return NULL;
}

const char *shoal_cli_check_hostport(const char *s)
{
    struct shoal_addr a;
    if (shoal_addr_parse(s, &a) != 0)
        return "IP:PORT or [IPv6]:PORT with a port 1-65535 (the agent connects to it)";
    return NULL;
}

const char *shoal_cli_check_meta(const char *s, struct shoal_cli_kv *out)
{
    const char *eq = strchr(s, '=');
    size_t klen = eq ? (size_t)(eq - s) : 0;
    if (!eq || klen == 0 || klen >= SHOAL_META_KEY_MAX)
        return "K=V with K 1..63 of [A-Za-z0-9._-]";
    memcpy(out->key, s, klen);
    out->key[klen] = 0;
    if (shoal_check_meta_key(out->key))
        return "K=V with K 1..63 of [A-Za-z0-9._-]";
    out->value = eq + 1;
    if (shoal_check_meta_value(out->value, NULL))
        return "K=V with V at most 4095 bytes of UTF-8 text, no control characters";
    return NULL;
}
