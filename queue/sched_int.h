/*
 * The scheduler's private structures, shared by queue/sched.c (jobs,
 * destinations, the timer), queue/sched_run.c (delivery sessions) and
 * queue/sched_notify.c (notifications, max_age and warn_after).
 */
#ifndef MXSPOOL_SCHED_INT_H
#define MXSPOOL_SCHED_INT_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/queue.h>

#include "dns/dns.h"
#include "queue/deliver.h"
#include "queue/dsn.h"
#include "queue/guard.h"
#include "queue/queue.h"
#include "queue/retry.h"
#include "queue/sched.h"
#include "queue/window.h"

#define SCHED_LOADS 8        /* bodies read at once per destination */
#define SCHED_SCAN 64        /* ready jobs a session looks through */
#define SCHED_IDLE 5         /* seconds an idle connection waits */
#define SCHED_SWEEP_MS 60000 /* max_age / warn_after checks, at most */

#define NO_POS ((size_t)-1)

struct dest;
struct smsg;
struct sched;

/*
 * An asynchronous call (a body read, a notification being queued) whose
 * answer may come after sched_free(): sched_free orphans them (s = NULL),
 * and the answer then only frees its request.
 */
struct sched_call {
	LIST_ENTRY(sched_call) link;
	struct sched *s;
};
LIST_HEAD(sched_call_list, sched_call);
void sched_call_begin(struct sched *s, struct sched_call *c);
/* The scheduler the answer belongs to, or NULL if it is gone. */
struct sched *sched_call_end(struct sched_call *c);

struct job {
	struct smsg *m;
	struct dest *d;
	size_t *ridx; /* indices of env->rcpts this job delivers */
	size_t nridx;
	int64_t due; /* unix ms */
	size_t hpos; /* place in the deferred heap, or NO_POS */
	bool ready;  /* on d->ready */
	bool in_flight;
	TAILQ_ENTRY(job) link;
	struct client_msg cm; /* while in flight */
};

TAILQ_HEAD(job_list, job);

struct smsg {
	char qid[QID_SIZE];
	struct envelope *env; /* the queue's; valid while the message is */
	struct job **jobs;
	size_t njobs, capjobs;
	char *body;
	size_t len;
	bool loading;
	struct dest *load_dest;
	unsigned in_flight;
	unsigned dsn_pending; /* notifications being queued */
	enum { DOOM_NONE, DOOM_DELETE, DOOM_BOUNCE } doom; /* after flight */
	bool *notifying; /* per recipient: a failure notice is being queued,
			    so it is neither planned nor returned again */
	int64_t *known;  /* per recipient: when the store last accepted it
			    (unix s; 0: never), read with the body; or NULL */
	char *doom_why;
};

struct sess {
	TAILQ_ENTRY(sess) link;
	struct dest *d;
	struct client_session *cs;
	struct dns_answer *ans;
	struct client_target target;
	bool idle;
	bool greeting_probe; /* of a destination refusing connections */
	unsigned nmsgs;
};

/* A lane (queue/qindex.h) as the scheduler reads it: a cursor over its
 * index entries in arrival order, moved as queue/window.h decides. */
struct slane {
	char name[LANE_SIZE];
	struct dest *d;
	TAILQ_ENTRY(slane) link; /* on d->lanes */
	char cursor[QID_SIZE];   /* the last id read; "" at the start */
	struct window_lane w;
	unsigned gen; /* a reread since a page was asked for voids it */
	bool fetching;
	char aged[QID_SIZE]; /* max_age / warn_after: read up to here */
	bool aging;
};
TAILQ_HEAD(slane_list, slane);

struct dest {
	struct sched *s;
	char *key;               /* the route text, or the domain */
	char *domain;            /* a domain routed here, for dns/ */
	struct conf_route route; /* its route, as when the destination began */
	struct dest_policy pol;
	struct guard guard;   /* recent verdicts, the suspect state */
	int64_t last_healthy; /* ms of its last answer about an address */
	struct job_list ready;
	size_t nready, njobs;
	struct slane_list lanes; /* the lanes routed here */
	bool fetching;           /* a page of its mail is being read */
	int64_t probe_read_at;   /* unix ms: no probe message before */
	TAILQ_HEAD(, sess) sessions;
	unsigned nsessions;
	uint64_t dns_id;
	unsigned loading;
	char *last_error;
	bool paused; /* by the operator: no delivery (sched_state.c) */
};

/* Messages queued for d, in the spool and in memory (its lanes'
 * counters). */
uint64_t dest_queued(const struct dest *d);
/* Who logs its deliveries: "lmtp" for an LMTP route, else "smtp". */
const char *dest_role(const struct dest *d);

