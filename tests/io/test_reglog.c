/* test_reglog.c -- DATA_DIR/registry.log (io/reglog.h): our changes are
 * appended in batches (group commit) instead of rewriting the snapshot; a
 * restart replays them; a torn tail is dropped at every possible cut; a
 * corrupt record is refused; compaction is atomic (a log that outlived
 * its snapshot changes nothing); the API acknowledges only durable changes.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <ev.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <sys/stat.h>

#include "core/registry.h"
#include "io/api.h"
#include "io/datadir.h"
#include "io/http.h"
#include "io/log.h"
#include "io/node.h"
#include "io/reglog.h"
#include "io/regstore.h"
#include "test.h"
#include "wire/wire.h"

TEST_MAIN()

static uint64_t test_seed;

static void config(struct shoal_node_config *c, const char *dir, uint64_t gen)
{
    memset(c, 0, sizeof(*c));
    shoal_swim_config_defaults(&c->swim);
    snprintf(c->swim.name, sizeof(c->swim.name), "log1");
    c->swim.generation = gen;
    c->swim.seed = test_seed;
    shoal_registry_config_defaults(&c->registry);
    CHECK(shoal_addr_parse("127.0.0.1:1", &c->bind) == 0);
    c->bind.port = 0;
    shoal_identity_generate(&c->identity);
    c->seq_start = 1;
    c->data_dir = dir;
}

static int rm_entry(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
    return remove(p);
}
static void rm_tree(const char *dir) { nftw(dir, rm_entry, 8, FTW_DEPTH | FTW_PHYS); }

static void reg(struct shoal_node *n, const char *id, uint16_t port, const char *meta_value)
{
    struct shoal_instance s;
    struct shoal_kv kv = {"blob", (char *)meta_value};
    const char *why = NULL;
    memset(&s, 0, sizeof(s));
    s.id = (char *)id;
    s.service = "web";
    s.address = "10.0.0.1";
    s.port = port;
    if (meta_value) {
        s.meta = &kv;
        s.n_meta = 1;
    }
    int rc = shoal_node_register(n, &s, &why);
    CHECKF(rc == 0, "register %s: %d %s", id, rc, why ? why : "");
}

static off_t file_size(const char *dir, const char *name)
{
    char p[512];
    struct stat sb;
    snprintf(p, sizeof(p), "%s/%s", dir, name);
    CHECK(stat(p, &sb) == 0);
    return sb.st_size;
}

static uint8_t *read_all(const char *dir, const char *name, size_t *len)
{
    uint8_t *b;
    CHECK_EQ(shoal_datadir_read_file(dir, name, SHOAL_REGLOG_MAX, &b, len), 0);
    return b;
}

static void put_file(const char *dir, const char *name, const void *data, size_t len)
{
    char p[512];
    snprintf(p, sizeof(p), "%s/%s", dir, name);
    int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    CHECK(fd >= 0);
    CHECK(write(fd, data, len) == (ssize_t)len);
    close(fd);
}

static const struct shoal_instance *store_find(const struct shoal_regstore *st, const char *id)
{
    for (uint32_t i = 0; i < st->msg.n_events; i++)
        if (strcmp(st->msg.events[i].id, id) == 0)
            return &st->msg.events[i];
    return NULL;
}

/* Loads and checks the store holds exactly `count` instances. */
static void expect_store(const char *dir, uint32_t count, uint64_t version)
{
    struct shoal_regstore st;
    char why[512];
    int rc = shoal_regstore_load(dir, &st, why, sizeof(why));
    CHECKF(rc == 0, "load: %d %s", rc, why);
    CHECKF(st.msg.n_events == count, "%u instances, want %u", st.msg.n_events, count);
    if (version)
        CHECK_EQ(st.version, version);
    shoal_regstore_clear(&st);
}

