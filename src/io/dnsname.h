/* dnsname.h -- Consul's DNS names under the agent's domain, sans-IO.
 *
 * Classifies the question's name (io/dnswire.h) against the zone: the apex,
 * ns.DOMAIN, the empty non-terminals (service, node, addr, DC, _tcp.service,
 * _TAG.service), HEX.addr, NODE.node and the service forms NAME.service,
 * TAG.NAME.service and _NAME._TAG.service, each optionally followed by the
 * datacenter label. Labels are compared case-insensitively.
 */
#ifndef SHOAL_IO_DNSNAME_H
#define SHOAL_IO_DNSNAME_H

#include "io/dnswire.h"

enum shoal_dns_name_kind {
    SHOAL_DNS_N_OUTSIDE, /* not in the zone: REFUSED */
    SHOAL_DNS_N_APEX,
    SHOAL_DNS_N_NS,      /* ns.DOMAIN */
    SHOAL_DNS_N_ENT,     /* an empty non-terminal: NODATA */
    SHOAL_DNS_N_TAG_ENT, /* _TAG.service (or _tcp): NODATA if the tag exists */
    SHOAL_DNS_N_ADDR,    /* label is the hex form */
    SHOAL_DNS_N_NODE,    /* label is the node name */
    SHOAL_DNS_N_SERVICE, /* service (lower-cased), tag ("" for none) */
    SHOAL_DNS_N_NONE,    /* in the zone, no such name: NXDOMAIN */
};

struct shoal_dns_name {
    int kind; /* enum shoal_dns_name_kind */
    char label[64];
    char service[64];
    char tag[64];
};

/* Fills out from q's name. Returns out->kind. */
int shoal_dns_name_classify(const struct shoal_dns_question *q, const struct shoal_dns_zone *z,
                            struct shoal_dns_name *out);
/* The zone's domain and datacenter, defaults applied. */
const char *shoal_dns_zone_domain(const struct shoal_dns_zone *z);
const char *shoal_dns_zone_dc(const struct shoal_dns_zone *z);

#endif
