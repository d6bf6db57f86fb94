/*
 * queue/sched: the delivery scheduler. Messages are grouped by destination
 * (a static route, or the recipient domain routed by MX). A destination is
 * up, backing off or probing (queue/retry.h): while it fails, one probe at a
 * time tests it and the rest of its mail waits without spending attempts;
 * the first success releases everything held for it, delivered over a
 * slowly widening number of connections (DESIGN.md, contract 3).
 */
#ifndef MXSPOOL_SCHED_H
#define MXSPOOL_SCHED_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/conf.h"
#include "queue/envelope.h"

struct event_base;
struct queue;
struct dns;
struct sched;
struct deliver_ops;

/* Schedules everything already queued, and from then on every message the
 * queue reports as arrived, over sessions opened through ops
 * (queue/deliver.h). cf, q, dns and ops are borrowed. */
struct sched *sched_new(struct event_base *base, const struct conf *cf,
    struct queue *q, struct dns *dns, const struct deliver_ops *ops);
/* Drops connections at once (mail in flight is simply due again at the
 * next start). NULL is a no-op. */
void sched_free(struct sched *s);
/* After a reload: later decisions use cf. */
void sched_set_conf(struct sched *s, const struct conf *cf);

/* What the CLI shows per destination. */
struct sched_dest_info {
	const char *name;  /* the route, or the recipient domain */
	const char *state; /* "up", "backing off", "probing" */
	bool suspect;      /* the rejection guard holds its 5xx */
	bool paused;       /* by the operator (sched_pause) */
	size_t messages;   /* jobs waiting or in flight */
	size_t connections;
	unsigned concurrency;
	int64_t next_probe; /* unix ms; 0 when not backing off */
	const char *last_error;
};
/* Calls cb for each destination that holds mail, and each paused one. */
void sched_foreach_dest(struct sched *s,
    void (*cb)(void *arg, const struct sched_dest_info *info), void *arg);

/*
 * When recipient idx of env is to be tried next, as the scheduler sees it
 * now: unix seconds (now or later), or 0 when nothing is planned (done,
 * held, or its destination paused). *state gets its destination's state
 * ("up", "backing off", "probing", "paused"), *why the destination's last
 * error or NULL (borrowed until the scheduler next runs).
 */
int64_t sched_rcpt_next(struct sched *s, const struct envelope *env, size_t idx,
    const char **state, const char **why);
/* Whether a message is being delivered now (a transaction is open). */
bool sched_in_flight(struct sched *s, const char *qid);

/* Everything for domain (NULL: every destination) is due now, and a
 * destination backing off is probed at once. Returns messages affected.
 * The calls below act on a message in the window (queue_get admits one)
 * and return -1 for any other. */
size_t sched_flush(struct sched *s, const char *domain);
/* One message is due now. Returns -1 if it is not queued. */
int sched_flush_msg(struct sched *s, const char *qid);
/* Hold (stop scheduling) or release a message; the flag is stored. */
int sched_hold(struct sched *s, const char *qid, bool hold);
/*
 * Takes a message out of the queue (delete), or returns it to its sender
 * with a DSN saying why (bounce; no DSN for the null sender). A message in
 * flight goes once its attempt ends. Returns -1 if it is not queued.
 */
int sched_delete(struct sched *s, const char *qid);
int sched_bounce(struct sched *s, const char *qid, const char *why);

/*
 * The rejection guard's way out for an operator. trust: the destinations
 * named (a domain or a route) are no longer suspect, and their held mail
 * is due now; returns how many were suspect. bounce_suspect: every
 * recipient held after a suspect 5xx at the destination named is returned
 * to its sender with a DSN, and the destination is trusted again; returns
 * the recipients returned, or -1 if no destination has that name.
 */
int sched_trust(struct sched *s, const char *name);
/* Streams over the destination's mail in the spool, a page at a time:
 * cb gets the count at the end (not if the scheduler is freed first).
 * Returns -1 if no destination has that name. */
int sched_bounce_suspect(struct sched *s, const char *name,
    void (*cb)(void *arg, long returned), void *arg);
/*
 * An operator's pause (or, pause false, resume) of a destination: a route
 * as summary shows it, or a domain, which names the destination its mail
 * goes to (key gets the destination's name). While paused, no delivery is
 * tried there, for mail queued or new; the recipients of a message at
 * other destinations are delivered. The pause is stored: it outlasts a
 * restart. resume makes everything queued for it due now. Returns 0 (and
 * the messages queued for it), or a sched_pause_status.
 */
enum sched_pause_status {
	SCHED_NO_DEST = -1,    /* name is no route, relay domain or
				  destination with mail */
	SCHED_SAME = -2,       /* pause: it is paused already */
	SCHED_NOT_PAUSED = -3, /* resume: it is not paused */
};
int sched_pause(struct sched *s, const char *name, bool pause, char *key,
    size_t len, uint64_t *messages);
/* mxspoold --drain-only: nothing is delivered from now on (the queue is
 * handed to another node with mxspoolctl xfer). */
void sched_set_drain_only(struct sched *s);

/* A message read into the window for an operator's command goes back to
 * the spool unless the scheduler has work for it now. */
void sched_tidy(struct sched *s, const char *qid);

/*
 * The destination a recipient of env belongs to: the route as written for
 * a static route (or the bounce_route for mxspool's own notifications),
 * else the recipient's domain in lower case. Written into buf.
 */
const char *sched_dest_key(const struct conf *cf, const struct envelope *env,
    const char *rcpt, char *buf, size_t len);
/* The destination of a lane's mail (queue/qindex.h), into buf. */
const char *sched_lane_dest_key(
    const struct conf *cf, const char *lane, char *buf, size_t len);

#endif
