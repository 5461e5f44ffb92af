/* main.c -- `shoal`: dispatches to a command from one table.
 *
 * Each table row names a command, the flags it accepts and requires (bits
 * into one flag table), its positional arguments and how to check them, its
 * function and its help. Parsing, value checks (check.c), --help, usage
 * errors and the --http default ($SHOAL_HTTP_ADDR, else 127.0.0.1:7947) are
 * done here once for every command. `shoal agent` passes its arguments
 * untouched to shoal_agent_main().
 */
#define _GNU_SOURCE
#include <getopt.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/docgen.h"
#include "core/balance.h"
#include "core/registry.h"
#include "io/agent.h"

enum {
    F_FORMAT = 1 << 0,
    F_HTTP = 1 << 1,
    F_OUT = 1 << 2,
    F_SERVICE = 1 << 3,
    F_ID = 1 << 4,
    F_ADDRESS = 1 << 5,
    F_PORT = 1 << 6,
    F_TAG = 1 << 7,
    F_META = 1 << 8,
    F_TTL = 1 << 9,
    F_ALL = 1 << 10,
    F_CHECK_HTTP = 1 << 11,
    F_CHECK_TCP = 1 << 12,
    F_INTERVAL = 1 << 13,
    F_TIMEOUT = 1 << 14,
    F_DCA = 1 << 15,
    F_STRATEGY = 1 << 16,
    F_CLIENT_IP = 1 << 17,
    F_WAIT = 1 << 18,
};
#define F_CHECKS (F_CHECK_HTTP | F_CHECK_TCP | F_INTERVAL | F_TIMEOUT | F_DCA)
#define F_FILTERS (F_ALL | F_TAG | F_META) /* what instances and watch select by */

/* Every flag any command takes; a command picks some by bit. */
static const struct cli_flag {
    unsigned bit;
    const char *name;
    const char *arg; /* NULL: takes no value */
    const char *help;
} cli_flags[] = {
    {F_SERVICE, "service", "NAME", "the service's name: 1..63 of [a-z0-9-]"},
    {F_ID, "id", "ID", "the instance's id, unique on this agent: 1..127 of [A-Za-z0-9._:-]"},
    {F_ADDRESS, "address", "HOST", "where the instance listens: an IP address or host name"},
    {F_PORT, "port", "N", "its port, 1..65535"},
    {F_ALL, "all", NULL, "also warning and critical instances, and those of dead nodes"},
    {F_TAG, "tag", "T", "a tag; repeat for more (to select: instances having all)"},
    {F_META, "meta", "K=V", "metadata; repeat for more (to select: instances matching all)"},
    {F_TTL, "ttl", "D", "critical unless 'shoal heartbeat ID' comes every D (10s, 1m)"},
    {F_CHECK_HTTP, "check-http", "URL", "an active check: GET URL, 2xx passing, 429 warning"},
    {F_CHECK_TCP, "check-tcp", "IP:PORT", "an active check: connect to IP:PORT"},
    {F_INTERVAL, "interval", "D", "the preceding check's interval (default 10s)"},
    {F_TIMEOUT, "timeout", "D", "the preceding check's timeout (default 2s, < interval)"},
    {F_DCA, "deregister-critical-after", "D", "deregister it once critical this long"},
    {F_STRATEGY, "strategy", "S",
     "round-robin (default), random, least-conn or ip-hash (weights: meta \"weight\")"},
    {F_CLIENT_IP, "client-ip", "IP", "the client key ip-hash hashes (default: this caller's IP)"},
    {F_WAIT, "wait", "D", "how long to wait for a node to answer (default 5s, at most 60s)"},
    {F_FORMAT, "format", "table|json", "output format (default: table)"},
    {F_HTTP, "http", "IP:PORT",
     "the agent's HTTP API (default: $SHOAL_HTTP_ADDR, else " SHOAL_CLI_DEFAULT_HTTP ")"},
    {F_OUT, "out", "FILE", "the file to create (required; never overwritten)"},
};
#define N_FLAGS (sizeof(cli_flags) / sizeof(cli_flags[0]))

