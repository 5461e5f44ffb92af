/* agent.c -- `shoal agent`: flags, data dir, identity, then one node, the
 * HTTP API and the signal watchers on the default libev loop.
 *
 * Start-up order: parse every flag (exit 2 on a bad one), lock the data
 * dir, load the identity and cluster key, read DATA_DIR/registry (a corrupt
 * one is refused), listen for HTTP, raise the generation, bind UDP and TCP,
 * load --config-dir (exit 1 on any of these). SIGHUP reloads --config-dir.
 * SIGTERM/SIGINT or POST /v1/leave start a graceful leave; the loop keeps
 * running until core says the leave is done or --leave-timeout passes, then
 * the agent exits 0.
 */
#include "io/agent.h"

#include <errno.h>
#include <ev.h>
#include <fcntl.h>
#include <getopt.h> /* required_argument, no_argument */
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/principal.h"
#include "core/swim.h"
#include "io/agentconf.h"
#include "io/api.h"
#include "io/checks.h"
#include "io/datadir.h"
#include "io/dns.h"
#include "io/http.h"
#include "io/joiner.h"
#include "io/log.h"
#include "io/metrics.h"
#include "io/ui.h"
#include "io/node.h"
#include "io/procinfo.h"
#include "io/regstore.h"
#include "io/svcfile.h"
#include "io/udp.h"
#include "wire/wire.h"

/* After the leave is done, the loop runs this much longer so the reply to
 * POST /v1/leave is written: http.h has no "response flushed" notice. */
#define AGENT_EXIT_LINGER_S 0.1
/* Bounds for --max-datagram: the smallest datagram both cores accept (SWIM:
 * envelope, a message and two updates, all with the longest names; the
 * registry: envelope and 512 bytes of events), and the largest IPv4 UDP
 * payload. */
#define AGENT_MIN_SWIM_DATAGRAM                                                                    \
    (SHOAL_ENVELOPE_BYTES + SHOAL_MSG_BASE_BYTES + 4 * SHOAL_NAME_MAX + 2 * SHOAL_UPDATE_BASE_BYTES)
#define AGENT_MIN_REG_DATAGRAM (SHOAL_ENVELOPE_BYTES + 512)
#define AGENT_MIN_DATAGRAM                                                                         \
    (AGENT_MIN_SWIM_DATAGRAM > AGENT_MIN_REG_DATAGRAM ? AGENT_MIN_SWIM_DATAGRAM                    \
                                                      : AGENT_MIN_REG_DATAGRAM)
#define AGENT_MAX_DATAGRAM 65507
#define AGENT_MAX_JOIN 64
#define AGENT_MAX_PEER_SCOPES 16
/* One join attempt waits this long for a seed's answer: core asks each
 * address at once and again after 1 s, so two tries per attempt. */
#define AGENT_JOIN_WINDOW_MS 2500

/* --help's notes after the flags (the flags' own lines come from the table). */
static const char agent_help_notes[] =
    "D is a duration: 250ms, 2s, 1m, 1h, or bare milliseconds. Protocol constants follow\n"
    "memberlist's LAN profile. --advertise defaults to --bind, the name to the hostname.\n"
    "Registry: --config-dir loads every *.service file at start and on SIGHUP. Refused:\n"
    "--tombstone-ttl below --registry-reap or 2 x --sync-interval, --reap below\n"
    "--registry-reap (a deregistered instance could come back).\n"
    "DNS: if the default --dns address is taken, a warning and no DNS; 'off' disables it.\n"
    "Joining: --join and --retry-join take HOST:PORT, HOST an IP address or a DNS name that\n"
    "is resolved again at every attempt (all its addresses are asked); a failed attempt is\n"
    "logged with its reason and retried after --retry-interval, doubling up to\n"
    "--retry-max-interval. After --retry-max failed attempts (0: never stop) the agent\n"
    "exits 1 if --retry-join was given, else it runs on alone.\n"
    "Settings, lowest precedence first: defaults, --config-file FILE|DIR (JSON objects keyed\n"
    "by flag names, 'data-dir' or 'data_dir'; repeatable flags as arrays; a directory's\n"
    "*.json files in name order; a later file wins key by key), the environment (SHOAL_ and\n"
    "the flag's name in capitals, '-' as '_', e.g. SHOAL_DATA_DIR; repeatable flags\n"
    "comma-separated), then flags. --print-config shows each value and where it came from.\n";

struct agent_opts {
    char name[SHOAL_NAME_MAX];
    struct shoal_addr bind, advertise, http;
    const char *bind_s, *advertise_s;
    const char *probe_interval_s, *probe_timeout_s;
    const char *data_dir, *cluster_key;
    const char *joins[AGENT_MAX_JOIN]; /* HOST:PORT: --join, then --retry-join */
    size_t n_joins, n_retry_joins;
    uint32_t retry_max, retry_interval_ms, retry_max_interval_ms;
    struct shoal_swim_config swim;
    struct shoal_registry_config registry;
    const char *config_dir;
    uint32_t leave_timeout_ms;
    enum shoal_log_level log_level;
    bool log_json;
    struct shoal_addr dns;  /* family 0: --dns off */
    bool dns_explicit;      /* --dns given: failing to bind it is fatal */
    uint32_t dns_ttl_s;
    char dns_domain[SHOAL_DNS_DOMAIN_MAX];
    uint32_t dns_udp_answer_limit;
    const char *datacenter;
    uint32_t check_rise, check_fall;
    const char *test_scope;
    const char *peer_scopes[AGENT_MAX_PEER_SCOPES];
    size_t n_peer_scopes;
};

struct agent {
    struct ev_loop *loop;
    struct shoal_node *node;
    struct shoal_http_server *http;
    struct shoal_api api;
    struct shoal_svcset svc;
    struct shoal_dns_server *dns;
    struct shoal_checks *checks;
    struct shoal_metrics metrics;
    struct shoal_joinset joins;
    const char *config_dir;
    ev_signal sigterm, sigint, sighup;
    ev_timer leave_timer, linger_timer;
    uint32_t leave_timeout_ms;
    bool leaving, finishing;
    bool retry_join_fatal;
    int exit_code;
};

