"""International domains (RFC 5890, RFC 6531) against the real daemon: a
domain written with U-labels (bücher.test) and with A-labels
(xn--bcher-kva.test) is one domain in relay_domains, at RCPT, in
recipients files, in routes and lanes, while the envelope keeps each
address as the client sent it."""

import os
import subprocess
import time

import pytest

from conftest import MXSPOOLD, log_lines, wait_for
from dnsmasq import Dnsmasq, mxroute, write_conf
from smtphelp import code, ehlo
from test_ctl import ctl, ctl_json

U = "bücher.test"
A = "xn--bcher-kva.test"
BODY = "Subject: idn\r\n\r\nhallo\r\n.\r\n"


def route(b):
    return "smtp:[127.0.0.1]:%d" % b.port


def store_conf(b, key=U, extra=""):
    """Mail for the domain (section named key) goes to backend b."""
    return ('domain "%s" {\n route = "%s"\n%s}\n'
            'retry {\n initial = 1s\n max_interval = 2s\n jitter = 0\n}\n'
            % (key, route(b), extra))


def transaction(d, rcpts, utf8=True, sender="a@sender.test"):
    """MAIL (with SMTPUTF8 if utf8), each RCPT, and DATA if any was
    accepted. Returns ([RCPT reply codes and lines], final reply or None)."""
    c = ehlo(d)
    r = c.cmd("MAIL FROM:<%s>%s" % (sender, " SMTPUTF8" if utf8 else ""))
    assert code(r) == "250 2.1.0", r
    got = [c.cmd("RCPT TO:<%s>" % x)[-1] for x in rcpts]
    final = None
    if any(g.startswith("250 ") for g in got):
        assert c.cmd("DATA")[0].startswith("354 ")
        c.send(BODY)
        final = c.reply()[-1]
        assert final.startswith("250 2.0.0 Ok: queued as "), final
    c.cmd("QUIT")
    c.close()
    return got, final


@pytest.mark.parametrize("configured", [U, A])
@pytest.mark.parametrize("rcpt", ["u3@" + U, "u3@" + A, "u3@BÜCHER.test",
                                  "u3@XN--BCHER-KVA.TEST"])
def test_either_form_is_accepted_and_delivered_as_sent(daemon, backend,
                                                       configured, rcpt):
    b = backend()
    d = daemon(relay_domains=(configured,),
               extra=store_conf(b, key=configured)).start()
    utf8 = not rcpt.isascii()
    got, _ = transaction(d, [rcpt], utf8=utf8)
    assert got[0].startswith("250 2.1.5"), got
    b.wait_for(lambda: len(b.messages()) == 1, what="delivery")
    m = b.messages()[0]
    # The next hop sees the address exactly as the client wrote it, with
    # SMTPUTF8 when it has UTF-8 in it.
    assert m["rcpts"] == [rcpt]
    assert ("SMTPUTF8" in m["mail_params"].split()) == utf8
    wait_for(lambda: log_lines(d, "status=sent"), what="sent log")
    assert d.stop() == 0


def test_other_domains_are_still_refused(daemon):
    d = daemon(relay_domains=(U,)).start()
    got, _ = transaction(d, ["u@bucher.test", "u@xn--bcher-kva.example",
                             "u@bücher.example", "u@mail.bücher.test"])
    assert [g[:9] for g in got] == ["554 5.7.1"] * 4, got
    # The reject log shows the domain's other form where it has one.
    rej = log_lines(d, "554 5.7.1 <u@bücher.example>")
    assert rej and "(xn--bcher-kva.example)" in rej[0], d.log()
    rej = log_lines(d, "554 5.7.1 <u@bucher.test>")
    assert rej and "(" not in rej[0].split("<u@bucher.test>")[1], rej
    assert d.stop() == 0


def test_subdomain_patterns_take_either_form(daemon):
    d = daemon(relay_domains=(".bücher.test", ".xn--caf-dma.test"),
               extra='postmaster = "pm@example.com"\n').start()
    got, _ = transaction(d, ["a@mail.bücher.test", "b@mail." + A,
                             "c@x.café.test", "d@y.xn--caf-dma.test",
                             "e@" + U, "f@café.test"])
    assert [g[:9] for g in got] == ["250 2.1.5"] * 4 + ["554 5.7.1"] * 2, got
    assert d.stop() == 0


