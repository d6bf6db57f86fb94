/*
 * sendmsg: delivers messages with relay/client, without the scheduler, and
 * prints what happened as JSON lines: one per recipient of each message as
 * its transaction ends, then one for the end of the session. The
 * integration tests drive the client with it.
 *
 *   sendmsg -c CONF --route ROUTE [--route ROUTE...] --from S --to R
 *           [--to R...] [--tls none|may|encrypt|verify] [options] FILE...
 *
 * A ROUTE is "smtp:[ADDR]:PORT", "lmtp:[ADDR]:PORT" or "lmtp:unix:/PATH";
 * "smtp:[A1]:P1,[A2]:P2" gives one host several addresses, and each
 * --route adds a host, tried in order. Addresses are numeric: the answer
 * is built here, as dns/ would hand it over.
 *
 * Options: --name NAME (the hosts' name, for texts and TLS checks),
 * --ca FILE, --max-msgs N, --idle SECS, --idle-first MS (the first next()
 * returns NULL and a wake follows after MS; 0: from inside next()),
 * --quit-after N (quit once N messages are done), --8bit, --binary, --smtputf8,
 * --ret FULL|HDRS,
 * --envid X, --notify SUCCESS,FAILURE,DELAY|NEVER, --orcpt X, --helo NAME.
 * Each FILE is one message, sent as is (CRLF lines, not dot-stuffed).
 */
#include <arpa/inet.h>
#include <event2/event.h>
#include <getopt.h>
#include <jansson.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/conf.h"
#include "common/log.h"
#include "common/xmem.h"
#include "dns/dns.h"
#include "relay/client.h"

static struct event_base *base;
static struct client_msg *msgs;
static size_t nmsgs, next_msg, ndone;
static long idle_first_ms = -1;
static long quit_after = -1;
static struct event *wake_ev;
static int exit_code;

static void
print_json(json_t *o)
{
	char *s = json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS);

	printf("%s\n", s);
	fflush(stdout);
	free(s);
	json_decref(o);
}

static char *
read_file(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	char *buf = NULL;
	size_t n = 0, cap = 0, r;

	if (f == NULL) {
		perror(path);
		exit(2);
	}
	do {
		if (n + 65536 > cap) {
			cap = (n + 65536) * 2;
			buf = xrealloc(buf, cap);
		}
		r = fread(buf + n, 1, cap - n, f);
		n += r;
	} while (r > 0);
	fclose(f);
	*len = n;
	return buf;
}

static void
on_wake(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	client_session_wake(arg);
}

static struct client_msg *
cb_next(void *arg, struct client_session *cs)
{
	(void)arg;
	if (idle_first_ms >= 0) {
		struct timeval tv = {.tv_sec = idle_first_ms / 1000,
		    .tv_usec = (idle_first_ms % 1000) * 1000};

		if (idle_first_ms == 0) {
			/* A wake from inside next(): must not be lost. */
			idle_first_ms = -1;
			client_session_wake(cs);
			return NULL;
		}
		idle_first_ms = -1;
		wake_ev = evtimer_new(base, on_wake, cs);
		evtimer_add(wake_ev, &tv);
		return NULL;
	}
	if (next_msg >= nmsgs)
		return NULL;
	return &msgs[next_msg++];
}

static void
cb_done(void *arg, struct client_session *cs, struct client_msg *m)
{
	const char *tls = client_session_tls(cs);

	(void)arg;
	for (size_t i = 0; i < m->nrcpts; i++) {
		struct client_rcpt *r = &m->rcpts[i];

		print_json(json_pack("{ss ss si ss ss? ss ss?}", "qid", m->qid,
		    "rcpt", r->addr, "code", r->code, "dsn", r->dsn, "text",
		    r->text, "relay", client_session_relay(cs), "tls", tls));
	}
	ndone++;
	if (quit_after >= 0 && ndone == (size_t)quit_after)
		client_session_quit(cs);
}

