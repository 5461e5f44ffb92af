/* procinfo.c -- version, build, uptime and /proc/self figures (procinfo.h).
 * SHOAL_VERSION and SHOAL_BUILD come from CMake (CMakeLists.txt).
 */
#include "io/procinfo.h"

#include <dirent.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#ifndef SHOAL_VERSION
#define SHOAL_VERSION "unknown"
#endif
#ifndef SHOAL_BUILD
#define SHOAL_BUILD "unknown"
#endif

static struct timespec start_mono;
static double start_wall;

const char *shoal_procinfo_version(void) { return SHOAL_VERSION; }

const char *shoal_procinfo_build(void) { return SHOAL_BUILD; }

void shoal_procinfo_mark_start(void)
{
    struct timespec w;
    clock_gettime(CLOCK_MONOTONIC, &start_mono);
    clock_gettime(CLOCK_REALTIME, &w);
    start_wall = (double)w.tv_sec + (double)w.tv_nsec / 1e9;
}

double shoal_procinfo_uptime_s(void)
{
    struct timespec now;
    if (start_mono.tv_sec == 0 && start_mono.tv_nsec == 0)
        return 0;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)(now.tv_sec - start_mono.tv_sec) +
           (double)(now.tv_nsec - start_mono.tv_nsec) / 1e9;
}

double shoal_procinfo_start_time(void) { return start_wall; }

bool shoal_procinfo_read(struct shoal_procstat *out)
{
    bool ok = true;
    memset(out, 0, sizeof(*out));
    long tick = sysconf(_SC_CLK_TCK), page = sysconf(_SC_PAGESIZE);

    /* /proc/self/stat: fields after the ")" that ends the command name;
     * utime and stime are the 14th and 15th fields overall. */
    FILE *f = fopen("/proc/self/stat", "re");
    char line[1024];
    if (f && fgets(line, sizeof(line), f)) {
        const char *p = strrchr(line, ')');
        unsigned long ut = 0, st = 0;
        if (p && sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st) == 2 &&
            tick > 0) {
            out->cpu_user_s = (double)ut / (double)tick;
            out->cpu_system_s = (double)st / (double)tick;
        } else {
            ok = false;
        }
    } else {
        ok = false;
    }
    if (f)
        fclose(f);

    f = fopen("/proc/self/statm", "re");
    unsigned long size = 0, resident = 0;
    if (f && fscanf(f, "%lu %lu", &size, &resident) == 2 && page > 0)
        out->rss_bytes = (uint64_t)resident * (uint64_t)page;
    else
        ok = false;
    if (f)
        fclose(f);

    DIR *d = opendir("/proc/self/fd");
    if (d) {
        struct dirent *e;
        while ((e = readdir(d)) != NULL)
            if (e->d_name[0] != '.')
                out->open_fds++;
        closedir(d);
        if (out->open_fds)
            out->open_fds--; /* the directory stream's own descriptor */
    } else {
        ok = false;
    }
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0)
        out->max_fds = rl.rlim_cur == RLIM_INFINITY ? 0 : (uint64_t)rl.rlim_cur;
    return ok;
}
