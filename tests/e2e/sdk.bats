#!/usr/bin/env bats
# Issue 13: the SDKs.  Each language's own suite (python3 -m unittest,
# node --test, go test) runs against this file's private tenkid through
# TENKI_MOUNT; each suite boots the seed's "demo" session plus its other
# create example, and checks every code example of the seed's Sessions
# page.  The suites' output is kept in build/test-logs/sdk-*.log.
load lib

setup_file() {
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
	timeout 900 "$@" >"$LOGS/sdk-$name.log" 2>&1
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

@test "python: pip installs the checkout; its suite passes against the tree" {
	command -v /usr/bin/python3 >/dev/null
	# pip builds in the source dir: build from a copy, offline
	cp -r "$ROOT/sdk/python" "$TK/pysrc"
	/usr/bin/python3 -m pip install -q --no-build-isolation --no-deps \
		--no-index --target "$TK/pylib" "$TK/pysrc" >"$TK/pip.log" 2>&1 ||
		{ cat "$TK/pip.log"; return 1; }
	[ -f "$TK/pylib/tenki_sandbox/__init__.py" ]
	# the suite imports the installed copy (run outside the checkout)
	cd "$TK"
	PYTHONPATH=$TK/pylib suite python /usr/bin/python3 -m unittest discover \
		-s "$ROOT/sdk/python/tests" -v
	grep -Eq "^OK( \(skipped=[0-3]\))?$" "$LOGS/sdk-python.log"
	grep -Eq "^Ran (2[0-9]|[3-9][0-9]) tests" "$LOGS/sdk-python.log"
	PYTHONPATH=$TK/pylib /usr/bin/python3 -c 'import tenki_sandbox, sys; sys.exit(not tenki_sandbox.__file__.startswith(sys.argv[1]))' "$TK/pylib"
	no_false_skips "$LOGS/sdk-python.log"
	no_sessions
}

@test "typescript: node --test suite passes against the tree" {
	command -v node >/dev/null
	cd "$ROOT/sdk/typescript"
	suite typescript node --test test/
	grep -q "^# fail 0" "$LOGS/sdk-typescript.log"
	grep -Eq "^# pass (1[7-9]|[2-9][0-9])" "$LOGS/sdk-typescript.log"
	no_false_skips "$LOGS/sdk-typescript.log"
	no_sessions
}

@test "go: go test passes against the tree, offline" {
	command -v go >/dev/null
	cd "$ROOT/sdk/go"
	GOTOOLCHAIN=local GOPROXY=off GOFLAGS=-mod=readonly suite go go test -count=1 -v ./...
	grep -q "^ok" "$LOGS/sdk-go.log"
	[ "$(grep -c -- "--- PASS: " "$LOGS/sdk-go.log")" -ge 17 ]
	no_false_skips "$LOGS/sdk-go.log"
	no_sessions
}
