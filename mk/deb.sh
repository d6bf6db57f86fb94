#!/bin/sh
# The Debian package (debian/).
#
#   sh mk/deb.sh build DIR   make deb: builds it with dpkg-buildpackage
#                            -us -uc -b into DIR (default build-deb)
#   sh mk/deb.sh check DIR   make deb-check: installs DIR's package on this
#                            machine and checks the installed system; as
#                            root, on a machine to spare (make check-fresh
#                            runs it in its bare Debian root)
#
# build copies the source tree, without .git, build directories, ./var
# and caches, to DIR/mxspool-VERSION and builds there: what a developer's
# make left in build/ cannot leak into the package, and the package's
# `make clean` cannot remove the tree's build directories. The .deb, its
# -dbgsym, .buildinfo and .changes land in DIR; lintian checks the .changes.
# Git is not needed (make check-fresh's root has none).
set -eu

cd "$(dirname "$0")/.."
mode=${1:-build}
dir=${2:-build-deb}
case "$dir" in
/*) ;;
*) dir=$PWD/$dir ;;
esac
version=$(dpkg-parsechangelog -S Version)
arch=$(dpkg --print-architecture)
deb=$dir/mxspool_${version}_$arch.deb
changes=$dir/mxspool_${version}_$arch.changes

say() { echo "deb: $*"; }

build() {
	src=$dir/mxspool-$version
	# What an earlier build left, and nothing else of DIR's.
	rm -rf "$src" "$dir"/mxspool_* "$dir"/mxspool-dbgsym_* "$dir/build.log"
	mkdir -p "$src"
	tar -cf - --exclude=./.git --exclude=./build --exclude='./build-*' \
		--exclude=./var --exclude=__pycache__ --exclude=.pytest_cache \
		. | tar -C "$src" -xf -
	say "building $deb"
	# Only the build's errors and lintian's verdict are of interest; the
	# whole log stays in DIR/build.log.
	if ! (cd "$src" && dpkg-buildpackage -us -uc -b) >"$dir/build.log" 2>&1; then
		tail -n 40 "$dir/build.log" >&2
		say "dpkg-buildpackage failed: $dir/build.log" >&2
		exit 1
	fi
	rm -rf "$src"
	say "lintian $changes"
	lintian --fail-on error "$changes"
	say "built $deb"
}

# Fails with what went wrong.
check_that() {
	what=$1
	shift
	if ! "$@"; then
		say "FAIL: $what" >&2
		exit 1
	fi
	say "ok: $what"
}

check() {
	if [ "$(id -u)" -ne 0 ]; then
		say "check installs the package: run it as root" >&2
		exit 1
	fi
	[ -f "$deb" ] || { say "no $deb: make deb first" >&2; exit 1; }
	export DEBIAN_FRONTEND=noninteractive
	# dpkg -i, then apt-get the dependencies it lacks, if any.
	dpkg -i "$deb" || apt-get install -f -y -q --no-install-recommends
	check_that "the package is installed" \
		dpkg-query -W -f='${Status}\n' mxspool
	check_that "user mxspool exists" id mxspool
	check_that "/var/spool/mxspool is mxspool's, 0700" \
		test "$(stat -c '%U:%G %a' /var/spool/mxspool)" = \
		"mxspool:mxspool 700"
	check_that "/run/mxspool is mxspool's, 0755" \
		test "$(stat -c '%U:%G %a' /run/mxspool)" = "mxspool:mxspool 755"
	unit=/lib/systemd/system/mxspool.service
	out=$(systemd-analyze verify "$unit" 2>&1) || {
		echo "$out" >&2
		say "FAIL: systemd-analyze verify $unit" >&2
		exit 1
	}
	[ -z "$out" ] || echo "$out"
	say "ok: systemd-analyze verify $unit"

	# The installed template is valid but for relay_domains, which it
	# leaves for the administrator: -t says only that. The user it names
	# exists now (no "no such user").
	conf=/etc/mxspool/mxspool.conf
	out=$(mxspoold -t -c "$conf" 2>&1) && {
		say "FAIL: mxspoold -t passed a config without relay_domains" >&2
		exit 1
	}
	echo "$out"
	check_that "mxspoold -t on $conf: relay_domains is all that is missing" \
		test "$(echo "$out" | grep -cv ': relay_domains is required ')" = 0
	# With it set (as an administrator would, here in a copy of the file
	# with a loopback port), -t passes and the service's command line
	# runs: as root it drops to mxspool, in the packaged directories.
	tmp=$(mktemp -d)
	trap 'rm -rf "$tmp"' EXIT
	port=$((20000 + $(od -An -N2 -tu2 /dev/urandom) % 20000))
	sed -e 's|^#relay_domains = .*|relay_domains = {"example.com"}|' \
		-e "s|^#listen = .*|listen = {\"127.0.0.1:$port\"}|" \
		-e 's|^#metrics_listen = .*|metrics_listen = ""|' \
		"$conf" >"$tmp/mxspool.conf"
	check_that "mxspoold -t with relay_domains set" \
		/usr/sbin/mxspoold -t -c "$tmp/mxspool.conf"
	/usr/sbin/mxspoold -c "$tmp/mxspool.conf" 2>"$tmp/log" &
	pid=$!
	n=0
	until /usr/sbin/mxspoolctl -c "$tmp/mxspool.conf" stats >/dev/null 2>&1
	do
		n=$((n + 1))
		if [ $n -gt 100 ] || ! kill -0 $pid 2>/dev/null; then
			cat "$tmp/log" >&2
			say "FAIL: mxspoold did not start" >&2
			exit 1
		fi
		sleep 0.1
	done
	uid=$(awk '/^Uid:/ { print $2 }' /proc/$pid/status)
	check_that "the installed mxspoold runs as mxspool" \
		test "$uid" = "$(id -u mxspool)"
	check_that "its control socket is /run/mxspool/control.sock" \
		test -S /run/mxspool/control.sock
	check_that "its spool is in /var/spool/mxspool, all mxspool's" \
		test -n "$(ls /var/spool/mxspool)" -a -z "$(find \
		/run/mxspool /var/spool/mxspool -mindepth 1 ! -user mxspool)"
	kill -TERM $pid
	wait $pid || { cat "$tmp/log" >&2; exit 1; }

	# Purge leaves nothing of the package's but the user (Debian keeps
	# system users) and a spool that holds mail (this one: RocksDB's).
	dpkg --purge mxspool
	check_that "purge removed the config and the statoverride" \
		test ! -e /etc/mxspool -a \
		-z "$(dpkg-statoverride --list /var/spool/mxspool || true)"
	check_that "purge kept the spool that holds mail" \
		test -n "$(ls /var/spool/mxspool)"
	rm -rf /var/spool/mxspool
	say "PASS: $deb installs, runs and purges"
}

case "$mode" in
build) build ;;
check) check ;;
*)
	echo "usage: sh mk/deb.sh build|check [DIR]" >&2
	exit 2
	;;
esac
