"""Delivery status notifications as other software reads them: the DSNs
that queue/dsn.c builds (printed by tests/tools/dsngen) parsed with Python's
email package, checking the RFC 3464 / RFC 6522 structure, RET, ORCPT and
ENVID, RFC 6533 for SMTPUTF8 mail, and that hostile replies cannot change
the structure."""

import base64
import email
import email.policy
import email.utils
import os
import random
import re
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUILD = os.environ.get("MXSPOOL_BUILD", os.path.join(ROOT, "build"))
DSNGEN = os.path.join(BUILD, "tests", "tools", "dsngen")

ARRIVAL = 1700000000
NOW = ARRIVAL + 3 * 86400  # dsngen's default

HEADER = (b"Received: from client.example.org ([192.0.2.10])\r\n"
          b"\tby mx2.example.net (mxspool) with ESMTP id 0C8A5KZ4M2N1;\r\n"
          b"\tTue, 14 Nov 2023 22:13:20 +0000\r\n"
          b"From: Sender <sender@example.org>\r\n"
          b"To: user@example.com\r\n"
          b"Subject: Quarterly report\r\n"
          b"Message-ID: <abc123@example.org>\r\n")
BODY = b"Hello,\r\n\r\nthe figures are attached.\r\n"
ORIG = HEADER + b"\r\n" + BODY


def gen(action, *args, body=ORIG):
    """The DSN dsngen prints, as bytes."""
    p = subprocess.run([DSNGEN, *args, action], input=body,
                       capture_output=True, timeout=30)
    assert p.returncode == 0, p.stderr.decode(errors="replace")
    return p.stdout


def parse(data, policy=email.policy.compat32):
    msg = email.message_from_bytes(data, policy=policy)
    assert msg.get_content_type() == "multipart/report"
    parts = msg.get_payload()
    assert isinstance(parts, list) and len(parts) == 3
    return msg, parts


def blocks(report_part):
    """The delivery-status groups (per message, then per recipient)."""
    assert report_part.get_content_type() == "message/delivery-status"
    groups = report_part.get_payload()
    assert isinstance(groups, list) and len(groups) >= 2
    return groups


def raw_parts(data):
    """The three body parts' raw bytes (header and content), split by hand
    at the boundary, for types the email package does not split itself."""
    m = re.search(rb'boundary="([^"]+)"', data)
    assert m
    delim = b"\r\n--" + m.group(1)
    pieces = data.split(delim)
    assert pieces[-1] == b"--\r\n"
    return [p[2:] for p in pieces[1:-1]]  # drop the CRLF after each delimiter


def header_groups(content, policy=email.policy.SMTPUTF8):
    """Splits a delivery-status content into groups of parsed fields."""
    parser = email.parser.BytesHeaderParser(policy=policy)
    groups = [g for g in re.split(rb"\r\n\r\n", content) if g.strip(b"\r\n")]
    return [parser.parsebytes(g + b"\r\n\r\n") for g in groups]


def u8(s):
    """A header value as text: the email package keeps raw UTF-8 octets in
    headers as surrogate escapes (RFC 6532 fields read by an RFC 5322
    parser)."""
    return str(s).encode("utf-8", "surrogateescape").decode("utf-8")


def check_lines(data):
    """CRLF everywhere and no line over 998 octets."""
    assert data.endswith(b"\r\n")
    assert b"\n" not in data.replace(b"\r\n", b"")
    assert b"\r" not in data.replace(b"\r\n", b"")
    for line in data.split(b"\r\n"):
        assert len(line) <= 998


