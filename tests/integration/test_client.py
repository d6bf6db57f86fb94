"""The outbound SMTP client (relay/client.c) against the scriptable backend:
delivery, extensions, per-recipient results, candidates and failures.
Each test starts its own backend(s) on loopback and drives the client with
the sendmsg tool."""

import os
import re

import pytest

from backend import (MSG, Backend, free_port, send, smtp_route,
                     write_conf)


@pytest.fixture
def backends(tmp_path):
    made = []

    def make(**kw):
        kw.setdefault("name", "b%d" % len(made))
        b = Backend(str(tmp_path), **kw).start()
        made.append(b)
        return b

    yield make
    for b in made:
        b.stop()


def plain(args=()):
    """sendmsg arguments for a session without STARTTLS."""
    return ["--tls", "none"] + list(args)


# ---- delivery -----------------------------------------------------------

def test_client_delivers_the_bytes_exactly_and_stuffs_dots(tmp_path, backends):
    b = backends()
    body = (b".starts with a dot\r\n"
            b"From: x\r\n\r\n"
            b".\r\n"
            b"..two dots\r\n"
            b"middle . dot and a bare \n LF and \r CR\r\n"
            b"\xc3\xa9t\xc3\xa9 8bit\r\n"
            b".\r\n")
    r = send(str(tmp_path), [smtp_route(b)], [body], args=plain())
    assert r.by_rcpt()["user@example.com"]["code"] == 250
    [m] = b.messages()
    assert m["data"] == body
    # What went over the wire: each line starting with "." got another.
    assert m["raw"] == (b"..starts with a dot\r\nFrom: x\r\n\r\n..\r\n"
                        b"...two dots\r\n"
                        b"middle . dot and a bare \n LF and \r CR\r\n"
                        b"\xc3\xa9t\xc3\xa9 8bit\r\n..\r\n")
    assert r.end["code"] == 221 and r.end["connected"] is True
    assert r.end["delivered_msgs"] == 1


def test_client_ends_a_last_line_without_crlf(tmp_path, backends):
    b = backends()
    send(str(tmp_path), [smtp_route(b)], [b"Subject: x\r\n\r\nno end"],
         args=plain())
    assert b.messages()[0]["data"] == b"Subject: x\r\n\r\nno end\r\n"


def test_client_reports_the_reply_to_each_recipient(tmp_path, backends):
    b = backends(rcpt={"bad@example.com": "550 5.1.1 no such user",
                       "later@example.com": "451 4.3.0 try later",
                       "plain@example.com": "550 no such user"})
    r = send(str(tmp_path), [smtp_route(b)], [MSG], args=plain(),
             to=["ok@example.com", "bad@example.com", "later@example.com",
                 "plain@example.com"])
    res = r.by_rcpt()
    assert (res["ok@example.com"]["code"], res["ok@example.com"]["dsn"]) == \
        (250, "2.0.0")
    assert res["ok@example.com"]["text"].startswith("250 2.0.0 Ok: queued")
    assert (res["bad@example.com"]["code"], res["bad@example.com"]["dsn"],
            res["bad@example.com"]["text"]) == \
        (550, "5.1.1", "550 5.1.1 no such user")
    assert (res["later@example.com"]["code"],
            res["later@example.com"]["dsn"]) == (451, "4.3.0")
    # No enhanced code in the reply: the class default.
    assert (res["plain@example.com"]["code"],
            res["plain@example.com"]["dsn"]) == (550, "5.0.0")
    [m] = b.messages()
    assert m["rcpts"] == ["ok@example.com"]


def test_client_pipelines_mail_rcpt_and_data_in_one_write(tmp_path, backends):
    b = backends()
    send(str(tmp_path), [smtp_route(b)], [MSG], args=plain(),
         to=["a@example.com", "b@example.com", "c@example.com"])
    recvs = [e["lines"] for e in b.events() if e["ev"] == "recv"]
    assert ["MAIL FROM:<sender@origin.test> SIZE=%d" % len(MSG),
            "RCPT TO:<a@example.com>", "RCPT TO:<b@example.com>",
            "RCPT TO:<c@example.com>", "DATA"] in recvs, recvs
    assert len(b.messages()) == 1


