#!/bin/sh
# bench/scale: mxspoold holding tens of millions of messages (issue 12,
# "Hold tens of millions", point 6). A spool of SCALE_N small held
# messages for one destination is written straight to disk
# (build/bench/spool fill); mxspoold starts on it with that destination
# down (routed to a loopback port nothing listens on), and each figure is
# set beside its goal:
#
#   1. exec of mxspoold to the first "220" read on its SMTP port (polled
#      by connecting every 5 ms): < 2 s
#   2. its RSS (VmRSS) 5 s after that greeting, and the most it reached
#      during figures 1 to 4 (VmHWM): < 300 MB
#   3. the wall time of `mxspoolctl summary`, median of 5: < 50 ms
#   4. the greeting's latency (start of connect to "220"), probed every
#      20 ms for 10 s, p50/p99/max: with nothing else running, then with
#      `mxspoolctl summary`, `mxspoolctl list --limit 100` and a GET of
#      /metrics each run back to back for the whole probe: max < 20 ms
#   5. SIGTERM to the process being gone: < 2 s
#   6. the drain: smtp-sink starts on the destination's port, mxspoold
#      starts again, and the messages it delivers per second, from the
#      first at smtp-sink to the DRAIN_N-th, against the same figure for
#      a spool of 20,000 messages made the same way in the same run:
#      ratio >= 0.8. With DRAIN_N < SCALE_N only the first DRAIN_N are
#      timed (the output says so); else until the queue is empty. The
#      small spool drains in a few seconds, so its rate carries the ramp
#      to full concurrency: a ratio above 1 is usual.
#
# Every wait is bounded: a figure the daemon does not produce in time is
# reported as "MISSED (timeout after Xs)" and the run goes on.
#
#   SCALE_N=10000000 RUNS=1 DRAIN_N=1000000  the defaults (RUNS > 1: medians)
#   SCALE_N=1000000 sh bench/scale.sh        a quick run (about 3 minutes)
#   START_LIMIT=300   seconds allowed for a start (exec to greeting)
#   KEEP=1            keep the spools and logs
#
# The spools and logs go to ${BENCH_DIR:-var/bench}/scale (on disk, not a
# tmpfs: 10,000,000 messages take about 700 MB, and mxspoold's log 220 MB
# per million delivered), removed at the end unless KEEP=1. Needs
# smtp-sink (the postfix package; make bench installs it). Everything
# listens on 127.0.0.1 on a free port; everything started is stopped on
# exit, failure or interrupt included. Run by `make bench`.
set -eu
BUILD=${BUILD:-build}
SCALE_N=${SCALE_N:-10000000}
RUNS=${RUNS:-1}
DRAIN_N=${DRAIN_N:-1000000}
START_LIMIT=${START_LIMIT:-300}
REF_N=20000      # the small spool the drain rate is compared with
CTL_LIMIT=120    # seconds, any one mxspoolctl or the daemon's recovery from one
TERM_LIMIT=60    # seconds, SIGTERM to exit
SETTLE=5         # seconds, greeting to the RSS reading
PROBE_SECS=10    # each latency probe
PROBE_MS=20      # between its connections
SUMMARY_RUNS=5
HERE=$(cd "$(dirname "$0")" && pwd)
FILL=$BUILD/bench/spool
SCALE=$BUILD/bench/scale
TOOL=$BUILD/bench/accept
DRAIN=$BUILD/bench/drain
MXSPOOLD=$BUILD/mxspoold
MXSPOOLCTL=$BUILD/mxspoolctl
SINK=/usr/sbin/smtp-sink

# shellcheck disable=SC2034 # read by lib/common.sh
BENCH=scale
# shellcheck source=bench/lib/common.sh
. "$HERE/lib/common.sh"

for f in "$FILL" "$SCALE" "$TOOL" "$DRAIN" "$MXSPOOLD" "$MXSPOOLCTL" "$SINK"; do
	[ -x "$f" ] || die "$f is missing (run it through make bench)"
done
case $SCALE_N$DRAIN_N$RUNS$START_LIMIT in
*[!0-9]*) die "SCALE_N, DRAIN_N, RUNS and START_LIMIT are numbers" ;;
esac
if [ "$SCALE_N" -lt 2 ] || [ "$RUNS" -lt 1 ] || [ "$START_LIMIT" -lt 1 ]; then
	die "SCALE_N >= 2, RUNS >= 1 and START_LIMIT >= 1, please"
