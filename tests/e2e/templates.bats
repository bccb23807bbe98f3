#!/usr/bin/env bats
# Issue 10: templates/ — recipes built into a captured guest that new
# sessions restore; through the mounted tree only, against real VMs.
# The slow part is the build's apt-get of one small package under TCG.
load lib

setup_file() {
	start_tenkid
}
teardown_file() { cleanup_tenkid; }

# Wait until a template's state leaves PENDING/BUILDING; prints it.
build_wait() { # template [seconds]
	local st
	for _ in $(seq "${2:-900}"); do
		st=$(cat "$T/templates/$1/state")
		[ "$st" = PENDING ] || [ "$st" = BUILDING ] || break
		sleep 1
	done
	echo "$st"
}

# Sessions tenkid shows, and the libvirt domains of sessions: a build's
# VM is neither once its build has ended.
visible_sessions() { find "$T/sessions" -mindepth 1 -maxdepth 1 -type d | wc -l; }

@test "templates/new and mkdir: a recipe checked like a session spec" {
	mkdir "$T/templates/plain"
	[ "$(cat "$T/templates/plain/state")" = NONE ]
	[ "$(cat "$T/templates/plain/cpu_cores")" = 1 ] # from defaults
	[ "$(cat "$T/templates/plain/memory_mb")" = 512 ]
	[ "$(cat "$T/templates/plain/base_image")" = sandbox ]
	[[ "$(cat "$T/templates/plain/id")" =~ ^[0-9a-f-]{36}$ ]]
	[ -z "$(cat "$T/templates/plain/log")" ] # no build: an empty log
	[ -z "$(ls "$T/templates/plain/builds")" ]
	refused_with "File exists" mkdir "$T/templates/plain"
	refused_with "Invalid argument" bash -c "echo 99 >'$T/templates/plain/cpu_cores'"
	grep -q 'cpu_cores' "$T/templates/plain/err"
	refused_with "No such file" bash -c "echo nope >'$T/templates/plain/base_image'"
	refused_with "Invalid argument" bash -c "echo 'not an env line' >'$T/templates/plain/env'"
	[ "$(cat "$T/templates/plain/cpu_cores")" = 1 ]
	echo 2 >"$T/templates/plain/cpu_cores"
	[ "$(cat "$T/templates/plain/cpu_cores")" = 2 ]
	refused_with "Invalid argument" bash -c "echo frobnicate >'$T/templates/plain/ctl'"
	# a JSON spec, env as an object; the name comes back on the same fd
	exec 5<>"$T/templates/new"
	echo '{"name": "js", "setup_script": "echo one\necho two", "env": {"A": "1", "B": "x y"}, "memory_mb": 1024}' >&5
	read -r made <&5
	exec 5>&-
	[ "$made" = js ]
	[ "$(cat "$T/templates/js/setup_script")" = "$(printf 'echo one\necho two')" ]
	[ "$(cat "$T/templates/js/env")" = "$(printf 'A=1\nB=x y')" ]
	[ "$(json_get "$T/templates/js/info.json" memory_mb)" = 1024 ]
	refused_with "Invalid argument" bash -c "echo 'name=x cpu_cores=0' >'$T/templates/new'"
	refused_with "Invalid argument" bash -c "echo 'name=x colour=red' >'$T/templates/new'"
	[ ! -e "$T/templates/x" ]
	# no READY build: ENOENT, with the reason in sessions/err
	refused_with "No such file" bash -c "echo 'name=n template=plain' >'$T/sessions/new'"
	grep -q 'no READY build' "$T/sessions/err"
	refused_with "No such file" bash -c "echo 'name=n template=nope' >'$T/sessions/new'"
	rmdir "$T/templates/js" "$T/templates/plain"
	[ -z "$(ls "$T/templates" | grep -v -e '^new$' -e '^err$')" ]
	# images/: the base images and what they say of themselves
	[ "$(ls "$T/images")" = sandbox ]
	[ "$(json_get "$T/images/sandbox/info.json" name)" = sandbox ]
}

