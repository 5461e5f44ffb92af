/* svcfile.c -- the *.service file parser, the directory loader and reload.
 *
 * Every value is checked on its own line with the registry's own validator
 * (shoal_instance_validate on a placeholder instance holding just that
 * value), so a message names the line and uses the same words as the HTTP
 * API; what only a whole section can break (missing keys, totals) is
 * reported at the section's [service] line. A file is parsed completely
 * into a scratch list before anything is appended: nothing half-applied.
 */
#include "io/svcfile.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "io/log.h"
#include "io/node.h"
#include "shoal/error.h"

#define SVC_ECHO_MAX 64 /* bytes of a key quoted in a message */

/* ------------------------------------------------------------ lists */

static void svcdef_clear(struct shoal_svcdef *d)
{
    shoal_instance_clear(&d->spec);
    free(d->file);
    d->file = NULL;
}

void shoal_svclist_clear(struct shoal_svclist *l)
{
    for (size_t i = 0; i < l->n; i++)
        svcdef_clear(&l->defs[i]);
    free(l->defs);
    memset(l, 0, sizeof(*l));
}

static int svclist_reserve(struct shoal_svclist *l, size_t more)
{
    if (l->n + more <= l->cap)
        return 0;
    size_t cap = l->cap ? l->cap : 8;
    while (cap < l->n + more)
        cap *= 2;
    struct shoal_svcdef *d = realloc(l->defs, cap * sizeof(*d));
    if (!d)
        return SHOAL_ENOMEM;
    l->defs = d;
    l->cap = cap;
    return 0;
}

static const struct shoal_svcdef *svclist_find(const struct shoal_svclist *l, const char *id)
{
    /* Linear: a directory holds tens to hundreds of services, and a reload
     * is rare. */
    for (size_t i = 0; i < l->n; i++)
        if (strcmp(l->defs[i].spec.id, id) == 0)
            return &l->defs[i];
    return NULL;
}

/* ------------------------------------------------------------ parser */

struct parser {
    const char *name;
    int line;
    char *err;
    size_t errlen;
    const struct shoal_svclist *prior; /* ids already defined elsewhere */
    struct shoal_svclist *cur;         /* this file's sections */
    struct shoal_svcdef *sec;          /* the open section, or NULL */
    int seen_id, seen_service, seen_address, seen_port, seen_ttl; /* line, 0 = not yet */
};