struct cli_cmd {
    const char *name;
    int (*run)(const struct shoal_cli_args *a); /* NULL: see raw */
    int (*raw)(int argc, char **argv);          /* gets argv from the command on */
    unsigned flags;
    unsigned required;    /* flags that must be given */
    int min_pos, max_pos; /* positional arguments; max_pos -1 = any number */
    const char *pos_name; /* what a positional argument is, for messages */
    /* Optional check of each positional argument (NULL if fine, else what is
     * wanted), and what the argument is called when it fails. */
    const char *(*pos_check)(const char *s);
    const char *pos_what;
    const char *synopsis; /* after "shoal " */
    const char *summary;  /* one line for `shoal help` */
    const char *details;  /* --help text between usage and flags, or NULL */
};

static int cmd_version(const struct shoal_cli_args *a);
static int cmd_help(const struct shoal_cli_args *a);

static const struct cli_cmd cli_cmds[] = {
    {.name = "agent",
     .raw = shoal_agent_main,
     .max_pos = -1,
     .synopsis = "agent [FLAGS]",
     .summary = "run a node",
     .details = "Run 'shoal agent --help' for the agent's flags."},
    {.name = "members",
     .run = shoal_cli_members,
     .flags = F_FORMAT | F_HTTP,
     .synopsis = "members [--format table|json] [--http IP:PORT]",
     .summary = "list the cluster's members",
     .details = "Lists every member the agent knows, itself included, sorted by name:\n"
                "NAME ADDR STATUS INCARNATION, or the API's JSON object with --format json."},
    {.name = "info",
     .run = shoal_cli_info,
     .flags = F_FORMAT | F_HTTP,
     .synopsis = "info [--format table|json] [--http IP:PORT]",
     .summary = "show the agent's state and counters",
     .details = "Shows the agent's identity, member counts, packet and byte counters,\n"
                "dropped packets by reason and protocol counters."},
    {.name = "join",
     .run = shoal_cli_join,
     .flags = F_HTTP | F_WAIT,
     .min_pos = 1,
     .max_pos = 64,
     .pos_name = "HOST:PORT",
     .pos_check = shoal_cli_check_join_addr,
     .pos_what = "address",
     .synopsis = "join HOST:PORT... [--wait D] [--http IP:PORT]",
     .summary = "ask the agent to join other nodes",
     .details = "Asks the agent to contact the given nodes (DNS names are resolved by the\n"
                "agent, every address asked) and waits until one answers: exit 0 and the\n"
                "address that answered, or exit 1 with the reason when none answers within\n"
                "--wait."},
    {.name = "leave",
     .run = shoal_cli_leave,
     .flags = F_HTTP,
     .synopsis = "leave [--http IP:PORT]",
     .summary = "make the agent leave the cluster and exit",
     .details = "Asks the agent to leave gracefully (others see it as left); it then exits."},
    {.name = "register",
     .run = shoal_cli_register,
     .flags = F_SERVICE | F_ID | F_ADDRESS | F_PORT | F_TAG | F_META | F_TTL | F_HTTP | F_CHECKS,
     .required = F_SERVICE | F_ID | F_ADDRESS | F_PORT,
     .synopsis = "register --service NAME --id ID --address HOST --port N [--tag T]...\n"
                 "                      [--meta K=V]... [--ttl D] [--http IP:PORT]\n"
                 "                      [--check-http URL | --check-tcp IP:PORT [--interval D]\n"
                 "                      [--timeout D]]... [--deregister-critical-after D]",
     .summary = "register a service instance with the agent",
     .details = "Registers an instance owned by this agent, which spreads it to the cluster;\n"
                "the same id again updates it. Without --ttl it stays passing until\n"
                "deregistered; with --ttl it starts critical and is passing for D after each\n"
                "'shoal heartbeat ID'. Limits: at most 32 tags, 64 meta pairs, 16 KB of meta.\n"
                "Active checks (at most 8) run on this agent; the instance's status is the\n"
                "worst of its checks and its TTL, and a new check starts critical."},
    {.name = "deregister",
     .run = shoal_cli_deregister,
     .flags = F_HTTP,
     .min_pos = 1,
     .max_pos = 1,
     .pos_name = "ID",
     .pos_check = shoal_cli_check_id,
     .pos_what = "ID",
     .synopsis = "deregister ID [--http IP:PORT]",
     .summary = "remove an instance registered with the agent",
     .details = "Removes one of the agent's own instances from the cluster's registry."},
    {.name = "heartbeat",
     .run = shoal_cli_heartbeat,
     .flags = F_HTTP,
     .min_pos = 1,
     .max_pos = 1,
     .pos_name = "ID",
     .pos_check = shoal_cli_check_id,
     .pos_what = "ID",
     .synopsis = "heartbeat ID [--http IP:PORT]",
     .summary = "mark a TTL instance passing",
     .details = "Marks an instance registered with --ttl passing for another TTL."},
    {.name = "services",
     .run = shoal_cli_services,
     .flags = F_FORMAT | F_HTTP,
     .synopsis = "services [--format table|json] [--http IP:PORT]",
     .summary = "list the registered services",
     .details = "Lists every service in the registry, sorted by name: NAME PASSING TOTAL\n"
                "(passing instances of live nodes, and all instances), or the API's JSON\n"
                "object with --format json."},
    {.name = "instances",
     .run = shoal_cli_instances,
     .flags = F_FILTERS | F_FORMAT | F_HTTP,
     .min_pos = 1,
     .max_pos = 1,
     .pos_name = "NAME",
     .pos_check = shoal_cli_check_service,
     .pos_what = "service name",
     .synopsis = "instances NAME [--all] [--tag T]... [--meta K=V]...\n"
                 "                       [--format table|json] [--http IP:PORT]",
     .summary = "list a service's instances",
     .details = "Lists the passing instances of service NAME on live nodes (every instance\n"
                "with --all), those with every --tag and --meta given, sorted by (owner, id):\n"
                "ID ADDRESS:PORT STATUS OWNER TAGS META, or with --format json the API's\n"
                "\"instances\" array."},
    {.name = "watch",
     .run = shoal_cli_watch,
     .flags = F_FILTERS | F_FORMAT | F_HTTP,
     .min_pos = 1,
     .max_pos = 1,
     .pos_name = "NAME",
     .pos_check = shoal_cli_check_service,
     .pos_what = "service name",
     .synopsis = "watch NAME [--all] [--tag T]... [--meta K=V]...\n"
                 "                   [--format table|json] [--http IP:PORT]",
     .summary = "print a service's instances now and after every change",
     .details = "Like 'shoal instances', then waits for changes (blocking queries) and prints\n"
                "the set again whenever it changes, under a line with the time and the index;\n"
                "with --format json, one \"instances\" array per line and no other lines.\n"
                "If the agent goes away, retries (one warning per outage) and gives up\n"
                "with exit 1 after 60 s. SIGINT or SIGTERM ends it with exit 0."},
    {.name = "proxy",
     .raw = shoal_cli_proxy,
     .max_pos = -1,
     .synopsis = "proxy --listen IP:PORT --service NAME [FLAGS]",
     .summary = "run a TCP proxy in front of a service's passing instances",
     .details = "Run 'shoal proxy --help' for its flags."},
    {.name = "resolve",
     .run = shoal_cli_resolve,
     .flags = F_STRATEGY | F_CLIENT_IP | F_TAG | F_META | F_FORMAT | F_HTTP,
     .min_pos = 1,
     .max_pos = 1,
     .pos_name = "NAME",
     .pos_check = shoal_cli_check_service,
     .pos_what = "service name",
     .synopsis = "resolve NAME [--strategy round-robin|random|least-conn|ip-hash]\n"
                 "                     [--client-ip IP] [--tag T]... [--meta K=V]...\n"
                 "                     [--format table|json] [--http IP:PORT]",
     .summary = "pick one passing instance of a service by a load-balancing strategy",
     .details = "Asks the agent to pick one passing instance of NAME (with every --tag and\n"
                "--meta given) and prints ADDRESS:PORT ID OWNER STRATEGY CANDIDATES, or the\n"
                "API's JSON with --format json. Weights come from the instances' meta\n"
                "\"weight\" (1..1000). round-robin and least-conn state is kept by the agent\n"
                "per caller address; a least-conn pick counts as active for 5 min unless\n"
                "released (POST /v1/release/NAME/ID). ip-hash hashes --client-ip (default:\n"
                "this caller's address) by rendezvous hashing: the same client gets the\n"
                "same instance while it passes. No passing instance: exit 1."},
    {.name = "keygen",
     .run = shoal_cli_keygen,
     .flags = F_OUT,
     .required = F_OUT,
     .synopsis = "keygen --out FILE",
     .summary = "create a new cluster key",
     .details = "Writes a new cluster key to FILE (mode 0600) and prints its path. Give the\n"
                "same key to every node with 'shoal agent --cluster-key FILE'."},
    {.name = "version", .run = cmd_version, .synopsis = "version", .summary = "print the version"},
    {.name = "help",
     .run = cmd_help,
     .max_pos = 1,
     .synopsis = "help [COMMAND]",
     .summary = "show help for shoal or a command"},
};
#define N_CMDS (sizeof(cli_cmds) / sizeof(cli_cmds[0]))

