# Shared by sdk-python.bats, sdk-typescript.bats and sdk-go.bats: a private
# tenkid for an SDK's own test suite, which finds it through TENKI_MOUNT.
setup_file() {
	# suites run side by side: each tenkid's preview listener on a free port
	TENKID_ARGS="--preview 127.0.0.1:$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
	export TENKID_ARGS
	start_tenkid
	export TENKI_MOUNT=$T
	export LOGS=$ROOT/build/test-logs
	mkdir -p "$LOGS"
}
teardown_file() { cleanup_tenkid; }

# Run a suite, its output to the log; on failure show the log's end.
suite() { # name cmd...
	local name=$1 rc
	shift
	timeout 840 "$@" >"$LOGS/sdk-$name.log" 2>&1
	rc=$?
	[ "$rc" -eq 0 ] || { tail -60 "$LOGS/sdk-$name.log"; echo "$name suite: rc $rc"; }
	return "$rc"
}

# A suite skips the ports, volumes and snapshots tests only where the tree
# lacks them (ports come with the root's `preview` file).
no_false_skips() { # log
	local what dir
	for what in ports:preview volumes:volumes snapshots:snapshots; do
		dir=${what#*:}
		what=${what%%:*}
		if [ -e "$T/$dir" ] && grep -q "$what not merged" "$1"; then
			echo "$1: the $what tests skipped, but the tree has $dir"
			return 1
		fi
	done
}

# No session of a suite is left behind.
no_sessions() {
	run ls "$T/sessions"
	[ "$output" = "$(printf 'err\nindex\nindex.json\nnew')" ] || { echo "left: $output"; return 1; }
}
