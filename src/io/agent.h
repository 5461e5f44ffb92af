/* agent.h -- `shoal agent`: one node's process (core + wire + libev). */
#ifndef SHOAL_IO_AGENT_H
#define SHOAL_IO_AGENT_H

/* Runs the agent until it leaves or is signalled. argv[0] is "agent".
 * Returns the process exit status (0 after a graceful leave, 2 on bad flags,
 * 1 on a start-up failure, each with a clear message on stderr). */
int shoal_agent_main(int argc, char **argv);

#endif
