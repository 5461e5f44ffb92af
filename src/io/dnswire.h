/* dnswire.h -- the DNS interface's wire format and answers, sans-IO.
 *
 * shoal_dns_respond() turns one query (RFC 1035 message, optional EDNS0 OPT
 * record, RFC 6891) into one reply from the registry replica, in Consul's
 * names under DOMAIN (default shoal; an optional .DC. label before it):
 * A/AAAA/SRV at NAME.service, _NAME._TAG.service (RFC 2782; _tcp = no tag)
 * and TAG.NAME.service; A/AAAA at NODE.node and at HEXIP[PORT].addr (the
 * SRV targets: one name per instance endpoint); NS and SOA at the apex with
 * ns.DOMAIN's address; NODATA at empty non-terminals. Parsing is bounded
 * (no read past the packet, at most 255-byte names, pointers only
 * backwards); output is name-compressed and cut at the transport's limit
 * with TC set. Over UDP a reply is at most 3x the query (no amplification),
 * answers hold at most zone.udp_answer_limit records, ANY is answered
 * minimally (RFC 8482), and a truncated set is in a stable order. Socket
 * handling is io/dns.h; the Consul-form name parsing is io/dnsname.c.
 */
#ifndef SHOAL_IO_DNSWIRE_H
#define SHOAL_IO_DNSWIRE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct shoal_registry;

#define SHOAL_DNS_UDP_PLAIN 512 /* RFC 1035 4.2.1: UDP without EDNS0 */
#define SHOAL_DNS_UDP_MAX 1232  /* largest UDP reply, whatever EDNS0 offers (DNS flag day 2020) */
#define SHOAL_DNS_TCP_MAX 65535 /* RFC 1035 4.2.2: 2-byte length */
#define SHOAL_DNS_MAX_ANSWERS 1024 /* instances looked at per query */

enum shoal_dns_qkind {
    SHOAL_DNS_Q_A,
    SHOAL_DNS_Q_AAAA,
    SHOAL_DNS_Q_SRV,
    SHOAL_DNS_Q_OTHER,
    SHOAL_DNS_Q_COUNT
};
/* Exclusive outcomes: every query received is counted under exactly one. */
enum shoal_dns_result {
    SHOAL_DNS_R_NOERROR,   /* answered in full (possibly no data) */
    SHOAL_DNS_R_NXDOMAIN,  /* no such name in the zone */
    SHOAL_DNS_R_FORMERR,   /* header readable, the rest malformed */
    SHOAL_DNS_R_REFUSED,   /* outside the zone, or not class IN */
    SHOAL_DNS_R_NOTIMP,    /* opcode other than QUERY */
    SHOAL_DNS_R_TRUNCATED, /* TC set: the answer did not fit */
    SHOAL_DNS_R_DROPPED,   /* no reply: unreadable header, a response, oversize */
    SHOAL_DNS_R_COUNT
};
const char *shoal_dns_qkind_name(int k);  /* "A", "AAAA", "SRV", "other" */
const char *shoal_dns_result_name(int r); /* "noerror", ... "dropped" */

struct shoal_dns_counters {
    uint64_t queries[SHOAL_DNS_Q_COUNT]; /* by type, of queries that parsed */
    uint64_t results[SHOAL_DNS_R_COUNT];
    uint64_t tcp_accepted, tcp_rejected, tcp_closed_idle, tcp_open;
};

/* The zone's shape. Zeroed fields take the defaults: domain "shoal",
 * datacenter "dc1", no UDP answer cap, NS address 127.0.0.1, no node names. */
#define SHOAL_DNS_DOMAIN_MAX 128
#define SHOAL_DNS_UDP_ANSWER_LIMIT 3 /* the agent's default, Consul's udp_answer_limit */
struct shoal_dns_zone {
    char domain[SHOAL_DNS_DOMAIN_MAX]; /* lower case, no trailing dot: "shoal", "consul" */
    char datacenter[64];               /* the optional .DC. label */
    uint32_t udp_answer_limit;         /* records in a UDP answer section; 0: no cap */
    uint8_t ns_ip[16];                 /* the address of ns.DOMAIN (this server) */
    uint8_t ns_iplen;                  /* 4 or 16; 0: 127.0.0.1 */
    /* NODE.node.DOMAIN: the address of a live member, or false. */
    bool (*node_addr)(void *ud, const char *name, uint8_t ip[16], uint8_t *iplen);
    void *node_ud;
};

struct shoal_dns_responder {
    const struct shoal_registry *registry; /* borrowed */
    uint32_t ttl_s;                        /* TTL of every record (0, as Consul) */
    uint64_t rng;                          /* shuffle state; seed it (nonzero) */
    struct shoal_dns_zone zone;
    struct shoal_dns_counters c;
};

/* Checks a --dns-domain value and writes it lower case without a trailing
 * dot into out. Returns NULL, or a sentence saying what is wrong. */
const char *shoal_dns_domain_parse(const char *s, char out[SHOAL_DNS_DOMAIN_MAX]);

/* Answers one query of len bytes into out (cap bytes, at least 512). tcp
 * selects the size limit (65535 rather than 512 or the EDNS0 size). Returns
 * the reply length, or 0 when no reply must be sent (counted as dropped). */
size_t shoal_dns_respond(struct shoal_dns_responder *r, const uint8_t *in, size_t len, bool tcp,
                         uint8_t *out, size_t cap);
/* Counts a datagram or frame dropped before reaching shoal_dns_respond. */
void shoal_dns_count_drop(struct shoal_dns_responder *r);

/* Exposed for tests: the parsed question. */
#define SHOAL_DNS_MAX_LABELS 128
struct shoal_dns_question {
    uint16_t id, flags, qtype, qclass;
    uint8_t n_labels;
    uint8_t label_len[SHOAL_DNS_MAX_LABELS];
    char labels[SHOAL_DNS_MAX_LABELS][64]; /* as sent (case kept), NUL-terminated */
    bool edns;
    uint16_t edns_size; /* advertised UDP payload size */
    uint8_t edns_version;
};
/* Parses a query. Returns SHOAL_DNS_R_NOERROR, FORMERR (q->id/flags valid),
 * NOTIMP, or DROPPED (header unreadable, or QR set). */
int shoal_dns_parse(const uint8_t *in, size_t len, struct shoal_dns_question *q);

#endif
