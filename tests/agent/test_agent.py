#!/usr/bin/env python3
"""Host-side protocol tests of tenki-agent (docs/protocol.md), no VM needed.

Starts build/tenki-agent --no-init --listen on a temporary socket and speaks
the protocol to it the way tenkid does.  Standard library only.

    python3 tests/agent/test_agent.py [-v] [TestName ...]
    python3 -m unittest tests/agent/test_agent.py

Run as a script it ends with "N passed, N failed" and exits nonzero on a
failure.  TENKI_AGENT overrides the binary's path.  TENKI_AGENT_SOCK=PATH
tests an agent that is already running (e.g. in a VM, tests/agent/vm.sh)
instead of starting one; everything is then checked through the protocol.
TENKI_KEEP=1 keeps the temporary directory with the agent's log.
"""

import base64
import errno
import json
import os
import shutil
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
import unittest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
AGENT = os.environ.get("TENKI_AGENT", os.path.join(ROOT, "build", "tenki-agent"))

MAGIC = b"TNK1"
HDR = struct.Struct("<4sIIBBBB")
HELLO, REQ, RESP, EVENT, DATA, ACK, EOF, PING, PONG = range(1, 10)
WINDOW = 1 << 20
MAX_PAYLOAD = 256 * 1024

agent_proc = None
agent_dir = None  # where jobs run (cwd); exists on the agent's side
agent_sock = None
agent_log = None
next_chan = 1


def chans(n):
    """Fresh channel numbers, never reused in a run."""
    global next_chan
    first = next_chan
    next_chan += n
    return list(range(first, first + n))


def frame(ftype, chan, payload=b""):
    return HDR.pack(MAGIC, len(payload), chan, ftype, 0, 0, 0) + payload


def u64(v):
    return struct.pack("<Q", v)


def seq_bytes(a, b):
    """What `seq a b` prints."""
    return "".join("%d\n" % i for i in range(a, b + 1)).encode()


class Stream:
    def __init__(self):
        self.data = bytearray()
        self.eof = None  # final offset once EOF arrived
        self.acked = 0  # what we acknowledged
        self.top = 0  # highest offset+len seen on this connection
        self.max_inflight = 0
        self.first_offsets = []  # offsets of DATA frames, first few only

    def done(self):
        return self.eof is not None and len(self.data) == self.eof


class ProtocolError(AssertionError):
    pass


