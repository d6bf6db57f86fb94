/* Unit tests for relay/downgrade.c: the 8BITMIME to 7-bit conversion. The
 * results are parsed again with GMime to check what a reader decodes. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <gmime/gmime.h>

#include "relay/downgrade.h"

#define CONV(msg, out, outlen, why)                                            \
	downgrade_to_7bit(msg, sizeof(msg) - 1, out, outlen, why, sizeof(why))

/* What every converted message must be: 7 bit, CRLF lines, none longer
 * than 998 octets (RFC 5322 2.1.1). */
static void
assert_wire_ok(const char *s, size_t len)
{
	size_t col = 0;

	assert_true(downgrade_is_7bit(s, len));
	assert_true(len >= 2 && s[len - 2] == '\r' && s[len - 1] == '\n');
	for (size_t i = 0; i < len; i++) {
		if (s[i] == '\n') {
			assert_true(i > 0 && s[i - 1] == '\r');
			col = 0;
		} else {
			assert_true(++col <= 998);
		}
	}
}

/* The longest line of the part of s between from and the next "\r\n--". */
static size_t
longest_line(const char *from)
{
	size_t max = 0, col = 0;

	for (const char *p = from; *p != '\0'; p++) {
		if (strncmp(p, "\r\n--", 4) == 0)
			break;
		if (*p == '\n')
			col = 0;
		else if (*p != '\r' && ++col > max)
			max = col;
	}
	return max;
}

struct found {
	const char *type; /* "text/plain" */
	int nth;          /* which one of that type, from 0 */
	GByteArray *data; /* its decoded content */
};

/* Depth first, into message/rfc822 parts too. */
static void
find_part(GMimeObject *part, struct found *f)
{
	GMimeContentType *ct = g_mime_object_get_content_type(part);
	char *type = g_mime_content_type_get_mime_type(ct);
	GMimeStream *mem;

	if (GMIME_IS_MULTIPART(part)) {
		for (int i = 0;
		     i < g_mime_multipart_get_count(GMIME_MULTIPART(part)); i++)
			find_part(
			    g_mime_multipart_get_part(GMIME_MULTIPART(part), i),
			    f);
	} else if (GMIME_IS_MESSAGE_PART(part)) {
		find_part(g_mime_message_get_mime_part(
			      g_mime_message_part_get_message(
				  GMIME_MESSAGE_PART(part))),
		    f);
	} else if (GMIME_IS_PART(part) && strcmp(type, f->type) == 0 &&
		   f->nth-- == 0) {
		mem = g_mime_stream_mem_new();
		g_mime_stream_mem_set_owner(GMIME_STREAM_MEM(mem), FALSE);
		g_mime_data_wrapper_write_to_stream(
		    g_mime_part_get_content(GMIME_PART(part)), mem);
		f->data =
		    g_mime_stream_mem_get_byte_array(GMIME_STREAM_MEM(mem));
		g_object_unref(mem);
	}
	g_free(type);
}

/* The decoded content of the nth part of that type in a message (in a
 * message/rfc822 too), CRs dropped for text; malloc'd, NUL added. */
static char *
decoded(
    const char *msgtext, size_t len, const char *type, int nth, size_t *outlen)
{
	GMimeStream *in = g_mime_stream_mem_new_with_buffer(msgtext, len);
	GMimeParser *p = g_mime_parser_new_with_stream(in);
	GMimeMessage *m = g_mime_parser_construct_message(p, NULL);
	struct found f = {type, nth, NULL};
	char *out;
	size_t o = 0;

	assert_non_null(m);
	find_part(g_mime_message_get_mime_part(m), &f);
	assert_non_null(f.data);
	out = malloc(f.data->len + 1);
	for (size_t i = 0; i < f.data->len; i++) {
		if (strncmp(type, "text/", 5) == 0 && f.data->data[i] == '\r')
			continue;
		out[o++] = (char)f.data->data[i];
	}
	out[o] = '\0';
	*outlen = o;
	g_byte_array_free(f.data, TRUE);
	g_object_unref(m);
	g_object_unref(p);
	g_object_unref(in);
	return out;
}

