"""mxspoolctl and the control socket against a running mxspoold holding mail
in several states: a destination backing off (connection refused), one that
answers 451 (deferred with an error), and held mail. Both output forms,
and every error with its exit code."""

import json
import os
import smtplib
import socket
import stat
import subprocess
import time

import pytest

from conftest import BUILD, MXSPOOLD, free_port, need, wait_for

MXSPOOLCTL = os.path.join(BUILD, "mxspoolctl")
QID_CHARS = set("0123456789ABCDEFGHJKMNPQRSTVWXYZ")


def ctl(d, *args, timeout=30):
    """Runs mxspoolctl against d; returns (exit status, stdout, stderr)."""
    p = subprocess.run([MXSPOOLCTL, "-c", d.conf] + list(args),
                       capture_output=True, timeout=timeout)
    return p.returncode, p.stdout.decode("utf-8", "replace"), \
        p.stderr.decode("utf-8", "replace")


def ctl_json(d, *args):
    rc, out, err = ctl(d, "--json", *args)
    assert rc == 0, (rc, out, err)
    return [json.loads(line) for line in out.splitlines() if line]


def send(d, sender, rcpts, body):
    with smtplib.SMTP("127.0.0.1", d.port, timeout=10) as s:
        s.sendmail(sender, rcpts, body)




def dest(summary, name):
    for x in summary["destinations"]:
        if x["name"] == name:
            return x
    return None


def raw_request(d, *lines, read=1):
    """Sends raw lines on the control socket; returns `read` reply objects."""
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(10)
    s.connect(os.path.join(d.dir, "ctl.sock"))
    f = s.makefile("rwb")
    for line in lines:
        f.write(line if isinstance(line, bytes) else line.encode())
    f.flush()
    out = [json.loads(f.readline()) for _ in range(read)]
    s.close()
    return out


@pytest.fixture
def outage(daemon, tmp_path):
    """A daemon with mail for three destinations in three states."""
    from backend import Backend

    dead = free_port()
    b = Backend(str(tmp_path), eod={"*": "451 4.3.0 store is busy"}).start()
    d = daemon(relay_domains=("example.com", "example.org", "example.net"),
               extra='metrics_listen = ""\n'
                     'retry { initial = 1h }\n'
                     'domain "example.com" { route = "smtp:[127.0.0.1]:%d" }\n'
                     'domain "example.org" { route = "smtp:[127.0.0.1]:%d" }\n'
                     'domain "example.net" { route = "smtp:[127.0.0.1]:%d" }\n'
                     % (dead, b.port, dead))
    d.start()
    d.dead = "smtp:[127.0.0.1]:%d" % dead
    d.busy = "smtp:[127.0.0.1]:%d" % b.port
    send(d, "alice@sender.test", ["u1@example.com", "u2@example.com"],
         b"Subject: one\r\n\r\nfirst\r\n")
    send(d, "bob@sender.test", ["u3@example.com"],
         b"Subject: two\r\nX-Eight: \xe9t\xe9\r\n\r\nbody \xff\xfe\r\n")
    send(d, "carol@sender.test", ["v1@example.org"],
         b"Subject: three\r\n\r\nthird\r\n")
    send(d, "dave@sender.test", ["w1@example.net"],
         b"Subject: four\r\n\r\nfourth\r\n")
    msgs = {m["sender"]: m for m in ctl_json(d, "list")}
    assert len(msgs) == 4
    rc, out, err = ctl(d, "hold", msgs["dave@sender.test"]["id"])
    assert rc == 0, err

    def settled():
        s = ctl_json(d, "summary")[0]
        a, o = dest(s, d.dead), dest(s, d.busy)
        return (a and a["state"] == "backing off" and a["last_error"]
                and o and o["last_error"]) and s
    wait_for(settled, what="deliveries to fail")
    d.msgs = msgs
    yield d
    b.stop()


