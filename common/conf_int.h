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

#endif
