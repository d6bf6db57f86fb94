/*
 * libFuzzer target for the control socket (ctl/ctl.c, ctl/ctl_cmd.c): the
 * input is what a client writes to the socket, JSON request lines. The
 * real listener, framing, JSON parsing, argument checks, dispatch and
 * replies run on a real event loop and a real Unix socket; what the
 * commands act on stops here: the queue, the scheduler, the resolver and
 * the server are stand-ins in this file (a spool of three messages, in
 * two lanes, answering a loop turn later as the real one does), so the
 * target fuzzes everything up to the point where a command would touch
 * the spool, and the walks over what the stand-ins give back.
 *
 * Invariants checked:
 * - every request line gets exactly one final reply (a result or an
 *   error), in order, carrying the request's id (a number or a string;
 *   else null), after any streamed lines of the same id; nothing else;
 * - every reply line is one JSON object with "id" and one of "result",
 *   "error" (with a known code and a message), "item" or "chunk";
 * - the connection ends when the client's input does, within a bounded
 *   number of loop turns (no hang), and everything is freed (LeakSanitizer).
 *
 *   make fuzz FUZZ_TARGETS=ctl   (seeds: tests/fuzz/corpus/ctl/, requests
 *   as mxspoolctl sends them)
 */
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <event2/event.h>

#include "common/log.h"
#include "common/xmem.h"
#include "ctl/ctl.h"
#include "ctl/ctl_int.h"
#include "ctl/reload.h"
#include "dns/dns.h"
#include "queue/qindex.h"
#include "queue/queue.h"
#include "queue/sched.h"
#include "relay/server.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define LINE_MAX_CTL (64 * 1024) /* ctl.c's CTL_LINE_MAX */
#define TURNS_MAX 100000         /* loop turns one input may take */

/* ---- the stand-ins ----------------------------------------------------- */

#define NMSG 3
static const char *const qids[NMSG] = {
    "0BV2GFXK8W00", "0BV2GFXK8W01", "0BV2GFXK8W02"};

struct fake_msg {
	struct envelope *env;
	const char *lane;
	char *body;
	size_t len;
	bool queued, in_window;
};

static struct event_base *base;
static struct fake_msg msgs[NMSG];
static int reloads;

static struct fake_msg *
fake_find(const char *qid)
{
	for (int i = 0; i < NMSG; i++)
		if (msgs[i].queued && strcmp(msgs[i].env->qid, qid) == 0)
			return &msgs[i];
	return NULL;
}

/* The spool as it was: every input starts from the same one. */
/* Paused destinations: example.org is at the start, example.com is not. */
static bool fake_paused[2];

static void
fake_reset(void)
{
	fake_paused[0] = false;
	fake_paused[1] = true;
	for (int i = 0; i < NMSG; i++) {
		msgs[i].queued = true;
		msgs[i].in_window = false;
		msgs[i].env->flags = i == 1 ? ENV_HELD : 0;
	}
	reloads = 0;
}

static void
fake_init(void)
{
	static const char *const lanes[NMSG] = {
	    "example.com", "example.com", "example.org"};

	for (int i = 0; i < NMSG; i++) {
		struct envelope *e = envelope_new();
		struct env_rcpt *r;

		memcpy(e->qid, qids[i], QID_SIZE);
		e->arrival = 1717495200000000 + i;
		e->client_addr = xstrdup("192.0.2.7");
		e->sender = xstrdup(i == 2 ? "" : "alice@sender.example");
		r = envelope_add_rcpt(
		    e, i == 2 ? "bob@example.org" : "bob@example.com", NULL, 0);
		r->last_error = xstrdup(i == 0 ? "451 4.3.0 try later" : "");
		e->last_error = i == 0 ? xstrdup("connection refused") : NULL;
		msgs[i].env = e;
		msgs[i].lane = lanes[i];
		/* The third body is long and not UTF-8: chunks, base64. */
		if (i == 2) {
			msgs[i].len = 40000;
			msgs[i].body = xmalloc(msgs[i].len);
			for (size_t k = 0; k < msgs[i].len; k++)
				msgs[i].body[k] = k % 77 == 76 ? '\n'
						  : k % 5 == 0 ? (char)0xe9
							       : 'a';
		} else {
			msgs[i].body =
			    xasprintf("Subject: %d\r\n\r\nhello\r\n", i);
			msgs[i].len = strlen(msgs[i].body);
		}
		e->size = msgs[i].len;
	}
	fake_reset();
}

