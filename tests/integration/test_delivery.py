"""Delivery and the retry scheduler, against the real daemon and a
scriptable backend (backend.py): mail held while the store is down is
never bounced, is probed one connection at a time, and drains the moment
the store is back."""

import email
import email.policy
import smtplib
import time
import types

import pytest

from conftest import free_port, wait_for, log_lines


def route(b):
    if b.lmtp:
        return "lmtp:[127.0.0.1]:%d" % b.port
    return "smtp:[127.0.0.1]:%d" % b.port


def config(store, recorder=None, retry="", domain_extra="", extra=""):
    """example.com goes to the store; notifications to the recorder. The
    retry options given replace the quick defaults (an option is written
    once: the loader refuses it twice)."""
    text = 'domain "example.com" {\n route = "%s"\n %s\n}\n' % (route(store), domain_extra)
    given = {l.split("=")[0].strip() for l in retry.splitlines() if "=" in l}
    quick = [o for o in ("initial = 1s", "max_interval = 4s", "jitter = 0",
                         "probe_interval = 1s")
             if o.split("=")[0].strip() not in given]
    text += "retry {\n %s\n %s\n}\n" % ("\n ".join(quick), retry)
    if recorder is not None:
        text += 'bounce_route = "%s"\n' % route(recorder)
    return text + extra


def dead_store(port=None):
    """A store nothing listens for, as route() and config() take it."""
    return types.SimpleNamespace(lmtp=False, port=port or free_port())


def send(d, n=1, rcpts=("user@example.com",), sender="alice@sender.test",
         body=b"Subject: test\r\n\r\nhello\r\n"):
    ids = []
    s = smtplib.SMTP("127.0.0.1", d.port, timeout=30)
    for i in range(n):
        msg = body.replace(b"Subject: test", b"Subject: test %d" % i)
        resp = s.sendmail(sender, list(rcpts), msg)
        assert resp == {}
        ids.append(s.noop())  # keep the session busy in order
    s.quit()
    return n






def parse_dsn(raw):
    """The delivery-status fields of a DSN: (message fields, [rcpt fields])."""
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert msg.get_content_type() == "multipart/report"
    assert msg.get_param("report-type") == "delivery-status"
    parts = list(msg.iter_parts())
    status = parts[1]
    assert status.get_content_type() == "message/delivery-status"
    groups = [dict(g.items()) for g in status.get_payload()]
    return msg, groups[0], groups[1:]


@pytest.fixture
def store(backend):
    return backend


def test_backend_up_delivers_byte_exact_and_empties_the_spool(daemon, store):
    b = store()
    d = daemon(extra=config(b)).start()
    body = b"Subject: dots\r\n\r\n.starts with a dot\r\n..two\r\nend\r\n"
    s = smtplib.SMTP("127.0.0.1", d.port, timeout=30)
    s.sendmail("alice@sender.test", ["bob@example.com", "carol@example.com"], body)
    s.quit()
    b.wait_for(lambda: len(b.messages()) == 1, what="delivery")
    m = b.messages()[0]
    assert sorted(m["rcpts"]) == ["bob@example.com", "carol@example.com"]
    assert m["mail_from"] == "alice@sender.test"
    # What arrives is what was sent, after mxspool's Received header.
    assert m["data"].startswith(b"Received: from ")
    assert m["data"].endswith(body)
    assert b"\r\n..starts with a dot\r\n" in m["raw"]   # stuffed on the wire
    wait_for(lambda: log_lines(d, ": removed"), what="removal")
    sent = log_lines(d, "status=sent")
    assert len(sent) == 2
    assert "relay=127.0.0.1[127.0.0.1]:%d" % b.port in sent[0]
    assert "dsn=2.0.0" in sent[0]
    assert d.stop() == 0


