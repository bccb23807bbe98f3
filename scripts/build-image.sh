#!/bin/bash
# Build tenki's default guest image, `sandbox`, into
# /var/cache/tenki/images/sandbox/:
#
#   vmlinux       Debian's cloud kernel, uncompressed, PVH-bootable (qboot)
#   initrd.img    busybox + virtio modules + /init + /tenki-agent
#   rootfs.qcow2  Debian bookworm (debootstrap minbase + guest/packages.txt),
#                 a symlink to rootfs-<id>.qcow2: see "Versions" below
#   cmdline       the kernel command line, one line
#   info.json     name, kernel_version, built_at, rootfs_bytes, packages
#
# Each artefact is rebuilt only when its inputs change: a hash of them is
# kept beside it (.NAME.inputs).  Artefacts are written to a temporary
# name and renamed, so an interrupted build never leaves a broken one.
# See docs/image.md.
#
# TENKI_IMAGES=DIR builds into DIR/sandbox instead (a developer's own
# image, e.g. with an agent under test; copy the shared one there first
# with `cp -al` and only what changed is rebuilt).
#
# usage: scripts/build-image.sh [--agent PATH] [--force] [--prune]
set -euo pipefail
umask 022

ROOT=$(cd "$(dirname "$0")/.." && pwd)
SELF=$ROOT/scripts/build-image.sh
NAME=sandbox
CACHE=/var/cache/tenki
IMAGES=${TENKI_IMAGES:-$CACHE/images}
OUT=$IMAGES/$NAME
WORK=$CACHE/build
DEBCACHE=$CACHE/debootstrap
LOGDIR=/var/log/tenki
SUITE=bookworm
ROOTFS_SIZE=4G

AGENT=
FORCE=0
PRUNE=0
STATE=${TENKI_STATE:-/var/lib/tenki}
CHANGED=0
TMPS=()

usage() {
	echo "usage: $0 [--agent PATH] [--force] [--prune]" >&2
	exit 2
}

while [ $# -gt 0 ]; do
	case $1 in
	--agent) [ $# -ge 2 ] || usage; AGENT=$2; shift 2 ;;
	--agent=*) AGENT=${1#--agent=}; shift ;;
	--force) FORCE=1; shift ;;
	--prune) PRUNE=1; shift ;;
	-h | --help) usage ;;
	*) usage ;;
	esac
done

T0=$EPOCHREALTIME
say() { printf 'build-image: %s\n' "$*"; }
warn() { printf 'build-image: warning: %s\n' "$*" >&2; }
die() { printf 'build-image: error: %s\n' "$*" >&2; exit 1; }
# elapsed START: seconds since START ($EPOCHREALTIME), 0.1 s precision.
elapsed() { awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }'; }
step_begin() { STEP_T=$EPOCHREALTIME; say "$*"; }
step_end() { say "  done in $(elapsed "$STEP_T") s"; }

