"""Shared helpers for integration tests: each test starts its own mxspoold
on a random free loopback port, in its own temporary directory, and stops it
afterwards."""

import os
import re
import shutil
import signal
import socket
import subprocess
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUILD = os.environ.get("MXSPOOL_BUILD", os.path.join(ROOT, "build"))
MXSPOOLD = os.path.join(BUILD, "mxspoold")


def need(program, package):
    """The path of a program the tests run. A missing one fails the test:
    make test installed every package mk/deps.sh lists, so it is missing
    from there (a skip would hide that on a machine that has it)."""
    path = shutil.which(program) if "/" not in program else program
    if path is None or not os.access(path, os.X_OK):
        pytest.fail("%s is not installed: add Debian package %s to the "
                    "test set in mk/deps.sh" % (program, package))
    return path


def free_port(family=socket.AF_INET, host="127.0.0.1"):
    """A TCP port nobody listens on right now."""
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def wait_for(pred, timeout=30, what="condition"):
    """Polls pred until it returns something true, and returns that."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(0.1)
    raise AssertionError("timed out waiting for " + what)


def options_set(text):
    """The names of the options a config text sets (`name =` or
    `name +=` at the start of a line)."""
    return set(re.findall(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*\+?=", text,
                          re.MULTILINE))


def log_lines(d, needle):
    """The lines of d's log that contain needle."""
    return [l for l in d.log().splitlines() if needle in l]


class Daemon:
    """One mxspoold process with a config of its own."""

    def __init__(self, tmp_path, extra="", relay_domains=("example.com",),
                 listen=None, hostname="mx.test.example"):
        self.dir = tmp_path
        self.port = free_port()
        self.listen = listen or ["127.0.0.1:%d" % self.port]
        self.conf = os.path.join(tmp_path, "mxspool.conf")
        self.spool = os.path.join(tmp_path, "spool")
        self.logpath = os.path.join(tmp_path, "mxspoold.log")
        self.hostname = hostname
        self.proc = None
        domains = ", ".join('"%s"' % d for d in relay_domains)
        listens = ", ".join('"%s"' % a for a in self.listen)
        base = [
            ("hostname", '"%s"' % hostname),
            ("listen", "{%s}" % listens),
            ("spool_dir", '"%s"' % self.spool),
            ("control_socket", '"%s"' % os.path.join(tmp_path, "ctl.sock")),
            ("relay_domains", "{%s}" % domains),
            ("log_level", '"debug"'),
            # DNS stays on loopback: a port where nothing answers, unless
            # the test names its own server.
            ("dns_servers", '{"127.0.0.1:%d"}' % free_port()),
            ("dns_timeout", "1s"),
            ("dns_tries", "1"),
            ("metrics_listen", '""'),  # tests that want it set it
        ]
        # An option given twice is an error: extra's own value replaces
        # the base one.
        given = options_set(extra)
        with open(self.conf, "w", encoding="utf-8") as f:
            for name, value in base:
                if name not in given:
                    f.write("%s = %s\n" % (name, value))
            f.write(extra)

    def start(self, wait=True):
        self.logfile = open(self.logpath, "ab")
        self.proc = subprocess.Popen([MXSPOOLD, "-c", self.conf],
                                     stdout=self.logfile, stderr=self.logfile)
        if wait:
            self.wait_listening()
        return self

    def wait_listening(self, timeout=15):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError("mxspoold exited with %s:\n%s"
                                     % (self.proc.returncode, self.log()))
            try:
                socket.create_connection(("127.0.0.1", self.port), 0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        raise AssertionError("mxspoold did not listen:\n" + self.log())

    def connect(self, timeout=10, source=None):
        """A raw Client; source: the loopback address to connect from
        (e.g. "127.0.0.2"), to look like another client host."""
        s = socket.create_connection(
            ("127.0.0.1", self.port), timeout,
            source_address=(source, 0) if source else None)
        return Client(s)

    def stop(self, sig=signal.SIGTERM, timeout=20):
        """Sends sig and returns the exit status."""
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        finally:
            self.logfile.close()

    def kill(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def log(self):
        try:
            with open(self.logpath, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""


class Client:
    """A raw SMTP client: exact bytes out, whole replies in."""

    def __init__(self, sock):
        self.sock = sock
        self.buf = b""

    def send(self, data):
        if isinstance(data, str):
            data = data.encode()
        self.sock.sendall(data)

    def line(self):
        while b"\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError("connection closed; unread: %r" % self.buf)
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return line.rstrip(b"\r").decode("utf-8", "replace")

    def reply(self):
        """One whole (possibly multi-line) reply, as a list of lines."""
        lines = [self.line()]
        while len(lines[-1]) > 3 and lines[-1][3] == "-":
            lines.append(self.line())
        return lines

    def cmd(self, text):
        self.send(text + "\r\n")
        return self.reply()

    def closed(self, timeout=5):
        """True if the server closes the connection within timeout."""
        self.sock.settimeout(timeout)
        try:
            while True:
                chunk = self.sock.recv(65536)
                if not chunk:
                    return True
                self.buf += chunk
        except (ConnectionResetError, BrokenPipeError):
            return True
        except socket.timeout:
            return False

    def close(self):
        self.sock.close()


@pytest.fixture
def daemon(tmp_path):
    """A factory: daemon(extra="...") makes a configured, unstarted Daemon."""
    made = []

    def make(**kw):
        sub = tmp_path / ("d%d" % len(made))
        sub.mkdir()
        d = Daemon(str(sub), **kw)
        made.append(d)
        return d

    yield make
    for d in made:
        d.kill()


@pytest.fixture
def backend(tmp_path):
    """A factory for scriptable stores (backend.py): backend(**rules)
    starts one; all are stopped after the test."""
    from backend import Backend
    made = []

    def make(**kw):
        b = Backend(str(tmp_path), name="store%d" % len(made), **kw).start()
        made.append(b)
        return b

    yield make
    for b in made:
        b.stop()


@pytest.fixture
def dovecot_store(tmp_path):
    """A factory for real Dovecot LMTP stores (dovecot.py):
    dovecot_store(users=...) starts one; all are removed after the test."""
    import dovecot
    made = []

    def make(**kw):
        dc = dovecot.Dovecot(str(tmp_path), **kw)
        made.append(dc)
        return dc.start()

    yield make
    for dc in made:
        dc.close()
