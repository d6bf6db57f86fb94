#!/bin/sh
# bench/accept: how fast mxspoold takes mail in, against Postfix set up as
# a backup MX (stock durability, backend down) and against smtp-sink (which
# stores nothing: the limit of SMTP on this machine), all under the same
# load in the same run on 127.0.0.1: smtp-source sending MSGS messages of
# SIZE bytes over SESSIONS concurrent sessions, one message per connection.
# Beside the load, PROBES sessions of `bench/accept latency`, sending at
# most PROBE_RATE messages a second each (a sample that loads every server
# alike; their messages are 10 KiB whatever SIZE is), time each message
# from its final ".\r\n" to the 250. Then
# mxspoold's resident memory while it holds IDLE idle connections after
# EHLO. Medians of RUNS runs.
#
# The same load through HAProxy (send-proxy-v2, round robin, SMTP health
# checks, as docs/scale-out.md deploys it): in front of one node, which
# is HAProxy's own price, and in front of three nodes on this machine.
# For each, the CPU seconds HAProxy and the nodes spent per 1,000
# messages, so that the figures carry over to a machine with more cores.
#
#   RUNS=3 MSGS=20000 SIZE=10240 SESSIONS=50 PROBES=2 PROBE_RATE=50
#   IDLE=10000                                           the defaults
#   MSGS=2000 RUNS=1 make bench                          a quick run
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
PROBES=${PROBES:-2}
PROBE_RATE=${PROBE_RATE:-50}
IDLE=${IDLE:-10000}
SIZE=${SIZE:-10240}
HERE=$(cd "$(dirname "$0")" && pwd)
TOOL=$BUILD/bench/accept
MXSPOOLD=$BUILD/mxspoold
SOURCE=/usr/sbin/smtp-source
SINK=/usr/sbin/smtp-sink
HAPROXY=/usr/sbin/haproxy
LIMIT=600 # seconds: any one load, or a server's start, may take no longer

# shellcheck disable=SC2034 # read by lib/common.sh
BENCH=accept
# shellcheck source=bench/lib/common.sh
. "$HERE/lib/common.sh"

for f in "$TOOL" "$MXSPOOLD" "$SOURCE" "$SINK" "$HAPROXY" /usr/sbin/postfix; do
	[ -x "$f" ] || die "$f is missing (run it through make bench)"
done
[ "$(id -u)" -eq 0 ] || die "needs root, to run a Postfix instance"

# The idle test needs a descriptor per connection in mxspoold and in the
# client, each a separate process. (ulimit -H and -n are not POSIX, but
# dash and bash, the shells make runs sh as here, both have them.)
# shellcheck disable=SC3045
hard=$(ulimit -Hn)
[ "$hard" = unlimited ] && hard=1048576
want=$((IDLE + 1000))
[ "$want" -gt "$hard" ] && want=$hard
# shellcheck disable=SC3045
ulimit -n "$want"
if [ $((want - 1000)) -lt "$IDLE" ]; then
	echo "bench/accept: open file limit $hard: idle connections cut to $((want - 1000))" >&2
	IDLE=$((want - 1000))
fi

bench_start

# mxspool.conf for a benchmark daemon: PORT SPOOL BACKEND MAXCONN [TEXT],
# TEXT being more options. Every client comes from 127.0.0.1, so the
# per-address limit is raised to the total one.
mx_conf() {
	cat <<EOF
hostname = "mx.bench.invalid"
listen = {"127.0.0.1:$1"}
spool_dir = "$2"
control_socket = "$2.ctl"
relay_domains = {"example.com"}
max_connections = $4
max_connections_per_ip = $4
domain "example.com" {
	route = "smtp:[127.0.0.1]:$3"
}
${5:-}
EOF
}

# Starts mxspoold in DIR on PORT [with more options TEXT]; sets mx_pid.
start_mxspoold() {
	dir=$1 port=$2 maxconn=$3
	mkdir -p "$dir"
	mx_conf "$port" "$dir/spool" "$("$TOOL" freeport)" "$maxconn" "${4:-}" > "$dir/mxspool.conf"
	"$MXSPOOLD" -c "$dir/mxspool.conf" > "$dir/mxspoold.log" 2>&1 &
	mx_pid=$!
	pids="$pids $mx_pid"
	"$TOOL" waitport "$port" 30 || {
		tail -5 "$dir/mxspoold.log" >&2
		die "mxspoold did not start"
	}
}

