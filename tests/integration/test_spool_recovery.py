"""A damaged write-ahead log never loses acknowledged mail silently.

Messages are acknowledged, the writer is killed with SIGKILL, and the
RocksDB log is damaged the way a disk or an operator can: a flipped bit,
a zeroed 4 KiB block, a log cut short. A torn tail (a record the crash
cut off: never acknowledged) recovers quietly; anything else is logged
with what it covers, the damaged logs are copied byte for byte to
SPOOL/quarantine/<time>/, and then spool_recovery = strict refuses to
start with one line, while salvage (the default) keeps every intact
record after the damage. What must survive is worked out here from the
log itself: the queue ids each write batch holds, and which 32 KiB blocks
the damage touched (RocksDB's reader gives up the rest of a block that
does not read)."""

import glob
import os
import re
import shutil
import smtplib
import subprocess
import time

from conftest import free_port, log_lines, wait_for
from smtphelp import SMTPDUMP, ehlo, queued_id, send_message
from test_metrics import get, sample
from test_delivery import parse_dsn
from test_spool_crash import TOOL, run_cycle, verify

BLOCK = 32768
QID = re.compile(rb"^[0-9A-Z]{12}$")


def varint(b, i):
    v = shift = 0
    while True:
        c = b[i]
        i += 1
        v |= (c & 0x7f) << shift
        shift += 7
        if c < 0x80:
            return v, i


def batch_qids(payload):
    """The queue ids a WriteBatch puts (any family): sequence (8) count
    (4), then tag, [family], key, [value]."""
    qids, i = set(), 12
    for _ in range(int.from_bytes(payload[8:12], "little")):
        tag = payload[i]
        i += 1
        if tag in (4, 5):                   # in a column family
            _, i = varint(payload, i)
        n, i = varint(payload, i)
        key = payload[i:i + n]
        i += n
        if tag in (1, 5):                   # a put: the value follows
            n, i = varint(payload, i)
            i += n
        elif tag not in (0, 4):
            raise AssertionError("unexpected WriteBatch tag %d" % tag)
        if QID.match(key):
            qids.add(key.decode())
    return qids


def wal_batches(data):
    """[(start, end, qids, first sequence number)] of an intact log, in
    order."""
    out, pos, start, payload = [], 0, None, b""
    while pos < len(data):
        left = BLOCK - pos % BLOCK
        if left < 7:
            pos += left
            continue
        if len(data) - pos < 7:
            break
        n = int.from_bytes(data[pos + 4:pos + 6], "little")
        t = data[pos + 6]
        assert t in (1, 2, 3, 4), "the test expects an intact log here"
        if pos + 7 + n > len(data):
            break
        if t in (1, 2):
            start, payload = pos, b""
        payload += data[pos + 7:pos + 7 + n]
        pos += 7 + n
        if t in (1, 4):
            out.append((start, pos, batch_qids(payload),
                        int.from_bytes(payload[:8], "little")))
    return out


def wal_files(spool):
    return sorted(glob.glob(os.path.join(spool, "*.log")))


def log_bytes(spool, after=()):
    """The size of the newest log not in after, 0 if there is none."""
    logs = [l for l in wal_files(spool) if l not in after]
    try:
        return os.path.getsize(logs[-1]) if logs else 0
    except FileNotFoundError:
        return 0


def write_log(spool, seed, min_bytes, after=()):
    """Submits into spool until its newest log (one not in after) holds
    min_bytes, then kills the writer: its acknowledgements. Stopping on
    the log's size, not on a clock, writes as much on a disk whose fsync
    takes 10 ms as on a tmpfs where it is free, where a fixed time fills
    one 17 MB log after another."""
    acks, err = run_cycle(TOOL, spool, seed, 60, 4,
                          until=lambda: log_bytes(spool, after) >= min_bytes)
    assert log_bytes(spool, after) >= min_bytes, (
        "wrote %d bytes of log in 60 s, %d acknowledged: %s %s" % (
            log_bytes(spool, after), len(acks),
            [(l, os.path.getsize(l)) for l in wal_files(spool)], err[-500:]))
    return acks


