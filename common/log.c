/* Logging to stderr (with a timestamp) or to syslog (facility mail). */
#include <pthread.h>
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
static char log_host[256] = "localhost";
static enum log_dest log_dest = LOG_TO_STDERR;
/* Read by every thread, set on the loop at start and by each reload. */
static _Atomic enum log_level log_min = LOG_LV_INFO;
/* syslog(3) keeps one tag: the role's is set under this lock. A reload
 * changes the destination and host under it too, while threads log. */
static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;
static char log_tag[128];

static const char *const log_names[] = {
    [LOG_LV_DEBUG] = "debug",
    [LOG_LV_INFO] = "info",
    [LOG_LV_WARN] = "warn",
    [LOG_LV_ERR] = "error",
};

void
log_open(const char *ident, const char *host, enum log_dest dest,
    enum log_level level)
{
	pthread_mutex_lock(&log_lock);
	if (log_dest == LOG_TO_SYSLOG && dest != LOG_TO_SYSLOG)
		closelog();
	log_ident = ident;
	if (host != NULL && host[0] != '\0')
		snprintf(log_host, sizeof(log_host), "%s", host);
	log_dest = dest;
	log_min = level;
	log_tag[0] = '\0';
	pthread_mutex_unlock(&log_lock);
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
static void __attribute__((format(printf, 4, 0)))
log_vwrite(enum log_level level, const char *role, const char *tag,
    const char *fmt, va_list ap)
{
	static const int prio[] = {
	    [LOG_LV_DEBUG] = LOG_DEBUG,
	    [LOG_LV_INFO] = LOG_INFO,
	    [LOG_LV_WARN] = LOG_WARNING,
	    [LOG_LV_ERR] = LOG_ERR,
	};
	char msg[4096];

	vsnprintf(msg, sizeof(msg), fmt, ap);
	pthread_mutex_lock(&log_lock);
	if (log_dest == LOG_TO_SYSLOG) {
		char want[sizeof(log_tag)];

		snprintf(want, sizeof(want), "%s/%s", log_ident, role);
		if (strcmp(want, log_tag) != 0) {
			memcpy(log_tag, want, sizeof(log_tag));
			openlog(log_tag, LOG_PID | LOG_NDELAY, LOG_MAIL);
		}
		syslog(prio[level], "%s%s", tag, msg);
		pthread_mutex_unlock(&log_lock);
		return;
	}

	struct timespec ts;
	struct tm tm;
	char when[32];

	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%S", &tm);
	/* One fprintf per line so that lines from threads do not interleave. */
	fprintf(stderr, "%s.%03ldZ %s %s/%s[%ld]: %s%s\n", when,
	    ts.tv_nsec / 1000000, log_host, log_ident, role, (long)getpid(),
	    tag, msg);
	pthread_mutex_unlock(&log_lock);
}

static void __attribute__((format(printf, 4, 5))) log_put(enum log_level level,
    const char *role, const char *tag, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_vwrite(level, role, tag, fmt, ap);
	va_end(ap);
}

void
log_at(enum log_level level, const char *role, const char *fmt, ...)
{
	static const char *const tags[] = {
	    [LOG_LV_DEBUG] = "debug: ",
	    [LOG_LV_INFO] = "",
	    [LOG_LV_WARN] = "warning: ",
	    [LOG_LV_ERR] = "error: ",
	};
	va_list ap;

	if (!log_enabled(level))
		return;
	va_start(ap, fmt);
	log_vwrite(level, role, tags[level], fmt, ap);
	va_end(ap);
}

void
log_event_as(const char *role, const char *id, const char *fmt, ...)
{
	char line[4096];
	va_list ap;

	if (!log_enabled(LOG_LV_INFO))
		return;
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	log_put(LOG_LV_INFO, role, "", "%s: %s", id, line);
}

void
fatal_as(const char *role, const char *fmt, ...)
{
	char msg[2048];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	log_put(LOG_LV_ERR, role, "fatal: ", "%s", msg);
	/* Whoever started the daemon must see why it did not start. */
	if (log_dest == LOG_TO_SYSLOG)
		fprintf(stderr, "%s: fatal: %s\n", log_ident, msg);
	exit(1);
}

void
log_panic(const char *role, const char *file, int line, const char *fmt, ...)
{
	char msg[2048];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	log_put(LOG_LV_ERR, role, "panic: ", "%s:%d: %s", file, line, msg);
	abort();
}