def test_summary_shows_each_destination_with_state_and_error(outage):
    d = outage
    # A refusing destination is probed every second: a summary taken
    # during a probe says "probing"; the one checked is between probes.
    s = wait_for(lambda: (lambda s: dest(s, d.dead)["state"] == "backing off"
                          and s)(ctl_json(d, "summary")[0]),
                 what="a summary between probes")
    dead = dest(s, d.dead)
    assert dead["messages"] == 3 and dead["held"] == 1
    assert "refused" in dead["last_error"].lower()
    assert dead["next_attempt"] >= s["now"]
    busy = dest(s, d.busy)
    assert busy["messages"] == 1
    assert "451" in busy["last_error"] or "busy" in busy["last_error"]
    assert s["total"]["messages"] == 4
    assert s["total"]["bytes"] == sum(x["size"] for x in d.msgs.values())
    def table():
        rc, out, err = ctl(d, "summary")
        assert rc == 0 and err == ""
        row = [l for l in out.splitlines() if l.startswith(d.dead)][0]
        return "backing off" in row and out
    out = wait_for(table, what="a table between probes")
    lines = out.splitlines()
    assert lines[0].split()[:4] == ["DESTINATION", "MSGS", "HELD", "SIZE"]
    row = [l for l in lines if l.startswith(d.dead)][0]
    assert ("in " in row or " now " in row) and "refused" in row
    assert lines[-1].startswith("4 messages")


def test_summary_of_held_mail_alone_says_held(outage):
    d = outage
    # Hold everything for the destination that answers 451.
    rc, out, err = ctl(d, "hold", "--domain", "example.org")
    assert rc == 0 and "held 1 message" in out
    s = ctl_json(d, "summary")[0]
    assert dest(s, d.busy)["state"] == "held"
    assert dest(s, d.busy)["next_attempt"] is None


def test_summary_ages_puts_new_mail_in_the_first_bucket(outage):
    s = ctl_json(outage, "summary", "--ages")[0]
    assert s["age_buckets"] == ["5m", "10m", "20m", "40m", "80m", "160m",
                                "320m", "640m", "1280m", "1280m+"]
    assert s["total"]["ages"] == [4, 0, 0, 0, 0, 0, 0, 0, 0, 0]
    rc, out, err = ctl(outage, "summary", "--ages")
    assert rc == 0
    head, total = out.splitlines()[:2]
    assert head.split()[-1] == "1280m+"
    assert total.split()[:3] == ["TOTAL", "4", "4"]


def test_list_shows_recipients_states_and_errors(outage):
    d = outage
    items = ctl_json(d, "list")
    assert [m["sender"] for m in items] == ["alice@sender.test",
                                            "bob@sender.test",
                                            "carol@sender.test",
                                            "dave@sender.test"]
    alice = items[0]
    assert set(alice["id"]) <= QID_CHARS and len(alice["id"]) == 12
    assert [r["address"] for r in alice["recipients"]] == [
        "u1@example.com", "u2@example.com"]
    assert all(r["state"] == "pending" for r in alice["recipients"])
    assert items[3]["held"] is True and items[0]["held"] is False
    rc, out, err = ctl(d, "list")
    assert rc == 0
    assert out.splitlines()[0].startswith("QUEUE ID")
    assert "(held)" in [l for l in out.splitlines() if "dave@" in l][0]
    assert "u1@example.com" in out and out.splitlines()[-1] == "4 messages"


def test_list_filters_by_domain_held_limit_and_age(outage):
    d = outage
    got = lambda *a: [m["sender"] for m in ctl_json(d, "list", *a)]
    assert got("--domain", "example.org") == ["carol@sender.test"]
    assert got("--domain", d.dead) == ["alice@sender.test", "bob@sender.test",
                                       "dave@sender.test"]
    assert got("--held") == ["dave@sender.test"]
    assert got("--limit", "2") == ["alice@sender.test", "bob@sender.test"]
    assert got("--older-than", "1h") == []
    assert len(got("--older-than", "0s")) == 4
    rc, out, err = ctl(d, "list", "--domain", "nowhere.test")
    assert rc == 0 and out.strip() == "No messages match."
    for bad in (["--limit", "0"], ["--older-than", "soon"], ["--bogus"]):
        rc, out, err = ctl(d, "list", *bad)
        assert rc == 2 and "mxspoolctl: list:" in err, bad


