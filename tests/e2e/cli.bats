#!/usr/bin/env bats
# Issue 11: the tenki CLI.  Every example command of the seed's Sessions
# page, adapted only by the session id, against a real tenkid and real VMs;
# each checks its effect through the tree, never through the CLI alone.
load lib
bats_require_minimum_version 1.5.0

setup_file() {
	start_tenkid
	export TENKI_MOUNT=$T
	export TENKI=$ROOT/build/tenki
	export WORK=$TK/work
	mkdir -p "$WORK"
	# the suite's own session: small, inbound on, with a deadline
	timeout 300 "$TENKI" sandbox create --name cli --allow-inbound \
		--max-duration 2h >"$WORK/create.out" 2>&1 ||
		{ cat "$WORK/create.out" "$TK/tenkid.log" >&3; return 1; }
	export S=cli
	export SD=$T/sessions/cli
	export SID=$(cat "$SD/id")
}
teardown_file() { cleanup_tenkid; }

tenki() { "$TENKI" "$@"; }
# A job's record in the tree: the newest job of session $1.
last_job() { ls "$T/sessions/$1/exec" | grep -v '^clone$' | sort -n | tail -1; }

# ---- help, man pages, install, completion --------------------------------

@test "sandbox --help lists every command; each command has --help" {
	run tenki sandbox --help
	[ "$status" -eq 0 ]
	for c in create list get wait exec write read expose ports unexpose \
		ssh "ssh config" ssh-keys extend pause resume close delete \
		volume snapshot template; do
		[[ "$output" == *"  $c "* ]] || { echo "missing $c"; return 1; }
	done
	for c in create list get wait exec write read expose ports unexpose \
		ssh ssh-keys extend pause resume close delete; do
		run tenki sandbox $c --help
		[ "$status" -eq 0 ] && [[ "$output" == *"usage: tenki sandbox $c"* ]] ||
			{ echo "$c --help: $output"; return 1; }
	done
	for g in volume snapshot template "ssh config"; do
		run tenki sandbox $g --help
		[ "$status" -eq 0 ] && [[ "$output" == *"Commands:"* ]]
	done
	run tenki sandbox bogus
	[ "$status" -eq 2 ]
	[[ "$output" == *"unknown command 'bogus'"* ]]
}

@test "man -l renders tenki(1) and tenki-fs(5) without warnings" {
	run man -l "$ROOT/docs/tenki.1"
	[ "$status" -eq 0 ]
	[[ "$output" == *"ssh config install"* && "$output" == *"--mount"* ]]
	warn=$(man --warnings -l "$ROOT/docs/tenki.1" 2>&1 >/dev/null)
	[ -z "$warn" ] || { echo "$warn"; return 1; }
	run man -l "$ROOT/docs/tenki-fs.5"
	[ "$status" -eq 0 ]
	[[ "$output" == *"sessions/new"* ]]
	warn=$(man --warnings -l "$ROOT/docs/tenki-fs.5" 2>&1 >/dev/null)
	[ -z "$warn" ] || { echo "$warn"; return 1; }
	# tenki-fs(5) is docs/tree.md, regenerated
	python3 "$ROOT/scripts/md2man.py" 5 tenki-fs <"$ROOT/docs/tree.md" |
		cmp - "$ROOT/docs/tenki-fs.5"
}

@test "make install puts tenki, tenkid, the man pages and completion under DESTDIR/PREFIX" {
	run make -s -C "$ROOT" install DESTDIR="$WORK/inst" PREFIX=/usr
	[ "$status" -eq 0 ] || { echo "$output"; return 1; }
	for f in bin/tenki bin/tenkid share/man/man1/tenki.1 \
		share/man/man5/tenki-fs.5 share/man/man8/tenkid.8 \
		share/bash-completion/completions/tenki; do
		[ -s "$WORK/inst/usr/$f" ] || { echo "missing $f"; return 1; }
	done
	[ -x "$WORK/inst/usr/bin/tenki" ]
	"$WORK/inst/usr/bin/tenki" --version | grep -q '^tenki '
	# `man tenki` finds the installed page
	MANPATH=$WORK/inst/usr/share/man man -w tenki | grep -q "$WORK/inst/usr/share/man/man1/tenki.1"
	MANPATH=$WORK/inst/usr/share/man man tenki-fs | grep -q 'sessions/new'
}