def test_client_sends_one_command_at_a_time_without_pipelining(
        tmp_path, backends):
    b = backends(extensions=["SIZE 100000", "8BITMIME"])
    r = send(str(tmp_path), [smtp_route(b)], [MSG], args=plain(),
             to=["a@example.com", "b@example.com"])
    assert all(x["code"] == 250 for x in r.rcpts)
    recvs = [e["lines"] for e in b.events() if e["ev"] == "recv"]
    assert all(len(x) == 1 for x in recvs), recvs


def test_client_falls_back_to_helo_when_ehlo_is_refused(tmp_path, backends):
    b = backends(ehlo="502 5.5.2 EHLO not implemented")
    r = send(str(tmp_path), [smtp_route(b)], [MSG], args=plain(["--8bit"]))
    assert r.rcpts[0]["code"] == 250
    cmds = b.commands()
    assert cmds[:2] == ["EHLO relay.test.example", "HELO relay.test.example"]
    # Plain SMTP: no ESMTP parameters at all.
    assert "MAIL FROM:<sender@origin.test>" in cmds
    assert b.messages()[0]["mail_params"] == ""


def test_client_gives_up_when_ehlo_is_refused_temporarily(tmp_path, backends):
    b = backends(ehlo="451 4.3.2 not now")
    r = send(str(tmp_path), [smtp_route(b)], [MSG], args=plain())
    assert r.rcpts == []
    assert (r.end["code"], r.end["dsn"]) == (451, "4.3.2")
    assert "refused EHLO" in r.end["text"]
    assert "HELO relay.test.example" not in b.commands()
    assert b.messages() == []


def test_client_does_not_send_a_message_larger_than_the_server_takes(
        tmp_path, backends):
    b = backends(extensions=["PIPELINING", "SIZE 200"])
    big = MSG + b"x" * 300 + b"\r\n"
    r = send(str(tmp_path), [smtp_route(b)], [big, MSG], args=plain(),
             to=["a@example.com", "b@example.com"])
    first = r.by_rcpt("m1")
    for a in ("a@example.com", "b@example.com"):
        assert first[a]["dsn"] == "5.3.4"
        assert first[a]["code"] >= 500
        assert "exceeds size limit 200" in first[a]["text"]
    # The small one after it goes over the same connection.
    assert all(x["code"] == 250 for x in r.by_rcpt("m2").values())
    mails = [c for c in b.commands() if c.startswith("MAIL")]
    assert mails == ["MAIL FROM:<sender@origin.test> SIZE=%d" % len(MSG)]
    assert b.connections() == 1


def test_client_passes_body_and_dsn_parameters(tmp_path, backends):
    b = backends()
    send(str(tmp_path), [smtp_route(b)], [MSG],
         args=plain(["--8bit", "--ret", "HDRS", "--envid", "QQ+2Bid",
                     "--notify", "SUCCESS,FAILURE",
                     "--orcpt", "rfc822;orig+2Bx@example.com"]))
    [m] = b.messages()
    assert m["mail_params"] == \
        "SIZE=%d BODY=8BITMIME RET=HDRS ENVID=QQ+2Bid" % len(MSG)
    assert m["rcpt_params"] == \
        ["NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;orig+2Bx@example.com"]


def test_client_leaves_out_what_the_server_does_not_offer(tmp_path, backends):
    b = backends(extensions=["PIPELINING"])
    send(str(tmp_path), [smtp_route(b)], [MSG],
         args=plain(["--8bit", "--ret", "FULL", "--envid", "x",
                     "--notify", "NEVER", "--orcpt", "rfc822;o@example.com"]))
    [m] = b.messages()
    assert m["mail_params"] == ""
    assert m["rcpt_params"] == [""]


