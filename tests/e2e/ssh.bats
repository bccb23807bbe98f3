#!/usr/bin/env bats
# Issue 9: the SSH gateway, driven with OpenSSH's own clients (ssh, scp,
# sftp, rsync, sshfs) against a real VM.  tenkid listens on a free port
# (--ssh 127.0.0.1:0); ssh/target says which.
load lib

setup_file() {
	export TENKID_ARGS="--ssh 127.0.0.1:0"
	start_tenkid
	ssh-keygen -q -t ed25519 -N '' -C test-key -f "$TK/key"
	ssh-keygen -q -t ed25519 -N '' -C other-key -f "$TK/key2"
	echo "name=demo allow_inbound=true ssh_key='$(cat "$TK/key.pub")'" >"$T/sessions/new"
	export X=$T/sessions/demo
	export PORT
	PORT=$(sed -n 's/^demo@127\.0\.0\.1 -p \([0-9]*\)$/\1/p' "$X/ssh/target")
	[ -n "$PORT" ]
}
teardown_file() { cleanup_tenkid; }

OPTS=(-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null
	-o BatchMode=yes -o LogLevel=ERROR -o IdentitiesOnly=yes)

# ssh with key $KEY (default the session's key) and the options in $XOPTS
# to user $1; the rest is the command.
tssh() {
	local user=$1
	shift
	# shellcheck disable=SC2086
	timeout 120 ssh -p "$PORT" -i "${KEY:-$TK/key}" "${OPTS[@]}" ${XOPTS:-} \
		"$user@127.0.0.1" "$@"
}

# End a background ssh client: SIGTERM, then SIGKILL after 5 s (an ssh
# -N client has been seen to sit out a SIGTERM that came just after a
# refused forward; the test is of the gateway, not of that).
stop_client() {
	kill "$1" 2>/dev/null || true
	for _ in $(seq 50); do kill -0 "$1" 2>/dev/null || break; sleep 0.1; done
	kill -9 "$1" 2>/dev/null || true
	wait "$1" || true
}

@test "ssh/target and info.json tell how to connect" {
	[ "$(cat "$X/ssh/target")" = "demo@127.0.0.1 -p $PORT" ]
	python3 - "$X/info.json" "$PORT" <<-'EOF'
		import json, sys
		ssh = json.load(open(sys.argv[1]))["ssh"]
		assert ssh == {"target": "demo@127.0.0.1 -p " + sys.argv[2], "keys": 1}, ssh
	EOF
	[ -s "$TK/state/ssh_host_ed25519_key" ]
	[ "$(stat -c %a "$TK/state/ssh_host_ed25519_key")" = 600 ]
}

@test "exit status, stdout and stderr apart, stdin piped through" {
	run tssh demo 'exit 7'
	[ "$status" -eq 7 ]
	tssh demo 'echo out; echo err >&2' >"$TK/o" 2>"$TK/e"
	[ "$(cat "$TK/o")" = out ]
	[ "$(cat "$TK/e")" = err ]
	[ "$(echo hi | tssh demo cat)" = hi ]
	# The session's UUID names it as well as its name.
	[ "$(tssh "$(cat "$X/id")" 'echo $HOME; pwd; whoami')" = "$(printf '/home/tenki\n/home/tenki\nroot')" ]
	# A managed ssh config entry (the CLI's "ssh config install" form).
	local id
	id=$(cat "$X/id")
	cat >"$TK/ssh_config" <<-EOF
		Host sbx-$id
		  HostName 127.0.0.1
		  Port $PORT
		  User $id
		  IdentityFile $TK/key
		  IdentitiesOnly yes
		  StrictHostKeyChecking no
		  UserKnownHostsFile /dev/null
		  BatchMode yes
		  LogLevel ERROR
	EOF
	[ "$(timeout 60 ssh -F "$TK/ssh_config" "sbx-$id" 'echo via-config')" = via-config ]
	# env requests reach the command.
	[ "$(export LC_TENKI=passed XOPTS='-o SendEnv=LC_TENKI'
		tssh demo 'echo $LC_TENKI')" = passed ]
	# A megabyte each way, unchanged.
	head -c 1048576 /dev/urandom >"$TK/mb"
	[ "$(tssh demo sha256sum <"$TK/mb" | cut -d' ' -f1)" = "$(sha256sum <"$TK/mb" | cut -d' ' -f1)" ]
}

@test "a command killed by a signal: exit-signal reaches the client" {
	run timeout 60 ssh -v -p "$PORT" -i "$TK/key" -o StrictHostKeyChecking=no \
		-o UserKnownHostsFile=/dev/null -o BatchMode=yes demo@127.0.0.1 'kill -TERM $$'
	[ "$status" -eq 255 ] # what OpenSSH's ssh returns for a signal
	[[ "$output" == *"rtype exit-signal"* ]]
}

