/* cli.h -- the `shoal` command line (docs/interfaces.md and
 * docs/registry-interfaces.md, "CLI").
 *
 * main.c holds the command table (name -> flags it accepts -> function ->
 * help) and does all option parsing with getopt_long, so a command function
 * receives checked arguments in struct shoal_cli_args and only does its job.
 * check.c holds the early checks of registry input (the agent checks again),
 * call.c and output.c what every command shares, and commands.c (cluster),
 * register.c (our instances) and query.c (services, instances, watch) the
 * commands. Exit status: 0 ok, 1 the agent did not answer or answered an
 * error, 2 usage error.
 */
#ifndef SHOAL_CLI_CLI_H
#define SHOAL_CLI_CLI_H

#include <stdbool.h>
#include <stdint.h>

#include "core/addr.h"
#include "core/registry.h"

#ifndef SHOAL_VERSION
#define SHOAL_VERSION "0.1.0" /* keep in step with project() in CMakeLists.txt */
#endif

#define SHOAL_CLI_DEFAULT_HTTP "127.0.0.1:7947"

enum { SHOAL_CLI_OK = 0, SHOAL_CLI_FAIL = 1, SHOAL_CLI_USAGE = 2 };

enum shoal_cli_format { SHOAL_CLI_FORMAT_TABLE, SHOAL_CLI_FORMAT_JSON };

/* One --meta K=V: the key copied out, the value pointing into argv. */
struct shoal_cli_kv {
    char key[SHOAL_META_KEY_MAX];
    const char *value;
};

/* What a command receives once its flags parsed cleanly. Strings point into
 * argv; every registry field already passed check.c. */
struct shoal_cli_args {
    const char *cmd;                    /* "members" */
    enum shoal_cli_format format;       /* --format (default table) */
    struct shoal_addr http;             /* --http, else $SHOAL_HTTP_ADDR, else default */
    char http_str[SHOAL_ADDR_STRLEN];   /* the same, for messages */
    const char *out;                    /* --out */
    const char *service, *id, *address; /* --service, --id, --address */
    uint16_t port;                      /* --port, 1..65535 */
    uint32_t ttl_ms;                    /* --ttl; 0 = not given */
    bool all;                           /* --all */
    const char *strategy;               /* --strategy (a core/balance.h name) or NULL */
    const char *client_ip;              /* --client-ip or NULL */
    int ntags;                          /* --tag, in order */
    const char *tags[SHOAL_TAGS_MAX];
    int nmeta; /* --meta, in order, keys distinct */
    struct shoal_cli_kv meta[SHOAL_METAS_MAX];
    int nchecks; /* --check-http/--check-tcp, each with its --interval/--timeout */
    struct {
        const char *kind; /* "http" or "tcp" (the API's key) */
        const char *target;
        uint32_t interval_ms, timeout_ms; /* 0 = not given */
    } checks[SHOAL_CHECKS_MAX];
    uint32_t deregister_critical_after_ms; /* --deregister-critical-after; 0 = not given */
    uint32_t wait_ms;                      /* --wait (join); 0 = not given */
    int npos; /* positional arguments */
    char **pos;
};

/* Early checks (check.c). Each returns NULL if s is acceptable, else a static
 * description of what is wanted, for "bad --flag 'value' (want ...)". */
const char *shoal_cli_check_service(const char *s);
const char *shoal_cli_check_id(const char *s);
const char *shoal_cli_check_address(const char *s);
const char *shoal_cli_check_tag(const char *s);
const char *shoal_cli_check_port(const char *s, uint16_t *out);
const char *shoal_cli_check_ttl(const char *s, uint32_t *out_ms);
const char *shoal_cli_check_url(const char *s);
const char *shoal_cli_check_join_addr(const char *s); /* HOST:PORT, HOST a name or an IP */      /* http:// or https:// URL */
const char *shoal_cli_check_hostport(const char *s); /* IPv4:PORT or [IPv6]:PORT */
/* "K=V": fills out (key copied, value pointing into s). */
const char *shoal_cli_check_meta(const char *s, struct shoal_cli_kv *out);

/* The commands (commands.c). Each returns the process exit status. */
int shoal_cli_members(const struct shoal_cli_args *a);
int shoal_cli_info(const struct shoal_cli_args *a);
int shoal_cli_join(const struct shoal_cli_args *a);
int shoal_cli_leave(const struct shoal_cli_args *a);
int shoal_cli_keygen(const struct shoal_cli_args *a);
int shoal_cli_register(const struct shoal_cli_args *a);
int shoal_cli_deregister(const struct shoal_cli_args *a);
int shoal_cli_heartbeat(const struct shoal_cli_args *a);
int shoal_cli_services(const struct shoal_cli_args *a);
int shoal_cli_instances(const struct shoal_cli_args *a);
int shoal_cli_watch(const struct shoal_cli_args *a);
int shoal_cli_resolve(const struct shoal_cli_args *a); /* resolve.c */
/* `shoal proxy` (proxy_cmd.c) parses its own flags: argv from "proxy" on. */
int shoal_cli_proxy(int argc, char **argv);

#endif
