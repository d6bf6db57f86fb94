"""dns/ against a real DNS server: dnsmasq on a random loopback port with
records each test writes, driven through mxroute (tests/tools/mxroute.c),
which prints the routing decision as JSON. This host is mx2.example.test
(its hostname, so its default mx_self_names)."""

import os
import time

import pytest

from dnsmasq import (Dnsmasq, MxrouteSession, RcodeServer, SilentServer,
                     mxroute, query, write_conf)


@pytest.fixture
def servers():
    """Starts servers and stops every one of them after the test."""
    made = []

    def start(server):
        made.append(server)
        if isinstance(server, Dnsmasq):
            server.start()
        return server

    yield start
    for s in made:
        s.stop()


# Records shared by most tests (preferences, this host, families, loop).
RECORDS = [
    # Two MX at 10 and one at 20: all are better than nothing.
    "--mx-host=multi.test,mxa.multi.test,10",
    "--mx-host=multi.test,mxb.multi.test,10",
    "--mx-host=multi.test,mxc.multi.test,20",
    "--host-record=mxa.multi.test,203.0.113.1",
    "--host-record=mxb.multi.test,203.0.113.2",
    "--host-record=mxc.multi.test,203.0.113.3",
    # This host is a backup (20): only the primary (10) is left.
    "--mx-host=backup.test,primary.backup.test,10",
    "--mx-host=backup.test,mx2.example.test,20",
    "--mx-host=backup.test,peer.backup.test,20",
    "--mx-host=backup.test,tertiary.backup.test,30",
    "--host-record=primary.backup.test,203.0.113.10,2001:db8::10",
    "--host-record=peer.backup.test,203.0.113.11",
    "--host-record=tertiary.backup.test,203.0.113.12",
    # This host is the best MX: a loop.
    "--mx-host=loop.test,mx2.example.test,10",
    "--mx-host=loop.test,other.loop.test,20",
    "--host-record=other.loop.test,203.0.113.20",
    # The best MX resolves to a local address: a loop found by address.
    "--mx-host=local.test,alias.local.test,10",
    "--mx-host=local.test,worse.local.test,20",
    "--host-record=alias.local.test,127.0.0.1",
    "--host-record=worse.local.test,203.0.113.21",
    # No MX: the domain's own addresses.
    "--host-record=implicit.test,203.0.113.30,2001:db8::30",
    # Null MX (RFC 7505).
    "--mx-host=nullmx.test,.,0",
    # One family each.
    "--mx-host=family.test,v6only.family.test,10",
    "--mx-host=family.test,v4only.family.test,10",
    "--host-record=v6only.family.test,2001:db8::40",
    "--host-record=v4only.family.test,203.0.113.40",
    "--mx-host=dual.test,both.dual.test,10",
    "--host-record=both.dual.test,203.0.113.50,2001:db8::50",
    # One MX host has no address at all.
    "--mx-host=broken.test,gone.broken.test,10",
    "--mx-host=broken.test,ok.broken.test,20",
    "--host-record=ok.broken.test,203.0.113.60",
    # Every MX host is missing.
    "--mx-host=allgone.test,gone.allgone.test,10",
    # Clients with PTR records (host-record makes them), and one whose PTR
    # name does not resolve back to it.
    "--host-record=client.test,127.0.0.7",
    "--host-record=client6.test,2001:db8::77",
    "--ptr-record=8.0.0.127.in-addr.arpa,liar.test",
    "--host-record=liar.test,203.0.113.99",
]


def names(ans):
    return [c["name"] for c in ans["candidates"]]


def dropped(ans):
    return {d["name"]: d["why"] for d in ans["dropped"]}


@pytest.fixture
def dnsmasq(servers, tmp_path):
    # Unknown names in .test and 127.x reverse names are NXDOMAIN.
    return servers(Dnsmasq(tmp_path, RECORDS,
                           local=("test", "127.in-addr.arpa")))


