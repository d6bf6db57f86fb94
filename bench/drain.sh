#!/bin/sh
# bench/drain: how fast held mail leaves once the mailbox store is back.
# MSGS messages of 10 KiB are sent (smtp-source, SESSIONS sessions, one
# message per connection) to a relay whose backend is down, and held;
# then the backend, smtp-sink, starts on its port, and the clock runs from
# the moment it listens until smtp-sink has received every message and the
# relay's queue is empty (mxspoold: its log's last "removed"; Postfix: no
# queue file left). The wait before the first delivery (the relay noticing
# the backend is back) and the drain after it are timed apart too, and so
# is the longest time the backend's count stood still (a per-message
# backoff would show there). Relays, all in the same run on 127.0.0.1:
#
#   mxspoold, stock retry policy (5s, x2, up to 10s, jitter 0.1)
#   mxspoold, stock policy, `mxspoolctl flush --all` the moment the
#	backend listens (the counterpart of Postfix's postqueue -f)
#   mxspoold, stock policy, the backend sick for the outage instead of
#	down: smtp-sink answering 4xx to every RCPT while the load arrives
#	and for OUTAGE seconds after; then a plain smtp-sink takes its
#	place. Besides the drain, the delivery attempts made during the
#	outage are counted against the failed probes (each probe is one
#	attempt, on the destination's backoff).
#   mxspoold, retry initial = 1s, multiplier = 1 (it probes every second:
#	what mxspoold drains in when its probe comes at once, to set beside
#	Postfix's postqueue -f)
#   Postfix as a backup MX, `postqueue -f` the moment the backend listens
#	(Postfix's best case)
#   Postfix with minimal_backoff_time = queue_run_delay = 30s and
#	maximal_backoff_time = 10m (a tighter Postfix than stock)
#   Postfix left to its stock backoff (300s), capped at CAP seconds
#
# Postfix takes mail in with in_flow_delay = 0 (intake is not what is timed
# here, and 0 makes the load shorter); everything else is stock. Both
# relays open at most 20 connections to the backend (Postfix's
# default_destination_concurrency_limit, mxspoold's max_connections).
# Medians of RUNS runs; the stock-backoff Postfix runs STOCK_RUNS times
# (default 1: each may take CAP seconds).
#
#   RUNS=3 MSGS=20000 SESSIONS=50 CAP=600 STOCK_RUNS=1 OUTAGE=20  the defaults
#   MSGS=2000 RUNS=1 CAP=400 sh bench/drain.sh           a quick run
#   RELAYS="mx mxflush mxsick mx1 flush pf30 stock"   the relays above
#   KEEP=1                       keep the logs, spools and queues
#
# Needs root (Postfix) and the postfix package (make bench installs it).
# Every server listens on 127.0.0.1 on a free port; everything started is
# stopped on exit, failure or interrupt included. Run by `make bench`.
set -eu
BUILD=${BUILD:-build}
RUNS=${RUNS:-3}
MSGS=${MSGS:-20000}
SESSIONS=${SESSIONS:-50}
CAP=${CAP:-600}
STOCK_RUNS=${STOCK_RUNS:-1}
RELAYS=${RELAYS:-mx mxflush mxsick mx1 flush pf30 stock}
OUTAGE=${OUTAGE:-20}
SIZE=10240
HERE=$(cd "$(dirname "$0")" && pwd)
TOOL=$BUILD/bench/accept
DRAIN=$BUILD/bench/drain
MXSPOOLD=$BUILD/mxspoold
MXSPOOLCTL=$BUILD/mxspoolctl
SMTPDUMP=$BUILD/tests/tools/smtpdump
SOURCE=/usr/sbin/smtp-source
SINK=/usr/sbin/smtp-sink
LIMIT=600 # seconds: any one load, settling or drain but the capped one
# The longest a drain may take when nothing waits out a 5-minute backoff.
DRAIN_LIMIT=$((CAP < LIMIT ? CAP : LIMIT))

# shellcheck disable=SC2034 # read by lib/common.sh
BENCH=drain
# shellcheck source=bench/lib/common.sh
. "$HERE/lib/common.sh"

for f in "$TOOL" "$DRAIN" "$MXSPOOLD" "$MXSPOOLCTL" "$SOURCE" "$SINK" /usr/sbin/postfix; do
	[ -x "$f" ] || die "$f is missing (run it through make bench)"