/* An answer that comes a loop turn later, as from the writer thread. */
struct later {
	void (*run)(struct later *l);
	void *cb, *arg;
	char qid[QID_SIZE];
	struct queue_scan sc;
	char lane[LANE_SIZE];
};

static void
later_on_timer(evutil_socket_t fd, short what, void *arg)
{
	struct later *l = arg;

	(void)fd;
	(void)what;
	l->run(l);
	free(l);
}

static void
later(struct later *l)
{
	static const struct timeval now = {0, 0};

	if (event_base_once(base, -1, EV_TIMEOUT, later_on_timer, l, &now) < 0)
		abort();
}

struct envelope *
queue_find(const struct queue *q, const char *qid)
{
	struct fake_msg *m = fake_find(qid);

	(void)q;
	return m != NULL && m->in_window ? m->env : NULL;
}

static void
get_run(struct later *l)
{
	struct fake_msg *m = fake_find(l->qid);
	queue_get_cb *cb = (queue_get_cb *)l->cb;
	bool admit = l->sc.admit;

	if (m == NULL) {
		cb(l->arg, NULL);
		return;
	}
	if (admit)
		m->in_window = true;
	cb(l->arg, admit ? m->env : envelope_dup(m->env));
}

void
queue_get(
    struct queue *q, const char *qid, bool admit, queue_get_cb *cb, void *arg)
{
	struct later *l = xcalloc(1, sizeof(*l));

	(void)q;
	snprintf(l->qid, sizeof(l->qid), "%s", qid);
	l->sc.admit = admit;
	l->cb = (void *)cb;
	l->arg = arg;
	l->run = get_run;
	later(l);
}

static void
scan_run(struct later *l)
{
	struct queue_page pg = {.status = QUEUE_OK, .next_due = INT64_MAX};
	struct envelope *envs[NMSG];
	char ids[NMSG][QID_SIZE];
	bool started = l->sc.after[0] == '\0';

	pg.envs = envs;
	pg.qids = ids;
	for (int i = 0; i < NMSG; i++) {
		struct fake_msg *m = &msgs[i];

		if (!started) {
			started = strcmp(m->env->qid, l->sc.after) == 0;
			continue;
		}
		if (!m->queued ||
		    (l->lane[0] != '\0' && strcmp(m->lane, l->lane) != 0))
			continue;
		if (pg.n == l->sc.limit)
			break;
		memcpy(pg.last, m->env->qid, QID_SIZE);
		if (l->sc.keys_only) {
			memcpy(ids[pg.n++], m->env->qid, QID_SIZE);
			continue;
		}
		if (l->sc.admit)
			m->in_window = true;
		envs[pg.n++] = l->sc.admit ? m->env : envelope_dup(m->env);
	}
	pg.end = true;
	for (int i = 0; i < NMSG; i++)
		if (pg.last[0] != '\0' &&
		    strcmp(msgs[i].env->qid, pg.last) > 0 && msgs[i].queued &&
		    (l->lane[0] == '\0' || strcmp(msgs[i].lane, l->lane) == 0))
			pg.end = false;
	((queue_page_cb *)l->cb)(l->arg, &pg);
	if (!l->sc.admit && !l->sc.keys_only)
		for (size_t i = 0; i < pg.n; i++)
			envelope_free(envs[i]);
}

void
queue_scan(
    struct queue *q, const struct queue_scan *sc, queue_page_cb *cb, void *arg)
{
	struct later *l = xcalloc(1, sizeof(*l));

