/* envelope.c -- the signed envelope around every datagram (layout in wire.h).
 *
 * seal() encodes a message, signs header-without-signature || payload with
 * the node's Ed25519 key and numbers it with the next sequence number.
 * open() checks, cheapest first and in a fixed order, size, magic/version,
 * the cluster endorsement (cert), the signature, the per-sender replay
 * window, then decodes. A sender table (keyed SipHash buckets + LRU, bounded)
 * remembers per sender key its verified cert, so a cert costs one verify
 * per sender and not per packet, and its IPsec-style replay window
 * (RFC 4303 sec. 3.4.3: highest seq plus a 64-bit bitmap below it).
 */
#include <assert.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "wire/wire.h"

/* ---- layout ------------------------------------------------------------ */

#define ENV_MAGIC0 'S'
#define ENV_MAGIC1 'H'
#define ENV_VERSION 1
#define ENV_FLAG_CERT 0x01

/* Every member is a byte array, so there is no padding: the struct is the
 * wire layout, and the asserts below pin it. */
struct env_hdr {
    uint8_t magic[2];
    uint8_t version;
    uint8_t flags;
    uint8_t pk[SHOAL_PK_BYTES];
    uint8_t cert[SHOAL_SIG_BYTES];
    uint8_t seq[8]; /* big endian */
    uint8_t sig[SHOAL_SIG_BYTES];
};

static_assert(sizeof(struct env_hdr) == SHOAL_ENVELOPE_BYTES, "envelope header is 172 bytes");
static_assert(offsetof(struct env_hdr, pk) == 4, "pk at 4");
static_assert(offsetof(struct env_hdr, cert) == 36, "cert at 36");
static_assert(offsetof(struct env_hdr, seq) == 100, "seq at 100");
static_assert(offsetof(struct env_hdr, sig) == 108, "sig at 108");
static_assert(SHOAL_PK_BYTES == crypto_sign_PUBLICKEYBYTES, "pk size");
static_assert(SHOAL_SK_BYTES == crypto_sign_SECRETKEYBYTES, "sk size");
static_assert(SHOAL_SIG_BYTES == crypto_sign_BYTES, "sig size");

/* Bytes the signature covers before the payload. */
#define SIGNED_HDR_BYTES offsetof(struct env_hdr, sig)

static const char CERT_CONTEXT[] = "shoal-cert-v1";
#define CERT_CONTEXT_LEN (sizeof(CERT_CONTEXT) - 1)

/* The largest datagram a context accepts: seal() returns an int, and no
 * transport of ours carries more than this in one piece. */
#define MAX_DATAGRAM_LIMIT (1u << 24)

/* ---- sender table ------------------------------------------------------ */

/* 4096 senders is far above the cluster sizes SWIM is run at; past that the
 * least recently heard-from sender is forgotten (its window restarts). */
#define SENDERS_MAX 4096
#define SENDER_BUCKETS 4096 /* power of two */
#define NIL UINT32_MAX
#define REPLAY_WINDOW 64

struct sender {
    uint8_t pk[SHOAL_PK_BYTES];
    uint8_t cert[SHOAL_SIG_BYTES]; /* the cert that verified, if endorsed */
    bool endorsed;
    uint64_t top;  /* highest seq accepted */
    uint64_t seen; /* bit i: seq top - i was accepted */
    uint32_t next; /* bucket chain */
    uint32_t lru_prev, lru_next;
};

struct shoal_wire {
    struct shoal_identity id;
    uint8_t cluster_pk[SHOAL_PK_BYTES];
    bool has_cluster;
    uint64_t next_seq;
    size_t max_datagram;
    uint8_t *scratch; /* max_datagram bytes: header-without-sig || payload */

    uint8_t hash_key[crypto_shorthash_KEYBYTES];
    uint32_t buckets[SENDER_BUCKETS];
    uint32_t n_senders;
    uint32_t lru_head, lru_tail; /* head = most recent */
    struct sender *senders;      /* SENDERS_MAX, used from index 0 up */
};

