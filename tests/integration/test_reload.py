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
