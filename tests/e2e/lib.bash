# Shared set-up of the end-to-end suites: each .bats file runs its own
# tenkid on a temporary mount and state directory, so a user's /tenki is
# never touched.  Sessions default to 1 vCPU and 512 MiB to fit CI.
ROOT=$(cd "$BATS_TEST_DIRNAME/../.." && pwd)
TENKID=${TENKID:-$ROOT/build/tenkid}

# Suites run side by side: each tenkid's SSH gateway takes a free port
# (ssh/target names it) rather than all racing for 2222.
start_tenkid() {
	export TK=${TK:-$(mktemp -d /tmp/tenki-e2e.XXXXXX)}
	chmod 711 "$TK"
	mkdir -p "$TK/mnt" "$TK/state"
	export T=$TK/mnt
	$TENKID --mount "$T" --state "$TK/state" --foreground \
		--boot-timeout 120 --images "${TENKI_IMAGES:-/var/cache/tenki/images}" \
		--pool "${TENKI_POOL:-1}" --ssh 127.0.0.1:0 --preview 127.0.0.1:0 ${TENKID_ARGS:-} >>"$TK/tenkid.log" 2>&1 &
	echo $! >"$TK/pid"
	for _ in $(seq 100); do
		mountpoint -q "$T" && break
		sleep 0.1
	done
	mountpoint -q "$T" || { cat "$TK/tenkid.log" >&3; return 1; }
	[ -s "$T/defaults" ] || echo 'cpu=1 memory=512' >"$T/defaults"
}

# After a failed test, what tenkid said: the err files of the top-level
# directories and the log's last lines, so a CI run shows the reason.
teardown() {
	[ -n "${BATS_TEST_COMPLETED:-}" ] && return 0
	[ -n "${TK:-}" ] || return 0
	local f
	for f in "$T"/sessions/err "$T"/snapshots/err "$T"/volumes/err "$T"/templates/err; do
		[ -s "$f" ] && timeout 5 tail -n 5 "$f" | sed "s|^|# ${f#"$T"/}: |" >&3
	done
	[ -f "$TK/tenkid.log" ] && tail -n 60 "$TK/tenkid.log" | sed 's/^/# tenkid: /' >&3
	return 0
}

stop_tenkid() { # leaves VMs running, like SIGTERM does
	local pid
	pid=$(cat "$TK/pid" 2>/dev/null) || return 0
	kill -TERM "$pid" 2>/dev/null
	for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
	mountpoint -q "$T" && fusermount3 -u "$T"
	return 0
}

kill9_tenkid() {
	kill -9 "$(cat "$TK/pid")"
	sleep 0.3
	fusermount3 -u "$T" 2>/dev/null || umount -l "$T" 2>/dev/null
	return 0
}

# tenki-HASH-: the prefix of this test's libvirt domains and pool.
state_tag() {
	python3 -c '
import sys
h = 2166136261
for b in sys.argv[1].encode():
    h = ((h ^ b) * 16777619) & 0xffffffff
print("tenki-%08x-" % h)' "$TK/state"
}

# Every libvirt domain of this test's state directory, pooled ones too.
all_domains() {
	virsh -q -c qemu:///system list --all --name | grep "^$(state_tag)" || true
}

# The libvirt domains of this test's sessions.  Guests waiting in the warm
# pool are not sessions' (yet): their state directory (named by the id the
# domain name ends with) holds a file "pooled" until a session takes them.
domains() {
	local tag d
	tag=$(state_tag)
	for d in $(virsh -q -c qemu:///system list --all --name | grep "^$tag"); do
		compgen -G "$TK/state/sessions/*${d#"$tag"}/pooled" >/dev/null && continue
		echo "$d"
	done
	return 0
}

# How many session directories the state directory holds (a pooled
# guest's, marked by its file "pooled", is no session's yet).
state_sessions() {
	local n=0 d
	for d in "$TK"/state/sessions/*/; do
		[ -d "$d" ] && [ ! -e "$d/pooled" ] && n=$((n + 1))
	done
	echo "$n"
}

# The libvirt storage pool of this test's volumes.
vol_pool() { echo "$(state_tag)volumes"; }

cleanup_tenkid() {
	if mountpoint -q "$T" 2>/dev/null; then
		for s in "$T"/sessions/*/; do
			[ -d "$s" ] && timeout 60 rmdir "$s" 2>/dev/null
		done
	fi
	stop_tenkid
	for d in $(all_domains); do
		virsh -q -c qemu:///system destroy "$d" >/dev/null 2>&1
		virsh -q -c qemu:///system undefine "$d" >/dev/null 2>&1
	done
	if virsh -q -c qemu:///system pool-info "$(vol_pool)" >/dev/null 2>&1; then
		virsh -q -c qemu:///system pool-destroy "$(vol_pool)" >/dev/null 2>&1
		virsh -q -c qemu:///system pool-undefine "$(vol_pool)" >/dev/null 2>&1
	fi
	[ -n "${KEEP_TK:-}" ] || rm -rf "$TK"
}

# Run a job in session $1: the command line $2; prints its stdout.
tk_exec() {
	local s=$1 j
	j=$(cat "$T/sessions/$s/exec/clone") || return 1
	echo "$2" >"$T/sessions/$s/exec/$j/cmd" || return 1
	timeout 120 cat "$T/sessions/$s/exec/$j/stdout"
	LAST_JOB=$j
}

json_get() { # file key
	python3 -c 'import json,sys; v=json.load(open(sys.argv[1]))[sys.argv[2]]; print("null" if v is None else v)' "$1" "$2"
}

# Fail with the errno text of a command that must be refused.
refused_with() { # "Invalid argument" cmd...
	local want=$1
	shift
	run "$@"
	[ "$status" -ne 0 ] || { echo "expected failure: $*"; return 1; }
	[[ "$output" == *"$want"* ]] || { echo "expected '$want', got: $output"; return 1; }
}

# A measured figure: in the test's output, and as a TAP comment so a
# passing run keeps it too (docs/reliability.md quotes them).
figure() {
	echo "$*"
	echo "# $*" >&3
}