static int perr(struct parser *p, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int perr(struct parser *p, int line, const char *fmt, ...)
{
    char msg[SHOAL_SVCFILE_ERR_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    snprintf(p->err, p->errlen, "%s:%d: %s", p->name, line, msg);
    return SHOAL_EINVAL;
}

/* Copies s keeping printable ASCII, at most SVC_ECHO_MAX bytes. */
static const char *echo(char *out, size_t len, const char *s)
{
    size_t n = 0;
    for (; *s && n + 1 < len && n < SVC_ECHO_MAX; s++)
        out[n++] = (*s >= 0x20 && *s < 0x7f) ? *s : '?';
    out[n] = 0;
    return out;
}

static char *trim(char *s)
{
    while (*s == ' ' || *s == '\t')
        s++;
    size_t n = strlen(s);
    while (n && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\r'))
        s[--n] = 0;
    return s;
}

/* Validates one field alone: a placeholder instance that is valid except
 * for what the caller put in. Returns the validator's sentence or NULL. */
static const char *check_alone(struct shoal_instance *t)
{
    const char *why = NULL;
    if (!t->id)
        t->id = "x";
    if (!t->service)
        t->service = "x";
    if (!t->address)
        t->address = "x";
    if (!t->port)
        t->port = 1;
    return shoal_instance_validate(t, &why) == 0 ? NULL : why;
}

static int dup_into(struct parser *p, char **dst, const char *v)
{
    char *d = strdup(v);
    if (!d)
        return SHOAL_ENOMEM;
    free(*dst);
    *dst = d;
    return 0;
}

static int section_open(struct parser *p)
{
    if (svclist_reserve(p->cur, 1) != 0)
        return SHOAL_ENOMEM;
    p->sec = &p->cur->defs[p->cur->n++];
    memset(p->sec, 0, sizeof(*p->sec));
    p->sec->line = p->line;
    p->sec->file = strdup(p->name);
    if (!p->sec->file)
        return SHOAL_ENOMEM;
    p->seen_id = p->seen_service = p->seen_address = p->seen_port = p->seen_ttl = 0;
    return 0;
}

/* The checks only a whole section can fail. */
static int section_close(struct parser *p)
{
    struct shoal_svcdef *s = p->sec;
    const char *why = NULL;
    char e[SVC_ECHO_MAX + 1];

    if (!s)
        return 0;
    p->sec = NULL;
    if (!p->seen_id)
        return perr(p, s->line, "this [service] section has no 'id'");
    if (!p->seen_service)
        return perr(p, s->line, "[service] '%s' has no 'service'", s->spec.id);
    if (!p->seen_address)
        return perr(p, s->line, "[service] '%s' has no 'address'", s->spec.id);
    if (!p->seen_port)
        return perr(p, s->line, "[service] '%s' has no 'port'", s->spec.id);
    for (uint32_t i = 0; i < s->spec.n_checks; i++)
        shoal_check_defaults(&s->spec.checks[i]);
    if (shoal_instance_validate(&s->spec, &why) != 0)
        return perr(p, s->line, "[service] '%s': %s", s->spec.id, why);
    const struct shoal_svcdef *other = svclist_find(p->prior, s->spec.id);
    if (!other) {
        for (size_t i = 0; i + 1 < p->cur->n && !other; i++)
            if (strcmp(p->cur->defs[i].spec.id, s->spec.id) == 0)
                other = &p->cur->defs[i];
    }
    if (other)
        return perr(p, s->line, "id '%s' is already defined at %s:%d",
                    echo(e, sizeof(e), s->spec.id), other->file, other->line);
    return 0;
}

static int single_key(struct parser *p, int *seen, const char *key)
{
    if (*seen)
        return perr(p, p->line, "duplicate '%s' (first at line %d)", key, *seen);
    *seen = p->line;
    return 0;
}

/* check.http / check.tcp start a check; check.interval / check.timeout
 * apply to the check before them; deregister-critical-after to the section. */
static int parse_check_kv(struct parser *p, const char *key, const char *val)
{
    struct shoal_instance *spec = &p->sec->spec;
    struct shoal_check *last = spec->n_checks ? &spec->checks[spec->n_checks - 1] : NULL;
    uint32_t ms;
    if (strcmp(key, "deregister-critical-after") == 0) {
        if (shoal_duration_parse(val, &spec->deregister_critical_after_ms) != 0)
            return perr(p, p->line, "deregister-critical-after must be a duration such as 1m "
                                    "(0: off)");
        return 0;
    }
    if (strcmp(key, "check.interval") == 0 || strcmp(key, "check.timeout") == 0) {
        bool interval = key[6] == 'i';
        if (!last)
            return perr(p, p->line, "%s must follow a check.http or check.tcp line", key);
        if (shoal_duration_parse(val, &ms) != 0 || ms == 0)
            return perr(p, p->line, "%s must be a positive duration such as 10s", key);
        uint32_t *dst = interval ? &last->interval_ms : &last->timeout_ms;
        if (*dst)
            return perr(p, p->line, "duplicate '%s' for this check", key);
        *dst = ms;
        return 0;
    }
    struct shoal_check c = {.kind = key[6] == 'h' ? SHOAL_CHECK_HTTP : SHOAL_CHECK_TCP,
                            .target = (char *)val,
                            .interval_ms = SHOAL_CHECK_INTERVAL_DEFAULT,
                            .timeout_ms = 1};
    struct shoal_instance t = {.id = "x", .service = "x", .address = "x", .port = 1,
                               .n_checks = 1, .checks = &c};
    const char *why = NULL;
    if (shoal_instance_validate(&t, &why) != 0)
        return perr(p, p->line, "%s", why);
    if (spec->n_checks == SHOAL_CHECKS_MAX)
        return perr(p, p->line, "at most %d checks", SHOAL_CHECKS_MAX);
    struct shoal_check *v = realloc(spec->checks, (spec->n_checks + 1) * sizeof(*v));
    if (!v)
        return SHOAL_ENOMEM;
    spec->checks = v;
    memset(&v[spec->n_checks], 0, sizeof(*v));
    v[spec->n_checks].kind = c.kind;
    if (!(v[spec->n_checks].target = strdup(val)))
        return SHOAL_ENOMEM;
    spec->n_checks++;
    return 0;
}

static int parse_kv(struct parser *p, char *key, char *val)
{
    struct shoal_instance *spec = &p->sec->spec;
    struct shoal_instance t = {0};
    const char *why;
    char e[SVC_ECHO_MAX + 1];
    int rc;

    if (strcmp(key, "id") == 0 || strcmp(key, "service") == 0 || strcmp(key, "address") == 0) {
        int *seen = key[0] == 'i'   ? &p->seen_id
                    : key[0] == 's' ? &p->seen_service
                                    : &p->seen_address;
        char **dst = key[0] == 'i' ? &spec->id : key[0] == 's' ? &spec->service : &spec->address;
        if ((rc = single_key(p, seen, key)) != 0)
            return rc;
        if (key[0] == 'i')
            t.id = val;
        else if (key[0] == 's')
            t.service = val;
        else
            t.address = val;
        if ((why = check_alone(&t)) != NULL)
            return perr(p, p->line, "%s", why);
        return dup_into(p, dst, val);
    }
    if (strcmp(key, "port") == 0) {
        if ((rc = single_key(p, &p->seen_port, key)) != 0)
            return rc;
        size_t digits = strspn(val, "0123456789");
        unsigned long v = digits && digits <= 5 && !val[digits] ? strtoul(val, NULL, 10) : 0;
        if (v == 0 || v > 65535)
            return perr(p, p->line, "port must be 1..65535");
        spec->port = (uint16_t)v;
        return 0;
    }
    if (strcmp(key, "ttl") == 0) {
        if ((rc = single_key(p, &p->seen_ttl, key)) != 0)
            return rc;
        if (shoal_duration_parse(val, &spec->ttl_ms) != 0)
            return perr(p, p->line,
                        "ttl must be a duration such as 10s, 1m or bare milliseconds (0: none)");
        return 0;
    }
    if (strcmp(key, "tag") == 0) {
        char *one[1] = {val};
        t.tags = one;
        t.n_tags = 1;
        if ((why = check_alone(&t)) != NULL)
            return perr(p, p->line, "%s", why);
        if (spec->n_tags == SHOAL_TAGS_MAX)
            return perr(p, p->line, "at most %d tags", SHOAL_TAGS_MAX);
        char **tags = realloc(spec->tags, (spec->n_tags + 1) * sizeof(*tags));
        if (!tags)
            return SHOAL_ENOMEM;
        spec->tags = tags;
        if (!(tags[spec->n_tags] = strdup(val)))
            return SHOAL_ENOMEM;
        spec->n_tags++;
        return 0;
    }
    if (strncmp(key, "meta.", 5) == 0) {
        struct shoal_kv one = {key + 5, val};
        t.meta = &one;
        t.n_meta = 1;
        if ((why = check_alone(&t)) != NULL)
            return perr(p, p->line, "%s", why);
        for (uint32_t i = 0; i < spec->n_meta; i++)
            if (strcmp(spec->meta[i].key, key + 5) == 0)
                return perr(p, p->line, "duplicate meta key '%s'", echo(e, sizeof(e), key + 5));
        if (spec->n_meta == SHOAL_METAS_MAX)
            return perr(p, p->line, "at most %d meta pairs", SHOAL_METAS_MAX);
        struct shoal_kv *meta = realloc(spec->meta, (spec->n_meta + 1) * sizeof(*meta));
        if (!meta)
            return SHOAL_ENOMEM;
        spec->meta = meta;
        meta[spec->n_meta].key = strdup(key + 5);
        meta[spec->n_meta].value = strdup(val);
        if (!meta[spec->n_meta].key || !meta[spec->n_meta].value) {
            free(meta[spec->n_meta].key);
            free(meta[spec->n_meta].value);
            return SHOAL_ENOMEM;
        }
        spec->n_meta++;
        return 0;
    }
    if (strcmp(key, "check.http") == 0 || strcmp(key, "check.tcp") == 0 ||
        strcmp(key, "check.interval") == 0 || strcmp(key, "check.timeout") == 0 ||
        strcmp(key, "deregister-critical-after") == 0)
        return parse_check_kv(p, key, val);
    return perr(p, p->line,
                "unknown key '%s' (expected id, service, address, port, tag, meta.KEY, ttl, "
                "check.http, check.tcp, check.interval, check.timeout or "
                "deregister-critical-after)",
                echo(e, sizeof(e), key));
}

static int parse_line(struct parser *p, char *raw)
{
    char e[SVC_ECHO_MAX + 1];
    char *s = trim(raw);

    if (*s == 0 || *s == '#')
        return 0;
    if (*s == '[') {
        if (strcmp(s, "[service]") != 0)
            return perr(p, p->line, "unknown section '%s' (only [service] is known)",
                        echo(e, sizeof(e), s));
        int rc = section_close(p);
        return rc ? rc : section_open(p);
    }
    char *eq = strchr(s, '=');
    if (!eq)
        return perr(p, p->line, "expected 'key = value' or '[service]'");
    *eq = 0;
    char *key = trim(s), *val = trim(eq + 1);
    if (!*key)
        return perr(p, p->line, "missing key before '='");
    if (!p->sec)
        return perr(p, p->line, "'%s' outside a [service] section", echo(e, sizeof(e), key));
    return parse_kv(p, key, val);
}

int shoal_svcfile_parse_text(const char *text, size_t len, const char *name,
                             struct shoal_svclist *out, char *err, size_t errlen)
{
    struct shoal_svclist cur = {0};
    struct parser p = {.name = name, .err = err, .errlen = errlen, .prior = out, .cur = &cur};
    char *line = malloc(SHOAL_SVCFILE_MAX_LINE + 1);
    size_t pos = 0;
    int rc = 0;

    if (errlen)
        err[0] = 0;
    if (!line)
        return SHOAL_ENOMEM;
    if (len > SHOAL_SVCFILE_MAX_BYTES)
        rc = perr(&p, 0, "file is larger than %d bytes", SHOAL_SVCFILE_MAX_BYTES);
    while (rc == 0 && pos < len) {
        const char *nl = memchr(text + pos, '\n', len - pos);
        size_t n = nl ? (size_t)(nl - (text + pos)) : len - pos;
        p.line++;
        if (n >= SHOAL_SVCFILE_MAX_LINE) {
            rc = perr(&p, p.line, "line longer than %d bytes", SHOAL_SVCFILE_MAX_LINE - 1);
            break;
        }
        if (memchr(text + pos, 0, n)) {
            rc = perr(&p, p.line, "NUL byte in the line (not a text file?)");
            break;
        }
        memcpy(line, text + pos, n);
        line[n] = 0;
        pos += n + (nl ? 1 : 0);
        rc = parse_line(&p, line);
    }
    free(line);
    if (rc == 0)
        rc = section_close(&p);
    if (rc == 0)
        rc = svclist_reserve(out, cur.n);
    if (rc == SHOAL_ENOMEM && errlen && !err[0])
        snprintf(err, errlen, "%s:%d: out of memory", name, p.line);
    if (rc != 0) {
        shoal_svclist_clear(&cur);
        return rc;
    }
    if (cur.n) {
        memcpy(out->defs + out->n, cur.defs, cur.n * sizeof(*cur.defs));
        out->n += cur.n;
    }
    free(cur.defs);
    return 0;
}

static int svcfile_read(const char *path, const char *name, const char *default_address,
                        struct shoal_svclist *out, char *err, size_t errlen);

int shoal_svcfile_parse(const char *path, const char *name, struct shoal_svclist *out, char *err,
                        size_t errlen)
{
    return svcfile_read(path, name, NULL, out, err, errlen);
}

static bool has_suffix(const char *name, const char *suffix)
{
    size_t n = strlen(name), s = strlen(suffix);
    return n > s && strcmp(name + n - s, suffix) == 0;
}

static int svcfile_read(const char *path, const char *name, const char *default_address,
                        struct shoal_svclist *out, char *err, size_t errlen)
{
    struct stat st;
    char *buf = NULL;
    size_t len = 0;
    /* O_NONBLOCK: opening a FIFO must not wait for a writer (fstat then
     * refuses it); it changes nothing for a regular file. */
    int rc = 0, fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);

    if (fd < 0 || fstat(fd, &st) != 0) {
        rc = -errno;
        goto fail;
    }
    if (!S_ISREG(st.st_mode)) {
        rc = -EINVAL;
        goto fail;
    }
    if (st.st_size > SHOAL_SVCFILE_MAX_BYTES) {
        close(fd);
        snprintf(err, errlen, "%s:0: file is larger than %d bytes", name, SHOAL_SVCFILE_MAX_BYTES);
        return SHOAL_EINVAL;
    }
    /* One byte more than the limit, so growth after fstat is noticed. */
    if (!(buf = malloc(SHOAL_SVCFILE_MAX_BYTES + 1))) {
        close(fd);
        return SHOAL_ENOMEM;
    }
    for (;;) {
        ssize_t r = read(fd, buf + len, SHOAL_SVCFILE_MAX_BYTES + 1 - len);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            rc = -errno;
            goto fail;
        }
        if (r == 0 || (len += (size_t)r) == SHOAL_SVCFILE_MAX_BYTES + 1)
            break;
    }
    close(fd);
    fd = -1;
    rc = has_suffix(name, ".json")
             ? shoal_svcfile_parse_json(buf, len, name, default_address, out, err, errlen)
             : shoal_svcfile_parse_text(buf, len, name, out, err, errlen);
    free(buf);
    return rc;

fail:
    snprintf(err, errlen, "%s:0: cannot read: %s", name,
             rc == -EINVAL ? "not a regular file" : strerror(-rc));
    if (fd >= 0)
        close(fd);
    free(buf);
    return rc;
}

/* ------------------------------------------------------------ directory */

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static bool is_service_file(const char *name)
{
    return name[0] != '.' && (has_suffix(name, ".service") || has_suffix(name, ".json"));
}

void shoal_svcdir_free_names(char **names, size_t n)
{
    for (size_t i = 0; names && i < n; i++)
        free(names[i]);
    free(names);
}

static int names_push(char ***v, size_t *n, const char *s)
{
    char **nv = realloc(*v, (*n + 1) * sizeof(**v));
    if (!nv)
        return SHOAL_ENOMEM;
    *v = nv;
    if (!(nv[*n] = strdup(s)))
        return SHOAL_ENOMEM;
    (*n)++;
    return 0;
}

int shoal_svcdir_load(const char *dir, struct shoal_svclist *out, char ***failed, size_t *n_failed)
{
    return shoal_svcdir_load_at(dir, NULL, out, failed, n_failed);
}

int shoal_svcdir_load_at(const char *dir, const char *default_address, struct shoal_svclist *out,
                         char ***failed, size_t *n_failed)
{
    char **names = NULL, err[SHOAL_SVCFILE_ERR_MAX + 64];
    size_t n = 0;
    struct dirent *de;
    DIR *d = opendir(dir);

    *failed = NULL;
    *n_failed = 0;
    if (!d)
        return -errno;
    errno = 0;
    while ((de = readdir(d)) != NULL) {
        if (!is_service_file(de->d_name)) {
            if (de->d_name[0] != '.')
                shoal_log_warn("config", "%s: not a *.service or *.json file (ignored)",
                               de->d_name);
            continue;
        }
        if (names_push(&names, &n, de->d_name) != 0) {
            closedir(d);
            shoal_svcdir_free_names(names, n);
            return -ENOMEM;
        }
    }
    int e = errno;
    closedir(d);
    if (e) {
        shoal_svcdir_free_names(names, n);
        return -e;
    }
    if (n)
        qsort(names, n, sizeof(*names), cmp_str);
    for (size_t i = 0; i < n; i++) {
        char path[4096];
        int rc;
        struct stat st;
        if (snprintf(path, sizeof(path), "%s/%s", dir, names[i]) >= (int)sizeof(path)) {
            snprintf(err, sizeof(err), "%s:0: path too long", names[i]);
            rc = -ENAMETOOLONG;
        } else if (stat(path, &st) == 0 && !S_ISREG(st.st_mode)) {
            /* A FIFO, socket, device or directory is no service file: not a
             * failed file either (nothing of it is kept). */
            shoal_log_warn("config", "%s: skipped: not a regular file", names[i]);
            continue;
        } else {
            rc = svcfile_read(path, names[i], default_address, out, err, sizeof(err));
        }
        if (rc == 0)
            continue;
        shoal_log_warn("config", "%s (file skipped)", err);
        if (names_push(failed, n_failed, names[i]) != 0) {
            shoal_svcdir_free_names(names, n);
            return -ENOMEM;
        }
    }
    shoal_svcdir_free_names(names, n);
    return 0;
}

/* ------------------------------------------------------------ reload */

void shoal_svcset_clear(struct shoal_svcset *set)
{
    for (size_t i = 0; i < set->n; i++) {
        free(set->v[i].id);
        free(set->v[i].file);
    }
    free(set->v);
    set->v = NULL;
    set->n = 0;
}

void shoal_svcset_forget(struct shoal_svcset *set, const char *id)
{
    for (size_t i = 0; set && i < set->n; i++) {
        if (strcmp(set->v[i].id, id) != 0)
            continue;
        free(set->v[i].id);
        free(set->v[i].file);
        set->v[i] = set->v[--set->n];
        return;
    }
}

static bool name_in(char **names, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(names[i], name) == 0)
            return true;
    return false;
}