enum {
    OPT_NAME = 256,
    OPT_BIND,
    OPT_ADVERTISE,
    OPT_HTTP,
    OPT_DATA_DIR,
    OPT_CLUSTER_KEY,
    OPT_JOIN,
    OPT_PROBE_INTERVAL,
    OPT_PROBE_TIMEOUT,
    OPT_GOSSIP_INTERVAL,
    OPT_GOSSIP_FANOUT,
    OPT_INDIRECT_CHECKS,
    OPT_SUSPICION_MULT,
    OPT_SUSPICION_MAX_MULT,
    OPT_RETRANSMIT_MULT,
    OPT_PUSHPULL_INTERVAL,
    OPT_GOSSIP_TO_DEAD,
    OPT_REAP,
    OPT_MAX_DATAGRAM,
    OPT_LEAVE_TIMEOUT,
    OPT_LOG_LEVEL,
    OPT_CONFIG_DIR,
    OPT_SYNC_INTERVAL,
    OPT_REGISTRY_REAP,
    OPT_TOMBSTONE_TTL,
    OPT_DNS,
    OPT_DNS_TTL,
    OPT_CHECK_RISE,
    OPT_CHECK_FALL,
    OPT_MAX_OWNER_INSTANCES,
    OPT_MAX_OWNER_BYTES,
    OPT_MAX_INSTANCES,
    OPT_MAX_BYTES,
    OPT_TEST_SCOPE,
    OPT_TEST_PEER_SCOPE,
    OPT_RETRY_JOIN,
    OPT_RETRY_MAX,
    OPT_RETRY_INTERVAL,
    OPT_RETRY_MAX_INTERVAL,
    OPT_LOG_FORMAT,
    OPT_CONFIG_FILE,
    OPT_PRINT_CONFIG,
    OPT_HELP,
    OPT_DNS_DOMAIN,
    OPT_DNS_UDP_ANSWER_LIMIT,
    OPT_DATACENTER,
};

#define R SHOAL_AF_REPEAT
/* Every agent flag: the command line, config files, SHOAL_* variables,
 * --help, --print-config, the man page and shell completion all come from
 * this one table. Fields: name, has_arg, NULL, id, value name, help, kind
 * (SHOAL_AF_*), default (given to the switch below like any value). */
static const struct shoal_agent_flag agent_options[] = {
    {"name", required_argument, NULL, OPT_NAME, "NAME",
     "this node's member name, 1-63 of [A-Za-z0-9._-] (default: the hostname)", 0, NULL},
    {"bind", required_argument, NULL, OPT_BIND, "IP:PORT",
     "UDP for membership, TCP for registry sync", 0, "127.0.0.1:7946"},
    {"advertise", required_argument, NULL, OPT_ADVERTISE, "IP:PORT",
     "the address other nodes reach this one at (default: --bind)", 0, NULL},
    {"http", required_argument, NULL, OPT_HTTP, "IP:PORT", "the HTTP API", 0, "127.0.0.1:7947"},
    {"data-dir", required_argument, NULL, OPT_DATA_DIR, "DIR",
     "identity key, generation, registry file; locked while the agent runs", 0,
     "/var/lib/shoal"},
    {"cluster-key", required_argument, NULL, OPT_CLUSTER_KEY, "FILE",
     "the cluster key ('shoal keygen'); without it the cluster is open", 0, NULL},
    {"join", required_argument, NULL, OPT_JOIN, "HOST:PORT",
     "a node to join through at start; retried like --retry-join", R, NULL},
    {"retry-join", required_argument, NULL, OPT_RETRY_JOIN, "HOST:PORT",
     "a seed to join through, resolved and retried until one answers", R, NULL},
    {"retry-max", required_argument, NULL, OPT_RETRY_MAX, "N",
     "join attempts before giving up, 0 = never give up", 0, "0"},
    {"retry-interval", required_argument, NULL, OPT_RETRY_INTERVAL, "D",
     "the first wait between join attempts; it doubles after each failure", 0, "1s"},
    {"retry-max-interval", required_argument, NULL, OPT_RETRY_MAX_INTERVAL, "D",
     "the longest wait between join attempts", 0, "30s"},
    {"probe-interval", required_argument, NULL, OPT_PROBE_INTERVAL, "D",
     "SWIM probe period", 0, "1s"},
    {"probe-timeout", required_argument, NULL, OPT_PROBE_TIMEOUT, "D",
     "direct probe timeout, below --probe-interval", 0, "500ms"},
    {"gossip-interval", required_argument, NULL, OPT_GOSSIP_INTERVAL, "D",
     "gossip period", 0, "200ms"},
    {"gossip-fanout", required_argument, NULL, OPT_GOSSIP_FANOUT, "N",
     "members gossiped to per period, 1-64", 0, "3"},
    {"indirect-checks", required_argument, NULL, OPT_INDIRECT_CHECKS, "N",
     "members asked to ping-req a silent member, 0-64", 0, "3"},
    {"suspicion-mult", required_argument, NULL, OPT_SUSPICION_MULT, "N",
     "suspicion timeout = N * log10(members) * probe interval (minimum)", 0, "4"},
    {"suspicion-max-mult", required_argument, NULL, OPT_SUSPICION_MAX_MULT, "N",
     "the suspicion timeout starts at this multiple of the minimum", 0, "6"},
    {"retransmit-mult", required_argument, NULL, OPT_RETRANSMIT_MULT, "N",
     "an update is sent N * log10(members + 1) times", 0, "4"},
    {"pushpull-interval", required_argument, NULL, OPT_PUSHPULL_INTERVAL, "D",
     "full state exchange with a random member, 0 = off", 0, "30s"},
    {"gossip-to-dead", required_argument, NULL, OPT_GOSSIP_TO_DEAD, "D",
     "keep gossiping to a dead member this long", 0, "30s"},
    {"reap", required_argument, NULL, OPT_REAP, "D",
     "forget a dead or left member after this long", 0, "24h"},
    {"max-datagram", required_argument, NULL, OPT_MAX_DATAGRAM, "N",
     "largest UDP payload sent, in bytes", 0, "1400"},
    {"leave-timeout", required_argument, NULL, OPT_LEAVE_TIMEOUT, "D",
     "how long a graceful leave may take before the agent exits anyway", 0, "3s"},
    {"log-level", required_argument, NULL, OPT_LOG_LEVEL, "LEVEL",
     "debug, info, warn or error", 0, "info"},
    {"log-format", required_argument, NULL, OPT_LOG_FORMAT, "FORMAT",
     "text, or json: one object per line (ts, level, subsystem, msg, fields)", 0, "text"},
    {"config-dir", required_argument, NULL, OPT_CONFIG_DIR, "DIR",
     "service files (*.service) loaded at start and on SIGHUP", 0, NULL},
    {"sync-interval", required_argument, NULL, OPT_SYNC_INTERVAL, "D",
     "registry anti-entropy with a random member, 0 = off", 0, "30s"},
    {"registry-reap", required_argument, NULL, OPT_REGISTRY_REAP, "D",
     "drop a dead owner's instances after this long", 0, "1h"},
    {"tombstone-ttl", required_argument, NULL, OPT_TOMBSTONE_TTL, "D",
     "keep a deregistration's tombstone this long", 0, "24h"},
    {"dns", required_argument, NULL, OPT_DNS, "IP:PORT|off",
     "serve DNS (UDP and TCP) here (default 127.0.0.1:8600); off: no DNS", 0, NULL},
    {"dns-ttl", required_argument, NULL, OPT_DNS_TTL, "SECONDS",
     "the TTL of DNS answers: whole seconds (5 or 5s); sub-second TTLs are refused", 0, "0"},
    {"dns-domain", required_argument, NULL, OPT_DNS_DOMAIN, "DOMAIN",
     "the DNS domain answered, names as Consul's: NAME.service.DOMAIN ('consul' works)", 0,
     "shoal"},
    {"dns-udp-answer-limit", required_argument, NULL, OPT_DNS_UDP_ANSWER_LIMIT, "N",
     "records per UDP answer, TC set beyond so clients retry over TCP; 0 = no cap", 0, "3"},
    {"datacenter", required_argument, NULL, OPT_DATACENTER, "DC",
     "the datacenter name the Consul API and the DNS .DC. label answer to", 0, "dc1"},
    {"check-rise", required_argument, NULL, OPT_CHECK_RISE, "N",
     "successes in a row before a check passes, 1-100", 0, "1"},
    {"check-fall", required_argument, NULL, OPT_CHECK_FALL, "N",
     "failures in a row before a check fails, 1-100", 0, "1"},
    {"max-owner-instances", required_argument, NULL, OPT_MAX_OWNER_INSTANCES, "N",
     "registry entries (instances and tombstones) held per owner; more are refused", 0,
     "10000"},
    {"max-owner-bytes", required_argument, NULL, OPT_MAX_OWNER_BYTES, "N",
     "encoded bytes of registry entries held per owner", 0, "16777216"},
    {"max-instances", required_argument, NULL, OPT_MAX_INSTANCES, "N",
     "registry entries held in total", 0, "1000000"},
    {"max-bytes", required_argument, NULL, OPT_MAX_BYTES, "N",
     "encoded bytes of registry entries held in total", 0, "1073741824"},
    {"test-scope", required_argument, NULL, OPT_TEST_SCOPE, "PATTERN,...",
     "this node's service-name scope (globs); for tests, until certificates carry it", 0,
     NULL},
    {"test-peer-scope", required_argument, NULL, OPT_TEST_PEER_SCOPE, "NAME=PATTERN,...",
     "another node's service-name scope; for tests, until certificates carry it", R, NULL},
    {"config-file", required_argument, NULL, OPT_CONFIG_FILE, "FILE|DIR",
     "read settings from a JSON file, or a directory's *.json files", R | SHOAL_AF_NO_FILE,
     NULL},
    {"print-config", no_argument, NULL, OPT_PRINT_CONFIG, NULL,
     "print the effective settings and where each came from, then exit", SHOAL_AF_CLI_ONLY,
     NULL},
    {"help", no_argument, NULL, OPT_HELP, NULL, "show this help", SHOAL_AF_CLI_ONLY, NULL},
};
#undef R
#define AGENT_N_OPTIONS (sizeof(agent_options) / sizeof(agent_options[0]))