def test_show_gives_envelope_headers_and_exact_body(outage):
    d = outage
    bob = d.msgs["bob@sender.test"]["id"]
    env = ctl_json(d, "show", bob)[0]
    assert env["id"] == bob and env["sender"] == "bob@sender.test"
    assert env["recipients"][0]["destination"] == d.dead
    rc, out, err = ctl(d, "show", bob)
    assert rc == 0 and "sender:       <bob@sender.test>" in out
    assert "recipient:    <u3@example.com> pending via " + d.dead in out
    p = subprocess.run([MXSPOOLCTL, "-c", d.conf, "show", bob, "--body"],
                       capture_output=True, timeout=30)
    assert p.returncode == 0
    assert p.stdout.endswith(b"X-Eight: \xe9t\xe9\r\n\r\nbody \xff\xfe\r\n")
    assert p.stdout.startswith(b"Received: ")
    p = subprocess.run([MXSPOOLCTL, "-c", d.conf, "show", "--headers", bob],
                       capture_output=True, timeout=30)
    assert p.returncode == 0 and b"Subject: two\r\n" in p.stdout
    assert b"body" not in p.stdout
    chunks = ctl_json(d, "show", bob, "--body")
    assert chunks[0]["encoding"] == "base64"  # the body is not UTF-8
    assert chunks[-1]["bytes"] == d.msgs["bob@sender.test"]["size"]
    rc, out, err = ctl(d, "show", bob, "--headers", "--body")
    assert rc == 2


def test_show_carries_any_octet_of_the_message(outage):
    """NUL is valid UTF-8 but no JSON text holds it: such a part goes as
    base64, and the CLI writes the bytes back exactly."""
    d = outage
    data = b"Subject: nul\x00here\r\nX-Ok: yes\r\n\r\nbefore\x00after\r\n\x00\r\n"
    send(d, "erin@sender.test", ["u9@example.com"], data)
    erin = [m["id"] for m in ctl_json(d, "list")
            if m["sender"] == "erin@sender.test"][0]
    p = subprocess.run([MXSPOOLCTL, "-c", d.conf, "show", erin, "--body"],
                       capture_output=True, timeout=30)
    assert p.returncode == 0, p.stderr
    assert p.stdout.endswith(data)
    p = subprocess.run([MXSPOOLCTL, "-c", d.conf, "show", erin, "--headers"],
                       capture_output=True, timeout=30)
    assert p.returncode == 0, p.stderr
    assert b"Subject: nul\x00here\r\nX-Ok: yes\r\n" in p.stdout, p.stdout
    chunks = ctl_json(d, "show", erin, "--body")
    assert {c.get("encoding") for c in chunks[:-1]} == {"base64"}


def test_flush_probes_a_backing_off_destination_at_once(outage):
    d = outage
    before = dest(ctl_json(d, "summary")[0], d.dead)
    rc, out, err = ctl(d, "flush", "--domain", d.dead)
    assert rc == 0, err
    # The probe fails again at once (nothing listens): a new failure.
    wait_for(lambda: "%s: probing" % d.dead in d.log()
             or d.log().count("Connection refused") > 1, what="a probe")
    rc, out, err = ctl(d, "--json", "flush", "--all")
    assert rc == 0 and "flushed" in json.loads(out)
    alice = d.msgs["alice@sender.test"]["id"]
    rc, out, err = ctl(d, "flush", alice)
    assert rc == 0 and "flushed 1 message" in out
    dave = d.msgs["dave@sender.test"]["id"]
    rc, out, err = ctl(d, "flush", dave)
    assert rc == 0 and "held message" in out
    assert before["messages"] == 3


def test_hold_and_release_by_id_and_domain(outage):
    d = outage
    carol = d.msgs["carol@sender.test"]["id"]
    rc, out, err = ctl(d, "hold", carol)
    assert rc == 0 and out.strip() == "held 1 message"
    assert [m["id"] for m in ctl_json(d, "list", "--held")] == [
        carol, d.msgs["dave@sender.test"]["id"]]
    rc, out, err = ctl(d, "hold", carol)  # already held: nothing to do
    assert rc == 0 and out.strip() == "held 0 messages"
    assert ctl_json(d, "release", "--domain", "example.org") == [
        {"released": 1}]
    assert ctl_json(d, "release", "--domain", "example.net") == [
        {"released": 1}]
    assert ctl_json(d, "list", "--held") == []