@test "interactive shell on a pty through tmux: prompt, tty, resize" {
	local tm=tenki-ssh-$$
	tmux new-session -d -s "$tm" -x 100 -y 30 \
		"ssh -tt -p $PORT -i $TK/key ${OPTS[*]} demo@127.0.0.1"
	for _ in $(seq 60); do
		tmux capture-pane -p -t "$tm" | grep -q 'root@demo' && break
		sleep 0.5
	done
	tmux send-keys -t "$tm" 'tty; stty size' Enter
	sleep 2
	tmux resize-window -t "$tm" -x 123 -y 41
	sleep 1
	tmux send-keys -t "$tm" 'stty size; echo "T=$TERM"' Enter
	for _ in $(seq 40); do
		tmux capture-pane -p -t "$tm" | grep -q '^T=' && break
		sleep 0.5
	done
	screen=$(tmux capture-pane -p -t "$tm")
	tmux kill-session -t "$tm"
	echo "$screen"
	[[ "$screen" == *"root@demo"* ]]
	echo "$screen" | grep -q '^/dev/pts/[0-9]*$'
	echo "$screen" | grep -q '^30 100$'
	echo "$screen" | grep -q '^41 123$'
	echo "$screen" | grep -q '^T=[a-z]' # the client's TERM
	! echo "$screen" | grep -q '^T=dumb'
}

@test "scp a file in and out: checksums equal" {
	head -c 3000000 /dev/urandom >"$TK/scp.bin"
	timeout 120 scp -q -P "$PORT" -i "$TK/key" "${OPTS[@]}" "$TK/scp.bin" demo@127.0.0.1:scp.bin
	[ "$(sha256sum <"$X/files/scp.bin")" = "$(sha256sum <"$TK/scp.bin")" ]
	timeout 120 scp -q -P "$PORT" -i "$TK/key" "${OPTS[@]}" demo@127.0.0.1:scp.bin "$TK/scp.back"
	cmp "$TK/scp.bin" "$TK/scp.back"
}

@test "sftp -b: mkdir, put, get, rename, rm" {
	head -c 200000 /dev/urandom >"$TK/sftp.bin"
	cat >"$TK/batch" <<-EOF
		mkdir sd
		put $TK/sftp.bin sd/a
		get sd/a $TK/sftp.back
		rename sd/a sd/b
		pwd
	EOF
	run timeout 120 sftp -q -b "$TK/batch" -P "$PORT" -i "$TK/key" "${OPTS[@]}" demo@127.0.0.1
	echo "$output"
	[ "$status" -eq 0 ]
	[[ "$output" == *"Remote working directory: /home/tenki"* ]]
	cmp "$TK/sftp.bin" "$TK/sftp.back"
	cmp "$TK/sftp.bin" "$X/files/sd/b"
	[ ! -e "$X/files/sd/a" ]
	printf 'rm sd/b\nrmdir sd\nls /etc/hostname\n' >"$TK/batch2"
	run timeout 120 sftp -q -b "$TK/batch2" -P "$PORT" -i "$TK/key" "${OPTS[@]}" demo@127.0.0.1
	[ "$status" -eq 0 ]
	[ ! -e "$X/files/sd" ]
	# Like ssh itself, sftp sees the guest's whole filesystem.
	[[ "$output" == *"/etc/hostname"* ]]
}

@test "sshfs mounts the session through the gateway" {
	mkdir -p "$TK/sshfs"
	head -c 500000 /dev/urandom >"$TK/scp.bin"
	timeout 60 sshfs -p "$PORT" -o IdentityFile="$TK/key" -o StrictHostKeyChecking=no \
		-o UserKnownHostsFile=/dev/null -o BatchMode=yes demo@127.0.0.1: "$TK/sshfs"
	echo via-sshfs >"$TK/sshfs/from-sshfs.txt"
	mkdir "$TK/sshfs/sdir"
	cp "$TK/scp.bin" "$TK/sshfs/sdir/copy.bin"
	ls "$TK/sshfs" >"$TK/listing"
	fusermount3 -u "$TK/sshfs"
	grep -qx from-sshfs.txt "$TK/listing"
	[ "$(cat "$X/files/from-sshfs.txt")" = via-sshfs ]
	cmp "$TK/scp.bin" "$X/files/sdir/copy.bin"
}

