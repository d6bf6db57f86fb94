/* Unit tests for common/conf.c: value parsers and the config loader. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <pwd.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/conf.h"
#include "common/xmem.h"
#include "tests/unit/common/conf_load.h"

static void
test_duration_accepts_each_unit(void **state)
{
	int64_t s;

	(void)state;
	assert_int_equal(conf_parse_duration("30s", &s), 0);
	assert_int_equal(s, 30);
	assert_int_equal(conf_parse_duration("5m", &s), 0);
	assert_int_equal(s, 300);
	assert_int_equal(conf_parse_duration("4h", &s), 0);
	assert_int_equal(s, 4 * 3600);
	assert_int_equal(conf_parse_duration("5d", &s), 0);
	assert_int_equal(s, 5 * 86400);
	assert_int_equal(conf_parse_duration("2w", &s), 0);
	assert_int_equal(s, 14 * 86400);
	assert_int_equal(conf_parse_duration("90", &s), 0);
	assert_int_equal(s, 90);
	assert_int_equal(conf_parse_duration("0", &s), 0);
	assert_int_equal(s, 0);
}

static void
test_duration_accepts_combinations(void **state)
{
	int64_t s;

	(void)state;
	assert_int_equal(conf_parse_duration("1h30m", &s), 0);
	assert_int_equal(s, 5400);
	assert_int_equal(conf_parse_duration("1d2h3m4s", &s), 0);
	assert_int_equal(s, 86400 + 7200 + 180 + 4);
}

static void
test_duration_rejects_garbage(void **state)
{
	static const char *bad[] = {"", "s", "5x", "-5s", " 5s", "5s ", "5 s",
	    "1h30", "5.5m", "m5", "99999999999999999999s", "9999999999999999w",
	    "5S"};
	int64_t s = 42;

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		if (conf_parse_duration(bad[i], &s) == 0)
			fail_msg("accepted bad duration '%s'", bad[i]);
	}
	assert_int_equal(s, 42);
}

static void
test_size_accepts_binary_multiples(void **state)
{
	uint64_t b;

	(void)state;
	assert_int_equal(conf_parse_size("512", &b), 0);
	assert_int_equal(b, 512);
	assert_int_equal(conf_parse_size("10k", &b), 0);
	assert_int_equal(b, 10240);
	assert_int_equal(conf_parse_size("25M", &b), 0);
	assert_int_equal(b, 25 * 1024 * 1024);
	assert_int_equal(conf_parse_size("1G", &b), 0);
	assert_int_equal(b, 1024ULL * 1024 * 1024);
	assert_int_equal(conf_parse_size("2g", &b), 0);
	assert_int_equal(b, 2048ULL * 1024 * 1024);
}

static void
test_size_rejects_garbage(void **state)
{
	static const char *bad[] = {"", "k", "10kb", "10x", "-1", "1.5M", " 1",
	    "99999999999999999999", "17179869184G"};
	uint64_t b;

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		if (conf_parse_size(bad[i], &b) == 0)
			fail_msg("accepted bad size '%s'", bad[i]);
}

static void
test_addr_parses_v4_v6_and_wildcard(void **state)
{
	struct conf_addr a;

	(void)state;
	assert_int_equal(conf_parse_addr("127.0.0.1:2525", &a), 0);
	assert_int_equal(a.sa.ss_family, AF_INET);
	assert_string_equal(a.text, "127.0.0.1:2525");
	assert_int_equal(conf_parse_addr("[::1]:25", &a), 0);
	assert_int_equal(a.sa.ss_family, AF_INET6);
	assert_string_equal(a.text, "[::1]:25");
	assert_int_equal(conf_parse_addr("*:25", &a), 0);
	assert_string_equal(a.text, "0.0.0.0:25");
}

static void
test_addr_rejects_bad_forms(void **state)
{
	static const char *bad[] = {"127.0.0.1", "127.0.0.1:", "127.0.0.1:0",
	    "127.0.0.1:65536", "1.2.3:25", "::1:25", "[::1]25",
	    "[::1]:", "[127.0.0.1]:25", "localhost:25", ":25", "127.0.0.1:2x"};
	struct conf_addr a;

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		if (conf_parse_addr(bad[i], &a) == 0)
			fail_msg("accepted bad address '%s'", bad[i]);
}

static void
test_domain_syntax(void **state)
{
	(void)state;
	assert_true(conf_valid_domain("example.com"));
	assert_true(conf_valid_domain("mx-2.Example.NET"));
	assert_true(conf_valid_domain("localhost"));
	assert_false(conf_valid_domain(""));
	assert_false(conf_valid_domain("a..b"));
	assert_false(conf_valid_domain(".a.b"));
	assert_false(conf_valid_domain("a.b."));
	assert_false(conf_valid_domain("-a.b"));
	assert_false(conf_valid_domain("a-.b"));
	assert_false(conf_valid_domain("a_b.c"));
	assert_false(conf_valid_domain("a b"));
}

static void
test_load_accepts_minimal_and_fills_defaults(void **state)
{
	char *errs = NULL;
	struct conf *cf;
	int fd;

	(void)state;
	assert_null(load_errors(GOOD));
	strcpy(conf_path, "/tmp/mxspool-test-XXXXXX");
	fd = mkstemp(conf_path);
	assert_int_equal(
	    write(fd, GOOD "relay_domains += {\".Sub.Example.ORG\"}\n",
		strlen(GOOD) + 38),
	    (ssize_t)(strlen(GOOD) + 38));
	close(fd);
	assert_int_equal(conf_load(&cf, conf_path, &errs), 0);
	unlink(conf_path);
	assert_int_equal(cf->nlisten, 1);
	assert_string_equal(cf->listen[0].text, "0.0.0.0:25");
	assert_string_equal(cf->spool_dir, CONF_DEFAULT_SPOOL_DIR);
	assert_int_equal(cf->shutdown_timeout, 10);
	assert_int_equal(cf->log_level, LOG_LV_INFO);
	assert_int_equal(cf->log_dest, LOG_TO_STDERR);
	assert_true(cf->hostname[0] != '\0');
	assert_true(conf_is_relay_domain(cf, "EXAMPLE.com"));
	assert_false(conf_is_relay_domain(cf, "notexample.com"));
	assert_false(conf_is_relay_domain(cf, "sub.example.org"));
	assert_true(conf_is_relay_domain(cf, "a.sub.example.org"));
	conf_free(cf);
}

static void
test_load_reads_every_option(void **state)
{
	char *errs = NULL;
	struct conf *cf;
	const char *text = "hostname = \"mx2.example.net\"\n"
			   "listen = {\"127.0.0.1:2525\", \"[::1]:2526\"}\n"
			   "spool_dir = \"/tmp/x\"\n"
			   "control_socket = \"/tmp/c.sock\"\n"
			   "relay_domains = {\"a.example\", \"b.example\"}\n"
			   "log_level = \"debug\"\n"
			   "log = \"syslog\"\n"
			   "shutdown_timeout = 1m30s\n";
	int fd;

	(void)state;
	strcpy(conf_path, "/tmp/mxspool-test-XXXXXX");
	fd = mkstemp(conf_path);
	assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	close(fd);
	assert_int_equal(conf_load(&cf, conf_path, &errs), 0);
	unlink(conf_path);
	assert_string_equal(cf->hostname, "mx2.example.net");
	assert_int_equal(cf->nlisten, 2);
	assert_string_equal(cf->listen[1].text, "[::1]:2526");
	assert_string_equal(cf->spool_dir, "/tmp/x");
	assert_string_equal(cf->control_socket, "/tmp/c.sock");
	assert_int_equal(cf->nrelay_domains, 2);
	assert_int_equal(cf->log_level, LOG_LV_DEBUG);
	assert_int_equal(cf->log_dest, LOG_TO_SYSLOG);
	assert_int_equal(cf->shutdown_timeout, 90);
	conf_free(cf);
}

static void
test_load_reports_unknown_option_with_line(void **state)
{
	(void)state;
	assert_errors(GOOD "\n# comment\nfrobnicate = 1\n",
	    "F:4: unknown option 'frobnicate'\n");
	/* Comments of every kind, in lists too, keep line numbers true. */
	assert_errors(
	    "# a\n// b\n/* c\n d */ relay_domains = {\"x.example\", # e\n"
	    "\"y.example\" /* f */}\nspool_dir = \"/a#b\" # \"\nfrob = 1\n",
	    "F:7: unknown option 'frob'\n");
}

