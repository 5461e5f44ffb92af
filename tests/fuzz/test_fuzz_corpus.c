/* test_fuzz_corpus.c -- replays the committed fuzz corpus in a normal build.
 *
 * Every file of tests/fuzz/corpus (or $SHOAL_FUZZ_CORPUS) goes through
 * fuzz_one(), the same function the libFuzzer target calls, so a crash or a
 * broken invariant found once by fuzzing stays a failing test here. The
 * corpus must also still reach the SWIM node in both modes and the registry
 * by datagram and by stream: a stale corpus (say after an envelope change)
 * that only exercises drops fails.
 */
#include <dirent.h>
#include <stdint.h>

#include "core/registry.h"
#include "fuzz_util.h"
#include "test.h"

#define CORPUS_INPUT_MAX 65536
#define CORPUS_FILES_MAX 4096

struct corpus {
    char dir[4096];
    char *names[CORPUS_FILES_MAX];
    size_t n;
};

static int by_name(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void corpus_load(struct corpus *c)
{
    const char *env = getenv("SHOAL_FUZZ_CORPUS");
    const char *file = __FILE__;
    const char *slash = strrchr(file, '/');
    if (env)
        snprintf(c->dir, sizeof(c->dir), "%s", env);
    else if (slash)
        snprintf(c->dir, sizeof(c->dir), "%.*s/corpus", (int)(slash - file), file);
    else
        snprintf(c->dir, sizeof(c->dir), "corpus");
    DIR *d = opendir(c->dir);
    CHECKF(d != NULL, "cannot open corpus dir %s", c->dir);
    struct dirent *e;
    c->n = 0;
    while ((e = readdir(d)) && c->n < CORPUS_FILES_MAX) {
        if (e->d_name[0] == '.')
            continue;
        c->names[c->n] = strdup(e->d_name);
        CHECK(c->names[c->n] != NULL);
        c->n++;
    }
    closedir(d);
    qsort(c->names, c->n, sizeof(c->names[0]), by_name);
}

static size_t read_input(const struct corpus *c, size_t i, uint8_t *buf)
{
    char path[8192];
    snprintf(path, sizeof(path), "%s/%s", c->dir, c->names[i]);
    FILE *f = fopen(path, "rb");
    CHECKF(f != NULL, "cannot open %s", path);
    size_t n = fread(buf, 1, CORPUS_INPUT_MAX, f);
    fclose(f);
    return n;
}

TEST(corpus_replays_in_sequence, "the whole corpus runs through one node without breaking an invariant")
{
    static struct corpus c;
    static uint8_t buf[CORPUS_INPUT_MAX];
    size_t delivered[2] = {0, 0}, dropped = 0, reg_delivered[2] = {0, 0};
    corpus_load(&c);
    fprintf(stderr, "corpus: %zu files in %s\n", c.n, c.dir);
    CHECKF(c.n >= 10, "only %zu corpus files", c.n);
    for (size_t i = 0; i < c.n; i++) {
        size_t n = read_input(&c, i, buf);
        enum fuzz_outcome r = fuzz_one(buf, n);
        if (r == FUZZ_DELIVERED)
            delivered[n > 0 && (buf[0] & FUZZ_MODE_PAYLOAD)]++;
        else if (r == FUZZ_DROPPED)
            dropped++;
        if (r == FUZZ_DELIVERED && strncmp(c.names[i], "pl-reg-", 7) == 0)
            reg_delivered[(buf[0] & FUZZ_STREAM) != 0]++;
    }
    fuzz_reset();
    fprintf(stderr,
            "delivered: %zu datagrams, %zu payloads (registry: %zu by datagram, %zu by "
            "stream); dropped: %zu\n",
            delivered[0], delivered[1], reg_delivered[0], reg_delivered[1], dropped);
    CHECK(delivered[0] >= 1);
    CHECK(delivered[1] >= 1);
    CHECK(reg_delivered[0] >= 1);
    CHECK(reg_delivered[1] >= 1);
    CHECK(dropped >= 1);
}

TEST(corpus_each_file_alone, "each corpus file replays the same way alone on a fresh node")
{
    static struct corpus c;
    static uint8_t buf[CORPUS_INPUT_MAX];
    corpus_load(&c);
    for (size_t i = 0; i < c.n; i++) {
        size_t n = read_input(&c, i, buf);
        fuzz_reset();
        enum fuzz_outcome r1 = fuzz_one(buf, n);
        fuzz_reset();
        enum fuzz_outcome r2 = fuzz_one(buf, n);
        CHECKF(r1 == r2, "%s: %d then %d", c.names[i], r1, r2);
        /* Inputs named for a drop must be dropped, the rest delivered. */
        bool want_drop = strstr(c.names[i], "invalid") || strstr(c.names[i], "undecodable") ||
                         strstr(c.names[i], "certless") || strstr(c.names[i], "truncated");
        if (strncmp(c.names[i], "dg-", 3) == 0 || strncmp(c.names[i], "pl-", 3) == 0)
            CHECKF(r1 == (want_drop ? FUZZ_DROPPED : FUZZ_DELIVERED), "%s: outcome %d",
                   c.names[i], r1);
    }
    fuzz_reset();
}

static size_t find_input(const struct corpus *c, const char *name)
{
    for (size_t i = 0; i < c->n; i++)
        if (strcmp(c->names[i], name) == 0)
            return i;
    CHECKF(0, "corpus file %s missing", name);
    return 0;
}

TEST(corpus_signed_events, "signed seeds: a valid event applies, a forgery and an out-of-scope one "
                           "are refused, a proof admits its owner's set")
{
    static struct corpus c;
    static uint8_t buf[CORPUS_INPUT_MAX];
    corpus_load(&c);
    fuzz_reset();
    size_t n = read_input(&c, find_input(&c, "pl-reg-gossip-signed"), buf);
    CHECK_EQ(fuzz_one(buf, n), FUZZ_DELIVERED);
    const struct shoal_registry_stats *st = shoal_registry_stats(fuzz_registry());
    CHECK_EQ(st->events_applied - 2, 1); /* 2: the node's own instances */
    CHECK_EQ(st->refused[SHOAL_REG_REFUSE_BAD_SIGNATURE], 1);
    CHECK_EQ(st->refused[SHOAL_REG_REFUSE_OUT_OF_SCOPE], 1);
    fuzz_reset();
    n = read_input(&c, find_input(&c, "pl-reg-sync-data-proof-stream"), buf);
    CHECK_EQ(fuzz_one(buf, n), FUZZ_DELIVERED);
    st = shoal_registry_stats(fuzz_registry());
    CHECK_EQ(st->proofs_verified, 1);
    CHECK_EQ(st->events_by_proof, 3);
    CHECK_EQ(st->events_applied - 2, 3);
    fuzz_reset();
}

TEST(harness_catches_bad_input_modes, "empty input is ignored and oversized payloads are not sealed")
{
    static uint8_t big[1400];
    CHECK_EQ(fuzz_one(big, 0), FUZZ_IGNORED);
    big[0] = FUZZ_MODE_PAYLOAD;
    CHECK_EQ(fuzz_one(big, sizeof(big)), FUZZ_IGNORED); /* 1399 B payload > 1228 */
    big[0] = FUZZ_MODE_DATAGRAM;
    CHECK_EQ(fuzz_one(big, sizeof(big)), FUZZ_DROPPED); /* zeros: no magic */
    fuzz_reset();
}

TEST_MAIN()
