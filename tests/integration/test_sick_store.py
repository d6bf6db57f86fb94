"""A sick store is an outage (DESIGN.md, contract 2): a store that is up
but answers 4xx to every recipient, or protocol errors, is put into
probing like one that refuses connections; its mail waits without
spending attempts and is never bounced, and drains over
recovery_connections once the store answers again. A store that defers
or rejects only some recipients stays a healthy destination."""

import time

from test_delivery import config, send
from conftest import log_lines, wait_for

RETRY = "recovery_connections = 2\n max_connections = 8\n max_msgs_per_connection = 1000"


def accepted(b):
    """The messages the store took (a 2xx after the data)."""
    return [m for m in b.messages() if m["replies"][0].startswith("2")]


def rcpt_commands(b):
    return [c for c in b.commands() if c.upper().startswith("RCPT")]


def assert_drains_slowly_from_recovery_width(b, n):
    b.wait_for(lambda: len(b.messages()) == n, timeout=60, what="the drain")
    time.sleep(1)
    assert len(b.messages()) == n, "delivered more than once"
    back = [e for e in b.events() if e["ev"] == "message"][0]["t"]
    early = [c for t, c in b.concurrency()
             if back - 0.5 <= t < back + 0.8]
    assert max(early) <= 2, early


def test_4xx_to_every_recipient_puts_the_store_into_probing(daemon, backend):
    b = backend(rcpt={"*": "451 4.2.0 Temporary internal error"})
    rec = backend()
    d = daemon(extra=config(b, rec, retry=RETRY)).start()
    send(d, 40, rcpts=("a@example.com", "b@example.com"))
    wait_for(lambda: log_lines(d, "destination failing"), what="the outage")
    time.sleep(4)
    # One probe at a time, one message each: with a backoff of 1 s, then
    # 2 s and 4 s, about four probes in those seconds, not 40 messages
    # each tried again and again.
    attempts = len(rcpt_commands(b)) // 2
    assert attempts <= 8, attempts
    tried = [l for l in log_lines(d, "status=deferred")
             if "temporarily suspended" not in l]
    assert len(tried) <= 2 * attempts
    # The others are said deferred once each, when first held.
    held = [l.split("]: ")[1].split(", relay=")[0]
            for l in log_lines(d, "temporarily suspended")]
    assert len(held) == len(set(held)) <= 80, held
    assert b.messages() == [] and rec.messages() == []
    b.update(rcpt={}, stall={"eod": 0.05})
    assert_drains_slowly_from_recovery_width(b, 40)
    assert log_lines(d, "destination is back")
    assert rec.messages() == [], "a DSN was sent"
    assert d.stop() == 0


def test_4xx_to_mail_or_data_puts_the_store_into_probing(daemon, backend):
    b = backend(mail="452 4.3.1 Insufficient system storage")
    d = daemon(extra=config(b, retry=RETRY)).start()
    send(d, 20)
    wait_for(lambda: log_lines(d, "destination failing"), what="the outage")
    b.update(mail="250 2.1.0 Ok", data="451 4.3.0 disk is read-only")
    time.sleep(3)
    assert len([c for c in b.commands() if c.startswith("MAIL")]) <= 8
    b.update(data=None)
    b.wait_for(lambda: len(b.messages()) == 20, timeout=60, what="the drain")
    assert d.stop() == 0


def test_a_store_that_defers_some_recipients_is_not_failing(daemon, backend):
    """A recipient deferred again while the store served others within
    probe_interval is that user's trouble."""
    b = backend(rcpt={"full@example.com": "452 4.2.2 Mailbox full",
                    "busy@example.com": "451 4.3.0 try again"})
    d = daemon(extra=config(b, retry=RETRY + "\n probe_interval = 60s")).start()
    send(d, 10, rcpts=("ok@example.com", "full@example.com"))
    send(d, 10, rcpts=("ok@example.com", "busy@example.com"))
    b.wait_for(lambda: len(b.messages()) == 20, timeout=30, what="deliveries")
    time.sleep(1)
    assert not log_lines(d, "destination failing")
    # Every message only to the full mailbox is the user's trouble too.
    send(d, 5, rcpts=("full@example.com",))
    time.sleep(2)
    assert not log_lines(d, "destination failing")
    assert d.stop() == 0


def test_protocol_errors_from_a_confused_store_defer_instead_of_bouncing(daemon, backend):
    """aiosmtpd without its mailbox directory: 500 at the end of every
    DATA, then 503 to the next MAIL. Nothing is bounced; the store is
    probed until it answers properly."""
    b = backend(eod={"*": "500 Error: (FileNotFoundError) [Errno 2] No such file"})
    rec = backend()
    d = daemon(extra=config(b, rec, retry=RETRY)).start()
    send(d, 5, rcpts=["u%d@example.com" % i for i in range(13)])
    wait_for(lambda: log_lines(d, "destination failing"), what="the outage")
    b.update(eod={}, mail="503 Error: nested MAIL command")
    time.sleep(3)
    assert not log_lines(d, "status=bounced")
    assert accepted(b) == [] and rec.messages() == []
    deferred = log_lines(d, "status=deferred")
    assert deferred and all("dsn=4.3.0" in l for l in deferred), deferred
    b.update(mail=None)
    b.wait_for(lambda: len(accepted(b)) == 5, timeout=60, what="the drain")
    time.sleep(1)
    assert len(accepted(b)) == 5 and rec.messages() == []
    assert d.stop() == 0


def test_a_5xx_about_an_unknown_user_at_a_healthy_store_still_bounces(daemon, backend):
    b = backend(rcpt={"nobody@example.com": "550 5.1.1 No such user"})
    rec = backend()
    d = daemon(extra=config(b, rec, retry=RETRY)).start()
    send(d, 1, rcpts=("ok@example.com", "nobody@example.com"))
    rec.wait_for(lambda: len(rec.messages()) == 1, timeout=15, what="one DSN")
    assert len(b.messages()) == 1
    assert not log_lines(d, "destination failing")
    time.sleep(1)
    assert len(rec.messages()) == 1
    assert d.stop() == 0
