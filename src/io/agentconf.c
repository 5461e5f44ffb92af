/* agentconf.c -- `shoal agent`'s settings from flags, the environment and
 * JSON config files, all through agent.c's one flag table (agentconf.h).
 *
 * Nothing here knows a particular flag: a flag added to the table is at
 * once accepted in files and as SHOAL_NAME, listed by --help and shown by
 * --print-config. Values stay text and are checked by agent.c's switch, so
 * a bad value reads the same wherever it came from, prefixed by where.
 */
#define _GNU_SOURCE /* asprintf */
#include "io/agentconf.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "io/log.h"

#define CONF_FILE_MAX (1u << 20)  /* a config file larger than 1 MiB is a mistake */
#define CONF_DIR_MAX_FILES 256    /* JSON files read from one directory */
#define CONF_MAX_VALUES 1024      /* values of one repeatable flag from one source */

static const char *const src_names[] = {"default", "file", "environment", "flag"};

static void oom(void)
{
    fputs("shoal agent: out of memory\n", stderr);
    exit(1);
}

static char *xstrdup(const char *s)
{
    char *p = strdup(s);
    if (!p)
        oom();
    return p;
}

static void slot_clear(struct shoal_agentconf_slot *s)
{
    for (size_t i = 0; i < s->n; i++)
        free(s->vals[i]);
    free(s->vals);
    free(s->where);
    memset(s, 0, sizeof(*s));
}

static int slot_add(struct shoal_agentconf_slot *s, const char *v)
{
    if (s->n == CONF_MAX_VALUES)
        return -1;
    char **nv = realloc(s->vals, (s->n + 1) * sizeof(*nv));
    if (!nv)
        oom();
    s->vals = nv;
    s->vals[s->n++] = xstrdup(v);
    return 0;
}

/* "data_dir" and "data-dir" name the same flag. */
static const struct shoal_agent_flag *find_flag(const struct shoal_agentconf *c, const char *name,
                                                size_t len, size_t *idx)
{
    for (size_t i = 0; i < c->nflags; i++) {
        const char *fn = c->flags[i].name;
        if (strlen(fn) != len)
            continue;
        size_t k = 0;
        while (k < len && (fn[k] == name[k] || (fn[k] == '-' && name[k] == '_')))
            k++;
        if (k == len) {
            *idx = i;
            return &c->flags[i];
        }
    }
    return NULL;
}

const char *shoal_agentconf_env_name(const char *flag, char *buf, size_t len)
{
    size_t k = 0;
    int n = snprintf(buf, len, "SHOAL_");
    for (k = (size_t)n; *flag && k + 1 < len; flag++, k++)
        buf[k] = *flag == '-' ? '_' : (char)toupper((unsigned char)*flag);
    buf[k] = '\0';
    return buf;
}

/* ------------------------------------------------------------ argv */

static int load_argv(struct shoal_agentconf *c, int argc, char **argv)
{
    struct shoal_agentconf_slot *layer = c->layer[SHOAL_SRC_FLAG];
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            c->help = true;
            continue;
        }
        if (strncmp(a, "--", 2) != 0 || a[2] == '\0') {
            if (a[0] == '-')
                fprintf(stderr, "shoal agent: unknown flag '%s' (flags start with '--')\n", a);
            else
                fprintf(stderr, "shoal agent: unexpected argument '%s' (the agent takes only "
                                "flags)\n", a);
            return 2;
        }
        const char *name = a + 2, *eq = strchr(name, '=');
        size_t len = eq ? (size_t)(eq - name) : strlen(name), idx;
        const struct shoal_agent_flag *f = find_flag(c, name, len, &idx);
        if (!f || strncmp(f->name, name, len) != 0) { /* underscores only in files */
            fprintf(stderr, "shoal agent: unknown flag '--%.*s'\n", (int)len, name);
            return 2;
        }
        const char *v;
        if (f->has_arg == 0) {
            if (eq) {
                fprintf(stderr, "shoal agent: --%s takes no value\n", f->name);
                return 2;
            }
            v = "true";
        } else if (eq) {
            v = eq + 1;
        } else if (i + 1 < argc) {
            v = argv[++i];
        } else {
            fprintf(stderr, "shoal agent: --%s needs a value\n", f->name);
            return 2;
        }
        struct shoal_agentconf_slot *s = &layer[idx];
        if (!(f->kind & SHOAL_AF_REPEAT) && s->n) /* the last one wins, as with getopt */
            slot_clear(s);
        if (slot_add(s, v) != 0) {
            fprintf(stderr, "shoal agent: --%s given too many times\n", f->name);
            return 2;
        }
        if (!s->where) {
            char w[128];
            snprintf(w, sizeof(w), "--%s", f->name);
            s->where = xstrdup(w);
        }
    }
    return 0;
}

