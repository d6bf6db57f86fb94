/* common/utf8: see utf8.h. */
#include <stdio.h>
#include <stdlib.h>

#include "common/utf8.h"
#include "common/xmem.h"

size_t
utf8_char(const unsigned char *s, size_t n, unsigned long *cp)
{
	static const unsigned long min[] = {0, 0, 0x80, 0x800, 0x10000};
	size_t len;
	unsigned long v;

	if (s[0] < 0x80) {
		*cp = s[0];
		return 1;
	}
	if (s[0] >= 0xc2 && s[0] <= 0xdf)
		len = 2, v = s[0] & 0x1f;
	else if (s[0] >= 0xe0 && s[0] <= 0xef)
		len = 3, v = s[0] & 0x0f;
	else if (s[0] >= 0xf0 && s[0] <= 0xf4)
		len = 4, v = s[0] & 0x07;
	else
		return 0;
	if (n < len)
		return 0;
	for (size_t i = 1; i < len; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		v = v << 6 | (s[i] & 0x3f);
	}
	if (v < min[len] || v > 0x10ffff || (v >= 0xd800 && v <= 0xdfff))
		return 0;
	*cp = v;
	return len;
}

char *
utf8_addr_xtext(const char *s, size_t n)
{
	const unsigned char *p = (const unsigned char *)s;
	char *out = xmalloc(n * 10 + 1);
	size_t o = 0, k;
	unsigned long cp;

	for (size_t i = 0; i < n; i += k) {
		if ((k = utf8_char(p + i, n - i, &cp)) == 0) {
			free(out);
			return NULL;
		}
		if (cp >= 0x21 && cp <= 0x7e && cp != '+' && cp != '=' &&
		    cp != '\\')
			out[o++] = (char)cp;
		else
			o += (size_t)sprintf(out + o, "\\x{%02lX}", cp);
	}
	out[o] = '\0';
	return out;
}