def test_failed_report_has_the_rfc_3464_structure():
    data = gen("failed", "-t", "user@example.com", "-s", "5.1.1",
               "-m", "mx.example.com", "-d", "550 5.1.1 No such user",
               "-l", str(NOW - 600))
    check_lines(data)
    msg, (human, report, orig) = parse(data)
    assert msg.get_param("report-type") == "delivery-status"
    assert msg["From"] == "Mail Delivery System <MAILER-DAEMON@mx2.example.net>"
    assert email.utils.parseaddr(msg["To"])[1] == "sender@example.org"
    assert msg["Subject"] == "Undelivered Mail Returned to Sender"
    assert msg["Auto-Submitted"] == "auto-replied"
    assert msg["MIME-Version"] == "1.0"
    assert re.fullmatch(r"<[^@<>\s]+@mx2\.example\.net>", msg["Message-ID"])
    assert email.utils.parsedate_to_datetime(msg["Date"]).timestamp() == NOW
    assert human.get_content_type() == "text/plain"
    text = human.get_payload()
    assert "user@example.com" in text and "550 5.1.1 No such user" in text
    assert "backup mail server" in text and "3 days" in text
    per_msg, rcpt = blocks(report)
    assert per_msg["Reporting-MTA"] == "dns; mx2.example.net"
    assert per_msg["Original-Envelope-Id"] is None
    assert email.utils.parsedate_to_datetime(
        per_msg["Arrival-Date"]).timestamp() == ARRIVAL
    assert rcpt["Final-Recipient"] == "rfc822; user@example.com"
    assert rcpt["Action"] == "failed"
    assert rcpt["Status"] == "5.1.1"
    assert rcpt["Remote-MTA"] == "dns; mx.example.com"
    assert rcpt["Diagnostic-Code"] == "smtp; 550 5.1.1 No such user"
    assert email.utils.parsedate_to_datetime(
        rcpt["Last-Attempt-Date"]).timestamp() == NOW - 600
    assert rcpt["Will-Retry-Until"] is None
    assert orig.get_content_type() == "message/rfc822"


def test_delayed_report_says_until_when_and_returns_headers():
    until = ARRIVAL + 14 * 86400
    data = gen("delayed", "-R", "full", "-t", "user@example.com", "-s", "4.4.1",
               "-d", "451 4.4.1 Connection refused", "-w", str(until))
    check_lines(data)
    msg, (human, report, orig) = parse(data)
    assert msg["Subject"] == "Delayed Mail (still being retried)"
    _, rcpt = blocks(report)
    assert rcpt["Action"] == "delayed"
    assert rcpt["Status"] == "4.4.1"
    assert email.utils.parsedate_to_datetime(
        rcpt["Will-Retry-Until"]).timestamp() == until
    assert "warning only" in human.get_payload()
    assert orig.get_content_type() == "text/rfc822-headers"


def test_delivered_report():
    data = gen("delivered", "-t", "user@example.com", "-N", "success",
               "-s", "2.0.0", "-m", "store.example.com",
               "-d", "250 2.0.0 Saved")
    msg, (_, report, orig) = parse(data)
    assert msg["Subject"] == "Successful Mail Delivery Report"
    _, rcpt = blocks(report)
    assert rcpt["Action"] == "delivered"
    assert rcpt["Status"] == "2.0.0"
    assert orig.get_content_type() == "text/rfc822-headers"


def test_relayed_report():
    data = gen("relayed", "-t", "user@example.com", "-N", "success,failure",
               "-s", "2.0.0", "-m", "mx1.example.com")
    msg, (human, report, _) = parse(data)
    assert msg["Subject"] == "Successful Mail Relay Report"
    _, rcpt = blocks(report)
    assert rcpt["Action"] == "relayed"
    assert "next mail server" in human.get_payload()


@pytest.mark.parametrize("action,ret,whole", [
    ("failed", None, True),
    ("failed", "full", True),
    ("failed", "hdrs", False),
    ("delayed", None, False),
    ("delayed", "full", False),
    ("delivered", None, False),
    ("delivered", "full", True),
    ("delivered", "hdrs", False),
    ("relayed", "full", True),
])
def test_ret_decides_what_comes_back(action, ret, whole):
    args = ["-R", ret] if ret else []
    data = gen(action, *args)
    _, (_, _, orig) = parse(data)
    if whole:
        assert orig.get_content_type() == "message/rfc822"
        inner = orig.get_payload()[0]
        assert inner["Subject"] == "Quarterly report"
        assert inner["Message-ID"] == "<abc123@example.org>"
        # The original comes back byte for byte.
        assert raw_parts(data)[2].split(b"\r\n\r\n", 1)[1] == ORIG
    else:
        assert orig.get_content_type() == "text/rfc822-headers"
        text = orig.get_payload()
        assert "Subject: Quarterly report" in text
        assert "figures" not in text
        assert raw_parts(data)[2].split(b"\r\n\r\n", 1)[1] == HEADER


