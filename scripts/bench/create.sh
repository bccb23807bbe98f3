#!/usr/bin/env bash
# Creation figures for make bench, side by side in one run, same image and
# shape (1 vCPU, 512 MiB): a cold boot (tenkid --golden off --pool 0), a
# restore of the golden state (--pool 0, golden built first, its staged
# guest made again before each run, as the pool is refilled), a mkdir that
# takes a guest from the warm pool (--pool 2, the pool refilled before each
# run), and the time of a snapshot of a running session.
# Usage: create.sh OUTDIR RUNS; writes create_{cold,golden,pool,snapshot}.txt
# (ms, one sample a line) into OUTDIR.  TENKID, TENKI_IMAGES as bench.sh.
set -euo pipefail
cd "$(dirname "$0")/../.."
out=$1
runs=$2
TENKID=${TENKID:-build/tenkid}
IMAGES=${TENKI_IMAGES:-/var/cache/tenki/images}
tk=$(mktemp -d /tmp/tenki-bench-create.XXXXXX)
chmod 711 "$tk"
T=$tk/mnt

. scripts/bench/lib.bash

stop() {
	tenkid_stop snapshots
	rm -rf --one-file-system "$tk/state" "$tk/mnt"
}
trap 'stop; rm -rf --one-file-system "$tk"' EXIT
wait_line() { # file regex seconds
	for _ in $(seq $(($3 * 2))); do grep -q "$2" "$1" 2>/dev/null && return 0; sleep 0.5; done
	echo "timed out waiting for '$2' in $1" >&2
	return 1
}

measure() { # name file expected-boot
	local t0
	t0=$(date +%s%N)
	mkdir "$T/sessions/$1"
	ms_since "$t0" >>"$2"
	[ "$(boot_of "$1")" = "$3" ] || { echo "$1 booted $(boot_of "$1"), not $3" >&2; exit 1; }
}

# 1. cold boots
tenkid_start --golden off --pool 0
: >"$out/create_cold.txt"
for i in $(seq "$runs"); do
	measure c$i "$out/create_cold.txt" cold
	rmdir "$T/sessions/c$i"
done
stop

# 2. golden restores (the first mkdir boots cold and builds the state)
tenkid_start --pool 0
mkdir "$T/sessions/first"
wait_line "$tk/tenkid.log" "golden state .* ready" 300
: >"$out/create_golden.txt"
for i in $(seq "$runs"); do
	# the staged guest (its overlay and save image copy) made again
	wait_line "$T/pool" "^staged 1$" 300
	measure g$i "$out/create_golden.txt" golden
	rmdir "$T/sessions/g$i"
done
# snapshot time, of a running session
: >"$out/create_snapshot.txt"
for i in $(seq "$runs"); do
	t0=$(date +%s%N)
	echo "snapshot s$i" >"$T/sessions/first/ctl"
	ms_since "$t0" >>"$out/create_snapshot.txt"
	rmdir "$T/snapshots/s$i"
done
stop

# 3. the warm pool
tenkid_start --pool 2
: >"$out/create_pool.txt"
for i in $(seq "$runs"); do
	wait_line "$T/pool" "^ready 2$" 300
	measure p$i "$out/create_pool.txt" pool
	rmdir "$T/sessions/p$i"
done
stop
