/* envelope.c -- the signed envelope around every datagram and stream frame
 * (layout in wire.h).
 *
 * Sealing writes header-without-signature right before the payload, signs
 * that contiguous run with the node's Ed25519 key, then moves the header
 * into place and puts the signature between: no copy of the payload, which
 * matters for 4 MiB frames. Every envelope takes the next sequence number.
 * verify() checks, cheapest first and in a fixed order, size, magic/version,
 * the cluster endorsement (cert), the signature, the transport (the signed
 * stream flag must match how it arrived), then the per-sender replay window;
 * open() is verify() then decode. A sender table (keyed SipHash buckets +
 * LRU, bounded) remembers per sender key its verified cert, so a cert costs
 * one verify per sender and not per packet, and two IPsec-style replay
 * windows (RFC 4303 sec. 3.4.3: highest seq plus a 64-bit bitmap below it),
 * one for datagrams and one for frames: they share the sender's counter, and
 * one window would let a bulk transfer push in-flight datagrams out of it.
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
#define ENV_FLAG_STREAM 0x02 /* sealed as a stream frame, not a datagram */

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

struct window {
    uint64_t top;  /* highest seq accepted */
    uint64_t seen; /* bit i: seq top - i was accepted */
    bool used;     /* anything accepted yet */
};

struct sender {
    uint8_t pk[SHOAL_PK_BYTES];
    uint8_t cert[SHOAL_SIG_BYTES]; /* the cert that verified, if endorsed */
    bool endorsed;
    struct window dgram, stream;
    uint32_t next; /* bucket chain */
    uint32_t lru_prev, lru_next;
};

