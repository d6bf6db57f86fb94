#!/bin/sh
# Installs the Debian 12 packages of the named sets that are missing, with
# apt-get, as root or through sudo. Quiet and fast when all are there.
#
#   sh mk/deps.sh build [test] [bench] [fuzz] [deb] [fresh]
#
# Every program, library and Perl or Python module that the build, the
# tests, `make run`, `make bench` and `make fuzz` use is listed here, in
# the set of the first target that needs it: nothing may come from a
# machine's leftovers.
# `make check-fresh` proves the lists on a bare Debian root.
set -eu

# Building and running mxspoold and mxspoolctl (`make`, `make run`).
build="build-essential pkg-config libevent-dev libssl-dev librocksdb-dev
libc-ares-dev libconfuse-dev libjansson-dev libgmime-3.0-dev libidn2-dev
libsystemd-dev"

# `make deb`: the Debian package (dh; its build runs the unit tests, with
# cmocka), lintian, and systemd-analyze (in systemd) to verify its unit,
# which runs man for its Documentation= and checks that ExecReload's
# /bin/kill (procps) is there. debian/control's Build-Depends are the
# build set and cmocka.
deb="dpkg-dev debhelper libcmocka-dev lintian systemd man-db procps"

# `make test`: unit tests (cmocka), the integration tests' Python and
# their peers. swaks speaks TLS only with Net::SSLeay; dnsmasq-base is the
# binary without the system-wide resolver service of package dnsmasq; the
# tests run their own Dovecot (dovecot-core, dovecot-lmtpd) and promtool
# (prometheus); mandoc lints the man pages; openssl makes certificates;
# pflogsumm reads the daemon's log as an operator's report would; haproxy
# sends the PROXY protocol to a proxy_listen listener (test_proxy.py) and
# balances three nodes (test_cluster.py), whose load is Postfix's
# smtp-source (postfix); test_deb.py builds and lints the package (the deb
# set).
# tests/integration/test_deps.py checks that what the tests run is here.
test="libcmocka-dev python3 python3-pytest python3-aiosmtpd swaks
libnet-ssleay-perl openssl dnsmasq-base dovecot-core dovecot-lmtpd prometheus
mandoc pflogsumm haproxy postfix $deb"

# `make bench`: Postfix as the peer, with smtp-source and smtp-sink;
# haproxy in front of one node and of three (bench/accept).
bench="postfix haproxy"

# `make fuzz`: the libFuzzer targets, built with clang. Debian's clang
# only recommends libclang-rt-14-dev, which holds libFuzzer and the
# sanitizer runtimes (libclang_rt.fuzzer-x86_64.a, asan, ubsan): apt-get
# --no-install-recommends would leave it out.
fuzz="clang libclang-rt-14-dev"

# `make check-fresh`: builds the bare Debian root.
fresh="debootstrap"

[ $# -gt 0 ] || set -- build
pkgs=""
for set in "$@"; do
	case "$set" in
	build) pkgs="$pkgs $build" ;;
	test) pkgs="$pkgs $test" ;;
	bench) pkgs="$pkgs $bench" ;;
	fuzz) pkgs="$pkgs $fuzz" ;;
	deb) pkgs="$pkgs $deb" ;;
	fresh) pkgs="$pkgs $fresh" ;;
	--list) list=1 ;;
	*)
		echo "deps: unknown package set '$set' (build, test, bench, fuzz, deb, fresh)" >&2
		exit 2
		;;
	esac
done
if [ "${list:-0}" = 1 ]; then
	echo $pkgs
	exit 0
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
# The peers (Dovecot, Prometheus, Postfix) come as packages with system
# services; the tests and benchmarks start their own instances on loopback
# ports, so none of the system ones is started while installing: a
# policy-rc.d that refuses starts is put in place for the install, unless
# the machine has one of its own.
policy=/usr/sbin/policy-rc.d
if [ ! -e "$policy" ]; then
	trap '$SUDO rm -f "$policy"' EXIT
	printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$policy" >/dev/null
	$SUDO chmod 0755 "$policy"
fi
# shellcheck disable=SC2086 # the list is meant to split into words
$SUDO apt-get install -y -q --no-install-recommends $missing
