"""mxspoolctl for an operator at work: option and config errors that say
what is wrong, filters and --all on the bulk commands, pause and resume of
a destination, the mailq listing, what show and summary tell, and reload
after the control socket moved (test_ctl.py has the basics)."""

import os
import re
import subprocess
import time

from conftest import wait_for
from test_ctl import MXSPOOLCTL, ctl, ctl_json, dest, outage, send  # noqa: F401


def run_ctl(*args, timeout=30):
    """mxspoolctl with exactly these arguments: (status, stdout, stderr)."""
    p = subprocess.run([MXSPOOLCTL] + list(args), capture_output=True,
                       timeout=timeout)
    return p.returncode, p.stdout.decode(), p.stderr.decode()


def first_line(err):
    return err.splitlines()[0] if err else ""


def test_option_errors_name_the_option(tmp_path):
    sock = str(tmp_path / "none.sock")
    for args, msg in (
            (["list", "--domain"], "list: option --domain needs a value"),
            (["list", "--older-than"],
             "list: option --older-than needs a value"),
            (["list", "--bogus"], "list: unknown option --bogus"),
            (["list", "-x"], "list: unknown option -x"),
            (["list", "--held=yes"], "list: option --held takes no value"),
            (["summary", "--domain", "example.com"],
             "summary: option --domain does not apply to summary"),
            (["list", "-c", "x.conf"],
             "list: option -c goes before the command"),
            (["list", "--socket=/x"],
             "list: option --socket goes before the command")):
        rc, out, err = run_ctl("-s", sock, *args)
        assert rc == 2 and out == "", (args, rc, err)
        assert first_line(err).startswith("mxspoolctl: " + msg), (args, err)
    # The program's own options, before any command.
    for args, msg in ((["-c"], "option -c needs a value"),
                      (["--config"], "option --config needs a value"),
                      (["--frob", "summary"], "unknown option --frob"),
                      (["-q", "summary"], "unknown option -q")):
        rc, out, err = run_ctl(*args)
        assert rc == 2 and first_line(err) == "mxspoolctl: " + msg, (args, err)


def test_a_file_that_is_not_a_config_says_so_in_one_line(tmp_path):
    junk = tmp_path / "notes.txt"
    junk.write_text("root:x:0:0:root:/root:/bin/bash\nmore junk\n")
    for cmd in ("summary", "list", "flush", "reload"):
        args = [cmd, "--all"] if cmd == "flush" else [cmd]
        rc, out, err = run_ctl("-c", str(junk), *args)
        assert rc == 1 and out == "", (cmd, rc, out, err)
        assert err.count("\n") == 1, err
        assert err.startswith("mxspoolctl: %s is not a valid mxspool config: "
                              "line 1: unknown option" % junk), err
    rc, out, err = run_ctl("-c", str(tmp_path / "missing.conf"), "summary")
    assert rc == 1 and err == "mxspoolctl: %s: cannot read: No such file " \
        "or directory\n" % (tmp_path / "missing.conf")
    rc, out, err = run_ctl("-c", str(tmp_path), "stats")
    assert rc == 1 and err == "mxspoolctl: %s: cannot read: Is a " \
        "directory\n" % tmp_path


def test_a_config_with_errors_still_reaches_its_daemon(outage):
    """A config being edited: the daemon runs on what it read before, the
    commands reach it with a note, and reload lists everything wrong."""
    d = outage
    with open(d.conf, "a") as f:
        f.write("no_such_option = 1\n")
    rc, out, err = ctl(d, "summary")
    assert rc == 0 and out.startswith("DESTINATION")
    assert err.startswith("mxspoolctl: note: %s has errors (line " % d.conf)
    assert err.endswith("unknown option 'no_such_option'): a reload would "
                        "be refused\n"), err
    rc, out, err = ctl(d, "reload")
    assert rc == 1 and "reload refused" in err and "no_such_option" in err
    assert "note:" not in err
    # Without its control_socket line, the daemon running the file is
    # found all the same (its locator).
    with open(d.conf) as f:
        text = f.read()
    with open(d.conf, "w") as f:
        f.write("\n".join(l for l in text.splitlines()
                          if not l.startswith("control_socket")) + "\n")
    rc, out, err = ctl(d, "stats")
    assert rc == 0 and "accepted" in out and "has errors" in err
    d.stop()
    rc, out, err = ctl(d, "stats")
    assert rc == 1 and err.startswith("mxspoolctl: %s is not a valid "
                                      "mxspool config: line " % d.conf)


