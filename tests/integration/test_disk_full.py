"""A full disk under the spool: mail is refused (452 4.3.1) before RocksDB
runs out of space; if RocksDB still hits ENOSPC, the spool refuses writes
only until the disk has room again, then takes mail without a restart and
has lost nothing it acknowledged. /healthz and /metrics tell all along.
Runs on a 64 MiB tmpfs the test mounts (the tests run as root)."""

import base64
import os
import re
import signal
import smtplib
import subprocess
import threading
import urllib.error
import urllib.request

import pytest

from conftest import free_port, log_lines, wait_for
from smtphelp import spool_envelopes


@pytest.fixture
def tmpfs(tmp_path):
    """A 64 MiB tmpfs, unmounted after the test (after the daemon dies:
    this fixture is set up first, so it is torn down last)."""
    mnt = tmp_path / "fs"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m,mode=0700",
                        "tmpfs", str(mnt)], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.fail("cannot mount a tmpfs for the full-disk test (it needs "
                    "root or CAP_SYS_ADMIN): %s" % r.stderr.strip())
    try:
        yield str(mnt)
    finally:
        if subprocess.run(["umount", str(mnt)]).returncode != 0:
            subprocess.run(["umount", "-l", str(mnt)])


def http(port, path):
    """(status, body) of a GET."""
    try:
        with urllib.request.urlopen("http://127.0.0.1:%d%s" % (port, path),
                                    timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def sample(text, name):
    """The value of sample name (its node label left out), or None."""
    from test_metrics import sample as metrics_sample
    return metrics_sample(text, name)


def body(n):
    """n bytes of text that does not compress (LZ4 would halve it)."""
    raw = base64.b64encode(os.urandom(n * 3 // 4 + 3)).decode()[:n - 20]
    lines = [raw[i:i + 76] for i in range(0, len(raw), 76)]
    return ("Subject: full\r\n\r\n" + "\r\n".join(lines) + "\r\n").encode()


def send_one(d, msg):
    """(code, text, qid or None) of one message in its own session."""
    with smtplib.SMTP("127.0.0.1", d.port, timeout=15) as s:
        s.ehlo("client.test")
        s.mail("a@sender.test")
        s.rcpt("user@example.com")
        code, text = s.data(msg)
        text = text.decode()
        m = re.search(r"queued as (\S+)", text)
        return code, text, (m.group(1) if code == 250 and m else None)


def senders(d, nthreads, until):
    """Runs nthreads senders of 100 kB messages until one of them gets a
    reply code in until; returns (qids acknowledged, replies)."""
    acked, replies, stop = [], [], threading.Event()
    lock = threading.Lock()

    def run():
        while not stop.is_set():
            try:
                code, text, qid = send_one(d, body(100 * 1024))
            except (OSError, smtplib.SMTPException) as e:
                code, text, qid = None, repr(e), None
            with lock:
                replies.append((code, text))
                if qid:
                    acked.append(qid)
                if code in until or len(replies) > 2000:
                    stop.set()

    ts = [threading.Thread(target=run) for _ in range(nthreads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(120)
    return acked, replies


def fill(path, leave, name="filler"):
    """Fills the file system of path with one plain file but for leave
    bytes; returns its name."""
    f = os.path.join(path, name)
    fd = os.open(f, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        for size in (1 << 20, 4096):
            try:
                while True:
                    os.write(fd, b"\0" * size)
            except OSError:
                pass
        os.ftruncate(fd, max(0, os.fstat(fd).st_size - leave))
    finally:
        os.close(fd)
    return f


def set_min_free(d, value):
    with open(d.conf) as f:
        text = f.read()
    text = re.sub(r"spool_min_free = \S+", "spool_min_free = " + value, text)
    with open(d.conf, "w") as f:
        f.write(text)
    n = len(log_lines(d, "in force"))
    d.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: len(log_lines(d, "in force")) > n, 10, "the reload")


def test_a_full_disk_refuses_then_recovers_without_a_restart(tmpfs, daemon):
    mport = free_port()
    dead = free_port()
    spool = os.path.join(tmpfs, "spool")
    d = daemon(extra='spool_dir = "%s"\nspool_min_free = 16M\n'
                     'metrics_listen = "127.0.0.1:%d"\n'
                     'domain "example.com" { route = "smtp:[127.0.0.1]:%d" }\n'
                     'retry { initial = 1h }\n' % (spool, mport, dead))
    d.spool = spool
    # Something else on the disk, that the operator deletes at the end.
    ballast = os.path.join(tmpfs, "ballast")
    with open(ballast, "wb") as f:
        f.write(b"\0" * (20 << 20))
    d.start()
    assert http(mport, "/healthz") == (200, "ok\n")

    # 1. Four senders of 100 kB until the floor: 250s, then 452 4.3.1.
    acked, replies = senders(d, 4, until=(452, 451))
    codes = [c for c, _ in replies]
    assert len(acked) >= 100, codes
    assert 452 in codes and 451 not in codes, replies[-5:]
    status, text = http(mport, "/healthz")
    assert status == 503
    # Under the floor; or RocksDB's own flush ran out of space first,
    # which is the case the floor is for, and happens on a disk this small.
    assert re.fullmatch(r"spool free space \d+ MiB under spool_min_free "
                        r"16 MiB\n|spool refuses writes: .*No space left.*\n",
                        text), text
    _, m = http(mport, "/metrics")
    assert sample(m, 'mxspool_rejected_total{reason="spool_full"}') >= 1
    assert sample(m, "mxspool_spool_writable") == 0
    assert 0 <= sample(m, "mxspool_spool_free_bytes") < 16 << 20

    # 2. Something else fills the disk, and the floor is lowered to
    #    nothing: RocksDB itself runs into ENOSPC.
    filler = fill(tmpfs, 256 << 10)
    set_min_free(d, "0")
    replies, size = [], 100 * 1024
    failed = len(log_lines(d, "write failed, refusing writes"))
    for _ in range(3000):
        code, text, qid = send_one(d, body(size))
        replies.append((code, text))
        if qid:
            acked.append(qid)
        if code == 452:
            size = 16 << 10  # smaller ones still fit
        if len(log_lines(d, "write failed, refusing writes")) > failed:
            break
        if [c for c, _ in replies[-20:]] == [452] * 20:
            break  # the WAL's preallocated space outlasts the disk
    # RocksDB ran out of space here, or already in step 1 (a flush).
    assert log_lines(d, "write failed, refusing writes"), replies[-3:]
    # ... and the disk stays full: no reopen can help yet.
    filler2 = fill(tmpfs, 0, "filler2")
    set_min_free(d, "16M")
    assert d.proc.poll() is None, d.log()[-3000:]
    status, text = http(mport, "/healthz")
    assert status == 503 and (text.startswith("spool refuses writes: ") or
                              text.startswith("spool free space 0 MiB")), text
    assert "\n" not in text[:-1]
    code, _, _ = send_one(d, body(1000))
    assert code in (451, 452)
    _, m = http(mport, "/metrics")
    refused = sum(sample(m, 'mxspool_rejected_total{reason="%s"}' % r) or 0
                  for r in ("spool_full", "spool_error"))
    assert refused == sum(1 for c in codes + [c for c, _ in replies] + [code]
                          if c in (451, 452))
    assert sample(m, "mxspool_spool_writable") == 0

    # 3. The disk has room again: mail is taken at once, no restart.
    for f in (filler, filler2, ballast):
        os.unlink(f)
    wait_for(lambda: http(mport, "/healthz") == (200, "ok\n"), 15,
             "/healthz to say ok again")
    assert len(log_lines(d, "reopened after")) >= 1
    assert len(log_lines(d, "write failed, refusing writes")) >= 1
    for _ in range(5):
        code, text, qid = send_one(d, body(100 * 1024))
        assert code == 250, text
        acked.append(qid)
    _, m = http(mport, "/metrics")
    assert sample(m, "mxspool_spool_writable") == 1
    assert sample(m, "mxspool_spool_free_bytes") >= 16 << 20

    # 4. Nothing acknowledged is lost, after a restart too.
    assert d.stop() == 0
    envs = spool_envelopes(d)
    assert set(acked) <= set(envs), sorted(set(acked) - set(envs))[:5]
    d.start()
    with smtplib.SMTP("127.0.0.1", d.port, timeout=30) as s:
        s.ehlo("client.test")
    assert d.stop() == 0
    assert set(acked) <= set(spool_envelopes(d))
