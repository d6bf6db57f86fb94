/* The spool's index of pending mail, and its counters (see qindex.h). */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/idn.h"
#include "common/xmem.h"
#include "queue/qindex.h"

const char *
qindex_lane(const struct envelope *env, const char *addr, char buf[LANE_SIZE])
{
	const char *at = strrchr(addr, '@');
	const char *domain = at != NULL ? at + 1 : addr;
	char ace[IDN_NAME_SIZE];
	size_t n = 0;

	/* One domain, one lane, whichever form the address has it in: its
	 * A-labels. A name that is none keeps its own lane. */
	if (idn_to_ascii(domain, ace, sizeof(ace), NULL, 0) == 0)
		domain = ace;
	if (env->flags & ENV_DSN)
		buf[n++] = '!';
	for (; *domain != '\0' && n < LANE_SIZE - 1; domain++)
		buf[n++] = (char)tolower((unsigned char)*domain);
	/* Never the empty key: the lanes family keeps the totals there. */
	if (n == 0)
		buf[n++] = '.';
	buf[n] = '\0';
	return buf;
}

const char *
qindex_lane_domain(const char *lane, bool *notices)
{
	*notices = lane[0] == '!';
	return *notices ? lane + 1 : lane;
}

void
qindex_of(const struct envelope *env, struct qindex *out)
{
	size_t cap = 0;

	memset(out, 0, sizeof(*out));
	out->due = env->next_attempt * 1000;
	out->size = env->size;
	out->flags = (env->flags & ENV_HELD ? QI_HELD : 0) |
		     (env->flags & ENV_DELAY_SENT ? QI_DELAY_SENT : 0);
	for (size_t i = 0; i < env->nrcpts; i++) {
		char lane[LANE_SIZE];
		bool seen = false;

		if (env->rcpts[i].state != RCPT_PENDING)
			continue;
		qindex_lane(env, env->rcpts[i].addr, lane);
		for (size_t k = 0; k < out->nlanes && !seen; k++)
			seen = strcmp(out->lanes[k], lane) == 0;
		if (seen)
			continue;
		out->lanes = xgrow(
		    out->lanes, &cap, out->nlanes + 1, sizeof(*out->lanes));
		memcpy(out->lanes[out->nlanes++], lane, LANE_SIZE);
	}
}

void
qindex_fini(struct qindex *qi)
{
	free(qi->lanes);
	qi->lanes = NULL;
	qi->nlanes = 0;
}

size_t
qindex_key(const char *lane, const char *qid, char *key)
{
	size_t n = strlen(lane);

	memcpy(key, lane, n);
	key[n] = '\0';
	memcpy(key + n + 1, qid, QID_LEN);
	return n + 1 + QID_LEN;
}

bool
qindex_key_split(
    const char *key, size_t klen, char lane[LANE_SIZE], char qid[QID_SIZE])
{
	const char *nul = memchr(key, '\0', klen);
	size_t n;

	if (nul == NULL || (n = (size_t)(nul - key)) >= LANE_SIZE ||
	    klen != n + 1 + QID_LEN)
		return false;
	memcpy(lane, key, n);
	lane[n] = '\0';
	memcpy(qid, nul + 1, QID_LEN);
	qid[QID_LEN] = '\0';
	return qid_valid(qid);
}

static void
put64(char *p, uint64_t v)
{
	for (int i = 7; i >= 0; i--, v >>= 8)
		p[i] = (char)(v & 0xff);
}

static uint64_t
get64(const char *p)
{
	uint64_t v = 0;

	for (int i = 0; i < 8; i++)
		v = (v << 8) | (unsigned char)p[i];
	return v;
}

void
qindex_val_encode(const struct qindex *qi, char out[QINDEX_VAL])
{
	put64(out, (uint64_t)qi->due);
	put64(out + 8, qi->size);
	out[16] = (char)qi->flags;
}

bool
qindex_val_decode(
    const char *val, size_t len, int64_t *due, uint64_t *size, uint8_t *flags)
{
	if (len != QINDEX_VAL)
		return false;
	*due = (int64_t)get64(val);
	*size = get64(val + 8);
	*flags = (uint8_t)val[16];
	return true;
}

void
qindex_count_encode(const struct lane_count *c, char out[QINDEX_COUNT])
{
	put64(out, c->messages);
	put64(out + 8, c->bytes);
	put64(out + 16, c->held);
}

bool
qindex_count_decode(const char *val, size_t len, struct lane_count *c)
{
	if (len != QINDEX_COUNT)
		return false;
	c->messages = get64(val);
	c->bytes = get64(val + 8);
	c->held = get64(val + 16);
	return true;
}

void
qindex_count_add(struct lane_count *c, const struct qindex *qi, int sign)
{
	uint64_t held = (qi->flags & QI_HELD) != 0;

	if (sign > 0) {
		c->messages++;
		c->bytes += qi->size;
		c->held += held;
		return;
	}
	/* Never below zero, whatever went before. */
	c->messages -= c->messages > 0;
	c->bytes -= c->bytes >= qi->size ? qi->size : c->bytes;
	c->held -= c->held >= held ? held : c->held;
}
