/*
 * The daemon's side of the control socket (the protocol is in
 * ctl/ctl_proto.h). Commands run on the event loop and never block it; a
 * long listing is written as the socket drains, never built whole in
 * memory.
 */
#ifndef MXSPOOL_CTL_H
#define MXSPOOL_CTL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/conf.h"
#include "ctl/ctl_proto.h"
#include "queue/envelope.h"

struct ctl;
struct event_base;
struct queue;
struct sched;
struct dns;
struct server;
struct json_t;

/* What the commands act on; all borrowed for the ctl's lifetime. */
struct ctl_deps {
	struct queue *q;
	struct sched *sched;
	struct dns *dns;
	struct server *srv;
};

struct reload_report;

/* Reloads the config: 0, with what changed and its warnings in *report,
 * or -1 with every error in *errors (malloc'd). */
typedef int ctl_reload_cb(
    void *arg, char **errors, struct reload_report *report);

/* cf is borrowed until ctl_free or the next ctl_set_conf. */
struct ctl *ctl_new(struct event_base *base, const struct conf *cf,
    const struct ctl_deps *deps, ctl_reload_cb *reload, void *arg);
/*
 * Creates the socket at cf->control_socket (and its directory) with the
 * configured mode, owner and group. A stale socket is replaced; one that a
 * running daemon answers on is an error. On failure says why in err.
 */
int ctl_listen(struct ctl *c, char *err, size_t errlen);
/* After a reload: a new socket path, mode or owner takes effect now. */
int ctl_set_conf(
    struct ctl *c, const struct conf *cf, char *err, size_t errlen);
/* Closes every connection and removes the socket. NULL is a no-op. */
void ctl_free(struct ctl *c);

/*
 * The daemon's helpers for messages and JSON (ctl/ctl_util.c).
 */

/* The message as JSON (a new reference): id, arrival (unix seconds), size,
 * sender, held, attempts, next_attempt, last_error, recipients [{address,
 * state, dsn, last_error, destination}]. */
struct json_t *ctl_msg_json(const struct conf *cf, const struct envelope *env);
/* A JSON string of s (null for NULL); bytes that are not UTF-8, such as
 * an 8-bit sender or a remote reply, become '?'. In ctl/ctl.c, as the
 * error replies use it too. */
struct json_t *ctl_json_str(const char *s);

/* What list and the bulk commands narrow a selection by (NULL, -1, false:
 * no such filter). */
struct ctl_filter {
	const char *sender; /* "" the null sender */
	const char *rcpt;   /* a recipient still pending */
	int64_t older;      /* age at least, seconds */
	int64_t younger;    /* age under, seconds */
	bool held;          /* held messages only */
	int64_t now;        /* unix seconds the ages count from */
};

/* Whether a filter narrows anything. */
bool ctl_filter_any(const struct ctl_filter *f);
/* Whether env passes every filter of f. */
bool ctl_filter_match(const struct ctl_filter *f, const struct envelope *env);
/* Two addresses are one: the local part exact, the domain in any case,
 * U-labels or A-labels (RFC 5890); "" only equals "". */
bool ctl_addr_equal(const char *a, const char *b);

#endif