def test_equal_preferences_are_shuffled_and_worse_ones_follow(dnsmasq,
                                                              tmp_path):
    conf = write_conf(tmp_path, [dnsmasq.port])
    out, _ = mxroute(conf, *["multi.test"] * 60)
    firsts = set()
    for ans in out:
        assert ans["status"] == "ok"
        assert ans["dsn"] == "2.0.0"
        assert sorted(names(ans)[:2]) == ["mxa.multi.test", "mxb.multi.test"]
        assert names(ans)[2] == "mxc.multi.test"
        assert [c["pref"] for c in ans["candidates"]] == [10, 10, 20]
        assert all(c["port"] == 25 for c in ans["candidates"])
        firsts.add(names(ans)[0])
    # 60 fair coin flips all landing the same way: about 1e-18.
    assert firsts == {"mxa.multi.test", "mxb.multi.test"}


def test_backup_mx_hands_mail_only_to_better_mxes(dnsmasq, tmp_path):
    conf = write_conf(tmp_path, [dnsmasq.port])
    (ans,), _ = mxroute(conf, "backup.test")
    assert ans["status"] == "ok"
    assert names(ans) == ["primary.backup.test"]
    assert ans["candidates"][0]["addresses"] == ["203.0.113.10", "2001:db8::10"]
    why = dropped(ans)
    assert why["mx2.example.test"] == "is this host (a name in mx_self_names)"
    assert why["peer.backup.test"] == \
        "preference 20 is not better than this host's 20"
    assert why["tertiary.backup.test"] == \
        "preference 30 is not better than this host's 20"


def test_mx_self_names_replace_the_hostname(dnsmasq, tmp_path):
    conf = write_conf(tmp_path, [dnsmasq.port],
                      'mx_self_names = {"peer.backup.test"}\n')
    (ans,), _ = mxroute(conf, "backup.test")
    # mx2.example.test is no longer us, but peer (20) is: same result set
    # for 10, and mx2 is dropped only as "not better".
    assert names(ans) == ["primary.backup.test"]
    assert dropped(ans)["mx2.example.test"].startswith("preference 20")
    assert dropped(ans)["peer.backup.test"].startswith("is this host")


def test_best_mx_being_this_host_defers_as_a_loop(dnsmasq, tmp_path):
    conf = write_conf(tmp_path, [dnsmasq.port])
    (ans,), err = mxroute(conf, "loop.test")
    assert ans["status"] == "tempfail"
    assert ans["dsn"] == "4.4.6"
    assert ans["loop"] is True
    assert ans["reason"] == "mail for loop.test loops back to myself"
    assert ans["candidates"] == []
    assert set(dropped(ans)) == {"mx2.example.test", "other.loop.test"}
    assert "mail for loop.test loops back to myself" in err


def test_best_mx_with_a_local_address_is_a_loop(dnsmasq, tmp_path):
    conf = write_conf(tmp_path, [dnsmasq.port])
    (ans,), _ = mxroute(conf, "local.test")
    assert ans["status"] == "tempfail"
    assert ans["loop"] is True
    assert dropped(ans)["alias.local.test"] == \
        "is this host (its address 127.0.0.1 is local)"


def test_domain_without_mx_uses_its_own_addresses(dnsmasq, tmp_path):
    conf = write_conf(tmp_path, [dnsmasq.port])
    (ans,), _ = mxroute(conf, "implicit.test")
    assert ans["status"] == "ok"
    assert ans["implicit_mx"] is True
    assert names(ans) == ["implicit.test"]
    assert ans["candidates"][0]["addresses"] == ["203.0.113.30", "2001:db8::30"]


def test_null_mx_fails_permanently_with_5_1_10(dnsmasq, tmp_path):
    conf = write_conf(tmp_path, [dnsmasq.port])
    (ans,), _ = mxroute(conf, "nullmx.test")
    assert ans["status"] == "permfail"
    assert ans["dsn"] == "5.1.10"
    assert "null MX" in ans["reason"]
    assert ans["candidates"] == []


def test_nxdomain_fails_permanently_with_5_1_2(dnsmasq, tmp_path):
    conf = write_conf(tmp_path, [dnsmasq.port])
    (ans,), _ = mxroute(conf, "nosuch.test")
    assert ans["status"] == "permfail"
    assert ans["dsn"] == "5.1.2"
    assert "NXDOMAIN" in ans["reason"]


