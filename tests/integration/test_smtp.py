"""The inbound ESMTP server: commands, replies, policy and what is stored.
Every test runs its own mxspoold on a random loopback port."""

import smtplib
import socket
import time

from smtphelp import (code, ehlo, queued_id, send_message, spool_body,
                      spool_envelopes, split_received)

MSG = b"Subject: hello\r\n\r\nHello.\r\n.\r\n"


def test_ehlo_advertises_every_extension(daemon):
    d = daemon().start()
    c = d.connect()
    c.reply()
    r = c.cmd("EHLO client.test")
    assert r[0] == "250-mx.test.example"
    assert [l[4:] for l in r[1:]] == [
        "PIPELINING", "SIZE 26214400", "ENHANCEDSTATUSCODES", "8BITMIME",
        "DSN", "SMTPUTF8", "CHUNKING"]
    assert all(l.startswith("250-") for l in r[:-1])
    assert r[-1].startswith("250 ")


def test_helo_gets_one_line(daemon):
    d = daemon().start()
    c = d.connect()
    c.reply()
    assert c.cmd("HELO client.test") == ["250 mx.test.example"]
    assert c.cmd("helo") == ["501 5.5.4 Syntax: HELO hostname"]
    assert c.cmd("EHLO two words") == ["501 5.5.4 Syntax: EHLO hostname"]


def test_a_message_is_queued_and_stored_byte_exact(daemon):
    d = daemon().start()
    c = ehlo(d)
    body = (b"From: a@sender.test\r\nSubject: dots\r\n\r\n"
            b"..a stuffed dot\r\n...two\r\n.\tx\r\n\xc3\xa9t\xc3\xa9 8-bit\r\n"
            b"\r\n \r\nlast line\r\n")
    stuffed_sent = body + b".\r\n"
    unstuffed = body.replace(b"\r\n..a", b"\r\n.a").replace(
        b"\r\n...two", b"\r\n..two").replace(b"\r\n.\tx", b"\r\n\tx")
    last = send_message(c, stuffed_sent)
    qid = queued_id(last)
    assert len(qid) == 12
    assert c.cmd("QUIT") == ["221 2.0.0 Bye"]
    c.close()
    assert d.stop() == 0
    stored = spool_body(d, qid)
    received, rest = split_received(stored)
    assert rest == unstuffed
    text = received.decode()
    assert text.startswith("Received: from client.test (unknown [127.0.0.1])\r\n"
                           "\tby mx.test.example (mxspool node mx) with ESMTP id %s\r\n"
                           "\tfor <user@example.com>;\r\n\t" % qid)
    # RFC 5322 date: "Tue, 14 Nov 2023 22:13:20 +0000"
    date = text.rsplit("\t", 1)[1].strip()
    time.strptime(date[:-6], "%a, %d %b %Y %H:%M:%S")
    env = spool_envelopes(d)[qid]
    assert env["sender"] == "a@sender.test"
    assert env["client"] == "127.0.0.1"
    assert env["helo"] == "client.test"
    assert env["rcpt"] == ["user@example.com,,0"]
    assert int(env["size"]) == len(stored)
    assert "%s: client=[127.0.0.1]:" % qid in d.log()


def test_dsn_parameters_are_stored(daemon):
    d = daemon().start()
    c = ehlo(d)
    assert c.cmd("MAIL FROM:<a@sender.test> RET=HDRS ENVID=QQ+2B314 "
                 "BODY=8BITMIME") == ["250 2.1.0 Ok"]
    assert c.cmd("RCPT TO:<one@example.com> NOTIFY=SUCCESS,DELAY "
                 "ORCPT=rfc822;one+40example.com") == ["250 2.1.5 Ok"]
    assert c.cmd("RCPT TO:<two@example.com> NOTIFY=NEVER") == ["250 2.1.5 Ok"]
    assert c.cmd("DATA")[0].startswith("354")
    c.send(MSG)
    qid = queued_id(c.reply()[0])
    c.cmd("QUIT")
    c.close()
    d.stop()
    env = spool_envelopes(d)[qid]
    assert env["ret"] == "2"        # RET_HDRS
    assert env["envid"] == "QQ+2B314"
    assert env["body"] == "1"       # BODY_8BITMIME
    assert env["rcpt"] == ["one@example.com,rfc822;one+40example.com,10",
                           "two@example.com,,1"]
    received, _ = split_received(spool_body(d, qid))
    assert b"for <" not in received  # two recipients: no "for"


