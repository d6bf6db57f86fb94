"""The PROXY protocol on proxy_listen listeners (HAProxy's
proxy-protocol.txt, v1 and v2): the client a trusted proxy names is the
client everywhere; anything else gets no greeting. The tests speak the
protocol themselves over loopback, and then put a real HAProxy in front."""

import socket
import struct
import time

import pytest

from conftest import free_port, log_lines, wait_for
from smtphelp import queued_id, send_message, spool_body, spool_envelopes, \
    split_received

MSG = b"Subject: proxied\r\n\r\nHello.\r\n.\r\n"
SIG = b"\r\n\r\n\x00\r\nQUIT\n"


def v1(src, dst="127.0.0.1", sport=40000, dport=25):
    fam = "TCP6" if ":" in src else "TCP4"
    return ("PROXY %s %s %s %d %d\r\n" % (fam, src, dst, sport, dport)).encode()


def v2(src, dst=None, sport=40000, dport=25, tlvs=b"", local=False):
    """A v2 header: PROXY (or LOCAL) for TCP over IPv4 or IPv6."""
    if local:
        return SIG + bytes([0x20, 0x00]) + struct.pack("!H", 0)
    fam = socket.AF_INET6 if ":" in src else socket.AF_INET
    dst = dst or ("::1" if fam == socket.AF_INET6 else "127.0.0.1")
    block = (socket.inet_pton(fam, src) + socket.inet_pton(fam, dst) +
             struct.pack("!HH", sport, dport) + tlvs)
    return (SIG + bytes([0x21, 0x21 if fam == socket.AF_INET6 else 0x11]) +
            struct.pack("!H", len(block)) + block)


@pytest.fixture
def pdaemon(daemon):
    """A factory: pdaemon(extra=...) starts a daemon that also listens for
    the PROXY protocol on .pport."""
    def make(extra="", **kw):
        pport = free_port()
        d = daemon(extra='proxy_listen = {"127.0.0.1:%d"}\n' % pport + extra,
                   **kw)
        d.pport = pport
        d.start()
        wait_log_listening(d)
        return d
    return make


def wait_log_listening(d):
    wait_for(lambda: log_lines(d, "for the PROXY protocol"),
             what="the proxy listener")


def pconnect(d, header=b"", source=None):
    """A raw client of d's proxy listener that has sent header."""
    from conftest import Client
    s = socket.create_connection(("127.0.0.1", d.pport), 10,
                                 source_address=(source, 0) if source else None)
    c = Client(s)
    if header:
        c.send(header)
    return c


def no_greeting(c, timeout=5):
    """The server closes c without having sent a byte."""
    assert c.closed(timeout)
    assert c.buf == b""
    return True


def deliver(c):
    """A message through c (greeted already); returns its queue id."""
    assert c.cmd("EHLO client.test")[-1].startswith("250 ")
    qid = queued_id(send_message(c, MSG))
    assert c.cmd("QUIT") == ["221 2.0.0 Bye"]
    c.close()
    return qid


def test_v1_header_names_the_client_in_the_log_received_and_envelope(pdaemon):
    d = pdaemon()
    c = pconnect(d, v1("192.0.2.10", sport=40000, dport=d.pport))
    assert c.reply() == ["220 mx.test.example ESMTP mxspool"]
    qid = deliver(c)
    assert d.stop() == 0
    log = d.log()
    assert "connect from [192.0.2.10]:40000 via proxy [127.0.0.1]:" in log
    assert "%s: client=[192.0.2.10]:40000, conn=" % qid in log
    assert "disconnect from [192.0.2.10]:40000 " in log
    # The PTR lookup is for the client, not the proxy.
    assert "PTR 10.2.0.192.in-addr.arpa" in log
    received, _ = split_received(spool_body(d, qid))
    assert received.startswith(
        b"Received: from client.test (unknown [192.0.2.10])\r\n")
    assert spool_envelopes(d)[qid]["client"] == "192.0.2.10"


