#!/usr/bin/env bats
# Issue 5: creating sessions with every option, listing, events.
load lib

KEY='ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl test@tenki'

setup_file() { start_tenkid; }
teardown_file() { cleanup_tenkid; }

@test "a spec with every kind of key: the guest and the record agree" {
	echo "name=big cpu=4 memory=8192 allow_outbound=false env=APP_ENV=dev metadata=owner=alice max_duration=30m ssh_key='$KEY'" >"$T/sessions/new"
	S=$T/sessions/big
	[ "$(cat "$S/state")" = READY ]
	[ "$(tk_exec big nproc)" = 4 ]
	mem=$(tk_exec big "awk '/MemTotal/ {print \$2}' /proc/meminfo")
	[ "$mem" -gt $((7 * 1024 * 1024)) ] && [ "$mem" -le $((8 * 1024 * 1024)) ]
	[ "$(tk_exec big 'echo $APP_ENV')" = dev ]
	run tk_exec big 'curl -sS -m 5 -o /dev/null http://deb.debian.org/ 2>&1 && echo reached || echo unreachable'
	[[ "$output" == *unreachable* ]]
	[ "$(cat "$S/metadata/owner")" = alice ]
	[ "$(cat "$S/ssh/authorized_keys")" = "$KEY" ]
	python3 - "$S/info.json" <<'PY'
import json, sys, datetime
r = json.load(open(sys.argv[1]))
assert r["cpu_cores"] == 4 and r["memory_mb"] == 8192, r
assert r["allow_outbound"] is False and r["allow_inbound"] is False
assert r["env"] == {"APP_ENV": "dev"} and r["metadata"] == {"owner": "alice"}
assert r["ssh"]["keys"] == 1
f = lambda s: datetime.datetime.fromisoformat(s.replace("Z", "+00:00"))
d = (f(r["expires_at"]) - f(r["created_at"])).total_seconds()
assert abs(d - 1800) < 2, d
PY
	grep -q '^big .* READY 4 8192 ' "$T/sessions/index"
	rmdir "$S"
}

@test "the same spec as JSON gives the same session" {
	echo '{"name":"bigj","cpu_cores":4,"memory_mb":8192,"allow_outbound":false,"env":{"APP_ENV":"dev"},"metadata":{"owner":"alice"},"max_duration":"30m"}' >"$T/sessions/new"
	[ "$(tk_exec bigj nproc)" = 4 ]
	[ "$(tk_exec bigj 'echo $APP_ENV')" = dev ]
	[ "$(cat "$T/sessions/bigj/metadata/owner")" = alice ]
	[ "$(json_get "$T/sessions/bigj/info.json" memory_mb)" = 8192 ]
	rmdir "$T/sessions/bigj"
}

@test "allow_outbound=true: the guest reaches the Debian mirror (apt-get update)" {
	echo 'name=net allow_outbound=true' >"$T/sessions/new"
	j=$(cat "$T/sessions/net/exec/clone")
	echo 'apt-get update' >"$T/sessions/net/exec/$j/cmd"
	[ "$(timeout 300 cat "$T/sessions/net/exec/$j/exit")" = 0 ] || { cat "$T/sessions/net/exec/$j/output"; false; }
	rmdir "$T/sessions/net"
}

@test "wait=false returns at once in CREATING; wait then blocks until READY" {
	start=$(date +%s%N)
	# not the defaults' shape: a cold boot, not a guest of the warm pool
	echo 'name=nw wait=false memory=768' >"$T/sessions/new"
	took=$((($(date +%s%N) - start) / 1000000))
	[ "$took" -lt 1000 ]
	[ "$(cat "$T/sessions/nw/state")" = CREATING ]
	[ "$(timeout 200 cat "$T/sessions/nw/wait")" = READY ]
}

@test "read the generated name back on the same open file" {
	exec 5<>"$T/sessions/new"
	echo 'cpu=1' >&5
	read -r name <&5
	exec 5>&-
	[[ "$name" =~ ^s-[0-9a-f]{8}$ ]]
	[ "$(cat "$T/sessions/$name/state")" = READY ]
	rmdir "$T/sessions/$name"
}