static uint32_t bucket_of(const struct shoal_wire *w, const uint8_t *pk)
{
    uint8_t h[crypto_shorthash_BYTES];
    uint32_t v;
    /* Keyed, so that chosen keys cannot pile into one bucket. */
    crypto_shorthash(h, pk, SHOAL_PK_BYTES, w->hash_key);
    memcpy(&v, h, sizeof(v));
    return v & (SENDER_BUCKETS - 1);
}

static struct sender *sender_find(struct shoal_wire *w, const uint8_t *pk, uint32_t b)
{
    for (uint32_t i = w->buckets[b]; i != NIL; i = w->senders[i].next)
        if (memcmp(w->senders[i].pk, pk, SHOAL_PK_BYTES) == 0)
            return &w->senders[i];
    return NULL;
}

static void lru_unlink(struct shoal_wire *w, uint32_t i)
{
    struct sender *s = &w->senders[i];
    if (s->lru_prev != NIL)
        w->senders[s->lru_prev].lru_next = s->lru_next;
    else
        w->lru_head = s->lru_next;
    if (s->lru_next != NIL)
        w->senders[s->lru_next].lru_prev = s->lru_prev;
    else
        w->lru_tail = s->lru_prev;
    s->lru_prev = s->lru_next = NIL;
}

static void lru_push_head(struct shoal_wire *w, uint32_t i)
{
    struct sender *s = &w->senders[i];
    s->lru_prev = NIL;
    s->lru_next = w->lru_head;
    if (w->lru_head != NIL)
        w->senders[w->lru_head].lru_prev = i;
    w->lru_head = i;
    if (w->lru_tail == NIL)
        w->lru_tail = i;
}

static void sender_touch(struct shoal_wire *w, struct sender *s)
{
    uint32_t i = (uint32_t)(s - w->senders);
    if (w->lru_head == i)
        return;
    lru_unlink(w, i);
    lru_push_head(w, i);
}

static void bucket_remove(struct shoal_wire *w, uint32_t i)
{
    uint32_t b = bucket_of(w, w->senders[i].pk);
    uint32_t *link = &w->buckets[b];
    while (*link != NIL) {
        if (*link == i) {
            *link = w->senders[i].next;
            return;
        }
        link = &w->senders[*link].next;
    }
}

/* Adds pk as the most recent sender, forgetting the least recent one when
 * the table is full. */
static struct sender *sender_add(struct shoal_wire *w, const uint8_t *pk, uint32_t b)
{
    uint32_t i;
    if (w->n_senders < SENDERS_MAX) {
        i = w->n_senders++;
    } else {
        i = w->lru_tail;
        lru_unlink(w, i);
        bucket_remove(w, i);
    }
    struct sender *s = &w->senders[i];
    memset(s, 0, sizeof(*s));
    memcpy(s->pk, pk, SHOAL_PK_BYTES);
    s->next = w->buckets[b];
    w->buckets[b] = i;
    lru_push_head(w, i);
    return s;
}

/* Is seq new for this sender (newer than top, or unseen within the window)? */
static bool replay_ok(const struct sender *s, uint64_t seq)
{
    if (seq > s->top)
        return true;
    uint64_t age = s->top - seq;
    if (age >= REPLAY_WINDOW)
        return false;
    return !(s->seen & ((uint64_t)1 << age));
}

static void replay_record(struct sender *s, uint64_t seq, bool first)
{
    if (first) {
        s->top = seq;
        s->seen = 1;
    } else if (seq > s->top) {
        uint64_t shift = seq - s->top;
        s->seen = shift >= REPLAY_WINDOW ? 1 : (s->seen << shift) | 1;
        s->top = seq;
    } else {
        s->seen |= (uint64_t)1 << (s->top - seq);
    }
}

/* ---- certs ------------------------------------------------------------- */

static void cert_message(uint8_t out[CERT_CONTEXT_LEN + SHOAL_PK_BYTES], const uint8_t *pk)
{
    memcpy(out, CERT_CONTEXT, CERT_CONTEXT_LEN);
    memcpy(out + CERT_CONTEXT_LEN, pk, SHOAL_PK_BYTES);
}

void shoal_identity_endorse(struct shoal_identity *id, const struct shoal_cluster_key *k)
{
    uint8_t msg[CERT_CONTEXT_LEN + SHOAL_PK_BYTES];
    cert_message(msg, id->pk);
    crypto_sign_detached(id->cert, NULL, msg, sizeof(msg), k->sk);
    id->has_cert = true;
}

