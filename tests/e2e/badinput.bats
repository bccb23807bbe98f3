#!/usr/bin/env bats
# Issue 12, bad input everywhere: a table of writes to every writable file
# of the tree (specs, ctl verbs, sizes, durations, names, keys, oversized
# writes, binary junk, odd offsets).  Each must fail with the documented
# errno, add a line to the right err file, and change nothing.
#
# Collections and files that other parts of tenki add (ports/, volumes/,
# snapshots/, templates/) have their rows here too; a row whose file does
# not exist in this tree fails, so the table stays honest.
load lib

setup_file() {
	start_tenkid
	mkdir "$T/sessions/b1"
	j=$(cat "$T/sessions/b1/exec/clone")
	echo "$j" >"$TK/job"
}
teardown_file() { cleanup_tenkid; }

# wr PATH DATA [OFFSET]: one write(2) of DATA (Python bytes literal
# syntax, e.g. 'cpu=0\n' or '\x00\xff') at OFFSET on an O_WRONLY|O_TRUNC
# open, then close; prints OK or the errno's name.
wr() {
	python3 - "$@" <<'PY'
import errno, os, sys, ast
path, spec = sys.argv[1], sys.argv[2]
if spec.startswith("@"):  # @N: N bytes of 'x' (too big for argv)
    data = b"A=" + b"x" * int(spec[1:])
else:
    data = ast.literal_eval("b'''" + spec + "'''")
off = int(sys.argv[3]) if len(sys.argv) > 3 else 0
try:
    fd = os.open(path, os.O_WRONLY | os.O_TRUNC)
except OSError as e:
    print(errno.errorcode[e.errno]); sys.exit(0)
try:
    os.pwrite(fd, data, off)
    os.close(fd)
    print("OK")
except OSError as e:
    print(errno.errorcode[e.errno])
    try: os.close(fd)
    except OSError: pass
PY
}

# What must not change when a write is refused.
state_of() {
	cat "$T/defaults" "$T/sessions/b1/info.json" "$T/sessions/b1/env" \
		"$T/sessions/b1/ssh/authorized_keys" "$T/sessions/b1/volumes" \
		"$T/volumes/bv/info.json" 2>/dev/null
	ls "$T/sessions" "$T/volumes" "$T/snapshots"
}

# check ERRNO ERRFILE PATH DATA [OFFSET]
check() {
	local want=$1 errf=$2 path=$3 before after got n0 n1
	shift 3
	before=$(state_of)
	n0=$(wc -l <"$errf")
	got=$(wr "$path" "$@")
	n1=$(wc -l <"$errf")
	after=$(state_of)
	if [ "$got" != "$want" ]; then
		echo "write '${1:0:60}' to ${path#$T/}: got $got, want $want"
		return 1
	fi
	if [ "$n1" -le "$n0" ]; then
		echo "write '${1:0:60}' to ${path#$T/}: no line in ${errf#$T/}"
		return 1
	fi
	if [ "$before" != "$after" ]; then
		echo "write '${1:0:60}' to ${path#$T/}: something changed"
		diff <(echo "$before") <(echo "$after")
		return 1
	fi
}

BIG=$(python3 -c 'print("x" * 70000)')

@test "defaults: bad keys, values, JSON, junk, oversized" {
	e=$T/err
	check EINVAL "$e" "$T/defaults" 'cpu=0\n'
	check EINVAL "$e" "$T/defaults" 'memory=10Q\n'
	check EINVAL "$e" "$T/defaults" 'max_duration=-5\n'
	check EINVAL "$e" "$T/defaults" 'colour=blue\n'
	check EINVAL "$e" "$T/defaults" '{"cpu_cores": \n'
	check EINVAL "$e" "$T/defaults" '\x00\xff\xfe\x01'
	check EFBIG "$e" "$T/defaults" "cpu=1 $BIG"
	# Value files take writes in order, whatever their offset (like ctl).
	[ "$(wr "$T/defaults" 'cpu=1 memory=512\n' 5000)" = OK ]
	[ "$(cat "$T/defaults")" = "cpu=1 memory=512" ]
}

@test "sessions/new: names, sizes, durations, booleans, keys, junk, oversized" {
	e=$T/sessions/err
	for spec in 'name=-x' 'name=a/b' 'name=' "name=$(printf 'n%.0s' {1..70})" \
		'cpu=17' 'cpu=1.5' 'memory=511' 'memory=1T' 'allow_inbound=maybe' \
		'max_duration=0' 'max_duration=5y' 'wait_timeout=x' \
		'env=NOEQUALS' 'env==v' 'metadata=novalue' "ssh_key='ssh-rsa AAAA'" \
		'volume=data' 'volume=data:relative' 'image=../../etc' \
		'cpu=1 cpu=2' '[1,2]' '{"cpu_cores": 1' '{"cpu_cores": "x"}'; do
		check EINVAL "$e" "$T/sessions/new" "$spec\n"
	done
	check EINVAL "$e" "$T/sessions/new" '\x00\x01\x02'
	check EFBIG "$e" "$T/sessions/new" "name=x $BIG"
	[ "$(domains | wc -l)" -eq 1 ]
}