static void
test_is_7bit_finds_any_octet_above_127(void **state)
{
	(void)state;
	assert_true(downgrade_is_7bit("", 0));
	assert_true(downgrade_is_7bit("plain\r\n\x7f\x01", 9));
	assert_false(downgrade_is_7bit("caf\xc3\xa9", 5));
	assert_false(downgrade_is_7bit("\x80", 1));
	/* Only len octets are read. */
	assert_true(downgrade_is_7bit("ab\xff", 2));
}

static void
test_failures_have_their_rfc3463_codes(void **state)
{
	(void)state;
	assert_string_equal(downgrade_dsn(DOWNGRADE_SIGNED), "5.6.3");
	assert_string_equal(downgrade_dsn(DOWNGRADE_HEADER), "5.6.3");
	assert_string_equal(downgrade_dsn(DOWNGRADE_FAILED), "5.6.5");
}

static const char text_8bit[] =
    "Received: from a by b; Mon, 1 Jan 2024 00:00:00 +0000\r\n"
    "From: a@example.org\r\n"
    "MIME-Version: 1.0\r\n"
    "Content-Type: text/plain; charset=utf-8\r\n"
    "Content-Transfer-Encoding: 8bit\r\n"
    "Subject: test\r\n"
    "\r\n"
    "Gr\xc3\xbc\xc3\x9f"
    "e, caf\xc3\xa9 = \xe2\x82\xac\r\n"
    ".a line with a dot\r\n"
    "\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9"
    "\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9"
    "\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9"
    "\xc3\xa9\xc3\xa9\xc3\xa9 a long line of thirty e-acutes and more words\r\n"
    "trailing space \r\n";

static const char text_8bit_body[] =
    "Gr\xc3\xbc\xc3\x9f"
    "e, caf\xc3\xa9 = \xe2\x82\xac\n"
    ".a line with a dot\n"
    "\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9"
    "\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9"
    "\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9"
    "\xc3\xa9\xc3\xa9\xc3\xa9 a long line of thirty e-acutes and more words\n"
    "trailing space \n";

static void
test_text_plain_8bit_becomes_quoted_printable(void **state)
{
	static const char hdrs[] =
	    "Received: from a by b; Mon, 1 Jan 2024 00:00:00 +0000\r\n"
	    "From: a@example.org\r\n"
	    "MIME-Version: 1.0\r\n"
	    "Content-Type: text/plain; charset=utf-8\r\n"
	    "Content-Transfer-Encoding: quoted-printable\r\n"
	    "Subject: test\r\n\r\n";
	char why[160], *out, *body, *sep;
	size_t len, blen;

	(void)state;
	assert_int_equal(CONV(text_8bit, &out, &len, why), DOWNGRADE_OK);
	assert_wire_ok(out, len);
	/* The header section is kept in order; only the encoding changed. */
	sep = strstr(out, "\r\n\r\n");
	assert_non_null(sep);
	assert_int_equal((size_t)(sep - out) + 4, sizeof(hdrs) - 1);
	assert_memory_equal(out, hdrs, sizeof(hdrs) - 1);
	assert_non_null(strstr(out, "\r\nGr=C3=BC=C3=9Fe, caf=C3=A9 =3D "));
	/* Soft line breaks keep QP lines within 76 octets (RFC 2045 6.7). */
	assert_true(longest_line(sep + 4) <= 76);
	body = decoded(out, len, "text/plain", 0, &blen);
	assert_int_equal(blen, sizeof(text_8bit_body) - 1);
	assert_memory_equal(body, text_8bit_body, blen);
	free(body);
	free(out);
}

/* A part labelled quoted-printable with raw 8-bit octets in it (a common
 * mistake) is encoded again, not passed on as it is. */