@test "bash completion completes commands, options and session names" {
	run bash -c '
		source "$1"
		COMP_WORDS=(tenki sandbox ex); COMP_CWORD=2; _tenki
		echo "${COMPREPLY[*]}"
		COMP_WORDS=(tenki sandbox exec --ses); COMP_CWORD=3; _tenki
		echo "${COMPREPLY[*]}"
		COMP_WORDS=(tenki sandbox get --session c); COMP_CWORD=4; _tenki
		echo "${COMPREPLY[*]}"' _ "$ROOT/cli/tenki.bash-completion"
	[ "$status" -eq 0 ]
	[ "${lines[0]}" = "exec expose extend" ]
	[ "${lines[1]}" = "--session" ]
	[ "${lines[2]}" = "cli" ]
}

# ---- the tree: where, and when it is not there ---------------------------

@test "--mount, TENKI_MOUNT and a clear message without a tree" {
	run env -u TENKI_MOUNT "$TENKI" --mount "$T" sandbox list
	[ "$status" -eq 0 ] && [[ "$output" == *"$SID"* ]]
	run env -u TENKI_MOUNT "$TENKI" sandbox list --mount "$T"
	[ "$status" -eq 0 ] && [[ "$output" == *"$SID"* ]]
	mkdir -p "$WORK/empty"
	run tenki --mount "$WORK/empty" sandbox list
	[ "$status" -eq 1 ]
	[[ "$output" == *"no tenki tree at $WORK/empty: is tenkid running?"* ]]
	run env TENKI_MOUNT="$WORK/empty" "$TENKI" sandbox get --session cli
	[ "$status" -eq 1 ]
	[[ "$output" == *"is tenkid running?"* ]]
}

# ---- Sessions page: create ------------------------------------------------

@test "seed: create --name my-session --cpu 4 --memory-mb 8192 ... waits for READY" {
	run timeout 300 "$TENKI" sandbox create \
		--name my-session \
		--cpu 4 \
		--memory-mb 8192 \
		--allow-inbound \
		--allow-outbound \
		--env APP_ENV=dev \
		--metadata owner=alice \
		--metadata purpose=review
	[ "$status" -eq 0 ] || { echo "$output"; return 1; }
	M=$T/sessions/my-session
	# returned only once usable
	[ "$(cat "$M/state")" = READY ]
	[ "$(json_get "$M/info.json" cpu_cores)" = 4 ]
	[ "$(json_get "$M/info.json" memory_mb)" = 8192 ]
	[ "$(json_get "$M/info.json" allow_inbound)" = True ]
	[ "$(json_get "$M/info.json" allow_outbound)" = True ]
	[ "$(cat "$M/env")" = APP_ENV=dev ]
	[ "$(cat "$M/metadata/owner")" = alice ]
	[ "$(cat "$M/metadata/purpose")" = review ]
	[[ "$output" == *"$(cat "$M/id")"* ]]
	# the env reaches the guest
	[ "$(tk_exec my-session 'echo $APP_ENV')" = dev ]
	# 4 vCPUs do not stay on this shared machine
	run tenki sandbox delete --session my-session
	[ "$status" -eq 0 ]
	[ ! -e "$M" ]
}

@test "seed: create --metadata owner=alice --metadata job=ci-1234 (generated name)" {
	run timeout 300 "$TENKI" sandbox create --metadata owner=alice --metadata job=ci-1234
	[ "$status" -eq 0 ] || { echo "$output"; return 1; }
	name=$(awk '$1 == "name" {print $2}' <<<"$output")
	[ -n "$name" ] && [ -d "$T/sessions/$name" ]
	[ "$(cat "$T/sessions/$name/metadata/owner")" = alice ]
	[ "$(cat "$T/sessions/$name/metadata/job")" = ci-1234 ]
	[ "$(cat "$T/sessions/$name/state")" = READY ]
	tenki sandbox delete --session "$(cat "$T/sessions/$name/id")"
	[ ! -e "$T/sessions/$name" ]
}

@test "seed: create --authorized-key KEY --authorized-keys-file ~/.ssh/authorized_keys" {
	export HOME=$WORK/keyhome
	mkdir -p "$HOME/.ssh"
	ssh-keygen -q -t ed25519 -N '' -C one -f "$WORK/k1"
	ssh-keygen -q -t ed25519 -N '' -C two -f "$WORK/k2"
	cp "$WORK/k2.pub" "$HOME/.ssh/authorized_keys"
	run timeout 300 "$TENKI" sandbox create \
		--authorized-key "$(cat "$WORK/k1.pub")" \
		--authorized-keys-file ~/.ssh/authorized_keys
	[ "$status" -eq 0 ] || { echo "$output"; return 1; }
	name=$(awk '$1 == "name" {print $2}' <<<"$output")
	keys=$T/sessions/$name/ssh/authorized_keys
	[ "$(wc -l <"$keys")" -eq 2 ]
	grep -qF "$(cut -d' ' -f2 "$WORK/k1.pub")" "$keys"
	grep -qF "$(cut -d' ' -f2 "$WORK/k2.pub")" "$keys"
	tenki sandbox delete --session "$name"
}

