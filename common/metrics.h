/*
 * Metrics: process-wide counters and the spool's commit latency histogram,
 * incremented from anywhere (any thread), read by `mxspoolctl stats` and
 * written in the Prometheus text format for /metrics (ctl/httpd.c).
 * Gauges that describe the queue (depth and age per destination, open
 * connections) are not kept here: whoever writes them reads them live.
 */
#ifndef MXSPOOL_METRICS_H
#define MXSPOOL_METRICS_H

#include <stdint.h>
#include <stdio.h>

struct json_t;

/* Plain counters. */
enum metric {
	M_ACCEPTED,    /* messages queued: 250 after DATA */
	M_DELIVERED,   /* recipients delivered (2xx) */
	M_DEFERRED,    /* recipient deliveries deferred (4xx, no answer) */
	M_BOUNCED,     /* recipients returned to their sender with a DSN */
	M_SUSPECT,     /* 5xx held by the rejection guard, not bounced */
	M_CONNECTIONS, /* inbound SMTP connections accepted */
	/* A write-ahead log damaged before its tail, found at start. */
	M_WAL_DAMAGED_BYTES, /* bytes of log that could not be read */
	M_WAL_LOST_UPDATES,  /* sequence numbers (key writes) lost */
	M_WAL_SALVAGED,      /* intact write batches kept after damage */
	M_NMETRICS
};

/* Counters with one label whose values the caller names. */
enum metric_family {
	MF_REJECTED, /* SMTP commands refused, by reason ("relay", ...) */
	MF_ATTEMPTS, /* delivery attempts, by result ("sent", ...) */
	MF_DNS,      /* DNS lookups, by result ("ok", "tempfail", ...) */
	MF_RELOADS,  /* config reloads, by result ("ok", "failed") */
	MF_NFAMILIES
};

/* Per destination (the route, or the recipient domain). */
enum metric_dest_result { MD_DELIVERED, MD_DEFERRED, MD_BOUNCED, MD_NRESULTS };

void metrics_inc(enum metric m);
void metrics_add(enum metric m, uint64_t n);
uint64_t metrics_get(enum metric m);
/* Counts one event of family f labelled label (borrowed). Past a few dozen
 * distinct labels per family, new ones are counted as "other". */
void metrics_count(enum metric_family f, const char *label);
uint64_t metrics_count_get(enum metric_family f, const char *label);
/* One recipient's result at destination dest (copied; past 256
 * destinations, counted as "other"). Any thread. */
void metrics_dest_count(const char *dest, enum metric_dest_result r);
/* The version mxspool_build_info gives (a string that lives on). */
void metrics_set_build(const char *version);
/*
 * The node_id every sample is labelled with, node="ID", so that a fleet's
 * series never collide (copied; "" or NULL: no such label).
 */
void metrics_set_node(const char *node);
/* Shorthands for the families. */
void metrics_reject(const char *reason);
void metrics_attempt(const char *result);
void metrics_dns(const char *result);
/* One spool commit (WAL write and fsync) took this long. */
void metrics_observe_commit(double seconds);
/* The q quantile (0..1) of commit latency estimated from the histogram
 * buckets, in seconds; negative when nothing was observed yet. */
double metrics_commit_quantile(double q);
uint64_t metrics_commit_count(void);

/* Writes every counter and the histogram, with HELP and TYPE lines. */
void metrics_write(FILE *fp);
/* Writes a HELP and a TYPE line. */
void metrics_write_head(
    FILE *fp, const char *name, const char *type, const char *help);
/* Writes `name{node="ID",label="value"} v`, escaping value; label NULL:
 * no label but the node's. */
void metrics_write_sample(
    FILE *fp, const char *name, const char *label, const char *value, double v);
/*
 * The counters for `mxspoolctl stats` (a new reference): accepted,
 * delivered, deferred, bounced, connections, rejected {reason: n},
 * attempts {result: n}, dns {result: n}, reloads {result: n}, commit
 * {count, p50, p90, p99} (seconds, null when nothing was observed).
 */
struct json_t *metrics_json(void);
/* Zeroes everything (for tests). */
void metrics_reset(void);

#endif