static void
test_load_reports_wrong_type_with_line(void **state)
{
	(void)state;
	assert_errors(
	    GOOD "log = {\"a\", \"b\"}\n", "F:2: unexpected token '{'\n");
}

static void
test_load_reports_bad_duration_with_line(void **state)
{
	(void)state;
	assert_errors(GOOD "\nshutdown_timeout = 5y\n",
	    "F:3: shutdown_timeout: bad duration '5y' (use e.g. 30s, 5m, 4h, "
	    "5d)\n");
}

static void
test_load_reports_bad_address_with_line(void **state)
{
	(void)state;
	assert_errors(GOOD "listen = {\"127.0.0.1:25\",\n  \"localhost:25\"}\n",
	    "F:3: listen: bad address 'localhost:25' (use 127.0.0.1:25 or "
	    "[::1]:25)\n");
}

static void
test_load_reports_missing_required_value(void **state)
{
	(void)state;
	/* Not the line after the end: a missing option has no line. */
	assert_errors("hostname = \"mx.example.net\"\n",
	    "F: relay_domains is required (the domains this backup MX "
	    "accepts mail for)\n");
	/* A template's commented-out line is where to set it. */
	assert_errors("# relay_domains (required)\n#relay_domainsx = 1\n"
		      "  #  relay_domains = {\"a.example\"}\n"
		      "hostname = \"mx.example.net\"\n",
	    "F:3: relay_domains is required (the domains this backup MX "
	    "accepts mail for)\n");
	assert_errors(GOOD "spool_dir = \"\"\n",
	    "F:2: spool_dir: missing required value\n");
}

