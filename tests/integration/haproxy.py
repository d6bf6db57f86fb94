"""A real HAProxy (Debian's haproxy) started by a test with a config of its
own: TCP mode, on loopback ports the test chose.

    h = HAProxy(dirpath, body, ports=[p1, ...])   # checked and started
    h.wait_listening()                             # every port in ports
    h.log()                                        # its stderr and stdout
    h.stop()

body is the config after its `global` and `defaults` sections (the
frontends and backends); the test picks every port with free_port()."""

import os
import subprocess

from conftest import need, wait_for
from proc import stop_process

HEAD = ("global\n"
        "  maxconn 2000\n"
        "defaults\n"
        "  mode tcp\n"
        "  timeout connect 5s\n"
        "  timeout client 30s\n"
        "  timeout server 30s\n")


class HAProxy:
    def __init__(self, dirpath, body, ports):
        self.ports = list(ports)
        self.cfg = os.path.join(dirpath, "haproxy.cfg")
        self.logpath = os.path.join(dirpath, "haproxy.log")
        with open(self.cfg, "w") as f:
            f.write(HEAD + body)
        haproxy = need("/usr/sbin/haproxy", "haproxy")
        r = subprocess.run([haproxy, "-c", "-f", self.cfg],
                           capture_output=True, text=True)
        assert r.returncode == 0, r.stdout + r.stderr
        self.logfile = open(self.logpath, "wb")
        self.proc = subprocess.Popen([haproxy, "-db", "-f", self.cfg],
                                     stdout=self.logfile,
                                     stderr=self.logfile)

    def wait_listening(self):
        def up():
            assert self.proc.poll() is None, self.log()
            with open("/proc/net/tcp") as f:
                table = f.read()
            return all(":%04X 00000000:0000 0A" % p in table
                       for p in self.ports)
        wait_for(up, what="haproxy listening")
        return self

    def log(self):
        with open(self.logpath, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def stop(self):
        stop_process(self.proc)
        self.logfile.close()