# The load on one server: smtp-source and the latency probe together.
# Writes "rate=.. p50_ms=.. p99_ms=.. probed=N" to $WORK/load.out (not to
# stdout: in a subshell, die would not end the script); dies on any error.
load() {
	name=$1 port=$2
	rm -f "$WORK/stop"
	"$TOOL" latency "$port" "$PROBES" "$PROBE_RATE" "$WORK/stop" "$LIMIT" \
	    > "$WORK/probe.out" &
	probe=$!
	pids="$pids $probe"
	t0=$(now)
	if ! timeout --foreground "$LIMIT" "$SOURCE" -s "$SESSIONS" -m "$MSGS" -l "$SIZE" \
	    -M source.bench.invalid -f sender@source.bench.invalid \
	    -t user@example.com "127.0.0.1:$port" > "$WORK/source.out" 2>&1; then
		touch "$WORK/stop"
		cat "$WORK/source.out" >&2
		die "$name: smtp-source failed"
	fi
	t1=$(now)
	touch "$WORK/stop"
	wait "$probe" || die "$name: the latency probe failed"
	forget "$probe"
	p=$(cat "$WORK/probe.out")
	[ "$(echo "$p" | field errors)" = 0 ] || die "$name: probe errors: $p"
	echo "rate=$(awk -v a="$t0" -v b="$t1" -v n="$MSGS" 'BEGIN {printf "%.0f", n / (b - a)}')" \
	    "p50_ms=$(echo "$p" | field p50_ms) p99_ms=$(echo "$p" | field p99_ms)" \
	    "probed=$(echo "$p" | field n)" > "$WORK/load.out"
}

# Each server's messages must all have arrived: smtp-source stops at the
# first refusal, and the counts here catch anything else.
check_count() {
	name=$1 got=$2 want=$3
	[ "$got" = "$want" ] || die "$name: $got messages taken in, expected $want"
}

run_sink() {
	dir=$WORK/sink-$1 port=$("$TOOL" freeport)
	mkdir -p "$dir"
	user=""
	[ "$(id -u)" -eq 0 ] && user="-u nobody"
	# shellcheck disable=SC2086
	"$SINK" $user -c -m $((SESSIONS + PROBES + 50)) "127.0.0.1:$port" 1024 \
	    > "$dir/sink.out" 2>&1 &
	sink=$!
	pids="$pids $sink"
	"$TOOL" waitport "$port" 30 || die "smtp-sink did not start"
	load smtp-sink "$port"
	out=$(cat "$WORK/load.out")
	sleep 0.2 # the counter line is printed after the last QUIT
	stop_pid "$sink"
	got=$(tr '\r' '\n' < "$dir/sink.out" | sed -n 's/.*mesg=//p' | tail -1)
	check_count smtp-sink "$got" $((MSGS + $(echo "$out" | field probed)))
	echo "$out" >> "$WORK/res.sink"
	discard "$dir"
}

run_mxspoold() {
	dir=$WORK/mx-$1 port=$("$TOOL" freeport)
	start_mxspoold "$dir" "$port" 1000
	c0=$(cpu_s "$mx_pid")
	load mxspoold "$port"
	out=$(cat "$WORK/load.out")
	c1=$(cpu_s "$mx_pid")
	stop_pid "$mx_pid"
	got=$(grep -c ': queued in ' "$dir/mxspoold.log" || true)
	total=$((MSGS + $(echo "$out" | field probed)))
	check_count mxspoold "$got" "$total"
	echo "$out node_cpu=$(per_k "$c0" "$c1" "$total")" >> "$WORK/res.mx"
	discard "$dir"
}

# CPU seconds (user and system) a process has used so far.
cpu_s() {
	awk -v hz="$(getconf CLK_TCK)" '{print ($14 + $15) / hz}' "/proc/$1/stat"
}

# The sum of cpu_s over PIDS.
cpu_sum() {
	t=0
	for p in "$@"; do
		t=$(awk -v a="$t" -v b="$(cpu_s "$p")" 'BEGIN {print a + b}')
	done
	echo "$t"
}

# CPU seconds from A to B per 1,000 of N messages.
per_k() { awk -v a="$1" -v b="$2" -v n="$3" 'BEGIN {printf "%.2f", (b - a) * 1000 / n}'; }