static void
test_mislabelled_quoted_printable_is_encoded_again(void **state)
{
	static const char msg[] =
	    "From: a@example.org\r\n"
	    "MIME-Version: 1.0\r\n"
	    "Content-Type: text/plain; charset=utf-8\r\n"
	    "Content-Transfer-Encoding: quoted-printable\r\n"
	    "\r\n"
	    "caf\xc3\xa9 caf=C3=A9\r\n";
	char why[160], *out, *body;
	size_t len, blen;

	(void)state;
	assert_int_equal(CONV(msg, &out, &len, why), DOWNGRADE_OK);
	assert_wire_ok(out, len);
	body = decoded(out, len, "text/plain", 0, &blen);
	assert_string_equal(body, "caf\xc3\xa9 caf\xc3\xa9\n");
	free(body);
	free(out);
}

static const char attachment[] = "\x01\x02\xff\xfe binary\r\nand \x80 more";

static const char mixed[] =
    "From: a@example.org\r\n"
    "MIME-Version: 1.0\r\n"
    "Content-Type: multipart/mixed; boundary=\"=-outer-=\"\r\n"
    "\r\n"
    "This is a multi-part message in MIME format.\r\n"
    "--=-outer-=\r\n"
    "Content-Type: text/plain; charset=iso-8859-1\r\n"
    "Content-Transfer-Encoding: 8bit\r\n"
    "\r\n"
    "Gr\xfc\xdf"
    "e\r\n"
    "--=-outer-=\r\n"
    "Content-Type: text/plain; charset=us-ascii\r\n"
    "\r\n"
    "just ascii, left alone\r\n"
    "--=-outer-=\r\n"
    "Content-Type: application/octet-stream; name=\"a.bin\"\r\n"
    "Content-Disposition: attachment; filename=\"a.bin\"\r\n"
    "Content-Transfer-Encoding: 8bit\r\n"
    "\r\n"
    "\x01\x02\xff\xfe binary\r\nand \x80 more\r\n"
    "--=-outer-=--\r\n";

static void
test_multipart_keeps_structure_and_encodes_each_part(void **state)
{
	char why[160], *out, *body;
	size_t len, blen;

	(void)state;
	assert_int_equal(CONV(mixed, &out, &len, why), DOWNGRADE_OK);
	assert_wire_ok(out, len);
	/* Boundaries, preamble and the 7-bit part as they were. */
	assert_non_null(strstr(out, "Content-Type: multipart/mixed; "
				    "boundary=\"=-outer-=\"\r\n\r\n"
				    "This is a multi-part message in MIME "
				    "format.\r\n--=-outer-=\r\n"));
	assert_non_null(
	    strstr(out, "--=-outer-=\r\n"
			"Content-Type: text/plain; "
			"charset=us-ascii\r\n\r\n"
			"just ascii, left alone\r\n--=-outer-=\r\n"));
	assert_non_null(strstr(out, "\r\n--=-outer-=--\r\n"));
	/* Text to quoted-printable, its charset kept; other data to base64. */
	assert_non_null(strstr(out, "charset=iso-8859-1\r\n"
				    "Content-Transfer-Encoding: "
				    "quoted-printable\r\n\r\nGr=FC=DFe\r\n"));
	assert_non_null(strstr(out, "filename=\"a.bin\"\r\n"
				    "Content-Transfer-Encoding: base64\r\n"));
	body = decoded(out, len, "text/plain", 0, &blen);
	/* The CRLF before a boundary is the boundary's (RFC 2046 5.1.1). */
	assert_string_equal(body, "Gr\xfc\xdf"
				  "e");
	free(body);
	/* The attachment's every octet, its CRLF included. */
	body = decoded(out, len, "application/octet-stream", 0, &blen);
	assert_int_equal(blen, sizeof(attachment) - 1);
	assert_memory_equal(body, attachment, blen);
	free(body);
	free(out);
}