TEST(append_replay, "changes are appended to the log, one write per batch, and a restart replays them")
{
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    char dir[] = "/tmp/shoal-reglog-XXXXXX", id[32];
    struct shoal_node_config c;
    int err;

    TEST_SEED(test_seed, 141);
    shoal_log_set_level(SHOAL_LOG_WARN);
    CHECK(mkdtemp(dir) != NULL);
    config(&c, dir, 1);
    struct shoal_node *n = shoal_node_new(loop, &c, &err);
    CHECK(n != NULL);
    const struct shoal_node_counters *nc = shoal_node_counters(n);
    CHECK_EQ(nc->persist_compactions, 1); /* the start's snapshot */
    off_t snap = file_size(dir, SHOAL_REGSTORE_FILE);
    CHECK_EQ(file_size(dir, SHOAL_REGLOG_FILE), SHOAL_REGLOG_HEADER);
    CHECK(shoal_node_durable(n));

    /* One batch: 300 registrations and 100 deregistrations, then one write. */
    for (int i = 0; i < 300; i++) {
        snprintf(id, sizeof(id), "web-%d", i);
        reg(n, id, (uint16_t)(1000 + i), NULL);
    }
    for (int i = 0; i < 100; i++) {
        snprintf(id, sizeof(id), "web-%d", i * 3);
        CHECK_EQ(shoal_node_deregister(n, id), 0);
    }
    CHECK(!shoal_node_durable(n));
    CHECK_EQ(shoal_node_persist(n), 0);
    CHECK(shoal_node_durable(n));
    CHECK_EQ(nc->persist_appends, 1);
    CHECK_EQ(nc->persist_compactions, 1);
    CHECK_EQ(file_size(dir, SHOAL_REGSTORE_FILE), snap); /* the snapshot was not rewritten */
    off_t after1 = file_size(dir, SHOAL_REGLOG_FILE);
    CHECK(after1 > (off_t)SHOAL_REGLOG_HEADER);

    /* A second batch through the loop's group commit (ev_prepare). */
    reg(n, "web-0", 9, NULL); /* registered again after its deregistration */
    reg(n, "web-1", 9, NULL); /* changed */
    CHECK(!shoal_node_durable(n));
    ev_run(loop, EVRUN_NOWAIT);
    CHECK(shoal_node_durable(n));
    CHECK_EQ(nc->persist_appends, 2);
    CHECK(file_size(dir, SHOAL_REGLOG_FILE) > after1);
    uint64_t version = shoal_registry_own_version(shoal_node_registry(n));
    shoal_node_free(n);

    struct shoal_regstore st;
    char why[512];
    CHECK_EQ(shoal_regstore_load(dir, &st, why, sizeof(why)), 0);
    CHECK_EQ(st.msg.n_events, 201);
    CHECK_EQ(st.version, version);
    CHECK_EQ(st.log_records, 2);
    CHECK_EQ(st.log_torn_bytes, 0);
    CHECK(store_find(&st, "web-3") == NULL);
    CHECK(store_find(&st, "web-0") != NULL && store_find(&st, "web-0")->port == 9);
    CHECK(store_find(&st, "web-1") != NULL && store_find(&st, "web-1")->port == 9);
    CHECK(store_find(&st, "web-299") != NULL);

    /* Restart: restored, then snapshotted at once, the log emptied. */
    config(&c, dir, 2);
    c.restore = st.msg.events;
    c.n_restore = st.msg.n_events;
    c.restore_version = st.version;
    n = shoal_node_new(loop, &c, &err);
    CHECK(n != NULL);
    shoal_regstore_clear(&st);
    CHECK_EQ(file_size(dir, SHOAL_REGLOG_FILE), SHOAL_REGLOG_HEADER);
    version = shoal_registry_own_version(shoal_node_registry(n));
    shoal_node_free(n);
    expect_store(dir, 201, version);
    ev_loop_destroy(loop);
    rm_tree(dir);
}

/* A data dir with a snapshot of 5 instances and a log of 3 records:
 * a-5 added; a-0 removed; a-1 changed. Returns the log's record offsets. */