/* ------------------------------------------------------------ environment */

static int load_env(struct shoal_agentconf *c)
{
    for (size_t i = 0; i < c->nflags; i++) {
        const struct shoal_agent_flag *f = &c->flags[i];
        if (f->kind & SHOAL_AF_CLI_ONLY)
            continue;
        char name[128];
        const char *v = getenv(shoal_agentconf_env_name(f->name, name, sizeof(name)));
        if (!v)
            continue;
        struct shoal_agentconf_slot *s = &c->layer[SHOAL_SRC_ENV][i];
        if (f->has_arg == 0) {
            if (strcmp(v, "true") != 0 && strcmp(v, "1") != 0) {
                fprintf(stderr, "shoal agent: %s: expected 'true' or '1', got '%s'\n", name, v);
                return 2;
            }
            slot_add(s, "true");
        } else if (f->kind & SHOAL_AF_REPEAT) {
            /* comma-separated; empty items are refused by the flag's own check */
            const char *p = v;
            for (;;) {
                size_t n = strcspn(p, ",");
                char *item = strndup(p, n);
                if (!item)
                    oom();
                int rc = slot_add(s, item);
                free(item);
                if (rc != 0) {
                    fprintf(stderr, "shoal agent: %s: too many values\n", name);
                    return 2;
                }
                if (!p[n])
                    break;
                p += n + 1;
            }
        } else {
            slot_add(s, v);
        }
        s->where = xstrdup(name);
    }
    return 0;
}

/* ------------------------------------------------------------ files */

/* One JSON value as the text a flag would be given; NULL if unfit. */
static char *json_text(json_t *v)
{
    char buf[32];
    if (json_is_string(v))
        return xstrdup(json_string_value(v));
    if (json_is_integer(v)) {
        snprintf(buf, sizeof(buf), "%" JSON_INTEGER_FORMAT, json_integer_value(v));
        return xstrdup(buf);
    }
    return NULL;
}

static const char *json_kind(json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT: return "an object";
    case JSON_ARRAY: return "an array";
    case JSON_STRING: return "a string";
    case JSON_INTEGER: return "an integer";
    case JSON_REAL: return "a fraction";
    case JSON_TRUE: return "true";
    case JSON_FALSE: return "false";
    default: return "null";
    }
}

/* Reads one regular file (never blocks on a FIFO: O_NONBLOCK, then fstat).
 * Returns the text (malloc'd) or NULL with why filled. */
static char *read_conf_file(const char *path, size_t *len, char *why, size_t whylen)
{
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
    struct stat st;
    if (fd < 0) {
        snprintf(why, whylen, "cannot open: %s", strerror(errno));
        return NULL;
    }
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        snprintf(why, whylen, "not a regular file");
        close(fd);
        return NULL;
    }
    if ((uint64_t)st.st_size > CONF_FILE_MAX) {
        snprintf(why, whylen, "larger than %u bytes", CONF_FILE_MAX);
        close(fd);
        return NULL;
    }
    char *buf = malloc((size_t)st.st_size + 1);
    if (!buf)
        oom();
    size_t got = 0;
    while (got < (size_t)st.st_size) {
        ssize_t r = read(fd, buf + got, (size_t)st.st_size - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            snprintf(why, whylen, "cannot read: %s", strerror(errno));
            free(buf);
            close(fd);
            return NULL;
        }
        if (r == 0)
            break;
        got += (size_t)r;
    }
    close(fd);
    buf[got] = '\0';
    *len = got;
    return buf;
}