done
[ "$(id -u)" -eq 0 ] || die "needs root, to run a Postfix instance"

bench_start

# The messages smtp-sink has received, from its counters (-c).
sink_count() {
	tr '\r' '\n' < "$1" | sed -n 's/.*mesg=//p' | tail -1 | grep . || echo 0
}

# Sends the load to PORT; dies unless every message was taken.
load() {
	name=$1 port=$2
	timeout --foreground "$LIMIT" "$SOURCE" -s "$SESSIONS" -m "$MSGS" \
	    -l "$SIZE" -M source.bench.invalid -f sender@source.bench.invalid \
	    -t user@example.com "127.0.0.1:$port" > "$WORK/source.out" 2>&1 || {
		cat "$WORK/source.out" >&2
		die "$name: smtp-source failed"
	}
}

# Starts smtp-sink on PORT in DIR (with more options, e.g. -r rcpt: 4xx to
# every RCPT), waits until it listens; sets sink_pid and t0 (when it was
# seen listening).
start_sink() {
	sdir=$1 sport=$2
	shift 2
	"$SINK" -u nobody -c -m 300 "$@" "127.0.0.1:$sport" 1024 > "$sdir/sink.out" 2>&1 &
	sink_pid=$!
	pids="$pids $sink_pid"
	"$TOOL" waitport "$sport" 30 || die "smtp-sink did not start"
	t0=$(now)
}

# After a finished drain: the backend's final count, once any late or
# duplicate delivery has had a second to arrive.
finish_sink() {
	sleep 1
	stop_pid "$sink_pid"
	sink_count "$1/sink.out"
}

# mxspool.conf for a benchmark daemon: PORT SPOOL BACKEND [RETRY...].
mx_conf() {
	cat <<EOF
hostname = "mx.bench.invalid"
listen = {"127.0.0.1:$1"}
spool_dir = "$2"
control_socket = "$2.ctl"
metrics_listen = ""
relay_domains = {"example.com"}
max_connections = 1000
max_connections_per_ip = 1000
domain "example.com" {
	route = "smtp:[127.0.0.1]:$3"
}
EOF
	if [ -n "${4:-}" ]; then
		echo "retry { $4 }"
	fi
}

# A failed mxspoold run: its directory stays for a look.
mx_die() {
	KEEP=1
	die "$@"
}