cleanup() {
	local t
	for t in "${TMPS[@]}"; do
		remove_tree "$t"
	done
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# tmpname VAR PATH: set VAR to a temporary path beside PATH, removed at
# exit unless renamed into place.  (Not a $(...): the list of temporaries
# must be this shell's.)
tmpname() {
	local -n ref=$1
	ref="${2%/*}/.${2##*/}.tmp.$$"
	TMPS+=("$ref")
}

# Remove a file or tree, first unmounting whatever an interrupted
# debootstrap left mounted inside it (its proc, sys, dev/pts).
remove_tree() {
	local m
	[ -e "$1" ] || [ -L "$1" ] || return 0
	if [ -d "$1" ]; then
		findmnt -rn -o TARGET | { grep -F "$1/" || true; } | sort -r |
			while read -r m; do umount -l "$m" || true; done
	fi
	rm -rf --one-file-system "$1"
}

# The text of this script between "#@section NAME" and "#@end NAME": part
# of the inputs of what that section builds, so editing it rebuilds that.
section() {
	sed -n "/^#@section $1\$/,/^#@end $1\$/p" "$SELF"
}

# A no-op run is mostly forks (~5-10 ms each here): builtins where cheap.
hash() {
	local h
	h=$(sha256sum)
	printf '%s\n' "${h%% *}"
}

# fresh ARTEFACT INPUTS: ARTEFACT exists and was built from INPUTS.
fresh() {
	local s
	s=$(stamp "$1")
	[ "$FORCE" = 0 ] && [ -e "$1" ] && [ -f "$s" ] && [ "$(<"$s")" = "$2" ]
}
stamp() { printf '%s/.%s.inputs\n' "${1%/*}" "${1##*/}"; }

# install_artefact TMP FINAL INPUTS: rename into place, then record the
# inputs.  The old stamp goes first: a crash in between leaves no stamp,
# never a stamp that describes a different file.
install_artefact() {
	rm -f "$(stamp "$2")"
	mv -fT "$1" "$2"
	printf '%s\n' "$3" >"$(stamp "$2")"
	CHANGED=1
}

# Run a long command, printing a line every 10 s so a quiet step (mkfs)
# still shows it is alive.
with_ticker() {
	local pid t=0 rc=0
	"$@" &
	pid=$!
	while kill -0 "$pid" 2>/dev/null; do
		sleep 1
		t=$((t + 1))
		[ $((t % 10)) -ne 0 ] || say "  ... ${t} s"
	done
	wait "$pid" || rc=$?
	return "$rc"
}

[ "$(id -u)" = 0 ] || die "must run as root (debootstrap, mknod)"
for c in debootstrap mkfs.ext4 qemu-img cpio depmod modprobe lz4 readelf busybox sha256sum flock; do
	command -v "$c" >/dev/null || die "$c not found; run scripts/setup.sh"
done
mkdir -p "$OUT" "$WORK" "$DEBCACHE" "$LOGDIR"
chmod 0755 "$CACHE" "$IMAGES" "$OUT"
chmod 0755 "$WORK"

# One build at a time: setup.sh and `make image` may race.
# The lock is the cache's, not the output's: $WORK is shared.
exec 9>"$CACHE/.build-$NAME.lock"
if ! flock -n 9; then
	say "another build of $NAME is running; waiting for it"
	flock 9
fi

# Temporaries of builds that were killed (this one holds the lock).
find "$WORK" "$OUT" -maxdepth 1 -name '.*.tmp.*' | while read -r t; do remove_tree "$t"; done

# --- The agent ----------------------------------------------------------
[ -n "$AGENT" ] || { [ ! -x "$ROOT/build/tenki-agent" ] || AGENT=$ROOT/build/tenki-agent; }
if [ -n "$AGENT" ]; then
	[ -f "$AGENT" ] || die "agent $AGENT does not exist"
	if readelf -lW "$AGENT" 2>/dev/null | grep -q 'program interpreter'; then
		warn "$AGENT is not static; it runs as PID 1 and should be"
	fi
	AGENT_HASH=$(hash <"$AGENT")
else
	warn "no agent (build/tenki-agent does not exist and no --agent): the initrd is built without one, and its /init will stop the VM"
	AGENT_HASH=none
fi

# --- The kernel package -------------------------------------------------
# Asking apt costs ~1 s here, so the answer is kept in $WORK/kernel.pkg
# and asked again only when apt's package lists are newer than it (after
# an `apt-get update`), with --force, or when TENKI_KERNEL_PKG names
# another package (e.g. linux-image-6.1.0-56-cloud-amd64).
resolve_kernel() {
	local pkg ver
	pkg=${TENKI_KERNEL_PKG:-}
	if [ -z "$pkg" ]; then
		pkg=$(apt-cache depends linux-image-cloud-amd64 2>/dev/null |
			awk '$1 == "Depends:" && $2 ~ /^linux-image-6\.1\.0-[0-9]+-cloud-amd64$/ { print $2; exit }')
	fi
	if [ -z "$pkg" ]; then
		pkg=$(apt-cache search --names-only '^linux-image-6\.1\.0-[0-9]+-cloud-amd64$' 2>/dev/null |
			awk '{ print $1 }' | sort -V | tail -n 1)
	fi
	[ -n "$pkg" ] || return 1
	ver=$(apt-cache show --no-all-versions "$pkg" 2>/dev/null | sed -n 's/^Version: //p' | head -n 1)
	[ -n "$ver" ] || return 1
	printf '%s %s\n' "$pkg" "$ver"
}

KPKG_FILE=$WORK/kernel.pkg
need_resolve=0
if [ ! -s "$KPKG_FILE" ] || [ "$FORCE" = 1 ]; then
	need_resolve=1
elif [ -n "${TENKI_KERNEL_PKG:-}" ] && [ "$(cut -d' ' -f1 "$KPKG_FILE")" != "$TENKI_KERNEL_PKG" ]; then
	need_resolve=1
elif [ -n "$(find /var/lib/apt/lists -maxdepth 1 -name '*_Packages*' -newer "$KPKG_FILE" 2>/dev/null | head -n 1)" ]; then
	need_resolve=1
fi
if [ "$need_resolve" = 1 ]; then
	say "looking up the current cloud kernel with apt-cache"
	if ! kp=$(resolve_kernel); then
		say "apt knows no cloud kernel; running apt-get update"
		apt-get update -qq || die "apt-get update failed"
		kp=$(resolve_kernel) || die "no linux-image-6.1.0-*-cloud-amd64 package in apt"
	fi
	printf '%s\n' "$kp" >"$KPKG_FILE"
fi
read -r KPKG KVER <"$KPKG_FILE"
KREL=${KPKG#linux-image-}
say "kernel: $KPKG $KVER"

#@section kernel-tree
# The kernel package, unpacked (dpkg -x) with its modules.dep made
# (the .deb ships none): the source of vmlinux, the initrd's modules and
# the root filesystem's /lib/modules.
KTREE=$WORK/kernel/$KREL
ensure_kernel_tree() {
	local deb tmp
	if [ "$(cat "$KTREE/.pkg" 2>/dev/null)" = "$KPKG $KVER" ]; then
		return 0
	fi
	step_begin "downloading and unpacking $KPKG $KVER"
	mkdir -p "$WORK/debs" "$WORK/kernel"
	# apt drops privileges to _apt for downloads.
	chown _apt "$WORK/debs" 2>/dev/null || true
	deb=$(ls "$WORK/debs/${KPKG}_${KVER//:/%3a}_"*.deb 2>/dev/null | head -n 1 || true)
	if [ -z "$deb" ]; then
		(cd "$WORK/debs" && apt-get download -q "$KPKG=$KVER") ||
			die "apt-get download $KPKG=$KVER failed"
		deb=$(ls "$WORK/debs/${KPKG}_"*.deb | head -n 1)
	fi
	tmpname tmp "$KTREE"
	remove_tree "$tmp"
	dpkg -x "$deb" "$tmp"
	[ -d "$tmp/lib/modules/$KREL" ] || die "$deb has no lib/modules/$KREL"
	depmod -b "$tmp" "$KREL"
	printf '%s %s\n' "$KPKG" "$KVER" >"$tmp/.pkg"
	remove_tree "$KTREE"
	mv "$tmp" "$KTREE"
	# Older kernels and their packages are of no further use.
	find "$WORK/kernel" -mindepth 1 -maxdepth 1 ! -name "$KREL" -exec rm -rf {} +
	find "$WORK/debs" -name 'linux-image-*.deb' ! -name "${KPKG}_*" -delete
	step_end
}
#@end kernel-tree

#@section vmlinux
# The bzImage's payload is LZ4 (legacy frame, magic 02 21 4c 18); like the
# kernel's scripts/extract-vmlinux, try every place the magic appears and
# keep the first that decompresses to an ELF.  It must carry the PVH entry
# note (XEN_ELFNOTE_PHYS32_ENTRY, type 18) for qemu to boot it directly.
build_vmlinux() {
	local bz tmp off
	bz=$KTREE/boot/vmlinuz-$KREL
	[ -f "$bz" ] || die "no $bz in $KPKG"
	tmpname tmp "$OUT/vmlinux"
	for off in $(LC_ALL=C grep -obUaP '\x02\x21\x4c\x18' "$bz" | cut -d: -f1); do
		# lz4 complains about the bytes after the stream; the
		# result is checked below instead.
		tail -c +$((off + 1)) "$bz" | lz4 -dcq >"$tmp" 2>/dev/null || true
		if [ "$(head -c 4 "$tmp" | od -An -tx1 | tr -d ' \n')" = 7f454c46 ]; then
			break
		fi
		rm -f "$tmp"
	done
	[ -s "$tmp" ] || die "no LZ4-compressed ELF found in $bz"
	readelf -nW "$tmp" | grep -Eq 'Xen.*(0x00000012|PHYS32_ENTRY)' ||
		die "$bz has no PVH entry note (XEN_ELFNOTE_PHYS32_ENTRY); qboot cannot boot it"
	chmod 0644 "$tmp"
	BUILT=$tmp
}
#@end vmlinux

#@section initrd
# The modules the initramfs loads, by name; the load order with their
# dependencies comes from modprobe --show-depends on the kernel's own
# modules.dep.
INITRD_MODULES="virtio_pci virtio_console virtio_blk virtio_net virtio-rng"
INITRD_APPLETS="sh cat chmod cp echo hostname insmod ls mkdir mount poweroff
	sleep switch_root umount usleep"
build_initrd() {
	local d tmp m f seen=" " bb a
	tmpname tmp "$OUT/initrd.img"
	tmpname d "$WORK/initrd.d"
	remove_tree "$d"
	mkdir -p "$d"/{bin,dev,proc,sys,newroot,lib/modules}
	bb=$(command -v busybox)
	readelf -lW "$bb" | grep -q 'program interpreter' &&
		die "$bb is not static; install busybox-static"
	cp "$bb" "$d/bin/busybox"
	# Links for what /init uses only: 270 of them would cost a second.
	for a in $INITRD_APPLETS; do
		ln -s busybox "$d/bin/$a"
	done
	# The kernel opens /dev/console for /init's stdio before /init can
	# mount devtmpfs.
	mknod -m 0600 "$d/dev/console" c 5 1
	mknod -m 0666 "$d/dev/null" c 1 3
	: >"$d/lib/modules/load-order"
	for m in $INITRD_MODULES; do
		modprobe -d "$KTREE" -S "$KREL" --show-depends "$m" >"$d/deps" ||
			die "module $m not found in $KREL"
		while read -r a f; do
			[ "$a" = insmod ] || continue
			f=${f%% *}
			a=$(basename "$f")
			a=${a%%.ko*}
			case $seen in *" $a "*) continue ;; esac
			seen="$seen$a "
			case $f in
			*.ko) cp "$f" "$d/lib/modules/$a.ko" ;;
			*.ko.xz) xz -dc "$f" >"$d/lib/modules/$a.ko" ;;
			*.ko.zst) zstd -qdc "$f" >"$d/lib/modules/$a.ko" ;;
			*) die "unknown module format: $f" ;;
			esac
			echo "$a" >>"$d/lib/modules/load-order"
		done <"$d/deps"
	done
	rm -f "$d/deps"
	install -m 0755 "$ROOT/guest/initramfs-init" "$d/init"
	[ -z "$AGENT" ] || install -m 0755 "$AGENT" "$d/tenki-agent"
	# Uncompressed: qemu loads a few MiB more, but the guest skips
	# inflating it, which under TCG costs more than it saves.
	(cd "$d" && find . -mindepth 1 | LC_ALL=C sort |
		cpio -o -H newc -R 0:0 --quiet) >"$tmp"
	remove_tree "$d"
	chmod 0644 "$tmp"
	BUILT=$tmp
}
#@end initrd

