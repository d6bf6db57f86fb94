"""make install lays out the file system as Debian does (FHS) with
PREFIX=/usr, and the installed programs look where it put things."""

import os
import pwd
import re
import stat
import subprocess

import pytest

from conftest import ROOT


def make_install(dest, *args):
    """make install into DESTDIR dest, PREFIX=/usr, from a build directory
    of its own beside it (so the suite's build keeps its defaults), with
    none of the calling make's variables (make test-asan's CFLAGS)."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")}
    r = subprocess.run(["make", "-s", "-j2", "install", "PREFIX=/usr",
                        "DESTDIR=%s" % dest, "BUILD=%s" % (dest.parent / "build"),
                        *args],
                       cwd=ROOT, env=env, capture_output=True, text=True,
                       timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    return r


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    dest = tmp_path_factory.mktemp("install") / "root"
    make_install(dest)
    return dest


def mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def test_every_file_is_where_debian_puts_it(installed):
    for prog in ("mxspoold", "mxspoolctl"):
        assert mode(installed / "usr/sbin" / prog) == 0o755
    assert os.readlink(installed / "usr/sbin/mxspool-mailq") == "mxspoolctl"
    assert mode(installed / "etc/mxspool/mxspool.conf") == 0o644
    assert (installed / "usr/share/man/man8/mxspoold.8").is_file()
    assert (installed / "usr/share/man/man8/mxspoolctl.8").is_file()
    assert (installed / "usr/share/man/man5/mxspool.conf.5").is_file()
    spool = installed / "var/spool/mxspool"
    assert spool.is_dir() and mode(spool) == 0o700
    assert not (installed / "usr/etc").exists()
    assert not (installed / "usr/var").exists()


def test_programs_are_stripped(installed):
    for prog in ("mxspoold", "mxspoolctl"):
        r = subprocess.run(["nm", installed / "usr/sbin" / prog],
                           capture_output=True, text=True)
        assert "no symbols" in r.stderr, r.stdout[:200]
    # INSTALL_STRIP= keeps them (for a debug package).
    dest = installed.parent / "unstripped"
    make_install(dest, "INSTALL_STRIP=")
    r = subprocess.run(["nm", dest / "usr/sbin/mxspoold"],
                       capture_output=True, text=True)
    assert " T main\n" in r.stdout


def test_the_installed_daemon_defaults_to_the_installed_paths(installed):
    r = subprocess.run([installed / "usr/sbin/mxspoold", "-h"],
                       capture_output=True, text=True)
    assert r.returncode == 0
    assert "(default /etc/mxspool/mxspool.conf)" in r.stdout
    assert re.search(r"spool_dir +/var/spool/mxspool\n", r.stdout)
    assert re.search(r"control_socket +/run/mxspool/control.sock\n", r.stdout)
    # The man pages name the same files.
    page = (installed / "usr/share/man/man8/mxspoold.8").read_text()
    assert "/etc/mxspool/mxspool.conf" in page


def test_the_template_refuses_to_run_until_relay_domains_is_set(installed):
    conf = installed / "etc/mxspool/mxspool.conf"
    text = conf.read_text()
    assert "example.com\"}\n" not in re.sub(r"(?m)^#.*\n", "", text)
    assert "127.0.0.1:2526" not in text
    daemon = installed / "usr/sbin/mxspoold"
    # The template sets user "mxspool" (make install creates no account):
    # where there is no such user, -t says so too, with its line.
    user_line = text.splitlines().index('user = "mxspool"') + 1
    try:
        pwd.getpwnam("mxspool")
        no_user = ""
    except KeyError:
        no_user = "%s:%d: user: no such user 'mxspool'\n" % (conf, user_line)
    r = subprocess.run([daemon, "-t", "-c", conf], capture_output=True,
                       text=True)
    assert r.returncode == 1
    assert r.stderr.startswith(no_user), r.stderr
    m = re.fullmatch(re.escape(str(conf)) + r":(\d+): relay_domains is "
                     r"required \(the domains this backup MX accepts mail "
                     r"for\)\n",
                     r.stderr[len(no_user):])
    assert m, r.stderr
    # The line is the template's commented-out relay_domains.
    line = text.splitlines()[int(m.group(1)) - 1]
    assert line.startswith("#relay_domains = "), line
    conf.write_text(text + '\nrelay_domains = {"example.org"}\n')
    r = subprocess.run([daemon, "-t", "-c", conf], capture_output=True,
                       text=True)
    assert r.returncode == (1 if no_user else 0) and r.stderr == no_user, \
        r.stderr
    # With the one required option set and a user that exists, the rest of
    # the template is valid.
    conf.write_text(text.replace('user = "mxspool"', 'user = "nobody"') +
                    '\nrelay_domains = {"example.org"}\n')
    r = subprocess.run([daemon, "-t", "-c", conf], capture_output=True,
                       text=True)
    assert r.returncode == 0 and r.stderr == "", r.stderr


def test_make_run_keeps_the_identity_it_is_started_with():
    """The development config sets no user: make run, as root or not,
    switches to nobody."""
    dev = open(os.path.join(ROOT, "etc", "mxspool-dev.conf")).read()
    assert not re.search(r"(?m)^\s*(user|group)\s*=", dev)


def test_a_second_install_keeps_the_operators_config(installed):
    conf = installed / "etc/mxspool/mxspool.conf"
    conf.write_text('relay_domains = {"mine.example"}\n')
    r = make_install(installed)
    assert "keeping" in r.stdout
    assert conf.read_text() == 'relay_domains = {"mine.example"}\n'