/* The sources being applied, so a bad value names where it came from. */
static const struct shoal_agentconf *agent_conf;

static int bad_value(const char *flag, const char *val, const char *why)
{
    char where[600];
    shoal_agentconf_origin(agent_conf, flag, where, sizeof(where));
    if (where[0] == '-')
        fprintf(stderr, "shoal agent: bad %s '%s': %s\n", where, val, why);
    else
        fprintf(stderr, "shoal agent: %s: bad value '%s' for --%s: %s\n", where, val, flag, why);
    return 2;
}

static int parse_addr_flag(const char *flag, const char *val, struct shoal_addr *out)
{
    if (shoal_addr_parse(val, out) != 0)
        return bad_value(flag, val, "expected IP:PORT or [IPv6]:PORT with a port 1-65535");
    return 0;
}

/* min_ms: smallest accepted value (0 or 1). */
static int parse_duration_flag(const char *flag, const char *val, uint32_t min_ms, uint32_t *out)
{
    if (shoal_duration_parse(val, out) != 0)
        return bad_value(flag, val,
                         "expected a duration such as 250ms, 2s, 1m, 1h or bare milliseconds");
    if (*out < min_ms)
        return bad_value(flag, val, "must be at least 1ms");
    return 0;
}

static int parse_count_flag(const char *flag, const char *val, uint32_t min, uint32_t max,
                            uint32_t *out)
{
    char *end, why[96];
    errno = 0;
    unsigned long long v = strtoull(val, &end, 10);
    if (val[0] < '0' || val[0] > '9' || *end || errno) {
        return bad_value(flag, val, "expected a whole number");
    }
    if (v < min || v > max) {
        snprintf(why, sizeof(why), "must be between %" PRIu32 " and %" PRIu32, min, max);
        return bad_value(flag, val, why);
    }
    *out = (uint32_t)v;
    return 0;
}

static int parse_bytes_flag(const char *flag, const char *val, uint64_t *out)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(val, &end, 10);
    if (val[0] < '0' || val[0] > '9' || *end || errno)
        return bad_value(flag, val, "expected a whole number of bytes");
    if (v < 65536 || v > (1ull << 40))
        return bad_value(flag, val, "must be between 65536 and 1099511627776");
    *out = v;
    return 0;
}

/* A service-name scope: 1..16 comma-separated patterns of [a-z0-9-*?]. */
static int parse_scope_flag(const char *flag, const char *val)
{
    size_t n = 0;
    for (const char *s = val;; n++) {
        char pat[SHOAL_SCOPE_MAX];
        size_t len = strcspn(s, ",");
        if (len == 0 || len >= sizeof(pat) || n == SHOAL_SCOPES_MAX)
            return bad_value(flag, val, "expected 1-16 comma-separated patterns of 1-63 chars");
        memcpy(pat, s, len);
        pat[len] = 0;
        if (shoal_scope_check(pat) != 0)
            return bad_value(flag, val, "a pattern is 1-63 of [a-z0-9-*?]");
        if (!s[len])
            return 0;
        s += len + 1;
    }
}

