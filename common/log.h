/*
 * Logging: one line per event. Lines about a message start with its queue
 * id (or a connection id before there is one): "ID: key=value, ...", the
 * shape Postfix log tools read. Each line names the role that logged it,
 * as Postfix names its programs: "mxspool/smtpd[PID]: ..." (received
 * mail and rejections), qmgr (the queue), smtp and lmtp (deliveries),
 * bounce (notifications), master (the rest). A .c file sets its role with
 * `#define LOG_ROLE "smtpd"` before its first #include.
 *
 * Levels have fixed meanings: debug (tracing), info (events), warn (something
 * odd that mxspool copes with), err (an operation failed), fatal (startup,
 * config or environment: exits 1), PANIC (a bug: aborts).
 */
#ifndef MXSPOOL_LOG_H
#define MXSPOOL_LOG_H

#include <stdbool.h>

enum log_level { LOG_LV_DEBUG, LOG_LV_INFO, LOG_LV_WARN, LOG_LV_ERR };
enum log_dest { LOG_TO_STDERR, LOG_TO_SYSLOG };

#ifndef LOG_ROLE
#define LOG_ROLE "master"
#endif

/*
 * ident: the syslog name ("mxspool"); host: the host name written on
 * stderr lines ("2026-01-01T00:00:00.000Z HOST mxspool/smtpd[PID]: "),
 * as syslog writes one; syslog lines get "mxspool/ROLE" as their tag.
 */
void log_open(const char *ident, const char *host, enum log_dest dest,
    enum log_level level);
void log_set_level(enum log_level level);
bool log_enabled(enum log_level level);
int log_level_parse(const char *s, enum log_level *out);
const char *log_level_str(enum log_level level);

/* A line at level as role ("smtpd"); tag: "warning: " etc. */
void log_at(enum log_level level, const char *role, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* An event about a message or connection: "ID: fmt..." at info level. */
void log_event_as(const char *role, const char *id, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Startup, config or environment failure: logs and exits 1. */
void fatal_as(const char *role, const char *fmt, ...)
    __attribute__((format(printf, 2, 3), noreturn));
/* A bug: logs where and aborts. Never reachable from network input. */
void log_panic(const char *role, const char *file, int line, const char *fmt,
    ...) __attribute__((format(printf, 4, 5), noreturn));

#define log_debug(...) log_at(LOG_LV_DEBUG, LOG_ROLE, __VA_ARGS__)
#define log_info(...) log_at(LOG_LV_INFO, LOG_ROLE, __VA_ARGS__)
#define log_warn(...) log_at(LOG_LV_WARN, LOG_ROLE, __VA_ARGS__)
#define log_err(...) log_at(LOG_LV_ERR, LOG_ROLE, __VA_ARGS__)
#define log_event(...) log_event_as(LOG_ROLE, __VA_ARGS__)
#define fatal(...) fatal_as(LOG_ROLE, __VA_ARGS__)
#define PANIC(...) log_panic(LOG_ROLE, __FILE__, __LINE__, __VA_ARGS__)
#define ASSERT(e)                                                              \
	do {                                                                   \
		if (!(e))                                                      \
			PANIC("assertion failed: %s", #e);                     \
	} while (0)

#endif
