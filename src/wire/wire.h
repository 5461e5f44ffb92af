/* wire.h -- the only module that knows protobuf-c and libsodium.
 *
 * A datagram is a fixed signed envelope followed by a protobuf-c payload
 * (proto/shoal.proto) that carries one struct shoal_msg:
 *
 *   magic "SH" | version 1 | flags | sender Ed25519 pk (32) | cert (64) |
 *   seq (8, big endian) | signature (64) | payload
 *
 * The signature covers every byte before it and the payload. The cert is the
 * cluster key's signature over ("shoal-cert-v1" || sender pk): it is what
 * endorses a node. seq grows per sender; receivers keep a sliding replay
 * window per sender key. Anything that fails a check is dropped with a reason.
 */
#ifndef SHOAL_WIRE_H
#define SHOAL_WIRE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/msg.h"
#include "shoal/error.h"

#define SHOAL_PK_BYTES 32
#define SHOAL_SK_BYTES 64
#define SHOAL_SIG_BYTES 64

/* Drop reasons, one counter each (exported by the agent's info and metrics). */
#define SHOAL_DROP_MAP(X)                                                      \
    X(TOO_LARGE, "too_large")                                                  \
    X(TRUNCATED, "truncated")                                                  \
    X(UNSIGNED, "unsigned")                                                    \
    X(BAD_SIGNATURE, "bad_signature")                                          \
    X(NOT_ENDORSED, "not_endorsed")                                            \
    X(REPLAY, "replay")                                                        \
    X(DECODE, "decode")                                                        \
    X(INVALID, "invalid")

enum shoal_drop {
#define SHOAL_DROP_ENUM(n, s) SHOAL_DROP_##n,
    SHOAL_DROP_MAP(SHOAL_DROP_ENUM)
#undef SHOAL_DROP_ENUM
    SHOAL_DROP_COUNT
};
const char *shoal_drop_name(int reason);

struct shoal_identity {
    uint8_t pk[SHOAL_PK_BYTES];
    uint8_t sk[SHOAL_SK_BYTES];
    uint8_t cert[SHOAL_SIG_BYTES];
    bool has_cert;
};

struct shoal_cluster_key {
    uint8_t pk[SHOAL_PK_BYTES];
    uint8_t sk[SHOAL_SK_BYTES];
};

/* Loads DIR/identity.key, or creates it (mode 0600) on first start. */
int shoal_identity_load_or_create(const char *data_dir, struct shoal_identity *id)
    SHOAL_MUST_CHECK;
/* Creates a fresh identity in memory (tests, fuzzing). */
void shoal_identity_generate(struct shoal_identity *id);
/* Sets id->cert to the cluster key's endorsement of id->pk. */
void shoal_identity_endorse(struct shoal_identity *id, const struct shoal_cluster_key *k);

/* Writes a new cluster key to path (mode 0600, refuses to overwrite). */
int shoal_cluster_key_generate(const char *path) SHOAL_MUST_CHECK;
/* Reads a cluster key file; a malformed file is SHOAL_EINVAL. */
int shoal_cluster_key_load(const char *path, struct shoal_cluster_key *k) SHOAL_MUST_CHECK;

struct shoal_wire;

/* A sealing/opening context. cluster_pk NULL = open cluster (no cert needed).
 * seq_start should grow across restarts (e.g. wall-clock microseconds).
 * Calls malloc; free with shoal_wire_free(). */
struct shoal_wire *shoal_wire_new(const struct shoal_identity *id, const uint8_t *cluster_pk,
                                  uint64_t seq_start, size_t max_datagram);
void shoal_wire_free(struct shoal_wire *w);

/* Encodes and signs m into buf. Returns the datagram length, or SHOAL_ETOOBIG
 * if it would exceed max_datagram (or cap). */
int shoal_wire_seal(struct shoal_wire *w, const struct shoal_msg *m, uint8_t *buf, size_t cap);
/* Verifies then decodes one datagram. Returns 0, or a negative error with
 * *drop set to the reason. Nothing in buf is used before the signature and
 * endorsement are checked. */
int shoal_wire_open(struct shoal_wire *w, const uint8_t *buf, size_t len, struct shoal_msg *out,
                    int *drop);

/* The payload codec alone (no envelope): used by the simulator and tests.
 * encode returns the length or SHOAL_ETOOBIG; decode returns 0 or
 * SHOAL_EDECODE/SHOAL_EINVAL and, on EINVAL, names the bad field. */
int shoal_wire_encode(const struct shoal_msg *m, uint8_t *buf, size_t cap);
int shoal_wire_decode(const uint8_t *buf, size_t len, struct shoal_msg *out,
                      const char **bad_field);

#endif
