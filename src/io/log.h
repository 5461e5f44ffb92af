/* log.h -- levelled logging to stderr for the agent.
 *
 * One line per call, written with a single write(2) so that lines from
 * concurrent processes sharing a terminal never interleave:
 *   2026-11-26T14:00:00.123Z info swim: member n2 127.0.0.1:7950 alive -> suspect
 * The timestamp is UTC wall-clock time with milliseconds; the module names
 * the part of the agent that speaks ("agent", "swim", "udp", "api", ...).
 */
#ifndef SHOAL_IO_LOG_H
#define SHOAL_IO_LOG_H

#include <stdarg.h>
#include <stdbool.h>

enum shoal_log_level {
    SHOAL_LOG_DEBUG = 0,
    SHOAL_LOG_INFO = 1,
    SHOAL_LOG_WARN = 2,
    SHOAL_LOG_ERROR = 3,
};

/* Lines below level are discarded. The default is SHOAL_LOG_INFO. */
void shoal_log_set_level(enum shoal_log_level level);
enum shoal_log_level shoal_log_get_level(void);
/* JSON lines instead of text: {"ts","level","subsystem","msg","fields"}
 * where fields holds the pid and, once set, the node's name. */
void shoal_log_set_json(bool json);
void shoal_log_set_node(const char *name);
bool shoal_log_enabled(enum shoal_log_level level);
/* "debug", "info", "warn", "error" -> level; returns 0 or SHOAL_EINVAL. */
int shoal_log_level_parse(const char *s, enum shoal_log_level *out);
const char *shoal_log_level_name(enum shoal_log_level level);

/* Formats and writes one line (a trailing newline is added; control
 * characters in the message are replaced so a line stays one line). */
void shoal_log(enum shoal_log_level level, const char *module, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void shoal_vlog(enum shoal_log_level level, const char *module, const char *fmt, va_list ap)
    __attribute__((format(printf, 3, 0)));

#define shoal_log_debug(mod, ...) shoal_log(SHOAL_LOG_DEBUG, mod, __VA_ARGS__)
#define shoal_log_info(mod, ...) shoal_log(SHOAL_LOG_INFO, mod, __VA_ARGS__)
#define shoal_log_warn(mod, ...) shoal_log(SHOAL_LOG_WARN, mod, __VA_ARGS__)
#define shoal_log_error(mod, ...) shoal_log(SHOAL_LOG_ERROR, mod, __VA_ARGS__)

#endif
