"""STARTTLS on the inbound server, with certificates the tests make with the
openssl command."""

import os
import smtplib
import socket
import ssl
import subprocess

import pytest

from conftest import MXSPOOLD
from smtphelp import (ehlo, make_cert, queued_id, send_message, spool_body,
                      spool_envelopes, split_received)


def tls_daemon(daemon, tmp_path, extra=""):
    cert, key = make_cert(str(tmp_path))
    return daemon(extra='tls_cert_file = "%s"\ntls_key_file = "%s"\n%s'
                  % (cert, key, extra)).start()


def client_ctx(version=None):
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    if version is not None:
        ctx.minimum_version = version
        ctx.maximum_version = version
    return ctx


def starttls(c, ctx=None):
    """Upgrades a raw conftest Client in place after a 220."""
    c.sock = (ctx or client_ctx()).wrap_socket(c.sock,
                                               server_hostname="mx.test.example")
    c.buf = b""
    return c


def test_starttls_is_offered_only_with_a_certificate(daemon, tmp_path):
    plain = daemon().start()
    c = ehlo(plain)
    assert "250-STARTTLS" not in c.cmd("EHLO again.test")
    assert c.cmd("STARTTLS") == ["502 5.5.1 Error: command not implemented"]
    c.close()
    d = tls_daemon(daemon, tmp_path)
    c = d.connect()
    c.reply()
    assert "250-STARTTLS" in c.cmd("EHLO client.test")


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_2,
                                     ssl.TLSVersion.TLSv1_3])
def test_starttls_resets_the_session_and_is_not_offered_again(
        daemon, tmp_path, version):
    d = tls_daemon(daemon, tmp_path)
    c = ehlo(d)
    assert c.cmd("MAIL FROM:<a@sender.test>") == ["250 2.1.0 Ok"]
    assert c.cmd("RSET") == ["250 2.0.0 Ok"]
    assert c.cmd("STARTTLS") == ["220 2.0.0 Ready to start TLS"]
    starttls(c, client_ctx(version))
    assert c.sock.version() == {ssl.TLSVersion.TLSv1_2: "TLSv1.2",
                                ssl.TLSVersion.TLSv1_3: "TLSv1.3"}[version]
    # A new EHLO is needed, and STARTTLS is gone from it.
    assert c.cmd("MAIL FROM:<a@sender.test>") == [
        "503 5.5.1 Error: send HELO/EHLO first"]
    r = c.cmd("EHLO client.test")
    assert r[0] == "250-mx.test.example"
    assert "250-STARTTLS" not in r
    assert c.cmd("STARTTLS") == ["554 5.5.1 Error: TLS already active"]
    qid = queued_id(send_message(c, b"Subject: tls\r\n\r\nsecret\r\n.\r\n"))
    assert c.cmd("QUIT") == ["221 2.0.0 Bye"]
    c.close()
    d.stop()
    received, rest = split_received(spool_body(d, qid))
    assert rest == b"Subject: tls\r\n\r\nsecret\r\n"
    text = received.decode()
    assert " with ESMTPS id %s\r\n" % qid in text
    want = "TLSv1.3" if version == ssl.TLSVersion.TLSv1_3 else "TLSv1.2"
    assert "\t(using %s with cipher " % want in text
    assert "TLS connection established from [127.0.0.1]" in d.log()
    assert want in d.log()


def test_commands_pipelined_after_starttls_are_discarded(daemon, tmp_path):
    """CVE-2011-0411: plaintext sent along with STARTTLS must not be run
    as if it came over TLS."""
    d = tls_daemon(daemon, tmp_path)
    c = ehlo(d)
    c.send("STARTTLS\r\nMAIL FROM:<evil@attacker.test>\r\n"
           "RCPT TO:<user@example.com>\r\n")
    assert c.reply() == ["220 2.0.0 Ready to start TLS"]
    starttls(c)
    c.cmd("EHLO client.test")
    # Had the injected MAIL been run, this would be "nested MAIL".
    assert c.cmd("RCPT TO:<user@example.com>") == [
        "503 5.5.1 Error: need MAIL command"]
    assert c.cmd("MAIL FROM:<a@sender.test>") == ["250 2.1.0 Ok"]
    assert "bytes pipelined after STARTTLS" in d.log()


def test_starttls_inside_a_transaction_or_with_arguments_is_refused(
        daemon, tmp_path):
    d = tls_daemon(daemon, tmp_path)
    c = ehlo(d)
    assert c.cmd("STARTTLS now") == ["501 5.5.4 Syntax: STARTTLS"]
    c.cmd("MAIL FROM:<a@sender.test>")
    assert c.cmd("STARTTLS") == [
        "503 5.5.1 Error: STARTTLS inside a transaction"]


