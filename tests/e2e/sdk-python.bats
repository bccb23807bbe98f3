#!/usr/bin/env bats
# Issue 13: the Python SDK.  Its own suite runs against this file's private
# tenkid through TENKI_MOUNT: it boots the seed's "demo" session plus the
# seed's other create example, and checks every code example of the seed's
# Sessions page.  One file per language, so that each has its own time
# budget; the suite's output is kept in build/test-logs/sdk-python.log.
load lib
load sdk

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