def acked_spool(tmp_path, min_bytes=256 << 10):
    """A spool whose single log holds at least min_bytes of acknowledged
    mail, the writer killed: (spool, acks, log path)."""
    spool = str(tmp_path / "spool")
    os.mkdir(spool)
    acks = write_log(spool, 7, min_bytes)
    logs = wal_files(spool)
    assert len(logs) == 1, [(l, os.path.getsize(l)) for l in logs]
    return spool, acks, logs[0]


def ack_ids(acks):
    return [a.split()[1] for a in acks]


def missing(out):
    return {l.split()[-1] for l in out.splitlines() if l.startswith("missing envelope ")}


def lost_to(batches, lo, hi):
    """Queue ids in batches touching the blocks of [lo, hi): RocksDB
    drops the rest of a block that does not read, and a record missing a
    fragment whole."""
    b0, b1 = lo // BLOCK * BLOCK, (hi + BLOCK - 1) // BLOCK * BLOCK
    return set().union(*[q for s, e, q, _ in batches if s < b1 and e > b0])


def middle_batch(batches):
    """A batch in the middle with whole blocks on both sides."""
    for s, e, q, _ in batches[len(batches) // 2:]:
        if q and e - s > 64:
            return s, e, q
    raise AssertionError("no batch to damage")


def flip(path, offset):
    with open(path, "r+b") as f:
        f.seek(offset)
        b = f.read(1)
        f.seek(offset)
        f.write(bytes([b[0] ^ 0x10]))


def quiet_not(err):
    """What verify said beyond naming the (known) missing messages."""
    return [l for l in err.splitlines()
            if not l.endswith(": body missing from the spool")]


def quarantined(spool):
    return sorted(glob.glob(os.path.join(spool, "quarantine", "*", "*.log")))


def check_salvage(spool, acks, damaged, lost, why):
    """salvage: logs what was lost, keeps a byte-identical copy, keeps
    every acknowledged message outside `lost`, then starts quietly."""
    rc, out, err = verify(spool, acks)
    gone = missing(out)
    assert gone, "the damage cost nothing: %s" % err[-3000:]
    assert gone <= lost, (sorted(gone - lost), err)
    # Every acknowledged message after the damage is still there.
    assert set(ack_ids(acks)) - lost, "nothing acknowledged after the damage"
    assert "verified %d acknowledged messages" % len(acks) in out
    warn = [l for l in err.splitlines() if "damaged at byte" in l]
    assert len(warn) == 1, err
    assert why is None or "(%s)" % why in warn[0]
    m = re.search(r"SALVAGED after write-ahead log damage: kept (\d+) intact "
                  r"write batches after it, lost (\d+) bytes \((\d+) updates\)",
                  err)
    assert m, err
    assert int(m.group(1)) > 0 and int(m.group(2)) > 0 and int(m.group(3)) > 0
    copies = quarantined(spool)
    assert len(copies) == 1 and os.path.basename(copies[0]) == os.path.basename(damaged[0])
    with open(copies[0], "rb") as f:
        assert f.read() == damaged[1], "the quarantined log is not the damaged one"
    # The damaged log is gone from the spool; the next start is quiet and
    # finds the same messages, with the index rebuilt to match (audit).
    rc2, out2, err2 = verify(spool, acks)
    assert missing(out2) == gone
    assert not quiet_not(err2), err2
    assert quarantined(spool) == copies


def check_strict(spool, acks, logpath, why):
    """strict: one line naming the file and how to salvage, exit 1, the
    spool left as it was and a byte-identical copy in quarantine."""
    with open(logpath, "rb") as f:
        before = f.read()
    r = subprocess.run([TOOL, "verify", spool, "strict"], input="",
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 1
    last = r.stderr.splitlines()[-1]
    assert last.startswith("spoolcrash: spool %s: write-ahead log %s damaged at byte "
                           % (spool, os.path.basename(logpath))), r.stderr
    assert why is None or "(%s" % why in last
    assert last.endswith("start with spool_recovery = salvage"), last
    with open(logpath, "rb") as f:
        assert f.read() == before
    copies = quarantined(spool)
    assert len(copies) == 1
    with open(copies[0], "rb") as f:
        assert f.read() == before
    shutil.rmtree(os.path.join(spool, "quarantine"))
    return before


def test_a_flipped_bit_in_the_middle_is_refused_or_salvaged(tmp_path):
    spool, acks, log = acked_spool(tmp_path)
    with open(log, "rb") as f:
        batches = wal_batches(f.read())
    s, e, *_ = middle_batch(batches)
    at = s + 7 + (e - s - 7) // 2               # well inside the payload
    flip(log, at)
    damaged = check_strict(spool, acks, log, "checksum mismatch")
    check_salvage(spool, acks, (log, damaged), lost_to(batches, at, at + 1),
                  "checksum mismatch")


def test_a_zeroed_block_in_the_middle_is_refused_or_salvaged(tmp_path):
    spool, acks, log = acked_spool(tmp_path)
    with open(log, "rb") as f:
        batches = wal_batches(f.read())
    size = os.path.getsize(log)
    at = size // 2 // 4096 * 4096
    with open(log, "r+b") as f:
        f.seek(at)
        f.write(b"\0" * 4096)
    # A checksum mismatch, or zeros where a record header should be.
    damaged = check_strict(spool, acks, log, None)
    check_salvage(spool, acks, (log, damaged), lost_to(batches, at, at + 4096),
                  None)


def torn_record(size, garbage=False):
    """The start of a record a crash cut off, written at offset size the
    way RocksDB lays one out: a block's last bytes, too few for a header,
    zero; then a header for 4000 bytes of batch and only half of them.
    garbage: a whole record whose checksum is wrong, and more garbage."""
    left = BLOCK - size % BLOCK
    pad = b"\0" * left if left < 7 + 4000 else b""
    if garbage:
        return (pad + b"\x12\x34\x56\x78" + (3000).to_bytes(2, "little") + b"\1"
                + bytes((i * 151 + 7) % 251 + 1 for i in range(3900)))
    return pad + b"\0\0\0\0" + (4000).to_bytes(2, "little") + b"\1" + b"x" * 2000


def test_a_torn_tail_recovers_quietly_in_strict_mode_too(tmp_path):
    """A crash in the middle of a write leaves the start of a record the
    writer never acknowledged: dropped without a word. So is garbage
    after the last record (a power cut in an unsynced write)."""
    for tail in ("cut record", "garbage"):
        sub = tmp_path / tail.replace(" ", "_")
        sub.mkdir()
        spool, acks, log = acked_spool(sub, 64 << 10)
        size = os.path.getsize(log)
        with open(log, "ab") as f:
            f.write(torn_record(size, tail == "garbage"))
        for mode in ("strict", None):
            args = [TOOL, "verify", spool] + ([mode] if mode else [])
            r = subprocess.run(args, input="\n".join(acks) + "\n",
                               capture_output=True, text=True, timeout=60)
            assert r.returncode == 0, (tail, mode, r.stdout[-500:], r.stderr[-3000:])
            assert "verified %d acknowledged messages" % len(acks) in r.stdout
            assert r.stderr == ""
            assert not os.path.exists(os.path.join(spool, "quarantine"))
            # Opened as always: replay without a flush, which would drop
            # the logs; past a bad tail (known to hold nothing intact, and
            # followed by the next start's log) skipping it.
            opts = open(max(glob.glob(os.path.join(spool, "OPTIONS-*")),
                            key=lambda p: int(p.rsplit("-", 1)[1]))).read()
            assert "avoid_flush_during_recovery=true" in opts
            assert "wal_recovery_mode=%s" % (
                "kTolerateCorruptedTailRecords" if tail == "cut record"
                else "kSkipAnyCorruptedRecords") in opts, tail
        # Mail acknowledged in the next log, after the bad tail, is
        # replayed too.
        more = write_log(spool, 99, 64 << 10, after=wal_files(spool))
        assert len(wal_files(spool)) >= 2
        rc, out, err = verify(spool, acks + more)
        assert rc == 0 and err == "", out[-2000:] + err[-2000:]
        assert "verified %d acknowledged messages" % len(acks + more) in out


def test_a_log_cut_short_before_acknowledged_records_is_not_quiet(tmp_path):
    """Cut inside the last acknowledged record, or well before the end:
    the log alone looks like a torn tail, but the spool's mark of what was
    synced says acknowledged updates are missing."""
    for where in ("last record", "middle"):
        sub = tmp_path / where.replace(" ", "_")
        sub.mkdir()
        spool, acks, log = acked_spool(sub)
        with open(log, "rb") as f:
            batches = wal_batches(f.read())
        if where == "last record":
            # The last record known synced: the spool's mark (8 bytes,
            # big-endian) holds its last sequence number. A record after
            # it was never acknowledged and may be cut quietly.
            with open(os.path.join(spool, "walmark"), "rb") as f:
                mark = int.from_bytes(f.read(), "big")
            s, e, *_ = [b for b in batches if b[3] <= mark][-1]
        else:
            s, e, *_ = middle_batch(batches)
        cut = s + (e - s) // 2
        os.truncate(log, cut)
        damaged = check_strict(spool, acks, log, "cut short")
        rc, out, err = verify(spool, acks)
        gone = missing(out)
        # The last record's acknowledgements may not have been printed
        # before the kill; the middle's were.
        assert gone <= lost_to(batches, cut, 1 << 40), err
        assert gone or where == "last record"
        before = set().union(*[q for s, e, q, _ in batches if e <= cut])
        assert not before & gone, "lost mail from before the cut"
        m = re.search(r"damaged at byte (\d+) \(cut short\): 0 bytes and (\d+) updates", err)
        assert m and int(m.group(1)) == cut and int(m.group(2)) > 0, err
        assert "SALVAGED" in err
        copies = quarantined(spool)
        assert len(copies) == 1
        with open(copies[0], "rb") as f:
            assert f.read() == damaged
        rc2, out2, err2 = verify(spool, acks)
        assert missing(out2) == gone
        assert not quiet_not(err2), err2


def test_an_older_log_cut_short_breaks_the_sequence_and_is_caught(tmp_path):
    """Two logs (the spool reopened between two crashes): the first cut
    in the middle leaves a gap in sequence numbers before the second."""
    spool = str(tmp_path / "spool")
    os.mkdir(spool)
    first = write_log(spool, 11, 128 << 10)
    rc, out, err = verify(spool, first)
    assert rc == 0, out + err
    logs = wal_files(spool)
    second = write_log(spool, 12, 64 << 10, after=logs)
    # The oldest log with mail, and a later one that holds some too.
    old = logs[0]
    with open(old, "rb") as f:
        batches = wal_batches(f.read())
    assert len(batches) > 4, (old, len(batches))
    s, e, *_ = middle_batch(batches)
    os.truncate(old, s + (e - s) // 2)
    damaged = check_strict(spool, first + second, old, "sequence numbers missing after it")
    acks = first + second
    rc, out, err = verify(spool, acks)
    gone = missing(out)
    lost = set().union(*[q for bs, be, q, _ in batches if be > s])
    assert gone and gone <= lost, err
    assert not gone & set(ack_ids(second)), "the second log's mail was lost"
    assert "SALVAGED" in err
    with open(quarantined(spool)[0], "rb") as f:
        assert f.read() == damaged


def test_mxspoold_refuses_in_strict_mode_and_salvages_with_a_metric(daemon):
    """The daemon's own log and exit status, and the metrics, with mail
    acknowledged over SMTP, the daemon killed and one bit flipped."""
    mport, dead = free_port(), free_port()
    conf = ('metrics_listen = "127.0.0.1:%d"\n'
            'domain "example.com" { route = "smtp:[127.0.0.1]:%d" }\n'
            'retry { initial = 1h }\n' % (mport, dead))
    d = daemon(extra=conf + 'spool_recovery = "strict"\n')
    d.start()
    c = ehlo(d)
    qids = []
    for i in range(80):
        body = "Subject: %d\r\n\r\n" % i + ("line %d of the body\r\n" % i) * 150 + ".\r\n"
        qids.append(queued_id(send_message(c, body)))
    c.close()
    d.kill()
    log = wal_files(d.spool)[-1]
    with open(log, "rb") as f:
        batches = wal_batches(f.read())
    s, e, *_ = middle_batch(batches)
    at = s + 7 + (e - s - 7) // 2
    flip(log, at)
    with open(log, "rb") as f:
        damaged = f.read()

    d.start(wait=False)
    assert d.proc.wait(20) == 1
    fatal = [l for l in d.log().splitlines() if "fatal:" in l]
    assert len(fatal) == 1, d.log()
    assert ("fatal: spool %s: write-ahead log %s damaged at byte "
            % (d.spool, os.path.basename(log))) in fatal[0]
    assert fatal[0].endswith("start with spool_recovery = salvage")
    assert len(log_lines(d, "damaged at byte")) == 2   # the warning and the fatal line

    with open(d.conf) as f:
        text = f.read().replace('spool_recovery = "strict"\n', 'spool_recovery = "salvage"\n')
    with open(d.conf, "w") as f:
        f.write(text)
    d.start()
    assert len(log_lines(d, "SALVAGED after write-ahead log damage")) == 1
    wait_for(lambda: log_lines(d, "indexed "), what="the index rebuilt")
    _, _, metrics = get(mport, "/metrics")
    assert sample(metrics, "mxspool_spool_wal_salvaged_batches_total") > 0
    assert sample(metrics, "mxspool_spool_wal_damaged_bytes_total") > 0
    assert sample(metrics, "mxspool_spool_wal_lost_updates_total") > 0
    held = int(log_lines(d, "indexed ")[-1].split("indexed ")[1].split()[0])
    assert d.stop() == 0
    copies = quarantined(d.spool)
    assert len(copies) == 2                     # one per start
    for cp in copies:
        with open(cp, "rb") as f:
            assert f.read() == damaged
    r = subprocess.run([SMTPDUMP, "env", d.spool], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    kept = {l.split("\t")[0] for l in r.stdout.splitlines()}
    lost = lost_to(batches, at, at + 1)
    assert set(qids) - lost <= kept
    assert kept < set(qids) and len(kept) == held


def test_spool_recovery_takes_strict_or_salvage_only(tmp_path):
    from conftest import MXSPOOLD
    conf = tmp_path / "m.conf"
    for value, ok in (("strict", True), ("salvage", True), ("maybe", False),
                      ("", False), ("Strict", False)):
        conf.write_text('relay_domains = {"example.com"}\n'
                        'spool_dir = "%s"\n'
                        'spool_recovery = "%s"\n' % (tmp_path / "spool", value))
        r = subprocess.run([MXSPOOLD, "-t", "-c", str(conf)], capture_output=True, text=True)
        if ok:
            assert r.returncode == 0, r.stderr
        else:
            assert r.returncode == 1
            assert r.stderr == ("%s:3: spool_recovery: '%s' is not one of strict, salvage\n"
                                % (conf, value))


def test_a_notice_and_its_failed_mark_are_one_write(daemon, backend):
    """The failure notice and the original's record that says its
    recipient failed are one synced batch: a crash right after it (the
    log cut there, as a power cut would leave it) neither loses the notice
    nor, by trying the recipient again, sends a second one."""
    from test_delivery import config

    store = backend(rcpt={"x@example.com": "550 5.1.1 no such user"})
    rec = backend(listen=False)     # the notice waits in the queue
    # The store is believed about its 5xx, after a restart too.
    d = daemon(extra=config(store, rec, retry="rejection_guard = false")).start()
    s = smtplib.SMTP("127.0.0.1", d.port, timeout=30)
    s.sendmail("s@client.test", ["x@example.com"], b"Subject: b\r\n\r\nb\r\n")
    s.quit()
    line = wait_for(lambda: log_lines(d, "sender non-delivery notification: "),
                    what="the notice")[0]
    m = re.search(r" ([0-9A-Z]{12}): sender non-delivery notification: ([0-9A-Z]{12})",
                  line)
    orig, notice = m.group(1), m.group(2)
    d.kill()
    where = [(log, b) for log in wal_files(d.spool)
             for b in wal_batches(open(log, "rb").read()) if notice in b[2]]
    # The first is the notice's own submit; later ones record its tries.
    log, (start, end, qids, _) = where[0]
    assert orig in qids, "the notice went without the original's record"
    assert log == wal_files(d.spool)[-1]
    os.truncate(log, end)           # what a crash right after it leaves
    d.start()
    rec.set(listen=True)
    rec.wait_for(lambda: len(rec.messages()) == 1, timeout=30,
                 what="the notice")
    time.sleep(5)                   # retries are 1 s to 4 s apart
    assert len(rec.messages()) == 1
    _, _, rc = parse_dsn(rec.messages()[0]["data"])
    assert rc[0]["Final-Recipient"] == "rfc822; x@example.com"
    assert store.messages() == []
    assert d.stop() == 0