static void
test_load_reports_every_error_not_only_the_first(void **state)
{
	(void)state;
	assert_errors("listen = {\"1.2.3:25\"}\n"
		      "relay_domains = {\"a..b\"}\n"
		      "log_level = \"loud\"\n"
		      "log = \"file\"\n"
		      "hostname = \"bad_name\"\n",
	    "F:1: listen: bad address '1.2.3:25' (use 127.0.0.1:25 or "
	    "[::1]:25)\n"
	    "F:2: relay_domains: bad domain name 'a..b': empty label\n"
	    "F:3: log_level: 'loud' is not one of debug, info, warn, error\n"
	    "F:4: log: 'file' is not one of stderr, syslog\n"
	    "F:5: hostname: bad host name 'bad_name'\n");
}

static void
test_load_reports_unreadable_file(void **state)
{
	char *errs = NULL;
	struct conf *cf = NULL;

	(void)state;
	assert_int_equal(
	    conf_load(&cf, "/nonexistent/mxspool.conf", &errs), -1);
	assert_null(cf);
	assert_string_equal(errs, "/nonexistent/mxspool.conf: cannot read: No "
				  "such file or directory\n");
	free(errs);
}

static void
test_development_config_is_valid(void **state)
{
	char *errs = NULL;
	struct conf *cf = NULL;

	(void)state;
	assert_int_equal(conf_load(&cf, "etc/mxspool-dev.conf", &errs), 0);
	assert_string_equal(cf->listen[0].text, "127.0.0.1:2525");
	assert_true(conf_is_relay_domain(cf, "example.com"));
	conf_free(cf);
}

/* The template sets nothing: every default is its own, and it refuses to
 * run until relay_domains is set. */
static void
test_template_config_wants_relay_domains_and_nothing_else(void **state)
{
	char *errs = NULL;
	struct conf *cf = NULL;

	const char *p;

	(void)state;
	assert_int_equal(conf_load(&cf, "etc/mxspool.conf", &errs), -1);
	p = errs;
	/* The template sets user "mxspool": where the account does not exist
	 * (make install creates none), that is reported too. */
	if (getpwnam("mxspool") == NULL) {
		const char *want = ": user: no such user 'mxspool'\n";

		assert_int_equal(strncmp(p, "etc/mxspool.conf:", 17), 0);
		p = strchr(p, '\n') + 1;
		assert_int_equal(
		    strncmp(p - strlen(want), want, strlen(want)), 0);
	}
	assert_non_null(strstr(p,
	    ": relay_domains is required (the domains this backup MX accepts "
	    "mail for)\n"));
	assert_int_equal(strncmp(p, "etc/mxspool.conf:", 17), 0);
	/* One line: no other error. */
	assert_ptr_equal(strchr(p, '\n'), errs + strlen(errs) - 1);
	free(errs);
}

static void
test_user_and_group_are_names_that_exist(void **state)
{
	char *errs = NULL;
	struct conf *cf;
	const char *text = GOOD "user = \"nobody\"\ngroup = \"nogroup\"\n";
	int fd;

	(void)state;
	assert_null(load_errors(GOOD "user = \"\"\ngroup = \"\"\n"));
	strcpy(conf_path, "/tmp/mxspool-test-XXXXXX");
	fd = mkstemp(conf_path);
	assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	close(fd);
	assert_int_equal(conf_load(&cf, conf_path, &errs), 0);
	unlink(conf_path);
	assert_string_equal(cf->user, "nobody");
	assert_string_equal(cf->group, "nogroup");
	conf_free(cf);
	assert_int_equal(conf_load(&cf, "etc/mxspool-dev.conf", &errs), 0);
	assert_null(cf->user); /* make run: no switch */
	assert_null(cf->group);
	conf_free(cf);

	assert_errors(GOOD "user = \"no-such-user-mx\"\n",
	    "F:2: user: no such user 'no-such-user-mx'\n");
	assert_errors(GOOD "user = \"nobody\"\n\ngroup = \"no-such-group\"\n",
	    "F:4: group: no such group 'no-such-group'\n");
	assert_errors(GOOD "user = \"root\"\n",
	    "F:2: user: 'root' has uid 0 and keeps every privilege (leave "
	    "user unset to run as root)\n");
	assert_errors(GOOD "user = \"nobody\"\ngroup = \"root\"\n",
	    "F:3: group: 'root' has gid 0 and would keep what root's group may "
	    "read and write\n");
	assert_errors(GOOD "user = \"a:b\"\n",
	    "F:2: user: bad user or group name 'a:b'\n");
	assert_errors(GOOD "group = \"nogroup\"\n",
	    "F:2: group: set without user (the group is the one mxspoold "
	    "switches to with user)\n");
	assert_errors(GOOD
	    "user = \"nobody\"\ncontrol_socket_owner = \"root\"\n",
	    "F:3: control_socket_owner: must be empty or the same as user "
	    "'nobody' (the socket is made after the switch to user)\n");
	assert_null(load_errors(
	    GOOD "user = \"nobody\"\ncontrol_socket_owner = \"nobody\"\n"));
}

