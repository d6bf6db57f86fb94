"""STARTTLS in the outbound client: the policies none, may, encrypt and
verify against the backend, with a CA and certificates each test makes."""

import pytest

from backend import MSG, Backend, make_ca, make_cert, send, smtp_route


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    d = str(tmp_path_factory.mktemp("pki"))
    ca = make_ca(d)
    return {"ca": ca, "cert": make_cert(d, ca, "store.test.example"),
            "dir": d}


@pytest.fixture
def backends(tmp_path):
    made = []

    def make(**kw):
        kw.setdefault("name", "t%d" % len(made))
        b = Backend(str(tmp_path), **kw).start()
        made.append(b)
        return b

    yield make
    for b in made:
        b.stop()


def tls_args(policy, pki=None, name="store.test.example", extra=()):
    a = ["--tls", policy, "--name", name]
    if pki is not None:
        a += ["--ca", pki["ca"][0]]
    return a + list(extra)


def test_may_uses_starttls_when_offered(tmp_path, backends, pki):
    b = backends(tls=pki["cert"])
    r = send(str(tmp_path), [smtp_route(b)], [MSG], args=tls_args("may"))
    assert r.rcpts[0]["code"] == 250
    assert r.rcpts[0]["tls"].startswith("TLSv1.")
    [m] = b.messages()
    assert m["tls"] is True and m["data"] == MSG
    cmds = b.commands()
    # EHLO again after the handshake (RFC 3207 4.2).
    assert cmds[:3] == ["EHLO relay.test.example", "STARTTLS",
                        "EHLO relay.test.example"]


def test_may_sends_in_clear_when_starttls_is_not_offered(tmp_path, backends):
    b = backends()
    r = send(str(tmp_path), [smtp_route(b)], [MSG], args=tls_args("may"))
    assert r.rcpts[0]["code"] == 250 and r.rcpts[0]["tls"] is None
    assert b.messages()[0]["tls"] is False


def test_none_never_starts_tls(tmp_path, backends, pki):
    b = backends(tls=pki["cert"])
    r = send(str(tmp_path), [smtp_route(b)], [MSG], args=tls_args("none"))
    assert r.rcpts[0]["code"] == 250
    assert "STARTTLS" not in b.commands()


def test_may_goes_on_in_clear_when_starttls_is_refused(tmp_path, backends,
                                                      pki):
    b = backends(tls=pki["cert"], starttls="454 4.7.0 TLS not available")
    r = send(str(tmp_path), [smtp_route(b)], [MSG], args=tls_args("may"))
    assert r.rcpts[0]["code"] == 250
    assert b.messages()[0]["tls"] is False


def test_may_retries_without_tls_after_a_failed_handshake(tmp_path,
                                                         backends, pki):
    # The backend says 220 but never starts TLS: the handshake fails.
    b = backends(tls=pki["cert"], starttls="220 2.0.0 go ahead (not really)")
    r = send(str(tmp_path), [smtp_route(b)], [MSG], args=tls_args("may"))
    assert r.rcpts[0]["code"] == 250 and r.rcpts[0]["tls"] is None
    assert b.connections() == 2
    [m] = b.messages()
    assert m["tls"] is False and m["conn"] == 2
    assert b.commands().count("STARTTLS") == 1


def test_encrypt_fails_the_session_when_starttls_is_not_offered(
        tmp_path, backends):
    b = backends()
    r = send(str(tmp_path), [smtp_route(b)], [MSG], args=tls_args("encrypt"))
    assert r.rcpts == []
    assert (r.end["code"], r.end["dsn"]) == (0, "4.7.4")
    assert r.end["text"] == ("TLS is required, but was not offered by host "
                             "store.test.example[127.0.0.1]")
    assert not any(c.startswith("MAIL") for c in b.commands())
    assert b.messages() == []


def test_encrypt_fails_when_starttls_is_refused(tmp_path, backends, pki):
    b = backends(tls=pki["cert"], starttls="454 4.7.0 TLS not available")
    r = send(str(tmp_path), [smtp_route(b)], [MSG], args=tls_args("encrypt"))
    assert r.end["dsn"] == "4.7.4"
    assert b.messages() == []


def test_encrypt_fails_when_the_handshake_fails(tmp_path, backends, pki):
    b = backends(tls=pki["cert"], starttls="220 2.0.0 go ahead (not really)")
    r = send(str(tmp_path), [smtp_route(b)], [MSG], args=tls_args("encrypt"))
    assert (r.end["code"], r.end["dsn"]) == (0, "4.7.5")
    assert r.end["text"].startswith("TLS handshake failed")
    assert b.connections() == 1 and b.messages() == []


def test_encrypt_takes_any_certificate(tmp_path, backends, pki):
    b = backends(tls=pki["cert"])
    r = send(str(tmp_path), [smtp_route(b)], [MSG],
             args=tls_args("encrypt", name="not.the.name"))
    assert r.rcpts[0]["code"] == 250 and r.rcpts[0]["tls"]
    assert b.messages()[0]["tls"] is True


def test_verify_accepts_the_right_name_from_the_ca(tmp_path, backends, pki):
    b = backends(tls=pki["cert"])
    r = send(str(tmp_path), [smtp_route(b)], [MSG],
             args=tls_args("verify", pki))
    assert r.rcpts[0]["code"] == 250 and r.rcpts[0]["tls"]
    assert b.messages()[0]["tls"] is True


def test_verify_accepts_an_address_literal_in_the_certificate(
        tmp_path, backends, pki):
    b = backends(tls=pki["cert"])
    r = send(str(tmp_path), [smtp_route(b)], [MSG],
             args=["--tls", "verify", "--ca", pki["ca"][0]])
    assert r.rcpts[0]["code"] == 250


def test_verify_refuses_a_wrong_name_temporarily(tmp_path, backends, pki):
    b = backends(tls=pki["cert"])
    r = send(str(tmp_path), [smtp_route(b)], [MSG],
             args=tls_args("verify", pki, name="wrong.test.example"))
    assert r.rcpts == []
    assert (r.end["code"], r.end["dsn"]) == (0, "4.7.5")
    assert "certificate not verified" in r.end["text"]
    assert "mismatch" in r.end["text"]
    assert b.messages() == []
    assert not any(c.startswith("MAIL") for c in b.commands())


def test_verify_refuses_a_certificate_from_an_unknown_ca(tmp_path, backends,
                                                        pki):
    other = make_ca(str(tmp_path), "Other CA")
    b = backends(tls=pki["cert"])
    r = send(str(tmp_path), [smtp_route(b)], [MSG],
             args=["--tls", "verify", "--name", "store.test.example",
                   "--ca", other[0]])
    assert r.end["dsn"] == "4.7.5"
    assert "certificate not verified" in r.end["text"]
    assert b.messages() == []


def test_verify_reports_an_unreadable_ca_file(tmp_path, backends, pki):
    b = backends(tls=pki["cert"])
    r = send(str(tmp_path), [smtp_route(b)], [MSG],
             args=["--tls", "verify", "--name", "store.test.example",
                   "--ca", str(tmp_path / "missing.pem")])
    assert r.end["dsn"] == "4.7.5"
    assert "CA file" in r.end["text"]
    assert b.messages() == []