@test "wait_timeout: ETIMEDOUT, and the session stays and finishes booting" {
	# A shape no pooled or golden guest has: a cold boot, seconds long.
	refused_with "timed out" bash -c "echo 'name=slow memory=736 wait_timeout=1s' > '$T/sessions/new'"
	[ -d "$T/sessions/slow" ]
	[ "$(timeout 200 cat "$T/sessions/slow/wait")" = READY ]
	grep -q "still CREATING after wait_timeout" "$T/sessions/slow/err"
	rmdir "$T/sessions/slow"
}

@test "bad specs: each EINVAL with a precise reason and no residue" {
	before_dirs=$(state_sessions)
	before_doms=$(domains | wc -l)
	while IFS='|' read -r spec reason; do
		[ -n "$spec" ] || continue
		refused_with "Invalid argument" python3 -c 'import os,sys; fd=os.open(sys.argv[1], os.O_WRONLY); os.write(fd, sys.argv[2].encode())' "$T/sessions/new" "$spec"
		tail -1 "$T/sessions/err" | grep -qF -- "$reason" || { echo "spec [$spec]: want [$reason], got: $(tail -1 "$T/sessions/err")"; false; }
	done <<'SPECS'
cpu=0|key cpu: '0' is not a whole number in 1..16
cpu=17|key cpu: '17' is not a whole number in 1..16
cpu_cores=x|key cpu_cores: 'x' is not a whole number in 1..16
memory=511|key memory: '511' is not a whole number in 512..65536
memory_mb=65537|key memory_mb: '65537' is not a whole number in 512..65536
memory=1e3|key memory: '1e3'
name=-x|key name: '-x' is not a valid name
name=a/b|key name: 'a/b' is not a valid name
name=|key name: '' is not a valid name
allow_inbound=maybe|key allow_inbound: 'maybe' is not a boolean
allow_outbound=2|key allow_outbound: '2' is not a boolean
max_duration=soon|key max_duration: 'soon' is not a duration
max_duration=0|key max_duration: '0' is not a duration
max_duration=1h30|key max_duration: '1h30' is not a duration
wait=later|key wait: 'later' is not a boolean
wait_timeout=-1|key wait_timeout: '-1' is not a duration
env=NOEQ|key env: value 'NOEQ' is not KEY=VALUE
env=1X=y|key env: '1X' is not a variable name
metadata=/k=v|key metadata: key '/k' must match
metadata=novalue|key metadata: value 'novalue' is not KEY=VALUE
ssh_key=garbage|key ssh_key: not an OpenSSH public key line
ssh_key='ssh-ed25519 @@@@'|key ssh_key: key data is not valid base64
ssh_key='ssh-dss AAAA'|key ssh_key: unknown key type 'ssh-dss'
ssh_key='ssh-rsa AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl'|key ssh_key: key data does not match its type
volume=data|key volume: 'data' is not NAME:PATH[:ro]
volume=data:rel/path|key volume: mount path 'rel/path' must be absolute
volume=-v:/data|key volume: '-v' is not a volume name
image=../x|key image: '../x' is not a valid name
colour=blue|unknown key 'colour'
cpu=1 cpu=2|key cpu: given twice
cpu=1 cpu_cores=2|key cpu_cores: given twice
nonsense|'nonsense' is not key=value
name='open|unterminated ' quote
{"cpu_cores":"many"}|key cpu_cores: 'many' is not a whole number
{"cpu_cores":[2]}|key cpu_cores: wrong JSON type
{"env":["A=1"]}|key env: expected an object of strings
{"env":{"A":1}}|key env: value of 'A' is not a string
{"metadata":"owner=alice"}|key metadata: expected an object of strings
{"ssh_authorized_keys":"x"}|key ssh_authorized_keys: expected an array of strings
{"volumes":[{"volume_id":"v"}]}|key volumes: entry 0 must be
{"allow_inbound":3}|key allow_inbound: wrong JSON type
{"memory_mb":-5}|key memory_mb: -5 is negative
{"unknown":1}|unknown key 'unknown'
{"cpu":1,"cpu":2}|invalid JSON
[1,2,3]|a JSON spec must be one object
{"name":|invalid JSON
SPECS
	[ "$(state_sessions)" -eq "$before_dirs" ]
	[ "$(domains | wc -l)" -eq "$before_doms" ]
	[ "$(ls "$T/sessions" | grep -c -v -e '^err$' -e '^new$' -e '^index')" -eq "$(echo "$before_dirs")" ]
}

@test "defaults apply to mkdir; a spec's own keys win" {
	echo 'cpu=1 memory=768 env=FROM=defaults' >"$T/defaults"
	mkdir "$T/sessions/dflt"
	[ "$(json_get "$T/sessions/dflt/info.json" memory_mb)" = 768 ]
	[ "$(tk_exec dflt 'echo $FROM')" = defaults ]
	echo 'name=own memory=1024 env=FROM=spec' >"$T/sessions/new"
	[ "$(json_get "$T/sessions/own/info.json" memory_mb)" = 1024 ]
	[ "$(tk_exec own 'echo $FROM')" = spec ]
	echo 'cpu=1 memory=512' >"$T/defaults"
	rmdir "$T/sessions/dflt" "$T/sessions/own"
}

@test "ssh/authorized_keys: a write replaces the set; a bad key keeps the old" {
	S=$T/sessions/nw
	echo "$KEY" >"$S/ssh/authorized_keys"
	[ "$(json_get "$S/info.json" ssh | grep -o "'keys': 1")" ]
	refused_with "Invalid argument" bash -c "printf '%s\nnot a key\n' '$KEY' > '$S/ssh/authorized_keys'"
	[ "$(cat "$S/ssh/authorized_keys")" = "$KEY" ]
	: >"$S/ssh/authorized_keys"
	[ "$(cat "$S/ssh/authorized_keys")" = "$KEY" ]   # truncation alone changes nothing
}

@test "events: a reader wakes on each state change, from the moment it opened" {
	timeout 120 python3 - "$T" >"$TK/events.out" <<'PY' &
import json, os, sys
T = sys.argv[1]
f = open(os.path.join(T, "events"))
print("open", flush=True)
seen = []
for line in f:
    e = json.loads(line)
    if e.get("name") == "ev" and e["kind"] == "session":
        seen.append(e["new"])
        print(e["old"], e["new"], flush=True)
        if e["new"] == "REMOVED":
            break
PY
	reader=$!
	for _ in $(seq 50); do grep -q open "$TK/events.out" 2>/dev/null && break; sleep 0.1; done
	mkdir "$T/sessions/ev"
	echo pause >"$T/sessions/ev/ctl"
	echo resume >"$T/sessions/ev/ctl"
	rmdir "$T/sessions/ev"
	wait "$reader"
	cat "$TK/events.out"
	diff <(sed 1d "$TK/events.out") - <<'EOF2'
None CREATING
CREATING READY
READY PAUSED
PAUSED READY
READY TERMINATING
TERMINATING TERMINATED
TERMINATED REMOVED
EOF2
}

@test "no capacity: ENOSPC with the reason, nothing made" {
	host_mb=$(($(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024))
	[ "$host_mb" -lt 40000 ] || skip "host too large for a 64 GiB refusal"
	refused_with "No space left" bash -c "echo 'name=huge memory=65536' > '$T/sessions/new'"
	grep -q "huge: no capacity: .* 65536 more asked" "$T/sessions/err"
	[ ! -e "$T/sessions/huge" ]
}

@test "a restart keeps every option of every session" {
	echo "name=keep cpu=2 memory=1024 env=K=v metadata=m=1 max_duration=2h ssh_key='$KEY'" >"$T/sessions/new"
	before=$(python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); r.pop("state"); r["ssh"].pop("target", None); print(json.dumps(r, sort_keys=True))' "$T/sessions/keep/info.json")
	kill9_tenkid
	start_tenkid
	[ "$(timeout 60 cat "$T/sessions/keep/wait")" = READY ]
	after=$(python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); r.pop("state"); r["ssh"].pop("target", None); print(json.dumps(r, sort_keys=True))' "$T/sessions/keep/info.json")
	[ "$before" = "$after" ]
	[ "$(tk_exec keep 'echo $K')" = v ]
}