def senders(d, *args):
    return [m["sender"] for m in ctl_json(d, "list", *args)]


def test_list_filters_by_sender_recipient_and_age(outage):
    d = outage
    assert senders(d, "--sender", "alice@sender.test") == ["alice@sender.test"]
    # The domain in any case, the local part exactly; <> as written too.
    assert senders(d, "--sender", "<alice@SENDER.Test>") == [
        "alice@sender.test"]
    assert senders(d, "--sender", "Alice@sender.test") == []
    assert senders(d, "--sender", "<>") == []
    assert senders(d, "--rcpt", "u3@EXAMPLE.com") == ["bob@sender.test"]
    assert senders(d, "--rcpt", "u2@example.com", "--domain",
                   "example.com") == ["alice@sender.test"]
    assert senders(d, "--rcpt", "u2@example.com", "--domain",
                   "example.org") == []
    assert len(senders(d, "--younger-than", "1h")) == 4
    assert senders(d, "--younger-than", "0s") == []
    assert len(senders(d, "--older-than", "0s", "--younger-than", "1h")) == 4
    assert senders(d, "--held", "--younger-than", "1h") == ["dave@sender.test"]
    for bad, msg in ((["--sender", "a b@x.test"],
                      "bad address 'a b@x.test' for --sender"),
                     (["--rcpt", "<>"], "bad address '<>' for --rcpt"),
                     (["--younger-than", "soon"],
                      "bad duration 'soon' for --younger-than")):
        rc, out, err = ctl(d, "list", *bad)
        assert rc == 2 and first_line(err).startswith("mxspoolctl: list: " + msg), err


def test_list_limit_says_how_many_there_are_in_all(outage):
    d = outage

    def tail(*args):
        rc, out, err = ctl(d, "list", *args)
        assert rc == 0, err
        return out.splitlines()[-1]
    assert tail("--limit", "2") == "2 of 4 messages"       # the counters
    assert tail("--limit", "1", "--held") == "1 of 1 message"
    assert tail("--limit", "1", "--domain", "example.com") == "1 of 2 messages"
    assert tail("--limit", "1", "--domain", d.dead) == "1 of 3 messages"
    assert tail("--limit", "1", "--sender", "bob@sender.test") == \
        "1 of 1 message"                                   # read through
    assert tail("--limit", "5", "--younger-than", "1h") == "4 of 4 messages"
    assert tail("--limit", "5", "--sender", "nobody@x.test") == \
        "No messages match."
    assert tail() == "4 messages"


def test_a_message_in_two_lanes_of_a_destination_is_listed_once(outage):
    d = outage
    send(d, "erin@sender.test", ["x1@example.com", "x2@example.net"],
         b"Subject: both\r\n\r\nboth\r\n")
    got = senders(d, "--domain", d.dead)
    assert got.count("erin@sender.test") == 1, got
    rc, out, err = ctl(d, "list", "--domain", d.dead, "--limit", "1")
    assert out.splitlines()[-1] == "1 of 4 messages"
    rc, out, err = ctl(d, "hold", "--domain", d.dead)
    assert rc == 0 and out.strip() == "held 3 messages"   # dave was held


def test_hold_release_and_delete_take_all_and_filters(outage):
    d = outage
    rc, out, err = ctl(d, "hold", "--all", "--sender", "carol@sender.test")
    assert rc == 0 and out.strip() == "held 1 message", err
    assert senders(d, "--held") == ["carol@sender.test", "dave@sender.test"]
    rc, out, err = ctl(d, "hold", "--all", "--rcpt", "u1@example.com",
                       "--younger-than", "1h")
    assert rc == 0 and out.strip() == "held 1 message"
    assert ctl_json(d, "release", "--all") == [{"released": 3}]
    assert senders(d, "--held") == []
    rc, out, err = ctl(d, "hold", "--all")
    assert rc == 0 and out.strip() == "held 4 messages"
    rc, out, err = ctl(d, "release", "--domain", "example.com",
                       "--sender", "bob@sender.test")
    assert rc == 0 and out.strip() == "released 1 message"
    # delete --all is as careful as delete always was.
    rc, out, err = ctl(d, "delete", "--all")
    assert rc == 2 and "add --yes" in err
    rc, out, err = ctl(d, "delete", "--all", "--sender", "bob@sender.test",
                       "--yes")
    assert rc == 0 and out.strip() == "deleted 1 message"
    rc, out, err = ctl(d, "delete", "--all", "--held", "--older-than", "1h",
                       "--yes")
    assert rc == 0 and out.strip() == "deleted 0 messages"
    rc, out, err = ctl(d, "delete", "--all", "--held", "--yes")
    assert rc == 0 and out.strip() == "deleted 3 messages"
    assert senders(d) == []


