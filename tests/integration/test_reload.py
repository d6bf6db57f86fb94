"""Reload (SIGHUP or mxspoolctl reload): a valid config takes effect for new
sessions without dropping open ones or queued mail; an invalid one is
refused with its errors, and the old one stays in force."""

import os
import signal
import smtplib
import subprocess
import time
import urllib.request

from conftest import BUILD, free_port

MXSPOOLCTL = os.path.join(BUILD, "mxspoolctl")


def ctl(d, *args):
    p = subprocess.run([MXSPOOLCTL, "-c", d.conf] + list(args),
                       capture_output=True, timeout=30)
    return p.returncode, p.stdout.decode(), p.stderr.decode()


def rcpt_code(d, rcpt, client=None):
    if client is None:
        with smtplib.SMTP("127.0.0.1", d.port, timeout=10) as s:
            return rcpt_code(d, rcpt, s)
    client.ehlo_or_helo_if_needed()
    client.rset()
    client.mail("x@sender.test")
    return client.rcpt(rcpt)[0]


def rewrite(d, old, new):
    with open(d.conf) as f:
        text = f.read()
    assert old in text
    with open(d.conf, "w") as f:
        f.write(text.replace(old, new))


def wait_log(d, text, timeout=10):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if text in d.log():
            return
        time.sleep(0.05)
    raise AssertionError("no %r in the log:\n%s" % (text, d.log()))


def make(daemon):
    d = daemon(extra='metrics_listen = ""\n'
                     'domain "example.com" { route = "smtp:[127.0.0.1]:%d" }\n'
                     'retry { initial = 1h }\n' % free_port())
    return d.start()


def test_a_valid_config_takes_effect_without_dropping_sessions_or_mail(daemon):
    d = make(daemon)
    with smtplib.SMTP("127.0.0.1", d.port, timeout=10) as s:
        s.sendmail("a@sender.test", ["u@example.com"], b"Subject: x\r\n\r\nx\r\n")
    assert rcpt_code(d, "u@example.net") == 554
    open_session = smtplib.SMTP("127.0.0.1", d.port, timeout=10)
    open_session.ehlo()
    rewrite(d, 'relay_domains = {"example.com"}',
            'relay_domains = {"example.com", "example.net"}')
    rc, out, err = ctl(d, "reload")
    assert rc == 0 and "configuration reloaded" in out, err
    assert rcpt_code(d, "u@example.net") == 250
    # The session opened before the reload goes on, under the new rules.
    assert rcpt_code(d, "u@example.net", open_session) == 250
    open_session.quit()
    rc, out, err = ctl(d, "list")
    assert rc == 0 and "u@example.com" in out
    assert "reload: " in d.log()


def test_an_invalid_config_is_refused_and_the_old_one_stays(daemon):
    d = make(daemon)
    rewrite(d, 'relay_domains = {"example.com"}',
            'relay_domains = {"example.com", "bad..domain"}\n'
            'shutdown_timeout = soon')
    rc, out, err = ctl(d, "reload")
    assert rc == 1 and out == ""
    assert "reload refused; the running configuration stays" in err
    assert "mxspool.conf:" in err and "bad domain name 'bad..domain'" in err
    assert "bad duration 'soon'" in err
    assert "reload refused: " in d.log()
    assert rcpt_code(d, "u@example.com") == 250
    rc, out, err = ctl(d, "--json", "stats")
    assert rc == 0 and '"failed":1' in out


def test_sighup_reloads_and_turns_metrics_on(daemon):
    d = make(daemon)
    port = free_port()
    rewrite(d, 'metrics_listen = ""', 'metrics_listen = "127.0.0.1:%d"' % port)
    d.proc.send_signal(signal.SIGHUP)
    wait_log(d, "metrics on http://127.0.0.1:%d/metrics" % port)
    with urllib.request.urlopen("http://127.0.0.1:%d/healthz" % port,
                                timeout=5) as r:
        assert r.read() == b"ok\n"
    # A broken file on SIGHUP: logged, refused, the daemon goes on.
    with open(d.conf, "a") as f:
        f.write("no_such_option = 1\n")
    d.proc.send_signal(signal.SIGHUP)
    wait_log(d, "reload refused")
    assert d.proc.poll() is None
    assert rcpt_code(d, "u@example.com") == 250


