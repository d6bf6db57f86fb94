/*
 * The control socket mxspoolctl talks to: a Unix stream socket carrying one
 * JSON object per line each way. A request names a command and carries an
 * id the replies repeat:
 *
 *   {"id": 7, "cmd": "list", "domain": "example.com", "limit": 10}
 *
 * A reply is {"id": 7, "result": {...}} or
 * {"id": 7, "error": {"code": "not_found", "message": "..."}}. Listings and
 * message bodies are streamed: any number of {"id": 7, "item": {...}} or
 * {"id": 7, "chunk": "...", "encoding": "text"|"base64"} lines, then the
 * result. Requests on one connection are answered in order.
 *
 * Commands run on the event loop and never block it; a long listing is
 * written as the socket drains, never built whole in memory.
 */
#ifndef MXSPOOL_CTL_H
#define MXSPOOL_CTL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/conf.h"
#include "queue/envelope.h"

struct ctl;
struct event_base;
struct queue;
struct sched;
struct dns;
struct server;
struct json_t;

/* Error codes in replies. */
#define CTL_E_PARSE "parse_error" /* not a JSON object, or too long */
#define CTL_E_BAD "bad_request"   /* missing or wrong arguments */
#define CTL_E_UNKNOWN "unknown_command"
#define CTL_E_NOT_FOUND "not_found"      /* no such message or mail */
#define CTL_E_CONFIRM "confirm_required" /* delete/bounce without yes */
#define CTL_E_CONFIG "invalid_config"    /* reload refused */
#define CTL_E_FAILED "failed"            /* the operation could not run */

/* What the commands act on; all borrowed for the ctl's lifetime. */
struct ctl_deps {
	struct queue *q;
	struct sched *sched;
	struct dns *dns;
	struct server *srv;
};

/* Reloads the config: 0, or -1 with every error in *errors (malloc'd). */
typedef int ctl_reload_cb(void *arg, char **errors);

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
 * Pure helpers, shared by the daemon and mxspoolctl (ctl/ctl_util.c).
 */

/* qshape's age buckets: 5m 10m 20m 40m 80m 160m 320m 640m 1280m, over. */
#define CTL_AGE_BUCKETS 10
/* The bucket of an age in seconds: 0 (under 5m) .. 9 (1280m and over). */
int ctl_age_bucket(int64_t age);
/* "5m", ..., "1280m", "1280m+". */
const char *ctl_age_bucket_label(int i);
/* A short human duration: "42s", "12m", "3h05m", "2d04h". */
void ctl_fmt_age(int64_t secs, char *buf, size_t len);
/* A short human size: "512", "10.2K", "3.4M", "1.1G". */
void ctl_fmt_size(uint64_t bytes, char *buf, size_t len);
/* Whether any pending recipient of env goes to domain, or to a destination
 * named domain (any case). */
bool ctl_msg_matches(
    const struct conf *cf, const struct envelope *env, const char *domain);
/* The message as JSON (a new reference): id, arrival (unix seconds), size,
 * sender, held, attempts, next_attempt, last_error, recipients [{address,
 * state, dsn, last_error, destination}]. */
struct json_t *ctl_msg_json(const struct conf *cf, const struct envelope *env);
/* A JSON string of s (null for NULL); bytes that are not UTF-8, such as
 * an 8-bit sender or a remote reply, become '?'. */
struct json_t *ctl_json_str(const char *s);

#endif
