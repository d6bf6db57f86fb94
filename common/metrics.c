/*
 * Metrics (see metrics.h). One mutex guards everything: increments are rare
 * next to the work they count (a message, a lookup, an fsync), and the spool
 * writer thread observes commit latency while the loop counts the rest.
 */
#include <jansson.h>
#include <math.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "common/metrics.h"

#define MF_LABELS 32    /* distinct labels kept per family */
#define MF_LABEL_LEN 40 /* longest label kept, bytes */

struct mf_value {
	char label[MF_LABEL_LEN];
	uint64_t n;
};

struct mf {
	struct mf_value v[MF_LABELS + 1]; /* the last one is "other" */
	unsigned nv;
	bool other;
};

static const struct {
	const char *name, *help;
} metric_desc[M_NMETRICS] = {
    [M_ACCEPTED] = {"mxspool_messages_accepted_total",
	"Messages accepted and durably queued."},
    [M_DELIVERED] = {"mxspool_recipients_delivered_total",
	"Recipients delivered to their destination."},
    [M_DEFERRED] = {"mxspool_recipients_deferred_total",
	"Recipient deliveries deferred for a later retry."},
    [M_BOUNCED] = {"mxspool_recipients_bounced_total",
	"Recipients returned to their sender with a DSN."},
    [M_SUSPECT] = {"mxspool_recipients_suspect_total",
	"Recipient 5xx replies the rejection guard held instead of bouncing."},
    [M_CONNECTIONS] = {"mxspool_connections_total",
	"Inbound SMTP connections accepted."},
    [M_WAL_DAMAGED_BYTES] = {"mxspool_spool_wal_damaged_bytes_total",
	"Bytes of the spool's write-ahead log found unreadable at start."},
    [M_WAL_LOST_UPDATES] = {"mxspool_spool_wal_lost_updates_total",
	"Spool updates (key writes) lost to write-ahead log damage."},
    [M_WAL_SALVAGED] = {"mxspool_spool_wal_salvaged_batches_total",
	"Intact write batches kept after write-ahead log damage."},
};

static const struct {
	const char *name, *label, *help, *json;
} family_desc[MF_NFAMILIES] = {
    [MF_REJECTED] = {"mxspool_rejected_total", "reason",
	"SMTP commands or messages refused, by reason.", "rejected"},
    [MF_ATTEMPTS] = {"mxspool_delivery_attempts_total", "result",
	"Delivery attempts, by result.", "attempts"},
    [MF_DNS] = {"mxspool_dns_lookups_total", "result",
	"DNS route lookups, by result.", "dns"},
    [MF_RELOADS] = {"mxspool_reloads_total", "result",
	"Configuration reloads, by result.", "reloads"},
};

/*
 * Every label each family is counted with in the code, so that each series
 * exists, at 0, from the start: a rate() over a series that appears only
 * with its first event misses that event, and alerts on absent series
 * misfire. (tests/integration/test_metrics.py checks this list against
 * the code.)
 */
static const char *const family_known[MF_NFAMILIES][MF_LABELS] = {
    [MF_REJECTED] = {"bare_lf", "connections", "connections_per_ip",
	"data_memory", "domain", "errors", "hops", "idle_evicted",
	"min_data_rate", "not_smtp", "peer_untrusted", "protocol",
	"proxy_header", "proxy_local", "proxy_untrusted", "recipients", "relay",
	"session_deadline", "size", "spool_error", "spool_full", "timeout",
	"unknown_recipient"},
    [MF_ATTEMPTS] = {"sent", "deferred", "failed", "error"},
    [MF_DNS] = {"ok", "tempfail", "permfail"},
    [MF_RELOADS] = {"ok", "failed"},
};

/* Per destination: recipients delivered, deferred and returned. */
#define MD_DESTS 256 /* distinct destinations kept; then "other" */
static const char *const dest_results[MD_NRESULTS] = {
    [MD_DELIVERED] = "delivered",
    [MD_DEFERRED] = "deferred",
    [MD_BOUNCED] = "bounced",
};

struct md_value {
	char *dest; /* owned */
	uint64_t n[MD_NRESULTS];
};

/* Upper bounds of the commit latency buckets, seconds (+Inf follows). */
static const double commit_bounds[] = {
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5};
#define NBOUNDS (sizeof(commit_bounds) / sizeof(commit_bounds[0]))

static struct mf_value *mf_slot(struct mf *f, const char *label, bool create);