fi
[ "$DRAIN_N" -le "$SCALE_N" ] || DRAIN_N=$SCALE_N
[ "$DRAIN_N" -ge 2 ] || DRAIN_N=2

bench_start
DIR=${BENCH_DIR:-var/bench}/scale
rm -rf "$DIR" && mkdir -p "$DIR"
DIR=$(cd "$DIR" && pwd)
case $DIR in *[[:space:]]*) die "no blanks in BENCH_DIR, please ($DIR)" ;; esac
bench_dir "$DIR"
SINK_USER=""
[ "$(id -u)" -ne 0 ] || SINK_USER="-u nobody"

# 1234567 -> 1,234,567
commas() { echo "$1" | sed ':a;s/\B[0-9]\{3\}\>/,&/;ta'; }
# KEY=VALUE out of one line of figures.
get() { echo "$2" | field "$1"; }

# mxspool.conf: NAME PORT BACKEND METRICS_PORT. The spool, its log and
# smtp-sink's counters are $DIR/NAME*; the control socket is in $WORK
# (a Unix socket's path is short).
mx_conf() {
	cat <<EOF
hostname = "mx.bench.invalid"
listen = {"127.0.0.1:$2"}
spool_dir = "$DIR/$1"
control_socket = "$WORK/$1.ctl"
metrics_listen = "127.0.0.1:$4"
relay_domains = {"example.com"}
max_connections = 1000
max_connections_per_ip = 1000
domain "example.com" {
	route = "smtp:[127.0.0.1]:$3"
}
EOF
}

# A failed run: its files stay for a look.
mx_die() {
	KEEP=1
	die "$@"
}

# Starts mxspoold on NAME's config, logging to LOG; sets mx_pid and t0
# (the Unix time just before its exec).
start_mx() {
	t0=$(now)
	"$MXSPOOLD" -c "$DIR/$1.conf" > "$2" 2>&1 &
	mx_pid=$!
	pids="$pids $mx_pid"
}

# Dies if mxspoold (logging to LOG) is gone.
mx_alive() {
	kill -0 "$mx_pid" 2>/dev/null && return 0
	tail -5 "$1" >&2
	mx_die "mxspoold exited (see $1)"
}

# Waits for the greeting of the daemon started at t0 on PORT (logging to
# LOG); sets greet_s (-1 after START_LIMIT).
greet() {
	greet_s=$("$SCALE" greet "$1" "$t0" "$START_LIMIT" | field greet_s || true)
	[ -n "$greet_s" ] || greet_s=-1
	[ "$greet_s" != -1 ] || mx_alive "$2"
}

# Stops mxspoold: SIGTERM, then SIGKILL if it is not gone after
# TERM_LIMIT. Sets term_s (-1 if it had to be killed).
halt_mx() {
	term_s=$("$SCALE" term "$mx_pid" "$TERM_LIMIT" | field term_s || true)
	[ -n "$term_s" ] || term_s=-1
	if [ "$term_s" = -1 ]; then
		kill -KILL "$mx_pid" 2>/dev/null || true
	fi
	stop_pid "$mx_pid"
}

kb() { awk -v k="$2" "/^$1:/ {print \$2; f = 1} END {if (!f) print k}" "/proc/$mx_pid/status" 2>/dev/null || echo -1; }

# Waits (bounded) until the daemon greets again after a load, then a
# second more, so that one load's tail is not the next probe's.
quiet() {
	"$SCALE" greet "$1" now "$CTL_LIMIT" > /dev/null || true
	sleep 1
}

# Starts smtp-sink on PORT, counting into FILE; sets sink_pid.
start_sink() {
	# shellcheck disable=SC2086 # SINK_USER is "" or "-u nobody"
	"$SINK" $SINK_USER -c -m 300 "127.0.0.1:$1" 1024 > "$2" 2>&1 &
	sink_pid=$!
	pids="$pids $sink_pid"
	"$TOOL" waitport "$1" 30 || die "smtp-sink did not start"
}