def test_null_sender_is_accepted(daemon):
    d = daemon().start()
    c = ehlo(d)
    assert c.cmd("MAIL FROM:<>") == ["250 2.1.0 Ok"]
    assert c.cmd("RCPT TO:<user@example.com>") == ["250 2.1.5 Ok"]
    assert c.cmd("DATA")[0].startswith("354")
    c.send(MSG)
    qid = queued_id(c.reply()[0])
    c.close()
    d.stop()
    assert spool_envelopes(d)[qid]["sender"] == ""


def test_smtplib_sends_a_message(daemon):
    d = daemon().start()
    with smtplib.SMTP("127.0.0.1", d.port, timeout=10) as s:
        refused = s.sendmail("a@sender.test", ["user@example.com"],
                             b"Subject: x\r\n\r\nbody\r\n")
        assert refused == {}
    d.stop()
    assert len(spool_envelopes(d)) == 1


def test_pipelined_commands_are_answered_in_order_in_one_write(daemon):
    d = daemon().start()
    c = ehlo(d)
    c.send("MAIL FROM:<a@sender.test>\r\nRCPT TO:<user@example.com>\r\n"
           "RCPT TO:<user@elsewhere.test>\r\nRCPT TO:<two@example.com>\r\n"
           "DATA\r\n")
    time.sleep(0.5)
    c.sock.settimeout(5)
    first = c.sock.recv(65536)
    assert first == (b"250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n"
                     b"554 5.7.1 <user@elsewhere.test>: Relay access denied\r\n"
                     b"250 2.1.5 Ok\r\n354 End data with <CR><LF>.<CR><LF>\r\n")
    # The end of data, a whole second transaction and QUIT in one packet.
    c.send(MSG + b"MAIL FROM:<b@sender.test>\r\nRCPT TO:<user@example.com>\r\n"
           b"DATA\r\n")
    r = [c.reply()[0] for _ in range(4)]
    assert r[0].startswith("250 2.0.0 Ok: queued as ")
    assert r[1:] == ["250 2.1.0 Ok", "250 2.1.5 Ok",
                     "354 End data with <CR><LF>.<CR><LF>"]
    c.send(MSG + b"QUIT\r\n")
    assert c.reply()[0].startswith("250 2.0.0 Ok: queued as ")
    assert c.reply() == ["221 2.0.0 Bye"]
    assert c.closed()
    c.close()
    d.stop()
    assert len(spool_envelopes(d)) == 2


def test_commands_out_of_sequence_get_503(daemon):
    d = daemon().start()
    c = d.connect()
    c.reply()
    assert c.cmd("MAIL FROM:<a@b.test>") == [
        "503 5.5.1 Error: send HELO/EHLO first"]
    assert c.cmd("RCPT TO:<user@example.com>") == [
        "503 5.5.1 Error: need MAIL command"]
    assert c.cmd("DATA") == ["503 5.5.1 Error: need MAIL command"]
    c.cmd("EHLO client.test")
    assert c.cmd("RCPT TO:<user@example.com>") == [
        "503 5.5.1 Error: need MAIL command"]
    assert c.cmd("MAIL FROM:<a@b.test>") == ["250 2.1.0 Ok"]
    assert c.cmd("MAIL FROM:<a@b.test>") == [
        "503 5.5.1 Error: nested MAIL command"]
    assert c.cmd("DATA") == ["554 5.5.1 Error: no valid recipients"]
    assert c.cmd("RSET") == ["250 2.0.0 Ok"]
    assert c.cmd("RCPT TO:<user@example.com>") == [
        "503 5.5.1 Error: need MAIL command"]


