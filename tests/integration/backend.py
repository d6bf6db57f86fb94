"""A scriptable SMTP and LMTP test server (the "mailbox store" the relay
delivers to), built on aiosmtpd and run as a subprocess.

Use from a test:

    from backend import Backend, make_ca, make_cert

    b = Backend(str(tmp_path), lmtp=False, unix=False, tls=None,
                rcpt={"bad@example.com": "550 5.1.1 no such user"}).start()
    ... deliver to 127.0.0.1:b.port (or b.path for LMTP over a unix socket)
    b.messages()     # [{"conn", "mail_from", "mail_params", "rcpts",
                     #   "rcpt_params", "data" (bytes, unstuffed),
                     #   "raw" (bytes as sent, stuffed), "replies", "tls",
                     #   "helo"}, ...] in arrival order
    b.commands()     # every command line, in order ("MAIL FROM:<a> SIZE=5")
    b.connections()  # number of connections accepted
    b.concurrency()  # [(t, connections open)] after each connect and close
    b.events()       # everything, see below
    b.set(eod={"*": "451 4.3.0 try later"})   # new rules, at once
    b.update(listen=False)                    # change some rules only
    b.stop()

Backend(dirpath, name="backend", lmtp=False, unix=False, tls=None,
hostname="store.test.example", **rules): `tls` is a (cert, key) pair of PEM
files: STARTTLS is offered with it. `unix` listens on dirpath/NAME.sock
(b.path) instead of a TCP port on 127.0.0.1 (b.port). The process writes
every event as one JSON line to dirpath/NAME.log and reads its rules from
dirpath/NAME.json whenever it needs one, so set()/update() act on the next
command, even in a connection already open.

Rules (all optional):
    listen      False: stop listening (new connections are refused, open
                ones go on); True again listens on the same port or path.
    greeting    the greeting line; a non-2xx greeting is sent, then the
                connection closed.
    ehlo        a reply to EHLO/LHLO instead of the normal one (e.g.
                "502 5.5.1 no"); HELO still works (SMTP).
    extensions  the EHLO keywords offered, in order (default: PIPELINING,
                SIZE 10485760, 8BITMIME, ENHANCEDSTATUSCODES, DSN, SMTPUTF8;
                STARTTLS is added when tls is set and TLS is not up).
                "SIZE n" is also enforced at MAIL (552 5.3.4).
    starttls    a reply to STARTTLS instead of 220.
    mail        a reply to MAIL (2xx accepts it).
    mail_reused a reply to MAIL on a connection that already took a
                message (e.g. "421 4.4.2 idle for too long": a store
                closing a connection just as the client reuses it), or
                "drop": close it without a word.
    rcpt        {"addr": reply, "*": reply}: replies to RCPT per recipient
                (2xx accepts).
    data        a reply to DATA instead of 354.
    eod         {"addr": reply, "*": reply}: the reply after the data. SMTP
                sends the "*" one (or the first accepted recipient's); LMTP
                one per accepted recipient, in RCPT order. Default 250.
    stall       {"greeting"|"ehlo"|"mail"|"rcpt"|"data"|"eod"|"quit": secs}
                waits that long before answering.
    drop        a phase (as for stall): close the connection there without
                answering ("eod": after the whole message was read).
    kick        [secs, line]: after the reply to a message, if no command
                comes within secs, send line (e.g. a 421) and close.
Any reply starting with "421" is sent and then the connection is closed.

Events (b.events()), each with "t" (monotonic seconds) and "ev":
    listen {port|path}, unlisten, connect {conn}, cmd {conn, line, tls},
    recv {conn, lines}  the command lines of one read from the socket, as
                        they arrived (PIPELINING shows as several lines in
                        one recv), tls {conn, version}, message {...},
    aborted {conn, phase}  the client went away in the middle of DATA,
    close {conn}.

Driving relay/client without the scheduler: send(dirpath, [route...],
[message bytes...], to=(...), args=(...)) runs tests/tools/sendmsg with a
config from write_conf() and returns a Result (.rcpts: one dict per
recipient and message, with code, dsn, text, relay, tls; .by_rcpt(qid);
.end: the session's end; .elapsed). smtp_route(b) and lmtp_route(b) name a
backend as a route.

Run alone: python3 backend.py --log FILE --control FILE (--port N |
--unix PATH) [--lmtp] [--cert PEM --key PEM] [--hostname NAME].
"""

