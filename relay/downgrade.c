/*
 * The 8BITMIME downgrade (RFC 6152 3), done with GMime: the message is
 * parsed once, each part with 8-bit content gets a new data wrapper with
 * its decoded octets and a 7-bit Content-Transfer-Encoding, and GMime
 * writes the tree again. Parts that are not touched are written from
 * their original octets, headers from their raw values, so what needed
 * no conversion stays as it was, boundaries included.
 *
 * XXX This runs on the loop thread, over the whole message at once: about
 * 0.1 s for 5 MB of 8-bit text, and only for 8-bit mail to a hop without
 * 8BITMIME, which is rare today; a worker thread would bound it.
 */
#include <gmime/gmime.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "common/xmem.h"
#include "relay/downgrade.h"

/*
 * GMime's parser recurses once per level of nesting, and each level needs
 * a Content-Type field of its own; counting the lines that start one
 * bounds the depth (and the work) before GMime sees the message. 1,000
 * parts is far beyond real mail.
 */
#define DOWNGRADE_MAX_PARTS 1000

struct dg {
	char *why;
	size_t whylen;
};

static bool dg_inited;

void
downgrade_init(void)
{
	if (dg_inited)
		return;
	g_mime_init();
	dg_inited = true;
}

bool
downgrade_is_7bit(const char *data, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		if ((unsigned char)data[i] & 0x80)
			return false;
	}
	return true;
}

const char *
downgrade_dsn(enum downgrade_status st)
{
	switch (st) {
	case DOWNGRADE_OK:
		return "2.0.0";
	case DOWNGRADE_SIGNED:
	case DOWNGRADE_HEADER:
		return "5.6.3";
	case DOWNGRADE_FAILED:
		return "5.6.5";
	}
	return "5.6.5";
}

static bool
str_7bit(const char *s)
{
	return s == NULL || downgrade_is_7bit(s, strlen(s));
}

/* Lines that start a Content-Type field ("Content-Type:", any case, WSP
 * allowed before the colon as RFC 5322 4.5.1 allows). */
static size_t
count_content_types(const char *data, size_t len)
{
	static const char ct[] = "content-type";
	const size_t ctlen = sizeof(ct) - 1;
	size_t n = 0, i = 0;
	const char *nl;

	while (i < len) {
		if (len - i > ctlen && strncasecmp(data + i, ct, ctlen) == 0) {
			size_t j = i + ctlen;

			while (j < len && (data[j] == ' ' || data[j] == '\t'))
				j++;
			if (j < len && data[j] == ':')
				n++;
		}
		if ((nl = memchr(data + i, '\n', len - i)) == NULL)
			break;
		i = (size_t)(nl - data) + 1;
	}
	return n;
}

/* A copy where every line ends in CRLF (RFC 5321 2.3.8): GMime writes
 * what it keeps verbatim, such as an epilogue, with bare LFs. */
static char *
crlf_lines(const char *s, size_t len, size_t *outlen)
{
	size_t n = len, o = 0;
	char *out;

	for (size_t i = 0; i < len; i++) {
		if (s[i] == '\n' && (i == 0 || s[i - 1] != '\r'))
			n++;
	}
	if (len > 0 && s[len - 1] != '\n')
		n += 2;
	out = xmalloc(n + 1);
	for (size_t i = 0; i < len; i++) {
		if (s[i] == '\n' && (i == 0 || s[i - 1] != '\r'))
			out[o++] = '\r';
		out[o++] = s[i];
	}
	if (len > 0 && s[len - 1] != '\n') {
		out[o++] = '\r';
		out[o++] = '\n';
	}
	out[o] = '\0';
	*outlen = o;
	return out;
}

static int
dg_fail(struct dg *dg, int st, const char *what)
{
	snprintf(dg->why, dg->whylen, "%s", what);
	return st;
}

/* Whether a stream has an octet above 127, from its start; rewound. */
static bool
stream_has_8bit(GMimeStream *s)
{
	char buf[8192];
	ssize_t n;
	bool found = false;

	g_mime_stream_reset(s);
	while (!found && (n = g_mime_stream_read(s, buf, sizeof(buf))) > 0)
		found = !downgrade_is_7bit(buf, (size_t)n);
	g_mime_stream_reset(s);
	return found;
}

/*
 * Header fields (names and raw values) must be 7 bit: raw 8-bit octets
 * there carry no charset, so an RFC 2047 encoding would be a guess that
 * can garble a name for good. Mail with UTF-8 headers is SMTPUTF8 mail
 * (RFC 6532), and a hop that offers SMTPUTF8 must offer 8BITMIME too (RFC
 * 6531 3.1), so it never comes here.
 */