	(void)q;
	l->sc = *sc;
	if (sc->lane != NULL)
		snprintf(l->lane, sizeof(l->lane), "%s", sc->lane);
	l->sc.lane = NULL;
	l->cb = (void *)cb;
	l->arg = arg;
	l->run = scan_run;
	later(l);
}

static void
body_run(struct later *l)
{
	struct fake_msg *m = fake_find(l->qid);
	queue_body_cb *cb = (queue_body_cb *)l->cb;

	if (m == NULL)
		cb(l->arg, QUEUE_EIO, NULL, 0);
	else
		cb(l->arg, QUEUE_OK, xmemdup(m->body, m->len), m->len);
}

void
queue_read_body(struct queue *q, const char *qid, queue_body_cb *cb, void *arg)
{
	struct later *l = xcalloc(1, sizeof(*l));

	(void)q;
	snprintf(l->qid, sizeof(l->qid), "%s", qid);
	l->cb = (void *)cb;
	l->arg = arg;
	l->run = body_run;
	later(l);
}

static void
count_lane(const char *lane, struct lane_count *c, int64_t *oldest)
{
	memset(c, 0, sizeof(*c));
	*oldest = 0;
	for (int i = 0; i < NMSG; i++) {
		const struct fake_msg *m = &msgs[i];

		if (!m->queued || (lane != NULL && strcmp(m->lane, lane) != 0))
			continue;
		c->messages++;
		c->bytes += m->env->size;
		c->held += (m->env->flags & ENV_HELD) != 0;
		if (*oldest == 0 || m->env->arrival < *oldest)
			*oldest = m->env->arrival;
	}
}

void
queue_foreach_lane(const struct queue *q, queue_lane_cb *cb, void *arg)
{
	static const char *const lanes[] = {"example.com", "example.org"};

	(void)q;
	for (size_t i = 0; i < sizeof(lanes) / sizeof(lanes[0]); i++) {
		struct lane_count c;
		int64_t oldest;

		count_lane(lanes[i], &c, &oldest);
		if (c.messages > 0)
			cb(arg, lanes[i], &c, oldest);
	}
}

void
queue_lane_count(const struct queue *q, const char *lane, struct lane_count *c,
    int64_t *oldest)
{
	(void)q;
	count_lane(lane, c, oldest);
}

void
queue_totals(const struct queue *q, struct lane_count *c, int64_t *oldest)
{
	(void)q;
	count_lane(NULL, c, oldest);
}

size_t
queue_window(const struct queue *q)
{
	size_t n = 0;

	(void)q;
	for (int i = 0; i < NMSG; i++)
		n += msgs[i].queued && msgs[i].in_window;
	return n;
}

bool
queue_indexing(const struct queue *q)
{
	(void)q;
	return false;
}

/* The scheduler acts only on a message in the window (sched.h). */
static struct fake_msg *
in_window(const char *qid)
{
	struct fake_msg *m = fake_find(qid);

	return m != NULL && m->in_window ? m : NULL;
}

size_t
sched_flush(struct sched *s, const char *domain)
{
	(void)s;
	return domain == NULL ? NMSG : 1;
}

int
sched_flush_msg(struct sched *s, const char *qid)
{
	(void)s;
	return in_window(qid) != NULL ? 0 : -1;
}

int
sched_hold(struct sched *s, const char *qid, bool hold)
{
	struct fake_msg *m = in_window(qid);

	(void)s;
	if (m == NULL)
		return -1;
	m->env->flags = hold ? m->env->flags | ENV_HELD
			     : m->env->flags & ~(uint32_t)ENV_HELD;
	return 0;
}

int
sched_delete(struct sched *s, const char *qid)
{
	struct fake_msg *m = in_window(qid);

	(void)s;
	if (m == NULL)
		return -1;
	m->queued = false;
	return 0;
}