def test_refused_is_a_temporary_failure(dnsmasq, tmp_path):
    conf = write_conf(tmp_path, [dnsmasq.port])
    # dnsmasq has no upstream: names outside .test are REFUSED.
    (ans,), _ = mxroute(conf, "example.org")
    assert ans["status"] == "tempfail"
    assert ans["dsn"] == "4.4.3"


def test_servfail_is_a_temporary_failure(servers, tmp_path):
    srv = servers(RcodeServer(2))
    conf = write_conf(tmp_path, [srv.port], "dns_tries = 2\n")
    (ans,), _ = mxroute(conf, "example.test")
    assert ans["status"] == "tempfail"
    assert ans["dsn"] == "4.4.3"
    assert "SERVFAIL" in ans["reason"]
    assert srv.count == 2  # each try asked again, then no more


def test_silent_server_times_out_as_a_temporary_failure(servers, tmp_path):
    srv = servers(SilentServer())
    conf = write_conf(tmp_path, [srv.port],
                      "dns_timeout = 1s\ndns_tries = 1\n")
    start = time.monotonic()
    out, _ = mxroute(conf, "a.test", "b.test", "c.test")
    took = time.monotonic() - start
    for ans in out:
        assert ans["status"] == "tempfail"
        assert "timeout" in ans["reason"]
    # The three lookups waited side by side, not one after another.
    assert took < 2.5


def test_addresses_follow_the_preferred_family(dnsmasq, tmp_path):
    conf4 = write_conf(tmp_path, [dnsmasq.port])
    conf6 = write_conf(tmp_path, [dnsmasq.port], 'dns_prefer = "ipv6"\n')
    (ans,), _ = mxroute(conf4, "dual.test")
    assert ans["candidates"][0]["addresses"] == ["203.0.113.50", "2001:db8::50"]
    (ans,), _ = mxroute(conf6, "dual.test")
    assert ans["candidates"][0]["addresses"] == ["2001:db8::50", "203.0.113.50"]


def test_single_family_hosts_are_both_candidates(dnsmasq, tmp_path):
    conf = write_conf(tmp_path, [dnsmasq.port])
    (ans,), _ = mxroute(conf, "family.test")
    addrs = {c["name"]: c["addresses"] for c in ans["candidates"]}
    assert addrs == {"v6only.family.test": ["2001:db8::40"],
                     "v4only.family.test": ["203.0.113.40"]}


def test_mx_host_without_address_is_dropped(dnsmasq, tmp_path):
    conf = write_conf(tmp_path, [dnsmasq.port])
    (ans,), _ = mxroute(conf, "broken.test")
    assert ans["status"] == "ok"
    assert names(ans) == ["ok.broken.test"]
    assert dropped(ans)["gone.broken.test"].startswith("no address")
    (ans,), _ = mxroute(conf, "allgone.test")
    assert ans["status"] == "permfail"
    assert ans["dsn"] == "5.4.4"


def test_static_routes_skip_the_mx_lookup(dnsmasq, tmp_path):
    conf = write_conf(tmp_path, [dnsmasq.port], """
domain "unix.example.test" { route = "lmtp:unix:/run/store/lmtp.sock" }
domain "literal.example.test" { route = "lmtp:[127.0.0.1]:24" }
domain "bracket.example.test" { route = "smtp:[implicit.test]:2525" }
domain "viamx.example.test" { route = "smtp:multi.test:2526" }
domain "loopy.example.test" { route = "smtp:loop.test" }
""")
    out, _ = mxroute(conf, "unix.example.test", "literal.example.test",
                     "bracket.example.test", "viamx.example.test",
                     "loopy.example.test")
    unix, literal, bracket, viamx, loopy = out
    assert unix["status"] == "ok" and unix["kind"] == "lmtp-unix"
    assert unix["path"] == "/run/store/lmtp.sock"
    assert unix["candidates"] == []
    # A bracketed host is used as is, even a local address (the store).
    assert literal["candidates"] == [{"name": "127.0.0.1", "pref": -1,
                                      "port": 24,
                                      "addresses": ["127.0.0.1"]}]
    assert bracket["kind"] == "smtp"
    assert names(bracket) == ["implicit.test"]
    assert bracket["candidates"][0]["port"] == 2525
    # An unbracketed host is looked up by MX, as Postfix does.
    assert sorted(names(viamx)) == ["mxa.multi.test", "mxb.multi.test",
                                    "mxc.multi.test"]
    assert all(c["port"] == 2526 for c in viamx["candidates"])
    # ... and the backup-MX rules apply to it on port 25.
    assert loopy["status"] == "tempfail" and loopy["loop"] is True
    # No MX query for the domains or the bracketed host.
    for name in ("unix.example.test", "literal.example.test",
                 "bracket.example.test", "implicit.test",
                 "viamx.example.test"):
        assert dnsmasq.queries("MX", name) == 0, name
    assert dnsmasq.queries("MX", "multi.test") == 1


