/* svcfile.h -- service definition files (--config-dir) and their reload.
 *
 * Every *.service (and Consul *.json, io/svcjson.c) file of the directory
 * is read in name order. A *.service file is
 * line-based: '#' comments and blank lines are ignored; one or more
 * [service] sections hold "key = value" lines (id, service, address, port,
 * tag (repeated), meta.KEY, ttl). A file with any error is reported as
 * "FILE:LINE: message" and skipped as a whole; the others still load
 * (docs/registry-interfaces.md). The set remembers which instance ids came
 * from files, so a reload deregisters only those that are gone and never
 * touches registrations made through the API.
 */
#ifndef SHOAL_IO_SVCFILE_H
#define SHOAL_IO_SVCFILE_H

#include <stddef.h>

#include "core/registry.h"

struct shoal_node;

#define SHOAL_SVCFILE_MAX_BYTES (1024 * 1024) /* one file */
#define SHOAL_SVCFILE_MAX_LINE 16384          /* one line, newline included */
#define SHOAL_SVCFILE_ERR_MAX 512

/* One [service] section: spec as registered (owner, health, versions
 * unused), and where it was defined. */
struct shoal_svcdef {
    struct shoal_instance spec;
    char *file; /* the file's name inside the directory */
    int line;   /* of the [service] header */
};

struct shoal_svclist {
    struct shoal_svcdef *defs;
    size_t n, cap;
};

void shoal_svclist_clear(struct shoal_svclist *l);

/* Parses one file and appends its sections to out; name is how the file is
 * named in messages and in svcdef.file. All or nothing: on an error out is
 * unchanged and err holds "NAME:LINE: message" (LINE 0 when the error is
 * the file's as a whole). Ids must be unique across out. Returns 0,
 * SHOAL_EINVAL (bad content), SHOAL_ENOMEM or -errno (cannot read). */
int shoal_svcfile_parse(const char *path, const char *name, struct shoal_svclist *out, char *err,
                        size_t errlen);

/* Parses text (len bytes) as the file name; same contract as above. */
int shoal_svcfile_parse_text(const char *text, size_t len, const char *name,
                             struct shoal_svclist *out, char *err, size_t errlen);

/* Parses a Consul JSON service definition file (io/svcjson.c): same
 * contract as shoal_svcfile_parse_text; definitions without an Address get
 * default_address (none when NULL: an error). */
int shoal_svcfile_parse_json(const char *text, size_t len, const char *name,
                             const char *default_address, struct shoal_svclist *out, char *err,
                             size_t errlen);

/* Reads every *.service and *.json file of dir in name order into out
 * (other files are reported by name in the log and ignored). Each file that
 * fails is logged (warn, "FILE:LINE: message"), skipped, and its name is
 * appended to *failed (a malloc'd array of malloc'd names, *n_failed of
 * them; free with shoal_svcdir_free_names). Returns 0, or -errno if dir
 * itself cannot be read (out is unchanged then). */
int shoal_svcdir_load(const char *dir, struct shoal_svclist *out, char ***failed, size_t *n_failed);
/* The same, with the address JSON definitions without one get. */
int shoal_svcdir_load_at(const char *dir, const char *default_address, struct shoal_svclist *out,
                         char ***failed, size_t *n_failed);
void shoal_svcdir_free_names(char **names, size_t n);

/* Which registered ids came from which file. */
struct shoal_svcset {
    struct shoal_svcset_entry {
        char *id;
        char *file;
    } * v;
    size_t n;
};

struct shoal_svcset_result {
    size_t registered, unchanged, deregistered, kept, files_failed, errors;
};

/* (Re)loads dir into the node: registers every instance found (unchanged
 * ones are a no-op in the registry), deregisters ids that came from files
 * before and are in none now, and keeps the ids of files that failed to
 * parse this time (a typo must not deregister a service). Returns 0, or
 * -errno if dir cannot be read (nothing changes then). */
int shoal_svcset_apply(struct shoal_svcset *set, const char *dir, struct shoal_node *node,
                       struct shoal_svcset_result *res);
/* An id registered or deregistered through the API is no longer the
 * files': a later reload will not deregister it. */
void shoal_svcset_forget(struct shoal_svcset *set, const char *id);
void shoal_svcset_clear(struct shoal_svcset *set);

#endif