@test "build: apt-get install, a file, a server; a session restores it all" {
	mkdir "$T/templates/web"
	W=$T/templates/web
	echo 'GREETING=hello-from-template' >"$W/env"
	cat >"$W/setup_script" <<'EOF'
set -e
echo "setup sees $GREETING"
apt-get update -q
apt-get install -y -q --no-install-recommends jq
mkdir -p /srv/www
echo '{"built": "v1"}' >/srv/www/ver.json
EOF
	echo 'cd /srv/www && exec python3 -m http.server 8000' >"$W/start_cmd"
	echo 'curl -sf http://127.0.0.1:8000/ver.json' >"$W/ready_cmd"
	echo build >"$W/ctl"
	[[ "$(cat "$W/state")" == PENDING || "$(cat "$W/state")" == BUILDING ]]
	refused_with "Device or resource busy" bash -c "echo build >'$W/ctl'"
	# the log is a live stream: this read blocks until the script ends
	timeout 900 cat "$W/log" >"$TK/web.log"
	grep -q 'setup sees hello-from-template' "$TK/web.log"
	grep -q 'Setting up jq' "$TK/web.log"
	[ "$(build_wait web)" = READY ] || { cat "$W/err"; cat "$W/builds/1/info.json"; return 1; }
	[ "$(cat "$W/builds/1/state")" = READY ]
	cmp "$TK/web.log" "$W/builds/1/log"
	[ "$(json_get "$W/info.json" ready_build)" = 1 ]
	python3 - "$W/builds/1/info.json" <<'PY'
import json, sys
i = json.load(open(sys.argv[1]))
assert i["state"] == "READY" and i["reason"] is None, i
assert i["duration_ms"] > 0 and i["started_at"] and i["ended_at"], i
assert "jq" in i["recipe"]["setup_script"], i
assert i["recipe"]["env"] == {"GREETING": "hello-from-template"}, i
PY
	# the build session is gone, VM and all
	[ "$(visible_sessions)" -eq 0 ]
	[ -z "$(domains)" ]

	echo 'name=w1 template=web allow_inbound=true' >"$T/sessions/new"
	S=$T/sessions/w1
	[ "$(cat "$S/state")" = READY ]
	[ "$(json_get "$S/info.json" boot)" = template ]
	[ "$(json_get "$S/info.json" template)" = web ]
	[ "$(json_get "$S/info.json" cpu_cores)" = 1 ]
	run tk_exec w1 'jq -r .built /srv/www/ver.json'
	[ "$output" = v1 ]
	# the server the start command started is already answering
	run tk_exec w1 'curl -sf --max-time 10 http://127.0.0.1:8000/ver.json'
	[ "$output" = '{"built": "v1"}' ]
	run tk_exec w1 'echo "$GREETING"'
	[ "$output" = hello-from-template ]
	touch "$S/ports/8000"
	url=$(sed -n 's/^url //p' "$S/ports/8000")
	[ "$(curl -sS --max-time 30 "${url}ver.json")" = '{"built": "v1"}' ]
	# a restore keeps the build's shape
	refused_with "Invalid argument" bash -c "echo 'name=w9 template=web cpu_cores=2' >'$T/sessions/new'"
}

@test "a failing setup script: FAILED, log and reason kept, no build VM left" {
	mkdir "$T/templates/bad"
	printf 'echo about-to-fail\nexit 3\n' >"$T/templates/bad/setup_script"
	echo build >"$T/templates/bad/ctl"
	[ "$(build_wait bad)" = FAILED ]
	[ "$(cat "$T/templates/bad/log")" = about-to-fail ]
	[ "$(cat "$T/templates/bad/builds/1/log")" = about-to-fail ]
	[[ "$(json_get "$T/templates/bad/builds/1/info.json" reason)" == *"exited 3"* ]]
	grep -q 'bad/builds/1: build failed: setup_script exited 3' "$T/templates/bad/err"
	# nothing half-made: only the visible sessions have VMs
	[ "$(domains | wc -l)" -eq "$(visible_sessions)" ]
	[ "$(state_sessions)" -eq "$(visible_sessions)" ]
	refused_with "No such file" bash -c "echo 'name=b1 template=bad' >'$T/sessions/new'"
	grep -q 'template bad has no READY build (state FAILED)' "$T/sessions/err"
	rmdir "$T/templates/bad"
}

