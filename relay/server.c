#define LOG_ROLE "smtpd"
/*
 * The inbound ESMTP server: listeners, connection limits, and the session
 * state machine for every command but DATA and BDAT (relay/data.c).
 *
 * Replies go into the session's output buffer as commands are read, and
 * libevent writes them when the callback returns, so a pipelined batch of
 * commands (RFC 2920) is answered with one write. A command whose answer
 * comes later (the end of data, waiting for the spool) stops the reading
 * of further commands until it is answered, which keeps replies in order.
 *
 * No client holds a session for ever, nor all of them: every session ends
 * at session_deadline; a message body must come at min_data_rate, counted
 * over each min_data_rate_window from the DATA or first BDAT command; and
 * when max_connections are open, a new client is served by closing the
 * session that has been idle between commands longest, taken from an
 * address that holds more sessions than the new client's. The per-address
 * limit is counted first, so one address cannot take that room.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/listener.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "common/hmap.h"
#include "common/idn.h"
#include "common/log.h"
#include "common/metrics.h"
#include "dns/dns.h"
#include "common/xmem.h"
#include "relay/listen.h"
#include "relay/server_int.h"

#define SMTP_ACCEPT_PAUSE 1     /* seconds, after running out of descriptors */
#define SMTP_READ_HIGHWAT 65536 /* bytes read ahead of the parser */
#define SMTP_WRITE_MAX 65536    /* unsent replies before reading pauses */
#define SMTP_EVICT_IDLE_MS 1000 /* idle at least this long to be closed */
#define SMTP_PROXY_LOCAL_REPLY                                                 \
	"550 5.7.0 Error: the proxy's own connection takes no mail"

/* Open sessions from one client address, for max_connections_per_ip. */
struct smtp_ipcount {
	unsigned n;
	char addr[INET6_ADDRSTRLEN]; /* the key */
};

static int64_t
mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static unsigned
smtp_ip_count(const struct server *srv, const char *addr)
{
	const struct smtp_ipcount *c = hmap_get(srv->per_ip, addr);

	return c != NULL ? c->n : 0;
}

/* Counts a session from addr in (+1) or out (-1). */
static void
smtp_ip_add(struct server *srv, const char *addr, int delta)
{
	struct smtp_ipcount *c = hmap_get(srv->per_ip, addr);

	if (c == NULL) {
		if (delta < 0)
			return;
		c = xcalloc(1, sizeof(*c));
		snprintf(c->addr, sizeof(c->addr), "%s", addr);
		hmap_put(srv->per_ip, c->addr, c);
	}
	if (delta < 0 && --c->n == 0) {
		hmap_del(srv->per_ip, c->addr);
		free(c);
	} else if (delta > 0) {
		c->n++;
	}
}

uint64_t
smtp_size_limit(const struct conf *cf)
{
	return cf->message_size_limit;
}

static const char *
smtp_state_str(enum smtp_state st)
{
	switch (st) {
	case SMTP_ST_PROXY:
		return "proxy";
	case SMTP_ST_GREET:
		return "greet";
	case SMTP_ST_READY:
		return "ready";
	case SMTP_ST_MAIL:
		return "mail";
	case SMTP_ST_RCPT:
		return "rcpt";
	case SMTP_ST_DATA:
		return "data";
	case SMTP_ST_BDAT:
		return "bdat";
	case SMTP_ST_CHUNKING:
		return "chunking";
	case SMTP_ST_QUEUING:
		return "queuing";
	case SMTP_ST_TLS:
		return "tls";
	}
	return "?";
}

const char *
smtp_logid(const struct smtp_sess *s)
{
	return s->qid[0] != '\0' ? s->qid : s->id;
}

void
smtp_log_reject(const struct smtp_sess *s, const char *cmd, const char *reply,
    const char *to)
{
	char to_part[PARSE_ADDR_SIZE + 8] = "";

	if (to != NULL)
		snprintf(to_part, sizeof(to_part), " to=<%s>", to);
	log_event(s->qid[0] != '\0' ? s->qid : "NOQUEUE",
	    "reject: %s from %s: %s; from=<%s>%s proto=%s helo=<%s>", cmd,
	    s->peer, reply, s->env != NULL ? s->env->sender : "", to_part,
	    s->esmtp ? "ESMTP" : "SMTP", s->helo);
}

bool
smtp_in_body(enum smtp_state st)
{
	return st == SMTP_ST_DATA || st == SMTP_ST_BDAT ||
	       st == SMTP_ST_CHUNKING;
}

/* A message body starts: the first window of min_data_rate begins. */
static void
smtp_rate_start(struct smtp_sess *s)
{
	const struct conf *cf = s->srv->cf;
	struct timeval tv = {cf->min_data_rate_window, 0};

	s->rate_bytes = 0;
	s->rate_window = cf->min_data_rate_window;
	if (cf->min_data_rate > 0)
		evtimer_add(s->rate, &tv);
}

void
smtp_set_state(struct smtp_sess *s, enum smtp_state st)
{
	bool was = smtp_in_body(s->state), now = smtp_in_body(st);

	if (s->state == st)
		return;
	log_debug("%s: state %s -> %s", smtp_logid(s), smtp_state_str(s->state),
	    smtp_state_str(st));
	s->state = st;
	if (!was && now)
		smtp_rate_start(s);
	else if (was && !now)
		evtimer_del(s->rate);
	smtp_set_timeouts(s);
}

void
smtp_set_timeouts(struct smtp_sess *s)
{
	const struct conf *cf = s->srv->cf;
	bool data = s->state == SMTP_ST_DATA || s->state == SMTP_ST_BDAT;
	struct timeval tv = {0, 0};

	/* A proxy has proxy_timeout for its whole header, however it comes
	 * (relay/server_proxy.c): no timeout that each byte restarts. */
	if (s->state == SMTP_ST_PROXY) {
		bufferevent_set_timeouts(s->bev, NULL, NULL);
		return;
	}
	tv.tv_sec = data ? cf->data_timeout : cf->command_timeout;
	bufferevent_set_timeouts(s->bev, &tv, &tv);
}

/*
 * A refusal of a command's syntax or sequence (RFC 5321 4.2.2: 500-504,
 * 555; RFC 3463 X.5.X), counted here as "protocol". Every other refusal
 * is counted where it is decided, by its own reason.
 */
static bool
smtp_reply_is_protocol(const char *line, size_t n)
{
	return n >= 8 && line[0] == '5' &&
	       ((line[1] == '0' && line[2] >= '0' && line[2] <= '4') ||
		   strncmp(line, "555", 3) == 0 ||
		   strncmp(line + 4, "5.5.", 4) == 0);
}

/*
 * Queues one reply line. Replies starting with 4 or 5 count towards the
 * session's error limit, except the 421 that closes it anyway.
 */