class Conn:
    """One host connection; frames are decoded and sorted as they come."""

    def __init__(self, hello=True, auto_ack=True, timeout=10.0):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        deadline = time.time() + timeout
        while True:
            try:
                sock.connect(agent_sock)
                break
            except OSError:
                if time.time() > deadline:
                    raise
                time.sleep(0.01)
        self._adopt(sock, auto_ack)
        if hello:
            self.hello()

    @classmethod
    def adopt(cls, sock):
        """A Conn on a socket the agent connected to (--port)."""
        c = cls.__new__(cls)
        c._adopt(sock)
        return c

    def _adopt(self, sock, auto_ack=True):
        self.sock = sock
        self.rbuf = bytearray()
        self.skipped = 0  # stale bytes before the agent's HELLO
        self.closed = False
        self.auto_ack = auto_ack
        self.streams = {}  # chan -> Stream, only channels we watch
        self.resps = {}
        self.events = []
        self.pongs = []
        self.hello_reply = None
        self.stdin_acks = {}  # chan -> highest ACK from the agent
        self.next_id = 1
        self.keys = []

    # -- raw I/O --
    def send(self, data):
        self.sock.sendall(data)

    def send_frame(self, ftype, chan, payload=b""):
        self.send(frame(ftype, chan, payload))

    def close(self):
        if not self.closed:
            self.sock.close()
            self.closed = True

    def _read_some(self, timeout):
        self.sock.settimeout(max(timeout, 0.001))
        try:
            chunk = self.sock.recv(1 << 20)
        except socket.timeout:
            return False
        if not chunk:
            raise EOFError("agent closed the connection")
        self.rbuf += chunk
        return True

    def skip_to_hello(self):
        """Before the agent's HELLO, drop everything up to a HELLO header.

        On a virtio port the agent cannot tell that a new host connected
        until it reads the HELLO, so the previous connection's frames (even
        a cut-off one) may come first; tenkid has to skip them the same way.
        """
        i = 0
        while True:
            i = self.rbuf.find(MAGIC, i)
            if i < 0:
                i = max(0, len(self.rbuf) - 3)
                break
            if len(self.rbuf) - i < HDR.size:
                break
            _, plen, chan, ftype, fl, r1, r2 = HDR.unpack_from(self.rbuf, i)
            if ftype == HELLO and chan == 0 and not (fl or r1 or r2) and 2 <= plen <= 65536:
                break
            i += 1
        self.skipped += i
        del self.rbuf[:i]

    def next_frame(self, timeout):
        """One decoded frame (type, chan, payload) or None on timeout."""
        deadline = time.time() + timeout
        while True:
            if self.hello_reply is None:
                self.skip_to_hello()
            if len(self.rbuf) >= HDR.size:
                magic, plen, chan, ftype, fl, r1, r2 = HDR.unpack_from(self.rbuf)
                if magic != MAGIC or fl or r1 or r2 or not 1 <= ftype <= 9:
                    raise ProtocolError("bad frame header from agent: %r" % bytes(self.rbuf[:16]))
                if ftype == DATA and plen > MAX_PAYLOAD:
                    raise ProtocolError("DATA of %d bytes" % plen)
                if len(self.rbuf) >= HDR.size + plen:
                    payload = bytes(self.rbuf[HDR.size:HDR.size + plen])
                    del self.rbuf[:HDR.size + plen]
                    return ftype, chan, payload
            left = deadline - time.time()
            if left <= 0:
                return None
            self._read_some(left)

    # -- frame handling --
    def watch(self, chan, have=b""):
        s = Stream()
        s.chan = chan
        s.data += have
        s.acked = len(have)
        self.streams[chan] = s
        return s

    def ack(self, chan, off=None):
        s = self.streams[chan]
        if off is None:
            off = len(s.data)
        s.acked = off
        self.send_frame(ACK, chan, u64(off))

    def handle(self, f):
        ftype, chan, p = f
        if ftype == DATA:
            off = struct.unpack_from("<Q", p)[0]
            data = p[8:]
            s = self.streams.get(chan)
            if s is None:
                return  # a stream of another test's job
            if off > len(s.data):
                raise ProtocolError("chan %d: gap: DATA at %d, have %d" % (chan, off, len(s.data)))
            if len(s.first_offsets) < 4:
                s.first_offsets.append(off)
            s.data += data[len(s.data) - off:]
            s.top = max(s.top, off + len(data))
            s.max_inflight = max(s.max_inflight, s.top - s.acked)
            if s.max_inflight > WINDOW:
                raise ProtocolError("chan %d: %d bytes unacknowledged" % (chan, s.max_inflight))
            if self.auto_ack:
                self.ack(chan)
        elif ftype == EOF:
            s = self.streams.get(chan)
            if s is not None:
                s.eof = struct.unpack("<Q", p)[0]
        elif ftype == ACK:
            off = struct.unpack("<Q", p)[0]
            self.stdin_acks[chan] = max(self.stdin_acks.get(chan, 0), off)
        elif ftype == RESP:
            o = json.loads(p)
            self.resps[o["id"]] = o
        elif ftype == EVENT:
            self.events.append(json.loads(p))
        elif ftype == PONG:
            self.pongs.append(p)
        elif ftype == HELLO:
            self.hello_reply = json.loads(p)
        else:
            raise ProtocolError("unexpected %d from agent" % ftype)

    def pump(self, cond, timeout=10.0, what="condition"):
        deadline = time.time() + timeout
        while not cond():
            left = deadline - time.time()
            if left <= 0:
                raise AssertionError("timed out waiting for " + what)
            f = self.next_frame(min(left, 0.2))
            if f is not None:
                self.handle(f)

    # -- protocol --
    def hello(self, **extra):
        msg = {"proto": 1, "time_ns": time.time_ns(), "hostname": "test",
               "entropy": base64.b64encode(os.urandom(32)).decode()}
        msg.update(extra)
        self.hello_reply = None
        self.send_frame(HELLO, 0, json.dumps(msg).encode())
        self.pump(lambda: self.hello_reply is not None, 30, "HELLO")
        return self.hello_reply

    def request(self, op, **args):
        rid = self.next_id
        self.next_id += 1
        args.update(id=rid, op=op)
        self.send_frame(REQ, 0, json.dumps(args).encode())
        return rid

    def call(self, op, timeout=10.0, **args):
        rid = self.request(op, **args)
        self.pump(lambda: rid in self.resps, timeout, "answer to " + op)
        return self.resps.pop(rid)

    def exec(self, key, argv, stdin=True, **args):
        """exec with fresh channels; returns (answer, stdout, stderr, stdin channel)."""
        cin, cout, cerr = chans(3)
        args.setdefault("cwd", agent_dir)
        if stdin:
            args["stdin"] = cin
        r = self.call("exec", job=key, argv=argv, stdout=cout, stderr=cerr, **args)
        if "pid" in r:
            self.keys.append(key)
        return r, self.watch(cout), self.watch(cerr), cin

    def exit_of(self, key):
        for e in self.events:
            if e.get("event") == "exit" and e.get("job") == key:
                return e
        return None

    def wait_exit(self, key, timeout=10.0):
        self.pump(lambda: self.exit_of(key) is not None, timeout, "exit of " + key)
        return self.exit_of(key)

    def wait_done(self, key, *streams, timeout=10.0):
        self.pump(lambda: self.exit_of(key) is not None and all(s.done() for s in streams),
                  timeout, "end of " + key)
        return self.exit_of(key)

    def run(self, key, argv, stdin_data=None, **args):
        r, out, err, cin = self.exec(key, argv, stdin=stdin_data is not None, **args)
        assert "pid" in r, r
        if stdin_data is not None:
            self.send_stdin(cin, stdin_data)
        e = self.wait_done(key, out, err)
        return e, bytes(out.data), bytes(err.data)

    def send_stdin(self, chan, data, eof=True):
        """Send data within the agent's window, then EOF."""
        sent = 0
        while sent < len(data):
            room = WINDOW - (sent - self.stdin_acks.get(chan, 0))
            if room <= 0:
                f = self.next_frame(1.0)
                if f is not None:
                    self.handle(f)
                continue
            n = min(room, MAX_PAYLOAD - 8, len(data) - sent)
            self.send_frame(DATA, chan, u64(sent) + data[sent:sent + n])
            sent += n
        if eof:
            self.send_frame(EOF, chan, u64(len(data)))

    def ping(self, payload=b"ping"):
        self.pongs = []
        self.send_frame(PING, 0, payload)
        self.pump(lambda: payload in self.pongs, 5, "PONG")

    def alive(self, pid):
        """Is pid running (not gone, not a zombie) where the agent runs?"""
        script = ('test -e /proc/%d || exit 1; '
                  'grep -q "^State:.*Z" /proc/%d/status && exit 1; exit 0' % (pid, pid))
        key = "probe-%d-%d" % (pid, time.monotonic_ns())
        e, _, _ = self.run(key, ["sh", "-c", script])
        self.call("forget", job=key)
        self.keys.remove(key)
        return e["exit_code"] == 0

    def wait_gone(self, pid, timeout=3.0):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if not self.alive(pid):
                return True
            time.sleep(0.05)
        return False

    def forget_all(self):
        for key in self.keys:
            r = self.call("forget", job=key)
            if r.get("errno") == errno.EBUSY:
                self.call("signal", job=key, signal=9)
                self.wait_exit(key)
                self.call("forget", job=key)
        self.keys = []