def test_bulk_commands_refuse_filters_without_a_selection(outage):
    d = outage
    alice = d.msgs["alice@sender.test"]["id"]
    for args, msg in ((["hold", "--sender", "a@b.test"],
                       "give message ids, --domain or --all"),
                      (["release", alice, "--rcpt", "u1@example.com"],
                       "filters narrow --domain or --all, not message ids"),
                      (["hold", "--all", "--held"],
                       "option --held does not apply to hold"),
                      (["bounce", "--all", "--yes"], "option --all does not "
                       "apply to bounce")):
        rc, out, err = ctl(d, *args)
        assert rc == 2 and first_line(err).endswith(msg), (args, err)
    # The daemon checks the same for clients of its own.
    from test_ctl import raw_request
    replies = raw_request(
        d, '{"id": 1, "cmd": "hold", "ids": ["%s"], "sender": "x@y.test"}\n'
        % alice, '{"id": 2, "cmd": "list", "sender": 5}\n',
        '{"id": 3, "cmd": "list", "younger_than": -1}\n',
        '{"id": 4, "cmd": "flush", "all": true, "rcpt": ""}\n',
        '{"id": 5, "cmd": "bounce", "all": true, "yes": true}\n', read=5)
    assert [r["error"]["code"] for r in replies] == ["bad_request"] * 5
    assert len(senders(d)) == 4


def test_flush_all_says_how_many_held_messages_it_left_alone(outage):
    d = outage
    rc, out, err = ctl(d, "flush", "--all")
    assert rc == 0 and out == ("flushed 3 messages; 1 held message left "
                               "alone (release them first)\n"), out
    assert ctl_json(d, "flush", "--all") == [{"flushed": 3, "held": 1}]
    rc, out, err = ctl(d, "flush", "--all", "--younger-than", "0s")
    assert rc == 0 and out == "flushed 0 messages\n"
    rc, out, err = ctl(d, "flush", "--all", "--sender", "dave@sender.test")
    assert out == "flushed 0 messages; 1 held message left alone " \
        "(release them first)\n"
    rc, out, err = ctl(d, "flush", "--domain", "example.org",
                       "--sender", "carol@sender.test")
    assert rc == 0 and out == "flushed 1 message\n"


def delivered(b):
    """The recipients a backend has taken, in order."""
    return [r for m in b.messages() for r in m["rcpts"]]