static bool cert_valid(const uint8_t *cluster_pk, const uint8_t *pk, const uint8_t *cert)
{
    uint8_t msg[CERT_CONTEXT_LEN + SHOAL_PK_BYTES];
    cert_message(msg, pk);
    return crypto_sign_verify_detached(cert, msg, sizeof(msg), cluster_pk) == 0;
}

/* ---- context ----------------------------------------------------------- */

struct shoal_wire *shoal_wire_new(const struct shoal_identity *id, const uint8_t *cluster_pk,
                                  uint64_t seq_start, size_t max_datagram)
{
    if (!id || max_datagram <= SHOAL_ENVELOPE_BYTES || max_datagram > MAX_DATAGRAM_LIMIT)
        return NULL;
    if (sodium_init() < 0)
        return NULL;
    struct shoal_wire *w = calloc(1, sizeof(*w));
    if (!w)
        return NULL;
    w->scratch = malloc(max_datagram);
    /* calloc: untouched pages of a mostly empty table cost nothing. */
    w->senders = calloc(SENDERS_MAX, sizeof(*w->senders));
    if (!w->scratch || !w->senders) {
        shoal_wire_free(w);
        return NULL;
    }
    w->id = *id;
    if (cluster_pk) {
        memcpy(w->cluster_pk, cluster_pk, SHOAL_PK_BYTES);
        w->has_cluster = true;
    }
    w->next_seq = seq_start;
    w->max_datagram = max_datagram;
    randombytes_buf(w->hash_key, sizeof(w->hash_key));
    for (size_t i = 0; i < SENDER_BUCKETS; i++)
        w->buckets[i] = NIL;
    w->lru_head = w->lru_tail = NIL;
    return w;
}

void shoal_wire_free(struct shoal_wire *w)
{
    if (!w)
        return;
    sodium_memzero(w->id.sk, sizeof(w->id.sk));
    free(w->scratch);
    free(w->senders);
    free(w);
}

/* ---- seal / open ------------------------------------------------------- */

static void put_be64(uint8_t *p, uint64_t v)
{
    for (int i = 7; i >= 0; i--) {
        p[i] = (uint8_t)v;
        v >>= 8;
    }
}

static uint64_t get_be64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = (v << 8) | p[i];
    return v;
}

int shoal_wire_seal(struct shoal_wire *w, const struct shoal_msg *m, uint8_t *buf, size_t cap)
{
    size_t limit = cap < w->max_datagram ? cap : w->max_datagram;
    if (limit < SHOAL_ENVELOPE_BYTES)
        return SHOAL_ETOOBIG;

    /* Build header-without-sig || payload in scratch: that is what is signed. */
    uint8_t *signed_part = w->scratch;
    int n = shoal_wire_encode(m, signed_part + SIGNED_HDR_BYTES, limit - SHOAL_ENVELOPE_BYTES);
    if (n < 0)
        return n;

    struct env_hdr *h = (struct env_hdr *)(void *)signed_part;
    h->magic[0] = ENV_MAGIC0;
    h->magic[1] = ENV_MAGIC1;
    h->version = ENV_VERSION;
    h->flags = w->id.has_cert ? ENV_FLAG_CERT : 0;
    memcpy(h->pk, w->id.pk, SHOAL_PK_BYTES);
    if (w->id.has_cert)
        memcpy(h->cert, w->id.cert, SHOAL_SIG_BYTES);
    else
        memset(h->cert, 0, SHOAL_SIG_BYTES);
    put_be64(h->seq, w->next_seq);

    uint8_t sig[SHOAL_SIG_BYTES];
    crypto_sign_detached(sig, NULL, signed_part, SIGNED_HDR_BYTES + (size_t)n, w->id.sk);

    memcpy(buf, signed_part, SIGNED_HDR_BYTES);
    memcpy(buf + SIGNED_HDR_BYTES, sig, SHOAL_SIG_BYTES);
    memcpy(buf + SHOAL_ENVELOPE_BYTES, signed_part + SIGNED_HDR_BYTES, (size_t)n);
    w->next_seq++;
    return SHOAL_ENVELOPE_BYTES + n;
}