static int set_push(struct shoal_svcset *s, size_t *cap, const char *id, const char *file)
{
    if (s->n == *cap) {
        size_t nc = *cap ? *cap * 2 : 16;
        struct shoal_svcset_entry *v = realloc(s->v, nc * sizeof(*v));
        if (!v)
            return SHOAL_ENOMEM;
        s->v = v;
        *cap = nc;
    }
    char *i = strdup(id), *f = strdup(file);
    if (!i || !f) {
        free(i);
        free(f);
        return SHOAL_ENOMEM;
    }
    s->v[s->n++] = (struct shoal_svcset_entry){i, f};
    return 0;
}

static bool set_has(const struct shoal_svcset *s, const char *id)
{
    for (size_t i = 0; i < s->n; i++)
        if (strcmp(s->v[i].id, id) == 0)
            return true;
    return false;
}

int shoal_svcset_apply(struct shoal_svcset *set, const char *dir, struct shoal_node *node,
                       struct shoal_svcset_result *res)
{
    struct shoal_svclist list = {0};
    struct shoal_svcset next = {0};
    size_t next_cap = 0, n_failed = 0;
    char **failed = NULL;
    int rc;

    memset(res, 0, sizeof(*res));
    char ip[SHOAL_ADDR_STRLEN];
    shoal_addr_format(shoal_node_addr(node), ip, sizeof(ip));
    char *colon = strrchr(ip, ':');
    if (colon)
        *colon = 0; /* JSON definitions without an Address mean the node's */
    const char *bare = ip[0] == '[' ? ip + 1 : ip;
    if (ip[0] == '[' && strchr(ip, ']'))
        *strchr(ip, ']') = 0;
    if ((rc = shoal_svcdir_load_at(dir, bare, &list, &failed, &n_failed)) != 0)
        return rc;
    res->files_failed = n_failed;

