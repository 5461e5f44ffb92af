/* keys.c -- the node identity and cluster key files.
 *
 * Both are one text line holding a 32-byte Ed25519 seed in base64 (libsodium
 * ORIGINAL variant): "shoal-identity-v1 <seed>\n" in DATA_DIR/identity.key,
 * "shoal-cluster-key-v1 <seed>\n" wherever the operator keeps the cluster
 * key. Files are written mode 0600 to a temp file, fsynced, then linked into
 * place (atomic, never replacing an existing key) and the directory fsynced.
 */
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "wire/wire.h"

#define SEED_BYTES crypto_sign_SEEDBYTES
#define SEED_B64_LEN 44 /* 4 * ceil(32 / 3) */
#define KEY_FILE_MAX 256 /* any longer file is not one of ours */
#define IDENTITY_FILE "identity.key"
#define IDENTITY_TAG "shoal-identity-v1"
#define CLUSTER_TAG "shoal-cluster-key-v1"

static_assert(SEED_B64_LEN + 1 ==
                  sodium_base64_ENCODED_LEN(SEED_BYTES, sodium_base64_VARIANT_ORIGINAL),
              "base64 seed length");

static int sodium_ready(void)
{
    return sodium_init() < 0 ? SHOAL_EIO : 0;
}

/* ---- reading ----------------------------------------------------------- */

/* Reads a key file: exactly "<tag> <44 base64 chars>" plus an optional
 * final "\n". Returns 0, SHOAL_ENOENT, SHOAL_EIO or SHOAL_EINVAL. */
static int read_seed(const char *path, const char *tag, uint8_t seed[SEED_BYTES])
{
    char text[KEY_FILE_MAX + 1];
    size_t len = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return errno == ENOENT ? SHOAL_ENOENT : SHOAL_EIO;
    for (;;) {
        ssize_t r = read(fd, text + len, sizeof(text) - len);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            close(fd);
            return SHOAL_EIO;
        }
        if (r == 0)
            break;
        len += (size_t)r;
        if (len == sizeof(text))
            break;
    }
    close(fd);

    int rc = SHOAL_EINVAL;
    size_t tag_len = strlen(tag);
    if (len > KEY_FILE_MAX)
        goto out;
    if (len > 0 && text[len - 1] == '\n')
        len--;
    if (len != tag_len + 1 + SEED_B64_LEN || memcmp(text, tag, tag_len) != 0 ||
        text[tag_len] != ' ')
        goto out;
    const char *b64 = text + tag_len + 1;
    const char *end = NULL;
    size_t bin_len = 0;
    if (sodium_base642bin(seed, SEED_BYTES, b64, SEED_B64_LEN, NULL, &bin_len, &end,
                          sodium_base64_VARIANT_ORIGINAL) != 0 ||
        bin_len != SEED_BYTES || end != b64 + SEED_B64_LEN)
        goto out;
    rc = 0;
out:
    sodium_memzero(text, sizeof(text));
    return rc;
}

/* ---- writing ----------------------------------------------------------- */

static int write_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t r = write(fd, p, n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return SHOAL_EIO;
        p += r;
        n -= (size_t)r;
    }
    return 0;
}

/* fsyncs the directory holding path, so that a new name survives a crash. */
static int sync_parent_dir(const char *path)
{
    char dir[4096];
    const char *slash = strrchr(path, '/');
    if (!slash) {
        strcpy(dir, ".");
    } else if (slash == path) {
        strcpy(dir, "/");
    } else {
        size_t n = (size_t)(slash - path);
        if (n >= sizeof(dir))
            return SHOAL_EINVAL;
        memcpy(dir, path, n);
        dir[n] = 0;
    }
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return SHOAL_EIO;
    int rc = fsync(fd) == 0 ? 0 : SHOAL_EIO;
    close(fd);
    return rc;
}

/* Writes "<tag> <base64 seed>\n" to path, mode 0600. Never replaces an
 * existing file: SHOAL_EEXIST then. */
