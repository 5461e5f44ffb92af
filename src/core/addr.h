/* addr.h -- a network address as plain data, so core can compare and gossip
 * addresses without touching sockets. IPv4 and IPv6, with a port.
 */
#ifndef SHOAL_CORE_ADDR_H
#define SHOAL_CORE_ADDR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SHOAL_ADDR_STRLEN 56 /* "[v6]:port" plus NUL */

struct shoal_addr {
    uint8_t family; /* 4 or 6; 0 = unset */
    uint8_t ip[16]; /* IPv4 uses the first 4 bytes, network order */
    uint16_t port;  /* host order */
};

/* Parses "IP:PORT" or "[IPv6]:PORT". Returns 0 or SHOAL_EINVAL. */
int shoal_addr_parse(const char *s, struct shoal_addr *out);
/* A host name by DNS's rules: 1..253 characters, labels of 1..63 letters,
 * digits and '-' (not first or last), separated by dots; a final dot is
 * allowed. */
bool shoal_hostname_valid(const char *s);
/* Splits "HOST:PORT", "IP:PORT" or "[IPv6]:PORT" into host (no brackets,
 * at most SHOAL_HOST_MAX bytes with the NUL) and port 1..65535. HOST is an IP
 * address or a valid host name. Returns 0 or SHOAL_EINVAL. */
#define SHOAL_HOST_MAX 256
int shoal_hostport_split(const char *s, char *host, size_t hostlen, uint16_t *port);
/* Writes "IP:PORT" into buf (at least SHOAL_ADDR_STRLEN). Returns buf. */
char *shoal_addr_format(const struct shoal_addr *a, char *buf, size_t len);
bool shoal_addr_eq(const struct shoal_addr *a, const struct shoal_addr *b);
/* Parses a duration "250ms", "2s", "1m", "1h" or a bare number of ms. Returns
 * 0 or SHOAL_EINVAL. */
int shoal_duration_parse(const char *s, uint32_t *ms_out);

#endif
