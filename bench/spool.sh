#!/bin/sh
# bench/spool: group commit against the physical limit of one synced stream
# on the same file system, and the time to open a spool of a million
# messages. Medians of RUNS runs (default 3). Run by `make bench`.
set -eu
BUILD=${BUILD:-build}
RUNS=${RUNS:-3}
BIN=$BUILD/bench/spool
DIR=${BENCH_DIR:-var/bench}
rm -rf "$DIR" && mkdir -p "$DIR"

HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck disable=SC2034 # read by lib/common.sh
BENCH=spool
# shellcheck source=bench/lib/common.sh
. "$HERE/lib/common.sh"

fs=$(df -T "$DIR" | awk 'NR==2 {print $2 " on " $7}')
echo "bench/spool: 10 KiB messages; spool in $DIR ($fs); medians of $RUNS runs"

fsync=$(for i in $(seq "$RUNS"); do "$BIN" fsync "$DIR" 2 | field fsync_rate; done | median)
printf '  %-34s %8s/s\n' "write+fdatasync, one stream:" "$fsync"
printf '  %-11s %10s %8s %8s %14s\n' submitters commits/s p50_ms p99_ms "x fsync rate"
for c in 1 16 128; do
	n=$((c == 1 ? 3000 : 30000))
	out=$(for i in $(seq "$RUNS"); do
		rm -rf "$DIR/s" && mkdir -p "$DIR/s"
		"$BIN" commit "$DIR/s" "$c" "$n"
	done)
	rate=$(echo "$out" | field rate | median)
	p50=$(echo "$out" | field p50_ms | median)
	p99=$(echo "$out" | field p99_ms | median)
	ratio=$(awk -v a="$rate" -v b="$fsync" 'BEGIN {printf "%.1f", a / b}')
	printf '  %-11s %10s %8s %8s %14s\n' "$c" "$rate" "$p50" "$p99" "$ratio"
done
echo "  goal: 128 submitters >= 20x the fsync rate, p99 < 20 ms"

rm -rf "$DIR/r" && mkdir -p "$DIR/r"
"$BIN" fill "$DIR/r" 1000000
rec=$(for i in $(seq "$RUNS"); do "$BIN" recover "$DIR/r" | field recover_s; done | median)
echo "  open of a 1,000,000-message spool (counters, not messages): ${rec} s (goal < 2 s)"
rm -rf "$DIR"