import argparse
import asyncio
import base64
import json
import os
import re
import socket
import ssl
import subprocess
import sys
import time

from proc import stop_process

HERE = os.path.dirname(os.path.abspath(__file__))
PYTHON = "/usr/bin/python3"

DEFAULT_EXTENSIONS = ["PIPELINING", "SIZE 10485760", "8BITMIME",
                      "ENHANCEDSTATUSCODES", "DSN", "SMTPUTF8"]


# --------------------------------------------------------------------------
# The controlling side, used by tests.

def free_port(host="127.0.0.1"):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def make_ca(dirpath, name="Test CA"):
    """A CA certificate and key: (ca_cert, ca_key)."""
    cert = os.path.join(dirpath, "ca.pem")
    key = os.path.join(dirpath, "ca.key")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec",
                    "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                    "-subj", "/CN=" + name, "-days", "2",
                    "-addext", "basicConstraints=critical,CA:TRUE",
                    "-addext", "keyUsage=critical,keyCertSign,cRLSign",
                    "-keyout", key, "-out", cert],
                   check=True, capture_output=True, timeout=60)
    return cert, key


def make_cert(dirpath, ca, name="store.test.example", prefix="server"):
    """A server certificate for name (and 127.0.0.1) signed by ca, a
    (ca_cert, ca_key) pair from make_ca: (cert, key)."""
    cert = os.path.join(dirpath, prefix + ".pem")
    key = os.path.join(dirpath, prefix + ".key")
    csr = os.path.join(dirpath, prefix + ".csr")
    ext = os.path.join(dirpath, prefix + ".ext")
    with open(ext, "w") as f:
        f.write("subjectAltName=DNS:%s,IP:127.0.0.1\n" % name)
        f.write("extendedKeyUsage=serverAuth\n")
    subprocess.run(["openssl", "req", "-newkey", "ec",
                    "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                    "-subj", "/CN=" + name, "-keyout", key, "-out", csr],
                   check=True, capture_output=True, timeout=60)
    subprocess.run(["openssl", "x509", "-req", "-in", csr, "-CA", ca[0],
                    "-CAkey", ca[1], "-CAcreateserial", "-days", "2",
                    "-extfile", ext, "-out", cert],
                   check=True, capture_output=True, timeout=60)
    return cert, key


class Backend:
    """One backend process; see the module's documentation."""

    def __init__(self, dirpath, name="backend", lmtp=False, unix=False,
                 tls=None, hostname="store.test.example", **rules):
        self.dir = dirpath
        self.name = name
        self.lmtp = lmtp
        self.unix = unix
        self.tls = tls
        self.hostname = hostname
        self.port = None if unix else free_port()
        self.path = os.path.join(dirpath, name + ".sock") if unix else None
        self.logpath = os.path.join(dirpath, name + ".log")
        self.ctlpath = os.path.join(dirpath, name + ".json")
        self.errpath = os.path.join(dirpath, name + ".err")
        self.proc = None
        self.set(**rules)

    def start(self, timeout=15):
        args = [PYTHON, os.path.join(HERE, "backend.py"),
                "--log", self.logpath, "--control", self.ctlpath,
                "--hostname", self.hostname]
        if self.unix:
            args += ["--unix", self.path]
        else:
            args += ["--port", str(self.port)]
        if self.lmtp:
            args.append("--lmtp")
        if self.tls:
            args += ["--cert", self.tls[0], "--key", self.tls[1]]
        self.err = open(self.errpath, "ab")
        self.proc = subprocess.Popen(args, stdout=self.err, stderr=self.err)
        self.wait_for(lambda: any(e["ev"] == "listen" for e in self.events()),
                      timeout, "backend did not listen")
        return self

    def stop(self):
        if self.proc is not None:
            stop_process(self.proc)
            self.err.close()
            self.proc = None

    def set(self, **rules):
        """Replaces all rules."""
        self.rules = dict(rules)
        tmp = self.ctlpath + ".tmp"
        with open(tmp, "w") as f:
            json.dump(self.rules, f)
        os.replace(tmp, self.ctlpath)

    def update(self, **rules):
        """Changes the rules given, keeps the others."""
        r = dict(self.rules)
        r.update(rules)
        self.set(**r)

    def events(self):
        try:
            with open(self.logpath, "rb") as f:
                data = f.read()
        except FileNotFoundError:
            return []
        out = []
        for line in data.split(b"\n"):
            if line.endswith(b"}"):
                out.append(json.loads(line))
        return out

    def messages(self):
        out = []
        for e in self.events():
            if e["ev"] == "message":
                e["data"] = base64.b64decode(e.pop("data_b64"))
                e["raw"] = base64.b64decode(e.pop("raw_b64"))
                out.append(e)
        return out

    def commands(self):
        return [e["line"] for e in self.events() if e["ev"] == "cmd"]

    def connections(self):
        return sum(1 for e in self.events() if e["ev"] == "connect")

    def concurrency(self):
        """(t, connections open) after each connect and close, in order."""
        out, n = [], 0
        for e in self.events():
            if e["ev"] in ("connect", "close"):
                n += 1 if e["ev"] == "connect" else -1
                out.append((e["t"], n))
        return out

    def stderr(self):
        try:
            with open(self.errpath, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def wait_for(self, pred, timeout=10, what="condition"):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if pred():
                return
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError("backend exited:\n" + self.stderr())
            time.sleep(0.05)
        raise AssertionError("%s within %ss; events: %s" %
                             (what, timeout, self.events()[-20:]))




# --------------------------------------------------------------------------
# Driving relay/client through the sendmsg tool (tests/tools/sendmsg.c).

def sendmsg_path():
    build = os.environ.get("MXSPOOL_BUILD",
                           os.path.join(os.path.dirname(os.path.dirname(HERE)),
                                        "build"))
    return os.path.join(build, "tests", "tools", "sendmsg")

def write_conf(dirpath, connect=2, command=3, data=3, final=3, extra=""):
    path = os.path.join(dirpath, "sendmsg.conf")
    with open(path, "w") as f:
        f.write('hostname = "relay.test.example"\n')
        f.write('relay_domains = {"example.com"}\n')
        f.write('spool_dir = "%s"\n' % os.path.join(dirpath, "spool"))
        f.write('control_socket = "%s"\n' % os.path.join(dirpath, "c.sock"))
        f.write('log_level = "debug"\n')
        f.write("connect_timeout = %ds\n" % connect)
        f.write("client_command_timeout = %ds\n" % command)
        f.write("client_data_timeout = %ds\n" % data)
        f.write("client_final_timeout = %ds\n" % final)
        f.write(extra)
    return path


class Result:
    """What sendmsg printed: per-recipient results and the session's end."""

    def __init__(self, proc, elapsed):
        self.proc = proc
        self.elapsed = elapsed
        self.stderr = proc.stderr.decode("utf-8", "replace")
        lines = [json.loads(x) for x in proc.stdout.decode().splitlines()]
        self.rcpts = [x for x in lines if "rcpt" in x]
        ends = [x for x in lines if x.get("closed")]
        assert len(ends) == 1, (lines, self.stderr[-3000:])
        self.end = ends[0]

    def by_rcpt(self, qid="m1"):
        return {r["rcpt"]: r for r in self.rcpts if r["qid"] == qid}

    def __repr__(self):
        return "Result(rcpts=%r, end=%r)" % (self.rcpts, self.end)


def send(dirpath, routes, messages, to=("user@example.com",),
         sender="sender@origin.test", args=(), conf=None, timeout=60):
    """Runs sendmsg: routes is a list of ROUTE strings, messages a list of
    bytes (one file each). Returns a Result."""
    if conf is None:
        conf = write_conf(dirpath)
    files = []
    for i, m in enumerate(messages):
        p = os.path.join(dirpath, "msg%d.eml" % i)
        with open(p, "wb") as f:
            f.write(m)
        files.append(p)
    cmd = [sendmsg_path(), "-c", conf, "--from", sender]
    for r in routes:
        cmd += ["--route", r]
    for t in to:
        cmd += ["--to", t]
    cmd += list(args) + files
    start = time.monotonic()
    proc = subprocess.run(cmd, capture_output=True, timeout=timeout)
    res = Result(proc, time.monotonic() - start)
    assert proc.returncode == 0, res.stderr[-3000:]
    assert "ERROR: AddressSanitizer" not in res.stderr, res.stderr
    return res


def smtp_route(b):
    return "smtp:[127.0.0.1]:%d" % b.port


def lmtp_route(b):
    if b.unix:
        return "lmtp:unix:%s" % b.path
    return "lmtp:[127.0.0.1]:%d" % b.port


MSG = (b"From: sender@origin.test\r\nTo: user@example.com\r\n"
       b"Subject: test\r\n\r\nHello.\r\n")


# --------------------------------------------------------------------------
# The server process.

def _server_main():
    from aiosmtpd.smtp import SMTP

    ap = argparse.ArgumentParser()
    ap.add_argument("--log", required=True)
    ap.add_argument("--control", required=True)
    ap.add_argument("--port", type=int)
    ap.add_argument("--unix")
    ap.add_argument("--lmtp", action="store_true")
    ap.add_argument("--cert")
    ap.add_argument("--key")
    ap.add_argument("--hostname", default="store.test.example")
    opts = ap.parse_args()

    logf = open(opts.log, "a", buffering=1)
    state = {"conns": 0, "msgs": 0, "rules": {}, "mtime": None}

    def record(ev, **kw):
        kw["ev"] = ev
        kw["t"] = time.monotonic()
        logf.write(json.dumps(kw, sort_keys=True) + "\n")

    def rules():
        try:
            st = os.stat(opts.control)
            key = (st.st_mtime_ns, st.st_size, st.st_ino)
            if key != state["mtime"]:
                with open(opts.control) as f:
                    state["rules"] = json.load(f)
                state["mtime"] = key
        except (OSError, ValueError):
            pass
        return state["rules"]

    def rule(name, addr=None):
        v = rules().get(name)
        if isinstance(v, dict):
            if addr is not None and addr in v:
                return v[addr]
            return v.get("*")
        return v

    tls_ctx = None
    if opts.cert:
        tls_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        tls_ctx.load_cert_chain(opts.cert, opts.key)

    class Handler:
        pass

    class Session(SMTP):
        line_length_limit = 1 << 20
        command_size_limit = 1 << 16

        def __init__(self):
            super().__init__(Handler(), hostname=opts.hostname,
                             ident="backend", tls_context=tls_ctx,
                             enable_SMTPUTF8=True, decode_data=False,
                             data_size_limit=None, timeout=3600)
            self.conn = None
            self.in_mail = False
            self.in_data = False
            self.helo = None
            self.mail_params = ""
            self.rcpt_params = []
            self.ncmds = 0
            self.nmsgs = 0  # messages taken on this connection

        # -- plumbing
        def data_received(self, data):
            if not self.in_data and self.conn is not None:
                lines = [x.decode("utf-8", "replace")
                         for x in data.split(b"\r\n") if x]
                record("recv", conn=self.conn, lines=lines)
            super().data_received(data)

        def connection_made(self, transport):
            was_plain = self._original_transport is None and \
                self.transport is not None
            super().connection_made(transport)
            if was_plain and self._original_transport is not None:
                obj = transport.get_extra_info("ssl_object")
                record("tls", conn=self.conn,
                       version=obj.version() if obj else None)

        def connection_lost(self, error):
            if self.conn is not None:
                record("close", conn=self.conn)
            super().connection_lost(error)

        def tls_up(self):
            return self._original_transport is not None

        def cmd(self, verb, arg):
            self.ncmds += 1
            line = verb if arg is None else verb + " " + arg
            record("cmd", conn=self.conn, line=line, tls=self.tls_up())

        async def reply(self, text):
            await self.push(text)
            if text.startswith("421"):
                self.transport.close()

        async def phase(self, name):
            """Stalls or drops as the rules say; False when dropped."""
            t = (rules().get("stall") or {}).get(name)
            if t:
                await asyncio.sleep(t)
            if rules().get("drop") == name:
                self.transport.close()
                return False
            return True

        async def _handle_client(self):
            state["conns"] += 1
            self.conn = state["conns"]
            record("connect", conn=self.conn)
            if not await self.phase("greeting"):
                return
            g = rule("greeting")
            if g and not g.startswith("2"):
                await self.push(g)
                self.transport.close()
                return
            if g:
                self.hostname, _, self.__ident__ = g[4:].partition(" ")
            await super()._handle_client()

        # -- commands
        async def hello(self, verb, arg):
            self.cmd(verb, arg)
            if not arg:
                return await self.push("501 5.5.4 Syntax: %s hostname" % verb)
            if not await self.phase("ehlo"):
                return
            r = rule("ehlo")
            if r:
                return await self.reply(r)
            self.in_mail = False
            self._set_rset_state()
            self.session.extended_smtp = True
            self.session.host_name = arg
            self.helo = arg
            exts = rules().get("extensions")
            if exts is None:
                exts = list(DEFAULT_EXTENSIONS)
                if tls_ctx is not None:
                    exts.append("STARTTLS")
            if tls_ctx is None or self.tls_up():
                exts = [e for e in exts if e.upper() != "STARTTLS"]
            lines = [self.hostname] + exts
            for i, x in enumerate(lines):
                sep = " " if i == len(lines) - 1 else "-"
                await self.push("250" + sep + x)

        async def smtp_EHLO(self, arg):
            if opts.lmtp:
                self.cmd("EHLO", arg)
                return await self.push('500 5.5.1 Error: command "EHLO" '
                                       'not recognized')
            await self.hello("EHLO", arg)

        async def smtp_LHLO(self, arg):
            if not opts.lmtp:
                self.cmd("LHLO", arg)
                return await self.push('500 5.5.1 Error: command "LHLO" '
                                       'not recognized')
            await self.hello("LHLO", arg)

        async def smtp_HELO(self, arg):
            self.cmd("HELO", arg)
            if opts.lmtp:
                return await self.push('500 5.5.1 Error: command "HELO" '
                                       'not recognized')
            if not arg:
                return await self.push("501 5.5.4 Syntax: HELO hostname")
            self.in_mail = False
            self._set_rset_state()
            self.session.extended_smtp = False
            self.session.host_name = arg
            self.helo = arg
            await self.push("250 %s" % self.hostname)

        async def smtp_STARTTLS(self, arg):
            self.cmd("STARTTLS", arg)
            r = rule("starttls")
            if r:
                return await self.reply(r)
            await super().smtp_STARTTLS(arg)

        def size_limit(self):
            exts = rules().get("extensions")
            for e in (exts if exts is not None else DEFAULT_EXTENSIONS):
                p = e.split()
                if p[0].upper() == "SIZE" and len(p) > 1 and p[1] != "0":
                    return int(p[1])
            return None

        async def smtp_MAIL(self, arg):
            self.cmd("MAIL", arg)
            if not self.session.host_name:
                return await self.push("503 5.5.1 Error: send HELO first")
            if self.in_mail:
                return await self.push("503 5.5.1 Error: nested MAIL command")
            m = re.match(r"(?i)FROM:\s*<([^>]*)>\s*(.*)$", arg or "")
            if not m:
                return await self.push("501 5.5.4 Syntax: MAIL FROM:<address>")
            if not await self.phase("mail"):
                return
            params = m.group(2)
            limit = self.size_limit()
            sm = re.search(r"(?i)\bSIZE=(\d+)", params)
            if limit is not None and sm and int(sm.group(1)) > limit:
                return await self.push("552 5.3.4 Message size exceeds "
                                       "fixed maximum message size")
            r = rule("mail")
            if self.nmsgs > 0 and rule("mail_reused"):
                r = rule("mail_reused")
                if r == "drop":
                    record("drop", conn=self.conn, phase="mail")
                    self.transport.close()
                    return
            if r:
                await self.reply(r)
                if not r.startswith("2"):
                    return
            self.in_mail = True
            self.envelope = self._create_envelope()
            self.envelope.mail_from = m.group(1)
            self.mail_params = params
            self.rcpt_params = []
            if not r:
                await self.push("250 2.1.0 Ok")

        async def smtp_RCPT(self, arg):
            self.cmd("RCPT", arg)
            if not self.in_mail:
                return await self.push("503 5.5.1 Error: need MAIL command")
            m = re.match(r"(?i)TO:\s*<([^>]*)>\s*(.*)$", arg or "")
            if not m:
                return await self.push("501 5.5.4 Syntax: RCPT TO:<address>")
            if not await self.phase("rcpt"):
                return
            addr = m.group(1)
            r = rule("rcpt", addr)
            if r:
                await self.reply(r)
                if not r.startswith("2"):
                    return
            self.envelope.rcpt_tos.append(addr)
            self.rcpt_params.append(m.group(2))
            if not r:
                await self.push("250 2.1.5 Ok")

        async def smtp_RSET(self, arg):
            self.cmd("RSET", arg)
            self.in_mail = False
            self.envelope = self._create_envelope()
            await self.push("250 2.0.0 Ok")

        async def smtp_NOOP(self, arg):
            self.cmd("NOOP", arg)
            await self.push("250 2.0.0 Ok")

        async def smtp_QUIT(self, arg):
            self.cmd("QUIT", arg)
            if not await self.phase("quit"):
                return
            await super().smtp_QUIT(arg)

        async def smtp_BDAT(self, arg):
            """RFC 3030 chunks, when CHUNKING is among the extensions."""
            self.cmd("BDAT", arg)
            m = re.match(r"(?i)(\d+)(\s+LAST)?$", arg or "")
            if not m:
                return await self.push("501 5.5.4 Syntax: BDAT size [LAST]")
            try:
                chunk = await self._reader.readexactly(int(m.group(1)))
            except (asyncio.IncompleteReadError, ConnectionError):
                record("aborted", conn=self.conn, phase="bdat")
                raise
            if not self.in_mail or not self.envelope.rcpt_tos:
                return await self.push("503 5.5.1 Error: need RCPT command")
            self.chunks = getattr(self, "chunks", b"") + chunk
            if not m.group(2):
                return await self.push("250 2.0.0 %d octets" % len(chunk))
            data, self.chunks = self.chunks, b""
            await self.finish(list(self.envelope.rcpt_tos), data, data)

        async def smtp_DATA(self, arg):
            self.cmd("DATA", arg)
            if not self.in_mail:
                return await self.push("503 5.5.1 Error: need MAIL command")
            rcpts = list(self.envelope.rcpt_tos)
            if not rcpts:
                return await self.push("554 5.5.1 Error: no valid recipients")
            if not await self.phase("data"):
                return
            r = rule("data")
            if r:
                return await self.reply(r)
            self.in_data = True
            await self.push("354 End data with <CR><LF>.<CR><LF>")
            raw = bytearray()
            try:
                while True:
                    line = await self._reader.readuntil(b"\r\n")
                    if line == b".\r\n":
                        break
                    raw += line
            except (asyncio.IncompleteReadError, asyncio.CancelledError,
                    ConnectionError):
                record("aborted", conn=self.conn, phase="data",
                       bytes=len(raw))
                raise
            finally:
                self.in_data = False
            data = re.sub(rb"(^|\r\n)\.", rb"\1", bytes(raw))
            await self.finish(rcpts, data, bytes(raw))

        async def finish(self, rcpts, data, raw):
            """The message is in: record it, then reply."""
            state["msgs"] += 1
            self.nmsgs += 1
            if opts.lmtp:
                replies = [rule("eod", a) or "250 2.0.0 <%s> Ok" % a
                           for a in rcpts]
            else:
                addr = next((a for a in rcpts
                             if a in (rules().get("eod") or {})), None)
                replies = [rule("eod", addr) or
                           "250 2.0.0 Ok: queued as Q%d" % state["msgs"]]
            record("message", conn=self.conn, helo=self.helo,
                   mail_from=self.envelope.mail_from,
                   mail_params=self.mail_params, rcpts=rcpts,
                   rcpt_params=self.rcpt_params, tls=self.tls_up(),
                   replies=replies,
                   data_b64=base64.b64encode(data).decode(),
                   raw_b64=base64.b64encode(raw).decode())
            self.in_mail = False
            self.envelope = self._create_envelope()
            if not await self.phase("eod"):
                return
            for r in replies:
                await self.reply(r)
                if r.startswith("421"):
                    return
            kick = rules().get("kick")
            if kick:
                asyncio.get_running_loop().create_task(
                    self.kick(self.ncmds, kick[0], kick[1]))

        async def kick(self, ncmds, secs, line):
            await asyncio.sleep(secs)
            if self.transport is not None and self.ncmds == ncmds:
                record("kick", conn=self.conn, line=line)
                await self.push(line)
                self.transport.close()

    async def run():
        loop = asyncio.get_running_loop()
        server = None

        async def listen():
            if opts.unix:
                if os.path.exists(opts.unix):
                    os.unlink(opts.unix)
                srv = await loop.create_unix_server(Session, opts.unix)
                record("listen", path=opts.unix)
            else:
                srv = await loop.create_server(Session, "127.0.0.1",
                                               opts.port, reuse_address=True)
                record("listen", port=opts.port)
            return srv

        if rules().get("listen", True):
            server = await listen()
        else:
            record("listen", down=True)
        while True:
            await asyncio.sleep(0.05)
            want = rules().get("listen", True)
            if want and server is None:
                server = await listen()
            elif not want and server is not None:
                server.close()
                server = None
                if opts.unix and os.path.exists(opts.unix):
                    os.unlink(opts.unix)
                record("unlisten")

    try:
        asyncio.run(run())
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    import signal
    signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))
    _server_main()
