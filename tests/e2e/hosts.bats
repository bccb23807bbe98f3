#!/usr/bin/env bats
# Issue 14: hosts/ — sessions spread over libvirt hosts.  The second host
# is a libvirtd of its own on this machine (host2.bash): its own network
# namespace reached over a veth by qemu+tcp, its own /etc, /run, /var/lib
# and /var/log of libvirt, so its pool, domains and channel sockets are
# reachable only through libvirt, as on another machine.
load lib
load host2

setup_file() {
	# Cold local boots: no golden build or warm pool competing with the
	# remote VMs for the CPU.
	export TENKI_POOL=0 TENKID_ARGS="--golden off"
	start_tenkid
	h2_setup
	echo "name=h2 uri=$(h2_uri)" >"$T/hosts/new"
	for _ in $(seq 100); do
		[ "$(cat "$T/hosts/h2/state")" = UP ] && break
		sleep 0.1
	done
}

teardown_file() {
	cleanup_tenkid
	h2_teardown
}

# Wait until FILE holds exactly WANT (at most $3 seconds, default 30).
wait_for() {
	local i
	for i in $(seq $((${3:-30} * 10))); do
		[ "$(cat "$1" 2>/dev/null)" = "$2" ] && return 0
		sleep 0.1
	done
	echo "$1: $(cat "$1" 2>/dev/null), not $2"
	return 1
}

host_of() { json_get "$T/sessions/$1/info.json" host; }

@test "hosts/ has the local host and the added one, with state, uri and capacity" {
	run ls "$T/hosts"
	[[ "$output" == *local* && "$output" == *h2* && "$output" == *new* && "$output" == *err* ]]
	[ "$(cat "$T/hosts/local/state")" = UP ]
	[ "$(cat "$T/hosts/h2/state")" = UP ]
	[ "$(cat "$T/hosts/h2/uri")" = "$(h2_uri)" ]
	[ "$(json_get "$T/hosts/h2/info.json" cpus)" -ge 1 ]
	[ "$(json_get "$T/hosts/h2/info.json" memory_mb)" -ge 512 ]
	[ "$(json_get "$T/hosts/h2/info.json" free_memory_mb)" -ge 1 ]
	[ "$(json_get "$T/hosts/h2/info.json" sessions)" = 0 ]
	[ "$(json_get "$T/hosts/local/info.json" local)" = True ]
}

@test "hosts/new and mkdir check what they are given; the local host stays" {
	refused_with "Invalid argument" bash -c "echo 'name=x uri=nowhere' >'$T/hosts/new'"
	grep -q "is not a libvirt URI" "$T/hosts/err"
	refused_with "File exists" bash -c "echo 'name=h2 uri=qemu+tcp://192.0.2.1/system' >'$T/hosts/new'"
	mkdir "$T/hosts/far"
	[ "$(cat "$T/hosts/far/uri")" = "qemu+tls://far/system" ]
	wait_for "$T/hosts/far/state" DOWN
	[[ "$(json_get "$T/hosts/far/info.json" reason)" == *far* ]]
	rmdir "$T/hosts/far"
	[ ! -e "$T/hosts/far" ]
	refused_with "Permission denied" rmdir "$T/hosts/local"
	refused_with "Invalid argument" bash -c "echo frobnicate >'$T/hosts/h2/ctl'"
	grep -q "unknown verb" "$T/hosts/h2/err"
}

@test "sessions are placed on both hosts; info.json names the host" {
	echo 'name=l1 host=local' >"$T/sessions/new"
	echo 'name=r1 host=h2 allow_inbound=true' >"$T/sessions/new"
	[ "$(cat "$T/sessions/r1/state")" = READY ]
	[ "$(host_of r1)" = h2 ]
	[ "$(host_of l1)" = local ]
	# The remote VM is a domain of the second libvirtd, not of ours.
	dom=$(h2_virsh -q list --name | grep "^$(state_tag)")
	[ -n "$dom" ]
	! virsh -q -c qemu:///system list --all --name | grep -qx "$dom"
	[ "$(json_get "$T/hosts/h2/info.json" sessions)" = 1 ]
	# Its disk is a volume in the second host's own pool, over the
	# uploaded image.
	h2_virsh -q vol-list --pool "$(h2_virsh -q pool-list --name | grep tenki-hostpool)" | grep -q "$dom.qcow2"
	refused_with "No such file" bash -c "echo 'name=x host=nohost' >'$T/sessions/new'"
}

