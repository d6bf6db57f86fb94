"""mxspoolctl for an operator at work: option and config errors that say
what is wrong, filters and --all on the bulk commands, pause and resume of
a destination, the mailq listing, what show and summary tell, and reload
after the control socket moved (test_ctl.py has the basics)."""

import os
import subprocess

from conftest import wait_for
from test_ctl import MXSPOOLCTL, ctl, ctl_json, dest, outage, send  # noqa: F401


def run_ctl(*args, timeout=30):
    """mxspoolctl with exactly these arguments: (status, stdout, stderr)."""
    p = subprocess.run([MXSPOOLCTL] + list(args), capture_output=True,
                       timeout=timeout)
    return p.returncode, p.stdout.decode(), p.stderr.decode()


def first_line(err):
    return err.splitlines()[0] if err else ""


def test_option_errors_name_the_option(tmp_path):
    sock = str(tmp_path / "none.sock")
    for args, msg in (
            (["list", "--domain"], "list: option --domain needs a value"),
            (["list", "--older-than"],
             "list: option --older-than needs a value"),
            (["list", "--bogus"], "list: unknown option --bogus"),
            (["list", "-x"], "list: unknown option -x"),
            (["list", "--held=yes"], "list: option --held takes no value"),
            (["summary", "--domain", "example.com"],
             "summary: option --domain does not apply to summary"),
            (["list", "-c", "x.conf"],
             "list: option -c goes before the command"),
            (["list", "--socket=/x"],
             "list: option --socket goes before the command")):
        rc, out, err = run_ctl("-s", sock, *args)
        assert rc == 2 and out == "", (args, rc, err)
        assert first_line(err).startswith("mxspoolctl: " + msg), (args, err)
    # The program's own options, before any command.
    for args, msg in ((["-c"], "option -c needs a value"),
                      (["--config"], "option --config needs a value"),
                      (["--frob", "summary"], "unknown option --frob"),
                      (["-q", "summary"], "unknown option -q")):
        rc, out, err = run_ctl(*args)
        assert rc == 2 and first_line(err) == "mxspoolctl: " + msg, (args, err)


def test_a_file_that_is_not_a_config_says_so_in_one_line(tmp_path):
    junk = tmp_path / "notes.txt"
    junk.write_text("root:x:0:0:root:/root:/bin/bash\nmore junk\n")
    for cmd in ("summary", "list", "flush"):
        args = [cmd, "--all"] if cmd == "flush" else [cmd]
        rc, out, err = run_ctl("-c", str(junk), *args)
        assert rc == 1 and out == "", (cmd, rc, out, err)
        assert err.count("\n") == 1, err
        assert err.startswith("mxspoolctl: %s is not a valid mxspool config: "
                              "line 1: no such option" % junk), err
    rc, out, err = run_ctl("-c", str(tmp_path / "missing.conf"), "summary")
    assert rc == 1 and err == "mxspoolctl: %s: cannot read: No such file " \
        "or directory\n" % (tmp_path / "missing.conf")
    rc, out, err = run_ctl("-c", str(tmp_path), "stats")
    assert rc == 1 and err == "mxspoolctl: %s: cannot read: Is a " \
        "directory\n" % tmp_path


def test_a_broken_config_still_reaches_the_daemon(outage):
    """A config being edited still names the daemon's socket, and reload
    is how the operator learns everything wrong with it."""
    d = outage
    with open(d.conf, "a") as f:
        f.write("no_such_option = 1\n")
    rc, out, err = ctl(d, "summary")
    assert rc == 0 and out.startswith("DESTINATION"), err
    rc, out, err = ctl(d, "reload")
    assert rc == 1 and "reload refused" in err and "no_such_option" in err
    assert d.proc.poll() is None