/* NAME=PATTERN,... (--test-peer-scope). */
static int parse_peer_scope_flag(struct agent_opts *o, const char *v)
{
    const char *eq = strchr(v, '=');
    char name[SHOAL_NAME_MAX];
    size_t len = eq ? (size_t)(eq - v) : 0;
    if (!eq || len == 0 || len >= sizeof(name))
        return bad_value("test-peer-scope", v, "expected NAME=PATTERN,...");
    memcpy(name, v, len);
    name[len] = 0;
    if (!shoal_name_valid(name))
        return bad_value("test-peer-scope", v, "expected NAME=PATTERN,...");
    if (o->n_peer_scopes == AGENT_MAX_PEER_SCOPES)
        return bad_value("test-peer-scope", v, "at most 16 are accepted");
    int rc = parse_scope_flag("test-peer-scope", eq + 1);
    if (rc == 0)
        o->peer_scopes[o->n_peer_scopes++] = v;
    return rc;
}

static int parse_join_flag(struct agent_opts *o, const char *flag, const char *v)
{
    char host[SHOAL_HOST_MAX];
    uint16_t port;
    if (o->n_joins + o->n_retry_joins == AGENT_MAX_JOIN)
        return bad_value(flag, v, "too many --join and --retry-join addresses (at most 64)");
    if (shoal_hostport_split(v, host, sizeof(host), &port) != 0)
        return bad_value(flag, v,
                         "expected HOST:PORT (HOST an IP address or a DNS name, [IPv6]:PORT) "
                         "with a port 1-65535");
    o->joins[o->n_joins + o->n_retry_joins] = v;
    return 0;
}

/* --dns-ttl: a bare number is seconds (DNS TTLs are whole seconds); a
 * duration must be whole seconds too, so 500ms is refused, not rounded. */
static int parse_dns_ttl_flag(const char *val, uint32_t *out)
{
    uint32_t ms;
    if (val[0] >= '0' && val[0] <= '9' && strspn(val, "0123456789") == strlen(val))
        return parse_count_flag("dns-ttl", val, 0, 604800, out);
    if (shoal_duration_parse(val, &ms) != 0)
        return bad_value("dns-ttl", val, "expected whole seconds such as 5, 5s or 1m");
    if (ms % 1000)
        return bad_value("dns-ttl", val, "DNS TTLs are whole seconds; sub-second TTLs are refused");
    if (ms / 1000 > 604800)
        return bad_value("dns-ttl", val, "must be at most 7 days");
    *out = ms / 1000;
    return 0;
}

/* NODE.node.DOMAIN: a member that is alive or suspect, at its address. */
static bool agent_node_addr(void *ud, const char *name, uint8_t ip[16], uint8_t *iplen)
{
    struct shoal_member_info mi;
    if (!shoal_swim_member_find(shoal_node_swim(ud), name, &mi) ||
        (mi.status != SHOAL_ALIVE && mi.status != SHOAL_SUSPECT))
        return false;
    *iplen = mi.addr.family == 6 ? 16 : 4;
    memcpy(ip, mi.addr.ip, *iplen);
    return true;
}

static bool addr_is_wildcard(const struct shoal_addr *a)
{
    static const uint8_t zero[16];
    return memcmp(a->ip, zero, a->family == 6 ? 16 : 4) == 0;
}

/* One flag's value (from the command line, the environment, a file or the
 * table's default) into o. Returns 0 or 2 after printing why. */
