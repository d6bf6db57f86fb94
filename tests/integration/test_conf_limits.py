"""What the config may ask for (issue 14, point 9): `mxspoold -t` refuses,
at its line, every value the daemon could not honour (numbers past their
limits, a file that ends inside a section, paths that would be cut), the
daemon refuses to start with them, and the limits themselves work."""

import os
import subprocess
import tempfile
import time

from backend import Backend
from conftest import MXSPOOLD, wait_for
from dnsmasq import MxrouteSession, SilentServer, write_conf


def check(conf):
    return subprocess.run([MXSPOOLD, "-t", "-c", conf], capture_output=True,
                          text=True, timeout=30)


def refused(d, lines):
    """d's config gets exactly lines from -t, and stops the daemon too."""
    r = check(d.conf)
    assert (r.returncode, r.stderr.splitlines()) == \
        (1, ["%s:%s" % (d.conf, l) for l in lines])
    d.start(wait=False)
    assert d.proc.wait(10) == 1
    assert d.log().splitlines() == r.stderr.splitlines()


def first_line(d):
    """The line of d's config where its extra text starts."""
    with open(d.conf) as f:
        return len(f.read().splitlines()) + 1


def test_numbers_past_their_limits_are_refused(daemon):
    # Before: -t passed all of these; INT64_MAX closed every session
    # within a second, 4294968s of DNS timeout was 704 ms, the retry
    # interval logged "next probe in -9223372036854775s".
    extra = ("command_timeout = 9223372036854775807\n"
             "dns_timeout = 4294968s\n"
             "retry {\n initial = 9223372036854775807\n}\n"
             "message_size_limit = 5G\n")
    d = daemon(extra=extra)  # dns_timeout in place of the test config's
    n = first_line(d) - len(extra.splitlines())
    refused(d, [
        "%d: command_timeout: 9223372036854775807 is more than the limit "
        "of 1d" % n,
        "%d: dns_timeout: 4294968s is more than the limit of 30s" % (n + 1),
        "%d: initial: 9223372036854775807 is more than the limit of 1d"
        % (n + 3),
        "%d: message_size_limit: 5G is more than the limit of 1G" % (n + 5),
    ])


def test_a_file_that_ends_inside_a_section_is_refused(daemon):
    d = daemon()
    n = first_line(d)
    with open(d.conf, "a") as f:
        f.write('domain "example.com" {\n route = "mx"\n retry {\n'
                '  initial = 1m\n')
    refused(d, [
        "%d: section 'domain \"example.com\"' opened here is never closed"
        % n,
        "%d: section 'retry' opened here is never closed" % (n + 2),
    ])


def test_paths_that_would_be_cut_are_refused(daemon, tmp_path):
    # Before: -t passed these; the control socket and the spool failed
    # at start, and delivery went to the lmtp:unix path cut to 107 bytes.
    long_sock = "/tmp/" + "s" * 103  # 108 bytes
    long_dir = str(tmp_path) + "/" + "/".join(["d" * 200] * 20)
    extra = ('control_socket = "%s"\n' % long_sock +
             'spool_dir = "%s"\n' % long_dir +
             'domain "example.com" {\n route = "lmtp:unix:%s"\n}\n'
             % long_sock)
    d = daemon(extra=extra)  # in place of the test config's own two
    n = first_line(d) - len(extra.splitlines())
    refused(d, [
        "%d: control_socket: a path of 108 bytes is more than the limit "
        "of 107 for a Unix socket" % n,
        "%d: spool_dir: a path of %d bytes is more than the limit of 4000 "
        "(PATH_MAX, less room for the spool's own files)"
        % (n + 1, len(long_dir)),
        "%d: route: a path of 108 bytes is more than the limit of 107 for "
        "a Unix socket" % (n + 3),
    ])
    assert not os.path.exists(os.path.join(str(tmp_path), "d" * 200))


def test_a_session_at_the_longest_command_timeout_is_not_cut(daemon):
    d = daemon(extra="command_timeout = 1d\ndata_timeout = 1d\n"
                     "session_deadline = 1d\n").start()
    c = d.connect()
    assert c.reply()[0].startswith("220 ")
    time.sleep(2)
    assert c.cmd("NOOP") == ["250 2.0.0 Ok"]
    assert c.cmd("QUIT")[0].startswith("221 ")


def test_a_dns_timeout_at_its_limit_waits_that_long(tmp_path):
    # 30 s, in milliseconds as an int for c-ares; 4294968s wrapped to
    # 704 ms before.
    silent = SilentServer()
    try:
        conf = write_conf(tmp_path, [silent.port],
                          "dns_timeout = 30s\ndns_tries = 1\n")
        s = MxrouteSession(conf)
        try:
            s.send("example.test")
            assert s.read(timeout=2) is None
        finally:
            s.proc.kill()
            s.proc.wait()
    finally:
        silent.stop()


def test_an_lmtp_socket_path_at_the_limit_delivers(daemon):
    # A directory short enough that the socket's path is exactly 107
    # bytes, the most sun_path holds.
    top = tempfile.mkdtemp(prefix="mxs-", dir="/tmp")
    name = "b" * (107 - len(top) - len("/.sock"))
    try:
        b = Backend(top, name=name, lmtp=True, unix=True).start()
        try:
            assert len(b.path) == 107
            d = daemon(extra='domain "example.com" {\n'
                             ' route = "lmtp:unix:%s"\n}\n' % b.path).start()
            c = d.connect()
            c.reply()
            c.cmd("EHLO client.test")
            assert c.cmd("MAIL FROM:<a@sender.test>")[0].startswith("250")
            assert c.cmd("RCPT TO:<user@example.com>")[0].startswith("250")
            assert c.cmd("DATA")[0].startswith("354")
            c.send("Subject: x\r\n\r\nhello\r\n.\r\n")
            assert c.reply()[0].startswith("250")
            b.wait_for(lambda: len(b.messages()) == 1, what="delivery")
            wait_for(lambda: "status=sent" in d.log(), 10, "the log")
            assert "relay=%s" % b.path in d.log()
        finally:
            b.stop()
    finally:
        for f in os.listdir(top):
            os.unlink(os.path.join(top, f))
        os.rmdir(top)