static void three_records(struct ev_loop *loop, const char *dir, size_t rec[3], size_t *len)
{
    struct shoal_node_config c;
    int err;
    char id[16];
    config(&c, dir, 1);
    struct shoal_node *n = shoal_node_new(loop, &c, &err);
    CHECK(n != NULL);
    for (int i = 0; i < 5; i++) {
        snprintf(id, sizeof(id), "a-%d", i);
        reg(n, id, 100, NULL);
    }
    shoal_node_free(n); /* never written: gone */
    n = shoal_node_new(loop, &c, &err);
    for (int i = 0; i < 5; i++) {
        snprintf(id, sizeof(id), "a-%d", i);
        reg(n, id, 100, NULL);
    }
    CHECK_EQ(shoal_node_persist(n), 0);
    shoal_node_free(n);
    struct shoal_regstore st;
    char why[256];
    CHECK_EQ(shoal_regstore_load(dir, &st, why, sizeof(why)), 0);
    config(&c, dir, 2);
    c.restore = st.msg.events;
    c.n_restore = st.msg.n_events;
    c.restore_version = st.version;
    n = shoal_node_new(loop, &c, &err); /* snapshot of a-0..a-4 */
    CHECK(n != NULL);
    shoal_regstore_clear(&st);
    rec[0] = (size_t)file_size(dir, SHOAL_REGLOG_FILE);
    reg(n, "a-5", 100, NULL);
    CHECK_EQ(shoal_node_persist(n), 0);
    rec[1] = (size_t)file_size(dir, SHOAL_REGLOG_FILE);
    CHECK_EQ(shoal_node_deregister(n, "a-0"), 0);
    CHECK_EQ(shoal_node_persist(n), 0);
    rec[2] = (size_t)file_size(dir, SHOAL_REGLOG_FILE);
    reg(n, "a-1", 200, NULL);
    CHECK_EQ(shoal_node_persist(n), 0);
    *len = (size_t)file_size(dir, SHOAL_REGLOG_FILE);
    CHECK_EQ(shoal_node_counters(n)->persist_appends, 3);
    shoal_node_free(n);
}

TEST(torn_tail, "a log cut at any byte of its last record loses only that record, and appends go on after the cut")
{
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    char dir[] = "/tmp/shoal-reglog-XXXXXX", why[512];
    size_t rec[3], len;

    TEST_SEED(test_seed, 142);
    shoal_log_set_level(SHOAL_LOG_WARN);
    CHECK(mkdtemp(dir) != NULL);
    three_records(loop, dir, rec, &len);
    uint8_t *full = read_all(dir, SHOAL_REGLOG_FILE, &len);
    expect_store(dir, 5, 0); /* a-1..a-5 */

    /* Every cut inside the last record: two records replayed, the rest torn. */
    for (size_t cut = rec[2]; cut < len; cut++) {
        struct shoal_regstore st;
        put_file(dir, SHOAL_REGLOG_FILE, full, cut);
        int rc = shoal_regstore_load(dir, &st, why, sizeof(why));
        CHECKF(rc == 0, "cut at %zu: %s", cut, why);
        CHECK_EQ(st.log_records, 2);
        CHECK_EQ(st.log_torn_bytes, cut - rec[2]);
        CHECK(store_find(&st, "a-0") == NULL);
        CHECKF(store_find(&st, "a-1")->port == 100, "cut at %zu", cut);
        shoal_regstore_clear(&st);
    }
    /* The last record's bytes all there but some of them wrong (a torn
     * sector): its checksum fails, and nothing follows it. */
    full[len - 3] ^= 0x55;
    put_file(dir, SHOAL_REGLOG_FILE, full, len);
    struct shoal_regstore st;
    CHECK_EQ(shoal_regstore_load(dir, &st, why, sizeof(why)), 0);
    CHECK_EQ(st.log_records, 2);
    CHECK_EQ(st.log_torn_bytes, len - rec[2]);
    shoal_regstore_clear(&st);
    /* Zeros where the tail should be (the file grew, the data never landed). */
    uint8_t *z = calloc(1, rec[2] + 100);
    memcpy(z, full, rec[2]);
    put_file(dir, SHOAL_REGLOG_FILE, z, rec[2] + 100);
    free(z);
    CHECK_EQ(shoal_regstore_load(dir, &st, why, sizeof(why)), 0);
    CHECK_EQ(st.log_records, 2);
    shoal_regstore_clear(&st);

    /* Opening at the valid end cuts the torn bytes; an append follows the
     * last good record and replays. */
    put_file(dir, SHOAL_REGLOG_FILE, full, rec[2] + 5);
    struct shoal_reglog_replay rp;
    CHECK_EQ(shoal_regstore_load(dir, &st, why, sizeof(why)), 0);
    shoal_regstore_clear(&st);
    struct shoal_regstore st2;
    memset(&st2, 0, sizeof(st2));
    CHECK_EQ(shoal_reglog_replay(dir, &st2, &rp, why, sizeof(why)), 0);
    shoal_regstore_clear(&st2);
    CHECK_EQ(rp.valid_end, rec[2]);
    struct shoal_reglog lg;
    CHECK_EQ(shoal_reglog_open(&lg, dir, rp.valid_end), 0);
    CHECK_EQ(file_size(dir, SHOAL_REGLOG_FILE), (off_t)rec[2]);
    struct shoal_instance ev = {.id = "a-2", .owner = "log1", .generation = 2,
                                .version = 1000, .deleted = true};
    uint8_t *buf = NULL;
    size_t cap = 0, blen = 0;
    CHECK_EQ(shoal_reglog_record("log1", 1000, &ev, 1, &buf, &cap, &blen), 0);
    CHECK_EQ(shoal_reglog_append(&lg, buf, blen), 0);
    free(buf);
    shoal_reglog_close(&lg);
    CHECK_EQ(shoal_regstore_load(dir, &st, why, sizeof(why)), 0);
    CHECK_EQ(st.log_records, 3);
    CHECK_EQ(st.log_torn_bytes, 0);
    CHECK_EQ(st.version, 1000);
    CHECK(store_find(&st, "a-2") == NULL && store_find(&st, "a-5") != NULL);
    CHECK_EQ(st.msg.n_events, 4);
    shoal_regstore_clear(&st);
    free(full);
    ev_loop_destroy(loop);
    rm_tree(dir);
}

