#!/usr/bin/env bash
# Runs every test of `make test` and ends with "N passed, N failed".
#   unit tests (cmocka), the agent's protocol tests (its own harness, no
#   VM), a short fuzz run, and the end-to-end suites (bats) which boot real
#   VMs through libvirt and use a private tenkid on a temporary mount.
# TENKI_TESTS="unit agent fuzz e2e" selects parts; TENKI_E2E="lifecycle"
# selects e2e files (tests/e2e/NAME.bats); TENKI_E2E_JOBS (default 3) runs
# that many suites at once.
set -u
cd "$(dirname "$0")/.."
root=$PWD
parts=${TENKI_TESTS:-unit agent fuzz e2e}
passed=0 failed=0
failures=()
logdir=$root/build/test-logs
mkdir -p "$logdir"

count() { # name status
	if [ "$2" -eq 0 ]; then passed=$((passed + 1)); else
		failed=$((failed + 1)); failures+=("$1"); fi
}

run_unit() {
	for t in build/tests/test_*; do
		[ -x "$t" ] || continue
		n=$(basename "$t")
		# cmocka: each test prints "[       OK ]" or "[  FAILED  ]".
		out=$("$t" 2>&1); rc=$?
		ok=$(grep -c '^\[       OK \]' <<<"$out")
		bad=$(grep -c '^\[  FAILED  \]' <<<"$out")
		# a FAILED summary line repeats each failed test: halve
		bad=$(((bad + 1) / 2))
		[ "$rc" -ne 0 ] && [ "$bad" -eq 0 ] && bad=1
		passed=$((passed + ok)); failed=$((failed + bad))
		[ "$bad" -gt 0 ] && { failures+=("unit:$n"); echo "$out" | tail -20; }
		echo "unit $n: $ok passed, $bad failed"
	done
}

run_agent() {
	[ -f tests/agent/test_agent.py ] || return 0
	out=$(timeout 300 python3 tests/agent/test_agent.py 2>&1); rc=$?
	echo "$out" >"$logdir/agent.log"
	line=$(grep -E '^[0-9]+ passed, [0-9]+ failed' <<<"$out" | tail -1)
	if [ -n "$line" ]; then
		p=${line%% passed*}; f=${line#*, }; f=${f%% failed*}
		passed=$((passed + p)); failed=$((failed + f))
		[ "$f" -gt 0 ] && failures+=("agent")
	else
		count agent 1
	fi
	[ "$rc" -ne 0 ] && echo "$out" | tail -30
	echo "agent protocol: ${line:-no result (rc $rc)}"
}

run_fuzz() {
	if ! command -v clang >/dev/null; then
		echo "fuzz: clang missing (scripts/setup.sh installs it)"
		count fuzz 1
		return
	fi
	make -s -C tests/fuzz run SECONDS="${TENKI_FUZZ_SECONDS:-5}"
	count fuzz $?
}

# One suite, in the background-friendly form: its TAP goes to a log, its
# time to a file beside it.
run_suite() {
	local f=$1 n start
	n=$(basename "$f" .bats)
	start=$(date +%s)
	timeout 900 bats --tap "$f" >"$logdir/e2e-$n.tap" 2>&1
	echo "$? $(($(date +%s) - start))" >"$logdir/e2e-$n.rc"
}

# Suites run TENKI_E2E_JOBS at a time (default 3: most of a suite's time is
# spent waiting on guests, and each suite has its own tenkid, mount and
# state directory).  Suites that disturb the whole machine (crash.bats
# restarts libvirtd) or need much of it (each SDK suite boots the seed's
# 4 vCPU, 8 GiB example) run one at a time, after the others.
SERIAL_SUITES=" crash sdk-go sdk-python sdk-typescript hosts "
run_e2e() {
	command -v bats >/dev/null || { echo "e2e: bats missing"; count e2e 1; return; }
	local jobs=${TENKI_E2E_JOBS:-3} files=() f n rc secs ok bad running=0
	for f in ${TENKI_E2E:-$(ls tests/e2e/*.bats | xargs -n1 basename | sed 's/\.bats$//')}; do
		files+=("tests/e2e/$f.bats")
	done
	for f in "${files[@]}"; do
		n=$(basename "$f" .bats)
		case $SERIAL_SUITES in *" $n "*) continue ;; esac
		if [ "$running" -ge "$jobs" ]; then
			wait -n
			running=$((running - 1))
		fi
		run_suite "$f" &
		running=$((running + 1))
	done
	wait
	for f in "${files[@]}"; do
		n=$(basename "$f" .bats)
		case $SERIAL_SUITES in *" $n "*) run_suite "$f" ;; esac
	done
	for f in "${files[@]}"; do
		n=$(basename "$f" .bats)
		read -r rc secs <"$logdir/e2e-$n.rc"
		ok=$(grep -c '^ok ' "$logdir/e2e-$n.tap")
		bad=$(grep -c '^not ok ' "$logdir/e2e-$n.tap")
		[ "$rc" -ne 0 ] && [ "$bad" -eq 0 ] && bad=1
		passed=$((passed + ok)); failed=$((failed + bad))
		if [ "$bad" -gt 0 ]; then
			failures+=("e2e:$n")
			grep -v '^ok ' "$logdir/e2e-$n.tap" | head -150
		fi
		echo "e2e $n: $ok passed, $bad failed ($secs s)"
	done
}

for p in $parts; do
	case $p in
	unit) run_unit ;;
	agent) run_agent ;;
	fuzz) run_fuzz ;;
	e2e) run_e2e ;;
	*) echo "unknown part $p"; exit 2 ;;
	esac
done
[ ${#failures[@]} -gt 0 ] && echo "failed: ${failures[*]}"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
