"""/metrics in the Prometheus text format (checked by promtool) and
/healthz; the counters move with the mail."""

import os
import smtplib
import subprocess
import urllib.error
import urllib.request

import pytest

from conftest import free_port, need


def get(port, path):
    with urllib.request.urlopen("http://127.0.0.1:%d%s" % (port, path),
                                timeout=5) as r:
        return r.status, r.headers.get("Content-Type"), r.read().decode()


def sample(text, name):
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    return None


@pytest.fixture
def served(daemon):
    port = free_port()
    dead = free_port()
    d = daemon(extra='metrics_listen = "127.0.0.1:%d"\n'
                     'domain "example.com" { route = "smtp:[127.0.0.1]:%d" }\n'
                     'retry { initial = 1h }\n' % (port, dead))
    d.start()
    d.mport = port
    d.dead = "smtp:[127.0.0.1]:%d" % dead
    return d


def test_metrics_pass_promtool_and_the_counters_move(served):
    d = served
    status, ctype, before = get(d.mport, "/metrics")
    assert status == 200 and ctype.startswith("text/plain; version=0.0.4")
    assert sample(before, "mxspool_messages_accepted_total") == 0
    with smtplib.SMTP("127.0.0.1", d.port, timeout=10) as s:
        s.sendmail("a@sender.test", ["u@example.com"], b"Subject: x\r\n\r\nx\r\n")
        s.sendmail("b@sender.test", ["v@example.com"], b"Subject: y\r\n\r\ny\r\n")
        s.mail("c@sender.test")
        assert s.rcpt("w@elsewhere.test")[0] == 554
    _, _, after = get(d.mport, "/metrics")
    assert sample(after, "mxspool_messages_accepted_total") == 2
    assert sample(after, 'mxspool_rejected_total{reason="relay"}') == 1
    assert sample(after, "mxspool_commit_seconds_count") >= 2
    assert sample(after, 'mxspool_commit_seconds_bucket{le="+Inf"}') >= 2
    assert sample(after, "mxspool_connections_total") >= 1
    assert sample(after, "mxspool_spool_messages") == 2
    assert sample(after, 'mxspool_queue_messages{destination="%s"}'
                  % d.dead) == 2
    assert sample(after, 'mxspool_queue_oldest_age_seconds{destination="%s"}'
                  % d.dead) >= 0
    assert sample(after, "mxspool_connections_open") is not None
    promtool = need("promtool", "prometheus")
    for text in (before, after):
        p = subprocess.run([promtool, "check", "metrics"], input=text.encode(),
                           capture_output=True, timeout=30)
        assert p.returncode == 0, p.stdout + p.stderr


def test_promtool_catches_broken_text(served):
    """The check above can fail: promtool refuses a malformed exposition."""
    promtool = need("promtool", "prometheus")
    _, _, text = get(served.mport, "/metrics")
    broken = text.replace("mxspool_spool_messages 0",
                          "mxspool_spool_messages zero")
    p = subprocess.run([promtool, "check", "metrics"], input=broken.encode(),
                       capture_output=True, timeout=30)
    assert p.returncode != 0


def test_healthz_answers_and_other_paths_are_404(served):
    assert get(served.mport, "/healthz")[::2] == (200, "ok\n")
    with pytest.raises(urllib.error.HTTPError) as e:
        get(served.mport, "/nothing")
    assert e.value.code == 404
    req = urllib.request.Request("http://127.0.0.1:%d/metrics" % served.mport,
                                 data=b"x", method="POST")
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(req, timeout=5)
    assert e.value.code in (405, 501)


def test_a_metrics_port_in_use_does_not_stop_the_mail(daemon):
    import socket
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen(1)
    d = daemon(extra='metrics_listen = "127.0.0.1:%d"\n'
                     % busy.getsockname()[1])
    d.start()
    assert "metrics are off" in d.log()
    with smtplib.SMTP("127.0.0.1", d.port, timeout=10) as s:
        assert s.noop()[0] == 250
    busy.close()
