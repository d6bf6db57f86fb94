"""End to end with a real mailbox store: mxspoold in front of Dovecot's LMTP
server delivering to Maildirs (dovecot.py). While Dovecot is down, mail
from several clients is held without a single notification; when it comes
back, every message lands in every recipient's Maildir exactly once, byte
for byte, and the spool empties. A recipient Dovecot does not know gets
exactly one DSN, and the message's other recipient still gets the mail."""

import email
import email.parser
import email.policy
import random
import re
import smtplib
import threading
import time

import pytest

from backend import Backend
from conftest import log_lines, wait_for
from smtphelp import spool_envelopes


USERS = ("alice", "bob", "carol", "dave")
HOSTNAME = "mx.test.example"
CLIENTS = 8
PER_CLIENT = 25


@pytest.fixture
def store(dovecot_store):
    return dovecot_store


@pytest.fixture
def recorder(tmp_path):
    """An SMTP server that accepts and records whatever is sent to it: the
    bounce_route, so that any DSN is seen."""
    b = Backend(str(tmp_path), name="recorder").start()
    yield b
    b.stop()


def config(dc, rec):
    return ('domain "example.com" {\n route = "%s"\n}\n'
            "retry {\n initial = 1s\n max_interval = 2s\n jitter = 0\n"
            " probe_interval = 1s\n}\n"
            'bounce_route = "smtp:[127.0.0.1]:%d"\n' % (dc.route(), rec.port))






def make_message(client, n, rnd):
    """A message with a unique Message-ID and the kinds of lines that
    relays get wrong: leading dots, a lone dot, 998-octet lines, trailing
    blanks, empty lines, 8-bit text; a few are large."""
    mid = "<e2e-%d-%d@sender.test>" % (client, n)
    lines = [
        "From: Client %d <client%d@sender.test>" % (client, client),
        "To: undisclosed-recipients:;",
        "Subject: e2e %d/%d" % (client, n),
        "Message-ID: " + mid,
        "Date: Tue, 24 Nov 2026 06:00:00 +0000",
        "MIME-Version: 1.0",
        "Content-Type: text/plain; charset=utf-8",
        "Content-Transfer-Encoding: 8bit",
        "",
        "Hello from client %d, message %d." % (client, n),
        ".a line with a leading dot",
        "..two dots",
        ".",
        "trailing blanks   \t",
        "",
        "",
        "x" * 998,
        "Gr\u00fc\u00dfe, \u00e7a va, \u65e5\u672c",
        "From the start of a line",
    ]
    big = n % 10 == 7
    for i in range(rnd.randint(1, 40) + (3000 if big else 0)):
        lines.append("%05d %s" % (i, "y" * rnd.randint(0, 120)))
    lines.append("-- ")
    lines.append("the end")
    body = ("\r\n".join(lines) + "\r\n").encode("utf-8")
    return mid, body


def send_all(d, plan):
    """Sends each client's messages over its own connection, all clients at
    once. plan: {client: [(mid, body, rcpts)]}. Returns {mid: final reply}
    and the errors seen."""
    replies = {}
    errors = []
    lock = threading.Lock()

    def run(client, msgs):
        try:
            s = smtplib.SMTP("127.0.0.1", d.port, timeout=60)
            s.ehlo("client%d.sender.test" % client)
            for mid, body, rcpts in msgs:
                code, text = s.mail("client%d@sender.test" % client,
                                    ["BODY=8BITMIME"])
                assert code == 250, (mid, code, text)
                for r in rcpts:
                    code, text = s.rcpt(r)
                    assert code == 250, (mid, r, code, text)
                code, text = s.data(body)
                with lock:
                    replies[mid] = (code, text.decode())
            s.quit()
        except Exception as e:  # reported by the test, not lost in a thread
            with lock:
                errors.append("client %d: %r" % (client, e))

    threads = [threading.Thread(target=run, args=(c, msgs))
               for c, msgs in plan.items()]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
        assert not t.is_alive(), "a client hung"
    return replies, errors


def header_fields(block):
    """The header fields of block (LF lines), each with its folded lines."""
    fields = []
    for line in block.split(b"\n"):
        if line[:1] in (b" ", b"\t") and fields:
            fields[-1] += b"\n" + line
        elif line:
            fields.append(line)
    return fields


def check_stored(stored, body, user):
    """stored (a Maildir file) is body (as sent, CRLF) after the headers
    the relays add: Dovecot's Return-Path, Delivered-To and Received, and
    mxspool's Received; nothing else differs by a byte."""
    sent = body.replace(b"\r\n", b"\n")  # Maildir files end lines in LF
    assert stored.endswith(sent), "body changed for %s:\n%r" % (user, stored[:400])
    added = header_fields(stored[:len(stored) - len(sent)])
    # Dovecot writes Delivered-To only when the transaction had one
    # recipient (lmtp_hdr_delivery_address).
    if len(added) == 4:
        assert added.pop(1) == b"Delivered-To: %s@example.com" % user.encode()
    names = [f.split(b":", 1)[0].lower() for f in added]
    assert names == [b"return-path", b"received", b"received"], added
    assert b"by store.test.example with LMTP" in added[1], added[1]
    assert b"by " + HOSTNAME.encode() in added[2], added[2]


