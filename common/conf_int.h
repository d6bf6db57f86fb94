/*
 * Config text passes (common/conf_text.c): what conf.c does to a config
 * file before, and beside, libconfuse. Pure functions on the text.
 */
#ifndef MXSPOOL_CONF_INT_H
#define MXSPOOL_CONF_INT_H

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
	int len; /* 0: none */
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

#endif