static void
test_route_parses_every_form(void **state)
{
	struct conf_route r;

	(void)state;
	assert_int_equal(conf_parse_route("mx", &r), 0);
	assert_int_equal(r.kind, ROUTE_MX);
	conf_route_fini(&r);
	assert_int_equal(conf_parse_route("smtp:[10.0.0.5]:2525", &r), 0);
	assert_int_equal(r.kind, ROUTE_SMTP);
	assert_string_equal(r.host, "10.0.0.5");
	assert_true(r.bracketed);
	assert_int_equal(r.port, 2525);
	conf_route_fini(&r);
	assert_int_equal(conf_parse_route("smtp:primary.example.com", &r), 0);
	assert_false(r.bracketed);
	assert_int_equal(r.port, 25);
	conf_route_fini(&r);
	assert_int_equal(conf_parse_route("lmtp:[::1]", &r), 0);
	assert_int_equal(r.kind, ROUTE_LMTP);
	assert_string_equal(r.host, "::1");
	assert_int_equal(r.port, 24);
	conf_route_fini(&r);
	assert_int_equal(conf_parse_route("lmtp:store.example:2400", &r), 0);
	assert_int_equal(r.port, 2400);
	conf_route_fini(&r);
	assert_int_equal(
	    conf_parse_route("lmtp:unix:/run/dovecot/lmtp", &r), 0);
	assert_int_equal(r.kind, ROUTE_LMTP_UNIX);
	assert_string_equal(r.path, "/run/dovecot/lmtp");
	assert_string_equal(r.text, "lmtp:unix:/run/dovecot/lmtp");
	conf_route_fini(&r);
}

static void
test_route_rejects_bad_forms(void **state)
{
	static const char *bad[] = {"", "MX", "smtp:", "smtp:[]:25",
	    "smtp:[1.2.3.4", "smtp:[1.2.3.4]x", "smtp:host:0", "smtp:host:x",
	    "smtp:10.0.0.5:99999", "smtp:bad_host", "lmtp:unix:relative",
	    "http://x", "smtp:[not an ip]"};
	struct conf_route r;

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		if (conf_parse_route(bad[i], &r) == 0)
			fail_msg("accepted bad route '%s'", bad[i]);
}

static void
test_postmaster_defaults_to_the_first_relay_domain(void **state)
{
	struct conf *cf;

	(void)state;
	cf = load_ok("relay_domains = {\".sub.example.org\", \"A.Example\", "
		     "\"b.example\"}\n");
	assert_string_equal(cf->postmaster, "postmaster@a.example");
	conf_free(cf);
	cf = load_ok(GOOD "postmaster = \"hostmaster.team@ops.example.net\"\n");
	assert_string_equal(cf->postmaster, "hostmaster.team@ops.example.net");
	conf_free(cf);
	cf = load_ok("relay_domains = {\".example.org\"}\n"
		     "postmaster = \"pm@example.org\"\n");
	assert_string_equal(cf->postmaster, "pm@example.org");
	conf_free(cf);
	/* Stored in A-labels, so that it needs no SMTPUTF8. */
	cf = load_ok(GOOD "postmaster = \"pm@B\xc3\x9c"
			  "cher.test\"\n");
	assert_string_equal(cf->postmaster, "pm@xn--bcher-kva.test");
	conf_free(cf);
	cf = load_ok("relay_domains = {\"b\xc3\xbc"
		     "cher.test\"}\n");
	assert_string_equal(cf->postmaster, "postmaster@xn--bcher-kva.test");
	conf_free(cf);
}

