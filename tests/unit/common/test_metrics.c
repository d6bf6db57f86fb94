/* Unit tests for common/metrics.c: counters, labels, the histogram and the
 * Prometheus text they are written as. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "common/metrics.h"

static int
reset(void **state)
{
	(void)state;
	metrics_reset();
	return 0;
}

/* What metrics_write produces, as a string the caller frees. */
static char *
written(void)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *fp = open_memstream(&buf, &len);

	assert_non_null(fp);
	metrics_write(fp);
	fclose(fp);
	return buf;
}

static void
test_counters_start_at_zero_and_count(void **state)
{
	(void)state;
	assert_int_equal(metrics_get(M_ACCEPTED), 0);
	metrics_inc(M_ACCEPTED);
	metrics_inc(M_ACCEPTED);
	metrics_add(M_DELIVERED, 5);
	assert_int_equal(metrics_get(M_ACCEPTED), 2);
	assert_int_equal(metrics_get(M_DELIVERED), 5);
	assert_int_equal(metrics_get(M_BOUNCED), 0);
}

static void
test_labelled_counters_count_each_label_apart(void **state)
{
	(void)state;
	metrics_reject("relay");
	metrics_reject("relay");
	metrics_reject("size");
	metrics_dns("tempfail");
	assert_int_equal(metrics_count_get(MF_REJECTED, "relay"), 2);
	assert_int_equal(metrics_count_get(MF_REJECTED, "size"), 1);
	assert_int_equal(metrics_count_get(MF_REJECTED, "tempfail"), 0);
	assert_int_equal(metrics_count_get(MF_DNS, "tempfail"), 1);
}

static void
test_too_many_labels_are_counted_as_other(void **state)
{
	char label[64];

	(void)state;
	for (int i = 0; i < 100; i++) {
		snprintf(label, sizeof(label), "reason%d", i);
		metrics_attempt(label);
	}
	memset(label, 'x', sizeof(label) - 1);
	label[sizeof(label) - 1] = '\0';
	metrics_attempt(label); /* too long to keep */
	assert_int_equal(metrics_count_get(MF_ATTEMPTS, "reason0"), 1);
	assert_int_equal(metrics_count_get(MF_ATTEMPTS, "reason99"), 0);
	assert_true(metrics_count_get(MF_ATTEMPTS, "other") >= 69);
}

static void
test_quantile_is_negative_before_any_commit(void **state)
{
	(void)state;
	assert_true(metrics_commit_quantile(0.5) < 0);
	assert_int_equal(metrics_commit_count(), 0);
}

static void
test_quantile_interpolates_within_a_bucket(void **state)
{
	double p50, p99;

	(void)state;
	/* 100 commits in (0.001, 0.0025]: the median lies in that bucket. */
	for (int i = 0; i < 100; i++)
		metrics_observe_commit(0.002);
	p50 = metrics_commit_quantile(0.5);
	assert_true(p50 > 0.001 && p50 <= 0.0025);
	/* One slow commit beyond every bound: p99 stays finite. */
	metrics_observe_commit(60);
	metrics_observe_commit(-1); /* a clock step back counts as 0 */
	p99 = metrics_commit_quantile(1.0);
	assert_true(p99 == 5.0);
	assert_int_equal(metrics_commit_count(), 102);
}

static void
test_written_text_has_types_buckets_and_escaped_labels(void **state)
{
	char *text;

	(void)state;
	metrics_inc(M_ACCEPTED);
	metrics_reject("bad\"quote\\back\nline");
	metrics_observe_commit(0.003);
	text = written();
	assert_non_null(
	    strstr(text, "# TYPE mxspool_messages_accepted_total counter\n"
			 "mxspool_messages_accepted_total 1\n"));
	assert_non_null(strstr(text, "mxspool_rejected_total{reason="
				     "\"bad\\\"quote\\\\back\\nline\"} 1\n"));
	assert_non_null(
	    strstr(text, "# TYPE mxspool_commit_seconds histogram\n"));
	assert_non_null(
	    strstr(text, "mxspool_commit_seconds_bucket{le=\"0.0025\"} 0\n"));
	assert_non_null(
	    strstr(text, "mxspool_commit_seconds_bucket{le=\"0.005\"} 1\n"));
	assert_non_null(
	    strstr(text, "mxspool_commit_seconds_bucket{le=\"+Inf\"} 1\n"));
	assert_non_null(strstr(text, "mxspool_commit_seconds_count 1\n"));
	free(text);
}

static void
test_a_node_labels_every_sample_first(void **state)
{
	char *text, *line, *save;
	unsigned n = 0;

	(void)state;
	metrics_set_node("mx2");
	metrics_inc(M_ACCEPTED);
	metrics_reject("relay");
	metrics_dest_count("example.com", MD_DELIVERED);
	metrics_observe_commit(0.003);
	text = written();
	assert_non_null(strstr(
	    text, "\nmxspool_messages_accepted_total{node=\"mx2\"} 1\n"));
	assert_non_null(strstr(text, "\nmxspool_rejected_total{node=\"mx2\","
				     "reason=\"relay\"} 1\n"));
	assert_non_null(strstr(text, "\nmxspool_destination_recipients_total{"
				     "node=\"mx2\",destination=\"example.com\","
				     "result=\"delivered\"} 1\n"));
	assert_non_null(strstr(text,
	    "\nmxspool_commit_seconds_bucket{node=\"mx2\",le=\"+Inf\"} 1\n"));
	for (line = strtok_r(text, "\n", &save); line != NULL;
	     line = strtok_r(NULL, "\n", &save), n++)
		if (line[0] != '#' &&
		    (strchr(line, '{') == NULL ||
			strstr(line, "{node=\"mx2\"") != strchr(line, '{')))
			fail_msg("no node label first: %s", line);
	assert_true(n > 50);
	free(text);
	/* No node: no label, as before. */
	metrics_set_node("");
	text = written();
	assert_non_null(strstr(text, "\nmxspool_messages_accepted_total 1\n"));
	assert_null(strstr(text, "node="));
	free(text);
}

static void
test_json_has_every_counter_and_percentiles(void **state)
{
	json_t *o;

	(void)state;
	metrics_inc(M_BOUNCED);
	metrics_reject("relay");
	o = metrics_json();
	assert_int_equal(json_integer_value(json_object_get(o, "bounced")), 1);
	assert_int_equal(json_integer_value(json_object_get(o, "accepted")), 0);
	assert_int_equal(json_integer_value(json_object_get(
			     json_object_get(o, "rejected"), "relay")),
	    1);
	assert_true(
	    json_is_null(json_object_get(json_object_get(o, "commit"), "p50")));
	json_decref(o);
	metrics_observe_commit(0.01);
	o = metrics_json();
	assert_true(
	    json_is_real(json_object_get(json_object_get(o, "commit"), "p99")));
	json_decref(o);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup(
		test_counters_start_at_zero_and_count, reset),
	    cmocka_unit_test_setup(
		test_labelled_counters_count_each_label_apart, reset),
	    cmocka_unit_test_setup(
		test_too_many_labels_are_counted_as_other, reset),
	    cmocka_unit_test_setup(
		test_quantile_is_negative_before_any_commit, reset),
	    cmocka_unit_test_setup(
		test_quantile_interpolates_within_a_bucket, reset),
	    cmocka_unit_test_setup(
		test_written_text_has_types_buckets_and_escaped_labels, reset),
	    cmocka_unit_test_setup(
		test_a_node_labels_every_sample_first, reset),
	    cmocka_unit_test_setup(
		test_json_has_every_counter_and_percentiles, reset),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
