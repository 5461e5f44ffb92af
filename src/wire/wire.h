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

/* ---- registry payloads (Packet types 8..11, src/core/registry.h) ------- */

struct shoal_reg_msg;

/* Decoders refuse messages with more entries than these (SHOAL_EINVAL
 * naming "events", "digests" or "wants"); the encoder refuses to write them. */
#define SHOAL_REG_MAX_EVENTS 200000
#define SHOAL_REG_MAX_DIGESTS 65536
#define SHOAL_REG_MAX_WANTS 65536
#define SHOAL_REG_MAX_PROOFS 65536

/* Encodes a registry message (no envelope). A tombstone (deleted) is written
 * as owner, id, generation and version only. Returns the length, or
 * SHOAL_ETOOBIG (over cap), SHOAL_EINVAL (not a writable message: type not
 * 8..11, unterminated name, NULL string, count over a limit) or SHOAL_ENOMEM. */
int shoal_wire_encode_reg(const struct shoal_reg_msg *m, uint8_t *buf, size_t cap);
/* Decodes and checks every field of a registry payload (up to
 * SHOAL_STREAM_FRAME_MAX bytes). Returns 0, SHOAL_EDECODE (bytes protobuf-c
 * refuses, or that would unpack into far more memory than any valid message),
 * SHOAL_EINVAL with *bad_field naming the field (for an event's content, the
 * sentence of shoal_instance_validate(); counts over a limit are found before
 * anything is unpacked), SHOAL_ETOOBIG (len over SHOAL_STREAM_FRAME_MAX) or
 * SHOAL_ENOMEM. On success out's arrays and every string of every event are
 * malloc'ed: free them with shoal_reg_msg_free(). A tombstone decodes with
 * empty service and address and nothing else but owner, id, generation and
 * version. On error out is zeroed and holds nothing. Calls malloc. */
int shoal_wire_decode_reg(const uint8_t *buf, size_t len, struct shoal_reg_msg *out,
                          const char **bad_field);
/* The Packet's type field (0 when absent) without decoding the rest, for
 * dispatch: 1..SHOAL_MSG_TYPE_MAX to shoal_wire_decode, 8..11 to
 * shoal_wire_decode_reg, anything else is invalid. Returns SHOAL_EDECODE if
 * the bytes are not a well-framed protobuf message (both decoders refuse
 * those too). */
int shoal_wire_payload_type(const uint8_t *payload, size_t len);

/* ---- verify once, then dispatch ---------------------------------------- */

/* Every check of shoal_wire_open up to and including the replay window, and
 * records the seq. Returns 0 with *payload (inside buf) and *plen set, or a
 * negative error with *drop set to the reason, exactly as shoal_wire_open. */
int shoal_wire_verify(struct shoal_wire *w, const uint8_t *buf, size_t len, const uint8_t **payload,
                      size_t *plen, int *drop);
/* Seals an already encoded payload as one datagram. Returns its length, or
 * SHOAL_ETOOBIG if it would exceed max_datagram (or cap). payload may alias
 * buf + SHOAL_ENVELOPE_BYTES. */
int shoal_wire_seal_payload(struct shoal_wire *w, const uint8_t *payload, size_t plen, uint8_t *buf,
                            size_t cap);

/* ---- stream frames (TCP: anti-entropy, events too big for a datagram) ---
 *
 * A frame is a 4-byte big-endian length followed by that many bytes of
 * envelope (the datagram layout above, stream flag 0x02 set, payload after
 * it). The flag is signed, so a datagram cannot be replayed into a stream or
 * the other way round. Frames and datagrams take seqs from the sender's one
 * counter, but receivers keep a separate replay window per sender for each,
 * so a bulk transfer does not push concurrent datagrams out of their window.
 */
#define SHOAL_STREAM_FRAME_MAX (4u << 20) /* largest envelope in a frame */
#define SHOAL_FRAME_PREFIX_BYTES 4
#define SHOAL_FRAME_OVERHEAD (SHOAL_FRAME_PREFIX_BYTES + SHOAL_ENVELOPE_BYTES)

/* Seals a payload as one frame into buf. Returns the whole frame's length
 * (SHOAL_FRAME_OVERHEAD + plen), or SHOAL_ETOOBIG if the envelope would exceed
 * SHOAL_STREAM_FRAME_MAX or the frame cap. payload may already sit at
 * buf + SHOAL_FRAME_OVERHEAD (it is not copied then). */
int shoal_wire_seal_frame(struct shoal_wire *w, const uint8_t *payload, size_t plen, uint8_t *buf,
                          size_t cap);
/* With the first `have` bytes of a stream's next frame: 0 until the prefix is
 * complete, then the whole frame's length (prefix included), or SHOAL_ETOOBIG
 * if the prefix announces more than SHOAL_STREAM_FRAME_MAX (close the stream). */
int shoal_wire_frame_length(const uint8_t *buf, size_t have);
/* shoal_wire_verify for one whole frame (len = shoal_wire_frame_length()).
 * Returns 0 with *payload (inside frame) and *plen, or a negative error with
 * *drop set. The first frame verified allocates a SHOAL_STREAM_FRAME_MAX
 * scratch buffer in w (SHOAL_ENOMEM, drop too_large, if that fails). */
int shoal_wire_verify_frame(struct shoal_wire *w, const uint8_t *frame, size_t len,
                            const uint8_t **payload, size_t *plen, int *drop);

#endif