@test "create --no-wait returns at once; wait then blocks until READY" {
	# A shape no pooled or golden guest has: a cold boot, seconds long, so
	# that the wait below is still waiting when it starts.
	run tenki sandbox create --name nowait --no-wait --json --memory-mb 744
	[ "$status" -eq 0 ] || { echo "$output"; return 1; }
	[ "$(python3 -c 'import json,sys; print(json.load(sys.stdin)["name"])' <<<"$output")" = nowait ]
	# on a terminal (script(1)), the wait shows its progress
	run timeout 300 script -qefc "$TENKI sandbox wait --session nowait" /dev/null
	[ "$status" -eq 0 ]
	[[ "$output" == *"waiting for nowait: "*"READY"* ]]
	[ "$(cat "$T/sessions/nowait/state")" = READY ]
	# not a terminal: the state alone
	run --separate-stderr "$TENKI" sandbox wait --session nowait
	[ "$status" -eq 0 ] && [ "$output" = READY ] && [ -z "$stderr" ]
	tenki sandbox delete --session nowait
	[ ! -e "$T/sessions/nowait" ]
}

@test "a refused create prints tenkid's reason and leaves nothing" {
	run tenki sandbox create --name bad --cpu 99
	[ "$status" -eq 1 ]
	[[ "$output" == *"create session bad"*"cpu_cores"*"(Invalid argument)"* ]]
	[ ! -e "$T/sessions/bad" ]
	run tenki sandbox create --name cli
	[ "$status" -eq 1 ]
	[[ "$output" == *"(File exists)"* ]]
	run tenki sandbox create --volume nope
	[ "$status" -eq 2 ]
}

# ---- list and inspect ----------------------------------------------------

@test "seed: list, list --json, get --session (name or UUID)" {
	run tenki sandbox list
	[ "$status" -eq 0 ]
	[[ "${lines[0]}" == NAME*ID*STATE* ]]
	grep -q "^cli  *$SID  *READY " <<<"$output"
	run tenki sandbox list --json
	[ "$status" -eq 0 ]
	cmp <(echo "$output") "$T/sessions/index.json"
	python3 -c 'import json,sys; a=json.load(sys.stdin); assert any(s["id"]==sys.argv[1] for s in a)' "$SID" <<<"$output"
	run tenki sandbox get --session "$SID"
	[ "$status" -eq 0 ]
	grep -q "^name  *cli$" <<<"$output"
	grep -q "^state  *READY$" <<<"$output"
	run tenki sandbox get --session cli --json
	[ "$(python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])' <<<"$output")" = "$SID" ]
	run tenki sandbox get --session no-such
	[ "$status" -eq 1 ]
	[[ "$output" == *"session no-such: no such session"* ]]
}

# ---- command execution ---------------------------------------------------

@test "exec -c: out on stdout, err on stderr, exit code 4, then status on stderr" {
	run --separate-stderr tenki sandbox exec --session "$SID" -c 'echo out; echo err >&2; exit 4'
	[ "$status" -eq 4 ]
	[ "$output" = out ]
	[ "${stderr_lines[0]}" = err ]
	[[ "${stderr_lines[1]}" == *"status: exited 4, exit code: 4, duration: "*s ]]
	j=$(last_job cli)
	[ "$(cat "$SD/exec/$j/status")" = "exited 4" ]
	[ "$(cat "$SD/exec/$j/cmd")" = 'echo out; echo err >&2; exit 4' ]
}

@test "exec --timeout 1s -c 'sleep 5' ends timed out (124)" {
	start=$(date +%s)
	run --separate-stderr tenki sandbox exec --session cli --timeout 1s -c 'sleep 5'
	[ "$status" -eq 124 ]
	[[ "$stderr" == *"status: timed out"*"exit code: 124"* ]]
	[ $(($(date +%s) - start)) -lt 5 ]
	j=$(last_job cli)
	[ "$(cat "$SD/exec/$j/status")" = timeout ]
}

@test "seed: exec -c 'go test ./...' runs the line in the guest's shell" {
	# no Go in the image: the shell says so, and the code is the shell's
	run -127 --separate-stderr tenki sandbox exec --session cli -c 'go test ./...'
	[[ "$stderr" == *"go: not found"* ]]
	j=$(last_job cli)
	[ "$(cat "$SD/exec/$j/cmd")" = 'go test ./...' ]
	[ "$(cat "$SD/exec/$j/status")" = "exited 127" ]
}

