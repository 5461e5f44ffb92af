/* statement.c -- canonical bytes and Ed25519 signatures of registry events
 * (see statement.h and docs/registry-authority.md). */
#include "wire/statement.h"

#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "wire/wire.h"

_Static_assert(SHOAL_REG_SIG_BYTES == crypto_sign_BYTES, "signature size");
_Static_assert(SHOAL_REG_PK_BYTES == crypto_sign_PUBLICKEYBYTES, "public key size");

#define CANON_MAX (1u << 20) /* far above any valid event (~40 KiB at most) */
#define CANON_STACK 2048     /* most events fit here */

struct canon {
    uint8_t *buf;
    size_t cap, len;
};

static void put(struct canon *c, const void *p, size_t n)
{
    if (n == 0)
        return; /* p may be NULL (a check with no output yet): memcpy(_, NULL, 0) is UB */
    if (c->len <= c->cap && n <= c->cap - c->len)
        memcpy(c->buf + c->len, p, n);
    c->len += n;
}

static void put_u(struct canon *c, uint64_t v, unsigned bytes)
{
    uint8_t b[8];
    for (unsigned i = 0; i < bytes; i++)
        b[i] = (uint8_t)(v >> (8 * (bytes - 1 - i)));
    put(c, b, bytes);
}

static void put_str(struct canon *c, const char *s)
{
    size_t n = s ? strlen(s) : 0;
    put_u(c, n > UINT32_MAX ? UINT32_MAX : n, 4);
    put(c, s, n);
}

long shoal_statement_event_bytes(const struct shoal_instance *ev, uint8_t *buf, size_t cap)
{
    struct canon c = {buf, buf ? cap : 0, 0};
    put(&c, SHOAL_STATEMENT_EVENT_CONTEXT, strlen(SHOAL_STATEMENT_EVENT_CONTEXT));
    put_str(&c, ev->owner);
    put_str(&c, ev->id);
    put_u(&c, ev->generation, 8);
    put_u(&c, ev->version, 8);
    put_u(&c, ev->deleted ? 1 : 0, 1);
    if (!ev->deleted) {
        put_str(&c, ev->service);
        put_str(&c, ev->address);
        put_u(&c, ev->port, 2);
        put_u(&c, ev->health, 1);
        put_u(&c, ev->ttl_ms, 4);
        put_u(&c, (uint64_t)ev->registered_ms, 8);
        put_u(&c, (uint64_t)ev->heartbeat_ms, 8);
        put_u(&c, ev->deregister_critical_after_ms, 4);
        put_u(&c, ev->n_tags, 4);
        for (uint32_t i = 0; i < ev->n_tags; i++)
            put_str(&c, ev->tags[i]);
        put_u(&c, ev->n_meta, 4);
        for (uint32_t i = 0; i < ev->n_meta; i++) {
            put_str(&c, ev->meta[i].key);
            put_str(&c, ev->meta[i].value);
        }
        put_u(&c, ev->n_checks, 4);
        for (uint32_t i = 0; i < ev->n_checks; i++) {
            const struct shoal_check *k = &ev->checks[i];
            put_u(&c, k->kind, 1);
            put_str(&c, k->target);
            put_u(&c, k->interval_ms, 4);
            put_u(&c, k->timeout_ms, 4);
            put_u(&c, k->rise, 1);
            put_u(&c, k->fall, 1);
            put_u(&c, k->status, 1);
            put_str(&c, k->output);
        }
    }
    if (c.len > CANON_MAX)
        return SHOAL_EINVAL;
    return (long)c.len;
}

/* The canonical bytes in stack (or, when larger, a malloc'ed buffer put in
 * *heap for the caller to free). Returns the length or SHOAL_E*. */
static long canon_of(const struct shoal_instance *ev, uint8_t stack[CANON_STACK], uint8_t **out,
                     uint8_t **heap)
{
    *heap = NULL;
    *out = stack;
    long n = shoal_statement_event_bytes(ev, stack, CANON_STACK);
    if (n <= CANON_STACK)
        return n;
    if (!(*heap = malloc((size_t)n)))
        return SHOAL_ENOMEM;
    *out = *heap;
    return shoal_statement_event_bytes(ev, *heap, (size_t)n);
}