# --- The root filesystem ------------------------------------------------
# The mirrors are the ones this machine's apt uses (deb822 .sources or
# one-line .list files); the guest reaches the same ones through slirp.
mirror_for() {
	local suite=$1 def=$2 f uri=
	for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
		[ -z "$uri" ] && [ -f "$f" ] || continue
		uri=$(awk -v s="$suite" '$1 == "deb" { sub(/\[[^]]*\][ \t]*/, "")
			if ($3 == s) { print $2; exit } }' "$f")
	done
	for f in /etc/apt/sources.list.d/*.sources; do
		[ -z "$uri" ] && [ -f "$f" ] || continue
		uri=$(awk -v s="$suite" 'BEGIN { RS = ""; FS = "\n" }
			{ uri = ""; ok = 0; deb = 0
			  for (i = 1; i <= NF; i++) {
				if ($i ~ /^URIs:/) { split($i, a, " "); uri = a[2] }
				if ($i ~ /^Types:/ && ($i " ") ~ /[ \t]deb[ \t]/) deb = 1
				if ($i ~ /^Suites:/) { n = split($i, a, " "); for (j = 2; j <= n; j++) if (a[j] == s) ok = 1 }
				if ($i ~ /^Enabled: *no/) ok = 0 }
			  if (ok && deb && uri != "") { print uri; exit } }' "$f")
	done
	echo "${uri:-$def}"
}
MIRROR=$(mirror_for "$SUITE" http://deb.debian.org/debian)
SECURITY_MIRROR=$(mirror_for "$SUITE-security" http://deb.debian.org/debian-security)

PKGFILE=$ROOT/guest/packages.txt
[ -f "$PKGFILE" ] || die "$PKGFILE is missing"
PACKAGES=$(sed -e 's/#.*//' "$PKGFILE" | tr -s ' \t' '\n' | sed '/^$/d' | LC_ALL=C sort -u)

# debootstrap prints a line per package and phase: show one line per
# phase and every 25 packages, and its warnings.  (Outside the
# rootfs-tree section, so editing it does not re-run debootstrap.)
debootstrap_progress() {
	awk '/^I: Validating / { next }
	/^I: (Retrieving|Extracting|Unpacking|Configuring) / {
		n[$2]++
		if ($2 != last || n[$2] % 25 == 0) {
			printf "build-image:   debootstrap: %s %d...\n", $2, n[$2]; fflush()
		}
		last = $2; next
	}
	/^[WE]:/ || /^I: (Resolving|Found|Checking|Base system)/ {
		print "build-image:   debootstrap: " $0; fflush()
	}'
}

#@section rootfs-tree
# debootstrap (variant minbase) plus guest/packages.txt, into a tree kept
# in $WORK so that a change of kernel or of the customisation below does
# not download and unpack Debian again.  debootstrap itself keeps the
# services it installs from starting (policy-rc.d); in the guest nothing
# starts by itself anyway: the agent is PID 1.
TREE=$WORK/rootfs.tree
build_tree() {
	local tmp log
	tmpname tmp "$TREE"
	remove_tree "$tmp"
	log=$LOGDIR/debootstrap.log
	say "  debootstrap $SUITE from $MIRROR ($(echo $PACKAGES | wc -w) packages asked; log $log)"
	debootstrap --variant=minbase --cache-dir="$DEBCACHE" \
		--include="$(echo $PACKAGES | tr ' ' ,)" \
		"$SUITE" "$tmp" "$MIRROR" 2>&1 | tee "$log" |
		debootstrap_progress ||
		die "debootstrap failed; see $log"
	rm -f "$(stamp "$TREE")"
	remove_tree "$TREE"
	mv "$tmp" "$TREE"
}
#@end rootfs-tree

#@section rootfs-image
# The customisation, then an ext4 image made from the tree without any
# mount (mkfs.ext4 -d) in a sparse raw file, converted to qcow2.
customise_tree() {
	local t=$TREE
	echo "$NAME" >"$t/etc/hostname"
	printf '127.0.0.1\tlocalhost\n127.0.1.1\t%s\n::1\t\tlocalhost ip6-localhost ip6-loopback\n' \
		"$NAME" >"$t/etc/hosts"
	rm -f "$t/etc/resolv.conf"
	echo "nameserver 10.0.2.3" >"$t/etc/resolv.conf"
	rm -f "$t/etc/apt/sources.list"
	cat >"$t/etc/apt/sources.list.d/debian.sources" <<-EOF
		Types: deb
		URIs: $MIRROR
		Suites: $SUITE $SUITE-updates
		Components: main
		Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

		Types: deb
		URIs: $SECURITY_MIRROR
		Suites: $SUITE-security
		Components: main
		Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
	EOF
	mkdir -p "$t/home/tenki"
	chmod 0755 "$t/home/tenki"
	# Host keys baked into an image would be shared by every sandbox:
	# whoever starts sshd makes them first (ssh-keygen -A).
	rm -f "$t"/etc/ssh/ssh_host_*
	: >"$t/etc/machine-id"
	rm -f "$t"/var/cache/apt/archives/*.deb "$t"/var/cache/apt/*.bin
	find "$t/var/lib/apt/lists" -maxdepth 1 -type f -delete
	find "$t/var/log" -type f -exec truncate -s 0 {} +
	rm -rf "$t/lib/modules"
	mkdir -p "$t/lib/modules"
	cp -a "$KTREE/lib/modules/$KREL" "$t/lib/modules/"
	depmod -b "$t" "$KREL"
}

build_rootfs() {
	local raw tmp mib
	customise_tree
	tmpname raw "$WORK/rootfs.raw"
	tmpname tmp "$OUT/rootfs.qcow2"
	rm -f "$raw"
	truncate -s "$ROOTFS_SIZE" "$raw"
	mib=$(du -sm "$TREE" | cut -f1)
	say "  mkfs.ext4 -d: $mib MiB of files into a $ROOTFS_SIZE image"
	with_ticker mkfs.ext4 -q -F -L tenki-root -E root_owner=0:0 -d "$TREE" "$raw" ||
		die "mkfs.ext4 failed"
	say "  qemu-img convert to qcow2"
	if [ -t 1 ]; then
		qemu-img convert -p -O qcow2 "$raw" "$tmp"
	else
		with_ticker qemu-img convert -O qcow2 "$raw" "$tmp"
	fi || die "qemu-img convert failed"
	rm -f "$raw"
	chmod 0644 "$tmp"
	BUILT=$tmp
}
#@end rootfs-image

#@section cmdline
# Measured on TCG (docs/image.md).  acpi=off hangs; panic=-1 turns a
# dead agent (PID 1) into a reboot, which a domain with
# <on_reboot>destroy</on_reboot> reports as the VM stopping.
CMDLINE="console=ttyS0 root=/dev/vda rw quiet mitigations=off cryptomgr.notests tsc=reliable no_timer_check 8250.nr_uarts=1 random.trust_cpu=on audit=0 nokaslr panic=-1"
#@end cmdline

# --- Build what is stale ------------------------------------------------
KERNEL_INPUTS=$( (echo "$KPKG $KVER"; section kernel-tree) | hash)
VMLINUX_INPUTS=$( (echo "$KERNEL_INPUTS"; section vmlinux) | hash)
INITRD_INPUTS=$( (echo "$KERNEL_INPUTS agent=$AGENT_HASH"; hash <"$ROOT/guest/initramfs-init";
	hash <"$(command -v busybox)"; section initrd) | hash)
TREE_INPUTS=$( (echo "$SUITE"; echo "$PACKAGES"; section rootfs-tree) | hash)
ROOTFS_INPUTS=$( (echo "$KERNEL_INPUTS $TREE_INPUTS $ROOTFS_SIZE $MIRROR $SECURITY_MIRROR";
	section rootfs-image) | hash)

if ! fresh "$OUT/vmlinux" "$VMLINUX_INPUTS"; then
	ensure_kernel_tree
	step_begin "extracting vmlinux from $KPKG"
	build_vmlinux
	install_artefact "$BUILT" "$OUT/vmlinux" "$VMLINUX_INPUTS"
	step_end
fi

if ! fresh "$OUT/initrd.img" "$INITRD_INPUTS"; then
	ensure_kernel_tree
	step_begin "building initrd.img (agent: ${AGENT:-none})"
	build_initrd
	install_artefact "$BUILT" "$OUT/initrd.img" "$INITRD_INPUTS"
	say "  $(du -k "$OUT/initrd.img" | cut -f1) KiB"
	step_end
fi

# An image built before versions existed: its rootfs.qcow2 becomes the
# first version (a hard link, then the symlink renamed over it: the path
# never goes missing).
if [ -f "$OUT/rootfs.qcow2" ] && [ ! -L "$OUT/rootfs.qcow2" ]; then
	id=$(cut -c1-12 "$(stamp "$OUT/rootfs.qcow2")" 2>/dev/null || true)
	version=rootfs-${id:-$(stat -c %Y "$OUT/rootfs.qcow2")}.qcow2
	ln -f "$OUT/rootfs.qcow2" "$OUT/$version"
	tmpname tmp "$OUT/rootfs.qcow2"
	ln -sfn "$version" "$tmp"
	mv -fT "$tmp" "$OUT/rootfs.qcow2"
	CHANGED=1
fi

if ! fresh "$OUT/rootfs.qcow2" "$ROOTFS_INPUTS"; then
	ensure_kernel_tree
	if ! fresh "$TREE" "$TREE_INPUTS"; then
		step_begin "debootstrap: Debian $SUITE minbase + guest/packages.txt (a minute or two)"
		build_tree
		printf '%s\n' "$TREE_INPUTS" >"$(stamp "$TREE")"
		step_end
	fi
	step_begin "building rootfs.qcow2"
	build_rootfs
	version=rootfs-${ROOTFS_INPUTS:0:12}.qcow2
	mv -f "$BUILT" "$OUT/$version"
	tmpname tmp "$OUT/rootfs.qcow2"
	ln -sfn "$version" "$tmp"
	install_artefact "$tmp" "$OUT/rootfs.qcow2" "$ROOTFS_INPUTS"
	say "  $(du -m "$OUT/$version" | cut -f1) MiB, rootfs.qcow2 -> $version"
	step_end
fi

# --- Versions of the root filesystem --------------------------------------
# A session's overlay depends on the exact bytes of its base: rebuilding
# the base under it would corrupt it.  So each build is a new file,
# rootfs-<id>.qcow2, and rootfs.qcow2 a symlink to the newest; overlays
# made on the resolved path (realpath) keep their base.  Old versions stay
# until --prune finds nothing using them: no process has them open and no
# file under $STATE names them (a qcow2 names its backing file in its
# first cluster).
in_use() {
	local name q
	name=$(basename "$1")
	if find /proc/[0-9]*/fd -lname "$1" 2>/dev/null | grep -q .; then
		return 0
	fi
	[ -d "$STATE" ] || return 1
	while IFS= read -r -d '' q; do
		head -c 65536 "$q" | grep -qaF "$name" && return 0
	done < <(find "$STATE" -type f -size +0 -print0 2>/dev/null)
	return 1
}

current=$(readlink "$OUT/rootfs.qcow2" 2>/dev/null || true)
old=()
for f in "$OUT"/rootfs-*.qcow2; do
	[ -e "$f" ] && [ "${f##*/}" != "$current" ] && old+=("$f")
done
if [ ${#old[@]} -gt 0 ] && [ "$PRUNE" = 1 ]; then
	for f in "${old[@]}"; do
		if in_use "$f"; then
			say "keeping $(basename "$f"): in use"
		else
			rm -f "$f"
			say "removed $(basename "$f")"
		fi
	done
elif [ ${#old[@]} -gt 0 ]; then
	say "${#old[@]} older root filesystem(s) kept ($(du -cm "${old[@]}" | tail -n 1 | cut -f1) MiB) for sessions made on them; --prune removes those unused"
fi

if [ ! -f "$OUT/cmdline" ] || [ "$(<"$OUT/cmdline")" != "$CMDLINE" ]; then
	tmpname tmp "$OUT/cmdline"
	echo "$CMDLINE" >"$tmp"
	chmod 0644 "$tmp"
	mv -f "$tmp" "$OUT/cmdline"
	CHANGED=1
fi

if [ "$CHANGED" = 1 ] || [ ! -s "$OUT/info.json" ]; then
	tmpname tmp "$OUT/info.json"
	vsize=$(qemu-img info --output=json "$OUT/rootfs.qcow2" |
		sed -n 's/.*"virtual-size": *\([0-9]*\).*/\1/p' | head -n 1)
	{
		printf '{"name":"%s","kernel_version":"%s","kernel_package":"%s %s",' \
			"$NAME" "$KREL" "$KPKG" "$KVER"
		printf '"built_at":"%s","rootfs_bytes":%s,"rootfs_file":"%s","rootfs_file_bytes":%s,' \
			"$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$vsize" "$(readlink "$OUT/rootfs.qcow2")" \
			"$(stat -L -c %s "$OUT/rootfs.qcow2")"
		printf '"agent_sha256":%s,"packages":[' \
			"$([ "$AGENT_HASH" = none ] && echo null || echo "\"$AGENT_HASH\"")"
		echo "$PACKAGES" | sed 's/.*/"&"/' | paste -sd, | tr -d '\n'
		printf ']}\n'
	} >"$tmp"
	chmod 0644 "$tmp"
	mv -f "$tmp" "$OUT/info.json"
fi

if [ "$CHANGED" = 1 ]; then
	say "image $NAME ready in $OUT ($(elapsed "$T0") s)"
else
	say "image $NAME is up to date ($(elapsed "$T0") s)"
fi
