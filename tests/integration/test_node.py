"""node_id: one node's name in a fleet, in the Received header, on each
message's first log lines, on every /metrics series and in mxspoolctl
summary, so that several nodes' logs and metrics merge without
collisions."""

import re
import signal
import smtplib
import subprocess

from conftest import MXSPOOLD, free_port, log_lines, wait_for
from smtphelp import spool_body, split_received
from test_ctl import ctl, ctl_json
from test_metrics import get


def held(daemon, extra=""):
    """A daemon with /metrics whose mail for example.com waits (its route
    refuses), so that the queue has something to show."""
    mport = free_port()
    d = daemon(extra='metrics_listen = "127.0.0.1:%d"\n'
                     'domain "example.com" { route = "smtp:[127.0.0.1]:%d" }\n'
                     'retry { initial = 1h }\n' % (mport, free_port()) + extra)
    d.start()
    d.mport = mport
    return d


def send(d):
    with smtplib.SMTP("127.0.0.1", d.port, timeout=10) as s:
        s.sendmail("a@sender.test", ["u@example.com"],
                   b"Subject: x\r\n\r\nx\r\n")
    line = wait_for(lambda: log_lines(d, ": client=[127.0.0.1]:"),
                    what="the client line")[-1]
    return line.split("]: ")[1].split(":")[0]


def test_node_id_defaults_to_the_host_names_first_label(daemon):
    d = held(daemon)
    qid = send(d)
    assert log_lines(d, "%s: client=[127.0.0.1]:" % qid)[0].endswith(
        ", node=mx")
    wait_for(lambda: log_lines(d, "%s: from=<a@sender.test>" % qid),
             what="the qmgr line")
    assert log_lines(d, "%s: from=<a@sender.test>" % qid)[0].endswith(
        ", proto=ESMTP, node=mx")
    assert ctl_json(d, "summary")[0]["node"] == "mx"


def test_node_id_is_in_received_log_metrics_and_summary(daemon):
    d = held(daemon, extra='node_id = "eu-west-2"\n')
    assert ctl_json(d, "summary")[0]["node"] == "eu-west-2"
    qid = send(d)
    # The log: the lines that name the message's client and sender.
    client = log_lines(d, "%s: client=" % qid)[0]
    assert re.search(r": client=\[127\.0\.0\.1\]:\d+, conn=C[0-9a-f]{8}, "
                     r"node=eu-west-2$", client), client
    wait_for(lambda: log_lines(d, "%s: from=" % qid), what="the qmgr line")
    assert log_lines(d, "%s: from=" % qid)[0].endswith(
        "nrcpt=1, proto=ESMTP, node=eu-west-2")
    # /metrics: every sample, the node its first label.
    _, _, text = get(d.mport, "/metrics")
    samples = [l for l in text.splitlines() if l and not l.startswith("#")]
    assert len(samples) > 50
    bad = [l for l in samples if not l.split(" ")[0].split("{", 1)[-1]
           .startswith('node="eu-west-2"')]
    assert bad == [], bad[:5]
    assert 'mxspool_messages_accepted_total{node="eu-west-2"} 1' in text
    # mxspoolctl summary: the JSON field and the table's last line.
    assert ctl_json(d, "summary")[0]["node"] == "eu-west-2"
    rc, out, err = ctl(d, "summary")
    assert rc == 0 and out.splitlines()[-1].startswith("1 message (0 held), ")
    assert out.splitlines()[-1].endswith(", 1 destination, node eu-west-2")
    rc, out, err = ctl(d, "summary", "--ages")
    assert rc == 0 and out.splitlines()[-1] == "node eu-west-2"
    # The Received header, as a comment after our host name.
    assert d.stop() == 0
    received, _ = split_received(spool_body(d, qid))
    assert b"\tby mx.test.example (mxspool node eu-west-2) with ESMTP id " \
        + qid.encode() in received


def test_a_reload_renames_the_node(daemon):
    d = held(daemon, extra='node_id = "a1"\n')
    with open(d.conf) as f:
        text = f.read()
    with open(d.conf, "w") as f:
        f.write(text.replace('node_id = "a1"', 'node_id = "b2"'))
    d.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: log_lines(d, "reload: %s in force" % d.conf),
             what="the reload")
    assert log_lines(d, "reload: node_id changed: applied")
    _, _, text = get(d.mport, "/metrics")
    assert 'mxspool_spool_messages{node="b2"} 0' in text
    assert 'node="a1"' not in text
    assert ctl_json(d, "summary")[0]["node"] == "b2"
    qid = send(d)
    assert log_lines(d, "%s: client=" % qid)[0].endswith(", node=b2")


def test_a_bad_node_id_is_refused_at_its_line(daemon):
    d = daemon(extra='node_id = "mx1.example.net"\n')
    r = subprocess.run([MXSPOOLD, "-t", "-c", d.conf], capture_output=True,
                       text=True)
    assert r.returncode != 0
    assert re.search(r":\d+: node_id: bad node id 'mx1.example.net' "
                     r"\(letters, digits and hyphens, at most 63\)",
                     r.stdout + r.stderr), r.stdout + r.stderr
