#define LOG_ROLE "xfer"
/*
 * mxspoolctl xfer: hands messages over to another node, over SMTP, to a
 * listener of that node reserved for peers (peer_listen). Each message
 * goes with its envelope as the relay client sends any (RET, ENVID,
 * NOTIFY, ORCPT, SMTPUTF8, BODY=), its first arrival (ARRIVAL=, which the
 * peer offers as XMXSPOOL-ARRIVAL), and only the recipients still
 * pending. It leaves this spool only after the peer's 250 for it: a
 * message is never lost, and is sent twice only if the link dies between
 * the peer's fsync and its 250 (at-least-once, as everywhere else).
 *
 * One connection carries the messages one after the other: the spool
 * reads the next one while the peer takes the last. A message being
 * delivered (in flight) or held by the operator is skipped and reported.
 */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "common/log.h"
#include "common/xmem.h"
#include "ctl/ctl_int.h"
#include "dns/dns.h"
#include "queue/deliver.h"
#include "queue/queue.h"
#include "queue/sched.h"
#include "relay/client.h"

/* The client hears how far it got this often (it waits at most 120 s for
 * a line, cli/conn.c). */
#define XFER_NOTE_SECS 10

/* An idle session waits this long for the spool to read the next one. */
#define XFER_IDLE 60

struct xfer {
	struct ctl *c;
	uint64_t cid;
	const struct conf *cf;
	struct queue *q;
	struct sched *sched;
	struct event_base *base;
	struct conf_route to;
	char (*qids)[QID_SIZE];
	size_t n, next;
	struct dns_answer *ans;
	struct client_target target;
	struct client_session *cs;
	bool idle;     /* the session asked for a message and got none */
	bool progress; /* the session has taken a message */
	/* The message read for sending, or being sent. */
	struct envelope *env;
	char *body;
	size_t len;
	bool ready, sending;
	struct client_msg msg;
	/* The answer. */
	size_t transferred, failed, skipped;
	json_t *failures, *skips;
	struct event *note; /* progress for the client, every XFER_NOTE_SECS */
};

static void xfer_load_next(struct xfer *x);
static void xfer_send(struct xfer *x);

static void
xfer_skip(struct xfer *x, const char *qid, const char *why)
{
	x->skipped++;
	json_array_append_new(
	    x->skips, json_pack("{s:s,s:s}", "id", qid, "reason", why));
}

static void
xfer_fail(struct xfer *x, const char *qid, const char *why)
{
	x->failed++;
	log_event(qid, "not transferred to %s: %s", x->to.text, why);
	json_array_append_new(x->failures,
	    json_pack("{s:s,s:o}", "id", qid, "error", ctl_json_str(why)));
}

/* The message read for sending is done with: freed, and put back from
 * the window unless it left the queue. */
static void
xfer_drop_msg(struct xfer *x, bool tidy)
{
	if (x->env != NULL && tidy && queue_find(x->q, x->env->qid) != NULL)
		sched_tidy(x->sched, x->env->qid);
	for (size_t i = 0; i < x->msg.nrcpts; i++)
		free(x->msg.rcpts[i].text);
	free(x->msg.rcpts);
	envelope_free(x->env);
	free(x->body);
	memset(&x->msg, 0, sizeof(x->msg));
	x->env = NULL;
	x->body = NULL;
	x->ready = x->sending = false;
}

static void
xfer_free(struct xfer *x)
{
	if (x->note != NULL)
		event_free(x->note);
	xfer_drop_msg(x, true);
	conf_route_fini(&x->to);
	dns_answer_free(x->ans);
	json_decref(x->failures);
	json_decref(x->skips);
	free(x->qids);
	free(x);
}

/* The counts so far, as an item line: a long hand-over shows its progress
 * and the client knows the daemon is at work. */
static void
xfer_on_note(evutil_socket_t fd, short what, void *arg)
{
	struct xfer *x = arg;
	struct ctl_conn *k = ctl_conn_find(x->c, x->cid);

	(void)fd;
	(void)what;
	if (k != NULL)
		ctl_send(k, "item",
		    json_pack("{s:I,s:I,s:I,s:I}", "transferred",
			(json_int_t)x->transferred, "failed",
			(json_int_t)x->failed, "skipped",
			(json_int_t)x->skipped, "of", (json_int_t)x->n));
}

/* Everything is done: the client gets the counts (if it is still there). */
static void
xfer_finish(struct xfer *x)
{
	struct ctl_conn *k = ctl_conn_find(x->c, x->cid);

	log_info("xfer to %s: %zu transferred, %zu failed, %zu skipped",
	    x->to.text, x->transferred, x->failed, x->skipped);
	if (k != NULL) {
		ctl_reply(
		    k, json_pack("{s:s,s:I,s:I,s:I,s:O,s:O}", "to", x->to.text,
			   "transferred", (json_int_t)x->transferred, "failed",
			   (json_int_t)x->failed, "skipped",
			   (json_int_t)x->skipped, "failures", x->failures,
			   "skips", x->skips));
	}
	xfer_free(x);
}

