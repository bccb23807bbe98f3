#!/usr/bin/env bats
# Issue 12, crashes: kill -9 of tenkid during a create, during a large
# copy into files/, during a snapshot and while a guest writes to a
# volume, a VM destroyed behind tenki's back, libvirtd restarted.  After
# each, the (restarted) tenkid shows every object in a true state and
# nothing is orphaned: no domain without a session, no session directory
# without a record, no stray disk or socket.
load lib

setup_file() { start_tenkid; }
teardown_file() { cleanup_tenkid; }

# Every domain belongs to a session that is not TERMINATED, and every
# session directory in the state dir is a session of the tree.
no_orphans() {
	local d id n=0 s
	for s in "$T"/sessions/*/; do
		[ -f "$s/id" ] || continue
		case $(cat "$s/state") in TERMINATED) ;; *) n=$((n + 1)) ;; esac
	done
	echo "live sessions: $n, domains: $(domains | tr '\n' ' ')"
	[ "$(domains | wc -l)" -eq "$n" ]
	for d in "$TK"/state/sessions/*/; do
		[ -d "$d" ] || continue
		[ -e "$d/pooled" ] && continue # a warm-pool guest, no session's
		id=$(basename "$d")
		grep -lqx "$id" "$T"/sessions/*/id || { echo "orphan state dir $id"; return 1; }
	done
	# Disks and sockets live only in session directories.
	run find "$TK/state" -maxdepth 1 \( -name '*.qcow2' -o -type s \)
	[ -z "$output" ]
}

@test "kill -9 during a create: after the restart the session is READY or gone with a reason; no orphan" {
	echo "name=k1 wait=false" >"$T/sessions/new"
	sleep 0.5
	[ "$(cat "$T/sessions/k1/state")" = CREATING ]
	kill9_tenkid
	start_tenkid
	if [ -d "$T/sessions/k1" ]; then
		st=$(timeout 300 cat "$T/sessions/k1/wait")
		echo "k1: $st"
		[ "$st" = READY ] || grep -q k1 "$T/sessions/k1/err"
		[ "$st" != READY ] || [ "$(tk_exec k1 'echo alive')" = alive ]
	else
		grep -q k1 "$T/sessions/err"
	fi
	no_orphans
}

@test "kill -9 during a 128 MiB copy into files/: the session and files/ work after the restart" {
	[ -d "$T/sessions/k1" ] || mkdir "$T/sessions/k1"
	[ "$(cat "$T/sessions/k1/wait")" = READY ]
	head -c 128M /dev/urandom >"$TK/big"
	cp "$TK/big" "$T/sessions/k1/files/big" &
	cpid=$!
	sleep 2
	kill9_tenkid
	run wait "$cpid"
	[ "$status" -ne 0 ] # the copy was cut
	start_tenkid
	[ "$(cat "$T/sessions/k1/wait")" = READY ]
	cp "$TK/big" "$T/sessions/k1/files/big"
	cmp "$TK/big" "$T/sessions/k1/files/big"
	[ "$(tk_exec k1 'sha256sum big | cut -c1-64')" = "$(sha256sum "$TK/big" | cut -c1-64)" ]
	no_orphans
}

# The snapshot's own files, and the source's disk layers (disk.qcow2,
# disk.N.qcow2) beside the one its record names as live.
snap_files() { ls "$TK/state/snapshots/$1" 2>/dev/null | grep -v '^snapshot.json$\|^err$' || true; }
disk_layers() { ls "$TK/state/sessions/$1" | grep -c '^disk.*\.qcow2$'; }

@test "kill -9 during a snapshot: READY and restorable or FAILED with no files; the source runs, unpaused" {
	[ -d "$T/sessions/k1" ] || mkdir "$T/sessions/k1"
	[ "$(cat "$T/sessions/k1/wait")" = READY ]
	sid=$(cat "$T/sessions/k1/id")
	dom=$(json_get "$TK/state/sessions/$sid/session.json" domname)
	tk_exec k1 'echo before >/home/tenki/marker; sync' >/dev/null
	echo 'snapshot ks1' >"$T/sessions/k1/ctl" &
	spid=$!
	# Kill once libvirtd is writing the memory image: its job goes on
	# without tenkid, and must be settled by the next one.
	for _ in $(seq 600); do
		id=$(cat "$T/snapshots/ks1/id" 2>/dev/null) &&
			[ -s "$TK/state/snapshots/$id/mem.save" ] && break
		sleep 0.1
	done
	[ "$(cat "$T/snapshots/ks1/state")" = CREATING ]
	[ -s "$TK/state/snapshots/$id/mem.save" ]
	kill9_tenkid
	run wait "$spid"
	start_tenkid
	[ "$(timeout 300 cat "$T/sessions/k1/wait")" = READY ]
	[ "$(virsh -c qemu:///system domstate "$dom")" = running ]
	[ "$(tk_exec k1 'cat /home/tenki/marker')" = before ]
	st=$(cat "$T/snapshots/ks1/state")
	echo "ks1 after the restart: $st; files: $(snap_files "$id" | tr '\n' ' ')"
	gen=$(json_get "$TK/state/sessions/$sid/session.json" disk_gen)
	case $st in
	READY)
		[ "$(snap_files "$id" | tr '\n' ' ')" = "disk.qcow2 mem.save " ]
		[ "$(disk_layers "$sid")" -eq $((gen + 1)) ]
		echo 'name=kr snapshot=ks1' >"$T/sessions/new"
		[ "$(timeout 300 cat "$T/sessions/kr/wait")" = READY ]
		[ "$(tk_exec kr 'cat /home/tenki/marker')" = before ]
		rmdir "$T/sessions/kr"
		;;
	FAILED)
		grep -q "tenkid stopped" "$T/snapshots/ks1/err"
		[ -z "$(snap_files "$id")" ]
		[ "$(disk_layers "$sid")" -eq $((gen + 1)) ]
		;;
	*) false ;;
	esac
	# The source's record names its live layer: it snapshots again, and
	# pause/resume work.
	echo 'snapshot ks2' >"$T/sessions/k1/ctl"
	[ "$(cat "$T/snapshots/ks2/state")" = READY ]
	echo pause >"$T/sessions/k1/ctl"
	echo resume >"$T/sessions/k1/ctl"
	[ "$(cat "$T/sessions/k1/state")" = READY ]
	[ "$(tk_exec k1 'echo after >>/home/tenki/marker; cat /home/tenki/marker | wc -l')" = 2 ]
	rmdir "$T/snapshots/ks1" "$T/snapshots/ks2"
	[ -z "$(ls "$TK/state/snapshots")" ]
	no_orphans
}

@test "kill -9 while a guest writes to a volume: still attached after the restart; detached, it fscks clean" {
	[ -d "$T/sessions/k1" ] || mkdir "$T/sessions/k1"
	[ "$(cat "$T/sessions/k1/wait")" = READY ]
	echo 'name=kv size=64M' >"$T/volumes/new"
	echo 'attach kv /data' >"$T/sessions/k1/ctl"
	sum=$(tk_exec k1 'head -c 4194304 /dev/urandom >/data/a && sync && sha256sum /data/a | cut -c1-64')
	[ ${#sum} -eq 64 ]
	# A writer that runs through the kill: the guest never sees tenkid go.
	j=$(cat "$T/sessions/k1/exec/clone")
	echo 'for i in $(seq 100); do head -c 262144 /dev/urandom >/data/b.$i; echo $i; done; sync' \
		>"$T/sessions/k1/exec/$j/cmd"
	# stdout is a stream (size 0, no seeks): read its first line, which
	# blocks until the writer has made its first file.
	first=$(timeout 120 bash -c 'read -r l <"$1" && echo "$l"' _ "$T/sessions/k1/exec/$j/stdout")
	[ "$first" = 1 ]
	kill9_tenkid
	start_tenkid
	st=$(timeout 300 cat "$T/sessions/k1/wait")
	[ "$st" = RUNNING ] || [ "$st" = READY ] # the writer may be done
	[ "$(cat "$T/volumes/kv/state")" = ATTACHED ]
	[ "$(timeout 300 cat "$T/sessions/k1/exec/$j/exit")" = 0 ]
	[ "$(tail -n 1 "$T/sessions/k1/exec/$j/stdout")" = 100 ]
	[ "$(tk_exec k1 'sha256sum /data/a | cut -c1-64')" = "$sum" ]
	[ "$(tk_exec k1 'ls /data | grep -c "^b\."')" = 100 ]
	echo 'detach kv' >"$T/sessions/k1/ctl"
	[ "$(cat "$T/volumes/kv/state")" = AVAILABLE ]
	run e2fsck -fn "$TK/state/volume-pool/$(cat "$T/volumes/kv/id").raw"
	echo "$output"
	[ "$status" -eq 0 ]
	rmdir "$T/volumes/kv"
	no_orphans
}

@test "virsh destroy of a session's VM: TERMINATED with the reason; rmdir leaves nothing" {
	mkdir "$T/sessions/d1"
	dom=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["domname"])' \
		"$TK/state/sessions/$(cat "$T/sessions/d1/id")/session.json")
	virsh -q -c qemu:///system destroy "$dom" >/dev/null
	for _ in $(seq 100); do
		[ "$(cat "$T/sessions/d1/state")" = TERMINATED ] && break
		sleep 0.2
	done
	[ "$(cat "$T/sessions/d1/state")" = TERMINATED ]
	grep -q "outside tenki\|destroyed\|stopped" "$T/sessions/d1/err"
	rmdir "$T/sessions/d1"
	no_orphans
}

@test "libvirtd restarted under a running session: re-attached, exec and new creates work" {
	[ -n "${TENKI_TEST_LIBVIRTD_RESTART:-1}" ] && [ "${TENKI_TEST_LIBVIRTD_RESTART:-1}" != 0 ] ||
		skip "TENKI_TEST_LIBVIRTD_RESTART=0"
	boot=$(tk_exec k1 'cat /proc/sys/kernel/random/boot_id')
	pkill -TERM -x libvirtd
	for _ in $(seq 100); do pgrep -x libvirtd >/dev/null || break; sleep 0.1; done
	"$ROOT/scripts/start-libvirt.sh" </dev/null >/dev/null 2>&1
	# The VM never stopped; its agent channel is a direct socket.
	[ "$(tk_exec k1 'cat /proc/sys/kernel/random/boot_id')" = "$boot" ]
	mkdir "$T/sessions/after"
	[ "$(tk_exec after 'echo fresh')" = fresh ]
	echo pause >"$T/sessions/after/ctl"
	echo resume >"$T/sessions/after/ctl"
	[ "$(cat "$T/sessions/after/state")" = READY ]
	no_orphans
}
