"""The rejection guard (DESIGN.md, contract 2): a store that answers 550 to
users it served before, or to nearly everyone, is sick, not right. Its
mail is held, never bounced, and drains once it accepts those users
again. Against a real Dovecot LMTP store (dovecot.py) and the scriptable
backend (backend.py)."""

import os
import time

from conftest import log_lines, wait_for
from test_ctl import ctl, ctl_json
from test_delivery import send

USERS = ("alice", "bob", "carol")


def config(route, rec, extra="", domain_extra=""):
    return ('domain "example.com" {\n route = "%s"\n %s\n}\n'
            "retry {\n initial = 1s\n max_interval = 2s\n jitter = 0\n"
            " probe_interval = 1s\n}\n"
            'bounce_route = "smtp:[127.0.0.1]:%d"\n%s'
            % (route, domain_extra, rec.port, extra))


def set_users(dc, users):
    """Dovecot's user database, as after its storage lost (or got back)
    users: Dovecot reads it at start."""
    dc.stop()
    with open(dc.userdb, "w") as f:
        for u in users:
            f.write("%s@%s:::::::\n" % (u, dc.domain))
    dc.start()


def connections(dc):
    with open(dc.logpath) as f:
        return sum(1 for line in f if ": Connect from " in line)


def delivered(dc, users=USERS):
    return sum(len(dc.messages(u)) for u in users)


def summary(d):
    return {x["name"]: x for x in ctl_json(d, "summary")[0]["destinations"]}


def each_user(n):
    return [("%s@example.com" % USERS[i % len(USERS)],) for i in range(n)]


def send_each(d, rcpts_list):
    for rcpts in rcpts_list:
        send(d, 1, rcpts=rcpts)


def test_unwritable_maildirs_under_load_are_probed_then_drained(daemon, dovecot_store, backend):
    """Dovecot up but its Maildirs read-only: 451 4.2.0 to every
    recipient. Probes only, no DSN; writable again: everything arrives
    once, starting at recovery_connections."""
    dc = dovecot_store(users=USERS)
    rec = backend()
    d = daemon(extra=config(dc.route(), rec)).start()
    send_each(d, each_user(3))
    wait_for(lambda: delivered(dc) == 3, what="first deliveries")
    os.chmod(dc.mail, 0o500)
    for u in USERS:
        for sub in ("", "/new", "/tmp", "/cur"):
            os.chmod(dc.maildir(u) + sub, 0o500)
    before = connections(dc)
    send_each(d, each_user(30))
    wait_for(lambda: log_lines(d, "destination failing"), what="the outage")
    time.sleep(5)
    # One probe at a time on a backoff of 1 s, then 2 s: a handful of
    # connections in 5 s, not one per held message and retry.
    assert connections(dc) - before <= 8, connections(dc) - before
    assert not log_lines(d, "status=bounced")
    for u in USERS:
        for sub in ("", "/new", "/tmp", "/cur"):
            os.chmod(dc.maildir(u) + sub, 0o700)
    os.chmod(dc.mail, 0o755)
    wait_for(lambda: delivered(dc) == 33, timeout=60, what="the drain")
    time.sleep(1)
    assert delivered(dc) == 33
    assert rec.messages() == [], "a DSN was sent"
    back = log_lines(d, "destination is back")
    assert back, "no 'destination is back'"
    assert d.stop() == 0


def test_an_emptied_user_database_is_suspect_and_nothing_bounces(daemon, dovecot_store, backend):
    dc = dovecot_store(users=USERS)
    rec = backend()
    d = daemon(extra=config(dc.route(), rec)).start()
    send_each(d, each_user(3))   # now the relay knows alice, bob, carol
    wait_for(lambda: delivered(dc) == 3, what="first deliveries")
    set_users(dc, ["postmaster"])
    send_each(d, each_user(12))
    wait_for(lambda: log_lines(d, "destination is suspect"), what="suspect")
    time.sleep(3)
    assert rec.messages() == [], "a DSN was sent"
    assert not log_lines(d, "status=bounced")
    dest = summary(d)[dc.route()]
    assert dest["state"] == "suspect", dest
    assert dest["messages"] == 12
    set_users(dc, USERS)
    wait_for(lambda: delivered(dc) == 15, timeout=60, what="the drain")
    time.sleep(1)
    assert delivered(dc) == 15 and rec.messages() == []
    assert log_lines(d, "destination is trusted again")
    assert len(log_lines(d, "destination is suspect")) == 1
    assert d.stop() == 0


