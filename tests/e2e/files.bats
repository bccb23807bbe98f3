#!/usr/bin/env bats
# Issue 4: files/ is the guest's /home/tenki, used with ordinary tools.
load lib

setup_file() {
	start_tenkid
	echo 'cpu=1 memory=1024' >"$T/defaults"
	mkdir "$T/sessions/f"
	export F=$T/sessions/f/files
	export W=$TK/work
	mkdir -p "$W"
}
teardown_file() { cleanup_tenkid; }

@test "files/ is the guest's home: ls, write, read, both ways at once" {
	[ -d "$F" ]
	echo "from host" >"$F/host.txt"
	[ "$(tk_exec f 'cat /home/tenki/host.txt')" = "from host" ]
	tk_exec f 'echo from guest > /home/tenki/guest.txt'
	[ "$(cat "$F/guest.txt")" = "from guest" ]
	ls "$F" | grep -q guest.txt
}

@test "a 256 MiB file in and out: identical, and the guest agrees" {
	head -c $((256 << 20)) /dev/urandom >"$W/big"
	want=$(sha256sum <"$W/big" | cut -d' ' -f1)
	cp "$W/big" "$F/big"
	[ "$(tk_exec f 'sha256sum /home/tenki/big' | cut -d' ' -f1)" = "$want" ]
	cp "$F/big" "$W/back"
	[ "$(sha256sum <"$W/back" | cut -d' ' -f1)" = "$want" ]
	rm "$F/big" "$W/big" "$W/back"
}

@test "tar x of 5,000 small files, find, du, rm -rf" {
	mkdir -p "$W/tree"
	for d in $(seq 50); do
		mkdir "$W/tree/d$d"
		for f in $(seq 100); do echo "$d/$f" >"$W/tree/d$d/f$f"; done
	done
	tar -C "$W" -cf "$W/tree.tar" tree
	tar -C "$F" -xf "$W/tree.tar"
	[ "$(find "$F/tree" -type f | wc -l)" -eq 5000 ]
	[ "$(tk_exec f 'find /home/tenki/tree -type f | wc -l')" -eq 5000 ]
	du -s "$F/tree" >/dev/null
	diff -r "$W/tree" "$F/tree"
	rm -rf "$F/tree"
	[ ! -e "$F/tree" ]
	[ "$(tk_exec f 'ls /home/tenki/tree 2>&1 | grep -c "No such"')" -eq 1 ]
}

@test "git init, add, commit inside files/ from the host" {
	mkdir "$F/repo"
	cd "$F/repo"
	# the guest reports the mkdir back: the cwd must survive it
	sleep 1
	[ "$(/bin/pwd -P)" = "$F/repo" ]
	git init -q .
	echo hello >README
	git add -A
	git -c user.name=t -c user.email=t@t commit -qm first
	[ "$(git log --oneline | wc -l)" -eq 1 ]
	[ "$(tk_exec f 'cd /home/tenki/repo && git log --format=%s 2>&1')" = first ]
}

@test "rsync -a in and out is identical" {
	mkdir -p "$W/src/a/b"
	for i in $(seq 20); do head -c $((i * 1000)) /dev/urandom >"$W/src/a/f$i"; done
	ln -s f1 "$W/src/a/link"
	chmod 750 "$W/src/a/f2"
	rsync -a "$W/src/" "$F/rs/"
	rsync -a "$F/rs/" "$W/out/"
	diff -r "$W/src" "$W/out"
	[ "$(stat -c %a "$W/out/a/f2")" = 750 ]
	[ "$(readlink "$W/out/a/link")" = f1 ]
}

@test "write-behind: a write the guest cannot do fails close(2) with the guest's errno" {
	# A 1 MiB tmpfs in the home: cp of 6 MiB runs past it while earlier
	# writes are already answered; cp must still see ENOSPC.
	tk_exec f 'mkdir -p /home/tenki/small && mount -t tmpfs -o size=1m tmpfs /home/tenki/small && echo ok' | grep -q ok
	head -c $((6 << 20)) /dev/urandom >"$W/six"
	run cp "$W/six" "$F/small/six"
	echo "$output"
	[ "$status" -ne 0 ]
	[[ "$output" == *"No space left on device"* ]]
	# the handle's failure was told once: the mount works on
	rm -f "$F/small/six"
	echo fits >"$F/small/ok"
	[ "$(tk_exec f 'cat /home/tenki/small/ok')" = fits ]
	# and a large write elsewhere is whole once close(2) returned; four
	# writers at once queue more than one window: the session stays up
	head -c $((24 << 20)) /dev/urandom >"$W/mid"
	want=$(sha256sum <"$W/mid" | cut -d' ' -f1)
	for i in 1 2 3 4; do cp "$W/mid" "$F/mid$i" & done
	wait
	for i in 1 2 3 4; do
		[ "$(tk_exec f "sha256sum </home/tenki/mid$i" | cut -d' ' -f1)" = "$want" ]
	done
	[ "$(cat "$T/sessions/f/state")" = READY ]
	tk_exec f 'umount /home/tenki/small; rmdir /home/tenki/small; rm /home/tenki/mid?'
}