def setUpModule():
    global agent_proc, agent_dir, agent_sock, agent_log
    if os.environ.get("TENKI_AGENT_SOCK"):
        agent_sock = os.environ["TENKI_AGENT_SOCK"]
        agent_dir = "/tmp"
        return
    if not os.path.exists(AGENT):
        subprocess.check_call(["make", "-C", ROOT, "build/tenki-agent"],
                              stdout=subprocess.DEVNULL)
    agent_dir = tempfile.mkdtemp(prefix="tenki-agent-test.")
    agent_sock = os.path.join(agent_dir, "agent.sock")
    agent_log = open(os.path.join(agent_dir, "agent.log"), "w+")
    agent_proc = subprocess.Popen([AGENT, "--no-init", "--listen", agent_sock],
                                  stdin=subprocess.DEVNULL, stdout=agent_log,
                                  stderr=agent_log)
    deadline = time.time() + 5
    while not os.path.exists(agent_sock):
        if time.time() > deadline or agent_proc.poll() is not None:
            raise RuntimeError("agent did not start")
        time.sleep(0.01)


def tearDownModule():
    if agent_proc is None:
        return
    if agent_proc.poll() is None:
        agent_proc.terminate()
        try:
            agent_proc.wait(5)
        except subprocess.TimeoutExpired:
            agent_proc.kill()
            agent_proc.wait()
    agent_log.close()
    if not os.environ.get("TENKI_KEEP"):
        shutil.rmtree(agent_dir, ignore_errors=True)


def agent_alive():
    if agent_proc is None:
        try:
            Conn().close()
            return True
        except OSError:
            return False
    return agent_proc.poll() is None


def agent_log_tail():
    if agent_log is None:
        return "(no log: external agent)"
    agent_log.flush()
    with open(agent_log.name) as f:
        return f.read()[-3000:]


class AgentTest(unittest.TestCase):
    def setUp(self):
        self.conns = []

    def conn(self, **kw):
        c = Conn(**kw)
        self.conns.append(c)
        return c

    def tearDown(self):
        for c in self.conns:
            c.close()
        alive = agent_alive()
        if alive and any(c.keys for c in self.conns):
            c = Conn()
            c.keys = [k for old in self.conns for k in old.keys]
            c.forget_all()
            c.close()
        self.assertTrue(alive, "agent died:\n" + agent_log_tail())