def test_v2_header_with_tlvs_names_an_ipv6_client(pdaemon):
    d = pdaemon()
    tlvs = b"\x01\x00\x04smtp" + b"\x04\x00\x00" + b"\x05\x00\x03abc"
    c = pconnect(d, v2("2001:db8::10", sport=2525, tlvs=tlvs))
    assert c.reply()[0].startswith("220 ")
    qid = deliver(c)
    assert d.stop() == 0
    log = d.log()
    assert "connect from [2001:db8::10]:2525 via proxy [127.0.0.1]:" in log
    received, _ = split_received(spool_body(d, qid))
    assert b"(unknown [IPv6:2001:db8::10])" in received
    assert spool_envelopes(d)[qid]["client"] == "2001:db8::10"


def test_a_header_in_pieces_is_waited_for_and_smtp_after_it_is_kept(pdaemon):
    d = pdaemon()
    h = v2("192.0.2.20")
    c = pconnect(d)
    for i in range(0, len(h), 5):
        c.send(h[i:i + 5])
        time.sleep(0.05)
    assert c.reply()[0].startswith("220 ")
    # A v1 header and the client's first command in one segment: the
    # header is read to its CRLF and no further.
    c2 = pconnect(d, v1("192.0.2.21") + b"NOOP\r\n")
    assert c2.reply()[0].startswith("220 ")
    assert c2.reply() == ["250 2.0.0 Ok"]
    c.close()
    c2.close()


def test_the_per_ip_limit_counts_the_headers_clients(pdaemon):
    d = pdaemon(extra="max_connections_per_ip = 1\n")
    a = pconnect(d, v1("192.0.2.10"))
    assert a.reply()[0].startswith("220 ")
    # The same claimed client again, from the same proxy: refused.
    b = pconnect(d, v2("192.0.2.10"))
    assert b.reply() == ["421 4.7.0 mx.test.example Error: too many "
                         "connections from 192.0.2.10"]
    # Other claimed clients, from the same proxy: each its own address.
    c = pconnect(d, v1("192.0.2.11"))
    assert c.reply()[0].startswith("220 ")
    e = pconnect(d, v2("2001:db8::11"))
    assert e.reply()[0].startswith("220 ")
    # And the proxy's own address is not used up by its clients.
    f = d.connect()
    assert f.reply()[0].startswith("220 ")
    assert log_lines(d, "reject: too many connections from 192.0.2.10")
    for x in (a, b, c, e, f):
        x.close()


def test_no_header_within_proxy_timeout_closes_without_a_greeting(pdaemon):
    d = pdaemon(extra="proxy_timeout = 1s\n")
    c = pconnect(d)
    t = time.monotonic()
    assert no_greeting(c, timeout=10)
    took = time.monotonic() - t
    assert 0.8 <= took < 5, took
    assert log_lines(d, "reject: no whole PROXY header from [127.0.0.1]:")
    # A header that trickles in past the timeout is cut off too: the
    # timeout is for the whole header, not for each byte.
    c = pconnect(d)
    t = time.monotonic()
    h = v1("192.0.2.10")
    try:
        for i in range(len(h)):
            c.send(h[i:i + 1])
            time.sleep(0.1)
    except OSError:
        pass
    assert no_greeting(c, timeout=10)
    assert time.monotonic() - t < 4


@pytest.mark.parametrize("junk,logged", [
    (b"EHLO client.test\r\n", True),
    (b"PROXY TCP4 192.0.2.010 127.0.0.1 40000 25\r\n", True),
    (b"PROXY TCP4 192.0.2.10 127.0.0.1 40000 25\n", True),
    (b"PROXY " + b"f" * 200, True),
    (SIG + b"\x22\x11\x00\x0c" + b"\x00" * 12, True),
    (SIG + b"\x21\x11\xff\xff", True),
    (SIG + b"\x21\x11\x00\x0c" + b"\x00" * 11, False),
], ids=["smtp", "leading-zero", "lf", "long-v1", "command", "oversized-v2",
        "short-v2"])
