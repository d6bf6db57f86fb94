# Shared by bench/*.sh (sourced, not run): set BENCH to the benchmark's
# name and HERE to bench/ first. Gives die, a work directory with a trap
# that stops every process in $pids (and Postfix instances under
# $WORK/pf-*) on exit, failure or interrupt, and small helpers.

die() {
	echo "bench/$BENCH: $*" >&2
	exit 1
}

# Makes $WORK and arms the cleanup. Processes started later are added to
# $pids.
bench_start() {
	WORK=$(mktemp -d "${TMPDIR:-/tmp}/mxspool-bench-$BENCH.XXXXXX")
	chmod 755 "$WORK" # Postfix's processes reach their queue through it
	pids=""
	bench_dirs=""
	trap bench_cleanup EXIT
	trap 'exit 130' INT
	trap 'exit 143' TERM
}

bench_cleanup() {
	st=$?
	trap - EXIT INT TERM
	for p in $pids; do
		kill "$p" 2>/dev/null || true
	done
	for d in "$WORK"/pf-*; do
		[ -d "$d" ] && sh "$HERE/lib/postfix.sh" stop "$d"
	done
	for p in $pids; do
		wait "$p" 2>/dev/null || true
	done
	if [ "${KEEP:-0}" = 1 ]; then
		echo "bench/$BENCH: kept $WORK$bench_dirs" >&2
	else
		# shellcheck disable=SC2086 # a list of paths without blanks
		rm -rf "$WORK" $bench_dirs
	fi
	exit "$st"
}

# A directory outside $WORK (a large spool on a disk rather than in
# ${TMPDIR:-/tmp}, say) that the cleanup removes with $WORK, unless KEEP=1.
# Its path may not contain blanks.
bench_dir() {
	bench_dirs="$bench_dirs $1"
}

# A finished server's directory: its spool, queue and log.
discard() {
	[ "${KEEP:-0}" = 1 ] || rm -rf "$1"
}

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
field() { tr ' ' '\n' | sed -n "s/^$1=//p"; }
now() { date +%s.%N; }
forget() { pids=$(echo "$pids" | tr ' ' '\n' | grep -vx "$1" | tr '\n' ' '); }

# Stops one process started here (by its pid) and waits for it.
stop_pid() {
	kill "$1" 2>/dev/null || true
	wait "$1" 2>/dev/null || true
	forget "$1"
}