def test_pause_holds_a_destination_only_and_outlasts_a_restart(daemon,
                                                               backend):
    import time
    import urllib.request
    from conftest import free_port, log_lines
    a, b = backend(), backend()
    mport = free_port()
    d = daemon(relay_domains=("example.com", "example.org"),
               extra='metrics_listen = "127.0.0.1:%d"\n'
                     'domain "example.com" { route = "smtp:[127.0.0.1]:%d" }\n'
                     'domain "example.org" { route = "smtp:[127.0.0.1]:%d" }\n'
                     % (mport, a.port, b.port))
    d.start()
    ra, rb = "smtp:[127.0.0.1]:%d" % a.port, "smtp:[127.0.0.1]:%d" % b.port
    # Paused before it has any mail: shown all the same, lest it be
    # forgotten; a domain names the destination its mail goes to.
    rc, out, err = ctl(d, "pause", "example.com")
    assert rc == 0, err
    assert out == "paused %s: no delivery there until mxspoolctl resume " \
        "(0 messages wait)\n" % ra
    s = ctl_json(d, "summary")[0]
    assert dest(s, ra)["state"] == "paused" and dest(s, ra)["paused"] is True
    assert dest(s, ra)["messages"] == 0 and dest(s, ra)["next_attempt"] is None
    # One message for both: the other destination's recipient goes.
    send(d, "alice@sender.test", ["u1@example.com", "v1@example.org"],
         b"Subject: both\r\n\r\nboth\r\n")
    wait_for(lambda: delivered(b) == ["v1@example.org"], what="v1")
    # An open, idle session to b gets no more once b is paused.
    rc, out, err = ctl(d, "pause", rb)
    assert rc == 0 and out.endswith("(0 messages wait)\n"), out
    send(d, "bob@sender.test", ["v2@example.org"], b"Subject: b\r\n\r\nb\r\n")
    send(d, "carol@sender.test", ["u2@example.com"], b"Subject: a\r\n\r\na\r\n")
    time.sleep(1.5)
    assert delivered(a) == [] and delivered(b) == ["v1@example.org"]
    s = ctl_json(d, "summary")[0]
    assert dest(s, ra)["messages"] == 2 and dest(s, rb)["messages"] == 1
    assert dest(s, rb)["state"] == "paused"
    # Their mail waits in the spool, not in memory.
    assert ctl_json(d, "stats")[0]["spool"]["in_memory"] == 0
    rc, out, err = ctl(d, "summary")
    row = [l for l in out.splitlines() if l.startswith(ra)][0]
    assert " paused " in row, row
    metrics = urllib.request.urlopen(
        "http://127.0.0.1:%d/metrics" % mport, timeout=5).read().decode()
    assert ('mxspool_destination_paused{node="mx",destination="%s"} 1'
            % ra) in metrics
    assert log_lines(d, "%s: paused by operator" % ra)
    assert log_lines(d, "%s: paused by operator" % rb)
    # Log tools count each waiting recipient as deferred, once.
    assert len(log_lines(d, "to=<u2@example.com>, relay=none")) == 1
    assert "status=deferred (delivery paused by operator)" in log_lines(
        d, "to=<u2@example.com>, relay=none")[0]
    # A restart keeps both paused.
    d.stop()
    d.start()
    time.sleep(1.5)
    assert delivered(a) == [] and delivered(b) == ["v1@example.org"]
    assert a.connections() == 0  # not even a probe
    s = ctl_json(d, "summary")[0]
    assert dest(s, ra)["state"] == "paused" == dest(s, rb)["state"]
    assert log_lines(d, "%s: still paused by operator" % ra)
    rc, out, err = ctl(d, "pause", ra)
    assert rc == 0 and out == "%s was paused already\n" % ra
    # resume: everything queued for it is due at once.
    rc, out, err = ctl(d, "resume", ra)
    assert rc == 0 and out == "resumed %s: 2 messages due now\n" % ra, out
    wait_for(lambda: sorted(delivered(a)) == ["u1@example.com",
                                              "u2@example.com"], what="a")
    assert delivered(b) == ["v1@example.org"]
    assert log_lines(d, "%s: resumed by operator" % ra)
    assert ctl_json(d, "resume", "example.org") == [
        {"resumed": rb, "messages": 1}]
    wait_for(lambda: delivered(b) == ["v1@example.org", "v2@example.org"],
             what="b")
    wait_for(lambda: ctl_json(d, "summary")[0]["destinations"] == [],
             what="an empty queue")
    # The state is gone from the spool too.
    d.stop()
    d.start()
    assert ctl_json(d, "summary")[0]["destinations"] == []
    # Wrong names and states.
    for args, rc_want, msg in (
            (["resume", ra], 1, "mxspoolctl: %s is not paused" % ra),
            (["pause", "nowhere.test"], 1,
             "mxspoolctl: no destination nowhere.test"),
            (["pause", "smtp:[127.0.0.1]:1"], 1, "mxspoolctl: no destination"),
            (["pause", "a b"], 2, "mxspoolctl: pause: bad destination"),
            (["pause"], 2, "mxspoolctl: pause: missing argument"),
            (["resume", "x", "y"], 2, "mxspoolctl: resume: too many")):
        rc, out, err = ctl(d, *args)
        assert rc == rc_want and first_line(err).startswith(msg), (args, err)


