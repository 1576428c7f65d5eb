/*
 * log: a tiny logging API in the manner of OpenBSD daemons.
 * One line per event on stderr: "<time> <prog> <level> <message>", key=value
 * where a machine will read it. Never pass secrets.
 */
#ifndef OTA_LOG_H
#define OTA_LOG_H

#include <stdnoreturn.h>

enum log_level { LOG_LVL_ERROR, LOG_LVL_WARN, LOG_LVL_INFO, LOG_LVL_DEBUG };

/* Program name (borrowed: must outlive logging) and threshold. */
void log_init(const char *prog, enum log_level level);
void log_set_level(enum log_level level);
/* "error", "warn", "info", "debug" -> level; returns -1 when unknown. */
int log_level_parse(const char *s, enum log_level *out);

/* log_warn appends ": <strerror(errno)>"; log_warnx does not. */
void log_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_warnx(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_info(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_debug(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
noreturn void fatal(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
noreturn void fatalx(const char *fmt, ...)
    __attribute__((format(printf, 1, 2)));

#endif
