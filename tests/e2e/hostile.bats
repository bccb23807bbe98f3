#!/usr/bin/env bats
# Issue 12: hostile guests.  Each session of the image `hostile` runs
# tests/hostile/hostile_agent.c as PID 1 instead of tenki-agent; its name
# picks the misbehaviour.  tenkid must stay up, keep serving a well-behaved
# session, bound its memory, and fail only the hostile session, with a
# reason, leaving nothing behind once it is removed.
load lib

MODES="garbage oversize deepjson noid wrongid gap flood chans exitspam pingflood silent mute notifyflood"

# An images directory holding the real `sandbox` and `hostile`: the same
# kernel and root disk, and the sandbox initramfs with a second cpio
# archive appended whose /tenki-agent replaces the real one (the kernel
# unpacks concatenated archives in order, later files winning).
make_hostile_images() {
	local src=${TENKI_IMAGES:-/var/cache/tenki/images}/sandbox
	local dst=$TK/images d f
	mkdir -p "$dst/hostile/cpio"
	ln -s "$src" "$dst/sandbox"
	for f in vmlinux cmdline; do ln -s "$src/$f" "$dst/hostile/$f"; done
	ln -s "$(readlink -f "$src/rootfs.qcow2")" "$dst/hostile/rootfs.qcow2"
	d=$dst/hostile/cpio
	install -m 0755 "$ROOT/build/tenki-hostile-agent" "$d/tenki-agent"
	(cd "$d" && echo tenki-agent | cpio -o -H newc -R 0:0 --quiet) >"$d.cpio"
	cat "$src/initrd.img" "$d.cpio" >"$dst/hostile/initrd.img"
	chmod 0755 "$dst" "$dst/hostile"
	chmod 0644 "$dst/hostile/initrd.img"
}

tenkid_rss_kb() { awk '/^VmRSS:/ { print $2 }' "/proc/$(cat "$TK/pid")/status"; }
tenkid_fds() { ls "/proc/$(cat "$TK/pid")/fd" | wc -l; }
tenkid_alive() { kill -0 "$(cat "$TK/pid")" && [ -r "$T/version" ]; }

# The well-behaved neighbour answers an exec within 60 s.
good_answers() {
	local out
	out=$(timeout 60 bash -c "source '$BATS_TEST_DIRNAME/lib.bash'; T='$T'; tk_exec good 'echo ok-\$((6*7))'")
	[ "$out" = ok-42 ]
}

# Wait until session $1 is TERMINATED (or withdrawn); print its reason.
wait_failed() {
	local s=$1 st
	for _ in $(seq 600); do
		[ -d "$T/sessions/$s" ] || { grep "$s" "$T/sessions/err" | tail -n 1; return 0; }
		st=$(cat "$T/sessions/$s/state" 2>/dev/null) || st=gone
		if [ "$st" = TERMINATED ]; then
			tail -n 1 "$T/sessions/$s/err"
			return 0
		fi
		sleep 0.2
	done
	echo "session $s still $st"
	return 1
}

setup_file() {
	export TK=$(mktemp -d /tmp/tenki-e2e.XXXXXX)
	chmod 711 "$TK"
	make_hostile_images
	TENKI_IMAGES=$TK/images TENKID_ARGS="--boot-timeout 60 --agent-timeout 20s --output-cap 4M" start_tenkid
	echo 'cpu=1 memory=512' >"$T/defaults"
	mkdir "$T/sessions/good"
	RSS0=$(tenkid_rss_kb)
	echo "$RSS0" >"$TK/rss0"
	tenkid_fds >"$TK/fds0"
	# Every hostile session at once, without waiting: they boot together.
	for m in $MODES nohello badproto; do
		echo "name=$m-1 image=hostile wait=false" >"$T/sessions/new"
	done
}
teardown_file() { cleanup_tenkid; }

@test "a guest that never answers HELLO fails its create after the boot timeout, nothing left" {
	run wait_failed nohello-1
	echo "$output"
	[ "$status" -eq 0 ]
	[[ "$output" == *"nohello-1"* ]]
	[[ "$output" == *"agent"* || "$output" == *"timed out"* || "$output" == *"boot"* ]]
}

@test "a guest speaking another protocol version is refused with the reason" {
	run wait_failed badproto-1
	echo "$output"
	[ "$status" -eq 0 ]
	[[ "$output" == *"proto"* || "$output" == *"version"* ]]
}

# Start a job in session $1; prints its name.
start_job() {
	local j
	j=$(cat "$T/sessions/$1/exec/clone") || return 1
	echo true >"$T/sessions/$1/exec/$j/cmd" || true
	echo "$j"
}