def test_syntax_errors_get_500_501_555(daemon):
    d = daemon().start()
    c = ehlo(d)
    assert c.cmd("FROB") == ["500 5.5.2 Error: command not recognized"]
    assert c.cmd("AUTH PLAIN AAAA") == ["500 5.5.2 Error: command not recognized"]
    assert c.cmd("MAIL TO:<a@b.test>") == ["501 5.5.4 Syntax: MAIL FROM:<address>"]
    assert c.cmd("MAIL FROM:<a@b.test") == [
        "501 5.1.7 Bad sender address syntax: bad address"]
    assert c.cmd("MAIL FROM:<a@b.test> FOO=1") == [
        "555 5.5.4 Unsupported parameter FOO"]
    assert c.cmd("MAIL FROM:<a@b.test> SIZE=x") == ["501 5.5.4 Bad SIZE parameter"]
    assert c.cmd("RSET now") == ["501 5.5.4 Syntax: RSET"]
    assert c.cmd("MAIL FROM:<a@b.test>") == ["250 2.1.0 Ok"]
    assert c.cmd("RCPT TO:<user@example.com> NOTIFY=SOMETIMES") == [
        "501 5.5.4 Bad NOTIFY parameter"]
    assert c.cmd("RCPT TO:<user@example.com> BODY=7BIT") == [
        "555 5.5.4 Unsupported parameter BODY"]
    assert c.cmd("RCPT TO:user") == [
        "501 5.1.3 Bad recipient address syntax: domain name required"]
    assert c.cmd("DATA now") == ["501 5.5.4 Syntax: DATA"]
    assert c.cmd("BDAT x") == ["501 5.5.4 Syntax: BDAT size [LAST]"]
    # An unframed chunk cannot be skipped: 421, then the close.
    assert c.reply() == ["421 4.5.0 mx.test.example Error: BDAT chunk size "
                         "unknown; closing connection"]
    assert c.closed()


def test_every_reply_has_an_enhanced_status_code(daemon):
    d = daemon().start()
    c = ehlo(d)
    for cmd in ["NOOP", "RSET", "VRFY user", "HELP", "FROB", "MAIL x",
                "RCPT TO:<a@example.com>", "DATA", "EXPN list", "VRFY"]:
        r = c.cmd(cmd)[-1]
        parts = r.split(" ")
        assert parts[1][0] == parts[0][0] and parts[1].count(".") == 2, r


def test_vrfy_reveals_nothing_and_help_and_noop_answer(daemon):
    d = daemon().start()
    c = ehlo(d)
    assert code(c.cmd("VRFY user@example.com")) == "252 2.0.0"
    assert code(c.cmd("VRFY nobody")) == "252 2.0.0"
    assert c.cmd("VRFY") == ["501 5.5.4 Syntax: VRFY address"]
    assert code(c.cmd("HELP")) == "214 2.0.0"
    assert c.cmd("noop") == ["250 2.0.0 Ok"]
    assert c.cmd("NoOp with an argument") == ["250 2.0.0 Ok"]
    assert code(c.cmd("EXPN staff")) == "502 5.5.1"


def test_web_requests_are_told_off_and_closed(daemon):
    d = daemon().start()
    c = d.connect()
    c.reply()
    assert code(c.cmd("GET / HTTP/1.0")) == "521 5.7.0"
    assert c.closed()


def test_recipients_outside_relay_domains_are_denied(daemon):
    d = daemon(relay_domains=("example.com", ".sub.example.org")).start()
    c = ehlo(d)
    c.cmd("MAIL FROM:<a@sender.test>")
    assert c.cmd("RCPT TO:<user@other.test>") == [
        "554 5.7.1 <user@other.test>: Relay access denied"]
    assert c.cmd("RCPT TO:<user@example.com.other.test>") == [
        "554 5.7.1 <user@example.com.other.test>: Relay access denied"]
    assert c.cmd("RCPT TO:<user@sub.example.org>") == [
        "554 5.7.1 <user@sub.example.org>: Relay access denied"]
    assert c.cmd("RCPT TO:<User@EXAMPLE.Com>") == ["250 2.1.5 Ok"]
    assert c.cmd("RCPT TO:<user@a.SUB.example.org>") == ["250 2.1.5 Ok"]


