"""The spool keeps every acknowledged message: SIGKILL at random moments,
corrupt records, a full disk. Drives tests/tools/spoolcrash, which submits
through the real queue (group commit, writer thread, RocksDB) and prints
each id the moment it is reported durable, when mxspoold would say 250."""

import os
import random
import shutil
import signal
import subprocess
import time

import pytest

from conftest import BUILD

TOOL = os.path.join(BUILD, "tests/tools/spoolcrash")
MUTANT = os.path.join(BUILD, "tests/tools/spoolcrash-mutant")


def run_cycle(tool, spool, seed, run_for, submitters=16, until=None):
    """Starts submitting, kills with SIGKILL after run_for seconds (or as
    soon as until(), polled every 10 ms, is true), and returns the
    complete ACK lines printed before the kill. Output goes to files, not
    pipes: a full pipe would stall the tool and hide losses."""
    outp, errp = spool + ".out", spool + ".err"
    with open(outp, "wb") as out, open(errp, "wb") as err:
        p = subprocess.Popen([tool, "submit", spool, str(submitters), str(seed)],
                             stdout=out, stderr=err)
        end = time.monotonic() + run_for
        while time.monotonic() < end and p.poll() is None:
            if until is not None and until():
                break
            time.sleep(min(0.01, max(0, end - time.monotonic())))
        p.send_signal(signal.SIGKILL)
        p.wait(30)
    with open(outp) as f:
        lines = f.read().split("\n")[:-1]   # the last may be cut short
    with open(errp) as f:
        errtext = f.read()
    assert p.returncode == -signal.SIGKILL, errtext
    return [l for l in lines if l.startswith("ACK ")], errtext


def verify(spool, acks):
    r = subprocess.run([TOOL, "verify", spool], input="\n".join(acks) + "\n",
                       capture_output=True, text=True, timeout=120)
    return r.returncode, r.stdout, r.stderr


def test_acknowledged_messages_survive_sigkill_at_random_moments(tmp_path):
    spool = str(tmp_path / "spool")
    os.mkdir(spool)
    rng = random.Random(20261124)
    acks = []
    for cycle in range(24):
        new, _ = run_cycle(TOOL, spool, rng.randrange(1, 1 << 30),
                           rng.uniform(0.05, 0.6))
        acks += new
        # Every id acknowledged in any cycle so far is still there, byte
        # for byte, after this kill and the recovery at reopen.
        rc, out, err = verify(spool, acks)
        assert rc == 0, "cycle %d:\n%s%s" % (cycle, out[-2000:], err[-2000:])
        assert "verified %d acknowledged messages" % len(acks) in out
        assert " 0 bad" in out
        # A crash's torn tail is no damage (test_spool_recovery.py).
        assert "write-ahead log" not in err, err
        assert not os.path.exists(os.path.join(spool, "quarantine"))
    assert len(acks) > 1000
    assert len(set(a.split()[1] for a in acks)) == len(acks), "duplicate ids"


def test_the_crash_test_catches_a_relay_that_acks_before_writing(tmp_path):
    """The same test against a writer built to acknowledge before it
    writes (queue/commit.c, COMMIT_MUTANT_ACK_EARLY) must find losses."""
    spool = str(tmp_path / "spool")
    os.mkdir(spool)
    acks = []
    caught = 0
    # A loss needs the kill to land between an early ack and its write:
    # on a loaded machine that can take a few cycles, so up to 12.
    for cycle in range(12):
        new, _ = run_cycle(MUTANT, spool, cycle + 1, 0.3)
        acks += new
        rc, out, _ = verify(spool, acks)
        if rc != 0:
            assert "missing" in out
            caught += 1
            if caught >= 3:
                break
    assert caught >= 3, "the mutant writer lost nothing in 12 cycles"


