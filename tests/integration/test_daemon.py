"""The daemon skeleton: greeting, QUIT, shutdown, config check, startup
errors."""

import os
import signal
import smtplib
import socket
import subprocess
import time

from conftest import MXSPOOLD, free_port


def test_greets_and_says_bye_to_quit(daemon):
    d = daemon().start()
    c = d.connect()
    assert c.reply() == ["220 mx.test.example ESMTP mxspool"]
    assert c.cmd("QUIT") == ["221 2.0.0 Bye"]
    assert c.closed()
    assert d.stop() == 0
    log = d.log()
    assert "connect from [127.0.0.1]:" in log
    assert "disconnect from [127.0.0.1]:" in log


def test_smtplib_can_connect_and_quit(daemon):
    d = daemon().start()
    s = smtplib.SMTP("127.0.0.1", d.port, timeout=10)
    code, msg = s.noop()
    assert code == 250
    s.quit()
    assert d.stop() == 0


def test_verbs_are_case_insensitive(daemon):
    d = daemon().start()
    c = d.connect()
    c.reply()
    assert c.cmd("quit") == ["221 2.0.0 Bye"]


def test_overlong_and_nul_commands_get_500(daemon):
    d = daemon().start()
    c = d.connect()
    c.reply()
    assert c.cmd("NOOP " + "x" * 600)[0].startswith("500 5.5.6")
    assert c.cmd("NO\0OP")[0].startswith("500 5.5.2")
    assert c.cmd("NOOP") == ["250 2.0.0 Ok"]


def test_sigterm_exits_zero_when_idle(daemon):
    d = daemon().start()
    assert d.stop(signal.SIGTERM) == 0
    assert "mxspoold stopped" in d.log()


def test_sigint_exits_zero(daemon):
    d = daemon().start()
    assert d.stop(signal.SIGINT) == 0


def test_sigterm_lets_an_open_session_finish(daemon):
    d = daemon(extra="shutdown_timeout = 10s\n").start()
    c = d.connect()
    c.reply()
    d.proc.send_signal(signal.SIGTERM)
    time.sleep(0.3)
    # No new connections once stopping...
    try:
        socket.create_connection(("127.0.0.1", d.port), 1).close()
        refused = False
    except OSError:
        refused = True
    assert refused
    # ...but the open session is still served.
    assert c.cmd("NOOP") == ["250 2.0.0 Ok"]
    assert c.cmd("QUIT") == ["221 2.0.0 Bye"]
    assert d.proc.wait(10) == 0


def test_sigterm_closes_a_stalled_session_after_the_deadline(daemon):
    d = daemon(extra="shutdown_timeout = 1s\n").start()
    c = d.connect()
    c.reply()
    t0 = time.monotonic()
    d.proc.send_signal(signal.SIGTERM)
    assert c.reply()[0].startswith("421 4.3.2")
    assert c.closed()
    assert d.proc.wait(10) == 0
    assert 0.8 < time.monotonic() - t0 < 8


def test_listens_on_several_addresses_ipv4_and_ipv6(daemon, tmp_path):
    p4, p6 = free_port(), free_port(socket.AF_INET6, "::1")
    d = daemon(listen=["127.0.0.1:%d" % p4, "[::1]:%d" % p6])
    d.port = p4
    d.start()
    s = socket.create_connection(("::1", p6), 5)
    assert s.recv(100).startswith(b"220 ")
    s.close()
    assert d.stop() == 0