static int load_file(struct shoal_agentconf *c, const char *path)
{
    char why[256];
    size_t len;
    char *text = read_conf_file(path, &len, why, sizeof(why));
    if (!text) {
        fprintf(stderr, "shoal agent: config file %s: %s\n", path, why);
        return 2;
    }
    json_error_t jerr;
    json_t *root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
    free(text);
    if (!root) {
        fprintf(stderr, "shoal agent: config file %s: line %d column %d: %s\n", path, jerr.line,
                jerr.column, jerr.text);
        return 2;
    }
    if (!json_is_object(root)) {
        fprintf(stderr, "shoal agent: config file %s: expected a JSON object of flag names, got "
                        "%s\n", path, json_kind(root));
        json_decref(root);
        return 2;
    }
    /* Slots of this file, so "data-dir" and "data_dir" in one file clash. */
    bool *seen = calloc(c->nflags, sizeof(*seen));
    if (!seen)
        oom();
    const char *key;
    json_t *v;
    int rc = 0;
    json_object_foreach(root, key, v)
    {
        size_t idx;
        const struct shoal_agent_flag *f = find_flag(c, key, strlen(key), &idx);
        char where[512];
        snprintf(where, sizeof(where), "%s: key \"%s\"", path, key);
        if (!f) {
            fprintf(stderr, "shoal agent: %s: unknown key (not an agent flag; run 'shoal agent "
                            "--help')\n", where);
            rc = 2;
            break;
        }
        if (f->kind & (SHOAL_AF_CLI_ONLY | SHOAL_AF_NO_FILE)) {
            fprintf(stderr, "shoal agent: %s: --%s cannot be set in a config file\n", where,
                    f->name);
            rc = 2;
            break;
        }
        if (seen[idx]) {
            fprintf(stderr, "shoal agent: %s: --%s is already set in this file\n", where, f->name);
            rc = 2;
            break;
        }
        seen[idx] = true;
        struct shoal_agentconf_slot *s = &c->layer[SHOAL_SRC_FILE][idx];
        slot_clear(s); /* a later file wins */
        s->where = xstrdup(where);
        if (f->has_arg == 0) {
            if (!json_is_boolean(v)) {
                fprintf(stderr, "shoal agent: %s: expected true or false, got %s\n", where,
                        json_kind(v));
                rc = 2;
                break;
            }
            if (json_is_true(v))
                slot_add(s, "true");
            else
                slot_clear(s);
            continue;
        }
        if (json_is_array(v)) {
            if (!(f->kind & SHOAL_AF_REPEAT)) {
                fprintf(stderr, "shoal agent: %s: --%s takes one value, not an array\n", where,
                        f->name);
                rc = 2;
                break;
            }
            size_t i;
            json_t *e;
            json_array_foreach(v, i, e)
            {
                char *t = json_text(e);
                if (!t) {
                    fprintf(stderr, "shoal agent: %s: item %zu: expected a string or an integer, "
                                    "got %s\n", where, i, json_kind(e));
                    rc = 2;
                    break;
                }
                int arc = slot_add(s, t);
                free(t);
                if (arc != 0) {
                    fprintf(stderr, "shoal agent: %s: too many values\n", where);
                    rc = 2;
                    break;
                }
            }
            if (rc)
                break;
            continue;
        }
        char *t = json_text(v);
        if (!t) {
            fprintf(stderr, "shoal agent: %s: expected a string or an integer%s, got %s\n", where,
                    (f->kind & SHOAL_AF_REPEAT) ? " (or an array of them)" : "", json_kind(v));
            rc = 2;
            break;
        }
        slot_add(s, t);
        free(t);
    }
    free(seen);
    json_decref(root);
    return rc;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* A directory: its *.json files in name order. Entries that are not
 * regular files (FIFOs, sockets, directories) are skipped with a log line. */
static int load_dir(struct shoal_agentconf *c, const char *dir)
{
    DIR *d = opendir(dir);
    if (!d) {
        fprintf(stderr, "shoal agent: config directory %s: %s\n", dir, strerror(errno));
        return 2;
    }
    char **names = NULL;
    size_t n = 0;
    struct dirent *e;
    int rc = 0;
    while ((e = readdir(d)) != NULL) {
        size_t l = strlen(e->d_name);
        if (e->d_name[0] == '.' || l < 6 || strcmp(e->d_name + l - 5, ".json") != 0)
            continue;
        if (n == CONF_DIR_MAX_FILES) {
            fprintf(stderr, "shoal agent: config directory %s: more than %u .json files\n", dir,
                    CONF_DIR_MAX_FILES);
            rc = 2;
            break;
        }
        char **nn = realloc(names, (n + 1) * sizeof(*nn));
        if (!nn)
            oom();
        names = nn;
        if (asprintf(&names[n], "%s/%s", dir, e->d_name) < 0)
            oom();
        n++;
    }
    closedir(d);
    qsort(names, n, sizeof(*names), cmp_str);
    for (size_t i = 0; rc == 0 && i < n; i++) {
        struct stat st;
        if (stat(names[i], &st) != 0 || !S_ISREG(st.st_mode)) {
            shoal_log_warn("config", "%s: skipped: not a regular file", names[i]);
            continue;
        }
        rc = load_file(c, names[i]);
    }
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
    return rc;
}

static int load_files(struct shoal_agentconf *c, const char *config_file_flag)
{
    size_t idx;
    if (!find_flag(c, config_file_flag, strlen(config_file_flag), &idx))
        return 0;
    const struct shoal_agentconf_slot *s = &c->layer[SHOAL_SRC_FLAG][idx];
    if (!s->n)
        s = &c->layer[SHOAL_SRC_ENV][idx];
    for (size_t i = 0; i < s->n; i++) {
        const char *p = s->vals[i];
        struct stat st;
        int rc;
        if (!*p) {
            fprintf(stderr, "shoal agent: %s: the config file name is empty\n", s->where);
            return 2;
        }
        if (stat(p, &st) != 0) {
            fprintf(stderr, "shoal agent: config file %s: %s\n", p, strerror(errno));
            return 2;
        }
        rc = S_ISDIR(st.st_mode) ? load_dir(c, p) : load_file(c, p);
        if (rc)
            return rc;
    }
    return 0;
}

int shoal_agentconf_load(struct shoal_agentconf *c, const struct shoal_agent_flag *flags,
                         size_t nflags, int argc, char **argv, const char *config_file_flag)
{
    memset(c, 0, sizeof(*c));
    c->flags = flags;
    c->nflags = nflags;
    for (int l = SHOAL_SRC_FILE; l <= SHOAL_SRC_FLAG; l++)
        if (!(c->layer[l] = calloc(nflags, sizeof(struct shoal_agentconf_slot))))
            oom();
    int rc = load_argv(c, argc, argv);
    if (rc || c->help)
        return rc;
    for (size_t i = 0; i < nflags; i++)
        if (c->layer[SHOAL_SRC_FLAG][i].n && strcmp(flags[i].name, "print-config") == 0)
            c->print_config = true;
    if ((rc = load_env(c)) != 0)
        return rc;
    return load_files(c, config_file_flag);
}

void shoal_agentconf_free(struct shoal_agentconf *c)
{
    for (int l = SHOAL_SRC_FILE; l <= SHOAL_SRC_FLAG; l++) {
        for (size_t i = 0; c->layer[l] && i < c->nflags; i++)
            slot_clear(&c->layer[l][i]);
        free(c->layer[l]);
        c->layer[l] = NULL;
    }
}

/* The winning source of flag i, or SHOAL_SRC_NONE. */
static int winner(const struct shoal_agentconf *c, size_t i)
{
    for (int l = SHOAL_SRC_FLAG; l >= SHOAL_SRC_FILE; l--)
        if (c->layer[l][i].where)
            return l;
    return SHOAL_SRC_NONE;
}

int shoal_agentconf_apply(struct shoal_agentconf *c,
                          int (*apply)(void *ud, const struct shoal_agent_flag *f, const char *v),
                          void *ud)
{
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < c->nflags; i++) {
        const struct shoal_agent_flag *f = &c->flags[i];
        int l = winner(c, i);
        c->current = f;
        if (l == SHOAL_SRC_NONE) {
            c->current_where = NULL;
            if (f->def)
                rc = apply(ud, f, f->def);
            continue;
        }
        const struct shoal_agentconf_slot *s = &c->layer[l][i];
        c->current_where = s->where;
        for (size_t k = 0; rc == 0 && k < s->n; k++)
            rc = apply(ud, f, s->vals[k]);
    }
    c->current = NULL;
    c->current_where = NULL;
    return rc;
}

