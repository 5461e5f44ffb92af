/* datadir.c -- data directory: mkdir -p, flock, durable files, generation.
 *
 * Files (the generation counter, the registry) are replaced, never
 * rewritten in place: write DIR/NAME.tmp, fsync it, rename it over
 * DIR/NAME, fsync DIR.
 * A crash at any point leaves either the old or the new number, never a
 * torn one; a file that is not a number anyway is reported, not "fixed",
 * because resetting the counter would let the node's old self shadow it.
 */
#include "io/datadir.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#define GEN_FILE_MAX 32 /* 20 digits of uint64 plus a newline, with room */

const char *shoal_datadir_strerror(int err)
{
    if (err > SHOAL_ERR_FIRST_ && err < SHOAL_ERR_LAST_)
        return shoal_strerror(err);
    return err < 0 ? strerror(-err) : shoal_strerror(err);
}

static int join_path(char *out, size_t len, const char *dir, const char *file)
{
    int n = snprintf(out, len, "%s/%s", dir, file);
    return n < 0 || (size_t)n >= len ? -ENAMETOOLONG : 0;
}

int shoal_datadir_prepare(const char *dir)
{
    char path[PATH_MAX];
    struct stat st;
    size_t len = strlen(dir);

    if (len == 0)
        return -ENOENT;
    if (len >= sizeof(path))
        return -ENAMETOOLONG;
    memcpy(path, dir, len + 1);
    /* mkdir -p: create each missing prefix, then the directory itself. */
    for (size_t i = 1; i <= len; i++) {
        if (path[i] != '/' && path[i] != 0)
            continue;
        char saved = path[i];
        path[i] = 0;
        if (mkdir(path, 0700) != 0 && errno != EEXIST)
            return -errno;
        path[i] = saved;
    }
    if (stat(dir, &st) != 0)
        return -errno;
    if (!S_ISDIR(st.st_mode))
        return -ENOTDIR;
    return 0;
}

int shoal_datadir_lock(const char *dir)
{
    char path[PATH_MAX];
    int rc = join_path(path, sizeof(path), dir, "lock");
    if (rc)
        return rc;
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0)
        return -errno;
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        int e = errno;
        close(fd);
        return -e;
    }
    return fd;
}

/* Reads the current counter: 0 if the file does not exist. */
static int read_generation(const char *path, uint64_t *out)
{
    char buf[GEN_FILE_MAX + 1];
    size_t n = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);

    *out = 0;
    if (fd < 0)
        return errno == ENOENT ? 0 : -errno;
    for (;;) {
        ssize_t r = read(fd, buf + n, sizeof(buf) - 1 - n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            int e = errno;
            close(fd);
            return -e;
        }
        if (r == 0 || (n += (size_t)r) == sizeof(buf) - 1)
            break;
    }
    close(fd);
    buf[n] = 0;
    if (n == sizeof(buf) - 1)
        return SHOAL_EINVAL; /* far too long for one number */
    /* Exactly: digits, then an optional single newline. */
    size_t digits = strspn(buf, "0123456789");
    if (digits == 0 || digits > 20 || (buf[digits] && strcmp(buf + digits, "\n") != 0))
        return SHOAL_EINVAL;
    errno = 0;
    unsigned long long v = strtoull(buf, NULL, 10);
    if (errno == ERANGE)
        return SHOAL_EINVAL;
    *out = (uint64_t)v;
    return 0;
}

static int write_all(int fd, const void *data, size_t len)
{
    const char *p = data;
    while (len) {
        ssize_t w = write(fd, p, len);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            return -errno;
        p += w;
        len -= (size_t)w;
    }
    return 0;
}

int shoal_datadir_write_file(const char *dir, const char *name, const void *data, size_t len)
{
    char path[PATH_MAX], tmp[PATH_MAX], tmpname[NAME_MAX + 1];
    int rc, fd;

    if (snprintf(tmpname, sizeof(tmpname), "%s.tmp", name) >= (int)sizeof(tmpname))
        return -ENAMETOOLONG;
    if ((rc = join_path(path, sizeof(path), dir, name)) != 0 ||
        (rc = join_path(tmp, sizeof(tmp), dir, tmpname)) != 0)
        return rc;
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        return -errno;
    rc = write_all(fd, data, len);
    if (rc == 0 && fsync(fd) != 0)
        rc = -errno;
    if (close(fd) != 0 && rc == 0)
        rc = -errno;
    if (rc == 0 && rename(tmp, path) != 0)
        rc = -errno;
    if (rc != 0) {
        unlink(tmp);
        return rc;
    }
    /* The rename itself is durable only once the directory is synced. */
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0)
        return -errno;
    if (fsync(dfd) != 0)
        rc = -errno;
    close(dfd);
    return rc;
}

int shoal_datadir_read_file(const char *dir, const char *name, size_t max, uint8_t **data,
                            size_t *len)
{
    char path[PATH_MAX];
    struct stat st;
    uint8_t *buf = NULL;
    size_t n = 0, cap;
    int rc, fd;

    *data = NULL;
    *len = 0;
    if ((rc = join_path(path, sizeof(path), dir, name)) != 0)
        return rc;
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    if (fstat(fd, &st) != 0) {
        rc = -errno;
        goto out;
    }
    if (!S_ISREG(st.st_mode)) {
        rc = -EINVAL;
        goto out;
    }
    if ((uint64_t)st.st_size > max) {
        rc = SHOAL_ETOOBIG;
        goto out;
    }
    /* One byte more than the size, so that growth meanwhile is noticed. */
    cap = (size_t)st.st_size + 1;
    if (!(buf = malloc(cap))) {
        rc = SHOAL_ENOMEM;
        goto out;
    }
    for (;;) {
        if (n == cap) {
            if (cap > max) {
                rc = SHOAL_ETOOBIG;
                goto out;
            }
            size_t nc = cap * 2 > max + 1 ? max + 1 : cap * 2;
            uint8_t *nb = realloc(buf, nc);
            if (!nb) {
                rc = SHOAL_ENOMEM;
                goto out;
            }
            buf = nb;
            cap = nc;
        }
        ssize_t r = read(fd, buf + n, cap - n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            rc = -errno;
            goto out;
        }
        if (r == 0)
            break;
        n += (size_t)r;
    }
    if (n > max) {
        rc = SHOAL_ETOOBIG;
        goto out;
    }
    *data = buf;
    *len = n;
    buf = NULL;
out:
    free(buf);
    close(fd);
    return rc;
}

int shoal_datadir_next_generation(const char *dir, uint64_t floor, uint64_t *gen)
{
    char path[PATH_MAX], text[GEN_FILE_MAX];
    uint64_t cur;
    int rc;

    if ((rc = join_path(path, sizeof(path), dir, "generation")) != 0)
        return rc;
    if ((rc = read_generation(path, &cur)) != 0)
        return rc;
    if (cur == UINT64_MAX)
        return SHOAL_ERANGE;
    uint64_t next = cur + 1 > floor ? cur + 1 : floor;
    int len = snprintf(text, sizeof(text), "%" PRIu64 "\n", next);
    if ((rc = shoal_datadir_write_file(dir, "generation", text, (size_t)len)) != 0)
        return rc;
    *gen = next;
    return 0;
}
