"""The receiving side's syntax where RFC 5321 and RFC 3030 leave little
room: quoted local parts (4.1.2) relayed byte for byte, <Postmaster>
without a domain (4.5.1), and malformed BDAT commands, which either keep
the session usable or end it with 421 (3.8), never silently."""

import os
import subprocess

import pytest

from conftest import MXSPOOLD, log_lines, wait_for
from smtphelp import ehlo, queued_id, send_message, spool_body, \
    spool_envelopes, split_received

MSG = b"Subject: hello\r\n\r\nHello.\r\n.\r\n"
ROUTE_CHARS = "553 5.1.3 @, % and ! in quoted local parts are not accepted"


def routed(store, domain="example.com", more=""):
    return 'domain "%s" {\n route = "smtp:[127.0.0.1]:%d"\n%s}\n' % (
        domain, store.port, more)


def rcpt_lines(b):
    return [l for l in b.commands() if l.upper().startswith("RCPT")]


# --------------------------------------------------------------------------
# Quoted local parts

QUOTED = ['"odd user"@example.com', '"odd\\"q"@example.com',
          '"back\\\\slash"@example.com', '""@example.com',
          '"a..b."@example.com', '"joe"@example.com', 'joe@example.com']


def test_quoted_recipients_reach_the_store_byte_for_byte(daemon, backend):
    b = backend()
    d = daemon(extra=routed(b)).start()
    c = ehlo(d)
    assert c.cmd("MAIL FROM:<a@sender.test>") == ["250 2.1.0 Ok"]
    for r in QUOTED:
        assert c.cmd("RCPT TO:<%s>" % r) == ["250 2.1.5 Ok"], r
    assert c.cmd("DATA")[0].startswith("354")
    c.send(MSG)
    qid = queued_id(c.reply()[0])
    c.cmd("QUIT")
    b.wait_for(lambda: len(b.messages()) == 1, what="delivery")
    assert sorted(rcpt_lines(b)) == sorted("RCPT TO:<%s>" % r for r in QUOTED)
    assert sorted(b.messages()[0]["rcpts"]) == sorted(QUOTED)
    # Logged as given too.
    wait_for(lambda: log_lines(d, '%s: to=<"odd\\"q"@example.com>' % qid),
             what="the delivery log line")


def test_a_refused_quoted_recipient_is_named_as_given_in_the_dsn(daemon,
                                                                  backend):
    b = backend(rcpt={'"odd user"@example.com': "550 5.1.1 no such user"})
    rec = backend()
    # A lone 5xx is believed, not held as a storm.
    guard = "retry { rejection_guard = false }\n"
    d = daemon(extra=routed(b, more=guard) + 'bounce_route = "smtp:[127.0.0.1]:%d"\n'
               % rec.port).start()
    c = ehlo(d)
    queued_id(send_message(c, MSG, rcpts=['"odd user"@example.com']))
    c.cmd("QUIT")
    rec.wait_for(lambda: len(rec.messages()) == 1, what="the DSN")
    dsn = rec.messages()[0]["data"]
    assert b'\r\nFinal-Recipient: rfc822; "odd user"@example.com\r\n' in dsn
    assert log_lines(d, 'to=<"odd user"@example.com>, relay=')


def test_quoted_recipient_with_one_rcpt_is_named_in_received(daemon):
    d = daemon().start()
    c = ehlo(d)
    qid = queued_id(send_message(c, MSG, rcpts=['"odd user"@Example.COM']))
    c.close()
    d.stop()
    received, _ = split_received(spool_body(d, qid))
    assert b'\tfor <"odd user"@Example.COM>;' in received
    assert spool_envelopes(d)[qid]["rcpt"] == ['"odd user"@Example.COM,,0']


def test_a_quoted_word_and_the_bare_word_are_two_recipients(daemon):
    d = daemon().start()
    c = ehlo(d)
    c.cmd("MAIL FROM:<a@sender.test>")
    for r in ['"joe"@example.com', "joe@example.com",
              '"joe"@EXAMPLE.com', "joe@Example.Com", '"Joe"@example.com']:
        assert c.cmd("RCPT TO:<%s>" % r) == ["250 2.1.5 Ok"], r
    c.cmd("DATA")
    c.send(MSG)
    qid = queued_id(c.reply()[0])
    c.close()
    d.stop()
    # The domain is compared without case, the local part as given.
    assert spool_envelopes(d)[qid]["rcpt"] == [
        '"joe"@example.com,,0', "joe@example.com,,0", '"Joe"@example.com,,0']


def test_quoted_local_parts_hiding_a_route_are_refused(daemon):
    d = daemon().start()
    c = ehlo(d)
    c.cmd("MAIL FROM:<a@sender.test>")
    for r in ['"a@b"@example.com', '"a%b"@example.com', '"a!b"@example.com',
              '"a\\@b"@example.com', '"@x.test:u"@example.com',
              '"u@x.test"@example.com']:
        assert c.cmd("RCPT TO:<%s>" % r) == [ROUTE_CHARS], r
    assert c.cmd("DATA") == ["554 5.5.1 Error: no valid recipients"]