static int agent_apply(void *ud, const struct shoal_agent_flag *f, const char *v)
{
    struct agent_opts *o = ud;
    int rc = 0;
    switch (f->id) {
    case OPT_NAME:
        if (!shoal_name_valid(v))
            rc = bad_value("name", v,
                           "must be 1-63 of [A-Za-z0-9._-], starting with a letter or digit");
        else
            memcpy(o->name, v, strlen(v) + 1); /* valid names fit */
        break;
    case OPT_BIND:
        rc = parse_addr_flag("bind", v, &o->bind);
        o->bind_s = v;
        break;
    case OPT_ADVERTISE:
        rc = parse_addr_flag("advertise", v, &o->advertise);
        o->advertise_s = v;
        break;
    case OPT_HTTP:
        rc = parse_addr_flag("http", v, &o->http);
        break;
    case OPT_DATA_DIR:
        if (!*v)
            rc = bad_value("data-dir", v, "must not be empty");
        o->data_dir = v;
        break;
    case OPT_CLUSTER_KEY:
        if (!*v)
            rc = bad_value("cluster-key", v, "must not be empty");
        o->cluster_key = v;
        break;
    case OPT_JOIN:
        /* --join comes before --retry-join in the table: joins[] keeps that order */
        if ((rc = parse_join_flag(o, "join", v)) == 0)
            o->n_joins++;
        break;
    case OPT_RETRY_JOIN:
        if ((rc = parse_join_flag(o, "retry-join", v)) == 0)
            o->n_retry_joins++;
        break;
    case OPT_RETRY_MAX:
        rc = parse_count_flag("retry-max", v, 0, 1000000, &o->retry_max);
        break;
    case OPT_RETRY_INTERVAL:
        rc = parse_duration_flag("retry-interval", v, 1, &o->retry_interval_ms);
        break;
    case OPT_RETRY_MAX_INTERVAL:
        rc = parse_duration_flag("retry-max-interval", v, 1, &o->retry_max_interval_ms);
        break;
    case OPT_PROBE_INTERVAL:
        rc = parse_duration_flag("probe-interval", v, 1, &o->swim.probe_interval_ms);
        o->probe_interval_s = v;
        break;
    case OPT_PROBE_TIMEOUT:
        rc = parse_duration_flag("probe-timeout", v, 1, &o->swim.probe_timeout_ms);
        o->probe_timeout_s = v;
        break;
    case OPT_GOSSIP_INTERVAL:
        rc = parse_duration_flag("gossip-interval", v, 1, &o->swim.gossip_interval_ms);
        break;
    case OPT_GOSSIP_FANOUT:
        rc = parse_count_flag("gossip-fanout", v, 1, 64, &o->swim.gossip_fanout);
        break;
    case OPT_INDIRECT_CHECKS:
        rc = parse_count_flag("indirect-checks", v, 0, 64, &o->swim.indirect_checks);
        break;
    case OPT_SUSPICION_MULT:
        rc = parse_count_flag("suspicion-mult", v, 1, 1000, &o->swim.suspicion_mult);
        break;
    case OPT_SUSPICION_MAX_MULT:
        rc = parse_count_flag("suspicion-max-mult", v, 1, 1000, &o->swim.suspicion_max_mult);
        break;
    case OPT_RETRANSMIT_MULT:
        rc = parse_count_flag("retransmit-mult", v, 1, 1000, &o->swim.retransmit_mult);
        break;
    case OPT_PUSHPULL_INTERVAL:
        rc = parse_duration_flag("pushpull-interval", v, 0, &o->swim.pushpull_interval_ms);
        break;
    case OPT_GOSSIP_TO_DEAD:
        rc = parse_duration_flag("gossip-to-dead", v, 0, &o->swim.gossip_to_dead_ms);
        break;
    case OPT_REAP:
        rc = parse_duration_flag("reap", v, 1, &o->swim.reap_ms);
        break;
    case OPT_MAX_DATAGRAM:
        rc = parse_count_flag("max-datagram", v, AGENT_MIN_DATAGRAM, AGENT_MAX_DATAGRAM,
                              &o->swim.max_datagram);
        break;
    case OPT_LEAVE_TIMEOUT:
        rc = parse_duration_flag("leave-timeout", v, 0, &o->leave_timeout_ms);
        break;
    case OPT_LOG_LEVEL:
        if (shoal_log_level_parse(v, &o->log_level) != 0)
            rc = bad_value("log-level", v, "expected debug, info, warn or error");
        break;
    case OPT_LOG_FORMAT:
        if (strcmp(v, "text") == 0 || strcmp(v, "json") == 0)
            o->log_json = v[0] == 'j';
        else
            rc = bad_value("log-format", v, "expected text or json");
        break;
    case OPT_CONFIG_DIR:
        if (!*v)
            rc = bad_value("config-dir", v, "must not be empty");
        o->config_dir = v;
        break;
    case OPT_SYNC_INTERVAL:
        rc = parse_duration_flag("sync-interval", v, 0, &o->registry.sync_interval_ms);
        break;
    case OPT_REGISTRY_REAP:
        rc = parse_duration_flag("registry-reap", v, 1, &o->registry.reap_ms);
        break;
    case OPT_TOMBSTONE_TTL:
        rc = parse_duration_flag("tombstone-ttl", v, 1, &o->registry.tombstone_ttl_ms);
        break;
    case OPT_DNS:
        o->dns_explicit = true;
        if (strcmp(v, "off") == 0)
            memset(&o->dns, 0, sizeof(o->dns));
        else
            rc = parse_addr_flag("dns", v, &o->dns);
        break;
    case OPT_CHECK_RISE:
        rc = parse_count_flag("check-rise", v, 1, SHOAL_CHECK_DAMP_MAX, &o->check_rise);
        break;
    case OPT_CHECK_FALL:
        rc = parse_count_flag("check-fall", v, 1, SHOAL_CHECK_DAMP_MAX, &o->check_fall);
        break;
    case OPT_DNS_TTL:
        rc = parse_dns_ttl_flag(v, &o->dns_ttl_s);
        break;
    case OPT_MAX_OWNER_INSTANCES:
        rc = parse_count_flag("max-owner-instances", v, 1, 100000000,
                              &o->registry.max_owner_instances);
        break;
    case OPT_MAX_OWNER_BYTES:
        rc = parse_bytes_flag("max-owner-bytes", v, &o->registry.max_owner_bytes);
        break;
    case OPT_MAX_INSTANCES:
        rc = parse_count_flag("max-instances", v, 1, 100000000, &o->registry.max_instances);
        break;
    case OPT_MAX_BYTES:
        rc = parse_bytes_flag("max-bytes", v, &o->registry.max_bytes);
        break;
    case OPT_TEST_SCOPE:
        rc = parse_scope_flag("test-scope", v);
        o->test_scope = v;
        break;
    case OPT_TEST_PEER_SCOPE:
        rc = parse_peer_scope_flag(o, v);
        break;
    case OPT_DNS_DOMAIN: {
        const char *why = shoal_dns_domain_parse(v, o->dns_domain);
        rc = why ? bad_value("dns-domain", v, why) : 0;
        break;
    }
    case OPT_DNS_UDP_ANSWER_LIMIT:
        rc = parse_count_flag("dns-udp-answer-limit", v, 0, 1024, &o->dns_udp_answer_limit);
        break;
    case OPT_DATACENTER: {
        char dc[SHOAL_DNS_DOMAIN_MAX];
        const char *why = strlen(v) >= 64 || strchr(v, '.') ? "expected one DNS label"
                                                             : shoal_dns_domain_parse(v, dc);
        rc = why ? bad_value("datacenter", v, why) : 0;
        o->datacenter = v;
        break;
    }
    case OPT_CONFIG_FILE: /* read by agentconf.c */
    case OPT_PRINT_CONFIG:
    case OPT_HELP:
        break;
    default:
        fprintf(stderr, "shoal agent: internal error: --%s has no handler\n", f->name);
        rc = 2;
        break;
    }
    return rc;
}

/* Fills o from the flag table's sources. Returns 0, 2 after printing why,
 * or -1 for --help. */
static int agent_parse(int argc, char **argv, struct agent_opts *o, struct shoal_agentconf *conf)
{
    int rc;

    memset(o, 0, sizeof(*o));
    shoal_swim_config_defaults(&o->swim);
    shoal_registry_config_defaults(&o->registry);
    o->log_level = SHOAL_LOG_INFO;
    o->check_rise = o->check_fall = 1;
    (void)shoal_addr_parse("127.0.0.1:8600", &o->dns);
    snprintf(o->dns_domain, sizeof(o->dns_domain), "shoal");
    o->dns_udp_answer_limit = SHOAL_DNS_UDP_ANSWER_LIMIT;
    o->datacenter = "dc1";

    agent_conf = conf;
    rc = shoal_agentconf_load(conf, agent_options, AGENT_N_OPTIONS, argc, argv, "config-file");
    if (rc)
        return rc;
    if (conf->help) {
        shoal_agentconf_help(conf, agent_help_notes);
        return -1;
    }
    if ((rc = shoal_agentconf_apply(conf, agent_apply, o)) != 0)
        return rc;
    if (o->swim.probe_timeout_ms >= o->swim.probe_interval_ms) {
        char why[128];
        snprintf(why, sizeof(why), "must be shorter than --probe-interval (%" PRIu32 "ms)",
                 o->swim.probe_interval_ms);
        return bad_value("probe-timeout", o->probe_timeout_s ? o->probe_timeout_s : "500ms", why);
    }
    /* Retention times that would let a deregistered instance come back
     * (docs/faults.md): refused, with what to change. */
    const char *retention = shoal_registry_config_check(&o->registry, o->swim.reap_ms);
    if (retention) {
        fprintf(stderr,
                "shoal agent: %s (now --tombstone-ttl %" PRIu32 "ms, --registry-reap %" PRIu32
                "ms, --sync-interval %" PRIu32 "ms, --reap %" PRIu32 "ms)\n",
                retention, o->registry.tombstone_ttl_ms, o->registry.reap_ms,
                o->registry.sync_interval_ms, o->swim.reap_ms);
        return 2;
    }
    if (!o->advertise.family) {
        o->advertise = o->bind;
        if (addr_is_wildcard(&o->bind))
            return bad_value("bind", o->bind_s,
                             "a wildcard address cannot be advertised; set --advertise");
    } else if (addr_is_wildcard(&o->advertise)) {
        return bad_value("advertise", o->advertise_s,
                         "a wildcard address cannot be advertised to other nodes");
    }
    if (!o->name[0]) {
        char host[256] = "";
        if (gethostname(host, sizeof(host) - 1) != 0 || !shoal_name_valid(host)) {
            fprintf(stderr,
                    "shoal agent: the hostname '%s' is not a valid member name "
                    "(1-63 of [A-Za-z0-9._-]); set --name\n",
                    host);
            return 2;
        }
        memcpy(o->name, host, strlen(host) + 1); /* valid names fit */
    }
    return 0;
}

