#!/usr/bin/env bats
# Issue 2: two sessions at once, independent; kill -9 of tenkid and a
# restart find them both still READY, re-attached, not rebooted.
load lib

setup_file() {
	# No warm pool or golden build: tenkid is killed here at arbitrary
	# moments, and libvirtd 9.0 segfaulted once when the client that
	# started a restore (a pool refill) died before it finished.  The
	# sessions boot cold; crash.bats covers kills during restores.
	export TENKI_POOL=0 TENKID_ARGS="--golden off"
	start_tenkid
}
teardown_file() { cleanup_tenkid; }

@test "two sessions run at once and are independent" {
	mkdir "$T/sessions/a" &
	mkdir "$T/sessions/b"
	wait
	[ "$(cat "$T/sessions/a/state")" = READY ]
	[ "$(cat "$T/sessions/b/state")" = READY ]
	[ "$(domains | wc -l)" -eq 2 ]
	tk_exec a 'echo only-in-a > /home/tenki/mark'
	run tk_exec b 'cat /home/tenki/mark 2>&1 || echo absent'
	[[ "$output" == *absent* ]]
	echo pause >"$T/sessions/a/ctl"
	run tk_exec b 'echo b-works'
	[ "$output" = b-works ]
	echo resume >"$T/sessions/a/ctl"
	[ "$(tk_exec a 'cat /home/tenki/mark')" = only-in-a ]
}

@test "kill -9 of tenkid, restart: both sessions READY and re-attached" {
	boot_a=$(tk_exec a 'cat /proc/sys/kernel/random/boot_id')
	kill9_tenkid
	[ "$(domains | wc -l)" -eq 2 ]
	start_tenkid
	[ "$(cat "$T/sessions/a/wait")" = READY ]
	[ "$(cat "$T/sessions/b/wait")" = READY ]
	# the same VM, not a new boot
	[ "$(tk_exec a 'cat /proc/sys/kernel/random/boot_id')" = "$boot_a" ]
	[ "$(tk_exec a 'cat /home/tenki/mark')" = only-in-a ]
	[ "$(domains | wc -l)" -eq 2 ]
}

@test "right after a restart, exec and files/ wait for an agent slow to come back" {
	# a's qemu frozen across the restart: its agent answers only later
	dom="$(state_tag)$(cut -c25- "$T/sessions/a/id")"
	pid=$(pgrep -f -- "guest=$dom," | head -1)
	[ -n "$pid" ]
	stop_tenkid
	kill -STOP "$pid"
	start_tenkid
	(sleep 3; kill -CONT "$pid") &
	t0=$SECONDS
	run tk_exec a 'echo back'
	kill -CONT "$pid"
	echo "exec: $output after $((SECONDS - t0)) s"
	[ "$output" = back ]
	[ $((SECONDS - t0)) -ge 2 ]
	[ "$(cat "$T/sessions/a/files/mark")" = only-in-a ]
}

@test "a job streaming through a kill -9 of tenkid: no gap, no duplicate" {
	j=$(cat "$T/sessions/b/exec/clone")
	# 400 lines in 100 bursts: each sleep is a process, and 400 of them
	# took over 2 minutes on a loaded TCG guest.
	echo 'for i in $(seq 1 100); do for k in 1 2 3 4; do echo line-$(((i - 1) * 4 + k)); done; sleep 0.04; done' \
		>"$T/sessions/b/exec/$j/cmd"
	sleep 1.5
	kill9_tenkid
	sleep 2
	start_tenkid
	[ "$(timeout 300 cat "$T/sessions/b/exec/$j/exit")" = 0 ]
	diff <(seq 1 400 | sed 's/^/line-/') "$T/sessions/b/exec/$j/stdout"
}

@test "SIGTERM unmounts and leaves VMs running; a restart re-attaches" {
	stop_tenkid
	! mountpoint -q "$T"
	[ "$(domains | wc -l)" -eq 2 ]
	start_tenkid
	[ "$(cat "$T/sessions/b/wait")" = READY ]
	[ "$(tk_exec b 'echo again')" = again ]
}

@test "output past the per-stream cap is dropped, the job runs on, truncated says so" {
	stop_tenkid
	TENKID_ARGS="--output-cap 1M" start_tenkid
	[ "$(cat "$T/sessions/b/wait")" = READY ]
	j=$(cat "$T/sessions/b/exec/clone")
	echo 'head -c 3145728 /dev/zero; echo done >&2' >"$T/sessions/b/exec/$j/cmd"
	[ "$(timeout 120 cat "$T/sessions/b/exec/$j/exit")" = 0 ]
	[ "$(stat -c %s "$TK/state/sessions/$(cat "$T/sessions/b/id")/jobs/$j/stdout")" -eq 1048576 ]
	[ "$(cat "$T/sessions/b/exec/$j/stdout" | wc -c)" -eq 1048576 ]
	[ "$(json_get "$T/sessions/b/exec/$j/info.json" truncated)" = True ]
	[ "$(cat "$T/sessions/b/exec/$j/stderr")" = done ]
}
