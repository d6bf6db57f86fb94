"""Who tells the sender what (RFC 3461, 3464): success notices only when
the next hop cannot take the job over, and delivery-status fields that say
who said what. Against the real daemon, scripted stores (backend.py) and
Python's email package as the DSN's reader."""

import email
import email.policy
import smtplib
import time

import pytest

from conftest import wait_for, log_lines
from test_delivery import config, dead_store, parse_dsn
from test_downgrade import NO_UTF8

NO_DSN = ["PIPELINING", "SIZE 10485760", "8BITMIME", "ENHANCEDSTATUSCODES",
          "SMTPUTF8"]


def send_dsn_mail(d, rcpt="x@example.com"):
    s = smtplib.SMTP("127.0.0.1", d.port, timeout=30)
    s.ehlo("client.test")
    code, _ = s.mail("s@client.test", options=["RET=HDRS", "ENVID=QQ+2B314"])
    assert code == 250
    code, _ = s.rcpt(rcpt, options=["NOTIFY=SUCCESS,FAILURE",
                                    "ORCPT=rfc822;x+2Btag@example.com"])
    assert code == 250
    code, _ = s.data(b"Subject: dsn\r\nMessage-ID: <dsn@client.test>\r\n"
                     b"\r\nhello\r\n")
    assert code == 250
    s.quit()


@pytest.mark.parametrize("lmtp", [False, True], ids=["smtp", "lmtp"])
def test_a_next_hop_with_dsn_takes_over_the_success_notice(daemon, backend, lmtp):
    b = backend(lmtp=lmtp)
    rec = backend()
    d = daemon(extra=config(b, rec)).start()
    send_dsn_mail(d)
    b.wait_for(lambda: len(b.messages()) == 1, what="delivery")
    m = b.messages()[0]
    assert m["mail_params"] == "RET=HDRS ENVID=QQ+2B314" or \
        set(m["mail_params"].split()) >= {"RET=HDRS", "ENVID=QQ+2B314"}
    assert m["rcpt_params"][0] == "NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;x+2Btag@example.com"
    wait_for(lambda: log_lines(d, ": removed"), what="removal")
    time.sleep(1.5)
    assert rec.messages() == [], "the next hop owns the success notice"
    assert d.stop() == 0


@pytest.mark.parametrize("lmtp,action", [(False, "relayed"), (True, "delivered")],
                         ids=["smtp", "lmtp"])
def test_a_next_hop_without_dsn_leaves_the_success_notice_to_us(daemon, backend, lmtp, action):
    b = backend(lmtp=lmtp, extensions=NO_DSN)
    rec = backend()
    d = daemon(extra=config(b, rec)).start()
    send_dsn_mail(d)
    b.wait_for(lambda: len(b.messages()) == 1, what="delivery")
    m = b.messages()[0]
    assert "NOTIFY" not in m["rcpt_params"][0]
    assert "ENVID" not in m["mail_params"]
    rec.wait_for(lambda: len(rec.messages()) == 1, what="the success notice")
    time.sleep(1)
    assert len(rec.messages()) == 1
    dsn = rec.messages()[0]
    assert dsn["mail_from"] == "" and dsn["rcpts"] == ["s@client.test"]
    msg, per_msg, rc = parse_dsn(dsn["data"])
    # Decoded from xtext, as Postfix writes it.
    assert per_msg["Original-Envelope-Id"] == "QQ+314"
    assert rc[0]["Action"] == action
    assert rc[0]["Status"].startswith("2.")
    assert rc[0]["Original-Recipient"] == "rfc822;x+tag@example.com"
    assert rc[0]["Final-Recipient"] == "rfc822; x@example.com"
    # RET=HDRS: the header only.
    assert msg.get_payload()[2].get_content_type() == "text/rfc822-headers"
    assert d.stop() == 0


def test_a_failure_at_a_dsn_capable_hop_is_still_ours_to_report(daemon, backend):
    b = backend(rcpt={"x@example.com": "550 5.1.1 no such user"})
    rec = backend()
    d = daemon(extra=config(b, rec)).start()
    # A store that has accepted someone is believed about a 5xx.
    s = smtplib.SMTP("127.0.0.1", d.port, timeout=30)
    s.sendmail("s@client.test", ["ok@example.com"], b"Subject: a\r\n\r\na\r\n")
    s.quit()
    b.wait_for(lambda: len(b.messages()) == 1, what="first delivery")
    send_dsn_mail(d)
    rec.wait_for(lambda: len(rec.messages()) == 1, what="the failure notice")
    _, _, rc = parse_dsn(rec.messages()[0]["data"])
    assert rc[0]["Action"] == "failed"
    assert rc[0]["Status"] == "5.1.1"
    assert d.stop() == 0


def test_a_returned_message_separates_our_words_from_the_stores_reply(daemon, backend):
    """The store refuses to talk (554 greeting) until the message expires:
    the DSN's Diagnostic-Code of type smtp has the store's reply alone."""
    b = backend(greeting="554 5.7.1 go away")
    rec = backend()
    d = daemon(extra=config(b, rec, retry="max_age = 3s")).start()
    s = smtplib.SMTP("127.0.0.1", d.port, timeout=30)
    s.sendmail("s@client.test", ["x@example.com"], b"Subject: a\r\n\r\na\r\n")
    s.quit()
    rec.wait_for(lambda: len(rec.messages()) == 1, timeout=30, what="the return")
    msg, _, rc = parse_dsn(rec.messages()[0]["data"])
    assert rc[0]["Action"] == "failed"
    assert rc[0]["Diagnostic-Code"] == "smtp; 554 5.7.1 go away"
    human = msg.get_payload()[0].get_content()
    assert "refused to talk to me: 554 5.7.1 go away" in " ".join(human.split())
    assert d.stop() == 0