class Handshake(AgentTest):
    def test_hello(self):
        c = self.conn(hello=False)
        h = c.hello()
        self.assertEqual(h["proto"], 1)
        self.assertEqual(h["agent"], "tenki-agent 0.1.0")
        _, boot_id, _ = c.run("boot-id", ["cat", "/proc/sys/kernel/random/boot_id"])
        self.assertEqual(h["boot_id"], boot_id.decode().strip())
        self.assertIsInstance(h["jobs"], list)
        c.ping(b"\x00\x01abc")

    def test_garbage_before_hello(self):
        c = self.conn(hello=False)
        junk = bytes(b for b in os.urandom(5000) if b not in b"T")
        stale_req = frame(REQ, 0, b'{"id":777,"op":"info"}')
        half_frame = frame(REQ, 0, b'{"id":778,"op":"info"}')[:20]
        cut_data = HDR.pack(MAGIC, 200000, 5, DATA, 0, 0, 0) + u64(0) + b"x" * 100
        c.send(junk + b"TNK" + junk[:100] + stale_req + b"TN" + half_frame + cut_data)
        time.sleep(0.05)
        c.hello()
        c.ping()
        self.assertNotIn(777, c.resps)
        self.assertNotIn(778, c.resps)
        self.assertIn("time_ns", c.call("info"))

    def test_version_mismatch(self):
        c = self.conn(hello=False)
        c.send_frame(HELLO, 0, b'{"proto":99}')
        c.pump(lambda: c.hello_reply is not None, what="HELLO")
        self.assertEqual(c.hello_reply["proto"], 1)
        # The agent ends the session: a socket closes; a virtio port cannot,
        # so there it ignores everything up to the next HELLO.
        try:
            c.send_frame(PING, 0, b"after")
            c.pump(lambda: False, 1)
            self.fail("agent kept the session")
        except (EOFError, BrokenPipeError, ConnectionResetError):
            return
        except AssertionError as e:
            if "kept the session" in str(e):
                raise
        self.assertEqual(c.pongs, [])
        c.hello()
        c.ping()
        c.close()  # a virtio channel serves one host connection at a time

    def test_ops(self):
        c = self.conn()
        info = c.call("info")
        for k in ("time_ns", "uptime_ms", "cpus", "mem_kb"):
            self.assertIsInstance(info[k], int, k)
        self.assertGreater(info["cpus"], 0)
        self.assertEqual(c.call("sync"), {"id": 2})


class Exec(AgentTest):
    def test_exit_code_and_streams(self):
        c = self.conn()
        e, out, err = c.run("basic", ["sh", "-c", "echo hi; echo err >&2; exit 3"])
        self.assertEqual((out, err), (b"hi\n", b"err\n"))
        self.assertEqual(e["exit_code"], 3)
        self.assertNotIn("signal", e)
        self.assertNotIn("timed_out", e)

    def test_argv_unchanged(self):
        args = ["a b", "it's", 'say "hi"', "", "  lead", "back\\slash", "$HOME", "*", "ünï"]
        c = self.conn()
        e, out, _ = c.run("argv", ["printf", "[%s]\\n"] + args)
        self.assertEqual(out.decode(), "".join("[%s]\n" % a for a in args))
        self.assertEqual(e["exit_code"], 0)

    def test_environment(self):
        c = self.conn()
        _, out, _ = c.run("env", ["sh", "-c", 'echo "$HOME|$USER|$LANG|$FOO|$PATH"'],
                          env=["FOO=bar=baz", "USER=alice"])
        self.assertEqual(out, b"/home/tenki|alice|C.UTF-8|bar=baz|"
                              b"/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\n")

    def test_cwd(self):
        c = self.conn()
        _, out, _ = c.run("cwd", ["pwd"], cwd="/usr")
        self.assertEqual(out, b"/usr\n")

    def test_stdin_wc(self):
        c = self.conn()
        r, out, err, cin = c.exec("wc", ["wc", "-l"])
        c.send_stdin(cin, b"a\nb\nc\n")
        e = c.wait_done("wc", out, err)
        self.assertEqual(out.data.strip(), b"3")
        self.assertEqual(e["exit_code"], 0)
        c.pump(lambda: c.stdin_acks.get(cin) == 6, 2, "stdin ACK")

    def test_stdin_bulk_cat(self):
        data = os.urandom(3 * WINDOW + 12345)
        c = self.conn()
        e, out, _ = c.run("cat", ["cat"], stdin_data=data)
        self.assertEqual(out, data)

    def test_unread_stdin_blocks_nothing(self):
        c = self.conn()
        r, out, err, cin = c.exec("lazy", ["sleep", "0.5"])
        # A full window the job never reads: it must not hold anything up.
        c.send_stdin(cin, b"x" * WINDOW, eof=False)
        t = time.time()
        _, o2, _ = c.run("quick", ["echo", "ok"])
        self.assertEqual(o2, b"ok\n")
        self.assertLess(time.time() - t, 0.45)
        c.wait_done("lazy", out, err)
        c.pump(lambda: c.stdin_acks.get(cin) == WINDOW, 3, "stdin ACK after exit")

    def test_missing_program(self):
        c = self.conn()
        r, _, _, _ = c.exec("nope", ["no-such-program-xyz", "arg"])
        self.assertEqual(r["errno"], errno.ENOENT)
        self.assertEqual(r["error"], "no-such-program-xyz: command not found")
        r, _, _, _ = c.exec("nope", ["/no/such/file"])
        self.assertEqual(r["errno"], errno.ENOENT)
        self.assertEqual(r["error"], "/no/such/file: No such file or directory")

    def test_missing_cwd(self):
        c = self.conn()
        r, _, _, _ = c.exec("nocwd", ["true"], cwd="/nope")
        self.assertEqual(r["errno"], errno.ENOENT)
        self.assertEqual(r["error"], "cwd /nope: No such file or directory")

    def test_permission_denied(self):
        path = os.path.join(agent_dir, "not-executable")
        c = self.conn()
        c.run("mkfile", ["sh", "-c", 'echo "echo no" > "$1" && chmod 644 "$1"', "sh", path])
        r, _, _, _ = c.exec("noexec", [path])
        self.assertEqual(r["errno"], errno.EACCES)
        self.assertIn("Permission denied", r["error"])
        # The failed key is not held: it can be used again.
        _, out, _ = c.run("noexec", ["echo", "fine"])
        self.assertEqual(out, b"fine\n")

    def test_streams_end_two_seconds_after_exit(self):
        c = self.conn()
        r, out, err, _ = c.exec("bg", ["sh", "-c", "sleep 5 & echo $!"], stdin=False)
        e = c.wait_exit("bg")
        t_exit = time.time()
        self.assertEqual(e["exit_code"], 0)
        c.pump(lambda: out.done() and err.done(), 5, "EOF")
        waited = time.time() - t_exit
        self.assertTrue(1.5 < waited < 3.5, waited)
        bg = int(out.data)
        self.assertTrue(c.alive(bg), "background child must keep running")
        c.run("killbg", ["kill", "-9", str(bg)])

    def test_fifty_concurrent_jobs(self):
        c = self.conn()
        jobs = []
        for i in range(50):
            a = i * 1000 + 1
            lo, hi = a, a + 20000 + 97 * i
            elo, ehi = a + 7, a + 3000 + 13 * i
            argv = ["sh", "-c", "seq %d %d; seq %d %d >&2; exit %d" % (lo, hi, elo, ehi, i % 7)]
            r, out, err, _ = c.exec("many-%d" % i, argv, stdin=False)
            self.assertIn("pid", r)
            jobs.append((i, out, err, seq_bytes(lo, hi), seq_bytes(elo, ehi)))
        for i, out, err, want_out, want_err in jobs:
            e = c.wait_done("many-%d" % i, out, err, timeout=30)
            self.assertEqual(e["exit_code"], i % 7)
            self.assertEqual(bytes(out.data), want_out, "stdout of job %d" % i)
            self.assertEqual(bytes(err.data), want_err, "stderr of job %d" % i)


