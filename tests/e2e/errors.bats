#!/usr/bin/env bats
# Issue 2: bad input gets a precise errno, a readable reason in err, and
# changes nothing.
load lib

setup_file() {
	start_tenkid
	mkdir "$T/sessions/e1"
}
teardown_file() { cleanup_tenkid; }

@test "mkdir with an invalid name: EINVAL, reason in sessions/err, nothing made" {
	refused_with "Invalid argument" mkdir "$T/sessions/-bad"
	grep -q "'-bad' is not a valid session name" "$T/sessions/err"
	refused_with "Invalid argument" mkdir "$T/sessions/a b"
	[ "$(ls "$T/sessions" | grep -vc -e err -e new -e index)" -eq 1 ]
	[ "$(domains | wc -l)" -eq 1 ]
}

@test "the same name twice: EEXIST (and a reason when tenkid sees it)" {
	refused_with "File exists" mkdir "$T/sessions/e1"
	refused_with "File exists" bash -c "echo name=e1 > '$T/sessions/new'"
	grep -q "e1: a session named e1 exists" "$T/sessions/err"
	[ "$(domains | wc -l)" -eq 1 ]
}

@test "unknown ctl verb: EINVAL, reason in the session's err, state unchanged" {
	refused_with "Invalid argument" bash -c "echo dance > '$T/sessions/e1/ctl'"
	grep -q "unknown verb 'dance'" "$T/sessions/e1/err"
	[ "$(cat "$T/sessions/e1/state")" = READY ]
}

@test "extend banana: EINVAL with the reason, nothing changed" {
	before=$(cat "$T/sessions/e1/info.json")
	refused_with "Invalid argument" bash -c "echo 'extend banana' > '$T/sessions/e1/ctl'"
	grep -q "extend 'banana': not a duration" "$T/sessions/e1/err"
	[ "$(cat "$T/sessions/e1/info.json")" = "$before" ]
}

@test "a write with one bad verb applies none of them" {
	# one write(2) holding two verbs
	refused_with "Invalid argument" python3 -c 'import os,sys; fd=os.open(sys.argv[1], os.O_WRONLY); os.write(fd, b"pause\nbogus\n")' "$T/sessions/e1/ctl"
	[ "$(cat "$T/sessions/e1/state")" = READY ]
}

@test "bad create specs: EINVAL, reason names the key, no residue" {
	for spec in 'cpu=0' 'cpu=17' 'memory=100' 'allow_outbound=perhaps' \
		'max_duration=soon' 'colour=blue' 'cpu=1 cpu=2' '{"cpu_cores":"many"}'; do
		refused_with "Invalid argument" bash -c "echo '$spec' > '$T/sessions/new'"
	done
	grep -q "key cpu: '17' is not a whole number in 1..16" "$T/sessions/err"
	grep -q "unknown key 'colour'" "$T/sessions/err"
	[ "$(domains | wc -l)" -eq 1 ]
	[ "$(state_sessions)" -eq 1 ]
}

@test "read-only files refuse writes with EACCES; unknown files cannot be made" {
	refused_with "Permission denied" bash -c "echo x > '$T/sessions/e1/state'"
	grep -q "read-only" "$T/sessions/e1/err"
	refused_with "Permission denied" bash -c "echo x > '$T/sessions/e1/nosuch'"
	refused_with "No such file" cat "$T/sessions/nosuch/state"
}

@test "pause twice: EBUSY with the reason" {
	echo pause >"$T/sessions/e1/ctl"
	refused_with "busy" bash -c "echo pause > '$T/sessions/e1/ctl'"
	grep -q "pause: session is PAUSED" "$T/sessions/e1/err"
	echo resume >"$T/sessions/e1/ctl"
	[ "$(cat "$T/sessions/e1/state")" = READY ]
}

@test "defaults: a bad line fails the write and keeps the old set" {
	echo 'cpu=1 memory=512' >"$T/defaults"
	refused_with "Invalid argument" bash -c "echo 'cpu=1 memory=1' > '$T/defaults'"
	[ "$(cat "$T/defaults")" = 'cpu=1 memory=512' ]
	grep -q "defaults: key memory" "$T/err"
}

@test "a failed create leaves nothing behind" {
	refused_with "No such file" bash -c "echo 'name=noimg image=nosuchimage' > '$T/sessions/new'"
	grep -q "image nosuchimage not found" "$T/sessions/err"
	[ ! -e "$T/sessions/noimg" ]
	[ "$(domains | wc -l)" -eq 1 ]
	[ "$(state_sessions)" -eq 1 ]
}