void
smtp_reply(struct smtp_sess *s, const char *fmt, ...)
{
	struct evbuffer *out = bufferevent_get_output(s->bev);
	char line[1024];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	if ((size_t)n >= sizeof(line))
		n = sizeof(line) - 1;
	if ((line[0] == '4' || line[0] == '5') && strncmp(line, "421", 3) != 0)
		s->nerrors++;
	if (smtp_reply_is_protocol(line, (size_t)n))
		metrics_reject("protocol");
	if (line[0] >= '4')
		log_debug("%s: reply %s", smtp_logid(s), line);
	evbuffer_add(out, line, (size_t)n);
	evbuffer_add(out, "\r\n", 2);
}

static bool
smtp_output_empty(struct smtp_sess *s)
{
	struct bufferevent *under = bufferevent_get_underlying(s->bev);

	if (evbuffer_get_length(bufferevent_get_output(s->bev)) > 0)
		return false;
	return under == NULL ||
	       evbuffer_get_length(bufferevent_get_output(under)) == 0;
}

/* Frees the session from the loop, never inside its own callbacks. */
static void
smtp_try_reap(struct smtp_sess *s)
{
	if (s->closing && smtp_output_empty(s))
		event_active(s->reap, EV_TIMEOUT, 0);
}

/* With TLS the ciphertext sits below: wait for that buffer to drain too. */
static void
smtp_on_under_drained(
    struct evbuffer *buf, const struct evbuffer_cb_info *info, void *arg)
{
	(void)buf;
	(void)info;
	smtp_try_reap(arg);
}

/*
 * The session says nothing more: it no longer counts towards the
 * connection limits, its timers stop and its message data is freed.
 */
static void
smtp_set_closing(struct smtp_sess *s)
{
	struct server *srv = s->srv;

	if (s->closing)
		return;
	s->closing = true;
	srv->nopen--;
	if (s->ip_counted)
		smtp_ip_add(srv, s->addr, -1);
	s->ip_counted = false;
	evtimer_del(s->deadline);
	if (s->proxy_wait != NULL)
		evtimer_del(s->proxy_wait);
	evtimer_del(s->rate);
	parse_data_fini(&s->data);
	smtp_data_account(s);
}

void
smtp_close_after(struct smtp_sess *s)
{
	struct bufferevent *under = bufferevent_get_underlying(s->bev);

	if (s->closing)
		return;
	smtp_set_closing(s);
	bufferevent_disable(s->bev, EV_READ);
	if (under != NULL)
		evbuffer_add_cb(
		    bufferevent_get_output(under), smtp_on_under_drained, s);
	smtp_try_reap(s);
}

void
smtp_reset_txn(struct smtp_sess *s)
{
	envelope_free(s->env);
	s->env = NULL;
	s->qid[0] = '\0';
	parse_data_fini(&s->data);
	smtp_data_account(s);
	s->data_nomem = false;
	s->bdat_left = 0;
	s->bdat_last = false;
	s->bdat_err[0] = '\0';
	if (s->state != SMTP_ST_GREET && s->state != SMTP_ST_TLS &&
	    s->state != SMTP_ST_PROXY)
		smtp_set_state(s, SMTP_ST_READY);
}

static int
smtp_no_args(struct smtp_sess *s, const char *verb, const char *args)
{
	if (*args == '\0')
		return 0;
	smtp_reply(s, "501 5.5.4 Syntax: %s", verb);
	return -1;
}

static int
smtp_cmd_helo(struct smtp_sess *s, char *args)
{
	char reply[PARSE_REPLY_SIZE];

	if (parse_helo("HELO", args, s->helo, reply, sizeof(reply)) < 0) {
		smtp_reply(s, "%s", reply);
		return -1;
	}
	s->esmtp = false;
	smtp_reset_txn(s);
	smtp_set_state(s, SMTP_ST_READY);
	smtp_reply(s, "250 %s", s->srv->cf->hostname);
	return 0;
}

static int
smtp_cmd_ehlo(struct smtp_sess *s, char *args)
{
	char reply[PARSE_REPLY_SIZE];
	const char *host = s->srv->cf->hostname;

	if (parse_helo("EHLO", args, s->helo, reply, sizeof(reply)) < 0) {
		smtp_reply(s, "%s", reply);
		return -1;
	}
	s->esmtp = true;
	smtp_reset_txn(s);
	smtp_set_state(s, SMTP_ST_READY);
	smtp_reply(s, "250-%s", host);
	smtp_reply(s, "250-PIPELINING");
	smtp_reply(s, "250-SIZE %llu",
	    (unsigned long long)smtp_size_limit(s->srv->cf));
	if (s->srv->tls != NULL && !s->tls)
		smtp_reply(s, "250-STARTTLS");
	smtp_reply(s, "250-ENHANCEDSTATUSCODES");
	smtp_reply(s, "250-8BITMIME");
	smtp_reply(s, "250-DSN");
	smtp_reply(s, "250-SMTPUTF8");
	/* A node handing its queue over (mxspoolctl xfer) says when each
	 * message first arrived: MAIL ... ARRIVAL=<unix seconds>. */
	if (s->peer_link)
		smtp_reply(s, "250-XMXSPOOL-ARRIVAL");
	smtp_reply(s, "250 CHUNKING");
	return 0;
}

static int
smtp_cmd_mail(struct smtp_sess *s, char *args)
{
	char reply[PARSE_REPLY_SIZE];
	struct parse_mail m;
	struct envelope *env;

	switch (s->state) {
	case SMTP_ST_PROXY:
	case SMTP_ST_GREET:
		smtp_reply(s, "503 5.5.1 Error: send HELO/EHLO first");
		return -1;
	case SMTP_ST_READY:
		break;
	case SMTP_ST_MAIL:
	case SMTP_ST_RCPT:
	case SMTP_ST_CHUNKING:
	case SMTP_ST_DATA:
	case SMTP_ST_BDAT:
	case SMTP_ST_QUEUING:
	case SMTP_ST_TLS:
		smtp_reply(s, "503 5.5.1 Error: nested MAIL command");
		return -1;
	}
	if (parse_mail(args, &m, reply, sizeof(reply)) < 0) {
		smtp_reply(s, "%s", reply);
		return -1;
	}
	if (s->proxy_local) {
		/* The proxy's own connection (a health check) names no client
		 * to take mail from. */
		smtp_log_reject(s, "MAIL", SMTP_PROXY_LOCAL_REPLY, NULL);
		metrics_reject("proxy_local");
		smtp_reply(s, SMTP_PROXY_LOCAL_REPLY);
		return -1;
	}
	if (m.arrival != 0 && !s->peer_link) {
		smtp_reply(s, "555 5.5.4 Unsupported parameter ARRIVAL");
		return -1;
	}
	if (m.has_size && m.size > smtp_size_limit(s->srv->cf)) {
		metrics_reject("size");
		smtp_reply(s, "552 5.3.4 Message size exceeds fixed limit");
		return -1;
	}
	env = envelope_new();
	env->sender = xstrdup(m.addr);
	env->client_addr = xstrdup(s->addr);
	env->client_name = s->name[0] != '\0' ? xstrdup(s->name) : NULL;
	env->helo = s->helo[0] != '\0' ? xstrdup(s->helo) : NULL;
	env->body = m.body;
	env->ret = m.ret;
	env->envid = m.has_envid ? xstrdup(m.envid) : NULL;
	env->flags = m.smtputf8 ? ENV_SMTPUTF8 : 0;
	/* From a peer: the first arrival, kept (relay/data.c). */
	env->arrival = m.arrival * 1000000;
	s->env = env;
	smtp_set_state(s, SMTP_ST_MAIL);
	smtp_reply(s, "250 2.1.0 Ok");
	return 0;
}

