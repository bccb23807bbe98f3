#!/usr/bin/env bats
# Issue 3: exec/ through the tree only, against a real VM.
load lib

setup_file() {
	start_tenkid
	mkdir "$T/sessions/x"
	export X=$T/sessions/x
}
teardown_file() { cleanup_tenkid; }

newjob() { J=$X/exec/$(cat "$X/exec/clone"); }

@test "cmd: stdout, stderr, output, exit and status" {
	newjob
	echo 'echo hi; echo err >&2; exit 3' >"$J/cmd"
	[ "$(timeout 60 cat "$J/exit")" = 3 ]
	[ "$(cat "$J/stdout")" = hi ]
	[ "$(cat "$J/stderr")" = err ]
	run cat "$J/output"
	[[ "$output" == *hi* && "$output" == *err* ]]
	[ "$(echo "$output" | wc -l)" -eq 2 ]
	[ "$(cat "$J/status")" = "exited 3" ]
	[ "$(json_get "$J/info.json" exit_code)" = 3 ]
	[ "$(cat "$X/state")" = READY ]
}

@test "argv reaches the program unchanged, spaces and quotes included" {
	newjob
	printf '%s\n' printf '[%s]\n' 'a b' "it's \"quoted\"" '$HOME' >"$J/argv"
	[ "$(timeout 60 cat "$J/exit")" = 0 ]
	[ "$(cat "$J/stdout")" = "$(printf '[a b]\n[it'"'"'s "quoted"]\n[$HOME]')" ]
}

@test "env, cwd and the session env reach the job" {
	echo 'SESSION_VAR=from-session' >"$X/env"
	newjob
	echo 'JOB_VAR=from job' >"$J/env"
	echo /tmp >"$J/cwd"
	echo 'echo "$SESSION_VAR|$JOB_VAR|$(pwd)|$HOME"' >"$J/cmd"
	[ "$(timeout 60 cat "$J/stdout")" = "from-session|from job|/tmp|/home/tenki" ]
}

@test "stdin: written lines reach wc -l; EOF when the writer closes" {
	newjob
	echo 'wc -l' >"$J/cmd"
	printf 'a\nb\n' >"$J/stdin"
	[ "$(timeout 60 cat "$J/exit")" = 0 ]
	[ "$(cat "$J/stdout" | tr -d ' ')" = 2 ]
}

@test "eof in ctl ends stdin without a writer" {
	newjob
	echo 'cat; echo done' >"$J/cmd"
	echo eof >"$J/ctl"
	[ "$(timeout 60 cat "$J/exit")" = 0 ]
	[ "$(cat "$J/stdout")" = done ]
}

@test "a job that never reads stdin does not block on it" {
	newjob
	echo 'echo quick' >"$J/cmd"
	[ "$(timeout 30 cat "$J/exit")" = 0 ]
}

@test "timeout ends the job with 124 and its children too" {
	newjob
	echo 2s >"$J/timeout"
	echo 'sleep 300 & echo $! > /tmp/child.pid; sleep 300' >"$J/cmd"
	[ "$(timeout 60 cat "$J/exit")" = 124 ]
	[ "$(cat "$J/status")" = timeout ]
	[ "$(json_get "$J/info.json" timed_out)" = True ]
	sleep 1
	run tk_exec x 'kill -0 $(cat /tmp/child.pid) 2>/dev/null && echo alive || echo gone'
	[ "$output" = gone ]
}

@test "kill ends a running job with 128+15; RUNNING while it runs" {
	newjob
	echo 'sleep 300' >"$J/cmd"
	sleep 0.5
	[ "$(cat "$J/status")" = running ]
	[ "$(cat "$X/state")" = RUNNING ]
	echo kill >"$J/ctl"
	[ "$(timeout 60 cat "$J/exit")" = 143 ]
	[ "$(cat "$J/status")" = "killed SIGTERM" ]
	[ "$(cat "$X/state")" = READY ]
}

@test "rmdir of a running job kills it and frees its output" {
	mkdir "$X/exec/named"
	echo 'echo $$ > /tmp/named.pid; exec sleep 300' >"$X/exec/named/cmd"
	sleep 1
	rmdir "$X/exec/named"
	[ ! -e "$X/exec/named" ]
	sleep 1
	run tk_exec x 'kill -0 $(cat /tmp/named.pid) 2>/dev/null && echo alive || echo gone'
	[ "$output" = gone ]
}

@test "output streams live: the first line arrives before the job ends" {
	newjob
	echo 'echo first; sleep 5; echo second' >"$J/cmd"
	start=$(date +%s%N)
	first=$(timeout 30 head -n1 "$J/output")
	took=$((($(date +%s%N) - start) / 1000000))
	[ "$first" = first ]
	[ "$took" -lt 4000 ]
	[ "$(timeout 30 cat "$J/exit")" = 0 ]
	[ "$(cat "$J/stdout")" = "$(printf 'first\nsecond')" ]
}

