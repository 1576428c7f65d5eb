#include "common/log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* The one piece of process-wide state: where log lines go and how many. */
static const char *log_prog = "ota";
static enum log_level log_threshold = LOG_LVL_INFO;

void log_init(const char *prog, enum log_level level)
{
	log_prog = prog;
	log_threshold = level;
}

void log_set_level(enum log_level level) { log_threshold = level; }

int log_level_parse(const char *s, enum log_level *out)
{
	static const char *names[] = {"error", "warn", "info", "debug"};
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		if (strcmp(s, names[i]) == 0) {
			*out = (enum log_level)i;
			return 0;
		}
	}
	return -1;
}

/* Control characters become \xNN: text a peer sent (a device's error, a
 * parser's quote of bad input) must not break a log line or forge one. */
static void log_escape(const char *in, char *out, size_t n)
{
	static const char hex[] = "0123456789abcdef";
	size_t o = 0;
	for (const unsigned char *p = (const unsigned char *)in; *p; p++) {
		if (*p >= 0x20 && *p != 0x7f) {
			if (o + 1 >= n)
				break;
			out[o++] = (char)*p;
		} else {
			if (o + 4 >= n)
				break;
			out[o++] = '\\';
			out[o++] = 'x';
			out[o++] = hex[*p >> 4];
			out[o++] = hex[*p & 15];
		}
	}
	out[o] = '\0';
}

static void log_vemit(enum log_level lvl, const char *tag, int errnum,
		      const char *fmt, va_list ap)
{
	if (lvl > log_threshold)
		return;
	char raw[1024], msg[1024];
	vsnprintf(raw, sizeof(raw), fmt, ap);
	log_escape(raw, msg, sizeof(msg));
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	struct tm tm;
	gmtime_r(&ts.tv_sec, &tm);
	char when[32];
	strftime(when, sizeof(when), "%H:%M:%S", &tm);
	if (errnum)
		fprintf(stderr, "%s.%03ld %s %s %s: %s\n", when,
			ts.tv_nsec / 1000000, log_prog, tag, msg,
			strerror(errnum));
	else
		fprintf(stderr, "%s.%03ld %s %s %s\n", when,
			ts.tv_nsec / 1000000, log_prog, tag, msg);
}

#define LOG__BODY(lvl, tag, errnum)                                            \
	va_list ap;                                                            \
	va_start(ap, fmt);                                                     \
	log_vemit(lvl, tag, errnum, fmt, ap);                                  \
	va_end(ap)

void log_warn(const char *fmt, ...)
{
	int e = errno;
	LOG__BODY(LOG_LVL_WARN, "warn", e);
}
void log_warnx(const char *fmt, ...) { LOG__BODY(LOG_LVL_WARN, "warn", 0); }
void log_info(const char *fmt, ...) { LOG__BODY(LOG_LVL_INFO, "info", 0); }
void log_debug(const char *fmt, ...) { LOG__BODY(LOG_LVL_DEBUG, "debug", 0); }

void fatal(const char *fmt, ...)
{
	int e = errno;
	LOG__BODY(LOG_LVL_ERROR, "fatal", e);
	exit(1);
}

void fatalx(const char *fmt, ...)
{
	LOG__BODY(LOG_LVL_ERROR, "fatal", 0);
	exit(1);
}