# One mxspoold drain. TAG names the results; RETRY is the retry block's
# body ("" for the stock policy); HOW is flush (mxspoolctl flush at the
# backend's start), wait (for the next probe) or sick (the backend is up
# but answers 4xx to every RCPT during the load and OUTAGE seconds more).
run_mxspoold() {
	tag=$1 retry=$2 how=$3 dir=$WORK/mx-$1-$4
	port=$("$TOOL" freeport) backend=$("$TOOL" freeport)
	mkdir -p "$dir"
	mx_conf "$port" "$dir/spool" "$backend" "$retry" > "$dir/mxspool.conf"
	log=$dir/mxspoold.log
	"$MXSPOOLD" -c "$dir/mxspool.conf" > "$log" 2>&1 &
	mx_pid=$!
	pids="$pids $mx_pid"
	"$TOOL" waitport "$port" 30 || {
		tail -5 "$log" >&2
		die "mxspoold did not start"
	}
	if [ "$how" = sick ]; then
		start_sink "$dir" "$backend" -r rcpt
		sick_t0=$t0
	fi
	load "mxspoold ($tag)" "$port"
	got=$(grep -c ': queued in ' "$log" || true)
	[ "$got" = "$MSGS" ] || die "mxspoold ($tag): $got of $MSGS messages queued"
	sick=""
	if [ "$how" = sick ]; then
		sleep "$OUTAGE"
		stop_pid "$sink_pid"
		attempts=$(grep -c 'status=deferred' "$log" || true)
		probes=$(grep -c 'destination failing' "$log" || true)
		sick="outage_s=$(awk -v a="$sick_t0" -v b="$(now)" 'BEGIN {printf "%.1f", b - a}') attempts=$attempts probes=$probes"
	fi
	# The backoff in force when the backend comes back: the wait for the
	# next probe can be no longer (jitter included).
	interval=$(sed -n 's/.*next probe in \([0-9]*\)s$/\1/p' "$log" | tail -1)
	deferred=$(grep -c 'status=deferred' "$log" || true)
	start_sink "$dir" "$backend"
	if [ "$how" = flush ]; then
		"$MXSPOOLCTL" -s "$dir/spool.ctl" flush --all > "$dir/flush.out" 2>&1 ||
		    mx_die "mxspoold ($tag): mxspoolctl flush failed: $(cat "$dir/flush.out")"
	fi
	if ! "$DRAIN" watch "$t0" "$dir/sink.out" "$MSGS" "$DRAIN_LIMIT" mx "$log" \
	    > "$dir/watch.out"; then
		cat "$dir/watch.out" >&2
		grep -v 'queued in\|client=\|from=<\|connect from\|status=sent\|: removed$' \
		    "$log" | tail -20 >&2
		mx_die "mxspoold ($tag): no empty queue ${DRAIN_LIMIT}s after the backend came back (see $dir)"
	fi
	w=$(cat "$dir/watch.out")
	sunk=$(finish_sink "$dir")
	stop_pid "$mx_pid"
	[ "$sunk" = "$MSGS" ] || mx_die "mxspoold ($tag): the backend received $sunk of $MSGS messages (see $dir)"
	removed=$(grep -c ': removed$' "$log" || true)
	[ "$removed" = "$MSGS" ] || mx_die "mxspoold ($tag): $removed of $MSGS removed (see $dir)"
	redeferred=$(($(grep -c 'status=deferred' "$log" || true) - deferred))
	# Anything logged as a warning or worse is a finding; so is mail
	# left in the stopped spool.
	bad=$(grep -c 'warning:\|error:\|fatal:\|panic\|Sanitizer\|runtime error' "$log" || true)
	left=0
	if [ -x "$SMTPDUMP" ]; then
		left=$("$SMTPDUMP" env "$dir/spool" | grep -c . || true)
	fi
	[ "$bad" = 0 ] || grep 'warning:\|error:\|fatal:\|panic\|Sanitizer\|runtime error' "$log" | head -5 >&2
	echo "$w interval_s=${interval:-0} redeferred=$redeferred logged_bad=$bad left=$left $sick" \
	    >> "$WORK/res.$tag"
	if [ "$bad" = 0 ] && [ "$left" = 0 ] && [ "$redeferred" = 0 ]; then
		discard "$dir"
	else
		KEEP=1 # the evidence stays
		echo "bench/drain: mxspoold ($tag): see $dir" >&2
	fi
}

# Waits until all MSGS messages sit in Postfix's deferred queue and
# nothing else is queued (its first delivery attempts are over).
pf_settle() {
	dir=$1 i=0
	while :; do
		d=$(sh "$HERE/lib/postfix.sh" count "$dir" deferred)
		o=$(sh "$HERE/lib/postfix.sh" count "$dir" incoming active maildrop hold)
		[ "$d" = "$MSGS" ] && [ "$o" = 0 ] && return 0
		i=$((i + 1))
		[ $i -lt $((LIMIT * 2)) ] || die "postfix: queue not settled after ${LIMIT}s ($d deferred, $o elsewhere)"
		sleep 0.5
	done
}

# One Postfix drain. HOW: flush (postqueue -f at the backend's start) or
# wait (left to its backoff; a drain that outlasts MAXSECS is reported as
# such). The rest are main.cf settings.
run_postfix() {
	tag=$1 how=$2 maxsecs=$3 r=$4
	shift 4
	dir=$WORK/pf-$tag-$r
	port=$("$TOOL" freeport) backend=$("$TOOL" freeport)
	sh "$HERE/lib/postfix.sh" start "$dir" "$port" "$backend" example.com 0 "$@"
	"$TOOL" waitport "$port" 30 || die "postfix did not start"
	load "postfix ($tag)" "$port"
	pf_settle "$dir"
	# The log of the load is of no use here, and large.
	: > "$dir/log/postfix.log"
	start_sink "$dir" "$backend"
	if [ "$how" = flush ]; then
		sh "$HERE/lib/postfix.sh" flush "$dir"
	fi
	st=0
	"$DRAIN" watch "$t0" "$dir/sink.out" "$MSGS" "$maxsecs" postfix "$dir/queue" \
	    > "$dir/watch.out" || st=$?
	[ $st -le 1 ] || die "postfix ($tag): the watch failed"
	w=$(cat "$dir/watch.out")
	sunk=$(finish_sink "$dir")
	sh "$HERE/lib/postfix.sh" stop "$dir"
	if [ $st = 0 ]; then
		[ "$sunk" = "$MSGS" ] || die "postfix ($tag): the backend received $sunk of $MSGS messages"
	elif [ "$how" = flush ]; then
		die "postfix ($tag): no empty queue ${maxsecs}s after postqueue -f: $w"
	fi
	echo "$w sunk=$sunk" >> "$WORK/res.$tag"
	discard "$dir"
}