def test_u_label_without_smtputf8_is_refused(daemon):
    d = daemon(relay_domains=(U,)).start()
    got, _ = transaction(d, ["u@" + U, "u@BÜCHER.test", "u@" + A],
                         utf8=False)
    # RFC 6531 3.4: UTF-8 in an address needs SMTPUTF8; the A-label does
    # not.
    assert [g[:9] for g in got] == ["553 5.6.7", "553 5.6.7", "250 2.1.5"]
    assert d.stop() == 0


@pytest.mark.parametrize("rcpt,why", [
    ("u@xn--zz.test", "invalid punycode"),
    ("u@mail.xn--abc-123.test", "invalid punycode"),
    ("u@☃.test", "disallowed character"),
    ("u@xn--n3h.test", "disallowed character"),
    ("u@" + "a" * 60 + "ü.test", "longer than 63 octets"),
    ("u@ab--cü.test", "hyphen"),
])
def test_invalid_international_names_get_553_with_a_reason(daemon, rcpt,
                                                            why):
    # Even under a parent that is relayed: the name itself is bad.
    d = daemon(relay_domains=(".test",),
               extra='postmaster = "pm@example.com"\n').start()
    got, final = transaction(d, [rcpt, "ok@" + U])
    assert got[0].startswith("553 5.1.3 <%s>: Bad domain name: " % rcpt), got
    assert why in got[0], got
    assert got[1].startswith("250 "), got  # the session goes on
    rej = log_lines(d, "553 5.1.3 <%s>" % rcpt)
    assert rej and why in rej[0]
    assert d.stop() == 0


def test_both_forms_in_one_message_share_one_delivery(daemon, backend):
    b = backend()
    d = daemon(relay_domains=(A,), extra=store_conf(b)).start()
    got, _ = transaction(d, ["u1@" + U, "u2@" + A, "u1@" + A,
                             "u3@BÜCHER.test"])
    assert all(g.startswith("250 2.1.5") for g in got), got
    b.wait_for(lambda: len(b.messages()) == 1, what="delivery")
    time.sleep(0.5)
    # One lane, one destination, one transaction; u1 given in both forms
    # is one recipient, as first given.
    assert len(b.messages()) == 1
    assert b.messages()[0]["rcpts"] == ["u1@" + U, "u2@" + A,
                                        "u3@BÜCHER.test"]
    # Each recipient with two forms is logged once with the other.
    assert log_lines(d, "rcpt=<u1@bücher.test> (xn--bcher-kva.test)")
    assert log_lines(d, "rcpt=<u2@xn--bcher-kva.test> (bücher.test)")
    assert log_lines(d, "rcpt=<u3@BÜCHER.test> (xn--bcher-kva.test)")
    assert d.stop() == 0


def test_a_static_route_keyed_by_u_labels_serves_a_labels(daemon, backend):
    b = backend()
    d = daemon(relay_domains=(A,), extra=store_conf(b, key=U)).start()
    got, _ = transaction(d, ["u@" + A], utf8=False)
    assert got[0].startswith("250 2.1.5"), got
    b.wait_for(lambda: len(b.messages()) == 1, what="delivery")
    assert b.messages()[0]["rcpts"] == ["u@" + A]
    assert "SMTPUTF8" not in b.messages()[0]["mail_params"]
    r = ctl_json(d, "route", U)[0]
    assert r["domain"] == A and r["route"] == route(b)
    assert r["relay_domain"] is True
    rc, out, err = ctl(d, "route", "xn--zz.test")
    assert rc == 2 and "bad domain 'xn--zz.test': " in err
    assert "invalid punycode" in err
    assert d.stop() == 0


