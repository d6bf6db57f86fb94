"""mxspoold started as root binds its ports, reads its TLS key and makes its
directories, then becomes `user` and `group` for good: no uid or gid 0, no
capability, no way back (mxspool.conf(5), user). Run as root, as CI does;
elsewhere these tests are skipped, for only root can switch users."""

import os
import random
import shutil
import signal
import socket
import stat
import subprocess
import tempfile

import pytest

from conftest import MXSPOOLD, Daemon, log_lines, wait_for
from smtphelp import (ehlo, make_cert, queued_id, send_message,
                      spool_envelopes)
from test_smtp_tls import starttls

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0, reason="only root can start mxspoold as root and "
    "watch it switch users (CI runs the suite as root)")

NOBODY = 65534  # Debian's nobody and nogroup
ZERO_CAPS = "0000000000000000"


@pytest.fixture
def opendir():
    """A directory every user can reach: pytest's own tmp_path is under a
    0700 directory of root's, which the user the daemon becomes could not
    enter."""
    path = tempfile.mkdtemp(prefix="mxspool-priv-")
    os.chmod(path, 0o755)
    made = []

    def make(**kw):
        sub = os.path.join(path, "d%d" % len(made))
        os.mkdir(sub)
        os.chmod(sub, 0o755)
        extra = kw.pop("extra", "")
        d = Daemon(sub, extra='control_socket = "%s"\n%s'
                   % (os.path.join(sub, "run", "ctl.sock"), extra), **kw)
        d.ctl_sock = os.path.join(sub, "run", "ctl.sock")
        made.append(d)
        return d

    yield make
    for d in made:
        d.kill()
    shutil.rmtree(path, ignore_errors=True)


def privileged_port():
    """A free port below 1024, which only root may bind."""
    for port in random.sample(range(600, 1024), 424):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    pytest.skip("no free port below 1024")


def status(pid):
    """/proc/PID/status as {field: value}."""
    with open("/proc/%d/status" % pid) as f:
        return dict(line.rstrip("\n").split(":\t", 1) for line in f
                    if ":\t" in line)


AS_NOBODY = 'user = "nobody"\ngroup = "nogroup"\n'


def check(conf):
    r = subprocess.run([MXSPOOLD, "-t", "-c", conf], capture_output=True,
                       text=True, timeout=30)
    return r.returncode, r.stdout, r.stderr


def conf_line(d, text):
    """The line of d's config that holds text (1-based)."""
    with open(d.conf) as f:
        for i, line in enumerate(f, 1):
            if text in line:
                return i
    raise AssertionError(text)


def run_fails(d, timeout=15):
    """Starts d, which must exit at once with status 1; returns its log."""
    d.start(wait=False)
    assert d.proc.wait(timeout) == 1, d.log()
    return d.log()


def test_root_is_given_up_after_binding_a_privileged_port(opendir):
    port = privileged_port()
    d = opendir(extra=AS_NOBODY, listen=["127.0.0.1:%d" % port])
    d.port = port
    d.start()
    # The port, bound as root, listens only once the rest runs: a client
    # that gets in finds the control socket there too.
    assert os.path.exists(d.ctl_sock)
    st = status(d.proc.pid)
    assert st["Uid"].split() == [str(NOBODY)] * 4, st["Uid"]
    assert st["Gid"].split() == [str(NOBODY)] * 4, st["Gid"]
    assert st["Groups"].split() in ([], [str(NOBODY)]), st["Groups"]
    for cap in ("CapEff", "CapPrm", "CapInh", "CapAmb", "CapBnd"):
        assert st[cap] == ZERO_CAPS, (cap, st[cap])
    assert st["NoNewPrivs"] == "1"
    # Every thread, not only the first (RocksDB's and the writer's).
    tasks = os.listdir("/proc/%d/task" % d.proc.pid)
    assert len(tasks) > 1
    for t in tasks:
        ts = status(int(t))
        assert ts["Uid"].split() == [str(NOBODY)] * 4, (t, ts["Uid"])
        assert ts["CapEff"] == ZERO_CAPS, (t, ts["CapEff"])
    assert len(log_lines(d, "running as user nobody (uid 65534), "
                            "group id 65534")) == 1
    assert log_lines(d, "running as root") == []

    # It accepts mail on the privileged port and spools it as nobody.
    c = ehlo(d)
    qid = queued_id(send_message(c, "Subject: x\r\n\r\nbody\r\n.\r\n"))
    c.cmd("QUIT")
    c.close()
    for name in os.listdir(d.spool):
        assert os.stat(os.path.join(d.spool, name)).st_uid == NOBODY, name
    sp = os.stat(d.spool)
    assert (sp.st_uid, sp.st_gid) == (NOBODY, NOBODY)
    assert stat.S_IMODE(sp.st_mode) == 0o700
    # The control socket's directory was made for nobody, and the socket
    # in it is nobody's; mxspoolctl reaches it.
    run = os.stat(os.path.dirname(d.ctl_sock))
    assert (run.st_uid, run.st_gid) == (NOBODY, NOBODY)
    assert os.stat(d.ctl_sock).st_uid == NOBODY
    r = subprocess.run([os.path.join(os.path.dirname(MXSPOOLD), "mxspoolctl"),
                        "-c", d.conf, "list"], capture_output=True, text=True,
                       timeout=30)
    assert r.returncode == 0 and qid in r.stdout, r.stdout + r.stderr

    # It stops cleanly, removing the socket it can no longer have made as
    # root, and the mail is in the spool.
    assert d.stop() == 0, d.log()
    assert not os.path.exists(d.ctl_sock)
    assert qid in spool_envelopes(d)
    assert "fatal" not in d.log()


