# Shared by the bench scripts that run tenkids of their own (create.sh,
# template.sh, hosts.sh).  Source it after setting tk (a temporary
# directory), T (the mount point: $tk/mnt), TENKID and IMAGES.

virsh="virsh -q -c qemu:///system"

# The prefixes of the libvirt domains (sessions, golden builds) of a
# tenkid with state directory $1: tenkid's FNV-1a hash of that path.
domtag() {
	python3 -c '
import sys
h = 2166136261
for b in sys.argv[1].encode():
    h = ((h ^ b) * 16777619) & 0xffffffff
print("tenki-%08x-" % h, "tenki-g%08x-" % h)' "$1"
}

# Start tenkid on $T with state $tk/state and the given options; return
# once the tree is mounted, with defaults of 1 vCPU and 512 MiB.
tenkid_start() {
	mkdir -p "$T" "$tk/state"
	$TENKID --mount "$T" --state "$tk/state" --images "$IMAGES" --foreground "$@" >>"$tk/tenkid.log" 2>&1 &
	echo $! >"$tk/pid"
	for _ in $(seq 100); do mountpoint -q "$T" && break; sleep 0.1; done
	mountpoint -q "$T" || { cat "$tk/tenkid.log"; exit 1; }
	echo 'cpu=1 memory=512' >"$T/defaults"
}

# Remove the sessions and what the named collections (snapshots,
# templates) hold, stop tenkid, unmount, and destroy what is left of its
# domains.  Never fails: it runs from EXIT traps.
tenkid_stop() { # collection...
	local s c d tag
	set +e
	if mountpoint -q "$T"; then
		for s in "$T"/sessions/*/; do [ -d "$s" ] && timeout 60 rmdir "$s" 2>/dev/null; done
		for c in "$@"; do
			for s in "$T/$c"/*/; do [ -d "$s" ] && rmdir "$s" 2>/dev/null; done
		done
	fi
	[ -f "$tk/pid" ] && kill "$(cat "$tk/pid")" 2>/dev/null
	for _ in $(seq 100); do kill -0 "$(cat "$tk/pid" 2>/dev/null)" 2>/dev/null || break; sleep 0.1; done
	mountpoint -q "$T" && { fusermount3 -u "$T" 2>/dev/null || fusermount3 -uz "$T"; }
	if [ -d "$tk/state" ]; then
		for tag in $(domtag "$tk/state"); do
			for d in $($virsh list --all --name | grep "^$tag"); do
				$virsh destroy "$d" >/dev/null 2>&1
				$virsh undefine "$d" >/dev/null 2>&1
			done
		done
	fi
	rm -f "$tk/pid"
	set -e
}

ms_since() { echo $(( ($(date +%s%N) - $1) / 1000000 )); }
boot_of() { python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["boot"])' "$T/sessions/$1/info.json"; }