def test_recipients_file_with_u_labels(daemon, tmp_path):
    rfile = os.path.join(str(tmp_path), "recipients")
    with open(rfile, "w", encoding="utf-8") as f:
        f.write("Anna@BÜCHER.test\njürgen@%s\n" % A)
    d = daemon(relay_domains=(A,),
               extra='domain "%s" {\n recipients = "%s"\n}\n'
                     % (A, rfile)).start()
    got, _ = transaction(d, ["anna@" + A, "anna@" + U, "jürgen@" + U,
                             "bob@" + U, "bob@" + A])
    assert [g[:9] for g in got] == ["250 2.1.5"] * 3 + ["550 5.1.1"] * 2, got
    assert log_lines(d, "550 5.1.1 <bob@bücher.test> (xn--bcher-kva.test)")
    assert d.stop() == 0


def test_ctl_domain_filters_take_either_form(daemon):
    # Nothing listens on the route: the mail stays queued.
    d = daemon(relay_domains=(U,),
               extra='domain "%s" {\n route = "smtp:[127.0.0.1]:9"\n}\n'
                     % U).start()
    transaction(d, ["u@" + U])
    transaction(d, ["v@" + A], utf8=False)
    wait_for(lambda: log_lines(d, "status=deferred"), what="a deferral")
    for name in (U, A, "BÜCHER.test"):
        listed = ctl_json(d, "list", "--domain", name)
        assert len(listed) == 2, (name, listed)
    summary = ctl_json(d, "summary")[0]
    dests = [x["name"] for x in summary["destinations"]]
    assert len(dests) == 1, dests
    assert d.stop() == 0


def check(tmp_path, relay, extra=""):
    conf = os.path.join(str(tmp_path), "t.conf")
    with open(conf, "w", encoding="utf-8") as f:
        f.write('relay_domains = {%s}\n%s' % (relay, extra))
    p = subprocess.run([MXSPOOLD, "-t", "-c", conf], capture_output=True,
                       timeout=30)
    return (p.returncode, p.stdout.decode("utf-8"),
            p.stderr.decode("utf-8"), conf)


def test_dash_t_accepts_u_labels_and_shows_both_forms(tmp_path):
    rc, out, err, conf = check(tmp_path,
                               '"%s", "example.com", "café.test"' % U,
                               'domain "café.test" {\n}\n')
    assert rc == 0, err
    lines = out.splitlines()
    assert lines[:3] == [
        conf + ": relay_domains: bücher.test (xn--bcher-kva.test)",
        conf + ": relay_domains: café.test (xn--caf-dma.test)",
        conf + ": domain: café.test (xn--caf-dma.test)"]
    # The default postmaster is in the A-labels every next hop takes.
    assert lines[3:] == [conf + ": ok (postmaster <postmaster@%s>)" % A]


def test_dash_t_reports_bad_international_names_with_line(tmp_path):
    rc, out, err, conf = check(tmp_path, '"xn--zz.test",\n "☃.test"',
                               'domain "%s" {\n}\ndomain "%s" {\n}\n'
                               % (U, A))
    assert rc == 1 and out == ""
    assert err.splitlines() == [
        conf + ":1: relay_domains: bad domain name 'xn--zz.test': string "
        "contains invalid punycode data",
        conf + ":2: relay_domains: bad domain name '☃.test': string "
        "contains a disallowed character",
        conf + ":6: domain: 'xn--bcher-kva.test' is the same domain as "
        "'bücher.test'"]


def test_start_up_log_shows_both_forms(daemon):
    d = daemon(relay_domains=(U, "example.com")).start()
    assert log_lines(d, "config: relay_domains: bücher.test "
                        "(xn--bcher-kva.test)")
    assert not log_lines(d, "config: relay_domains: example.com")
    assert d.stop() == 0


def test_mx_lookups_ask_dns_for_the_a_labels(tmp_path):
    dns = Dnsmasq(tmp_path, ["--mx-host=%s,mx.%s,10" % (A, A),
                             "--host-record=mx.%s,203.0.113.7" % A]).start()
    try:
        conf = write_conf(tmp_path, [dns.port])
        out, _ = mxroute(conf, U, "BÜCHER.test", A, "xn--zz.test")
    finally:
        dns.stop()
    for ans in out[:3]:
        assert ans["status"] == "ok", ans
        assert ans["domain"] == A
        assert [c["name"] for c in ans["candidates"]] == ["mx." + A]
    assert out[3]["status"] != "ok" and out[3]["dsn"] == "5.1.2"
    assert "invalid punycode" in out[3]["reason"]
