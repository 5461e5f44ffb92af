/* fuzz_recv.c -- libFuzzer entry point for the whole receive path:
 * envelope checks, payload decode and validation, then the SWIM core.
 * The work is in fuzz_util.c, which the corpus replay test shares.
 * Build and run: scripts/fuzz.sh [seconds].
 */
#include <stddef.h>
#include <stdint.h>

#include "fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    (void)fuzz_one(data, size);
    return 0;
}