/*
 * Whether env already has addr: the local part compared exactly, the
 * domain without regard to case (RFC 5321 2.4). A local part is compared
 * as given: "joe"@d and joe@d are two recipients, as only the destination
 * may say they are one mailbox.
 */
static bool
smtp_rcpt_given(const struct envelope *env, const char *addr)
{
	const char *at = strrchr(addr, '@');
	size_t local = at != NULL ? (size_t)(at - addr) : strlen(addr);

	for (size_t i = 0; i < env->nrcpts; i++) {
		const char *a = env->rcpts[i].addr;
		const char *at2 = strrchr(a, '@');
		size_t local2 = at2 != NULL ? (size_t)(at2 - a) : strlen(a);

		if (local == local2 && memcmp(a, addr, local) == 0 &&
		    (at == NULL) == (at2 == NULL) &&
		    (at == NULL || idn_equal(at + 1, at2 + 1)))
			return true;
	}
	return false;
}

/*
 * A recipient's domain as A-labels into ace (RFC 5890, RFC 5891 5), and
 * in note " (other form)" for the log when it has two forms, else "".
 * A name IDNA refuses (an A-label that does not decode, a disallowed code
 * point, a label over 63 octets once converted) gets 553 5.1.3 here.
 */
static int
smtp_rcpt_domain(struct smtp_sess *s, const struct parse_rcpt *r,
    char ace[IDN_NAME_SIZE], char *note, size_t notelen)
{
	char why[128], other[4 * IDN_NAME_SIZE];

	note[0] = '\0';
	if (idn_to_ascii(r->domain, ace, IDN_NAME_SIZE, why, sizeof(why)) < 0) {
		char rej[PARSE_ADDR_SIZE + 160];

		snprintf(rej, sizeof(rej),
		    "553 5.1.3 <%s>: bad domain name: %s", r->addr, why);
		smtp_log_reject(s, "RCPT", rej, r->addr);
		metrics_reject("domain");
		smtp_reply(
		    s, "553 5.1.3 <%s>: Bad domain name: %s", r->addr, why);
		return -1;
	}
	if (idn_other_form(r->domain, other, sizeof(other)))
		snprintf(note, notelen, " (%s)", other);
	return 0;
}

/* Whether r passes its domain's recipients file, if it has one. */
static bool
smtp_rcpt_listed(const struct conf *cf, const struct parse_rcpt *r)
{
	char local[PARSE_ADDR_SIZE];
	size_t n = (size_t)(strrchr(r->addr, '@') - r->addr);

	/* The local part as sent, quotes and all, as the queue has it. */
	memcpy(local, r->addr, n);
	local[n] = '\0';
	return conf_recipient_known(cf, local, r->domain);
}

static int
smtp_cmd_rcpt(struct smtp_sess *s, char *args)
{
	const struct conf *cf = s->srv->cf;
	char reply[PARSE_REPLY_SIZE];
	char ace[IDN_NAME_SIZE], note[4 * IDN_NAME_SIZE + 4] = "";
	char rej[PARSE_ADDR_SIZE + 4 * IDN_NAME_SIZE + 160];
	struct parse_rcpt r;
	const char *addr;

	if (s->state == SMTP_ST_CHUNKING) {
		smtp_reply(s, "503 5.5.1 Error: BDAT in progress");
		return -1;
	}
	if (s->state != SMTP_ST_MAIL && s->state != SMTP_ST_RCPT) {
		smtp_reply(s, "503 5.5.1 Error: need MAIL command");
		return -1;
	}
	if (parse_rcpt(args, (s->env->flags & ENV_SMTPUTF8) != 0, &r, reply,
		sizeof(reply)) < 0) {
		smtp_reply(s, "%s", reply);
		return -1;
	}
	/*
	 * <Postmaster> with no domain MUST be accepted (RFC 5321 4.5.1): it
	 * is stored as the configured postmaster, so that routing and lanes
	 * see a whole address, and that address is the operator's choice,
	 * outside the relay and recipient checks. postmaster@ each of our
	 * domains is taken even where a recipients file leaves it out. A
	 * quoted local part is looked up in that file unquoted.
	 */
	addr = r.postmaster ? cf->postmaster : r.addr;
	if (smtp_rcpt_given(s->env, addr)) {
		/* The same recipient again: one copy is delivered, with the
		 * first one's DSN parameters (as Postfix does). */
		smtp_reply(s, "250 2.1.5 Ok");
		return 0;
	}
	if (s->env->nrcpts >= cf->max_recipients) {
		metrics_reject("recipients");
		smtp_reply(s, "452 4.5.3 Error: too many recipients");
		return -1;
	}
	if (r.postmaster) {
		/* Said below, with the queue id. */
	} else if (smtp_rcpt_domain(s, &r, ace, note, sizeof(note)) < 0) {
		return -1;
	} else if (!conf_is_relay_domain(cf, ace)) {
		/* The log shows the domain's other form too, for grep. */
		snprintf(rej, sizeof(rej),
		    "554 5.7.1 <%s>%s: Relay access denied", r.addr, note);
		smtp_log_reject(s, "RCPT", rej, r.addr);
		metrics_reject("relay");
		smtp_reply(s, "554 5.7.1 <%s>: Relay access denied", r.addr);
		return -1;
	} else if (strcasecmp(r.local, "postmaster") != 0 &&
		   !smtp_rcpt_listed(cf, &r)) {
		snprintf(rej, sizeof(rej),
		    "550 5.1.1 <%s>%s: Recipient address rejected: User "
		    "unknown in relay recipient table",
		    r.addr, note);
		smtp_log_reject(s, "RCPT", rej, r.addr);
		metrics_reject("unknown_recipient");
		smtp_reply(s,
		    "550 5.1.1 <%s>: Recipient address rejected: User unknown "
		    "in relay recipient table",
		    r.addr);
		return -1;
	}
	/* A queue id once there is something to queue, as Postfix does
	 * (before it, refusals are NOQUEUE). */
	if (s->qid[0] == '\0') {
		/* A peer's hand-over keeps its first arrival in the id. */
		queue_new_qid(s->srv->q, s->env->arrival, s->qid);
		memcpy(s->env->qid, s->qid, QID_SIZE);
		log_event(s->qid, "client=%s, conn=%s, node=%s", s->peer, s->id,
		    s->srv->cf->node_id);
	}
	if (r.postmaster)
		log_event(s->qid, "to=<%s>, orig_to=<%s>", addr, r.addr);
	/* The envelope keeps the address as received; the log shows the
	 * domain's other form once, for searching by either. */
	if (note[0] != '\0')
		log_event(s->qid, "rcpt=<%s>%s", addr, note);
	envelope_add_rcpt(s->env, addr, r.has_orcpt ? r.orcpt : NULL, r.notify);
	smtp_set_state(s, SMTP_ST_RCPT);
	smtp_reply(s, "250 2.1.5 Ok");
	return 0;
}