@test "rsync -e ssh of a tree, both ways" {
	rm -rf "$TK/tree" "$TK/tree.back"
	mkdir -p "$TK/tree/a/b" "$TK/tree/c"
	for i in 1 2 3 4 5; do head -c $((i * 7777)) /dev/urandom >"$TK/tree/a/f$i"; done
	echo deep >"$TK/tree/a/b/deep.txt"
	ln -s a/b/deep.txt "$TK/tree/link"
	local e="ssh -p $PORT -i $TK/key ${OPTS[*]}"
	timeout 120 rsync -a -e "$e" "$TK/tree/" demo@127.0.0.1:tree/
	[ "$(cat "$X/files/tree/a/b/deep.txt")" = deep ]
	tssh demo 'echo added-in-guest > tree/c/new.txt'
	timeout 120 rsync -a -e "$e" demo@127.0.0.1:tree/ "$TK/tree.back/"
	[ "$(cat "$TK/tree.back/c/new.txt")" = added-in-guest ]
	rm "$TK/tree.back/c/new.txt"
	diff -r "$TK/tree" "$TK/tree.back"
	[ "$(readlink "$TK/tree.back/link")" = a/b/deep.txt ]
}

free_port() {
	python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

@test "ssh -L to a guest HTTP server, then curl through it" {
	echo hello-through-ssh >"$X/files/index.html"
	local j lp
	j=$(cat "$X/exec/clone")
	echo 'exec python3 -m http.server 8000 --bind 127.0.0.1' >"$X/exec/$j/cmd"
	lp=$(free_port)
	ssh -p "$PORT" -i "$TK/key" "${OPTS[@]}" -o ExitOnForwardFailure=yes -N \
		-L "$lp:localhost:8000" demo@127.0.0.1 &
	local pid=$!
	local got=
	for _ in $(seq 60); do
		got=$(curl -s --max-time 10 "http://127.0.0.1:$lp/index.html") && [ -n "$got" ] && break
		sleep 1
	done
	# A second request on a new channel, and a port nobody listens on.
	got2=$(curl -s --max-time 10 "http://127.0.0.1:$lp/index.html")
	stop_client "$pid"
	echo kill >"$X/exec/$j/ctl"
	[ "$got" = hello-through-ssh ]
	[ "$got2" = hello-through-ssh ]
}

@test "ssh -L is refused where allow_inbound=false" {
	echo "name=closed ssh_key='$(cat "$TK/key.pub")'" >"$T/sessions/new"
	local lp
	lp=$(free_port)
	ssh -p "$PORT" -i "$TK/key" "${OPTS[@]}" -N -L "$lp:localhost:22" closed@127.0.0.1 &
	local pid=$!
	sleep 3
	run curl -s --max-time 10 "http://127.0.0.1:$lp/"
	stop_client "$pid"
	[ "$status" -ne 0 ]
	grep -q 'allow_inbound=false' "$T/sessions/closed/err"
	# The session itself is reachable.
	[ "$(tssh closed 'echo ok')" = ok ]
	rmdir "$T/sessions/closed"
}

@test "wrong key, unknown session, password, a paused session: refused" {
	KEY=$TK/key2 run tssh demo true
	[ "$status" -eq 255 ]
	[[ "$output" == *"Permission denied (publickey)"* ]]
	run tssh nosuch true
	[ "$status" -eq 255 ]
	run timeout 60 ssh -p "$PORT" "${OPTS[@]}" -o PubkeyAuthentication=no \
		-o PreferredAuthentications=password,keyboard-interactive demo@127.0.0.1 true
	[ "$status" -eq 255 ]
	[[ "$output" == *"Permission denied (publickey)"* ]]
	echo pause >"$X/ctl"
	run tssh demo true
	echo resume >"$X/ctl"
	[ "$status" -eq 255 ]
	sleep 0.5
	grep -q "refused: key SHA256:.* is not in demo's ssh/authorized_keys" "$X/err"
	grep -q "refused: .*public key" "$X/err"
	grep -q "refused: session demo is PAUSED" "$X/err"
	grep -q "user 'nosuch': no session named 'nosuch'" "$TK/tenkid.log"
	[ "$(tssh demo 'echo back')" = back ]
	# Seven wrong keys: the connection ends after six refusals.
	local ids=() k
	for k in 1 2 3 4 5 6 7; do
		ssh-keygen -q -t ed25519 -N '' -f "$TK/many$k"
		ids+=(-i "$TK/many$k")
	done
	run timeout 60 ssh -p "$PORT" "${ids[@]}" "${OPTS[@]}" demo@127.0.0.1 true
	[ "$status" -eq 255 ]
	sleep 0.5
	grep -q "user 'demo': .*; too many authentication failures" "$TK/tenkid.log"
}

@test "authorized_keys: a malformed key fails and keeps the set; a new set locks out the old key" {
	local K=$X/ssh/authorized_keys
	run bash -c "echo 'ssh-ed25519 notbase64!!' >'$K'"
	[ "$status" -ne 0 ]
	[[ "$output" == *"Invalid argument"* ]]
	[ "$(cat "$K")" = "$(cat "$TK/key.pub")" ]
	[ "$(tssh demo 'echo still')" = still ]
	cat "$TK/key2.pub" >"$K"
	run tssh demo true
	[ "$status" -eq 255 ]
	[ "$(KEY=$TK/key2 tssh demo 'echo new-key')" = new-key ]
	cat "$TK/key.pub" "$TK/key2.pub" >"$K"
	[ "$(tssh demo 'echo both')" = both ]
	python3 -c 'import json,sys; assert json.load(open(sys.argv[1]))["ssh"]["keys"] == 2' "$X/info.json"
}

@test "a client that disconnects ends its processes in the guest" {
	# ssh itself in the background (not tssh: killing a subshell would
	# leave its ssh running).
	ssh -p "$PORT" -i "$TK/key" "${OPTS[@]}" demo@127.0.0.1 'sleep 4321 & sleep 4322' &
	local pid=$!
	for _ in $(seq 60); do
		tssh demo 'pgrep -x sleep' >/dev/null && break
		sleep 0.5
	done
	[ -n "$(tssh demo 'pgrep -f "sleep 432[12]"')" ]
	stop_client "$pid"
	for _ in $(seq 20); do
		[ -z "$(tssh demo 'pgrep -f "sleep 432[12]"')" ] && break
		sleep 0.5
	done
	[ -z "$(tssh demo 'pgrep -f "sleep 432[12]"')" ]
}

@test "20 concurrent ssh sessions to one sandbox all complete correctly" {
	local i
	for i in $(seq 20); do
		(rc=0
		tssh demo "seq 1 $((i * 1000)) | tail -1; echo err$i >&2; exit $i" \
			>"$TK/c.out.$i" 2>"$TK/c.err.$i" || rc=$?
		echo $rc >"$TK/c.rc.$i") &
	done
	wait
	for i in $(seq 20); do
		[ "$(cat "$TK/c.out.$i")" = $((i * 1000)) ] || { echo "out $i"; false; }
		[ "$(cat "$TK/c.err.$i")" = "err$i" ] || { echo "err $i"; false; }
		[ "$(cat "$TK/c.rc.$i")" = "$i" ] || { echo "rc $i"; false; }
	done
}

@test "a flood of idle connections does not stall the tree" {
	python3 - "$PORT" "$X" <<-'EOF'
		import os, socket, sys, time
		port, x = int(sys.argv[1]), sys.argv[2]
		socks = []
		for _ in range(100):
		    s = socket.socket()
		    s.connect(("127.0.0.1", port))
		    socks.append(s)
		t = time.time()
		assert open(x + "/state").read().strip() in ("READY", "RUNNING")
		j = open(x + "/exec/clone").read().strip()
		with open(x + "/exec/%s/cmd" % j, "w") as f:
		    f.write("echo tree-ok")
		out = open(x + "/exec/%s/stdout" % j).read()
		assert out == "tree-ok\n", out
		took = time.time() - t
		assert took < 30, took
		for s in socks:
		    s.close()
	EOF
	grep -q 'refused: too many unauthenticated SSH connections' "$TK/tenkid.log"
	# Once the flood is gone, logins work again.
	for _ in $(seq 20); do
		[ "$(tssh demo 'echo again' 2>/dev/null)" = again ] && break
		sleep 0.5
	done
	[ "$(tssh demo 'echo again')" = again ]
}

@test "a killed tenkid's SSH jobs end when it comes back; limits per session and idle timeout" {
	ssh -p "$PORT" -i "$TK/key" "${OPTS[@]}" demo@127.0.0.1 'sleep 5555' &
	local p0=$!
	for _ in $(seq 60); do
		[ -n "$(tk_exec demo 'pgrep -f "sleep 555[5]"')" ] && break
		sleep 0.5
	done
	[ -n "$(tk_exec demo 'pgrep -f "sleep 555[5]"')" ]
	kill9_tenkid
	wait "$p0" || true
	TENKID_ARGS="--ssh 127.0.0.1:$PORT --ssh-max-per-session 2 --ssh-idle-timeout 3s" start_tenkid
	timeout 120 cat "$X/wait"
	for _ in $(seq 30); do
		[ -z "$(tk_exec demo 'pgrep -f "sleep 555[5]"')" ] && break
		sleep 0.5
	done
	[ -z "$(tk_exec demo 'pgrep -f "sleep 555[5]"')" ]
	tssh demo 'sleep 6' &
	local p1=$!
	tssh demo 'sleep 6' &
	local p2=$!
	sleep 2.5
	run tssh demo true
	[ "$status" -eq 255 ]
	wait "$p1"
	wait "$p2"
	grep -q 'session demo has 2 SSH connections (the limit)' "$X/err"
	# An idle connection (no bytes for 3 s) is closed.
	local t0=$SECONDS
	XOPTS=-N run tssh demo
	[ $((SECONDS - t0)) -lt 20 ]
	grep -q 'connection ends: idle timeout' "$TK/tenkid.log"
}