def test_show_gives_the_next_attempt_and_each_recipients_last_error(outage):
    import time
    d = outage
    now = int(time.time())
    alice = ctl_json(d, "show", d.msgs["alice@sender.test"]["id"])[0]
    # Its destination refuses connections: tried at the next probe.
    assert now - 1 <= alice["next_attempt"] <= now + 3600
    for r in alice["recipients"]:
        assert r["destination_state"] in ("backing off", "probing")
        assert "refused" in r["destination_error"].lower()
        assert r["next_attempt"] >= alice["next_attempt"]
    rc, out, err = ctl(d, "show", d.msgs["alice@sender.test"]["id"])
    assert rc == 0
    lines = out.splitlines()
    nxt = [l for l in lines if l.startswith("next attempt: ")][0]
    assert nxt != "next attempt: -" and ("(in " in nxt or "(now)" in nxt)
    rcpt = lines.index([l for l in lines if "<u1@example.com>" in l][0])
    assert lines[rcpt].startswith("recipient:    <u1@example.com> pending "
                                  "via %s (" % d.dead)
    assert lines[rcpt + 1].startswith("  next attempt: ")
    assert lines[rcpt + 2].startswith("  last error:   ")
    assert "refused" in lines[rcpt + 2].lower()
    # A 451 after the data, to every recipient: the recipient's own error,
    # and the destination backs off (max_interval is 10s).
    carol = ctl_json(d, "show", d.msgs["carol@sender.test"]["id"])[0]
    r = carol["recipients"][0]
    assert r["destination_state"] in ("backing off", "probing")
    assert "451" in r["last_error"] or "busy" in r["last_error"]
    assert now - 1 <= r["next_attempt"] == carol["next_attempt"] <= now + 15
    rc, out, err = ctl(d, "show", d.msgs["carol@sender.test"]["id"])
    assert [l for l in out.splitlines()
            if l.startswith("  last error:   4.")], out
    # Held: nothing planned, and the show says why.
    dave = ctl_json(d, "show", d.msgs["dave@sender.test"]["id"])[0]
    assert dave["next_attempt"] is None
    assert dave["recipients"][0]["next_attempt"] is None
    rc, out, err = ctl(d, "show", d.msgs["dave@sender.test"]["id"])
    assert "next attempt: - (held: mxspoolctl release lets it go)" in out
    # Paused: nothing planned either.
    ctl(d, "pause", d.busy)
    carol = ctl_json(d, "show", d.msgs["carol@sender.test"]["id"])[0]
    assert carol["next_attempt"] is None
    assert carol["recipients"][0]["destination_state"] == "paused"


def test_summary_shows_held_counts_beside_the_state(outage):
    d = outage
    rc, out, err = ctl(d, "summary")
    lines = out.splitlines()
    assert lines[0].split()[:4] == ["DESTINATION", "MSGS", "HELD", "SIZE"]
    row = [l for l in lines if l.startswith(d.dead)][0].split()
    assert row[1:3] == ["3", "1"], row   # 1 of 3 held, the rest waiting
    assert lines[-1].startswith("4 messages (1 held), ")
    # All held: the state says so.
    ctl(d, "hold", "--domain", d.dead)
    rc, out, err = ctl(d, "summary")
    row = [l for l in out.splitlines() if l.startswith(d.dead)][0].split()
    assert row[1:3] == ["3", "3"] and "held" in row, row
    assert out.splitlines()[-1].startswith("4 messages (3 held), ")


# postqueue -p, as the scripts that read it take it apart (the shapes
# pflogsumm's companions, qshape-style counters and monitoring plugins
# match): a heading, then per message a sender line, "(reason)" lines and
# indented recipients, blank lines between messages, and the trailer.
MAILQ_HEAD = ("-Queue ID-  --Size-- ----Arrival Time---- "
              "-Sender/Recipient-------")
MAILQ_MSG = re.compile(r"^(?P<id>[0-9A-Za-z]+)(?P<mark>[*!]?)\s+"
                       r"(?P<size>\d+)\s+(?P<date>\w{3} \w{3} [ \d]\d "
                       r"\d\d:\d\d:\d\d)\s+(?P<sender>\S+)$")