def test_client_sends_smtputf8_when_offered(tmp_path, backends):
    b = backends()
    r = send(str(tmp_path), [smtp_route(b)], [MSG], args=plain(["--smtputf8"]),
             sender="s\u00e9nder@origin.test")
    assert r.rcpts[0]["code"] == 250
    assert b.messages()[0]["mail_params"].split()[-1] == "SMTPUTF8"


def test_client_fails_an_smtputf8_message_the_server_cannot_take(
        tmp_path, backends):
    # A UTF-8 address needs SMTPUTF8 (all-ASCII mail goes without it:
    # test_downgrade.py).
    b = backends(extensions=["PIPELINING", "8BITMIME"])
    r = send(str(tmp_path), [smtp_route(b)], [MSG, MSG],
             args=plain(["--smtputf8"]), sender="s\u00e9nder@origin.test")
    for x in r.rcpts:
        assert x["dsn"] == "5.6.7" and x["code"] >= 500
        assert "SMTPUTF8 is required" in x["text"]
    assert not any(c.startswith("MAIL") for c in b.commands())
    assert r.end["code"] == 221


def test_client_fails_binarymime_without_chunking(tmp_path, backends):
    b = backends()
    r = send(str(tmp_path), [smtp_route(b)], [MSG], args=plain(["--binary"]))
    assert r.rcpts[0]["dsn"] == "5.6.3"
    assert b.messages() == []


# ---- transactions -------------------------------------------------------

def test_client_sends_rset_and_no_data_when_no_recipient_is_accepted(
        tmp_path, backends):
    b = backends(extensions=["SIZE 100000"],
                 rcpt={"*": "550 5.1.1 nobody here"})
    r = send(str(tmp_path), [smtp_route(b)], [MSG, MSG], args=plain(),
             to=["a@example.com", "b@example.com"])
    assert [x["code"] for x in r.rcpts] == [550] * 4
    cmds = b.commands()
    assert "DATA" not in cmds
    assert cmds.count("RSET") == 2
    assert b.messages() == []


def test_client_resets_after_a_pipelined_transaction_with_no_recipient(
        tmp_path, backends):
    b = backends(rcpt={"*": "550 5.1.1 nobody here"})
    r = send(str(tmp_path), [smtp_route(b)], [MSG, MSG], args=plain())
    assert [x["code"] for x in r.rcpts] == [550, 550]
    assert b.commands().count("RSET") == 2
    assert b.messages() == []
    assert r.end["code"] == 221


def test_client_reports_a_refused_sender_on_every_recipient(tmp_path,
                                                           backends):
    b = backends(mail="451 4.3.2 queue full")
    r = send(str(tmp_path), [smtp_route(b)], [MSG, MSG], args=plain(),
             to=["a@example.com", "b@example.com"])
    assert [(x["code"], x["dsn"]) for x in r.rcpts] == [(451, "4.3.2")] * 4
    assert b.messages() == []
    assert r.end["delivered_msgs"] == 0


def test_client_reports_the_end_of_data_reply(tmp_path, backends):
    b = backends(eod={"*": "554 5.6.0 content rejected"})
    r = send(str(tmp_path), [smtp_route(b)], [MSG], args=plain(),
             to=["a@example.com", "b@example.com"])
    assert [(x["code"], x["dsn"], x["text"]) for x in r.rcpts] == \
        [(554, "5.6.0", "554 5.6.0 content rejected")] * 2
    assert r.end["delivered_msgs"] == 0


def test_client_reports_a_refused_data_command(tmp_path, backends):
    b = backends(data="451 4.3.0 not now")
    r = send(str(tmp_path), [smtp_route(b)], [MSG, MSG], args=plain())
    assert [(x["code"], x["dsn"]) for x in r.rcpts] == [(451, "4.3.0")] * 2
    assert b.commands().count("RSET") == 2


def test_client_sends_several_messages_over_one_connection(tmp_path,
                                                          backends):
    b = backends()
    msgs = [MSG + b"n%d\r\n" % i for i in range(5)]
    r = send(str(tmp_path), [smtp_route(b)], msgs, args=plain())
    assert [x["code"] for x in r.rcpts] == [250] * 5
    assert b.connections() == 1
    assert [m["data"] for m in b.messages()] == msgs
    assert "RSET" not in b.commands()
    assert r.end["delivered_msgs"] == 5