@test "a session's ctl: verbs, durations, junk, oversized, odd offsets" {
	e=$T/sessions/b1/err
	for v in dance 'extend' 'extend -5' 'extend 5y' 'extend 1h extra' \
		'pause now' 'resume 1' 'close please' '\x00\xff' \
		'snapshot' 'snapshot -bad' 'snapshot s ttl=x' \
		'attach' 'attach v relative' 'detach'; do
		check EINVAL "$e" "$T/sessions/b1/ctl" "$v\n"
	done
	check EINVAL "$e" "$T/sessions/b1/ctl" 'pause\nbogus\n'
	check EINVAL "$e" "$T/sessions/b1/ctl" 'dance\n' 4096
	check EFBIG "$e" "$T/sessions/b1/ctl" "extend 1h $BIG"
	[ "$(cat "$T/sessions/b1/state")" = READY ]
	# A good verb at an odd offset acts like any other write.
	[ "$(wr "$T/sessions/b1/ctl" 'extend 1h\n' 777)" = OK ]
}

@test "env and authorized_keys: bad lines fail the write and keep the old set" {
	echo 'KEEP=1' >"$T/sessions/b1/env"
	e=$T/sessions/b1/err
	for v in 'NOEQUALS' '=v' '1BAD=x' '\x00=\xff' 'A=1\nB'; do
		check EINVAL "$e" "$T/sessions/b1/env" "$v\n"
	done
	check EFBIG "$e" "$T/sessions/b1/env" @2000000
	[ "$(cat "$T/sessions/b1/env")" = KEEP=1 ]
	for v in 'ssh-rsa' 'ssh-rsa AAAA' 'ssh-ed25519 !!!notbase64' 'not-a-key AAAAC3NzaC1lZDI1NTE5' '\x00\xff'; do
		check EINVAL "$e" "$T/sessions/b1/ssh/authorized_keys" "$v\n"
	done
}

@test "a job's files: timeout, cwd, ctl; read-only files refuse writes" {
	j=$(cat "$TK/job")
	d=$T/sessions/b1/exec/$j
	e=$T/sessions/b1/err
	check EINVAL "$e" "$d/timeout" 'banana\n'
	check EINVAL "$e" "$d/timeout" '-5\n'
	check EINVAL "$e" "$d/timeout" '0\n'
	check EINVAL "$e" "$d/cwd" 'relative/dir\n'
	check EINVAL "$e" "$d/ctl" 'kill BOGUS\n'
	check EINVAL "$e" "$d/ctl" 'kill 99\n'
	check EINVAL "$e" "$d/ctl" 'dance\n'
	for f in "$T/version" "$T/README" "$T/sessions/index" "$T/sessions/index.json" \
		"$T/sessions/b1/id" "$T/sessions/b1/state" "$T/sessions/b1/info.json" \
		"$T/sessions/b1/console" "$d/status" "$d/info.json"; do
		[ "$(wr "$f" 'x\n')" = EACCES ] || { echo "$f accepted a write"; return 1; }
	done
}

@test "volumes/new, a volume's ctl, snapshots/new: bad specs and verbs change nothing" {
	e=$T/volumes/err
	for v in 'name=-bad size=8M' 'name=v size=0' 'name=v size=200G' \
		'name=v size=10Q' 'name=v size=8M color=red' 'name=v name=w size=8M' \
		'{"name": "v", "size": ' '{"name": ["v"]}' '\x00\xff'; do
		check EINVAL "$e" "$T/volumes/new" "$v\n"
	done
	check EFBIG "$e" "$T/volumes/new" "name=v $BIG"
	echo 'name=bv size=8M' >"$T/volumes/new"
	e=$T/volumes/bv/err
	for v in dance 'attach' 'attach b1' 'attach b1 relative' 'attach b1 /' \
		'attach b1 /data rx' 'attach b/1 /data' 'detach b1 b2' '\x00\xff' \
		'attach b1 /data\nbogus' 'pause'; do
		check EINVAL "$e" "$T/volumes/bv/ctl" "$v\n"
	done
	check ENOENT "$e" "$T/volumes/bv/ctl" 'attach nosuch /data\n'
	check EFBIG "$e" "$T/volumes/bv/ctl" "attach b1 /data $BIG"
	[ "$(cat "$T/volumes/bv/state")" = AVAILABLE ]
	e=$T/snapshots/err
	for v in 'name=s' 'name=-x session=b1' 'session=b1 ttl=x' \
		'session=b1 ttl=0' 'session=b1 color=red' '{"session": ' '\x00\xff'; do
		check EINVAL "$e" "$T/snapshots/new" "$v\n"
	done
	check ENOENT "$e" "$T/snapshots/new" 'session=nosuch\n'
	check EFBIG "$e" "$T/snapshots/new" "session=b1 $BIG"
	rmdir "$T/volumes/bv"
}
