#!/bin/sh
# bench/lib/postfix.sh: a throwaway Postfix instance, set up as a backup MX
# for one domain whose backend is down, for bench/accept.sh to compare
# against, and for bench/drain.sh to drain. (It lives in lib/ because
# make bench runs every bench/*.sh.)
#
#   postfix.sh start DIR PORT BACKEND_PORT DOMAIN [IN_FLOW_DELAY [NAME=VALUE...]]
#   postfix.sh stop DIR
#   postfix.sh count DIR [QUEUE...]
#                            messages in the stopped (or quiet) instance's
#                            queues: all of them, or only those named
#                            (incoming, active, deferred, maildrop, hold)
#   postfix.sh flush DIR     postqueue -f: deliver everything queued now
#
# Everything lives under DIR (config, queue, data, log); nothing in
# /etc/postfix is read or changed but the stock postfix-files (meta
# directory). No chroot, one loopback listener, no DNS. Durability is left
# stock: Postfix fsyncs each queue file before it answers 250. The relay
# domain is routed to BACKEND_PORT, where nothing listens, so mail stays
# queued as it would while the mailbox store is down (until the caller
# starts one there). IN_FLOW_DELAY unset or empty keeps Postfix's default
# (1s). Each NAME=VALUE is one more main.cf setting, such as
# minimal_backoff_time=30s.
set -eu

usage() {
	echo "usage: postfix.sh start DIR PORT BACKEND_PORT DOMAIN [IN_FLOW_DELAY [NAME=VALUE...]]" >&2
	echo "       postfix.sh stop DIR | count DIR [QUEUE...] | flush DIR" >&2
	exit 2
}

write_main_cf() {
	dir=$1 backend=$3 domain=$4 flow=$5
	route="smtp:[127.0.0.1]:$backend"
	cat > "$dir/etc/main.cf" <<EOF
# Written by bench/postfix.sh for one benchmark run.
compatibility_level = 3.6
queue_directory = $dir/queue
data_directory = $dir/data
meta_directory = /etc/postfix
mail_owner = postfix
setgid_group = postdrop
myhostname = backup-mx.bench.invalid
mydomain = bench.invalid
myorigin = \$myhostname
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
biff = no

# A backup MX: relay for the domain only, to its (down) backend.
mydestination =
local_transport = error:5.1.1 no local delivery
alias_maps =
alias_database =
relay_domains = $domain
smtpd_relay_restrictions = reject_unauth_destination
transport_maps = inline:{ $domain=$route, .$domain=$route }
smtp_dns_support_level = disabled
smtpd_peername_lookup = no

# No syslog daemon here: log to a file of the instance's own.
maillog_file = $dir/log/postfix.log
maillog_file_prefixes = $dir
EOF
	if [ -n "$flow" ]; then
		echo "in_flow_delay = $flow" >> "$dir/etc/main.cf"
	fi
}

# Debian's stock master.cf chroots most services; this one does not, and
# listens on one loopback address and port only.
write_master_cf() {
	dir=$1 port=$2
	cat > "$dir/etc/master.cf" <<EOF
# service type  private unpriv chroot wakeup maxproc command
127.0.0.1:$port inet n - n - - smtpd
pickup     unix  n - n 60  1 pickup
cleanup    unix  n - n -   0 cleanup
qmgr       unix  n - n 300 1 qmgr
rewrite    unix  - - n -   - trivial-rewrite
bounce     unix  - - n -   0 bounce
defer      unix  - - n -   0 bounce
trace      unix  - - n -   0 bounce
verify     unix  - - n -   1 verify
flush      unix  n - n 1000? 0 flush
proxymap   unix  - - n -   - proxymap
proxywrite unix  - - n -   1 proxymap
smtp       unix  - - n -   - smtp
relay      unix  - - n -   - smtp
showq      unix  n - n -   - showq
error      unix  - - n -   - error
retry      unix  - - n -   - error
discard    unix  - - n -   - discard
anvil      unix  - - n -   1 anvil
scache     unix  - - n -   1 scache
postlog    unix-dgram n - n - 1 postlogd
EOF
}

cmd=${1:-}
[ $# -ge 2 ] || usage
dir=$2
case "$cmd" in
start)
	[ $# -ge 5 ] || usage
	mkdir -p "$dir/etc" "$dir/queue" "$dir/data" "$dir/log"
	# Postfix's processes run as the postfix user and must reach the
	# queue through every parent directory.
	chmod 755 "$dir" "$dir/etc" "$dir/log"
	chown postfix "$dir/data"
	write_main_cf "$dir" "$3" "$4" "$5" "${6:-}"
	write_master_cf "$dir" "$3"
	shift 5
	if [ $# -gt 0 ]; then
		shift
	fi
	for kv in "$@"; do
		case "$kv" in
		*=*) echo "${kv%%=*} = ${kv#*=}" >> "$dir/etc/main.cf" ;;
		*) usage ;;
		esac
	done
	postfix -c "$dir/etc" start > "$dir/log/start.out" 2>&1 || {
		cat "$dir/log/start.out" >&2
		exit 1
	}
	;;
stop)
	if [ -f "$dir/etc/main.cf" ]; then
		postfix -c "$dir/etc" stop > /dev/null 2>&1 || true
		# master(8) exits after its children; wait for it (bounded).
		pid=$(sed -n 's/^ *//p' "$dir/queue/pid/master.pid" 2>/dev/null || true)
		i=0
		while [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && [ $i -lt 100 ]; do
			sleep 0.1
			i=$((i + 1))
		done
		if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
			postfix -c "$dir/etc" abort > /dev/null 2>&1 || true
		fi
	fi
	;;
count)
	shift 2
	queues=${*:-maildrop incoming active deferred hold}
	n=0
	for q in $queues; do
		[ -d "$dir/queue/$q" ] || continue
		c=$(find "$dir/queue/$q" -type f | wc -l)
		n=$((n + c))
	done
	echo "$n"
	;;
flush)
	postqueue -c "$dir/etc" -f
	;;
*)
	usage
	;;
esac