@test "protocol violations fail only the guilty session, each with a reason" {
	[ "$(cat "$T/sessions/noid-1/wait")" = READY ]
	start_job noid-1
	for m in garbage oversize deepjson noid; do
		run wait_failed "$m-1"
		echo "$m: $output"
		[ "$status" -eq 0 ]
		[[ "$output" == *"$m-1"*"protocol violation"* ]]
	done
	tenkid_alive
	good_answers
}

@test "answers to requests never sent, and requests never answered: the job fails, tenkid does not" {
	for m in wrongid mute; do
		[ "$(cat "$T/sessions/$m-1/wait")" = READY ]
		j=$(start_job $m-1)
		st=running
		for _ in $(seq 90); do
			st=$(cat "$T/sessions/$m-1/exec/$j/status")
			[ "$st" != running ] && break
			sleep 1
		done
		echo "$m: $st"
		[[ "$st" == failed* ]]
		good_answers
	done
	tenkid_alive
}

@test "a DATA frame beyond the stream's end (a gap) fails the session" {
	[ "$(cat "$T/sessions/gap-1/wait")" = READY ]
	start_job gap-1
	run wait_failed gap-1
	echo "$output"
	[ "$status" -eq 0 ]
	[[ "$output" == *"DATA"* || "$output" == *"protocol"* ]]
	tenkid_alive
}

@test "an output flood that ignores flow control is capped; memory stays bounded; the neighbour answers" {
	[ "$(cat "$T/sessions/flood-1/wait")" = READY ]
	j=$(start_job flood-1)
	sleep 15
	good_answers
	rss=$(tenkid_rss_kb)
	figure "rss before $(cat "$TK/rss0") kB, during the flood $rss kB"
	[ "$rss" -lt $(($(cat "$TK/rss0") + 200000)) ]
	# The stream kept at most the cap (4 MiB) on disk.
	size=$(stat -c %s "$TK/state/sessions/$(cat "$T/sessions/flood-1/id")/jobs/$j/stdout")
	figure "flood stdout kept: $size bytes"
	[ "$size" -le $((4 * 1024 * 1024)) ]
	[ "$size" -gt 0 ]
}

@test "DATA on 100000 channels never handed out, 100000 exits of unknown jobs, a PING flood, a silent guest: tenkid stays responsive" {
	sleep 5
	good_answers
	# Late bytes and exits of removed jobs are ignored, not violations.
	[ "$(cat "$T/sessions/chans-1/state")" = READY ]
	[ "$(cat "$T/sessions/exitspam-1/state")" = READY ]
	# A PING flood from a guest that never reads our PONGs ends in
	# "stopped reading", bounded by the outbound queue limit.
	run wait_failed pingflood-1
	echo "pingflood: $output"
	[ "$status" -eq 0 ]
	[[ "$output" == *"reading"* ]]
	[ "$(cat "$T/sessions/silent-1/state")" = READY ]
	tenkid_alive
	rss=$(tenkid_rss_kb)
	figure "rss after the channel, exit and PING floods: $rss kB"
	[ "$rss" -lt $(($(cat "$TK/rss0") + 200000)) ]
}

@test "a flood of change notifications: tenkid stays up and bounded, the neighbour's files/ works; a malformed note fails the session" {
	[ "$(cat "$T/sessions/notifyflood-1/wait")" = READY ]
	# The flood starts at the first exec and lasts about 20 s.
	start_job notifyflood-1
	for i in 1 2 3 4 5; do
		echo "round $i" >"$T/sessions/good/files/during-flood"
		[ "$(cat "$T/sessions/good/files/during-flood")" = "round $i" ]
		good_answers
		sleep 1
	done
	run wait_failed notifyflood-1
	echo "notifyflood: $output"
	[ "$status" -eq 0 ]
	[[ "$output" == *"protocol violation"* ]]
	tenkid_alive
	rss=$(tenkid_rss_kb)
	figure "rss after the notification flood: $rss kB"
	[ "$rss" -lt $(($(cat "$TK/rss0") + 200000)) ]
	ls "$T/sessions/good/files/" | grep -q during-flood
}

@test "removing every hostile session leaves no domain, no state and no leaked descriptors" {
	for m in $MODES nohello badproto; do
		[ -d "$T/sessions/$m-1" ] && timeout 120 rmdir "$T/sessions/$m-1"
	done
	good_answers
	[ "$(domains | wc -l)" -eq 1 ]
	[ "$(state_sessions)" -eq 1 ]
	fds=$(tenkid_fds)
	figure "fds: before $(cat "$TK/fds0"), after $fds"
	ls -l "/proc/$(cat "$TK/pid")/fd"
	[ "$fds" -le $(($(cat "$TK/fds0") + 4)) ]
}
