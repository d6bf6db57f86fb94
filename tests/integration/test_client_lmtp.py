"""The outbound client speaking LMTP (RFC 2033) to the backend, over TCP
and over a unix socket: LHLO, and one reply per accepted recipient after
the data."""

import os

import pytest

from backend import MSG, Backend, lmtp_route, send

RCPTS = ["ok@example.com", "gone@example.com", "full@example.com",
         "refused@example.com", "ok2@example.com"]


@pytest.fixture
def backends(tmp_path):
    made = []

    def make(**kw):
        kw.setdefault("name", "l%d" % len(made))
        b = Backend(str(tmp_path), lmtp=True, **kw).start()
        made.append(b)
        return b

    yield make
    for b in made:
        b.stop()


def mixed(**kw):
    return dict(eod={"gone@example.com": "550 5.1.1 no such mailbox",
                     "full@example.com": "452 4.2.2 mailbox full"},
                rcpt={"refused@example.com": "550 5.7.1 not here"}, **kw)


@pytest.mark.parametrize("unix", [False, True], ids=["tcp", "unix"])
def test_lmtp_reports_each_recipient_after_the_data(tmp_path, backends,
                                                    unix):
    b = backends(unix=unix, **mixed())
    r = send(str(tmp_path), [lmtp_route(b)], [MSG], to=RCPTS,
             args=["--tls", "none"])
    res = {a: (x["code"], x["dsn"]) for a, x in r.by_rcpt().items()}
    assert res == {"ok@example.com": (250, "2.0.0"),
                   "gone@example.com": (550, "5.1.1"),
                   "full@example.com": (452, "4.2.2"),
                   "refused@example.com": (550, "5.7.1"),
                   "ok2@example.com": (250, "2.0.0")}
    assert r.by_rcpt()["full@example.com"]["text"] == \
        "452 4.2.2 mailbox full"
    cmds = b.commands()
    assert cmds[0] == "LHLO relay.test.example"
    assert "EHLO relay.test.example" not in cmds
    [m] = b.messages()
    assert m["data"] == MSG
    assert m["rcpts"] == ["ok@example.com", "gone@example.com",
                          "full@example.com", "ok2@example.com"]
    assert r.end["code"] == 221 and r.end["delivered_msgs"] == 1
    if unix:
        assert r.rcpts[0]["relay"] == b.path


def test_lmtp_sends_several_messages_over_one_connection(tmp_path, backends):
    b = backends(unix=True)
    msgs = [MSG + b".%d\r\n" % i for i in range(3)]
    r = send(str(tmp_path), [lmtp_route(b)], msgs,
             to=["a@example.com", "b@example.com"], args=["--tls", "none"])
    assert [x["code"] for x in r.rcpts] == [250] * 6
    assert b.connections() == 1
    assert [m["data"] for m in b.messages()] == msgs


def test_lmtp_does_not_fall_back_to_helo(tmp_path, backends):
    b = backends(ehlo="500 5.5.1 go away")
    r = send(str(tmp_path), [lmtp_route(b)], [MSG], args=["--tls", "none"])
    assert r.rcpts == []
    assert (r.end["code"], r.end["dsn"]) == (500, "5.5.1")
    assert "refused LHLO" in r.end["text"]
    assert not any(c.startswith("HELO") for c in b.commands())


def test_lmtp_reports_a_missing_socket_as_temporary(tmp_path):
    path = os.path.join(str(tmp_path), "nothing.sock")
    r = send(str(tmp_path), ["lmtp:unix:" + path], [MSG],
             args=["--tls", "none"])
    assert r.rcpts == []
    assert (r.end["connected"], r.end["code"], r.end["dsn"]) == \
        (False, 0, "4.4.1")
    assert r.end["text"] == \
        "connect to %s: No such file or directory" % path


def test_lmtp_defers_the_rest_when_the_store_dies_between_replies(
        tmp_path, backends):
    b = backends(eod={"b@example.com": "421 4.3.2 shutting down"})
    r = send(str(tmp_path), [lmtp_route(b)], [MSG],
             to=["a@example.com", "b@example.com", "c@example.com"],
             args=["--tls", "none"])
    res = {a: (x["code"], x["dsn"]) for a, x in r.by_rcpt().items()}
    assert res == {"a@example.com": (250, "2.0.0"),
                   "b@example.com": (421, "4.3.2"),
                   "c@example.com": (421, "4.3.2")}
    assert r.end["code"] == 421


def test_lmtp_defers_everyone_when_the_connection_drops_at_end_of_data(
        tmp_path, backends):
    b = backends(unix=True, drop="eod")
    r = send(str(tmp_path), [lmtp_route(b)], [MSG],
             to=["a@example.com", "b@example.com"], args=["--tls", "none"])
    for x in r.rcpts:
        assert (x["code"], x["dsn"]) == (0, "4.4.2")
        assert x["text"] == ("lost connection with %s while sending end of "
                             "data" % b.path)
