#!/usr/bin/env bats
# Issue 8: ports/ — guest services exposed as host URLs and previews,
# through the tree only, against a real VM.
load lib

free_port() {
	python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

setup_file() {
	PPORT=$(free_port)
	export PPORT
	export TENKID_ARGS="--preview 127.0.0.1:$PPORT"
	start_tenkid
	echo 'name=web allow_inbound=true' >"$T/sessions/new"
	export W=$T/sessions/web
	[ "$(cat "$W/state")" = READY ]
	# A server in the guest: a directory listing, a page whose script
	# writes its text, and 100 MiB of pseudo-random bytes.
	tk_exec web 'mkdir -p /srv/www && cd /srv/www && echo hello-from-guest >hello.txt &&
		cat >page.html <<P
<!DOCTYPE html><html><head><title>tenki preview</title></head>
<body><div id=out>static</div>
<script>document.getElementById("out").textContent = "rendered-by-js " + (6*7);
document.title = "tenki preview ok";</script></body></html>
P
		head -c 104857600 /dev/urandom >big.bin && sha256sum big.bin | cut -d" " -f1 >big.sha'
	j=$(cat "$W/exec/clone")
	echo 'cd /srv/www && exec python3 -m http.server 8000 --bind 127.0.0.1' >"$W/exec/$j/cmd"
	export SERVER_JOB=$j
	# wait until the guest server answers (through a job)
	tk_exec web 'for i in $(seq 100); do curl -s -o /dev/null http://127.0.0.1:8000/ && exit 0; sleep 0.2; done; exit 1'
}
teardown_file() { cleanup_tenkid; }

url_of() { sed -n 's/^url //p' "$W/ports/$1"; }

@test "touch ports/8000: url and expires never; curl gets the listing" {
	touch "$W/ports/8000"
	[ "$(ls "$W/ports")" = 8000 ]
	grep -qx 'expires never' "$W/ports/8000"
	url=$(url_of 8000)
	[[ "$url" == http://127.0.0.1:*/ ]]
	run curl -sS --max-time 30 "$url"
	[ "$status" -eq 0 ]
	[[ "$output" == *"Directory listing"* && "$output" == *hello.txt* ]]
	[ "$(curl -sS --max-time 30 "${url}hello.txt")" = hello-from-guest ]
}

@test "the preview listener routes PORT-NAME.localhost" {
	[ "$(cat "$T/preview")" = "http://{port}-{session}.localhost:$PPORT/" ]
	grep -qx "preview http://8000-web.localhost:$PPORT/" "$W/ports/8000"
	run curl -sS --max-time 30 --resolve "8000-web.localhost:$PPORT:127.0.0.1" \
		"http://8000-web.localhost:$PPORT/hello.txt"
	[ "$output" = hello-from-guest ]
	run curl -sS --max-time 30 -H "Host: 8000-web.localhost:$PPORT" "http://127.0.0.1:$PPORT/"
	[[ "$output" == *"Directory listing"* ]]
	# unknown session or port: a 404 from tenkid itself
	code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 30 -H "Host: 8001-web.localhost" "http://127.0.0.1:$PPORT/")
	[ "$code" = 404 ]
	code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 30 -H "Host: example.com" "http://127.0.0.1:$PPORT/")
	[ "$code" = 404 ]
}