def test_delete_needs_yes_and_removes_the_message(outage):
    d = outage
    carol = d.msgs["carol@sender.test"]["id"]
    rc, out, err = ctl(d, "delete", carol)
    assert rc == 2 and "add --yes" in err
    assert len(ctl_json(d, "list")) == 4
    rc, out, err = ctl(d, "delete", carol, "--yes")
    assert rc == 0 and out.strip() == "deleted 1 message"
    assert carol not in [m["id"] for m in ctl_json(d, "list")]
    rc, out, err = ctl(d, "show", carol)
    assert rc == 1 and "no message" in err


def test_bounce_needs_yes_and_ids(outage):
    d = outage
    alice = d.msgs["alice@sender.test"]["id"]
    rc, out, err = ctl(d, "bounce", alice)
    assert rc == 2 and "add --yes" in err
    rc, out, err = ctl(d, "bounce", "--yes")
    assert rc == 2
    rc, out, err = ctl(d, "bounce", alice, "--yes")
    assert rc == 0 and out.strip() == "bounced 1 message"
    # Gone, replaced by a notification from <> to its sender.
    wait_for(lambda: alice not in [m["id"] for m in ctl_json(d, "list")],
             what="the bounced message to leave")
    notices = [m for m in ctl_json(d, "list") if m["sender"] == ""]
    assert len(notices) == 1
    assert [r["address"] for r in notices[0]["recipients"]] == ["alice@sender.test"]
    assert "returned to sender by the operator" in d.log()
    rc, out, err = ctl(d, "bounce", "0000000000AA", "--yes")
    assert rc == 1


def test_route_shows_the_static_route(outage):
    d = outage
    r = ctl_json(d, "route", "example.com")[0]
    assert r["route"] == d.dead and r["status"] == "ok"
    assert r["relay_domain"] is True
    assert r["candidates"][0]["addresses"] == ["127.0.0.1"]
    rc, out, err = ctl(d, "route", "example.com")
    assert rc == 0 and "route: " + d.dead in out and "127.0.0.1" in out
    rc, out, err = ctl(d, "route", "bad..domain")
    assert rc == 2 and "bad domain" in err
    rc, out, err = ctl(d, "route")
    assert rc == 2 and "missing argument" in err


def test_stats_counts_accepted_mail_and_spool_size(outage):
    d = outage
    s = ctl_json(d, "stats")[0]
    assert s["accepted"] == 4
    assert s["spool"]["messages"] == 4
    assert s["commit"]["count"] >= 4 and s["commit"]["p50"] > 0
    assert s["connections"] >= 4
    with smtplib.SMTP("127.0.0.1", d.port, timeout=10) as c:
        c.ehlo()
        c.mail("x@sender.test")
        assert c.rcpt("u@elsewhere.test")[0] == 554
    assert ctl_json(d, "stats")[0]["rejected"] == {"relay": 1}
    rc, out, err = ctl(d, "stats")
    assert rc == 0
    assert "accepted         4" in out and "rejected         relay=1" in out
    assert "commit latency   p50" in out
    # From the counters, with the window beside them.
    spool = ctl_json(d, "stats")[0]["spool"]
    assert 0 <= spool["held"] <= 4 and 0 <= spool["in_memory"] <= 4
    assert "spool            4 messages (%d held), " % spool["held"] in out
    assert " in memory" in out


def test_wrong_ids_and_domains_fail_with_exit_1(outage):
    d = outage
    for args, msg in ((["show", "0000000000AB"], "no message 0000000000AB"),
                      (["flush", "0000000000AB"], "no message"),
                      (["hold", "--domain", "nowhere.test"],
                       "no mail queued for nowhere.test"),
                      (["release", "0000000000AB"], "no message"),
                      (["flush", "--domain", "nowhere.test"], "no mail")):
        rc, out, err = ctl(d, *args)
        assert rc == 1, args
        assert err.startswith("mxspoolctl: ") and msg in err, (args, err)
        assert len(err.splitlines()) == 1
    rc, out, err = ctl(d, "--json", "show", "0000000000AB")
    assert rc == 1 and json.loads(out)["error"]["code"] == "not_found"