def test_client_quits_after_max_msgs(tmp_path, backends):
    b = backends()
    r = send(str(tmp_path), [smtp_route(b)], [MSG] * 3,
             args=plain(["--max-msgs", "2"]))
    assert len(r.rcpts) == 2
    assert len(b.messages()) == 2
    assert b.commands()[-1] == "QUIT"
    assert r.end["delivered_msgs"] == 2


def test_client_finishes_the_message_then_quits_when_asked(tmp_path,
                                                          backends):
    b = backends()
    r = send(str(tmp_path), [smtp_route(b)], [MSG] * 3,
             args=plain(["--quit-after", "1"]))
    assert len(r.rcpts) == 1 and r.rcpts[0]["code"] == 250
    assert len(b.messages()) == 1
    assert b.commands()[-1] == "QUIT"


def test_client_waits_idle_for_a_wake(tmp_path, backends):
    b = backends()
    r = send(str(tmp_path), [smtp_route(b)], [MSG],
             args=plain(["--idle-first", "500", "--idle", "10"]))
    assert r.rcpts[0]["code"] == 250
    assert b.connections() == 1
    # The message came after the wake, over the connection kept open.
    ev = b.events()
    t_connect = next(e["t"] for e in ev if e["ev"] == "connect")
    t_msg = next(e["t"] for e in ev if e["ev"] == "message")
    assert t_msg - t_connect >= 0.4


def test_client_quits_after_the_idle_timeout(tmp_path, backends):
    b = backends()
    r = send(str(tmp_path), [smtp_route(b)], [MSG], args=plain(["--idle", "1"]))
    assert r.rcpts[0]["code"] == 250
    ev = b.events()
    t_msg = next(e["t"] for e in ev if e["ev"] == "message")
    t_quit = next(e["t"] for e in ev if e.get("line") == "QUIT")
    assert 0.9 <= t_quit - t_msg < 5


# ---- candidates and connection failures ---------------------------------

def test_client_tries_the_next_address_when_one_refuses(tmp_path, backends):
    b = backends()
    dead = free_port()
    r = send(str(tmp_path),
             ["smtp:[127.0.0.1]:%d,[127.0.0.1]:%d" % (dead, b.port)], [MSG],
             args=plain(["--name", "mx.example.com"]))
    assert r.rcpts[0]["code"] == 250
    assert r.rcpts[0]["relay"] == "mx.example.com[127.0.0.1]:%d" % b.port
    assert len(b.messages()) == 1


def test_client_tries_the_next_host_when_one_refuses(tmp_path, backends):
    b = backends()
    dead = free_port()
    r = send(str(tmp_path), ["smtp:[127.0.0.1]:%d" % dead, smtp_route(b)],
             [MSG], args=plain())
    assert r.rcpts[0]["code"] == 250
    assert r.end["connected"] is True


def test_client_reports_the_last_failure_when_every_candidate_fails(
        tmp_path):
    p1, p2 = free_port(), free_port()
    r = send(str(tmp_path),
             ["smtp:[127.0.0.1]:%d,[127.0.0.1]:%d" % (p1, p2)], [MSG],
             args=plain(["--name", "mx.example.com"]))
    assert r.rcpts == []
    assert r.end["connected"] is False
    assert (r.end["code"], r.end["dsn"]) == (0, "4.4.1")
    assert r.end["text"] == \
        "connect to mx.example.com[127.0.0.1]:%d: Connection refused" % p2


def test_client_moves_on_from_a_server_that_refuses_to_talk(tmp_path,
                                                           backends):
    bad = backends(greeting="554 5.3.2 go away")
    busy = backends(greeting="421 4.3.2 too busy")
    good = backends()
    r = send(str(tmp_path),
             [smtp_route(bad), smtp_route(busy), smtp_route(good)], [MSG],
             args=plain())
    assert r.rcpts[0]["code"] == 250
    assert len(good.messages()) == 1
    assert bad.connections() == 1 and busy.connections() == 1