def test_a_bad_header_closes_without_a_greeting(pdaemon, junk, logged):
    d = pdaemon()
    c = pconnect(d, junk)
    if not logged:
        c.sock.shutdown(socket.SHUT_WR)  # short: the rest never comes
    assert no_greeting(c)
    if logged:
        wait_for(lambda: log_lines(d, "reject: bad PROXY header from "
                                   "[127.0.0.1]:"), what="the refusal logged")


def test_an_untrusted_proxy_is_refused_and_logged(pdaemon):
    d = pdaemon(extra='proxy_trusted = {"10.0.0.0/8", "2001:db8::/32"}\n')
    c = pconnect(d, v1("192.0.2.10"))
    assert no_greeting(c)
    assert wait_for(lambda: log_lines(
        d, "reject: connect from [127.0.0.1]:"), what="the refusal")[0] \
        .endswith(": not in proxy_trusted")
    assert not log_lines(d, "192.0.2.10")
    # Another loopback source is no better.
    c = pconnect(d, source="127.0.0.2")
    assert no_greeting(c)
    # The plain listener is not affected.
    c = d.connect()
    assert c.reply()[0].startswith("220 ")


def test_the_plain_listener_never_reads_a_header(pdaemon):
    """A client of a plain listener cannot claim another address."""
    d = pdaemon()
    c = d.connect()
    c.send(v1("192.0.2.66"))
    assert c.reply()[0].startswith("220 ")
    assert c.reply()[0].startswith("500 ")
    assert not log_lines(d, "192.0.2.66")


@pytest.mark.parametrize("header", [v2("", local=True), b"PROXY UNKNOWN\r\n",
                                    SIG + b"\x21\x00\x00\x00"],
                         ids=["v2-local", "v1-unknown", "v2-unspec"])
def test_a_local_header_gets_a_greeting_and_no_mail(pdaemon, header):
    d = pdaemon()
    c = pconnect(d, header)
    assert c.reply()[0].startswith("220 mx.test.example ")
    # What a health check sends (HAProxy's option smtpchk) is answered...
    assert c.cmd("HELO haproxy.test") == ["250 mx.test.example"]
    assert c.cmd("NOOP") == ["250 2.0.0 Ok"]
    # ... but no mail is taken from the proxy itself.
    assert c.cmd("MAIL FROM:<a@sender.test>") == [
        "550 5.7.0 Error: the proxy's own connection takes no mail"]
    assert c.cmd("RCPT TO:<user@example.com>")[0].startswith("503 ")
    assert c.cmd("QUIT") == ["221 2.0.0 Bye"]
    assert c.closed()
    assert log_lines(d, ": connect from [127.0.0.1]:")[-1].endswith(
        ": the proxy's own connection")
    assert log_lines(d, "NOQUEUE: reject: MAIL from [127.0.0.1]:")


def test_refusals_are_counted_by_reason(pdaemon):
    mport = free_port()
    d = pdaemon(extra='metrics_listen = "127.0.0.1:%d"\n'
                      'proxy_trusted = {"127.0.0.2"}\n' % mport)
    from test_metrics import get, sample
    no_greeting(pconnect(d, v1("192.0.2.10")))
    no_greeting(pconnect(d, b"junk\r\n", source="127.0.0.2"))
    c = pconnect(d, v2("", local=True), source="127.0.0.2")
    c.reply()
    c.cmd("HELO haproxy.test")
    assert c.cmd("MAIL FROM:<>")[0].startswith("550 5.7.0 ")
    c.close()

    def counted():
        _, _, text = get(mport, "/metrics")
        return [sample(text, 'mxspool_rejected_total{reason="%s"}' % r)
                for r in ("proxy_untrusted", "proxy_header", "proxy_local")]
    wait_for(lambda: counted() == [1, 1, 1], what="each refusal counted")


