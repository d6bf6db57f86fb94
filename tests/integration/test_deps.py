"""mk/deps.sh lists every package the tests use: each program or module
they run is owned (dpkg -S) by a package of the build or test set, or by
one that every Debian system has. A machine that has a package for another
reason would otherwise hide a missing entry (swaks without Net::SSLeay
once failed on a fresh machine). make check-fresh proves the same on a
bare root; this catches most of it in every run."""

import os
import subprocess
import sys

import pytest

from conftest import ROOT

# What the integration tests run, beside the programs built here.
USED = [
    "/usr/bin/swaks",
    "/usr/sbin/dnsmasq",
    "/usr/sbin/dovecot",
    "/usr/lib/dovecot/lmtp",
    "/usr/bin/promtool",
    "/usr/bin/mandoc",
    "/usr/sbin/pflogsumm",
    "/usr/sbin/haproxy",
    "/usr/sbin/smtp-source",  # test_cluster.py's load
    "/usr/bin/openssl",
    "/usr/bin/ldd",
    "/usr/lib/x86_64-linux-gnu/perl5/5.36/Net/SSLeay.pm",
    # test_deb.py: make deb, and the unit's check.
    "/usr/bin/dpkg-buildpackage",
    "/usr/bin/dh",
    "/usr/bin/lintian",
    "/usr/bin/systemd-analyze",
    "/usr/bin/man",
    "/bin/kill",
]
MODULES = ["pytest", "aiosmtpd"]


def deps(*sets):
    out = subprocess.run(["sh", os.path.join(ROOT, "mk", "deps.sh"),
                          "--list", *sets],
                         capture_output=True, text=True, check=True).stdout
    return set(out.split())


def owner(path):
    """The package that owns path (as dpkg recorded it: /bin or /usr/bin)."""
    for p in (path, os.path.realpath(path)):
        r = subprocess.run(["dpkg-query", "-S", p], capture_output=True,
                           text=True)
        if r.returncode == 0:
            return r.stdout.split(":")[0].split(",")[0]
    raise AssertionError("%s belongs to no package" % path)


def unlisted(path, sets=("build", "test")):
    """path's package if mk/deps.sh should list it in sets and does not,
    else None. Packages every Debian system has (Essential, or priority
    required) need no entry."""
    pkg = owner(path)
    if pkg in deps(*sets):
        return None
    r = subprocess.run(["dpkg-query", "-W", "-f", "${Essential} ${Priority}",
                        pkg], capture_output=True, text=True)
    if r.stdout.startswith("yes") or r.stdout.endswith("required"):
        return None
    return pkg


def module_path(name):
    r = subprocess.run([sys.executable, "-c",
                        "import %s; print(%s.__file__)" % (name, name)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return r.stdout.strip()


@pytest.mark.parametrize("path", USED + ["python:" + m for m in MODULES])
def test_what_the_tests_use_comes_from_a_listed_package(path):
    if path.startswith("python:"):
        path = module_path(path[7:])
    pkg = unlisted(path)
    assert pkg is None, "%s comes from %s, which mk/deps.sh does not list" \
        % (path, pkg)


def test_what_make_fuzz_uses_comes_from_the_fuzz_set():
    """clang, and the libFuzzer and sanitizer runtimes it links, which
    Debian's clang only recommends. make test does not install the fuzz
    set: without clang there is nothing to check."""
    if not os.path.exists("/usr/bin/clang"):
        pytest.skip("clang is not installed (make fuzz installs it)")
    rt = subprocess.run(["/usr/bin/clang", "--print-runtime-dir"],
                        capture_output=True, text=True,
                        check=True).stdout.strip()
    for path in ["/usr/bin/clang"] + [
            os.path.join(rt, "libclang_rt.%s-x86_64.a" % lib)
            for lib in ("fuzzer", "asan", "ubsan_standalone")]:
        pkg = unlisted(path, ("build", "fuzz"))
        assert pkg is None, "%s comes from %s, which the fuzz set of " \
            "mk/deps.sh does not list" % (path, pkg)


def test_the_check_can_fail():
    """A package this machine has only as another's dependency is caught;
    an essential one is not."""
    assert unlisted("/usr/bin/cpan") == "perl"   # swaks pulls it in
    assert unlisted("/bin/hostname") is None     # Essential: yes


def test_each_set_is_known_and_a_bad_one_is_refused():
    # Postfix is the benchmarks' peer, and its smtp-source the cluster
    # test's load.
    assert {"postfix", "haproxy"} <= deps("bench") and "postfix" in deps("test")
    assert "debootstrap" in deps("fresh")
    assert {"clang", "libclang-rt-14-dev"} <= deps("fuzz")
    assert "clang" not in deps("build", "test")
    assert deps("deb") <= deps("test") and "lintian" not in deps("build")
    assert not deps("build") & {"dnsmasq", "dnsmasq-base", "prometheus",
                                "dovecot-lmtpd", "swaks"}
    r = subprocess.run(["sh", os.path.join(ROOT, "mk", "deps.sh"), "tests"],
                       capture_output=True, text=True)
    assert r.returncode == 2 and "unknown package set 'tests'" in r.stderr