static void
test_nested_message_is_converted_inside(void **state)
{
	static const char msg[] =
	    "From: a@example.org\r\n"
	    "MIME-Version: 1.0\r\n"
	    "Content-Type: multipart/mixed; boundary=\"b1\"\r\n"
	    "\r\n"
	    "--b1\r\n"
	    "Content-Type: text/plain\r\n"
	    "\r\n"
	    "see attached\r\n"
	    "--b1\r\n"
	    "Content-Type: message/rfc822\r\n"
	    "Content-Transfer-Encoding: 8bit\r\n"
	    "\r\n"
	    "From: inner@example.org\r\n"
	    "Subject: inner\r\n"
	    "MIME-Version: 1.0\r\n"
	    "Content-Type: text/plain; charset=utf-8\r\n"
	    "Content-Transfer-Encoding: 8bit\r\n"
	    "\r\n"
	    "inner caf\xc3\xa9\r\n"
	    "--b1--\r\n";
	char why[160], *out, *body;
	size_t len, blen;

	(void)state;
	assert_int_equal(CONV(msg, &out, &len, why), DOWNGRADE_OK);
	assert_wire_ok(out, len);
	/* message/rfc822 is never encoded itself (RFC 2045 6.4): its parts
	 * are, and it is labelled 7bit. */
	assert_non_null(strstr(out, "Content-Type: message/rfc822\r\n"
				    "Content-Transfer-Encoding: 7bit\r\n\r\n"
				    "From: inner@example.org\r\n"
				    "Subject: inner\r\n"));
	assert_non_null(strstr(out, "\r\n\r\ninner caf=C3=A9\r\n--b1--"));
	body = decoded(out, len, "text/plain", 1, &blen);
	assert_string_equal(body, "inner caf\xc3\xa9");
	free(body);
	free(out);
}

static const char signed_8bit[] =
    "From: a@example.org\r\n"
    "MIME-Version: 1.0\r\n"
    "Content-Type: multipart/signed; protocol=\"application/pgp-signature\";"
    " micalg=pgp-sha256; boundary=\"s\"\r\n"
    "\r\n"
    "--s\r\n"
    "Content-Type: text/plain; charset=utf-8\r\n"
    "Content-Transfer-Encoding: 8bit\r\n"
    "\r\n"
    "sign\xc3\xa9\r\n"
    "--s\r\n"
    "Content-Type: application/pgp-signature\r\n"
    "\r\n"
    "-----BEGIN PGP SIGNATURE-----\r\n"
    "iQ==\r\n"
    "-----END PGP SIGNATURE-----\r\n"
    "--s--\r\n";

static void
test_signed_8bit_is_refused(void **state)
{
	char why[160], *out = (char *)"x";
	size_t len = 1;

	(void)state;
	assert_int_equal(CONV(signed_8bit, &out, &len, why), DOWNGRADE_SIGNED);
	assert_null(out);
	assert_int_equal(len, 0);
	assert_string_equal(why, "message is signed (multipart/signed)");
}

static void
test_signed_8bit_inside_a_multipart_is_refused(void **state)
{
	static const char msg[] =
	    "From: a@example.org\r\n"
	    "MIME-Version: 1.0\r\n"
	    "Content-Type: multipart/mixed; boundary=\"o\"\r\n"
	    "\r\n"
	    "--o\r\n"
	    "Content-Type: multipart/signed; protocol=\"application/"
	    "pkcs7-signature\"; micalg=sha-256; boundary=\"s\"\r\n"
	    "\r\n"
	    "--s\r\n"
	    "Content-Type: text/plain\r\n"
	    "\r\n"
	    "ascii, signed\r\n"
	    "--s\r\n"
	    "Content-Type: application/pkcs7-signature\r\n"
	    "Content-Transfer-Encoding: 8bit\r\n"
	    "\r\n"
	    "\xff\xfe raw signature\r\n"
	    "--s--\r\n"
	    "--o--\r\n";
	char why[160], *out;
	size_t len;

	(void)state;
	assert_int_equal(CONV(msg, &out, &len, why), DOWNGRADE_SIGNED);
	assert_null(out);
}

/* A 7-bit signed part is left exactly as it was, while an 8-bit part
 * beside it is converted. */
