#!/bin/sh
# make check-fresh: runs `make test` (or the make targets given as
# arguments) as root in a bare Debian 12 root, on a clean clone of HEAD,
# to prove that mk/deps.sh lists everything the build and the tests use.
#
# The root is made with debootstrap (variant minbase, plus make, which a
# user must have to type `make test`) once and cached as
# build-fresh/base.tar; each run unpacks a new root from it, so nothing a
# previous run installed is left. Downloaded packages are kept in
# build-fresh/archives, so a second run does not fetch them again.
# The root runs in its own mount and PID namespaces: its mounts and
# processes end with it. Needs root (debootstrap, chroot, mount).
#
#   MIRROR   the Debian mirror (default http://deb.debian.org/debian)
#   KEEP=1   keep the root in build-fresh/root after the run
set -eu

top=$(git rev-parse --show-toplevel)
cd "$top"
dir=$top/build-fresh
root=$dir/root
base=$dir/base.tar
mirror=${MIRROR:-http://deb.debian.org/debian}
suite=bookworm
[ $# -gt 0 ] || set -- test

say() { echo "check-fresh: $*"; }

if [ "$(id -u)" -ne 0 ]; then
	say "must run as root (debootstrap, chroot and mount need it)" >&2
	exit 1
fi
sh mk/deps.sh fresh
mkdir -p "$dir/archives/partial"

if [ ! -s "$base" ]; then
	say "making a minimal Debian $suite root (once; cached in $base)"
	rm -rf "$dir/base"
	debootstrap --variant=minbase --include=make \
		--cache-dir="$dir/archives" "$suite" "$dir/base" "$mirror"
	# The updates and security suites, as on an installed machine.
	cat >"$dir/base/etc/apt/sources.list" <<-EOF
		deb $mirror $suite main
		deb $mirror $suite-updates main
		deb http://deb.debian.org/debian-security $suite-security main
	EOF
	# A chroot has no init: a package's service started by its postinst
	# would run in this machine's network namespace, outside the test.
	printf '#!/bin/sh\nexit 101\n' >"$dir/base/usr/sbin/policy-rc.d"
	chmod 0755 "$dir/base/usr/sbin/policy-rc.d"
	rm -f "$dir"/base/var/cache/apt/archives/*.deb
	tar -C "$dir/base" -cf "$base.tmp" . && mv "$base.tmp" "$base"
	rm -rf "$dir/base"
fi

say "unpacking a new root from $base"
rm -rf "$root"
mkdir -p "$root"
tar -C "$root" -xf "$base"
cp /etc/resolv.conf "$root/etc/resolv.conf"
git clone -q --no-hardlinks "$top" "$root/src/mxspool"
say "testing commit $(git -C "$root/src/mxspool" rev-parse --short HEAD):" \
	"make $*"

status=0
unshare --mount --pid --fork --kill-child sh -eu -c '
	root=$1 dir=$2
	shift 2
	mount --make-rprivate /
	mount -t proc proc "$root/proc"
	mount -t sysfs sysfs "$root/sys"
	mount --rbind /dev "$root/dev"
	mount -t tmpfs tmpfs "$root/tmp"
	mount --bind "$dir/archives" "$root/var/cache/apt/archives"
	exec chroot "$root" /usr/bin/env -i HOME=/root LANG=C.UTF-8 \
	    PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
	    sh -c "cd /src/mxspool && make \"\$@\"" make "$@"
' check-fresh "$root" "$dir" "$@" || status=$?

[ "${KEEP:-0}" = 1 ] || rm -rf "$root"
if [ "$status" -eq 0 ]; then
	say "PASS: make $* on a bare Debian $suite root"
else
	say "FAIL: make $* on a bare Debian $suite root (exit $status)"
fi
exit "$status"