def test_down_store_is_probed_one_at_a_time_never_bounced_then_drained(daemon, store):
    b = store(greeting="421 4.3.2 store is down")
    rec = store()
    d = daemon(extra=config(b, rec, retry="multiplier = 2\n max_interval = 8s")).start()
    send(d, 20)
    time.sleep(8)
    # Probes only: one connection at a time, each closed before the next,
    # with growing gaps (1s, 2s, 4s...).
    ev = b.events()
    conns = [e for e in ev if e["ev"] == "connect"]
    assert 2 <= len(conns) <= 5, conns
    opened = 0
    for e in ev:
        if e["ev"] == "connect":
            opened += 1
            assert opened == 1, "two probes at once"
        elif e["ev"] == "close":
            opened -= 1
    gaps = [b2["t"] - a["t"] for a, b2 in zip(conns, conns[1:])]
    assert all(g2 > g1 * 1.5 for g1, g2 in zip(gaps, gaps[1:])), gaps
    assert b.messages() == []
    assert rec.messages() == [], "a down store caused a notification"
    assert not log_lines(d, "status=bounced")
    # The store comes back: everything held drains at once, exactly once.
    t0 = time.monotonic()
    b.update(greeting="220 store.test.example ready")
    b.wait_for(lambda: len(b.messages()) == 20, timeout=30, what="drain")
    drained = time.monotonic() - t0
    assert drained < 8 + 5, "the drain waited for per-message backoff"
    subjects = sorted(m["data"].split(b"Subject: ")[1].split(b"\r\n")[0] for m in b.messages())
    assert subjects == sorted(b"test %d" % i for i in range(20))
    assert rec.messages() == []
    wait_for(lambda: len(log_lines(d, ": removed")) == 20, what="spool empty")
    assert len(log_lines(d, "destination is back")) == 1
    assert d.stop() == 0


def test_refused_connections_hold_mail_without_spending_attempts(daemon, store, tmp_path):
    port = free_port()
    rec = store()

    dead = dead_store(port)
    d = daemon(extra=config(dead, rec)).start()
    send(d, 10)
    time.sleep(3.5)
    # The first refusal deferred the oldest message, once; then the
    # destination is probed every second with a connection only (a
    # refused connection costs the store nothing), said once at info
    # level and at debug level after that. No other message spent an
    # attempt: each is said deferred once, as held (for log tools).
    deferred = log_lines(d, "status=deferred")
    tried = [l for l in deferred if "temporarily suspended" not in l]
    assert len(tried) == 1, deferred
    assert "Connection refused" in tried[0]
    assert "dsn=4.4.1" in tried[0]
    held = [l for l in deferred if "temporarily suspended" in l]
    assert len({l.split("]: ")[1].split(":")[0] for l in held}) == len(held) == 9, held
    assert len(log_lines(d, "destination failing")) == 1
    assert "probing every second" in log_lines(d, "destination failing")[0]
    probes = log_lines(d, "still refused")
    assert 2 <= len(probes) <= 4, probes
    assert all("debug:" in l for l in probes)
    assert rec.messages() == []
    assert d.stop() == 0


def test_a_refusing_store_is_noticed_within_a_second_of_its_return(daemon, store):
    """Greeting probes every second, whatever the backoff: the store's
    return is seen within about a second, and the held mail drains."""
    b = store(listen=False)
    d = daemon(extra=config(b, retry="initial = 30s\n max_interval = 60s")).start()
    send(d, 5)
    wait_for(lambda: log_lines(d, "still refused"), what="a second probe")
    time.sleep(2)
    t0 = time.monotonic()
    b.update(listen=True)
    b.wait_for(lambda: len(b.messages()) == 5, timeout=20, what="the drain")
    assert time.monotonic() - t0 < 3.0
    assert len(log_lines(d, "destination is back")) == 1
    # A probe that connected asked nothing of the store but its greeting.
    assert d.stop() == 0


def test_a_4xx_then_2xx_delivers_once(daemon, store):
    b = store(rcpt={"*": "451 4.3.0 try again later"})
    d = daemon(extra=config(b)).start()
    send(d, 1)
    wait_for(lambda: log_lines(d, "status=deferred"), what="a deferral")
    assert "451 4.3.0 try again later" in log_lines(d, "status=deferred")[0]
    b.update(rcpt={})
    b.wait_for(lambda: len(b.messages()) == 1, timeout=15, what="delivery")
    time.sleep(2)
    assert len(b.messages()) == 1
    assert d.stop() == 0


