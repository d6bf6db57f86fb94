/*
 * Internationalised domain names (RFC 5890, 5891; RFC 6531 for mail). A
 * domain may come as U-labels in UTF-8 ("bücher.test") or as A-labels
 * ("xn--bcher-kva.test"), in any case: both are one domain. Everything
 * that compares, routes, indexes or looks up a domain uses its canonical
 * form, lower-case A-labels, which is also the only form DNS takes. The
 * form as received stays in the envelope; the U-label form is for logs.
 *
 * Pure code over libidn2 (IDNA2008 with the UTS #46 non-transitional
 * mapping, so "BÜCHER.test" and "faß.de" map as browsers and MTAs do).
 */
#ifndef MXSPOOL_IDN_H
#define MXSPOOL_IDN_H

#include <stdbool.h>
#include <stddef.h>

#define IDN_NAME_MAX 253 /* octets of a name in text form (RFC 1035 2.3.4) */
#define IDN_NAME_SIZE (IDN_NAME_MAX + 1)

/*
 * The canonical form of domain: lower-case A-labels (RFC 5890 2.3.2.1),
 * written to out (outlen bytes; IDN_NAME_SIZE is always enough). U-labels
 * are mapped and checked by RFC 5891 5 (lookup) with UTS #46; A-labels
 * must decode to valid U-labels and encode back the same. ASCII labels
 * that are not A-labels are taken as LDH labels (RFC 5890 2.3.1) and only
 * lower-cased. No empty label, no trailing dot, labels of at most 63
 * octets and names of at most 253 after conversion.
 *
 * Returns 0, or -1 with a reason for an operator ("label longer than 63
 * octets", libidn2's "string contains a disallowed character", ...) in
 * why (whylen bytes; why may be NULL). out is "" on failure.
 */
int idn_to_ascii(
    const char *domain, char *out, size_t outlen, char *why, size_t whylen);

/*
 * The display form of domain, U-labels where it has A-labels, in lower
 * case, to out (outlen bytes; 4 * IDN_NAME_SIZE is always enough).
 * Returns 0, or -1 (and out "") if domain is no valid name.
 */
int idn_to_unicode(const char *domain, char *out, size_t outlen);

/*
 * The other form of a domain as received, for a log line that shows both:
 * the A-labels of a name given with U-labels, the U-labels of one given
 * with A-labels. Returns false (and out "") when there is no other form:
 * a plain ASCII name, or an invalid one.
 */
bool idn_other_form(const char *domain, char *out, size_t outlen);

/*
 * The form to compare domain in without regard to case: domain itself
 * when it is ASCII (the common case costs a scan), else its A-labels in
 * buf (IDN_NAME_SIZE bytes). An invalid name comes back as it is, and so
 * matches no valid one.
 */
const char *idn_key(const char *domain, char buf[IDN_NAME_SIZE]);

/* Whether a and b are one domain: equal, in any case, in A-label form. */
bool idn_equal(const char *a, const char *b);

#endif
