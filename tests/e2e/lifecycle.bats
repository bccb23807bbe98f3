#!/usr/bin/env bats
# Issue 2: the whole life of a session, through the mounted tree only.
load lib

setup_file() { start_tenkid; }
teardown_file() { cleanup_tenkid; }

@test "mkdir boots a real VM and returns when READY" {
	run timeout 200 mkdir "$T/sessions/demo"
	[ "$status" -eq 0 ]
	[ "$(cat "$T/sessions/demo/state")" = READY ]
	[[ "$(cat "$T/sessions/demo/id")" =~ ^[0-9a-f-]{36}$ ]]
	[ "$(json_get "$T/sessions/demo/info.json" state)" = READY ]
	[ "$(cat "$T/sessions/demo/wait")" = READY ]
	# a real libvirt domain runs it
	[ "$(domains | wc -l)" -eq 1 ]
	virsh -c qemu:///system domstate "$(domains)" | grep -q running
	grep -q "demo" "$T/sessions/index"
	[ -s "$T/sessions/demo/console" ]
}

@test "the guest runs commands (exec)" {
	run tk_exec demo 'echo hello from $(uname -s)'
	[ "$status" -eq 0 ]
	[ "$output" = "hello from Linux" ]
}

@test "pause stops the guest: its clock does not advance; resume continues" {
	up1=$(tk_exec demo 'cut -d" " -f1 /proc/uptime')
	h1=$(date +%s.%N)
	echo pause >"$T/sessions/demo/ctl"
	[ "$(cat "$T/sessions/demo/state")" = PAUSED ]
	virsh -c qemu:///system domstate "$(domains)" | grep -q paused
	sleep 4
	echo resume >"$T/sessions/demo/ctl"
	[ "$(cat "$T/sessions/demo/state")" = READY ]
	up2=$(tk_exec demo 'cut -d" " -f1 /proc/uptime')
	h2=$(date +%s.%N)
	# The host saw >= 4 s pass; the guest at least 3 s less.
	python3 - "$up1" "$up2" "$h1" "$h2" <<'PY'
import sys
u1, u2, h1, h2 = map(float, sys.argv[1:])
print("guest %.2fs host %.2fs" % (u2 - u1, h2 - h1))
assert h2 - h1 >= 4, "host did not wait"
assert (u2 - u1) < (h2 - h1) - 3, "guest clock advanced while paused"
PY
}

@test "extend pushes the deadline" {
	echo 'name=dl max_duration=1h' >"$T/sessions/new"
	[ "$(cat "$T/sessions/dl/state")" = READY ]
	e1=$(json_get "$T/sessions/dl/info.json" expires_at)
	echo 'extend 30m' >"$T/sessions/dl/ctl"
	e2=$(json_get "$T/sessions/dl/info.json" expires_at)
	python3 - "$e1" "$e2" <<'PY'
import sys, datetime
f = lambda s: datetime.datetime.fromisoformat(s.replace("Z", "+00:00"))
d = (f(sys.argv[2]) - f(sys.argv[1])).total_seconds()
assert abs(d - 1800) < 2, d
PY
	rmdir "$T/sessions/dl"
}

@test "close makes it TERMINATED; rmdir leaves no trace" {
	id=$(cat "$T/sessions/demo/id")
	echo close >"$T/sessions/demo/ctl"
	[ "$(cat "$T/sessions/demo/state")" = TERMINATED ]
	[ "$(cat "$T/sessions/demo/wait")" = TERMINATED ]
	[ "$(json_get "$T/sessions/demo/info.json" reason)" = closed ]
	[ -z "$(domains)" ]
	# the record and the exec output stay until rmdir
	ls "$T/sessions/demo/exec" | grep -q '^1$'
	rmdir "$T/sessions/demo"
	[ ! -e "$T/sessions/demo" ]
	[ -z "$(domains)" ]
	[ ! -e "$TK/state/sessions/$id" ]
	run virsh -c qemu:///system list --all --name
	[[ "$output" != *"$id"* ]]
}

@test "max_duration closes a session when it runs out" {
	echo 'name=short max_duration=8s' >"$T/sessions/new"
	[ "$(cat "$T/sessions/short/state")" = READY ]
	for _ in $(seq 60); do
		[ "$(cat "$T/sessions/short/state")" = TERMINATED ] && break
		sleep 0.5
	done
	[ "$(cat "$T/sessions/short/state")" = TERMINATED ]
	grep -q "max_duration" "$T/sessions/short/err"
	[ -z "$(domains)" ]
	rmdir "$T/sessions/short"
}