def test_static_route_failures_defer_instead_of_bouncing(dnsmasq, tmp_path):
    conf = write_conf(tmp_path, [dnsmasq.port], """
domain "a.example.test" { route = "smtp:[noaddr.test]:25" }
domain "b.example.test" { route = "lmtp:nosuch.test:24" }
domain "c.example.test" { route = "smtp:nullmx.test:25" }
""")
    out, _ = mxroute(conf, "a.example.test", "b.example.test",
                     "c.example.test")
    for ans in out:
        assert ans["status"] == "tempfail", ans
        assert ans["dsn"].startswith("4."), ans
        assert ans["candidates"] == []


def test_long_mx_lists_come_over_tcp_and_are_cut_at_the_worst_end(
        servers, tmp_path):
    # 40 MX with long names do not fit in 512 octets of UDP: dnsmasq sets
    # TC and c-ares asks again over TCP, through the same event loop.
    records = []
    for i in range(40):
        name = "mx%02d-%s.big.test" % (i, "x" * 40)
        records.append("--mx-host=big.test,%s,%d" % (name, 100 - i))
        records.append("--host-record=%s,203.0.113.%d" % (name, i + 1))
    dm = servers(Dnsmasq(tmp_path, records))
    conf = write_conf(tmp_path, [dm.port])
    (ans,), _ = mxroute(conf, "big.test")
    assert ans["status"] == "ok"
    assert len(ans["candidates"]) == 32
    prefs = [c["pref"] for c in ans["candidates"]]
    assert prefs == sorted(prefs) and prefs[0] == 61 and prefs[-1] == 92
    cut = sorted(d["pref"] for d in ans["dropped"])
    assert cut == list(range(93, 101))
    assert all(d["why"] == "beyond the best 32 MX" for d in ans["dropped"])
    # Over UDP the answer is truncated: the whole list came over TCP.
    rcode, _, reply = query(dm.port, "big.test", "MX")
    assert reply[2] & 0x02, "expected TC over UDP"


def test_bad_domain_names_are_refused_without_a_query(dnsmasq, tmp_path):
    conf = write_conf(tmp_path, [dnsmasq.port])
    out, _ = mxroute(conf, "--", "bad..test", "-x.test", "a" * 300 + ".test")
    for ans in out:
        assert ans["status"] == "permfail"
        assert ans["dsn"] == "5.1.2"
    assert "query[" not in open(dnsmasq.logpath).read().split("ready.invalid")[-1]


def test_concurrent_lookups_of_one_name_share_one_query(dnsmasq, tmp_path):
    conf = write_conf(tmp_path, [dnsmasq.port])
    out, _ = mxroute(conf, "-S", *["multi.test"] * 50)
    stats = out[-1]["stats"]
    assert all(a["status"] == "ok" for a in out[:-1])
    assert dnsmasq.queries("MX", "multi.test") == 1
    assert dnsmasq.queries("A", "mxa.multi.test") == 1
    # One MX query, then A and AAAA for three hosts.
    assert stats["queries"] == 7
    # The other 49 joined those 7 queries.
    assert stats["coalesced"] == 49 * 7
    assert stats["in_flight"] == 0 and stats["requests"] == 0


