"""Queued mail is for mxspoold alone (mxspool.conf(5), spool_dir_check):
everything it creates is 0700 or 0600, whatever umask it was started
with, and a spool directory other users may enter or read is refused
with one line unless spool_dir_check = off."""

import os
import socket
import stat
import subprocess

import pytest

from conftest import MXSPOOLD
from smtphelp import ehlo, queued_id, send_message

MSG = b"Subject: private\r\n\r\nfor the recipient only\r\n.\r\n"


def start_with_umask(d, mask):
    """Starts d from a shell whose umask is mask, as an init script or a
    careless operator might."""
    d.logfile = open(d.logpath, "ab")
    d.proc = subprocess.Popen(
        ["sh", "-c", 'umask %03o && exec "$0" -c "$1"' % mask, MXSPOOLD,
         d.conf], stdout=d.logfile, stderr=d.logfile)
    d.wait_listening()
    return d


def queue_one_and_stop(d):
    """One message queued, then a clean stop: the spool as it rests."""
    c = ehlo(d)
    queued_id(send_message(c, MSG))
    c.close()
    assert d.stop() == 0


def modes(top):
    """{path relative to top: permission bits} of everything below top."""
    out = {}
    for root, dirs, files in os.walk(top):
        for n in dirs + files:
            p = os.path.join(root, n)
            out[os.path.relpath(p, top)] = stat.S_IMODE(os.lstat(p).st_mode)
    return out


def test_everything_the_daemon_creates_is_its_own(daemon):
    d = start_with_umask(daemon(), 0o022)
    queue_one_and_stop(d)
    assert stat.S_IMODE(os.stat(d.spool).st_mode) == 0o700
    found = modes(d.spool)
    assert any(n.endswith(".sst") or n.endswith(".log") for n in found), found
    wrong = {n: "%04o" % m for n, m in found.items()
             if m & 0o077 or (m != 0o700 and m != 0o600)}
    assert wrong == {}, wrong


@pytest.mark.parametrize("mode", [0o755, 0o750, 0o701])
def test_a_spool_others_can_enter_or_read_is_refused(daemon, mode):
    d = daemon()
    os.mkdir(d.spool)
    os.chmod(d.spool, mode)
    d.start(wait=False)
    assert d.proc.wait(15) == 1, d.log()
    fatal = [l for l in d.log().splitlines() if "fatal" in l]
    assert len(fatal) == 1
    assert ("spool directory %s: mode %04o lets other users read queued "
            "mail: chmod 0700 it, or set spool_dir_check = off"
            % (d.spool, mode)) in fatal[0]
    assert os.listdir(d.spool) == []  # nothing written, nothing changed
    assert stat.S_IMODE(os.stat(d.spool).st_mode) == mode
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", d.port), 1).close()


def test_spool_dir_check_off_takes_a_shared_spool_and_still_keeps_files_private(
        daemon):
    d = daemon(extra="spool_dir_check = off\n")
    os.mkdir(d.spool)
    os.chmod(d.spool, 0o750)
    start_with_umask(d, 0)
    queue_one_and_stop(d)
    assert stat.S_IMODE(os.stat(d.spool).st_mode) == 0o750
    found = modes(d.spool)
    assert found and all(m & 0o077 == 0 for m in found.values()), found


def test_spool_dir_check_takes_only_a_boolean(daemon):
    d = daemon(extra="spool_dir_check = maybe\n")
    r = subprocess.run([MXSPOOLD, "-t", "-c", d.conf], capture_output=True,
                       text=True, timeout=30)
    assert r.returncode == 1
    n = open(d.conf).read().splitlines().index("spool_dir_check = maybe") + 1
    assert r.stderr.startswith("%s:%d: " % (d.conf, n)), r.stderr
    assert "spool_dir_check" in r.stderr