@pytest.mark.parametrize("rcpt,why", [
    ('"abc@example.com>', "unterminated quoted local part"),
    ('"abc\\"@example.com>', "unterminated quoted local part"),
    ('"abc\\', "unterminated quoted local part"),
    ('"a\tb"@example.com>', "bad character in quoted local part"),
    ('"a\x7fb"@example.com>', "bad character in quoted local part"),
    ('"a\\\tb"@example.com>', "bad character in quoted local part"),
    ('"a"b@example.com>', "domain name required"),
    ('"%s"@example.com>' % ("x" * 63), "local part too long"),
])
def test_malformed_quoted_local_parts_get_501(daemon, rcpt, why):
    d = daemon().start()
    c = ehlo(d)
    c.cmd("MAIL FROM:<a@sender.test>")
    assert c.cmd("RCPT TO:<" + rcpt) == [
        "501 5.1.3 Bad recipient address syntax: " + why]
    # 64 octets as sent, quotes included, is still fine.
    assert c.cmd('RCPT TO:<"%s"@example.com>' % ("x" * 62)) == [
        "250 2.1.5 Ok"]


def test_8bit_quoted_local_parts_need_smtputf8_and_valid_utf8(daemon):
    d = daemon().start()
    c = ehlo(d)
    c.cmd("MAIL FROM:<a@sender.test>")
    assert c.cmd('RCPT TO:<"j\u00f6 rg"@example.com>') == [
        "553 5.6.7 UTF-8 address without SMTPUTF8"]
    c.cmd("RSET")
    c.cmd("MAIL FROM:<a@sender.test> SMTPUTF8")
    c.send(b'RCPT TO:<"j\xc3 rg"@example.com>\r\n')
    assert c.reply() == [
        "501 5.1.3 Bad recipient address syntax: bad UTF-8"]
    assert c.cmd('RCPT TO:<"j\u00f6 rg"@example.com>') == ["250 2.1.5 Ok"]
    c.cmd("DATA")
    c.send(MSG)
    qid = queued_id(c.reply()[0])
    c.close()
    d.stop()
    assert spool_envelopes(d)[qid]["rcpt"] == ['"j\u00f6 rg"@example.com,,0']


def test_quoted_sender_is_kept_byte_for_byte(daemon):
    d = daemon().start()
    c = ehlo(d)
    qid = queued_id(send_message(c, MSG, sender='"a@b \\"c\\""@sender.test'))
    c.close()
    d.stop()
    assert spool_envelopes(d)[qid]["sender"] == '"a@b \\"c\\""@sender.test'


def test_recipients_file_looks_quoted_local_parts_up_unquoted(daemon, tmp_path):
    lst = tmp_path / "rcpts"
    lst.write_text("joe\nann@example.com\n")
    d = daemon(extra='domain "example.com" { recipients = "%s" }\n' % lst)
    d.start()
    c = ehlo(d)
    c.cmd("MAIL FROM:<a@sender.test>")
    assert c.cmd('RCPT TO:<"joe"@example.com>') == ["250 2.1.5 Ok"]
    assert c.cmd('RCPT TO:<"ann"@Example.com>') == ["250 2.1.5 Ok"]
    assert c.cmd('RCPT TO:<"odd user"@example.com>') == [
        '550 5.1.1 <"odd user"@example.com>: Recipient address rejected: '
        "User unknown in relay recipient table"]
    # postmaster@ a relay domain is taken even though the list lacks it.
    assert c.cmd("RCPT TO:<PostMaster@example.com>") == ["250 2.1.5 Ok"]
    assert c.cmd("RCPT TO:<Postmaster>") == ["250 2.1.5 Ok"]
    assert c.cmd("RCPT TO:<abuse@example.com>")[0].startswith("550 5.1.1 ")


def test_a_listed_quoted_recipient_refused_by_the_store_is_held(
        daemon, backend, tmp_path):
    """The rejection guard reads the recipients file as RCPT does: the
    store's 5xx for "joe"@ when joe is listed is suspect, not a bounce."""
    lst = tmp_path / "rcpts"
    lst.write_text("joe\ngood\n")
    b = backend(rcpt={'"joe"@example.com': "550 5.1.1 no such user"})
    rec = backend()
    d = daemon(extra=routed(b, more='recipients = "%s"\n' % lst)
               + 'bounce_route = "smtp:[127.0.0.1]:%d"\n' % rec.port).start()
    c = ehlo(d)
    queued_id(send_message(c, MSG, rcpts=["good@example.com",
                                          '"joe"@example.com']))
    c.cmd("QUIT")
    b.wait_for(lambda: len(b.messages()) == 1, what="delivery")
    wait_for(lambda: log_lines(d, 'to=<"joe"@example.com>, relay='),
             what="the verdict")
    assert "suspect 5xx" in log_lines(d, 'to=<"joe"@example.com>, relay=')[0]
    assert rec.messages() == []


