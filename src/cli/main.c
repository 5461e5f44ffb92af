/* main.c -- `shoal`: dispatches to a command from one table.
 *
 * Each table row names a command, the flags it accepts (bits into one flag
 * table), how many positional arguments it takes, its function and its help.
 * Parsing, --help, usage errors and the --http default ($SHOAL_HTTP_ADDR,
 * else 127.0.0.1:7947) are done here once for every command. `shoal agent`
 * passes its arguments untouched to shoal_agent_main().
 */
#define _GNU_SOURCE
#include <getopt.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "io/agent.h"

enum {
    F_FORMAT = 1 << 0,
    F_HTTP = 1 << 1,
    F_OUT = 1 << 2,
};

/* Every flag any command takes; a command picks some by bit. */
static const struct cli_flag {
    unsigned bit;
    const char *name;
    const char *arg;
    const char *help;
} cli_flags[] = {
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
    int min_pos, max_pos; /* positional arguments; max_pos -1 = any number */
    const char *pos_name; /* what a positional argument is, for messages */
    bool pos_addrs;       /* positional arguments must parse as IP:PORT */
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
     .flags = F_HTTP,
     .min_pos = 1,
     .max_pos = -1,
     .pos_name = "IP:PORT",
     .pos_addrs = true,
     .synopsis = "join IP:PORT... [--http IP:PORT]",
     .summary = "ask the agent to join other nodes",
     .details = "Asks the agent to contact the given nodes and join their cluster."},
    {.name = "leave",
     .run = shoal_cli_leave,
     .flags = F_HTTP,
     .synopsis = "leave [--http IP:PORT]",
     .summary = "make the agent leave the cluster and exit",
     .details = "Asks the agent to leave gracefully (others see it as left); it then exits."},
    {.name = "keygen",
     .run = shoal_cli_keygen,
     .flags = F_OUT,
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
    fprintf(f, "usage: shoal COMMAND [FLAGS]\n\ncommands:\n");
    for (size_t i = 0; i < N_CMDS; i++)
        fprintf(f, "  %-9s %s\n", cli_cmds[i].name, cli_cmds[i].summary);
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
            int w = (int)(strlen(cli_flags[i].name) + strlen(cli_flags[i].arg));
            fprintf(f, "  --%s %s%*s %s\n", cli_flags[i].name, cli_flags[i].arg,
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

/* Parses argv (argv[0] is the command name) against the command's flags. */
static int parse_args(const struct cli_cmd *c, int argc, char **argv, struct shoal_cli_args *a,
                      bool *help)
{
    struct option longopts[N_FLAGS + 2];
    const char *http = NULL;
    int n = 0, ch;

    for (size_t i = 0; i < N_FLAGS; i++)
        if (c->flags & cli_flags[i].bit)
            longopts[n++] =
                (struct option){cli_flags[i].name, required_argument, NULL, (int)(256 + i)};
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
        if (f->bit == F_FORMAT) {
            if (strcmp(optarg, "table") == 0)
                a->format = SHOAL_CLI_FORMAT_TABLE;
            else if (strcmp(optarg, "json") == 0)
                a->format = SHOAL_CLI_FORMAT_JSON;
            else
                return usage_error(c, "bad --format '%s' (want table or json)", optarg);
        } else if (f->bit == F_HTTP) {
            http = optarg;
        } else if (f->bit == F_OUT) {
            if (!*optarg)
                return usage_error(c, "--out needs a file name");
            a->out = optarg;
        }
    }
    a->npos = argc - optind;
    a->pos = argv + optind;
    if (a->npos < c->min_pos)
        return usage_error(c, "needs at least %d %s", c->min_pos, c->pos_name);
    if (c->max_pos >= 0 && a->npos > c->max_pos)
        return usage_error(c, "unexpected argument '%s'", a->pos[c->max_pos]);
    for (int i = 0; c->pos_addrs && i < a->npos; i++) {
        struct shoal_addr tmp;
        if (shoal_addr_parse(a->pos[i], &tmp) != 0)
            return usage_error(c, "bad address '%s' (want IP:PORT or [IPv6]:PORT)", a->pos[i]);
    }
    if ((c->flags & F_OUT) && !a->out)
        return usage_error(c, "--out FILE is required");
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

int main(int argc, char **argv)
{
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
