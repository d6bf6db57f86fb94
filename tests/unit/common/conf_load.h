/*
 * Helpers for the config loader's unit tests: load a config from text and
 * get its errors, or the loaded struct conf. Include after <cmocka.h>.
 */
#ifndef MXSPOOL_TEST_CONF_LOAD_H
#define MXSPOOL_TEST_CONF_LOAD_H

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/conf.h"

/* A minimal valid config. */
#define GOOD "relay_domains = {\"example.com\"}\n"

/* The file the last load read. */
static char conf_path[64];

/*
 * Loads text as a config file. Returns NULL if it loaded, else its errors
 * with the temporary file's name replaced by "F", so that tests can compare
 * whole lines such as "F:3: ...".
 */
static inline char *
load_errors(const char *text)
{
	char *errs = NULL, *out, *o;
	struct conf *cf = NULL;
	size_t plen;
	int fd, rc;

	strcpy(conf_path, "/tmp/mxspool-test-XXXXXX");
	fd = mkstemp(conf_path);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	close(fd);
	rc = conf_load(&cf, conf_path, &errs);
	unlink(conf_path);
	if (rc == 0) {
		assert_non_null(cf);
		assert_null(errs);
		conf_free(cf);
		return NULL;
	}
	assert_null(cf);
	assert_non_null(errs);
	plen = strlen(conf_path);
	out = o = calloc(1, strlen(errs) + 1);
	for (const char *p = errs; *p;) {
		if (strncmp(p, conf_path, plen) == 0) {
			*o++ = 'F';
			p += plen;
		} else
			*o++ = *p++;
	}
	free(errs);
	return out;
}

static inline void
assert_errors(const char *text, const char *want)
{
	char *got = load_errors(text);

	assert_non_null(got);
	assert_string_equal(got, want);
	free(got);
}

/* Loads text, or fails the test with its errors. */
static inline struct conf *
load_ok(const char *text)
{
	char *errs = NULL;
	struct conf *cf = NULL;
	int fd;

	strcpy(conf_path, "/tmp/mxspool-test-XXXXXX");
	fd = mkstemp(conf_path);
	assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	close(fd);
	if (conf_load(&cf, conf_path, &errs) < 0)
		fail_msg("config did not load: %s", errs);
	unlink(conf_path);
	return cf;
}

#endif