@test "exec, files/ and a port work on the remote session" {
	tk_exec r1 'echo out-$(hostname); echo err >&2' >"$BATS_TEST_TMPDIR/out"
	[ "$(cat "$BATS_TEST_TMPDIR/out")" = out-r1 ]
	[ "$(cat "$T/sessions/r1/exec/$LAST_JOB/exit")" = 0 ]
	[ "$(cat "$T/sessions/r1/exec/$LAST_JOB/stderr")" = err ]
	head -c 3000000 /dev/urandom >"$BATS_TEST_TMPDIR/blob"
	cp "$BATS_TEST_TMPDIR/blob" "$T/sessions/r1/files/blob"
	cmp "$BATS_TEST_TMPDIR/blob" "$T/sessions/r1/files/blob"
	[ "$(tk_exec r1 'sha256sum /home/tenki/blob | cut -d" " -f1')" = "$(sha256sum <"$BATS_TEST_TMPDIR/blob" | cut -d' ' -f1)" ]
	echo kept >"$T/sessions/r1/files/kept.txt"
	j=$(cat "$T/sessions/r1/exec/clone")
	echo 'mkdir -p /srv && cd /srv && echo hello-from-h2 >hello.txt && exec python3 -m http.server 8000 --bind 127.0.0.1' >"$T/sessions/r1/exec/$j/cmd"
	tk_exec r1 'for i in $(seq 100); do curl -s -o /dev/null http://127.0.0.1:8000/ && exit 0; sleep 0.2; done; exit 1'
	touch "$T/sessions/r1/ports/8000"
	url=$(sed -n 's/^url //p' "$T/sessions/r1/ports/8000")
	[ "$(curl -sS --max-time 30 "${url}hello.txt")" = hello-from-h2 ]
	# Local-only features say so.
	refused_with "Invalid argument" bash -c "echo 'snapshot s1' >'$T/sessions/r1/ctl'"
	grep -q "remote host h2" "$T/sessions/r1/err"
}

@test "drain moves new sessions away; a drained host refuses pins" {
	echo drain >"$T/hosts/h2/ctl"
	[ "$(cat "$T/hosts/h2/state")" = DRAINING ]
	echo 'name=l2 wait=false' >"$T/sessions/new"
	[ "$(host_of l2)" = local ]
	refused_with "No space left" bash -c "echo 'name=x host=h2' >'$T/sessions/new'"
	grep -q "x: host=h2: h2 is DRAINING" "$T/sessions/err"
	echo undrain >"$T/hosts/h2/ctl"
	echo drain >"$T/hosts/local/ctl"
	echo 'name=r2' >"$T/sessions/new"
	[ "$(host_of r2)" = h2 ]
	echo undrain >"$T/hosts/local/ctl"
	[ "$(cat "$T/hosts/local/state")" = UP ]
	[ "$(cat "$T/sessions/r2/state")" = READY ]
	[ "$(tk_exec r2 'echo r2-ok')" = r2-ok ]
	# Nowhere to go: ENOSPC with every host's reason.
	echo drain >"$T/hosts/local/ctl"
	echo drain >"$T/hosts/h2/ctl"
	refused_with "No space left" bash -c "echo 'name=x' >'$T/sessions/new'"
	grep -q "x: no capacity: no host can take 512 MiB: local is DRAINING; h2 is DRAINING" "$T/sessions/err"
	echo undrain >"$T/hosts/local/ctl"
	echo undrain >"$T/hosts/h2/ctl"
	[ "$(cat "$T/sessions/l2/wait")" = READY ]
}

