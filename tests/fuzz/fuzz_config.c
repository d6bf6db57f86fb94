/*
 * libFuzzer target for the config loader (common/conf.c with libconfuse):
 * the input is a config file, handed to conf_load by path (a memfd, as
 * /proc/self/fd/N). Invariants checked:
 * - a load succeeds with a config and no errors, or fails with no config
 *   and errors as whole lines ("FILE:LINE: message\n");
 * - a config that loads has every value within the bounds its option
 *   allows (counts 1 to 1000000, multipliers 1 to 100, fractions 0 to 1,
 *   timeouts of at least 1s, modes up to 0777), at least one listener,
 *   names in lower-case ASCII, sorted recipient lists, and the lookups
 *   find what was configured: each relay domain is one, each domain
 *   section is found by its name with its own route and policies;
 *   the checks the loader itself asserts (PANIC) hold;
 * - everything is freed (LeakSanitizer), and a load leaves nothing behind
 *   for the next one: two fixed configs, one good and one with errors,
 *   load to the same config and the same errors after every input as
 *   before the first.
 *
 * Files the input names (recipients lists, TLS files) are read or checked
 * as named; mk/fuzz.sh gives the run /dev/null as stdin.
 *
 *   make fuzz FUZZ_TARGETS=config   (seeds: tests/fuzz/corpus/config/,
 *   etc/'s configs among them)
 */
#include <ctype.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "common/conf.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char good_text[] =
    "hostname = \"mx2.example.net\"\n"
    "listen = {\"127.0.0.1:2525\", \"[::1]:2525\"}\n"
    "spool_dir = \"/tmp/fuzz-spool\"\n"
    "control_socket = \"/tmp/fuzz-control.sock\"\n"
    "relay_domains = {\"Example.COM\", \".example.org\", "
    "\"b\xc3\xbc"
    "cher.test\"}\n"
    "retry {\n  initial = 1m\n  multiplier = 1.5\n  max_age = 5d\n}\n"
    "domain \"example.com\" {\n  route = \"lmtp:[127.0.0.1]:24\"\n"
    "  tls = \"none\"\n  retry { max_connections = 5 }\n}\n"
    "domain \".example.org\" {\n  route = \"smtp:mx.example.org:2525\"\n"
    "  soft_bounce = true\n}\n";

/* group without user, a bad count, and a bad route inside a section. */
static const char bad_text[] = "listen = {\"127.0.0.1:2525\"}\n"
			       "relay_domains = {\"example.com\"}\n"
			       "group = \"nogroup\"\n"
			       "max_errors = 0\n"
			       "domain \"example.com\" {\n"
			       "  route = \"smtp:\"\n"
			       "}\n";

static int input_fd = -1, good_fd, bad_fd;
static char input_path[64], good_path[64], bad_path[64];
static char *good_print, *bad_errors;

static int
memfd_with(const void *p, size_t len, char *path, size_t pathlen)
{
	int fd = memfd_create("fuzz_config", MFD_CLOEXEC);

	if (fd < 0 || (len > 0 && write(fd, p, len) != (ssize_t)len))
		abort();
	snprintf(path, pathlen, "/proc/self/fd/%d", fd);
	return fd;
}

static bool
lower_ascii(const char *s)
{
	for (; *s; s++)
		if ((unsigned char)*s >= 0x80 || isupper((unsigned char)*s))
			return false;
	return true;
}

static bool
count_ok(unsigned n)
{
	return n >= 1 && n <= 1000000;
}

static void
check_retry(const struct conf_retry *r)
{
	if (r->initial < 0 || r->max_interval < 0 || r->max_age < 0 ||
	    r->warn_after < 0 || r->probe_interval < 0 ||
	    r->reject_storm_window < 0 || !(r->multiplier >= 1) ||
	    !(r->multiplier <= 100) || !(r->jitter >= 0) || !(r->jitter <= 1) ||
	    !(r->reject_storm_ratio >= 0) || !(r->reject_storm_ratio <= 1) ||
	    !count_ok(r->recovery_connections) ||
	    !count_ok(r->max_connections) ||
	    !count_ok(r->max_msgs_per_connection) ||
	    !count_ok(r->reject_storm_min))
		abort();
}