static pthread_mutex_t metrics_lock = PTHREAD_MUTEX_INITIALIZER;
static uint64_t counters[M_NMETRICS];
static struct mf families[MF_NFAMILIES];
static uint64_t commit_buckets[NBOUNDS + 1]; /* not cumulative */
static uint64_t commit_n;
static double commit_sum;
static struct md_value dests[MD_DESTS + 1]; /* the last one is "other" */
static unsigned ndests;
static const char *build_version = "";
static char node_id[64]; /* "": no node label */

/* Creates the slots of every known label; under the lock. */
static void
mf_declare_known(void)
{
	for (int i = 0; i < MF_NFAMILIES; i++)
		for (int k = 0; family_known[i][k] != NULL; k++)
			(void)mf_slot(&families[i], family_known[i][k], true);
}

void
metrics_add(enum metric m, uint64_t n)
{
	pthread_mutex_lock(&metrics_lock);
	counters[m] += n;
	pthread_mutex_unlock(&metrics_lock);
}

void
metrics_inc(enum metric m)
{
	metrics_add(m, 1);
}

uint64_t
metrics_get(enum metric m)
{
	uint64_t n;

	pthread_mutex_lock(&metrics_lock);
	n = counters[m];
	pthread_mutex_unlock(&metrics_lock);
	return n;
}

/* The slot for label in f, or NULL; with create, a new slot or "other". */
static struct mf_value *
mf_slot(struct mf *f, const char *label, bool create)
{
	for (unsigned i = 0; i < f->nv; i++)
		if (strncmp(f->v[i].label, label, MF_LABEL_LEN - 1) == 0)
			return &f->v[i];
	if (!create)
		return strcmp(label, "other") == 0 && f->other
			   ? &f->v[MF_LABELS]
			   : NULL;
	if (strcmp(label, "other") == 0 || f->nv == MF_LABELS ||
	    strlen(label) >= MF_LABEL_LEN) {
		f->other = true;
		return &f->v[MF_LABELS];
	}
	snprintf(f->v[f->nv].label, MF_LABEL_LEN, "%s", label);
	return &f->v[f->nv++];
}

void
metrics_count(enum metric_family f, const char *label)
{
	pthread_mutex_lock(&metrics_lock);
	mf_slot(&families[f], label ? label : "", true)->n++;
	pthread_mutex_unlock(&metrics_lock);
}

uint64_t
metrics_count_get(enum metric_family f, const char *label)
{
	struct mf_value *v;
	uint64_t n;

	pthread_mutex_lock(&metrics_lock);
	v = mf_slot(&families[f], label, false);
	n = v ? v->n : 0;
	pthread_mutex_unlock(&metrics_lock);
	return n;
}

void
metrics_dest_count(const char *dest, enum metric_dest_result r)
{
	struct md_value *v = NULL;

	pthread_mutex_lock(&metrics_lock);
	for (unsigned i = 0; i < ndests && v == NULL; i++)
		if (strcmp(dests[i].dest, dest) == 0)
			v = &dests[i];
	if (v == NULL && ndests < MD_DESTS) {
		v = &dests[ndests++];
		v->dest = strdup(dest);
		if (v->dest == NULL)
			abort();
	}
	if (v == NULL)
		v = &dests[MD_DESTS];
	v->n[r]++;
	pthread_mutex_unlock(&metrics_lock);
}

void
metrics_set_build(const char *version)
{
	build_version = version;
}

void
metrics_set_node(const char *node)
{
	pthread_mutex_lock(&metrics_lock);
	snprintf(node_id, sizeof(node_id), "%s", node != NULL ? node : "");
	pthread_mutex_unlock(&metrics_lock);
}

void
metrics_reject(const char *reason)
{
	metrics_count(MF_REJECTED, reason);
}

void
metrics_attempt(const char *result)
{
	metrics_count(MF_ATTEMPTS, result);
}

void
metrics_dns(const char *result)
{
	metrics_count(MF_DNS, result);
}

void
metrics_observe_commit(double seconds)
{
	size_t i = 0;

	if (!(seconds >= 0)) /* NaN too */
		seconds = 0;
	while (i < NBOUNDS && seconds > commit_bounds[i])
		i++;
	pthread_mutex_lock(&metrics_lock);
	commit_buckets[i]++;
	commit_n++;
	commit_sum += seconds;
	pthread_mutex_unlock(&metrics_lock);
}

uint64_t
metrics_commit_count(void)
{
	uint64_t n;

	pthread_mutex_lock(&metrics_lock);
	n = commit_n;
	pthread_mutex_unlock(&metrics_lock);
	return n;
}

/*
 * As Prometheus' histogram_quantile(): find the bucket holding the q-th
 * observation and interpolate linearly inside it; in the +Inf bucket the
 * answer is the highest finite bound.
 */