static int
smtp_cmd_rset(struct smtp_sess *s, char *args)
{
	if (smtp_no_args(s, "RSET", args) < 0)
		return -1;
	smtp_reset_txn(s);
	smtp_reply(s, "250 2.0.0 Ok");
	return 0;
}

static int
smtp_cmd_noop(struct smtp_sess *s, char *args)
{
	(void)args; /* RFC 5321 4.1.1.9: a parameter is allowed and ignored */
	smtp_reply(s, "250 2.0.0 Ok");
	return 0;
}

static int
smtp_cmd_quit(struct smtp_sess *s, char *args)
{
	(void)args;
	smtp_reply(s, "221 2.0.0 Bye");
	smtp_close_after(s);
	return 0;
}

static int
smtp_cmd_vrfy(struct smtp_sess *s, char *args)
{
	if (*args == '\0') {
		smtp_reply(s, "501 5.5.4 Syntax: VRFY address");
		return -1;
	}
	/* A backup MX knows nothing worth confirming, and says so. */
	smtp_reply(s, "252 2.0.0 Cannot VRFY user, but will accept message "
		      "and attempt delivery");
	return 0;
}

static int
smtp_cmd_expn(struct smtp_sess *s, char *args)
{
	(void)args;
	smtp_reply(s, "502 5.5.1 EXPN is not available");
	return -1;
}

static int
smtp_cmd_help(struct smtp_sess *s, char *args)
{
	(void)args;
	smtp_reply(s, "214 2.0.0 Commands: EHLO HELO MAIL RCPT DATA BDAT RSET "
		      "NOOP QUIT VRFY HELP STARTTLS");
	return 0;
}

static int smtp_cmd_starttls(struct smtp_sess *s, char *args);

/* Web and proxy requests sent to the SMTP port: talk to them no more. */
static int
smtp_cmd_forbidden(struct smtp_sess *s, char *args)
{
	(void)args;
	log_event(s->id, "reject: non-SMTP command from %s", s->peer);
	metrics_reject("not_smtp");
	smtp_reply(s, "521 5.7.0 Error: not an SMTP command. Goodbye.");
	smtp_close_after(s);
	return -1;
}

struct smtp_verb {
	const char *name;
	int (*run)(struct smtp_sess *, char *args);
};

static const struct smtp_verb smtp_verbs[] = {
    {"EHLO", smtp_cmd_ehlo},
    {"HELO", smtp_cmd_helo},
    {"MAIL", smtp_cmd_mail},
    {"RCPT", smtp_cmd_rcpt},
    {"DATA", smtp_cmd_data},
    {"BDAT", smtp_cmd_bdat},
    {"RSET", smtp_cmd_rset},
    {"NOOP", smtp_cmd_noop},
    {"QUIT", smtp_cmd_quit},
    {"VRFY", smtp_cmd_vrfy},
    {"EXPN", smtp_cmd_expn},
    {"HELP", smtp_cmd_help},
    {"STARTTLS", smtp_cmd_starttls},
    {"GET", smtp_cmd_forbidden},
    {"POST", smtp_cmd_forbidden},
    {"HEAD", smtp_cmd_forbidden},
    {"PUT", smtp_cmd_forbidden},
    {"CONNECT", smtp_cmd_forbidden},
};

static void
smtp_command(struct smtp_sess *s, char *line)
{
	size_t len = strlen(line);
	char *verb, *args;

	/* Trailing blanks are noise, as Postfix treats them. */
	while (len > 0 && (line[len - 1] == ' ' || line[len - 1] == '\t'))
		line[--len] = '\0';
	verb = parse_split(line, &args);
	s->ncmds++;
	for (size_t i = 0; i < sizeof(smtp_verbs) / sizeof(smtp_verbs[0]);
	     i++) {
		if (strcasecmp(verb, smtp_verbs[i].name) == 0) {
			(void)smtp_verbs[i].run(s, args);
			return;
		}
	}
	smtp_reply(s, "500 5.5.2 Error: command not recognized");
}

/* Reads and runs one command line; -1 when no whole line is there. */
static int
smtp_read_line(struct smtp_sess *s, struct evbuffer *in)
{
	char line[SMTP_LINE_MAX + 1];
	size_t len = evbuffer_get_length(in), eol_len = 0;
	struct evbuffer_ptr p;

	if (s->discard_line) {
		p = evbuffer_search(in, "\n", 1, NULL);
		if (p.pos < 0) {
			evbuffer_drain(in, len);
			return -1;
		}
		evbuffer_drain(in, (size_t)p.pos + 1);
		s->discard_line = false;
		s->ncmds++;
		smtp_reply(s, "500 5.5.6 Error: line too long");
		return 0;
	}
	p = evbuffer_search_eol(in, NULL, &eol_len, EVBUFFER_EOL_CRLF);
	if (p.pos < 0) {
		if (len >= SMTP_LINE_MAX) {
			s->discard_line = true;
			evbuffer_drain(in, len);
		}
		return -1;
	}
	if ((size_t)p.pos + 2 > SMTP_LINE_MAX) {
		evbuffer_drain(in, (size_t)p.pos + eol_len);
		s->ncmds++;
		smtp_reply(s, "500 5.5.6 Error: line too long");
		return 0;
	}
	evbuffer_remove(in, line, (size_t)p.pos);
	line[p.pos] = '\0';
	evbuffer_drain(in, eol_len);
	if (memchr(line, '\0', (size_t)p.pos) != NULL) {
		s->ncmds++;
		smtp_reply(s, "500 5.5.2 Error: NUL character in command");
		return 0;
	}
	smtp_command(s, line);
	return 0;
}

static void smtp_process_input(struct smtp_sess *s);

/* Past session_deadline: 421 (in plain text unless TLS is being set up)
 * and close. A message being read is dropped, never queued. */
static void
smtp_expire(struct smtp_sess *s)
{
	const struct conf *cf = s->srv->cf;

	log_event(smtp_logid(s),
	    "reject: session deadline exceeded after %s from %s (%llds)",
	    smtp_state_str(s->state), s->peer, (long long)cf->session_deadline);
	metrics_reject("session_deadline");
	if (s->state != SMTP_ST_TLS && s->state != SMTP_ST_PROXY)
		smtp_reply(s, "421 4.4.2 %s Error: session deadline exceeded",
		    cf->hostname);
	smtp_close_after(s);
}

/*
 * session_deadline from connect: the session is closed now, whatever it
 * is doing, except a message already read and waiting for the spool: it
 * gets the spool's answer first (the client must learn whether its mail
 * was taken), then the 421, before any command pipelined behind it.
 */
static void
smtp_on_deadline(evutil_socket_t fd, short what, void *arg)
{
	struct smtp_sess *s = arg;

	(void)fd;
	(void)what;
	if (s->closing)
		return;
	s->expired = true;
	if (s->state != SMTP_ST_QUEUING)
		smtp_expire(s);
}

