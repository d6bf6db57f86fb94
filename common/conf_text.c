/*
 * The text passes over a config file (see conf_int.h): reading it, and
 * what libconfuse 3.3 gets wrong or cannot tell, done on the text itself.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/conf_int.h"
#include "common/xmem.h"

char *
conf_read_file(const char *path, const char **why)
{
	FILE *fp = fopen(path, "r");
	char *buf;
	size_t n;

	if (fp == NULL) {
		*why = strerror(errno);
		return NULL;
	}
	buf = xmalloc(CONF_FILE_MAX + 1);
	n = fread(buf, 1, CONF_FILE_MAX + 1, fp);
	if (ferror(fp)) {
		*why = strerror(errno);
		free(buf);
		buf = NULL;
	} else if (n > CONF_FILE_MAX) {
		*why = "larger than 1 MiB";
		free(buf);
		buf = NULL;
	} else if (memchr(buf, '\0', n) != NULL) {
		*why = "contains a NUL byte";
		free(buf);
		buf = NULL;
	} else
		buf[n] = '\0';
	fclose(fp);
	return buf;
}

void
conf_strip_comments(char *p)
{
	char quote = 0;

	for (; *p; p++) {
		if (quote) {
			if (*p == '\\' && p[1] != '\0')
				p++;
			else if (*p == quote)
				quote = 0;
		} else if (*p == '"' || *p == '\'') {
			quote = *p;
		} else if (*p == '#' || (p[0] == '/' && p[1] == '/')) {
			for (; *p && *p != '\n'; p++)
				*p = ' ';
			if (*p == '\0')
				return;
		} else if (p[0] == '/' && p[1] == '*') {
			for (; *p && !(p[0] == '*' && p[1] == '/'); p++)
				if (*p != '\n')
					*p = ' ';
			if (*p == '\0')
				return;
			p[0] = p[1] = ' ';
			p++;
		}
	}
}

int
conf_hint_line(const char *text, const char *name)
{
	size_t n = strlen(name);
	int line = 1;

	for (const char *p = text; *p != '\0'; line++) {
		const char *q = p + strspn(p, " \t");

		if (*q == '#') {
			q += 1 + strspn(q + 1, " \t");
			if (strncmp(q, name, n) == 0 &&
			    q[n + strspn(q + n, " \t")] == '=')
				return line;
		}
		if ((p = strchr(p, '\n')) == NULL)
			break;
		p++;
	}
	return 0;
}