static int write_seed(const char *path, const char *tag, const uint8_t seed[SEED_BYTES])
{
    char tmp[4096];
    char line[KEY_FILE_MAX];
    char b64[SEED_B64_LEN + 1];
    int rc;

    if (snprintf(tmp, sizeof(tmp), "%s.tmp.XXXXXX", path) >= (int)sizeof(tmp))
        return SHOAL_EINVAL;
    sodium_bin2base64(b64, sizeof(b64), seed, SEED_BYTES, sodium_base64_VARIANT_ORIGINAL);
    int n = snprintf(line, sizeof(line), "%s %s\n", tag, b64);
    sodium_memzero(b64, sizeof(b64));

    int fd = mkstemp(tmp); /* creates with mode 0600 */
    if (fd < 0) {
        rc = errno == ENOENT ? SHOAL_ENOENT : SHOAL_EIO;
        goto wipe;
    }
    rc = fchmod(fd, 0600) == 0 ? 0 : SHOAL_EIO;
    if (rc == 0)
        rc = write_all(fd, line, (size_t)n);
    if (rc == 0 && fsync(fd) != 0)
        rc = SHOAL_EIO;
    if (close(fd) != 0 && rc == 0)
        rc = SHOAL_EIO;
    if (rc == 0) {
        /* link() is rename() that refuses to replace: atomic, and the one
         * winner of a race keeps its key. */
        if (link(tmp, path) != 0) {
            if (errno == EEXIST) {
                rc = SHOAL_EEXIST;
            } else if (errno == EPERM || errno == ENOTSUP || errno == ENOSYS) {
                /* No hard links on this file system: check, then rename. */
                struct stat st;
                if (lstat(path, &st) == 0)
                    rc = SHOAL_EEXIST;
                else if (rename(tmp, path) != 0)
                    rc = SHOAL_EIO;
            } else {
                rc = SHOAL_EIO;
            }
        }
    }
    unlink(tmp); /* after rename it is already gone */
    if (rc == 0)
        rc = sync_parent_dir(path);
wipe:
    sodium_memzero(line, sizeof(line));
    return rc;
}

/* mkdir -p with mode 0700 for every directory it creates. */
static int make_dirs(const char *dir)
{
    char p[4096];
    size_t n = strlen(dir);
    if (n == 0 || n >= sizeof(p))
        return SHOAL_EINVAL;
    memcpy(p, dir, n + 1);
    for (size_t i = 1; i <= n; i++) {
        if (p[i] != '/' && p[i] != 0)
            continue;
        char saved = p[i];
        p[i] = 0;
        if (mkdir(p, 0700) != 0 && errno != EEXIST)
            return SHOAL_EIO;
        p[i] = saved;
    }
    struct stat st;
    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode))
        return SHOAL_EIO;
    return 0;
}

/* ---- identity ---------------------------------------------------------- */

static void identity_from_seed(struct shoal_identity *id, const uint8_t seed[SEED_BYTES])
{
    memset(id, 0, sizeof(*id));
    crypto_sign_seed_keypair(id->pk, id->sk, seed);
}

void shoal_identity_generate(struct shoal_identity *id)
{
    uint8_t seed[SEED_BYTES];
    /* Without a working RNG no key can be made: nothing sensible to return. */
    if (sodium_ready() != 0)
        abort();
    randombytes_buf(seed, sizeof(seed));
    identity_from_seed(id, seed);
    sodium_memzero(seed, sizeof(seed));
}

int shoal_identity_load_or_create(const char *data_dir, struct shoal_identity *id)
{
    char path[4096];
    uint8_t seed[SEED_BYTES];
    int rc = sodium_ready();
    if (rc)
        return rc;
    if (!data_dir || !*data_dir)
        return SHOAL_EINVAL;
    if (snprintf(path, sizeof(path), "%s/%s", data_dir, IDENTITY_FILE) >= (int)sizeof(path))
        return SHOAL_EINVAL;

    rc = read_seed(path, IDENTITY_TAG, seed);
    if (rc == SHOAL_ENOENT) {
        rc = make_dirs(data_dir);
        if (rc == 0) {
            randombytes_buf(seed, sizeof(seed));
            rc = write_seed(path, IDENTITY_TAG, seed);
            /* Someone else created it first: theirs is the identity. */
            if (rc == SHOAL_EEXIST)
                rc = read_seed(path, IDENTITY_TAG, seed);
        }
    }
    if (rc == 0)
        identity_from_seed(id, seed);
    sodium_memzero(seed, sizeof(seed));
    return rc;
}

/* ---- cluster key ------------------------------------------------------- */

int shoal_cluster_key_generate(const char *path)
{
    uint8_t seed[SEED_BYTES];
    int rc = sodium_ready();
    if (rc)
        return rc;
    if (!path || !*path)
        return SHOAL_EINVAL;
    randombytes_buf(seed, sizeof(seed));
    rc = write_seed(path, CLUSTER_TAG, seed);
    sodium_memzero(seed, sizeof(seed));
    return rc;
}

int shoal_cluster_key_load(const char *path, struct shoal_cluster_key *k)
{
    uint8_t seed[SEED_BYTES];
    int rc = sodium_ready();
    if (rc)
        return rc;
    if (!path || !*path)
        return SHOAL_EINVAL;
    rc = read_seed(path, CLUSTER_TAG, seed);
    if (rc == 0)
        crypto_sign_seed_keypair(k->pk, k->sk, seed);
    sodium_memzero(seed, sizeof(seed));
    return rc;
}
