"""mxspoolctl xfer: a node hands its queue over to another node's
peer_listen, with the envelope, DSN parameters, SMTPUTF8 and 8BITMIME,
the first arrival and only the recipients still pending; a message leaves
the sending spool only after the peer's 250 for it."""

import json
import os
import smtplib
import socket
import subprocess
import time

from conftest import BUILD, MXSPOOLD, free_port, log_lines, wait_for

MXSPOOLCTL = os.path.join(BUILD, "mxspoolctl")


def ctl(d, *args, timeout=60):
    p = subprocess.run([MXSPOOLCTL, "-c", d.conf] + list(args),
                       capture_output=True, timeout=timeout)
    return p.returncode, p.stdout.decode("utf-8", "replace"), \
        p.stderr.decode("utf-8", "replace")


def listed(d):
    rc, out, err = ctl(d, "--json", "list")
    assert rc == 0, (rc, out, err)
    return [m for m in map(json.loads, filter(None, out.splitlines()))
            if "recipients" in m]


def xfer(d, to_port, *sel):
    rc, out, err = ctl(d, "--json", "xfer", "--to",
                       "smtp:[127.0.0.1]:%d" % to_port, *(sel or ("--all",)))
    return rc, json.loads(out.splitlines()[-1]) if out.strip() else None, err


def qid_time(qid):
    """The unix seconds a queue id carries (queue/qid.h)."""
    v = 0
    for c in qid:
        v = v * 32 + "0123456789ABCDEFGHJKMNPQRSTVWXYZ".index(c)
    return ((v >> 8) + 1577836800000000) / 1e6


def node_a(daemon, store=None, extra=""):
    """A: example.com's store is down (nothing listens); example.org goes
    to store (delivered at once)."""
    text = ('domain "example.com" { route = "smtp:[127.0.0.1]:%d" }\n'
            % free_port())
    if store is not None:
        text += ('domain "example.org" { route = "smtp:[127.0.0.1]:%d" }\n'
                 % store.port)
    text += "retry { initial = 1h\n max_interval = 1h }\n" + extra
    return daemon(relay_domains=("example.com", "example.org"), extra=text)


def node_b(daemon, store_port, trusted='{"127.0.0.1/32"}'):
    """B: peer_listen on a port of its own; its store for example.com at
    store_port."""
    peer = free_port()
    text = ('peer_listen = {"127.0.0.1:%d"}\npeer_trusted = %s\n'
            'domain "example.com" { route = "smtp:[127.0.0.1]:%d" }\n'
            'retry { initial = 1s\n max_interval = 1s\n jitter = 0 }\n'
            % (peer, trusted, store_port))
    d = daemon(relay_domains=("example.com", "example.org"), extra=text)
    d.peer_port = peer
    return d


def queue_on(d, n, rcpts=("user@example.com",)):
    """n messages with DSN parameters, SMTPUTF8 and 8BITMIME."""
    with smtplib.SMTP("127.0.0.1", d.port, timeout=10) as s:
        s.ehlo("client.test")
        for i in range(n):
            body = ("From: s\u00e9nder@sender.test\r\nSubject: %d\r\n\r\n"
                    "caf\u00e9 %d\r\n" % (i, i)).encode()
            s.sendmail("s\u00e9nder%d@sender.test" % i, list(rcpts), body,
                       mail_options=["SMTPUTF8", "BODY=8BITMIME", "RET=HDRS",
                                     "ENVID=env%d" % i],
                       rcpt_options=["NOTIFY=SUCCESS,FAILURE",
                                     "ORCPT=rfc822;orig%d@example.com" % i])