const char *shoal_agentconf_origin(const struct shoal_agentconf *c, const char *flag, char *buf,
                                   size_t len)
{
    size_t idx;
    if (!c || !c->flags || !find_flag(c, flag, strlen(flag), &idx)) {
        snprintf(buf, len, "--%s", flag);
        return buf;
    }
    int l = winner(c, idx);
    if (l == SHOAL_SRC_NONE)
        snprintf(buf, len, "the default --%s", flag);
    else
        snprintf(buf, len, "%s", c->layer[l][idx].where);
    return buf;
}

void shoal_agentconf_print(const struct shoal_agentconf *c)
{
    size_t w = 0;
    for (size_t i = 0; i < c->nflags; i++)
        if (!(c->flags[i].kind & SHOAL_AF_CLI_ONLY) && strlen(c->flags[i].name) > w)
            w = strlen(c->flags[i].name);
    printf("# shoal agent: effective configuration; sources, lowest first: default, "
           "config files, environment, flags\n");
    for (size_t i = 0; i < c->nflags; i++) {
        const struct shoal_agent_flag *f = &c->flags[i];
        if (f->kind & SHOAL_AF_CLI_ONLY)
            continue;
        int l = winner(c, i);
        char val[1024] = "";
        size_t used = 0;
        if (l == SHOAL_SRC_NONE) {
            snprintf(val, sizeof(val), "%s", f->def ? f->def : "-");
        } else {
            const struct shoal_agentconf_slot *s = &c->layer[l][i];
            for (size_t k = 0; k < s->n && used < sizeof(val); k++) {
                int n = snprintf(val + used, sizeof(val) - used, "%s%s", k ? "," : "",
                                 s->vals[k][0] ? s->vals[k] : "\"\"");
                if (n > 0)
                    used += (size_t)n;
            }
            if (!s->n)
                snprintf(val, sizeof(val), "(unset)");
        }
        char where[600];
        if (l == SHOAL_SRC_NONE)
            snprintf(where, sizeof(where), "default");
        else
            snprintf(where, sizeof(where), "%s %s", src_names[l], c->layer[l][i].where);
        printf("%-*s  %-24s  %s\n", (int)w, f->name, val, where);
    }
}

void shoal_agentconf_help(const struct shoal_agentconf *c, const char *notes)
{
    printf("usage: shoal agent [FLAGS]\n\nRuns one node: membership (SWIM over UDP), the "
           "registry, the HTTP API and DNS.\n\nflags:\n");
    for (size_t i = 0; i < c->nflags; i++) {
        const struct shoal_agent_flag *f = &c->flags[i];
        char left[96];
        snprintf(left, sizeof(left), "--%s%s%s", f->name, f->arg ? " " : "",
                 f->arg ? f->arg : "");
        printf("  %-28s %s", left, f->help ? f->help : "(no description)");
        if (f->def)
            printf(" (default %s)", f->def);
        if (f->kind & SHOAL_AF_REPEAT)
            printf(" [repeatable]");
        printf("\n");
    }
    if (notes)
        printf("\n%s", notes);
}