/* Every message left is failed for why (the peer cannot be reached). */
static void
xfer_fail_rest(struct xfer *x, const char *why)
{
	if (x->env != NULL) {
		xfer_fail(x, x->env->qid, why);
		xfer_drop_msg(x, true);
	}
	while (x->next < x->n)
		xfer_fail(x, x->qids[x->next++], why);
}

/* The message read: a client_msg of its pending recipients. */
static void
xfer_build(struct xfer *x)
{
	struct envelope *env = x->env;
	struct client_msg *m = &x->msg;

	memset(m, 0, sizeof(*m));
	m->qid = env->qid;
	m->sender = env->sender;
	m->body = env->body;
	m->smtputf8 = (env->flags & ENV_SMTPUTF8) != 0;
	m->ret = env->ret;
	m->envid = env->envid;
	m->data = x->body;
	m->len = x->len;
	m->owner = x;
	m->arrival = env->arrival / 1000000;
	if (m->arrival <= 0)
		m->arrival = 1;
	m->rcpts = xcalloc(env->nrcpts, sizeof(*m->rcpts));
	for (size_t i = 0; i < env->nrcpts; i++) {
		const struct env_rcpt *r = &env->rcpts[i];

		if (r->state != RCPT_PENDING)
			continue;
		m->rcpts[m->nrcpts].addr = r->addr;
		m->rcpts[m->nrcpts].orcpt = r->orcpt;
		m->rcpts[m->nrcpts].notify = r->notify;
		m->nrcpts++;
	}
}

static struct client_msg *
xfer_on_next(void *arg, struct client_session *cs)
{
	struct xfer *x = arg;

	(void)cs;
	if (!x->ready || x->sending) {
		x->idle = true;
		return NULL;
	}
	/* The scheduler may have started on it since it was read. */
	if (sched_in_flight(x->sched, x->env->qid)) {
		xfer_skip(x, x->env->qid, "being delivered");
		xfer_drop_msg(x, false);
		xfer_load_next(x);
		x->idle = true;
		return NULL;
	}
	x->sending = true;
	x->progress = true;
	return &x->msg;
}

/* Why the peer did not take the message, from its recipients' answers;
 * NULL when it took it for every recipient. */
static const char *
xfer_refusal(const struct client_msg *m, char *buf, size_t len)
{
	const struct client_rcpt *r = NULL;

	if (m->untried)
		return "the connection closed before MAIL was answered";
	/* The peer's own answer first: a recipient it took is left with
	 * ours (not handed over) when it refused another. */
	for (size_t i = 0; i < m->nrcpts; i++)
		if (m->rcpts[i].code / 100 != 2 &&
		    (r == NULL || (r->code == 0 && m->rcpts[i].code > 0)))
			r = &m->rcpts[i];
	if (r == NULL)
		return NULL;
	/* The text is the peer's whole reply, code and all. */
	if (r->text != NULL)
		snprintf(buf, len, "%s", r->text);
	else if (r->code > 0)
		snprintf(buf, len, "%d %s", r->code, r->dsn);
	else
		snprintf(buf, len, "no answer");
	return buf;
}

static void
xfer_on_done(void *arg, struct client_session *cs, struct client_msg *m)
{
	struct xfer *x = arg;
	char buf[600];
	const char *why = xfer_refusal(m, buf, sizeof(buf));
	const char *qid = x->env->qid;

	(void)cs;
	if (why != NULL) {
		/* All or nothing (client_handover_partial): the peer holds
		 * none of its recipients. */
		xfer_fail(x, qid, why);
		xfer_drop_msg(x, true);
	} else if (sched_delete(x->sched, qid) == 0) {
		/* The peer's reply names the message's queue id there. */
		log_event(qid, "transferred to %s (%zu recipient%s): %s",
		    x->to.text, m->nrcpts, m->nrcpts == 1 ? "" : "s",
		    m->rcpts[0].text != NULL ? m->rcpts[0].text : "250");
		x->transferred++;
		xfer_drop_msg(x, false);
	} else {
		/* The peer has it, and it left the window meanwhile. */
		xfer_fail(x, qid,
		    "the peer took it, but it could not be removed here");
		xfer_drop_msg(x, false);
	}
	xfer_load_next(x);
}

static void
xfer_on_closed(
    void *arg, struct client_session *cs, const struct client_end *end)
{
	struct xfer *x = arg;
	char why[sizeof(end->text)];

	/* end is the session's: read before the session is freed. */
	snprintf(why, sizeof(why), "%s",
	    end->text[0] != '\0' ? end->text : "the peer hung up");
	client_deliver_ops.close(cs);
	x->cs = NULL;
	x->idle = false;
	if (x->env == NULL && x->next >= x->n) {
		xfer_finish(x);
		return;
	}
	if (!x->progress) {
		xfer_fail_rest(x, why);
		xfer_finish(x);
		return;
	}
	/* It ended after some work (idle, or a limit): go on anew. */
	x->progress = false;
	if (x->ready)
		xfer_send(x);
	else if (x->env == NULL)
		xfer_load_next(x);
}