int
sched_bounce(struct sched *s, const char *qid, const char *why)
{
	(void)why;
	return sched_delete(s, qid);
}

void
sched_tidy(struct sched *s, const char *qid)
{
	struct fake_msg *m = fake_find(qid);

	(void)s;
	if (m != NULL)
		m->in_window = false;
}

int
sched_trust(struct sched *s, const char *name)
{
	(void)s;
	return strcmp(name, "example.com") == 0 ? 1 : 0;
}

static void
suspect_run(struct later *l)
{
	((void (*)(void *, long))l->cb)(l->arg, 2);
}

int
sched_bounce_suspect(struct sched *s, const char *name,
    void (*cb)(void *arg, long returned), void *arg)
{
	struct later *l;

	(void)s;
	if (strcmp(name, "example.com") != 0)
		return -1;
	l = xcalloc(1, sizeof(*l));
	l->cb = (void *)cb;
	l->arg = arg;
	l->run = suspect_run;
	later(l);
	return 0;
}

int
sched_pause(struct sched *s, const char *name, bool pause, char *key,
    size_t len, uint64_t *messages)
{
	int i = strcmp(name, "example.com") == 0   ? 0
		: strcmp(name, "example.org") == 0 ? 1
						   : -1;

	(void)s;
	*messages = 0;
	if (i < 0)
		return SCHED_NO_DEST;
	snprintf(key, len, "%s", name);
	if (fake_paused[i] == pause)
		return pause ? SCHED_SAME : SCHED_NOT_PAUSED;
	fake_paused[i] = pause;
	*messages = 1;
	return 0;
}

int64_t
sched_rcpt_next(struct sched *s, const struct envelope *env, size_t idx,
    const char **state, const char **why)
{
	(void)s;
	*state = "backing off";
	*why = "connect to store: Connection refused";
	if ((env->flags & ENV_HELD) || env->rcpts[idx].state != RCPT_PENDING)
		return 0;
	return 1717495260;
}

bool
sched_in_flight(struct sched *s, const char *qid)
{
	(void)s;
	(void)qid;
	return false;
}

void
sched_foreach_dest(struct sched *s,
    void (*cb)(void *arg, const struct sched_dest_info *info), void *arg)
{
	struct sched_dest_info in = {.name = "example.com",
	    .state = "backing off",
	    .messages = 2,
	    .connections = 1,
	    .concurrency = 1,
	    .next_probe = 1717495260000,
	    .last_error = "connect to store: Connection refused"};

	(void)s;
	cb(arg, &in);
	in.name = "gone.example";
	cb(arg, &in);
}

const char *
sched_lane_dest_key(
    const struct conf *cf, const char *lane, char *buf, size_t len)
{
	bool notices;

	(void)cf;
	snprintf(buf, len, "%s", qindex_lane_domain(lane, &notices));
	return buf;
}

const char *
sched_dest_key(const struct conf *cf, const struct envelope *env,
    const char *rcpt, char *buf, size_t len)
{
	const char *at = strrchr(rcpt, '@');

	(void)cf;
	(void)env;
	snprintf(buf, len, "%s", at != NULL ? at + 1 : rcpt);
	return buf;
}

size_t
server_nsessions(const struct server *srv)
{
	(void)srv;
	return 0;
}

static void
route_run(struct later *l)
{
	struct dns_answer a = {0};
	struct dns_host h = {0};
	struct dns_addr addr = {0};

	a.domain = l->lane;
	a.status = DNS_OK;
	a.dsn = "2.0.0";
	a.reason = (char *)"1 host";
	a.kind = ROUTE_MX;
	snprintf(addr.text, sizeof(addr.text), "192.0.2.25");
	h.name = (char *)"mx.example.com";
	h.pref = 10;
	h.port = 25;
	h.addrs = &addr;
	h.naddrs = 1;
	a.hosts = &h;
	a.nhosts = 1;
	((dns_route_cb *)l->cb)(l->arg, &a);
}