static void
test_signed_7bit_part_is_left_alone(void **state)
{
	static const char signed_part[] =
	    "--o\r\n"
	    "Content-Type: multipart/signed; protocol=\"application/"
	    "pgp-signature\"; micalg=pgp-sha256;\r\n boundary=\"s\"\r\n"
	    "\r\n"
	    "--s\r\n"
	    "Content-Type: text/plain; charset=us-ascii\r\n"
	    "Content-Transfer-Encoding: 7bit\r\n"
	    "\r\n"
	    "signed   text  with odd  spacing \r\n"
	    "--s\r\n"
	    "Content-Type: application/pgp-signature\r\n"
	    "\r\n"
	    "-----BEGIN PGP SIGNATURE-----\r\n"
	    "iQ==\r\n"
	    "-----END PGP SIGNATURE-----\r\n"
	    "--s--\r\n";
	static const char msg[] =
	    "From: a@example.org\r\n"
	    "MIME-Version: 1.0\r\n"
	    "Content-Type: multipart/mixed; boundary=\"o\"\r\n"
	    "\r\n"
	    "--o\r\n"
	    "Content-Type: text/plain; charset=utf-8\r\n"
	    "Content-Transfer-Encoding: 8bit\r\n"
	    "\r\n"
	    "caf\xc3\xa9\r\n"
	    "--o\r\n"
	    "Content-Type: multipart/signed; protocol=\"application/"
	    "pgp-signature\"; micalg=pgp-sha256;\r\n boundary=\"s\"\r\n"
	    "\r\n"
	    "--s\r\n"
	    "Content-Type: text/plain; charset=us-ascii\r\n"
	    "Content-Transfer-Encoding: 7bit\r\n"
	    "\r\n"
	    "signed   text  with odd  spacing \r\n"
	    "--s\r\n"
	    "Content-Type: application/pgp-signature\r\n"
	    "\r\n"
	    "-----BEGIN PGP SIGNATURE-----\r\n"
	    "iQ==\r\n"
	    "-----END PGP SIGNATURE-----\r\n"
	    "--s--\r\n"
	    "--o--\r\n";
	char why[160], *out;
	size_t len;

	(void)state;
	assert_int_equal(CONV(msg, &out, &len, why), DOWNGRADE_OK);
	assert_wire_ok(out, len);
	assert_non_null(strstr(out, "\r\n\r\ncaf=C3=A9\r\n--o\r\n"));
	assert_non_null(strstr(out, signed_part));
	free(out);
}

static void
test_message_without_mime_headers_becomes_text_plain(void **state)
{
	static const char utf8[] = "From: a@example.org\r\n"
				   "Subject: no MIME here\r\n"
				   "\r\n"
				   "caf\xc3\xa9\r\n";
	static const char latin1[] = "From: a@example.org\r\n"
				     "\r\n"
				     "caf\xe9\r\n";
	char why[160], *out, *body;
	size_t len, blen;

	(void)state;
	assert_int_equal(CONV(utf8, &out, &len, why), DOWNGRADE_OK);
	assert_wire_ok(out, len);
	/* RFC 2045 5.2's text/plain, with the MIME fields a reader needs
	 * to decode it, and the charset the octets are in. */
	assert_string_equal(out,
	    "From: a@example.org\r\n"
	    "Subject: no MIME here\r\n"
	    "MIME-Version: 1.0\r\n"
	    "Content-Type: text/plain; charset=utf-8\r\n"
	    "Content-Transfer-Encoding: quoted-printable\r\n"
	    "\r\n"
	    "caf=C3=A9\r\n");
	body = decoded(out, len, "text/plain", 0, &blen);
	assert_string_equal(body, "caf\xc3\xa9\n");
	free(body);
	free(out);
	/* Octets that are not UTF-8: their charset is not known (RFC 1428). */
	assert_int_equal(CONV(latin1, &out, &len, why), DOWNGRADE_OK);
	assert_wire_ok(out, len);
	assert_non_null(strstr(out, "charset=unknown-8bit\r\n"));
	assert_non_null(strstr(out, "\r\n\r\ncaf=E9\r\n"));
	free(out);
}