static const struct cli_cmd *find_cmd(const char *name)
{
    for (size_t i = 0; i < N_CMDS; i++)
        if (strcmp(cli_cmds[i].name, name) == 0)
            return &cli_cmds[i];
    return NULL;
}

static void print_usage(FILE *f)
{
    int w = 0;
    for (size_t i = 0; i < N_CMDS; i++)
        if ((int)strlen(cli_cmds[i].name) > w)
            w = (int)strlen(cli_cmds[i].name);
    fprintf(f, "usage: shoal COMMAND [FLAGS]\n\ncommands:\n");
    for (size_t i = 0; i < N_CMDS; i++)
        fprintf(f, "  %-*s %s\n", w, cli_cmds[i].name, cli_cmds[i].summary);
    fprintf(f, "\nRun 'shoal COMMAND --help' for a command's flags.\n");
}

static void print_cmd_help(const struct cli_cmd *c, FILE *f)
{
    fprintf(f, "usage: shoal %s\n", c->synopsis);
    if (c->details)
        fprintf(f, "\n%s\n", c->details);
    fprintf(f, "\nflags:\n");
    for (size_t i = 0; i < N_FLAGS; i++) {
        if (c->flags & cli_flags[i].bit) {
            const char *arg = cli_flags[i].arg ? cli_flags[i].arg : "";
            int w = (int)(strlen(cli_flags[i].name) + strlen(arg)) + (*arg ? 0 : -1);
            fprintf(f, "  --%s%s%s%*s %s\n", cli_flags[i].name, *arg ? " " : "", arg,
                    w < 17 ? 17 - w : 0, "", cli_flags[i].help);
        }
    }
    fprintf(f, "  -h, --help%*s show this help\n", 10, "");
}