# --------------------------------------------------------------------------
# <Postmaster>

def test_postmaster_without_a_domain_reaches_the_default_postmaster(
        daemon, backend):
    b = backend()
    d = daemon(relay_domains=(".sub.example.org", "example.com", "b.test"),
               extra=routed(b)).start()
    c = ehlo(d)
    qids = []
    for form in ["Postmaster", "postmaster", "POSTMASTER"]:
        qids.append(queued_id(send_message(c, MSG, rcpts=[form])))
    c.cmd("QUIT")
    b.wait_for(lambda: len(b.messages()) == 3, what="delivery")
    assert rcpt_lines(b) == ["RCPT TO:<postmaster@example.com>"] * 3
    for qid, form in zip(qids, ["Postmaster", "postmaster", "POSTMASTER"]):
        assert log_lines(d, "%s: to=<postmaster@example.com>, orig_to=<%s>"
                         % (qid, form)), d.log()


def test_postmaster_goes_to_the_configured_address(daemon, backend):
    b = backend()
    d = daemon(extra='postmaster = "hostmaster@ops.test"\n'
               + routed(b, "ops.test")).start()
    c = ehlo(d)
    c.cmd("MAIL FROM:<a@sender.test>")
    assert c.cmd("RCPT TO:<Postmaster> NOTIFY=NEVER") == ["250 2.1.5 Ok"]
    # The same mailbox again, by either name: one copy.
    assert c.cmd("RCPT TO:<postmaster>") == ["250 2.1.5 Ok"]
    assert c.cmd("RCPT TO:<hostmaster@OPS.test>") == ["250 2.1.5 Ok"]
    # ops.test is no relay domain: only the postmaster may go there.
    assert c.cmd("RCPT TO:<someone@ops.test>") == [
        "554 5.7.1 <someone@ops.test>: Relay access denied"]
    c.cmd("DATA")
    c.send(MSG)
    queued_id(c.reply()[0])
    c.cmd("QUIT")
    b.wait_for(lambda: len(b.messages()) == 1, what="delivery")
    assert b.messages()[0]["rcpts"] == ["hostmaster@ops.test"]


def test_other_domainless_recipients_and_a_postmaster_sender_are_refused(
        daemon):
    d = daemon().start()
    c = ehlo(d)
    assert c.cmd("MAIL FROM:<Postmaster>") == [
        "501 5.1.7 Bad sender address syntax: domain name required"]
    c.cmd("MAIL FROM:<a@sender.test>")
    for r in ["<abuse>", "<postmasters>", '<"Postmaster">', "<post.master>",
              "<user>"]:
        assert c.cmd("RCPT TO:" + r) == [
            "501 5.1.3 Bad recipient address syntax: domain name required"], r
    assert c.cmd("DATA") == ["554 5.5.1 Error: no valid recipients"]