double
metrics_commit_quantile(double q)
{
	uint64_t b[NBOUNDS + 1], n, cum = 0;
	double rank;

	pthread_mutex_lock(&metrics_lock);
	memcpy(b, commit_buckets, sizeof(b));
	n = commit_n;
	pthread_mutex_unlock(&metrics_lock);
	if (n == 0)
		return -1;
	if (q < 0)
		q = 0;
	if (q > 1)
		q = 1;
	rank = q * (double)n;
	for (size_t i = 0; i <= NBOUNDS; i++) {
		double lo = i == 0 ? 0 : commit_bounds[i - 1];

		if (b[i] == 0 || (double)(cum + b[i]) < rank) {
			cum += b[i];
			continue;
		}
		if (i == NBOUNDS)
			return commit_bounds[NBOUNDS - 1];
		return lo + (commit_bounds[i] - lo) *
				((rank - (double)cum) / (double)b[i]);
	}
	return commit_bounds[NBOUNDS - 1];
}

void
metrics_write_head(
    FILE *fp, const char *name, const char *type, const char *help)
{
	fprintf(fp, "# HELP %s ", name);
	for (const char *p = help; *p; p++) {
		if (*p == '\\')
			fputs("\\\\", fp);
		else if (*p == '\n')
			fputs("\\n", fp);
		else
			fputc(*p, fp);
	}
	fprintf(fp, "\n# TYPE %s %s\n", name, type);
}

static void
metrics_write_value(FILE *fp, double v)
{
	if (isinf(v))
		fputs(v > 0 ? "+Inf" : "-Inf", fp);
	else if (isnan(v))
		fputs("NaN", fp);
	else if (v == floor(v) && fabs(v) < 1e15)
		fprintf(fp, "%.0f", v);
	else
		fprintf(fp, "%.9g", v);
}

/* A label value as the text format wants it: \\, \" and \n escaped. */
static void
metrics_write_escaped(FILE *fp, const char *value)
{
	for (const char *p = value; *p; p++) {
		if (*p == '\\' || *p == '"')
			fprintf(fp, "\\%c", *p);
		else if (*p == '\n')
			fputs("\\n", fp);
		else
			fputc(*p, fp);
	}
}

/*
 * A sample's name and its labels up to where the caller's own go on:
 * `name{node="ID"` (then `,` and more, or `}`), or just `name` when there
 * is neither a node nor a label to come (more). Returns whether a { is
 * open. node is node_id, read under the lock.
 */
static bool
metrics_write_name(FILE *fp, const char *name, const char *node, bool more)
{
	fputs(name, fp);
	if (node[0] != '\0') {
		fputs("{node=\"", fp);
		metrics_write_escaped(fp, node);
		fputs(more ? "\"," : "\"", fp);
		return true;
	}
	if (more)
		fputc('{', fp);
	return more;
}

void
metrics_write_sample(
    FILE *fp, const char *name, const char *label, const char *value, double v)
{
	char node[sizeof(node_id)];
	bool open;

	pthread_mutex_lock(&metrics_lock);
	memcpy(node, node_id, sizeof(node));
	pthread_mutex_unlock(&metrics_lock);
	open = metrics_write_name(fp, name, node, label != NULL);
	if (label != NULL) {
		fprintf(fp, "%s=\"", label);
		metrics_write_escaped(fp, value);
		fputc('"', fp);
	}
	if (open)
		fputc('}', fp);
	fputc(' ', fp);
	metrics_write_value(fp, v);
	fputc('\n', fp);
}