# The drain of NAME's spool (filled already) with its destination up:
# smtp-sink starts, then mxspoold, and the watch runs from the daemon's
# exec until the sink has WANT messages and the log as many "removed".
# Appends "restart_s=.. first_s=.. all_s=.. rate=.. got=.." to RES
# (rate -1: not done in time).
drain_run() {
	name=$1 want=$2 res=$3
	port=$("$TOOL" freeport) backend=$("$TOOL" freeport) mport=$("$TOOL" freeport)
	mx_conf "$name" "$port" "$backend" "$mport" > "$DIR/$name.conf"
	log=$DIR/$name.drain.log
	start_sink "$backend" "$DIR/$name.sink"
	start_mx "$name" "$log"
	# The start is timed beside the watch, which must see the first
	# delivery as it comes.
	"$SCALE" greet "$port" "$t0" "$START_LIMIT" > "$WORK/greet.out" &
	greet_pid=$!
	pids="$pids $greet_pid"
	limit=$((START_LIMIT + want / 500 + 120))
	st=0
	w=$("$DRAIN" watch "$t0" "$DIR/$name.sink" "$want" "$limit" mx "$log") || st=$?
	[ $st -le 1 ] || mx_die "$name: the drain watch failed"
	stop_pid "$greet_pid" # done by now, or START_LIMIT passed
	restart=$(field greet_s < "$WORK/greet.out")
	[ -n "$restart" ] || restart=-1
	mx_alive "$log"
	halt_mx
	stop_pid "$sink_pid"
	first=$(get first_s "$w") all=$(get all_s "$w")
	rate=$(awk -v f="$first" -v a="$all" -v n="$want" 'BEGIN {
	    if (f < 0 || a < 0 || a <= f) print -1; else printf "%.0f", (n - 1) / (a - f) }')
	echo "restart_s=$restart first_s=$first all_s=$all rate=$rate got=$(get got "$w") limit=$limit" >> "$res"
}

# One probe of the greeting's latency, with LOAD... beside it; appends
# its figures to $WORK/res.probe-TAG.
probe() {
	tag=$1 port=$2
	shift 2
	"$SCALE" probe "$port" "$PROBE_SECS" "$PROBE_MS" "$@" >> "$WORK/res.probe-$tag"
	quiet "$port"
}

# Figures 1 to 5 on the spool of SCALE_N held messages, then its drain
# (figure 6).
big_run() {
	name=big
	port=$("$TOOL" freeport) backend=$("$TOOL" freeport) mport=$("$TOOL" freeport)
	mx_conf "$name" "$port" "$backend" "$mport" > "$DIR/$name.conf"
	log=$DIR/$name.log
	start_mx "$name" "$log"
	greet "$port" "$log"
	echo "start_s=$greet_s" >> "$WORK/res.start"
	if [ "$greet_s" != -1 ]; then
		sleep "$SETTLE"
		echo "rss_kb=$(kb VmRSS -1)" >> "$WORK/res.rss"
		"$SCALE" timed "$SUMMARY_RUNS" "$CTL_LIMIT" "$MXSPOOLCTL" -c "$DIR/$name.conf" summary \
		    >> "$WORK/res.summary"
		quiet "$port"
		probe idle "$port" none
		probe summary "$port" exec "$MXSPOOLCTL" -c "$DIR/$name.conf" summary
		probe list "$port" exec "$MXSPOOLCTL" -c "$DIR/$name.conf" list --limit 100
		probe metrics "$port" http "$mport" /metrics
	fi
	echo "hwm_kb=$(kb VmHWM -1)" >> "$WORK/res.rss"
	mx_alive "$log"
	halt_mx
	echo "term_s=$term_s" >> "$WORK/res.term"
	bad=$(grep -c 'warning:\|error:\|fatal:\|panic\|Sanitizer\|runtime error' "$log" || true)
	echo "logged_bad=$bad" >> "$WORK/res.bad"
	[ "$bad" = 0 ] || grep 'warning:\|error:\|fatal:\|panic\|Sanitizer\|runtime error' "$log" | head -3 >&2
	drain_run "$name" "$DRAIN_N" "$WORK/res.drain"
}

