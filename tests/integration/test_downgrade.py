"""Downgrades on the way out (relay/client_txn.c, relay/downgrade.c): a
store that does not offer SMTPUTF8 still gets SMTPUTF8 mail whose envelope
and header section are ASCII, without the parameter (RFC 6531 3.4); a store
that does not offer 8BITMIME gets 8-bit mail converted to 7 bit (RFC 6152
3), and signed mail it would break is returned. The client is driven with
sendmsg; the DSNs with the real daemon. What the store received is parsed
with Python's email package."""

import email
import email.policy
import smtplib

import pytest

from backend import MSG, send, smtp_route
from conftest import log_lines, wait_for
from test_client import backends, plain  # noqa: F401 (a fixture)

NO_UTF8 = ["PIPELINING", "SIZE 10485760", "8BITMIME", "ENHANCEDSTATUSCODES",
           "DSN"]
NO_8BIT = ["PIPELINING", "SIZE 10485760", "ENHANCEDSTATUSCODES", "DSN"]

TEXT = ("Gr\u00fc\u00dfe aus K\u00f6ln = 5 \u20ac\n"
        ".a line with a leading dot\n"
        + "\u00e9" * 120 + " a long line\n"
        "trailing space \n")

PLAIN_8BIT = (b"From: alice@sender.test\r\nTo: user@example.com\r\n"
              b"Subject: 8-bit\r\nMIME-Version: 1.0\r\n"
              b"Content-Type: text/plain; charset=utf-8\r\n"
              b"Content-Transfer-Encoding: 8bit\r\n\r\n" +
              TEXT.replace("\n", "\r\n").encode())

ATTACHMENT = bytes(range(256)) * 4

MIXED_8BIT = (b"From: alice@sender.test\r\nTo: user@example.com\r\n"
              b"Subject: mixed\r\nMIME-Version: 1.0\r\n"
              b"Content-Type: multipart/mixed; boundary=\"==b==\"\r\n\r\n"
              b"preamble\r\n--==b==\r\n"
              b"Content-Type: text/plain; charset=utf-8\r\n"
              b"Content-Transfer-Encoding: 8bit\r\n\r\n" +
              TEXT.replace("\n", "\r\n").encode() +
              b"\r\n--==b==\r\n"
              b"Content-Type: application/octet-stream\r\n"
              b"Content-Disposition: attachment; filename=\"x.bin\"\r\n"
              b"Content-Transfer-Encoding: binary\r\n\r\n" +
              ATTACHMENT.replace(b"\r", b"").replace(b"\n", b"") +
              b"\r\n--==b==\r\n"
              b"Content-Type: message/rfc822\r\n"
              b"Content-Transfer-Encoding: 8bit\r\n\r\n"
              b"Subject: inner\r\nMIME-Version: 1.0\r\n"
              b"Content-Type: text/plain; charset=utf-8\r\n\r\n"
              b"inner caf\xc3\xa9\r\n"
              b"--==b==--\r\n")

SIGNED_8BIT = (b"From: alice@sender.test\r\nTo: user@example.com\r\n"
               b"Subject: signed\r\nMIME-Version: 1.0\r\n"
               b"Content-Type: multipart/signed; micalg=pgp-sha256;\r\n"
               b" protocol=\"application/pgp-signature\"; boundary=\"s\"\r\n"
               b"\r\n--s\r\n"
               b"Content-Type: text/plain; charset=utf-8\r\n"
               b"Content-Transfer-Encoding: 8bit\r\n\r\n"
               b"sign\xc3\xa9d\r\n--s\r\n"
               b"Content-Type: application/pgp-signature\r\n\r\n"
               b"-----BEGIN PGP SIGNATURE-----\r\niQ==\r\n"
               b"-----END PGP SIGNATURE-----\r\n--s--\r\n")




def parse(data):
    return email.message_from_bytes(data, policy=email.policy.default)


