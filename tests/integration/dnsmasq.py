"""DNS servers for the dns/ integration tests, all on 127.0.0.1 and random
ports: a real dnsmasq serving records a test writes, a server that answers
every query with one error code (SERVFAIL, REFUSED), and a socket that
never answers (timeouts). Plus the mxroute driver: one JSON object per
domain, from a one-shot run or an interactive session."""

import json
import os
import random
import select
import signal
import socket
import struct
import subprocess
import threading
import time

from conftest import BUILD
from proc import stop_process

DNSMASQ = "/usr/sbin/dnsmasq"
MXROUTE = os.path.join(BUILD, "tests", "tools", "mxroute")

QTYPES = {"A": 1, "PTR": 12, "MX": 15, "AAAA": 28, "SOA": 6}


def free_udp_tcp_port():
    """A port free for both UDP and TCP on 127.0.0.1 (dnsmasq takes both)."""
    for _ in range(50):
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        u.bind(("127.0.0.1", 0))
        port = u.getsockname()[1]
        t = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            t.bind(("127.0.0.1", port))
            return port
        except OSError:
            continue
        finally:
            t.close()
            u.close()
    raise AssertionError("no free port")


def encode_name(name):
    out = b""
    for label in name.rstrip(".").split("."):
        out += bytes([len(label)]) + label.encode()
    return out + b"\0"


def query(port, name, qtype, timeout=1.0):
    """One UDP query; returns (rcode, ancount, reply) or None on timeout."""
    qid = random.randint(0, 65535)
    pkt = struct.pack(">HHHHHH", qid, 0x0100, 1, 0, 0, 0)
    pkt += encode_name(name) + struct.pack(">HH", QTYPES[qtype], 1)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        s.sendto(pkt, ("127.0.0.1", port))
        try:
            reply, _ = s.recvfrom(4096)
        except socket.timeout:
            return None
    flags, _, an = struct.unpack(">HHH", reply[2:8])
    return flags & 15, an, reply


class Dnsmasq:
    """dnsmasq in the foreground with the records given as options, e.g.
    ["--mx-host=a.test,mx1.a.test,10", "--host-record=mx1.a.test,192.0.2.1"].
    Names under the local domains that it does not know are NXDOMAIN;
    anything else is REFUSED (it has no upstream)."""

    def __init__(self, tmp_path, records, local=("test",), ttl=60):
        self.dir = str(tmp_path)
        self.port = free_udp_tcp_port()
        self.logpath = os.path.join(self.dir, "dnsmasq-%d.log" % self.port)
        self.args = [DNSMASQ, "--keep-in-foreground", "--no-resolv",
                     "--no-hosts", "--port=%d" % self.port,
                     "--listen-address=127.0.0.1", "--bind-interfaces",
                     "--conf-file=/dev/null", "--pid-file=",
                     "--log-queries", "--log-facility=" + self.logpath,
                     "--local-ttl=%d" % ttl]
        if os.getuid() == 0:
            self.args.append("--user=root")
        self.args += ["--local=/%s/" % d for d in local]
        self.args += list(records)
        self.proc = None

    def start(self):
        self.proc = subprocess.Popen(self.args, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError("dnsmasq exited: %s"
                                     % self.proc.stderr.read().decode())
            if query(self.port, "ready.invalid", "A", 0.2) is not None:
                return self
            time.sleep(0.05)
        raise AssertionError("dnsmasq did not answer")

    def reload(self):
        """SIGHUP: re-reads --addn-hosts files and empties its cache."""
        self.proc.send_signal(signal.SIGHUP)

    def queries(self, qtype, name):
        """How many queries of qtype for name it has received."""
        try:
            with open(self.logpath) as f:
                text = f.read()
        except FileNotFoundError:
            return 0
        # Authoritative answers are logged as auth[TYPE].
        return sum(text.count("%s[%s] %s from" % (kind, qtype, name))
                   for kind in ("query", "auth"))

    def stop(self):
        if self.proc is not None:
            stop_process(self.proc)
            self.proc.stderr.close()


class RcodeServer:
    """Answers every UDP query at once with the given rcode and no records
    (2 = SERVFAIL, 5 = REFUSED). Counts the queries."""

    def __init__(self, rcode):
        self.rcode = rcode
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.count = 0
        self.stopping = False
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        while not self.stopping:
            r, _, _ = select.select([self.sock], [], [], 0.1)
            if not r:
                continue
            pkt, peer = self.sock.recvfrom(4096)
            if len(pkt) < 12:
                continue
            self.count += 1
            flags = 0x8000 | (struct.unpack(">H", pkt[2:4])[0] & 0x0100)
            flags |= 0x0080 | self.rcode
            qdcount = struct.unpack(">H", pkt[4:6])[0]
            reply = pkt[0:2] + struct.pack(">HHHHH", flags, qdcount, 0, 0, 0)
            self.sock.sendto(reply + pkt[12:], peer)

    def stop(self):
        self.stopping = True
        self.thread.join(5)
        self.sock.close()


class SilentServer:
    """A bound UDP socket that reads nothing: queries to it time out
    (no ICMP port unreachable, as an unbound port would give)."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]

    def stop(self):
        self.sock.close()


def write_conf(tmp_path, servers, extra="", hostname="mx2.example.test"):
    """A config for mxroute: the DNS servers, this host's name, extras."""
    path = os.path.join(str(tmp_path), "mxroute-%d.conf" % random.randint(0, 1 << 30))
    with open(path, "w") as f:
        f.write('hostname = "%s"\n' % hostname)
        # Below it too: the domain sections tests add are for names there.
        f.write('relay_domains = {"example.test", ".example.test"}\n')
        f.write('spool_dir = "%s"\n' % os.path.join(str(tmp_path), "spool"))
        f.write('control_socket = "%s"\n' % os.path.join(str(tmp_path), "ctl"))
        f.write("dns_servers = {%s}\n"
                % ", ".join('"127.0.0.1:%d"' % p for p in servers))
        f.write('log_level = "debug"\n')
        f.write(extra)
    return path


def mxroute(conf, *args, timeout=30):
    """Runs mxroute once; returns (list of JSON objects, stderr text)."""
    p = subprocess.run([MXROUTE, "-c", conf] + list(args),
                       capture_output=True, timeout=timeout)
    err = p.stderr.decode("utf-8", "replace")
    assert p.returncode == 0, "mxroute exited %d:\n%s" % (p.returncode, err)
    out = [json.loads(line) for line in p.stdout.decode().splitlines()]
    return out, err


class MxrouteSession:
    """mxroute -i: one command per line in, JSON lines out as answered."""

    def __init__(self, conf, *args):
        self.proc = subprocess.Popen([MXROUTE, "-c", conf, "-i"] + list(args),
                                     stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL)
        self.buf = b""

    def send(self, line):
        self.proc.stdin.write(line.encode() + b"\n")
        self.proc.stdin.flush()

    def read(self, timeout=10):
        """The next JSON line, or None if none comes within timeout."""
        deadline = time.monotonic() + timeout
        while b"\n" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            r, _, _ = select.select([self.proc.stdout], [], [], left)
            if not r:
                return None
            chunk = os.read(self.proc.stdout.fileno(), 65536)
            if not chunk:
                return None
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return json.loads(line)

    def ask(self, line, timeout=10):
        self.send(line)
        got = self.read(timeout)
        assert got is not None, "no answer to %r" % line
        return got

    def close(self):
        """Closes stdin; returns mxroute's exit status."""
        self.proc.stdin.close()
        try:
            return self.proc.wait(10)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
            self.proc.stdout.close()