def sent_pairs(d):
    """(qid, recipient) of every status=sent line."""
    out = []
    for l in log_lines(d, "status=sent"):
        m = re.search(r" (\w+): to=<([^>]*)>", l)
        assert m, l
        out.append(m.groups())
    return out


def message_id(data):
    h = email.parser.BytesHeaderParser(policy=email.policy.compat32).parsebytes(data)
    return h["Message-ID"]


def make_plan(dc, seed):
    """CLIENTS x PER_CLIENT messages, each for 1-3 of USERS: the plan for
    send_all() and {mid: (body, sorted users)}."""
    rnd = random.Random(seed)
    plan = {}
    expect = {}
    for c in range(CLIENTS):
        plan[c] = []
        for n in range(PER_CLIENT):
            mid, body = make_message(c, n, rnd)
            users = rnd.sample(USERS, rnd.randint(1, 3))
            plan[c].append((mid, body, [dc.address(u) for u in users]))
            expect[mid] = (body, sorted(users))
    assert len(expect) == CLIENTS * PER_CLIENT == 200
    return plan, expect


def send_and_check_queued(d, plan):
    replies, errors = send_all(d, plan)
    assert errors == []
    assert len(replies) == 200
    bad = {m: r for m, r in replies.items()
           if r[0] != 250 or not r[1].startswith("2.0.0 Ok: queued as ")}
    assert bad == {}
    qids = {r[1].rsplit(" ", 1)[1] for r in replies.values()}
    assert len(qids) == 200


def check_held(d, dc, recorder):
    """Mail is held for the down store: probes fail on a short backoff,
    each failure is a 4xx deferral, and nobody hears of it."""
    wait_for(lambda: len(log_lines(d, "probing")) >= 2, timeout=20,
             what="two probes")
    time.sleep(1)
    assert log_lines(d, "destination failing")
    deferred = log_lines(d, "status=deferred")
    assert deferred
    assert all("dsn=4." in l for l in deferred), deferred
    assert not log_lines(d, "status=bounced")
    assert not log_lines(d, "notification")
    assert recorder.messages() == [], "a down store caused a notification"
    assert d.proc.poll() is None


def stored_copies(dc, expect):
    """{(user, mid): [paths]}, checking every copy byte for byte."""
    seen = {}
    for u in USERS:
        for path, data in dc.messages(u):
            mid = message_id(data)
            assert mid in expect, "unexpected message %s in %s" % (mid, path)
            seen.setdefault((u, mid), []).append(path)
            check_stored(data, expect[mid][0], u)
    want = {(u, mid) for mid, (_, users) in expect.items() for u in users}
    assert set(seen) == want
    return seen


def test_two_hundred_messages_held_while_dovecot_is_down_arrive_once_when_it_returns(
        daemon, store, recorder):
    dc = store(users=USERS)
    d = daemon(extra=config(dc, recorder)).start()
    # The store goes down before any mail comes in.
    dc.stop()
    plan, expect = make_plan(dc, 6)
    send_and_check_queued(d, plan)
    check_held(d, dc, recorder)
    assert not log_lines(d, "status=sent")
    assert dc.count() == 0

    # The store comes back on the same port.
    dc.start()
    t0 = time.monotonic()
    want = sum(len(u) for _, u in expect.values())
    wait_for(lambda: dc.count() >= want, timeout=60,
             what="%d deliveries (have %d)" % (want, dc.count()))
    drained = time.monotonic() - t0
    wait_for(lambda: len(log_lines(d, ": removed")) >= 200, timeout=30,
             what="the spool to empty")
    print("\ndrain: %d deliveries of 200 messages in %.2fs after dovecot "
          "returned (%d LMTP connections)"
          % (want, drained, dc.log().count("Connect from")))
    time.sleep(2)  # time for a duplicate to show up

    # Exactly once per recipient, byte for byte.
    seen = stored_copies(dc, expect)
    dups = {k: v for k, v in seen.items() if len(v) > 1}
    assert dups == {}

    sent = sent_pairs(d)
    assert len(sent) == want
    assert len(set(sent)) == want
    assert len(log_lines(d, "destination is back")) == 1
    assert not log_lines(d, "status=bounced")
    assert not log_lines(d, "notification")
    assert recorder.messages() == []
    assert len(set(log_lines(d, ": removed"))) == 200
    assert d.stop() == 0
    assert spool_envelopes(d) == {}
    for word in ("Fatal:", "Panic:", "Error:"):
        assert word not in dc.log(), dc.log()


