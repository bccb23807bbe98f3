#!/usr/bin/env bash
# make bench: each tenki figure beside a peer measured in the same run, on
# the same image and the same machine.  Results go to build/bench/results.txt
# (raw samples beside it); docs/bench.md says what is measured and how.
#   create: mkdir -> READY from the warm pool, from the golden state (pool
#           off), and by a cold boot (both off), plus the time of a live
#           snapshot, side by side (scripts/bench/create.sh)
#   hosts:  creates on a second libvirt host (tests/e2e/host2.bash): a
#           restore of a copy of the golden state there vs a cold boot
#           there (scripts/bench/hosts.sh)
#   template: a template build (apt-get of one package, start command,
#           ready check, capture) and mkdir -> READY of sessions made from
#           it (scripts/bench/template.sh)
#   boot:   mkdir sessions/X -> READY (cold boot)  vs  virsh create of the
#           same domain XML -> the agent's first answer
#   exec:   `true` through exec/ (clone, cmd, exit)   vs  ssh into the same
#           guest, over a ControlMaster and on a new connection each time
#   stream: 200 MiB of job stdout   vs  the same command's output over ssh
#   files:  cp of 256 MiB in and out (and out again), tar x of 5,000 small
#           files, a stat walk of them (twice), rm -rf
#           through files/   vs  sshfs (sftp) mounted on the same guest
#   ports:  wrk requests/s and transfer rate to python3 -m http.server in
#           the guest through the preview URL (ports/)   vs  ssh -L
#           through the guest's sshd to the same server
# The ssh peers reach the guest's own sshd through a slirp port forward
# added at run time (hostfwd_add); sshd is started and keyed through exec.
#
# Knobs: BENCH_RUNS (boot, default 5), BENCH_EXEC_RUNS (30),
# BENCH_STREAM_RUNS (2), BENCH_STREAM_MIB (200), BENCH_FILE_MIB (256),
# BENCH_SMALL_FILES (5000), BENCH_SKIP_FILES=1, BENCH_WRK_SECS (10),
# BENCH_WRK_RUNS (2), BENCH_WRK_CONNS (8), BENCH_CREATE_RUNS (5),
# BENCH_SKIP_CREATE=1, BENCH_SKIP_HOSTS=1, BENCH_SKIP_TEMPLATE=1; TENKID (build/tenkid).
set -euo pipefail
cd "$(dirname "$0")/.."
TENKID=${TENKID:-build/tenkid}
runs=${BENCH_RUNS:-5}
xruns=${BENCH_EXEC_RUNS:-30}
sruns=${BENCH_STREAM_RUNS:-2}
smib=${BENCH_STREAM_MIB:-200}
fmib=${BENCH_FILE_MIB:-256}
nsmall=${BENCH_SMALL_FILES:-5000}
wsecs=${BENCH_WRK_SECS:-10}
wruns=${BENCH_WRK_RUNS:-2}
wconns=${BENCH_WRK_CONNS:-8}
out=build/bench
mkdir -p "$out"
rm -f "$out"/*.txt
res=$out/results.txt
tk=$(mktemp -d /tmp/tenki-bench.XXXXXX)
chmod 711 "$tk"
mkdir -p "$tk/mnt" "$tk/state" "$tk/sshfs"
T=$tk/mnt
M=$tk/sshfs
virsh="virsh -q -c qemu:///system"
bench_t0=$(date +%s)

# Our tenkid's domains carry a tag made from its state directory (the same
# FNV-1a hash tenkid uses), so cleanup touches only what this run made.
domtag=$(python3 -c '
import sys
h = 2166136261
for b in sys.argv[1].encode():
    h = ((h ^ b) * 16777619) & 0xffffffff
print("tenki-%08x-" % h)' "$tk/state")

cleanup() {
	set +e
	if mountpoint -q "$M"; then
		fusermount3 -u "$M" 2>/dev/null || fusermount3 -uz "$M"
	fi
	if [ -S "$tk/cm.sock" ]; then
		ssh -o ControlPath="$tk/cm.sock" -O exit bench >/dev/null 2>&1
	fi
	[ -f "$tk/cm.pid" ] && kill "$(cat "$tk/cm.pid")" 2>/dev/null
	[ -f "$tk/fwd.pid" ] && kill "$(cat "$tk/fwd.pid")" 2>/dev/null
	if mountpoint -q "$T"; then
		for s in "$T"/sessions/*/; do [ -d "$s" ] && timeout 60 rmdir "$s" 2>/dev/null; done
	fi
	[ -f "$tk/pid" ] && kill "$(cat "$tk/pid")" 2>/dev/null
	sleep 0.5
	mountpoint -q "$T" && { fusermount3 -u "$T" 2>/dev/null || fusermount3 -uz "$T"; }
	for d in $($virsh list --all --name | grep -e '^tenki-bench-' -e "^$domtag"); do
		$virsh destroy "$d" >/dev/null 2>&1
		$virsh undefine "$d" >/dev/null 2>&1
	done
	# never follow a mount that is still there into a guest or the tree
	rm -rf --one-file-system "$tk"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