def test_reload_opens_and_closes_proxy_listeners(pdaemon):
    d = pdaemon()
    other = free_port()
    with open(d.conf) as f:
        text = f.read()
    with open(d.conf, "w") as f:
        f.write(text.replace('proxy_listen = {"127.0.0.1:%d"}' % d.pport,
                             'proxy_listen = {"127.0.0.1:%d"}' % other))
    d.proc.send_signal(1)  # SIGHUP
    wait_for(lambda: log_lines(d, "reload: %s in force" % d.conf),
             what="the reload")
    s = socket.create_connection(("127.0.0.1", other), 5)
    s.sendall(v1("192.0.2.30"))
    assert s.recv(100).startswith(b"220 ")
    s.close()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", d.pport), 2).recv(1)
    assert log_lines(d, "reload: proxy_listen changed: applied")


# HAProxy in front: send-proxy (v1) and send-proxy-v2, and its SMTP health
# check with check-send-proxy.

def haproxy_in_front(dirpath, backend_port, server_opts):
    """One frontend, one server: backend_port with server_opts (and
    HAProxy's SMTP check when they ask for checks)."""
    from haproxy import HAProxy
    port = free_port()
    h = HAProxy(dirpath,
                "frontend smtp\n"
                "  bind 127.0.0.1:%d\n"
                "  default_backend mx\n"
                "backend mx\n"
                "%s"
                "  server mx1 127.0.0.1:%d %s\n"
                % (port, "  option smtpchk HELO haproxy.test\n"
                   if "check" in server_opts else "",
                   backend_port, server_opts), [port])
    h.port = port
    return h


@pytest.fixture
def haproxy(tmp_path):
    made = []

    def make(backend_port, server_opts):
        sub = tmp_path / ("h%d" % len(made))
        sub.mkdir()
        h = haproxy_in_front(str(sub), backend_port, server_opts)
        made.append(h)
        h.wait_listening()
        return h
    yield make
    for h in made:
        h.stop()


def through(h, source="127.0.0.2"):
    from conftest import Client
    s = socket.create_connection(("127.0.0.1", h.port), 10,
                                 source_address=(source, 0))
    return Client(s), s.getsockname()[1]


@pytest.mark.parametrize("opt", ["send-proxy", "send-proxy-v2"])
def test_haproxy_in_front_passes_the_client_address(pdaemon, haproxy, opt):
    d = pdaemon()
    h = haproxy(d.pport, opt)
    c, port = through(h)
    assert c.reply()[0].startswith("220 mx.test.example ")
    qid = deliver(c)
    wait_for(lambda: log_lines(d, "disconnect from [127.0.0.2]:%d " % port),
             what="the session's end")
    log = d.log()
    assert d.stop() == 0
    assert "connect from [127.0.0.2]:%d via proxy [127.0.0.1]:" % port in log
    assert "%s: client=[127.0.0.2]:%d," % (qid, port) in log
    received, _ = split_received(spool_body(d, qid))
    assert received.startswith(
        b"Received: from client.test (unknown [127.0.0.2])\r\n")


@pytest.mark.parametrize("opt", ["send-proxy", "send-proxy-v2"])
def test_haproxy_smtp_health_checks_pass_and_take_no_mail(pdaemon, haproxy,
                                                         opt):
    d = pdaemon()
    h = haproxy(d.pport, opt + " check check-send-proxy inter 200ms "
                         "fall 1 rise 1")
    # Three checks, each saying HELO and QUIT. With v2 each is a LOCAL
    # connection; with v1 HAProxy names the check's own two ends, as the
    # specification recommends, and the check is a client like any other.
    mark = (": the proxy's own connection" if opt == "send-proxy-v2"
            else " via proxy [127.0.0.1]:")
    wait_for(lambda: len(log_lines(d, mark)) >= 3, what="three health checks")
    assert not log_lines(d, "reject:")
    checks = [l.split("]: ")[1].split(":")[0] for l in log_lines(d, mark)][:3]
    for cid in checks:
        end = wait_for(lambda: log_lines(d, "%s: disconnect from" % cid),
                       what="the check's end")
        assert end[0].endswith(" commands=2 messages=0 errors=0")
    # The server is up: mail flows through.
    c, port = through(h)
    assert c.reply()[0].startswith("220 ")
    deliver(c)
    assert log_lines(d, "connect from [127.0.0.2]:%d via proxy" % port)
