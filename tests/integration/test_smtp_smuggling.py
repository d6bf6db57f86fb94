"""SMTP smuggling: only CRLF.CRLF ends DATA. Every other end-of-data
look-alike keeps the data going, and a message holding a bare CR or LF is
refused whole (550 5.6.0), so nothing smuggled inside it is ever queued or
run as a command."""

import pytest

from smtphelp import ehlo, queued_id, send_message, spool_envelopes

SEQUENCES = {
    "LF.LF": b"\n.\n",
    "CR.CR": b"\r.\r",
    "LF.CRLF": b"\n.\r\n",
    "CRLF.LF": b"\r\n.\n",
    "CR.CRLF": b"\r.\r\n",
    "CRLF.CR": b"\r\n.\r",
    "CRLF.CRX": b"\r\n.\rX",
    "bare LF": b"\nline\r\n",
    "bare CR": b"\rline\r\n",
}


@pytest.mark.parametrize("name", sorted(SEQUENCES))
def test_smuggling_sequence_neither_ends_data_nor_passes(daemon, name):
    d = daemon().start()
    c = ehlo(d)
    smuggled = (b"MAIL FROM:<evil@attacker.test>\r\n"
                b"RCPT TO:<victim@example.com>\r\nDATA\r\n"
                b"Subject: smuggled\r\n\r\nsmuggled\r\n")
    body = (b"Subject: carrier\r\n\r\ncarrier" + SEQUENCES[name] + smuggled)
    assert c.cmd("MAIL FROM:<a@sender.test>") == ["250 2.1.0 Ok"]
    assert c.cmd("RCPT TO:<user@example.com>") == ["250 2.1.5 Ok"]
    assert c.cmd("DATA")[0].startswith("354")
    c.send(body)
    # Nothing may answer yet: the data has not ended.
    c.sock.settimeout(0.5)
    try:
        early = c.sock.recv(1000)
    except TimeoutError:
        early = b""
    except OSError:
        early = b""
    assert early == b""
    c.sock.settimeout(10)
    c.send(b".\r\n")
    assert c.reply() == [
        "550 5.6.0 Message contains bare CR or LF (RFC 5321 2.3.8)"]
    # The session is usable afterwards and a clean message still passes.
    assert send_message(c, b"Subject: ok\r\n\r\nok\r\n.\r\n").startswith(
        "250 2.0.0 Ok: queued as ")
    c.cmd("QUIT")
    c.close()
    d.stop()
    envs = spool_envelopes(d)
    assert len(envs) == 1
    assert [e["sender"] for e in envs.values()] == ["a@sender.test"]
    assert "reject: bare CR or LF" in d.log()


def test_crlf_dot_crlf_split_over_packets_still_ends_data(daemon):
    d = daemon().start()
    c = ehlo(d)
    c.cmd("MAIL FROM:<a@sender.test>")
    c.cmd("RCPT TO:<user@example.com>")
    c.cmd("DATA")
    for piece in [b"Subject: x\r\n\r\nbody\r", b"\n", b".", b"\r", b"\n"]:
        c.send(piece)
        import time
        time.sleep(0.05)
    queued_id(c.reply()[0])


def test_bare_lf_in_bdat_is_refused_too(daemon):
    d = daemon().start()
    c = ehlo(d)
    c.cmd("MAIL FROM:<a@sender.test>")
    c.cmd("RCPT TO:<user@example.com>")
    chunk = b"Subject: x\r\n\r\nbody\n.\nmore\r\n"
    c.send(b"BDAT %d LAST\r\n" % len(chunk) + chunk)
    assert c.reply() == [
        "550 5.6.0 Message contains bare CR or LF (RFC 5321 2.3.8)"]
    c.close()
    d.stop()
    assert spool_envelopes(d) == {}