static void
test_8bit_header_is_refused(void **state)
{
	static const char msg[] = "From: J\xc3\xb6rg <j@example.org>\r\n"
				  "Subject: x\r\n"
				  "\r\n"
				  "caf\xc3\xa9\r\n";
	static const char part_hdr[] =
	    "From: a@example.org\r\n"
	    "MIME-Version: 1.0\r\n"
	    "Content-Type: multipart/mixed; boundary=\"b\"\r\n"
	    "\r\n"
	    "--b\r\n"
	    "Content-Type: text/plain\r\n"
	    "Content-Disposition: attachment; filename=\"caf\xc3\xa9.txt\"\r\n"
	    "\r\n"
	    "x\r\n"
	    "--b--\r\n";
	char why[160], *out;
	size_t len;

	(void)state;
	assert_int_equal(CONV(msg, &out, &len, why), DOWNGRADE_HEADER);
	assert_null(out);
	assert_string_equal(why, "header field From has 8-bit octets");
	/* A part's header too. */
	assert_int_equal(CONV(part_hdr, &out, &len, why), DOWNGRADE_HEADER);
	assert_string_equal(
	    why, "header field Content-Disposition has 8-bit octets");
}

static void
test_too_many_parts_are_refused_before_parsing(void **state)
{
	size_t cap = 1 << 20, n = 0, len;
	char *msg = malloc(cap), *out, why[160];

	(void)state;
	n += (size_t)sprintf(msg, "MIME-Version: 1.0\r\n");
	/* Each level a multipart inside the one before: deep nesting. */
	for (int i = 0; i < 1200; i++)
		n += (size_t)sprintf(msg + n,
		    "Content-Type: multipart/mixed; boundary=\"b%d\"\r\n"
		    "\r\n--b%d\r\n",
		    i, i);
	n += (size_t)sprintf(msg + n, "\r\n\xc3\xa9\r\n");
	assert_int_equal(
	    downgrade_to_7bit(msg, n, &out, &len, why, sizeof(why)),
	    DOWNGRADE_FAILED);
	assert_null(out);
	assert_string_equal(why, "too many MIME parts");
	free(msg);
}

/* Bytes that are hardly a message still give a result or a reason. */
static void
test_garbage_never_crashes(void **state)
{
	char buf[512], why[160], *out;
	size_t len;
	int rc;

	(void)state;
	srand(7);
	for (int round = 0; round < 300; round++) {
		size_t n = (size_t)(rand() % (int)sizeof(buf));

		for (size_t i = 0; i < n; i++)
			buf[i] = (char)(rand() % 4 == 0 ? "\r\n-:"[rand() % 4]
							: rand());
		rc = downgrade_to_7bit(buf, n, &out, &len, why, sizeof(why));
		if (rc == DOWNGRADE_OK) {
			assert_true(downgrade_is_7bit(out, len));
			free(out);
		} else {
			assert_null(out);
			assert_true(why[0] != '\0');
		}
	}
}

static int
setup(void **state)
{
	(void)state;
	downgrade_init();
	downgrade_init(); /* twice is harmless */
	return 0;
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_is_7bit_finds_any_octet_above_127),
	    cmocka_unit_test(test_failures_have_their_rfc3463_codes),
	    cmocka_unit_test(test_text_plain_8bit_becomes_quoted_printable),
	    cmocka_unit_test(
		test_mislabelled_quoted_printable_is_encoded_again),
	    cmocka_unit_test(
		test_multipart_keeps_structure_and_encodes_each_part),
	    cmocka_unit_test(test_nested_message_is_converted_inside),
	    cmocka_unit_test(test_signed_8bit_is_refused),
	    cmocka_unit_test(test_signed_8bit_inside_a_multipart_is_refused),
	    cmocka_unit_test(test_signed_7bit_part_is_left_alone),
	    cmocka_unit_test(
		test_message_without_mime_headers_becomes_text_plain),
	    cmocka_unit_test(test_8bit_header_is_refused),
	    cmocka_unit_test(test_too_many_parts_are_refused_before_parsing),
	    cmocka_unit_test(test_garbage_never_crashes),
	};

	return cmocka_run_group_tests_name(
	    "relay/downgrade", tests, setup, NULL);
}