/* A usage error: the message, then the synopsis, on stderr. */
__attribute__((format(printf, 2, 3))) static int usage_error(const struct cli_cmd *c,
                                                             const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "shoal %s: ", c->name);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\nusage: shoal %s\nRun 'shoal %s --help' for details.\n", c->synopsis,
            c->name);
    return SHOAL_CLI_USAGE;
}

static int set_http(const struct cli_cmd *c, struct shoal_cli_args *a, const char *v,
                    const char *source)
{
    if (shoal_addr_parse(v, &a->http) != 0)
        return usage_error(c, "bad %s address '%s' (want IP:PORT or [IPv6]:PORT)", source, v);
    shoal_addr_format(&a->http, a->http_str, sizeof(a->http_str));
    return 0;
}

/* Checks one flag's value into a. Returns 0 or a usage error. */
static int set_flag(const struct cli_cmd *c, struct shoal_cli_args *a, unsigned bit, const char *v)
{
    const char *want = NULL;
    switch (bit) {
    case F_FORMAT:
        if (strcmp(v, "table") == 0)
            a->format = SHOAL_CLI_FORMAT_TABLE;
        else if (strcmp(v, "json") == 0)
            a->format = SHOAL_CLI_FORMAT_JSON;
        else
            want = "table or json";
        break;
    case F_OUT:
        if (!*v)
            return usage_error(c, "--out needs a file name");
        a->out = v;
        break;
    case F_SERVICE:
        want = shoal_cli_check_service(v);
        a->service = v;
        break;
    case F_ID:
        want = shoal_cli_check_id(v);
        a->id = v;
        break;
    case F_ADDRESS:
        want = shoal_cli_check_address(v);
        a->address = v;
        break;
    case F_PORT:
        want = shoal_cli_check_port(v, &a->port);
        break;
    case F_TTL:
        want = shoal_cli_check_ttl(v, &a->ttl_ms);
        break;
    case F_ALL:
        a->all = true;
        break;
    case F_STRATEGY:
        if (shoal_lb_parse(v) < 0)
            want = "round-robin, random, least-conn or ip-hash";
        a->strategy = v;
        break;
    case F_CLIENT_IP:
        if (!*v || strlen(v) > 255)
            want = "a client IP or key, 1..255 bytes";
        a->client_ip = v;
        break;
    case F_CHECK_HTTP:
    case F_CHECK_TCP: {
        if (a->nchecks == SHOAL_CHECKS_MAX)
            return usage_error(c, "at most %d checks", SHOAL_CHECKS_MAX);
        want = bit == F_CHECK_HTTP ? shoal_cli_check_url(v) : shoal_cli_check_hostport(v);
        a->checks[a->nchecks].kind = bit == F_CHECK_HTTP ? "http" : "tcp";
        a->checks[a->nchecks++].target = v;
        break;
    }
    case F_INTERVAL:
    case F_TIMEOUT: {
        const char *name = bit == F_INTERVAL ? "--interval" : "--timeout";
        if (!a->nchecks)
            return usage_error(c, "%s must follow --check-http or --check-tcp", name);
        uint32_t *dst = bit == F_INTERVAL ? &a->checks[a->nchecks - 1].interval_ms
                                          : &a->checks[a->nchecks - 1].timeout_ms;
        if (*dst)
            return usage_error(c, "%s given twice for one check", name);
        want = shoal_cli_check_ttl(v, dst);
        break;
    }
    case F_DCA:
        want = shoal_cli_check_ttl(v, &a->deregister_critical_after_ms);
        break;
    case F_WAIT:
        want = shoal_cli_check_ttl(v, &a->wait_ms);
        if (!want && a->wait_ms > 60000)
            want = "a duration from 1ms to 60s";
        break;
    case F_TAG:
        if (a->ntags == SHOAL_TAGS_MAX)
            return usage_error(c, "at most %d --tag", SHOAL_TAGS_MAX);
        want = shoal_cli_check_tag(v);
        a->tags[a->ntags++] = v;
        break;
    case F_META: {
        if (a->nmeta == SHOAL_METAS_MAX)
            return usage_error(c, "at most %d --meta", SHOAL_METAS_MAX);
        struct shoal_cli_kv *kv = &a->meta[a->nmeta];
        want = shoal_cli_check_meta(v, kv);
        for (int i = 0; !want && i < a->nmeta; i++)
            if (strcmp(a->meta[i].key, kv->key) == 0)
                return usage_error(c, "--meta key '%s' given twice", kv->key);
        a->nmeta++;
        break;
    }
    }
    if (want) {
        for (size_t i = 0; i < N_FLAGS; i++)
            if (cli_flags[i].bit == bit)
                return usage_error(c, "bad --%s '%s' (want %s)", cli_flags[i].name, v, want);
    }
    return 0;
}

