/*
 * The reload table: every option, where its value lives in struct conf,
 * and whether a reload applies it. "Applied" means that the part that
 * uses the option reads it from the config in force (new sessions,
 * deliveries and decisions from then on), or is told by a *_set_conf
 * call in daemon_reload (ctl/main.c). The rest is used once, at start:
 * the spool is opened once, the user switched to once, the c-ares
 * channel made once with its timeout, tries and cache size.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "common/log.h"
#include "common/xmem.h"
#include "ctl/ctl.h"
#include "ctl/reload.h"

enum reload_kind {
	RK_PLAIN,   /* a number, bool or enum: compared bytewise */
	RK_STR,     /* char *, NULL for unset */
	RK_ADDR,    /* struct conf_addr *, NULL for off */
	RK_ADDRS,   /* struct conf_addr[count] */
	RK_NAMES,   /* char *[count] */
	RK_CIDRS,   /* struct conf_cidr[count] */
	RK_ROUTE,   /* struct conf_route, as written */
	RK_RETRY,   /* a field of struct conf_retry (global and per domain) */
	RK_DOMAINS, /* the domain sections */
};

struct reload_opt {
	const char *name;
	enum reload_when when;
	enum reload_kind kind;
	size_t off, size; /* in struct conf; RK_RETRY: in struct conf_retry */
	size_t count; /* RK_ADDRS, RK_NAMES, RK_CIDRS: offset of the count */
};

#define A RELOAD_APPLIED
#define S RELOAD_AT_START
#define F(field) offsetof(struct conf, field), sizeof(((struct conf *)0)->field)
#define R(field)                                                               \
	offsetof(struct conf_retry, field),                                    \
	    sizeof(((struct conf_retry *)0)->field)
#define N(field) offsetof(struct conf, field)