struct sched {
	struct event_base *base;
	const struct deliver_ops *ops; /* the sessions (relay/client.c) */
	const struct conf *cf;
	struct queue *q;
	struct dns *dns;
	struct hmap *dests; /* key -> struct dest */
	struct hmap *msgs;  /* qid -> struct smsg: the active window */
	struct hmap *lanes; /* lane -> struct slane */
	bool ready;         /* the queue's counters are complete */
	struct hmap *saved; /* key -> stored state of a destination not seen
			       yet (sched_state.c) */
	struct job **heap;  /* deferred jobs, earliest first */
	size_t nheap, capheap;
	unsigned nsessions;
	struct event *timer;
	int64_t armed_at; /* unix ms the timer is set for */
	int64_t next_sweep;
	uint64_t rng;
	struct sched_call_list calls; /* answers still to come */
	bool drain_only;              /* no deliveries (sched_set_drain_only) */
};

/* sched.c: time, jobs, destinations, planning. */
int64_t sched_now_ms(void);
/* Something is to be done at `when` (unix ms): the timer wakes by then. */
void sched_wake_at(struct sched *s, int64_t when);
double sched_rand(struct sched *s);
const char *sched_rcpt_domain(const char *addr);
void job_unready(struct job *j);
void job_ready(struct job *j);
void job_defer(struct job *j, int64_t due);
void job_free(struct job *j);
void job_drop_rcpt(struct smsg *m, size_t idx);
const struct conf_retry *dest_retry(const struct dest *d);
void dest_set_error(struct dest *d, const char *why);
void dest_failed(struct dest *d, const char *why);
/* Every address refused the connection: probe again in a second. */
void dest_refused(struct dest *d, const char *why);
/* Everything queued for d is due now: deferred jobs, and its lanes read
 * again from the start, due or not. */
void dest_due_now(struct dest *d);
/* dest_due_now after an outage, said in the log. */
void dest_release(struct dest *d);
/* d's ready jobs beyond the first keep ones go back to the spool. */
void dest_park(struct dest *d, size_t keep);
void sched_plan(struct sched *s, struct smsg *m, int64_t due);
void smsg_free(struct sched *s, struct smsg *m);
/* The message of the window env, tracked by the scheduler. */
struct smsg *sched_track(struct sched *s, struct envelope *env);
/* m leaves memory if nothing holds it there (its state is stored). */
bool smsg_park_if_idle(struct sched *s, struct smsg *m);
/* Reads more of d's mail from the spool if it can take it. */
void dest_refill(struct dest *d);
struct slane *sched_lane(struct sched *s, const char *lane);
/* An operator's delete or bounce that waited for the message's attempt. */
void sched_apply_doom(struct sched *s, struct smsg *m);
/* sched_notify.c */
void sched_notify(struct sched *s, struct smsg *m, enum dsn_action action,
    const struct dsn_rcpt *list, size_t n);
void sched_settle(struct sched *s, struct smsg *m);
/* sched_guard.c: the rejection guard. */
enum fail_fate {
	FATE_BOUNCE,  /* returned to the sender */
	FATE_SUSPECT, /* held: the store may have lost the user, not us */
	FATE_SOFT,    /* held: soft_bounce */
};
/* sched_state.c: what is stored of a destination (the guard's suspect
 * state, the operator's pause). */
void sched_state_load(struct sched *s);
void sched_state_free(struct sched *s);
/* d takes the state stored for its key, if any. */
void dest_state_restore(struct dest *d);
/* d's state is stored (or forgotten, when there is nothing to keep). */
void dest_state_save(struct dest *d);
/* Whether a destination that does not exist yet is paused. */
bool sched_saved_paused(struct sched *s, const char *key);
/* Paused destinations that do not exist yet (no mail read for them). */
void sched_foreach_saved_pause(struct sched *s,
    void (*cb)(void *arg, const struct sched_dest_info *info), void *arg);
/* A recipient held after a suspect 5xx: pending, with its 5.x.x kept. */
bool rcpt_held_as_suspect(const struct env_rcpt *r);
/* A 5xx (VERDICT_FAIL) for recipient idx of m: what becomes of it. */
enum fail_fate dest_judge_5xx(
    struct dest *d, struct smsg *m, size_t idx, int64_t now);
/* A 2xx: learned and counted. True when it ends d's suspect state (held:
 * the recipient had been held as suspect). */
bool dest_note_2xx(
    struct dest *d, struct smsg *m, size_t idx, bool held, int64_t now);
void dest_suspect_begin(struct dest *d, const char *why);
void dest_suspect_end(struct dest *d, const char *why);
/* sched_run.c */
void dest_wake(struct dest *d);
void dest_dispatch(struct dest *d);
/* sched_notify.c: max_age and warn_after for every message, and the next
 * time either comes for env (ms; INT64_MAX for never). */
void sched_sweep(struct sched *s, int64_t now);
int64_t sched_age_next(const struct sched *s, const struct envelope *env);

#endif