TEST(corrupt_refused, "a damaged record with records after it, a bad header or a foreign owner is refused, never skipped")
{
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    char dir[] = "/tmp/shoal-reglog-XXXXXX", why[512];
    size_t rec[3], len;
    struct shoal_regstore st;

    TEST_SEED(test_seed, 143);
    shoal_log_set_level(SHOAL_LOG_WARN);
    CHECK(mkdtemp(dir) != NULL);
    three_records(loop, dir, rec, &len);
    uint8_t *full = read_all(dir, SHOAL_REGLOG_FILE, &len);

    full[rec[1] + 12] ^= 1; /* inside the second record's payload */
    put_file(dir, SHOAL_REGLOG_FILE, full, len);
    CHECK_EQ(shoal_regstore_load(dir, &st, why, sizeof(why)), SHOAL_EINVAL);
    CHECKF(strstr(why, "checksum") && strstr(why, "registry.log"), "%s", why);
    CHECK_EQ(st.msg.n_events, 0);
    full[rec[1] + 12] ^= 1;

    memcpy(full, "SHOALRL9", 8);
    put_file(dir, SHOAL_REGLOG_FILE, full, len);
    CHECK_EQ(shoal_regstore_load(dir, &st, why, sizeof(why)), SHOAL_EINVAL);
    CHECKF(strstr(why, "SHOALRL1"), "%s", why);
    memcpy(full, SHOAL_REGLOG_MAGIC, 8);

    /* A length that no record can have. */
    uint8_t bad[8] = {0xff, 0xff, 0xff, 0x7f, 0, 0, 0, 0};
    uint8_t *b2 = malloc(len + 8);
    memcpy(b2, full, rec[1]);
    memcpy(b2 + rec[1], bad, 8);
    memcpy(b2 + rec[1] + 8, full + rec[1], len - rec[1]);
    put_file(dir, SHOAL_REGLOG_FILE, b2, len + 8);
    free(b2);
    CHECK_EQ(shoal_regstore_load(dir, &st, why, sizeof(why)), SHOAL_EINVAL);
    CHECKF(strstr(why, "length"), "%s", why);

    /* A well-formed record of another owner (whole and checksummed, so
     * not a torn tail even at the end). */
    put_file(dir, SHOAL_REGLOG_FILE, full, len);
    struct shoal_reglog lg;
    CHECK_EQ(shoal_reglog_open(&lg, dir, len), 0);
    struct shoal_instance ev = {.id = "x", .owner = "other", .generation = 2,
                                .version = 999, .deleted = true};
    uint8_t *buf = NULL;
    size_t cap = 0, blen = 0;
    CHECK_EQ(shoal_reglog_record("other", 999, &ev, 1, &buf, &cap, &blen), 0);
    CHECK_EQ(shoal_reglog_append(&lg, buf, blen), 0);
    free(buf);
    shoal_reglog_close(&lg);
    CHECK_EQ(shoal_regstore_load(dir, &st, why, sizeof(why)), SHOAL_EINVAL);
    CHECKF(strstr(why, "'other'"), "%s", why);
    free(full);
    ev_loop_destroy(loop);
    rm_tree(dir);
}