static void
cb_closed(void *arg, struct client_session *cs, const struct client_end *end)
{
	(void)arg;
	print_json(json_pack("{sb sb si si ss ss ss}", "closed", 1, "connected",
	    end->connected, "delivered_msgs", (int)end->delivered_msgs, "code",
	    end->code, "dsn", end->dsn, "text", end->text, "relay",
	    client_session_relay(cs)));
	client_session_free(cs);
	event_base_loopexit(base, NULL);
}

/* "[ADDR]:PORT" into a dns_addr; the port goes into the sockaddr. */
static void
parse_addr(const char *s, struct dns_addr *a, uint16_t *port)
{
	char host[48];
	const char *close = strchr(s, ']');
	unsigned char buf[16];
	long p;

	if (s[0] != '[' || close == NULL || close[1] != ':' ||
	    (size_t)(close - s - 1) >= sizeof(host)) {
		fprintf(stderr, "sendmsg: bad address '%s'\n", s);
		exit(2);
	}
	memcpy(host, s + 1, (size_t)(close - s - 1));
	host[close - s - 1] = '\0';
	p = strtol(close + 2, NULL, 10);
	if (p <= 0 || p > 65535) {
		fprintf(stderr, "sendmsg: bad port in '%s'\n", s);
		exit(2);
	}
	*port = (uint16_t)p;
	memset(a, 0, sizeof(*a));
	if (inet_pton(AF_INET, host, buf) == 1) {
		struct sockaddr_in *sin = (struct sockaddr_in *)&a->sa;

		sin->sin_family = AF_INET;
		sin->sin_port = htons(*port);
		memcpy(&sin->sin_addr, buf, 4);
		a->salen = sizeof(*sin);
	} else if (inet_pton(AF_INET6, host, buf) == 1) {
		struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&a->sa;

		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = htons(*port);
		memcpy(&sin6->sin6_addr, buf, 16);
		a->salen = sizeof(*sin6);
	} else {
		fprintf(stderr, "sendmsg: not a numeric address '%s'\n", host);
		exit(2);
	}
	snprintf(a->text, sizeof(a->text), "%s", host);
}

/* Adds one --route to the answer; returns whether it is LMTP. */
static bool
add_route(struct dns_answer *ans, const char *route, const char *name)
{
	bool lmtp = strncmp(route, "lmtp:", 5) == 0;
	struct dns_host *h;
	char *list, *tok, *save = NULL;

	if (!lmtp && strncmp(route, "smtp:", 5) != 0) {
		fprintf(stderr, "sendmsg: bad route '%s'\n", route);
		exit(2);
	}
	if (strncmp(route + 5, "unix:", 5) == 0) {
		ans->kind = ROUTE_LMTP_UNIX;
		free(ans->path);
		ans->path = xstrdup(route + 10);
		return lmtp;
	}
	ans->kind = lmtp ? ROUTE_LMTP : ROUTE_SMTP;
	ans->hosts = xrealloc(ans->hosts, (ans->nhosts + 1) * sizeof(*h));
	h = &ans->hosts[ans->nhosts++];
	memset(h, 0, sizeof(*h));
	h->pref = -1;
	list = xstrdup(route + 5);
	for (tok = strtok_r(list, ",", &save); tok != NULL;
	     tok = strtok_r(NULL, ",", &save)) {
		h->addrs =
		    xrealloc(h->addrs, (h->naddrs + 1) * sizeof(*h->addrs));
		parse_addr(tok, &h->addrs[h->naddrs], &h->port);
		h->naddrs++;
	}
	h->name = xstrdup(name != NULL ? name : h->addrs[0].text);
	free(list);
	return lmtp;
}

static enum tls_policy
parse_tls(const char *s)
{
	if (strcmp(s, "none") == 0)
		return TLS_NONE;
	if (strcmp(s, "may") == 0)
		return TLS_MAY;
	if (strcmp(s, "encrypt") == 0)
		return TLS_ENCRYPT;
	if (strcmp(s, "verify") == 0)
		return TLS_VERIFY;
	fprintf(stderr, "sendmsg: bad tls policy '%s'\n", s);
	exit(2);
}