@test "seed: exec --timeout 2m -c 'npm ci && npm test'" {
	run -127 --separate-stderr tenki sandbox exec --session cli --timeout 2m -c 'npm ci && npm test'
	j=$(last_job cli)
	[ "$(cat "$SD/exec/$j/timeout")" = 120s ]
	[ "$(cat "$SD/exec/$j/cmd")" = 'npm ci && npm test' ]
}

@test "seed: exec -- bash -lc '...' passes argv unchanged, without a shell" {
	run --separate-stderr tenki sandbox exec --session cli -- bash -lc 'echo "[$0|$1]"' 'a b' "it's"
	[ "$status" -eq 0 ]
	[ "$output" = "[a b|it's]" ]
	j=$(last_job cli)
	[ "$(sed -n 1p "$SD/exec/$j/argv")" = bash ]
	[ "$(sed -n 2p "$SD/exec/$j/argv")" = -lc ]
	# without --, a program and its flags work too
	run --separate-stderr tenki sandbox exec --session cli ls -d /home/tenki
	[ "$status" -eq 0 ] && [ "$output" = /home/tenki ]
}

@test "exec --env, --cwd, --stdin; a job reading stdin without --stdin sees EOF" {
	run --separate-stderr tenki sandbox exec --session cli --env A='x y' --cwd /tmp -c 'echo "$A|$(pwd)"'
	[ "$output" = "x y|/tmp" ]
	run --separate-stderr bash -c 'printf "a\nb\n" | "$TENKI" sandbox exec --session cli --stdin -c "wc -l"'
	[ "$status" -eq 0 ] && [ "$(tr -d ' ' <<<"$output")" = 2 ]
	run --separate-stderr timeout 60 "$TENKI" sandbox exec --session cli -c 'cat; echo done'
	[ "$status" -eq 0 ] && [ "$output" = done ]
}

@test "exec streams live: output arrives before the job ends" {
	"$TENKI" sandbox exec --session cli -c 'echo first; sleep 6; echo second' >"$WORK/live" 2>/dev/null &
	pid=$!
	for _ in $(seq 50); do grep -q first "$WORK/live" && break; sleep 0.1; done
	grep -q first "$WORK/live"
	! grep -q second "$WORK/live"
	wait $pid
	grep -q second "$WORK/live"
}

@test "exec | head: a reader that goes away ends the job (SIGPIPE)" {
	run timeout 60 bash -c '"$TENKI" sandbox exec --session cli -c "yes" 2>/dev/null | head -2'
	[ "$status" -eq 0 ]
	[ "$output" = "$(printf 'y\ny')" ]
	j=$(last_job cli)
	[ "$(cat "$SD/exec/$j/status")" = "killed SIGPIPE" ]
}

@test "a signal to tenki exec kills the job; the code is 128+15" {
	"$TENKI" sandbox exec --session cli -c 'sleep 300' >/dev/null 2>"$WORK/sig.err" &
	pid=$!
	sleep 3
	kill -TERM $pid
	run timeout 30 tail --pid=$pid -f /dev/null
	wait $pid || rc=$?
	[ "$rc" -eq 143 ]
	j=$(last_job cli)
	[ "$(cat "$SD/exec/$j/status")" = "killed SIGTERM" ]
}

# ---- file operations -----------------------------------------------------

@test "seed: write --data, --data-file, stdin; read to stdout and --out" {
	cd "$WORK"
	echo '{"key": "value"}' >./config.json
	echo 'from stdin' >./local-file.txt
	# inline
	tenki sandbox write --session cli --path /home/tenki/app.env --data 'PORT=3000'
	[ "$(cat "$SD/files/app.env")" = PORT=3000 ]
	# from a local file
	tenki sandbox write --session cli --path /home/tenki/config.json --data-file ./config.json
	cmp ./config.json "$SD/files/config.json"
	# from stdin
	cat ./local-file.txt | tenki sandbox write --session cli --path /home/tenki/input.txt
	cmp ./local-file.txt "$SD/files/input.txt"
	# read to stdout
	run tenki sandbox read --session cli --path /home/tenki/config.json
	[ "$status" -eq 0 ] && [ "$output" = '{"key": "value"}' ]
	# read into a local file
	tk_exec cli 'seq 1000 > /home/tenki/build.log' >/dev/null
	tenki sandbox read --session cli --path /home/tenki/build.log --out ./build.log
	cmp ./build.log <(seq 1000)
	# relative paths resolve from /home/tenki; parents are made
	tenki sandbox write --session cli --path sub/dir/rel.txt --data rel
	[ "$(tk_exec cli 'cat /home/tenki/sub/dir/rel.txt')" = rel ]
}

