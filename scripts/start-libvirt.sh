#!/bin/sh
# Start virtlogd and libvirtd on a machine without systemd, each under
# build/tenki-subreaper, and wait until qemu:///system answers.
#
# Why the subreaper: PID 1 on such machines may reap orphans only about
# once a second, and libvirtd waits for qemu's zombie before it calls a
# domain stopped, so `virsh destroy` takes ~2 s.  Under a parent with
# PR_SET_CHILD_SUBREAPER that reaps at once it takes ~0.24 s.
#
# Does nothing when libvirt already answers.  Logs: /var/log/tenki/.
set -eu

ROOT=$(cd "$(dirname "$0")/.." && pwd)
SUBREAPER=$ROOT/build/tenki-subreaper
LOGDIR=/var/log/tenki
RUNDIR=/run/tenki
URI=qemu:///system
TIMEOUT=${TENKI_LIBVIRT_TIMEOUT:-30}

say() { printf 'start-libvirt: %s\n' "$*"; }
die() { printf 'start-libvirt: error: %s\n' "$*" >&2; exit 1; }

answers() {
	timeout 5 virsh -c "$URI" version >/dev/null 2>&1
}

if answers; then
	say "libvirt already answers on $URI"
	exit 0
fi

[ "$(id -u)" = 0 ] || die "must run as root"
command -v libvirtd >/dev/null || die "libvirtd not found (run scripts/setup.sh)"
command -v virtlogd >/dev/null || die "virtlogd not found (run scripts/setup.sh)"

if [ ! -x "$SUBREAPER" ] || [ -n "$(find "$ROOT/scripts/subreaper.c" -newer "$SUBREAPER")" ]; then
	say "building $SUBREAPER"
	make -s -C "$ROOT" build/tenki-subreaper
fi
mkdir -p "$LOGDIR" "$RUNDIR"

# /etc/libvirt/qemu.conf: tenki's VMs need no change to Debian's defaults
# (checked by booting the image; docs/image.md, "Notes for the libvirt
# driver").  qemu runs as libvirt-qemu, and libvirt's DAC driver chowns
# each VM's kernel, initrd and disks to it while the VM runs; the image
# files are world-readable anyway.

# is_running PIDFILE: the subreaper that owns PIDFILE is alive.
is_running() {
	[ -s "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null
}

start() {
	name=$1
	shift
	if is_running "$RUNDIR/$name.pid"; then
		say "$name already running (pid $(cat "$RUNDIR/$name.pid"))"
		return 0
	fi
	say "starting $name under tenki-subreaper (log $LOGDIR/$name.log)"
	# The daemon must not keep our caller's stdio (a test harness waits
	# for its pipes to close).
	"$SUBREAPER" --pidfile "$RUNDIR/$name.pid" --log "$LOGDIR/$name.log" \
		-- "$@" </dev/null >>"$LOGDIR/$name.log" 2>&1 ||
		die "$name did not start; see $LOGDIR/$name.log"
}

start virtlogd virtlogd
start libvirtd libvirtd

# Wait for the socket to answer, 0.05 s at a time.
i=0
limit=$((TIMEOUT * 20))
until answers; do
	i=$((i + 1))
	if ! is_running "$RUNDIR/libvirtd.pid"; then
		tail -n 5 "$LOGDIR/libvirtd.log" >&2 || true
		die "libvirtd exited; see $LOGDIR/libvirtd.log"
	fi
	[ "$i" -lt "$limit" ] || die "libvirtd did not answer on $URI within ${TIMEOUT}s; see $LOGDIR/libvirtd.log"
	sleep 0.05
done
say "libvirt answers on $URI ($(virsh -c "$URI" version 2>/dev/null | sed -n 's/^Running hypervisor: //p'))"