def test_usage_errors_exit_2(outage):
    d = outage
    for args in (["frobnicate"], ["show"], ["show", "lowercase!"],
                 ["flush"], ["flush", "--all", "--domain", "example.com"],
                 ["hold", "--sender", "a@b.test"], ["summary", "extra"], []):
        rc, out, err = ctl(d, *args)
        assert rc == 2, (args, rc, err)
        assert "mxspoolctl" in err and out == ""


def test_a_daemon_that_is_not_running_gets_one_clear_line(outage):
    d = outage
    d.stop()
    rc, out, err = ctl(d, "summary")
    assert rc == 1 and out == ""
    assert err == "mxspoolctl: mxspoold is not running (nothing answers on " \
        "%s)\n" % os.path.join(d.dir, "ctl.sock")
    rc, out, err = ctl(d, "--json", "stats")
    assert rc == 1 and "not running" in err


def test_malformed_requests_get_error_replies_and_the_daemon_goes_on(outage):
    d = outage
    replies = raw_request(d, "garbage\n", "[1, 2]\n", '{"id": 5}\n',
                          '{"id": [1], "cmd": "stats"}\n',
                          '{"id": 6, "cmd": "nope"}\n',
                          '{"id": 7, "cmd": "list", "limit": "x"}\n',
                          '{"id": 8, "cmd": "show", "qid": 5}\n',
                          '{"id": "s", "cmd": "hold", "ids": ["short"]}\n',
                          '{"id": 9, "cmd": "flush", "ids": ["0000000000AB"],'
                          ' "domain": "example.com"}\n',
                          '{"id": 10, "cmd": "delete", "ids": []}\n',
                          '{"id": 11, "cmd": "stats"}\n', read=11)
    codes = [r.get("error", {}).get("code") for r in replies]
    assert codes == ["parse_error", "parse_error", "bad_request",
                     "bad_request", "unknown_command", "bad_request",
                     "bad_request", "bad_request", "bad_request",
                     "confirm_required", None]
    assert [r["id"] for r in replies[4:]] == [6, 7, 8, "s", 9, 10, 11]
    assert replies[-1]["result"]["accepted"] == 4
    # A line longer than the limit: an error, then the connection closes.
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(10)
    s.connect(os.path.join(d.dir, "ctl.sock"))
    try:
        s.sendall(b"x" * (200 * 1024))
    except OSError:
        pass
    f = s.makefile("rb")
    reply = json.loads(f.readline())
    assert reply["error"]["code"] == "parse_error"
    try:
        assert f.readline() == b""
    except ConnectionResetError:  # closed with our excess bytes unread
        pass
    s.close()
    assert ctl_json(d, "stats")[0]["spool"]["messages"] == 4
    assert d.proc.poll() is None


def test_a_request_that_is_not_utf8_gets_an_error_that_is(outage):
    """jansson's parse error quotes the request ("near '...'"): bytes
    that are not UTF-8 there made the error unencodable, and the reply
    was {"id": null} alone. Found by tests/fuzz/fuzz_ctl.c."""
    d = outage
    replies = raw_request(d, b'{"cmd":"show","qid":"0BV2\\\xc8\x85\x00c"}\n',
                          b'{"id": 2, "cmd": "show", "qid": "\xff\xfe"}\n',
                          b'{"id": 3, "cmd": "stats"}\n', read=3)
    assert [r["id"] for r in replies] == [None, None, 3]
    for r in replies[:2]:
        assert r["error"]["code"] == "parse_error"
        assert r["error"]["message"].startswith("not JSON: ")
    assert replies[2]["result"]["spool"]["messages"] == 4
    assert d.proc.poll() is None


def test_a_client_that_leaves_mid_request_does_no_harm(outage):
    d = outage
    for cmd in ('{"id": 1, "cmd": "list"}\n',
                '{"id": 1, "cmd": "route", "domain": "example.com"}\n',
                '{"id": 1, "cmd": "show", "qid": "%s", "part": "body"}\n'
                % d.msgs["alice@sender.test"]["id"]):
        s = socket.socket(socket.AF_UNIX)
        s.connect(os.path.join(d.dir, "ctl.sock"))
        s.sendall(cmd.encode())
        s.close()
    time.sleep(0.3)
    assert len(ctl_json(d, "list")) == 4
    assert d.proc.poll() is None


