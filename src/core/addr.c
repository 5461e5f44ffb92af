/* addr.c -- parse, format and compare struct shoal_addr; parse durations.
 * Pure string work (inet_pton/inet_ntop); no sockets are opened here.
 */
#include "core/addr.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shoal/error.h"

static int parse_port(const char *p, uint16_t *out)
{
    char *end;
    if (*p < '0' || *p > '9')
        return SHOAL_EINVAL;
    errno = 0;
    unsigned long v = strtoul(p, &end, 10);
    if (errno || *end || v == 0 || v > 65535)
        return SHOAL_EINVAL;
    *out = (uint16_t)v;
    return 0;
}

int shoal_addr_parse(const char *s, struct shoal_addr *out)
{
    char host[64];
    const char *colon;
    memset(out, 0, sizeof(*out));
    if (!s || !*s)
        return SHOAL_EINVAL;
    if (s[0] == '[') {
        const char *close = strchr(s, ']');
        if (!close || close[1] != ':' || (size_t)(close - s - 1) >= sizeof(host))
            return SHOAL_EINVAL;
        memcpy(host, s + 1, (size_t)(close - s - 1));
        host[close - s - 1] = 0;
        if (inet_pton(AF_INET6, host, out->ip) != 1)
            return SHOAL_EINVAL;
        out->family = 6;
        return parse_port(close + 2, &out->port);
    }
    colon = strrchr(s, ':');
    if (!colon || (size_t)(colon - s) >= sizeof(host) || colon == s)
        return SHOAL_EINVAL;
    memcpy(host, s, (size_t)(colon - s));
    host[colon - s] = 0;
    if (inet_pton(AF_INET, host, out->ip) != 1)
        return SHOAL_EINVAL;
    out->family = 4;
    return parse_port(colon + 1, &out->port);
}

bool shoal_hostname_valid(const char *s)
{
    size_t len = s ? strlen(s) : 0, label = 0;
    if (len == 0 || len > 254 || (len == 254 && s[253] != '.') || s[0] == '.')
        return false;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (c == '.') {
            if (label == 0 || s[i - 1] == '-')
                return false;
            label = 0;
            continue;
        }
        bool alnum = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
        if (!alnum && (c != '-' || label == 0))
            return false;
        if (++label > 63)
            return false;
    }
    return s[len - 1] != '-';
}

int shoal_hostport_split(const char *s, char *host, size_t hostlen, uint16_t *port)
{
    struct shoal_addr tmp;
    const char *colon;
    if (!s || !*s || hostlen == 0)
        return SHOAL_EINVAL;
    if (s[0] == '[') {
        if (shoal_addr_parse(s, &tmp) != 0)
            return SHOAL_EINVAL;
        const char *close = strchr(s, ']');
        if ((size_t)(close - s - 1) >= hostlen)
            return SHOAL_EINVAL;
        memcpy(host, s + 1, (size_t)(close - s - 1));
        host[close - s - 1] = 0;
        *port = tmp.port;
        return 0;
    }
    colon = strrchr(s, ':');
    if (!colon || colon == s || (size_t)(colon - s) >= hostlen || memchr(s, ':', (size_t)(colon - s)))
        return SHOAL_EINVAL; /* a bare IPv6 address needs brackets */
    memcpy(host, s, (size_t)(colon - s));
    host[colon - s] = 0;
    if (parse_port(colon + 1, port) != 0)
        return SHOAL_EINVAL;
    uint8_t ip[4];
    if (inet_pton(AF_INET, host, ip) == 1)
        return 0;
    /* All digits and dots but not an IPv4 address: a typo, not a name. */
    if (strspn(host, "0123456789.") == strlen(host))
        return SHOAL_EINVAL;
    return shoal_hostname_valid(host) ? 0 : SHOAL_EINVAL;
}

char *shoal_addr_format(const struct shoal_addr *a, char *buf, size_t len)
{
    char host[INET6_ADDRSTRLEN];
    if (a->family == 6) {
        inet_ntop(AF_INET6, a->ip, host, sizeof(host));
        snprintf(buf, len, "[%s]:%u", host, a->port);
    } else if (a->family == 4) {
        inet_ntop(AF_INET, a->ip, host, sizeof(host));
        snprintf(buf, len, "%s:%u", host, a->port);
    } else {
        snprintf(buf, len, "-");
    }
    return buf;
}

bool shoal_addr_eq(const struct shoal_addr *a, const struct shoal_addr *b)
{
    size_t n = a->family == 6 ? 16 : 4;
    return a->family == b->family && a->port == b->port &&
           memcmp(a->ip, b->ip, n) == 0;
}

int shoal_duration_parse(const char *s, uint32_t *ms_out)
{
    char *end;
    double mult;
    if (!s || *s < '0' || *s > '9')
        return SHOAL_EINVAL;
    errno = 0;
    double v = strtod(s, &end);
    if (errno)
        return SHOAL_EINVAL;
    if (*end == 0 || strcmp(end, "ms") == 0)
        mult = 1;
    else if (strcmp(end, "s") == 0)
        mult = 1000;
    else if (strcmp(end, "m") == 0)
        mult = 60000;
    else if (strcmp(end, "h") == 0)
        mult = 3600000;
    else
        return SHOAL_EINVAL;
    v *= mult;
    if (v < 0 || v > 4294967295.0)
        return SHOAL_EINVAL;
    *ms_out = (uint32_t)v;
    return 0;
}
