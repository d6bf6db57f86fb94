"""A real mailbox store for the end-to-end tests: Dovecot's LMTP server
delivering to Maildirs, run as a subprocess on 127.0.0.1 and a random free
port, with a configuration of its own (no system-wide file is read).

Use from a test:

    from dovecot import Dovecot

    dc = Dovecot(str(tmp_path), users=("alice", "bob")).start()
    ... deliver to "lmtp:[127.0.0.1]:%d" % dc.port
    dc.messages("alice")   # [(path, bytes)] from Maildir new/ and cur/
    dc.stop()              # SIGTERM, waits; start() again: the same port
    dc.close()             # stop and remove the private directory

Users are local parts of `domain`; any other recipient gets Dovecot's own
`550 5.1.1 ... User doesn't exist` at RCPT.

What Dovecot 2.3 (Debian 12) insists on, found by trying:
- default_internal_user and default_login_user must name existing users.
  They are the user running the test, so that the auth process (which reads
  the passwd-file) can read the test's directory.
- Mail is never read or written as root ("Mail access not allowed for
  root", and a userdb uid of 0 is refused). As root the mail user is
  `nobody`; otherwise the current user.
- A process that has dropped to the mail user still opens the sockets in
  base_dir, and unix socket paths are limited to 108 octets, while pytest's
  directories are private (0700) and their paths long. So base_dir and the
  Maildirs live in a short private directory made under /tmp (mode 0755,
  mail/ owned by the mail user), removed by close(). The config, the
  passwd-file, state_dir and the log stay in the test's directory.
- Run by another user than root, Dovecot works too, but anvil must not
  chroot.
"""

import grp
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time

from conftest import free_port, need

DOVECOT = "/usr/sbin/dovecot"
LMTP = "/usr/lib/dovecot/lmtp"


def _mail_owner():
    """(uid, gid) that Dovecot stores mail as: never root."""
    if os.geteuid() != 0:
        return os.geteuid(), os.getegid()
    pw = pwd.getpwnam("nobody")
    return pw.pw_uid, pw.pw_gid