def text_of(part):
    """A text part's decoded content, its line breaks as "\\n"."""
    return part.get_content().replace("\r\n", "\n")


def assert_7bit_crlf(data):
    assert all(c < 128 for c in data)
    assert data.endswith(b"\r\n")
    assert b"\n" not in data.replace(b"\r\n", b"")
    assert max(len(x) for x in data.split(b"\r\n")) <= 998


def mails(b):
    return [c for c in b.commands() if c.startswith("MAIL")]


# ---- SMTPUTF8 (client) ----------------------------------------------------

def test_ascii_smtputf8_mail_goes_without_the_parameter(tmp_path, backends):
    b = backends(extensions=NO_UTF8)
    r = send(str(tmp_path), [smtp_route(b)], [MSG],
             args=plain(["--smtputf8", "--8bit",
                         "--orcpt", "rfc822;j+C3+B6rg@example.com"]),
             to=["user@example.com", "other@example.com"])
    assert [x["code"] for x in r.rcpts] == [250, 250]
    [m] = b.messages()
    assert m["mail_params"] == "SIZE=%d BODY=8BITMIME" % len(MSG)
    assert m["data"] == MSG
    # The ORCPT's non-ASCII value goes in RFC 6533 utf-8-addr-xtext form.
    assert m["rcpt_params"] == ["ORCPT=utf-8;j\\x{F6}rg@example.com"] * 2
    assert "SMTPUTF8 not needed for host 127.0.0.1[127.0.0.1]: header " \
        "is ASCII, envelope is ASCII" in r.stderr


def test_u_label_domains_go_as_a_labels_without_smtputf8(tmp_path, backends):
    """An address whose only non-ASCII part is its domain has an ASCII
    form: the same domain in A-labels (RFC 5890). A store without SMTPUTF8
    gets the envelope that way, as Postfix sends it."""
    b = backends(extensions=NO_UTF8)
    r = send(str(tmp_path), [smtp_route(b)], [MSG],
             args=plain(["--smtputf8"]), sender="s@b\u00fccher.test",
             to=["u3@B\u00dcCHER.test", "user@example.com"])
    assert [x["code"] for x in r.rcpts] == [250, 250]
    [m] = b.messages()
    assert m["mail_from"] == "s@xn--bcher-kva.test"
    assert "SMTPUTF8" not in m["mail_params"]
    assert m["rcpts"] == ["u3@xn--bcher-kva.test", "user@example.com"]
    assert "envelope in A-labels" in r.stderr


def test_smtputf8_is_still_sent_to_a_store_that_offers_it(tmp_path, backends):
    b = backends()
    send(str(tmp_path), [smtp_route(b)], [MSG],
         args=plain(["--smtputf8", "--orcpt", "rfc822;j+C3+B6rg@example.com"]))
    [m] = b.messages()
    assert m["mail_params"].split()[-1] == "SMTPUTF8"
    assert m["rcpt_params"] == ["ORCPT=rfc822;j+C3+B6rg@example.com"]


@pytest.mark.parametrize("sender,to,msg", [
    ("j\u00f6rg@origin.test", "user@example.com", MSG),
    ("sender@origin.test", "j\u00f6rg@example.com", MSG),
    ("sender@origin.test", "j\u00f6rg@b\u00fccher.test", MSG),
    ("sender@origin.test", "u@xn--zz.test\u00e9", MSG),
    ("sender@origin.test", "user@example.com",
     MSG.replace(b"Subject: test", "Subject: caf\u00e9".encode())),
    # A header after a folded one; the body's 8 bits do not count.
    ("sender@origin.test", "user@example.com",
     b"Subject: a\r\n folded\r\nTo: J\xc3\xb6rg <u@example.com>\r\n\r\nx\r\n"),
], ids=["sender", "recipient", "both-parts", "bad-domain", "subject",
        "to-header"])
