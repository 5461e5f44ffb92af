/* internal.h -- what client.c shares with the library's other files
 * (private; none of it is exported).
 */
#ifndef SHOAL_CLIENT_INTERNAL_H
#define SHOAL_CLIENT_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>

#include "core/addr.h"
#include "shoal/client.h"

/* The agent's address, and its text into *text. */
const struct shoal_addr *shoal_client__agent(struct shoal_client *c, const char **text);
/* Readable once shoal_client_free() begins. */
int shoal_client__wake_fd(struct shoal_client *c);
/* The bound of one request's waits (the retry deadline). */
uint32_t shoal_client__timeout_ms(struct shoal_client *c);
/* Counts one request (and a failure) in the stats. */
void shoal_client__count(struct shoal_client *c, bool failed);
/* Sets the last error's message. */
void shoal_client__error(struct shoal_client *c, const char *msg);

#endif