static int
dg_headers(struct dg *dg, GMimeObject *obj)
{
	GMimeHeaderList *hl = g_mime_object_get_header_list(obj);
	char what[160];
	int n;

	if (hl == NULL)
		return DOWNGRADE_OK;
	n = g_mime_header_list_get_count(hl);
	for (int i = 0; i < n; i++) {
		GMimeHeader *h = g_mime_header_list_get_header_at(hl, i);
		const char *name = g_mime_header_get_name(h);

		if (str_7bit(name) && str_7bit(g_mime_header_get_raw_value(h)))
			continue;
		if (str_7bit(name) && strlen(name) <= 64)
			snprintf(what, sizeof(what),
			    "header field %s has 8-bit octets", name);
		else
			snprintf(what, sizeof(what),
			    "a header field name has 8-bit octets");
		return dg_fail(dg, DOWNGRADE_HEADER, what);
	}
	return DOWNGRADE_OK;
}

/* A multipart or message/rfc822 may only be 7bit, 8bit or binary (RFC
 * 2045 6.4); once its parts are 7 bit, so is it. */
static void
dg_label_7bit(GMimeObject *obj)
{
	const char *cte =
	    g_mime_object_get_header(obj, "Content-Transfer-Encoding");

	if (cte == NULL)
		return;
	while (*cte == ' ' || *cte == '\t')
		cte++;
	if (strncasecmp(cte, "8bit", 4) == 0 ||
	    strncasecmp(cte, "binary", 6) == 0)
		g_mime_object_set_header(
		    obj, "Content-Transfer-Encoding", "7bit", NULL);
}

/* A leaf: decoded and written again as quoted-printable or base64 if its
 * octets as stored are not all 7 bit. */
static int
dg_part(struct dg *dg, GMimePart *part)
{
	GMimeDataWrapper *w = g_mime_part_get_content(part), *nw;
	GMimeObject *obj = GMIME_OBJECT(part);
	GMimeContentType *ct = g_mime_object_get_content_type(obj);
	GMimeStream *mem, *filt;
	GByteArray *ba;
	bool text;

	if (w == NULL || g_mime_data_wrapper_get_stream(w) == NULL ||
	    !stream_has_8bit(g_mime_data_wrapper_get_stream(w)))
		return DOWNGRADE_OK;
	/* RFC 2046 5.2.2: message/partial is 7bit only, and re-encoding a
	 * fragment would break the whole it belongs to. */
	if (GMIME_IS_MESSAGE_PARTIAL(part))
		return dg_fail(dg, DOWNGRADE_FAILED,
		    "a message/partial part has 8-bit octets");
	text = ct == NULL || g_mime_content_type_is_type(ct, "text", "*");

	/* The decoded octets. Text keeps its line breaks as quoted-printable
	 * hard breaks (written as CRLF), so its CRLFs become plain line ends
	 * first; other data keeps every octet for base64. */
	mem = g_mime_stream_mem_new();
	if (text) {
		GMimeFilter *f = g_mime_filter_dos2unix_new(FALSE);

		filt = g_mime_stream_filter_new(mem);
		g_mime_stream_filter_add(GMIME_STREAM_FILTER(filt), f);
		g_object_unref(f);
		g_mime_data_wrapper_write_to_stream(w, filt);
		g_mime_stream_flush(filt);
		g_object_unref(filt);
	} else {
		g_mime_data_wrapper_write_to_stream(w, mem);
	}
	ba = g_mime_stream_mem_get_byte_array(GMIME_STREAM_MEM(mem));
	/* 8-bit text without a charset says us-ascii (RFC 2045 5.2), which
	 * its octets are not: name what they are. */
	if (text && (ct == NULL || g_mime_content_type_get_parameter(
				       ct, "charset") == NULL))
		g_mime_object_set_content_type_parameter(obj, "charset",
		    g_utf8_validate(
			(const char *)ba->data, (gssize)ba->len, NULL)
			? "utf-8"
			: "unknown-8bit");
	g_mime_stream_reset(mem);
	nw = g_mime_data_wrapper_new_with_stream(
	    mem, GMIME_CONTENT_ENCODING_DEFAULT);
	g_mime_part_set_content(part, nw);
	g_object_unref(nw);
	g_object_unref(mem);
	g_mime_part_set_content_encoding(
	    part, text ? GMIME_CONTENT_ENCODING_QUOTEDPRINTABLE
		       : GMIME_CONTENT_ENCODING_BASE64);
	return DOWNGRADE_OK;
}

static int dg_message(struct dg *dg, GMimeMessage *msg);