def test_reload_adds_and_removes_listeners_without_touching_kept_ones(daemon):
    d = make(daemon)
    extra_port = free_port()
    kept = smtplib.SMTP("127.0.0.1", d.port, timeout=10)
    kept.noop()
    rewrite(d, 'listen = {"127.0.0.1:%d"}' % d.port,
            'listen = {"127.0.0.1:%d", "127.0.0.1:%d"}' % (d.port, extra_port))
    rc, out, err = ctl(d, "reload")
    assert rc == 0, err
    with smtplib.SMTP("127.0.0.1", extra_port, timeout=10) as s:
        assert s.noop()[0] == 250
    assert kept.noop()[0] == 250          # the open session was not dropped
    assert out.splitlines()[1:] == ["applied: listen"]
    wait_log(d, "reload: listen: now listening on 127.0.0.1:%d" % extra_port)
    # Drop the first address: it stops accepting; the new one goes on.
    rewrite(d, 'listen = {"127.0.0.1:%d", "127.0.0.1:%d"}' % (d.port, extra_port),
            'listen = {"127.0.0.1:%d"}' % extra_port)
    rc, out, err = ctl(d, "reload")
    assert rc == 0, err
    try:
        smtplib.SMTP("127.0.0.1", d.port, timeout=3)
        refused = False
    except OSError:
        refused = True
    assert refused
    wait_log(d, "reload: listen: no longer listening on 127.0.0.1:%d" % d.port)
    assert kept.noop()[0] == 250
    kept.quit()
    with smtplib.SMTP("127.0.0.1", extra_port, timeout=10) as s:
        assert s.noop()[0] == 250


def test_reload_with_an_address_in_use_is_refused_and_changes_nothing(daemon):
    import socket
    d = make(daemon)
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen(1)
    port = busy.getsockname()[1]
    rewrite(d, 'listen = {"127.0.0.1:%d"}' % d.port,
            'listen = {"127.0.0.1:%d", "127.0.0.1:%d"}' % (d.port, port))
    rc, out, err = ctl(d, "reload")
    assert rc == 1
    assert "cannot listen on 127.0.0.1:%d: Address already in use" % port in err
    with smtplib.SMTP("127.0.0.1", d.port, timeout=10) as s:
        assert s.noop()[0] == 250
    busy.close()


# --------------------------------------------------------------------------
# Reload tells the truth (issue 15, point 4): each option that changed is
# applied, or said to take effect at the next start, in the log and in
# mxspoolctl reload's answer; the config's warnings are in both too.

def reload_lines(d):
    """mxspoolctl reload: its exit status, stdout lines and stderr."""
    rc, out, err = ctl(d, "reload")
    return rc, out.splitlines(), err


def send(d, rcpt="u@example.com"):
    with smtplib.SMTP("127.0.0.1", d.port, timeout=10) as s:
        s.sendmail("a@sender.test", [rcpt], b"Subject: x\r\n\r\nx\r\n")


def test_a_higher_spool_min_free_refuses_mail_after_reload(daemon):
    # Before: applied, but neither the log nor the answer said so.
    d = make(daemon)
    send(d)
    rewrite(d, "retry { initial = 1h }\n",
            "retry { initial = 1h }\nspool_min_free = 1024T\n")
    rc, out, err = reload_lines(d)
    assert rc == 0, err
    assert out[1:] == ["applied: spool_min_free"]
    assert log_lines_with(d, "reload: spool_min_free changed: applied")
    try:
        send(d)
        code = 250
    except smtplib.SMTPDataError as e:
        code = e.smtp_code
    assert code == 452
    # And back: mail is taken again.
    rewrite(d, "spool_min_free = 1024T\n", "")
    rc, out, err = reload_lines(d)
    assert rc == 0 and out[1:] == ["applied: spool_min_free"], (out, err)
    send(d)


def log_lines_with(d, text):
    return [l for l in d.log().splitlines() if text in l]


