/* dns.h -- the agent's DNS server: UDP and TCP on one address, on libev.
 *
 * Each UDP datagram or TCP frame (RFC 1035 4.2.2: 2-byte length prefix,
 * several queries per connection) is answered by io/dnswire.h from the
 * node's registry replica. TCP connections close after SHOAL_DNS_TCP_IDLE_S
 * without a complete query; at most SHOAL_DNS_TCP_MAX_CONNS are open (more
 * are accepted and closed at once, counted as rejected), and a client that
 * does not read its answers is closed once SHOAL_DNS_TCP_MAX_QUEUE is queued.
 */
#ifndef SHOAL_IO_DNS_H
#define SHOAL_IO_DNS_H

#include <stdint.h>

#include "core/addr.h"
#include "io/dnswire.h"

struct ev_loop;
struct shoal_registry;
struct shoal_dns_server;

#define SHOAL_DNS_TCP_IDLE_S 10.0
#define SHOAL_DNS_TCP_MAX_CONNS 64
#define SHOAL_DNS_TCP_MAX_QUEUE (256 * 1024)
#define SHOAL_DNS_UDP_MAX_QUERY 4096 /* larger datagrams are dropped */

/* Binds UDP and TCP on bind (port 0: a free port, the same for both) and
 * answers from registry (borrowed; must outlive the server) with the given
 * TTL; seed drives the answer shuffling. Calls malloc; free with
 * shoal_dns_server_free(). Returns NULL and sets *err (-errno or SHOAL_E*). */
struct shoal_dns_server *shoal_dns_server_new(struct ev_loop *loop, const struct shoal_addr *bind,
                                              const struct shoal_registry *registry, uint32_t ttl_s,
                                              uint64_t seed, int *err);
/* Sets the zone's domain, datacenter, UDP answer cap, NS address and node
 * lookup (io/dnswire.h; copied). */
void shoal_dns_server_set_zone(struct shoal_dns_server *s, const struct shoal_dns_zone *z);
/* Closes TCP connections without a complete query for this long
 * (SHOAL_DNS_TCP_IDLE_S unless set); applies to connections accepted later. */
void shoal_dns_server_set_idle_timeout(struct shoal_dns_server *s, double seconds);
/* Closes the sockets and every connection. NULL is ok. */
void shoal_dns_server_free(struct shoal_dns_server *s);
/* Borrowed; valid until shoal_dns_server_free(). */
const struct shoal_dns_counters *shoal_dns_server_counters(const struct shoal_dns_server *s);
/* The bound address (UDP and TCP share it). */
void shoal_dns_server_addr(const struct shoal_dns_server *s, struct shoal_addr *out);

#endif
