/* Logging to stderr (with a timestamp) or to syslog (facility mail). */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include "common/log.h"

static const char *log_ident = "mxspool";
static enum log_dest log_dest = LOG_TO_STDERR;
static enum log_level log_min = LOG_LV_INFO;

static const char *const log_names[] = {
    [LOG_LV_DEBUG] = "debug",
    [LOG_LV_INFO] = "info",
    [LOG_LV_WARN] = "warn",
    [LOG_LV_ERR] = "error",
};

void
log_open(const char *ident, enum log_dest dest, enum log_level level)
{
	if (log_dest == LOG_TO_SYSLOG && dest != LOG_TO_SYSLOG)
		closelog();
	log_ident = ident;
	log_dest = dest;
	log_min = level;
	if (dest == LOG_TO_SYSLOG)
		openlog(ident, LOG_PID | LOG_NDELAY, LOG_MAIL);
}

void
log_set_level(enum log_level level)
{
	log_min = level;
}

bool
log_enabled(enum log_level level)
{
	return level >= log_min;
}

int
log_level_parse(const char *s, enum log_level *out)
{
	for (size_t i = 0; i < sizeof(log_names) / sizeof(log_names[0]); i++)
		if (strcasecmp(s, log_names[i]) == 0) {
			*out = (enum log_level)i;
			return 0;
		}
	if (strcasecmp(s, "warning") == 0) {
		*out = LOG_LV_WARN;
		return 0;
	}
	return -1;
}

const char *
log_level_str(enum log_level level)
{
	return log_names[level];
}

/*
 * Info lines carry no level word, like Postfix; the others say
 * "warning:", "error:" and so on, so that grep finds them.
 */
static void __attribute__((format(printf, 3, 0)))
log_vwrite(enum log_level level, const char *tag, const char *fmt, va_list ap)
{
	static const int prio[] = {
	    [LOG_LV_DEBUG] = LOG_DEBUG,
	    [LOG_LV_INFO] = LOG_INFO,
	    [LOG_LV_WARN] = LOG_WARNING,
	    [LOG_LV_ERR] = LOG_ERR,
	};
	char msg[4096];

	vsnprintf(msg, sizeof(msg), fmt, ap);
	if (log_dest == LOG_TO_SYSLOG) {
		syslog(prio[level], "%s%s", tag, msg);
		return;
	}

	struct timespec ts;
	struct tm tm;
	char when[32];

	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%S", &tm);
	/* One fprintf per line so that lines from threads do not interleave. */
	fprintf(stderr, "%s.%03ldZ %s[%ld]: %s%s\n", when, ts.tv_nsec / 1000000,
	    log_ident, (long)getpid(), tag, msg);
}

static void __attribute__((format(printf, 3, 4)))
log_put(enum log_level level, const char *tag, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_vwrite(level, tag, fmt, ap);
	va_end(ap);
}

#define LOG_BODY(level, tag)                                                   \
	do {                                                                   \
		va_list ap;                                                    \
		if (!log_enabled(level))                                       \
			return;                                                \
		va_start(ap, fmt);                                             \
		log_vwrite(level, tag, fmt, ap);                               \
		va_end(ap);                                                    \
	} while (0)

void
log_debug(const char *fmt, ...)
{
	LOG_BODY(LOG_LV_DEBUG, "debug: ");
}

void
log_info(const char *fmt, ...)
{
	LOG_BODY(LOG_LV_INFO, "");
}

void
log_warn(const char *fmt, ...)
{
	LOG_BODY(LOG_LV_WARN, "warning: ");
}

void
log_err(const char *fmt, ...)
{
	LOG_BODY(LOG_LV_ERR, "error: ");
}

void
log_event(const char *id, const char *fmt, ...)
{
	char line[4096];
	va_list ap;

	if (!log_enabled(LOG_LV_INFO))
		return;
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	log_info("%s: %s", id, line);
}

void
fatal(const char *fmt, ...)
{
	char msg[2048];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	log_put(LOG_LV_ERR, "fatal: ", "%s", msg);
	/* Whoever started the daemon must see why it did not start. */
	if (log_dest == LOG_TO_SYSLOG)
		fprintf(stderr, "%s: fatal: %s\n", log_ident, msg);
	exit(1);
}

void
log_panic(const char *file, int line, const char *fmt, ...)
{
	char msg[2048];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	log_put(LOG_LV_ERR, "panic: ", "%s:%d: %s", file, line, msg);
	abort();
}
