#!/usr/bin/env bats
# Issue 12, load and leaks: many sessions at once, each running jobs and
# copying files; create -> exec -> close cycles after which tenkid's
# memory and descriptors are back to their baseline.
#
# Short form in make test; `make soak` runs the long form
# (TENKI_LOAD_SESSIONS=20 TENKI_LOAD_CYCLES=500).
load lib

SESSIONS=${TENKI_LOAD_SESSIONS:-3}
CYCLES=${TENKI_LOAD_CYCLES:-5}

tenkid_rss_kb() { awk '/^VmRSS:/ { print $2 }' "/proc/$(cat "$TK/pid")/status"; }
tenkid_fds() { ls "/proc/$(cat "$TK/pid")/fd" | wc -l; }

setup_file() {
	start_tenkid
	head -c 4M /dev/urandom >"$TK/blob"
}
teardown_file() { cleanup_tenkid; }

# One session's work: jobs and a file copy both ways, checked.
work() {
	local s=$1 out
	out=$(tk_exec "$s" 'seq 1 20000 | sha256sum | cut -c1-16') || return 1
	[ "$out" = "$(seq 1 20000 | sha256sum | cut -c1-16)" ] || return 1
	cp "$TK/blob" "$T/sessions/$s/files/blob" || return 1
	out=$(tk_exec "$s" 'sha256sum blob | cut -c1-16') || return 1
	[ "$out" = "$(sha256sum "$TK/blob" | cut -c1-16)" ] || return 1
	cmp "$TK/blob" "$T/sessions/$s/files/blob" || return 1
}

@test "$SESSIONS sessions at once, each running jobs and copying files" {
	local pids=() i
	for i in $(seq "$SESSIONS"); do
		echo "name=l$i wait=false" >"$T/sessions/new"
	done
	for i in $(seq "$SESSIONS"); do
		[ "$(timeout 600 cat "$T/sessions/l$i/wait")" = READY ]
	done
	for i in $(seq "$SESSIONS"); do
		(source "$BATS_TEST_DIRNAME/lib.bash"; T=$T TK=$TK work "l$i") &
		pids+=($!)
	done
	for i in "${!pids[@]}"; do
		wait "${pids[$i]}" || { echo "session l$((i + 1)) failed"; return 1; }
	done
	for i in $(seq "$SESSIONS"); do
		timeout 120 rmdir "$T/sessions/l$i"
	done
	[ "$(domains | wc -l)" -eq 0 ]
}

@test "$CYCLES create -> exec -> close cycles: memory and descriptors back to baseline" {
	# One cycle first, so what is allocated once (thread stacks, caches)
	# is in the baseline.
	mkdir "$T/sessions/c0"
	[ "$(tk_exec c0 'echo hi')" = hi ]
	rmdir "$T/sessions/c0"
	rss0=$(tenkid_rss_kb)
	fds0=$(tenkid_fds)
	for i in $(seq "$CYCLES"); do
		mkdir "$T/sessions/c$i"
		[ "$(tk_exec "c$i" "echo cycle-$i")" = "cycle-$i" ]
		echo close >"$T/sessions/c$i/ctl"
		rmdir "$T/sessions/c$i"
	done
	rss=$(tenkid_rss_kb)
	fds=$(tenkid_fds)
	figure "after $CYCLES cycles: rss $rss0 -> $rss kB, fds $fds0 -> $fds"
	[ "$fds" -le "$fds0" ]
	[ "$rss" -le $((rss0 + 16384)) ]
	[ "$(domains | wc -l)" -eq 0 ]
	[ "$(state_sessions)" -eq 0 ]
}