def test_xfer_hands_the_queue_over_with_its_envelopes(daemon, backend):
    delivered = backend()
    a = node_a(daemon, delivered).start()
    store_b = backend(greeting="421 4.3.2 store is down")
    b = node_b(daemon, store_b.port).start()
    queue_on(a, 19)
    # One recipient of the twentieth is delivered on A first.
    queue_on(a, 1, rcpts=("left@example.com", "done@example.org"))
    delivered.wait_for(lambda: len(delivered.messages()) == 1, what="example.org")
    wait_for(lambda: log_lines(a, "status=sent"), what="the delivery logged")
    before = {m["id"]: m for m in listed(a)}
    assert len(before) == 20
    time.sleep(2)  # so that a new arrival time would differ

    rc, res, err = xfer(a, b.peer_port)
    assert rc == 0, (rc, res, err)
    assert (res["transferred"], res["failed"], res["skipped"]) == (20, 0, 0), res
    assert listed(a) == []
    after = listed(b)
    assert len(after) == 20
    # The same senders, recipients still pending, and first arrivals.
    want = sorted((m["sender"], m["arrival"],
                   tuple(r["address"] for r in m["recipients"]
                         if r["state"] == "pending"))
                  for m in before.values())
    got = sorted((m["sender"], m["arrival"],
                  tuple(r["address"] for r in m["recipients"]))
                 for m in after)
    assert got == want
    moved = log_lines(a, "transferred to smtp:[127.0.0.1]:%d" % b.peer_port)
    assert len(moved) == 20
    # Each line names the message's queue id on B, from B's reply.
    assert {l.rsplit("queued as ", 1)[1] for l in moved} == \
        {m["id"] for m in after}

    # B delivers them as A would have: the DSN parameters, SMTPUTF8 and
    # 8BITMIME came along.
    store_b.update(greeting="220 store ready")
    store_b.wait_for(lambda: len(store_b.messages()) == 20, timeout=30,
                     what="B's delivery")
    for m in store_b.messages():
        params = " ".join(m["mail_params"]) if isinstance(m["mail_params"], list) \
            else str(m["mail_params"])
        assert "SMTPUTF8" in params and "BODY=8BITMIME" in params, m
        assert "RET=HDRS" in params and "ENVID=env" in params, m
        assert m["rcpts"] in (["user@example.com"], ["left@example.com"]), m
    cmds = store_b.commands()
    assert sum("NOTIFY=SUCCESS,FAILURE" in c for c in cmds) == 20
    assert sum("ORCPT=rfc822;orig" in c for c in cmds) == 20
    assert a.stop() == 0 and b.stop() == 0


def test_the_wire_carries_arrival_only_to_a_peer_listener(daemon, backend):
    """A listener that does not offer XMXSPOOL-ARRIVAL (not a peer_listen)
    gets no message: the arrival would be lost."""
    a = node_a(daemon).start()
    queue_on(a, 1)
    plain = backend()
    rc, res, err = xfer(a, plain.port)
    assert rc == 1 and res["failed"] == 1, (res, err)
    assert "XMXSPOOL-ARRIVAL" in res["failures"][0]["error"]
    assert not any(c.startswith("MAIL") for c in plain.commands())
    assert len(listed(a)) == 1

    peer = backend(extensions=["PIPELINING", "8BITMIME", "ENHANCEDSTATUSCODES",
                               "DSN", "SMTPUTF8", "XMXSPOOL-ARRIVAL"])
    arrival = listed(a)[0]["arrival"]
    rc, res, err = xfer(a, peer.port)
    assert rc == 0 and res["transferred"] == 1, (res, err)
    mail = [c for c in peer.commands() if c.startswith("MAIL")]
    assert "ARRIVAL=%d" % arrival in mail[0], mail
    assert listed(a) == []
    assert a.stop() == 0


def test_a_peer_answering_451_at_end_of_data_leaves_the_message(daemon, backend):
    a = node_a(daemon).start()
    queue_on(a, 2)
    peer = backend(extensions=["PIPELINING", "8BITMIME", "ENHANCEDSTATUSCODES",
                               "DSN", "SMTPUTF8", "XMXSPOOL-ARRIVAL"],
                   eod={"*": "451 4.3.0 try later"})
    rc, res, err = xfer(a, peer.port)
    assert rc == 1, (res, err)  # a failure fails the command, --json too
    assert (res["transferred"], res["failed"]) == (0, 2), res
    assert "451" in res["failures"][0]["error"]
    assert len(listed(a)) == 2
    rc, out, err = ctl(a, "xfer", "--to", "smtp:[127.0.0.1]:%d" % peer.port, "--all")
    assert rc == 1
    assert out.startswith("transferred 0 messages to smtp:[127.0.0.1]:%d, failed 2,"
                          " skipped 0\n" % peer.port), out
    assert "451 4.3.0 try later" in out
    assert a.stop() == 0


def test_a_peer_refusing_one_recipient_gets_none_of_them(daemon, backend):
    """A hand-over is all or nothing: were the peer to keep the recipients
    it took while the message stays here, they would get it twice."""
    a = node_a(daemon).start()
    queue_on(a, 1, rcpts=("user@example.com", "left@example.com"))
    queue_on(a, 1)
    peer = backend(extensions=["PIPELINING", "8BITMIME", "ENHANCEDSTATUSCODES",
                               "DSN", "SMTPUTF8", "XMXSPOOL-ARRIVAL"],
                   rcpt={"left@example.com": "550 5.1.1 no such user here"})
    rc, res, err = xfer(a, peer.port)
    assert rc == 1, (res, err)
    assert (res["transferred"], res["failed"]) == (1, 1), res
    assert res["failures"][0]["error"] == "550 5.1.1 no such user here", res
    # The peer took one message, the one-recipient one; for the other it
    # heard RSET, not DATA.
    assert [m["rcpts"] for m in peer.messages()] == [["user@example.com"]]
    assert sum(c == "DATA" for c in peer.commands()) == 1
    left = listed(a)
    assert len(left) == 1
    assert [(r["address"], r["state"]) for r in left[0]["recipients"]] == \
        [("user@example.com", "pending"), ("left@example.com", "pending")]
    assert a.stop() == 0