def test_one_recipient_5xx_one_2xx_gives_one_dsn_naming_the_failed_one(daemon, store):
    b = store(rcpt={"bad@example.com": "550 5.1.1 no such user"})
    rec = store()
    d = daemon(extra=config(b, rec)).start()
    s = smtplib.SMTP("127.0.0.1", d.port, timeout=30)
    s.sendmail("alice@sender.test", ["good@example.com", "bad@example.com"],
               b"Subject: two\r\nMessage-ID: <two@sender.test>\r\n\r\nhi\r\n")
    s.quit()
    b.wait_for(lambda: len(b.messages()) == 1, what="delivery")
    assert b.messages()[0]["rcpts"] == ["good@example.com"]
    rec.wait_for(lambda: len(rec.messages()) == 1, what="the DSN")
    time.sleep(1)
    assert len(rec.messages()) == 1
    dsn = rec.messages()[0]
    assert dsn["mail_from"] == ""
    assert dsn["rcpts"] == ["alice@sender.test"]
    msg, per_msg, per_rcpt = parse_dsn(dsn["data"])
    assert per_msg["Reporting-MTA"] == "dns; mx.test.example"
    assert len(per_rcpt) == 1
    assert per_rcpt[0]["Final-Recipient"] == "rfc822; bad@example.com"
    assert per_rcpt[0]["Action"] == "failed"
    assert per_rcpt[0]["Status"] == "5.1.1"
    assert "no such user" in per_rcpt[0]["Diagnostic-Code"]
    assert b"Message-ID: <two@sender.test>" in dsn["data"]
    assert len(log_lines(d, "status=bounced")) == 1
    wait_for(lambda: log_lines(d, ": removed"), what="removal")
    assert d.stop() == 0


def test_null_sender_mail_never_gets_a_dsn(daemon, store):
    b = store(rcpt={"*": "550 5.1.1 no such user", "ok@example.com": "250 2.1.5 Ok"})
    rec = store()
    d = daemon(extra=config(b, rec)).start()
    # A store that has accepted someone: its 5xx for an unknown user is
    # believed (the rejection guard holds 5xx from a store with no 2xx).
    send(d, 1, rcpts=("ok@example.com",))
    b.wait_for(lambda: len(b.messages()) == 1, what="a delivery")
    send(d, 1, sender="")
    wait_for(lambda: log_lines(d, "status=bounced"), what="the 5xx")
    wait_for(lambda: log_lines(d, ": removed"), what="removal")
    time.sleep(1)
    assert rec.messages() == []
    assert d.stop() == 0


def test_warn_after_sends_one_delay_notice_and_max_age_returns_the_mail(daemon, store):
    rec = store()

    dead = dead_store()
    d = daemon(extra=config(dead, rec, retry="warn_after = 2s\n max_age = 5s")).start()
    send(d, 1)
    rec.wait_for(lambda: len(rec.messages()) >= 1, timeout=20, what="the delay notice")
    _, _, rc = parse_dsn(rec.messages()[0]["data"])
    assert rc[0]["Action"] == "delayed"
    assert rc[0]["Status"].startswith("4.")
    rec.wait_for(lambda: len(rec.messages()) >= 2, timeout=20, what="the return")
    _, _, rc = parse_dsn(rec.messages()[1]["data"])
    assert rc[0]["Action"] == "failed"
    assert rc[0]["Final-Recipient"] == "rfc822; user@example.com"
    wait_for(lambda: log_lines(d, ": removed"), what="removal")
    time.sleep(2)
    assert len(rec.messages()) == 2, "more than one notice of each kind"
    assert len(log_lines(d, "status=expired")) == 1
    assert d.stop() == 0


def test_lmtp_gives_a_result_per_recipient(daemon, store):
    b = store(lmtp=True, eod={"a@example.com": "250 2.0.0 ok",
                              "b@example.com": "452 4.2.2 mailbox full",
                              "c@example.com": "550 5.1.1 unknown"})
    rec = store()
    d = daemon(extra=config(b, rec)).start()
    send(d, 1, rcpts=("a@example.com", "b@example.com", "c@example.com"))
    rec.wait_for(lambda: len(rec.messages()) == 1, what="the DSN for c")
    _, _, rc = parse_dsn(rec.messages()[0]["data"])
    assert [r["Final-Recipient"] for r in rc] == ["rfc822; c@example.com"]
    wait_for(lambda: log_lines(d, "to=<b@example.com>"), what="b's result")
    assert "status=deferred" in log_lines(d, "to=<b@example.com>")[0]
    assert "status=sent" in log_lines(d, "to=<a@example.com>")[0]
    # b is retried alone once its mailbox has room.
    b.update(eod={})
    wait_for(lambda: any("status=sent" in l for l in log_lines(d, "to=<b@example.com>")),
             timeout=15, what="b delivered")
    later = b.messages()[-1]
    assert later["rcpts"] == ["b@example.com"]
    assert len([l for l in log_lines(d, "to=<a@example.com>") if "status=sent" in l]) == 1
    assert d.stop() == 0