static void agent_stop_loop(struct ev_loop *loop, ev_timer *w, int revents)
{
    ev_break(loop, EVBREAK_ALL);
}

/* Ends the run: a short linger lets pending HTTP replies go out. */
static void agent_finish(struct agent *a, int code)
{
    if (a->finishing)
        return;
    a->finishing = true;
    a->exit_code = code;
    ev_timer_stop(a->loop, &a->leave_timer);
    ev_timer_start(a->loop, &a->linger_timer);
}

static void agent_check_result(void *ud, const char *id, uint32_t index, uint8_t status,
                               const char *output)
{
    struct agent *a = ud;
    (void)shoal_node_check_result(a->node, id, index, status, output); /* gone: ignored */
}

static void agent_left(void *ud)
{
    struct agent *a = ud;
    shoal_log_info("agent", "left the cluster");
    agent_finish(a, 0);
}

static void agent_leave_timeout(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct agent *a = w->data;
    shoal_log_warn("agent", "leave not confirmed within %" PRIu32 "ms; exiting anyway",
                   a->leave_timeout_ms);
    agent_finish(a, 0);
}

static void agent_begin_leave(struct agent *a)
{
    if (a->leaving)
        return;
    a->leaving = true;
    shoal_log_info("agent", "leaving the cluster (timeout %" PRIu32 "ms)", a->leave_timeout_ms);
    ev_timer_set(&a->leave_timer, a->leave_timeout_ms / 1000.0, 0.);
    ev_timer_start(a->loop, &a->leave_timer);
    shoal_node_leave(a->node); /* may call agent_left() at once */
}

static void agent_api_leave(void *ud) { agent_begin_leave(ud); }

/* Loads --config-dir into the node (at start and on SIGHUP), then makes
 * the result durable. Returns 0 or -errno if the directory is unreadable. */
static int agent_load_config(struct agent *a)
{
    struct shoal_svcset_result res;
    int rc = shoal_svcset_apply(&a->svc, a->config_dir, a->node, &res);
    if (rc != 0)
        return rc;
    int prc = shoal_node_persist(a->node);
    shoal_log_info("config",
                   "%s: %zu registered, %zu unchanged, %zu deregistered, %zu kept from %zu "
                   "failed file%s%s",
                   a->config_dir, res.registered, res.unchanged, res.deregistered, res.kept,
                   res.files_failed, res.files_failed == 1 ? "" : "s",
                   prc ? "; NOT saved to the data dir" : "");
    return 0;
}

static void agent_sighup(struct ev_loop *loop, ev_signal *w, int revents)
{
    struct agent *a = w->data;
    if (!a->config_dir) {
        shoal_log_info("agent", "SIGHUP: no --config-dir to reload");
        return;
    }
    if (a->leaving) {
        shoal_log_info("agent", "SIGHUP during leave: ignored");
        return;
    }
    shoal_log_info("agent", "SIGHUP: reloading %s", a->config_dir);
    int rc = agent_load_config(a);
    if (rc != 0)
        shoal_log_warn("config", "cannot read %s: %s; nothing changed", a->config_dir,
                       strerror(-rc));
}

static void agent_reg_changed(void *ud)
{
    struct agent *a = ud;
    shoal_api_registry_changed(&a->api);
    shoal_ui_notify(&a->api, false);
}

static void agent_persisted(void *ud, int rc)
{
    struct agent *a = ud;
    shoal_api_persisted(&a->api, rc);
}

/* SWIM events: metrics count flaps from them; the web UI shows them. */
static void agent_event(void *ud, const struct shoal_event *ev)
{
    struct agent *a = ud;
    shoal_metrics_event(&a->metrics, shoal_node_clock_ms(), ev);
    shoal_ui_notify(&a->api, true);
    shoal_joinset_event(&a->joins, ev);
}

/* The start-up join ended: with --retry-join, running alone after
 * --retry-max attempts is an error (exit 1); with --join alone it is not. */
static void agent_join_done(void *ud, bool ok, const char *text)
{
    struct agent *a = ud;
    if (!text)
        return; /* stopping */
    if (ok) {
        shoal_log_info("agent", "joined the cluster through %s", text);
        return;
    }
    if (a->retry_join_fatal) {
        shoal_log_error("agent", "could not join the cluster: %s; exiting", text);
        fprintf(stderr, "shoal agent: could not join the cluster: %s\n", text);
        agent_finish(a, 1);
    } else {
        shoal_log_warn("agent", "could not join the cluster: %s; running alone", text);
    }
}

static void agent_signal(struct ev_loop *loop, ev_signal *w, int revents)
{
    struct agent *a = w->data;
    if (a->leaving) {
        /* A second signal cuts the leave (and any linger) short. */
        shoal_log_warn("agent", "signal %d during leave: exiting now", w->signum);
        a->exit_code = 1;
        ev_break(loop, EVBREAK_ALL);
        return;
    }
    shoal_log_info("agent", "signal %d: leaving gracefully", w->signum);
    agent_begin_leave(a);
}

static uint64_t wall_clock_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* Why a key file failed to load, in the operator's terms: wire's codes say
 * only "I/O error" or "invalid", so the system's reason is asked again. */
static const char *key_file_why(const char *path, int rc, const char *tag, char *buf, size_t len)
{
    struct stat st;
    if (rc == SHOAL_EINVAL) {
        snprintf(buf, len, "not a key file of this kind: expected one line '%s <44 base64 "
                 "characters>'", tag);
        return buf;
    }
    if (rc != SHOAL_EIO)
        return shoal_strerror(rc);
    if (stat(path, &st) == 0 && S_ISDIR(st.st_mode)) {
        snprintf(buf, len, "is a directory");
        return buf;
    }
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) {
        snprintf(buf, len, "%s", strerror(errno));
        return buf;
    }
    close(fd);
    return shoal_strerror(rc);
}

