/* agent.h -- `shoal agent`: one node's process (core + wire + libev). */
#ifndef SHOAL_IO_AGENT_H
#define SHOAL_IO_AGENT_H

#include <stddef.h>

/* Runs the agent until it leaves or is signalled. argv[0] is "agent".
 * Returns the process exit status (0 after a graceful leave, 2 on bad flags,
 * 1 on a start-up failure, each with a clear message on stderr). */
int shoal_agent_main(int argc, char **argv);

struct shoal_agent_flag;
/* The agent's flag table (io/agentconf.h) and the notes --help prints after
 * it: for the man page and shell completion. */
const struct shoal_agent_flag *shoal_agent_flags(size_t *n);
const char *shoal_agent_help_notes(void);

#endif