static int drop(int *out, int reason, int err)
{
    if (out)
        *out = reason;
    return err;
}

int shoal_wire_open(struct shoal_wire *w, const uint8_t *buf, size_t len, struct shoal_msg *out,
                    int *drop_reason)
{
    if (len < SHOAL_ENVELOPE_BYTES)
        return drop(drop_reason, SHOAL_DROP_TRUNCATED, SHOAL_ETRUNC);
    if (len > w->max_datagram)
        return drop(drop_reason, SHOAL_DROP_TOO_LARGE, SHOAL_ETOOBIG);

    const uint8_t *magic = buf + offsetof(struct env_hdr, magic);
    const uint8_t flags = buf[offsetof(struct env_hdr, flags)];
    const uint8_t *pk = buf + offsetof(struct env_hdr, pk);
    const uint8_t *cert = buf + offsetof(struct env_hdr, cert);
    const uint8_t *sig = buf + offsetof(struct env_hdr, sig);
    const uint8_t *payload = buf + SHOAL_ENVELOPE_BYTES;
    size_t payload_len = len - SHOAL_ENVELOPE_BYTES;

    /* Unknown flag bits are tolerated: they are signed, and a newer agent
     * may set some. An unknown version is not. */
    if (magic[0] != ENV_MAGIC0 || magic[1] != ENV_MAGIC1 ||
        buf[offsetof(struct env_hdr, version)] != ENV_VERSION)
        return drop(drop_reason, SHOAL_DROP_UNSIGNED, SHOAL_EBADHDR);

    uint32_t b = bucket_of(w, pk);
    struct sender *s = sender_find(w, pk, b);

    bool cert_checked_now = false;
    if (w->has_cluster) {
        if (!(flags & ENV_FLAG_CERT))
            return drop(drop_reason, SHOAL_DROP_NOT_ENDORSED, SHOAL_ENOTENDORSED);
        bool cached = s && s->endorsed && memcmp(s->cert, cert, SHOAL_SIG_BYTES) == 0;
        if (!cached) {
            if (!cert_valid(w->cluster_pk, pk, cert))
                return drop(drop_reason, SHOAL_DROP_NOT_ENDORSED, SHOAL_ENOTENDORSED);
            cert_checked_now = true;
        }
    }

    memcpy(w->scratch, buf, SIGNED_HDR_BYTES);
    memcpy(w->scratch + SIGNED_HDR_BYTES, payload, payload_len);
    if (crypto_sign_verify_detached(sig, w->scratch, SIGNED_HDR_BYTES + payload_len, pk) != 0)
        return drop(drop_reason, SHOAL_DROP_BAD_SIGNATURE, SHOAL_EBADSIG);

    uint64_t seq = get_be64(buf + offsetof(struct env_hdr, seq));
    if (s && !replay_ok(s, seq))
        return drop(drop_reason, SHOAL_DROP_REPLAY, SHOAL_EREPLAY);

    /* Authentic and new: remember it, even if the payload turns out bad, so
     * that the same datagram is a replay next time. */
    bool first = s == NULL;
    if (first)
        s = sender_add(w, pk, b);
    else
        sender_touch(w, s);
    if (cert_checked_now) {
        memcpy(s->cert, cert, SHOAL_SIG_BYTES);
        s->endorsed = true;
    }
    replay_record(s, seq, first);

    int rc = shoal_wire_decode(payload, payload_len, out, NULL);
    if (rc == SHOAL_EDECODE)
        return drop(drop_reason, SHOAL_DROP_DECODE, rc);
    if (rc < 0)
        return drop(drop_reason, SHOAL_DROP_INVALID, rc);
    return 0;
}

const char *shoal_drop_name(int reason)
{
    static const char *const names[SHOAL_DROP_COUNT] = {
#define SHOAL_DROP_NAME(n, s) s,
        SHOAL_DROP_MAP(SHOAL_DROP_NAME)
#undef SHOAL_DROP_NAME
    };
    if (reason < 0 || reason >= SHOAL_DROP_COUNT)
        return "?";
    return names[reason];
}