static void
test_postmaster_must_be_an_address(void **state)
{
	static const char *bad[] = {"postmaster", "@example.com", "pm@",
	    "pm@bad_domain", "a b@example.com", "a..b@example.com",
	    ".a@example.com", "a.@example.com", "\\\"a\\\"@example.com",
	    "a%b@example.com", "a!b@example.com", "pm@@example.com",
	    "<pm@example.com>"};
	char text[200], want[200], *got;

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		snprintf(
		    text, sizeof(text), GOOD "postmaster = \"%s\"\n", bad[i]);
		got = load_errors(text);
		if (got == NULL)
			fail_msg("accepted postmaster %s", bad[i]);
		snprintf(want, sizeof(want),
		    "F:2: postmaster: bad address '%s' (use local@domain)\n",
		    strcmp(bad[i], "\\\"a\\\"@example.com") == 0
			? "\"a\"@example.com"
			: bad[i]);
		assert_string_equal(got, want);
		free(got);
	}
	/* Only subdomain patterns: nothing to default to; said at the line
	 * of relay_domains, not after the end. */
	assert_errors("relay_domains = {\".example.org\"}\n",
	    "F:1: postmaster: not set, and relay_domains names no domain "
	    "(only .subdomain patterns) to default to\n");
}

static void
test_domain_sections_override_global_policy(void **state)
{
	struct conf *cf;
	const struct conf_retry *r;

	(void)state;
	cf = load_ok("relay_domains = {\"example.com\", \".example.org\"}\n"
		     "tls = \"encrypt\"\n"
		     "retry { initial = 1m\n max_age = 0 }\n"
		     "domain \"example.com\" {\n"
		     "  route = \"lmtp:[127.0.0.1]:2400\"\n"
		     "  tls = \"none\"\n"
		     "  retry { max_connections = 5 }\n"
		     "}\n"
		     "domain \".example.org\" { route = \"smtp:[::1]\" }\n");
	assert_int_equal(conf_route_for(cf, "EXAMPLE.COM")->kind, ROUTE_LMTP);
	assert_int_equal(conf_route_for(cf, "EXAMPLE.COM")->port, 2400);
	assert_int_equal(conf_route_for(cf, "a.example.org")->kind, ROUTE_SMTP);
	assert_int_equal(conf_route_for(cf, "example.org")->kind, ROUTE_MX);
	assert_int_equal(conf_route_for(cf, "other.net")->kind, ROUTE_MX);
	assert_int_equal(conf_tls_for(cf, "example.com"), TLS_NONE);
	assert_int_equal(conf_tls_for(cf, "a.example.org"), TLS_ENCRYPT);
	assert_int_equal(conf_tls_for(cf, "other.net"), TLS_ENCRYPT);
	r = conf_retry_for(cf, "example.com");
	assert_int_equal(r->max_connections, 5);
	assert_int_equal(r->initial, 60); /* inherited from the global block */
	assert_int_equal(r->max_age, 0);
	assert_int_equal(r->warn_after, 86400); /* the default */
	r = conf_retry_for(cf, "other.net");
	assert_int_equal(r->max_connections, 20);
	assert_true(r->multiplier == 2.0);
	conf_free(cf);
}

static void
test_defaults_of_smtp_dns_and_delivery_options(void **state)
{
	struct conf *cf = load_ok(GOOD "hostname = \"MX2.Example.NET\"\n");

	(void)state;
	assert_int_equal(cf->message_size_limit, 25 * 1024 * 1024);
	assert_int_equal(cf->max_recipients, 1000);
	assert_int_equal(cf->command_timeout, 300);
	assert_int_equal(cf->data_timeout, 180);
	assert_int_equal(cf->max_hops, 50);
	assert_null(cf->tls_cert_file);
	assert_int_equal(cf->ndns_servers, 0);
	assert_int_equal(cf->dns_timeout_ms, 5000);
	assert_int_equal(cf->nmx_self_names, 1);
	assert_string_equal(cf->mx_self_names[0], "mx2.example.net");
	assert_int_equal(cf->retry.max_age, 14 * 86400);
	assert_int_equal(cf->retry.recovery_connections, 2);
	assert_int_equal(cf->tls, TLS_MAY);
	assert_int_equal(cf->bounce_route.kind, ROUTE_MX);
	conf_free(cf);
}