@test "write/read round-trip a binary file byte for byte" {
	python3 -c 'import os,sys; sys.stdout.buffer.write(bytes(range(256))*64 + os.urandom(3*1024*1024+7))' >"$WORK/blob.bin"
	tenki sandbox write --session cli --path /home/tenki/blob.bin --data-file "$WORK/blob.bin"
	cmp "$WORK/blob.bin" "$SD/files/blob.bin"
	tenki sandbox read --session cli --path /home/tenki/blob.bin --out "$WORK/back.bin"
	cmp "$WORK/blob.bin" "$WORK/back.bin"
	tenki sandbox read --session cli --path blob.bin | cmp - "$WORK/blob.bin"
	# and the guest agrees
	[ "$(tk_exec cli 'sha256sum < /home/tenki/blob.bin' | cut -d' ' -f1)" = "$(sha256sum <"$WORK/blob.bin" | cut -d' ' -f1)" ]
}

@test "progress of a large write on a terminal only" {
	head -c $((12 * 1024 * 1024)) /dev/urandom >"$WORK/big.bin"
	# a terminal (script(1) gives the command a pty)
	run script -qefc "$TENKI sandbox write --session cli --path big.bin --data-file $WORK/big.bin" /dev/null
	[ "$status" -eq 0 ]
	[[ "$output" == *"writing big.bin: "*" MiB ("*"%)"* ]]
	# not a terminal: nothing but errors on stderr
	run --separate-stderr tenki sandbox write --session cli --path big.bin --data-file "$WORK/big.bin"
	[ "$status" -eq 0 ] && [ -z "$stderr" ]
	cmp "$WORK/big.bin" "$SD/files/big.bin"
	rm "$SD/files/big.bin"
}

@test "paths outside /home/tenki are rejected with a permission error" {
	run tenki sandbox write --session cli --path /tmp/x --data hi
	[ "$status" -eq 1 ]
	[[ "$output" == *"/tmp/x: Permission denied"* ]]
	[ "$(tk_exec cli 'test -e /tmp/x && echo there || echo absent')" = absent ]
	run tenki sandbox read --session cli --path /tmp/x
	[ "$status" -eq 1 ] && [[ "$output" == *"Permission denied"* ]]
	run tenki sandbox read --session cli --path /home/tenki/../../etc/passwd
	[ "$status" -eq 1 ] && [[ "$output" == *"Permission denied"* ]]
	run tenki sandbox write --session cli --path ../escape --data x
	[ "$status" -eq 1 ] && [[ "$output" == *"Permission denied"* ]]
	run tenki sandbox write --session cli --path /home/tenkix/a --data x
	[ "$status" -eq 1 ] && [[ "$output" == *"Permission denied"* ]]
	run tenki sandbox read --session cli --path /home/tenki/nope
	[ "$status" -eq 1 ] && [[ "$output" == *"No such file or directory"* ]]
}

# ---- ports -----------------------------------------------------------------

@test "seed: expose --port 3000, ports, unexpose --port 3000" {
	[ -d "$SD/ports" ] || skip "this tree has no sessions/NAME/ports/ yet (issue 8)"
	run tenki sandbox expose --session cli --port 3000
	[ "$status" -eq 0 ] || { echo "$output"; return 1; }
	[ -e "$SD/ports/3000" ]
	url=$(sed -n 's/^url //p' "$SD/ports/3000")
	[ -n "$url" ] && [[ "$output" == *"$url"* ]]
	run tenki sandbox ports --session cli
	[ "$status" -eq 0 ]
	grep -q "^3000 .*$url" <<<"$output"
	run tenki sandbox unexpose --session cli --port 3000
	[ "$status" -eq 0 ]
	[ ! -e "$SD/ports/3000" ]
	run tenki sandbox expose --session cli --port 70000
	[ "$status" -eq 2 ] && [[ "$output" == *"between 1 and 65535"* ]]
}

# ---- SSH ---------------------------------------------------------------------