def test_orcpt_and_envid_are_reported_decoded():
    data = gen("failed", "-E", "QQ+2B314159", "-t", "user@example.com",
               "-o", "rfc822;user+40example.com", "-t", "other@example.com")
    _, (_, report, _) = parse(data)
    per_msg, first, second = blocks(report)
    assert per_msg["Original-Envelope-Id"] == "QQ+314159"
    assert first["Original-Recipient"] == "rfc822;user@example.com"
    assert first["Final-Recipient"] == "rfc822; user@example.com"
    assert second["Original-Recipient"] is None
    assert second["Final-Recipient"] == "rfc822; other@example.com"


def test_without_orcpt_and_envid_there_are_no_such_fields():
    data = gen("failed", "-t", "user@example.com")
    assert b"Original-Recipient" not in data
    assert b"Original-Envelope-Id" not in data


def test_envid_that_decodes_to_control_characters_stays_as_given():
    data = gen("failed", "-E", "X+0D+0ABcc:+20a@b", "-t", "user@example.com",
               "-o", "rfc822;u+0A+0DTo:x")
    _, (_, report, _) = parse(data)
    per_msg, rcpt = blocks(report)
    assert per_msg["Original-Envelope-Id"] == "X+0D+0ABcc:+20a@b"
    assert rcpt["Original-Recipient"] == "rfc822;u+0A+0DTo:x"
    assert per_msg["Bcc"] is None and rcpt["To"] is None


def test_smtputf8_message_gets_a_global_report():
    orig = ("From: Jörg <jörg@example.org>\r\n"
            "To: Renée <renée@bücher.example>\r\n"
            "Subject: Grüße\r\n\r\nSchönen Tag!\r\n").encode()
    data = gen("failed", "-U", "-B", "8bit", "-f", "jörg@example.org",
               "-t", "renée@bücher.example",
               "-o", "utf-8;ren\\x{E9}e@b\\x{FC}cher.example",
               "-s", "5.1.1", "-d", "550 5.1.1 Renée unbekannt",
               body=orig)
    check_lines(data)
    msg, (human, report, original) = parse(data, email.policy.SMTPUTF8)
    assert msg.get_param("report-type") == "global-delivery-status"
    assert u8(msg["To"].addresses[0].addr_spec) == "jörg@example.org"
    assert msg["Content-Transfer-Encoding"] == "8bit"
    assert human.get_content_type() == "text/plain"
    assert human.get_content_charset() == "utf-8"
    assert "renée@bücher.example" in human.get_content()
    assert report.get_content_type() == "message/global-delivery-status"
    assert original.get_content_type() == "message/global"
    content = raw_parts(data)[1].split(b"\r\n\r\n", 1)[1]
    per_msg, rcpt = header_groups(content)
    assert per_msg["Reporting-MTA"] == "dns; mx2.example.net"
    assert u8(rcpt["Final-Recipient"]) == "utf-8; renée@bücher.example"
    assert u8(rcpt["Original-Recipient"]) == "utf-8;renée@bücher.example"
    assert u8(rcpt["Diagnostic-Code"]) == "smtp; 550 5.1.1 Renée unbekannt"
    assert raw_parts(data)[2].endswith(orig)


def test_smtputf8_headers_only_use_global_headers():
    orig = "Subject: Grüße\r\n\r\nx\r\n".encode()
    data = gen("delayed", "-U", "-f", "jörg@example.org",
               "-t", "user@example.com", body=orig)
    _, (_, report, original) = parse(data, email.policy.SMTPUTF8)
    assert report.get_content_type() == "message/global-delivery-status"
    assert original.get_content_type() == "message/global-headers"


