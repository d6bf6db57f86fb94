/*
 * Envelope records. Layout (version 1): the bytes 'E' 1, then each field in
 * a fixed order; integers as LEB128 varints, strings as a varint length + 1
 * (0 meaning NULL) followed by the bytes. Compact, and decodable without
 * trusting a single length: every read is checked against what is left.
 * A new field means a new version number; old versions stay decodable.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/xmem.h"
#include "queue/envelope.h"

#define ENV_MAGIC 'E'
#define ENV_VERSION 1
#define ENV_MAX_RCPTS 1000000

struct env_buf {
	char *p;
	size_t len, cap;
};

static void
env_put_bytes(struct env_buf *b, const void *p, size_t n)
{
	if (b->len + n > b->cap) {
		b->cap = (b->len + n) * 2 + 64;
		b->p = xrealloc(b->p, b->cap);
	}
	memcpy(b->p + b->len, p, n);
	b->len += n;
}

static void
env_put_u64(struct env_buf *b, uint64_t v)
{
	unsigned char tmp[10];
	size_t n = 0;

	do {
		tmp[n] = (unsigned char)(v & 0x7f);
		v >>= 7;
		if (v)
			tmp[n] |= 0x80;
		n++;
	} while (v);
	env_put_bytes(b, tmp, n);
}

static void
env_put_str(struct env_buf *b, const char *s)
{
	size_t n = s ? strlen(s) : 0;

	env_put_u64(b, s ? n + 1 : 0);
	if (s)
		env_put_bytes(b, s, n);
}

char *
envelope_encode(const struct envelope *env, size_t *len)
{
	struct env_buf b = {0};
	const char hdr[2] = {ENV_MAGIC, ENV_VERSION};

	env_put_bytes(&b, hdr, 2);
	env_put_str(&b, env->qid);
	env_put_u64(&b, (uint64_t)env->arrival);
	env_put_str(&b, env->client_addr);
	env_put_str(&b, env->client_name);
	env_put_str(&b, env->helo);
	env_put_str(&b, env->sender);
	env_put_u64(&b, env->size);
	env_put_u64(&b, (uint64_t)env->body);
	env_put_u64(&b, (uint64_t)env->ret);
	env_put_str(&b, env->envid);
	env_put_u64(&b, env->flags);
	env_put_u64(&b, env->attempts);
	env_put_u64(&b, (uint64_t)env->last_attempt);
	env_put_u64(&b, (uint64_t)env->next_attempt);
	env_put_str(&b, env->last_error);
	env_put_u64(&b, env->nrcpts);
	for (size_t i = 0; i < env->nrcpts; i++) {
		const struct env_rcpt *r = &env->rcpts[i];

		env_put_str(&b, r->addr);
		env_put_str(&b, r->orcpt);
		env_put_u64(&b, r->notify);
		env_put_u64(&b, (uint64_t)r->state);
		env_put_str(&b, r->dsn_status);
		env_put_str(&b, r->last_error);
	}
	*len = b.len;
	return b.p;
}

/* A read cursor that records the first problem and then reads zeros. */
struct env_cur {
	const unsigned char *p, *end;
	char *why;
	size_t whylen;
	bool bad;
};

static void __attribute__((format(printf, 2, 3)))
env_fail(struct env_cur *c, const char *fmt, ...)
{
	va_list ap;

	if (c->bad)
		return;
	c->bad = true;
	va_start(ap, fmt);
	vsnprintf(c->why, c->whylen, fmt, ap);
	va_end(ap);
}

static uint64_t
env_get_u64(struct env_cur *c, const char *what)
{
	uint64_t v = 0;

	for (unsigned shift = 0; !c->bad; shift += 7) {
		if (c->p >= c->end) {
			env_fail(c, "truncated in %s", what);
			break;
		}
		if (shift > 63) {
			env_fail(c, "overlong number in %s", what);
			break;
		}
		unsigned char byte = *c->p++;
		v |= (uint64_t)(byte & 0x7f) << shift;
		if (!(byte & 0x80))
			return v;
	}
	return 0;
}

static uint64_t
env_get_max(struct env_cur *c, const char *what, uint64_t max)
{
	uint64_t v = env_get_u64(c, what);

	if (v > max) {
		env_fail(c, "%s out of range (%llu)", what, (unsigned long long)v);
		return 0;
	}
	return v;
}

static char *
env_get_str(struct env_cur *c, const char *what)
{
	uint64_t n = env_get_u64(c, what);

	if (c->bad || n == 0)
		return NULL;
	n--;
	if (n > (uint64_t)(c->end - c->p)) {
		env_fail(c, "truncated in %s", what);
		return NULL;
	}
	if (memchr(c->p, '\0', n) != NULL) {
		env_fail(c, "NUL byte in %s", what);
		return NULL;
	}
	char *s = xstrndup((const char *)c->p, n);
	c->p += n;
	return s;
}

