#!/usr/bin/env bats
# Issue 13: the Go SDK.  Its own suite runs against this file's private
# tenkid through TENKI_MOUNT: it boots the seed's "demo" session plus the
# seed's other create example, and checks every code example of the seed's
# Sessions page.  One file per language, so that each has its own time
# budget; the suite's output is kept in build/test-logs/sdk-go.log.
load lib
load sdk

@test "go: go test passes against the tree, offline" {
	command -v go >/dev/null
	cd "$ROOT/sdk/go"
	GOTOOLCHAIN=local GOPROXY=off GOFLAGS=-mod=readonly suite go go test -count=1 -v ./...
	grep -q "^ok" "$LOGS/sdk-go.log"
	[ "$(grep -c -- "--- PASS: " "$LOGS/sdk-go.log")" -ge 16 ]
	no_false_skips "$LOGS/sdk-go.log"
	no_sessions
}
