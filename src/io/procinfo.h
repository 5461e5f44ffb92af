/* procinfo.h -- what the agent says about itself: version, build, uptime
 * (for GET /v1/info) and process figures read from /proc/self (for
 * /metrics: CPU time, resident memory, open file descriptors).
 */
#ifndef SHOAL_IO_PROCINFO_H
#define SHOAL_IO_PROCINFO_H

#include <stdbool.h>
#include <stdint.h>

/* "0.1.0" */
const char *shoal_procinfo_version(void);
/* The source's git commit at configure time and the build type, such as
 * "g418482f-dirty RelWithDebInfo"; "unknown" parts when not known. */
const char *shoal_procinfo_build(void);
/* Marks now as the start (the agent calls it once); uptime counts from it
 * on the monotonic clock. */
void shoal_procinfo_mark_start(void);
double shoal_procinfo_uptime_s(void);
/* The start as Unix time in seconds (wall clock at mark_start). */
double shoal_procinfo_start_time(void);

struct shoal_procstat {
    double cpu_user_s, cpu_system_s;
    uint64_t rss_bytes;
    uint64_t open_fds, max_fds;
};
/* Reads /proc/self; false if it cannot (fields then zero). */
bool shoal_procinfo_read(struct shoal_procstat *out);

#endif
