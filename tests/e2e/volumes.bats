#!/usr/bin/env bats
# Issue 7: volumes, block storage that outlives sessions, on a libvirt
# dir pool; attached as virtio disks, mounted by the agent.
load lib

setup_file() { start_tenkid; }
teardown_file() { cleanup_tenkid; }
# Never empty: start_tenkid exported T before any test runs.
V="$T/volumes"

vol_list() { virsh -q -c qemu:///system vol-list "$(vol_pool)" 2>/dev/null || true; }
last_err() { tail -n 1 "$1"; }
# The domain of session $1: the prefix and the last 12 digits of its id.
domain_of() { echo "$(state_tag)$(cut -c25- "$T/sessions/$1/id")"; }
# A job in session $1 left running (cmd $2); prints nothing.
bg_job() {
	BG=$(cat "$T/sessions/$1/exec/clone")
	echo "$2" >"$T/sessions/$1/exec/$BG/cmd"
}

@test "bad input: sizes 0, 200G, 10Q and bad names are refused; nothing made" {
	for size in 0 200G 10Q 512K; do
		refused_with "Invalid argument" bash -c "echo 'name=bad size=$size' >'$V/new'"
		[[ "$(last_err "$V/err")" == *"size"* ]]
		[[ "$(last_err "$V/err")" == *"$size"* ]]
		[ ! -e "$V/bad" ]
	done
	refused_with "Invalid argument" mkdir "$V/-dash"
	[[ "$(last_err "$V/err")" == *"not a valid volume name"* ]]
	refused_with "Invalid argument" bash -c "echo 'name=b@d size=1M' >'$V/new'"
	[[ "$(last_err "$V/err")" == *"b@d"* ]]
	refused_with "Invalid argument" bash -c "echo 'name=x color=red' >'$V/new'"
	refused_with "Invalid argument" bash -c "echo 'cpu=1 memory=512 volume_size=10Q' >'$T/defaults'"
	[ "$(ls "$V")" = "$(printf 'err\nnew')" ]
	[ -z "$(vol_list)" ]
}

@test "create: mkdir and new; id, size, state, info.json; virsh vol-list shows them" {
	mkdir "$V/m"
	[ "$(cat "$V/m/size")" = 1073741824 ] # defaults: no volume_size
	[ "$(cat "$V/m/state")" = AVAILABLE ]
	[[ "$(cat "$V/m/id")" =~ ^[0-9a-f-]{36}$ ]]
	# the name is readable back on the fd that wrote the spec
	exec 5<>"$V/new"
	echo 'name=data size=64M' >&5
	read -r made <&5
	exec 5>&-
	[ "$made" = data ]
	[ "$(cat "$V/data/size")" = 67108864 ]
	[ "$(json_get "$V/data/info.json" name)" = data ]
	[ "$(json_get "$V/data/info.json" id)" = "$(cat "$V/data/id")" ]
	[ "$(json_get "$V/data/info.json" size)" = 67108864 ]
	[ "$(json_get "$V/data/info.json" session)" = null ]
	[ "$(json_get "$V/data/info.json" read_only)" = False ]
	[[ "$(json_get "$V/data/info.json" created_at)" == 20*Z ]]
	vol_list | grep -q "$(cat "$V/m/id").raw"
	vol_list | grep -q "$(cat "$V/data/id").raw"
	refused_with "File exists" mkdir "$V/data"
	refused_with "File exists" bash -c "echo 'name=data size=1M' >'$V/new'"
	[[ "$(last_err "$V/err")" == *"a volume named data exists"* ]]
	[ "$(cat "$V/data/size")" = 67108864 ]
	# volume_size in defaults sizes mkdir
	echo 'cpu=1 memory=512 volume_size=2M' >"$T/defaults"
	mkdir "$V/small"
	echo 'cpu=1 memory=512' >"$T/defaults"
	[ "$(cat "$V/small/size")" = 2097152 ]
	# no name: one is made up, and read back on the same fd
	exec 5<>"$V/new"
	echo 'size=1M' >&5
	read -r gen <&5
	exec 5>&-
	[[ "$gen" == v-* ]]
	[ "$(cat "$V/$gen/size")" = 1048576 ]
	rmdir "$V/small" "$V/m" "$V/$gen"
	[ ! -e "$V/m" ]
	[ "$(vol_list | wc -l)" -eq 1 ]
}

@test "size grows; shrinking is refused and changes nothing" {
	echo 128M >"$V/data/size"
	[ "$(cat "$V/data/size")" = 134217728 ]
	refused_with "Invalid argument" bash -c "echo 64M >'$V/data/size'"
	[[ "$(last_err "$V/data/err")" == *"only grow"* ]]
	refused_with "Invalid argument" bash -c "echo 10Q >'$V/data/size'"
	[ "$(cat "$V/data/size")" = 134217728 ]
	vol_list | grep "$(cat "$V/data/id")" >/dev/null
	[ "$(stat -c %s "$TK/state/volume-pool/$(cat "$V/data/id").raw")" = 134217728 ]
}

@test "attach at create to A, write, close A; read-only in B: same files, EROFS; detach, delete: gone" {
	echo 'name=A volume=data:/data' >"$T/sessions/new"
	[ "$(cat "$T/sessions/A/state")" = READY ]
	[ "$(cat "$T/sessions/A/volumes")" = "data /data rw" ]
	[ "$(cat "$V/data/state")" = ATTACHED ]
	[ "$(json_get "$V/data/info.json" session)" = A ]
	[ "$(json_get "$V/data/info.json" mount_path)" = /data ]
	python3 -c 'import json,sys; v=json.load(open(sys.argv[1]))["volumes"]; assert v[0]["name"]=="data" and v[0]["mount_path"]=="/data" and v[0]["read_only"] is False, v' "$T/sessions/A/info.json"
	tk_exec A 'mkdir -p /data/d && echo hello >/data/d/f && sync'
	# the filesystem uses the whole (grown) disk
	size=$(tk_exec A 'df -k --output=size /data | tail -n 1')
	[ "$size" -gt 100000 ]
	refused_with "Device or resource busy" rmdir "$V/data"
	[[ "$(last_err "$V/data/err")" == *"attached to session A"* ]]
	echo close >"$T/sessions/A/ctl"
	[ "$(cat "$T/sessions/A/state")" = TERMINATED ]
	[ "$(cat "$V/data/state")" = AVAILABLE ]
	[ -z "$(cat "$T/sessions/A/volumes")" ]

	mkdir "$T/sessions/B"
	echo 'attach data /data ro' >"$T/sessions/B/ctl"
	[ "$(cat "$T/sessions/B/volumes")" = "data /data ro" ]
	[ "$(json_get "$V/data/info.json" read_only)" = True ]
	[ "$(tk_exec B 'cat /data/d/f')" = hello ]
	run tk_exec B 'echo x >/data/g 2>&1; touch /data/d/f 2>&1'
	[[ "$output" == *"Read-only file system"* ]]
	[ "$(tk_exec B 'ls /data/d')" = f ]
	echo 'detach data' >"$T/sessions/B/ctl"
	[ "$(tk_exec B 'grep -c " /data " /proc/mounts')" = 0 ]
	[ "$(cat "$V/data/state")" = AVAILABLE ]
	id=$(cat "$V/data/id")
	rmdir "$V/data"
	[ ! -e "$V/data" ]
	! vol_list | grep -q "$id"
	[ ! -e "$TK/state/volume-pool/$id.raw" ]
	rmdir "$T/sessions/A"
}

@test "live attach and detach on a running session: the mount appears and disappears" {
	echo 'name=live size=16M' >"$V/new"
	disks=$(tk_exec B 'ls /sys/block | grep -c ^vd')
	echo 'attach live /mnt/live' >"$T/sessions/B/ctl"
	[ "$(tk_exec B 'grep -c " /mnt/live ext4 rw" /proc/mounts')" = 1 ]
	[ "$(tk_exec B 'ls /sys/block | grep -c ^vd')" = $((disks + 1)) ]
	# the guest found the disk by its serial: tk + the volume id's hex
	serial=tk$(tr -d - <"$V/live/id" | cut -c1-18)
	[ "$(tk_exec B "grep -l $serial /sys/block/vd*/serial | wc -l")" = 1 ]
	tk_exec B 'echo kept >/mnt/live/note'
	[ "$(cat "$T/sessions/B/volumes")" = "live /mnt/live rw" ]
	[ "$(cat "$V/live/state")" = ATTACHED ]
	# a busy mount is reported, not yanked
	bg_job B 'cd /mnt/live && exec sleep 600'
	sleep 1
	refused_with "Device or resource busy" bash -c "echo 'detach live' >'$T/sessions/B/ctl'"
	[[ "$(last_err "$T/sessions/B/err")" == *"/mnt/live is busy"*"sleep"* ]]
	[ "$(tk_exec B 'cat /mnt/live/note')" = kept ]
	[ "$(cat "$V/live/state")" = ATTACHED ]
	echo kill >"$T/sessions/B/exec/$BG/ctl"
	timeout 60 cat "$T/sessions/B/exec/$BG/exit" >/dev/null
	echo 'detach live' >"$T/sessions/B/ctl"
	[ "$(tk_exec B 'grep -c " /mnt/live " /proc/mounts')" = 0 ]
	[ "$(tk_exec B 'ls /sys/block | grep -c ^vd')" = "$disks" ]
	[ "$(cat "$V/live/state")" = AVAILABLE ]
	[ -z "$(cat "$T/sessions/B/volumes")" ]
	# and again through the volume's own ctl
	echo 'attach B /mnt/live' >"$V/live/ctl"
	[ "$(tk_exec B 'cat /mnt/live/note')" = kept ]
	echo detach >"$V/live/ctl"
	[ "$(tk_exec B 'grep -c " /mnt/live " /proc/mounts')" = 0 ]
}

@test "EBUSY: attached read-write elsewhere, deleting an attached volume; read-only sharing" {
	mkdir "$T/sessions/C"
	echo 'attach live /mnt/live' >"$T/sessions/B/ctl"
	refused_with "Device or resource busy" bash -c "echo 'attach live /x' >'$T/sessions/C/ctl'"
	[[ "$(last_err "$T/sessions/C/err")" == *"read-write to session B"* ]]
	refused_with "Device or resource busy" bash -c "echo 'attach C /x ro' >'$V/live/ctl'"
	[[ "$(last_err "$V/live/err")" == *"read-write to session B"* ]]
	refused_with "Device or resource busy" bash -c "echo 'name=D volume=live:/x' >'$T/sessions/new'"
	[[ "$(last_err "$T/sessions/err")" == *"read-write to session B"* ]]
	[ ! -e "$T/sessions/D" ]
	refused_with "Device or resource busy" rmdir "$V/live"
	[[ "$(last_err "$V/live/err")" == *"detach it first"* ]]
	[ "$(tk_exec C 'grep -c " /x " /proc/mounts')" = 0 ]
	echo 'detach live' >"$T/sessions/B/ctl"
	# read-only to several at once; then read-write is refused
	echo 'attach live /ro ro' >"$T/sessions/B/ctl"
	echo 'attach C /ro ro' >"$V/live/ctl"
	[ "$(tk_exec B 'cat /ro/note')" = kept ]
	[ "$(tk_exec C 'cat /ro/note')" = kept ]
	[ "$(python3 -c 'import json,sys; print(len(json.load(open(sys.argv[1]))["attachments"]))' "$V/live/info.json")" = 2 ]
	refused_with "Device or resource busy" bash -c "echo 'attach live /rw' >'$T/sessions/C/ctl'"
	[[ "$(last_err "$T/sessions/C/err")" == *"read-only to session B"* ]]
	[ "$(cat "$T/sessions/C/volumes")" = "live /ro ro" ]
	echo detach >"$V/live/ctl"
	[ "$(cat "$V/live/state")" = AVAILABLE ]
	[ "$(tk_exec B 'grep -c " /ro " /proc/mounts')" = 0 ]
}

@test "bad attach input: relative path, unknown volume, system path, TERMINATED session" {
	refused_with "Invalid argument" bash -c "echo 'attach live data' >'$T/sessions/B/ctl'"
	[[ "$(last_err "$T/sessions/B/err")" == *"must be absolute"* ]]
	refused_with "Invalid argument" bash -c "echo 'attach live /proc/x' >'$T/sessions/B/ctl'"
	refused_with "Invalid argument" bash -c "echo 'attach live' >'$T/sessions/B/ctl'"
	refused_with "Invalid argument" bash -c "echo 'attach live /x rx' >'$T/sessions/B/ctl'"
	refused_with "No such file or directory" bash -c "echo 'attach nosuch /x' >'$T/sessions/B/ctl'"
	[[ "$(last_err "$T/sessions/B/err")" == *"no volume nosuch"* ]]
	refused_with "No such file or directory" bash -c "echo 'attach nosuch /x' >'$V/live/ctl'"
	refused_with "Invalid argument" bash -c "echo 'name=E volume=live:rel' >'$T/sessions/new'"
	refused_with "No such file or directory" bash -c "echo 'name=E volume=nosuch:/x' >'$T/sessions/new'"
	[ ! -e "$T/sessions/E" ]
	echo close >"$T/sessions/C/ctl"
	refused_with "Device or resource busy" bash -c "echo 'attach live /x' >'$T/sessions/C/ctl'"
	[[ "$(last_err "$T/sessions/C/err")" == *"TERMINATED"* ]]
	refused_with "Device or resource busy" bash -c "echo 'attach C /x' >'$V/live/ctl'"
	[[ "$(last_err "$V/live/err")" == *"TERMINATED"* ]]
	[ "$(cat "$V/live/state")" = AVAILABLE ]
	[ -z "$(cat "$T/sessions/B/volumes")" ]
	rmdir "$T/sessions/C"
}

@test "a failed attach leaves nothing attached: read-only of a blank volume, live and at create" {
	echo 'name=blank size=8M' >"$V/new"
	disks=$(tk_exec B 'ls /sys/block | grep -c ^vd')
	refused_with "Invalid argument" bash -c "echo 'attach blank /b ro' >'$T/sessions/B/ctl'"
	[[ "$(last_err "$T/sessions/B/err")" == *"blank"* ]]
	[ "$(cat "$V/blank/state")" = AVAILABLE ]
	[ -z "$(cat "$T/sessions/B/volumes")" ]
	[ "$(tk_exec B 'ls /sys/block | grep -c ^vd')" = "$disks" ]
	[ "$(tk_exec B 'grep -c " /b " /proc/mounts')" = 0 ]
	# at create: the create fails and leaves no session, domain or attachment
	ndom=$(domains | wc -l)
	refused_with "Input/output error" bash -c "echo 'name=F volume=blank:/b:ro' >'$T/sessions/new'"
	[[ "$(last_err "$T/sessions/err")" == *"create failed: volume blank"*"blank"* ]]
	[ ! -e "$T/sessions/F" ]
	[ "$(cat "$V/blank/state")" = AVAILABLE ]
	for _ in $(seq 50); do [ "$(domains | wc -l)" -eq "$ndom" ] && break; sleep 0.2; done
	[ "$(domains | wc -l)" -eq "$ndom" ]
	rmdir "$V/blank"
}

@test "a running session takes 4 hot-plugged volumes (its spare ports); the 5th: ENOSPC" {
	for i in 1 2 3 4 5; do echo "name=h$i size=8M" >"$V/new"; done
	for i in 1 2 3 4; do echo "attach h$i /h/$i" >"$T/sessions/B/ctl"; done
	refused_with "No space left" bash -c "echo 'attach h5 /h/5' >'$T/sessions/B/ctl'"
	[[ "$(last_err "$T/sessions/B/err")" == *"hot-plug ports"* ]]
	[ "$(cat "$V/h5/state")" = AVAILABLE ]
	[ "$(tk_exec B 'grep -c " /h/" /proc/mounts')" = 4 ]
	for i in 1 2 3 4; do echo detach >"$V/h$i/ctl"; done
	[ "$(tk_exec B 'grep -c " /h/" /proc/mounts')" = 0 ]
	for i in 1 2 3 4 5; do rmdir "$V/h$i"; done
}

@test "restored guests get volumes hot-plugged before READY: snapshot= and a pooled mkdir; ports; a failed mount leaves nothing" {
	echo 'name=rv size=16M' >"$V/new"
	echo 'attach rv /rv' >"$T/sessions/B/ctl"
	tk_exec B 'echo from-B >/rv/f && sync'
	# a snapshot with a volume mounted (and held by a process) leaves it
	# out: copies unmount it and never reach the volume
	tk_exec B 'cd /rv && { sleep 1000 </dev/null >/dev/null 2>&1 & echo $! >/tmp/holder; }'
	echo 'snapshot sw' >"$T/sessions/B/ctl"
	[ "$(cat "$T/snapshots/sw/state")" = READY ]
	[ "$(json_get "$T/snapshots/sw/info.json" volumes_left_out)" = "[{'name': 'rv', 'mount_path': '/rv'}]" ]
	echo 'name=W snapshot=sw' >"$T/sessions/new"
	[ "$(cat "$T/sessions/W/state")" = READY ]
	[ -z "$(cat "$T/sessions/W/volumes")" ]
	[ "$(tk_exec W 'grep -c " /rv " /proc/mounts; ls /sys/block | grep -c "^vd"; kill -0 $(cat /tmp/holder) && echo held')" = "0
1
held" ]
	# what the copy writes there goes nowhere; B's volume is untouched
	tk_exec W 'echo from-W >/rv/g 2>/dev/null; true'
	[ "$(tk_exec B 'cat /rv/f; ls /rv/g 2>/dev/null | wc -l')" = "from-B
0" ]
	[ "$(cat "$T/sessions/B/volumes")" = "rv /rv rw" ]
	[ -z "$(ls "$TK/state/sessions/$(cat "$T/sessions/W/id")" | grep stand-in)" ]
	rmdir "$T/sessions/W" "$T/snapshots/sw"
	tk_exec B 'kill $(cat /tmp/holder)'
	echo 'detach rv' >"$T/sessions/B/ctl"
	echo 'snapshot sv' >"$T/sessions/B/ctl"
	echo 'name=R snapshot=sv volume=rv:/mnt/x' >"$T/sessions/new"
	[ "$(cat "$T/sessions/R/state")" = READY ]
	[ "$(json_get "$T/sessions/R/info.json" boot)" = snapshot ]
	[ "$(cat "$T/sessions/R/volumes")" = "rv /mnt/x rw" ]
	[ "$(cat "$V/rv/state")" = ATTACHED ]
	[ "$(tk_exec R 'cat /mnt/x/f')" = from-B ]
	# the saved machine's 4 spare ports: rv took one
	for i in 1 2 3 4; do echo "name=q$i size=8M" >"$V/new"; done
	for i in 1 2 3; do echo "attach q$i /q/$i" >"$T/sessions/R/ctl"; done
	refused_with "No space left" bash -c "echo 'attach q4 /q/4' >'$T/sessions/R/ctl'"
	[ "$(tk_exec R 'grep -c " /q/" /proc/mounts')" = 3 ]
	rmdir "$T/sessions/R"
	[ "$(cat "$V/rv/state")" = AVAILABLE ]
	# more volumes than spare ports: refused, nothing made
	refused_with "No space left" bash -c "echo 'name=R1 snapshot=sv volume=q1:/1 volume=q2:/2 volume=q3:/3 volume=q4:/4 volume=rv:/5' >'$T/sessions/new'"
	[ ! -e "$T/sessions/R1" ]
	# a mount that fails (read-only of a blank volume): the create fails
	# and leaves no session, domain, state directory or attachment
	ndom=$(domains | wc -l)
	nst=$(state_sessions)
	refused_with "Input/output error" bash -c "echo 'name=R2 snapshot=sv volume=q4:/b:ro' >'$T/sessions/new'"
	[[ "$(last_err "$T/sessions/err")" == *"create failed: volume q4"* ]]
	[ ! -e "$T/sessions/R2" ]
	# its console's last lines stay in tenkid's log
	grep -q "session R2: console: " "$TK/tenkid.log"
	[ "$(cat "$V/q4/state")" = AVAILABLE ]
	for _ in $(seq 50); do [ "$(domains | wc -l)" -eq "$ndom" ] && [ "$(state_sessions)" -eq "$nst" ] && break; sleep 0.2; done
	[ "$(domains | wc -l)" -eq "$ndom" ]
	[ "$(state_sessions)" -eq "$nst" ]
	# a plain mkdir whose defaults name a volume takes a pooled guest
	for _ in $(seq 240); do grep -q '^ready [1-9]' "$T/pool" && break; sleep 0.5; done
	echo 'cpu=1 memory=512 volume=rv:/data' >"$T/defaults"
	mkdir "$T/sessions/P"
	echo 'cpu=1 memory=512' >"$T/defaults"
	[ "$(json_get "$T/sessions/P/info.json" boot)" = pool ]
	[ "$(cat "$T/sessions/P/volumes")" = "rv /data rw" ]
	[ "$(tk_exec P 'cat /data/f')" = from-B ]
	rmdir "$T/sessions/P"
	[ "$(cat "$V/rv/state")" = AVAILABLE ]
	rmdir "$T/snapshots/sv"
	for i in 1 2 3 4; do rmdir "$V/q$i"; done
	rmdir "$V/rv"
}

@test "durability: synced data survives virsh destroy; the volume mounts clean next time" {
	echo 'name=dur size=64M' >"$V/new"
	echo 'name=D volume=dur:/data' >"$T/sessions/new"
	sum=$(tk_exec D 'head -c 4194304 /dev/urandom >/data/blob && sync && sha256sum /data/blob | cut -d" " -f1')
	[ ${#sum} -eq 64 ]
	virsh -q -c qemu:///system destroy "$(domain_of D)"
	for _ in $(seq 100); do
		[ "$(cat "$T/sessions/D/state")" = TERMINATED ] && break
		sleep 0.2
	done
	[ "$(cat "$T/sessions/D/state")" = TERMINATED ]
	[ "$(cat "$V/dur/state")" = AVAILABLE ]
	echo 'attach dur /data' >"$T/sessions/B/ctl"
	[ "$(tk_exec B 'sha256sum /data/blob | cut -d" " -f1')" = "$sum" ]
	[ "$(tk_exec B 'dmesg | grep -ci "ext4.*error"')" = 0 ]
	echo 'detach dur' >"$T/sessions/B/ctl"
	# the filesystem is clean as the guest left it
	run e2fsck -fn "$TK/state/volume-pool/$(cat "$V/dur/id").raw"
	echo "$output"
	[ "$status" -eq 0 ]
	rmdir "$T/sessions/D"
}

@test "a grown volume's filesystem grows at its next mount" {
	echo 256M >"$V/dur/size"
	echo 'attach dur /data' >"$T/sessions/B/ctl"
	size=$(tk_exec B 'df -k --output=size /data | tail -n 1')
	[ "$size" -gt 200000 ]
	[ -n "$(tk_exec B 'cat /data/blob | wc -c')" ]
}

@test "tenkid restart: attachments are re-derived from libvirt" {
	[ "$(cat "$V/dur/state")" = ATTACHED ]
	kill9_tenkid
	start_tenkid
	[ "$(cat "$T/sessions/B/wait")" = READY ]
	[ "$(cat "$V/dur/state")" = ATTACHED ]
	[ "$(cat "$T/sessions/B/volumes")" = "dur /data rw" ]
	[ "$(cat "$V/live/state")" = AVAILABLE ]
	echo 'detach dur' >"$T/sessions/B/ctl"
	[ "$(tk_exec B 'grep -c " /data " /proc/mounts')" = 0 ]
	rmdir "$T/sessions/B"
	[ "$(cat "$V/dur/state")" = AVAILABLE ]
	rmdir "$V/dur" "$V/live"
	[ -z "$(vol_list)" ]
}
