/* statement.h -- owner-signed registry statements: their canonical bytes,
 * signing and verifying (libsodium Ed25519).
 *
 * A registry event is signed by its owner over canonical bytes defined here
 * (docs/registry-authority.md), not over its protobuf encoding: protobuf
 * does not fix one encoding per message, so every relay re-encodes freely
 * and every receiver rebuilds the same bytes from the fields it decoded.
 * The signature travels with the event (Instance.sig) through gossip,
 * notices and anti-entropy, unchanged.
 *
 * Canonical event, version 1: "shoal-event-v1", then in this order
 *   str owner, str id, u64 generation, u64 version, u8 deleted
 * and, unless deleted,
 *   str service, str address, u16 port, u8 health, u32 ttl_ms,
 *   i64 registered_ms, i64 heartbeat_ms, u32 deregister_critical_after_ms,
 *   u32 n_tags, str tag...,  u32 n_meta, (str key, str value)...,
 *   u32 n_checks, (u8 kind, str target, u32 interval_ms, u32 timeout_ms,
 *                  u8 rise, u8 fall, u8 status, str output)...
 * where integers are big-endian and str is a u32 length then the bytes (a
 * NULL string is empty). A tombstone covers only its key and version.
 */
#ifndef SHOAL_WIRE_STATEMENT_H
#define SHOAL_WIRE_STATEMENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/registry.h"
#include "shoal/error.h"

#define SHOAL_STATEMENT_EVENT_CONTEXT "shoal-event-v1"

/* Writes ev's canonical bytes into buf if they fit in cap (buf may be NULL
 * with cap 0). Returns their length (more than cap: nothing was written),
 * or SHOAL_EINVAL for an event too large to be one (over 1 MiB). */
long shoal_statement_event_bytes(const struct shoal_instance *ev, uint8_t *buf, size_t cap);

/* Signs ev's canonical bytes with the owner's secret key (64 bytes,
 * libsodium layout). Returns 0, SHOAL_EINVAL or SHOAL_ENOMEM. */
int shoal_statement_sign_event(const struct shoal_instance *ev, const uint8_t *sk,
                               uint8_t sig[SHOAL_REG_SIG_BYTES]) SHOAL_MUST_CHECK;
/* True when ev carries a signature by pk over its canonical bytes. */
bool shoal_statement_verify_event(const struct shoal_instance *ev,
                                  const uint8_t pk[SHOAL_REG_PK_BYTES]);

/* An entry of an owner proof: BLAKE2b-256 of ev's canonical bytes, then a
 * byte 1 and its signature if it has one (else a byte 0). Returns 0 or
 * SHOAL_E*. */
int shoal_statement_event_hash(const struct shoal_instance *ev,
                               uint8_t out[SHOAL_REG_HASH_BYTES]) SHOAL_MUST_CHECK;
/* An owner proof's root: BLAKE2b-256 over "shoal-set-v1" and the n entry
 * hashes in ascending byte order (the caller sorts them). */
void shoal_statement_set_root(const uint8_t (*sorted)[SHOAL_REG_HASH_BYTES], size_t n,
                              uint8_t root[SHOAL_REG_HASH_BYTES]);
/* Signs / verifies an owner proof: Ed25519 over "shoal-proof-v1", str owner,
 * u64 generation, u64 version, u32 count and the 32-byte root. */
void shoal_statement_sign_proof(struct shoal_reg_proof *p, const uint8_t *sk);
bool shoal_statement_verify_proof(const struct shoal_reg_proof *p,
                                  const uint8_t pk[SHOAL_REG_PK_BYTES]);

/* Interim (until certificates): the sender key of an envelope that
 * shoal_wire_verify() or shoal_wire_verify_frame() (pass the frame without
 * its 4-byte prefix) accepted. Returns 0, or SHOAL_ETRUNC if too short. */
int shoal_statement_envelope_sender(const uint8_t *env, size_t len,
                                    uint8_t pk[SHOAL_REG_PK_BYTES]);

#endif