/* The run after flags: returns the exit status. */
static int agent_run(struct agent_opts *o)
{
    struct shoal_node_config nc;
    struct shoal_cluster_key ck;
    struct shoal_regstore store;
    struct agent a;
    char why[512];
    char bs[SHOAL_ADDR_STRLEN], hs[SHOAL_ADDR_STRLEN], as[SHOAL_ADDR_STRLEN];
    int rc, lock_fd, status = 1;

    memset(&a, 0, sizeof(a));
    memset(&nc, 0, sizeof(nc));
    shoal_log_set_node(o->name);
    memset(&store, 0, sizeof(store));
    shoal_addr_format(&o->bind, bs, sizeof(bs));
    shoal_addr_format(&o->http, hs, sizeof(hs));
    shoal_addr_format(&o->advertise, as, sizeof(as));

    if ((rc = shoal_datadir_prepare(o->data_dir)) != 0) {
        fprintf(stderr, "shoal agent: cannot create data dir '%s': %s\n", o->data_dir,
                shoal_datadir_strerror(rc));
        return 1;
    }
    lock_fd = shoal_datadir_lock(o->data_dir);
    if (lock_fd < 0) {
        if (lock_fd == -EWOULDBLOCK)
            fprintf(stderr, "shoal agent: data dir '%s' is in use by another agent\n", o->data_dir);
        else
            fprintf(stderr, "shoal agent: cannot lock data dir '%s': %s\n", o->data_dir,
                    shoal_datadir_strerror(lock_fd));
        return 1;
    }
    if ((rc = shoal_identity_load_or_create(o->data_dir, &nc.identity)) != 0) {
        char path[4096];
        snprintf(path, sizeof(path), "%s/identity.key", o->data_dir);
        fprintf(stderr, "shoal agent: cannot load or create %s: %s\n", path,
                key_file_why(path, rc, "shoal-identity-v1", why, sizeof(why)));
        goto out_lock;
    }
    if (o->cluster_key) {
        if ((rc = shoal_cluster_key_load(o->cluster_key, &ck)) != 0) {
            fprintf(stderr, "shoal agent: cannot load cluster key '%s': %s\n", o->cluster_key,
                    key_file_why(o->cluster_key, rc, "shoal-cluster-key-v1", why, sizeof(why)));
            goto out_lock;
        }
        shoal_identity_endorse(&nc.identity, &ck);
        nc.has_cluster_key = true;
        memcpy(nc.cluster_pk, ck.pk, sizeof(nc.cluster_pk));
        explicit_bzero(&ck, sizeof(ck));
    }

    if ((rc = shoal_regstore_load(o->data_dir, &store, why, sizeof(why))) != 0) {
        fprintf(stderr,
                "shoal agent: cannot restore %s/%s: %s.\n"
                "Refusing to start rather than lose this node's registrations; move the file "
                "away to start without them.\n",
                o->data_dir, SHOAL_REGSTORE_FILE, why);
        goto out_lock;
    }
    if (store.msg.n_events && strcmp(store.owner, o->name) != 0)
        shoal_log_warn("agent", "%s/%s was saved by '%s'; its %u instance%s now belong to '%s'",
                       o->data_dir, SHOAL_REGSTORE_FILE, store.owner, store.msg.n_events,
                       store.msg.n_events == 1 ? "" : "s", o->name);

    a.loop = ev_default_loop(EVFLAG_AUTO);
    if (!a.loop) {
        fprintf(stderr, "shoal agent: cannot initialise libev\n");
        goto out_lock;
    }
    shoal_procinfo_mark_start();
    a.api.ud = &a;
    a.api.bind_addr = o->bind;
    a.api.http_addr = o->http;
    a.api.leave = agent_api_leave;
    a.api.loop = a.loop;
    a.api.svc = &a.svc;
    a.api.datacenter = o->datacenter;
    a.http = shoal_http_server_new(a.loop, &o->http, shoal_api_handle, &a.api, &rc);
    if (!a.http) {
        fprintf(stderr, "shoal agent: cannot listen for HTTP on %s: %s\n", hs,
                shoal_udp_strerror(rc));
        goto out_lock;
    }
    a.api.http = a.http;

    nc.swim = o->swim;
    nc.registry = o->registry;
    nc.data_dir = o->data_dir;
    nc.own_scope = o->test_scope;
    nc.peer_scopes = o->peer_scopes;
    nc.n_peer_scopes = o->n_peer_scopes;
    nc.restore = store.msg.events;
    nc.n_restore = store.msg.n_events;
    nc.restore_version = store.version;
    nc.reg_changed = agent_reg_changed;
    nc.persisted = agent_persisted;
    snprintf(nc.swim.name, sizeof(nc.swim.name), "%s", o->name);
    nc.swim.addr = o->advertise;
    if ((rc = shoal_datadir_next_generation(o->data_dir, (uint64_t)time(NULL),
                                            &nc.swim.generation)) != 0) {
        fprintf(stderr, "shoal agent: cannot raise the generation in %s/generation: %s\n",
                o->data_dir, shoal_datadir_strerror(rc));
        goto out_http;
    }
    if (getrandom(&nc.swim.seed, sizeof(nc.swim.seed), 0) != sizeof(nc.swim.seed)) {
        fprintf(stderr, "shoal agent: getrandom: %s\n", strerror(errno));
        goto out_http;
    }
    nc.bind = o->bind;
    nc.seq_start = wall_clock_us();
    nc.left = agent_left;
    nc.event = agent_event;
    nc.ud = &a;
    shoal_metrics_init(&a.metrics);
    a.api.metrics = &a.metrics;
    a.node = shoal_node_new(a.loop, &nc, &rc);
    explicit_bzero(&nc.identity, sizeof(nc.identity));
    shoal_regstore_clear(&store); /* restored (copied) by now, or failed */
    if (!a.node) {
        /* -errno comes from a socket; SHOAL_E* from wire or core. */
        if (rc == SHOAL_EINVAL) {
            fprintf(stderr, "shoal agent: the protocol settings or the restored registry were "
                            "rejected\n");
            status = 2;
        } else if (rc > SHOAL_ERR_FIRST_ && rc < SHOAL_ERR_LAST_) {
            fprintf(stderr, "shoal agent: cannot start the node: %s\n", shoal_strerror(rc));
        } else {
            fprintf(stderr, "shoal agent: cannot bind UDP and TCP %s: %s\n", bs,
                    shoal_udp_strerror(rc));
        }
        goto out_http;
    }
    a.api.node = a.node;
    struct shoal_checks_config cc;
    shoal_checks_config_defaults(&cc);
    cc.reg = shoal_node_registry(a.node);
    cc.result = agent_check_result;
    cc.ud = &a;
    cc.rise = (uint8_t)o->check_rise;
    cc.fall = (uint8_t)o->check_fall;
    a.checks = shoal_checks_new(a.loop, &cc, &rc);
    if (!a.checks) {
        fprintf(stderr, "shoal agent: cannot start the health checks: %s\n", shoal_strerror(rc));
        goto out_node;
    }
    a.metrics.checks = a.checks;
    if (o->dns.family) {
        char ds[SHOAL_ADDR_STRLEN];
        shoal_addr_format(&o->dns, ds, sizeof(ds));
        a.dns = shoal_dns_server_new(a.loop, &o->dns, shoal_node_registry(a.node), o->dns_ttl_s,
                                     nc.swim.seed ^ 0x646e73u, &rc);
        if (!a.dns && o->dns_explicit) {
            fprintf(stderr, "shoal agent: cannot serve DNS on %s: %s\n", ds,
                    shoal_udp_strerror(rc));
            goto out_node;
        }
        if (!a.dns)
            shoal_log_warn("agent", "cannot serve DNS on the default %s (%s); running without "
                           "DNS (set --dns IP:PORT or --dns off)", ds, shoal_udp_strerror(rc));
        else
            shoal_log_info("agent", "DNS on %s (UDP and TCP), domain %s, ttl %" PRIu32 "s", ds,
                           o->dns_domain, o->dns_ttl_s);
        if (a.dns) {
            struct shoal_dns_zone z = {.udp_answer_limit = o->dns_udp_answer_limit,
                                       .node_addr = agent_node_addr,
                                       .node_ud = a.node};
            struct shoal_addr at;
            snprintf(z.domain, sizeof(z.domain), "%s", o->dns_domain);
            snprintf(z.datacenter, sizeof(z.datacenter), "%s", o->datacenter);
            /* ns.DOMAIN is this server: its own address, or the node's
             * advertised one when it listens on a wildcard */
            shoal_dns_server_addr(a.dns, &at);
            if (addr_is_wildcard(&at))
                at = *shoal_node_addr(a.node);
            z.ns_iplen = at.family == 6 ? 16 : 4;
            memcpy(z.ns_ip, at.ip, z.ns_iplen);
            shoal_dns_server_set_zone(a.dns, &z);
        }
        a.metrics.dns = a.dns;
        if (a.dns)
            a.api.dns_addr = o->dns;
    }
    a.config_dir = o->config_dir;
    if (a.config_dir && (rc = agent_load_config(&a)) != 0) {
        fprintf(stderr, "shoal agent: cannot read --config-dir '%s': %s\n", a.config_dir,
                strerror(-rc));
        goto out_node;
    }

    a.leave_timeout_ms = o->leave_timeout_ms;
    ev_init(&a.leave_timer, agent_leave_timeout);
    a.leave_timer.data = &a;
    ev_timer_init(&a.linger_timer, agent_stop_loop, AGENT_EXIT_LINGER_S, 0.);
    ev_signal_init(&a.sigterm, agent_signal, SIGTERM);
    ev_signal_init(&a.sigint, agent_signal, SIGINT);
    ev_signal_init(&a.sighup, agent_sighup, SIGHUP);
    a.sigterm.data = a.sigint.data = a.sighup.data = &a;
    ev_signal_start(a.loop, &a.sigterm);
    ev_signal_start(a.loop, &a.sigint);
    ev_signal_start(a.loop, &a.sighup);

    shoal_log_info("agent", "%s started: udp %s advertise %s http %s generation %" PRIu64, o->name,
                   bs, as, hs, nc.swim.generation);
    if (!o->cluster_key)
        shoal_log_warn("agent", "no --cluster-key: open cluster, any node may join");
    a.joins.loop = a.loop;
    a.joins.node = a.node;
    a.api.joins = &a.joins;
    if (o->n_joins + o->n_retry_joins) {
        struct shoal_joiner_config jc = {
            .seeds = o->joins,
            .n_seeds = o->n_joins + o->n_retry_joins,
            .window_ms = AGENT_JOIN_WINDOW_MS,
            .retry_interval_ms = o->retry_interval_ms,
            .retry_max_interval_ms = o->retry_max_interval_ms,
            .max_attempts = o->retry_max,
            .what = o->n_retry_joins ? "retry-join" : "join",
            .done = agent_join_done,
            .ud = &a,
        };
        a.retry_join_fatal = o->n_retry_joins > 0;
        if (!shoal_joiner_start(&a.joins, &jc, &rc))
            shoal_log_warn("agent", "not joining: %s",
                           rc == SHOAL_EINVAL ? "the seeds name only this node's own address"
                                              : shoal_strerror(rc));
        else
            shoal_log_info("agent", "joining through %zu seed%s", jc.n_seeds,
                           jc.n_seeds == 1 ? "" : "s");
    }

    ev_run(a.loop, 0);
    status = a.exit_code;

    ev_signal_stop(a.loop, &a.sigterm);
    ev_signal_stop(a.loop, &a.sigint);
    ev_signal_stop(a.loop, &a.sighup);
    ev_timer_stop(a.loop, &a.leave_timer);
    ev_timer_stop(a.loop, &a.linger_timer);
out_node:
    shoal_joinset_close(&a.joins);
    shoal_checks_free(a.checks);
    shoal_dns_server_free(a.dns);
    shoal_api_close(&a.api);
    shoal_node_free(a.node);
    shoal_svcset_clear(&a.svc);
out_http:
    shoal_http_server_free(a.http);
out_lock:
    shoal_regstore_clear(&store);
    explicit_bzero(&nc.identity, sizeof(nc.identity));
    close(lock_fd);
    return status;
}

const struct shoal_agent_flag *shoal_agent_flags(size_t *n)
{
    *n = AGENT_N_OPTIONS;
    return agent_options;
}

const char *shoal_agent_help_notes(void) { return agent_help_notes; }

int shoal_agent_main(int argc, char **argv)
{
    struct agent_opts o;
    struct shoal_agentconf conf;
    int rc;

    /* A peer closing an HTTP connection mid-reply must not kill the agent. */
    signal(SIGPIPE, SIG_IGN);
    rc = agent_parse(argc, argv, &o, &conf);
    if (rc == 0 && conf.print_config) {
        shoal_agentconf_print(&conf);
    } else if (rc == 0) {
        shoal_log_set_level(o.log_level);
        shoal_log_set_json(o.log_json);
        rc = agent_run(&o);
    }
    agent_conf = NULL;
    shoal_agentconf_free(&conf);
    return rc < 0 ? 0 : rc; /* -1: --help */
}