fs=$(df -T "$WORK" | awk 'NR==2 {print $2 " on " $7}')
echo "bench/drain: $MSGS messages of 10 KiB held while the backend is down, then smtp-sink starts; time from its start to an empty queue; 127.0.0.1; spools in $WORK ($fs); medians of $RUNS runs ($STOCK_RUNS for Postfix's stock backoff, capped at ${CAP}s)"
# Each run starts with the next relay, so that none always inherits the
# disk writeback and deleted queue of the one before it.
# shellcheck disable=SC2086
order=$(printf '%s\n' $RELAYS | grep -vx stock | tr '\n' ' ' || true)
for r in $(seq "$RUNS"); do
	for s in $order; do
		case $s in
		mx) run_mxspoold mx "" wait "$r" ;;
		mxflush) run_mxspoold mxflush "" flush "$r" ;;
		mxsick) run_mxspoold mxsick "" sick "$r" ;;
		mx1) run_mxspoold mx1 "initial = 1s multiplier = 1 max_interval = 1s jitter = 0" wait "$r" ;;
		flush) run_postfix flush flush "$DRAIN_LIMIT" "$r" ;;
		pf30) run_postfix pf30 wait "$DRAIN_LIMIT" "$r" minimal_backoff_time=30s \
		    queue_run_delay=30s maximal_backoff_time=600s ;;
		esac
	done
	# shellcheck disable=SC2086
	set -- $order
	if [ $# -gt 1 ]; then
		first=$1
		shift
		order="$* $first"
	fi
done
case " $RELAYS " in
*" stock "*)
	for r in $(seq "$STOCK_RUNS"); do
		run_postfix stock wait "$CAP" "$r"
	done
	;;
esac

# The median of a field over a relay's runs; -1 (not reached) sorts first,
# so a median of -1 means most runs did not get there. "" when not run.
med() {
	[ -s "$WORK/res.$1" ] || return 0
	field "$2" < "$WORK/res.$1" | median
}
# Seconds, or "> CAP" for -1 (not reached), or "-" (not run).
fmt_time() { awk -v t="$1" -v c="$2" 'BEGIN {
	if (t == "") print "-"; else if (t < 0) printf "> %d", c;
	else printf "%.2f", t }'; }

drain_med() { # the median of empty_s - first_s over a relay's runs
	[ -s "$WORK/res.$1" ] || return 0
	awk '{ for (i = 1; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] }
	    f = v["first_s"]; e = v["empty_s"]
	    if (f < 0 || e < 0) print -1; else printf "%.2f\n", e - f }' \
	    "$WORK/res.$1" | median
}

printf '  %-46s %8s %8s %9s %9s\n' relay wait_s drain_s total_s max_gap_s
row() {
	tag=$1 label=$2 cap=$3
	first=$(med "$tag" first_s)
	empty=$(med "$tag" empty_s)
	drain=$(drain_med "$tag")
	printf '  %-46s %8s %8s %9s %9s\n' "$label" "$(fmt_time "$first" "$cap")" \
	    "$(fmt_time "$drain" "$cap")" "$(fmt_time "$empty" "$cap")" \
	    "$(fmt_time "$(med "$tag" max_gap_s)" "$cap")"
}
row mx "mxspoold, stock retry" "$DRAIN_LIMIT"
row mxflush "mxspoold, mxspoolctl flush at backend start" "$DRAIN_LIMIT"
row mxsick "mxspoold, stock retry, backend sick (4xx)" "$DRAIN_LIMIT"
row mx1 "mxspoold, retry initial = 1s, multiplier = 1" "$DRAIN_LIMIT"
row flush "postfix, postqueue -f at backend start" "$DRAIN_LIMIT"
row pf30 "postfix, backoff 30s, queue_run_delay 30s" "$DRAIN_LIMIT"
row stock "postfix, stock backoff (300s)" "$CAP"
echo "  (wait: backend start to its first message; drain: first message to"
echo "   empty queue; total: backend start to empty queue; max gap: longest"
echo "   the backend's count stood still after the first message)"
if [ -s "$WORK/res.mx" ]; then
	echo "  mxspoold stock: the probe interval in force when the backend came back"
	echo "  (so the longest its wait could have been): $(med mx interval_s) s"
