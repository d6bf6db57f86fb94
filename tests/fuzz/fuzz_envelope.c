/*
 * libFuzzer target for queue/envelope.c: the decoder of the spool's
 * envelope records (bytes read back from disk, which a damaged spool can
 * make anything). Invariants checked: a refusal says why; an accepted
 * record has every field in range; it encodes again to a record that
 * decodes to the same fields, no longer than the input (the encoder
 * writes the shortest numbers), and that encoding is stable (encode,
 * decode, encode gives the same bytes); a deep copy encodes the same.
 *
 *   make fuzz FUZZ_TARGETS=envelope   (seeds: tests/fuzz/corpus/envelope/,
 *   records made by envelope_encode)
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "queue/envelope.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static bool
same_str(const char *a, const char *b)
{
	return a == b || (a != NULL && b != NULL && strcmp(a, b) == 0);
}

static bool
same_env(const struct envelope *a, const struct envelope *b)
{
	if (strcmp(a->qid, b->qid) != 0 || a->arrival != b->arrival ||
	    !same_str(a->client_addr, b->client_addr) ||
	    !same_str(a->client_name, b->client_name) ||
	    !same_str(a->helo, b->helo) || !same_str(a->sender, b->sender) ||
	    a->size != b->size || a->body != b->body || a->ret != b->ret ||
	    !same_str(a->envid, b->envid) || a->flags != b->flags ||
	    a->attempts != b->attempts || a->last_attempt != b->last_attempt ||
	    a->next_attempt != b->next_attempt ||
	    !same_str(a->last_error, b->last_error) || a->nrcpts != b->nrcpts)
		return false;
	for (size_t i = 0; i < a->nrcpts; i++) {
		const struct env_rcpt *x = &a->rcpts[i], *y = &b->rcpts[i];

		if (!same_str(x->addr, y->addr) ||
		    !same_str(x->orcpt, y->orcpt) || x->notify != y->notify ||
		    x->state != y->state ||
		    !same_str(x->dsn_status, y->dsn_status) ||
		    !same_str(x->last_error, y->last_error))
			return false;
	}
	return true;
}

/* What the decoder promises of a record it accepts. */
static void
check_fields(const struct envelope *env)
{
	if (!qid_valid(env->qid) || env->sender == NULL || env->arrival < 0 ||
	    env->last_attempt < 0 || env->next_attempt < 0 ||
	    env->body > BODY_BINARYMIME || env->ret > RET_HDRS ||
	    env->nrcpts == 0)
		abort();
	for (size_t i = 0; i < env->nrcpts; i++) {
		const struct env_rcpt *r = &env->rcpts[i];

		if (r->addr == NULL || r->state > RCPT_FAILED ||
		    r->notify >= NOTIFY_DELAY * 2)
			abort();
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct envelope *env, *again, *copy;
	char why[128], *enc, *enc2, *enc3;
	size_t len, len2, len3;

	why[0] = '\0';
	env = envelope_decode((const char *)data, size, why, sizeof(why));
	if (env == NULL) {
		if (why[0] == '\0' || memchr(why, '\0', sizeof(why)) == NULL)
			abort();
		return 0;
	}
	check_fields(env);

	enc = envelope_encode(env, &len);
	if (len > size)
		abort();
	again = envelope_decode(enc, len, why, sizeof(why));
	if (again == NULL || !same_env(env, again))
		abort();
	enc2 = envelope_encode(again, &len2);
	if (len2 != len || memcmp(enc, enc2, len) != 0)
		abort();

	copy = envelope_dup(env);
	enc3 = envelope_encode(copy, &len3);
	if (!same_env(env, copy) || len3 != len || memcmp(enc, enc3, len) != 0)
		abort();

	free(enc);
	free(enc2);
	free(enc3);
	envelope_free(env);
	envelope_free(again);
	envelope_free(copy);
	return 0;
}
