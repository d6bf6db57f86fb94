#!/bin/sh
# Runs libFuzzer targets one after another (`make fuzz`), each for SECONDS
# on its seed corpus, and fails if any of them finds something.
#
#   sh mk/fuzz.sh BUILD SECONDS NAME...
#
# BUILD/tests/fuzz/fuzz_NAME reads tests/fuzz/corpus/NAME/ and, after it,
# a scratch directory; libFuzzer writes what it finds into the first
# directory it is given, so the scratch one comes first and the committed
# corpus is only read. A crash, a sanitizer report, a leak, an input that
# takes longer than -timeout or more memory than -rss_limit_mb stops the
# target with a non-zero status: its input is kept in
# BUILD/fuzz-crashes/NAME/ and the end of its log is printed.
# tests/fuzz/NAME.dict, when there is one, is given as a dictionary.
set -u

[ $# -ge 3 ] || {
	echo "usage: sh mk/fuzz.sh BUILD SECONDS NAME..." >&2
	exit 2
}
build=$1
secs=$2
shift 2
count=$#
failed=""
# The names are read once, here: the loop's `set --` below reuses "$@"
# for each target's options.
for name in "$@"; do
	bin=$build/tests/fuzz/fuzz_$name
	seeds=tests/fuzz/corpus/$name
	work=$build/fuzz-corpus/$name
	crashes=$build/fuzz-crashes/$name
	log=$build/fuzz-logs/$name.log
	dict=tests/fuzz/$name.dict
	rm -rf "$work" "$crashes"
	mkdir -p "$work" "$crashes" "$build/fuzz-logs"
	set -- -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 \
	    -print_final_stats=1 -artifact_prefix="$crashes/"
	[ -f "$dict" ] && set -- "$@" -dict="$dict"
	echo "fuzz: $name for ${secs}s on $seeds"
	# stdin is /dev/null: an input that names a file to read (the
	# config's recipients = "/dev/stdin") must not wait for a terminal.
	if "$bin" "$@" "$work" "$seeds" </dev/null >"$log" 2>&1; then
		# The last status line and the final counters.
		grep -E '^#[0-9]+.*(DONE|pulse|NEW|REDUCE)' "$log" | tail -n 1
		grep -E '^stat::(number_of_executed_units|average_exec_per_sec|peak_rss_mb)' "$log" |
			tr '\n' ' '
		echo
	else
		echo "fuzz: $name FAILED; the end of $log:"
		tail -n 60 "$log"
		for f in "$crashes"/*; do
			[ -e "$f" ] || continue
			echo "fuzz: $name: input kept in $f; again with: $bin $f"
		done
		failed="$failed $name"
	fi
done
if [ -n "$failed" ]; then
	echo "fuzz: failed:$failed" >&2
	exit 1
fi
echo "fuzz: $count targets ran ${secs}s each, nothing found"
