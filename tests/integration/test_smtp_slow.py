"""Clients that hold sessions without end (issue 14, point 5): the session
deadline, the minimum data rate in DATA and BDAT, and making room for new
clients when every connection slot is held by idle ones. Each test starts
its own daemon with short limits; other clients are checked unaffected."""

import threading
import time

from conftest import log_lines
from smtphelp import ehlo, queued_id, send_message, spool_envelopes
from test_ctl import ctl_json

DEADLINE = "421 4.4.2 mx.test.example Error: session deadline exceeded"
SLOW = "421 4.4.2 mx.test.example Error: data rate too low"
EVICTED = ("421 4.4.5 mx.test.example Error: too many connections; "
           "closing idle session")
FULL = "421 4.7.0 mx.test.example Error: too many connections"


def rejected(d, reason):
    return ctl_json(d, "stats")[0]["rejected"].get(reason, 0)


def in_transaction(d, source=None):
    c = ehlo(d, source=source)
    assert c.cmd("MAIL FROM:<a@sender.test>")[0].startswith("250 ")
    assert c.cmd("RCPT TO:<user@example.com>")[0].startswith("250 ")
    return c


def trickle(c, piece, every, until):
    """Sends piece every `every` seconds until the server closes or `until`
    (monotonic) passes; returns the time the sending stopped."""
    while time.monotonic() < until:
        try:
            c.send(piece)
        except OSError:
            break
        time.sleep(every)
    return time.monotonic()


# session_deadline


def test_an_idle_session_is_closed_at_the_session_deadline(daemon):
    d = daemon(extra="session_deadline = 2s\ncommand_timeout = 1m\n").start()
    t0 = time.monotonic()
    c = ehlo(d)
    assert c.reply() == [DEADLINE]
    assert 1.7 < time.monotonic() - t0 < 4
    assert c.closed()
    assert log_lines(d, "session deadline exceeded after ready from "
                        "[127.0.0.1]")
    assert rejected(d, "session_deadline") == 1


def test_a_byte_at_a_time_does_not_keep_a_session_past_the_deadline(daemon):
    # Each byte comes well within command_timeout, so only the deadline
    # ends this: the one byte every 4 minutes, sped up.
    d = daemon(extra="session_deadline = 2s\ncommand_timeout = 1s\n").start()
    c = d.connect()
    assert c.reply()[0].startswith("220 ")
    t0 = time.monotonic()
    trickle(c, b"N", 0.3, t0 + 6)
    assert c.reply() == [DEADLINE]
    assert 1.7 < time.monotonic() - t0 < 4
    assert c.closed()


def test_commands_just_before_the_deadline_are_answered_then_it_closes(daemon):
    d = daemon(extra="session_deadline = 3s\n").start()
    t0 = time.monotonic()
    c = ehlo(d)
    while time.monotonic() - t0 < 2.5:
        assert c.cmd("NOOP") == ["250 2.0.0 Ok"]
        time.sleep(0.25)
    assert c.reply() == [DEADLINE]
    assert time.monotonic() - t0 < 4.5
    # A session that ends before the deadline is not touched by it.
    quick = ehlo(d)
    queued_id(send_message(quick, b"Subject: quick\r\n\r\nquick\r\n.\r\n"))
    assert quick.cmd("QUIT") == ["221 2.0.0 Bye"]
    assert rejected(d, "session_deadline") == 1


def test_a_message_being_received_at_the_deadline_is_dropped(daemon):
    d = daemon(extra="session_deadline = 2s\nmin_data_rate = 0\n").start()
    c = in_transaction(d)
    assert c.cmd("DATA")[0].startswith("354 ")
    c.send(b"Subject: late\r\n\r\n")
    trickle(c, b"x" * 500 + b"\r\n", 0.1, time.monotonic() + 5)
    assert c.reply() == [DEADLINE]
    assert c.closed()
    assert log_lines(d, "session deadline exceeded after data")
    d.stop()
    assert spool_envelopes(d) == {}