@test "the streams end at the job's exit, not when it closes its pipes" {
	newjob
	# the job closes stdout and stderr at once and exits 2 s later
	echo 'echo early; exec >&- 2>&-; sleep 2; exit 5' >"$J/cmd"
	start=$(date +%s%N)
	[ "$(timeout 60 cat "$J/stdout")" = early ]
	took=$((($(date +%s%N) - start) / 1000000))
	echo "stdout ended after $took ms"
	[ "$took" -ge 1500 ]
	# a reader that saw the end sees the job ended, and the session idle
	[ "$(cat "$J/status")" = "exited 5" ]
	[ "$(cat "$X/state")" = READY ]
	[ -z "$(timeout 60 cat "$J/stderr")" ]
}

@test "O_NONBLOCK reads of a running stream fail with EAGAIN" {
	newjob
	# long enough that a loaded machine still reads it running
	echo 'sleep 60' >"$J/cmd"
	run python3 -c '
import os, sys, errno
fd = os.open(sys.argv[1], os.O_RDONLY | os.O_NONBLOCK)
try:
    os.read(fd, 10); print("no-eagain")
except BlockingIOError:
    print("eagain")' "$J/stdout"
	echo "read: $output"
	[ "$output" = eagain ]
	echo kill >"$J/ctl"
}

@test "poll wakes when output arrives" {
	newjob
	echo 'sleep 1; echo ping' >"$J/cmd"
	run timeout 30 python3 -c '
import os, select, sys
fd = os.open(sys.argv[1], os.O_RDONLY)
p = select.poll(); p.register(fd, select.POLLIN)
print(p.poll(20000) and os.read(fd, 100).decode().strip())' "$J/stdout"
	[ "$output" = ping ]
}

@test "bad input: ctl verb, timeout -5, missing cwd, missing program" {
	newjob
	refused_with "Invalid argument" bash -c "echo dance > '$J/ctl'"
	grep -q "unknown verb 'dance'" "$X/err"
	refused_with "Invalid argument" bash -c "echo -5 > '$J/timeout'"
	grep -q "timeout '-5' is not a duration" "$X/err"
	echo /nonexistent >"$J/cwd"
	echo true >"$J/cmd"
	[ "$(timeout 60 cat "$J/exit")" = 127 ]
	[[ "$(cat "$J/status")" == "failed "*nonexistent* ]]
	newjob
	printf 'no-such-program\n' >"$J/argv"
	timeout 60 cat "$J/exit"
	[[ "$(cat "$J/status")" == "failed "*no-such-program* ]]
	grep -q "no-such-program" "$X/err"
}

@test "a second cmd, or env after the start: EBUSY" {
	newjob
	echo 'sleep 2' >"$J/cmd"
	refused_with "busy" bash -c "echo true > '$J/cmd'"
	refused_with "busy" bash -c "echo A=1 > '$J/env'"
	timeout 60 cat "$J/exit"
}

@test "50 concurrent jobs stream every byte correctly" {
	for i in $(seq 50); do
		mkdir "$X/exec/c$i"
		echo "seq $i 100000 | head -c 200000" >"$X/exec/c$i/cmd" &
	done
	wait
	for i in $(seq 50); do
		[ "$(timeout 120 cat "$X/exec/c$i/exit")" = 0 ]
		want=$(seq "$i" 100000 | head -c 200000 | sha256sum)
		got=$(sha256sum <"$X/exec/c$i/stdout")
		[ "$want" = "$got" ] || { echo "job c$i differs"; false; }
	done
	for i in $(seq 50); do rmdir "$X/exec/c$i"; done
}

@test "200 MiB of output: host checksum equals the guest's; tenkid RSS stays flat" {
	newjob
	pid=$(cat "$TK/pid")
	rss0=$(awk '/VmRSS/ {print $2}' /proc/$pid/status)
	printf '%s\n' bash -c 'head -c 209715200 /dev/urandom | tee >(sha256sum >&2)' >"$J/argv"
	host=$(timeout 300 sha256sum <"$J/stdout" | cut -d' ' -f1)
	[ "$(timeout 120 cat "$J/exit")" = 0 ]
	guest=$(cut -d' ' -f1 <"$J/stderr")
	rss1=$(awk '/VmRSS/ {print $2}' /proc/$pid/status)
	echo "rss before ${rss0} kB after ${rss1} kB" >&3
	[ "$host" = "$guest" ]
	# ASan keeps freed memory in quarantine: RSS says nothing there
	[[ "$TENKID" == *asan* ]] || [ "$((rss1 - rss0))" -lt 65536 ]
	rmdir "$J"
}

@test "closing the session ends its jobs; their output stays readable" {
	newjob
	echo 'echo kept; sleep 300' >"$J/cmd"
	timeout 30 head -n1 "$J/stdout"
	echo close >"$X/ctl"
	[ "$(cat "$X/state")" = TERMINATED ]
	[ "$(timeout 30 cat "$J/exit")" = 137 ]
	[ "$(cat "$J/stdout")" = kept ]
}