@test "seed: ssh-keys set --session S --keys-file ~/.ssh/authorized_keys" {
	export HOME=$WORK/sshhome
	mkdir -p "$HOME/.ssh"
	ssh-keygen -q -t ed25519 -N '' -C cli-test -f "$HOME/.ssh/id_ed25519"
	cp "$HOME/.ssh/id_ed25519.pub" "$HOME/.ssh/authorized_keys"
	tenki sandbox ssh-keys set --session cli --keys-file ~/.ssh/authorized_keys
	cmp "$HOME/.ssh/authorized_keys" "$SD/ssh/authorized_keys"
	# a bad key is refused with tenkid's reason and keeps the set
	echo 'garbage' >"$WORK/bad.keys"
	run tenki sandbox ssh-keys set --session cli --keys-file "$WORK/bad.keys"
	[ "$status" -eq 1 ]
	reason=$(tail -1 "$SD/err" | cut -d' ' -f2-)
	[[ "$reason" == *"not an OpenSSH public key"* ]]
	[[ "$output" == *"$reason (Invalid argument)" ]]
	cmp "$HOME/.ssh/authorized_keys" "$SD/ssh/authorized_keys"
}

@test "seed: ssh --session S, and ssh S -L 8080:127.0.0.1:8080" {
	[ -e "$SD/ssh/target" ] || skip "this tree has no ssh/target yet (issue 9)"
	export HOME=$WORK/sshhome
	printf 'StrictHostKeyChecking no\nUserKnownHostsFile /dev/null\nBatchMode yes\nLogLevel ERROR\n' >"$HOME/.ssh/config"
	# ssh reads the passwd entry's home, not $HOME: a wrapper names ours
	printf '#!/bin/sh\nexec ssh -F "$HOME/.ssh/config" -i "$HOME/.ssh/id_ed25519" "$@"\n' >"$WORK/ssh-wrap"
	chmod +x "$WORK/ssh-wrap"
	export TENKI_SSH=$WORK/ssh-wrap
	run timeout 60 "$TENKI" sandbox ssh --session cli </dev/null
	[ "$status" -eq 0 ] || { echo "$output"; return 1; }
	run timeout 60 "$TENKI" sandbox ssh "$SID" -L 18080:127.0.0.1:8080 'echo via-ssh; exit 3' </dev/null
	[ "$status" -eq 3 ] && [[ "$output" == *via-ssh* ]]
	# the flags become ssh options
	run env TENKI_SSH=echo "$TENKI" sandbox ssh --session cli --user root \
		--identity-file /k --batch-mode --connect-timeout 5 \
		--strict-host-key-checking no -- -v
	[[ "$output" == *"-i /k -o BatchMode=yes -o ConnectTimeout=5 -o StrictHostKeyChecking=no root@"*" -v" ]]
}

# The CLI only reads files, so a plain directory shaped like the tree
# shows how ssh's command line and the Host entries are composed from
# ssh/target even before the gateway exists; OpenSSH itself parses them.
@test "ssh and ssh config compose from ssh/target (a tree-shaped directory; ssh -G parses it)" {
	F=$WORK/fake
	mkdir -p "$F/sessions/demo/ssh" "$F/sessions/other"
	echo 'tenki 0.1.0' >"$F/version"
	u=11111111-2222-3333-4444-555555555555
	echo $u >"$F/sessions/demo/id"
	echo 'demo@127.0.0.1 -p 2222' >"$F/sessions/demo/ssh/target"
	echo 99999999-2222-3333-4444-555555555555 >"$F/sessions/other/id"
	run env TENKI_SSH=echo "$TENKI" --mount "$F" sandbox ssh demo -L 8080:127.0.0.1:8080
	[ "$output" = "-p 2222 demo@127.0.0.1 -L 8080:127.0.0.1:8080" ]
	run env TENKI_SSH=echo "$TENKI" --mount "$F" sandbox ssh --session "sbx-$u" \
		--user root --identity-file /k --batch-mode --connect-timeout 5 \
		--strict-host-key-checking no -- -v true
	[ "$output" = "-p 2222 -i /k -o BatchMode=yes -o ConnectTimeout=5 -o StrictHostKeyChecking=no root@127.0.0.1 -v true" ]
	run "$TENKI" --mount "$F" sandbox ssh other
	[ "$status" -eq 1 ] && [[ "$output" == *"no SSH target"* ]]
	export HOME=$WORK/fakehome
	mkdir -p "$HOME"
	run "$TENKI" --mount "$F" sandbox ssh config install
	echo "$output"
	[ "$status" -eq 0 ] && [[ "$output" == "installed 1 Host sbx-<uuid> entry"* ]]
	# (ssh reads the passwd entry's home, not $HOME: -F names the file)
	run ssh -F "$HOME/.ssh/config" -G "sbx-$u"
	[ "$status" -eq 0 ]
	grep -qx 'hostname 127.0.0.1' <<<"$output"
	grep -qx 'port 2222' <<<"$output"
	grep -qx 'user demo' <<<"$output"
	# a session gone since install is flagged by status
	rm -r "$F/sessions/demo"
	run "$TENKI" --mount "$F" sandbox ssh config status
	[[ "$output" == *"sbx-$u (session gone: run install again)"* ]]
	"$TENKI" --mount "$F" sandbox ssh config uninstall
	[ ! -e "$HOME/.ssh/config" ]
}