static const struct client_cbs xfer_cbs = {
    .next = xfer_on_next, .done = xfer_on_done, .closed = xfer_on_closed};

/* The message is read: the session takes it now, or one is opened. */
static void
xfer_send(struct xfer *x)
{
	x->ready = true;
	if (x->cs == NULL) {
		x->cs =
		    client_deliver_ops.open(x->base, &x->target, &xfer_cbs, x);
		return;
	}
	if (x->idle) {
		x->idle = false;
		client_deliver_ops.wake(x->cs);
	}
}

static void
xfer_on_body(void *arg, int status, char *body, size_t len)
{
	struct xfer *x = arg;

	if (status != QUEUE_OK) {
		free(body);
		xfer_fail(x, x->env->qid, "its body could not be read");
		xfer_drop_msg(x, true);
		xfer_load_next(x);
		return;
	}
	x->body = body;
	x->len = len;
	xfer_build(x);
	xfer_send(x);
}

static void
xfer_on_env(void *arg, struct envelope *env)
{
	struct xfer *x = arg;
	const char *qid = x->qids[x->next - 1];
	const struct envelope *mem;
	size_t pending = 0;

	if (env == NULL) {
		xfer_skip(x, qid, "no longer queued");
		xfer_load_next(x);
		return;
	}
	/* In the window it may be newer than in the spool. */
	mem = queue_find(x->q, qid);
	x->env = envelope_dup(mem != NULL ? mem : env);
	for (size_t i = 0; i < x->env->nrcpts; i++)
		pending += x->env->rcpts[i].state == RCPT_PENDING;
	if (sched_in_flight(x->sched, qid) || (x->env->flags & ENV_HELD) ||
	    pending == 0) {
		xfer_skip(x, qid,
		    pending == 0                 ? "no recipient pending"
		    : (x->env->flags & ENV_HELD) ? "held"
						 : "being delivered");
		xfer_drop_msg(x, true);
		xfer_load_next(x);
		return;
	}
	queue_read_body(x->q, qid, xfer_on_body, x);
}

/* Reads the next message, or ends once the last is answered. */
static void
xfer_load_next(struct xfer *x)
{
	if (x->env != NULL)
		return;
	if (x->next >= x->n) {
		if (x->cs != NULL)
			client_deliver_ops.quit(x->cs); /* closed() finishes */
		else
			xfer_finish(x);
		return;
	}
	x->next++;
	queue_get(x->q, x->qids[x->next - 1], true, xfer_on_env, x);
}

static void
xfer_on_dns(void *arg, const struct dns_answer *ans)
{
	struct xfer *x = arg;
	const struct conf *cf = x->cf;

	if (ans->status != DNS_OK || ans->nhosts == 0) {
		xfer_fail_rest(x, ans->reason != NULL
				      ? ans->reason
				      : "no address for the peer");
		xfer_finish(x);
		return;
	}
	x->ans = dns_answer_dup(ans);
	x->target.ans = x->ans;
	x->target.lmtp = false;
	x->target.tls = cf->tls;
	x->target.tls_ca_file = cf->tls_ca_file;
	x->target.helo_name = cf->hostname;
	x->target.max_msgs = UINT_MAX;
	x->target.connect_timeout = cf->connect_timeout;
	x->target.command_timeout = cf->client_command_timeout;
	x->target.data_timeout = cf->client_data_timeout;
	x->target.final_timeout = cf->client_final_timeout;
	x->target.idle_timeout = XFER_IDLE;
	xfer_load_next(x);
}

void
xfer_run(struct ctl_conn *k, const char *to, char (*qids)[QID_SIZE], size_t n,
    json_t *skips)
{
	const struct ctl_ctx *x0 = ctl_conn_ctx(k);
	struct xfer *x = xcalloc(1, sizeof(*x));

	x->c = x0->c;
	x->cid = ctl_conn_id(k);
	x->cf = x0->cf;
	x->q = x0->deps->q;
	x->sched = x0->deps->sched;
	x->base = ctl_base(x0->c);
	x->qids = qids;
	x->n = n;
	x->failures = json_array();
	x->skips = skips;
	x->skipped = json_array_size(skips);
	if (conf_parse_route(to, &x->to) < 0 || x->to.kind != ROUTE_SMTP) {
		if (x->to.text != NULL)
			conf_route_fini(&x->to);
		memset(&x->to, 0, sizeof(x->to));
		ctl_error(k, CTL_E_BAD,
		    "\"to\" must be a route smtp:[HOST]:PORT, not '%s'", to);
		xfer_free(x);
		return;
	}
	log_info("xfer of %zu messages to %s", n, x->to.text);
	x->note = event_new(x->base, -1, EV_PERSIST, xfer_on_note, x);
	event_add(x->note, &(struct timeval){XFER_NOTE_SECS, 0});
	dns_route_via(x0->deps->dns, "xfer", &x->to, xfer_on_dns, x);
}