/* Parses argv (argv[0] is the command name) against the command's flags. */
static int parse_args(const struct cli_cmd *c, int argc, char **argv, struct shoal_cli_args *a,
                      bool *help)
{
    struct option longopts[N_FLAGS + 2];
    const char *http = NULL;
    unsigned given = 0;
    int n = 0, ch, rc;

    for (size_t i = 0; i < N_FLAGS; i++)
        if (c->flags & cli_flags[i].bit)
            longopts[n++] = (struct option){cli_flags[i].name,
                                            cli_flags[i].arg ? required_argument : no_argument,
                                            NULL, (int)(256 + i)};
    longopts[n++] = (struct option){"help", no_argument, NULL, 'h'};
    longopts[n] = (struct option){0};

    memset(a, 0, sizeof(*a));
    a->cmd = c->name;
    opterr = 0; /* our messages, not getopt's */
    optind = 1;
    while ((ch = getopt_long(argc, argv, ":h", longopts, NULL)) != -1) {
        const char *arg = argv[optind - 1];
        if (ch == 'h') {
            *help = true;
            return 0;
        }
        if (ch == ':')
            return usage_error(c, "flag %s needs a value", arg);
        if (ch == '?') {
            char name[64];
            if (strncmp(arg, "--", 2) != 0) { /* a short flag: -x */
                snprintf(name, sizeof(name), "-%c", optopt ? optopt : '?');
                return usage_error(c, "unknown flag %s", name);
            }
            snprintf(name, sizeof(name), "%.*s", (int)strcspn(arg, "="), arg);
            for (int i = 0; i < n; i++)
                if (strcmp(name + 2, longopts[i].name) == 0)
                    return usage_error(c, "flag %s takes no value", name);
            return usage_error(c, "unknown flag %s", name);
        }
        const struct cli_flag *f = &cli_flags[ch - 256];
        given |= f->bit;
        if (f->bit == F_HTTP)
            http = optarg; /* checked last: an unset --http falls back to the environment */
        else if ((rc = set_flag(c, a, f->bit, optarg)) != 0)
            return rc;
    }
    a->npos = argc - optind;
    a->pos = argv + optind;
    if (a->npos < c->min_pos)
        return usage_error(c, "needs at least %d %s", c->min_pos, c->pos_name);
    if (c->max_pos >= 0 && a->npos > c->max_pos)
        return usage_error(c, "unexpected argument '%s'", a->pos[c->max_pos]);
    for (int i = 0; c->pos_check && i < a->npos; i++) {
        const char *want = c->pos_check(a->pos[i]);
        if (want)
            return usage_error(c, "bad %s '%s' (want %s)", c->pos_what, a->pos[i], want);
    }
    for (size_t i = 0; i < N_FLAGS; i++)
        if ((c->required & cli_flags[i].bit) && !(given & cli_flags[i].bit))
            return usage_error(c, "--%s %s is required", cli_flags[i].name, cli_flags[i].arg);
    size_t meta_bytes = 0;
    for (int i = 0; i < a->nmeta; i++)
        meta_bytes += strlen(a->meta[i].key) + strlen(a->meta[i].value);
    if (meta_bytes > SHOAL_META_TOTAL_MAX)
        return usage_error(c, "--meta keys and values total %zu bytes (at most %d)", meta_bytes,
                           SHOAL_META_TOTAL_MAX);
    /* Each check as the agent will judge it (defaults filled in, the same
     * rule as the API's), so a bad pair of flags is named here. */
    for (int i = 0; i < a->nchecks; i++) {
        struct shoal_check chk = {
            .kind = a->checks[i].kind[0] == 'h' ? SHOAL_CHECK_HTTP : SHOAL_CHECK_TCP,
            .target = (char *)a->checks[i].target,
            .interval_ms = a->checks[i].interval_ms,
            .timeout_ms = a->checks[i].timeout_ms,
        };
        shoal_check_defaults(&chk);
        const char *why = shoal_check_invalid(&chk);
        if (why)
            return usage_error(c,
                               "check %d (--check-%s %s, --interval %" PRIu32 "ms, --timeout %" PRIu32
                               "ms): %s",
                               i + 1, a->checks[i].kind, a->checks[i].target, chk.interval_ms,
                               chk.timeout_ms, why);
    }
    if (c->flags & F_HTTP) {
        if (http)
            return set_http(c, a, http, "--http");
        const char *env = getenv("SHOAL_HTTP_ADDR");
        if (env && *env)
            return set_http(c, a, env, "SHOAL_HTTP_ADDR");
        return set_http(c, a, SHOAL_CLI_DEFAULT_HTTP, "default");
    }
    return 0;
}