@pytest.mark.parametrize("action,what,orcpt", [
    ("delayed", "message/global-headers",
     "utf-8;ren\\x{E9}e\\x{2B}x@b\\x{FC}cher.example"),
    # RFC 6533 utf-8-addr-unitext, as an SMTPUTF8 client may give it.
    ("failed", "message/global", "utf-8;ren\u00e9e\\x{2B}x@b\u00fccher.example"),
])
def test_a_notice_to_an_ascii_sender_stays_ascii(action, what, orcpt):
    """An SMTPUTF8 message with a UTF-8 header and recipient, from an ASCII
    sender: the notice must reach a server without SMTPUTF8 (RFC 6533):
    plain delivery-status, the address in utf-8-addr-xtext, the original
    in base64 (RFC 6532 3.5)."""
    orig = "From: s@example.org\r\nSubject: Grüße\r\n\r\nSchön\r\n".encode()
    data = gen(action, "-U", "-B", "8bit", "-t", "renée@bücher.example",
               "-o", orcpt,
               "-s", "5.1.1" if action == "failed" else "4.4.1",
               "-d", "550 5.1.1 Renée unbekannt", body=orig)
    check_lines(data)
    assert max(data) < 0x80, "the whole notice is ASCII"
    msg, (human, report, original) = parse(data)
    assert msg.get_param("report-type") == "delivery-status"
    assert human.get_content_charset() == "us-ascii"
    assert report.get_content_type() == "message/delivery-status"
    _, rcpt = blocks(report)
    assert rcpt["Final-Recipient"] == "utf-8; ren\\x{E9}e@b\\x{FC}cher.example"
    assert rcpt["Original-Recipient"] == "utf-8;ren\\x{E9}e\\x{2B}x@b\\x{FC}cher.example"
    assert original.get_content_type() == what
    assert original["Content-Transfer-Encoding"] == "base64"
    back = base64.b64decode(raw_parts(data)[2].split(b"\r\n\r\n", 1)[1])
    want = orig if what == "message/global" else orig.split(b"\r\n\r\n")[0] + b"\r\n"
    assert back == want
    for line in raw_parts(data)[2].split(b"\r\n"):
        assert len(line) <= 76