static const struct reload_opt reload_opts[] = {
    {"hostname", A, RK_STR, F(hostname), 0},
    {"listen", A, RK_ADDRS, F(listen), N(nlisten)},
    {"spool_dir", S, RK_STR, F(spool_dir), 0},
    {"spool_min_free", A, RK_PLAIN, F(spool_min_free), 0},
    {"spool_recovery", S, RK_PLAIN, F(spool_recovery_strict), 0},
    {"spool_dir_check", S, RK_PLAIN, F(spool_dir_check), 0},
    {"control_socket", A, RK_STR, F(control_socket), 0},
    {"control_socket_mode", A, RK_PLAIN, F(control_socket_mode), 0},
    {"control_socket_owner", A, RK_STR, F(control_socket_owner), 0},
    {"control_socket_group", A, RK_STR, F(control_socket_group), 0},
    {"metrics_listen", A, RK_ADDR, F(metrics_listen), 0},
    {"user", S, RK_STR, F(user), 0},
    {"group", S, RK_STR, F(group), 0},
    {"relay_domains", A, RK_NAMES, F(relay_domains), N(nrelay_domains)},
    {"log_level", A, RK_PLAIN, F(log_level), 0},
    {"log", A, RK_PLAIN, F(log_dest), 0},
    {"shutdown_timeout", A, RK_PLAIN, F(shutdown_timeout), 0},
    /* Inbound SMTP: each session reads the config in force. */
    {"message_size_limit", A, RK_PLAIN, F(message_size_limit), 0},
    {"max_recipients", A, RK_PLAIN, F(max_recipients), 0},
    {"max_connections", A, RK_PLAIN, F(max_connections), 0},
    {"max_connections_per_ip", A, RK_PLAIN, F(max_connections_per_ip), 0},
    {"max_errors", A, RK_PLAIN, F(max_errors), 0},
    {"command_timeout", A, RK_PLAIN, F(command_timeout), 0},
    {"data_timeout", A, RK_PLAIN, F(data_timeout), 0},
    {"data_memory_limit", A, RK_PLAIN, F(data_memory_limit), 0},
    {"session_deadline", A, RK_PLAIN, F(session_deadline), 0},
    {"min_data_rate", A, RK_PLAIN, F(min_data_rate), 0},
    {"min_data_rate_window", A, RK_PLAIN, F(min_data_rate_window), 0},
    {"max_hops", A, RK_PLAIN, F(max_hops), 0},
    /* Read again on every reload, changed or not (renewed files). */
    {"tls_cert_file", A, RK_STR, F(tls_cert_file), 0},
    {"tls_key_file", A, RK_STR, F(tls_key_file), 0},
    {"postmaster", A, RK_STR, F(postmaster), 0},
    /* Listeners are opened and closed by server_set_listen; a session
     * takes the rest from the config in force when it starts. */
    {"proxy_listen", A, RK_ADDRS, F(proxy_listen), N(nproxy_listen)},
    {"proxy_trusted", A, RK_CIDRS, F(proxy_trusted), N(nproxy_trusted)},
    {"proxy_timeout", A, RK_PLAIN, F(proxy_timeout), 0},
    {"peer_listen", A, RK_ADDRS, F(peer_listen), N(npeer_listen)},
    {"peer_trusted", A, RK_CIDRS, F(peer_trusted), N(npeer_trusted)},
    {"node_id", A, RK_STR, F(node_id), 0},
    /* DNS: c-ares takes its timeout and tries when its channel is made. */
    {"dns_servers", A, RK_ADDRS, F(dns_servers), N(ndns_servers)},
    {"dns_timeout", S, RK_PLAIN, F(dns_timeout_ms), 0},
    {"dns_tries", S, RK_PLAIN, F(dns_tries), 0},
    {"dns_ptr_timeout", A, RK_PLAIN, F(dns_ptr_timeout_ms), 0},
    {"dns_prefer", A, RK_PLAIN, F(dns_prefer_ipv6), 0},
    {"mx_self_names", A, RK_NAMES, F(mx_self_names), N(nmx_self_names)},
    {"dns_cache_size", S, RK_PLAIN, F(dns_cache_size), 0},
    {"dns_min_ttl", A, RK_PLAIN, F(dns_min_ttl), 0},
    {"dns_max_ttl", A, RK_PLAIN, F(dns_max_ttl), 0},
    {"dns_negative_ttl", A, RK_PLAIN, F(dns_negative_ttl), 0},
    /* Delivery: the scheduler decides with the config in force. */
    {"retry.initial", A, RK_RETRY, R(initial), 0},
    {"retry.multiplier", A, RK_RETRY, R(multiplier), 0},
    {"retry.max_interval", A, RK_RETRY, R(max_interval), 0},
    {"retry.jitter", A, RK_RETRY, R(jitter), 0},
    {"retry.max_age", A, RK_RETRY, R(max_age), 0},
    {"retry.warn_after", A, RK_RETRY, R(warn_after), 0},
    {"retry.probe_interval", A, RK_RETRY, R(probe_interval), 0},
    {"retry.recovery_connections", A, RK_RETRY, R(recovery_connections), 0},
    {"retry.max_connections", A, RK_RETRY, R(max_connections), 0},
    {"retry.max_msgs_per_connection", A, RK_RETRY, R(max_msgs_per_connection),
	0},
    {"retry.cluster_nodes", A, RK_RETRY, R(cluster_nodes), 0},
    {"retry.rejection_guard", A, RK_RETRY, R(rejection_guard), 0},
    {"retry.reject_storm_ratio", A, RK_RETRY, R(reject_storm_ratio), 0},
    {"retry.reject_storm_min", A, RK_RETRY, R(reject_storm_min), 0},
    {"retry.reject_storm_window", A, RK_RETRY, R(reject_storm_window), 0},
    {"soft_bounce", A, RK_RETRY, R(soft_bounce), 0},
    {"known_recipients_max_age", A, RK_PLAIN, F(known_recipients_max_age), 0},
    {"tls", A, RK_PLAIN, F(tls), 0},
    {"tls_ca_file", A, RK_STR, F(tls_ca_file), 0},
    {"bounce_route", A, RK_ROUTE, F(bounce_route), 0},
    {"max_outbound_connections", A, RK_PLAIN, F(max_outbound_connections), 0},
    {"active_limit", A, RK_PLAIN, F(active_limit), 0},
    {"connect_timeout", A, RK_PLAIN, F(connect_timeout), 0},
    {"client_command_timeout", A, RK_PLAIN, F(client_command_timeout), 0},
    {"client_data_timeout", A, RK_PLAIN, F(client_data_timeout), 0},
    {"client_final_timeout", A, RK_PLAIN, F(client_final_timeout), 0},
    {"domain", A, RK_DOMAINS, F(domains), N(ndomains)},
};

