#!/usr/bin/env bats
# Issue 12, access: the tree is private to the user who started tenkid
# unless --allow-other opens it; tenkid's own files have tight modes.
load lib

OTHER=tenki-e2e-other

as_other() { su -s /bin/sh "$OTHER" -c "$*"; }

setup_file() {
	id "$OTHER" >/dev/null 2>&1 ||
		useradd --system --no-create-home --shell /usr/sbin/nologin "$OTHER"
	start_tenkid
	mkdir "$T/sessions/a1"
	echo s3cr3t-content >"$T/sessions/a1/files/secret.txt"
}
teardown_file() { cleanup_tenkid; }

@test "another local user gets EACCES on every path of the tree" {
	for p in "$T" "$T/version" "$T/sessions" "$T/sessions/a1/info.json" \
		"$T/sessions/a1/files" "$T/sessions/a1/files/secret.txt"; do
		run as_other "cat '$p' || ls '$p'"
		echo "$p: $output"
		[ "$status" -ne 0 ]
		[[ "$output" == *"Permission denied"* ]]
		[[ "$output" != *s3cr3t-content* ]]
	done
	run as_other "mkdir '$T/sessions/intruder'"
	[ "$status" -ne 0 ]
	[ ! -e "$T/sessions/intruder" ]
}

@test "tenkid keeps only the capabilities it uses, in every thread, and cannot regain others" {
	pid=$(cat "$TK/pid")
	# kept: CHOWN 0, DAC_OVERRIDE 1, DAC_READ_SEARCH 2, FOWNER 3,
	# NET_BIND_SERVICE 10, SYS_ADMIN 21
	want=$(printf '%016x' $(((1 << 0) | (1 << 1) | (1 << 2) | (1 << 3) | (1 << 10) | (1 << 21))))
	n=0
	for t in /proc/"$pid"/task/*; do
		# worker threads come and go: one may end while we look
		st=$(cat "$t/status" 2>/dev/null) || continue
		for k in CapEff CapPrm CapBnd; do
			v=$(awk -v k="$k:" '$1 == k { print $2 }' <<<"$st")
			[ "$v" = "$want" ] || { echo "$t $k $v, want $want"; false; }
		done
		[ "$(awk '$1 == "NoNewPrivs:" { print $2 }' <<<"$st")" = 1 ]
		n=$((n + 1))
	done
	echo "$n threads checked"
	[ "$n" -ge 4 ]
	# and with them it still does its work
	[ "$(tk_exec a1 'echo fine')" = fine ]
}

@test "the state directory holds nothing another user can read or write" {
	# Directories are traversable (qemu, another user, must reach its
	# disk and socket) but not listable; no file is readable by others
	# (public keys aside: the SSH gateway's host key's .pub).
	run find "$TK/state" -perm -o+r ! -type l ! -type d ! -name '*.pub'
	echo "world-readable: $output"
	[ -z "$output" ]
	run find "$TK/state" -perm -o+w ! -type l
	echo "world-writable: $output"
	[ -z "$output" ]
	run find "$TK/state" -type d -perm -o+r
	echo "listable dirs: $output"
	[ -z "$output" ]
	run as_other "ls '$TK/state/sessions'"
	[ "$status" -ne 0 ]
}

@test "--allow-other opens the tree to other users, with permission checks" {
	stop_tenkid
	TENKID_ARGS=--allow-other start_tenkid
	run as_other "cat '$T/version'"
	echo "$output"
	[ "$status" -eq 0 ]
	[[ "$output" == tenki* ]]
}
