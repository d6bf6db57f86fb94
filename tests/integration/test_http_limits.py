"""The metrics endpoint bounds what a client may send: headers, body, and
the whole time a connection takes, however slowly it trickles."""

import socket
import time

import pytest

from conftest import free_port


def rss_kb(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


def answer(sock, timeout=10):
    """What the server sends until it closes (b"" if it just closes)."""
    sock.settimeout(timeout)
    out = b""
    try:
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                return out
            out += chunk
    except (ConnectionResetError, BrokenPipeError):
        return out


@pytest.fixture
def served(daemon):
    port = free_port()
    d = daemon(extra='metrics_listen = "127.0.0.1:%d"\n' % port).start()
    d.mport = port
    return d


def refused(status_and_rest):
    return status_and_rest == b"" or status_and_rest.split(b" ")[1][:1] == b"4"


def test_huge_headers_are_refused_without_keeping_memory(served):
    d = served
    before = rss_kb(d.proc.pid)
    # One 100 MB header.
    s = socket.create_connection(("127.0.0.1", d.mport))
    s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: ")
    sent = 0
    try:
        while sent < 100 << 20:
            s.sendall(b"a" * (1 << 20))
            sent += 1 << 20
    except (BrokenPipeError, ConnectionResetError):
        pass
    assert refused(answer(s))
    assert sent < 100 << 20, "the server read a 100 MB header"
    s.close()
    # 200,000 small headers.
    s = socket.create_connection(("127.0.0.1", d.mport))
    s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
    try:
        for i in range(0, 200000, 1000):
            s.sendall(b"".join(b"X-%d: v\r\n" % j for j in range(i, i + 1000)))
    except (BrokenPipeError, ConnectionResetError):
        pass
    assert refused(answer(s))
    s.close()
    # A body, though the endpoints take none.
    s = socket.create_connection(("127.0.0.1", d.mport))
    s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n"
              b"\r\n" + b"b" * 100000)
    assert refused(answer(s))
    s.close()
    assert rss_kb(d.proc.pid) - before < 8 * 1024
    # Ordinary requests still work.
    s = socket.create_connection(("127.0.0.1", d.mport))
    s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    assert answer(s).startswith(b"HTTP/1.1 200 OK")


def test_a_trickling_client_is_closed_at_the_deadline(served):
    d = served
    s = socket.create_connection(("127.0.0.1", d.mport))
    req = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 100
    t0 = time.monotonic()
    s.settimeout(0.5)
    closed = False
    for b in req:
        try:
            s.send(bytes([b]))
            if s.recv(1) == b"":
                closed = True
                break
        except socket.timeout:
            pass
        except (BrokenPipeError, ConnectionResetError):
            closed = True
            break
        if time.monotonic() - t0 > 20:
            break
    took = time.monotonic() - t0
    assert closed, "still open after %.1fs" % took
    assert 9 <= took <= 13, took
    assert "over the 10s deadline" in d.log()


def test_a_closed_metrics_connection_never_takes_an_smtp_sessions_data(served):
    """A metrics connection's descriptor, once evhttp is done with it,
    must not be registered for reading when an SMTP session gets the same
    number: it used to read part of that session's message, and the
    session waited forever for the rest."""
    import smtplib
    d = served
    body = b"Subject: big\r\n\r\n" + b"".join(
        b"%075d\r\n" % i for i in range(1400))  # 108 kB
    for i in range(10):
        s = socket.create_connection(("127.0.0.1", d.mport))
        s.sendall(b"GET /healthz HTTP/1.0\r\n\r\n")
        assert answer(s).split(b" ")[1] == b"200"
        s.close()
        with smtplib.SMTP("127.0.0.1", d.port, timeout=10) as c:
            c.ehlo("client.test")
            c.mail("a@sender.test")
            c.rcpt("user@example.com")
            code, text = c.data(body)
            assert code == 250, (i, code, text)
    assert d.stop() == 0
