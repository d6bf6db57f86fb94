/*
 * dsngen: prints the delivery status notification queue/dsn.c builds for
 * an original message read from stdin, so that tests can parse it with
 * other software (Python's email package).
 *
 *   dsngen [options] failed|delayed|delivered|relayed < message
 *
 *   -H host      reporting MTA (mx2.example.net)
 *   -I domain    Message-ID domain (default: the reporting MTA)
 *   -q qid       queue id (0C8A5KZ4M2N1)
 *   -f sender    envelope sender (sender@example.org; "" for <>)
 *   -a secs      arrival, unix seconds (1700000000)
 *   -n secs      now (arrival + 3 days)
 *   -l secs      last attempt (0: never)
 *   -w secs      will retry until (delays; 0: no limit)
 *   -c n         delivery attempts made (12)
 *   -R full|hdrs RET;   -E envid  ENVID (xtext);   -U  SMTPUTF8
 *   -B 8bit|binary      BODY of the original (7bit)
 *   -t addr      a recipient to report on; the options below apply to the
 *                last one given:
 *   -o orcpt     its ORCPT ("rfc822;xtext")
 *   -N list      its NOTIFY (never, or success,failure,delay)
 *   -s status    its enhanced status;  -m host  remote MTA
 *   -d text      the remote reply (diagnostic)
 *   -x           also report an out-of-range recipient index (must be
 *                ignored)
 *
 * Exits 0, or 2 on bad usage.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "common/xmem.h"
#include "queue/dsn.h"
#include "queue/envelope.h"

static void
usage(void)
{
	fprintf(stderr,
	    "usage: dsngen [-H host] [-I domain] [-q qid] "
	    "[-f sender] [-a secs] [-n secs] [-l secs] [-w secs] "
	    "[-c n] [-R full|hdrs] [-E envid] [-U] [-B 8bit|binary] "
	    "[-t addr [-o orcpt] [-N notify] [-s status] [-m host] "
	    "[-d text]]... [-x] ACTION < message\n");
	exit(2);
}

static long long
num(const char *s)
{
	char *end;
	long long v = strtoll(s, &end, 10);

	if (*s == '\0' || *end != '\0' || v < 0)
		usage();
	return v;
}

static unsigned
notify_of(const char *s)
{
	char *copy = xstrdup(s), *save = NULL;
	unsigned n = 0;

	for (char *w = strtok_r(copy, ",", &save); w;
	     w = strtok_r(NULL, ",", &save)) {
		if (strcasecmp(w, "never") == 0)
			n |= NOTIFY_NEVER;
		else if (strcasecmp(w, "success") == 0)
			n |= NOTIFY_SUCCESS;
		else if (strcasecmp(w, "failure") == 0)
			n |= NOTIFY_FAILURE;
		else if (strcasecmp(w, "delay") == 0)
			n |= NOTIFY_DELAY;
		else
			usage();
	}
	free(copy);
	return n;
}

static char *
read_all(FILE *f, size_t *len)
{
	size_t cap = 65536, n = 0, got;
	char *p = xmalloc(cap);

	while ((got = fread(p + n, 1, cap - n, f)) > 0) {
		n += got;
		if (n == cap)
			p = xrealloc(p, cap *= 2);
	}
	*len = n;
	return p;
}

int
main(int argc, char **argv)
{
	struct envelope *env = envelope_new();
	struct dsn_rcpt *dr = NULL;
	struct dsn_info info = {0};
	long long now = -1;
	size_t ndr = 0, len;
	bool bad_idx = false;
	char *out, *body;
	int c;

	info.reporting_mta = "mx2.example.net";
	strcpy(env->qid, "0C8A5KZ4M2N1");
	env->sender = xstrdup("sender@example.org");
	env->arrival = 1700000000LL * 1000000;
	env->attempts = 12;
	env->client_addr = xstrdup("192.0.2.10");
	while ((c = getopt(argc, argv,
		    "H:I:q:f:a:n:l:w:c:R:E:UB:t:o:N:s:m:d:x")) != -1) {
		struct env_rcpt *r =
		    env->nrcpts ? &env->rcpts[env->nrcpts - 1] : NULL;
		struct dsn_rcpt *d = ndr ? &dr[ndr - 1] : NULL;

		if (strchr("oNsmd", c) && r == NULL)
			usage();
		switch (c) {
		case 'H':
			info.reporting_mta = optarg;
			break;
		case 'I':
			info.msgid_domain = optarg;
			break;
		case 'q':
			snprintf(env->qid, sizeof(env->qid), "%s", optarg);
			break;
		case 'f':
			free(env->sender);
			env->sender = xstrdup(optarg);
			break;
		case 'a':
			env->arrival = num(optarg) * 1000000;
			break;
		case 'n':
			now = num(optarg);
			break;
		case 'l':
			env->last_attempt = num(optarg);
			break;
		case 'w':
			info.will_retry_until = num(optarg);
			break;
		case 'c':
			env->attempts = (uint32_t)num(optarg);
			break;
		case 'R':
			if (strcasecmp(optarg, "full") == 0)
				env->ret = RET_FULL;
			else if (strcasecmp(optarg, "hdrs") == 0)
				env->ret = RET_HDRS;
			else
				usage();
			break;
		case 'E':
			env->envid = xstrdup(optarg);
			break;
		case 'U':
			env->flags |= ENV_SMTPUTF8;
			break;
		case 'B':
			if (strcasecmp(optarg, "8bit") == 0)
				env->body = BODY_8BITMIME;
			else if (strcasecmp(optarg, "binary") == 0)
				env->body = BODY_BINARYMIME;
			else
				usage();
			break;
		case 't':
			envelope_add_rcpt(env, optarg, NULL, 0);
			dr = xrealloc(dr, (ndr + 1) * sizeof(*dr));
			memset(&dr[ndr], 0, sizeof(*dr));
			dr[ndr].idx = env->nrcpts - 1;
			ndr++;
			break;
		case 'o':
			free(r->orcpt);
			r->orcpt = xstrdup(optarg);
			break;
		case 'N':
			r->notify = notify_of(optarg);
			break;
		case 's':
			d->status = optarg;
			break;
		case 'm':
			d->remote_mta = optarg;
			break;
		case 'd':
			d->diagnostic = optarg;
			break;
		case 'x':
			bad_idx = true;
			break;
		default:
			usage();
		}
	}
	if (argc - optind != 1)
		usage();
	if (strcmp(argv[optind], "failed") == 0)
		info.action = DSN_FAILED;
	else if (strcmp(argv[optind], "delayed") == 0)
		info.action = DSN_DELAYED;
	else if (strcmp(argv[optind], "delivered") == 0)
		info.action = DSN_DELIVERED;
	else if (strcmp(argv[optind], "relayed") == 0)
		info.action = DSN_RELAYED;
	else
		usage();
	if (env->nrcpts == 0)
		envelope_add_rcpt(env, "user@example.com", NULL, 0);
	if (ndr == 0) {
		dr = xcalloc(1, sizeof(*dr));
		ndr = 1;
	}
	if (bad_idx) {
		dr = xrealloc(dr, (ndr + 1) * sizeof(*dr));
		memset(&dr[ndr], 0, sizeof(*dr));
		dr[ndr++].idx = env->nrcpts + 7;
	}

	body = read_all(stdin, &len);
	info.body = body;
	info.len = len;
	env->size = len;
	info.env = env;
	info.rcpts = dr;
	info.nrcpts = ndr;
	info.now = now >= 0 ? now : env->arrival / 1000000 + 3 * 86400;
	out = dsn_build(&info, &len);
	if (fwrite(out, 1, len, stdout) != len || fflush(stdout) != 0)
		return 1;
	free(out);
	free(body);
	free(dr);
	envelope_free(env);
	return 0;
}