# N nodes behind HAProxy: run_lb N RUN.
run_lb() {
	# Not dir: start_mxspoold sets that one.
	n=$1 lbdir=$WORK/lb$1-$2 lport=$("$TOOL" freeport)
	mkdir -p "$lbdir"
	node_pids="" servers=""
	for i in $(seq "$n"); do
		pport=$("$TOOL" freeport)
		start_mxspoold "$lbdir/n$i" "$("$TOOL" freeport)" 1000 \
		    "node_id = \"n$i\"
proxy_listen = {\"127.0.0.1:$pport\"}"
		node_pids="$node_pids $mx_pid"
		servers="$servers
	server n$i 127.0.0.1:$pport send-proxy-v2 check check-send-proxy inter 2s"
	done
	cat > "$lbdir/haproxy.cfg" <<EOF
global
	maxconn $((SESSIONS + PROBES + 100))
defaults
	mode tcp
	timeout connect 5s
	timeout client 60s
	timeout server 60s
frontend smtp
	bind 127.0.0.1:$lport
	default_backend mx
backend mx
	balance roundrobin
	option smtpchk HELO haproxy.bench.invalid$servers
EOF
	"$HAPROXY" -c -q -f "$lbdir/haproxy.cfg" || die "haproxy: bad config $lbdir/haproxy.cfg"
	"$HAPROXY" -db -f "$lbdir/haproxy.cfg" > "$lbdir/haproxy.log" 2>&1 &
	hp=$!
	pids="$pids $hp"
	"$TOOL" waitport "$lport" 30 || die "haproxy did not start"
	sleep 0.5 # its first health checks
	# shellcheck disable=SC2086 # a list of pids
	lb0=$(cpu_s "$hp") nodes0=$(cpu_sum $node_pids)
	load "$n nodes behind haproxy" "$lport"
	out=$(cat "$WORK/load.out")
	# shellcheck disable=SC2086
	lb1=$(cpu_s "$hp") nodes1=$(cpu_sum $node_pids)
	stop_pid "$hp"
	got=0
	for p in $node_pids; do stop_pid "$p"; done
	for i in $(seq "$n"); do
		got=$((got + $(grep -c ': queued in ' "$lbdir/n$i/mxspoold.log" || true)))
	done
	total=$((MSGS + $(echo "$out" | field probed)))
	check_count "$n nodes behind haproxy" "$got" "$total"
	echo "$out lb_cpu=$(per_k "$lb0" "$lb1" "$total")" \
	    "node_cpu=$(per_k "$nodes0" "$nodes1" "$total")" >> "$WORK/res.lb$n"
	discard "$lbdir"
}

# FLOW: "" for Postfix's default in_flow_delay (1s), or a value.
run_postfix() {
	tag=$1 flow=$2 dir=$WORK/pf-$1-$3 port=$("$TOOL" freeport)
	sh "$HERE/lib/postfix.sh" start "$dir" "$port" "$("$TOOL" freeport)" \
	    example.com "$flow"
	"$TOOL" waitport "$port" 30 || die "postfix did not start"
	load "postfix ($tag)" "$port"
	out=$(cat "$WORK/load.out")
	sh "$HERE/lib/postfix.sh" stop "$dir"
	got=$(sh "$HERE/lib/postfix.sh" count "$dir")
	check_count "postfix ($tag)" "$got" $((MSGS + $(echo "$out" | field probed)))
	echo "$out" >> "$WORK/res.pf-$tag"
	discard "$dir"
}

# mxspoold's resident memory before and while it holds IDLE connections,
# each read to its EHLO reply.
run_idle() {
	dir=$WORK/idle-$1 port=$("$TOOL" freeport)
	start_mxspoold "$dir" "$port" $((IDLE + 100))
	before=$(awk '/^VmRSS:/ {print $2}' "/proc/$mx_pid/status")
	: > "$dir/idle.out"
	"$TOOL" idle "$port" "$IDLE" 3 > "$dir/idle.out" &
	idle=$!
	pids="$pids $idle"
	i=0
	until grep -q '^ready' "$dir/idle.out"; do
		i=$((i + 1))
		[ $i -lt $((LIMIT * 10)) ] || die "idle: connections not open after ${LIMIT}s"
		sleep 0.1
	done
	rss=$(awk '/^VmRSS:/ {print $2}' "/proc/$mx_pid/status")
	wait "$idle" || die "idle: client failed"
	forget "$idle"
	open=$(field open < "$dir/idle.out")
	held=$(field held < "$dir/idle.out")
	stop_pid "$mx_pid"
	[ "$open" = "$IDLE" ] || die "idle: only $open of $IDLE connections opened (see $dir)"
	[ "$held" = "$IDLE" ] || die "idle: mxspoold dropped $((IDLE - held)) idle connections"
	echo "before_kb=$before rss_kb=$rss" >> "$WORK/res.idle"
	discard "$dir"
}

fs=$(df -T "$WORK" | awk 'NR==2 {print $2 " on " $7}')
echo "bench/accept: smtp-source, $MSGS messages of $SIZE bytes, $SESSIONS sessions, one message per connection, 127.0.0.1; spools in $WORK ($fs); medians of $RUNS runs"
# Each run starts with the next server, so that none always inherits the
# disk writeback and deleted queue of the one before it.
order="sink mx stock flow0 lb1 lb3"
for r in $(seq "$RUNS"); do
	for s in $order; do
		case $s in
		sink) run_sink "$r" ;;
		mx) run_mxspoold "$r" ;;
		stock) run_postfix stock "" "$r" ;;
		flow0) run_postfix flow0 0 "$r" ;;
		lb1) run_lb 1 "$r" ;;
		lb3) run_lb 3 "$r" ;;
		esac
	done
	order="${order#* } ${order%% *}"
	run_idle "$r"
