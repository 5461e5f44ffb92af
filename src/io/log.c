/* log.c -- levelled stderr logging (format in docs/interfaces.md).
 *
 * Each line is assembled in a stack buffer and written with one write(2)
 * call: stdio buffering would split or delay lines, and the agent's logs are
 * often read live next to other agents' logs. Long messages are cut, never
 * split over two lines.
 */
#include "io/log.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "shoal/error.h"

#define LOG_LINE_MAX 1024

static enum shoal_log_level log_level = SHOAL_LOG_INFO;
static bool log_json;
static char log_node[64]; /* "fields": {"node": ...} in JSON lines, once set */

static const char *const level_names[] = {"debug", "info", "warn", "error"};

void shoal_log_set_level(enum shoal_log_level level) { log_level = level; }

void shoal_log_set_json(bool json) { log_json = json; }

void shoal_log_set_node(const char *name) { snprintf(log_node, sizeof(log_node), "%s", name); }

/* Appends s to line as the inside of a JSON string; returns the new length
 * (never past max, never cutting an escape). */
static size_t json_escape(char *line, size_t n, size_t max, const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        char esc[8];
        size_t el;
        if (c == '"' || c == '\\') {
            esc[0] = '\\';
            esc[1] = (char)c;
            el = 2;
        } else if (c >= 0x80) { /* keep every line valid JSON whatever the bytes */
            esc[0] = '?';
            el = 1;
        } else if (c < 0x20 || c == 0x7f) {
            el = (size_t)snprintf(esc, sizeof(esc), "\\u%04x", c);
        } else {
            esc[0] = (char)c;
            el = 1;
        }
        if (n + el > max)
            break;
        memcpy(line + n, esc, el);
        n += el;
    }
    return n;
}

static void write_line(const char *line, size_t n)
{
    for (size_t off = 0; off < n;) {
        ssize_t w = write(STDERR_FILENO, line + off, n - off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            break;
        off += (size_t)w;
    }
}

/* {"ts":..., "level":..., "subsystem":..., "msg":..., "fields":{...}} */
static void vlog_json(enum shoal_log_level level, const char *module, const char *fmt, va_list ap)
{
    char msg[LOG_LINE_MAX], line[2 * LOG_LINE_MAX + 256], ts_s[40];
    struct timespec ts;
    struct tm tm;
    size_t n;
    const size_t max = sizeof(line) - 64; /* room for the closing fields */

    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    n = strftime(ts_s, sizeof(ts_s), "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(ts_s + n, sizeof(ts_s) - n, ".%03ldZ", ts.tv_nsec / 1000000);
    int m = vsnprintf(msg, sizeof(msg), fmt, ap);
    size_t mlen = m < 0 ? 0 : (size_t)m < sizeof(msg) ? (size_t)m : sizeof(msg) - 1;
    n = (size_t)snprintf(line, sizeof(line), "{\"ts\":\"%s\",\"level\":\"%s\",\"subsystem\":\"",
                         ts_s, shoal_log_level_name(level));
    n = json_escape(line, n, max, module, strlen(module));
    n += (size_t)snprintf(line + n, sizeof(line) - n, "\",\"msg\":\"");
    n = json_escape(line, n, max, msg, mlen);
    n += (size_t)snprintf(line + n, sizeof(line) - n, "\",\"fields\":{\"pid\":%ld",
                          (long)getpid());
    if (log_node[0]) {
        n += (size_t)snprintf(line + n, sizeof(line) - n, ",\"node\":\"");
        n = json_escape(line, n, sizeof(line) - 8, log_node, strlen(log_node));
        line[n++] = '"';
    }
    line[n++] = '}';
    line[n++] = '}';
    line[n++] = '\n';
    write_line(line, n);
}

enum shoal_log_level shoal_log_get_level(void) { return log_level; }

bool shoal_log_enabled(enum shoal_log_level level) { return level >= log_level; }

int shoal_log_level_parse(const char *s, enum shoal_log_level *out)
{
    for (int i = SHOAL_LOG_DEBUG; i <= SHOAL_LOG_ERROR; i++) {
        if (strcmp(s, level_names[i]) == 0) {
            *out = (enum shoal_log_level)i;
            return 0;
        }
    }
    return SHOAL_EINVAL;
}

const char *shoal_log_level_name(enum shoal_log_level level)
{
    if (level < SHOAL_LOG_DEBUG || level > SHOAL_LOG_ERROR)
        return "?";
    return level_names[level];
}

void shoal_vlog(enum shoal_log_level level, const char *module, const char *fmt, va_list ap)
{
    char line[LOG_LINE_MAX];
    struct timespec ts;
    struct tm tm;
    size_t n, start;
    int saved_errno = errno; /* callers often log right before using errno */

    if (!shoal_log_enabled(level)) {
        errno = saved_errno;
        return;
    }
    if (log_json) {
        vlog_json(level, module, fmt, ap);
        errno = saved_errno;
        return;
    }
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    n = strftime(line, sizeof(line), "%Y-%m-%dT%H:%M:%S", &tm);
    n += (size_t)snprintf(line + n, sizeof(line) - n, ".%03ldZ %s %s: ", ts.tv_nsec / 1000000,
                          shoal_log_level_name(level), module);
    if (n >= sizeof(line) - 1)
        n = sizeof(line) - 2;
    start = n;
    int m = vsnprintf(line + n, sizeof(line) - n - 1, fmt, ap);
    if (m > 0)
        n += (size_t)m < sizeof(line) - n - 1 ? (size_t)m : sizeof(line) - n - 2;
    for (size_t i = start; i < n; i++)
        if ((unsigned char)line[i] < 0x20 || line[i] == 0x7f)
            line[i] = '?';
    line[n++] = '\n';
    write_line(line, n);
    errno = saved_errno;
}

void shoal_log(enum shoal_log_level level, const char *module, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    shoal_vlog(level, module, fmt, ap);
    va_end(ap);
}
