"""The man pages are clean under mandoc's linter, and document what the
programs actually offer."""

import glob
import os
import subprocess

import pytest

from conftest import ROOT, need

PAGES = sorted(glob.glob(os.path.join(ROOT, "docs", "*.[58]")))


@pytest.mark.parametrize("page", PAGES, ids=os.path.basename)
def test_man_page_is_clean_under_mandoc_lint(page):
    r = subprocess.run([need("mandoc", "mandoc"), "-T", "lint", "-W", "warning", page],
                       capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout == "", r.stdout + r.stderr


def test_every_config_option_is_in_the_man_page_and_the_shipped_config():
    """Each option the loader knows is documented in mxspool.conf(5) and in
    etc/mxspool.conf (which comments every option with its default)."""
    with open(os.path.join(ROOT, "common", "conf.c")) as f:
        src = f.read()
    import re
    names = set(re.findall(
        r'CFG_(?:STR|INT|FLOAT|BOOL|STR_LIST)(?:_CB)?\(\s*"([a-z_]+)"', src))
    assert len(names) > 30
    with open(os.path.join(ROOT, "docs", "mxspool.conf.5")) as f:
        man = f.read()
    with open(os.path.join(ROOT, "etc", "mxspool.conf")) as f:
        conf = f.read()
    missing_man = sorted(n for n in names if n.replace("_", "\\(ul") not in man and n not in man)
    missing_conf = sorted(n for n in names if n not in conf)
    assert missing_man == [], "not in mxspool.conf(5): %s" % missing_man
    assert missing_conf == [], "not in etc/mxspool.conf: %s" % missing_conf