def test_relay_tricks_are_refused(daemon):
    d = daemon().start()
    c = ehlo(d)
    c.cmd("MAIL FROM:<a@sender.test>")
    for rcpt, want in [
            ("<@example.com:user@other.test>",
             "553 5.1.3 Source routes are not accepted"),
            ("<user%other.test@example.com>",
             "553 5.1.3 % and ! in addresses are not accepted"),
            ("<other.test!user@example.com>",
             "553 5.1.3 % and ! in addresses are not accepted"),
            ('<"user@other.test"@example.com>',
             "553 5.1.3 @, % and ! in quoted local parts are not accepted"),
            ("<user@[127.0.0.1]>",
             "553 5.1.3 Address literals are not accepted"),
            ("<>", "501 5.1.3 Bad recipient address syntax: empty address")]:
        assert c.cmd("RCPT TO:" + rcpt) == [want], rcpt
    assert c.cmd("DATA") == ["554 5.5.1 Error: no valid recipients"]


def test_unknown_recipients_get_550_when_a_list_is_configured(daemon, tmp_path):
    lst = tmp_path / "rcpts"
    lst.write_text("# the known\nalice@example.com\nbob\n")
    d = daemon(extra='domain "example.com" { recipients = "%s" }\n' % lst)
    d.start()
    c = ehlo(d)
    c.cmd("MAIL FROM:<a@sender.test>")
    assert c.cmd("RCPT TO:<Alice@Example.com>") == ["250 2.1.5 Ok"]
    assert c.cmd("RCPT TO:<bob@example.com>") == ["250 2.1.5 Ok"]
    assert c.cmd("RCPT TO:<mallory@example.com>") == [
        "550 5.1.1 <mallory@example.com>: Recipient address rejected: "
        "User unknown in relay recipient table"]


def test_too_many_recipients_get_452(daemon):
    d = daemon(extra="max_recipients = 3\n").start()
    c = ehlo(d)
    c.cmd("MAIL FROM:<a@sender.test>")
    for i in range(3):
        assert c.cmd("RCPT TO:<u%d@example.com>" % i) == ["250 2.1.5 Ok"]
    assert c.cmd("RCPT TO:<u9@example.com>") == [
        "452 4.5.3 Error: too many recipients"]
    assert c.cmd("DATA")[0].startswith("354")
    c.send(MSG)
    qid = queued_id(c.reply()[0])
    c.close()
    d.stop()
    assert len(spool_envelopes(d)[qid]["rcpt"]) == 3


def test_size_is_advertised_and_enforced(daemon):
    d = daemon(extra="message_size_limit = 1k\n").start()
    c = d.connect()
    c.reply()
    assert "250-SIZE 1024" in c.cmd("EHLO client.test")
    assert c.cmd("MAIL FROM:<a@sender.test> SIZE=1025") == [
        "552 5.3.4 Message size exceeds fixed limit"]
    assert c.cmd("MAIL FROM:<a@sender.test> SIZE=1024") == ["250 2.1.0 Ok"]
    c.cmd("RCPT TO:<user@example.com>")
    c.cmd("DATA")
    c.send(b"x" * 998 + b"\r\n" + b"y" * 100 + b"\r\n.\r\n")
    assert c.reply() == ["552 5.3.4 Message size exceeds fixed limit"]
    # The session goes on; a message of exactly the limit is taken.
    body = b"z" * 1022 + b"\r\n"
    assert len(body) == 1024
    last = send_message(c, body + b".\r\n")
    qid = queued_id(last)
    c.close()
    d.stop()
    assert split_received(spool_body(d, qid))[1] == body
    assert len(spool_envelopes(d)) == 1


def test_smtputf8_addresses_need_the_parameter(daemon):
    d = daemon().start()
    c = ehlo(d)
    assert c.cmd("MAIL FROM:<j\u00f6rg@sender.test>") == [
        "553 5.6.7 UTF-8 address without SMTPUTF8"]
    assert c.cmd("MAIL FROM:<j\u00f6rg@sender.test> SMTPUTF8") == ["250 2.1.0 Ok"]
    assert c.cmd("RCPT TO:<\u00e9l\u00e8ve@example.com>") == ["250 2.1.5 Ok"]
    c.cmd("DATA")
    c.send(MSG)
    qid = queued_id(c.reply()[0])
    c.close()
    d.stop()
    env = spool_envelopes(d)[qid]
    assert env["sender"] == "j\u00f6rg@sender.test"
    assert env["flags"] == "2"  # ENV_SMTPUTF8
    assert b" with UTF8SMTP id " in spool_body(d, qid)