def test_many_messages_share_few_connections(daemon, store):
    b = store()
    d = daemon(extra=config(b, retry="recovery_connections = 2\n max_connections = 2")).start()
    send(d, 40)
    b.wait_for(lambda: len(b.messages()) == 40, timeout=30, what="40 deliveries")
    assert b.connections() <= 2 + 1   # a session may be replaced once
    per_conn = {}
    for m in b.messages():
        per_conn[m["conn"]] = per_conn.get(m["conn"], 0) + 1
    assert max(per_conn.values()) >= 10
    assert d.stop() == 0


def test_mail_deferred_before_a_restart_is_delivered_after_it(daemon, store):
    b = store(greeting="421 4.3.2 down")
    d = daemon(extra=config(b)).start()
    send(d, 5)
    wait_for(lambda: log_lines(d, "destination failing") or
             log_lines(d, "status=deferred"), what="a failure")
    assert d.stop() == 0
    b.update(greeting="220 store ready")
    d.start()
    b.wait_for(lambda: len(b.messages()) == 5, timeout=20, what="delivery after restart")
    # The restart read the counters, not the messages.
    assert ": 5 messages (0 held) in 1 lanes, opened in" in d.log()
    assert d.stop() == 0


def test_mx_routing_through_dnsmasq(daemon, store, tmp_path):
    from dnsmasq import Dnsmasq
    b = store()
    dns = Dnsmasq(tmp_path, ["--mx-host=relay.test,mx1.relay.test,10",
                             "--host-record=mx1.relay.test,127.0.0.1"]).start()
    try:
        extra = ('dns_servers = {"127.0.0.1:%d"}\n' % dns.port +
                 'domain "example.com" { route = "smtp:relay.test:%d" }\n' % b.port)
        d = daemon(extra=extra).start()
        send(d, 2)
        b.wait_for(lambda: len(b.messages()) == 2, what="delivery by MX")
        assert dns.queries("MX", "relay.test") >= 1
        assert "relay=mx1.relay.test[127.0.0.1]:%d" % b.port in log_lines(d, "status=sent")[0]
        assert d.stop() == 0
    finally:
        dns.stop()


def test_an_mx_pointing_back_at_this_host_defers_as_a_loop(daemon, store, tmp_path):
    from dnsmasq import Dnsmasq
    rec = store()
    dns = Dnsmasq(tmp_path, ["--mx-host=example.com,mx.test,10",
                             "--host-record=mx.test,127.0.0.1"], local=("test", "example.com")).start()
    try:
        extra = ('dns_servers = {"127.0.0.1:%d"}\n' % dns.port +
                 'bounce_route = "%s"\n' % route(rec))
        d = daemon(extra=extra).start()
        send(d, 1)
        wait_for(lambda: log_lines(d, "loops back to myself"), what="the loop")
        deferred = log_lines(d, "status=deferred")
        assert deferred and "loops back to myself" in deferred[0]
        time.sleep(1)
        assert not log_lines(d, "status=bounced")
        assert rec.messages() == []
        assert d.stop() == 0
    finally:
        dns.stop()


def test_received_header_names_a_client_whose_ptr_resolves_back(daemon, store, tmp_path):
    from dnsmasq import Dnsmasq
    b = store()
    dns = Dnsmasq(tmp_path, ["--host-record=client.test,127.0.0.1"],
                  local=("test", "in-addr.arpa")).start()
    try:
        d = daemon(extra=config(b) + 'dns_servers = {"127.0.0.1:%d"}\n' % dns.port).start()
        time.sleep(0.2)
        send(d, 1)
        b.wait_for(lambda: len(b.messages()) == 1, what="delivery")
        first = b.messages()[0]["data"].split(b"\r\n")[0]
        assert first.endswith(b"(client.test [127.0.0.1])"), first
        assert d.stop() == 0
    finally:
        dns.stop()


def test_recovery_starts_slow_and_widens_to_max_connections(daemon, store):
    b = store(greeting="421 4.3.2 store is down")
    d = daemon(extra=config(b, retry="recovery_connections = 2\n max_connections = 8\n"
                                     " max_msgs_per_connection = 1000")).start()
    send(d, 150)
    wait_for(lambda: log_lines(d, "destination failing"), what="the outage")
    b.update(greeting="220 store ready", stall={"eod": 0.05})
    b.wait_for(lambda: len(b.messages()) == 150, timeout=60, what="the drain")
    back = [e for e in b.events() if e["ev"] == "message"][0]["t"]
    series = [(t, n) for t, n in b.concurrency() if t >= back - 1]
    early = max(n for t, n in series if t < back + 0.8)
    peak = max(n for t, n in series)
    assert early <= 2, series[:10]
    assert peak > 2, "concurrency never widened"
    assert peak <= 8
    assert d.stop() == 0


