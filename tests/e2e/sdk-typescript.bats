#!/usr/bin/env bats
# Issue 13: the TypeScript SDK.  Its own suite runs against this file's private
# tenkid through TENKI_MOUNT: it boots the seed's "demo" session plus the
# seed's other create example, and checks every code example of the seed's
# Sessions page.  One file per language, so that each has its own time
# budget; the suite's output is kept in build/test-logs/sdk-typescript.log.
load lib
load sdk

@test "typescript: the seed examples type-check; node --test suite passes against the tree" {
	command -v node >/dev/null
	cd "$ROOT/sdk/typescript"
	# the seed's examples type-check against index.d.ts
	command -v tsc >/dev/null
	tsc -p test
	suite typescript node --test test/
	grep -q "^# fail 0" "$LOGS/sdk-typescript.log"
	grep -Eq "^# pass (1[7-9]|[2-9][0-9])" "$LOGS/sdk-typescript.log"
	no_false_skips "$LOGS/sdk-typescript.log"
	no_sessions
}
