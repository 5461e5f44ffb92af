/* fuzz_util.h -- the one-input receive path shared by the libFuzzer target
 * (fuzz_recv.c), the corpus replay test (test_fuzz_corpus.c) and the corpus
 * generator (gen_corpus.c). See fuzz_util.c for the input format.
 */
#ifndef SHOAL_FUZZ_UTIL_H
#define SHOAL_FUZZ_UTIL_H

#include <stddef.h>
#include <stdint.h>

#include "wire/wire.h"

/* Byte 0 of an input: bit 0 picks the mode, bits 1-3 advance the virtual
 * clock by 0..7 * 125 ms before the input is delivered, bit 4 picks an IPv4
 * or IPv6 source address, bit 5 (payload mode only) delivers the payload as
 * a stream frame instead of a datagram. */
#define FUZZ_MODE_DATAGRAM 0x00 /* the rest is a raw datagram for shoal_wire_open */
#define FUZZ_MODE_PAYLOAD 0x01  /* the rest is a payload the harness seals first */
#define FUZZ_STREAM 0x20        /* payload mode: sealed as a frame, as if from a TCP stream */

/* The name and address of the long-lived node under test. */
#define FUZZ_SELF_NAME "fuzz-self"
#define FUZZ_SELF_ADDR "127.0.0.1:7946"

enum fuzz_outcome {
    FUZZ_IGNORED = 0,  /* empty input or an oversized payload */
    FUZZ_DROPPED = 1,  /* dropped by the envelope, the decoder or the dispatch */
    FUZZ_DELIVERED = 2 /* fed to shoal_swim_recv or shoal_registry_recv */
};

/* Runs one input through the receive path: open (datagram mode), or verify,
 * dispatch by payload type and decode (payload mode), then the SWIM node or
 * the registry. Aborts (a crash for libFuzzer and a failed test for the
 * corpus replay) when an invariant breaks: a fresh well-signed envelope does
 * not verify, the dispatch type disagrees with the decoder, a decoded message
 * does not survive re-encoding, or the node or the registry sends a message
 * that does not fit its transport or would be refused by a receiver. */
enum fuzz_outcome fuzz_one(const uint8_t *data, size_t size);

/* Forgets the node and the receiver, so the next input starts fresh. */
void fuzz_reset(void);
/* The registry under test (NULL before the first input). */
const struct shoal_registry *fuzz_registry(void);

/* The fixed test cluster key and the fixed, endorsed sender identity. */
void fuzz_cluster_key(struct shoal_cluster_key *k);
void fuzz_sender_identity(struct shoal_identity *id);

/* Writes the envelope around payload as the fixed sender, signed, with seq.
 * Returns the datagram length (SHOAL_ENVELOPE_BYTES + plen); out must hold
 * that many bytes and plen must be at most 65536. */
size_t fuzz_seal_raw(uint64_t seq, const uint8_t *payload, size_t plen, uint8_t *out);
/* The same as a stream frame: length prefix, stream flag. Returns
 * SHOAL_FRAME_OVERHEAD + plen. */
size_t fuzz_seal_raw_frame(uint64_t seq, const uint8_t *payload, size_t plen, uint8_t *out);

#endif
