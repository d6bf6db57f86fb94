#!/bin/sh
# Installs the Debian packages mxspool needs to build, run and test (and,
# with the argument "bench", to run the benchmarks' peers), when any is
# missing. Quiet and fast when everything is already there.
set -eu

pkgs="build-essential pkg-config libevent-dev libssl-dev librocksdb-dev
libc-ares-dev libconfuse-dev libjansson-dev libcmocka-dev openssl
python3 python3-pytest python3-aiosmtpd swaks dnsmasq prometheus mandoc
dovecot-lmtpd"
if [ "${1:-}" = bench ]; then
	pkgs="$pkgs postfix"
fi

missing=""
for p in $pkgs; do
	st=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
	case "$st" in
	*"ok installed") ;;
	*) missing="$missing $p" ;;
	esac
done
[ -z "$missing" ] && exit 0

echo "deps: installing:$missing"
if [ "$(id -u)" -eq 0 ]; then
	SUDO=""
elif command -v sudo >/dev/null 2>&1; then
	SUDO="sudo"
else
	echo "deps: missing packages:$missing; run as root or install sudo" >&2
	exit 1
fi
export DEBIAN_FRONTEND=noninteractive
# Postfix asks how to configure itself: "No configuration" (the benchmark
# writes its own instance's files).
case "$missing" in
*postfix*)
	echo "postfix postfix/main_mailer_type select No configuration" |
		$SUDO debconf-set-selections ;;
esac
# An install from a stale or empty package list fails; update first.
$SUDO apt-get update -q
# dnsmasq's package starts a system-wide instance where systemd runs; the
# tests start their own on loopback ports, so the system one is not needed.
$SUDO apt-get install -y -q --no-install-recommends $missing