median() { sort -n | awk '{a[NR]=$1} END {m=(NR%2)?a[(NR+1)/2]:(a[NR/2]+a[NR/2+1])/2; printf "%.0f", m}'; }
# nearest-rank percentile: pct P (0..100) of the numbers on stdin
pct() { sort -n | awk -v p="$1" '{a[NR]=$1} END {i=int((p*NR+99)/100); if (i<1) i=1; printf "%.0f", a[i]}'; }
ms_since() { echo $(( ($(date +%s%N) - $1) / 1000000 )); }
# microsecond clock without a fork (bash 5's EPOCHREALTIME)
us_now() { local t=${EPOCHREALTIME/./}; REPLY=${t#0}; }
mbps() { awk -v b="$1" -v us="$2" 'BEGIN {printf "%.1f", b / us}'; } # bytes, µs -> MB/s
secs() { awk -v us="$1" 'BEGIN {printf "%.1f", us / 1e6}'; }
say() { echo "== [$(( $(date +%s) - bench_t0 )) s] $*"; }

IMAGES=${TENKI_IMAGES:-/var/cache/tenki/images}
cruns=${BENCH_CREATE_RUNS:-5}
if [ -z "${BENCH_SKIP_CREATE:-}" ]; then
	say "create: warm pool, golden state, cold boot, snapshot ($cruns runs each)"
	TENKID=$TENKID TENKI_IMAGES=$IMAGES scripts/bench/create.sh "$out" "$cruns"
fi
if [ -z "${BENCH_SKIP_HOSTS:-}" ]; then
	say "hosts: on a second libvirt host, golden copy vs cold boot ($cruns runs each)"
	TENKID=$TENKID TENKI_IMAGES=$IMAGES scripts/bench/hosts.sh "$out" "$cruns"
fi
if [ -z "${BENCH_SKIP_TEMPLATE:-}" ]; then
	say "template: one build, then $cruns sessions from it"
	TENKID=$TENKID TENKI_IMAGES=$IMAGES scripts/bench/template.sh "$out" "$cruns"
fi
freeport() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
pport=$(freeport)
# The figures below compare a cold boot with virsh's: no golden, no pool.
$TENKID --mount "$T" --state "$tk/state" --images "$IMAGES" --foreground \
	--golden off --pool 0 --preview "127.0.0.1:$pport" >"$tk/tenkid.log" 2>&1 &
echo $! >"$tk/pid"
for _ in $(seq 100); do mountpoint -q "$T" && break; sleep 0.1; done
mountpoint -q "$T" && [ -r "$T/version" ] || { cat "$tk/tenkid.log"; echo "tenkid did not mount"; exit 1; }
echo 'cpu=1 memory=512 allow_inbound=true' >"$T/defaults"

say "boot: mkdir -> READY vs virsh create -> agent answer ($runs runs each)"
: >"$out/boot_tenki.txt"
for i in $(seq "$runs"); do
	t0=$(date +%s%N)
	mkdir "$T/sessions/b$i"
	ms_since "$t0" >>"$out/boot_tenki.txt"
	[ "$i" -eq 1 ] && $virsh dumpxml "$(sed -n 's/.*"domname": "\(.*\)".*/\1/p' \
		"$tk/state/sessions/$(cat "$T/sessions/b1/id")/session.json")" >"$tk/dom.xml"
	[ "$i" -gt 1 ] && rmdir "$T/sessions/b$i"
done
base=$IMAGES/sandbox/rootfs.qcow2
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

# ---------------------------------------------------------------------------
# The guest of session b1 serves both sides from here on: tenki through the
# tree, OpenSSH through its own sshd on a forwarded port.
S=$T/sessions/b1
dom=$(sed -n 's/.*"domname": "\(.*\)".*/\1/p' "$tk/state/sessions/$(cat "$S/id")/session.json")

# Run a shell line in the guest through exec/ (set-up, never timed); fails
# with the job's output when the job does.
gx() {
	local j rc
	j=$(cat "$S/exec/clone")
	echo "$1" >"$S/exec/$j/cmd"
	rc=$(timeout "${2:-300}" cat "$S/exec/$j/exit") || rc=timeout
	if [ "$rc" != 0 ]; then
		echo "guest command failed ($rc): $1" >&2
		cat "$S/exec/$j/output" >&2
		return 1
	fi
	cat "$S/exec/$j/stdout"
	rmdir "$S/exec/$j"
}

say "ssh peer: sshd in the guest, a slirp port forward, a throwaway key"
ssh-keygen -q -t ed25519 -N '' -C tenki-bench -f "$tk/key"
gx "ssh-keygen -A >/dev/null && mkdir -p /run/sshd /root/.ssh && chmod 700 /root/.ssh &&
    echo '$(cat "$tk/key.pub")' >/root/.ssh/authorized_keys &&
    /usr/sbin/sshd </dev/null >/dev/null 2>&1" >/dev/null
netdev=$($virsh qemu-monitor-command "$dom" --hmp 'info network' | sed -n 's/^ *\\ \(hostnet[0-9]*\): .*type=user.*/\1/p' | head -1)
[ -n "$netdev" ] || { echo "no user-mode NIC in $dom"; exit 1; }
port=
for _ in 1 2 3 4 5; do
	p=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
	msg=$($virsh qemu-monitor-command "$dom" --hmp "hostfwd_add $netdev tcp:127.0.0.1:$p-:22" | tr -d '\r\n')
	[ -z "$msg" ] && { port=$p; break; }
	echo "hostfwd_add on $p: $msg"
done
[ -n "$port" ] || { echo "no port forward"; exit 1; }
sshopt=(-F /dev/null -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR
	-o BatchMode=yes -o IdentitiesOnly=yes -i "$tk/key" -p "$port")
SSH=(ssh "${sshopt[@]}" -o ControlPath="$tk/cm.sock")
SSHNEW=(ssh "${sshopt[@]}" -o ControlPath=none)
for i in $(seq 60); do "${SSHNEW[@]}" root@127.0.0.1 true 2>/dev/null && break; sleep 0.5; done
"${SSH[@]}" -o ControlMaster=yes -o ControlPersist=yes -fN root@127.0.0.1
"${SSH[@]}" -O check bench 2>&1 | sed -n 's/.*pid=\([0-9]*\).*/\1/p' >"$tk/cm.pid"
cipher=$("${SSHNEW[@]}" -v root@127.0.0.1 true 2>&1 | sed -n 's/.*kex: server->client cipher: \([^ ]*\) .*/\1/p' | head -1)
echo "sshd on 127.0.0.1:$port -> $dom:22 ($netdev), cipher ${cipher:-?}"

# ---------------------------------------------------------------------------
say "exec round trip of true ($xruns runs each, interleaved)"
: >"$out/exec_tenki.txt"
: >"$out/exec_ssh_cm.txt"
: >"$out/exec_ssh_new.txt"
tk_true() {
	local j
	j=$(cat "$S/exec/clone")
	echo true >"$S/exec/$j/cmd"
	cat "$S/exec/$j/exit" >"$tk/rc"
	echo "$j" >>"$tk/jobs"
}
: >"$tk/jobs"
tk_true; "${SSH[@]}" root@127.0.0.1 true; "${SSHNEW[@]}" root@127.0.0.1 true # warm-up
for i in $(seq "$xruns"); do
	us_now; t0=$REPLY
	tk_true
	us_now; echo $(( REPLY - t0 )) >>"$out/exec_tenki.txt"
	[ "$(cat "$tk/rc")" = 0 ] || { echo "exec true exited $(cat "$tk/rc")"; exit 1; }
	us_now; t0=$REPLY
	"${SSH[@]}" root@127.0.0.1 true
	us_now; echo $(( REPLY - t0 )) >>"$out/exec_ssh_cm.txt"
	us_now; t0=$REPLY
	"${SSHNEW[@]}" root@127.0.0.1 true
	us_now; echo $(( REPLY - t0 )) >>"$out/exec_ssh_new.txt"
done
while read -r j; do rmdir "$S/exec/$j"; done <"$tk/jobs"
ms() { awk '{printf "%.0f\n", $1 / 1000}' "$1"; }
x_tk_med=$(ms "$out/exec_tenki.txt" | median)
x_tk_p90=$(ms "$out/exec_tenki.txt" | pct 90)
x_cm_med=$(ms "$out/exec_ssh_cm.txt" | median)
x_cm_p90=$(ms "$out/exec_ssh_cm.txt" | pct 90)
x_nw_med=$(ms "$out/exec_ssh_new.txt" | median)
x_nw_p90=$(ms "$out/exec_ssh_new.txt" | pct 90)

# ---------------------------------------------------------------------------
sbytes=$((smib * 1048576))
say "exec stdout throughput: $smib MiB ($sruns runs each, interleaved)"
: >"$out/stream_tenki.txt"
: >"$out/stream_ssh.txt"
for i in $(seq "$sruns"); do
	us_now; t0=$REPLY
	j=$(cat "$S/exec/clone")
	echo "head -c $sbytes /dev/zero" >"$S/exec/$j/cmd"
	cat "$S/exec/$j/stdout" >/dev/null
	us_now; t1=$REPLY
	info=$(cat "$S/exec/$j/info.json")
	[ "$(cat "$S/exec/$j/exit")" = 0 ] || { echo "stream job: $info"; exit 1; }
	case $info in *'"truncated": true'*|*'"truncated":true'*) echo "stream job truncated: $info"; exit 1;; esac
	rmdir "$S/exec/$j"
	mbps "$sbytes" $((t1 - t0)) >>"$out/stream_tenki.txt"; echo >>"$out/stream_tenki.txt"
	us_now; t0=$REPLY
	n=$("${SSH[@]}" root@127.0.0.1 "head -c $sbytes /dev/zero" | wc -c)
	us_now; t1=$REPLY
	[ "$n" = "$sbytes" ] || { echo "ssh stream: $n bytes"; exit 1; }
	mbps "$sbytes" $((t1 - t0)) >>"$out/stream_ssh.txt"; echo >>"$out/stream_ssh.txt"
done
# medians with one decimal
med1() { sort -n "$1" | awk 'NF {a[++n]=$1} END {m=(n%2)?a[(n+1)/2]:(a[n/2]+a[n/2+1])/2; printf "%.1f", m}'; }
st_tk=$(med1 "$out/stream_tenki.txt")
st_ssh=$(med1 "$out/stream_ssh.txt")

# ---------------------------------------------------------------------------
# files/: only where the tree serves it; otherwise one line says why.
files_state=skipped
files_why="BENCH_SKIP_FILES=1"
F=$S/files
if [ -z "${BENCH_SKIP_FILES:-}" ]; then
	say "files/: probe"
	files_why=
	echo "tenki bench probe" >"$tk/probe"
	# -k: a build whose files/ requests ignore signals while the guest does not answer
	if ! timeout -k 2 15 ls "$F/" >/dev/null 2>"$tk/probe.err"; then
		files_why="ls files/: $(tail -1 "$tk/probe.err" | sed 's/.*: //')"
		[ -s "$tk/probe.err" ] || files_why="ls files/: no answer in 15 s"
	elif ! timeout -k 2 15 cp "$tk/probe" "$F/.tenki-bench-probe" 2>"$tk/probe.err"; then
		files_why="cp into files/: $(tail -1 "$tk/probe.err" | sed 's/.*: //')"
		[ -s "$tk/probe.err" ] || files_why="cp into files/: no answer in 15 s"
	elif [ "$(gx 'cat /home/tenki/.tenki-bench-probe; rm -f /home/tenki/.tenki-bench-probe' 30)" != "tenki bench probe" ]; then
		files_why="a file copied into files/ did not reach the guest's /home/tenki"
	fi
	if [ -n "$files_why" ]; then
		files_state=unavailable
		echo "files/ not available: $files_why"
	else
		files_state=ok
	fi
fi

# cp with a time limit; prints the µs it took, or "timeout"/"failed"
timed_cp() {
	local t0 rc
	us_now; t0=$REPLY
	timeout -k 5 "$3" cp "$1" "$2" 2>>"$tk/files.err" && rc=0 || rc=$?
	us_now
	case $rc in 0) echo $((REPLY - t0)) ;; 124|137) echo timeout ;; *) echo failed ;; esac
}
timed_sh() { # limit, shell line; prints µs or timeout/failed
	local t0 rc
	us_now; t0=$REPLY
	timeout -k 5 "$1" sh -c "$2" 2>>"$tk/files.err" && rc=0 || rc=$?
	us_now
	case $rc in 0) echo $((REPLY - t0)) ;; 124|137) echo timeout ;; *) echo failed ;; esac
}
fmt_mbps() { case $2 in timeout|failed) echo "$2" ;; *) mbps "$1" "$2" ;; esac; }
fmt_s() { case $1 in timeout|failed) echo "$1" ;; *) secs "$1" ;; esac; }