MAILQ_WHY = re.compile(r"^\s*\((?P<why>.*)\)$")
MAILQ_RCPT = re.compile(r"^ {41}(?P<rcpt>\S+)$")
MAILQ_END = re.compile(r"^-- (?P<kb>\d+) Kbytes in (?P<n>\d+) Requests?\.$")


def parse_mailq(text):
    """The messages postqueue -p output lists, strictly: any line out of
    place fails the test."""
    lines = text.split("\n")
    assert lines[-1] == "", "no newline at the end"
    lines = lines[:-1]
    if lines == ["Mail queue is empty"]:
        return [], None
    assert lines[0] == MAILQ_HEAD, lines[0]
    m = MAILQ_END.match(lines[-1])
    assert m and lines[-2] == "", lines[-2:]
    msgs, cur, why = [], None, None
    for line in lines[1:-2]:
        if line == "":
            assert cur is not None
            cur = None
            continue
        mm = MAILQ_MSG.match(line)
        if cur is None:
            assert mm, "not a message line: %r" % line
            cur = dict(mm.groupdict(), rcpts=[])
            msgs.append(cur)
            why = None
            continue
        w = MAILQ_WHY.match(line)
        if w:
            assert len(line) == 78 or line.startswith("("), repr(line)
            why = w.group("why")
            continue
        r = MAILQ_RCPT.match(line)
        assert r, "not a recipient line: %r" % line
        cur["rcpts"].append((r.group("rcpt"), why))
    assert int(m.group("n")) == len(msgs)
    return msgs, int(m.group("kb"))


def test_mailq_is_in_the_postqueue_layout(outage, tmp_path):
    d = outage
    rc, out, err = ctl(d, "mailq")
    assert rc == 0 and err == "", err
    msgs, kb = parse_mailq(out)
    byid = {m["id"]: m for m in msgs}
    assert [m["id"] for m in msgs] == [m["id"] for m in ctl_json(d, "list")]
    assert kb == sum(x["size"] for x in d.msgs.values()) // 1024
    alice = byid[d.msgs["alice@sender.test"]["id"]]
    assert alice["sender"] == "alice@sender.test"
    assert int(alice["size"]) == d.msgs["alice@sender.test"]["size"]
    assert alice["mark"] == ""
    # One reason line over both recipients: it is the same for both.
    assert [r for r, _ in alice["rcpts"]] == ["u1@example.com",
                                              "u2@example.com"]
    assert all("refused" in (why or "").lower() for _, why in alice["rcpts"])
    assert out.count("(%s)" % alice["rcpts"][0][1]) >= 1
    dave = byid[d.msgs["dave@sender.test"]["id"]]
    assert dave["mark"] == "!" and dave["rcpts"] == [("w1@example.net", None)]
    carol = byid[d.msgs["carol@sender.test"]["id"]]
    assert "451" in carol["rcpts"][0][1] or "busy" in carol["rcpts"][0][1]
    # The sender line's fields sit where postqueue puts them.
    line = [l for l in out.splitlines() if l.startswith(alice["id"])][0]
    assert line[12:20].strip() == alice["size"] and line[20] == " "
    assert line[21:41] == time.strftime(
        "%a %b %e %H:%M:%S ", time.localtime(
            d.msgs["alice@sender.test"]["arrival"]))
    assert line[41:] == " alice@sender.test"
    # A notification's null sender is MAILER-DAEMON, as Postfix has it.
    ctl(d, "bounce", d.msgs["bob@sender.test"]["id"], "--yes")
    wait_for(lambda: "MAILER-DAEMON" in ctl(d, "mailq")[1], what="a notice")
    msgs, kb = parse_mailq(ctl(d, "mailq")[1])
    notice = [m for m in msgs if m["sender"] == "MAILER-DAEMON"][0]
    assert notice["rcpts"][0][0] == "bob@sender.test"
    # mxspool-mailq is the same program under another name.
    link = tmp_path / "mxspool-mailq"
    os.symlink(MXSPOOLCTL, str(link))
    p = subprocess.run([str(link), "-c", d.conf], capture_output=True,
                       text=True, timeout=30)
    assert p.returncode == 0 and p.stdout == ctl(d, "mailq")[1]
    p = subprocess.run([str(link), "-c", d.conf, "list"], capture_output=True,
                       text=True, timeout=30)
    assert p.returncode == 2 and "takes no command" in p.stderr
    # Filters as for list; --json gives list's objects.
    msgs, kb = parse_mailq(ctl(d, "mailq", "--held")[1])
    assert [m["id"] for m in msgs] == [dave["id"]]
    assert [m["id"] for m in ctl_json(d, "mailq", "--held")] == [dave["id"]]


