#!/usr/bin/env bash
# make bench: each tenki figure beside a peer measured in the same run, on
# the same image and the same machine.  Results go to build/bench/results.txt.
#   boot:  mkdir sessions/X -> READY   vs  virsh create of the same domain
#          XML -> the agent's first answer
# BENCH_RUNS (default 5) sets repetitions; medians are reported.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
runs=${BENCH_RUNS:-5}
out=build/bench
mkdir -p "$out"
res=$out/results.txt
tk=$(mktemp -d /tmp/tenki-bench.XXXXXX)
chmod 711 "$tk"
mkdir -p "$tk/mnt" "$tk/state"
T=$tk/mnt
virsh="virsh -q -c qemu:///system"

cleanup() {
	for s in "$T"/sessions/*/; do [ -d "$s" ] && rmdir "$s" 2>/dev/null || true; done
	[ -f "$tk/pid" ] && kill "$(cat "$tk/pid")" 2>/dev/null || true
	sleep 0.5
	mountpoint -q "$T" && fusermount3 -u "$T" || true
	for d in $($virsh list --all --name | grep '^tenki-bench-' || true); do
		$virsh destroy "$d" >/dev/null 2>&1 || true
		$virsh undefine "$d" >/dev/null 2>&1 || true
	done
	rm -rf "$tk"
}
trap cleanup EXIT

median() { sort -n | awk '{a[NR]=$1} END {m=(NR%2)?a[(NR+1)/2]:(a[NR/2]+a[NR/2+1])/2; printf "%.0f", m}'; }
ms_since() { echo $(( ($(date +%s%N) - $1) / 1000000 )); }

build/tenkid --mount "$T" --state "$tk/state" --foreground >"$tk/tenkid.log" 2>&1 &
echo $! >"$tk/pid"
for _ in $(seq 100); do mountpoint -q "$T" && break; sleep 0.1; done
echo 'cpu=1 memory=512' >"$T/defaults"

echo "== boot: mkdir -> READY vs virsh create -> agent answer ($runs runs each)"
: >"$out/boot_tenki.txt"
for i in $(seq "$runs"); do
	t0=$(date +%s%N)
	mkdir "$T/sessions/b$i"
	ms_since "$t0" >>"$out/boot_tenki.txt"
	[ "$i" -eq 1 ] && $virsh dumpxml "$(sed -n 's/.*"domname": "\(.*\)".*/\1/p' \
		"$tk/state/sessions/$(cat "$T/sessions/b1/id")/session.json")" >"$tk/dom.xml"
	[ "$i" -gt 1 ] && rmdir "$T/sessions/b$i"
done
base=/var/cache/tenki/images/sandbox/rootfs.qcow2
: >"$out/boot_virsh.txt"
for i in $(seq "$runs"); do
	name=tenki-bench-$i
	disk=$tk/peer$i.qcow2
	qemu-img create -q -f qcow2 -b "$base" -F qcow2 "$disk"
	chown libvirt-qemu: "$disk"
	python3 - "$tk/dom.xml" "$name" "$disk" "$tk/peer$i.console" >"$tk/peer$i.xml" <<'PY'
import re, sys, uuid
x = open(sys.argv[1]).read()
x = re.sub(r"<name>.*?</name>", "<name>%s</name>" % sys.argv[2], x, count=1)
x = re.sub(r"<uuid>.*?</uuid>", "<uuid>%s</uuid>" % uuid.uuid4(), x, count=1)
x = re.sub(r"(<disk type='file' device='disk'>.*?<source file=')[^']*", r"\g<1>" + sys.argv[3], x, count=1, flags=re.S)
x = re.sub(r"<log file='[^']*'", "<log file='%s'" % sys.argv[4], x)
x = re.sub(r"(<channel type='unix'>\s*<source mode='bind')[^/]*/>", r"\1/>", x)
x = re.sub(r"<alias name='[^']*'/>", "", x)
print(x)
PY
	t0=$(date +%s%N)
	$virsh create "$tk/peer$i.xml" >/dev/null
	sock=$($virsh dumpxml "$name" | sed -n "s/.*<source mode='bind' path='\([^']*org.tenki.agent.0\)'.*/\1/p")
	scripts/bench/agent_hello.py "$sock" 120 >/dev/null
	ms_since "$t0" >>"$out/boot_virsh.txt"
	$virsh destroy "$name" >/dev/null
done
b_tk=$(median <"$out/boot_tenki.txt")
b_vs=$(median <"$out/boot_virsh.txt")

{
	echo "tenki bench $(date -u +%FT%TZ) on $(uname -n), $(nproc) cores, accel $(sed -n 's/.*libvirt .* (\(.*\))$/\1/p' "$tk/tenkid.log" | head -1)"
	printf '%-44s %10s %10s\n' "figure (median of $runs)" tenki peer
	printf '%-44s %8s ms %7s ms   (peer: virsh create same XML -> agent HELLO)\n' \
		"create to usable (mkdir -> READY)" "$b_tk" "$b_vs"
} | tee "$res"
echo "raw samples in $out/"
