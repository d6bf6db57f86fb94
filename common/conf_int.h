/*
 * Config text passes (common/conf_text.c): what conf.c does to a config
 * file before, and beside, libconfuse. Pure functions on the text.
 */
#ifndef MXSPOOL_CONF_INT_H
#define MXSPOOL_CONF_INT_H

#include <stdbool.h>
#include <stddef.h>

#define CONF_FILE_MAX (1024 * 1024)

/*
 * Reads a whole file of at most CONF_FILE_MAX bytes, malloc'd and
 * NUL-terminated; on failure returns NULL and sets *why.
 */
char *conf_read_file(const char *path, const char **why);
/*
 * Blanks out comments outside quoted strings: # and // to the end of the
 * line, and C-style blocks. Every newline stays, so line numbers stay true.
 */
void conf_strip_comments(char *text);
/*
 * The line where text shows option `name` commented out ("#name = ..."),
 * as a template does, or 0: where an operator should set a missing one.
 */
int conf_hint_line(const char *text, const char *name);

/* A token of the text: a word, a quoted string or one of {}=,() */
struct conf_tok {
	const char *p;
	int len;  /* 0: none */
	int line; /* where it starts */
};

/* A section still open at the end of the text. */
struct conf_open {
	int line;              /* where its brace is */
	struct conf_tok name;  /* `domain`, `retry` */
	struct conf_tok title; /* `"example.com"`, with its quotes; or none */
};

/*
 * libconfuse 3.3 takes a file that ends inside a section (`retry {` with
 * no closing brace) as if the section were closed there. This finds the
 * sections of text (without comments) still open at its end, outermost
 * first: it fills at most max of out and returns how many it found. A
 * list's brace (after `=`) counts for the pairing but opens no section:
 * libconfuse reports a list left open itself.
 */
size_t conf_open_sections(const char *text, struct conf_open *out, size_t max);

/* An option or a section as the text sets it. */
struct conf_item {
	struct conf_tok name;  /* `relay_domains`, `retry`, `domain` */
	struct conf_tok title; /* a section's, with its quotes; or none */
	struct conf_tok value; /* an option's as written; `{` for a list */
	int parent;            /* the section it is in (an index); -1: none */
	bool section;          /* `name {` or `name "title" {` */
	bool append;           /* `name += {...}` (a list) */
};

/*
 * Every option and section text (without comments) sets, in the order
 * written, malloc'd; *n says how many. libconfuse keeps no line for a value
 * once parsed, and lets a second `name = ...` replace the first without a
 * word: these are what the checks that need lines, and the check for an
 * option given twice, read. Text libconfuse would refuse is skipped.
 */
struct conf_item *conf_items(const char *text, size_t *n);
/* The last item named name in section parent (-1: the top), or NULL. */
const struct conf_item *conf_item_find(
    const struct conf_item *items, size_t n, int parent, const char *name);

/*
 * The checks of common/conf_check.c, and where they report: the load in
 * progress's list of errors, and of warnings, as "FILE:LINE: message"
 * ("FILE: message" for line 0; "FILE:LINE: warning: message").
 */
struct conf;

void conf_error_at(int line, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void conf_warning_at(int line, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* The edit distance of a and b (a letter added, dropped, changed or two
 * swapped), ignoring case. */
int conf_distance(const char *a, const char *b);
/* Whether a name at distance d of a known one is likely its typo. */
bool conf_close_enough(const char *name, int d);
/* Whether domain is written as a wildcard ("*.example.org"), which a
 * domain pattern is not; if so, says what to write instead in why. */
bool conf_wildcard(const char *domain, char *why, size_t whylen);
/*
 * Reports an option or a section set twice in one section (libconfuse lets
 * the second replace the first); `+=` appends to a list and is not. is_list
 * tells a top-level list option by its name of len bytes.
 */
void conf_check_twice(const struct conf_item *items, size_t n,
    bool (*is_list)(const char *name, int len));
/*
 * The checks between values of a config that loaded (cf, built from the
 * text items describe): each domain section is for a relay domain, retry
 * notices come before the bounce, the DNS TTL bounds are in order; and a
 * warning for a hostname that is not fully qualified.
 */
void conf_check_values(
    const struct conf *cf, const struct conf_item *items, size_t n);

#endif
