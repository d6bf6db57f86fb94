"""Stopping a helper process the tests started (a store, dnsmasq,
HAProxy): SIGTERM, and SIGKILL if it is still there after a while, so
that a hung helper never outlives its test."""

import subprocess


def stop_process(proc, timeout=10):
    """Stops proc (a subprocess.Popen) and reaps it."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
