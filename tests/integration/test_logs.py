"""mxspoold's log is read by the tools mail operators already run: lines
in the syslog shape with a program name per role (mxspool/smtpd, qmgr,
smtp, lmtp, bounce), Postfix's words for each event, and the real
pflogsumm counting received, delivered, deferred, bounced and rejected
mail from a log this test makes."""

import re
import smtplib
import subprocess
import time

from conftest import log_lines, need, wait_for
from test_delivery import config, dead_store

LINE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z (\S+) "
                  r"mxspool/(smtpd|qmgr|smtp|lmtp|bounce|master)\[\d+\]: ")


def totals(log):
    """pflogsumm's Grand Totals: {"received": n, ...}."""
    r = subprocess.run([need("pflogsumm", "pflogsumm"),
                        "--syslog-name=mxspool", log],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    out = {}
    for m in re.finditer(r"^\s+(\d+)\s+(received|delivered|deferred|bounced|"
                         r"rejected)\b", r.stdout, re.M):
        out.setdefault(m.group(2), int(m.group(1)))
    return out, r.stdout


def test_pflogsumm_counts_what_happened(daemon, backend, tmp_path):
    store = backend(rcpt={"bad@example.com": "550 5.1.1 no such user"})
    rec = backend()
    dead = dead_store()
    d = daemon(relay_domains=("example.com", "example.net"),
               extra=config(store, rec, retry="rejection_guard = false") +
               'domain "example.net" { route = "smtp:[127.0.0.1]:%d" }\n'
               % dead.port).start()
    s = smtplib.SMTP("127.0.0.1", d.port, timeout=30)
    s.ehlo("client.test")
    for i, rcpt in enumerate(["ok1@example.com", "ok2@example.com",
                              "bad@example.com", "w1@example.net",
                              "w2@example.net"]):
        s.sendmail("alice@sender.test", [rcpt],
                   b"Subject: %d\r\nMessage-ID: <m%d@sender.test>\r\n\r\nx\r\n"
                   % (i, i))
    try:
        s.sendmail("alice@sender.test", ["x@elsewhere.test"], b"x\r\n")
    except smtplib.SMTPRecipientsRefused:
        pass
    s.quit()
    store.wait_for(lambda: len(store.messages()) == 2, what="deliveries")
    rec.wait_for(lambda: len(rec.messages()) == 1, what="the bounce")
    wait_for(lambda: len(log_lines(d, "status=deferred")) >= 2,
             what="the deferrals")
    time.sleep(2.5)                 # probes of the dead store meanwhile
    assert d.stop() == 0
    log = d.log()
    lines = [l for l in log.splitlines() if l]
    assert all(LINE.match(l) for l in lines), \
        [l for l in lines if not LINE.match(l)][:3]
    assert {LINE.match(l).group(1) for l in lines} == {d.hostname}

    got, report = totals(d.logpath)
    # The bounce is delivered too; it was not received from a client.
    assert got == {"received": 5, "delivered": 3, "deferred": 2,
                   "bounced": 1, "rejected": 1}, report

    def role(needle):
        return {LINE.match(l).group(2) for l in lines if needle in l}

    assert role(": client=") == {"smtpd"}
    assert role(": from=<alice@sender.test>") == {"qmgr"}
    assert role("status=sent") == {"smtp"}
    assert role("status=bounced") == {"smtp"}
    assert role("sender non-delivery notification: ") == {"bounce"}
    # Each message's Message-ID once.
    for i in range(5):
        assert len(log_lines(d, ": message-id=<m%d@sender.test>" % i)) == 1
    # A refusal before any recipient was accepted has no queue id, and
    # says everything Postfix's does.
    rej = [l for l in lines if "reject: RCPT" in l]
    assert len(rej) == 1 and role("reject: RCPT") == {"smtpd"}
    assert rej[0].split("]: ", 1)[1] == (
        "NOQUEUE: reject: RCPT from [127.0.0.1]:%s: 554 5.7.1 "
        "<x@elsewhere.test>: Relay access denied; from=<alice@sender.test> "
        "to=<x@elsewhere.test> proto=ESMTP helo=<client.test>"
        % rej[0].split("]:")[2].split(":")[0])
    assert not re.search(r"[0-9A-Z]{12}: client=.*\n[^\n]*NOQUEUE", log)
    # Each held message is said deferred once, whatever the probes do.
    for rcpt in ("w1@example.net", "w2@example.net"):
        said = [l for l in lines if "to=<%s>" % rcpt in l]
        assert len(said) == 1 and "status=deferred" in said[0], said
    # The probes every second say nothing more at info level.
    probes = [l for l in lines if "smtp:[127.0.0.1]:%d" % dead.port in l
              and "debug:" not in l]
    assert len(probes) == 1 and "destination failing" in probes[0], probes


def test_a_failing_store_logs_one_line_per_probe(daemon, backend):
    """A store that answers, but 421 to everything: after the first
    failure, each probe is one line."""
    store = backend(greeting="421 4.3.2 maintenance")
    d = daemon(extra=config(store)).start()
    s = smtplib.SMTP("127.0.0.1", d.port, timeout=30)
    s.sendmail("a@sender.test", ["u1@example.com"], b"Subject: a\r\n\r\na\r\n")
    s.sendmail("a@sender.test", ["u2@example.com"], b"Subject: b\r\n\r\nb\r\n")
    s.quit()
    wait_for(lambda: len(log_lines(d, "probe failed")) >= 2, timeout=30,
             what="two probes")
    assert d.stop() == 0
    lines = [l for l in d.log().splitlines() if "debug:" not in l]
    first = [i for i, l in enumerate(lines) if "probe failed" in l][0]
    second = [i for i, l in enumerate(lines) if "probe failed" in l][1]
    between = lines[first + 1:second]
    # No "probing" line, no client line, no deferral of the probe's
    # message: the verdict alone.
    assert between == [], between


def test_lmtp_deliveries_are_logged_as_lmtp(daemon, backend):
    """Postfix's lmtp client logs its deliveries as postfix/lmtp: so does
    mxspoold for an LMTP route, and log tools group them apart."""
    store = backend(lmtp=True)
    d = daemon(extra=config(store)).start()
    s = smtplib.SMTP("127.0.0.1", d.port, timeout=30)
    s.sendmail("a@sender.test", ["u1@example.com"], b"Subject: a\r\n\r\na\r\n")
    s.quit()
    store.wait_for(lambda: len(store.messages()) == 1, what="the delivery")
    wait_for(lambda: log_lines(d, "status=sent"), what="the log line")
    assert d.stop() == 0
    sent = [LINE.match(l) for l in d.log().splitlines() if "status=sent" in l]
    assert [m.group(2) for m in sent] == ["lmtp"], sent
    got, report = totals(d.logpath)
    assert got["delivered"] == 1 and got["received"] == 1, report