def test_config_check_reports_the_postmaster_in_force(tmp_path):
    conf = tmp_path / "a.conf"
    conf.write_text('relay_domains = {".sub.example.org", "Example.COM"}\n')
    r = subprocess.run([MXSPOOLD, "-t", "-c", str(conf)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert r.stdout == "%s: ok (postmaster <postmaster@example.com>)\n" % conf
    conf.write_text('relay_domains = {"example.com"}\n'
                    'postmaster = "pm@ops.example.net"\n')
    r = subprocess.run([MXSPOOLD, "-t", "-c", str(conf)],
                       capture_output=True, text=True)
    assert r.stdout == "%s: ok (postmaster <pm@ops.example.net>)\n" % conf
    conf.write_text('relay_domains = {"example.com"}\n\n'
                    'postmaster = "postmaster"\n')
    r = subprocess.run([MXSPOOLD, "-t", "-c", str(conf)],
                       capture_output=True, text=True)
    assert r.returncode == 1
    assert r.stderr == ("%s:3: postmaster: bad address 'postmaster' "
                        "(use local@domain)\n" % conf)
    conf.write_text('relay_domains = {".example.org"}\n')
    r = subprocess.run([MXSPOOLD, "-t", "-c", str(conf)],
                       capture_output=True, text=True)
    assert r.returncode == 1
    assert "postmaster: not set, and relay_domains names no domain" in r.stderr


# --------------------------------------------------------------------------
# BDAT

def bdat_ready(d):
    c = ehlo(d)
    assert c.cmd("MAIL FROM:<a@sender.test>") == ["250 2.1.0 Ok"]
    assert c.cmd("RCPT TO:<user@example.com>") == ["250 2.1.5 Ok"]
    return c


@pytest.mark.parametrize("args", ["", " ", "x", "-3 LAST", "+3", "3x LAST",
                                  "LAST", "99999999999999999999",
                                  "18446744073709551616 LAST"])
@pytest.mark.parametrize("in_txn", [True, False], ids=["txn", "idle"])
def test_bdat_without_a_size_gets_501_then_421_and_a_close(daemon, args,
                                                            in_txn):
    d = daemon().start()
    c = bdat_ready(d) if in_txn else ehlo(d)
    c.send(("BDAT" + (" " + args if args else "") + "\r\nabc").encode())
    assert c.reply() == ["501 5.5.4 Syntax: BDAT size [LAST]"]
    assert c.reply() == ["421 4.5.0 mx.test.example Error: BDAT chunk size "
                         "unknown; closing connection"]
    assert c.closed()
    assert d.stop() == 0
    assert spool_envelopes(d) == {}
    assert "reject: BDAT without a size from [127.0.0.1]" in d.log()


@pytest.mark.parametrize("size", ["1025", "1025 LAST",
                                  "18446744073709551615"])
def test_bdat_chunk_over_the_size_limit_gets_552_then_421(daemon, size):
    d = daemon(extra="message_size_limit = 1k\n").start()
    c = bdat_ready(d)
    c.send(b"BDAT %s\r\n" % size.encode() + b"x" * 1025)
    assert c.reply() == ["552 5.3.4 Message size exceeds fixed limit"]
    assert c.reply() == ["421 4.5.0 mx.test.example Error: BDAT chunk too "
                         "big to skip; closing connection"]
    assert c.closed()
    d.stop()
    assert spool_envelopes(d) == {}


@pytest.mark.parametrize("args", ["6 LAST EXTRA", "6 FIRST", "6 LASTX",
                                  "6 6", "6 LAST LAST"])
def test_bdat_with_a_bad_word_after_the_size_skips_the_chunk(daemon, args):
    d = daemon().start()
    c = bdat_ready(d)
    # The chunk looks like a command: it must be skipped, not run.
    c.send(b"BDAT %s\r\nNOOP\r\n" % args.encode())
    assert c.reply() == ["501 5.5.4 Syntax: BDAT size [LAST]"]
    # The transaction is over, the session is not.
    assert c.cmd("RCPT TO:<user@example.com>") == [
        "503 5.5.1 Error: need MAIL command"]
    assert c.cmd("RSET") == ["250 2.0.0 Ok"]
    c.cmd("MAIL FROM:<a@sender.test>")
    c.cmd("RCPT TO:<user@example.com>")
    c.send(b"BDAT 4 LAST\r\nok\r\n")
    qid = queued_id(c.reply()[0])
    c.close()
    d.stop()
    assert list(spool_envelopes(d)) == [qid]


def test_bdat_bad_word_mid_message_drops_the_whole_transaction(daemon):
    d = daemon().start()
    c = bdat_ready(d)
    c.send(b"BDAT 5\r\nfirst")
    assert c.reply() == ["250 2.0.0 5 octets received"]
    c.send(b"BDAT 3 LAST EXTRA\r\nend")
    assert c.reply() == ["501 5.5.4 Syntax: BDAT size [LAST]"]
    # Chunks the client pipelined after it are read and refused too.
    c.send(b"BDAT 4 LAST\r\nmore")
    assert c.reply() == ["503 5.5.1 Error: need MAIL and RCPT commands"]
    assert c.cmd("NOOP") == ["250 2.0.0 Ok"]
    # Outside a transaction too, and before any EHLO's state is lost.
    c.send(b"BDAT 2 X\r\nab")
    assert c.reply() == ["501 5.5.4 Syntax: BDAT size [LAST]"]
    assert c.cmd("MAIL FROM:<a@sender.test>") == ["250 2.1.0 Ok"]
    c.close()
    d.stop()
    assert spool_envelopes(d) == {}


def test_bdat_lenient_forms_are_taken(daemon):
    d = daemon().start()
    c = bdat_ready(d)
    c.send(b"BDAT 003\r\nabc")
    assert c.reply() == ["250 2.0.0 3 octets received"]
    c.send(b"BDAT 3  last\r\ndef")
    qid = queued_id(c.reply()[0])
    c.cmd("MAIL FROM:<a@sender.test>")
    c.cmd("RCPT TO:<user@example.com>")
    c.send(b"BDAT 4\r\nghij")
    assert c.reply() == ["250 2.0.0 4 octets received"]
    c.send(b"bdat 0 LAST\r\n")
    qid2 = queued_id(c.reply()[0])
    c.close()
    d.stop()
    assert split_received(spool_body(d, qid))[1] == b"abcdef"
    assert split_received(spool_body(d, qid2))[1] == b"ghij"