def test_log_level_and_log_are_applied_on_reload(daemon):
    d = daemon(extra='metrics_listen = ""\nlog_level = "info"\n').start()
    send(d)
    assert "debug:" not in d.log()
    rewrite(d, 'log_level = "info"', 'log_level = "debug"')
    rc, out, err = reload_lines(d)
    assert rc == 0 and out[1:] == ["applied: log_level"], (out, err)
    assert log_lines_with(d, "reload: log_level changed: applied")
    n = len(log_lines_with(d, "debug: "))
    send(d)
    assert len(log_lines_with(d, "debug: ")) > n
    # log = "syslog": nothing more on stderr, until it is back.
    rewrite(d, 'log_level = "debug"', 'log_level = "debug"\nlog = "syslog"')
    rc, out, err = reload_lines(d)
    assert rc == 0 and out[1:] == ["applied: log"], (out, err)
    n = len(d.log().splitlines())
    send(d)
    assert len(d.log().splitlines()) == n
    rewrite(d, 'log = "syslog"', 'log = "stderr"')
    rc, out, err = reload_lines(d)
    assert rc == 0 and out[1:] == ["applied: log"], (out, err)
    assert log_lines_with(d, "reload: log changed: applied")


def test_a_new_spool_dir_takes_effect_at_the_next_start(daemon, tmp_path):
    d = make(daemon)
    other = str(tmp_path / "other-spool")
    rewrite(d, 'spool_dir = "%s"' % d.spool, 'spool_dir = "%s"' % other)
    rc, out, err = reload_lines(d)
    assert rc == 0, err
    assert out == ["mxspoold: configuration reloaded from %s" % d.conf,
                   "takes effect at the next start: spool_dir"]
    assert log_lines_with(d, "warning: reload: spool_dir changed: takes "
                             "effect at the next start")
    rc, js, err = ctl(d, "--json", "reload")
    assert rc == 0 and '"at_next_start":["spool_dir"]' in js, js
    # Mail still goes to the spool in use.
    send(d)
    assert not os.path.exists(other)
    rc, out, err = ctl(d, "list")
    assert rc == 0 and "u@example.com" in out


def test_reload_shows_the_config_warnings(daemon):
    d = make(daemon)
    rewrite(d, 'hostname = "mx.test.example"', 'hostname = "mx"')
    rc, out, err = reload_lines(d)
    assert rc == 0
    assert out[1:] == ["applied: hostname, mx_self_names"]
    warning = ("%s:1: warning: hostname: 'mx' is not a fully qualified "
               "domain name; the greeting and EHLO should give one (e.g. "
               "'mx.example.net')" % d.conf)
    assert err == warning + "\n"
    assert log_lines_with(d, "warning: reload: %s:1: hostname: 'mx' is not "
                             "a fully qualified domain name" % d.conf)
    rc, js, err = ctl(d, "--json", "reload")
    assert rc == 0 and '"warnings":["%s"]' % warning in js
    with smtplib.SMTP("127.0.0.1", d.port, timeout=10) as s:
        assert s.ehlo()[1].split(b"\n")[0] == b"mx"


def test_an_option_given_twice_refuses_the_reload(daemon):
    d = make(daemon)
    with open(d.conf, "a") as f:
        f.write('relay_domains = {"example.net"}\n')
    n = len(open(d.conf).read().splitlines())
    rc, out, err = ctl(d, "reload")
    assert rc == 1 and out == ""
    assert ('%s:%d: relay_domains: given twice (first at line 5); a list is '
            'written once: relay_domains = {"a", "b"}' % (d.conf, n)) in err
    assert rcpt_code(d, "u@example.com") == 250
    assert rcpt_code(d, "u@example.net") == 554


def test_dropping_dns_servers_goes_back_to_resolv_conf(daemon):
    # Before: the servers named last stayed in use until a restart.
    d = make(daemon)
    text = open(d.conf).read()
    line = [l for l in text.splitlines() if l.startswith("dns_servers =")][0]
    rewrite(d, line + "\n", "")
    rc, out, err = reload_lines(d)
    assert rc == 0 and out[1:] == ["applied: dns_servers"], (out, err)
    wait_log(d, "debug: dns: servers of resolv.conf")
