/*
 * queue/verdict: the table of what a reply says (see verdict.h). Postfix
 * treats every 5xx to RCPT as final; a backup MX cannot, because the
 * outage it exists for answered 550 to valid users. This table only
 * separates replies about an address from replies about the session; the
 * rejection guard (suspect 5xx) builds on VERDICT_FAIL.
 */
#include <stdio.h>

#include "queue/verdict.h"

/* The subject and detail of an enhanced status code "c.s.d", or false. */
static bool
esc_parts(const char *dsn, int *subject, int *detail)
{
	int c, n = 0;

	if (dsn == NULL ||
	    sscanf(dsn, "%1d.%3d.%3d%n", &c, subject, detail, &n) != 3 ||
	    dsn[n] != '\0')
		return false;
	return true;
}

enum verdict
verdict_of(enum reply_stage stage, int code, const char *dsn)
{
	int subject = 0, detail = 0;
	bool esc = esc_parts(dsn, &subject, &detail);

	if (code >= 200 && code < 300)
		return VERDICT_SENT;
	if (code >= 400 && code < 500) {
		if (esc && (subject == 1 ||
			       (subject == 2 && (detail == 1 || detail == 2))))
			return VERDICT_DEFER;
		return VERDICT_TRANSIENT;
	}
	if (code < 500 || code >= 600)
		return VERDICT_TRANSIENT; /* no reply, or not SMTP */
	/* 5xx: first what the enhanced status code says it is about. */
	if (esc) {
		if (subject == 1 || subject == 2 || subject == 6 ||
		    subject == 7 || (subject == 3 && detail == 4))
			return VERDICT_FAIL;
		if (subject == 5)
			return VERDICT_STORE; /* X.5.x: protocol */
	}
	/* Then the code and the command it answered. */
	if (code >= 500 && code <= 504)
		return VERDICT_STORE;
	if (code >= 550 && code <= 554 &&
	    (stage == STAGE_RCPT || stage == STAGE_DOT))
		return VERDICT_FAIL;
	return VERDICT_STORE;
}

struct verdict_sum
verdict_sum(const enum verdict *v, const bool *retried, size_t n, bool quiet)
{
	struct verdict_sum s = {false, false, false};
	bool store = false, transient = false, fresh = quiet;

	for (size_t i = 0; i < n; i++) {
		switch (v[i]) {
		case VERDICT_SENT:
		case VERDICT_DEFER:
		case VERDICT_FAIL:
			s.healthy = true;
			break;
		case VERDICT_TRANSIENT:
			transient = true;
			if (retried == NULL || !retried[i])
				fresh = true;
			break;
		case VERDICT_STORE:
			store = true;
			break;
		}
	}
	s.failing = store || (transient && !s.healthy && fresh);
	s.trouble = transient && !s.failing;
	return s;
}

const char *
verdict_str(enum verdict v)
{
	switch (v) {
	case VERDICT_SENT:
		return "sent";
	case VERDICT_DEFER:
		return "defer";
	case VERDICT_TRANSIENT:
		return "transient";
	case VERDICT_STORE:
		return "store";
	case VERDICT_FAIL:
		return "fail";
	}
	return "?";
}

const char *
reply_stage_str(enum reply_stage st)
{
	switch (st) {
	case STAGE_NONE:
		return "none";
	case STAGE_MAIL:
		return "MAIL";
	case STAGE_RCPT:
		return "RCPT";
	case STAGE_DATA:
		return "DATA";
	case STAGE_DOT:
		return "end of data";
	}
	return "?";
}