def test_non_ascii_address_or_header_still_needs_smtputf8(
        tmp_path, backends, sender, to, msg):
    b = backends(extensions=NO_UTF8)
    r = send(str(tmp_path), [smtp_route(b)], [msg],
             args=plain(["--smtputf8"]), sender=sender, to=[to])
    [x] = r.rcpts
    assert (x["code"], x["dsn"]) == (554, "5.6.7")
    assert "SMTPUTF8 is required, but was not offered" in x["text"]
    assert mails(b) == []


def test_8bit_body_of_ascii_smtputf8_mail_is_converted_too(tmp_path, backends):
    b = backends(extensions=["PIPELINING", "SIZE 10485760"])
    r = send(str(tmp_path), [smtp_route(b)], [PLAIN_8BIT],
             args=plain(["--smtputf8", "--8bit"]))
    assert r.rcpts[0]["code"] == 250
    [m] = b.messages()
    assert_7bit_crlf(m["data"])
    assert m["mail_params"] == "SIZE=%d" % len(m["data"])
    assert text_of(parse(m["data"])) == TEXT


# ---- 8BITMIME (client) ----------------------------------------------------

def test_8bit_text_goes_as_quoted_printable(tmp_path, backends):
    b = backends(extensions=NO_8BIT)
    r = send(str(tmp_path), [smtp_route(b)], [PLAIN_8BIT],
             args=plain(["--8bit"]))
    assert r.rcpts[0]["code"] == 250
    [m] = b.messages()
    data = m["data"]
    assert_7bit_crlf(data)
    # No BODY=, and SIZE= is the converted message's size.
    assert m["mail_params"] == "SIZE=%d" % len(data)
    assert len(data) > len(PLAIN_8BIT)
    msg = parse(data)
    assert msg["Content-Transfer-Encoding"] == "quoted-printable"
    assert msg["Subject"] == "8-bit"
    assert text_of(msg) == TEXT
    head, body = data.split(b"\r\n\r\n", 1)
    assert max(len(x) for x in body.split(b"\r\n")) <= 76
    # Only the encoding header changed.
    assert head == PLAIN_8BIT.split(b"\r\n\r\n")[0].replace(
        b"8bit", b"quoted-printable")
    assert "converted to 7 bit for host 127.0.0.1[127.0.0.1]" in r.stderr


def test_multipart_keeps_its_structure_and_every_octet(tmp_path, backends):
    b = backends(extensions=NO_8BIT)
    r = send(str(tmp_path), [smtp_route(b)], [MIXED_8BIT],
             args=plain(["--8bit"]))
    assert r.rcpts[0]["code"] == 250
    [m] = b.messages()
    assert_7bit_crlf(m["data"])
    msg = parse(m["data"])
    assert msg.get_content_type() == "multipart/mixed"
    assert msg.get_boundary() == "==b=="
    text, att, inner = msg.iter_parts()
    assert text["Content-Transfer-Encoding"] == "quoted-printable"
    assert text_of(text) == TEXT
    assert att["Content-Transfer-Encoding"] == "base64"
    assert att.get_filename() == "x.bin"
    assert att.get_content() == \
        ATTACHMENT.replace(b"\r", b"").replace(b"\n", b"")
    assert inner.get_content_type() == "message/rfc822"
    assert inner["Content-Transfer-Encoding"] == "7bit"
    sub = inner.get_content()
    assert sub["Subject"] == "inner"
    assert text_of(sub) == "inner caf\u00e9"


def test_signed_mail_is_returned_not_altered(tmp_path, backends):
    b = backends(extensions=NO_8BIT)
    r = send(str(tmp_path), [smtp_route(b)], [SIGNED_8BIT, MSG],
             args=plain(["--8bit"]), to=["a@example.com", "b@example.com"])
    for x in r.by_rcpt("m1").values():
        assert (x["code"], x["dsn"]) == (554, "5.6.3")
        assert x["text"] == ("message is signed (multipart/signed) and "
                             "cannot be converted to 7 bit for host "
                             "127.0.0.1[127.0.0.1], which does not offer "
                             "8BITMIME")
    # The next message goes over the same connection; the signed one never.
    assert all(x["code"] == 250 for x in r.by_rcpt("m2").values())
    assert len(mails(b)) == 1 and b.connections() == 1
    assert b.messages()[0]["data"] == MSG