static int cmd_version(const struct shoal_cli_args *a)
{
    printf("shoal %s\n", SHOAL_VERSION);
    return SHOAL_CLI_OK;
}

static int cmd_help(const struct shoal_cli_args *a)
{
    if (a->npos == 0) {
        print_usage(stdout);
        return SHOAL_CLI_OK;
    }
    const struct cli_cmd *c = find_cmd(a->pos[0]);
    if (!c) {
        fprintf(stderr, "shoal help: unknown command '%s'\n", a->pos[0]);
        print_usage(stderr);
        return SHOAL_CLI_USAGE;
    }
    if (c->raw) {
        char *argv[] = {(char *)c->name, "--help", NULL};
        return c->raw(2, argv);
    }
    print_cmd_help(c, stdout);
    return SHOAL_CLI_OK;
}

/* docgen.c's view of the commands: their --help, printed by the code above. */
static void doc_help(const char *name)
{
    const struct cli_cmd *c = name ? find_cmd(name) : NULL;
    if (!c) {
        print_usage(stdout);
    } else if (c->raw) {
        char *argv[] = {(char *)c->name, "--help", NULL};
        (void)c->raw(2, argv);
    } else {
        print_cmd_help(c, stdout);
    }
}

/* `shoal __gen-man DIR` and `shoal __gen-completion FILE` (run by the build). */
static int gen_docs(const char *what, const char *where)
{
    struct shoal_cli_doc docs[N_CMDS];
    for (size_t i = 0; i < N_CMDS; i++)
        docs[i] = (struct shoal_cli_doc){cli_cmds[i].name, cli_cmds[i].summary,
                                         cli_cmds[i].pos_check == shoal_cli_check_service};
    if (strcmp(what, "__gen-man") == 0)
        return shoal_cli_gen_man(where, docs, N_CMDS, doc_help, SHOAL_VERSION);
    return shoal_cli_gen_completion(where, docs, N_CMDS, doc_help);
}