class Kill(AgentTest):
    def test_timeout_kills_group(self):
        c = self.conn()
        r, out, err, _ = c.exec("slow", ["sh", "-c", "sleep 30 & echo $!; wait"],
                                stdin=False, timeout_ms=500)
        t = time.time()
        e = c.wait_done("slow", out, err)
        self.assertTrue(0.4 < time.time() - t < 2.0)
        self.assertEqual(e.get("timed_out"), True)
        self.assertEqual(e["signal"], 15)
        self.assertTrue(c.wait_gone(int(out.data)), "the background sleep survived")

    def test_timeout_escalates_to_sigkill(self):
        c = self.conn()
        r, out, err, _ = c.exec("stubborn", ["sh", "-c", "trap '' TERM; sleep 30"],
                                stdin=False, timeout_ms=300)
        t = time.time()
        e = c.wait_done("stubborn", out, err)
        self.assertTrue(2.0 < time.time() - t < 4.0)
        self.assertEqual(e["signal"], 9)
        self.assertTrue(e["timed_out"])

    def test_signal_whole_group(self):
        c = self.conn()
        r, out, err, _ = c.exec("sig", ["sh", "-c", "sleep 30 & echo $!; sleep 30"], stdin=False)
        c.pump(lambda: out.data.endswith(b"\n"), 5, "pid")
        self.assertEqual(c.call("signal", job="sig", signal=15), {"id": c.next_id - 1})
        e = c.wait_done("sig", out, err)
        self.assertEqual(e["signal"], 15)
        self.assertNotIn("timed_out", e)
        self.assertTrue(c.wait_gone(int(out.data)))
        r = c.call("signal", job="sig", signal=15)
        self.assertEqual(r["errno"], errno.ESRCH)