def test_corrupt_records_are_quarantined_not_dropped(tmp_path):
    spool = str(tmp_path / "spool")
    os.mkdir(spool)
    acks, _ = run_cycle(TOOL, spool, 7, 0.3)
    subprocess.run([TOOL, "corrupt", spool], check=True)
    rc, out, err = verify(spool, acks)
    # The good messages are all there; the two bad records are named.
    assert rc == 0, out + err
    assert "0000000000ZZ: spool record does not decode (not an envelope record): moved to quarantine" in err
    assert "not-a-queue-id: spool record does not decode (key is not a queue id): moved to quarantine" in err
    # Moved aside once: the next start neither sees nor reports them again.
    rc, out, err = verify(spool, acks)
    assert rc == 0
    assert "quarantine" not in err


def test_a_spool_in_use_is_refused_with_one_clear_line(tmp_path):
    spool = str(tmp_path / "spool")
    os.mkdir(spool)
    p = subprocess.Popen([TOOL, "submit", spool, "1", "1"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        time.sleep(0.3)
        r = subprocess.run([TOOL, "verify", spool], input="", capture_output=True,
                           text=True, timeout=30)
        assert r.returncode == 1
        assert r.stderr == "spoolcrash: spool %s is in use by another process\n" % spool
    finally:
        p.kill()
        p.wait()


def _mount_tmpfs(path, size):
    os.mkdir(path)
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=%s" % size, "tmpfs", path],
                       capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip("cannot mount a tmpfs here (%s)" % r.stderr.strip())


def test_low_disk_space_refuses_with_enospc_and_recovers_by_itself(tmp_path):
    """Below spool_min_free new mail is refused as out of space (452 4.3.1
    on the wire), long before RocksDB could hit a full disk; once space
    comes back, mail is accepted again without a restart."""
    mnt = str(tmp_path / "small")
    _mount_tmpfs(mnt, "256m")
    try:
        spool = os.path.join(mnt, "spool")
        os.mkdir(spool)
        filler = os.path.join(mnt, "filler")
        with open(filler, "wb") as f:       # 56 MiB left: under 100 MiB
            for _ in range(200):
                f.write(b"\0" * (1 << 20))
        outp, errp = str(tmp_path / "out"), str(tmp_path / "err")
        with open(outp, "wb") as out, open(errp, "wb") as err:
            p = subprocess.Popen([TOOL, "submit", spool, "8", "3", str(100 << 20)],
                                 stdout=out, stderr=err)
            time.sleep(0.8)
            os.unlink(filler)                # 256 MiB left
            time.sleep(0.3)
            p.send_signal(signal.SIGKILL)
            p.wait(30)
        lines = open(outp).read().split("\n")[:-1]
        nacks = [i for i, l in enumerate(lines) if l.startswith("NACK ")]
        assert nacks, "low disk space never refused a message"
        assert all(lines[i].endswith(" spool out of space") for i in nacks)
        assert any(l.startswith("ACK ") for l in lines[nacks[-1]:]), \
            "accepting did not resume when space came back"
        acks = [l for l in lines if l.startswith("ACK ")]
        rc, vout, verr = verify(spool, acks)
        assert rc == 0, vout[-2000:] + verr[-2000:]
        # Refused messages were not stored: the spool holds no more than
        # was acknowledged plus the batch in flight at the kill.
        held = int(vout.split("spool holds ")[1].split(";")[0])
        assert len(acks) <= held <= len(acks) + 8
        assert "write failed" not in open(errp).read()
    finally:
        subprocess.run(["umount", "-l", mnt])


def test_a_second_daemon_on_the_same_spool_exits_with_one_clear_line(daemon):
    first = daemon().start()
    second = daemon()
    with open(second.conf) as f:
        text = f.read().replace(second.spool, first.spool)
    with open(second.conf, "w") as f:
        f.write(text)
    second.start(wait=False)
    assert second.proc.wait(20) == 1
    fatal = [l for l in second.log().splitlines() if "fatal:" in l]
    assert len(fatal) == 1
    assert fatal[0].endswith("fatal: spool %s is in use by another process" % first.spool)
    assert first.stop() == 0