void
metrics_write(FILE *fp)
{
	uint64_t c[M_NMETRICS], b[NBOUNDS + 1], n, cum = 0;
	struct mf f[MF_NFAMILIES]; /* a copy, written unlocked */
	double sum;
	char le[32];

	pthread_mutex_lock(&metrics_lock);
	mf_declare_known();
	memcpy(c, counters, sizeof(c));
	memcpy(f, families, sizeof(f));
	memcpy(b, commit_buckets, sizeof(b));
	n = commit_n;
	sum = commit_sum;
	metrics_write_head(fp, "mxspool_destination_recipients_total",
	    "counter",
	    "Recipients delivered, deferred and returned, by destination.");
	for (unsigned i = 0; i <= MD_DESTS; i++) {
		const char *name = i < ndests ? dests[i].dest : "other";

		if (i >= ndests && i < MD_DESTS)
			continue;
		if (i == MD_DESTS && dests[i].n[MD_DELIVERED] +
					     dests[i].n[MD_DEFERRED] +
					     dests[i].n[MD_BOUNCED] ==
					 0)
			break;
		for (int r = 0; r < MD_NRESULTS; r++) {
			(void)metrics_write_name(fp,
			    "mxspool_destination_recipients_total", node_id,
			    true);
			fputs("destination=\"", fp);
			metrics_write_escaped(fp, name);
			fprintf(fp, "\",result=\"%s\"} %llu\n", dest_results[r],
			    (unsigned long long)dests[i].n[r]);
		}
	}
	pthread_mutex_unlock(&metrics_lock);

	metrics_write_head(fp, "mxspool_build_info", "gauge",
	    "1, labelled with the version of mxspoold.");
	metrics_write_sample(
	    fp, "mxspool_build_info", "version", build_version, 1);
	for (int m = 0; m < M_NMETRICS; m++) {
		metrics_write_head(
		    fp, metric_desc[m].name, "counter", metric_desc[m].help);
		metrics_write_sample(
		    fp, metric_desc[m].name, NULL, NULL, (double)c[m]);
	}
	for (int i = 0; i < MF_NFAMILIES; i++) {
		metrics_write_head(
		    fp, family_desc[i].name, "counter", family_desc[i].help);
		for (unsigned k = 0; k < f[i].nv; k++)
			metrics_write_sample(fp, family_desc[i].name,
			    family_desc[i].label, f[i].v[k].label,
			    (double)f[i].v[k].n);
		if (f[i].other)
			metrics_write_sample(fp, family_desc[i].name,
			    family_desc[i].label, "other",
			    (double)f[i].v[MF_LABELS].n);
	}

	metrics_write_head(fp, "mxspool_commit_seconds", "histogram",
	    "Time to write and fsync one group commit of the spool.");
	for (size_t i = 0; i <= NBOUNDS; i++) {
		cum += b[i];
		if (i < NBOUNDS)
			snprintf(le, sizeof(le), "%g", commit_bounds[i]);
		else
			snprintf(le, sizeof(le), "+Inf");
		metrics_write_sample(
		    fp, "mxspool_commit_seconds_bucket", "le", le, (double)cum);
	}
	metrics_write_sample(fp, "mxspool_commit_seconds_sum", NULL, NULL, sum);
	metrics_write_sample(
	    fp, "mxspool_commit_seconds_count", NULL, NULL, (double)n);
}

static json_t *
metrics_json_quantile(double q)
{
	double v = metrics_commit_quantile(q);

	return v < 0 ? json_null() : json_real(v);
}

json_t *
metrics_json(void)
{
	static const char *keys[M_NMETRICS] = {[M_ACCEPTED] = "accepted",
	    [M_DELIVERED] = "delivered",
	    [M_DEFERRED] = "deferred",
	    [M_BOUNCED] = "bounced",
	    [M_SUSPECT] = "suspect",
	    [M_CONNECTIONS] = "connections",
	    [M_WAL_DAMAGED_BYTES] = "wal_damaged_bytes",
	    [M_WAL_LOST_UPDATES] = "wal_lost_updates",
	    [M_WAL_SALVAGED] = "wal_salvaged_batches"};
	json_t *o = json_object(), *commit;

	pthread_mutex_lock(&metrics_lock);
	for (int m = 0; m < M_NMETRICS; m++)
		json_object_set_new(
		    o, keys[m], json_integer((json_int_t)counters[m]));
	for (int i = 0; i < MF_NFAMILIES; i++) {
		json_t *by = json_object();
		struct mf *f = &families[i];

		for (unsigned k = 0; k < f->nv; k++)
			json_object_set_new(by, f->v[k].label,
			    json_integer((json_int_t)f->v[k].n));
		if (f->other)
			json_object_set_new(by, "other",
			    json_integer((json_int_t)f->v[MF_LABELS].n));
		json_object_set_new(o, family_desc[i].json, by);
	}
	commit = json_pack("{s:I}", "count", (json_int_t)commit_n);
	pthread_mutex_unlock(&metrics_lock);
	json_object_set_new(commit, "p50", metrics_json_quantile(0.5));
	json_object_set_new(commit, "p90", metrics_json_quantile(0.9));
	json_object_set_new(commit, "p99", metrics_json_quantile(0.99));
	json_object_set_new(o, "commit", commit);
	return o;
}

void
metrics_reset(void)
{
	pthread_mutex_lock(&metrics_lock);
	memset(counters, 0, sizeof(counters));
	memset(families, 0, sizeof(families));
	memset(commit_buckets, 0, sizeof(commit_buckets));
	commit_n = 0;
	commit_sum = 0;
	for (unsigned i = 0; i < ndests; i++)
		free(dests[i].dest);
	memset(dests, 0, sizeof(dests));
	ndests = 0;
	pthread_mutex_unlock(&metrics_lock);
}