def test_dovecot_stopping_in_the_middle_of_the_drain_loses_and_bounces_nothing(
        daemon, store, recorder):
    dc = store(users=USERS)
    d = daemon(extra=config(dc, recorder)).start()
    dc.stop()
    plan, expect = make_plan(dc, 7)
    want = sum(len(u) for _, u in expect.values())
    send_and_check_queued(d, plan)
    check_held(d, dc, recorder)

    # Back, and gone again part way through the drain.
    dc.start()
    wait_for(lambda: dc.count() >= want // 4, timeout=30, what="some deliveries")
    probes = len(log_lines(d, "probing"))
    dc.stop()
    before = dc.count()
    print("\nstopped dovecot after %d of %d deliveries" % (before, want))
    assert before < want, "the drain finished before the store went down"
    wait_for(lambda: len(log_lines(d, "probing")) > probes, timeout=20,
             what="a probe after the second outage")
    assert not log_lines(d, "status=bounced")
    assert recorder.messages() == []

    dc.start()
    wait_for(lambda: len(log_lines(d, ": removed")) >= 200, timeout=60,
             what="the spool to empty (%d deliveries of %d)"
             % (dc.count(), want))
    time.sleep(2)
    seen = stored_copies(dc, expect)
    # At least once: a message can arrive twice only if Dovecot saved it
    # and went away before mxspool read the reply, and each connection has
    # one message in flight at a time (max_connections is 20).
    dups = {k: len(v) for k, v in seen.items() if len(v) > 1}
    dup_msgs = {mid for (_, mid) in dups}
    print("duplicates after the interrupted drain: %d extra copies of %d "
          "messages"
          % (sum(dups.values()) - len(dups), len(dup_msgs)))
    assert all(n == 2 for n in dups.values()), dups
    assert len(dup_msgs) <= 20, dups
    # mxspool itself took each recipient's 250 once and only once.
    sent = sent_pairs(d)
    assert len(sent) == want
    assert len(set(sent)) == want
    assert not log_lines(d, "status=bounced")
    assert not log_lines(d, "notification")
    assert recorder.messages() == []
    assert d.stop() == 0
    assert spool_envelopes(d) == {}


def test_a_user_dovecot_does_not_know_gets_one_dsn_and_the_other_recipient_the_mail(
        daemon, store, recorder):
    dc = store(users=("alice",))
    d = daemon(extra=config(dc, recorder)).start()
    body = (b"From: Sender <sender@sender.test>\r\n"
            b"Subject: one known, one not\r\n"
            b"Message-ID: <unknown-user@sender.test>\r\n\r\n"
            b".dot\r\nhello\r\n")
    s = smtplib.SMTP("127.0.0.1", d.port, timeout=30)
    assert s.sendmail("sender@sender.test",
                      ["alice@example.com", "nosuchuser@example.com"],
                      body) == {}
    # The same fault with the null sender: returned to nobody.
    assert s.sendmail("", ["nosuchuser@example.com"],
                      b"Subject: null sender\r\n"
                      b"Message-ID: <null@sender.test>\r\n\r\nhi\r\n") == {}
    s.quit()

    wait_for(lambda: len(dc.messages("alice")) == 1, what="alice's copy")
    recorder.wait_for(lambda: len(recorder.messages()) >= 1, timeout=30,
                      what="the DSN")
    # Both messages and the DSN itself leave the spool.
    wait_for(lambda: len(log_lines(d, ": removed")) == 3, what="all removed")
    time.sleep(2)  # time for a second notification to show up
    msgs = recorder.messages()
    assert len(msgs) == 1, [m["data"][:300] for m in msgs]
    dsn = msgs[0]
    assert dsn["mail_from"] == ""
    assert dsn["rcpts"] == ["sender@sender.test"]

    msg = email.message_from_bytes(dsn["data"], policy=email.policy.default)
    assert msg.get_content_type() == "multipart/report"
    assert msg.get_param("report-type") == "delivery-status"
    parts = list(msg.iter_parts())
    assert parts[1].get_content_type() == "message/delivery-status"
    groups = [dict(g.items()) for g in parts[1].get_payload()]
    per_msg, per_rcpt = groups[0], groups[1:]
    assert per_msg["Reporting-MTA"] == "dns; " + HOSTNAME
    assert len(per_rcpt) == 1, per_rcpt
    r = per_rcpt[0]
    assert r["Final-Recipient"] == "rfc822; nosuchuser@example.com"
    assert r["Action"] == "failed"
    assert r["Status"] == "5.1.1"
    assert "User doesn't exist" in r["Diagnostic-Code"]
    assert "store.test.example" in r.get("Remote-MTA", "") or \
        "127.0.0.1" in r.get("Remote-MTA", ""), r
    assert b"<unknown-user@sender.test>" in dsn["data"]
    assert b"alice@example.com" not in parts[1].as_bytes()

    (path, data), = dc.messages("alice")
    check_stored(data, body, "alice")
    assert dc.messages("nosuchuser") == []

    bounced = log_lines(d, "status=bounced")
    assert len(bounced) == 2, bounced
    assert all("to=<nosuchuser@example.com>" in l for l in bounced)
    sent = log_lines(d, "status=sent")
    assert len(sent) == 2, sent  # alice's copy and the DSN to its sender
    assert len([l for l in sent if "to=<alice@example.com>" in l]) == 1
    assert len(log_lines(d, "notification")) == 1
    assert d.stop() == 0
    assert spool_envelopes(d) == {}