TEST(compaction_atomic, "a log that outlived the snapshot written over it changes nothing; a grown log is compacted")
{
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    char dir[] = "/tmp/shoal-reglog-XXXXXX", why[512];
    size_t rec[3], len;
    struct shoal_node_config c;
    struct shoal_regstore st;
    int err;

    TEST_SEED(test_seed, 144);
    shoal_log_set_level(SHOAL_LOG_WARN);
    CHECK(mkdtemp(dir) != NULL);
    three_records(loop, dir, rec, &len);
    uint8_t *old_log = read_all(dir, SHOAL_REGLOG_FILE, &len);

    /* Restart: the snapshot now holds a-1..a-5 (a-1 on port 200) under
     * generation 3, and the log is emptied. Put the old log back, as if
     * the crash came between the snapshot's rename and the log's reset. */
    CHECK_EQ(shoal_regstore_load(dir, &st, why, sizeof(why)), 0);
    config(&c, dir, 3);
    c.restore = st.msg.events;
    c.n_restore = st.msg.n_events;
    c.restore_version = st.version;
    struct shoal_node *n = shoal_node_new(loop, &c, &err);
    CHECK(n != NULL);
    shoal_regstore_clear(&st);
    CHECK_EQ(shoal_node_deregister(n, "a-5"), 0); /* in the snapshot? no: the log */
    CHECK_EQ(shoal_node_persist(n), 0);
    uint64_t version = shoal_registry_own_version(shoal_node_registry(n));
    shoal_node_free(n);
    put_file(dir, SHOAL_REGLOG_FILE, old_log, len);
    CHECKF(shoal_regstore_load(dir, &st, why, sizeof(why)) == 0, "%s", why);
    /* The old records (a-5 added, a-0 removed, a-1 changed) are all at
     * or below the new snapshot's counter: skipped. a-5's later
     * deregistration is lost with the log we overwrote, as it would be. */
    CHECK_EQ(st.log_records, 3);
    CHECK_EQ(st.log_events, 0);
    CHECK(st.version < version);
    CHECK_EQ(st.msg.n_events, 5);
    for (uint32_t i = 0; i < st.msg.n_events; i++)
        CHECK_EQ(st.msg.events[i].generation, 3);
    CHECK_EQ(store_find(&st, "a-1")->port, 200);
    shoal_regstore_clear(&st);
    free(old_log);

    /* Growth: re-registering one 4 KiB instance 600 times passes the
     * 1 MiB floor; the log is compacted back and everything still loads. */
    rm_tree(dir);
    CHECK(mkdir(dir, 0700) == 0);
    config(&c, dir, 1);
    n = shoal_node_new(loop, &c, &err);
    CHECK(n != NULL);
    char *blob = malloc(4001);
    for (int i = 0; i < 600; i++) {
        memset(blob, 'a' + i % 26, 4000);
        blob[4000] = 0;
        blob[0] = (char)('A' + i % 26);
        reg(n, "big", (uint16_t)(1 + i), blob);
        CHECK_EQ(shoal_node_persist(n), 0);
        CHECK(file_size(dir, SHOAL_REGLOG_FILE) <= (off_t)SHOAL_REGLOG_COMPACT_MIN);
    }
    free(blob);
    const struct shoal_node_counters *nc = shoal_node_counters(n);
    CHECK(nc->persist_compactions >= 2);
    CHECK_EQ(nc->persist_appends, 600);
    version = shoal_registry_own_version(shoal_node_registry(n));
    shoal_node_free(n);
    CHECK_EQ(shoal_regstore_load(dir, &st, why, sizeof(why)), 0);
    CHECK_EQ(st.msg.n_events, 1);
    CHECK_EQ(st.version, version);
    CHECK_EQ(st.msg.events[0].port, 600);
    shoal_regstore_clear(&st);
    ev_loop_destroy(loop);
    rm_tree(dir);
}