if [ "$files_state" = ok ]; then
	say "files/ vs sshfs: mount"
	sshfs -F /dev/null -p "$port" -o IdentityFile="$tk/key",IdentitiesOnly=yes,StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null,BatchMode=yes,LogLevel=ERROR \
		root@127.0.0.1:/home/tenki "$M"
	mountpoint -q "$M" || { echo "sshfs did not mount"; exit 1; }
	fbytes=$((fmib * 1048576))
	head -c "$fbytes" /dev/urandom >"$tk/big"
	drop='sync; echo 3 > /proc/sys/vm/drop_caches'

	say "files/ vs sshfs: write $fmib MiB (cp in)"
	# each write starts on a clean guest: the other side's dirty pages are
	# written back and dropped first (untimed)
	gx "$drop" 300 >/dev/null
	w_tk=$(timed_cp "$tk/big" "$F/bench-w.tk" 600)
	gx "$drop" 300 >/dev/null
	w_ssh=$(timed_cp "$tk/big" "$M/bench-w.ssh" 600)
	# Fresh copies made in the guest, so neither side reads back its own
	# host-side cache; each is read into the guest's page cache just before
	# its read, so both reads measure the transfer, not the emulated disk.
	gx "cd /home/tenki; for s in tk ssh; do [ -f bench-w.\$s ] && cp bench-w.\$s bench-r.\$s; rm -f bench-w.\$s; done; $drop" 600 >/dev/null
	say "files/ vs sshfs: read $fmib MiB (cp out)"
	r_tk=failed r_ssh=failed
	if gx "cat /home/tenki/bench-r.tk >/dev/null" 120 >/dev/null 2>&1; then
		r_tk=$(timed_cp "$F/bench-r.tk" "$tk/out.tk" 600)
		cmp -s "$tk/big" "$tk/out.tk" || { echo "files/: the file read back differs from the one written"; r_tk=failed; w_tk=failed; }
	fi
	if gx "cat /home/tenki/bench-r.ssh >/dev/null" 120 >/dev/null 2>&1; then
		r_ssh=$(timed_cp "$M/bench-r.ssh" "$tk/out.ssh" 600)
		cmp -s "$tk/big" "$tk/out.ssh" || { echo "sshfs: the file read back differs from the one written"; r_ssh=failed; w_ssh=failed; }
	fi
	# the same files again, unchanged in the guest: what the host keeps
	say "files/ vs sshfs: read $fmib MiB again (unchanged file)"
	rr_tk=$(timed_cp "$F/bench-r.tk" "$tk/out.tk" 600)
	cmp -s "$tk/big" "$tk/out.tk" || { echo "files/: the file read again differs"; rr_tk=failed; }
	rr_ssh=$(timed_cp "$M/bench-r.ssh" "$tk/out.ssh" 600)
	cmp -s "$tk/big" "$tk/out.ssh" || { echo "sshfs: the file read again differs"; rr_ssh=failed; }
	rm -f "$tk/out.tk" "$tk/out.ssh" "$tk/big"
	gx 'rm -f /home/tenki/bench-r.tk /home/tenki/bench-r.ssh' 120 >/dev/null

	say "files/ vs sshfs: tar x of $nsmall small files, then rm -rf"
	scripts/bench/mktree.py "$nsmall" "$tk/small.tar"
	# a guest sync (untimed) before each step, so neither side pays for the
	# other's write-back
	gx "mkdir -p /home/tenki/bench-t.tk /home/tenki/bench-t.ssh; sync" 300 >/dev/null
	t_tk=$(timed_sh 900 "tar xf '$tk/small.tar' -C '$F/bench-t.tk'")
	gx sync 300 >/dev/null
	t_ssh=$(timed_sh 900 "tar xf '$tk/small.tar' -C '$M/bench-t.ssh'")
	want=$((nsmall + (nsmall + 99) / 100))
	counts=$(gx 'cd /home/tenki; find bench-t.tk -mindepth 1 | wc -l; find bench-t.ssh -mindepth 1 | wc -l' 120 | tr '\n' ' ')
	read -r c_tk c_ssh <<<"$counts"
	[ "$c_tk" = "$want" ] || { echo "files/: tar left $c_tk of $want entries"; t_tk=failed; }
	[ "$c_ssh" = "$want" ] || { echo "sshfs: tar left $c_ssh of $want entries"; t_ssh=failed; }
	# a stat of every entry (what find, du and git status do), twice: the
	# second walk shows what the host keeps of the tree
	say "files/ vs sshfs: stat walk of the $nsmall files, twice"
	walk="find . -printf '%s %T@ %m\n' >/dev/null"
	s1_tk=$(timed_sh 900 "cd '$F/bench-t.tk' && $walk")
	s2_tk=$(timed_sh 900 "cd '$F/bench-t.tk' && $walk")
	s1_ssh=$(timed_sh 900 "cd '$M/bench-t.ssh' && $walk")
	s2_ssh=$(timed_sh 900 "cd '$M/bench-t.ssh' && $walk")
	gx sync 300 >/dev/null
	d_tk=$(timed_sh 900 "rm -rf '$F/bench-t.tk'")
	gx sync 300 >/dev/null
	d_ssh=$(timed_sh 900 "rm -rf '$M/bench-t.ssh'")
	gx 'rm -rf /home/tenki/bench-t.tk /home/tenki/bench-t.ssh' 300 >/dev/null
	# raw: µs (or timeout/failed), tenki then sshfs
	printf '%s %s\n' "$w_tk" "$w_ssh" >"$out/files_write_us.txt"
	printf '%s %s\n' "$r_tk" "$r_ssh" >"$out/files_read_us.txt"
	printf '%s %s\n' "$t_tk" "$t_ssh" >"$out/files_tar_us.txt"
	printf '%s %s\n' "$rr_tk" "$rr_ssh" >"$out/files_reread_us.txt"
	printf '%s %s %s %s\n' "$s1_tk" "$s1_ssh" "$s2_tk" "$s2_ssh" >"$out/files_walk_us.txt"
	printf '%s %s\n' "$d_tk" "$d_ssh" >"$out/files_rm_us.txt"
	[ -s "$tk/files.err" ] && { echo "errors during the files/ figures:"; head -20 "$tk/files.err"; }
	fusermount3 -u "$M"