def test_8bit_header_without_smtputf8_is_returned(tmp_path, backends):
    b = backends(extensions=NO_8BIT)
    msg = b"Subject: caf\xc3\xa9\r\n\r\nbody caf\xc3\xa9\r\n"
    r = send(str(tmp_path), [smtp_route(b)], [msg], args=plain(["--8bit"]))
    x = r.rcpts[0]
    assert (x["code"], x["dsn"]) == (554, "5.6.3")
    assert x["text"].startswith("header field Subject has 8-bit octets and "
                                "cannot be converted to 7 bit")
    assert mails(b) == []


def test_7bit_data_labelled_8bitmime_goes_unchanged(tmp_path, backends):
    b = backends(extensions=NO_8BIT)
    send(str(tmp_path), [smtp_route(b)], [MSG], args=plain(["--8bit"]))
    [m] = b.messages()
    assert m["mail_params"] == "SIZE=%d" % len(MSG)
    assert m["data"] == MSG


def test_a_store_with_8bitmime_gets_the_body_unchanged(tmp_path, backends):
    b = backends()
    send(str(tmp_path), [smtp_route(b)], [SIGNED_8BIT, PLAIN_8BIT],
         args=plain(["--8bit"]))
    got = b.messages()
    assert [m["data"] for m in got] == [SIGNED_8BIT, PLAIN_8BIT]
    assert [m["mail_params"] for m in got] == \
        ["SIZE=%d BODY=8BITMIME" % len(SIGNED_8BIT),
         "SIZE=%d BODY=8BITMIME" % len(PLAIN_8BIT)]


def test_8bit_data_without_8bitmime_label_is_not_touched(tmp_path, backends):
    # Not declared 8BITMIME: sent as stored (the server side's concern).
    b = backends(extensions=NO_8BIT)
    send(str(tmp_path), [smtp_route(b)], [PLAIN_8BIT], args=plain())
    assert b.messages()[0]["data"] == PLAIN_8BIT


def test_the_size_limit_applies_to_the_converted_message(tmp_path, backends):
    # Fits as stored, not once quoted-printable.
    limit = len(PLAIN_8BIT) + 20
    b = backends(extensions=["PIPELINING", "SIZE %d" % limit])
    r = send(str(tmp_path), [smtp_route(b)], [PLAIN_8BIT],
             args=plain(["--8bit"]))
    x = r.rcpts[0]
    assert (x["code"], x["dsn"]) == (552, "5.3.4")
    assert "exceeds size limit %d" % limit in x["text"]
    size = int(x["text"].split("message size ")[1].split()[0])
    assert size > limit
    assert mails(b) == []


# ---- through the daemon: delivery and DSNs --------------------------------

def config(store, recorder):
    return ('domain "example.com" {\n route = "smtp:[127.0.0.1]:%d"\n}\n'
            'retry {\n initial = 1s\n max_interval = 4s\n jitter = 0\n'
            ' probe_interval = 1s\n}\n'
            'bounce_route = "smtp:[127.0.0.1]:%d"\n' % (store.port,
                                                       recorder.port))


def submit(d, msg, options, sender="alice@sender.test",
           rcpt="user@example.com"):
    s = smtplib.SMTP("127.0.0.1", d.port, timeout=30)
    assert s.sendmail(sender, [rcpt], msg, mail_options=options) == {}
    s.quit()


def warm_up(d, b):
    """One delivery first, to another recipient: the rejection guard
    (queue/guard.h) holds a 5xx from a store that has accepted nothing yet,
    or for a recipient it accepted before, and the client's own 5.6.x
    failures go through it too (reported, not changed here)."""
    submit(d, MSG, [], rcpt="warm@example.com")
    b.wait_for(lambda: len(b.messages()) == 1, what="the first delivery")