def test_two_mib_original_comes_back_as_headers_only():
    line = b"x" * 74 + b"\r\n"
    body = HEADER + b"\r\n" + line * (2 * 1024 * 1024 // len(line) + 1)
    assert len(body) > 2 * 1024 * 1024
    data = gen("failed", "-R", "full", "-t", "user@example.com", body=body)
    assert len(data) < 20000
    check_lines(data)
    _, (human, _, orig) = parse(data)
    assert orig.get_content_type() == "text/rfc822-headers"
    assert "larger than 1 MiB" in human.get_payload().replace("\r\n", " ")
    assert raw_parts(data)[2].split(b"\r\n\r\n", 1)[1] == HEADER


def test_each_recipient_gets_its_own_group():
    args = []
    for i in range(5):
        args += ["-t", "u%d@example.com" % i, "-s", "5.1.%d" % i,
                 "-d", "550 5.1.%d no u%d" % (i, i)]
    data = gen("failed", *args, "-x")  # -x: plus a bad index, ignored
    _, (human, report, _) = parse(data)
    groups = blocks(report)
    assert len(groups) == 6
    for i, g in enumerate(groups[1:]):
        assert g["Final-Recipient"] == "rfc822; u%d@example.com" % i
        assert g["Status"] == "5.1.%d" % i
        assert g["Diagnostic-Code"] == "smtp; 550 5.1.%d no u%d" % (i, i)
    assert "recipients listed below" in human.get_payload()


def test_hostile_replies_cannot_add_fields_groups_or_parts():
    rng = random.Random(3464)
    data0 = gen("failed")
    bound = re.search(rb'boundary="([^"]+)"', data0).group(1).decode()
    evil = [
        "550 x\r\nAction: delivered\r\n\r\nFinal-Recipient: rfc822; evil@x",
        "550 y\r\n\r\n--%s\r\nContent-Type: text/html\r\n\r\n<b>" % bound,
        "550 " + "z" * 5000,
        "550 " + " ".join("w" * rng.randint(1, 120) for _ in range(400)),
        "".join(chr(rng.choice([rng.randint(1, 127), 10, 13, 9]))
                for _ in range(3000)),
    ]
    for diag in evil:
        data = gen("failed", "-t", "user@example.com", "-s", "5.1.1",
                   "-m", "mx.example.com\r\nX-Evil: 1", "-d", diag)
        check_lines(data)
        msg, (human, report, orig) = parse(data)
        groups = blocks(report)
        assert len(groups) == 2
        assert groups[1]["Action"] == "failed"
        assert groups[1]["X-Evil"] is None and msg["X-Evil"] is None
        assert orig.get_content_type() == "message/rfc822"
        assert not msg.defects
        # The reply arrives whole, only its whitespace runs folded.
        got = re.sub(r"\s+", " ", groups[1]["Diagnostic-Code"])
        if len(diag) < 900 and all(32 <= ord(c) < 127 or c in "\r\n\t"
                                   for c in diag):
            assert got == "smtp; " + re.sub(r"\s+", " ", diag).strip()


def test_8bit_and_binary_originals_set_the_transfer_encoding():
    orig = "Subject: caf\u00e9\r\n\r\nna\u00efve\r\n".encode()
    msg, _ = parse(gen("failed", "-B", "8bit", body=orig))
    assert msg["Content-Transfer-Encoding"] == "8bit"
    msg, _ = parse(gen("failed", "-B", "binary", body=orig))
    assert msg["Content-Transfer-Encoding"] == "binary"
    msg, _ = parse(gen("failed"))
    assert msg["Content-Transfer-Encoding"] == "7bit"


@pytest.mark.parametrize("args", [
    [], ["bounced"], ["failed", "extra"], ["-R", "some", "failed"],
    ["-o", "rfc822;x", "failed"], ["-N", "sometimes", "-t", "a@b", "failed"],
    ["-n", "-5", "failed"],
])
def test_dsngen_rejects_bad_usage(args):
    p = subprocess.run([DSNGEN, *args], input=b"", capture_output=True,
                       timeout=30)
    assert p.returncode == 2
    assert p.stdout == b""
    assert b"usage" in p.stderr


def test_boundary_never_occurs_in_the_returned_message():
    # The boundary dsngen's defaults give, and its first fallback.
    first = b"--=_0C8A5KZ4M2N1.%d" % NOW
    body = HEADER + b"\r\n" + first + b"\r\n" + first + b".1--\r\nend\r\n"
    data = gen("failed", "-t", "user@example.com", body=body)
    msg, (_, _, orig) = parse(data)
    assert not msg.get_boundary().startswith(first[2:].decode() + ".1")
    assert msg.get_boundary() not in body.decode()
    inner = orig.get_payload()[0]
    assert inner.get_payload().endswith("end\r\n")
    assert raw_parts(data)[2].split(b"\r\n\r\n", 1)[1] == body


# Who said what (RFC 3464 2.3.5, 2.3.6): the "smtp" diagnostic type carries
# the remote server's reply and nothing else; what mxspool says itself is
# of its own type, and Remote-MTA names a host only when one was reached.
@pytest.mark.parametrize("relay,diag,remote_mta,code,human", [
    # The remote's reply, as it said it.
    ("mx.example.com[192.0.2.1]:25", "550 5.1.1 No such user",
     "dns; mx.example.com", "smtp; 550 5.1.1 No such user",
     "host mx.example.com[192.0.2.1]:25 said: 550 5.1.1 No such user"),
    # Our words about a reply: the reply alone is "smtp".
    ("127.0.0.1[127.0.0.1]:2525",
     "host 127.0.0.1[127.0.0.1] refused to talk to me: 554 5.7.1 go away",
     "dns; 127.0.0.1", "smtp; 554 5.7.1 go away",
     "host 127.0.0.1[127.0.0.1] refused to talk to me: 554 5.7.1 go away"),
    ("mx.example.com[192.0.2.1]:25",
     "TLS is required, but host mx.example.com refused to start TLS: "
     "454 4.7.0 TLS not available",
     "dns; mx.example.com", "smtp; 454 4.7.0 TLS not available",
     "refused to start TLS: 454 4.7.0 TLS not available"),
    # The remote said nothing: our words, of our type, and no Remote-MTA
    # when no host was reached.
    (None, "connect to mx.example.com[192.0.2.1]:25: Connection refused",
     None, "X-mxspool; connect to mx.example.com[192.0.2.1]:25: "
     "Connection refused", "Connection refused"),
    ("mx.example.com[192.0.2.1]:25",
     "lost connection with host mx.example.com[192.0.2.1] while sending "
     "RCPT TO", "dns; mx.example.com",
     "X-mxspool; lost connection with host mx.example.com[192.0.2.1] "
     "while sending RCPT TO", "lost connection"),
    (None, "SMTPUTF8 is required, but was not offered by host mx.example.com",
     None, "X-mxspool; SMTPUTF8 is required, but was not offered by host "
     "mx.example.com", "SMTPUTF8 is required"),
    # A unix socket has no DNS name to give.
    ("/run/dovecot/lmtp", "552 5.2.2 Mailbox full", None,
     "smtp; 552 5.2.2 Mailbox full", "552 5.2.2 Mailbox full"),
    # Nothing at all: no Diagnostic-Code.
    (None, None, None, None, "user@example.com"),
])
def test_each_field_says_who_said_it(relay, diag, remote_mta, code, human):
    args = ["-t", "user@example.com", "-s", "5.0.0"]
    if relay:
        args += ["-m", relay]
    if diag:
        args += ["-d", diag]
    data = gen("failed", *args)
    check_lines(data)
    _, (text, report, _) = parse(data)
    per_msg, rcpt = blocks(report)
    assert per_msg["Reporting-MTA"] == "dns; mx2.example.net"
    assert rcpt["Remote-MTA"] == remote_mta
    got = rcpt["Diagnostic-Code"]
    assert (re.sub(r"\r?\n", "", got) if got else got) == code
    if code is not None:
        # diagnostic-type ";" *text, the type an atom (RFC 3464 2.3.6).
        assert re.fullmatch(r"(smtp|X-mxspool); \S.*", code)
    if remote_mta is not None:
        # mta-name-type "dns": a host name, no address or port.
        assert re.fullmatch(r"dns; [A-Za-z0-9.-]+", remote_mta)
    assert human in " ".join(text.get_payload().split())


@pytest.mark.parametrize("action,given,want", [
    ("failed", "5.1.1", "5.1.1"),
    ("failed", "4.4.7", "4.4.7"),   # given up on a temporary failure
    ("failed", "2.0.0", "5.0.0"),
    ("delayed", "5.1.1", "4.0.0"),
    ("delayed", "4.4.1", "4.4.1"),
    ("delivered", "5.0.0", "2.0.0"),
    ("relayed", "2.1.5", "2.1.5"),
    ("failed", "5.999.999", "5.999.999"),
    ("failed", "5.1000.1", "5.0.0"),
    ("failed", "junk", "5.0.0"),
])
def test_status_class_agrees_with_the_action(action, given, want):
    data = gen(action, "-t", "user@example.com", "-N", "success,failure,delay",
               "-s", given)
    _, (_, report, _) = parse(data)
    _, rcpt = blocks(report)
    assert rcpt["Action"] == action
    assert rcpt["Status"] == want
    assert re.fullmatch(r"[245]\.\d{1,3}\.\d{1,3}", rcpt["Status"])


@pytest.mark.parametrize("addr,kind", [
    ("user@example.com", "rfc822"),
    ("\"odd user\"@example.com", "rfc822"),
    ("ren\u00e9e@example.com", "utf-8"),
])
@pytest.mark.parametrize("sender", ["s@example.org", "j\u00f6rg@example.org"])
def test_final_recipient_type_follows_the_address(addr, kind, sender):
    args = ["-f", sender, "-t", addr, "-s", "5.1.1"]
    if kind == "utf-8":
        args = ["-U"] + args
    data = gen("failed", *args)
    fields = header_groups(raw_parts(data)[1].split(b"\r\n\r\n", 1)[1])
    want = addr
    if sender.isascii():  # RFC 6533 utf-8-addr-xtext
        want = addr.replace("\u00e9", "\\x{E9}")
    assert u8(fields[1]["Final-Recipient"]) == "%s; %s" % (kind, want)