@test "seed: ssh config install, ssh sbx-<uuid>, status, uninstall restores the file byte for byte" {
	export HOME=$WORK/cfghome
	mkdir -p "$HOME/.ssh"
	printf '# mine\nHost foo\n    User bar\n    Port 22' >"$HOME/.ssh/config" # no final newline
	chmod 640 "$HOME/.ssh/config"
	cp -p "$HOME/.ssh/config" "$WORK/config.before"
	run tenki sandbox ssh config install
	[ "$status" -eq 0 ]
	grep -q '^# >>> tenki managed block' "$HOME/.ssh/config"
	grep -q '^# <<< tenki managed block <<<$' "$HOME/.ssh/config"
	# install twice: still one block
	tenki sandbox ssh config install
	[ "$(grep -c '^# >>> tenki managed block' "$HOME/.ssh/config")" -eq 1 ]
	run tenki sandbox ssh config status
	[ "$status" -eq 0 ] && [[ "$output" == "installed in $HOME/.ssh/config"* ]]
	if [ -e "$SD/ssh/target" ]; then
		grep -q "^Host sbx-$SID\$" "$HOME/.ssh/config"
		[[ "$output" == *"sbx-$SID"* ]]
		cp "$WORK/sshhome/.ssh/id_ed25519" "$HOME/.ssh/"
		tenki sandbox ssh-keys set --session cli --keys-file "$WORK/sshhome/.ssh/id_ed25519.pub"
		run timeout 60 ssh -F "$HOME/.ssh/config" -o BatchMode=yes \
			-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null \
			-o LogLevel=ERROR -i "$HOME/.ssh/id_ed25519" "sbx-$SID" \
			'echo through-alias'
		echo "ssh: status $status, output: $output"
		[ "$status" -eq 0 ] && [ "$output" = through-alias ]
	fi
	run tenki sandbox ssh config uninstall
	[ "$status" -eq 0 ]
	cmp "$WORK/config.before" "$HOME/.ssh/config"
	[ "$(stat -c %a "$HOME/.ssh/config")" = 640 ]
	run tenki sandbox ssh config status
	[ "$status" -eq 1 ] && [[ "$output" == "not installed"* ]]
	# a config that install created goes away again
	rm "$HOME/.ssh/config"
	tenki sandbox ssh config install
	[ -e "$HOME/.ssh/config" ]
	tenki sandbox ssh config uninstall
	[ ! -e "$HOME/.ssh/config" ]
	# uninstall works without a tree and without a block
	run tenki --mount "$WORK/empty" sandbox ssh config uninstall
	[ "$status" -eq 0 ]
}

# ---- volumes, snapshots, templates (SPEC.md; skip until the tree has them) ---

@test "volume create, list, get, attach, detach, delete" {
	[ -d "$T/volumes" ] || skip "this tree has no volumes/ yet (issue 7)"
	run tenki sandbox volume create --name cli-vol --size 16M
	[ "$status" -eq 0 ] || { echo "$output"; return 1; }
	[ -d "$T/volumes/cli-vol" ]
	[ "$(cat "$T/volumes/cli-vol/size")" = $((16 * 1024 * 1024)) ]
	run tenki sandbox volume list
	grep -q '^cli-vol ' <<<"$output"
	vid=$(cat "$T/volumes/cli-vol/id")
	run tenki sandbox volume get --volume "$vid"
	[ "$status" -eq 0 ] && [[ "$output" == *cli-vol* ]]
	run tenki sandbox volume attach --volume cli-vol --session cli --path /data
	[ "$status" -eq 0 ] || { echo "$output"; return 1; }
	grep -q '^cli-vol /data rw$' "$SD/volumes"
	run tenki sandbox volume delete --volume cli-vol
	[ "$status" -eq 1 ] && [[ "$output" == *"(Device or resource busy)"* ]]
	tenki sandbox volume detach --volume cli-vol
	[ -z "$(grep cli-vol "$SD/volumes")" ]
	tenki sandbox volume delete --volume cli-vol
	[ ! -e "$T/volumes/cli-vol" ]
	run tenki sandbox volume create --name cli-big --size 200G
	[ "$status" -eq 1 ] && [ ! -e "$T/volumes/cli-big" ]
}