static void
test_recipients_file_lists_addresses_and_local_parts(void **state)
{
	char rpath[] = "/tmp/mxspool-rcpt-XXXXXX", *text;
	const char *list = "# users\nAlice@Example.com\n  bob  # a comment\n\n";
	struct conf *cf;
	int fd;

	(void)state;
	fd = mkstemp(rpath);
	assert_int_equal(write(fd, list, strlen(list)), (ssize_t)strlen(list));
	close(fd);
	text = xasprintf(
	    GOOD "domain \"example.com\" { recipients = \"%s\" }\n", rpath);
	cf = load_ok(text);
	assert_true(conf_recipient_known(cf, "alice", "example.com"));
	assert_true(conf_recipient_known(cf, "ALICE", "EXAMPLE.COM"));
	assert_true(conf_recipient_known(cf, "Bob", "example.com"));
	assert_false(conf_recipient_known(cf, "carol", "example.com"));
	/* A quoted local part is looked up unquoted. */
	assert_true(conf_recipient_known(cf, "\"Bob\"", "example.com"));
	assert_true(conf_recipient_known(cf, "\"\\b\\o\\b\"", "example.com"));
	assert_false(conf_recipient_known(cf, "\"bob \"", "example.com"));
	assert_false(conf_recipient_known(cf, "\"\"", "example.com"));
	assert_false(conf_recipient_known(cf, "\"", "example.com"));
	/* Domains without a list accept anyone. */
	assert_true(conf_recipient_known(cf, "carol", "other.example"));
	conf_free(cf);
	free(text);

	/* A bad entry is reported with the list's own file and line. */
	fd = open(rpath, O_WRONLY | O_TRUNC);
	assert_int_equal(write(fd, "ok\nbad entry\n", 13), 13);
	close(fd);
	text = xasprintf(
	    GOOD "domain \"example.com\" { recipients = \"%s\" }\n", rpath);
	char *errs = load_errors(text),
	     *want = xasprintf("%s:2: bad recipient 'bad entry'\n", rpath);
	assert_string_equal(errs, want);
	free(errs);
	free(want);
	free(text);
	unlink(rpath);
}

static void
test_load_reports_bad_policy_values(void **state)
{
	(void)state;
	assert_errors(GOOD "retry {\n multiplier = 0.5\n jitter = 2\n"
			   " max_connections = 0\n initial = x }\n"
			   "tls = \"always\"\n"
			   "domain \"bad..name\" {\n route = \"smtp:\"\n}\n"
			   "message_size_limit = 10q\n"
			   "tls_cert_file = \"/nonexistent/cert.pem\"\n",
	    "F:3: multiplier: '0.5' is not a number from 1 to 100\n"
	    "F:4: jitter: '2' is not a number from 0 to 1\n"
	    "F:5: max_connections: must be at least 1\n"
	    "F:6: initial: bad duration 'x' (use e.g. 30s, 5m, 4h, 5d)\n"
	    "F:7: tls: 'always' is not one of none, may, encrypt, verify\n"
	    "F:9: route: bad route 'smtp:' (use mx, smtp:[host]:port, "
	    "lmtp:[host]:port or lmtp:unix:/path)\n"
	    "F:10: domain: bad domain name 'bad..name': empty label\n"
	    "F:11: message_size_limit: bad size '10q' (use e.g. 512, 10k, "
	    "25M)\n"
	    "F:12: tls_cert_file: cannot read '/nonexistent/cert.pem': No such "
	    "file or directory\n"
	    "F:12: tls_cert_file and tls_key_file go together: tls_key_file "
	    "is not set\n");
}

/* RFC 5890: a domain in U-labels and in A-labels is one domain, in any
 * case, in relay_domains, below a ".parent" and in lookups. */
static void
test_relay_domains_take_either_form(void **state)
{
	struct conf *cf;
	char *names;

	(void)state;
	cf = load_ok("relay_domains = {\"bücher.test\", \"XN--CAF-DMA.test\", "
		     "\".Bücher.example\", \"plain.test\"}\n");
	assert_int_equal(cf->nrelay_domains, 4);
	assert_string_equal(cf->relay_domains[0], "xn--bcher-kva.test");
	assert_string_equal(cf->relay_domains[1], "xn--caf-dma.test");
	assert_string_equal(cf->relay_domains[2], ".xn--bcher-kva.example");
	assert_string_equal(cf->relay_domains[3], "plain.test");
	assert_true(conf_is_relay_domain(cf, "bücher.test"));
	assert_true(conf_is_relay_domain(cf, "BÜCHER.test"));
	assert_true(conf_is_relay_domain(cf, "xn--bcher-kva.test"));
	assert_true(conf_is_relay_domain(cf, "XN--BCHER-KVA.TEST"));
	assert_true(conf_is_relay_domain(cf, "café.test"));
	assert_true(conf_is_relay_domain(cf, "mail.bücher.example"));
	assert_true(conf_is_relay_domain(cf, "mail.xn--bcher-kva.example"));
	assert_true(conf_is_relay_domain(cf, "Plain.TEST"));
	/* Neighbours stay out: the parent itself, a look-alike, a bad one. */
	assert_false(conf_is_relay_domain(cf, "bücher.example"));
	assert_false(conf_is_relay_domain(cf, "bucher.test"));
	assert_false(conf_is_relay_domain(cf, "xn--zz.test"));
	assert_false(conf_is_relay_domain(cf, "\u2603.test"));
	/* -t and the start-up log show both forms where they differ. */
	names = conf_idn_names(cf);
	assert_non_null(names);
	assert_string_equal(names,
	    "relay_domains: bücher.test (xn--bcher-kva.test)\n"
	    "relay_domains: café.test (xn--caf-dma.test)\n"
	    "relay_domains: .bücher.example (.xn--bcher-kva.example)\n");
	free(names);
	conf_free(cf);

	cf = load_ok(GOOD);
	assert_null(conf_idn_names(cf));
	conf_free(cf);
}

