"""mxspoold speaks systemd's notification protocol (sd_notify(3)) when
$NOTIFY_SOCKET names a socket, as under Type=notify: READY=1 once the
spool is open and the listeners accept, RELOADING=1 and READY=1 around a
reload, STOPPING=1 when it stops. The test plays systemd's part: it binds
a datagram socket and reads what the daemon sends."""

import os
import signal
import smtplib
import socket
import subprocess
import time

import pytest

from conftest import BUILD, log_lines, wait_for

MXSPOOLCTL = os.path.join(BUILD, "mxspoolctl")


class Notify:
    """systemd's end: an abstract-namespace datagram socket."""

    def __init__(self):
        self.name = "mxspool-test-notify-%d-%d" % (os.getpid(),
                                                   time.monotonic_ns())
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind("\0" + self.name)

    def env(self):
        return "@" + self.name

    def next(self, timeout=15):
        """The next message, as a dict of its NAME=value lines."""
        self.sock.settimeout(timeout)
        data = self.sock.recv(4096).decode()
        return dict(line.split("=", 1) for line in data.splitlines() if line)

    def nothing(self, wait=0.3):
        self.sock.settimeout(wait)
        try:
            data = self.sock.recv(4096)
        except socket.timeout:
            return True
        raise AssertionError("unexpected message %r" % data)

    def close(self):
        self.sock.close()


@pytest.fixture
def notify(monkeypatch):
    n = Notify()
    monkeypatch.setenv("NOTIFY_SOCKET", n.env())
    yield n
    n.close()


def greets(d):
    """Whether the SMTP port answers with a greeting right now."""
    with smtplib.SMTP("127.0.0.1", d.port, timeout=5) as s:
        return s.noop()[0] == 250


def started(daemon, notify, extra=""):
    d = daemon(extra=extra)
    d.start(wait=False)
    msg = notify.next()
    # READY=1 comes only when the port accepts and the control socket
    # answers: nothing is waited for here before these checks. The log
    # says the listeners were started before the message was sent.
    assert msg.get("READY") == "1", msg
    assert log_lines(d, "listening on 127.0.0.1:%d" % d.port), d.log()
    assert greets(d)
    r = subprocess.run([MXSPOOLCTL, "-c", d.conf, "stats"],
                       capture_output=True, text=True, timeout=10)
    assert r.returncode == 0, r.stderr
    assert msg["STATUS"] == "running: 1 listener, spool %s" % d.spool, msg
    return d


def test_ready_comes_once_the_smtp_port_accepts(daemon, notify):
    d = started(daemon, notify)
    notify.nothing()
    assert d.stop() == 0


def test_a_reload_is_bracketed_by_reloading_and_ready(daemon, notify):
    d = started(daemon, notify)
    before = time.monotonic_ns() // 1000
    d.proc.send_signal(signal.SIGHUP)
    msg = notify.next()
    after = time.monotonic_ns() // 1000
    assert msg.get("RELOADING") == "1", msg
    # systemd 253 compares MONOTONIC_USEC with its own clock: the
    # daemon's CLOCK_MONOTONIC, in microseconds.
    assert before <= int(msg["MONOTONIC_USEC"]) <= after, msg
    msg = notify.next()
    assert msg.get("READY") == "1" and "reloaded" in msg["STATUS"], msg
    assert greets(d)
    # mxspoolctl reload is a reload too.
    r = subprocess.run([MXSPOOLCTL, "-c", d.conf, "reload"],
                       capture_output=True, text=True, timeout=10)
    assert r.returncode == 0, r.stderr
    assert notify.next().get("RELOADING") == "1"
    assert notify.next().get("READY") == "1"
    notify.nothing()
    assert d.stop() == 0


def test_a_refused_reload_is_ready_again_with_the_old_config(daemon, notify):
    d = started(daemon, notify)
    with open(d.conf, "a") as f:
        f.write("shutdown_timeout = soon\n")
    d.proc.send_signal(signal.SIGHUP)
    assert notify.next().get("RELOADING") == "1"
    msg = notify.next()
    assert msg.get("READY") == "1", msg
    assert "reload refused" in msg["STATUS"], msg
    assert "shutdown_timeout: bad duration" in msg["STATUS"], msg
    assert greets(d)
    assert d.stop() == 0


def test_stopping_comes_at_sigterm_with_the_time_the_stop_may_take(
        daemon, notify):
    d = started(daemon, notify, extra="shutdown_timeout = 3s\n")
    # An open session keeps the daemon stopping (not stopped) for a while.
    s = smtplib.SMTP("127.0.0.1", d.port, timeout=10)
    s.ehlo()
    d.proc.send_signal(signal.SIGTERM)
    msg = notify.next()
    assert msg.get("STOPPING") == "1", msg
    # shutdown_timeout and 20s for the spool to close: systemd waits that
    # long at least, beyond the unit's TimeoutStopSec if it is longer.
    assert msg["EXTEND_TIMEOUT_USEC"] == str(23 * 1000000), msg
    assert "3s" in msg["STATUS"], msg
    assert d.proc.poll() is None
    s.close()
    assert d.stop() == 0
    notify.nothing()


def test_a_notify_socket_nobody_reads_is_no_error(daemon, monkeypatch):
    """systemd gone, or a stale $NOTIFY_SOCKET: the daemon runs, reloads
    and stops as without one."""
    monkeypatch.setenv("NOTIFY_SOCKET", "@mxspool-test-nobody-%d" % os.getpid())
    d = daemon().start()
    assert greets(d)
    d.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: log_lines(d, "in force"), what="the reload")
    assert greets(d)
    assert d.stop() == 0