def test_many_lookups_are_in_flight_at_once(servers, tmp_path):
    n = 1000
    hosts = os.path.join(str(tmp_path), "hosts")
    with open(hosts, "w") as f:
        for i in range(n):
            f.write("203.0.113.%d h%d.many.test\n" % (i % 250 + 1, i))
    dm = servers(Dnsmasq(tmp_path, ["--addn-hosts=" + hosts]))
    conf = write_conf(tmp_path, [dm.port])
    start = time.monotonic()
    out, _ = mxroute(conf, "-S", *["h%d.many.test" % i for i in range(n)])
    assert time.monotonic() - start < 20
    stats = out.pop()["stats"]
    assert len(out) == n
    for i, ans in enumerate(out):
        assert ans["domain"] == "h%d.many.test" % i
        assert ans["status"] == "ok" and ans["implicit_mx"] is True
        assert ans["candidates"][0]["addresses"] == \
            ["203.0.113.%d" % (i % 250 + 1)]
    # MX, A and AAAA for each name, none shared.
    assert stats["queries"] == 3 * n
    assert stats["coalesced"] == 0 and stats["in_flight"] == 0


def test_answers_are_cached_until_their_ttl_expires(servers, tmp_path):
    hosts = os.path.join(str(tmp_path), "hosts")
    with open(hosts, "w") as f:
        f.write("203.0.113.70 ttl.test\n")
    dm = servers(Dnsmasq(tmp_path, ["--addn-hosts=" + hosts], ttl=2))
    conf = write_conf(tmp_path, [dm.port], "dns_min_ttl = 0\n")
    s = MxrouteSession(conf)
    try:
        first = time.monotonic()
        ans = s.ask("ttl.test")
        assert ans["candidates"][0]["addresses"] == ["203.0.113.70"]
        with open(hosts, "w") as f:
            f.write("203.0.113.71 ttl.test\n")
        dm.reload()
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            r = query(dm.port, "ttl.test", "A")
            if r and r[2].endswith(bytes([203, 0, 113, 71])):
                break
            time.sleep(0.05)
        else:
            pytest.fail("dnsmasq did not reload its hosts file")
        assert time.monotonic() - first < 1.5, "too slow to test the cache"
        ans = s.ask("ttl.test")
        assert ans["candidates"][0]["addresses"] == ["203.0.113.70"]
        assert s.ask("stats")["stats"]["cache_hits"] >= 1
        time.sleep(max(0, first + 2.2 - time.monotonic()))
        ans = s.ask("ttl.test")
        assert ans["candidates"][0]["addresses"] == ["203.0.113.71"]
    finally:
        assert s.close() == 0


def test_min_ttl_keeps_short_lived_answers(servers, tmp_path):
    hosts = os.path.join(str(tmp_path), "hosts")
    with open(hosts, "w") as f:
        f.write("203.0.113.80 short.test\n")
    dm = servers(Dnsmasq(tmp_path, ["--addn-hosts=" + hosts], ttl=1))
    conf = write_conf(tmp_path, [dm.port], "dns_min_ttl = 60\n")
    s = MxrouteSession(conf)
    try:
        assert s.ask("short.test")["status"] == "ok"
        time.sleep(1.5)
        assert s.ask("short.test")["status"] == "ok"
        # The address came from the cache (the NODATA for MX carried no
        # SOA, so it was asked again).
        assert dm.queries("A", "short.test") == 1
        assert dm.queries("MX", "short.test") == 2
    finally:
        assert s.close() == 0