static void
test_domain_sections_and_routes_take_either_form(void **state)
{
	const struct conf_route *rt;
	struct conf *cf;

	(void)state;
	cf = load_ok("relay_domains = {\"bücher.test\", \".café.test\"}\n"
		     "domain \"bücher.test\" {\n"
		     " route = \"smtp:[mx.bücher.test]:2525\"\n}\n"
		     "domain \".xn--caf-dma.test\" {\n"
		     " route = \"lmtp:store.café.test:24\"\n}\n");
	assert_string_equal(cf->domains[0].name, "xn--bcher-kva.test");
	assert_string_equal(cf->domains[1].name, ".xn--caf-dma.test");
	rt = conf_route_for(cf, "xn--bcher-kva.test");
	assert_int_equal(rt->kind, ROUTE_SMTP);
	/* DNS takes the A-labels; logs show the route as written. */
	assert_string_equal(rt->host, "mx.xn--bcher-kva.test");
	assert_string_equal(rt->text, "smtp:[mx.bücher.test]:2525");
	assert_ptr_equal(conf_route_for(cf, "BÜCHER.test"), rt);
	rt = conf_route_for(cf, "a.café.test");
	assert_int_equal(rt->kind, ROUTE_LMTP);
	assert_string_equal(rt->host, "store.xn--caf-dma.test");
	assert_ptr_equal(conf_route_for(cf, "a.xn--caf-dma.test"), rt);
	assert_int_equal(conf_route_for(cf, "café.test")->kind, ROUTE_MX);
	conf_free(cf);
}

static void
test_load_reports_bad_international_names(void **state)
{
	(void)state;
	assert_errors(
	    "relay_domains = {\"xn--zz.test\", \"\u2603.test\",\n"
	    " \"bücher..test\"}\n"
	    "domain \"bücher.test\" {\n}\n"
	    "domain \"xn--bcher-kva.test\" {\n}\n"
	    "domain \".bücher.test\" {\n}\n"
	    "domain \"a.test\" {\n route = \"smtp:[xn--zz.test]\"\n}\n",
	    "F:1: relay_domains: bad domain name 'xn--zz.test': string "
	    "contains invalid punycode data\n"
	    "F:1: relay_domains: bad domain name '\u2603.test': string "
	    "contains a disallowed character\n"
	    "F:2: relay_domains: bad domain name 'bücher..test': empty label\n"
	    "F:6: domain: 'xn--bcher-kva.test' is the same domain as "
	    "'bücher.test'\n"
	    "F:10: route: bad route 'smtp:[xn--zz.test]' (use mx, "
	    "smtp:[host]:port, lmtp:[host]:port or lmtp:unix:/path)\n");
}

static void
test_recipients_file_takes_either_form(void **state)
{
	char rpath[] = "/tmp/mxspool-rcpt-XXXXXX", *text, *errs, *want;
	const char *list = "Anna@BÜCHER.test\nbert@xn--bcher-kva.test\n"
			   "jürgen@bücher.test\n";
	struct conf *cf;
	int fd;

	(void)state;
	fd = mkstemp(rpath);
	assert_int_equal(write(fd, list, strlen(list)), (ssize_t)strlen(list));
	close(fd);
	text =
	    xasprintf("relay_domains = {\"bücher.test\"}\n"
		      "domain \"xn--bcher-kva.test\" { recipients = \"%s\" }\n",
		rpath);
	cf = load_ok(text);
	free(text);
	assert_true(conf_has_recipients(cf, "bücher.test"));
	assert_true(conf_recipient_known(cf, "anna", "bücher.test"));
	assert_true(conf_recipient_known(cf, "Anna", "xn--bcher-kva.test"));
	assert_true(conf_recipient_known(cf, "bert", "BÜCHER.TEST"));
	assert_true(conf_recipient_known(cf, "jürgen", "xn--bcher-kva.test"));
	assert_false(conf_recipient_known(cf, "carl", "bücher.test"));
	assert_false(conf_recipient_known(cf, "carl", "xn--bcher-kva.test"));
	conf_free(cf);

	/* A bad domain in the list is reported with its reason. */
	fd = open(rpath, O_WRONLY | O_TRUNC);
	assert_int_equal(write(fd, "ok@bücher.test\nx@xn--zz.test\n", 30), 30);
	close(fd);
	text = xasprintf(
	    GOOD "domain \"example.com\" { recipients = \"%s\" }\n", rpath);
	errs = load_errors(text);
	want = xasprintf("%s:2: bad recipient 'x@xn--zz.test': string "
			 "contains invalid punycode data\n",
	    rpath);
	assert_string_equal(errs, want);
	free(errs);
	free(want);
	free(text);
	unlink(rpath);
}

