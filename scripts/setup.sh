#!/bin/bash
# The one set-up command: as root on Debian 12, from a fresh machine to a
# running tenkid with /tenki mounted.  Idempotent; on a machine already set
# up it takes seconds.
#
#   1. install the Debian packages that are missing (apt)
#   2. start libvirt (scripts/start-libvirt.sh)
#   3. build tenki (make all) and the guest image (make image)
#   4. start tenkid on /tenki, unless --no-daemon or already mounted
#
# usage: scripts/setup.sh [--no-daemon]
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
MOUNT=/tenki
STATE=/var/lib/tenki
DAEMON=1

PACKAGES="build-essential pkg-config libvirt-daemon-system libvirt-clients
	libvirt-dev qemu-system-x86 qemu-utils fuse3 libfuse3-dev libjansson-dev
	libssh-dev libcmocka-dev busybox-static cpio kmod debootstrap e2fsprogs
	lz4 bats inotify-tools openssh-client openssh-server sshfs rsync python3
	clang libclang-rt-14-dev hyperfine man-db tmux"
# ports/ tests (curl, a headless browser) and make bench (wrk)
PACKAGES="$PACKAGES curl chromium wrk"

case ${1:-} in
--no-daemon) DAEMON=0 ;;
"") ;;
*) echo "usage: $0 [--no-daemon]" >&2; exit 2 ;;
esac

T0=$EPOCHREALTIME
STEP=0
FAILED=()
elapsed() { awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }'; }
step() { STEP=$((STEP + 1)); STEP_T=$EPOCHREALTIME; printf '\n==> [%d/4] %s\n' "$STEP" "$*"; }
step_done() { printf '==> [%d/4] done in %s s\n' "$STEP" "$(elapsed "$STEP_T")"; }
say() { printf 'setup: %s\n' "$*"; }
warn() { printf 'setup: warning: %s\n' "$*" >&2; }
die() { printf 'setup: error: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "run as root (it installs packages and starts libvirt)"
[ -r /etc/debian_version ] || warn "this is not Debian; the package names are Debian 12's"
cd "$ROOT"

# ---------------------------------------------------------------------
step "Debian packages"
# One dpkg-query for all (one per package costs ~50 ms each).
declare -A have=()
while read -r p st ver; do
	[ "$st" != installed ] || have[${p%%:*}]=$ver
done < <(dpkg-query -W -f='${Package} ${db:Status-Status} ${Version}\n' $PACKAGES 2>/dev/null || true)
missing=()
for p in $PACKAGES; do
	if [ -n "${have[$p]:-}" ]; then
		printf '  %-24s %s\n' "$p" "${have[$p]}"
	else
		printf '  %-24s missing\n' "$p"
		missing+=("$p")
	fi
done
if [ ${#missing[@]} -gt 0 ]; then
	say "installing ${#missing[@]} package(s): ${missing[*]}"
	# Installing libvirt-daemon-system or openssh-server would start their
	# services through the init scripts; libvirt is started below under
	# the subreaper, and sshd is not wanted on the host.  A policy-rc.d
	# that says no holds them back (left alone if the machine has one).
	policy=
	if [ ! -e /usr/sbin/policy-rc.d ]; then
		policy=/usr/sbin/policy-rc.d
		printf '#!/bin/sh\nexit 101\n' >"$policy"
		chmod 0755 "$policy"
		trap 'rm -f "$policy"' EXIT
	fi
	export DEBIAN_FRONTEND=noninteractive
	apt-get update || die "apt-get update failed"
	apt-get install -y --no-install-recommends "${missing[@]}" ||
		die "apt-get install failed"
	if [ -n "$policy" ]; then
		rm -f "$policy"
		trap - EXIT
	fi
else
	say "all packages are installed"
fi
step_done

# ---------------------------------------------------------------------
step "libvirt"
"$ROOT/scripts/start-libvirt.sh" || die "libvirt did not start"
step_done

# ---------------------------------------------------------------------
step "build (make all) and guest image (make image)"
jobs=$(nproc 2>/dev/null || echo 2)
if ! make -j"$jobs" all; then
	FAILED+=("make all")
	warn "make all failed; going on with what was built"
fi
if [ -x build/tenki-agent ]; then
	make image || { FAILED+=("make image"); warn "make image failed"; }
else
	warn "build/tenki-agent was not built: building the image without an agent (VMs will not come up)"
	scripts/build-image.sh || { FAILED+=("build-image"); warn "build-image.sh failed"; }
fi
step_done

# ---------------------------------------------------------------------
step "tenkid on $MOUNT"
if [ "$DAEMON" = 0 ]; then
	say "--no-daemon: not starting tenkid"
elif mountpoint -q "$MOUNT"; then
	say "$MOUNT is already mounted ($(findmnt -n -o SOURCE "$MOUNT"))"
elif [ ! -x build/tenkid ]; then
	warn "build/tenkid does not exist yet; not starting it"
else
	mkdir -p "$MOUNT" "$STATE"
	say "build/tenkid --mount $MOUNT --state $STATE"
	if build/tenkid --mount "$MOUNT" --state "$STATE"; then
		# It daemonizes before the mount is up; give it 10 s.
		for _ in $(seq 100); do
			mountpoint -q "$MOUNT" && break
			sleep 0.1
		done
		if mountpoint -q "$MOUNT"; then
			say "$MOUNT is mounted: try  cat $MOUNT/README"
		else
			FAILED+=("tenkid")
			warn "tenkid started but $MOUNT is not mounted after 10 s"
		fi
	else
		FAILED+=("tenkid")
		warn "tenkid failed to start"
	fi
fi
step_done

echo
if [ ${#FAILED[@]} -gt 0 ]; then
	die "set-up incomplete after $(elapsed "$T0") s; failed: ${FAILED[*]}"
fi
say "done in $(elapsed "$T0") s"