/* One min_data_rate_window of a message body is over. */
static void
smtp_on_rate(evutil_socket_t fd, short what, void *arg)
{
	struct smtp_sess *s = arg;
	const struct conf *cf = s->srv->cf;
	uint64_t rate = cf->min_data_rate, secs = (uint64_t)s->rate_window;
	uint64_t need = rate > UINT64_MAX / secs ? UINT64_MAX : rate * secs;

	(void)fd;
	(void)what;
	if (s->closing || !smtp_in_body(s->state))
		return;
	if (s->rate_bytes >= need) {
		s->rate_bytes = 0;
		return;
	}
	log_event(smtp_logid(s),
	    "reject: data rate too low from %s: %llu bytes in %llds of %s, "
	    "under %llu bytes/s",
	    s->peer, (unsigned long long)s->rate_bytes,
	    (long long)s->rate_window, smtp_state_str(s->state),
	    (unsigned long long)rate);
	metrics_reject("min_data_rate");
	smtp_reply(s, "421 4.4.2 %s Error: data rate too low", cf->hostname);
	smtp_close_after(s);
}

/*
 * Consumes whatever input the current state can use. A client that has
 * shut its side of the connection still gets every reply it is owed,
 * the one from the spool included; then the session closes.
 */
void
smtp_process(struct smtp_sess *s)
{
	smtp_process_input(s);
	if (s->eof && !s->closing && s->state != SMTP_ST_QUEUING)
		smtp_close_after(s);
}

static void
smtp_process_input(struct smtp_sess *s)
{
	unsigned max_errors = s->srv->cf->max_errors;

	while (!s->closing) {
		struct evbuffer *in = bufferevent_get_input(s->bev);
		struct evbuffer_iovec v;
		size_t n;

		if (s->expired && s->state != SMTP_ST_QUEUING) {
			smtp_expire(s);
			return;
		}

		/*
		 * A client that pipelines without reading our replies waits
		 * until it has read them: smtp_on_write resumes.
		 */
		if (evbuffer_get_length(bufferevent_get_output(s->bev)) >
		    SMTP_WRITE_MAX)
			return;

		switch (s->state) {
		case SMTP_ST_PROXY:
			if (smtp_proxy_read(s, in) < 0)
				return;
			continue;
		case SMTP_ST_QUEUING:
		case SMTP_ST_TLS:
			return;
		case SMTP_ST_DATA:
		case SMTP_ST_BDAT:
			if (evbuffer_peek(in, -1, NULL, &v, 1) < 1 ||
			    v.iov_len == 0)
				return;
			n = smtp_data_feed(s, v.iov_base, v.iov_len);
			evbuffer_drain(in, n);
			s->rate_bytes += n;
			continue;
		case SMTP_ST_GREET:
		case SMTP_ST_READY:
		case SMTP_ST_MAIL:
		case SMTP_ST_RCPT:
		case SMTP_ST_CHUNKING:
			if (smtp_read_line(s, in) < 0)
				return;
			break;
		}
		if (!s->closing && s->nerrors >= max_errors) {
			log_event(
			    smtp_logid(s), "too many errors from %s", s->peer);
			metrics_reject("errors");
			smtp_reply(s, "421 4.7.0 %s Error: too many errors",
			    s->srv->cf->hostname);
			smtp_close_after(s);
		}
	}
}

static void
smtp_on_read(struct bufferevent *bev, void *arg)
{
	struct smtp_sess *s = arg;

	(void)bev;
	s->last_read_ms = mono_ms();
	smtp_process(s);
}

static void
smtp_on_write(struct bufferevent *bev, void *arg)
{
	struct smtp_sess *s = arg;

	(void)bev;
	if (s->closing)
		smtp_try_reap(s);
	else
		smtp_process(s); /* input may have waited for the output */
}

static void smtp_on_event(struct bufferevent *bev, short what, void *arg);

static int
smtp_cmd_starttls(struct smtp_sess *s, char *args)
{
	struct evbuffer *in = bufferevent_get_input(s->bev);
	struct bufferevent *tbev;
	size_t junk;

	if (s->srv->tls == NULL) {
		smtp_reply(s, "502 5.5.1 Error: command not implemented");
		return -1;
	}
	if (s->tls) {
		smtp_reply(s, "554 5.5.1 Error: TLS already active");
		return -1;
	}
	if (s->state != SMTP_ST_GREET && s->state != SMTP_ST_READY) {
		smtp_reply(s, "503 5.5.1 Error: STARTTLS inside a transaction");
		return -1;
	}
	if (smtp_no_args(s, "STARTTLS", args) < 0)
		return -1;
	/*
	 * Anything the client sent after STARTTLS in plain text must not
	 * count as sent over TLS (CVE-2011-0411): drop it.
	 */
	junk = evbuffer_get_length(in);
	if (junk > 0) {
		log_warn("%s: %zu bytes pipelined after STARTTLS from %s "
			 "discarded",
		    s->id, junk, s->peer);
		evbuffer_drain(in, junk);
	}
	smtp_reply(s, "220 2.0.0 Ready to start TLS");
	bufferevent_set_timeouts(s->bev, NULL, NULL);
	tbev = tls_server_wrap(s->srv->tls, s->srv->base, s->bev);
	if (tbev == NULL) {
		log_err("%s: cannot start TLS", s->id);
		smtp_close_after(s);
		return -1;
	}
	s->bev = tbev;
	bufferevent_setcb(
	    s->bev, smtp_on_read, smtp_on_write, smtp_on_event, s);
	bufferevent_setwatermark(s->bev, EV_READ, 0, SMTP_READ_HIGHWAT);
	bufferevent_enable(s->bev, EV_READ | EV_WRITE);
	smtp_set_state(s, SMTP_ST_TLS);
	smtp_set_timeouts(s);
	return 0;
}

/* The handshake is done: the session starts over (RFC 3207 4.2). */
static void
smtp_tls_ready(struct smtp_sess *s)
{
	s->tls = true;
	tls_describe(s->bev, s->tls_info, sizeof(s->tls_info));
	log_event(s->id, "TLS connection established from %s: %s", s->peer,
	    s->tls_info);
	s->helo[0] = '\0';
	s->esmtp = false;
	smtp_set_state(s, SMTP_ST_GREET);
	smtp_process(s);
}