def test_client_reports_a_refused_greeting_as_temporary(tmp_path, backends):
    bad = backends(greeting="554 5.3.2 go away")
    r = send(str(tmp_path), [smtp_route(bad)], [MSG], args=plain())
    assert r.end["connected"] is False
    assert (r.end["code"], r.end["dsn"]) == (0, "4.4.1")
    assert r.end["text"] == ("host 127.0.0.1[127.0.0.1] refused to talk to "
                             "me: 554 5.3.2 go away")


def test_client_times_out_waiting_for_the_greeting(tmp_path, backends):
    slow = backends(stall={"greeting": 30})
    good = backends()
    conf = write_conf(str(tmp_path), command=1)
    r = send(str(tmp_path), [smtp_route(slow), smtp_route(good)], [MSG],
             args=plain(), conf=conf)
    assert r.rcpts[0]["code"] == 250
    assert r.elapsed < 10
    r = send(str(tmp_path), [smtp_route(slow)], [MSG], args=plain(),
             conf=conf)
    assert (r.end["connected"], r.end["code"], r.end["dsn"]) == \
        (False, 0, "4.4.1")
    assert r.end["text"] == ("conversation with 127.0.0.1[127.0.0.1] timed "
                             "out while receiving the initial server "
                             "greeting")
    assert r.elapsed < 10


def test_client_defers_when_the_final_reply_times_out(tmp_path, backends):
    b = backends(stall={"eod": 30})
    conf = write_conf(str(tmp_path), final=1)
    r = send(str(tmp_path), [smtp_route(b)], [MSG], args=plain(), conf=conf,
             to=["a@example.com", "b@example.com"])
    for x in r.rcpts:
        assert (x["code"], x["dsn"]) == (0, "4.4.2")
        assert x["text"] == ("conversation with 127.0.0.1[127.0.0.1] timed "
                             "out while sending end of data")
    assert r.elapsed < 10
    assert len(b.messages()) == 1  # it did arrive; it may come twice


def test_client_defers_when_a_rcpt_reply_times_out(tmp_path, backends):
    b = backends(stall={"rcpt": 30})
    conf = write_conf(str(tmp_path), command=1)
    r = send(str(tmp_path), [smtp_route(b)], [MSG], args=plain(), conf=conf)
    assert (r.rcpts[0]["code"], r.rcpts[0]["dsn"]) == (0, "4.4.2")
    assert "timed out while sending RCPT TO" in r.rcpts[0]["text"]
    assert r.end["connected"] is True


def test_client_defers_when_the_connection_is_lost_at_end_of_data(
        tmp_path, backends):
    b = backends(drop="eod")
    r = send(str(tmp_path), [smtp_route(b)], [MSG], args=plain(
        ["--name", "mx.example.com"]))
    assert (r.rcpts[0]["code"], r.rcpts[0]["dsn"]) == (0, "4.4.2")
    assert r.rcpts[0]["text"] == ("lost connection with "
                                  "mx.example.com[127.0.0.1] while sending "
                                  "end of data")
    assert r.end["dsn"] == "4.4.2"


def test_client_ends_the_session_on_421_at_rcpt(tmp_path, backends):
    b = backends(rcpt={"b@example.com": "421 4.3.2 shutting down"})
    r = send(str(tmp_path), [smtp_route(b)], [MSG, MSG], args=plain(),
             to=["a@example.com", "b@example.com", "c@example.com"])
    # Accepted, rejected-by-421 and never answered: all in flight, all 421.
    assert [(x["rcpt"], x["code"], x["dsn"]) for x in r.rcpts] == \
        [("a@example.com", 421, "4.3.2"), ("b@example.com", 421, "4.3.2"),
         ("c@example.com", 421, "4.3.2")]
    assert (r.end["code"], r.end["dsn"]) == (421, "4.3.2")
    assert b.messages() == []
    assert b.connections() == 1


