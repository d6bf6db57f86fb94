"""/metrics in the Prometheus text format (checked by promtool) and
/healthz; the counters move with the mail."""

import os
import re
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


def unnode(key):
    """A sample's name and labels without the node label every sample
    has first (node_id): 'x{node="mx",a="b"}' -> 'x{a="b"}'."""
    key = re.sub(r'\{node="[^"]*",?', "{", key, count=1)
    return key[:-2] if key.endswith("{}") else key


def sample(text, name):
    """The value of sample name (without its node label), or None."""
    for line in text.splitlines():
        if line and not line.startswith("#") and \
                unnode(line.rsplit(" ", 1)[0]) == name:
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
    broken = text.replace('mxspool_spool_messages{node="mx"} 0',
                          'mxspool_spool_messages{node="mx"} zero')
    assert broken != text
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


def series(text):
    """{name{labels}: value} of every sample, without its node label."""
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            key, v = line.rsplit(" ", 1)
            out[unnode(key)] = float(v)
    return out


def test_every_reason_and_result_is_there_from_the_start(served):
    """Each label the code counts with is a series at 0 before its first
    event: rate() and absent() need the series to exist."""
    import re
    from conftest import ROOT
    src = ""
    for top in ("relay", "queue", "ctl", "dns"):
        for name in os.listdir(os.path.join(ROOT, top)):
            if name.endswith(".c"):
                with open(os.path.join(ROOT, top, name)) as f:
                    src += f.read()
    used = {("rejected", r) for r in re.findall(r'metrics_reject\("([a-z_]+)"\)', src)}
    used |= {("attempts", r) for r in re.findall(r'metrics_attempt\("([a-z_]+)"\)', src)}
    used |= {("attempts", r) for r in
             re.findall(r'metrics_attempt\([^;]*?"([a-z_]+)"[^;]*?"([a-z_]+)"[^;]*?"([a-z_]+)"', src)[0]}
    used |= {("reloads", r) for r in re.findall(r'MF_RELOADS, "([a-z_]+)"', src)}
    assert len(used) > 20
    d = served
    _, _, text = get(d.mport, "/metrics")
    got = series(text)
    family = {"rejected": "mxspool_rejected_total{reason=\"%s\"}",
              "attempts": "mxspool_delivery_attempts_total{result=\"%s\"}",
              "reloads": "mxspool_reloads_total{result=\"%s\"}"}
    missing = sorted(family[f] % r for f, r in used if family[f] % r not in got)
    assert missing == [], missing
    for r in ("ok", "tempfail", "permfail"):
        assert got['mxspool_dns_lookups_total{result="%s"}' % r] == 0
    assert got['mxspool_build_info{version="0.1.0"}'] == 1


def test_destination_series_stay_while_configured_or_queued(served):
    d = served
    name = 'destination="%s"' % d.dead
    _, _, text = get(d.mport, "/metrics")
    got = series(text)
    # Configured, nothing queued yet: every gauge, at 0.
    for g in ("mxspool_queue_messages", "mxspool_queue_held_messages",
              "mxspool_queue_bytes", "mxspool_queue_oldest_age_seconds",
              "mxspool_destination_backing_off", "mxspool_destination_suspect",
              "mxspool_destination_paused", "mxspool_outbound_connections"):
        assert got["%s{%s}" % (g, name)] == 0, g
    with smtplib.SMTP("127.0.0.1", d.port, timeout=10) as s:
        s.sendmail("a@sender.test", ["u@example.com"], b"Subject: x\r\n\r\nx\r\n")
    from conftest import wait_for
    wait_for(lambda: series(get(d.mport, "/metrics")[2]).get(
        'mxspool_destination_recipients_total{%s,result="deferred"}' % name) == 1,
        what="the deferral counted for its destination")
    got = series(get(d.mport, "/metrics")[2])
    assert got['mxspool_destination_recipients_total{%s,result="delivered"}' % name] == 0
    assert got['mxspool_destination_recipients_total{%s,result="bounced"}' % name] == 0
    assert got["mxspool_destination_backing_off{%s}" % name] == 1
    qid = [l for l in d.log().splitlines() if ": client=" in l][0].split("]: ")[1].split(":")[0]
    from test_ctl import ctl
    assert ctl(d, "hold", qid)[0] == 0
    got = series(get(d.mport, "/metrics")[2])
    assert got["mxspool_queue_held_messages{%s}" % name] == 1
    assert ctl(d, "delete", qid, "--yes")[0] == 0
    got = series(get(d.mport, "/metrics")[2])
    # Emptied: the series are still there, at 0.
    assert got["mxspool_queue_messages{%s}" % name] == 0
    assert got["mxspool_queue_oldest_age_seconds{%s}" % name] == 0
    assert got["mxspool_queue_held_messages{%s}" % name] == 0


def test_the_shipped_alerts_pass_promtool_and_their_unit_tests():
    """docs/prometheus-alerts.yml is valid, and each alert fires on the
    series of its outage and not on a normal day's
    (docs/prometheus-alerts.test.yml)."""
    from conftest import ROOT
    promtool = need("promtool", "prometheus")
    docs = os.path.join(ROOT, "docs")
    r = subprocess.run([promtool, "check", "rules", "prometheus-alerts.yml"],
                       cwd=docs, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "SUCCESS: 9 rules found" in r.stdout
    r = subprocess.run([promtool, "test", "rules", "prometheus-alerts.test.yml"],
                       cwd=docs, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "SUCCESS" in r.stdout, r.stdout + r.stderr


def test_the_dashboard_asks_only_for_series_mxspoold_serves(served, tmp_path):
    """docs/grafana-dashboard.json: each query is valid PromQL (promtool
    checks it as a recording rule) and names only metrics /metrics has."""
    import json
    import re
    from conftest import ROOT
    with open(os.path.join(ROOT, "docs", "grafana-dashboard.json")) as f:
        dash = json.load(f)
    assert dash["uid"] and dash["title"]
    exprs = [t["expr"] for p in dash["panels"] for t in p["targets"]]
    assert len(exprs) >= 14
    rules = tmp_path / "dash.yml"
    with open(rules, "w") as f:
        f.write("groups:\n  - name: dash\n    rules:\n")
        for i, e in enumerate(exprs):
            f.write("      - record: dash:q%d\n        expr: %s\n"
                    % (i, json.dumps(e.replace("$instance", ".*"))))
    r = subprocess.run([need("promtool", "prometheus"), "check", "rules",
                        str(rules)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    _, _, text = get(served.mport, "/metrics")
    served_names = {l.split()[2] for l in text.splitlines()
                    if l.startswith("# TYPE ")}
    served_names |= {n + "_bucket" for n in served_names}
    asked = set(re.findall(r"\b(mxspool_[a-z_]+)\b", " ".join(exprs)))
    assert asked - served_names == set(), asked - served_names
    # Every alert, too.
    with open(os.path.join(ROOT, "docs", "prometheus-alerts.yml")) as f:
        alerted = set(re.findall(r"\b(mxspool_[a-z_]+)\b", f.read()))
    assert alerted - served_names == set(), alerted - served_names