/* The server uses these as they are: a zero would refuse every message or
 * time every session out at once, so it is refused here, at its line. */
static void
test_load_refuses_zero_timeouts_and_size_limit(void **state)
{
	(void)state;
	assert_errors(GOOD "command_timeout = 0s\ndata_timeout = 0\n"
			   "message_size_limit = 0\n",
	    "F:2: command_timeout: must be at least 1s\n"
	    "F:3: data_timeout: must be at least 1s\n"
	    "F:4: message_size_limit: must be at least 1\n");
}

/* The bounds on memory and time a client may take (issue 14, 4 and 5). */
static void
test_session_limits_default_and_refuse_zero(void **state)
{
	struct conf *cf = load_ok(GOOD);

	(void)state;
	assert_int_equal(cf->data_memory_limit, 512 * 1024 * 1024);
	assert_int_equal(cf->session_deadline, 30 * 60);
	assert_int_equal(cf->min_data_rate, 1024);
	assert_int_equal(cf->min_data_rate_window, 60);
	conf_free(cf);
	cf = load_ok(GOOD "data_memory_limit = 64M\nsession_deadline = 1h\n"
			  "min_data_rate = 0\nmin_data_rate_window = 5s\n");
	assert_int_equal(cf->data_memory_limit, 64 * 1024 * 1024);
	assert_int_equal(cf->session_deadline, 3600);
	assert_int_equal(cf->min_data_rate, 0); /* no minimum */
	assert_int_equal(cf->min_data_rate_window, 5);
	conf_free(cf);
	assert_errors(GOOD "data_memory_limit = 0\nsession_deadline = 0s\n"
			   "min_data_rate = 1x\nmin_data_rate_window = 0\n",
	    "F:2: data_memory_limit: must be at least 1\n"
	    "F:3: session_deadline: must be at least 1s\n"
	    "F:4: min_data_rate: bad size '1x' (use e.g. 512, 10k, 25M)\n"
	    "F:5: min_data_rate_window: must be at least 1s\n");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_session_limits_default_and_refuse_zero),
	    cmocka_unit_test(test_load_refuses_zero_timeouts_and_size_limit),
	    cmocka_unit_test(
		test_postmaster_defaults_to_the_first_relay_domain),
	    cmocka_unit_test(test_postmaster_must_be_an_address),
	    cmocka_unit_test(test_duration_accepts_each_unit),
	    cmocka_unit_test(test_duration_accepts_combinations),
	    cmocka_unit_test(test_duration_rejects_garbage),
	    cmocka_unit_test(test_size_accepts_binary_multiples),
	    cmocka_unit_test(test_size_rejects_garbage),
	    cmocka_unit_test(test_addr_parses_v4_v6_and_wildcard),
	    cmocka_unit_test(test_addr_rejects_bad_forms),
	    cmocka_unit_test(test_domain_syntax),
	    cmocka_unit_test(test_load_accepts_minimal_and_fills_defaults),
	    cmocka_unit_test(test_load_reads_every_option),
	    cmocka_unit_test(test_load_reports_unknown_option_with_line),
	    cmocka_unit_test(test_load_reports_wrong_type_with_line),
	    cmocka_unit_test(test_load_reports_bad_duration_with_line),
	    cmocka_unit_test(test_load_reports_bad_address_with_line),
	    cmocka_unit_test(test_load_reports_missing_required_value),
	    cmocka_unit_test(test_load_reports_every_error_not_only_the_first),
	    cmocka_unit_test(test_load_reports_unreadable_file),
	    cmocka_unit_test(test_development_config_is_valid),
	    cmocka_unit_test(
		test_template_config_wants_relay_domains_and_nothing_else),
	    cmocka_unit_test(test_user_and_group_are_names_that_exist),
	    cmocka_unit_test(test_route_parses_every_form),
	    cmocka_unit_test(test_route_rejects_bad_forms),
	    cmocka_unit_test(test_domain_sections_override_global_policy),
	    cmocka_unit_test(test_defaults_of_smtp_dns_and_delivery_options),
	    cmocka_unit_test(
		test_recipients_file_lists_addresses_and_local_parts),
	    cmocka_unit_test(test_load_reports_bad_policy_values),
	    cmocka_unit_test(test_relay_domains_take_either_form),
	    cmocka_unit_test(test_domain_sections_and_routes_take_either_form),
	    cmocka_unit_test(test_load_reports_bad_international_names),
	    cmocka_unit_test(test_recipients_file_takes_either_form),
	};

	return cmocka_run_group_tests_name("common/conf", tests, NULL, NULL);
}