def test_client_ends_the_session_on_421_at_end_of_data(tmp_path, backends):
    b = backends(eod={"*": "421 4.4.2 timeout, closing"})
    r = send(str(tmp_path), [smtp_route(b)], [MSG, MSG], args=plain())
    assert [(x["qid"], x["code"]) for x in r.rcpts] == [("m1", 421)]
    assert r.end["code"] == 421


def test_client_ends_the_session_on_421_while_idle(tmp_path, backends):
    b = backends(kick=[0.5, "421 4.4.2 idle for too long"])
    r = send(str(tmp_path), [smtp_route(b)], [MSG],
             args=plain(["--idle", "20"]))
    assert r.rcpts[0]["code"] == 250
    assert (r.end["code"], r.end["dsn"]) == (421, "4.4.2")
    assert r.end["delivered_msgs"] == 1
    assert r.elapsed < 10
    assert "QUIT" not in b.commands()


def test_client_names_the_route_in_the_relay(tmp_path, backends):
    b = backends()
    r = send(str(tmp_path), [smtp_route(b)], [MSG], args=plain())
    assert re.fullmatch(r"127\.0\.0\.1\[127\.0\.0\.1\]:\d+",
                        r.rcpts[0]["relay"])
    assert r.end["relay"] == r.rcpts[0]["relay"]
    assert r.rcpts[0]["tls"] is None
    assert os.path.exists(b.logpath)


def test_client_sends_binarymime_as_one_bdat_chunk(tmp_path, backends):
    b = backends(extensions=["PIPELINING", "SIZE 100000", "CHUNKING",
                             "BINARYMIME", "8BITMIME"])
    body = b"Subject: bin\r\n\r\n\x00\xff bare\nLF\r\n.\r\n..\r\nno end"
    r = send(str(tmp_path), [smtp_route(b)], [body, MSG],
             args=plain(["--binary"]))
    assert [x["code"] for x in r.rcpts] == [250, 250]
    m = b.messages()[0]
    # Sent as is: no dot-stuffing, no line end added.
    assert m["data"] == body and m["raw"] == body
    assert m["mail_params"] == "SIZE=%d BODY=BINARYMIME" % len(body)
    assert "BDAT %d LAST" % len(body) in b.commands()
    assert "DATA" not in b.commands()
    assert b.connections() == 1


def test_client_defers_a_malformed_reply(tmp_path, backends):
    b = backends(rcpt={"*": "hello, I am not SMTP"})
    r = send(str(tmp_path), [smtp_route(b)], [MSG], args=plain())
    assert (r.rcpts[0]["code"], r.rcpts[0]["dsn"]) == (0, "4.5.0")
    assert r.rcpts[0]["text"].startswith(
        "malformed reply from 127.0.0.1[127.0.0.1] while sending RCPT TO")
    assert r.end["dsn"] == "4.5.0"
    assert b.messages() == []


def test_client_delivers_to_mxspoold(tmp_path, daemon):
    from smtphelp import spool_body, split_received

    d = daemon().start()
    body = MSG + b".leading dot\r\n"
    r = send(str(tmp_path), ["smtp:[127.0.0.1]:%d" % d.port], [body],
             args=plain(["--8bit"]))
    x = r.rcpts[0]
    assert (x["code"], x["dsn"]) == (250, "2.0.0"), x
    qid = x["text"].rsplit(" ", 1)[1]
    assert d.stop() == 0
    _, rest = split_received(spool_body(d, qid))
    assert rest == body


def test_client_keeps_a_wake_that_comes_from_inside_next(tmp_path, backends):
    b = backends()
    r = send(str(tmp_path), [smtp_route(b)], [MSG],
             args=plain(["--idle-first", "0", "--idle", "3"]))
    assert r.rcpts[0]["code"] == 250
    ev = b.events()
    t_connect = next(e["t"] for e in ev if e["ev"] == "connect")
    t_msg = next(e["t"] for e in ev if e["ev"] == "message")
    # Not after an idle timeout: at once.
    assert t_msg - t_connect < 2
    assert b.connections() == 1
