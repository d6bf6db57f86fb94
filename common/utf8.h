/*
 * common/utf8: UTF-8 (RFC 3629) one character at a time, and RFC 6533's
 * 7-bit form of an internationalised address. Pure code.
 */
#ifndef MXSPOOL_UTF8_H
#define MXSPOOL_UTF8_H

#include <stddef.h>

/*
 * The UTF-8 character at s (n octets left, n >= 1): its length in octets
 * (1 to 4) with its code point in *cp, or 0 when s does not start a valid
 * sequence (RFC 3629 3, 4: no overlong forms, no surrogates, nothing
 * above U+10FFFF, not cut short).
 */
size_t utf8_char(const unsigned char *s, size_t n, unsigned long *cp);

/*
 * The n octets of an address in RFC 6533 3's utf-8-addr-xtext: printable
 * ASCII but '+', '=' and '\' as it is, every other character as \x{HEX}
 * (upper case, at least two digits). Malloc'd; NULL when the octets are
 * not UTF-8. Safe in an ORCPT parameter and a message/delivery-status
 * field when SMTPUTF8 is not there.
 */
char *utf8_addr_xtext(const char *s, size_t n);

#endif
