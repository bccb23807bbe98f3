#!/usr/bin/env bash
# Remote-host figures for make bench: creates placed on a second libvirt
# host (the namespace-contained libvirtd of tests/e2e/host2.bash, reached
# over qemu+tcp), side by side in one run, same image and shape (1 vCPU,
# 512 MiB): a cold boot there (tenkid --golden off) and a restore there of
# a copy of this machine's golden state (--pool 0).  The first create of
# each kind uploads the image or the golden state and is not counted.
# Usage: hosts.sh OUTDIR RUNS; writes hosts_{cold,golden}.txt (ms, one
# sample a line) into OUTDIR.  TENKID, TENKI_IMAGES as bench.sh.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$(pwd)
out=$1
runs=$2
TENKID=${TENKID:-build/tenkid}
IMAGES=${TENKI_IMAGES:-/var/cache/tenki/images}
tk=$(mktemp -d /tmp/tenki-bench-hosts.XXXXXX)
chmod 711 "$tk"
T=$tk/mnt
# shellcheck source=../../tests/e2e/host2.bash
. tests/e2e/host2.bash

. scripts/bench/lib.bash

trap 'tenkid_stop; set +e; h2_teardown >/dev/null 2>&1; rm -rf --one-file-system "$tk"' EXIT

wait_up() {
	for _ in $(seq 300); do [ "$(cat "$T/hosts/h2/state" 2>/dev/null)" = UP ] && return 0; sleep 0.1; done
	echo "host h2 is not UP" >&2
	exit 1
}

measure() { # name file expected-boot
	local t0
	t0=$(date +%s%N)
	echo "name=$1 host=h2" >"$T/sessions/new"
	[ -n "$2" ] && ms_since "$t0" >>"$2"
	[ "$(boot_of "$1")" = "$3" ] || { echo "$1 booted $(boot_of "$1"), not $3" >&2; exit 1; }
	rmdir "$T/sessions/$1"
}

h2_setup
# 1. cold boots there (the first uploads the image)
tenkid_start --golden off --pool 0
echo "name=h2 uri=$(h2_uri)" >"$T/hosts/new"
wait_up
measure warm-c "" cold
: >"$out/hosts_cold.txt"
for i in $(seq "$runs"); do measure c$i "$out/hosts_cold.txt" cold; done
tenkid_stop

# 2. golden restores there (built here first; the first copies it there)
tenkid_start --pool 0
wait_up
for _ in $(seq 600); do grep -q "golden state .* ready" "$tk/tenkid.log" && break; sleep 0.5; done
measure warm-g "" golden
: >"$out/hosts_golden.txt"
for i in $(seq "$runs"); do measure g$i "$out/hosts_golden.txt" golden; done
tenkid_stop
