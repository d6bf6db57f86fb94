"""Helpers for the SMTP server's integration tests (test_smtp*.py)."""

import os
import subprocess

from conftest import BUILD

SMTPDUMP = os.path.join(BUILD, "tests", "tools", "smtpdump")


def ehlo(d, name="client.test", source=None):
    """A raw client that has read the greeting and said EHLO; source: the
    loopback address it connects from."""
    c = d.connect(source=source)
    assert c.reply()[0].startswith("220 ")
    r = c.cmd("EHLO " + name)
    assert r[-1].startswith("250 "), r
    return c


def code(reply):
    """'250 2.0.0 Ok' -> '250 2.0.0', the part tests compare exactly."""
    return " ".join(reply[-1].split(" ")[:2])


def send_message(c, body, sender="a@sender.test", rcpts=("user@example.com",)):
    """A whole transaction on a raw client; returns the final reply line.
    body is sent as given: the caller stuffs dots and ends it."""
    assert c.cmd("MAIL FROM:<%s>" % sender)[0].startswith("250 ")
    for r in rcpts:
        assert c.cmd("RCPT TO:<%s>" % r)[0].startswith("250 "), r
    assert c.cmd("DATA")[0].startswith("354 ")
    c.send(body)
    return c.reply()[-1]


def queued_id(line):
    assert line.startswith("250 2.0.0 Ok: queued as "), line
    return line.rsplit(" ", 1)[1]


def spool_envelopes(d):
    """{qid: {field: value, 'rcpt': [..]}} read from the stopped daemon's
    spool."""
    assert d.proc is None or d.proc.poll() is not None, "stop the daemon first"
    r = subprocess.run([SMTPDUMP, "env", d.spool], capture_output=True,
                       timeout=30)
    assert r.returncode == 0, r.stderr
    out = {}
    for line in r.stdout.decode("utf-8", "surrogateescape").splitlines():
        fields = line.split("\t")
        env = {"rcpt": []}
        for f in fields[1:]:
            k, v = f.split("=", 1)
            if k == "rcpt":
                env["rcpt"].append(v)
            else:
                env[k] = v
        out[fields[0]] = env
    return out


def spool_body(d, qid):
    assert d.proc is None or d.proc.poll() is not None, "stop the daemon first"
    r = subprocess.run([SMTPDUMP, "body", d.spool, qid], capture_output=True,
                       timeout=30)
    assert r.returncode == 0, r.stderr
    return r.stdout


def split_received(body):
    """(Received header bytes, the rest) of a stored body."""
    assert body.startswith(b"Received: "), body[:100]
    i = body.index(b"\r\n")
    while body[i + 2:i + 3] in (b"\t", b" "):
        i = body.index(b"\r\n", i + 2)
    return body[:i + 2], body[i + 2:]


def make_cert(dirpath, name="mx.test.example", prefix=""):
    """A self-signed certificate and key made with the openssl command."""
    cert = os.path.join(dirpath, prefix + "cert.pem")
    key = os.path.join(dirpath, prefix + "key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec",
                    "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                    "-subj", "/CN=" + name, "-days", "2",
                    "-keyout", key, "-out", cert],
                   check=True, capture_output=True, timeout=60)
    return cert, key