static int
dg_object(struct dg *dg, GMimeObject *obj)
{
	int rc;

	if ((rc = dg_headers(dg, obj)) != DOWNGRADE_OK)
		return rc;
	if (GMIME_IS_MULTIPART_SIGNED(obj)) {
		/* RFC 1847 5.1: the signed part's octets are what the
		 * signature covers; a 7-bit copy would not verify. */
		char *s = g_mime_object_to_string(obj, NULL);
		bool clean = str_7bit(s);

		g_free(s);
		if (!clean)
			return dg_fail(dg, DOWNGRADE_SIGNED,
			    "message is signed (multipart/signed)");
		return DOWNGRADE_OK;
	}
	if (GMIME_IS_MULTIPART(obj)) {
		GMimeMultipart *mp = GMIME_MULTIPART(obj);
		int n = g_mime_multipart_get_count(mp);

		/* The preamble and epilogue are not content (RFC 2046
		 * 5.1.1: readers ignore them): 8-bit ones are left out. */
		if (!str_7bit(g_mime_multipart_get_prologue(mp)))
			g_mime_multipart_set_prologue(mp, NULL);
		if (!str_7bit(g_mime_multipart_get_epilogue(mp)))
			g_mime_multipart_set_epilogue(mp, NULL);
		for (int i = 0; i < n; i++) {
			rc = dg_object(dg, g_mime_multipart_get_part(mp, i));
			if (rc != DOWNGRADE_OK)
				return rc;
		}
		dg_label_7bit(obj);
		return DOWNGRADE_OK;
	}
	if (GMIME_IS_MESSAGE_PART(obj)) {
		GMimeMessage *inner =
		    g_mime_message_part_get_message(GMIME_MESSAGE_PART(obj));

		if (inner != NULL &&
		    (rc = dg_message(dg, inner)) != DOWNGRADE_OK)
			return rc;
		dg_label_7bit(obj);
		return DOWNGRADE_OK;
	}
	if (GMIME_IS_PART(obj))
		return dg_part(dg, GMIME_PART(obj));
	return DOWNGRADE_OK;
}

static int
dg_message(struct dg *dg, GMimeMessage *msg)
{
	GMimeObject *obj = GMIME_OBJECT(msg);
	GMimeObject *body = g_mime_message_get_mime_part(msg);
	int rc;

	if ((rc = dg_headers(dg, obj)) != DOWNGRADE_OK)
		return rc;
	if (body != NULL && (rc = dg_object(dg, body)) != DOWNGRADE_OK)
		return rc;
	/* Content-Transfer-Encoding means nothing without it (RFC 2045 4). */
	if (g_mime_object_get_header(obj, "MIME-Version") == NULL)
		g_mime_object_set_header(obj, "MIME-Version", "1.0", NULL);
	return DOWNGRADE_OK;
}

int
downgrade_to_7bit(const char *data, size_t len, char **out, size_t *outlen,
    char *why, size_t whylen)
{
	struct dg dg = {why, whylen};
	GMimeStream *in, *res;
	GMimeParser *parser;
	GMimeMessage *msg;
	GMimeFormatOptions *fo;
	GByteArray *ba;
	int rc;

	*out = NULL;
	*outlen = 0;
	if (why != NULL && whylen > 0)
		why[0] = '\0';
	if (count_content_types(data, len) > DOWNGRADE_MAX_PARTS)
		return dg_fail(&dg, DOWNGRADE_FAILED, "too many MIME parts");
	downgrade_init();
	in = g_mime_stream_mem_new_with_buffer(data, len);
	parser = g_mime_parser_new_with_stream(in);
	g_object_unref(in);
	g_mime_parser_set_format(parser, GMIME_FORMAT_MESSAGE);
	msg = g_mime_parser_construct_message(parser, NULL);
	g_object_unref(parser);
	if (msg == NULL)
		return dg_fail(&dg, DOWNGRADE_FAILED, "MIME parse failed");
	rc = dg_message(&dg, msg);
	if (rc != DOWNGRADE_OK) {
		g_object_unref(msg);
		return rc;
	}
	fo = g_mime_format_options_new();
	g_mime_format_options_set_newline_format(fo, GMIME_NEWLINE_FORMAT_DOS);
	res = g_mime_stream_mem_new();
	g_mime_object_write_to_stream(GMIME_OBJECT(msg), fo, res);
	g_mime_format_options_free(fo);
	g_object_unref(msg);
	ba = g_mime_stream_mem_get_byte_array(GMIME_STREAM_MEM(res));
	/* Never 8-bit data to a 7-bit hop, whatever GMime made of it. */
	if (!downgrade_is_7bit((const char *)ba->data, ba->len)) {
		g_object_unref(res);
		return dg_fail(&dg, DOWNGRADE_FAILED,
		    "the converted message is not 7 bit");
	}
	*out = crlf_lines((const char *)ba->data, ba->len, outlen);
	g_object_unref(res);
	return DOWNGRADE_OK;
}