def dsn_status(rec):
    rec.wait_for(lambda: len(rec.messages()) == 1, what="the DSN")
    dsn = rec.messages()[0]
    assert dsn["mail_from"] == ""
    assert dsn["rcpts"] == ["alice@sender.test"]
    msg = email.message_from_bytes(dsn["data"], policy=email.policy.SMTPUTF8)
    assert msg.get_content_type() == "multipart/report"
    status = list(msg.iter_parts())[1]
    assert status.get_content_type() in ("message/delivery-status",
                                         "message/global-delivery-status")
    # The recipient's group (RFC 3464 2.3), read from the report's octets:
    # Python leaves RFC 6533's global report as one text.
    data = dsn["data"]
    start = data.index(b"\r\nFinal-Recipient:") + 2
    group = data[start:data.index(b"\r\n\r\n", start)]
    return {k: " ".join(v.split()) for k, v in
            email.message_from_bytes(group + b"\r\n").items()}


def test_daemon_delivers_ascii_smtputf8_mail_to_a_store_without_it(
        daemon, backend):
    b = backend(extensions=NO_UTF8)
    rec = backend()
    d = daemon(extra=config(b, rec)).start()
    submit(d, MSG, ["SMTPUTF8", "BODY=8BITMIME"])
    b.wait_for(lambda: len(b.messages()) == 1, what="delivery")
    m = b.messages()[0]
    assert "SMTPUTF8" not in m["mail_params"]
    assert m["data"].endswith(MSG)
    wait_for(lambda: log_lines(d, "SMTPUTF8 not needed"), what="log line")
    wait_for(lambda: log_lines(d, ": removed"), what="removal")
    assert rec.messages() == []
    assert d.stop() == 0


def test_daemon_returns_utf8_header_mail_with_a_5_6_7_dsn(daemon, backend):
    b = backend(extensions=NO_UTF8)
    rec = backend()
    d = daemon(extra=config(b, rec)).start()
    warm_up(d, b)
    submit(d, "Subject: caf\u00e9\r\n\r\nhi\r\n".encode(),
           ["SMTPUTF8", "BODY=8BITMIME"])
    st = dsn_status(rec)
    assert st["Status"] == "5.6.7"
    assert st["Action"] == "failed"
    assert len(mails(b)) == 1 and len(b.messages()) == 1
    assert d.stop() == 0


def test_daemon_delivers_8bit_mail_as_quoted_printable(daemon, backend):
    b = backend(extensions=NO_8BIT)
    rec = backend()
    d = daemon(extra=config(b, rec)).start()
    submit(d, PLAIN_8BIT, ["BODY=8BITMIME"])
    b.wait_for(lambda: len(b.messages()) == 1, what="delivery")
    m = b.messages()[0]
    assert_7bit_crlf(m["data"])
    assert m["mail_params"].split()[0] == "SIZE=%d" % len(m["data"])
    assert "BODY=" not in m["mail_params"]
    msg = parse(m["data"])
    assert msg["Received"] is not None
    assert text_of(msg) == TEXT
    wait_for(lambda: log_lines(d, ": removed"), what="removal")
    assert rec.messages() == []
    assert d.stop() == 0


def test_daemon_returns_signed_8bit_mail_with_a_5_6_3_dsn(daemon, backend):
    b = backend(extensions=NO_8BIT)
    rec = backend()
    d = daemon(extra=config(b, rec)).start()
    warm_up(d, b)
    submit(d, SIGNED_8BIT, ["BODY=8BITMIME"])
    st = dsn_status(rec)
    assert st["Status"] == "5.6.3"
    assert "multipart/signed" in st["Diagnostic-Code"]
    assert "does not offer 8BITMIME" in st["Diagnostic-Code"]
    assert len(mails(b)) == 1 and len(b.messages()) == 1
    assert d.stop() == 0