done

med() { field "$2" < "$WORK/res.$1" | median; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", a / b}'; }
verdict() { awk -v v="$1" -v g="$2" -v op="$3" 'BEGIN {
	ok = op == ">=" ? v >= g : v < g; print ok ? "met" : "MISSED" }'; }

printf '  %-44s %8s %8s %8s %8s\n' server msgs/s p50_ms p99_ms samples
row() {
	printf '  %-44s %8s %8s %8s %8s\n' "$1" "$(med "$2" rate)" \
	    "$(med "$2" p50_ms)" "$(med "$2" p99_ms)" "$(med "$2" probed)"
}
row "smtp-sink (stores nothing)" sink
row "mxspoold" mx
row "postfix backup MX, stock (in_flow_delay 1s)" pf-stock
row "postfix backup MX, in_flow_delay = 0" pf-flow0
row "haproxy -> 1 mxspoold node (PROXY v2)" lb1
row "haproxy -> 3 mxspoold nodes (PROXY v2)" lb3
echo "  (p50/p99: end of data to 250, timed on $PROBES probe sessions beside"
echo "   smtp-source, each sending at most $PROBE_RATE messages a second)"
echo "  CPU seconds per 1,000 messages ($(nproc) cores here):"
printf '  %-44s %8s %8s\n' "" mxspoold haproxy
printf '  %-44s %8s %8s\n' "mxspoold alone" "$(med mx node_cpu)" -
printf '  %-44s %8s %8s\n' "haproxy -> 1 node" "$(med lb1 node_cpu)" "$(med lb1 lb_cpu)"
printf '  %-44s %8s %8s\n' "haproxy -> 3 nodes (all three)" "$(med lb3 node_cpu)" "$(med lb3 lb_cpu)"

mx=$(med mx rate)
r1=$(ratio "$mx" "$(med pf-stock rate)")
r2=$(ratio "$mx" "$(med pf-flow0 rate)")
r3=$(ratio "$mx" "$(med sink rate)")
printf '  %-44s %7sx  goal >= 3x: %s\n' "mxspoold / postfix stock:" "$r1" "$(verdict "$r1" 3 '>=')"
printf '  %-44s %7sx  goal >= 3x: %s\n' "mxspoold / postfix in_flow_delay = 0:" "$r2" "$(verdict "$r2" 3 '>=')"
printf '  %-44s %7sx  goal >= 0.5x: %s\n' "mxspoold / smtp-sink:" "$r3" "$(verdict "$r3" 0.5 '>=')"
printf '  %-44s %7sx\n' "haproxy -> 1 node / mxspoold alone:" "$(ratio "$(med lb1 rate)" "$mx")"
printf '  %-44s %7sx\n' "haproxy -> 3 nodes / mxspoold alone:" "$(ratio "$(med lb3 rate)" "$mx")"
before=$(med idle before_kb)
rss=$(med idle rss_kb)
mb=$(awk -v k="$rss" 'BEGIN {printf "%.1f", k / 1024}')
printf '  %-44s %6s MB  goal < 200 MB: %s\n' "mxspoold RSS, $IDLE idle connections:" "$mb" "$(verdict "$mb" 200 '<')"
awk -v b="$before" -v r="$rss" -v n="$IDLE" 'BEGIN {
	printf "  (%.1f MB before they opened: %.1f KiB per connection)\n",
	    b / 1024, (r - b) / n }'