def test_check_accepts_the_development_config():
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    r = subprocess.run([MXSPOOLD, "-t", "-c", os.path.join(root, "etc/mxspool-dev.conf")],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert r.stderr == ""


def test_check_rejects_broken_config_with_line_numbers(tmp_path):
    conf = tmp_path / "broken.conf"
    conf.write_text('# a comment\n'
                    'relay_domains = {"example.com"}\n'
                    '\n'
                    'listen = {"127.0.0.1:99999"}\n'
                    'shutdown_timeout = soon\n')
    r = subprocess.run([MXSPOOLD, "-t", "-c", str(conf)], capture_output=True, text=True)
    assert r.returncode == 1
    assert r.stderr.splitlines() == [
        "%s:4: listen: bad address '127.0.0.1:99999' (use 127.0.0.1:25 or [::1]:25)" % conf,
        "%s:5: shutdown_timeout: bad duration 'soon' (use e.g. 30s, 5m, 4h, 5d)" % conf,
    ]


def test_check_rejects_unknown_option(tmp_path):
    conf = tmp_path / "unknown.conf"
    conf.write_text('relay_domains = {"example.com"}\nrelay_domain = "x"\n')
    r = subprocess.run([MXSPOOLD, "-t", "-c", str(conf)], capture_output=True, text=True)
    assert r.returncode == 1
    assert r.stderr == ("%s:2: unknown option 'relay_domain' (did you mean "
                        "'relay_domains'?)\n" % conf)
    conf.write_text('relay_domains = {"example.com"}\nfrobnicate = 1\n')
    r = subprocess.run([MXSPOOLD, "-t", "-c", str(conf)], capture_output=True, text=True)
    assert (r.returncode, r.stderr) == (1, "%s:2: unknown option 'frobnicate'\n" % conf)


def check(conf, text):
    """-t on text written to conf: (exit status, stdout, stderr)."""
    conf.write_text(text)
    r = subprocess.run([MXSPOOLD, "-t", "-c", str(conf)], capture_output=True,
                       text=True)
    return r.returncode, r.stdout, r.stderr


def test_check_rejects_an_option_given_twice_at_the_second(tmp_path):
    # Before: the second line replaced the first without a word, and mail
    # for example.com got 554 Relay access denied.
    conf = tmp_path / "twice.conf"
    rc, out, err = check(conf, 'relay_domains = {"example.com"}\n'
                               'hostname = "mx.example.net"\n'
                               'relay_domains = {"example.org"}\n')
    assert (rc, out) == (1, "")
    assert err == ('%s:3: relay_domains: given twice (first at line 1); a list '
                   'is written once: relay_domains = {"a", "b"}\n' % conf)
    rc, out, err = check(conf, 'relay_domains = {"example.com"}\n'
                               'retry {\n max_age = 5d\n max_age = 6d\n}\n')
    assert (rc, err) == (1, "%s:4: max_age: given twice (first at line 3)\n"
                         % conf)


def test_check_refuses_settings_that_contradict_each_other(tmp_path):
    conf = tmp_path / "cross.conf"
    rc, out, err = check(conf, 'relay_domains = {"example.com", "*.example.org"}\n'
                               'domain "example.net" {\n route = "mx"\n}\n'
                               'retry {\n warn_after = 3d\n max_age = 2d\n}\n'
                               'dns_min_ttl = 2h\ndns_max_ttl = 1h\n')
    assert (rc, out) == (1, "")
    assert err.splitlines() == [
        "%s:1: relay_domains: '*.example.org' is a wildcard: write "
        "'.example.org' for the names below example.org" % conf]
    rc, out, err = check(conf, 'relay_domains = {"example.com", ".example.org"}\n'
                               'domain "example.net" {\n route = "mx"\n}\n'
                               'retry {\n warn_after = 3d\n max_age = 2d\n}\n'
                               'dns_min_ttl = 2h\ndns_max_ttl = 1h\n')
    assert (rc, out) == (1, "")
    assert err.splitlines() == [
        '%s:2: domain "example.net": not in relay_domains, so no mail for it '
        'is accepted and this section is never used' % conf,
        "%s:6: warn_after: 3d is not less than max_age (2d, line 7): the delay "
        "notice would never be sent" % conf,
        "%s:9: dns_min_ttl: 2h is more than dns_max_ttl (1h, line 10)" % conf]


def test_check_warns_of_a_host_name_that_is_not_fully_qualified(tmp_path):
    conf = tmp_path / "host.conf"
    rc, out, err = check(conf, 'relay_domains = {"example.com"}\n'
                               'hostname = "mx"\n')
    assert rc == 0
    assert out == "%s: ok (postmaster <postmaster@example.com>)\n" % conf
    assert err == ("%s:2: warning: hostname: 'mx' is not a fully qualified "
                   "domain name; the greeting and EHLO should give one (e.g. "
                   "'mx.example.net')\n" % conf)


def test_check_names_the_file_for_a_missing_required_option(tmp_path):
    conf = tmp_path / "empty.conf"
    rc, out, err = check(conf, 'hostname = "mx.example.net"\n\n')
    assert (rc, out) == (1, "")
    assert err == ("%s: relay_domains is required (the domains this backup "
                   "MX accepts mail for)\n" % conf)


def test_missing_config_is_one_clear_line(tmp_path):
    path = str(tmp_path / "nope.conf")
    for args in (["-t", "-c", path], ["-c", path]):
        r = subprocess.run([MXSPOOLD] + args, capture_output=True, text=True)
        assert r.returncode == 1
        assert r.stderr == "%s: cannot read: No such file or directory\n" % path


def test_help_prints_usage():
    r = subprocess.run([MXSPOOLD, "-h"], capture_output=True, text=True)
    assert r.returncode == 0
    assert r.stdout.startswith("usage: mxspoold")
    r = subprocess.run([MXSPOOLD, "-x"], capture_output=True, text=True)
    assert r.returncode == 2
    assert "usage: mxspoold" in r.stderr


def test_port_in_use_names_the_address(daemon):
    busy = socket.socket()
    busy.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    busy.bind(("127.0.0.1", 0))
    busy.listen(1)
    port = busy.getsockname()[1]
    d = daemon(listen=["127.0.0.1:%d" % port]).start(wait=False)
    assert d.proc.wait(10) == 1
    errors = [l for l in d.log().splitlines() if "fatal:" in l]
    assert len(errors) == 1
    assert errors[0].endswith("fatal: cannot listen on 127.0.0.1:%d: Address already in use" % port)
    busy.close()


def test_unusable_spool_dir_is_one_clear_line(daemon, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    d = daemon(extra="")
    with open(d.conf) as f:
        text = f.read().replace(d.spool, str(blocker / "spool"))
    with open(d.conf, "w") as f:
        f.write(text)
    d.start(wait=False)
    assert d.proc.wait(10) == 1
    errors = [l for l in d.log().splitlines() if "fatal:" in l]
    assert len(errors) == 1
    assert "spool directory %s/spool: cannot create: Not a directory" % blocker in errors[0]