#undef A
#undef S
#undef F
#undef R
#undef N

#define NOPTS (sizeof(reload_opts) / sizeof(reload_opts[0]))

static const struct reload_opt *
reload_row(const char *name)
{
	const char *dot = strchr(name, '.');

	/* A domain section's options are all the "domain" row's. */
	if (dot != NULL && strncmp(name, "domain.", 7) == 0)
		name = "domain";
	for (size_t i = 0; i < NOPTS; i++)
		if (strcmp(reload_opts[i].name, name) == 0)
			return &reload_opts[i];
	return NULL;
}

bool
reload_knows(const char *name)
{
	return reload_row(name) != NULL;
}

enum reload_when
reload_when(const char *name)
{
	const struct reload_opt *o = reload_row(name);

	if (o == NULL)
		PANIC("option %s has no row in the reload table", name);
	return o->when;
}

static void
reload_add(char ***v, size_t *n, size_t *cap, char *s)
{
	*v = xgrow(*v, cap, *n + 1, sizeof(**v));
	(*v)[(*n)++] = s;
}

static void
reload_changed(struct reload_report *r, enum reload_when when, char *what)
{
	if (when == RELOAD_APPLIED)
		reload_add(&r->applied, &r->napplied, &r->cap[0], what);
	else
		reload_add(
		    &r->at_next_start, &r->nat_next_start, &r->cap[1], what);
}