static unsigned
parse_notify(const char *s)
{
	unsigned n = 0;

	if (strstr(s, "NEVER") != NULL)
		n |= NOTIFY_NEVER;
	if (strstr(s, "SUCCESS") != NULL)
		n |= NOTIFY_SUCCESS;
	if (strstr(s, "FAILURE") != NULL)
		n |= NOTIFY_FAILURE;
	if (strstr(s, "DELAY") != NULL)
		n |= NOTIFY_DELAY;
	return n;
}

static void
usage(void)
{
	fprintf(stderr, "usage: sendmsg -c CONF --route ROUTE --from S --to R "
			"[--to R...] [--tls POLICY] [options] FILE...\n");
	exit(2);
}

enum {
	OPT_ROUTE = 256,
	OPT_FROM,
	OPT_TO,
	OPT_TLS,
	OPT_NAME,
	OPT_CA,
	OPT_MAXMSGS,
	OPT_IDLE,
	OPT_IDLEFIRST,
	OPT_QUITAFTER,
	OPT_8BIT,
	OPT_BINARY,
	OPT_UTF8,
	OPT_RET,
	OPT_ENVID,
	OPT_NOTIFY,
	OPT_ORCPT,
	OPT_HELO,
};

int
main(int argc, char **argv)
{
	static const struct option opts[] = {
	    {"route", required_argument, NULL, OPT_ROUTE},
	    {"from", required_argument, NULL, OPT_FROM},
	    {"to", required_argument, NULL, OPT_TO},
	    {"tls", required_argument, NULL, OPT_TLS},
	    {"name", required_argument, NULL, OPT_NAME},
	    {"ca", required_argument, NULL, OPT_CA},
	    {"max-msgs", required_argument, NULL, OPT_MAXMSGS},
	    {"idle", required_argument, NULL, OPT_IDLE},
	    {"idle-first", required_argument, NULL, OPT_IDLEFIRST},
	    {"quit-after", required_argument, NULL, OPT_QUITAFTER},
	    {"8bit", no_argument, NULL, OPT_8BIT},
	    {"binary", no_argument, NULL, OPT_BINARY},
	    {"smtputf8", no_argument, NULL, OPT_UTF8},
	    {"ret", required_argument, NULL, OPT_RET},
	    {"envid", required_argument, NULL, OPT_ENVID},
	    {"notify", required_argument, NULL, OPT_NOTIFY},
	    {"orcpt", required_argument, NULL, OPT_ORCPT},
	    {"helo", required_argument, NULL, OPT_HELO},
	    {NULL, 0, NULL, 0},
	};
	const char *path = NULL, *from = NULL, *name = NULL, *envid = NULL;
	const char *orcpt = NULL, *helo = NULL;
	const char **routes = NULL, **tos = NULL;
	size_t nroutes = 0, ntos = 0;
	struct client_target t;
	struct dns_answer *ans = xcalloc(1, sizeof(*ans));
	struct client_cbs cbs = {cb_next, cb_done, cb_closed};
	enum body_type body = BODY_7BIT;
	enum dsn_ret ret = RET_DEFAULT;
	bool utf8 = false, lmtp = false, tls_set = false;
	unsigned notify = 0;
	char *errors = NULL;
	struct conf *cf;
	int ch;

	memset(&t, 0, sizeof(t));
	while ((ch = getopt_long(argc, argv, "c:", opts, NULL)) != -1) {
		switch (ch) {
		case 'c':
			path = optarg;
			break;
		case OPT_ROUTE:
			routes =
			    xrealloc(routes, (nroutes + 1) * sizeof(*routes));
			routes[nroutes++] = optarg;
			break;
		case OPT_FROM:
			from = optarg;
			break;
		case OPT_TO:
			tos = xrealloc(tos, (ntos + 1) * sizeof(*tos));
			tos[ntos++] = optarg;
			break;
		case OPT_TLS:
			t.tls = parse_tls(optarg);
			tls_set = true;
			break;
		case OPT_NAME:
			name = optarg;
			break;
		case OPT_CA:
			t.tls_ca_file = optarg;
			break;
		case OPT_MAXMSGS:
			t.max_msgs = (unsigned)atoi(optarg);
			break;
		case OPT_IDLE:
			t.idle_timeout = atoi(optarg);
			break;
		case OPT_IDLEFIRST:
			idle_first_ms = atol(optarg);
			break;
		case OPT_QUITAFTER:
			quit_after = atol(optarg);
			break;
		case OPT_8BIT:
			body = BODY_8BITMIME;
			break;
		case OPT_BINARY:
			body = BODY_BINARYMIME;
			break;
		case OPT_UTF8:
			utf8 = true;
			break;
		case OPT_RET:
			ret = strcasecmp(optarg, "FULL") == 0 ? RET_FULL
							      : RET_HDRS;
			break;
		case OPT_ENVID:
			envid = optarg;
			break;
		case OPT_NOTIFY:
			notify = parse_notify(optarg);
			break;
		case OPT_ORCPT:
			orcpt = optarg;
			break;
		case OPT_HELO:
			helo = optarg;
			break;
		default:
			usage();
		}
	}
	if (path == NULL || nroutes == 0 || from == NULL || ntos == 0 ||
	    optind >= argc)
		usage();
	if (conf_load(&cf, path, &errors) < 0) {
		fprintf(stderr, "%s", errors != NULL ? errors : "bad config\n");
		return 2;
	}
	log_open("sendmsg", NULL, LOG_TO_STDERR, cf->log_level);

	ans->domain = xstrdup("sendmsg.test");
	ans->status = DNS_OK;
	ans->dsn = "2.0.0";
	for (size_t i = 0; i < nroutes; i++)
		lmtp = add_route(ans, routes[i], name);
	ans->route = xstrdup(routes[0]);
	t.ans = ans;
	t.lmtp = lmtp;
	if (!tls_set)
		t.tls = cf->tls;
	if (t.tls_ca_file == NULL)
		t.tls_ca_file = cf->tls_ca_file;
	t.helo_name = helo != NULL ? helo : cf->hostname;
	t.connect_timeout = cf->connect_timeout;
	t.command_timeout = cf->client_command_timeout;
	t.data_timeout = cf->client_data_timeout;
	t.final_timeout = cf->client_final_timeout;

	nmsgs = (size_t)(argc - optind);
	msgs = xcalloc(nmsgs, sizeof(*msgs));
	for (size_t i = 0; i < nmsgs; i++) {
		struct client_msg *m = &msgs[i];

		m->qid = xasprintf("m%zu", i + 1);
		m->sender = from;
		m->body = body;
		m->smtputf8 = utf8;
		m->ret = ret;
		m->envid = envid;
		m->rcpts = xcalloc(ntos, sizeof(*m->rcpts));
		m->nrcpts = ntos;
		for (size_t j = 0; j < ntos; j++) {
			m->rcpts[j].addr = tos[j];
			m->rcpts[j].orcpt = orcpt;
			m->rcpts[j].notify = notify;
		}
		m->data = read_file(argv[optind + (int)i], &m->len);
	}

	base = event_base_new();
	client_session_new(base, &t, &cbs, NULL);
	event_base_dispatch(base);

	for (size_t i = 0; i < nmsgs; i++) {
		for (size_t j = 0; j < msgs[i].nrcpts; j++)
			free(msgs[i].rcpts[j].text);
		free(msgs[i].rcpts);
		free((char *)(uintptr_t)msgs[i].data);
		free((char *)(uintptr_t)msgs[i].qid);
	}
	free(msgs);
	free(routes);
	free(tos);
	if (wake_ev != NULL)
		event_free(wake_ev);
	dns_answer_free(ans);
	event_base_free(base);
	conf_free(cf);
	return exit_code;
}
