/* test_apijson.c -- the instances answer written by io/apijson.c is byte
 * for byte what building jansson objects and json_dumps(JSON_COMPACT)
 * gave before (the reference below is that code), for awkward strings,
 * tags, meta, checks, times and owners; and it stays correct for a large
 * answer.
 */
#include <jansson.h>
#include <time.h>

#include "core/registry.h"
#include "io/apijson.h"
#include "io/checkspec.h"
#include "test.h"

TEST_MAIN()

static json_t *ref_time(int64_t ms)
{
    char buf[40];
    time_t secs = (time_t)(ms >= 0 ? ms / 1000 : (ms - 999) / 1000);
    int frac = (int)(ms - (int64_t)secs * 1000);
    struct tm tm;
    if (!gmtime_r(&secs, &tm))
        return json_null();
    size_t n = strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(buf + n, sizeof(buf) - n, ".%03dZ", frac);
    return json_string(buf);
}

static const char *status_of(void *ud, const char *owner)
{
    (*(int *)ud)++;
    return strcmp(owner, "n1") == 0 ? "alive" : strcmp(owner, "n2") == 0 ? "suspect" : "unknown";
}

/* api.c's instance_json() and query_result() as they were (jansson). */
static char *reference(const struct shoal_instance *const *v, size_t n, uint64_t index)
{
    json_t *arr = json_array();
    int calls = 0;
    for (size_t k = 0; k < n; k++) {
        const struct shoal_instance *in = v[k];
        json_t *tags = json_array(), *meta = json_object(), *o = json_object();
        for (uint32_t i = 0; i < in->n_tags; i++)
            json_array_append_new(tags, json_string(in->tags[i]));
        for (uint32_t i = 0; i < in->n_meta; i++)
            json_object_set_new(meta, in->meta[i].key, json_string(in->meta[i].value));
        json_object_set_new(o, "id", json_string(in->id));
        json_object_set_new(o, "service", json_string(in->service));
        json_object_set_new(o, "address", json_string(in->address));
        json_object_set_new(o, "port", json_integer(in->port));
        json_object_set_new(o, "tags", tags);
        json_object_set_new(o, "meta", meta);
        json_object_set_new(o, "status", json_string(shoal_health_name(in->health)));
        json_object_set_new(o, "ttl_ms", json_integer((json_int_t)in->ttl_ms));
        json_object_set_new(o, "registered_at", ref_time(in->registered_ms));
        json_object_set_new(o, "last_heartbeat",
                            in->heartbeat_ms ? ref_time(in->heartbeat_ms) : json_null());
        json_object_set_new(o, "owner", json_string(in->owner));
        json_object_set_new(o, "owner_status", json_string(status_of(&calls, in->owner)));
        json_object_set_new(o, "generation", json_integer((json_int_t)in->generation));
        json_object_set_new(o, "version", json_integer((json_int_t)in->version));
        shoal_checkspec_show(o, in);
        json_array_append_new(arr, o);
    }
    json_t *top = json_pack("{s:I, s:o}", "index", (json_int_t)index, "instances", arr);
    char *s = json_dumps(top, JSON_COMPACT);
    json_decref(top);
    return s;
}

TEST(same_bytes, "the instances answer is byte for byte jansson's, escapes and all")
{
    static char *tags[] = {"v1", "a\"b", "x\\y", "caf\xc3\xa9"};
    static struct shoal_kv meta[] = {{"k", "line1\nline2\ttab"},
                                     {"empty", ""},
                                     {"ctl", "\x01\x1f\b\f\r end"},
                                     {"utf8", "\xe2\x82\xac \xf0\x9f\x90\x9f"},
                                     {"slash", "a/b </script>"}};
    struct shoal_check checks[2] = {
        {.kind = SHOAL_CHECK_HTTP, .target = "http://127.0.0.1:1/h?a=\"1\"", .interval_ms = 10000,
         .timeout_ms = 2000, .status = SHOAL_WARNING, .output = "HTTP 429\r\n"},
        {.kind = SHOAL_CHECK_TCP, .target = "127.0.0.1:9", .interval_ms = 5000,
         .timeout_ms = 1000, .status = SHOAL_CRITICAL, .output = NULL}};
    struct shoal_instance a[4];
    memset(a, 0, sizeof(a));
    for (int i = 0; i < 4; i++) {
        a[i].id = i == 0 ? "web-1" : i == 1 ? "web-2" : i == 2 ? "web-3" : "web-4";
        a[i].service = "web";
        a[i].address = i == 3 ? "fe80::1" : "10.0.0.1";
        a[i].port = (uint16_t)(80 + i * 20000);
        a[i].version = (uint64_t)i * 1000000007ull;
        a[i].generation = 1700000000ull + (uint64_t)i;
    }
    snprintf(a[0].owner, sizeof(a[0].owner), "n1");
    snprintf(a[1].owner, sizeof(a[1].owner), "n1");
    snprintf(a[2].owner, sizeof(a[2].owner), "n2");
    snprintf(a[3].owner, sizeof(a[3].owner), "zz-gone");
    a[0].tags = tags;
    a[0].n_tags = 4;
    a[0].meta = meta;
    a[0].n_meta = 5;
    a[0].ttl_ms = 4294967295u;
    a[0].registered_ms = 1764680000123;
    a[0].heartbeat_ms = 1764680001999;
    a[1].checks = checks;
    a[1].n_checks = 2;
    a[1].deregister_critical_after_ms = 60000;
    a[1].health = SHOAL_CRITICAL;
    a[2].registered_ms = -1; /* before 1970: still a time */
    a[2].health = SHOAL_WARNING;
    const struct shoal_instance *v[4] = {&a[0], &a[1], &a[2], &a[3]};

    for (size_t n = 0; n <= 4; n++) {
        int calls = 0;
        size_t len = 0;
        char *ref = reference(v, n, 42 + n);
        char *got = shoal_apijson_instances(v, n, 42 + n, status_of, &calls, &len);
        CHECK(ref && got);
        CHECKF(strcmp(ref, got) == 0, "n=%zu\nref: %s\ngot: %s", n, ref, got);
        CHECK_EQ(len, strlen(got));
        CHECK_EQ(calls, n < 2 ? (int)n : (int)n - 1); /* once per run of one owner */
        free(ref);
        free(got);
    }
}