def test_a_recipients_file_makes_users_known_on_a_fresh_spool(daemon, dovecot_store, backend, tmp_path):
    """A fresh spool has learned nobody; the domain's recipients file
    lists alice, bob and carol, whom the broken store denies while it
    still takes dave: only the file makes their 550 suspect."""
    dc = dovecot_store(users=["dave"])
    rec = backend()
    rfile = tmp_path / "example.com.rcpt"
    rfile.write_text("".join("%s\n" % u for u in USERS + ("dave",)))
    d = daemon(extra=config(dc.route(), rec,
                            domain_extra='recipients = "%s"' % rfile)).start()
    send_each(d, [("dave@example.com",)] * 25)
    wait_for(lambda: len(dc.messages("dave")) == 25, what="dave's mail")
    send_each(d, each_user(6))
    wait_for(lambda: log_lines(d, "destination is suspect"), what="suspect")
    time.sleep(2)
    assert rec.messages() == [] and not log_lines(d, "status=bounced")
    set_users(dc, USERS + ("dave",))
    wait_for(lambda: delivered(dc) == 6, timeout=60, what="the drain")
    time.sleep(1)
    assert delivered(dc) == 6 and rec.messages() == []
    assert d.stop() == 0


def test_a_storm_from_a_store_never_delivered_to_is_suspect(daemon, backend):
    b = backend(rcpt={"*": "550 5.1.1 <x> recipient rejected"})
    rec = backend()
    d = daemon(extra=config("smtp:[127.0.0.1]:%d" % b.port, rec)).start()
    send_each(d, [("u%d@example.com" % i,) for i in range(30)])
    wait_for(lambda: log_lines(d, "destination is suspect"), what="suspect")
    time.sleep(3)
    assert rec.messages() == [] and not log_lines(d, "status=bounced")
    b.update(rcpt={})
    b.wait_for(lambda: len(b.messages()) == 30, timeout=60, what="the drain")
    time.sleep(1)
    assert len(b.messages()) == 30 and rec.messages() == []
    assert d.stop() == 0


def test_a_known_recipient_is_suspect_even_at_a_busy_healthy_store(daemon, backend):
    """Known recipients are kept in the spool: after a restart, alice (who
    was accepted before it) is held while zed, never seen, bounces."""
    b = backend()
    rec = backend()
    d = daemon(extra=config("smtp:[127.0.0.1]:%d" % b.port, rec)).start()
    send(d, 1, rcpts=("alice@example.com",))
    b.wait_for(lambda: len(b.messages()) == 1, what="alice")
    assert d.stop() == 0
    d.start()
    b.update(rcpt={"alice@example.com": "550 5.1.1 recipient rejected",
                   "zed@example.com": "550 5.1.1 recipient rejected"})
    send_each(d, [("u%d@example.com" % i,) for i in range(25)])
    b.wait_for(lambda: len(b.messages()) == 26, what="25 others")
    send(d, 1, rcpts=("zed@example.com",))
    rec.wait_for(lambda: len(rec.messages()) == 1, what="zed's DSN")
    send(d, 1, rcpts=("alice@example.com",))
    wait_for(lambda: log_lines(d, "destination is suspect"), what="suspect")
    time.sleep(2)
    assert len(rec.messages()) == 1
    assert "zed@example.com" in rec.messages()[0]["data"].decode()
    assert d.stop() == 0