void
reload_warn(struct reload_report *r, const char *fmt, ...)
{
	char msg[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	reload_add(&r->warnings, &r->nwarnings, &r->cap[2], xstrdup(msg));
}

static bool
reload_same_str(const char *a, const char *b)
{
	return (a == NULL && b == NULL) ||
	       (a != NULL && b != NULL && strcmp(a, b) == 0);
}

static bool
reload_same_names(char *const *a, size_t na, char *const *b, size_t nb)
{
	if (na != nb)
		return false;
	for (size_t i = 0; i < na; i++)
		if (strcmp(a[i], b[i]) != 0)
			return false;
	return true;
}

static bool
reload_same_addrs(
    const struct conf_addr *a, size_t na, const struct conf_addr *b, size_t nb)
{
	if (na != nb)
		return false;
	for (size_t i = 0; i < na; i++)
		if (strcmp(a[i].text, b[i].text) != 0)
			return false;
	return true;
}

/* Whether row o has the same value in a and b (RK_RETRY: conf_retry). */
static bool
reload_same(const struct reload_opt *o, const void *a, const void *b)
{
	const char *pa = (const char *)a + o->off,
		   *pb = (const char *)b + o->off;
	size_t na = 0, nb = 0;

	if (o->count != 0) {
		memcpy(&na, (const char *)a + o->count, sizeof(na));
		memcpy(&nb, (const char *)b + o->count, sizeof(nb));
	}
	switch (o->kind) {
	case RK_PLAIN:
	case RK_RETRY:
		return memcmp(pa, pb, o->size) == 0;
	case RK_STR:
		return reload_same_str(*(char *const *)(const void *)pa,
		    *(char *const *)(const void *)pb);
	case RK_ADDR: {
		const struct conf_addr
		    *x = *(struct conf_addr *const *)(const void *)pa,
		    *y = *(struct conf_addr *const *)(const void *)pb;

		return (x == NULL && y == NULL) ||
		       (x != NULL && y != NULL &&
			   strcmp(x->text, y->text) == 0);
	}
	case RK_ADDRS:
		return reload_same_addrs(
		    *(struct conf_addr *const *)(const void *)pa, na,
		    *(struct conf_addr *const *)(const void *)pb, nb);
	case RK_NAMES:
		return reload_same_names(*(char **const *)(const void *)pa, na,
		    *(char **const *)(const void *)pb, nb);
	case RK_CIDRS:
		return na == nb &&
		       (na == 0 ||
			   memcmp(*(struct conf_cidr *const *)(const void *)pa,
			       *(struct conf_cidr *const *)(const void *)pb,
			       na * sizeof(struct conf_cidr)) == 0);
	case RK_ROUTE:
		return strcmp(
			   ((const struct conf_route *)(const void *)pa)->text,
			   ((const struct conf_route *)(const void *)pb)
			       ->text) == 0;
	case RK_DOMAINS:
		break;
	}
	PANIC("reload_same: kind %d", (int)o->kind);
}

static const struct conf_domain *
reload_domain(const struct conf *cf, const char *name)
{
	for (size_t i = 0; i < cf->ndomains; i++)
		if (strcmp(cf->domains[i].name, name) == 0)
			return &cf->domains[i];
	return NULL;
}

/*
 * Whether domain section d (old od) changed: its own options, and retry
 * options it sets itself. One it inherits, before and after, changed with
 * the global block, and is reported there.
 */
static bool
reload_same_domain(const struct conf *old, const struct conf *new,
    const struct conf_domain *od, const struct conf_domain *d)
{
	if (strcmp(od->route.text, d->route.text) != 0 || od->tls != d->tls ||
	    !reload_same_str(od->recipients_file, d->recipients_file) ||
	    !reload_same_names(
		od->recipients, od->nrecipients, d->recipients, d->nrecipients))
		return false;
	for (size_t i = 0; i < NOPTS; i++) {
		const struct reload_opt *o = &reload_opts[i];

		if (o->kind != RK_RETRY ||
		    reload_same(o, &od->retry, &d->retry))
			continue;
		if (!reload_same(o, &od->retry, &old->retry) ||
		    !reload_same(o, &d->retry, &new->retry))
			return false;
	}
	return true;
}

/* Each domain section added, removed or changed, as `domain "name"`. */
static void
reload_diff_domains(const struct conf *old, const struct conf *new,
    enum reload_when when, struct reload_report *r)
{
	for (size_t i = 0; i < old->ndomains; i++)
		if (reload_domain(new, old->domains[i].name) == NULL)
			reload_changed(r, when,
			    xasprintf("domain \"%s\"", old->domains[i].name));
	for (size_t i = 0; i < new->ndomains; i++) {
		const struct conf_domain *d = &new->domains[i];
		const struct conf_domain *od = reload_domain(old, d->name);

		if (od == NULL || !reload_same_domain(old, new, od, d))
			reload_changed(
			    r, when, xasprintf("domain \"%s\"", d->name));
	}
}

void
reload_diff(const struct conf *started, const struct conf *old,
    const struct conf *new, struct reload_report *r)
{
	for (size_t i = 0; i < NOPTS; i++) {
		const struct reload_opt *o = &reload_opts[i];
		enum reload_when when = o->when;

		if (o->kind == RK_DOMAINS) {
			reload_diff_domains(old, new, when, r);
			continue;
		}
		/* One used since the start is compared with the value it
		 * started with: a reload after the one that changed it still
		 * says that it waits for a restart, and one that puts it
		 * back says nothing. */
		if (when == RELOAD_AT_START) {
			if (o->kind == RK_RETRY
				? reload_same(o, &started->retry, &new->retry)
				: reload_same(o, started, new))
				continue;
		} else if (o->kind == RK_RETRY
			       ? reload_same(o, &old->retry, &new->retry)
			       : reload_same(o, old, new))
			continue;
		reload_changed(r, when, xstrdup(o->name));
	}
}

static json_t *
reload_json_list(char *const *v, size_t n)
{
	json_t *a = json_array();

	for (size_t i = 0; i < n; i++)
		json_array_append_new(a, ctl_json_str(v[i]));
	return a;
}

json_t *
reload_report_json(const struct reload_report *r)
{
	return json_pack("{s:o,s:o,s:o}", "applied",
	    reload_json_list(r->applied, r->napplied), "at_next_start",
	    reload_json_list(r->at_next_start, r->nat_next_start), "warnings",
	    reload_json_list(r->warnings, r->nwarnings));
}

static void
reload_free_list(char **v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(v[i]);
	free(v);
}

void
reload_report_fini(struct reload_report *r)
{
	reload_free_list(r->applied, r->napplied);
	reload_free_list(r->at_next_start, r->nat_next_start);
	reload_free_list(r->warnings, r->nwarnings);
	memset(r, 0, sizeof(*r));
}