static void
smtp_on_event(struct bufferevent *bev, short what, void *arg)
{
	struct smtp_sess *s = arg;
	char why[256];

	(void)bev;
	if (what & BEV_EVENT_CONNECTED) {
		smtp_tls_ready(s);
		return;
	}
	if (s->closing) {
		/* The client does not read its last reply, or left. */
		event_active(s->reap, EV_TIMEOUT, 0);
		return;
	}
	if (what & BEV_EVENT_TIMEOUT) {
		log_event(smtp_logid(s), "timeout after %s from %s",
		    smtp_state_str(s->state), s->peer);
		metrics_reject("timeout");
		if (s->state != SMTP_ST_TLS)
			smtp_reply(s, "421 4.4.2 %s Error: timeout exceeded",
			    s->srv->cf->hostname);
		bufferevent_set_timeouts(s->bev, NULL, NULL);
		smtp_close_after(s);
		return;
	}
	if (what & BEV_EVENT_ERROR) {
		if (s->state == SMTP_ST_TLS || s->tls) {
			tls_last_error(s->bev, why, sizeof(why));
			log_event(s->id, "TLS error from %s: %s", s->peer, why);
		} else {
			log_debug(
			    "%s: connection error: %s", s->id, strerror(errno));
		}
	}
	if (what == (BEV_EVENT_EOF | BEV_EVENT_READING) && !s->eof) {
		/* Half-closed: what was sent before is still answered. */
		s->eof = true;
		bufferevent_disable(s->bev, EV_READ);
		smtp_process(s);
		if (s->state != SMTP_ST_DATA && s->state != SMTP_ST_BDAT)
			return;
	}
	if (s->state == SMTP_ST_DATA || s->state == SMTP_ST_BDAT)
		log_event(smtp_logid(s), "lost connection after %s from %s",
		    smtp_state_str(s->state), s->peer);
	/* The client has gone. */
	smtp_set_closing(s);
	event_active(s->reap, EV_TIMEOUT, 0);
}

static void
smtp_sess_free(struct smtp_sess *s)
{
	struct server *srv = s->srv;

	log_event(s->id, "disconnect from %s commands=%u messages=%u errors=%u",
	    s->peer, s->ncmds, s->nmsgs, s->nerrors);
	smtp_set_closing(s);
	TAILQ_REMOVE(&srv->sessions, s, entry);
	srv->nsessions--;
	if (srv->dns != NULL)
		dns_cancel(srv->dns, s->ptr_id);
	envelope_free(s->env);
	parse_data_fini(&s->data);
	bufferevent_free(s->bev);
	event_free(s->reap);
	event_free(s->deadline);
	event_free(s->rate);
	if (s->proxy_wait != NULL)
		event_free(s->proxy_wait);
	free(s);
	if (srv->done != NULL && srv->nsessions == 0) {
		server_done_cb *done = srv->done;
		srv->done = NULL;
		evtimer_del(srv->deadline);
		done(srv->done_arg);
	}
}

static void
smtp_on_reap(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	smtp_sess_free(arg);
}

/* The client's name: known for the Received header if it comes in time.
 * The lookup is cancelled when the session goes, so s is alive here. */
static void
smtp_on_ptr(void *arg, enum dns_status st, const char *name)
{
	struct smtp_sess *s = arg;

	s->ptr_id = 0;
	if (st == DNS_OK && name != NULL) {
		snprintf(s->name, sizeof(s->name), "%s", name);
		log_debug("%s: client name %s", s->id, s->name);
	}
}

void
server_set_dns(struct server *srv, struct dns *dns)
{
	srv->dns = dns;
}

void
server_set_queue(struct server *srv, struct queue *q)
{
	srv->q = q;
}

struct smtp_sess *
smtp_sess_find(struct server *srv, uint64_t sid)
{
	struct smtp_sess *s;

	TAILQ_FOREACH(s, &srv->sessions, entry)
	if (s->sid == sid)
		return s;
	return NULL;
}

void
smtp_format_addr(const struct sockaddr *sa, char addr[INET6_ADDRSTRLEN],
    char peer[INET6_ADDRSTRLEN + 8])
{
	unsigned port = 0;

	snprintf(addr, INET6_ADDRSTRLEN, "?");
	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *sin = (const void *)sa;
		inet_ntop(AF_INET, &sin->sin_addr, addr, INET6_ADDRSTRLEN);
		port = ntohs(sin->sin_port);
	} else if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *sin6 = (const void *)sa;
		inet_ntop(AF_INET6, &sin6->sin6_addr, addr, INET6_ADDRSTRLEN);
		port = ntohs(sin6->sin6_port);
	}
	snprintf(peer, INET6_ADDRSTRLEN + 8, "[%s]:%u", addr, port);
}

/* Idle: between commands, with no message being read or queued. */
static bool
smtp_idle_state(enum smtp_state st)
{
	switch (st) {
	case SMTP_ST_GREET:
	case SMTP_ST_READY:
	case SMTP_ST_MAIL:
	case SMTP_ST_RCPT:
	case SMTP_ST_CHUNKING:
		return true;
	case SMTP_ST_PROXY: /* not yet counted, and soon gone */
	case SMTP_ST_DATA:
	case SMTP_ST_BDAT:
	case SMTP_ST_QUEUING:
	case SMTP_ST_TLS:
		return false;
	}
	return false;
}

/*
 * The session to close to make room for the new client s, whose address
 * had from_ip open sessions before it: the one idle longest (at least
 * SMTP_EVICT_IDLE_MS) among those from other addresses with more sessions
 * than that. NULL if there is none.
 */
static struct smtp_sess *
smtp_evictable(struct server *srv, const struct smtp_sess *s, unsigned from_ip)
{
	struct smtp_sess *o, *best = NULL;

	TAILQ_FOREACH(o, &srv->sessions, entry)
	{
		if (o == s || o->closing || !smtp_idle_state(o->state) ||
		    s->last_read_ms - o->last_read_ms < SMTP_EVICT_IDLE_MS)
			continue;
		if (best != NULL && o->last_read_ms >= best->last_read_ms)
			continue;
		/* Never one of the new client's own: it holds from_ip. */
		if (strcmp(o->addr, s->addr) != 0 &&
		    smtp_ip_count(srv, o->addr) > from_ip)
			best = o;
	}
	return best;
}

/* A session for a connection accepted from sa, counted open. */
static struct smtp_sess *
smtp_sess_new(struct server *srv, evutil_socket_t fd, const struct sockaddr *sa,
    enum smtp_state st)
{
	const struct conf *cf = srv->cf;
	struct smtp_sess *s = xcalloc(1, sizeof(*s));
	struct timeval deadline = {cf->session_deadline, 0};

	s->srv = srv;
	s->sid = ++srv->next_sid;
	snprintf(s->id, sizeof(s->id), "C%08x", (unsigned)s->sid);
	smtp_format_addr(sa, s->addr, s->peer);
	s->state = st;
	s->last_read_ms = mono_ms();
	s->bev = bufferevent_socket_new(srv->base, fd, BEV_OPT_CLOSE_ON_FREE);
	s->reap = event_new(srv->base, -1, 0, smtp_on_reap, s);
	s->deadline = evtimer_new(srv->base, smtp_on_deadline, s);
	s->rate = event_new(srv->base, -1, EV_PERSIST, smtp_on_rate, s);
	bufferevent_setcb(
	    s->bev, smtp_on_read, smtp_on_write, smtp_on_event, s);
	bufferevent_setwatermark(s->bev, EV_READ, 0, SMTP_READ_HIGHWAT);
	bufferevent_enable(s->bev, EV_READ | EV_WRITE);
	smtp_set_timeouts(s);
	evtimer_add(s->deadline, &deadline);
	TAILQ_INSERT_TAIL(&srv->sessions, s, entry);
	srv->nsessions++;
	srv->nopen++;
	metrics_inc(M_CONNECTIONS);
	return s;
}