uint64_t
dns_route(struct dns *d, const char *domain, dns_route_cb *cb, void *arg)
{
	struct later *l = xcalloc(1, sizeof(*l));

	(void)d;
	snprintf(l->lane, sizeof(l->lane), "%s", domain);
	l->cb = (void *)cb;
	l->arg = arg;
	l->run = route_run;
	later(l);
	return 1;
}

/* xfer hands nothing over here (ctl/xfer.c needs the client and DNS):
 * it answers with the counts at once. */
void
xfer_run(struct ctl_conn *k, const char *to, char (*picked)[QID_SIZE], size_t n,
    json_t *skips)
{
	ctl_reply(k, json_pack("{s:s,s:I,s:I,s:I,s:o}", "to", to, "transferred",
			 (json_int_t)0, "failed", (json_int_t)n, "skipped",
			 (json_int_t)json_array_size(skips), "skips", skips));
	free(picked);
}

/* Every other reload fails, with errors as conf_load gives them; the
 * others apply one option, leave one for the next start and warn. */
static int
on_reload(void *arg, char **errors, struct reload_report *rep)
{
	(void)arg;
	if (reloads++ % 2 == 0) {
		*errors = xstrdup("/etc/mxspool/mxspool.conf:3: listen: bad "
				  "address 'x'\n");
		return -1;
	}
	reload_warn(rep, "/etc/mxspool/mxspool.conf:1: warning: hostname: "
			 "'mx' is not a fully qualified domain name");
	return 0;
}

/* ---- the harness -------------------------------------------------------- */

static struct ctl *ctl;
static struct conf cf;
static struct ctl_deps deps;
static char dir[64], sock_path[128];

static void
cleanup(void)
{
	ctl_free(ctl);
	rmdir(dir);
}

static void
init(void)
{
	static char *relay[] = {"example.com", ".example.org"};
	char err[256];

	log_set_level(LOG_LV_ERR);
	base = event_base_new();
	snprintf(dir, sizeof(dir), "/tmp/fuzz-ctl-XXXXXX");
	if (base == NULL || mkdtemp(dir) == NULL)
		abort();
	snprintf(sock_path, sizeof(sock_path), "%s/control.sock", dir);
	cf.path = (char *)"/etc/mxspool/mxspool.conf";
	cf.control_socket = sock_path;
	cf.control_socket_mode = 0600;
	cf.relay_domains = relay;
	cf.nrelay_domains = 2;
	/* Stand-ins take no state from these: any non-NULL pointer does. */
	deps.q = (struct queue *)&msgs;
	deps.sched = (struct sched *)&msgs;
	deps.dns = (struct dns *)&msgs;
	deps.srv = (struct server *)&msgs;
	fake_init();
	ctl = ctl_new(base, &cf, &deps, on_reload, NULL);
	if (ctl_listen(ctl, err, sizeof(err)) < 0) {
		fprintf(stderr, "fuzz_ctl: %s\n", err);
		abort();
	}
	atexit(cleanup);
}

/* The id the daemon must echo for one request line: its "id" when that
 * is a number or a string, else null. */
static json_t *
expected_id(const char *line, size_t len)
{
	json_t *req = json_loadb(line, len, JSON_REJECT_DUPLICATES, NULL);
	json_t *id = json_object_get(req, "id");
	json_t *want = json_null();

	if (json_is_object(req) && (json_is_integer(id) || json_is_string(id)))
		want = json_incref(id);
	json_decref(req);
	return want;
}

/* The requests in the input: whole lines, a CR before the LF dropped,
 * empty ones skipped, as ctl.c frames them. */
static size_t
requests(const char *data, size_t size, json_t *ids)
{
	const char *p = data, *end = data + size, *nl;
	size_t n = 0;

	while ((nl = memchr(p, '\n', (size_t)(end - p))) != NULL) {
		size_t len = (size_t)(nl - p);

		if (len > 0 && p[len - 1] == '\r')
			len--;
		if (len > 0) {
			json_array_append_new(ids, expected_id(p, len));
			n++;
		}
		p = nl + 1;
	}
	return n;
}