    /* The next set first, so that running out of memory changes nothing. */
    for (size_t i = 0; rc == 0 && i < list.n; i++)
        rc = set_push(&next, &next_cap, list.defs[i].spec.id, list.defs[i].file);
    for (size_t i = 0; rc == 0 && i < set->n; i++) {
        if (!name_in(failed, n_failed, set->v[i].file) || set_has(&next, set->v[i].id))
            continue;
        rc = set_push(&next, &next_cap, set->v[i].id, set->v[i].file);
        if (rc == 0) {
            res->kept++;
            shoal_log_warn("config", "keeping %s from %s until the file loads again", set->v[i].id,
                           set->v[i].file);
        }
    }
    if (rc != 0) {
        shoal_svcset_clear(&next);
        shoal_svclist_clear(&list);
        shoal_svcdir_free_names(failed, n_failed);
        return -ENOMEM;
    }

    for (size_t i = 0; i < list.n; i++) {
        const struct shoal_svcdef *d = &list.defs[i];
        const char *why = "";
        uint64_t before = shoal_registry_own_version(shoal_node_registry(node));
        int r = shoal_node_register(node, &d->spec, &why);
        if (r != 0) {
            res->errors++;
            shoal_log_warn("config", "%s:%d: cannot register %s: %s", d->file, d->line, d->spec.id,
                           r == SHOAL_EINVAL || r == SHOAL_EPERM || r == SHOAL_ETOOBIG
                               ? why
                               : shoal_strerror(r));
        } else if (shoal_registry_own_version(shoal_node_registry(node)) != before) {
            res->registered++;
            shoal_log_info("config", "registered %s (%s) from %s", d->spec.id, d->spec.service,
                           d->file);
        } else {
            res->unchanged++;
        }
    }
    for (size_t i = 0; i < set->n; i++) {
        if (set_has(&next, set->v[i].id))
            continue;
        int r = shoal_node_deregister(node, set->v[i].id);
        if (r == 0) {
            res->deregistered++;
            shoal_log_info("config", "deregistered %s (gone from %s)", set->v[i].id,
                           set->v[i].file);
        } else if (r != SHOAL_ENOENT) {
            res->errors++;
            shoal_log_warn("config", "cannot deregister %s: %s", set->v[i].id, shoal_strerror(r));
        }
    }
    shoal_svcset_clear(set);
    *set = next;
    shoal_svclist_clear(&list);
    shoal_svcdir_free_names(failed, n_failed);
    return 0;
}