fi

# ---------------------------------------------------------------------------
# ports/: one guest HTTP server, reached through the preview listener and
# through ssh -L to the guest's sshd; wrk runs alternate between the two.
ports_state=skipped
ports_why="wrk is not installed (scripts/setup.sh)"
if command -v wrk >/dev/null; then
	say "ports/: python3 -m http.server in the guest, preview URL vs ssh -L"
	gx "mkdir -p /srv/bench && cd /srv/bench && echo hello >small.txt &&
	    head -c 16777216 /dev/zero >big.bin" >/dev/null
	j=$(cat "$S/exec/clone")
	echo 'cd /srv/bench && exec python3 -m http.server 8000 --bind 127.0.0.1' >"$S/exec/$j/cmd"
	touch "$S/ports/8000"
	lport=$(freeport)
	"${SSHNEW[@]}" -N -L "127.0.0.1:$lport:127.0.0.1:8000" root@127.0.0.1 &
	echo $! >"$tk/fwd.pid"
	pv=(-H "Host: 8000-b1.localhost")
	ok=
	for _ in $(seq 100); do
		if [ "$(curl -s --max-time 5 "${pv[@]}" "http://127.0.0.1:$pport/small.txt")" = hello ] &&
			[ "$(curl -s --max-time 5 "http://127.0.0.1:$lport/small.txt")" = hello ]; then
			ok=1
			break
		fi
		sleep 0.3
	done
	if [ -n "$ok" ]; then
		ports_state=ok
	else
		ports_state=unavailable
		ports_why="the guest server did not answer through both paths"
	fi
fi
# wrk's Requests/sec, or Transfer/sec in MB/s (10^6 bytes)
wrk_rps() { sed -n 's/^Requests\/sec: *\([0-9.]*\).*/\1/p'; }
wrk_mbps() {
	sed -n 's/^Transfer\/sec: *\([0-9.]*\)\([KMG]*B\).*/\1 \2/p' |
		awk '{f = $2 == "GB" ? 1073741824 : $2 == "MB" ? 1048576 : $2 == "KB" ? 1024 : 1; printf "%.1f", $1 * f / 1e6}'
}
if [ "$ports_state" = ok ]; then
	: >"$out/ports_rps_tenki.txt"
	: >"$out/ports_rps_ssh.txt"
	: >"$out/ports_mbps_tenki.txt"
	: >"$out/ports_mbps_ssh.txt"
	for i in $(seq "$wruns"); do
		say "ports/: wrk run $i of $wruns (${wsecs} s each, $wconns connections for requests)"
		wrk -t1 -c"$wconns" -d"${wsecs}s" --timeout 60s "${pv[@]}" "http://127.0.0.1:$pport/small.txt" | tee -a "$out/wrk.log" | wrk_rps >>"$out/ports_rps_tenki.txt"
		wrk -t1 -c"$wconns" -d"${wsecs}s" --timeout 60s "http://127.0.0.1:$lport/small.txt" | tee -a "$out/wrk.log" | wrk_rps >>"$out/ports_rps_ssh.txt"
		wrk -t1 -c1 -d"${wsecs}s" --timeout 60s "${pv[@]}" "http://127.0.0.1:$pport/big.bin" | tee -a "$out/wrk.log" | wrk_mbps >>"$out/ports_mbps_tenki.txt"
		echo >>"$out/ports_mbps_tenki.txt"
		wrk -t1 -c1 -d"${wsecs}s" --timeout 60s "http://127.0.0.1:$lport/big.bin" | tee -a "$out/wrk.log" | wrk_mbps >>"$out/ports_mbps_ssh.txt"
		echo >>"$out/ports_mbps_ssh.txt"
	done
	grep -q 'Non-2xx\|Socket errors' "$out/wrk.log" && echo "wrk reported errors: see $out/wrk.log"
	pr_tk=$(med1 "$out/ports_rps_tenki.txt")
	pr_ssh=$(med1 "$out/ports_rps_ssh.txt")
	pt_tk=$(med1 "$out/ports_mbps_tenki.txt")
	pt_ssh=$(med1 "$out/ports_mbps_ssh.txt")
	kill "$(cat "$tk/fwd.pid")" 2>/dev/null
	rm -f "$S/ports/8000"
fi

# ---------------------------------------------------------------------------
rev=$(git rev-parse --short HEAD 2>/dev/null || echo '?')
git diff --quiet HEAD -- daemon fs proto guest 2>/dev/null || rev="$rev+changes"
row() { printf '%-46s %11s %11s   %s\n' "$@"; }
{
	echo "tenki bench $(date -u +%FT%TZ) on $(uname -n), $(nproc) cores, accel $(sed -n 's/.*libvirt .* (\(.*\))$/\1/p' "$tk/tenkid.log" | head -1), tenki $rev"
	echo "guest: 1 vCPU, 512 MiB, image sandbox; ssh peers: OpenSSH sshd in the same guest via a slirp port forward, cipher ${cipher:-?}"
	row "figure" tenki peer "peer"
	if [ -s "$out/create_pool.txt" ]; then
		c_pool=$(median <"$out/create_pool.txt")
		c_gold=$(median <"$out/create_golden.txt")
		c_cold=$(median <"$out/create_cold.txt")
		c_snap=$(median <"$out/create_snapshot.txt")
		row "mkdir -> READY from the warm pool, med of $cruns" "$c_pool ms" "$c_cold ms" "cold boot, same image (--golden off)"
		row "mkdir -> READY from golden (pool off), med" "$c_gold ms" "$c_cold ms" "cold boot, same image (--golden off)"
		row "  golden restore speed-up over cold boot" "$(awk -v a="$c_cold" -v b="$c_gold" 'BEGIN {printf "%.1fx", a / b}')" "" ""
		row "snapshot of a running session, med" "$c_snap ms" "" "(ctl snapshot NAME, returns when READY)"
	fi
	if [ -s "$out/hosts_golden.txt" ]; then
		h_gold=$(median <"$out/hosts_golden.txt")
		h_cold=$(median <"$out/hosts_cold.txt")
		row "remote host: READY from a golden copy, med" "$h_gold ms" "$h_cold ms" "cold boot on that host (qemu+tcp)"
	fi
	if [ -s "$out/create_template.txt" ]; then
		row "template build (apt-get 1 package), once" "$(cat "$out/template_build.txt") ms" "" "(ctl build -> READY, cold-booted build VM)"
		row "mkdir -> READY from a template, med of $cruns" "$(median <"$out/create_template.txt") ms" "${c_gold:-?} ms" "golden restore (pool off)"
	fi
	row "create to usable (mkdir -> READY), med of $runs" "$b_tk ms" "$b_vs ms" "virsh create same XML -> agent HELLO"
	row "exec true round trip, median of $xruns" "$x_tk_med ms" "$x_cm_med ms" "ssh true over a ControlMaster"
	row "exec true round trip, p90 of $xruns" "$x_tk_p90 ms" "$x_cm_p90 ms" "ssh true over a ControlMaster"
	row "exec true round trip, median of $xruns" "$x_tk_med ms" "$x_nw_med ms" "ssh true on a new connection"
	row "exec true round trip, p90 of $xruns" "$x_tk_p90 ms" "$x_nw_p90 ms" "ssh true on a new connection"
	row "exec stdout, $smib MiB, median of $sruns" "$st_tk MB/s" "$st_ssh MB/s" "ssh 'head -c ...' > /dev/null (ControlMaster)"
	case $files_state in
	ok)
		row "files/ write, cp in $fmib MiB" "$(fmt_mbps "$fbytes" "$w_tk") MB/s" "$(fmt_mbps "$fbytes" "$w_ssh") MB/s" "sshfs (sftp) on the same guest"
		row "files/ read, cp out $fmib MiB" "$(fmt_mbps "$fbytes" "$r_tk") MB/s" "$(fmt_mbps "$fbytes" "$r_ssh") MB/s" "sshfs (sftp) on the same guest"
		row "files/ read again, unchanged $fmib MiB" "$(fmt_mbps "$fbytes" "$rr_tk") MB/s" "$(fmt_mbps "$fbytes" "$rr_ssh") MB/s" "sshfs (sftp) on the same guest"
		row "files/ tar x of $nsmall small files" "$(fmt_s "$t_tk") s" "$(fmt_s "$t_ssh") s" "sshfs (sftp) on the same guest"
		row "files/ stat walk of those (find), first" "$(fmt_s "$s1_tk") s" "$(fmt_s "$s1_ssh") s" "sshfs (sftp) on the same guest"
		row "files/ stat walk again" "$(fmt_s "$s2_tk") s" "$(fmt_s "$s2_ssh") s" "sshfs (sftp) on the same guest"
		row "files/ rm -rf of those" "$(fmt_s "$d_tk") s" "$(fmt_s "$d_ssh") s" "sshfs (sftp) on the same guest"
		;;
	unavailable) echo "files/ not available ($files_why): files/ figures and their sshfs peers skipped" ;;
	*) echo "files/ figures skipped ($files_why)" ;;
	esac
	case $ports_state in
	ok)
		row "ports/ HTTP requests/s, wrk -c$wconns, med of $wruns" "$pr_tk/s" "$pr_ssh/s" "ssh -L to the same guest server"
		row "ports/ transfer 16 MiB file, wrk -c1, med of $wruns" "$pt_tk MB/s" "$pt_ssh MB/s" "ssh -L to the same guest server"
		;;
	*) echo "ports/ figures $ports_state ($ports_why)" ;;
	esac
	echo "MB/s = 10^6 bytes/s; ms and s are wall-clock; one run each for files/; whole bench $(( $(date +%s) - bench_t0 )) s"
} | tee "$res"
echo "raw samples in $out/ (boot in ms, exec in µs, streams in MB/s, files_* in µs: tenki sshfs)"