/*
 * Past max_connections_per_ip a client gets 421 at once; past
 * max_connections it gets a session that an idle one gives up (see
 * smtp_evictable), or 421 if none may.
 */
void
smtp_admit(struct smtp_sess *s, const struct sockaddr *sa)
{
	struct server *srv = s->srv;
	const struct conf *cf = srv->cf;
	unsigned from_ip = smtp_ip_count(srv, s->addr);
	struct smtp_sess *o;

	smtp_ip_add(srv, s->addr, +1);
	s->ip_counted = true;
	if (s->proxy_local)
		log_event(s->id, "connect from %s: the proxy's own connection",
		    s->peer);
	else if (s->via[0] != '\0')
		log_event(
		    s->id, "connect from %s via proxy %s", s->peer, s->via);
	else
		log_event(s->id, "connect from %s", s->peer);
	if (srv->dns != NULL && !s->proxy_local)
		s->ptr_id = dns_ptr(srv->dns, sa,
		    (unsigned)(cf->dns_ptr_timeout_ms ? cf->dns_ptr_timeout_ms
						      : 3000),
		    smtp_on_ptr, s);
	if (from_ip >= cf->max_connections_per_ip) {
		log_event(
		    s->id, "reject: too many connections from %s", s->addr);
		metrics_reject("connections_per_ip");
		smtp_reply(s,
		    "421 4.7.0 %s Error: too many connections from %s",
		    cf->hostname, s->addr);
		smtp_close_after(s);
		return;
	}
	if (srv->nopen > cf->max_connections) {
		o = smtp_evictable(srv, s, from_ip);
		if (o == NULL) {
			log_event(s->id, "reject: too many connections (%zu)",
			    srv->nopen - 1);
			metrics_reject("connections");
			smtp_reply(s,
			    "421 4.7.0 %s Error: too many connections",
			    cf->hostname);
			smtp_close_after(s);
			return;
		}
		log_event(o->id,
		    "reject: too many connections: closing %s, idle %.1fs "
		    "after %s, for %s",
		    o->peer, (double)(s->last_read_ms - o->last_read_ms) / 1e3,
		    smtp_state_str(o->state), s->peer);
		metrics_reject("idle_evicted");
		smtp_reply(o,
		    "421 4.4.5 %s Error: too many connections; closing idle "
		    "session",
		    cf->hostname);
		smtp_close_after(o);
	}
	smtp_reply(s, "220 %s ESMTP mxspool", cf->hostname);
}

/* A new client on a listen address. */
static void
server_on_accept(struct evconnlistener *l, evutil_socket_t fd,
    struct sockaddr *sa, int salen, void *arg)
{
	(void)l;
	(void)salen;
	smtp_admit(smtp_sess_new(arg, fd, sa, SMTP_ST_GREET), sa);
}

/* A node on a peer_listen address, handing its queue over: only from
 * peer_trusted, closed without a word otherwise (as proxy_listen). */
static void
server_on_accept_peer(struct evconnlistener *l, evutil_socket_t fd,
    struct sockaddr *sa, int salen, void *arg)
{
	struct smtp_sess *s = smtp_sess_new(arg, fd, sa, SMTP_ST_GREET);
	const struct conf *cf = s->srv->cf;

	(void)l;
	(void)salen;
	for (size_t i = 0; i < cf->npeer_trusted; i++)
		if (conf_cidr_match(&cf->peer_trusted[i], sa)) {
			s->peer_link = true;
			smtp_admit(s, sa);
			return;
		}
	log_event(
	    s->id, "reject: connect from %s: not in peer_trusted", s->peer);
	metrics_reject("peer_untrusted");
	smtp_close_after(s);
}

/* A proxy on a proxy_listen address: its header names the client. */
static void
server_on_accept_proxy(struct evconnlistener *l, evutil_socket_t fd,
    struct sockaddr *sa, int salen, void *arg)
{
	(void)l;
	(void)salen;
	smtp_proxy_start(smtp_sess_new(arg, fd, sa, SMTP_ST_PROXY), sa);
}

static void
server_on_accept_resume(evutil_socket_t fd, short what, void *arg)
{
	struct server *srv = arg;

	(void)fd;
	(void)what;
	if (srv->listeners != NULL && srv->done == NULL) {
		listen_enable(srv->listeners, true);
		listen_enable(srv->proxy_listeners, true);
		listen_enable(srv->peer_listeners, true);
	}
}

/*
 * accept() failing with EMFILE leaves the connection pending, so the
 * listener would fire again at once: pause accepting for a moment instead
 * of spinning.
 */
static void
server_on_accept_error(struct evconnlistener *l, void *arg)
{
	struct server *srv = arg;
	struct timeval tv = {SMTP_ACCEPT_PAUSE, 0};
	int e = EVUTIL_SOCKET_ERROR();

	(void)l;
	log_warn("accept: %s; pausing for %ds", strerror(e), SMTP_ACCEPT_PAUSE);
	listen_enable(srv->listeners, false);
	listen_enable(srv->proxy_listeners, false);
	listen_enable(srv->peer_listeners, false);
	evtimer_add(srv->accept_pause, &tv);
}

struct server *
server_new(struct event_base *base, const struct conf *cf, struct queue *q)
{
	struct server *srv = xcalloc(1, sizeof(*srv));

	srv->base = base;
	srv->cf = cf;
	srv->q = q;
	TAILQ_INIT(&srv->sessions);
	TAILQ_INIT(&srv->tickets);
	srv->per_ip = hmap_new();
	srv->accept_pause = evtimer_new(base, server_on_accept_resume, srv);
	return srv;
}

struct tls_ctx *
server_tls_new(const struct conf *cf, char *err, size_t errlen)
{
	enum tls_file bad;
	struct tls_ctx *ctx;
	char why[1024];
	int line;

	err[0] = '\0';
	/* conf_load makes sure that both are set, or neither. */
	if (cf->tls_cert_file == NULL || cf->tls_key_file == NULL)
		return NULL;
	ctx = tls_server_new(
	    cf->tls_cert_file, cf->tls_key_file, &bad, why, sizeof(why));
	if (ctx != NULL)
		return ctx;
	line = bad == TLS_FILE_KEY    ? cf->tls_key_line
	       : bad == TLS_FILE_CERT ? cf->tls_cert_line
				      : 0;
	if (line > 0)
		snprintf(err, errlen, "%s:%d: %s", cf->path, line, why);
	else
		snprintf(err, errlen, "%s: %s", cf->path, why);
	return NULL;
}

static int
server_load_tls(
    struct server *srv, const struct conf *cf, char *err, size_t errlen)
{
	struct tls_ctx *ctx = server_tls_new(cf, err, errlen);

	if (ctx == NULL && err[0] != '\0')
		return -1;
	tls_free(srv->tls);
	srv->tls = ctx;
	return 0;
}

