# A second libvirt "host" on this machine, for hosts.bats: libvirtd and
# virtlogd in their own network namespace (reached over a veth pair by
# qemu+tcp) and their own mount namespace (private /etc/libvirt,
# /run/libvirt, /var/lib/libvirt, /var/log/libvirt, /var/cache/libvirt),
# so its domains, pools, sockets and files are its own, as on another
# machine.  Source it; every function takes its state from $H2.
#
#   h2_setup        make the namespaces and the veth, start the daemons
#   h2_uri          qemu+tcp://ADDR/system
#   h2_kill         kill -9 its libvirtd (its VMs keep running)
#   h2_start        (re)start its libvirtd
#   h2_virsh ARGS   virsh on it
#   h2_teardown     destroy its VMs, stop everything, remove the state

H2_SUBREAPER=${H2_SUBREAPER:-$ROOT/build/tenki-subreaper}

h2_setup() {
	export H2=${H2:-$(mktemp -d /tmp/tenki-h2.XXXXXX)}
	chmod 755 "$H2"
	local n=$((RANDOM % 200 + 20))
	export H2_NS=tkh2-$n H2_ADDR=10.251.$n.2 H2_PEER=10.251.$n.1
	echo "$H2_NS" >"$H2/ns"
	mkdir -p "$H2/run" "$H2/lib" "$H2/log" "$H2/cache"
	chmod 755 "$H2/lib" "$H2/run"
	cp -a /etc/libvirt "$H2/etc"
	# A new machine: none of this one's domains, pools or networks.
	rm -f "$H2/etc/qemu/"*.xml "$H2/etc/qemu/autostart/"*.xml \
		"$H2/etc/storage/"*.xml "$H2/etc/storage/autostart/"*.xml \
		"$H2/etc/qemu/networks/autostart/"*.xml
	cat >>"$H2/etc/libvirtd.conf" <<CONF
listen_tls = 0
listen_tcp = 1
listen_addr = "$H2_ADDR"
auth_tcp = "none"
CONF
	ip netns add "$H2_NS"
	ip link add "v$H2_NS" type veth peer name "p$H2_NS"
	ip link set "p$H2_NS" netns "$H2_NS"
	ip addr add "$H2_PEER/30" dev "v$H2_NS"
	ip link set "v$H2_NS" up
	ip -n "$H2_NS" addr add "$H2_ADDR/30" dev "p$H2_NS"
	ip -n "$H2_NS" link set "p$H2_NS" up
	ip -n "$H2_NS" link set lo up
	# A process that holds the mount namespace; daemons enter it.
	ip netns exec "$H2_NS" unshare -m --propagation private sh -c "
		mount --bind $H2/etc /etc/libvirt &&
		mount --bind $H2/run /run/libvirt &&
		mount --bind $H2/lib /var/lib/libvirt &&
		mount --bind $H2/log /var/log/libvirt &&
		mount --bind $H2/cache /var/cache/libvirt &&
		exec sleep infinity" </dev/null >/dev/null 2>"$H2/holder.err" 3>&- &
	echo $! >"$H2/holder.pid"
	local i
	for i in $(seq 50); do
		h2_in true 2>/dev/null && [ "$(h2_in stat -c %i /run/libvirt)" = "$(stat -c %i "$H2/run")" ] && break
		sleep 0.1
	done
	h2_in "$H2_SUBREAPER" --pidfile "$H2/virtlogd.pid" --log "$H2/virtlogd.log" -- virtlogd -p /run/libvirt/virtlogd.pid </dev/null
	h2_start
}

# Run a command inside the second host's namespaces.
h2_in() { nsenter -t "$(cat "$H2/holder.pid")" -m -n -- "$@"; }

h2_uri() { echo "qemu+tcp://$H2_ADDR/system"; }

h2_virsh() { timeout 30 virsh -c "$(h2_uri)" "$@"; }

h2_start() {
	h2_in "$H2_SUBREAPER" --pidfile "$H2/libvirtd.pid" --log "$H2/libvirtd.log" -- libvirtd --listen -p /run/libvirt/libvirtd.pid </dev/null
	local i
	for i in $(seq 200); do
		timeout 5 virsh -c "$(h2_uri)" version >/dev/null 2>&1 && return 0
		sleep 0.1
	done
	tail -n 20 "$H2/libvirtd.log" >&2
	return 1
}

# The libvirtd process itself (the subreaper's child).
h2_libvirtd_pid() { pgrep -P "$(cat "$H2/libvirtd.pid")" -x libvirtd; }

h2_kill() {
	local p
	p=$(h2_libvirtd_pid) || return 1
	kill -9 "$p"
	while kill -0 "$p" 2>/dev/null; do sleep 0.05; done
}

# Every process in the second host's network namespace.
h2_pids() {
	local ns p
	ns=$(readlink "/proc/$(cat "$H2/holder.pid")/ns/net") || return 0
	for p in /proc/[0-9]*; do
		[ "$(readlink "$p/ns/net" 2>/dev/null)" = "$ns" ] && echo "${p#/proc/}"
	done
	return 0
}

h2_teardown() {
	[ -n "${H2:-}" ] && [ -d "$H2" ] || return 0
	local d
	if [ -n "$(h2_libvirtd_pid 2>/dev/null)" ]; then
		for d in $(h2_virsh -q list --name 2>/dev/null); do
			h2_virsh -q destroy "$d" >/dev/null 2>&1
		done
	fi
	# What still runs in its network namespace (qemu outliving a killed
	# libvirtd), found by namespace, not by name.
	h2_pids | xargs -r kill -9 2>/dev/null
	for f in libvirtd virtlogd; do
		[ -s "$H2/$f.pid" ] && kill "$(cat "$H2/$f.pid")" 2>/dev/null
	done
	[ -s "$H2/holder.pid" ] && kill "$(cat "$H2/holder.pid")" 2>/dev/null
	sleep 0.3
	ip link del "v$H2_NS" 2>/dev/null
	ip netns del "$H2_NS" 2>/dev/null
	[ -n "${KEEP_TK:-}" ] || rm -rf "$H2"
}