# min_data_rate


def test_data_below_the_minimum_rate_gets_421_and_nothing_is_queued(daemon):
    d = daemon(extra="min_data_rate = 1k\nmin_data_rate_window = 2s\n"
                     "data_timeout = 1m\n").start()
    slow = in_transaction(d)
    above = in_transaction(d)
    assert slow.cmd("DATA")[0].startswith("354 ")
    assert above.cmd("DATA")[0].startswith("354 ")
    t0 = time.monotonic()
    # 800 bytes/s, just under 1024; 1400 bytes/s, just above.
    th = threading.Thread(target=trickle, args=(
        above, b"y" * 348 + b"\r\n", 0.25, t0 + 5))
    th.start()
    trickle(slow, b"x" * 198 + b"\r\n", 0.25, t0 + 5)
    assert slow.reply() == [SLOW]
    assert 1.7 < time.monotonic() - t0 < 4
    assert slow.closed()
    # A fast client meanwhile is not held up.
    fast = ehlo(d)
    queued_id(send_message(fast, b"Subject: fast\r\n\r\nfast\r\n.\r\n"))
    th.join()
    above.send(b".\r\n")
    q = queued_id(above.reply()[-1])
    assert log_lines(d, "data rate too low from [127.0.0.1]")
    assert rejected(d, "min_data_rate") == 1
    d.stop()
    envs = spool_envelopes(d)
    assert len(envs) == 2 and q in envs


def test_a_slow_message_shorter_than_the_window_is_taken(daemon):
    d = daemon(extra="min_data_rate = 1k\nmin_data_rate_window = 3s\n"
               ).start()
    c = in_transaction(d)
    assert c.cmd("DATA")[0].startswith("354 ")
    trickle(c, b"z\r\n", 0.4, time.monotonic() + 2)  # 8 bytes/s, for 2s
    c.send(b".\r\n")
    queued_id(c.reply()[-1])
    # The next message's window starts afresh at its DATA.
    assert c.cmd("MAIL FROM:<b@sender.test>")[0].startswith("250 ")
    assert c.cmd("RCPT TO:<user@example.com>")[0].startswith("250 ")
    assert c.cmd("DATA")[0].startswith("354 ")
    trickle(c, b"z\r\n", 0.4, time.monotonic() + 2)
    c.send(b".\r\n")
    queued_id(c.reply()[-1])
    assert rejected(d, "min_data_rate") == 0


def test_a_zero_minimum_rate_lets_slow_data_through(daemon):
    d = daemon(extra="min_data_rate = 0\nmin_data_rate_window = 1s\n"
               ).start()
    c = in_transaction(d)
    assert c.cmd("DATA")[0].startswith("354 ")
    trickle(c, b"z\r\n", 0.4, time.monotonic() + 2.5)
    c.send(b".\r\n")
    queued_id(c.reply()[-1])


def test_a_slow_bdat_chunk_gets_421(daemon):
    d = daemon(extra="min_data_rate = 1k\nmin_data_rate_window = 2s\n"
               ).start()
    c = in_transaction(d)
    t0 = time.monotonic()
    c.send(b"BDAT 100000 LAST\r\n")
    trickle(c, b"x" * 98 + b"\r\n", 0.25, t0 + 5)
    assert c.reply() == [SLOW]
    assert 1.7 < time.monotonic() - t0 < 4
    assert c.closed()
    assert log_lines(d, "in 2s of bdat")