fi
if [ -s "$WORK/res.mxsick" ]; then
	# Each failed probe is one attempt; the messages in flight when the
	# store first failed (at most recovery_connections, 2) add theirs.
	echo "  mxspoold, backend sick: $(med mxsick attempts) delivery attempts for $MSGS held messages in $(med mxsick outage_s) s of outage, $(med mxsick probes) failed probes (goal: attempts <= probes + 2: $(awk '{
		for (i = 1; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] }
		if (v["attempts"] > v["probes"] + 2) bad++ }
		END { print (bad || NR == 0) ? "MISSED" : "met" }' "$WORK/res.mxsick"))"
fi
if [ -s "$WORK/res.stock" ]; then
	awk -v cap="$CAP" -v n="$MSGS" '$0 ~ /done=0/ {
		split($1, g, "="); printf "  postfix stock backoff: %d of %d delivered when the cap of %ds ran out\n", g[2], n, cap }' \
	    "$WORK/res.stock"
fi

# A / B, or "> CAP / B" when A was not reached (-1), or "-".
ratio() { awk -v a="$1" -v b="$2" -v c="${3:-0}" 'BEGIN {
	if (a == "" || b == "" || b <= 0) print "-";
	else if (a < 0) printf "> %.2f", c / b; else printf "%.2f", a / b }'; }
verdict() { awk -v v="$1" -v g="$2" 'BEGIN {
	print (v == "-" ? "not run" : (v + 0 >= g ? "met" : "MISSED")) }'; }
mx=$(med mx empty_s)
flush=$(med flush empty_s)
r0=$(ratio "$flush" "$(med mxflush empty_s)")
r1=$(ratio "$flush" "$mx")
r2=$(ratio "$flush" "$(med mx1 empty_s)")
r3=$(ratio "$(drain_med flush)" "$(drain_med mx)")
r4=$(ratio "$(med pf30 empty_s)" "$mx" "$DRAIN_LIMIT")
r5=$(ratio "$(med stock empty_s)" "$mx" "$CAP")
line() { printf '  %-54s %9s%s\n' "$1" "$2$([ "$2" = - ] || echo x)" "${3:-}"; }
line "postfix -f / mxspoold mxspoolctl flush, total:" "$r0" "  goal >= 2x: $(verdict "$r0" 2)"
line "postfix -f / mxspoold stock, total:" "$r1" "  goal >= 2x: $(verdict "$r1" 2)"
w1=$(med mx first_s)
printf '  %-54s %9s  goal <= 1 s: %s\n' "mxspoold stock, backend start to first message:" \
    "$(fmt_time "$w1" "$DRAIN_LIMIT") s" "$(awk -v w="$w1" 'BEGIN {
	print (w == "" ? "not run" : (w >= 0 && w <= 1 ? "met" : "MISSED")) }')"
line "postfix -f / mxspoold probing every 1s, total:" "$r2" "  goal >= 2x: $(verdict "$r2" 2)"
line "postfix -f / mxspoold stock, drain after 1st message:" "$r3"
line "postfix 30s backoff / mxspoold stock, total:" "$r4"
line "postfix stock backoff / mxspoold stock, total:" "$r5"

# The drain waits for no per-message backoff: in every mxspoold run the
# first delivery came within the probe interval in force (jitter
# included), no message was deferred after the backend came back, and the
# backend's count never stood still for GAP seconds (a sixth of the
# stock policy's first backoff).
GAP=5
nowait=$(cat "$WORK/res.mx" "$WORK/res.mxflush" "$WORK/res.mx1" 2>/dev/null | awk -v lim="$GAP" '{
	for (i = 1; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] }
	if (v["first_s"] > v["interval_s"] + 1) bad++
	if (v["redeferred"] != 0 || v["max_gap_s"] >= lim) bad++
	if (v["max_gap_s"] > gap) gap = v["max_gap_s"]
	redef += v["redeferred"]
	} END { printf "%s (longest gap %.2f s, limit %d s; %d deferred after the backend came back)",
	    (bad || NR == 0) ? "MISSED" : "met", gap, lim, redef }')
printf '  %-54s %s\n' "mxspoold's drain waits for no per-message backoff:" "$nowait"