def test_a_store_that_never_answered_gets_our_words_under_our_type(daemon, backend):
    rec = backend()

    dead = dead_store()
    d = daemon(extra=config(dead, rec, retry="max_age = 3s")).start()
    s = smtplib.SMTP("127.0.0.1", d.port, timeout=30)
    s.sendmail("s@client.test", ["x@example.com"], b"Subject: a\r\n\r\na\r\n")
    s.quit()
    rec.wait_for(lambda: len(rec.messages()) == 1, timeout=30, what="the return")
    _, _, rc = parse_dsn(rec.messages()[0]["data"])
    diag = " ".join(rc[0]["Diagnostic-Code"].split())
    assert diag.startswith("X-mxspool; connect to 127.0.0.1[127.0.0.1]:%d" % dead.port), diag
    assert "Remote-MTA" not in rc[0]
    assert d.stop() == 0



@pytest.mark.parametrize("rcpt,subject", [
    ("x@example.com", "plain"),
    ("ren\u00e9e@example.com", "Gr\u00fc\u00dfe"),
])
def test_a_notice_to_an_ascii_sender_reaches_a_server_without_smtputf8(daemon, backend, rcpt, subject):
    """The 6 messages, 0 notices of the report: an SMTPUTF8 message from an
    ASCII sender is returned; the sender's server lacks SMTPUTF8 and must
    still get the notice."""
    b = backend(rcpt={rcpt: "550 5.1.1 no such user"})
    rec = backend(extensions=NO_UTF8)
    d = daemon(extra=config(b, rec)).start()
    s = smtplib.SMTP("127.0.0.1", d.port, timeout=30)
    s.sendmail("s@client.test", ["ok@example.com"], b"Subject: a\r\n\r\na\r\n")
    b.wait_for(lambda: len(b.messages()) == 1, what="first delivery")
    s.ehlo("client.test")
    assert s.mail("s@client.test", options=["SMTPUTF8", "BODY=8BITMIME"])[0] == 250
    code, _ = s.rcpt(rcpt)
    assert code == 250
    assert s.data(("Subject: %s\r\n\r\nhello\r\n" % subject).encode())[0] == 250
    s.quit()
    rec.wait_for(lambda: len(rec.messages()) == 1, what="the notice")
    n = rec.messages()[0]
    assert "SMTPUTF8" not in n["mail_params"]
    assert max(n["data"]) < 0x80, "the notice is ASCII"
    msg, _, rc = parse_dsn(n["data"])
    assert msg.get_param("report-type") == "delivery-status"
    assert rc[0]["Action"] == "failed"
    assert d.stop() == 0


@pytest.mark.parametrize("how", ["421 4.4.2 idle for too long", "drop"])
def test_a_reused_connection_found_closed_is_retried_at_once_on_a_new_one(daemon, backend, how):
    """The store closed an idle connection (a 421, or nothing at all) as
    mxspool began the next transaction on it. Nothing was tried: the
    message goes on a new connection at once, without an attempt counted
    or a backoff waited."""
    b = backend(mail_reused=how)
    d = daemon(extra=config(b, retry="initial = 30s\n max_interval = 60s")).start()
    s = smtplib.SMTP("127.0.0.1", d.port, timeout=30)
    for i in range(10):
        s.sendmail("s@client.test", ["u%d@example.com" % i],
                   b"Subject: %d\r\n\r\nhello\r\n" % i)
        time.sleep(0.05)
    s.quit()
    b.wait_for(lambda: len(b.messages()) == 10, timeout=15, what="ten deliveries")
    assert sorted(m["rcpts"][0] for m in b.messages()) == \
        sorted("u%d@example.com" % i for i in range(10))
    assert log_lines(d, "status=deferred") == []
    assert log_lines(d, "closed before MAIL")
    assert d.stop() == 0


def test_our_own_refusal_is_held_like_a_stores_5xx_until_the_store_is_trusted(daemon, backend):
    """The client's own 5.6.7 (the store lacks SMTPUTF8 and the recipient
    is not ASCII) is judged by the rejection guard as a store's 5xx is
    (contract 2): a store that fell back to HELO or a reduced EHLO while
    sick must not make mail bounce. Held while the store gave no 2xx
    lately; returned once it has accepted someone."""
    b = backend(extensions=NO_UTF8)
    rec = backend()
    d = daemon(extra=config(b, rec)).start()
    s = smtplib.SMTP("127.0.0.1", d.port, timeout=30)
    s.ehlo("client.test")
    assert s.mail("s@client.test", options=["SMTPUTF8"])[0] == 250
    assert s.rcpt("ren\u00e9e@example.com")[0] == 250
    assert s.data(b"Subject: a\r\n\r\nhello\r\n")[0] == 250
    wait_for(lambda: log_lines(d, "suspect 5xx, held"), what="held as suspect")
    time.sleep(1)
    assert rec.messages() == []
    # The store accepts someone: it is trusted, and the 5.6.7 stands.
    s.sendmail("s@client.test", ["ok@example.com"], b"Subject: b\r\n\r\nb\r\n")
    s.quit()
    rec.wait_for(lambda: len(rec.messages()) == 1, timeout=30, what="the notice")
    _, _, rc = parse_dsn(rec.messages()[0]["data"])
    assert rc[0]["Status"] == "5.6.7"
    assert " ".join(rc[0]["Diagnostic-Code"].split()).startswith(
        "X-mxspool; SMTPUTF8 is required")
    assert [m["rcpts"] for m in b.messages()] == [["ok@example.com"]]
    assert d.stop() == 0
