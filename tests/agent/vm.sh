#!/bin/bash
# Run tests/agent/test_agent.py against the agent as PID 1 in a real guest.
#
# Boots a throwaway VM (transient libvirt domain, TCG or KVM as given) from
# the sandbox image's kernel and rootfs with an initrd whose /tenki-agent is
# build/tenki-agent, waits for the agent's channel socket, runs the harness
# with TENKI_AGENT_SOCK, and destroys the VM.  Extra arguments go to the
# harness (test names, -v).
#
# usage: tests/agent/vm.sh [--keep] [harness args...]
#        tests/agent/vm.sh --boot    (leave the VM running; print how to reach it)
# TENKI_DEBUG=1 adds tenki.debug to the kernel command line (agent debug log).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
IMG=${TENKI_IMAGE:-/var/cache/tenki/images/sandbox}
VIRSH="virsh -q -c qemu:///system"
KEEP=0 BOOT=0
[ "${1:-}" = --keep ] && { KEEP=1; shift; }
[ "${1:-}" = --boot ] && { BOOT=1; shift; }

W=$(mktemp -d /tmp/tenki-agentvm.XXXXXX)
DOM=tenki-agentvm-$$
chmod 0755 "$W"
cleanup() {
	$VIRSH destroy "$DOM" >/dev/null 2>&1 || true
	[ "$KEEP" = 1 ] && { echo "kept $W"; return; }
	rm -rf "$W"
}
trap cleanup EXIT

make -s -C "$ROOT" build/tenki-agent
mkdir "$W/initrd.d"
(cd "$W/initrd.d" && cpio -idm --quiet <"$IMG/initrd.img")
install -m 0755 "$ROOT/build/tenki-agent" "$W/initrd.d/tenki-agent"
(cd "$W/initrd.d" && find . | cpio -o -H newc -R 0:0 --quiet) >"$W/initrd.img"
rm -rf "$W/initrd.d"
qemu-img create -q -f qcow2 -b "$IMG/rootfs.qcow2" -F qcow2 "$W/disk.qcow2"
chown libvirt-qemu: "$W/disk.qcow2" "$W/initrd.img" 2>/dev/null || true
chmod a+r "$W/initrd.img" "$W/disk.qcow2"

if grep -qw -e vmx -e svm /proc/cpuinfo && [ ! -d /sys/module/kvm_pvm ]; then
	TYPE=kvm CPU="<cpu mode='host-passthrough'/>"
else
	TYPE=qemu CPU="<cpu mode='maximum'/>"
fi
cat >"$W/dom.xml" <<XML
<domain type='$TYPE'>
  <name>$DOM</name>
  <memory unit='MiB'>512</memory>
  <vcpu>1</vcpu>
  $CPU
  <os>
    <type arch='x86_64' machine='q35'>hvm</type>
    <loader type='rom'>/usr/share/qemu/qboot.rom</loader>
    <kernel>$IMG/vmlinux</kernel>
    <initrd>$W/initrd.img</initrd>
    <cmdline>$(cat "$IMG/cmdline")${TENKI_DEBUG:+ tenki.debug}</cmdline>
  </os>
  <features><acpi/></features>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>destroy</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2' cache='unsafe'/>
      <source file='$W/disk.qcow2'/>
      <target dev='vda' bus='virtio'/>
    </disk>
    <controller type='usb' model='none'/>
    <interface type='user'><model type='virtio'/></interface>
    <serial type='file'><source path='$W/console.log'/><target port='0'/></serial>
    <channel type='unix'>
      <source mode='bind' path='$W/agent.sock'/>
      <target type='virtio' name='org.tenki.agent.0'/>
    </channel>
    <rng model='virtio'><backend model='random'>/dev/urandom</backend></rng>
    <memballoon model='none'/>
  </devices>
</domain>
XML

t0=$EPOCHREALTIME
$VIRSH create "$W/dom.xml" >/dev/null
for _ in $(seq 1 600); do [ -S "$W/agent.sock" ] && break; sleep 0.1; done
echo "vm.sh: $DOM ($TYPE) started; console: $W/console.log"
if [ "$BOOT" = 1 ]; then
	trap - EXIT
	echo "TENKI_AGENT_SOCK=$W/agent.sock"
	echo "stop: virsh -c qemu:///system destroy $DOM; rm -rf $W"
	exit 0
fi
rc=0
TENKI_AGENT_SOCK=$W/agent.sock python3 "$ROOT/tests/agent/test_agent.py" "$@" || rc=$?
echo "vm.sh: $(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN{printf "%.1f", b-a}') s in all"
[ $rc = 0 ] || { echo "--- console ---"; tail -n 30 "$W/console.log" || true; }
exit $rc