def test_a_long_hand_over_says_how_far_it_got(daemon, backend):
    """mxspoolctl waits at most 120 s for a line: a hand-over of a large
    queue sends its counts every 10 s, so the client neither gives up nor
    guesses."""
    a = node_a(daemon).start()
    queue_on(a, 2)
    peer = backend(extensions=["PIPELINING", "8BITMIME", "ENHANCEDSTATUSCODES",
                               "DSN", "SMTPUTF8", "XMXSPOOL-ARRIVAL"],
                   stall={"eod": 6})
    rc, out, err = ctl(a, "--json", "xfer", "--to",
                       "smtp:[127.0.0.1]:%d" % peer.port, "--all")
    assert rc == 0, (out, err)
    lines = [json.loads(l) for l in out.splitlines()]
    # The peer takes 6 s for each: after 10 s, one of two.
    assert lines[0] == {"transferred": 1, "failed": 0, "skipped": 0, "of": 2}
    assert lines[-1]["transferred"] == 2
    assert len(lines) == 2, lines  # about 12 s: one note, then the result
    assert a.stop() == 0


def test_an_untrusted_source_is_refused_by_the_peer_listener(daemon, backend):
    a = node_a(daemon).start()
    b = node_b(daemon, free_port(), trusted='{"10.0.0.0/8"}').start()
    queue_on(a, 3)
    rc, res, err = xfer(a, b.peer_port)
    assert rc == 1, (res, err)
    assert (res["transferred"], res["failed"]) == (0, 3), res
    assert len(listed(a)) == 3
    assert listed(b) == []
    assert log_lines(b, "not in peer_trusted")
    assert a.stop() == 0 and b.stop() == 0


def test_arrival_is_refused_on_the_normal_listener(daemon):
    b = node_b(daemon, free_port()).start()
    c = b.connect()
    assert c.reply()[0].startswith("220")
    assert not any("XMXSPOOL-ARRIVAL" in l for l in c.cmd("EHLO x"))
    assert c.cmd("MAIL FROM:<a@sender.test> ARRIVAL=1000")[0].startswith("555")
    c.close()
    s = socket.create_connection(("127.0.0.1", b.peer_port), 5)
    from conftest import Client
    p = Client(s)
    assert p.reply()[0].startswith("220")
    assert any("XMXSPOOL-ARRIVAL" in l for l in p.cmd("EHLO peer"))
    # An hour ago: well within max_age, which counts from it.
    then = int(time.time()) - 3600
    assert p.cmd("MAIL FROM:<a@sender.test> ARRIVAL=%d" % then)[0].startswith("250")
    assert p.cmd("RCPT TO:<x@example.com>")[0].startswith("250")
    assert p.cmd("DATA")[0].startswith("354")
    assert p.cmd("Subject: x\r\n\r\nhi\r\n.")[0].startswith("250")
    p.close()
    (m,) = listed(b)
    assert m["arrival"] == then
    # Its queue id carries the first arrival too: the spool finds mail for
    # warn_after and max_age by it, parked mail included, and summary
    # --ages counts by it (an hour old: the 40m-80m bucket).
    assert then <= qid_time(m["id"]) < then + 1
    rc, out, err = ctl(b, "--json", "summary", "--ages")
    assert rc == 0, err
    assert json.loads(out)["total"]["ages"] == [0, 0, 0, 0, 1, 0, 0, 0, 0, 0]
    assert b.stop() == 0


def test_drain_only_opens_no_port_and_xfer_empties_it(daemon, backend):
    metrics = free_port()
    a = node_a(daemon, extra='metrics_listen = "127.0.0.1:%d"\n' % metrics)
    a.start()
    socket.create_connection(("127.0.0.1", metrics), 5).close()
    queue_on(a, 5)
    assert a.stop() == 0
    b = node_b(daemon, free_port()).start()
    a.logfile = open(a.logpath, "ab")
    a.proc = subprocess.Popen([MXSPOOLD, "-c", a.conf, "--drain-only"],
                              stdout=a.logfile, stderr=a.logfile)
    wait_for(lambda: log_lines(a, "drain only"), what="the drain-only start")
    wait_for(lambda: ctl(a, "stats")[0] == 0, what="the control socket")
    # Neither SMTP nor /metrics: a rescued spool runs beside a node that
    # has those ports.
    for port in (a.port, metrics):
        try:
            socket.create_connection(("127.0.0.1", port), 1).close()
            raise AssertionError("port %d is open" % port)
        except ConnectionRefusedError:
            pass
    rc, res, err = xfer(a, b.peer_port)
    assert rc == 0 and res["transferred"] == 5, (res, err)
    assert listed(a) == []
    assert len(listed(b)) == 5
    assert a.stop() == 0 and b.stop() == 0