def test_slow_chunks_between_bdat_commands_count_too(daemon):
    # Many small chunks, each answered at once: the time between them is
    # part of the transaction, so they cannot dodge the rate.
    d = daemon(extra="min_data_rate = 1k\nmin_data_rate_window = 2s\n"
               ).start()
    c = in_transaction(d)
    t0 = time.monotonic()
    replies = []
    while time.monotonic() - t0 < 5:
        c.send(b"BDAT 5\r\nhello")
        r = c.reply()
        replies.append(r)
        if r[0].startswith("421"):
            break
        time.sleep(0.25)
    assert replies[0] == ["250 2.0.0 5 octets received"]
    assert replies[-1] == [SLOW]
    assert 1.7 < time.monotonic() - t0 < 4
    d.stop()
    assert spool_envelopes(d) == {}


# Room for new clients when every slot is held


def fill(d, n, source):
    """n idle sessions from source, the first one idle longest."""
    clients = [ehlo(d, source=source) for _ in range(n)]
    time.sleep(1.2)  # all idle for over a second
    for c in clients[1:]:
        assert c.cmd("NOOP") == ["250 2.0.0 Ok"]
    time.sleep(1.1)
    return clients


def test_a_new_client_is_served_when_idle_clients_fill_every_slot(daemon):
    d = daemon(extra="max_connections = 10\n").start()
    time.sleep(0.3)  # let the daemon see start()'s probe connection go
    held = fill(d, 10, "127.0.0.2")
    new = ehlo(d, source="127.0.0.3")
    queued_id(send_message(new, b"Subject: new\r\n\r\nserved\r\n.\r\n"))
    # The one idle longest made room; the others are untouched.
    assert held[0].reply() == [EVICTED]
    assert held[0].closed()
    for c in held[1:]:
        assert c.cmd("NOOP") == ["250 2.0.0 Ok"]
    assert log_lines(d, "too many connections: closing [127.0.0.2]")
    assert rejected(d, "idle_evicted") == 1
    for c in held[1:] + [new]:
        c.close()


def test_no_session_is_closed_for_a_client_that_already_holds_as_many(
        daemon):
    d = daemon(extra="max_connections = 4\n").start()
    time.sleep(0.3)
    held = fill(d, 2, "127.0.0.2") + fill(d, 2, "127.0.0.3")
    # 127.0.0.2 holds two, as many as anyone: it gets no one's slot.
    extra = d.connect(source="127.0.0.2")
    assert extra.reply() == [FULL]
    assert extra.closed()
    for c in held:
        assert c.cmd("NOOP") == ["250 2.0.0 Ok"]
    time.sleep(1.1)
    # A third address, holding none, does.
    new = d.connect(source="127.0.0.4")
    assert new.reply()[0].startswith("220 ")
    assert rejected(d, "connections") == 1
    assert rejected(d, "idle_evicted") == 1


def test_sessions_receiving_a_message_are_never_closed_to_make_room(daemon):
    d = daemon(extra="max_connections = 3\n").start()
    time.sleep(0.3)
    busy = [in_transaction(d, source="127.0.0.2") for _ in range(3)]
    for c in busy:
        assert c.cmd("DATA")[0].startswith("354 ")
        c.send(b"Subject: busy\r\n\r\nstill coming\r\n")
    time.sleep(1.2)
    new = d.connect(source="127.0.0.3")
    assert new.reply() == [FULL]
    for c in busy:
        c.send(b".\r\n")
        queued_id(c.reply()[-1])


def test_the_per_address_limit_is_counted_before_the_total(daemon):
    d = daemon(extra="max_connections = 3\nmax_connections_per_ip = 2\n"
               ).start()
    time.sleep(0.3)
    held = fill(d, 2, "127.0.0.2") + fill(d, 1, "127.0.0.3")
    # Full, but 127.0.0.2 is at its own limit: refused for that, and
    # nobody is closed for it.
    third = d.connect(source="127.0.0.2")
    assert third.reply() == [
        "421 4.7.0 mx.test.example Error: too many connections from "
        "127.0.0.2"]
    for c in held:
        assert c.cmd("NOOP") == ["250 2.0.0 Ok"]
    assert rejected(d, "connections_per_ip") == 1
    assert rejected(d, "idle_evicted") == 0