def test_the_suspect_state_survives_a_restart_then_trust_bounces(daemon, backend):
    b = backend(rcpt={"*": "550 5.1.1 recipient rejected"})
    rec = backend()
    d = daemon(extra=config("smtp:[127.0.0.1]:%d" % b.port, rec)).start()
    send_each(d, [("u%d@example.com" % i,) for i in range(5)])
    wait_for(lambda: log_lines(d, "destination is suspect"), what="suspect")
    assert d.stop() == 0
    d.start()
    wait_for(lambda: log_lines(d, "still suspect since before the restart"),
             what="the state after the restart")
    route = "smtp:[127.0.0.1]:%d" % b.port
    wait_for(lambda: summary(d).get(route, {}).get("state") == "suspect",
             what="suspect in summary")
    time.sleep(2)
    assert rec.messages() == []
    rc, out, err = ctl(d, "trust", "example.com")
    assert rc == 0, err
    assert "trusted 1 destination again" in out
    # Trusted: its 5xx are believed now, so the held mail is returned.
    rec.wait_for(lambda: len(rec.messages()) == 5, timeout=20, what="5 DSNs")
    rc, out, err = ctl(d, "trust", "example.com")
    assert rc == 1 and "no suspect destination example.com" in err
    assert d.stop() == 0


def test_bounce_suspect_returns_the_held_recipients(daemon, backend):
    b = backend(rcpt={"*": "550 5.1.1 recipient rejected"})
    rec = backend()
    route = "smtp:[127.0.0.1]:%d" % b.port
    d = daemon(extra=config(route, rec)).start()
    send_each(d, [("u%d@example.com" % i,) for i in range(4)])
    # Probed one at a time, each message gets its suspect 5xx in turn.
    wait_for(lambda: len(set(l.split(": ")[1] for l in
                             log_lines(d, "suspect 5xx, held"))) == 4,
             what="four held")
    rc, out, err = ctl(d, "bounce-suspect", route)
    assert rc == 2 and "--yes" in err
    rc, out, err = ctl(d, "bounce-suspect", route, "--yes")
    assert rc == 0, err
    assert "returned 4 suspect recipients to their senders" in out
    rec.wait_for(lambda: len(rec.messages()) == 4, timeout=20, what="4 DSNs")
    time.sleep(1)
    assert len(rec.messages()) == 4
    wait_for(lambda: route not in summary(d), what="an empty queue")
    rc, out, err = ctl(d, "bounce-suspect", "nowhere.example", "--yes")
    assert rc == 1 and "no destination nowhere.example" in err
    assert d.stop() == 0


def test_soft_bounce_defers_every_5xx(daemon, backend):
    b = backend(rcpt={"nobody@example.com": "550 5.1.1 No such user"})
    rec = backend()
    d = daemon(extra=config("smtp:[127.0.0.1]:%d" % b.port, rec,
                            domain_extra="soft_bounce = yes")).start()
    send(d, 1, rcpts=("ok@example.com", "nobody@example.com"))
    wait_for(lambda: log_lines(d, "status=deferred (soft_bounce: "), what="the soft bounce")
    line = log_lines(d, "status=deferred (soft_bounce: ")[0]
    assert "dsn=4.1.1" in line and "to=<nobody@example.com>" in line
    time.sleep(2)
    assert rec.messages() == [] and not log_lines(d, "status=bounced")
    assert not log_lines(d, "destination is suspect")
    assert d.stop() == 0


def test_the_guard_is_shown_in_metrics(daemon, backend):
    from conftest import free_port
    import urllib.request
    b = backend(rcpt={"*": "550 5.1.1 recipient rejected"})
    rec = backend()
    mport = free_port()
    route = "smtp:[127.0.0.1]:%d" % b.port
    d = daemon(extra=config(route, rec) +
               'metrics_listen = "127.0.0.1:%d"\n' % mport).start()
    send(d, 2)
    wait_for(lambda: log_lines(d, "destination is suspect"), what="suspect")

    def scrape():
        return urllib.request.urlopen("http://127.0.0.1:%d/metrics" % mport,
                                      timeout=10).read().decode()
    # The second message meets its 5xx with the first, or at the next probe.
    one = 'mxspool_recipients_suspect_total{node="mx"} 1\n'
    text = wait_for(lambda: (lambda t: t if one not in t else None)(scrape()),
                    what="both messages' 5xx counted")
    assert ('mxspool_destination_suspect{node="mx",destination="%s"} 1'
            % route) in text
    assert 'mxspool_recipients_suspect_total{node="mx"} 2' in text or \
        'mxspool_recipients_suspect_total{node="mx"} 3' in text
    assert d.stop() == 0