def test_a_client_that_half_closes_gets_every_reply(outage):
    """A client may shut its sending side once its requests are out (a
    shell's pipe into socat does): each request is still answered, in
    order, and then the daemon closes. Found by tests/fuzz/fuzz_ctl.c:
    the daemon took the EOF for a client that had gone, and dropped the
    replies still to come."""
    d = outage
    qid = d.msgs["alice@sender.test"]["id"]
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(10)
    s.connect(os.path.join(d.dir, "ctl.sock"))
    s.sendall(b'{"id": 1, "cmd": "stats"}\n'
              b'{"id": 2, "cmd": "list"}\n'
              b'{"id": 3, "cmd": "show", "qid": "%s", "part": "body"}\n'
              b'{"id": 4, "cmd": "summary"}\n' % qid.encode())
    s.shutdown(socket.SHUT_WR)
    replies = [json.loads(line) for line in s.makefile("rb")]
    s.close()
    ends = [r["id"] for r in replies if "result" in r or "error" in r]
    assert ends == [1, 2, 3, 4]
    assert len([r for r in replies if "item" in r]) == 4
    assert "first" in "".join(r["chunk"]["data"] for r in replies
                              if "chunk" in r)
    assert d.proc.poll() is None


def test_socket_is_mode_0660(outage):
    st = os.stat(os.path.join(outage.dir, "ctl.sock"))
    assert stat.S_ISSOCK(st.st_mode)
    assert stat.S_IMODE(st.st_mode) == 0o660


def test_a_large_listing_streams_to_a_slow_reader(daemon):
    d = daemon(extra='metrics_listen = ""\n'
                     'domain "example.com" { route = "smtp:[127.0.0.1]:%d" }\n'
                     'retry { initial = 1h }\n' % free_port())
    d.start()
    n = 300
    with smtplib.SMTP("127.0.0.1", d.port, timeout=10) as s:
        for i in range(n):
            s.sendmail("s%d@sender.test" % i,
                       ["user%d@example.com" % i] * 1,
                       b"Subject: %d\r\n\r\n" % i + b"x" * 2000 + b"\r\n")
    sock = socket.socket(socket.AF_UNIX)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.settimeout(10)
    sock.connect(os.path.join(d.dir, "ctl.sock"))
    sock.sendall(b'{"id": 1, "cmd": "list"}\n{"id": 2, "cmd": "stats"}\n')
    time.sleep(0.5)  # the daemon fills the socket and waits, not blocks
    with smtplib.SMTP("127.0.0.1", d.port, timeout=5) as s:
        assert s.noop()[0] == 250
    f = sock.makefile("rb")
    items = []
    while True:
        o = json.loads(f.readline())
        assert o["id"] == 1
        if "result" in o:
            break
        items.append(o["item"]["sender"])
    assert o["result"]["count"] == n
    assert items == ["s%d@sender.test" % i for i in range(n)]
    assert json.loads(f.readline())["id"] == 2
    sock.close()


# The daemon's libraries mxspoolctl must not load (DESIGN.md: the CLI links
# the control protocol and common/ only).
DAEMON_ONLY = ("librocksdb", "libcares", "libevent", "libssl", "libcrypto",
               "libsystemd")


def shared_libraries(program):
    """The names of the shared libraries program loads, as ldd lists them."""
    r = subprocess.run([need("ldd", "libc-bin"), program],
                       capture_output=True, text=True, check=True)
    return [line.split()[0] for line in r.stdout.splitlines() if line.strip()]


def test_mxspoolctl_links_none_of_the_daemons_libraries():
    libs = shared_libraries(MXSPOOLCTL)
    assert [l for l in libs if l.startswith(DAEMON_ONLY)] == [], libs
    # What it does load: the config and the protocol's JSON.
    assert any(l.startswith("libconfuse") for l in libs), libs
    assert any(l.startswith("libjansson") for l in libs), libs
    # The check can fail: the daemon loads every one of them.
    daemon = shared_libraries(MXSPOOLD)
    for name in DAEMON_ONLY:
        assert any(l.startswith(name) for l in daemon), (name, daemon)