def test_a_root_only_tls_key_is_read_before_the_switch(opendir):
    d = opendir(extra=AS_NOBODY)
    cert, key = make_cert(d.dir)
    os.chmod(key, 0o600)  # root's alone, as keys often are
    with open(d.conf, "a") as f:
        f.write('tls_cert_file = "%s"\ntls_key_file = "%s"\n' % (cert, key))
    d.start()
    assert status(d.proc.pid)["Uid"].split() == [str(NOBODY)] * 4
    c = ehlo(d)
    assert c.cmd("STARTTLS")[0].startswith("220 ")
    starttls(c)
    assert c.cmd("EHLO tls.test")[-1].startswith("250 ")
    c.close()


def test_an_empty_spool_of_roots_is_given_to_the_user(opendir):
    """As make install leaves it: /var/spool/mxspool, 0700, root's."""
    d = opendir(extra=AS_NOBODY)
    os.mkdir(d.spool, 0o700)
    d.start()
    sp = os.stat(d.spool)
    assert (sp.st_uid, sp.st_gid) == (NOBODY, NOBODY)
    assert len(log_lines(d, "spool directory %s: empty, given to user nobody"
                         % d.spool)) == 1


def test_a_spool_with_mail_the_user_cannot_write_is_refused(opendir):
    # A spool a root-run mxspoold filled: not silently handed over.
    root = opendir()
    root.start()
    assert root.stop() == 0
    d = opendir(extra=AS_NOBODY)
    os.rename(root.spool, d.spool)
    before = sorted(os.listdir(d.spool))
    log = run_fails(d)
    fatal = [l for l in log.splitlines() if "fatal" in l]
    assert len(fatal) == 1, log
    assert ("spool directory %s: not writable by user nobody (it belongs to "
            "uid 0, gid 0, mode 0700)" % d.spool) in fatal[0], fatal
    assert os.stat(d.spool).st_uid == 0
    assert sorted(os.listdir(d.spool)) == before
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", d.port), 1).close()


def test_a_control_socket_directory_the_user_cannot_write_is_refused(
        opendir):
    d = opendir(extra=AS_NOBODY)
    os.mkdir(os.path.dirname(d.ctl_sock), 0o755)  # root's, existing
    log = run_fails(d)
    assert ("control socket %s: its directory is not writable by user nobody"
            % d.ctl_sock) in log, log


@pytest.mark.parametrize("extra, message", [
    ('user = "no-such-user-mx"\n', "user: no such user 'no-such-user-mx'"),
    ('user = "nobody"\ngroup = "no-such-group-mx"\n',
     "group: no such group 'no-such-group-mx'"),
    ('user = "root"\n', "user: 'root' has uid 0 and keeps every privilege"),
    ('user = "nobody"\ngroup = "root"\n', "group: 'root' has gid 0"),
    ('user = "no body"\n', "user: bad user or group name 'no body'"),
])
def test_check_names_the_line_of_a_bad_user_or_group(opendir, extra,
                                                     message):
    d = opendir(extra=extra)
    rc, out, err = check(d.conf)
    assert rc == 1 and out == "", out
    key = message.split(":")[0] + " = "
    assert err.startswith("%s:%d: %s" % (d.conf, conf_line(d, key), message)), \
        err
    assert len(err.splitlines()) == 1, err
    # The daemon refuses to start with the same line.
    log = run_fails(d)
    assert message in log