# Fills NAME's spool with N messages.
fill() {
	rm -rf "${DIR:?}/$1"
	"$FILL" fill "$DIR/$1" "$2" || mx_die "spool fill of $2 messages failed"
}

fs=$(df -T "$DIR" | awk 'NR==2 {print $2 " on " $7}')
mem=$(awk '/^MemTotal:/ {printf "%.0f GiB", $2 / 1048576}' /proc/meminfo)
echo "bench/scale: mxspoold holding $(commas "$SCALE_N") small messages for one destination, down while measured; $(nproc) cores, $mem; spool in $DIR ($fs); $([ "$RUNS" = 1 ] && echo "1 run" || echo "medians of $RUNS runs")"
for _ in $(seq "$RUNS"); do
	fill ref "$REF_N"
	drain_run ref "$REF_N" "$WORK/res.ref"
	[ "${KEEP:-0}" = 1 ] || rm -rf "${DIR:?}"/ref*
	fill big "$SCALE_N"
	big_run
	[ "${KEEP:-0}" = 1 ] || rm -rf "${DIR:?}"/big*
done

# The median of a field over the runs ("" when none).
med() {
	[ -s "$WORK/res.$1" ] || return 0
	field "$2" < "$WORK/res.$1" | median
}
# How many runs gave -1 (did not get there in time) for a field.
timeouts() {
	[ -s "$WORK/res.$1" ] || { echo 0; return; }
	field "$2" < "$WORK/res.$1" | grep -cx -- -1 || true
}
# ok or MISSED for VALUE OP GOAL (OP: < or >=).
judge() { awk -v v="$1" -v g="$3" -v op="$2" 'BEGIN {
	ok = (op == "<") ? v < g : v >= g; print ok ? "ok" : "MISSED" }'; }
row() { printf '  %-46s %20s  %-12s %s\n' "$1" "$2" "$3" "$4"; }
NOSTART="not measured (no greeting within ${START_LIMIT}s)"

row figure value goal verdict
# 1. Start.
s=$(med start start_s)
if [ "$s" = -1 ]; then
	row "1. exec to first 220 greeting" - "< 2 s" "MISSED (timeout after ${START_LIMIT}s)"
else
	row "1. exec to first 220 greeting" "$(printf '%.2f s' "$s")" "< 2 s" "$(judge "$s" '<' 2)"
fi
# 2. Memory.
rss=$(med rss rss_kb)
hwm=$(med rss hwm_kb)
mb() { awk -v k="$1" 'BEGIN {printf "%.1f MB", k / 1024}'; }
if [ -z "$rss" ] || [ "$rss" = -1 ]; then
	row "2. RSS ${SETTLE} s after the greeting" - "< 300 MB" "$NOSTART"
else
	row "2. RSS ${SETTLE} s after the greeting" "$(mb "$rss")" "< 300 MB" "$(judge "$rss" '<' $((300 * 1024)))"
fi
if [ -n "$hwm" ] && [ "$hwm" != -1 ]; then
	row "   RSS, the most seen (VmHWM, figures 1-4)" "$(mb "$hwm")" "< 300 MB" "$(judge "$hwm" '<' $((300 * 1024)))"
fi
# 3. summary.
if [ -s "$WORK/res.summary" ]; then
	sm=$(med summary median_s)
	v=$(awk -v s="$sm" 'BEGIN {printf "%.1f ms", s * 1000}')
	to=$(field timeouts < "$WORK/res.summary" | awk '{t += $1} END {print t + 0}')
	fl=$(field failed < "$WORK/res.summary" | awk '{t += $1} END {print t + 0}')
	verdict=$(judge "$sm" '<' 0.05)
	[ "$to" = 0 ] || verdict="MISSED ($to timed out after ${CTL_LIMIT}s)"
	[ "$fl" = 0 ] || verdict="MISSED ($fl failed)"
	row "3. mxspoolctl summary, median of $SUMMARY_RUNS" "$v" "< 50 ms" "$verdict"
else
	row "3. mxspoolctl summary, median of $SUMMARY_RUNS" - "< 50 ms" "$NOSTART"
