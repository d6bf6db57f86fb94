/* Allocation wrappers: callers never check for NULL (STYLE.md, Errors). */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/xmem.h"

static void
xmem_oom(size_t n)
{
	/* Not through log/: it may itself need memory. */
	fprintf(stderr, "mxspool: out of memory allocating %zu bytes\n", n);
	abort();
}

void *
xmalloc(size_t n)
{
	void *p = malloc(n ? n : 1);

	if (p == NULL)
		xmem_oom(n);
	return p;
}

void *
xcalloc(size_t nmemb, size_t size)
{
	void *p = calloc(nmemb ? nmemb : 1, size ? size : 1);

	if (p == NULL)
		xmem_oom(nmemb * size);
	return p;
}

void *
xrealloc(void *p, size_t n)
{
	void *q = realloc(p, n ? n : 1);

	if (q == NULL)
		xmem_oom(n);
	return q;
}

void *
xgrow(void *p, size_t *nmemb, size_t need, size_t size)
{
	size_t n = *nmemb ? *nmemb : 8;

	if (need <= *nmemb)
		return p;
	while (n < need)
		n *= 2;
	if (n > ((size_t)-1) / size)
		xmem_oom((size_t)-1);
	p = xrealloc(p, n * size);
	*nmemb = n;
	return p;
}

char *
xstrdup(const char *s)
{
	return xstrndup(s, strlen(s));
}

char *
xstrndup(const char *s, size_t n)
{
	char *p = xmalloc(n + 1);

	memcpy(p, s, n);
	p[n] = '\0';
	return p;
}

char *
xmemdup(const void *p, size_t n)
{
	return xstrndup(p, n);
}

char *
xasprintf(const char *fmt, ...)
{
	va_list ap;
	char *s;

	va_start(ap, fmt);
	if (vasprintf(&s, fmt, ap) < 0)
		xmem_oom(strlen(fmt));
	va_end(ap);
	return s;
}