def test_smtplib_and_swaks_deliver_over_starttls(daemon, tmp_path):
    d = tls_daemon(daemon, tmp_path)
    with smtplib.SMTP("127.0.0.1", d.port, timeout=10) as s:
        s.starttls(context=client_ctx())
        assert s.sendmail("a@sender.test", ["user@example.com"],
                          b"Subject: smtplib\r\n\r\nx\r\n") == {}
    r = subprocess.run(["swaks", "--server", "127.0.0.1:%d" % d.port,
                        "--to", "user@example.com", "--from", "b@sender.test",
                        "--tls", "--timeout", "10"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "250 2.0.0 Ok: queued as" in r.stdout
    d.stop()
    envs = spool_envelopes(d)
    assert sorted(e["sender"] for e in envs.values()) == [
        "a@sender.test", "b@sender.test"]


def test_a_failed_handshake_closes_only_that_session(daemon, tmp_path):
    d = tls_daemon(daemon, tmp_path)
    c = ehlo(d)
    assert c.cmd("STARTTLS") == ["220 2.0.0 Ready to start TLS"]
    c.send(b"this is not a TLS client hello\r\n" * 4)
    assert c.closed()
    other = ehlo(d)
    assert other.cmd("NOOP") == ["250 2.0.0 Ok"]
    assert "TLS error from [127.0.0.1]" in d.log()


def test_handshake_stall_times_out(daemon, tmp_path):
    d = tls_daemon(daemon, tmp_path, extra="command_timeout = 1s\n")
    c = ehlo(d)
    assert c.cmd("STARTTLS") == ["220 2.0.0 Ready to start TLS"]
    assert c.closed(timeout=5)
    assert "timeout after tls" in d.log()


def check(conf):
    return subprocess.run([MXSPOOLD, "-t", "-c", conf], capture_output=True,
                          text=True, timeout=30)


def at(conf, option):
    """"CONF:LINE:", where conf sets option: how errors about it start."""
    with open(conf) as f:
        for n, line in enumerate(f, 1):
            if line.startswith(option + " "):
                return "%s:%d:" % (conf, n)
    raise AssertionError("%s sets no %s" % (conf, option))


def test_check_accepts_a_matching_certificate_and_key(daemon, tmp_path):
    cert, key = make_cert(str(tmp_path))
    d = daemon(extra='tls_cert_file = "%s"\ntls_key_file = "%s"\n'
               % (cert, key))
    r = check(d.conf)
    assert r.returncode == 0, r.stderr


def test_check_rejects_a_key_that_does_not_match(daemon, tmp_path):
    cert, _ = make_cert(str(tmp_path), prefix="a-")
    _, key = make_cert(str(tmp_path), prefix="b-")
    d = daemon(extra='tls_cert_file = "%s"\ntls_key_file = "%s"\n'
               % (cert, key))
    r = check(d.conf)
    assert r.returncode == 1
    # At the key's line, which is the one to fix.
    assert r.stderr.startswith(
        "%s tls_key_file %s does not match tls_cert_file %s: "
        % (at(d.conf, "tls_key_file"), key, cert)), r.stderr
    # And the daemon refuses to start with it, in one line.
    d.start(wait=False)
    assert d.proc.wait(10) == 1
    assert "fatal: %s tls_key_file %s does not match" \
        % (at(d.conf, "tls_key_file"), key) in d.log()


def test_check_rejects_a_certificate_without_key_and_garbage(daemon, tmp_path):
    cert, key = make_cert(str(tmp_path))
    d = daemon(extra='tls_cert_file = "%s"\n' % cert)
    r = check(d.conf)
    assert r.returncode == 1
    assert r.stderr == "%s tls_cert_file and tls_key_file go together: " \
        "tls_key_file is not set\n" % at(d.conf, "tls_cert_file")
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate\n")
    d2 = daemon(extra='tls_cert_file = "%s"\ntls_key_file = "%s"\n'
                % (junk, key))
    r = check(d2.conf)
    assert r.returncode == 1
    assert r.stderr.startswith("%s tls_cert_file %s: cannot load: "
                               % (at(d2.conf, "tls_cert_file"), junk))
    missing = str(tmp_path / "missing.pem")
    d3 = daemon(extra='tls_cert_file = "%s"\ntls_key_file = "%s"\n'
                % (cert, missing))
    r = check(d3.conf)
    assert r.returncode == 1
    assert r.stderr.startswith("%s tls_key_file: cannot read '%s'"
                               % (at(d3.conf, "tls_key_file"), missing))