int main(int argc, char **argv)
{
    if (argc == 3 && (strcmp(argv[1], "__gen-man") == 0 ||
                      strcmp(argv[1], "__gen-completion") == 0))
        return gen_docs(argv[1], argv[2]);
    if (argc < 2) {
        print_usage(stderr);
        return SHOAL_CLI_USAGE;
    }
    const char *name = argv[1];
    if (strcmp(name, "-h") == 0 || strcmp(name, "--help") == 0)
        name = "help";
    else if (strcmp(name, "--version") == 0)
        name = "version";
    const struct cli_cmd *c = find_cmd(name);
    if (!c) {
        if (name[0] == '-')
            fprintf(stderr, "shoal: unknown flag %s\n", name);
        else
            fprintf(stderr, "shoal: unknown command '%s'\n", name);
        print_usage(stderr);
        return SHOAL_CLI_USAGE;
    }
    if (c->raw)
        return c->raw(argc - 1, argv + 1);

    struct shoal_cli_args a;
    bool help = false;
    int rc = parse_args(c, argc - 1, argv + 1, &a, &help);
    if (rc)
        return rc;
    if (help) {
        print_cmd_help(c, stdout);
        return SHOAL_CLI_OK;
    }
    rc = c->run(&a);
    if (fflush(stdout) != 0 && rc == SHOAL_CLI_OK) { /* e.g. a full disk or closed pipe */
        perror("shoal: writing output");
        return SHOAL_CLI_FAIL;
    }
    return rc;
}