@test "snapshot create (waits for READY), list, get, delete" {
	[ -d "$T/snapshots" ] || skip "this tree has no snapshots/ yet (issue 6)"
	run timeout 600 "$TENKI" sandbox snapshot create --session cli --name cli-snap
	[ "$status" -eq 0 ] || { echo "$output"; return 1; }
	[ "$(cat "$T/snapshots/cli-snap/state")" = READY ]
	run tenki sandbox snapshot list
	grep -q '^cli-snap ' <<<"$output"
	run tenki sandbox snapshot get --snapshot cli-snap --json
	[ "$(python3 -c 'import json,sys; print(json.load(sys.stdin)["state"])' <<<"$output")" = READY ]
	tenki sandbox snapshot delete --snapshot cli-snap
	[ ! -e "$T/snapshots/cli-snap" ]
}

@test "template create, get, build, logs, delete" {
	[ -d "$T/templates" ] || skip "this tree has no templates/ yet (issue 10)"
	run tenki sandbox template create --name cli-t \
		--setup-script 'echo built > /home/tenki/built' --env K=V
	[ "$status" -eq 0 ] || { echo "$output"; return 1; }
	[ "$(cat "$T/templates/cli-t/setup_script")" = 'echo built > /home/tenki/built' ]
	[ "$(cat "$T/templates/cli-t/env")" = K=V ]
	run timeout 900 "$TENKI" sandbox template build --template cli-t
	[ "$status" -eq 0 ] || { echo "$output"; return 1; }
	[ "$(cat "$T/templates/cli-t/state")" = READY ]
	run tenki sandbox template logs --template cli-t
	[ "$status" -eq 0 ]
	tenki sandbox template delete --template cli-t
	[ ! -e "$T/templates/cli-t" ]
}

# ---- lifecycle: extend, pause, resume, close; errors from err files ---------

@test "extend --duration 30m pushes expires_at by 30 minutes" {
	e1=$(json_get "$SD/info.json" expires_at)
	run tenki sandbox extend --session cli --duration 30m
	[ "$status" -eq 0 ]
	e2=$(json_get "$SD/info.json" expires_at)
	python3 - "$e1" "$e2" <<'PY'
import sys
from datetime import datetime
a, b = (datetime.fromisoformat(x.replace("Z", "+00:00")) for x in sys.argv[1:])
assert abs((b - a).total_seconds() - 1800) < 2, (a, b)
PY
	run tenki sandbox extend --session cli --duration soon
	[ "$status" -eq 1 ]
	[[ "$output" == *"extend soon"*"not a duration"*"(Invalid argument)"* ]]
}

@test "pause, resume; a refusal prints the reason from the session's err" {
	tenki sandbox pause --session cli
	[ "$(cat "$SD/state")" = PAUSED ]
	run tenki sandbox pause --session cli
	[ "$status" -eq 1 ]
	reason=$(tail -1 "$SD/err" | cut -d' ' -f2-)
	[[ "$output" == *"$reason (Device or resource busy)" ]]
	run tenki sandbox read --session cli --path app.env
	[ "$status" -eq 1 ] && [[ "$output" == *PAUSED*"(Resource temporarily unavailable)" ]]
	tenki sandbox resume --session cli
	[ "$(cat "$SD/state")" = READY ]
	run tenki sandbox read --session cli --path app.env
	[ "$output" = PORT=3000 ]
}

@test "close: TERMINATED, the record stays; delete removes every trace" {
	tenki sandbox close --session "$SID"
	[ "$(cat "$SD/state")" = TERMINATED ]
	run tenki sandbox get --session cli
	grep -q '^state  *TERMINATED$' <<<"$output"
	run tenki sandbox exec --session cli -c true
	[ "$status" -ne 0 ]
	tenki sandbox delete --session cli
	[ ! -e "$SD" ]
	left=$(domains)
	[ -z "$left" ] || { echo "domains left: $left"; false; }
}

@test "with tenkid gone, commands say tenkid is not running" {
	tenki sandbox list >/dev/null
	# killed: its mount stays, stale (ENOTCONN)
	kill -9 "$(cat "$TK/pid")"
	sleep 0.5
	run tenki sandbox list
	[ "$status" -eq 1 ]
	[[ "$output" == *"tenkid is not running: $T is a stale mount"* ]]
	# unmounted: an empty directory
	fusermount3 -u "$T" 2>/dev/null || umount -l "$T"
	run tenki sandbox get --session cli
	[ "$status" -eq 1 ]
	[[ "$output" == *"no tenki tree at $T: is tenkid running?"* ]]
}