def test_negative_answers_are_cached_only_with_an_soa(servers, tmp_path):
    # Authoritative dnsmasq puts an SOA (TTL 30) in negative answers.
    auth = servers(Dnsmasq(tmp_path, [
        "--auth-server=ns.auth.test,127.0.0.1", "--auth-zone=auth.test",
        "--auth-ttl=30", "--auth-soa=1,hostmaster.auth.test",
        "--host-record=www.auth.test,203.0.113.90"], local=()))
    plain = servers(Dnsmasq(tmp_path, RECORDS))
    conf = write_conf(tmp_path, [auth.port])
    out, _ = mxroute(conf, "nope.auth.test")
    assert out[0]["dsn"] == "5.1.2"
    s = MxrouteSession(conf)
    try:
        assert s.ask("nope.auth.test")["dsn"] == "5.1.2"
        assert s.ask("nope.auth.test")["dsn"] == "5.1.2"
        assert s.ask("www.auth.test")["implicit_mx"] is True
        assert s.ask("www.auth.test")["status"] == "ok"
    finally:
        s.close()
    # 1 from the one-shot run, 1 from the session: the repeat was cached,
    # and so was the NODATA for www's MX.
    assert auth.queries("MX", "nope.auth.test") == 2
    assert auth.queries("MX", "www.auth.test") == 1
    # Without an SOA (plain dnsmasq) NXDOMAIN is asked again each time.
    conf = write_conf(tmp_path, [plain.port])
    s = MxrouteSession(conf)
    try:
        assert s.ask("nosuch.test")["dsn"] == "5.1.2"
        assert s.ask("nosuch.test")["dsn"] == "5.1.2"
    finally:
        s.close()
    assert plain.queries("MX", "nosuch.test") == 2


def test_cancelled_lookup_never_calls_back(dnsmasq, tmp_path):
    conf = write_conf(tmp_path, [dnsmasq.port])
    s = MxrouteSession(conf)
    try:
        assert s.ask("cancel multi.test") == {"cancelled": "multi.test"}
        assert s.ask("backup.test")["domain"] == "backup.test"
        # Give the cancelled query's answer time to arrive: nothing prints.
        assert s.read(timeout=1) is None
        assert s.ask("stats")["stats"]["requests"] == 0
    finally:
        assert s.close() == 0


def test_ptr_names_a_client_and_is_bounded(dnsmasq, servers, tmp_path):
    conf = write_conf(tmp_path, [dnsmasq.port])
    out, err = mxroute(conf, "ptr:127.0.0.7", "ptr:::ffff:127.0.0.7",
                       "ptr:2001:db8::77", "ptr:127.0.0.8", "ptr:127.0.0.9",
                       "ptr:198.51.100.1")
    assert out[0] == {"ptr": "127.0.0.7", "status": "ok",
                      "name": "client.test"}
    assert out[1]["name"] == "client.test"
    assert out[2]["name"] == "client6.test"
    # A PTR name that does not resolve back to the address is not used.
    assert out[3] == {"ptr": "127.0.0.8", "status": "permfail", "name": None}
    assert "liar.test does not resolve back" in err
    # No PTR at all (NXDOMAIN) is permanent; REFUSED is temporary.
    assert out[4]["status"] == "permfail" and out[4]["name"] is None
    assert out[5]["status"] == "tempfail" and out[5]["name"] is None
    # A reverse zone that never answers costs the session only the bound.
    silent = servers(SilentServer())
    conf = write_conf(tmp_path, [silent.port], "dns_timeout = 10s\n")
    start = time.monotonic()
    out, _ = mxroute(conf, "-t", "300", "ptr:203.0.113.1", "ptr:2001:db8::1")
    assert time.monotonic() - start < 3
    assert [o["status"] for o in out] == ["tempfail", "tempfail"]


def test_ptr_bound_holds_with_hundreds_waiting_their_turn(servers, tmp_path):
    # 300 reverse lookups against a server that never answers: more than
    # are ever sent at once, so most wait in the queue. Each still answers
    # within its bound, and mxroute exits cleanly with all of them in
    # flight (under ASan, a leak or a use after free fails it).
    silent = servers(SilentServer())
    conf = write_conf(tmp_path, [silent.port], "dns_timeout = 10s\n")
    start = time.monotonic()
    out, _ = mxroute(conf, "-t", "300",
                     *["ptr:198.51.100.%d" % (i % 250) for i in range(150)],
                     *["ptr:2001:db8::%x" % i for i in range(150)])
    assert time.monotonic() - start < 5
    assert len(out) == 300
    assert all(o["status"] == "tempfail" for o in out)
