/*
 * Reads what mxspoold stored, for the SMTP server's integration tests
 * (tests/integration/test_smtp*.py). Run it only while mxspoold is
 * stopped: RocksDB allows one process at a time.
 *
 *   smtpdump body DIR QID   writes the stored body, byte for byte
 *   smtpdump env DIR        one line per message: qid, then key=value
 *                           fields of its envelope, tab-separated
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "queue/envelope.h"
#include "queue/queue.h"
#include "queue/spool.h"

static void
dump_env(void *arg, const char *key, size_t klen, const char *meta, size_t len)
{
	char why[256];
	struct envelope *env = envelope_decode(meta, len, why, sizeof(why));

	(void)arg;
	if (env == NULL) {
		printf("%.*s\tbad=%s\n", (int)klen, key, why);
		return;
	}
	printf("%s\tsender=%s\tclient=%s\thelo=%s\tsize=%llu\tbody=%d\t"
	       "ret=%d\tenvid=%s\tflags=%u",
	    env->qid, env->sender, env->client_addr ? env->client_addr : "",
	    env->helo ? env->helo : "", (unsigned long long)env->size,
	    (int)env->body, (int)env->ret, env->envid ? env->envid : "",
	    env->flags);
	for (size_t i = 0; i < env->nrcpts; i++)
		printf("\trcpt=%s,%s,%u", env->rcpts[i].addr,
		    env->rcpts[i].orcpt ? env->rcpts[i].orcpt : "",
		    env->rcpts[i].notify);
	printf("\n");
	envelope_free(env);
}

int
main(int argc, char **argv)
{
	struct spool *sp;
	char err[512];
	int rc = 0;

	if (argc < 3 || (strcmp(argv[1], "body") == 0 && argc != 4)) {
		fprintf(stderr, "usage: smtpdump body DIR QID | env DIR\n");
		return 2;
	}
	if (spool_open(&sp, argv[2], false, NULL, err, sizeof(err)) !=
	    QUEUE_OK) {
		fprintf(stderr, "smtpdump: %s\n", err);
		return 1;
	}
	if (strcmp(argv[1], "body") == 0) {
		char *body;
		size_t len;
		int st =
		    spool_get_body(sp, argv[3], &body, &len, err, sizeof(err));

		if (st == QUEUE_OK) {
			fwrite(body, 1, len, stdout);
			free(body);
		} else {
			fprintf(stderr, "smtpdump: %s: %s\n", argv[3],
			    st == 1 ? "no such body" : err);
			rc = 1;
		}
	} else if (spool_scan(sp, dump_env, NULL, err, sizeof(err)) != 0) {
		fprintf(stderr, "smtpdump: %s\n", err);
		rc = 1;
	}
	spool_close(sp);
	return rc;
}
