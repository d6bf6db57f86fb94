"""Limits and timeouts of the inbound server, with short configured values,
and many clients at once."""

import smtplib
import socket
import threading
import time

from smtphelp import ehlo, queued_id, send_message, spool_envelopes


def test_idle_client_gets_421_after_the_command_timeout(daemon):
    d = daemon(extra="command_timeout = 1s\n").start()
    c = d.connect()
    c.reply()
    c.cmd("EHLO client.test")
    t0 = time.monotonic()
    assert c.reply() == ["421 4.4.2 mx.test.example Error: timeout exceeded"]
    assert 0.8 < time.monotonic() - t0 < 5
    assert c.closed()
    assert "timeout after ready from [127.0.0.1]" in d.log()


def test_stalled_data_gets_421_after_the_data_timeout(daemon):
    d = daemon(extra="command_timeout = 30s\ndata_timeout = 1s\n").start()
    c = ehlo(d)
    c.cmd("MAIL FROM:<a@sender.test>")
    c.cmd("RCPT TO:<user@example.com>")
    assert c.cmd("DATA")[0].startswith("354")
    c.send(b"Subject: slow\r\n\r\nhalf a mess")
    t0 = time.monotonic()
    assert c.reply() == ["421 4.4.2 mx.test.example Error: timeout exceeded"]
    assert 0.8 < time.monotonic() - t0 < 5
    assert c.closed()
    d.stop()
    assert spool_envelopes(d) == {}


def test_a_stalled_client_does_not_delay_another(daemon):
    d = daemon().start()
    stalled = ehlo(d)
    stalled.cmd("MAIL FROM:<a@sender.test>")
    stalled.cmd("RCPT TO:<user@example.com>")
    stalled.cmd("DATA")
    stalled.send(b"Subject: stalled\r\n\r\nand then nothing")
    half = d.connect()
    half.reply()
    half.send(b"MAIL FROM:<a@sen")  # half a command, never finished
    t0 = time.monotonic()
    c = ehlo(d)
    queued_id(send_message(c, b"Subject: quick\r\n\r\nquick\r\n.\r\n"))
    assert c.cmd("QUIT") == ["221 2.0.0 Bye"]
    assert time.monotonic() - t0 < 1.5
    for x in (stalled, half, c):
        x.close()


def test_total_connection_limit_gets_421(daemon):
    d = daemon(extra="max_connections = 3\n").start()
    time.sleep(0.3)  # let the daemon see start()'s probe connection go
    open_ = []
    for _ in range(3):
        c = d.connect()
        assert c.reply()[0].startswith("220 ")
        open_.append(c)
    extra = d.connect()
    assert extra.reply() == [
        "421 4.7.0 mx.test.example Error: too many connections"]
    assert extra.closed()
    open_[0].cmd("QUIT")
    assert open_[0].closed()
    time.sleep(0.2)
    again = d.connect()
    assert again.reply()[0].startswith("220 ")
    for c in open_[1:] + [again]:
        c.close()


def test_per_client_connection_limit_gets_421(daemon):
    d = daemon(extra="max_connections_per_ip = 2\n").start()
    time.sleep(0.3)  # let the daemon see start()'s probe connection go
    a, b = d.connect(), d.connect()
    assert a.reply()[0].startswith("220 ")
    assert b.reply()[0].startswith("220 ")
    c = d.connect()
    assert c.reply() == ["421 4.7.0 mx.test.example Error: too many "
                         "connections from 127.0.0.1"]
    assert c.closed()
    a.close()
    b.close()


def test_two_hundred_parallel_sessions_each_queue_a_message(daemon):
    n = 200
    d = daemon(extra="max_connections_per_ip = 500\n").start()
    barrier = threading.Barrier(n, timeout=60)
    results = [None] * n

    def one(i):
        try:
            s = smtplib.SMTP("127.0.0.1", d.port, timeout=60)
            barrier.wait()
            s.ehlo("c%d.test" % i)
            s.mail("s%d@sender.test" % i)
            s.rcpt("user%d@example.com" % i)
            code, msg = s.data(b"Subject: %d\r\n\r\nbody %d\r\n" % (i, i))
            s.quit()
            results[i] = (code, msg.decode())
        except Exception as e:  # reported below with its index
            results[i] = ("error", repr(e))

    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    bad = [(i, r) for i, r in enumerate(results)
           if r is None or r[0] != 250 or "queued as" not in r[1]]
    assert bad == []
    qids = {r[1].rsplit(" ", 1)[1] for r in results}
    assert len(qids) == n
    d.stop()
    envs = spool_envelopes(d)
    assert set(envs) == qids
    assert sorted(e["sender"] for e in envs.values()) == sorted(
        "s%d@sender.test" % i for i in range(n))


def test_a_client_that_leaves_mid_data_leaves_nothing_queued(daemon):
    d = daemon().start()
    c = ehlo(d)
    c.cmd("MAIL FROM:<a@sender.test>")
    c.cmd("RCPT TO:<user@example.com>")
    c.cmd("DATA")
    c.send(b"Subject: gone\r\n\r\npartial")
    c.close()
    time.sleep(0.3)
    c2 = ehlo(d)
    assert c2.cmd("NOOP") == ["250 2.0.0 Ok"]
    c2.close()
    d.stop()
    assert spool_envelopes(d) == {}
    assert "lost connection after data" in d.log()


def test_a_client_that_does_not_read_its_replies_is_paused_not_buffered(daemon):
    d = daemon(extra="command_timeout = 2s\n").start()
    c = ehlo(d)
    c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 65536)
    c.sock.settimeout(0.5)
    sent = 0
    # 20 MB of NOOPs, never reading: the server must stop taking them
    # once its replies pile up (rather than buffer 60 MB of replies), so
    # our sends block after what the kernel buffers hold.
    chunk = b"NOOP\r\n" * 10000
    t0 = time.monotonic()
    try:
        while sent < 20 * 1024 * 1024 and time.monotonic() - t0 < 10:
            c.sock.sendall(chunk)
            sent += len(chunk)
    except (socket.timeout, TimeoutError):
        pass
    assert sent < 12 * 1024 * 1024
    # The write timeout then ends the session, with no reading at all.
    deadline = time.monotonic() + 10
    while "timeout after ready" not in d.log() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert "timeout after ready" in d.log()
    c.close()
    other = ehlo(d)
    assert other.cmd("NOOP") == ["250 2.0.0 Ok"]
    other.close()