fi
# 4. Greeting latency under control-plane load.
ms() { awk -v v="$1" 'BEGIN {printf (v < 100 ? "%.1f" : "%.0f"), v}'; }
prow() {
	label=$1 tag=$2
	if [ ! -s "$WORK/res.probe-$tag" ]; then
		row "$label" - "max < 20 ms" "$NOSTART"
		return
	fi
	p50=$(med "probe-$tag" p50_ms) p99=$(med "probe-$tag" p99_ms) max=$(med "probe-$tag" max_ms)
	to=$(field timeouts < "$WORK/res.probe-$tag" | awk '{t += $1} END {print t + 0}')
	er=$(field errors < "$WORK/res.probe-$tag" | awk '{t += $1} END {print t + 0}')
	verdict=$(judge "$max" '<' 20)
	[ "$er" = 0 ] || verdict="MISSED ($er probes refused or not 220)"
	[ "$to" = 0 ] || verdict="MISSED ($to probes timed out after 30s)"
	row "$label" "$(ms "$p50")/$(ms "$p99")/$(ms "$max") ms" "max < 20 ms" "$verdict"
}
prow "4. greeting p50/p99/max, nothing else" idle
prow "   ... while summary runs in a loop" summary
prow "   ... while list --limit 100 runs in a loop" list
prow "   ... while GET /metrics runs in a loop" metrics
# 5. SIGTERM.
t=$(med term term_s)
if [ "$t" = -1 ]; then
	row "5. SIGTERM to exit" - "< 2 s" "MISSED (timeout after ${TERM_LIMIT}s, killed)"
else
	verdict=$(judge "$t" '<' 2)
	# Without a greeting, the signal came while the spool was loading.
	[ "$(timeouts start start_s)" = 0 ] || verdict="$verdict (sent while starting)"
	row "5. SIGTERM to exit" "$(printf '%.2f s' "$t")" "< 2 s" "$verdict"
fi
# 6. Drain.
big=$(med drain rate)
ref=$(med ref rate)
if [ "$DRAIN_N" -lt "$SCALE_N" ]; then
	what="the first $(commas "$DRAIN_N") of $(commas "$SCALE_N") messages"
else
	what="all $(commas "$SCALE_N") messages, to an empty queue"
fi
if [ "$big" = -1 ] || [ "$ref" = -1 ]; then
	lim=$(med drain limit)
	[ "$big" = -1 ] || lim=$(med ref limit)
	row "6. drain rate / 20,000-message spool's" - ">= 0.8x" "MISSED (timeout after ${lim}s)"
else
	ratio=$(awk -v a="$big" -v b="$ref" 'BEGIN {printf "%.2f", a / b}')
	row "6. drain rate / 20,000-message spool's" "${ratio}x" ">= 0.8x" "$(judge "$ratio" '>=' 0.8)"
fi
secs() { awk -v s="$1" -v l="$START_LIMIT" 'BEGIN {
	if (s < 0) printf "no greeting within %ds", l; else printf "%.2f s", s }'; }
# A drain's rate, or how far it got.
rate() { awk -v r="$(med "$1" rate)" -v g="$(med "$1" got)" -v l="$(med "$1" limit)" 'BEGIN {
	if (r < 0) printf "none (%d at smtp-sink when %ds ran out)", g, l; else printf "%d msgs/s", r }'; }
echo "  drain: $(rate drain) over $what (timed from the"
echo "   first to the last at smtp-sink); $(rate ref) for all 20,000 of the small"
echo "   spool. Restart to greeting with the destination up: $(secs "$(med drain restart_s)")"
echo "   (small spool: $(secs "$(med ref restart_s)"))"
if [ -s "$WORK/res.probe-summary" ]; then
	lr() { printf '%s runs of %s s' "$(med "probe-$1" load_runs)" "$(med "probe-$1" load_mean_s)"; }
	echo "  loads beside each ${PROBE_SECS}s probe (every ${PROBE_MS} ms): summary $(lr summary),"
	echo "   list --limit 100 $(lr list), /metrics $(lr metrics)"
fi
n=$(timeouts start start_s)
[ "$n" = 0 ] || [ "$RUNS" = 1 ] || echo "  $n of $RUNS runs got no greeting within ${START_LIMIT}s"
bad=$(med bad logged_bad)
[ "${bad:-0}" = 0 ] || echo "  mxspoold logged $bad warnings or errors while measured (median per run)"