@test "rename over an existing file, truncate, chmod +x then run it" {
	echo old >"$F/cfg"
	echo new >"$F/cfg.tmp"
	mv "$F/cfg.tmp" "$F/cfg"
	[ "$(cat "$F/cfg")" = new ]
	[ ! -e "$F/cfg.tmp" ]
	head -c 1000 /dev/zero >"$F/trunc"
	truncate -s 10 "$F/trunc"
	[ "$(stat -c %s "$F/trunc")" -eq 10 ]
	[ "$(tk_exec f 'stat -c %s /home/tenki/trunc')" -eq 10 ]
	printf '#!/bin/sh\necho script ran\n' >"$F/run.sh"
	chmod +x "$F/run.sh"
	[ "$(tk_exec f '/home/tenki/run.sh')" = "script ran" ]
}

@test "symlinks inside home work; links out of it are never followed by tenkid" {
	echo target >"$F/t.txt"
	ln -s t.txt "$F/rel"
	[ "$(cat "$F/rel")" = target ]
	tk_exec f 'ln -s /etc/shadow /home/tenki/abs; ln -s ../../../etc/shadow /home/tenki/up; mkdir -p /home/tenki/d; ln -s / /home/tenki/d/root'
	# shown as they are
	[ "$(readlink "$F/abs")" = /etc/shadow ]
	[ "$(readlink "$F/up")" = ../../../etc/shadow ]
	# the guest's /etc/shadow is never reachable through files/
	run ls "$F/d/root/etc"
	[[ "$output" != *shadow* ]] || [ "$(readlink -f "$F/d/root")" = / ]
	run cat "$F/.."
	[ "$status" -ne 0 ]
	# a relative link that climbs out resolves (on the host) inside the
	# mount, never into the guest's /etc
	run cat "$F/up"
	[[ "$output" != *root:* ]]
}

@test "inotifywait reports creates and writes made through the mount" {
	inotifywait -m -e create -e close_write "$F" >"$W/inotify.log" 2>/dev/null &
	iw=$!
	sleep 1
	echo x >"$F/watched.txt"
	sleep 1
	kill "$iw"
	grep -q "CREATE watched.txt" "$W/inotify.log"
	grep -q "CLOSE_WRITE,CLOSE watched.txt" "$W/inotify.log"
}

@test "a random read/write/truncate checker finds no mismatch" {
	python3 "$ROOT/tests/e2e/fsx.py" "$F/fsx.dat" 3000
}

@test "paused: EAGAIN with a reason; resumed: works again" {
	echo pause >"$T/sessions/f/ctl"
	run timeout 20 cat "$F/host.txt"
	[ "$status" -ne 0 ]
	[[ "$output" == *"temporarily unavailable"* ]]
	grep -q "PAUSED: resume it to use files/" "$T/sessions/f/err"
	echo resume >"$T/sessions/f/ctl"
	[ "$(cat "$F/host.txt")" = "from host" ]
}

@test "epoll on a guest file (as Go's runtime does on every open) works and tenkid stays up" {
	echo pollme >"$F/pollme"
	python3 -c '
import os, select, sys
fd = os.open(sys.argv[1], os.O_RDONLY)
ep = select.epoll()
ep.register(fd, select.EPOLLIN)
print(ep.poll(1))
print(os.read(fd, 100).decode().strip())' "$F/pollme" >"$TK/poll.out"
	grep -q pollme "$TK/poll.out"
	kill -0 "$(cat "$TK/pid")"
	[ "$(cat "$F/pollme")" = pollme ]
}

# The session's libvirt domain, to freeze the guest behind tenkid's back.
f_domain() {
	local d
	d=$(domains)
	[ "$(echo "$d" | wc -l)" -eq 1 ] && [ -n "$d" ] || { echo "domains: $d"; return 1; }
	echo "$d"
}

