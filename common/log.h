/*
 * Logging: one line per event. Lines about a message start with its queue
 * id (or a connection id before there is one): "ID: key=value, ...", the
 * shape Postfix log tools read.
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

void log_open(const char *ident, enum log_dest dest, enum log_level level);
void log_set_level(enum log_level level);
bool log_enabled(enum log_level level);
int log_level_parse(const char *s, enum log_level *out);
const char *log_level_str(enum log_level level);

void log_debug(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_info(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_err(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* An event about a message or connection: "ID: fmt..." at info level. */
void log_event(const char *id, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Startup, config or environment failure: logs and exits 1. */
void fatal(const char *fmt, ...)
    __attribute__((format(printf, 1, 2), noreturn));
/* A bug: logs where and aborts. Never reachable from network input. */
void log_panic(const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4), noreturn));

#define PANIC(...) log_panic(__FILE__, __LINE__, __VA_ARGS__)
#define ASSERT(e)                                                              \
	do {                                                                   \
		if (!(e))                                                      \
			PANIC("assertion failed: %s", #e);                     \
	} while (0)

#endif