def test_cluster_nodes_splits_the_stores_connections(daemon, store):
    """One node of four with max_connections = 8 drains a recovered
    store over its share, ceil(8 / 4) = 2 connections, never more."""
    b = store(greeting="421 4.3.2 store is down")
    d = daemon(extra=config(b, retry="recovery_connections = 8\n max_connections = 8\n"
                                     " max_msgs_per_connection = 5\n cluster_nodes = 4")).start()
    send(d, 60)
    wait_for(lambda: log_lines(d, "destination failing"), what="the outage")
    b.update(greeting="220 store ready", stall={"eod": 0.02})
    b.wait_for(lambda: len(b.messages()) == 60, timeout=60, what="the drain")
    peak = max(n for t, n in b.concurrency())
    assert peak == 2, peak
    assert d.stop() == 0


def test_a_session_refused_after_the_greeting_backs_off_instead_of_looping(daemon, store):
    """tls = encrypt and a store without STARTTLS: every session ends
    before any mail. That is a failed destination (backoff and probes), not
    a reason to reconnect at once."""
    b = store()
    d = daemon(extra=config(b, domain_extra='tls = "encrypt"')).start()
    send(d, 3)
    time.sleep(3)
    assert b.connections() <= 4, "reconnecting in a loop"
    assert log_lines(d, "destination failing")
    assert "4.7.4" in log_lines(d, "status=deferred")[0]
    assert b.messages() == []
    assert d.stop() == 0


def test_reload_moves_held_mail_to_a_domains_new_route(daemon, store):
    import subprocess
    from conftest import BUILD
    b = store()
    dead = free_port()
    extra = ('domain "example.com" { route = "smtp:[127.0.0.1]:%d" }\n'
             'domain "example.org" { route = "smtp:[127.0.0.1]:%d" }\n'
             'retry { initial = 1h }\n' % (dead, dead))
    d = daemon(relay_domains=("example.com", "example.org"), extra=extra).start()
    send(d, 2, rcpts=("a@example.com",))
    send(d, 3, rcpts=("b@example.org",))
    wait_for(lambda: log_lines(d, "destination failing"), what="the outage")
    with open(d.conf) as f:
        text = f.read()
    with open(d.conf, "w") as f:
        f.write(text.replace('domain "example.org" { route = "smtp:[127.0.0.1]:%d" }' % dead,
                             'domain "example.org" { route = "smtp:[127.0.0.1]:%d" }' % b.port))
    r = subprocess.run([BUILD + "/mxspoolctl", "-c", d.conf, "reload"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    b.wait_for(lambda: len(b.messages()) == 3, what="example.org's mail")
    time.sleep(1)
    assert all(m["rcpts"] == ["b@example.org"] for m in b.messages())
    assert d.stop() == 0


def test_a_recipient_given_twice_is_delivered_once_with_its_first_parameters(daemon, store):
    b = store()
    d = daemon(extra=config(b)).start()
    s = smtplib.SMTP("127.0.0.1", d.port, timeout=30)
    s.ehlo()
    assert s.mail("alice@sender.test")[0] == 250
    # The same address thrice (the domain's case does not make it another
    # recipient, RFC 5321 2.4), each answered 250; a local part in other
    # case is another recipient.
    for rcpt, opts in (("joe@example.com", ["NOTIFY=SUCCESS,FAILURE"]),
                       ("joe@example.com", ["NOTIFY=NEVER"]),
                       ("joe@EXAMPLE.COM", []),
                       ("Joe@example.com", [])):
        code, msg = s.rcpt(rcpt, options=opts)
        assert code == 250, (rcpt, code, msg)
    assert s.data(b"Subject: twice\r\n\r\nhello\r\n")[0] == 250
    s.quit()
    b.wait_for(lambda: len(b.messages()) == 1, what="delivery")
    [m] = b.messages()
    assert m["rcpts"] == ["joe@example.com", "Joe@example.com"]
    assert m["rcpt_params"][0] == "NOTIFY=SUCCESS,FAILURE"
    assert "nrcpt=2" in d.log()
    assert d.stop() == 0
