"""Contract 7: cost bounded by work, not by what is held. The active window
(active_limit) holds what is being delivered; the rest waits in the spool
behind its index, read a page at a time; the counters answer summary at
any size and stay exact after a kill -9."""
import os
import signal
import smtplib
import subprocess
import threading
import time

from conftest import BUILD, free_port, log_lines, wait_for
from test_ctl import ctl_json
from test_delivery import config, send

FILL = os.path.join(BUILD, "bench", "spool")
SPOOLCRASH = os.path.join(BUILD, "tests", "tools", "spoolcrash")


def stats(d):
    return ctl_json(d, "stats")[0]["spool"]


def dead_route():
    return 'domain "example.com" {\n route = "smtp:[127.0.0.1]:%d"\n}\n' % free_port()


def audit(spool):
    """spoolcrash verify with no acks: the index and counters against a
    full scan of the envelopes."""
    p = subprocess.run([SPOOLCRASH, "verify", spool], input="", text=True,
                       capture_output=True, timeout=120)
    return p.returncode, p.stdout + p.stderr


def test_a_queue_larger_than_the_window_drains_through_it_once(daemon, backend):
    b = backend(greeting="421 4.3.2 store is down")
    d = daemon(extra=config(b) + "active_limit = 40\n").start()
    send(d, 300)
    # Held: one message kept for the probe, the rest in the spool.
    wait_for(lambda: log_lines(d, "destination failing"), what="the outage")
    assert stats(d)["messages"] == 300
    assert stats(d)["in_memory"] <= 40
    seen = []
    stop = threading.Event()

    def watch():
        while not stop.is_set():
            seen.append(stats(d)["in_memory"])
            time.sleep(0.05)
    t = threading.Thread(target=watch)
    t.start()
    try:
        b.update(greeting="220 store.test.example ready")
        b.wait_for(lambda: len(b.messages()) >= 300, timeout=60, what="drain")
        wait_for(lambda: stats(d)["messages"] == 0, what="an empty spool")
    finally:
        stop.set()
        t.join()
    # Every message once, though the window never held more than 40.
    subjects = [m["data"].split(b"Subject: ")[1].split(b"\r\n")[0]
                for m in b.messages()]
    assert len(subjects) == 300 and len(set(subjects)) == 300
    assert max(seen) <= 40, max(seen)
    assert d.stop() == 0
    assert audit(d.spool)[0] == 0


def test_a_large_spool_is_summarised_from_its_counters_at_once(daemon):
    d = daemon(extra=dead_route())
    subprocess.run([FILL, "fill", d.spool, "200000"], check=True)
    d.start()
    assert ": 200000 messages (0 held) in 1 lanes, opened in" in d.log()
    s = ctl_json(d, "summary")[0]
    assert s["total"]["messages"] == 200000
    [dest] = s["destinations"]
    assert dest["messages"] == 200000 and dest["oldest"] > 0
    # A destination that refuses keeps one message in memory, not all.
    wait_for(lambda: log_lines(d, "destination failing"), what="the outage")
    assert stats(d)["in_memory"] <= 2
    items = ctl_json(d, "list", "--limit", "5")
    assert len(items) == 5 and all(m["sender"] == "bench@sender.example" for m in items)
    assert d.stop() == 0


def test_a_spool_from_before_the_index_is_indexed_while_mail_is_served(daemon):
    d = daemon(extra=dead_route())
    subprocess.run([FILL, "fill", d.spool, "150000", "unindexed"], check=True)
    d.start()
    assert "indexing it in the background" in d.log()
    # Served meanwhile: summary says it is not complete yet, or is.
    s = ctl_json(d, "summary")[0]
    assert s.get("indexing") or s["total"]["messages"] == 150000
    with smtplib.SMTP("127.0.0.1", d.port, timeout=30) as c:
        c.sendmail("a@sender.test", ["user@example.com"], b"Subject: new\r\n\r\nx\r\n")
    wait_for(lambda: not ctl_json(d, "summary")[0].get("indexing"),
             timeout=60, what="the index")
    assert ctl_json(d, "summary")[0]["total"]["messages"] == 150001
    assert log_lines(d, "indexed 150000 messages")
    assert d.stop() == 0
    rc, out = audit(d.spool)
    assert rc == 0, out
    # The next start reads the counters: nothing to index.
    d.start()
    assert ctl_json(d, "summary")[0]["total"]["messages"] == 150001
    assert d.log().count("indexing it in the background") == 1
    assert d.stop() == 0


def test_the_counters_stay_exact_when_the_daemon_is_killed(daemon, backend):
    b = backend(rcpt={"u3@example.com": "451 4.2.0 try later"})
    d = daemon(extra=config(b))
    for kill_after in (0.3, 0.8, 1.5):
        d.start()
        done = threading.Event()

        def load():
            try:
                with smtplib.SMTP("127.0.0.1", d.port, timeout=10) as c:
                    for i in range(400):
                        if done.is_set():
                            return
                        c.sendmail("a@sender.test",
                                   ["u%d@example.com" % (i % 5), "w@Example.COM"],
                                   b"Subject: %d\r\n\r\nx\r\n" % i)
            except (smtplib.SMTPException, OSError):
                pass  # the daemon was killed under it
        t = threading.Thread(target=load)
        t.start()
        time.sleep(kill_after)
        d.proc.send_signal(signal.SIGKILL)
        d.proc.wait()
        done.set()
        t.join()
        rc, out = audit(d.spool)
        assert rc == 0, out