@test "cached entries and attributes: guest changes show at once, writes through the mount never leave a stale size" {
	echo one >"$F/cache.txt"
	[ "$(cat "$F/cache.txt")" = one ]
	[ "$(stat -c %s "$F/cache.txt")" -eq 4 ]
	# an exec job rewrites it: the size and the bytes are the new ones
	tk_exec f 'echo two-longer > /home/tenki/cache.txt'
	[ "$(stat -c %s "$F/cache.txt")" -eq 11 ]
	[ "$(cat "$F/cache.txt")" = two-longer ]
	# replaced by a directory in the guest
	tk_exec f 'rm /home/tenki/cache.txt; mkdir /home/tenki/cache.txt; echo in >/home/tenki/cache.txt/f'
	[ -d "$F/cache.txt" ]
	[ "$(cat "$F/cache.txt/f")" = in ]
	# renamed in the guest: the old name is gone from listings and lookups
	tk_exec f 'mv /home/tenki/cache.txt /home/tenki/cache.moved'
	[ ! -e "$F/cache.txt" ]
	ls "$F" | grep -qx cache.moved
	! ls "$F" | grep -qx cache.txt
	# a job still running appends: visible well before the 5 s timeout
	stat "$F/cache.moved/f" >/dev/null
	j=$(cat "$T/sessions/f/exec/clone")
	echo 'echo more >> /home/tenki/cache.moved/f; echo appended; sleep 30' >"$T/sessions/f/exec/$j/cmd"
	# "appended" reaches the host after the change notification does
	for _ in $(seq 600); do grep -q appended "$T/sessions/f/exec/$j/stdout" && break; sleep 0.1; done
	[ "$(cat "$F/cache.moved/f")" = "$(printf 'in\nmore')" ]
	echo kill >"$T/sessions/f/exec/$j/ctl" || true
	# appends through the mount: stat is right after each one
	: >"$F/grow"
	for i in 1 2 3 4 5; do
		echo x >>"$F/grow"
		[ "$(stat -c %s "$F/grow")" -eq $((i * 2)) ]
	done
	truncate -s 3 "$F/grow"
	[ "$(stat -c %s "$F/grow")" -eq 3 ]
	[ "$(tk_exec f 'stat -c %s /home/tenki/grow')" -eq 3 ]
}

@test "a request the guest does not answer ends with EINTR on a signal; the late answer is dropped" {
	echo waiting >"$F/slow.txt"
	# the guest reports the write (the host drops what it cached) before
	# this job's end: after it, what is cached stays
	tk_exec f true >/dev/null
	cd "$F"
	exec 5<slow.txt
	stat -L /dev/fd/5 >/dev/null
	dom=$(f_domain)
	t0=$SECONDS
	virsh -q -c qemu:///system suspend "$dom" >/dev/null
	# the guest is frozen; tenkid does not know it.  Names are looked up
	# again on every walk, so the cached attributes are reached through
	# the open file
	cached=$(timeout -k 5 3 stat -L -c %s /dev/fd/5 2>/dev/null || echo none)
	elapsed=$((SECONDS - t0))
	# open always asks the guest: SIGINT must end it at once
	s0=$SECONDS
	run timeout -k 30 -s INT 2 cat slow.txt
	int_secs=$((SECONDS - s0))
	# SIGTERM too (a fatal signal), on the lookup of files/ itself
	s0=$SECONDS
	run timeout -k 30 -s TERM 2 cat "$F/slow.txt"
	term_secs=$((SECONDS - s0))
	cd /
	virsh -q -c qemu:///system resume "$dom" >/dev/null
	exec 5<&-
	echo "cached stat: $cached after ${elapsed}s; SIGINT: ${int_secs}s; SIGTERM: ${term_secs}s"
	[ "$int_secs" -le 6 ]
	[ "$term_secs" -le 6 ]
	# within the cache time a stat needed no answer from the frozen guest
	[ "$elapsed" -ge 4 ] || [ "$cached" = 8 ]
	# the guest answers the interrupted opens late: dropped, files/ works
	[ "$(cat "$F/slow.txt")" = waiting ]
	kill -0 "$(cat "$TK/pid")"
	! grep -qi "double reply\|fuse: .*error" "$TK/tenkid.log"
}

# Last: restarts tenkid with a 3 s agent timeout for itself.
@test "past the agent timeout: ETIMEDOUT, and the late answers give back the nodes and handles they made" {
	stop_tenkid
	TENKID_ARGS="--agent-timeout 3s" start_tenkid
	[ "$(timeout 60 cat "$T/sessions/f/wait")" = READY ]
	echo late >"$F/late.txt"
	[ "$(cat "$F/late.txt")" = late ]
	agent_fds() { tk_exec f 'ls /proc/1/fd | wc -l'; }
	fds0=$(agent_fds)
	exec 5<"$F/late.txt"
	dom=$(f_domain)
	virsh -q -c qemu:///system suspend "$dom" >/dev/null
	# an open through the open file (no lookup), and a lookup of a name
	s0=$SECONDS
	run timeout -k 5 20 cat /dev/fd/5
	open_status=$status open_out=$output
	run timeout -k 5 20 cat "$F/never-seen.txt"
	lookup_status=$status lookup_out=$output
	secs=$((SECONDS - s0))
	virsh -q -c qemu:///system resume "$dom" >/dev/null
	exec 5<&-
	echo "open: $open_status $open_out; lookup: $lookup_status $lookup_out; ${secs}s"
	[[ "$open_out" == *"timed out"* ]]
	[[ "$lookup_out" == *"timed out"* ]]
	[ "$secs" -le 15 ]
	# the late answers came, and what they made in the agent was given back
	for _ in $(seq 20); do
		[ "$(agent_fds)" -le "$fds0" ] && break
		sleep 0.5
	done
	fds1=$(agent_fds)
	echo "agent fds: $fds0 before, $fds1 after"
	[ "$fds1" -le "$fds0" ]
	[ "$(cat "$F/late.txt")" = late ]
}
