#!/usr/bin/env bash
# Template figures for make bench (1 vCPU, 512 MiB): the time of a build
# (ctl build -> READY: a cold boot of the build session, a setup script
# that apt-gets one small package, a start command and its ready check,
# the capture, the build session's removal), and mkdir -> READY of
# sessions created with template=NAME (a restore of the build).
# Usage: template.sh OUTDIR RUNS; writes template_build.txt (ms, one
# sample) and create_template.txt (ms, RUNS samples) into OUTDIR and
# prints both.  TENKID, TENKI_IMAGES as bench.sh; BENCH_TEMPLATE_SETUP
# replaces the setup script.
set -euo pipefail
cd "$(dirname "$0")/../.."
out=$1
runs=$2
TENKID=${TENKID:-build/tenkid}
IMAGES=${TENKI_IMAGES:-/var/cache/tenki/images}
SETUP=${BENCH_TEMPLATE_SETUP:-'apt-get update -q && apt-get install -y -q --no-install-recommends jq'}
tk=$(mktemp -d /tmp/tenki-bench-template.XXXXXX)
chmod 711 "$tk"
T=$tk/mnt
mkdir -p "$T" "$tk/state" "$out"

. scripts/bench/lib.bash

trap 'tenkid_stop templates; rm -rf --one-file-system "$tk"' EXIT

median() { sort -n | awk '{a[NR]=$1} END {m=(NR%2)?a[(NR+1)/2]:(a[NR/2]+a[NR/2+1])/2; printf "%.0f", m}'; }

# No warm pool: nothing else boots while the build runs.
tenkid_start --pool 0

mkdir "$T/templates/bench"
printf '%s\n' "$SETUP" >"$T/templates/bench/setup_script"
echo 'cd /home/tenki && exec python3 -m http.server 8000' >"$T/templates/bench/start_cmd"
echo 'curl -sf -o /dev/null http://127.0.0.1:8000/' >"$T/templates/bench/ready_cmd"
t0=$(date +%s%N)
echo build >"$T/templates/bench/ctl"
for _ in $(seq 3600); do
	st=$(cat "$T/templates/bench/state")
	[ "$st" = PENDING ] || [ "$st" = BUILDING ] || break
	sleep 0.5
done
ms_since "$t0" >"$out/template_build.txt"
if [ "$st" != READY ]; then
	echo "template build $st: $(cat "$T/templates/bench/err")" >&2
	exit 1
fi

: >"$out/create_template.txt"
for i in $(seq "$runs"); do
	t0=$(date +%s%N)
	echo "name=t$i template=bench" >"$T/sessions/new"
	ms_since "$t0" >>"$out/create_template.txt"
	boot=$(boot_of t$i)
	[ "$boot" = template ] || { echo "t$i booted $boot, not template" >&2; exit 1; }
	rmdir "$T/sessions/t$i"
done
echo "template build (apt-get of one package, start, ready, capture): $(cat "$out/template_build.txt") ms"
echo "session from the template, mkdir -> READY, median of $runs: $(median <"$out/create_template.txt") ms"