static void
check_conf(const struct conf *cf, const char *path)
{
	char *idn;

	if (strcmp(cf->path, path) != 0 || cf->hostname == NULL ||
	    cf->hostname[0] == '\0' || cf->nlisten == 0 ||
	    cf->spool_dir == NULL || cf->spool_dir[0] == '\0' ||
	    cf->control_socket == NULL || cf->control_socket[0] == '\0' ||
	    cf->control_socket_mode > 0777 || cf->postmaster == NULL ||
	    cf->nmx_self_names == 0)
		abort();
	if (!count_ok(cf->max_recipients) || !count_ok(cf->max_connections) ||
	    !count_ok(cf->max_connections_per_ip) ||
	    !count_ok(cf->max_errors) || !count_ok(cf->max_hops) ||
	    !count_ok(cf->dns_tries) || !count_ok(cf->dns_cache_size) ||
	    !count_ok(cf->max_outbound_connections) ||
	    !count_ok(cf->active_limit))
		abort();
	if (cf->command_timeout < 1 || cf->data_timeout < 1 ||
	    cf->session_deadline < 1 || cf->min_data_rate_window < 1 ||
	    cf->message_size_limit < 1 || cf->data_memory_limit < 1 ||
	    cf->shutdown_timeout < 0 || cf->dns_timeout_ms < 0 ||
	    cf->dns_min_ttl < 0 || cf->dns_max_ttl < 0 ||
	    cf->connect_timeout < 0 || cf->known_recipients_max_age < 0)
		abort();
	for (size_t i = 0; i < cf->nlisten; i++)
		if (cf->listen[i].salen == 0 || cf->listen[i].text[0] == '\0')
			abort();
	for (size_t i = 0; i < cf->nproxy_listen; i++)
		if (cf->proxy_listen[i].salen == 0)
			abort();
	for (size_t i = 0; i < cf->nproxy_trusted; i++)
		if (cf->proxy_trusted[i].bits >
		    (cf->proxy_trusted[i].family == AF_INET ? 32u : 128u))
			abort();
	if (cf->proxy_timeout < 1 || !conf_valid_node_id(cf->node_id))
		abort();
	check_retry(&cf->retry);
	for (size_t i = 0; i < cf->nrelay_domains; i++) {
		const char *d = cf->relay_domains[i];
		char sub[300];

		/* "a.b" is ours; ".a.b" is what is below it. */
		snprintf(sub, sizeof(sub), "%s%s", d[0] == '.' ? "sub" : "", d);
		if (!lower_ascii(d) || !conf_is_relay_domain(cf, sub))
			abort();
	}
	for (size_t i = 0; i < cf->nmx_self_names; i++)
		if (!lower_ascii(cf->mx_self_names[i]))
			abort();
	for (size_t i = 0; i < cf->ndomains; i++) {
		const struct conf_domain *d = &cf->domains[i];

		if (d->name == NULL || d->name[0] == '\0' ||
		    !lower_ascii(d->name) || d->route.text == NULL)
			abort();
		check_retry(&d->retry);
		for (size_t k = 1; k < d->nrecipients; k++)
			if (strcmp(d->recipients[k - 1], d->recipients[k]) > 0)
				abort();
		if (d->name[0] != '.' &&
		    (conf_domain_find(cf, d->name) != d ||
			conf_route_for(cf, d->name) != &d->route ||
			conf_retry_for(cf, d->name) != &d->retry ||
			conf_tls_for(cf, d->name) != d->tls ||
			conf_has_recipients(cf, d->name) !=
			    (d->recipients_file != NULL)))
			abort();
		/* A local part listed is known at the domain. */
		if (d->name[0] != '.' && d->nrecipients > 0 &&
		    strchr(d->recipients[0], '@') == NULL &&
		    !conf_recipient_known(cf, d->recipients[0], d->name))
			abort();
	}
	idn = conf_idn_names(cf);
	free(idn);
}

/* What a config says, as text, to compare two loads. */
static char *
conf_print(const struct conf *cf)
{
	char *text = NULL;
	size_t len = 0;
	FILE *fp = open_memstream(&text, &len);

	fprintf(fp, "%s|%zu|%s|%s|%d|%u|%u|%lld|%g|%lld|%zu|%s|%s\n",
	    cf->hostname, cf->nlisten, cf->listen[0].text, cf->spool_dir,
	    cf->spool_recovery_strict, cf->control_socket_mode, cf->max_errors,
	    (long long)cf->retry.initial, cf->retry.multiplier,
	    (long long)cf->retry.max_age, cf->nrelay_domains, cf->postmaster,
	    cf->mx_self_names[0]);
	for (size_t i = 0; i < cf->nrelay_domains; i++)
		fprintf(fp, "relay %s\n", cf->relay_domains[i]);
	for (size_t i = 0; i < cf->ndomains; i++) {
		const struct conf_domain *d = &cf->domains[i];

		fprintf(fp, "domain %s %s %d %u %d\n", d->name, d->route.text,
		    (int)d->tls, d->retry.max_connections,
		    d->retry.soft_bounce);
	}
	fclose(fp);
	return text;
}

/* Loads path; a config as text, or its errors. */
static char *
load_print(const char *path, bool want_ok)
{
	struct conf *cf;
	char *errors, *text;
	int rc = conf_load(&cf, path, &errors);

	if (want_ok != (rc == 0))
		abort();
	if (rc < 0)
		return errors;
	text = conf_print(cf);
	conf_free(cf);
	return text;
}

static void
init(void)
{
	input_fd = memfd_with(NULL, 0, input_path, sizeof(input_path));
	good_fd = memfd_with(
	    good_text, strlen(good_text), good_path, sizeof(good_path));
	bad_fd =
	    memfd_with(bad_text, strlen(bad_text), bad_path, sizeof(bad_path));
	good_print = load_print(good_path, true);
	bad_errors = load_print(bad_path, false);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct conf *cf;
	char *errors, *again;
	int rc;

	if (input_fd < 0)
		init();
	if (ftruncate(input_fd, 0) < 0 ||
	    (size > 0 && pwrite(input_fd, data, size, 0) != (ssize_t)size))
		abort();

	rc = conf_load(&cf, input_path, &errors);
	if (rc == 0) {
		if (cf == NULL || errors != NULL)
			abort();
		check_conf(cf, input_path);
		conf_free(cf);
	} else {
		size_t n;

		if (rc != -1 || cf != NULL || errors == NULL ||
		    (n = strlen(errors)) == 0 || errors[n - 1] != '\n' ||
		    strstr(errors, ": ") == NULL)
			abort();
		free(errors);
	}

	again = load_print(good_path, true);
	if (strcmp(again, good_print) != 0)
		abort();
	free(again);
	again = load_print(bad_path, false);
	if (strcmp(again, bad_errors) != 0)
		abort();
	free(again);
	return 0;
}