static bool
known_code(const char *code)
{
	static const char *const codes[] = {CTL_E_PARSE, CTL_E_BAD,
	    CTL_E_UNKNOWN, CTL_E_NOT_FOUND, CTL_E_CONFIRM, CTL_E_CONFIG,
	    CTL_E_FAILED};

	for (size_t i = 0; code != NULL && i < sizeof(codes) / sizeof(*codes);
	     i++)
		if (strcmp(code, codes[i]) == 0)
			return true;
	return false;
}

/* Checks one reply line; returns whether it ends a request. */
static bool
check_reply(const char *line, size_t len, json_t *want_id)
{
	json_t *o = json_loadb(line, len, JSON_REJECT_DUPLICATES, NULL);
	json_t *id = json_object_get(o, "id"), *err;
	int kinds;
	bool final;

	if (!json_is_object(o) || id == NULL || json_object_size(o) != 2 ||
	    !json_equal(id, want_id))
		abort();
	err = json_object_get(o, "error");
	kinds = (json_object_get(o, "result") != NULL) + (err != NULL) +
		(json_object_get(o, "item") != NULL) +
		(json_object_get(o, "chunk") != NULL);
	if (kinds != 1)
		abort();
	if (err != NULL &&
	    (!known_code(json_string_value(json_object_get(err, "code"))) ||
		!json_is_string(json_object_get(err, "message"))))
		abort();
	final = json_object_get(o, "result") != NULL || err != NULL;
	json_decref(o);
	return final;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct sockaddr_un sun = {.sun_family = AF_UNIX};
	json_t *ids = json_array();
	char *out = NULL;
	size_t outlen = 0, cap = 0, sent = 0, nreq, nfinal = 0, pos = 0;
	bool eof = false;
	int fd, turns;

	if (base == NULL)
		init();
	fake_reset();
	nreq = requests((const char *)data, size, ids);

	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	memcpy(sun.sun_path, sock_path, strlen(sock_path) + 1);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0 ||
	    fcntl(fd, F_SETFL, O_NONBLOCK) < 0)
		abort();
	if (size == 0)
		shutdown(fd, SHUT_WR);
	for (turns = 0; !eof && turns < TURNS_MAX; turns++) {
		ssize_t n;

		if (sent < size) {
			n = write(fd, data + sent, size - sent);
			if (n > 0 && (sent += (size_t)n) == size)
				shutdown(fd, SHUT_WR);
		}
		event_base_loop(base, EVLOOP_NONBLOCK);
		for (;;) {
			if (outlen == cap) {
				cap = cap ? cap * 2 : 65536;
				out = xrealloc(out, cap);
			}
			n = read(fd, out + outlen, cap - outlen);
			if (n > 0) {
				outlen += (size_t)n;
				continue;
			}
			if (n == 0)
				eof = true;
			else if (errno != EAGAIN)
				abort();
			break;
		}
	}
	if (!eof)
		abort(); /* the connection did not end: a hang */
	close(fd);
	/* Let what was still on its way (an answer for a client that has
	 * gone) arrive, so that it is freed before the leak check. */
	for (turns = 0; turns < 16; turns++)
		event_base_loop(base, EVLOOP_NONBLOCK);

	while (pos < outlen) {
		char *nl = memchr(out + pos, '\n', outlen - pos);

		if (nl == NULL || nfinal >= nreq)
			abort(); /* a cut line, or a reply to nothing */
		if (check_reply(out + pos, (size_t)(nl - (out + pos)),
			json_array_get(ids, nfinal)))
			nfinal++;
		pos = (size_t)(nl - out) + 1;
	}
	/* Each request answered, unless a line was too long: then one
	 * error and the connection closes. */
	if (nfinal != nreq && size <= LINE_MAX_CTL)
		abort();
	free(out);
	json_decref(ids);
	return 0;
}
