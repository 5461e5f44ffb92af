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

/* 1..max-1 bytes, each in the set: letters (upper when upper), digits, extra. */
static bool chars_ok(const char *s, size_t max, bool upper, const char *extra)
{
    size_t n = strlen(s);
    if (n == 0 || n >= max)
        return false;
    for (const char *p = s; *p; p++) {
        bool ok = (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') ||
                  (upper && *p >= 'A' && *p <= 'Z') || strchr(extra, *p);
        if (!ok)
            return false;
    }
    return true;
}

/* Well-formed UTF-8 (no overlongs, surrogates or code points past U+10FFFF):
 * jansson refuses anything else, so check it here and name the flag. */
static bool utf8_ok(const unsigned char *s)
{
    while (*s) {
        unsigned c = *s++, n;
        uint32_t cp;
        if (c < 0x80)
            continue;
        if (c >= 0xc2 && c <= 0xdf)
            n = 1, cp = c & 0x1f;
        else if (c >= 0xe0 && c <= 0xef)
            n = 2, cp = c & 0x0f;
        else if (c >= 0xf0 && c <= 0xf4)
            n = 3, cp = c & 0x07;
        else
            return false;
        for (unsigned i = 0; i < n; i++, s++) {
            if ((*s & 0xc0) != 0x80)
                return false;
            cp = cp << 6 | (*s & 0x3f);
        }
        if ((n == 2 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) ||
            (n == 3 && (cp < 0x10000 || cp > 0x10ffff)))
            return false;
    }
    return true;
}

const char *shoal_cli_check_service(const char *s)
{
    if (!chars_ok(s, SHOAL_SERVICE_MAX, false, "-") || s[0] == '-')
        return "1..63 of [a-z0-9-], starting with a letter or digit";
    return NULL;
}

const char *shoal_cli_check_id(const char *s)
{
    return chars_ok(s, SHOAL_ID_MAX, true, "._:-") ? NULL : "1..127 of [A-Za-z0-9._:-]";
}

const char *shoal_cli_check_address(const char *s)
{
    return chars_ok(s, SHOAL_HOST_MAX, true, ".:-")
               ? NULL
               : "an IP address or host name: 1..255 of [A-Za-z0-9.:-]";
}

const char *shoal_cli_check_tag(const char *s)
{
    static const char want[] = "1..63 bytes of UTF-8, no space, comma or control character";
    size_t n = strlen(s);
    if (n == 0 || n >= SHOAL_TAG_MAX || !utf8_ok((const unsigned char *)s))
        return want;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++)
        if (*p <= ' ' || *p == 0x7f || *p == ',')
            return want;
    return NULL;
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
    if (!chars_ok(out->key, SHOAL_META_KEY_MAX, true, "._-"))
        return "K=V with K 1..63 of [A-Za-z0-9._-]";
    out->value = eq + 1;
    if (strlen(out->value) >= SHOAL_META_VALUE_MAX || !utf8_ok((const unsigned char *)out->value))
        return "K=V with V at most 4095 bytes of UTF-8";
    return NULL;
}