@test "the second libvirtd killed: host DOWN, its sessions marked, local ones keep working" {
	h2_kill
	wait_for "$T/hosts/h2/state" DOWN
	[[ "$(json_get "$T/hosts/h2/info.json" reason)" == *"$(h2_uri)"* ]]
	grep -q "h2: DOWN: " "$T/hosts/h2/err"
	for s in r1 r2; do
		[[ "$(json_get "$T/sessions/$s/info.json" reason)" == "host h2 is DOWN: "* ]]
		grep -q "$s: host h2 is DOWN" "$T/sessions/$s/err"
		# Not lost: still there, not TERMINATED (r1 runs its server).
		[[ "$(cat "$T/sessions/$s/state")" == @(READY|RUNNING) ]]
	done
	[ "$(tk_exec l1 'echo still-here')" = still-here ]
	echo local-file >"$T/sessions/l1/files/f"
	[ "$(cat "$T/sessions/l1/files/f")" = local-file ]
	# New sessions go where there is a host.
	echo 'name=l3 wait=false' >"$T/sessions/new"
	[ "$(host_of l3)" = local ]
	rmdir "$T/sessions/l3"
	refused_with "No space left" bash -c "echo 'name=x host=h2' >'$T/sessions/new'"
}

@test "the second libvirtd back: host UP, its sessions re-attached with their data" {
	h2_start
	wait_for "$T/hosts/h2/state" UP
	for s in r1 r2; do
		for _ in $(seq 100); do
			[ "$(json_get "$T/sessions/$s/info.json" reason)" = null ] && break
			sleep 0.2
		done
		[ "$(json_get "$T/sessions/$s/info.json" reason)" = null ]
		grep -q "$s: re-attached" "$T/sessions/$s/err"
	done
	[ "$(cat "$T/sessions/r1/files/kept.txt")" = kept ]
	[ "$(tk_exec r1 'cat /home/tenki/kept.txt')" = kept ]
	[ "$(tk_exec r2 'echo r2-back')" = r2-back ]
	grep -q "h2: UP again" "$T/hosts/h2/err"
}

@test "the second libvirtd frozen (a silent peer): DOWN within the keepalive bound, local work never waits; thawed: UP" {
	p=$(h2_libvirtd_pid)
	kill -STOP "$p"
	t0=$SECONDS
	# Meanwhile the local host answers at once, tree reads do not block.
	for _ in 1 2 3; do
		[ "$(timeout 20 cat "$T/sessions/l1/state")" = READY ]
		[ "$(tk_exec l1 'echo local')" = local ]
		timeout 5 cat "$T/hosts/h2/info.json" >/dev/null
		sleep 1
	done
	# keepalive: 5 s interval, 3 missed answers; bound it at 60 s
	run wait_for "$T/hosts/h2/state" DOWN 60
	secs=$((SECONDS - t0))
	# read before the thaw: the host is UP again at once after it
	reason=$(json_get "$T/sessions/r1/info.json" reason)
	kill -CONT "$p"
	echo "$output; DOWN after ${secs}s; r1: $reason"
	[ "$status" -eq 0 ]
	[[ "$reason" == "host h2 is DOWN: "* ]]
	wait_for "$T/hosts/h2/state" UP 60
	for _ in $(seq 100); do
		[ "$(json_get "$T/sessions/r1/info.json" reason)" = null ] && break
		sleep 0.2
	done
	[ "$(json_get "$T/sessions/r1/info.json" reason)" = null ]
	[ "$(tk_exec r1 'cat /home/tenki/kept.txt')" = kept ]
}