def test_mailq_of_an_empty_queue(daemon):
    d = daemon()
    d.start()
    rc, out, err = ctl(d, "mailq")
    assert rc == 0 and out == "Mail queue is empty\n"
    assert parse_mailq(out) == ([], None)
    rc, out, err = ctl(d, "mailq", "extra")
    assert rc == 2 and "too many arguments" in err


def test_reload_reaches_the_daemon_after_control_socket_moved(daemon):
    """The file names a new socket that only the reload opens: mxspoolctl
    asks the daemon running that file where it listens (its locator), sends
    the reload there, and then finds it on the new socket."""
    d = daemon()
    d.start()
    old = os.path.join(d.dir, "ctl.sock")
    new = os.path.join(d.dir, "run", "new.sock")
    with open(d.conf) as f:
        text = f.read()
    with open(d.conf, "w") as f:
        f.write(text.replace(old, new))
    # Before the reload: found on the old socket, and told so.
    rc, out, err = ctl(d, "summary")
    assert rc == 0 and out == "The queue is empty.\n"
    assert err == "mxspoolctl: note: mxspoold answers on %s, not on %s as " \
        "%s says (mxspoolctl reload moves it)\n" % (old, new, d.conf)
    # A config path given another way names the same file.
    rc, out, err = run_ctl("-c", os.path.relpath(d.conf), "stats")
    assert rc == 0 and "mxspoold answers on %s" % old in err, err
    rc, out, err = ctl(d, "reload")
    assert rc == 0 and err == "", err
    assert out == "mxspoold: configuration reloaded from %s\n" \
        "applied: control_socket\n" \
        "mxspoold: control socket now %s (was %s)\n" % (d.conf, new, old)
    assert os.path.exists(new) and not os.path.exists(old)
    rc, out, err = ctl(d, "summary")
    assert rc == 0 and err == "" and out == "The queue is empty.\n"
    # -s means that socket and no other.
    rc, out, err = run_ctl("-s", old, "summary")
    assert rc == 1 and "nothing answers on %s" % old in err
    # Moved again, with a typo: the reload still reaches the daemon and
    # reports the error; nothing moves.
    with open(d.conf, "w") as f:
        f.write(text.replace(old, old + "2") + "bogus_option = 1\n")
    rc, out, err = ctl(d, "reload")
    assert rc == 1 and "reload refused" in err and "bogus_option" in err
    assert os.path.exists(new)
    # Once the daemon is gone, nothing answers anywhere.
    with open(d.conf, "w") as f:
        f.write(text.replace(old, new))
    d.stop()
    rc, out, err = ctl(d, "summary")
    assert rc == 1 and err == "mxspoolctl: mxspoold is not running " \
        "(nothing answers on %s)\n" % new


def test_a_locator_is_believed_only_for_the_process_it_names(daemon, tmp_path):
    """Whatever answers on a config's locator must be the process that
    listens on the socket it names."""
    import json
    import socket
    import threading
    d = daemon()                      # its config; no daemon runs it
    real = os.path.realpath(d.conf)
    fake = str(tmp_path / "fake.sock")
    srv = socket.socket(socket.AF_UNIX)
    srv.bind(fake)
    srv.listen(4)
    loc = socket.socket(socket.AF_UNIX)
    loc.bind("\0mxspoold:" + real)
    loc.listen(4)

    def serve(pid):
        c, _ = loc.accept()
        c.sendall(json.dumps({"control_socket": fake, "config": real,
                              "pid": pid}).encode() + b"\n")
        c.close()
    try:
        t = threading.Thread(target=serve, args=(1,))  # says: init's
        t.start()
        rc, out, err = ctl(d, "summary")
        t.join(5)
        assert rc == 1 and "mxspoold is not running" in err, err
    finally:
        loc.close()
        srv.close()
