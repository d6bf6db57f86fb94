/*
 * The text passes over a config file (see conf_int.h): reading it, and
 * what libconfuse 3.3 gets wrong or cannot tell, done on the text itself.
 */
#include <ctype.h>
#include <errno.h>
#include <stdbool.h>
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

/* The token at *pp, which moves past it; *line counts the newlines. */
static struct conf_tok
conf_next_tok(const char **pp, int *line)
{
	const char *p = *pp;
	struct conf_tok t;

	for (; isspace((unsigned char)*p); p++)
		*line += *p == '\n';
	t.p = p;
	t.line = *line;
	if (*p == '"' || *p == '\'') {
		for (p++; *p != '\0' && *p != *t.p; p++) {
			if (*p == '\\' && p[1] != '\0')
				p++;
			*line += *p == '\n';
		}
		p += *p != '\0';
	} else if (*p != '\0' && strchr("{}=,()", *p) != NULL) {
		p++;
	} else {
		while (*p != '\0' && !isspace((unsigned char)*p) &&
		       strchr("{}=,()\"'", *p) == NULL)
			p++;
	}
	t.len = (int)(p - t.p);
	*pp = p;
	return t;
}

size_t
conf_open_sections(const char *text, struct conf_open *out, size_t max)
{
	struct {
		bool section;
		struct conf_open at;
	} open[16];
	const size_t nopen = sizeof(open) / sizeof(open[0]);
	struct conf_tok prev = {0}, last = {0}, t;
	size_t depth = 0, n = 0;
	int line = 1;

	while ((t = conf_next_tok(&text, &line)).len > 0) {
		if (t.p[0] == '{' && depth < nopen) {
			bool titled = last.len > 0 &&
				      (last.p[0] == '"' || last.p[0] == '\'');

			open[depth].section = last.len > 0 && last.p[0] != '=';
			open[depth].at.line = line;
			open[depth].at.name = titled ? prev : last;
			open[depth].at.title =
			    titled ? last : (struct conf_tok){NULL, 0, 0};
		}
		if (t.p[0] == '{')
			depth++;
		else if (t.p[0] == '}' && depth > 0)
			depth--;
		prev = last;
		last = t;
	}
	for (size_t i = 0; i < depth && i < nopen; i++)
		if (open[i].section) {
			if (n < max)
				out[n] = open[i].at;
			n++;
		}
	return n;
}

/* Whether t is a word: not quoted, not one of {}=,() */
static bool
conf_is_word(struct conf_tok t)
{
	return t.len > 0 && strchr("{}=,()\"'", t.p[0]) == NULL;
}

static bool
conf_is(struct conf_tok t, char c)
{
	return t.len == 1 && t.p[0] == c;
}

/* The items found so far, and the sections they are in. */
struct conf_scan {
	struct conf_item *items;
	size_t n, cap;
	int open[16]; /* the open sections' items, outermost first */
	size_t depth; /* may be more than open holds: the deepest stand in */
};

static int
conf_scan_parent(const struct conf_scan *sc)
{
	const size_t max = sizeof(sc->open) / sizeof(sc->open[0]);

	return sc->depth == 0
		   ? -1
		   : sc->open[(sc->depth < max ? sc->depth : max) - 1];
}

/* Adds it, an option or a section that opens here. */
static void
conf_scan_add(struct conf_scan *sc, struct conf_item it, bool section)
{
	it.parent = conf_scan_parent(sc);
	it.section = section;
	sc->items = xgrow(sc->items, &sc->cap, sc->n + 1, sizeof(*sc->items));
	sc->items[sc->n++] = it;
	if (section && sc->depth++ < sizeof(sc->open) / sizeof(sc->open[0]))
		sc->open[sc->depth - 1] = (int)sc->n - 1;
}

/*
 * The grammar libconfuse reads: `name = value`, `name = {list}`, `name +=
 * {list}`, `name {` and `name "title" {` open a section, `}` closes one.
 */
struct conf_item *
conf_items(const char *text, size_t *n)
{
	enum { AT_NAME, AT_EQUALS, AT_TITLE, AT_VALUE, IN_LIST } at = AT_NAME;
	struct conf_scan sc = {0};
	struct conf_item cur = {0};
	struct conf_tok t;
	int line = 1;

	while ((t = conf_next_tok(&text, &line)).len > 0) {
		bool opens = conf_is(t, '{');

		switch (at) {
		case AT_NAME:
			break;
		case AT_EQUALS:
			if (conf_is(t, '+')) {
				cur.append = true;
				continue;
			}
			if (conf_is(t, '=') || opens) {
				conf_scan_add(&sc, cur, opens);
				at = opens ? AT_NAME : AT_VALUE;
				continue;
			}
			if (conf_is_word(t) || t.p[0] == '"' ||
			    t.p[0] == '\'') {
				cur.title = t;
				at = AT_TITLE;
				continue;
			}
			at = AT_NAME;
			break;
		case AT_TITLE:
			at = AT_NAME;
			if (opens) {
				conf_scan_add(&sc, cur, true);
				continue;
			}
			break;
		case AT_VALUE:
			sc.items[sc.n - 1].value = t;
			at = opens ? IN_LIST : AT_NAME;
			continue;
		case IN_LIST:
			if (conf_is(t, '}'))
				at = AT_NAME;
			continue;
		}
		/* At a name: the next option, or the end of a section. */
		if (conf_is(t, '}')) {
			sc.depth -= sc.depth > 0;
		} else if (conf_is_word(t)) {
			memset(&cur, 0, sizeof(cur));
			cur.name = t;
			if (t.len > 1 && t.p[t.len - 1] == '+') {
				cur.name.len--;
				cur.append = true;
			}
			at = AT_EQUALS;
		}
	}
	*n = sc.n;
	return sc.items;
}

const struct conf_item *
conf_item_find(
    const struct conf_item *items, size_t n, int parent, const char *name)
{
	size_t len = strlen(name);

	for (size_t i = n; i-- > 0;)
		if (items[i].parent == parent &&
		    items[i].name.len == (int)len &&
		    memcmp(items[i].name.p, name, len) == 0)
			return &items[i];
	return NULL;
}