@test "tenkid restarted: hosts and remote sessions come back" {
	stop_tenkid
	start_tenkid
	wait_for "$T/hosts/h2/state" UP
	for _ in $(seq 100); do
		[ "$(json_get "$T/sessions/r1/info.json" reason)" = null ] && break
		sleep 0.2
	done
	[ "$(tk_exec r1 'cat /home/tenki/kept.txt')" = kept ]
	[ "$(host_of r1)" = h2 ]
}

@test "a pooled guest ready here wins over a remote host with more room" {
	stop_tenkid
	TENKI_POOL=1 TENKID_ARGS= start_tenkid
	wait_for "$T/hosts/h2/state" UP
	# one more session here than on h2 (it takes the pooled guest; the
	# pool refills): by room alone h2 now wins
	echo 'name=l9 host=local' >"$T/sessions/new"
	for _ in $(seq 300); do grep -q '^ready 1$' "$T/pool" && break; sleep 0.5; done
	grep -q '^ready 1$' "$T/pool"
	echo 'name=p1' >"$T/sessions/new"
	[ "$(host_of p1)" = local ]
	[ "$(json_get "$T/sessions/p1/info.json" boot)" = pool ]
	# with no pooled guest left, room decides again
	echo 'name=p2 wait=false' >"$T/sessions/new"
	[ "$(host_of p2)" = h2 ]
	rmdir "$T/sessions/p1" "$T/sessions/p2" "$T/sessions/l9"
}

# The volumes of h2's tenki pool whose names match the pattern.
h2_vols() {
	h2_virsh -q vol-list --pool "$(h2_virsh -q pool-list --name | grep tenki-hostpool)" | awk '{ print $1 }' | grep -E "$1" || true
}

@test "a golden state is copied to a remote host once, and restored there" {
	# tenkid runs with golden states since the test before
	for _ in $(seq 240); do grep -q "golden state .* ready" "$TK/tenkid.log" && break; sleep 0.5; done
	grep -q "golden state .* ready" "$TK/tenkid.log"
	echo 'name=g1 host=h2' >"$T/sessions/new"
	[ "$(host_of g1)" = h2 ]
	[ "$(json_get "$T/sessions/g1/info.json" boot)" = golden ]
	echo from-here >"$T/sessions/g1/files/x.txt"
	[ "$(tk_exec g1 'hostname; cat /home/tenki/x.txt')" = "g1
from-here" ]
	# its memory and disk are in h2's pool once; the per-copy image is gone
	[ "$(h2_vols '^golden-.*\.save$' | wc -l)" = 1 ]
	[ "$(h2_vols '^golden-.*\.qcow2$' | wc -l)" = 1 ]
	[ -z "$(h2_vols "^$(state_tag).*\.save$")" ]
	# the copy's disk is an overlay on the golden disk there
	d="$(state_tag)$(cut -c25- "$T/sessions/g1/id").qcow2"
	h2_virsh -q vol-dumpxml --pool "$(h2_virsh -q pool-list --name | grep tenki-hostpool)" "$d" | grep -q "<path>.*/golden-.*qcow2</path>"
	# a second copy reuses what is there, and is a guest of its own
	echo 'name=g2 host=h2' >"$T/sessions/new"
	[ "$(json_get "$T/sessions/g2/info.json" boot)" = golden ]
	[ "$(tk_exec g2 'hostname; ls /home/tenki')" = g2 ]
	[ "$(grep -c "uploaded .* as golden-" "$TK/tenkid.log")" = 2 ]
	rmdir "$T/sessions/g1" "$T/sessions/g2"
}

@test "rmdir of a host: EBUSY with sessions, then gone with nothing left there" {
	refused_with "Device or resource busy" rmdir "$T/hosts/h2"
	grep -q "h2: 2 sessions are still on this host" "$T/hosts/h2/err"
	rmdir "$T/sessions/r1" "$T/sessions/r2"
	[ -z "$(h2_virsh -q list --all --name | grep "^$(state_tag)")" ]
	rmdir "$T/hosts/h2"
	[ ! -e "$T/hosts/h2" ]
	[ ! -e "$TK/state/hosts/h2" ]
}
