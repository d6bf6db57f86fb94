/*
 * What a reload changes, and whether the running daemon applies it: every
 * option of mxspool.conf(5) is in one table (ctl/reload.c), as applied at
 * once or as taking effect at the next start. The daemon's reload logs
 * the options that changed, and `mxspoolctl reload` shows the same lists.
 */
#ifndef MXSPOOL_RELOAD_H
#define MXSPOOL_RELOAD_H

#include <stdbool.h>
#include <stddef.h>

#include "common/conf.h"

struct json_t;

/* Whether a new value is used by the running daemon. */
enum reload_when { RELOAD_APPLIED, RELOAD_AT_START };

/* What one reload did: lists of malloc'd strings, in table order. */
struct reload_report {
	char **applied; /* options changed and in force now */
	size_t napplied;
	char **at_next_start; /* options changed, used after a restart */
	size_t nat_next_start;
	char **warnings; /* the config's warnings, and what failed to apply */
	size_t nwarnings;
	size_t cap[3];
};

/*
 * Adds each option of new that differs from the one in use to r->applied
 * (compared with old, the config in force until now) or r->at_next_start
 * (compared with started, the config the daemon started with), by its
 * name in the config ("retry.max_age"); a domain section added, removed or
 * changed as `domain "example.com"`.
 */
void reload_diff(const struct conf *started, const struct conf *old,
    const struct conf *new, struct reload_report *r);
/* When option name is applied on reload (a name of conf_option_name()). */
enum reload_when reload_when(const char *name);
/* Whether the table has a row for option name (a unit test's check). */
bool reload_knows(const char *name);
/* Adds a warning for the operator. */
void reload_warn(struct reload_report *r, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* {"applied": [...], "at_next_start": [...], "warnings": [...]}, new. */
struct json_t *reload_report_json(const struct reload_report *r);
/* Frees what r holds and empties it. */
void reload_report_fini(struct reload_report *r);

#endif