@test "rebuild while a session of build 1 runs: build 2 READY, new sessions use it" {
	W=$T/templates/web
	[ "$(cat "$T/sessions/w1/state")" = READY ]
	printf 'mkdir -p /srv/www\necho %s >/srv/www/ver.json\n' "'{\"built\": \"v2\"}'" >"$W/setup_script"
	echo build >"$W/ctl"
	[ "$(build_wait web)" = READY ] || { cat "$W/err"; return 1; }
	[ "$(cat "$W/builds/2/state")" = READY ]
	# build 1 stays while w1 uses it
	[ -d "$W/builds/1" ]
	run tk_exec w1 'cat /srv/www/ver.json'
	[ "$output" = '{"built": "v1"}' ]
	# a volume given with template= is hot-plugged before READY
	echo 'name=tv size=64M' >"$T/volumes/new"
	echo 'name=w2 template=web volume=tv:/mnt/tv' >"$T/sessions/new"
	run tk_exec w2 'cat /srv/www/ver.json; curl -sf --max-time 10 http://127.0.0.1:8000/ver.json; grep -c " /mnt/tv " /proc/mounts'
	[ "$output" = "$(printf '%s\n%s\n1' '{"built": "v2"}' '{"built": "v2"}')" ]
	# build 1 goes once nothing uses it
	rmdir "$T/sessions/w1"
	for _ in $(seq 60); do [ -d "$W/builds/1" ] || break; sleep 0.5; done
	[ "$(ls "$W/builds")" = 2 ]
	# rmdir of the template: its builds go, its sessions stay usable
	rmdir "$T/templates/web"
	[ ! -e "$W" ]
	# each build starts from the base image: build 2 has no jq
	run tk_exec w2 'cat /srv/www/ver.json; command -v jq || echo no-jq'
	[ "$output" = "$(printf '%s\n%s' '{"built": "v2"}' no-jq)" ]
	rmdir "$T/sessions/w2"
	rmdir "$T/volumes/tv"
	[ -z "$(domains)" ]
}

@test "a restart keeps templates and builds; a build it interrupted is FAILED" {
	mkdir "$T/templates/keep"
	echo 'K=V' >"$T/templates/keep/env"
	echo 'sleep 600' >"$T/templates/keep/setup_script"
	echo build >"$T/templates/keep/ctl"
	for _ in $(seq 300); do
		[ -s "$TK/state/templates/$(cat "$T/templates/keep/id")/builds/1/build.json" ] &&
			grep -q '"session_id": "[0-9a-f]' "$TK/state/templates/$(cat "$T/templates/keep/id")/builds/1/build.json" && break
		sleep 0.2
	done
	stop_tenkid
	start_tenkid
	[ "$(cat "$T/templates/keep/env")" = K=V ]
	[ "$(cat "$T/templates/keep/state")" = FAILED ]
	[[ "$(json_get "$T/templates/keep/builds/1/info.json" reason)" == *"tenkid stopped"* ]]
	# the interrupted build's session and VM go
	for _ in $(seq 150); do [ -z "$(domains)" ] && [ "$(state_sessions)" -eq 0 ] && break; sleep 0.2; done
	[ -z "$(domains)" ]
	[ "$(state_sessions)" -eq 0 ]
	[ "$(visible_sessions)" -eq 0 ]
	rmdir "$T/templates/keep"
}