@pytest.mark.parametrize("extra, message", [
    ('group = "nogroup"\n', "group: set without user"),
    (AS_NOBODY + 'control_socket_owner = "root"\n',
     "control_socket_owner: must be empty or the same as user 'nobody'"),
])
def test_check_refuses_options_that_cannot_go_with_user(opendir, extra,
                                                        message):
    d = opendir(extra=extra)
    rc, out, err = check(d.conf)
    assert rc == 1 and message in err, err


def test_check_accepts_an_existing_user_and_group(opendir):
    d = opendir(extra=AS_NOBODY + 'control_socket_owner = "nobody"\n')
    rc, out, err = check(d.conf)
    assert rc == 0 and err == "", err
    d = opendir(extra='user = "nobody"\n')  # the user's own group
    rc, out, err = check(d.conf)
    assert rc == 0 and err == "", err


def as_nobody():
    os.setgroups([])
    os.setgid(NOBODY)
    os.setuid(NOBODY)


def start_as_nobody(d):
    d.logfile = open(d.logpath, "ab")
    d.proc = subprocess.Popen([MXSPOOLD, "-c", d.conf], stdout=d.logfile,
                              stderr=d.logfile, preexec_fn=as_nobody)
    return d


def test_without_root_another_user_is_a_fatal_error(opendir):
    d = opendir(extra='user = "daemon"\n')
    start_as_nobody(d)
    assert d.proc.wait(15) == 1, d.log()
    fatal = [l for l in d.log().splitlines() if "fatal" in l]
    assert len(fatal) == 1, d.log()
    assert "cannot switch to user daemon" in fatal[0]
    assert "only root can, and this process runs as uid 65534" in fatal[0]


def test_without_root_the_current_user_is_no_switch(opendir):
    d = opendir(extra=AS_NOBODY)
    os.chown(d.dir, NOBODY, NOBODY)  # where nobody makes its spool
    start_as_nobody(d)
    d.wait_listening()
    assert status(d.proc.pid)["Uid"].split() == [str(NOBODY)] * 4
    c = ehlo(d)
    queued_id(send_message(c, "Subject: x\r\n\r\nbody\r\n.\r\n"))
    c.close()
    assert d.stop() == 0, d.log()
    assert "fatal" not in d.log()


def test_without_user_root_stays_root_and_says_so(opendir):
    d = opendir()
    d.start()
    assert status(d.proc.pid)["Uid"].split() == ["0"] * 4
    assert len(log_lines(d, "running as root: set user")) == 1


def test_a_reload_does_not_change_the_user(opendir):
    d = opendir(extra=AS_NOBODY)
    d.start()
    with open(d.conf) as f:
        text = f.read()
    with open(d.conf, "w") as f:
        f.write(text.replace(AS_NOBODY, 'user = "daemon"\ngroup = "daemon"\n'))
    d.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: log_lines(d, "in force"), what="the reload")
    for name in ("user", "group"):
        assert len(log_lines(d, "reload: %s changed: takes effect at the "
                                "next start" % name)) == 1
    assert status(d.proc.pid)["Uid"].split() == [str(NOBODY)] * 4
    c = ehlo(d)
    queued_id(send_message(c, "Subject: x\r\n\r\nbody\r\n.\r\n"))
    c.close()


def test_a_spool_below_a_directory_the_user_cannot_enter_is_refused(opendir):
    d = opendir(extra=AS_NOBODY)
    os.chmod(d.dir, 0o700)  # root's, and closed to nobody
    log = run_fails(d)
    fatal = [l for l in log.splitlines() if "fatal" in l]
    assert len(fatal) == 1, log
    assert fatal[0].endswith("fatal: spool directory %s: Permission denied "
                             "for user nobody" % d.spool), fatal


def test_a_reload_cannot_bind_a_privileged_port_once_root_is_gone(opendir):
    """Only a restart, as root, can add a port below 1024: a reload is
    refused, the running ports stay."""
    d = opendir(extra=AS_NOBODY)
    d.start()
    port = privileged_port()
    with open(d.conf) as f:
        text = f.read()
    with open(d.conf, "w") as f:
        f.write(text.replace('listen = {"127.0.0.1:%d"}' % d.port,
                             'listen = {"127.0.0.1:%d", "127.0.0.1:%d"}'
                             % (d.port, port)))
    r = subprocess.run([os.path.join(os.path.dirname(MXSPOOLD), "mxspoolctl"),
                        "-c", d.conf, "reload"], capture_output=True,
                       text=True, timeout=30)
    assert r.returncode == 1
    assert "cannot listen on 127.0.0.1:%d: Permission denied" % port \
        in r.stderr, r.stderr
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), 1).close()
    c = ehlo(d)
    assert c.cmd("NOOP")[0].startswith("250 ")
    c.close()