int shoal_statement_sign_event(const struct shoal_instance *ev, const uint8_t *sk,
                               uint8_t sig[SHOAL_REG_SIG_BYTES])
{
    uint8_t stack[CANON_STACK], *bytes, *heap;
    long n = canon_of(ev, stack, &bytes, &heap);
    if (n < 0) {
        free(heap);
        return (int)n;
    }
    crypto_sign_detached(sig, NULL, bytes, (unsigned long long)n, sk);
    free(heap);
    return 0;
}

bool shoal_statement_verify_event(const struct shoal_instance *ev,
                                  const uint8_t pk[SHOAL_REG_PK_BYTES])
{
    if (!ev->has_sig)
        return false;
    uint8_t stack[CANON_STACK], *bytes, *heap;
    long n = canon_of(ev, stack, &bytes, &heap);
    bool ok = n >= 0 &&
              crypto_sign_verify_detached(ev->sig, bytes, (unsigned long long)n, pk) == 0;
    free(heap);
    return ok;
}

int shoal_statement_event_hash(const struct shoal_instance *ev, uint8_t out[SHOAL_REG_HASH_BYTES])
{
    uint8_t stack[CANON_STACK], *bytes, *heap;
    long n = canon_of(ev, stack, &bytes, &heap);
    if (n >= 0) {
        /* The signature too: a proof then pins the exact signatures a
         * relay passes on, which it could otherwise replace with garbage. */
        uint8_t flag = ev->has_sig ? 1 : 0;
        crypto_generichash_state st;
        crypto_generichash_init(&st, NULL, 0, SHOAL_REG_HASH_BYTES);
        crypto_generichash_update(&st, bytes, (unsigned long long)n);
        crypto_generichash_update(&st, &flag, 1);
        if (ev->has_sig)
            crypto_generichash_update(&st, ev->sig, SHOAL_REG_SIG_BYTES);
        crypto_generichash_final(&st, out, SHOAL_REG_HASH_BYTES);
    }
    free(heap);
    return n < 0 ? (int)n : 0;
}

#define SET_CONTEXT "shoal-set-v1"
#define PROOF_CONTEXT "shoal-proof-v1"

void shoal_statement_set_root(const uint8_t (*sorted)[SHOAL_REG_HASH_BYTES], size_t n,
                              uint8_t root[SHOAL_REG_HASH_BYTES])
{
    crypto_generichash_state st;
    crypto_generichash_init(&st, NULL, 0, SHOAL_REG_HASH_BYTES);
    crypto_generichash_update(&st, (const uint8_t *)SET_CONTEXT, strlen(SET_CONTEXT));
    if (n)
        crypto_generichash_update(&st, sorted[0], (unsigned long long)n * SHOAL_REG_HASH_BYTES);
    crypto_generichash_final(&st, root, SHOAL_REG_HASH_BYTES);
}

/* The bytes an owner proof's signature covers (at most ~150). */
static size_t proof_bytes(const struct shoal_reg_proof *p, uint8_t buf[256])
{
    struct canon c = {buf, 256, 0};
    put(&c, PROOF_CONTEXT, strlen(PROOF_CONTEXT));
    put_str(&c, p->owner);
    put_u(&c, p->generation, 8);
    put_u(&c, p->version, 8);
    put_u(&c, p->count, 4);
    put(&c, p->root, SHOAL_REG_HASH_BYTES);
    return c.len;
}

void shoal_statement_sign_proof(struct shoal_reg_proof *p, const uint8_t *sk)
{
    uint8_t buf[256];
    size_t n = proof_bytes(p, buf);
    crypto_sign_detached(p->sig, NULL, buf, n, sk);
}

bool shoal_statement_verify_proof(const struct shoal_reg_proof *p,
                                  const uint8_t pk[SHOAL_REG_PK_BYTES])
{
    uint8_t buf[256];
    size_t n = proof_bytes(p, buf);
    return n <= sizeof(buf) && crypto_sign_verify_detached(p->sig, buf, n, pk) == 0;
}

int shoal_statement_envelope_sender(const uint8_t *env, size_t len,
                                    uint8_t pk[SHOAL_REG_PK_BYTES])
{
    /* wire.h: magic (2) | version (1) | flags (1) | sender pk (32) | ... */
    if (len < SHOAL_ENVELOPE_BYTES)
        return SHOAL_ETRUNC;
    memcpy(pk, env + 4, SHOAL_REG_PK_BYTES);
    return 0;
}