struct shoal_wire {
    struct shoal_identity id;
    uint8_t cluster_pk[SHOAL_PK_BYTES];
    bool has_cluster;
    uint64_t next_seq;
    size_t max_datagram;
    uint8_t *scratch;        /* max_datagram bytes: header-without-sig || payload */
    uint8_t *stream_scratch; /* the same for frames; allocated on first use */

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

/* Is seq new in this window (newer than top, or unseen within the window)? */
static bool replay_ok(const struct window *win, uint64_t seq)
{
    if (!win->used || seq > win->top)
        return true;
    uint64_t age = win->top - seq;
    if (age >= REPLAY_WINDOW)
        return false;
    return !(win->seen & ((uint64_t)1 << age));
}

static void replay_record(struct window *win, uint64_t seq)
{
    if (!win->used) {
        win->top = seq;
        win->seen = 1;
        win->used = true;
    } else if (seq > win->top) {
        uint64_t shift = seq - win->top;
        win->seen = shift >= REPLAY_WINDOW ? 1 : (win->seen << shift) | 1;
        win->top = seq;
    } else {
        win->seen |= (uint64_t)1 << (win->top - seq);
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
    free(w->stream_scratch);
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

static void put_be32(uint8_t *p, uint32_t v)
{
    for (int i = 3; i >= 0; i--) {
        p[i] = (uint8_t)v;
        v >>= 8;
    }
}

static uint32_t get_be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* env points at an envelope whose plen payload bytes already sit at
 * env + SHOAL_ENVELOPE_BYTES. Writes header-without-sig at env + 64, right
 * before the payload, signs that run, then moves the header to env and puts
 * the signature between header and payload. */
static size_t seal_in_place(struct shoal_wire *w, uint8_t *env, size_t plen, uint8_t flags)
{
    struct env_hdr *h = (struct env_hdr *)(void *)(env + SHOAL_SIG_BYTES);
    uint8_t sig[SHOAL_SIG_BYTES];
    static_assert(SHOAL_SIG_BYTES + SIGNED_HDR_BYTES == SHOAL_ENVELOPE_BYTES, "layout");

    h->magic[0] = ENV_MAGIC0;
    h->magic[1] = ENV_MAGIC1;
    h->version = ENV_VERSION;
    h->flags = flags | (w->id.has_cert ? ENV_FLAG_CERT : 0);
    memcpy(h->pk, w->id.pk, SHOAL_PK_BYTES);
    if (w->id.has_cert)
        memcpy(h->cert, w->id.cert, SHOAL_SIG_BYTES);
    else
        memset(h->cert, 0, SHOAL_SIG_BYTES);
    put_be64(h->seq, w->next_seq);

    crypto_sign_detached(sig, NULL, (const uint8_t *)h, SIGNED_HDR_BYTES + plen, w->id.sk);
    memmove(env, h, SIGNED_HDR_BYTES);
    memcpy(env + SIGNED_HDR_BYTES, sig, SHOAL_SIG_BYTES);
    w->next_seq++;
    return SHOAL_ENVELOPE_BYTES + plen;
}

int shoal_wire_seal(struct shoal_wire *w, const struct shoal_msg *m, uint8_t *buf, size_t cap)
{
    size_t limit = cap < w->max_datagram ? cap : w->max_datagram;
    if (limit < SHOAL_ENVELOPE_BYTES)
        return SHOAL_ETOOBIG;
    int n = shoal_wire_encode(m, buf + SHOAL_ENVELOPE_BYTES, limit - SHOAL_ENVELOPE_BYTES);
    if (n < 0)
        return n;
    return (int)seal_in_place(w, buf, (size_t)n, 0);
}

int shoal_wire_seal_payload(struct shoal_wire *w, const uint8_t *payload, size_t plen, uint8_t *buf,
                            size_t cap)
{
    size_t limit = cap < w->max_datagram ? cap : w->max_datagram;
    if (limit < SHOAL_ENVELOPE_BYTES || plen > limit - SHOAL_ENVELOPE_BYTES)
        return SHOAL_ETOOBIG;
    if (payload != buf + SHOAL_ENVELOPE_BYTES)
        memmove(buf + SHOAL_ENVELOPE_BYTES, payload, plen);
    return (int)seal_in_place(w, buf, plen, 0);
}

int shoal_wire_seal_frame(struct shoal_wire *w, const uint8_t *payload, size_t plen, uint8_t *buf,
                          size_t cap)
{
    if (plen > SHOAL_STREAM_FRAME_MAX - SHOAL_ENVELOPE_BYTES || cap < SHOAL_FRAME_OVERHEAD ||
        plen > cap - SHOAL_FRAME_OVERHEAD)
        return SHOAL_ETOOBIG;
    uint8_t *env = buf + SHOAL_FRAME_PREFIX_BYTES;
    if (payload != env + SHOAL_ENVELOPE_BYTES)
        memmove(env + SHOAL_ENVELOPE_BYTES, payload, plen);
    size_t n = seal_in_place(w, env, plen, ENV_FLAG_STREAM);
    put_be32(buf, (uint32_t)n);
    return (int)(SHOAL_FRAME_PREFIX_BYTES + n);
}

int shoal_wire_frame_length(const uint8_t *buf, size_t have)
{
    if (have < SHOAL_FRAME_PREFIX_BYTES)
        return 0;
    uint32_t n = get_be32(buf);
    if (n > SHOAL_STREAM_FRAME_MAX)
        return SHOAL_ETOOBIG;
    return (int)(SHOAL_FRAME_PREFIX_BYTES + n);
}

static int drop(int *out, int reason, int err)
{
    if (out)
        *out = reason;
    return err;
}

/* The checks after the size: len is within [SHOAL_ENVELOPE_BYTES, limit]
 * and scratch holds SIGNED_HDR_BYTES + len - SHOAL_ENVELOPE_BYTES bytes. */
static int verify_envelope(struct shoal_wire *w, const uint8_t *buf, size_t len, bool stream,
                           uint8_t *scratch, const uint8_t **payload_out, size_t *plen_out,
                           int *drop_reason)
{
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

    memcpy(scratch, buf, SIGNED_HDR_BYTES);
    memcpy(scratch + SIGNED_HDR_BYTES, payload, payload_len);
    if (crypto_sign_verify_detached(sig, scratch, SIGNED_HDR_BYTES + payload_len, pk) != 0)
        return drop(drop_reason, SHOAL_DROP_BAD_SIGNATURE, SHOAL_EBADSIG);

    /* Authentic, but sealed for the other transport: someone is replaying
     * a datagram into a stream or a frame as a datagram. */
    if (!(flags & ENV_FLAG_STREAM) != !stream)
        return drop(drop_reason, SHOAL_DROP_REPLAY, SHOAL_EREPLAY);

    uint64_t seq = get_be64(buf + offsetof(struct env_hdr, seq));
    if (s && !replay_ok(stream ? &s->stream : &s->dgram, seq))
        return drop(drop_reason, SHOAL_DROP_REPLAY, SHOAL_EREPLAY);

    /* Authentic and new: remember it, even if the payload turns out bad, so
     * that the same envelope is a replay next time. */
    if (!s)
        s = sender_add(w, pk, b);
    else
        sender_touch(w, s);
    if (cert_checked_now) {
        memcpy(s->cert, cert, SHOAL_SIG_BYTES);
        s->endorsed = true;
    }
    replay_record(stream ? &s->stream : &s->dgram, seq);
    *payload_out = payload;
    *plen_out = payload_len;
    return 0;
}

int shoal_wire_verify(struct shoal_wire *w, const uint8_t *buf, size_t len, const uint8_t **payload,
                      size_t *plen, int *drop_reason)
{
    if (len < SHOAL_ENVELOPE_BYTES)
        return drop(drop_reason, SHOAL_DROP_TRUNCATED, SHOAL_ETRUNC);
    if (len > w->max_datagram)
        return drop(drop_reason, SHOAL_DROP_TOO_LARGE, SHOAL_ETOOBIG);
    return verify_envelope(w, buf, len, false, w->scratch, payload, plen, drop_reason);
}

int shoal_wire_verify_frame(struct shoal_wire *w, const uint8_t *frame, size_t len,
                            const uint8_t **payload, size_t *plen, int *drop_reason)
{
    if (len < SHOAL_FRAME_PREFIX_BYTES)
        return drop(drop_reason, SHOAL_DROP_TRUNCATED, SHOAL_ETRUNC);
    uint32_t n = get_be32(frame);
    if (n > SHOAL_STREAM_FRAME_MAX)
        return drop(drop_reason, SHOAL_DROP_TOO_LARGE, SHOAL_ETOOBIG);
    /* The caller hands over exactly one frame: fewer bytes than the prefix
     * says is a cut frame, more is not one frame either. */
    if (len - SHOAL_FRAME_PREFIX_BYTES < n || n < SHOAL_ENVELOPE_BYTES)
        return drop(drop_reason, SHOAL_DROP_TRUNCATED, SHOAL_ETRUNC);
    if (len - SHOAL_FRAME_PREFIX_BYTES > n)
        return drop(drop_reason, SHOAL_DROP_TOO_LARGE, SHOAL_ETOOBIG);
    if (!w->stream_scratch) {
        w->stream_scratch =
            malloc(SIGNED_HDR_BYTES + SHOAL_STREAM_FRAME_MAX - SHOAL_ENVELOPE_BYTES);
        if (!w->stream_scratch)
            return drop(drop_reason, SHOAL_DROP_TOO_LARGE, SHOAL_ENOMEM);
    }
    return verify_envelope(w, frame + SHOAL_FRAME_PREFIX_BYTES, n, true, w->stream_scratch, payload,
                           plen, drop_reason);
}

int shoal_wire_open(struct shoal_wire *w, const uint8_t *buf, size_t len, struct shoal_msg *out,
                    int *drop_reason)
{
    const uint8_t *payload;
    size_t payload_len;
    int rc = shoal_wire_verify(w, buf, len, &payload, &payload_len, drop_reason);
    if (rc < 0)
        return rc;
    rc = shoal_wire_decode(payload, payload_len, out, NULL);
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
