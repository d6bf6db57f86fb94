/*
 * The daemon's helpers for the control commands (ctl/ctl_cmd.c): a message
 * as JSON, with each recipient's destination. These need the
 * scheduler's destinations (queue/sched.h), so mxspoolctl does not link
 * them; the pure protocol helpers it shares are in ctl/ctl_proto.c.
 */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "common/idn.h"
#include "ctl/ctl.h"
#include "queue/sched.h"

json_t *
ctl_msg_json(const struct conf *cf, const struct envelope *env)
{
	json_t *o = json_object(), *rcpts = json_array();
	char key[512];

	json_object_set_new(o, "id", json_string(env->qid));
	json_object_set_new(o, "arrival", json_integer(env->arrival / 1000000));
	json_object_set_new(o, "size", json_integer((json_int_t)env->size));
	json_object_set_new(o, "sender", ctl_json_str(env->sender));
	json_object_set_new(o, "client", ctl_json_str(env->client_addr));
	json_object_set_new(o, "held", json_boolean(env->flags & ENV_HELD));
	json_object_set_new(o, "attempts", json_integer(env->attempts));
	json_object_set_new(o, "last_attempt",
	    env->last_attempt ? json_integer(env->last_attempt) : json_null());
	json_object_set_new(o, "next_attempt",
	    env->next_attempt ? json_integer(env->next_attempt) : json_null());
	json_object_set_new(o, "last_error", ctl_json_str(env->last_error));
	for (size_t i = 0; i < env->nrcpts; i++) {
		const struct env_rcpt *r = &env->rcpts[i];

		json_array_append_new(
		    rcpts, json_pack("{s:o,s:s,s:o,s:o,s:o}", "address",
			       ctl_json_str(r->addr), "state",
			       rcpt_state_str(r->state), "dsn",
			       ctl_json_str(r->dsn_status), "last_error",
			       ctl_json_str(r->last_error), "destination",
			       ctl_json_str(sched_dest_key(
				   cf, env, r->addr, key, sizeof(key)))));
	}
	json_object_set_new(o, "recipients", rcpts);
	return o;
}

bool
ctl_addr_equal(const char *a, const char *b)
{
	const char *at_a = strrchr(a, '@'), *at_b = strrchr(b, '@');

	if (at_a == NULL || at_b == NULL)
		return at_a == at_b && strcmp(a, b) == 0;
	return at_a - a == at_b - b && strncmp(a, b, (size_t)(at_a - a)) == 0 &&
	       idn_equal(at_a + 1, at_b + 1);
}

bool
ctl_filter_any(const struct ctl_filter *f)
{
	return f->sender != NULL || f->rcpt != NULL || f->older >= 0 ||
	       f->younger >= 0 || f->held;
}

bool
ctl_filter_match(const struct ctl_filter *f, const struct envelope *env)
{
	int64_t age = f->now - env->arrival / 1000000;
	bool found = false;

	if (f->held && !(env->flags & ENV_HELD))
		return false;
	if (f->older >= 0 && age < f->older)
		return false;
	if (f->younger >= 0 && age >= f->younger)
		return false;
	if (f->sender != NULL && !ctl_addr_equal(env->sender, f->sender))
		return false;
	for (size_t i = 0; f->rcpt != NULL && !found && i < env->nrcpts; i++)
		found = env->rcpts[i].state == RCPT_PENDING &&
			ctl_addr_equal(env->rcpts[i].addr, f->rcpt);
	return f->rcpt == NULL || found;
}