int
server_bind(struct server *srv, char *err, size_t errlen)
{
	if (server_load_tls(srv, srv->cf, err, errlen) < 0)
		return -1;
	srv->listeners = listen_bind(srv->base, srv->cf->listen,
	    srv->cf->nlisten, server_on_accept, srv, err, errlen);
	if (srv->listeners == NULL)
		return -1;
	listen_set_error_cb(srv->listeners, server_on_accept_error);
	srv->proxy_listeners = listen_bind(srv->base, srv->cf->proxy_listen,
	    srv->cf->nproxy_listen, server_on_accept_proxy, srv, err, errlen);
	if (srv->proxy_listeners == NULL) {
		listen_close(srv->listeners);
		srv->listeners = NULL;
		return -1;
	}
	listen_set_error_cb(srv->proxy_listeners, server_on_accept_error);
	srv->peer_listeners = listen_bind(srv->base, srv->cf->peer_listen,
	    srv->cf->npeer_listen, server_on_accept_peer, srv, err, errlen);
	if (srv->peer_listeners == NULL) {
		listen_close(srv->listeners);
		listen_close(srv->proxy_listeners);
		srv->listeners = srv->proxy_listeners = NULL;
		return -1;
	}
	listen_set_error_cb(srv->peer_listeners, server_on_accept_error);
	return 0;
}

int
server_start(struct server *srv, char *err, size_t errlen)
{
	if (listen_start(srv->listeners, err, errlen) < 0 ||
	    listen_start(srv->proxy_listeners, err, errlen) < 0 ||
	    listen_start(srv->peer_listeners, err, errlen) < 0)
		return -1;
	for (size_t i = 0; i < srv->cf->nproxy_listen; i++)
		log_info("listening on %s for the PROXY protocol",
		    srv->cf->proxy_listen[i].text);
	for (size_t i = 0; i < srv->cf->npeer_listen; i++)
		log_info("listening on %s for peers handing their queue over",
		    srv->cf->peer_listen[i].text);
	return 0;
}

int
server_listen(struct server *srv, char *err, size_t errlen)
{
	if (server_bind(srv, err, errlen) < 0)
		return -1;
	return server_start(srv, err, errlen);
}

static int server_set_listen_rest(
    struct server *srv, const struct conf *cf, char *err, size_t errlen);

int
server_set_listen(
    struct server *srv, const struct conf *cf, char *err, size_t errlen)
{
	struct listen_set *ls;

	if (srv->listeners == NULL) /* shutting down */
		return 0;
	ls = listen_update(srv->peer_listeners, srv->base, cf->peer_listen,
	    cf->npeer_listen, server_on_accept_peer, srv, err, errlen);
	if (ls == NULL)
		return -1;
	srv->peer_listeners = ls;
	if (server_set_listen_rest(srv, cf, err, errlen) < 0) {
		char err2[256];

		ls = listen_update(srv->peer_listeners, srv->base,
		    srv->cf->peer_listen, srv->cf->npeer_listen,
		    server_on_accept_peer, srv, err2, sizeof(err2));
		if (ls != NULL)
			srv->peer_listeners = ls;
		else
			log_err("reload: %s", err2);
		return -1;
	}
	return 0;
}

/* server_set_listen for listen and proxy_listen. */
static int
server_set_listen_rest(
    struct server *srv, const struct conf *cf, char *err, size_t errlen)
{
	struct listen_set *ls;

	ls = listen_update(srv->proxy_listeners, srv->base, cf->proxy_listen,
	    cf->nproxy_listen, server_on_accept_proxy, srv, err, errlen);
	if (ls == NULL)
		return -1;
	srv->proxy_listeners = ls;
	ls = listen_update(srv->listeners, srv->base, cf->listen, cf->nlisten,
	    server_on_accept, srv, err, errlen);
	if (ls == NULL) {
		/* Nothing changes: the proxy listeners go back as they were
		 * (what this update closed is reopened). */
		char err2[256];

		ls = listen_update(srv->proxy_listeners, srv->base,
		    srv->cf->proxy_listen, srv->cf->nproxy_listen,
		    server_on_accept_proxy, srv, err2, sizeof(err2));
		if (ls != NULL)
			srv->proxy_listeners = ls;
		else
			log_err("reload: %s", err2);
		return -1;
	}
	srv->listeners = ls;
	return 0;
}

int
server_set_conf(
    struct server *srv, const struct conf *cf, char *err, size_t errlen)
{
	int rc = server_load_tls(srv, cf, err, errlen);

	srv->cf = cf;
	return rc;
}

size_t
server_nsessions(const struct server *srv)
{
	return srv->nsessions;
}

static void
server_on_deadline(evutil_socket_t fd, short what, void *arg)
{
	struct server *srv = arg;
	struct smtp_sess *s;

	(void)fd;
	(void)what;
	log_info("shutdown: closing %zu open sessions", srv->nsessions);
	/*
	 * One non-blocking send of the 421 each: a client that does not read
	 * is not waited for. (The bufferevent's output buffer is frozen to
	 * everyone but the bufferevent, so the reply goes out directly.) A
	 * TLS session cannot be told in plain text; it is just closed.
	 */
	while ((s = TAILQ_FIRST(&srv->sessions)) != NULL) {
		char msg[300];
		int n = snprintf(msg, sizeof(msg),
		    "421 4.3.2 %s Service shutting down\r\n",
		    srv->cf->hostname);

		if (!s->closing && !s->tls && s->state != SMTP_ST_TLS &&
		    s->state != SMTP_ST_PROXY && n > 0 &&
		    (size_t)n < sizeof(msg))
			(void)send(bufferevent_getfd(s->bev), msg, (size_t)n,
			    MSG_DONTWAIT | MSG_NOSIGNAL);
		smtp_sess_free(s);
	}
}

void
server_shutdown(struct server *srv, server_done_cb *done, void *arg)
{
	struct timeval tv = {srv->cf->shutdown_timeout, 0};

	listen_close(srv->listeners);
	srv->listeners = NULL;
	listen_close(srv->proxy_listeners);
	srv->proxy_listeners = NULL;
	listen_close(srv->peer_listeners);
	srv->peer_listeners = NULL;
	evtimer_del(srv->accept_pause);
	if (srv->nsessions == 0) {
		done(arg);
		return;
	}
	log_info("shutdown: waiting up to %llds for %zu open sessions",
	    (long long)srv->cf->shutdown_timeout, srv->nsessions);
	srv->done = done;
	srv->done_arg = arg;
	srv->deadline = evtimer_new(srv->base, server_on_deadline, srv);
	evtimer_add(srv->deadline, &tv);
}

void
server_free(struct server *srv)
{
	struct smtp_sess *s;

	if (srv == NULL)
		return;
	srv->done = NULL;
	while ((s = TAILQ_FIRST(&srv->sessions)) != NULL)
		smtp_sess_free(s);
	smtp_tickets_orphan(srv);
	hmap_free(srv->per_ip); /* empty: every session is gone */
	listen_close(srv->listeners);
	listen_close(srv->proxy_listeners);
	listen_close(srv->peer_listeners);
	if (srv->deadline != NULL)
		event_free(srv->deadline);
	event_free(srv->accept_pause);
	tls_free(srv->tls);
	free(srv);
}
