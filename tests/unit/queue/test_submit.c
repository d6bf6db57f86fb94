/* Unit tests for queue_submit on a real spool (queue/queue.c and
 * queue/commit.c): a handed-over message's id (qid_at) that repeats one
 * already stored is refused, never written over it. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/xmem.h"
#include "queue/qid.h"
#include "queue/queue.h"

struct result {
	struct event_base *base;
	int status;
	bool done;
};

static void
on_done(void *arg, int status, const char *qid)
{
	struct result *r = arg;

	(void)qid;
	r->status = status;
	r->done = true;
	event_base_loopbreak(r->base);
}

/* Submits a message under qid from sender; returns its queue_status. */
static int
submit(struct queue *q, struct event_base *base, const char *qid,
    const char *sender)
{
	struct envelope *env = envelope_new();
	struct result r = {.base = base};
	char *body = xstrdup("Subject: x\r\n\r\nhi\r\n");

	memcpy(env->qid, qid, QID_SIZE);
	env->sender = xstrdup(sender);
	env->client_addr = xstrdup("127.0.0.1");
	env->arrival = qid_time(qid);
	envelope_add_rcpt(env, "user@example.com", NULL, 0);
	queue_submit(q, env, body, strlen(body), on_done, &r);
	for (int i = 0; i < 1000 && !r.done; i++)
		event_base_loop(base, EVLOOP_ONCE);
	assert_true(r.done);
	return r.status;
}

static void
test_a_handed_over_id_that_is_taken_is_refused(void **state)
{
	char dir[] = "/tmp/mxspool-test-submit.XXXXXX", cmd[64];
	struct conf cf = {0};
	struct event_base *base = event_base_new();
	struct queue *q;
	struct qid_gen g;
	char err[256], id[QID_SIZE], again[QID_SIZE];
	const struct envelope *env;

	(void)state;
	assert_non_null(mkdtemp(dir));
	cf.spool_dir = dir;
	assert_int_equal(queue_open(&q, &cf, base, err, sizeof(err)), 0);
	qid_gen_init(&g, NULL);
	qid_at(&g, ((int64_t)time(NULL) - 3600) * 1000000, id);
	assert_int_equal(submit(q, base, id, "first@sender.test"), QUEUE_OK);
	/* The same id again, as a later run's counter might make it. */
	assert_int_equal(submit(q, base, id, "second@sender.test"), QUEUE_EIO);
	env = queue_find(q, id);
	assert_non_null(env);
	assert_string_equal(env->sender, "first@sender.test");
	/* The next one is free. */
	qid_at(&g, ((int64_t)time(NULL) - 3600) * 1000000, again);
	assert_int_equal(submit(q, base, again, "third@sender.test"), QUEUE_OK);
	queue_close(q);
	event_base_free(base);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	assert_int_equal(system(cmd), 0);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_a_handed_over_id_that_is_taken_is_refused),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
