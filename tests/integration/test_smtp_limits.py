"""Limits and timeouts of the inbound server, with short configured values,
and many clients at once."""

import smtplib
import socket
import threading
import time

from conftest import log_lines
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


# data_memory_limit (issue 14, point 4). Body buffers are counted by their
# size, which doubles from 16 KiB: 600 KiB of body hold 1 MiB, 1200 KiB
# hold 2 MiB. A message alone in memory may always grow.

KIB = 1024
MIB = 1024 * KIB
NOMEM = "452 4.3.1 Insufficient system storage"


def body_bytes(n):
    """n bytes of body text in 1000-byte lines (no final dot)."""
    line = b"x" * 998 + b"\r\n"
    return (line * (n // len(line) + 1))[:n - 2] + b"\r\n"


def in_data(d, source=None):
    c = ehlo(d, source=source)
    assert c.cmd("MAIL FROM:<a@sender.test>")[0].startswith("250 ")
    assert c.cmd("RCPT TO:<user@example.com>")[0].startswith("250 ")
    return c


def rejected(d, reason):
    from test_ctl import ctl_json
    return ctl_json(d, "stats")[0]["rejected"].get(reason, 0)


def test_data_memory_limit_refuses_new_data_and_bdat_with_452(daemon):
    d = daemon(extra="data_memory_limit = 1M\n").start()
    big = in_data(d)
    assert big.cmd("DATA")[0].startswith("354 ")
    big.send(b"Subject: big\r\n\r\n" + body_bytes(2 * MIB))  # alone: may grow
    time.sleep(0.5)
    refused = in_data(d)
    assert refused.cmd("DATA") == [NOMEM]
    # The transaction is still there: the client may try again later.
    assert refused.cmd("NOOP") == ["250 2.0.0 Ok"]
    chunked = in_data(d)
    chunked.send(b"BDAT 10 LAST\r\n0123456789")
    assert chunked.reply() == [NOMEM]
    assert chunked.cmd("NOOP") == ["250 2.0.0 Ok"]  # the chunk was read
    big.send(b".\r\n")
    queued_id(big.reply()[-1])
    # Its memory is given back: the refused client's DATA now goes in.
    assert refused.cmd("DATA")[0].startswith("354 ")
    refused.send(b"Subject: later\r\n\r\nlater\r\n.\r\n")
    queued_id(refused.reply()[-1])
    assert rejected(d, "data_memory") == 2
    assert len(log_lines(d, "data_memory_limit reached")) == 2
    for c in (big, refused, chunked):
        c.close()
    d.stop()
    assert len(spool_envelopes(d)) == 2


def test_the_message_that_would_cross_the_limit_is_dropped_the_one_at_it_is_not(
        daemon):
    d = daemon(extra="data_memory_limit = 3M\n").start()
    a = in_data(d)
    assert a.cmd("DATA")[0].startswith("354 ")
    a.send(b"Subject: a\r\n\r\n" + body_bytes(600 * KIB))  # holds 1 MiB
    time.sleep(0.3)
    b = in_data(d)
    assert b.cmd("DATA")[0].startswith("354 ")
    b.send(b"Subject: b\r\n\r\n" + body_bytes(600 * KIB))  # 1 MiB
    time.sleep(0.3)
    b.send(body_bytes(600 * KIB))  # 2 MiB: 3 MiB in all, exactly the limit
    time.sleep(0.3)
    a.send(body_bytes(600 * KIB))  # would need 2 MiB: 4 MiB, over it
    time.sleep(0.3)
    assert len(log_lines(d, "over data_memory_limit")) == 1
    b.send(b".\r\n")
    qb = queued_id(b.reply()[-1])
    a.send(b"more after the drop\r\n.\r\n")
    assert a.reply() == [NOMEM]
    # The session goes on; its next message is taken.
    qa = queued_id(send_message(a, b"Subject: again\r\n\r\nsmall\r\n.\r\n"))
    assert rejected(d, "data_memory") == 1
    a.close()
    b.close()
    d.stop()
    envs = spool_envelopes(d)
    assert set(envs) == {qa, qb}
    assert int(envs[qb]["size"]) > 1200 * KIB


def test_a_bdat_transaction_that_would_cross_the_limit_gets_452(daemon):
    d = daemon(extra="data_memory_limit = 2M\n").start()
    a = in_data(d)
    assert a.cmd("DATA")[0].startswith("354 ")
    a.send(b"Subject: a\r\n\r\n" + body_bytes(600 * KIB))  # holds 1 MiB
    time.sleep(0.3)
    b = in_data(d)
    n = 600 * KIB
    b.send(b"BDAT %d\r\n" % n + body_bytes(n))  # 1 MiB: 2 MiB, at the limit
    assert b.reply() == ["250 2.0.0 %d octets received" % n]
    b.send(b"BDAT %d LAST\r\n" % n + body_bytes(n))  # would need 2 MiB
    assert b.reply() == [NOMEM]
    assert b.cmd("NOOP") == ["250 2.0.0 Ok"]
    a.send(b".\r\n")
    queued_id(a.reply()[-1])
    a.close()
    b.close()
    d.stop()
    assert len(spool_envelopes(d)) == 1