def test_too_many_hops_get_554(daemon):
    d = daemon(extra="max_hops = 3\n").start()
    c = ehlo(d)
    hops3 = b"Received: from a\r\nReceived: from b\r\nreceived: from c\r\n"
    assert send_message(c, hops3 + b"Subject: 3\r\n\r\nx\r\n.\r\n") \
        .startswith("250 2.0.0 Ok: queued as ")
    last = send_message(c, hops3 + b"Received: from d\r\n\tby e\r\n"
                        b"Subject: 4\r\n\r\nx\r\n.\r\n")
    assert last == "554 5.4.6 Too many hops"
    # Received lines in the body do not count.
    assert send_message(c, b"Subject: 0\r\n\r\n" + hops3 * 3 + b".\r\n") \
        .startswith("250 2.0.0 Ok: queued as ")
    c.close()
    d.stop()
    assert len(spool_envelopes(d)) == 2


def test_long_text_lines_are_kept_unchanged(daemon):
    d = daemon().start()
    c = ehlo(d)
    body = b"Subject: long\r\n\r\n" + b"w" * 5000 + b"\r\n"
    qid = queued_id(send_message(c, body + b".\r\n"))
    c.close()
    d.stop()
    assert split_received(spool_body(d, qid))[1] == body


def test_bdat_chunks_are_stored_without_unstuffing(daemon):
    d = daemon().start()
    c = ehlo(d)
    c.cmd("MAIL FROM:<a@sender.test>")
    c.cmd("RCPT TO:<user@example.com>")
    part1 = b"Subject: chunks\r\n\r\n.a dot stays\r\n"
    part2 = b".\r\nstill data\r\n"
    c.send(b"BDAT %d\r\n" % len(part1) + part1)
    assert c.reply() == ["250 2.0.0 %d octets received" % len(part1)]
    assert c.cmd("DATA") == ["503 5.5.1 Error: DATA inside a BDAT transaction"]
    c.send(b"BDAT %d LAST\r\n" % len(part2) + part2)
    qid = queued_id(c.reply()[0])
    # BDAT 0 LAST alone ends a message too.
    c.cmd("MAIL FROM:<a@sender.test>")
    c.cmd("RCPT TO:<user@example.com>")
    c.send(b"BDAT 5\r\nab\r\nc")
    assert c.reply()[0].startswith("250 2.0.0 5 octets")
    c.send(b"BDAT 0 LAST\r\n")
    qid2 = queued_id(c.reply()[0])
    c.close()
    d.stop()
    assert split_received(spool_body(d, qid))[1] == part1 + part2
    received, rest = split_received(spool_body(d, qid2))
    assert rest == b"ab\r\nc"


def test_bdat_out_of_sequence_reads_and_refuses_the_chunk(daemon):
    d = daemon().start()
    c = ehlo(d)
    # The chunk holds something that looks like commands: never run.
    chunk = b"MAIL FROM:<evil@x.test>\r\nRCPT TO:<user@example.com>\r\n"
    c.send(b"BDAT %d LAST\r\n" % len(chunk) + chunk)
    assert c.reply() == ["503 5.5.1 Error: need MAIL and RCPT commands"]
    c.cmd("MAIL FROM:<a@sender.test>")
    c.send(b"BDAT %d LAST\r\n" % len(chunk) + chunk)
    assert c.reply() == ["554 5.5.1 Error: no valid recipients"]
    assert c.cmd("RCPT TO:<user@example.com>") == [
        "503 5.5.1 Error: need MAIL command"]
    assert c.cmd("NOOP") == ["250 2.0.0 Ok"]
    c.close()
    d.stop()
    assert spool_envelopes(d) == {}