TEST(large, "a 10,000-instance answer parses back with every instance in order")
{
    enum { N = 10000 };
    struct shoal_instance *a = calloc(N, sizeof(*a));
    const struct shoal_instance **v = calloc(N, sizeof(*v));
    char (*ids)[32] = calloc(N, 32);
    static char *tags[] = {"v2", "zone-b"};
    static struct shoal_kv meta[] = {{"version", "1.14.3"}, {"commit", "deadbeef"}};
    int calls = 0;
    for (int i = 0; i < N; i++) {
        snprintf(ids[i], 32, "web-frontend-%08x", i);
        a[i].id = ids[i];
        a[i].service = "web-frontend";
        a[i].address = "10.1.2.3";
        a[i].port = 8000;
        a[i].tags = tags;
        a[i].n_tags = 2;
        a[i].meta = meta;
        a[i].n_meta = 2;
        snprintf(a[i].owner, sizeof(a[i].owner), "n%d", i / 500);
        v[i] = &a[i];
    }
    size_t len;
    char *got = shoal_apijson_instances(v, N, 7, status_of, &calls, &len);
    CHECK(got != NULL);
    CHECK_EQ(calls, N / 500);
    json_error_t err;
    json_t *j = json_loadb(got, len, 0, &err);
    CHECKF(j != NULL, "%s", err.text);
    json_t *arr = json_object_get(j, "instances");
    CHECK_EQ(json_array_size(arr), N);
    CHECK_EQ(json_integer_value(json_object_get(j, "index")), 7);
    CHECK(strcmp(json_string_value(json_object_get(json_array_get(arr, N - 1), "id")),
                 ids[N - 1]) == 0);
    json_decref(j);
    free(got);
    free(a);
    free(v);
    free(ids);
}

TEST(times, "registered_at and last_heartbeat match gmtime_r/strftime across leap years, the epoch and year 9999")
{
    static const int64_t fixed[] = {0, -1, -999, -1000, -1001, 86399999, 86400000,
                                    951782400000,   /* 2000-02-29 */
                                    4107542399999,  /* 2100-02-28T23:59:59.999 */
                                    4107542400000,  /* 2100-03-01 (not a leap year) */
                                    253402300799999, /* 9999-12-31T23:59:59.999 */
                                    253402300800000, /* 10000-01-01: the fallback */
                                    -62135596800000, /* 0001-01-01 */
                                    -62167219200000, /* 0000-01-01: the fallback */
                                    -2208988800000, 1764680000123};
    struct shoal_instance in;
    const struct shoal_instance *v[1] = {&in};
    uint64_t x = 0x9E3779B97F4A7C15ull;
    memset(&in, 0, sizeof(in));
    in.id = "t";
    in.service = "t";
    in.address = "t";
    snprintf(in.owner, sizeof(in.owner), "n1");
    for (int i = 0; i < 20000; i++) {
        int calls = 0;
        if (i < (int)(sizeof(fixed) / sizeof(fixed[0]))) {
            in.registered_ms = fixed[i];
        } else {
            x ^= x << 13, x ^= x >> 7, x ^= x << 17; /* xorshift64 */
            in.registered_ms = (int64_t)(x % 320000000000000ull) - 62167219200000ll;
        }
        in.heartbeat_ms = in.registered_ms + 1;
        char *ref = reference(v, 1, 1);
        char *got = shoal_apijson_instances(v, 1, 1, status_of, &calls, NULL);
        CHECKF(strcmp(ref, got) == 0, "ms=%lld\nref: %s\ngot: %s", (long long)in.registered_ms,
               ref, got);
        free(ref);
        free(got);
    }
}