class FlowControl(AgentTest):
    def test_window_with_slow_acks(self):
        n = 6_700_000  # `seq 1 n` prints a little over 50 MiB
        want = seq_bytes(1, n)
        self.assertGreater(len(want), 50 * 1024 * 1024)
        c = self.conn(auto_ack=False)
        r, out, err, _ = c.exec("big", ["seq", "1", str(n)], stdin=False)
        acks = 0
        deadline = time.time() + 40
        while not (out.done() and err.done()):
            self.assertLess(time.time(), deadline, "stalled")
            f = c.next_frame(0.5)
            if f is not None:
                c.handle(f)
            # A slow consumer: ACK only when 3/4 of the window is out, after
            # a pause, and then only half of what we hold, so the agent
            # keeps pressing against the window.
            unacked = len(out.data) - out.acked
            if unacked >= 3 * WINDOW // 4:
                time.sleep(0.002)
                c.ack(out.chan, out.acked + unacked // 2)
                acks += 1
            elif out.eof is not None and unacked:
                c.ack(out.chan)
            if err.eof is not None and err.acked < len(err.data):
                c.ack(err.chan)
        self.assertEqual(len(out.data), len(want))
        self.assertTrue(bytes(out.data) == want, "50 MiB stream differs")
        self.assertLessEqual(out.max_inflight, WINDOW)
        self.assertGreater(out.max_inflight, WINDOW - MAX_PAYLOAD)
        self.assertGreater(acks, 50)
        c.wait_exit("big")


class Reconnect(AgentTest):
    def test_resume_mid_stream(self):
        n = 3_000_000
        want = seq_bytes(1, n)
        c1 = self.conn(auto_ack=False)
        r, out, err, _ = c1.exec("resume", ["seq", "1", str(n)], stdin=False)
        cout, cerr = out.chan, err.chan
        c1.pump(lambda: len(out.data) >= WINDOW // 2, what="first half MiB")
        c1.ack(cout, WINDOW // 2)
        c1.pump(lambda: len(out.data) >= WINDOW + 1000, what="1 MiB")
        have = bytes(out.data)  # what the host wrote to disk
        c1.close()

        c2 = self.conn(hello=False)
        c2.keys = ["resume"]
        out2 = c2.watch(cout, have)
        out2.acked = WINDOW // 2
        err2 = c2.watch(cerr)
        h = c2.hello()
        held = {j["job"]: j for j in h["jobs"]}
        self.assertIn("resume", held)
        self.assertEqual(held["resume"]["pid"], r["pid"])
        c2.wait_done("resume", out2, err2, timeout=20)
        # The agent re-sent from the last ACK, not from what it had sent.
        self.assertEqual(out2.first_offsets[0], WINDOW // 2)
        self.assertTrue(bytes(out2.data) == want, "stream differs after reconnect")
        self.assertEqual(len([e for e in c2.events if e.get("job") == "resume"]), 1)

    def test_job_ends_while_disconnected(self):
        c1 = self.conn()
        r, out, err, _ = c1.exec("offline", ["sh", "-c", "sleep 0.3; echo done; exit 5"], stdin=False)
        cout = out.chan
        c1.close()
        time.sleep(0.6)
        c2 = self.conn(hello=False)
        c2.keys = ["offline"]
        out2 = c2.watch(cout)
        h = c2.hello()
        held = {j["job"]: j for j in h["jobs"]}
        self.assertFalse(held["offline"]["running"])
        e = c2.wait_done("offline", out2)
        self.assertEqual(e["exit_code"], 5)
        self.assertEqual(bytes(out2.data), b"done\n")
        c2.close()
        # Until forgotten, every new connection hears of the exit again.
        c3 = self.conn()
        c3.keys = ["offline"]
        c3.wait_exit("offline")
        self.assertEqual(c3.call("forget", job="offline"), {"id": 1})
        c3.keys = []
        c3.close()
        h = self.conn().hello_reply
        self.assertNotIn("offline", [j["job"] for j in h["jobs"]])


    def test_quick_reconnects(self):
        # A host that drops and reconnects at once, again and again: every
        # HELLO is answered (on virtio this races the port's state change).
        for i in range(30):
            c = Conn()
            r, _, _, _ = c.exec("q", ["no-such-program-xyz"])
            self.assertEqual(r["errno"], errno.ENOENT)
            c.close()


class Malformed(AgentTest):
    def expect_dropped(self, data):
        """The agent ends the session: it closes a socket; on a virtio port
        it ignores everything until the next HELLO."""
        c = self.conn()
        c.send(data)
        try:
            c.send_frame(PING, 0, b"after")
            c.pump(lambda: False, 1 if agent_proc is None else 3)
        except (EOFError, BrokenPipeError, ConnectionResetError):
            return
        except AssertionError:
            pass
        self.assertIsNone(agent_proc, "socket not closed after %r" % data[:20])
        self.assertEqual(c.pongs, [])
        c.hello()
        c.ping()
        c.close()  # a virtio channel serves one host connection at a time

    def test_bad_frames_drop_connection(self):
        bad = [
            b"XXXX" + frame(PING, 0, b"x")[4:],  # magic
            HDR.pack(MAGIC, 0, 0, 77, 0, 0, 0),  # type
            HDR.pack(MAGIC, 1, 0, PING, 1, 0, 0) + b"x",  # flags
            HDR.pack(MAGIC, 0, 0, PING, 0, 0, 9),  # reserved
            HDR.pack(MAGIC, MAX_PAYLOAD + 1, 5, DATA, 0, 0, 0),  # length
            HDR.pack(MAGIC, 4, 5, ACK, 0, 0, 0) + b"1234",  # short ACK
            frame(DATA, 0, u64(0) + b"x"),  # DATA on channel 0
            frame(REQ, 3, b"{}"),  # REQ on a data channel
            HDR.pack(MAGIC, 0xFFFFFFFF, 0, REQ, 0, 0, 0),  # huge
        ]
        for data in bad:
            self.expect_dropped(data)
        c = self.conn()
        c.ping()

    def test_bad_requests_answered(self):
        c = self.conn()
        c.send_frame(REQ, 0, b"{not json")
        c.send_frame(REQ, 0, b"[1,2]")
        c.send_frame(REQ, 0, b'{"op":"info"}')
        c.ping()
        self.assertEqual(c.resps, {})

        def err(op, **a):
            return c.call(op, **a).get("errno")

        self.assertEqual(c.call("", **{}).get("errno"), errno.ENOSYS)
        rid = c.next_id
        c.next_id += 1
        c.send_frame(REQ, 0, json.dumps({"id": rid}).encode())
        c.pump(lambda: rid in c.resps)
        self.assertEqual(c.resps.pop(rid)["errno"], errno.EINVAL)
        self.assertEqual(err("frobnicate"), errno.ENOSYS)
        good = dict(job="k", argv=["true"], cwd="/", stdout=chans(1)[0])
        for bad in [dict(argv="true"), dict(argv=[]), dict(argv=[1]), dict(argv=[""]),
                    dict(argv=["a\u0000b"]), dict(job="a b"), dict(job=""), dict(job="x" * 65),
                    dict(job=5), dict(stdout=0), dict(stdout=-1), dict(stdout=2 ** 31),
                    dict(stdin=7, stderr=7), dict(timeout_ms=-1), dict(timeout_ms="1"),
                    dict(env=["NOEQUALS"]), dict(env=["=x"]), dict(env="A=b"), dict(cwd=3)]:
            a = dict(good)
            a.update(bad)
            self.assertEqual(err("exec", **a), errno.EINVAL, bad)
        self.assertEqual(err("signal", job="none", signal=9), errno.ENOENT)
        self.assertEqual(err("signal", job="k", signal=999), errno.EINVAL)
        self.assertEqual(err("signal", job="k"), errno.EINVAL)
        self.assertEqual(err("forget", job="none"), errno.ENOENT)
        self.assertEqual(err("forget"), errno.EINVAL)

        r, out, errs, cin = c.exec("dup", ["sleep", "30"])
        self.assertIn("pid", r)
        self.assertEqual(c.exec("dup", ["true"])[0]["errno"], errno.EEXIST)
        taken = dict(good, job="other", stdout=out.chan)
        self.assertEqual(err("exec", **taken), errno.EEXIST)
        self.assertEqual(err("forget", job="dup"), errno.EBUSY)
        # Frames for channels nobody owns, a gap and a stale ACK: ignored.
        c.send_frame(DATA, 99999, u64(0) + b"x")
        c.send_frame(ACK, 99998, u64(5))
        c.send_frame(EOF, 99997, u64(5))
        c.send_frame(DATA, cin, u64(1000) + b"gap")
        c.send_frame(ACK, out.chan, u64(1 << 40))
        c.send_frame(RESP, 0, b'{"id":1}')
        c.send_frame(PONG, 0, b"")
        c.ping()
        c.call("signal", job="dup", signal=9)
        c.wait_exit("dup")
        self.assertEqual(c.call("info")["jobs"] >= 1, True)


    def test_random_frames(self):
        # Well-framed nonsense: odd field types and values, frames for live
        # and unknown channels.  The agent must answer or ignore, not crash.
        import random
        rnd = random.Random(1234)
        c = self.conn()
        r, out, err, cin = c.exec("fuzz-live", ["cat"])
        live = [cin, out.chan, err.chan]
        values = [None, True, 0, -1, 1, 2 ** 31, 2 ** 63 - 1, -2 ** 63, 1.5, "", "x" * 70,
                  "fuzz-live", "ok.key", [], ["true"], ["echo", "a"], [1, 2], {}, {"a": 1}]
        safe_argv = [["true"], ["echo", "fuzz"], ["sleep", "0"], [], ["no-such-fuzz"], "true", 7]
        ops = ["exec", "signal", "forget", "sync", "info", "nope", "", 5, None]
        fields = ["job", "argv", "env", "cwd", "timeout_ms", "stdin", "stdout", "stderr", "signal"]
        n_exec = 0
        for i in range(1500):
            kind = rnd.random()
            if kind < 0.6:
                req = {"id": i + 1000, "op": rnd.choice(ops)}
                for f in rnd.sample(fields, rnd.randint(0, len(fields))):
                    req[f] = rnd.choice(safe_argv) if f == "argv" else rnd.choice(values)
                if req["op"] == "exec" and isinstance(req.get("job"), str):
                    req["job"] = "fz%d" % i  # keys that cleanup can find
                    c.keys.append(req["job"])
                    n_exec += 1
                if req["op"] in ("signal",) and req.get("signal") not in (None, 0):
                    req["signal"] = 0  # probe only: do not kill the harness's jobs
                c.send_frame(REQ, 0, json.dumps(req).encode())
            elif kind < 0.9:
                chan = rnd.choice(live + [rnd.randint(1, 2 ** 31 - 1)])
                ftype = rnd.choice([DATA, ACK, EOF])
                if ftype == DATA:
                    payload = u64(rnd.choice([0, 1, 5, 2 ** 40, 2 ** 64 - 1])) + os.urandom(rnd.randint(0, 64))
                else:
                    payload = u64(rnd.choice([0, 1, 7, 2 ** 20, 2 ** 64 - 1]))
                c.send_frame(ftype, chan, payload)
            else:
                c.send_frame(PING, 0, os.urandom(rnd.randint(0, 64)))
            if i % 100 == 0:
                f = c.next_frame(0)
                while f is not None:
                    c.handle(f)
                    f = c.next_frame(0)
        c.ping(b"survived")
        self.assertGreater(n_exec, 3)
        c.call("signal", job="fuzz-live", signal=9)


@unittest.skipIf(os.environ.get("TENKI_AGENT_SOCK"), "starts an agent of its own")
class PortMode(unittest.TestCase):
    """--port PATH: the agent connects out, and again after each close."""

    def test_connects_and_reconnects(self):
        path = os.path.join(agent_dir, "host.sock")
        lsock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        lsock.bind(path)
        lsock.listen(1)
        lsock.settimeout(5)
        proc = subprocess.Popen([AGENT, "--no-init", "--port", path],
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        try:
            for round in range(2):
                s, _ = lsock.accept()
                c = Conn.adopt(s)
                h = c.hello()
                if round == 0:
                    self.assertEqual(h["jobs"], [])
                    _, out, _ = c.run("viaport", ["echo", "port"])
                    self.assertEqual(out, b"port\n")
                else:
                    self.assertEqual([j["job"] for j in h["jobs"]], ["viaport"])
                    self.assertEqual(c.call("forget", job="viaport"), {"id": 1})
                c.close()
        finally:
            proc.terminate()
            proc.wait(5)
            lsock.close()


@unittest.skipUnless(os.environ.get("TENKI_AGENT_SOCK"), "needs the agent as PID 1 (tests/agent/vm.sh)")
class Guest(AgentTest):
    """PID 1 duties, checked inside a real guest."""

    def sh(self, c, script, **args):
        key = "guest-%d" % time.monotonic_ns()
        e, out, err = c.run(key, ["sh", "-c", script], **args)
        self.assertEqual(e.get("exit_code"), 0, err)
        return out.decode()

    def test_init(self):
        c = self.conn()
        self.assertIn("tenki-agent", self.sh(c, "cat /proc/1/cmdline"))
        self.assertEqual(self.sh(c, "hostname").strip(), "test")
        self.assertLess(abs(int(self.sh(c, "date +%s")) - time.time()), 5)
        mounts = self.sh(c, "cat /proc/mounts")
        for where, fs in [("/proc", "proc"), ("/sys", "sysfs"), ("/dev", "devtmpfs"),
                          ("/dev/pts", "devpts"), ("/dev/shm", "tmpfs"), ("/run", "tmpfs")]:
            self.assertRegex(mounts, r"(?m)^\S+ %s %s " % (where, fs))
        self.assertEqual(self.sh(c, "readlink /dev/fd").strip(), "/proc/self/fd")
        self.assertEqual(self.sh(c, "pwd; echo $HOME", cwd=None).split(), ["/home/tenki"] * 2)

    def test_network(self):
        c = self.conn()
        self.assertIn("UP", self.sh(c, "ip link show lo"))
        if "eth0" not in self.sh(c, "ls /sys/class/net"):
            self.skipTest("no NIC")
        self.assertIn("inet 10.0.2.15/24", self.sh(c, "ip -4 addr show eth0"))
        self.assertIn("default via 10.0.2.2", self.sh(c, "ip route"))

    def test_pid1_ignores_terminal_signals(self):
        c = self.conn()
        self.sh(c, "kill -TERM 1; kill -INT 1; kill -HUP 1; sleep 0.2")
        c.ping()
        self.assertIn("time_ns", c.call("info"))

    def test_orphans_reaped(self):
        c = self.conn()
        self.sh(c, "for i in 1 2 3 4 5; do (sleep 0.2 &) ; done")
        time.sleep(1)
        states = self.sh(c, "ps -eo stat=,comm=")
        self.assertNotRegex(states, r"(?m)^Z", states)


class Perf(AgentTest):
    def test_zz_round_trip_and_throughput(self):
        c = self.conn()
        times = []
        for i in range(40):
            t = time.perf_counter()
            e, out, err = c.run("rt-%d" % i, ["true"])
            times.append(time.perf_counter() - t)
            c.call("forget", job="rt-%d" % i)
            c.keys.remove("rt-%d" % i)
        size = 200 * 1024 * 1024
        t = time.perf_counter()
        r, out, err, _ = c.exec("thr", ["head", "-c", str(size), "/dev/zero"], stdin=False)
        c.wait_done("thr", out, err, timeout=60)
        dt = time.perf_counter() - t
        self.assertEqual(len(out.data), size)
        self.assertEqual(out.data.count(0), size)
        sys.stderr.write("\n  exec round trip of `true`: median %.2f ms, p90 %.2f ms\n"
                         "  200 MiB over %s: %.2f s, %.0f MiB/s ... " % (
                             statistics.median(times) * 1e3,
                             sorted(times)[int(len(times) * 0.9)] * 1e3,
                             "--listen" if agent_proc else "the agent's channel", dt, 200 / dt))


def main():
    argv = [a for a in sys.argv[1:] if not a.startswith("-")]
    verbosity = 2 if "-v" in sys.argv else 1
    loader = unittest.TestLoader()
    mod = sys.modules[__name__]
    suite = loader.loadTestsFromNames(argv, mod) if argv else loader.loadTestsFromModule(mod)
    t = time.time()
    result = unittest.TextTestRunner(verbosity=verbosity).run(suite)
    failed = len(result.failures) + len(result.errors)
    passed = result.testsRun - failed - len(result.skipped)
    print("%d passed, %d failed (%.1f s)" % (passed, failed, time.time() - t))
    sys.exit(1 if failed or not result.wasSuccessful() else 0)


if __name__ == "__main__":
    main()