def test_bdat_over_the_size_limit_gets_552(daemon):
    d = daemon(extra="message_size_limit = 1k\n").start()
    c = ehlo(d)
    c.cmd("MAIL FROM:<a@sender.test>")
    c.cmd("RCPT TO:<user@example.com>")
    c.send(b"BDAT 1000\r\n" + b"a" * 1000)
    assert c.reply()[0].startswith("250 ")
    c.send(b"BDAT 100\r\n" + b"b" * 100)
    assert c.reply() == ["552 5.3.4 Message size exceeds fixed limit"]
    c.send(b"BDAT 10 LAST\r\n" + b"c" * 10)
    assert c.reply() == ["552 5.3.4 Message size exceeds fixed limit"]
    assert c.cmd("MAIL FROM:<a@sender.test>") == ["250 2.1.0 Ok"]
    c.close()
    d.stop()
    assert spool_envelopes(d) == {}


def test_overlong_command_split_over_packets_gets_500_and_session_goes_on(daemon):
    d = daemon().start()
    c = ehlo(d)
    c.send("NOOP " + "x" * 400)
    time.sleep(0.2)
    c.send("x" * 400)
    time.sleep(0.2)
    c.send("x" * 400 + "\r\n")
    assert c.reply() == ["500 5.5.6 Error: line too long"]
    assert c.cmd("NOOP " + "x" * 505) == ["250 2.0.0 Ok"]  # 512 with CRLF
    assert c.cmd("NOOP " + "x" * 506) == ["500 5.5.6 Error: line too long"]
    assert c.cmd("NOOP") == ["250 2.0.0 Ok"]


def test_nul_in_a_command_gets_500(daemon):
    d = daemon().start()
    c = ehlo(d)
    assert c.cmd("MAIL FROM:<a@b.test>\0") == [
        "500 5.5.2 Error: NUL character in command"]
    assert c.cmd("MAIL FROM:<a@b.test>") == ["250 2.1.0 Ok"]


def test_too_many_errors_disconnect(daemon):
    d = daemon(extra="max_errors = 3\n").start()
    c = ehlo(d)
    assert code(c.cmd("FROB")) == "500 5.5.2"
    assert code(c.cmd("FROB")) == "500 5.5.2"
    c.send("FROB\r\n")
    assert code(c.reply()) == "500 5.5.2"
    assert c.reply() == ["421 4.7.0 mx.test.example Error: too many errors"]
    assert c.closed()


def test_a_full_spool_gets_452_and_nothing_is_acknowledged(daemon):
    d = daemon(extra="spool_min_free = 1024T\n").start()
    c = ehlo(d)
    assert send_message(c, MSG) == "452 4.3.1 Insufficient system storage"
    # The transaction is over; the session is not.
    assert c.cmd("RCPT TO:<user@example.com>") == [
        "503 5.5.1 Error: need MAIL command"]
    assert c.cmd("NOOP") == ["250 2.0.0 Ok"]
    c.close()
    d.stop()
    assert spool_envelopes(d) == {}
    assert "spool full: 452 to [127.0.0.1]" in d.log()


def test_a_half_closed_client_still_gets_every_reply(daemon):
    d = daemon().start()
    c = ehlo(d)
    c.send(b"MAIL FROM:<a@sender.test>\r\nRCPT TO:<user@example.com>\r\n"
           b"DATA\r\n")
    assert [c.reply()[0] for _ in range(3)][2].startswith("354")
    c.send(MSG + b"QUIT\r\n")
    c.sock.shutdown(socket.SHUT_WR)
    assert c.reply()[0].startswith("250 2.0.0 Ok: queued as ")
    assert c.reply() == ["221 2.0.0 Bye"]
    assert c.closed()
    # Without QUIT too: the replies come, then the server closes.
    c = ehlo(d)
    c.send(b"NOOP\r\nMAIL FROM:<a@sender.test>\r\n")
    c.sock.shutdown(socket.SHUT_WR)
    assert c.reply() == ["250 2.0.0 Ok"]
    assert c.reply() == ["250 2.1.0 Ok"]
    assert c.closed()
    d.stop()
    assert len(spool_envelopes(d)) == 1