struct envelope *
envelope_decode(const char *buf, size_t len, char *why, size_t whylen)
{
	struct env_cur c = {(const unsigned char *)buf,
	    (const unsigned char *)buf + len, why, whylen, false};
	struct envelope *env;
	uint64_t nrcpts;
	char *qid;

	if (len < 2 || buf[0] != ENV_MAGIC) {
		snprintf(why, whylen, "not an envelope record");
		return NULL;
	}
	if (buf[1] != ENV_VERSION) {
		snprintf(why, whylen, "unknown record version %d", buf[1]);
		return NULL;
	}
	c.p += 2;
	env = envelope_new();
	qid = env_get_str(&c, "queue id");
	if (!c.bad && (qid == NULL || !qid_valid(qid)))
		env_fail(&c, "bad queue id");
	else if (qid != NULL)
		memcpy(env->qid, qid, QID_SIZE);
	free(qid);
	env->arrival = (int64_t)env_get_max(&c, "arrival", INT64_MAX);
	env->client_addr = env_get_str(&c, "client address");
	env->client_name = env_get_str(&c, "client name");
	env->helo = env_get_str(&c, "helo");
	env->sender = env_get_str(&c, "sender");
	if (!c.bad && env->sender == NULL)
		env_fail(&c, "missing sender");
	env->size = env_get_u64(&c, "size");
	env->body = (enum body_type)env_get_max(&c, "body type",
	    BODY_BINARYMIME);
	env->ret = (enum dsn_ret)env_get_max(&c, "ret", RET_HDRS);
	env->envid = env_get_str(&c, "envid");
	env->flags = (uint32_t)env_get_max(&c, "flags", UINT32_MAX);
	env->attempts = (uint32_t)env_get_max(&c, "attempts", UINT32_MAX);
	env->last_attempt = (int64_t)env_get_max(&c, "last attempt", INT64_MAX);
	env->next_attempt = (int64_t)env_get_max(&c, "next attempt", INT64_MAX);
	env->last_error = env_get_str(&c, "last error");
	nrcpts = env_get_max(&c, "recipient count", ENV_MAX_RCPTS);
	for (uint64_t i = 0; i < nrcpts && !c.bad; i++) {
		char *addr = env_get_str(&c, "recipient");
		char *orcpt = env_get_str(&c, "orcpt");
		unsigned notify =
		    (unsigned)env_get_max(&c, "notify", NOTIFY_DELAY * 2 - 1);
		struct env_rcpt *r;

		if (!c.bad && addr == NULL)
			env_fail(&c, "missing recipient address");
		if (c.bad) {
			free(addr);
			free(orcpt);
			break;
		}
		r = envelope_add_rcpt(env, addr, orcpt, notify);
		free(addr);
		free(orcpt);
		r->state = (enum rcpt_state)env_get_max(&c, "recipient state",
		    RCPT_FAILED);
		r->dsn_status = env_get_str(&c, "dsn status");
		r->last_error = env_get_str(&c, "recipient error");
	}
	if (!c.bad && nrcpts == 0)
		env_fail(&c, "no recipients");
	if (!c.bad && c.p != c.end)
		env_fail(&c, "%zu trailing bytes", (size_t)(c.end - c.p));
	if (c.bad) {
		envelope_free(env);
		return NULL;
	}
	return env;
}

struct envelope *
envelope_new(void)
{
	return xcalloc(1, sizeof(struct envelope));
}

static char *
env_dup(const char *s)
{
	return s ? xstrdup(s) : NULL;
}

struct env_rcpt *
envelope_add_rcpt(struct envelope *env, const char *addr, const char *orcpt,
    unsigned notify)
{
	struct env_rcpt *r;

	/* Grow by doubling: the count is a power of two or below 8. */
	if (env->nrcpts >= 8 && (env->nrcpts & (env->nrcpts - 1)) == 0)
		env->rcpts =
		    xrealloc(env->rcpts, env->nrcpts * 2 * sizeof(*env->rcpts));
	else if (env->nrcpts == 0)
		env->rcpts = xmalloc(8 * sizeof(*env->rcpts));
	r = &env->rcpts[env->nrcpts++];
	memset(r, 0, sizeof(*r));
	r->addr = xstrdup(addr);
	r->orcpt = env_dup(orcpt);
	r->notify = notify;
	return r;
}

struct envelope *
envelope_dup(const struct envelope *env)
{
	struct envelope *d = envelope_new();

	*d = *env;
	d->client_addr = env_dup(env->client_addr);
	d->client_name = env_dup(env->client_name);
	d->helo = env_dup(env->helo);
	d->sender = env_dup(env->sender);
	d->envid = env_dup(env->envid);
	d->last_error = env_dup(env->last_error);
	d->rcpts = NULL;
	d->nrcpts = 0;
	for (size_t i = 0; i < env->nrcpts; i++) {
		const struct env_rcpt *r = &env->rcpts[i];
		struct env_rcpt *c =
		    envelope_add_rcpt(d, r->addr, r->orcpt, r->notify);

		c->state = r->state;
		c->dsn_status = env_dup(r->dsn_status);
		c->last_error = env_dup(r->last_error);
	}
	return d;
}

void
envelope_free(struct envelope *env)
{
	if (env == NULL)
		return;
	free(env->client_addr);
	free(env->client_name);
	free(env->helo);
	free(env->sender);
	free(env->envid);
	free(env->last_error);
	for (size_t i = 0; i < env->nrcpts; i++) {
		free(env->rcpts[i].addr);
		free(env->rcpts[i].orcpt);
		free(env->rcpts[i].dsn_status);
		free(env->rcpts[i].last_error);
	}
	free(env->rcpts);
	free(env);
}

const char *
rcpt_state_str(enum rcpt_state st)
{
	switch (st) {
	case RCPT_PENDING:
		return "pending";
	case RCPT_DELIVERED:
		return "delivered";
	case RCPT_FAILED:
		return "failed";
	}
	return "?";
}

bool
header_section_ascii(const char *data, size_t len)
{
	bool bol = true; /* at the start of a line */

	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)data[i];

		/* An empty line ends the header section (RFC 5322 2.1). */
		if (bol && (c == '\n' || (c == '\r' && i + 1 < len &&
					     data[i + 1] == '\n')))
			return true;
		if (c & 0x80)
			return false;
		bol = c == '\n';
	}
	return true;
}
