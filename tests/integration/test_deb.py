"""make deb builds a Debian package that lintian finds no error in and that
holds what an installed mxspool needs: the programs, the man pages, the
config template as a conffile, the user (sysusers.d), the control socket's
directory (tmpfiles.d), the spool's owner and mode (postinst), and a
sandboxed Type=notify systemd unit that systemd-analyze accepts.
make check-fresh installs it in a bare Debian root (mk/deb.sh check)."""

import os
import re
import subprocess

import pytest

from conftest import ROOT, need

PKG = "mxspool"


def run(*args, **kw):
    return subprocess.run(args, capture_output=True, text=True, **kw)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """make deb into a directory of the test's, with none of the calling
    make's variables (make test-asan's CFLAGS)."""
    for prog, pkg in (("dpkg-buildpackage", "dpkg-dev"), ("dh", "debhelper"),
                      ("lintian", "lintian")):
        need(prog, pkg)
    out = tmp_path_factory.mktemp("deb")
    env = {k: v for k, v in os.environ.items()
           if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")}
    r = run("make", "-s", "deb", "DEB_DIR=%s" % out, cwd=ROOT, env=env,
            timeout=900)
    assert r.returncode == 0, r.stdout + r.stderr
    version = run("dpkg-parsechangelog", "-S", "Version", cwd=ROOT,
                  check=True).stdout.strip()
    arch = run("dpkg", "--print-architecture", check=True).stdout.strip()
    deb = out / ("%s_%s_%s.deb" % (PKG, version, arch))
    assert deb.is_file(), sorted(os.listdir(out))
    root = out / "root"
    run("dpkg-deb", "-x", str(deb), str(root), check=True)
    return {"dir": out, "deb": deb, "root": root, "build": r,
            "changes": out / ("%s_%s_%s.changes" % (PKG, version, arch))}


def info(built, field):
    return run("dpkg-deb", "-f", str(built["deb"]), field,
               check=True).stdout.strip()


def control_file(built, name):
    r = run("dpkg-deb", "-I", str(built["deb"]), name)
    assert r.returncode == 0, "no %s in the package: %s" % (name, r.stderr)
    return r.stdout


def test_lintian_finds_no_error(built):
    """make deb ran lintian on the .changes (the .deb, the -dbgsym and the
    .buildinfo) and fails on an error (the fixture checked it passed)."""
    out = built["build"].stdout + built["build"].stderr
    assert "deb: lintian %s" % built["changes"] in out, out
    errors = [l for l in out.splitlines() if l.startswith("E: ")]
    assert errors == [], out


def test_the_package_holds_the_installed_files(built):
    listing = run("dpkg-deb", "-c", str(built["deb"]), check=True).stdout
    files = {}
    for line in listing.splitlines():
        f = line.split()
        files[f[-1].lstrip(".")] = (f[0], f[1])
    expect = {
        "/usr/sbin/mxspoold": "-rwxr-xr-x",
        "/usr/sbin/mxspoolctl": "-rwxr-xr-x",
        "/etc/mxspool/mxspool.conf": "-rw-r--r--",
        "/usr/share/man/man8/mxspoold.8.gz": "-rw-r--r--",
        "/usr/share/man/man8/mxspoolctl.8.gz": "-rw-r--r--",
        "/usr/share/man/man5/mxspool.conf.5.gz": "-rw-r--r--",
        "/lib/systemd/system/mxspool.service": "-rw-r--r--",
        "/usr/lib/sysusers.d/mxspool.conf": "-rw-r--r--",
        "/usr/lib/tmpfiles.d/mxspool.conf": "-rw-r--r--",
        "/usr/share/doc/mxspool/copyright": "-rw-r--r--",
        "/var/spool/mxspool/": "drwxr-xr-x",  # 0700 by postinst
    }
    for path, mode in expect.items():
        assert path in files, "%s not in the package:\n%s" % (path, listing)
        assert files[path] == (mode, "root/root"), (path, files[path])
    # Nothing of the development tree, nothing under /usr/local.
    assert not [p for p in files if "build" in p or
                p.startswith("/usr/local")], listing


def test_the_config_template_is_a_conffile_that_sets_the_user(built):
    assert control_file(built, "conffiles").split() == \
        ["/etc/mxspool/mxspool.conf"]
    conf = (built["root"] / "etc/mxspool/mxspool.conf").read_text()
    assert re.search(r'(?m)^user = "mxspool"$', conf)
    sysusers = (built["root"] / "usr/lib/sysusers.d/mxspool.conf").read_text()
    assert re.search(r"(?m)^u mxspool - .* /var/spool/mxspool "
                     r"/usr/sbin/nologin$", sysusers), sysusers


def test_the_programs_default_to_the_packaged_paths(built):
    sbin = built["root"] / "usr/sbin"
    r = run(str(sbin / "mxspoold"), "-h", check=True)
    assert "(default /etc/mxspool/mxspool.conf)" in r.stdout
    assert re.search(r"spool_dir +/var/spool/mxspool\n", r.stdout)
    # The control socket's directory is the one tmpfiles.d makes.
    assert re.search(r"control_socket +/run/mxspool/control.sock\n",
                     r.stdout)
    tmpfiles = (built["root"] / "usr/lib/tmpfiles.d/mxspool.conf").read_text()
    assert re.search(r"(?m)^d /run/mxspool 0755 mxspool mxspool -$",
                     tmpfiles), tmpfiles
    # The package's version is the program's.
    version = run(str(sbin / "mxspoold"), "-v", check=True).stdout.split()[1]
    assert info(built, "Version") == version
    # Stripped, with the symbols in the -dbgsym package.
    r = run("nm", str(sbin / "mxspoold"))
    assert "no symbols" in r.stderr, r.stdout[:200]
    assert list(built["dir"].glob("mxspool-dbgsym_*.deb"))


def test_the_maintainer_scripts_make_the_user_and_directories(built):
    postinst = control_file(built, "postinst")
    # The user first (sysusers), then /run/mxspool (tmpfiles, owned by
    # the user), then the spool's owner and mode.
    steps = ["systemd-sysusers", "systemd-tmpfiles", "dpkg-statoverride "
             "--update --add mxspool mxspool 0700"]
    at = [postinst.find(s) for s in steps]
    assert -1 not in at and at == sorted(at), postinst
    assert "/var/spool/mxspool" in postinst[at[2]:]
    # Enabled, not started on a first install (the template needs
    # relay_domains first); an upgrade restarts a running one.
    assert "deb-systemd-helper enable 'mxspool.service'" in postinst
    assert "deb-systemd-invoke start" not in postinst
    assert "deb-systemd-invoke try-restart 'mxspool.service'" in postinst
    prerm = control_file(built, "prerm")
    assert re.search(r'"\$1" = remove .*\n\s*deb-systemd-invoke stop '
                     r'mxspool.service', prerm), prerm
    postrm = control_file(built, "postrm")
    purge = postrm[postrm.index('if [ "$1" = purge ]; then'):]
    assert "dpkg-statoverride --remove /var/spool/mxspool" in purge
    assert "rm -rf /run/mxspool" in purge
    # Queued mail survives a purge: only an empty spool is removed.
    assert "rmdir /var/spool/mxspool" in purge
    assert "rm -rf /var/spool" not in purge
    for name, text in (("postinst", postinst), ("prerm", prerm),
                       ("postrm", postrm)):
        r = run("sh", "-n", input=text)
        assert r.returncode == 0, (name, r.stderr)


def unit_settings(text):
    settings = {}
    for line in text.splitlines():
        if "=" in line and not line.startswith("#"):
            k, v = line.split("=", 1)
            settings.setdefault(k, []).append(v)
    return settings


def duration_s(text):
    m = re.fullmatch(r"(\d+)s", text)
    assert m, text
    return int(m.group(1))


def test_the_unit_is_sandboxed_and_waits_for_ready(built):
    text = (built["root"] / "lib/systemd/system/mxspool.service").read_text()
    s = unit_settings(text)
    assert s["Type"] == ["notify"] and s["NotifyAccess"] == ["main"]
    assert s["ExecStart"] == ["/usr/sbin/mxspoold -c "
                              "/etc/mxspool/mxspool.conf"]
    assert s["ExecReload"] == ["/bin/kill -HUP $MAINPID"]
    # /bin/kill is procps'.
    assert "procps" in re.split(r"[ ,]+", info(built, "Depends"))
    # TimeoutStopSec covers shutdown_timeout's default and the 20s the
    # daemon asks beyond it (ctl/main.c, STOP_SPOOL_CLOSE_S).
    conf = open(os.path.join(ROOT, "etc", "mxspool.conf")).read()
    default = duration_s(re.search(r"(?m)^#shutdown_timeout = (\S+)$",
                                   conf).group(1))
    assert duration_s(s["TimeoutStopSec"][0]) >= default + 20
    assert s["ProtectSystem"] == ["strict"]
    assert s["ReadWritePaths"] == ["/var/spool/mxspool /run/mxspool"]
    for yes in ("PrivateTmp", "NoNewPrivileges", "ProtectHome",
                "PrivateDevices"):
        assert s[yes] == ["yes"], yes
    # What the daemon does as root before it drops to mxspool, and
    # ExecReload's kill as root to the daemon that is mxspool by then; no
    # more (no CAP_DAC_OVERRIDE, no CAP_SYS_ADMIN).
    assert sorted(s["CapabilityBoundingSet"][0].split()) == sorted([
        "CAP_NET_BIND_SERVICE", "CAP_CHOWN", "CAP_SETGID", "CAP_SETUID",
        "CAP_SETPCAP", "CAP_KILL"])


def test_systemd_analyze_verifies_the_unit(built, tmp_path):
    """systemd-analyze verify checks the programs named exist: here they
    are the package's, unpacked (check-fresh verifies the installed unit
    as it is)."""
    analyze = need("systemd-analyze", "systemd")
    root = built["root"]
    text = (root / "lib/systemd/system/mxspool.service").read_text()
    unit = tmp_path / "mxspool.service"
    unit.write_text(text.replace("/usr/sbin/", "%s/usr/sbin/" % root))
    env = dict(os.environ, MANPATH=str(root / "usr/share/man"))
    need("man", "man-db")  # for Documentation=man:...
    r = run(analyze, "verify", str(unit), env=env, timeout=60)
    assert r.returncode == 0 and r.stdout + r.stderr == "", \
        r.stdout + r.stderr
    # The check can fail: a program that is not there.
    unit.write_text(text)
    if not os.path.exists("/usr/sbin/mxspoold"):
        r = run(analyze, "verify", str(unit), env=env, timeout=60)
        assert r.returncode != 0 and "/usr/sbin/mxspoold" in r.stderr


def test_build_depends_lists_the_build_set(built):
    """debian/control's Build-Depends are mk/deps.sh's build set (the
    compiler aside: build-essential is implied)."""
    build = run("sh", os.path.join(ROOT, "mk", "deps.sh"), "--list",
                "build", check=True).stdout.split()
    control = open(os.path.join(ROOT, "debian", "control")).read()
    field = re.search(r"(?ms)^Build-Depends:(.*?)^\S", control).group(1)
    listed = {re.match(r"\s*([a-z0-9.+-]+)", p).group(1)
              for p in field.split(",") if p.strip()}
    assert set(build) - {"build-essential"} <= listed, \
        set(build) - listed