class Dovecot:
    """One Dovecot instance speaking LMTP only; see the module's doc."""

    def __init__(self, dirpath, users=("alice", "bob"), domain="example.com",
                 hostname="store.test.example"):
        need(DOVECOT, "dovecot-core")
        need(LMTP, "dovecot-lmtpd")
        self.dir = os.path.join(dirpath, "dovecot")
        os.makedirs(self.dir, exist_ok=True)
        self.port = free_port()
        self.users = tuple(users)
        self.domain = domain
        self.hostname = hostname
        self.proc = None
        self.conf = os.path.join(self.dir, "dovecot.conf")
        self.logpath = os.path.join(self.dir, "dovecot.log")
        self.outpath = os.path.join(self.dir, "dovecot.out")
        self.userdb = os.path.join(self.dir, "users")
        self.state = os.path.join(self.dir, "state")
        os.makedirs(self.state, exist_ok=True)

        self.uid, self.gid = _mail_owner()
        self.priv = tempfile.mkdtemp(prefix="mxspool-dc-")
        os.chmod(self.priv, 0o755)
        self.base = os.path.join(self.priv, "run")
        self.mail = os.path.join(self.priv, "mail")
        os.mkdir(self.mail)
        if os.geteuid() == 0:
            os.chown(self.mail, self.uid, self.gid)

        with open(self.userdb, "w") as f:
            for u in self.users:
                # user:password:uid:gid:gecos:home:shell:extra; the
                # userdb's default_fields fill in the rest.
                f.write("%s@%s:::::::\n" % (u, domain))
        me = pwd.getpwuid(os.geteuid()).pw_name
        mygroup = grp.getgrgid(os.getegid()).gr_name
        mail_user = pwd.getpwuid(self.uid).pw_name
        mail_group = grp.getgrgid(self.gid).gr_name
        with open(self.conf, "w") as f:
            f.write("""\
# Written by tests/integration/dovecot.py for one test.
protocols = lmtp
listen = 127.0.0.1
hostname = {hostname}
base_dir = {base}
state_dir = {state}
instance_name = mxspool-e2e-{port}
log_path = {log}
info_log_path = {log}
debug_log_path = {log}
ssl = no
default_internal_user = {me}
default_internal_group = {mygroup}
default_login_user = {me}
first_valid_uid = {uid}
first_valid_gid = {gid}
mail_uid = {mail_user}
mail_gid = {mail_group}
mail_location = maildir:{mail}/%n/Maildir
passdb {{
  driver = passwd-file
  args = {userdb}
}}
userdb {{
  driver = passwd-file
  args = {userdb}
  default_fields = home={mail}/%n
}}
# anvil chroots by default, which only root may do.
service anvil {{
  chroot =
}}
service lmtp {{
  inet_listener lmtp {{
    address = 127.0.0.1
    port = {port}
  }}
}}
""".format(hostname=hostname, base=self.base, state=self.state,
           port=self.port, log=self.logpath, me=me, mygroup=mygroup,
           uid=self.uid, gid=self.gid,
           mail_user=mail_user, mail_group=mail_group, mail=self.mail,
           userdb=self.userdb))

    def address(self, user):
        return "%s@%s" % (user, self.domain)

    def route(self):
        return "lmtp:[127.0.0.1]:%d" % self.port

    def start(self, timeout=20):
        """Starts the master in the foreground and waits for an LMTP
        greeting on the port."""
        assert self.proc is None, "already started"
        self.out = open(self.outpath, "ab")
        self.proc = subprocess.Popen([DOVECOT, "-F", "-c", self.conf],
                                     stdout=self.out, stderr=self.out)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError("dovecot exited with %s:\n%s"
                                     % (self.proc.returncode, self.log()))
            if self.greets(0.5):
                return self
            time.sleep(0.05)
        raise AssertionError("dovecot did not greet on %d:\n%s"
                             % (self.port, self.log()))

    def greets(self, timeout=1.0):
        """True if an LMTP greeting (220) comes from the port."""
        try:
            with socket.create_connection(("127.0.0.1", self.port),
                                          timeout) as s:
                s.settimeout(timeout)
                line = b""
                while b"\n" not in line:
                    chunk = s.recv(512)
                    if not chunk:
                        return False
                    line += chunk
                s.sendall(b"QUIT\r\n")
                return line.startswith(b"220 ")
        except OSError:
            return False

    def listening(self):
        try:
            socket.create_connection(("127.0.0.1", self.port), 0.5).close()
            return True
        except OSError:
            return False

    def stop(self, timeout=20):
        """SIGTERM to the master; returns once it and its port are gone."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        rc = self.proc.returncode
        self.proc = None
        self.out.close()
        deadline = time.monotonic() + timeout
        while self.listening():
            if time.monotonic() > deadline:
                raise AssertionError("dovecot's port %d still open" % self.port)
            time.sleep(0.05)
        return rc

    def close(self):
        self.stop()
        shutil.rmtree(self.priv, ignore_errors=True)

    def maildir(self, user):
        return os.path.join(self.mail, user, "Maildir")

    def messages(self, user):
        """[(path, bytes)] of every message in user's INBOX (new/, cur/)."""
        out = []
        for sub in ("new", "cur"):
            d = os.path.join(self.maildir(user), sub)
            try:
                names = sorted(os.listdir(d))
            except FileNotFoundError:
                continue
            for n in names:
                p = os.path.join(d, n)
                with open(p, "rb") as f:
                    out.append((p, f.read()))
        return out

    def count(self):
        return sum(len(self.messages(u)) for u in self.users)

    def log(self):
        text = ""
        for p in (self.outpath, self.logpath):
            try:
                with open(p, "rb") as f:
                    text += f.read().decode("utf-8", "replace")
            except FileNotFoundError:
                pass
        return text
