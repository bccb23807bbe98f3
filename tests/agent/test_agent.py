#!/usr/bin/env python3
"""Host-side protocol tests of tenki-agent (docs/protocol.md), no VM needed.

Starts build/tenki-agent --no-init --listen on a temporary socket (and
--home on a temporary directory, which files/ operations serve) and speaks
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
import stat
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
HELLO, REQ, RESP, EVENT, DATA, ACK, EOF, PING, PONG, FSREQ, FSRESP, FSNOTIFY = range(1, 13)
WINDOW = 1 << 20
MAX_PAYLOAD = 256 * 1024
MAX_FS = (1 << 20) + 4096  # FSREQ and FSRESP payloads
FS_IO_MAX = 1 << 20

agent_proc = None
agent_dir = None  # where jobs run (cwd); exists on the agent's side
agent_sock = None
agent_log = None
agent_home = "/home/tenki"  # what files/ serves; a temporary one on the host
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
        self.fsresps = {}  # id -> (err, result)
        self.fs_answered = set()  # every id answered on this connection
        self.notes = []  # FSNOTIFY records: (kind, nid, name)

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
                if magic != MAGIC or fl or r1 or r2 or not 1 <= ftype <= 12:
                    raise ProtocolError("bad frame header from agent: %r" % bytes(self.rbuf[:16]))
                if ftype == DATA and plen > MAX_PAYLOAD:
                    raise ProtocolError("DATA of %d bytes" % plen)
                if ftype == FSRESP and not 12 <= plen <= MAX_FS:
                    raise ProtocolError("FSRESP of %d bytes" % plen)
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
            ev = json.loads(p)
            ev["_notes"] = len(self.notes)  # records that came before it
            self.events.append(ev)
        elif ftype == FSNOTIFY:
            if not self.hello_reply or not self.hello_reply.get("fs_notify"):
                raise ProtocolError("FSNOTIFY without fs_notify")
            i = 0
            while i < len(p):
                kind, nid, nlen = struct.unpack_from("<IQH", p, i)
                i += 14
                name = bytes(p[i:i + nlen]).decode()
                i += nlen
                if i > len(p) or kind not in (1, 2, 3):
                    raise ProtocolError("bad FSNOTIFY record")
                self.notes.append((kind, nid, name))
        elif ftype == PONG:
            self.pongs.append(p)
        elif ftype == HELLO:
            self.hello_reply = json.loads(p)
        elif ftype == FSRESP:
            rid, err = struct.unpack_from("<Qi", p)
            if rid in self.fs_answered:
                raise ProtocolError("second answer to fs request %d" % rid)
            self.fs_answered.add(rid)
            self.fsresps[rid] = (err, p[12:])
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

    def fs_send(self, op, body=b"", reserved=0):
        """Send one FSREQ; returns its id."""
        rid = self.next_id
        self.next_id += 1
        self.send_frame(FSREQ, 0, struct.pack("<QII", rid, op, reserved) + body)
        return rid

    def fs_wait(self, rid, timeout=10.0):
        self.pump(lambda: rid in self.fsresps, timeout, "fs answer %d" % rid)
        return self.fsresps.pop(rid)

    def fs(self, op, body=b"", **kw):
        """(errno, result) of one file operation."""
        return self.fs_wait(self.fs_send(op, body, **kw))

    def fs_many(self, reqs, window=256):
        """Pipelined (op, body) requests; their (errno, result)s in order.
        At most window in flight: an agent with a full queue stops
        reading, and a host that only writes would never see it drain."""
        rids, out = [], []
        for op, body in reqs:
            rids.append(self.fs_send(op, body))
            if len(rids) - len(out) >= window:
                out.append(self.fs_wait(rids[len(out)], 30))
        while len(out) < len(rids):
            out.append(self.fs_wait(rids[len(out)], 30))
        return out

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
    global agent_proc, agent_dir, agent_sock, agent_log, agent_home
    if os.environ.get("TENKI_AGENT_SOCK"):
        agent_sock = os.environ["TENKI_AGENT_SOCK"]
        agent_dir = "/tmp"
        return
    if not os.path.exists(AGENT):
        subprocess.check_call(["make", "-C", ROOT, "build/tenki-agent"],
                              stdout=subprocess.DEVNULL)
    agent_dir = tempfile.mkdtemp(prefix="tenki-agent-test.")
    agent_sock = os.path.join(agent_dir, "agent.sock")
    agent_home = os.path.join(agent_dir, "home")  # the agent makes it
    agent_log = open(os.path.join(agent_dir, "agent.log"), "w+")
    agent_proc = subprocess.Popen([AGENT, "--no-init", "--listen", agent_sock,
                                   "--home", agent_home],
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


class TcpServer:
    """A one-connection-at-a-time server on the agent's loopback (the agent
    runs on this host here).  handler(sock) runs in a thread per client."""

    def __init__(self, handler, family=socket.AF_INET, addr="127.0.0.1"):
        import threading
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((addr, 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.handler = handler
        self.errors = []
        self.results = []
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        import threading
        while True:
            try:
                s, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._one, args=(s,), daemon=True).start()

    def _one(self, s):
        try:
            self.results.append(self.handler(s))
        except Exception as e:  # reported by the test
            self.errors.append(e)
        finally:
            s.close()

    def close(self):
        self.sock.close()


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def echo_until_eof(s):
    """Echo everything, then after the client's EOF say bye and close."""
    n = 0
    while True:
        b = s.recv(65536)
        if not b:
            break
        s.sendall(b)
        n += len(b)
    s.sendall(b"bye")
    return n


class Connect(AgentTest):
    def open(self, c, port, data=b""):
        tx, rx = chans(2)
        rid = c.request("connect", port=port, tx=tx, rx=rx)
        if data:  # DATA may follow the request at once
            c.send_frame(DATA, tx, u64(0) + data)
        c.pump(lambda: rid in c.resps, 10, "connect answer")
        return c.resps.pop(rid), tx, c.watch(rx)

    def test_echo_and_half_close(self):
        srv = TcpServer(echo_until_eof)
        self.addCleanup(srv.close)
        c = self.conn()
        r, tx, rx = self.open(c, srv.port, b"early ")
        self.assertEqual(r, {"id": r["id"]})
        data = os.urandom(3 * WINDOW + 777)
        # The window rules of stdin; the first 6 bytes are resent (and
        # must be skipped, not duplicated).
        c.send_stdin(tx, b"early " + data, eof=False)
        c.pump(lambda: len(rx.data) >= 6 + len(data), 20, "echo")
        self.assertFalse(rx.done(), "EOF before the host's EOF")
        # Half-close: our EOF reaches the server, which still answers.
        c.send_frame(EOF, tx, u64(6 + len(data)))
        c.pump(rx.done, 10, "EOF on rx")
        self.assertEqual(bytes(rx.data), b"early " + data + b"bye")
        self.assertEqual(srv.results, [6 + len(data)])
        c.pump(lambda: c.stdin_acks.get(tx) == 6 + len(data), 5, "tx ACK")
        self.assertLessEqual(rx.max_inflight, WINDOW)

    def test_server_closes_first(self):
        def hello(s):
            s.sendall(b"hello\n")
            s.shutdown(socket.SHUT_WR)
            return s.recv(100)  # still reads after its EOF
        srv = TcpServer(hello)
        self.addCleanup(srv.close)
        c = self.conn()
        r, tx, rx = self.open(c, srv.port)
        c.pump(rx.done, 10, "EOF on rx")
        self.assertEqual(bytes(rx.data), b"hello\n")
        c.send_frame(DATA, tx, u64(0) + b"late")
        c.send_frame(EOF, tx, u64(4))
        c.pump(lambda: srv.results == [b"late"], 5, "server read")

    def test_ipv6_loopback(self):
        if not socket.has_ipv6:
            self.skipTest("no IPv6")
        try:
            srv = TcpServer(echo_until_eof, socket.AF_INET6, "::1")
        except OSError:
            self.skipTest("no ::1")
        self.addCleanup(srv.close)
        c = self.conn()
        r, tx, rx = self.open(c, srv.port, b"six")
        self.assertNotIn("errno", r)
        c.send_frame(EOF, tx, u64(3))
        c.pump(rx.done, 10, "EOF on rx")
        self.assertEqual(bytes(rx.data), b"sixbye")

    def test_refused(self):
        c = self.conn()
        r, tx, rx = self.open(c, free_port(), b"nobody")
        self.assertEqual(r["errno"], errno.ECONNREFUSED, r)
        c.ping()  # the dropped stream's DATA harmed nothing
        r, _, _ = self.open(c, 0)
        self.assertEqual(r["errno"], errno.EINVAL)
        r = c.call("connect", port=80, tx=5, rx=5)
        self.assertEqual(r["errno"], errno.EINVAL)

    def test_close_resets(self):
        srv = TcpServer(lambda s: s.recv(10))
        self.addCleanup(srv.close)
        c = self.conn()
        r, tx, rx = self.open(c, srv.port)
        r = c.call("close", rx=rx.chan)
        self.assertEqual(r, {"id": r["id"]})
        deadline = time.time() + 5
        while not srv.results and not srv.errors and time.time() < deadline:
            time.sleep(0.02)
        self.assertTrue(srv.results == [b""] or
                        isinstance(srv.errors[0], ConnectionResetError),
                        (srv.results, srv.errors))
        self.assertEqual(c.call("close", rx=rx.chan)["errno"], errno.ENOENT)

    def test_server_reset_is_an_event(self):
        def reset(s):
            s.sendall(b"partial")
            s.recv(10)  # until the client's word is in
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        srv = TcpServer(reset)
        self.addCleanup(srv.close)
        c = self.conn()
        r, tx, rx = self.open(c, srv.port)
        c.pump(lambda: bytes(rx.data) == b"partial", 10, "data before the reset")
        c.send_frame(DATA, tx, u64(0) + b"go")
        ev = lambda: [e for e in c.events if e.get("event") == "reset"]
        c.pump(lambda: ev(), 10, "reset event")
        self.assertEqual(ev()[0]["rx"], rx.chan)
        self.assertEqual(ev()[0]["errno"], errno.ECONNRESET)
        self.assertIsNone(rx.eof, "EOF as well as the reset")
        self.assertEqual(c.call("close", rx=rx.chan)["errno"], errno.ENOENT)

    def test_many_connections_and_new_hello(self):
        srv = TcpServer(echo_until_eof)
        self.addCleanup(srv.close)
        c = self.conn()
        streams = []
        for i in range(100):
            tx, rx = chans(2)
            c.request("connect", port=srv.port, tx=tx, rx=rx)
            msg = b"conn %d" % i
            c.send_frame(DATA, tx, u64(0) + msg)
            c.send_frame(EOF, tx, u64(len(msg)))
            streams.append((msg, c.watch(rx)))
        c.pump(lambda: all(s.done() for _, s in streams), 30, "100 echoes")
        for msg, s in streams:
            self.assertEqual(bytes(s.data), msg + b"bye")
        # A stream left open is dropped by the next HELLO.
        r, tx, rx = self.open(c, srv.port)
        c.hello()
        c.send_frame(DATA, tx, u64(0) + b"x")
        c.ping()
        self.assertEqual(bytes(rx.data), b"")


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
        # A zombie still counts as a member of the group until the agent
        # reaps it (alive() above already calls it gone), so ESRCH may
        # take one more turn of the agent's loop.
        deadline = time.time() + 3
        while True:
            r = c.call("signal", job="sig", signal=15)
            if r.get("errno") == errno.ESRCH or time.time() > deadline:
                break
            time.sleep(0.05)
        self.assertEqual(r.get("errno"), errno.ESRCH)


class Pty(AgentTest):
    """exec with "pty" and the resize op (docs/protocol.md, Streams)."""

    def pty_exec(self, c, key, argv, rows=24, cols=80, term="xterm-256color", **args):
        cin, cout = chans(2)
        r = c.call("exec", job=key, argv=argv, stdin=cin, stdout=cout, cwd=agent_dir,
                   pty={"rows": rows, "cols": cols, "term": term}, **args)
        if "pid" in r:
            c.keys.append(key)
        return r, c.watch(cout), cin

    def test_tty_size_term_and_group(self):
        c = self.conn()
        script = ('tty; stty size; echo "T=$TERM"; '
                  'ps -o pid=,sid=,tpgid= -p $$ | tr -s " "; exit 4')
        r, out, _ = self.pty_exec(c, "pty1", ["sh", "-c", script], rows=33, cols=101)
        self.assertIn("pid", r)
        e = c.wait_done("pty1", out)
        self.assertEqual(e["exit_code"], 4)
        lines = out.data.decode().replace("\r\n", "\n").splitlines()
        self.assertRegex(lines[0], r"^/dev/pts/[0-9]+$")
        self.assertEqual(lines[1], "33 101")
        self.assertEqual(lines[2], "T=xterm-256color")
        # It leads its session and is the terminal's foreground group.
        pid, sid, tpgid = lines[3].split()
        self.assertEqual(pid, str(r["pid"]))
        self.assertEqual(sid, pid)
        self.assertEqual(tpgid, pid)

    def test_stdin_through_master_and_resize(self):
        c = self.conn()
        # The shell reads lines from the terminal; each line runs a command.
        r, out, cin = self.pty_exec(c, "pty2", ["sh", "-c",
                                                "while read l; do eval \"$l\"; done"])
        self.assertIn("pid", r)
        c.send_stdin(cin, b"stty -echo; echo rea''dy\n", eof=False)
        c.pump(lambda: b"ready" in out.data, 5, "ready")
        self.assertEqual(c.call("resize", job="pty2", rows=50, cols=132),
                         {"id": c.next_id - 1})
        # Offsets continue where the first write ended.
        first = len(b"stty -echo; echo rea''dy\n")
        payload = b"stty size; exit 0\n"
        c.send_frame(DATA, cin, u64(first) + payload)
        e = c.wait_done("pty2", out)
        self.assertEqual(e["exit_code"], 0)
        self.assertIn(b"50 132", out.data)

    def test_sigwinch_reaches_the_job(self):
        c = self.conn()
        r, out, cin = self.pty_exec(
            c, "pty3", ["sh", "-c", "trap 'stty size; exit 0' WINCH; echo set; "
                                    "while :; do sleep 0.05; done"])
        c.pump(lambda: b"set" in out.data, 5, "trap set")
        c.call("resize", job="pty3", rows=7, cols=9)
        e = c.wait_done("pty3", out)
        self.assertIn(b"7 9", out.data)
        self.assertEqual(e["exit_code"], 0)

    def test_signal_reaches_pty_group(self):
        c = self.conn()
        r, out, cin = self.pty_exec(c, "pty4", ["sh", "-c", "echo up; sleep 30"])
        c.pump(lambda: b"up" in out.data, 5, "up")
        c.call("signal", job="pty4", signal=1)
        e = c.wait_done("pty4", out)
        self.assertEqual(e["signal"], 1)

    def test_bad_requests(self):
        c = self.conn()
        cin, cout, cerr = chans(3)
        for pty in ({"rows": 0, "cols": 80}, {"rows": 24}, {"rows": 24, "cols": 70000},
                    "xterm", {"rows": 24, "cols": 80, "term": 5},
                    {"rows": 24, "cols": 80, "term": "a=b"}):
            r = c.call("exec", job="badpty", argv=["true"], stdout=cout, pty=pty)
            self.assertEqual(r.get("errno"), errno.EINVAL, pty)
        # A pty has no separate stderr.
        r = c.call("exec", job="badpty", argv=["true"], stdout=cout, stderr=cerr,
                   pty={"rows": 24, "cols": 80})
        self.assertEqual(r.get("errno"), errno.EINVAL)
        self.assertEqual(c.call("resize", job="nosuch", rows=2, cols=2).get("errno"),
                         errno.ENOENT)
        e, _, _ = c.run("nopty", ["true"])
        self.assertEqual(c.call("resize", job="nopty", rows=2, cols=2).get("errno"),
                         errno.ENOTTY)
        self.assertEqual(c.call("resize", job="nopty", rows=0, cols=2).get("errno"),
                         errno.EINVAL)


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


    def test_bad_volume_requests(self):
        c = self.conn()
        good = dict(serial="tk0123456789abcdef01", path="/tmp/tenki-vol-test")
        for bad in [dict(serial=""), dict(serial="x" * 21), dict(serial="a/b"),
                    dict(serial="a b"), dict(serial=5), dict(path="rel"),
                    dict(path="/"), dict(path="/a/../b"), dict(path="/a/./b"),
                    dict(path="/a//b"), dict(path="/a/"), dict(path="/a\nb"),
                    dict(path="/" + "x" * 300), dict(path=None), dict(flag="yes")]:
            a = dict(good)
            a.update(bad)
            if a["path"] is None:
                del a["path"]
            for op, flag in (("vol_mount", "ro"), ("vol_umount", "lazy")):
                b = dict(a)
                if "flag" in b:
                    b[flag] = b.pop("flag")
                self.assertEqual(c.call(op, **b).get("errno"), errno.EINVAL, (op, bad))
        # Nothing is mounted there: unmounting is done at once, lazily too.
        self.assertEqual(c.call("vol_umount", **good).get("errno"), None)
        self.assertEqual(c.call("vol_umount", lazy=True, **good).get("errno"), None)
        self.assertIn("id", c.call("info"))

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


# ---- file operations (docs/protocol.md, "File operations") ----

(FS_LOOKUP, FS_FORGET, FS_GETATTR, FS_SETATTR, FS_READLINK, FS_MKDIR, FS_UNLINK,
 FS_RMDIR, FS_SYMLINK, FS_RENAME, FS_LINK, FS_OPEN, FS_CREATE, FS_READ, FS_WRITE,
 FS_RELEASE, FS_FSYNC, FS_OPENDIR, FS_READDIR, FS_RELEASEDIR, FS_STATFS,
 FS_COPY_RANGE, FS_READDIRPLUS) = range(1, 24)
FSN_INODE, FSN_ENTRY, FSN_ALL = 1, 2, 3
SET_MODE, SET_UID, SET_GID, SET_SIZE, SET_ATIME, SET_MTIME = 1, 2, 4, 8, 16, 32
SET_ATIME_NOW, SET_MTIME_NOW = 128, 256
RENAME_NOREPLACE, RENAME_EXCHANGE = 1, 2
ATTR = struct.Struct("<QQQqqqIIIIIIIII")
ATTR_FIELDS = ("ino size blocks atime mtime ctime atime_ns mtime_ns ctime_ns "
               "mode nlink uid gid rdev blksize").split()


class Attr(dict):
    __getattr__ = dict.__getitem__


def fstr(b):
    if isinstance(b, str):
        b = b.encode()
    return struct.pack("<H", len(b)) + b


def u32(v):
    return struct.pack("<I", v)


class FsError(AssertionError):
    def __init__(self, op, err):
        AssertionError.__init__(self, "fs op %d: %s" % (op, os.strerror(err)))
        self.errno = err


class Fs:
    """The host's side of file operations, one call at a time."""

    def __init__(self, conn):
        self.c = conn

    def ok(self, op, body):
        err, res = self.c.fs(op, body)
        if err:
            raise FsError(op, err)
        return res

    def err(self, op, body):
        return self.c.fs(op, body)[0]

    @staticmethod
    def attr(res, at=0):
        return Attr(zip(ATTR_FIELDS, ATTR.unpack_from(res, at)))

    def entry(self, res):
        return struct.unpack_from("<Q", res)[0], self.attr(res, 8)

    def lookup(self, parent, name):
        return self.entry(self.ok(FS_LOOKUP, u64(parent) + fstr(name)))

    def getattr(self, nid):
        return self.attr(self.ok(FS_GETATTR, u64(nid)))

    def setattr_body(self, nid, fh=0, valid=0, mode=0, uid=0, gid=0, size=0,
                     atime=(0, 0), mtime=(0, 0)):
        return (u64(nid) + u64(fh) + struct.pack("<IIII", valid, mode, uid, gid) +
                u64(size) + struct.pack("<qI", *atime) + struct.pack("<qI", *mtime))

    def setattr(self, nid, **kw):
        return self.attr(self.ok(FS_SETATTR, self.setattr_body(nid, **kw)))

    def mkdir(self, parent, name, mode=0o755):
        return self.entry(self.ok(FS_MKDIR, u64(parent) + u32(mode) + fstr(name)))

    def create(self, parent, name, flags=os.O_RDWR, mode=0o644):
        res = self.ok(FS_CREATE, u64(parent) + u32(mode) + u32(flags) + fstr(name))
        nid, a = self.entry(res)
        self.assertlen(res, 8 + ATTR.size + 8)
        return nid, a, struct.unpack_from("<Q", res, 8 + ATTR.size)[0]

    @staticmethod
    def assertlen(res, n):
        if len(res) != n:
            raise AssertionError("answer of %d bytes, want %d" % (len(res), n))

    def open(self, nid, flags=os.O_RDONLY):
        return struct.unpack("<Q", self.ok(FS_OPEN, u64(nid) + u32(flags)))[0]

    def read(self, fh, off, size):
        return self.ok(FS_READ, u64(fh) + u64(off) + u32(size))

    def write(self, fh, off, data):
        return struct.unpack("<I", self.ok(FS_WRITE, u64(fh) + u64(off) + data))[0]

    def release(self, fh):
        self.ok(FS_RELEASE, u64(fh))

    def opendir(self, nid):
        return struct.unpack("<Q", self.ok(FS_OPENDIR, u64(nid)))[0]

    def readdir(self, fh, off, size):
        return self._listing(FS_READDIR, fh, off, size)

    def readdirplus(self, fh, off, size):
        return self._listing(FS_READDIRPLUS, fh, off, size)

    def _listing(self, op, fh, off, size):
        """READDIR entries (next, ino, type, name); READDIRPLUS adds nid, attr."""
        res = self.ok(op, u64(fh) + u64(off) + u32(size))
        if len(res) > size:
            raise AssertionError("%s of %d bytes for %d" % (
                "READDIRPLUS" if op == FS_READDIRPLUS else "READDIR", len(res), size))
        out, i = [], 0
        while i < len(res):
            nxt, ino, typ, nlen = struct.unpack_from("<QQIH", res, i)
            i += 22
            ent = (nxt, ino, typ, res[i:i + nlen].decode())
            i += nlen
            if op == FS_READDIRPLUS:
                nid = struct.unpack_from("<Q", res, i)[0]
                ent += (nid, self.attr(res, i + 8))
                i += 8 + ATTR.size
            out.append(ent)
        return out

    def releasedir(self, fh):
        self.ok(FS_RELEASEDIR, u64(fh))

    def symlink(self, parent, name, target):
        return self.entry(self.ok(FS_SYMLINK, u64(parent) + fstr(name) + fstr(target)))

    def readlink(self, nid):
        return self.ok(FS_READLINK, u64(nid))

    def link(self, nid, newparent, name):
        return self.entry(self.ok(FS_LINK, u64(nid) + u64(newparent) + fstr(name)))

    def rename(self, parent, name, newparent, newname, flags=0):
        return self.err(FS_RENAME, u64(parent) + fstr(name) + u64(newparent) +
                        fstr(newname) + u32(flags))

    def unlink(self, parent, name):
        return self.err(FS_UNLINK, u64(parent) + fstr(name))

    def rmdir(self, parent, name):
        return self.err(FS_RMDIR, u64(parent) + fstr(name))

    def forget(self, nid, n=1):
        self.c.fs_send(FS_FORGET, u64(nid) + u64(n))

    def statfs(self, nid):
        res = self.ok(FS_STATFS, u64(nid))
        self.assertlen(res, 5 * 8 + 3 * 4)
        return struct.unpack("<QQQQQIII", res)

    def copy_range(self, fh_in, off_in, fh_out, off_out, n):
        res = self.ok(FS_COPY_RANGE, u64(fh_in) + u64(off_in) + u64(fh_out) + u64(off_out) + u64(n))
        return struct.unpack("<Q", res)[0]

    def fsync(self, fh, datasync=0):
        return self.err(FS_FSYNC, u64(fh) + u32(datasync))


def outside_exists(c, path):
    """Does path exist where the agent runs (not through files/)?"""
    if agent_proc is not None:
        return os.path.lexists(path)
    key = "exists-%d" % time.monotonic_ns()
    e, _, _ = c.run(key, ["test", "-e", path])
    c.call("forget", job=key)
    c.keys.remove(key)
    return e["exit_code"] == 0


class FsTest(AgentTest):
    """Each test works in a directory of its own under the home."""

    def setUp(self):
        AgentTest.setUp(self)
        self.c = self.conn()
        self.fs = Fs(self.c)
        self.dname = "t-%s-%d" % (self._testMethodName, time.monotonic_ns())
        self.dir, _ = self.fs.mkdir(1, self.dname)

    def path(self, *names):
        return os.path.join(agent_home, self.dname, *names)

    def assertErr(self, err, op, body):
        self.assertEqual(os.strerror(self.fs.err(op, body)), os.strerror(err))


class Files(FsTest):
    def test_home_made_and_root(self):
        a = self.fs.getattr(1)
        self.assertTrue(stat.S_ISDIR(a.mode))
        self.assertEqual(self.fs.lookup(1, self.dname)[0], self.dir)
        if agent_proc is not None:
            self.assertTrue(os.path.isdir(agent_home))
            st = os.stat(agent_home)
            self.assertEqual((a.ino, a.nlink), (st.st_ino, st.st_nlink))

    def test_create_write_read_truncate(self):
        fs = self.fs
        nid, a, fh = fs.create(self.dir, "f", os.O_RDWR, 0o640)
        self.assertTrue(stat.S_ISREG(a.mode))
        self.assertEqual(stat.S_IMODE(a.mode), 0o640)
        self.assertEqual(fs.lookup(self.dir, "f")[0], nid)
        data = os.urandom(3 * FS_IO_MAX + 123)
        for off in range(0, len(data), FS_IO_MAX):
            self.assertEqual(fs.write(fh, off, data[off:off + FS_IO_MAX]),
                             len(data[off:off + FS_IO_MAX]))
        fs.release(fh)
        self.assertEqual(fs.getattr(nid).size, len(data))
        fh = fs.open(nid, os.O_RDONLY)
        got = b"".join(fs.read(fh, off, FS_IO_MAX) for off in range(0, len(data), FS_IO_MAX))
        self.assertTrue(got == data, "read back differs")
        self.assertEqual(fs.read(fh, len(data), FS_IO_MAX), b"")
        self.assertErr(errno.EBADF, FS_WRITE, u64(fh) + u64(0) + b"x")  # read-only
        if agent_proc is not None:
            with open(self.path("f"), "rb") as f:
                self.assertTrue(f.read() == data)
        # Truncate by node and by handle, chmod, times.
        self.assertEqual(fs.setattr(nid, valid=SET_SIZE, size=1000).size, 1000)
        wfh = fs.open(nid, os.O_WRONLY)
        self.assertEqual(fs.setattr(nid, fh=wfh, valid=SET_SIZE, size=10).size, 10)
        self.assertEqual(fs.read(fh, 0, 100), data[:10])
        a = fs.setattr(nid, valid=SET_MODE, mode=0o751)
        self.assertEqual(stat.S_IMODE(a.mode), 0o751)
        a = fs.setattr(nid, valid=SET_ATIME | SET_MTIME, atime=(1000000000, 5), mtime=(1200000000, 7))
        self.assertEqual((a.atime, a.atime_ns, a.mtime, a.mtime_ns), (1000000000, 5, 1200000000, 7))
        a = fs.setattr(nid, valid=SET_MTIME | SET_MTIME_NOW)
        self.assertLess(abs(a.mtime - time.time()), 5)
        self.assertEqual(a.atime, 1000000000)
        a = fs.setattr(nid, valid=SET_UID | SET_GID, uid=os.getuid(), gid=os.getgid())
        self.assertEqual((a.uid, a.gid), (os.getuid(), os.getgid()))
        # O_APPEND and O_TRUNC at open.
        afh = fs.open(nid, os.O_WRONLY | os.O_APPEND)
        fs.write(afh, 0, b"tail")
        self.assertEqual(fs.read(fh, 0, 100), data[:10] + b"tail")
        tfh = fs.open(nid, os.O_WRONLY | os.O_TRUNC)
        self.assertEqual(fs.getattr(nid).size, 0)
        for h in (fh, wfh, afh, tfh):
            fs.release(h)
        self.assertErr(errno.EBADF, FS_RELEASE, u64(fh))
        # CREATE of an existing name: O_EXCL fails, otherwise it opens it.
        self.assertErr(errno.EEXIST, FS_CREATE, u64(self.dir) + u32(0o644) +
                       u32(os.O_RDWR | os.O_EXCL) + fstr("f"))
        nid2, _, fh2 = fs.create(self.dir, "f", os.O_RDWR)
        self.assertEqual(nid2, nid)
        fs.release(fh2)
        # A directory cannot be opened as a file, a file not as a directory.
        self.assertErr(errno.EISDIR, FS_OPEN, u64(self.dir) + u32(0))
        self.assertErr(errno.ENOTDIR, FS_OPENDIR, u64(nid))

    def test_mkdir_unlink_rmdir(self):
        fs = self.fs
        d, a = fs.mkdir(self.dir, "sub", 0o770)
        self.assertTrue(stat.S_ISDIR(a.mode))
        self.assertEqual(stat.S_IMODE(a.mode), 0o770)  # no umask applied
        self.assertErr(errno.EEXIST, FS_MKDIR, u64(self.dir) + u32(0o755) + fstr("sub"))
        _, _, fh = fs.create(d, "x")
        fs.release(fh)
        self.assertEqual(fs.rmdir(self.dir, "sub"), errno.ENOTEMPTY)
        self.assertEqual(fs.unlink(self.dir, "sub"), errno.EISDIR)
        self.assertEqual(fs.rmdir(d, "x"), errno.ENOTDIR)
        self.assertEqual(fs.unlink(d, "x"), 0)
        self.assertErr(errno.ENOENT, FS_LOOKUP, u64(d) + fstr("x"))
        self.assertEqual(fs.unlink(d, "x"), errno.ENOENT)
        self.assertEqual(fs.rmdir(self.dir, "sub"), 0)
        self.assertErr(errno.ENOENT, FS_LOOKUP, u64(self.dir) + fstr("sub"))
        # The removed directory's node still answers (as the kernel does).
        self.assertEqual(fs.getattr(d).nlink, 0)

    def test_rename(self):
        fs = self.fs
        d2, _ = fs.mkdir(self.dir, "d2")
        a, _, fh = fs.create(self.dir, "a")
        fs.write(fh, 0, b"AAA")
        fs.release(fh)
        b, _, fh = fs.create(self.dir, "b")
        fs.write(fh, 0, b"BBBB")
        fs.release(fh)
        self.assertEqual(fs.rename(self.dir, "a", d2, "a2"), 0)
        self.assertEqual(fs.lookup(d2, "a2")[0], a)
        self.assertErr(errno.ENOENT, FS_LOOKUP, u64(self.dir) + fstr("a"))
        self.assertEqual(fs.rename(d2, "a2", self.dir, "b", RENAME_NOREPLACE), errno.EEXIST)
        self.assertEqual(fs.rename(d2, "a2", self.dir, "b", RENAME_EXCHANGE), 0)
        self.assertEqual(fs.lookup(self.dir, "b")[0], a)
        self.assertEqual(fs.lookup(d2, "a2")[0], b)
        self.assertEqual(fs.rename(d2, "a2", self.dir, "b"), 0)  # over a file
        nid, attr = fs.lookup(self.dir, "b")
        self.assertEqual((nid, attr.size), (b, 4))
        self.assertEqual(fs.getattr(a).nlink, 0)
        self.assertEqual(fs.rename(self.dir, "b", self.dir, "c", 4), errno.EINVAL)
        self.assertEqual(fs.rename(self.dir, "nope", self.dir, "c"), errno.ENOENT)
        self.assertEqual(fs.rename(self.dir, "d2", d2, "x"), errno.EINVAL)  # into itself

    def test_symlink_link(self):
        fs = self.fs
        f, _, fh = fs.create(self.dir, "file")
        fs.release(fh)
        l, a = fs.symlink(self.dir, "l", "some/where/../file")
        self.assertTrue(stat.S_ISLNK(a.mode))
        self.assertEqual(a.size, len("some/where/../file"))
        self.assertEqual(fs.readlink(l), b"some/where/../file")
        self.assertEqual(fs.lookup(self.dir, "l")[0], l)
        self.assertErr(errno.EINVAL, FS_READLINK, u64(f))
        n, a = fs.link(f, self.dir, "hard")
        self.assertEqual((n, a.nlink), (f, 2))
        self.assertEqual(fs.lookup(self.dir, "hard")[0], f)
        self.assertErr(errno.EEXIST, FS_LINK, u64(f) + u64(self.dir) + fstr("l"))
        self.assertErr(errno.EPERM, FS_LINK, u64(self.dir) + u64(self.dir) + fstr("dl"))
        # A link to a symlink is the symlink itself, not its target.
        n, a = fs.link(l, self.dir, "l2")
        self.assertEqual(n, l)
        self.assertEqual(fs.readlink(n), b"some/where/../file")
        self.assertErr(errno.ENAMETOOLONG, FS_SYMLINK, u64(self.dir) + fstr("long") + fstr("x" * 4096))
        self.assertErr(errno.EINVAL, FS_SYMLINK, u64(self.dir) + fstr("empty") + fstr(""))
        self.assertErr(errno.EINVAL, FS_SYMLINK, u64(self.dir) + fstr("nul") + fstr("a\0b"))

    def test_readdir_3000(self):
        fs, c = self.fs, self.c
        names = set("entry-%04d-%s" % (i, "x" * (i % 40)) for i in range(3000))
        fhs = []
        for err, res in c.fs_many((FS_CREATE, u64(self.dir) + u32(0o644) + u32(os.O_WRONLY) + fstr(name))
                                  for name in sorted(names)):
            self.assertEqual(err, 0)
            nid, _ = fs.entry(res)
            fhs.append(struct.unpack_from("<Q", res, 8 + ATTR.size)[0])
            fs.forget(nid)
        for err, _ in c.fs_many((FS_RELEASE, u64(fh)) for fh in fhs):
            self.assertEqual(err, 0)
        fh = fs.opendir(self.dir)
        seen, cookies, off, calls = [], [], 0, 0
        while True:
            ents = fs.readdir(fh, off, 4096)
            calls += 1
            if not ents:
                break
            seen += [e[3] for e in ents]
            cookies.append((off, ents))
            off = ents[-1][0]
        self.assertEqual(len(seen), len(names))
        self.assertEqual(set(seen), names)
        self.assertGreater(calls, 20)
        # Back to a cookie from the middle: the same entries again.
        mid_off, mid_ents = cookies[len(cookies) // 2]
        self.assertEqual(fs.readdir(fh, mid_off, 4096), mid_ents)
        # One big call has them all; offset 0 starts over.
        big = fs.readdir(fh, 0, FS_IO_MAX)
        self.assertEqual(set(e[3] for e in big), names)
        self.assertTrue(all(e[2] == 8 for e in big))  # DT_REG
        fs.releasedir(fh)
        self.assertErr(errno.EBADF, FS_READDIR, u64(fh) + u64(0) + u32(4096))
        # Small answers still hold whole entries; "." and ".." never come.
        fh = fs.opendir(self.dir)
        ents = fs.readdir(fh, 0, 100)
        self.assertGreaterEqual(len(ents), 1)
        self.assertNotIn(ents[0][3], (".", ".."))
        self.assertErr(errno.EINVAL, FS_READDIR, u64(fh) + u64(0) + u32(FS_IO_MAX + 1))
        self.assertErr(errno.EBADF, FS_RELEASE, u64(fh))  # not a file handle
        fs.releasedir(fh)

    def test_statfs(self):
        blocks, bfree, bavail, files, ffree, bsize, frsize, namelen = self.fs.statfs(self.dir)
        self.assertGreater(blocks, 0)
        self.assertGreater(bsize, 0)
        self.assertEqual(namelen, 255)
        if agent_proc is not None:
            v = os.statvfs(agent_home)
            self.assertEqual((blocks, bsize, frsize, files), (v.f_blocks, v.f_bsize, v.f_frsize, v.f_files))

    def test_copy_range_fsync(self):
        fs = self.fs
        data = os.urandom(2 * FS_IO_MAX + 77)
        src, _, sfh = fs.create(self.dir, "src")
        for off in range(0, len(data), FS_IO_MAX):
            fs.write(sfh, off, data[off:off + FS_IO_MAX])
        self.assertEqual(fs.fsync(sfh, 0), 0)
        self.assertEqual(fs.fsync(sfh, 1), 0)
        dst, _, dfh = fs.create(self.dir, "dst")
        done = 0
        while done < len(data):
            n = fs.copy_range(sfh, done, dfh, 10 + done, len(data) + 100)
            self.assertGreater(n, 0)
            done += n
        self.assertEqual(fs.copy_range(sfh, len(data), dfh, 0, 100), 0)  # at EOF
        self.assertEqual(fs.getattr(dst).size, 10 + len(data))
        got = b"".join(fs.read(dfh, off, FS_IO_MAX) for off in range(0, 10 + len(data), FS_IO_MAX))
        self.assertTrue(got == b"\0" * 10 + data)
        self.assertEqual(fs.fsync(12345, 0), errno.EBADF)
        self.assertErr(errno.EBADF, FS_COPY_RANGE, u64(sfh) + u64(0) + u64(999) + u64(0) + u64(5))
        fs.release(sfh)
        fs.release(dfh)

    def test_forget_and_nid_reuse(self):
        fs, c = self.fs, self.c
        f, _, fh = fs.create(self.dir, "f")
        fs.release(fh)
        self.assertEqual(fs.lookup(self.dir, "f")[0], f)  # 2 references
        rid = c.fs_send(FS_FORGET, u64(f) + u64(1))
        c.ping()
        self.assertNotIn(rid, c.fsresps)  # FORGET is never answered
        fs.getattr(f)
        fs.forget(f, 1)
        self.assertErr(errno.ESTALE, FS_GETATTR, u64(f))
        f2, _ = fs.lookup(self.dir, "f")
        self.assertNotEqual(f2, f)  # numbers are not handed out twice
        self.assertErr(errno.ESTALE, FS_GETATTR, u64(f))
        fs.forget(f2, 1 << 63)
        self.assertErr(errno.ESTALE, FS_GETATTR, u64(f2))
        fs.forget(1, 1000)  # the home is never dropped
        fs.forget(987654321, 1)  # unknown: ignored
        fs.getattr(1)
        self.assertEqual(fs.lookup(1, self.dname)[0], self.dir)
        # Slots of forgotten nodes are used again, under new numbers.
        seen = set()
        for i in range(200):
            n, _ = fs.lookup(self.dir, "f")
            self.assertNotIn(n, seen)
            seen.add(n)
            fs.forget(n)
        self.assertEqual(len(set(n & 0xffff for n in seen)), 1)

    def test_handle_table_bounded(self):
        fs, c = self.fs, self.c
        f, _, fh = fs.create(self.dir, "f")
        answers = c.fs_many([(FS_OPEN, u64(f) + u32(os.O_RDONLY))] * 4200)
        fhs = [struct.unpack("<Q", res)[0] for err, res in answers if err == 0]
        errs = set(err for err, _ in answers if err != 0)
        self.assertEqual(len(fhs) + 1, 4095)  # 4096 slots, slot 0 unused
        self.assertEqual(errs, {errno.EMFILE})
        fs.release(fhs.pop())
        fhs.append(fs.open(f))
        for err, _ in c.fs_many((FS_RELEASE, u64(h)) for h in fhs + [fh]):
            self.assertEqual(err, 0)
        fs.release(fs.open(f))

    @unittest.skipIf(os.environ.get("TENKI_AGENT_SOCK"), "65536 files: host only")
    def test_node_table_bounded(self):
        fs, c = self.fs, self.c
        # 65536 slots: 0 unused, the home and this test's directory; unless
        # the agent could not raise its descriptor limit that far (no
        # CAP_SYS_RESOURCE), and that limit says EMFILE first.
        with open("/proc/%d/limits" % agent_proc.pid) as f:
            fd_limit = int([l for l in f if l.startswith("Max open files")][0].split()[3])
        n = 65536 if fd_limit > 65536 + 4096 else fd_limit + 100
        for i in range(n):
            os.close(os.open(self.path("%d" % i), os.O_CREAT | os.O_WRONLY, 0o644))
        answers = c.fs_many((FS_LOOKUP, u64(self.dir) + fstr("%d" % i)) for i in range(n))
        nids = [struct.unpack_from("<Q", res)[0] for err, res in answers if err == 0]
        errs = set(err for err, _ in answers if err != 0)
        self.assertEqual(errs, {errno.EMFILE})
        if n == 65536:
            self.assertEqual(len(nids), n - 3)
        else:
            self.assertGreater(len(nids), fd_limit - 100)
        self.assertEqual(len(set(nids)), len(nids))
        fs.forget(nids[0])
        self.assertEqual(fs.lookup(self.dir, "%d" % (n - 1))[1].size, 0)
        self.assertErr(errno.EMFILE, FS_MKDIR, u64(self.dir) + u32(0o755) + fstr("more"))
        for nid in nids[1:]:
            fs.forget(nid)
        fs.getattr(self.dir)
        shutil.rmtree(self.path())

    def test_fifo_and_devices_not_opened(self):
        # A FIFO would block the agent's open forever.
        fs = self.fs
        if agent_proc is not None:
            os.mkfifo(self.path("fifo"))
        else:
            self.c.run("mkfifo", ["mkfifo", "/home/tenki/%s/fifo" % self.dname])
        n, a = fs.lookup(self.dir, "fifo")
        self.assertTrue(stat.S_ISFIFO(a.mode))
        self.assertErr(errno.ENXIO, FS_OPEN, u64(n) + u32(os.O_RDONLY))
        self.assertErr(errno.ENXIO, FS_CREATE, u64(self.dir) + u32(0o644) + u32(os.O_WRONLY) + fstr("fifo"))
        self.assertErr(errno.EINVAL, FS_SETATTR, fs.setattr_body(n, valid=SET_SIZE, size=0))
        self.c.ping()


class FilesConfined(FsTest):
    BAD_NAMES = ["..", ".", "", "a/b", "/", "/etc", "a\0b", "\0", "x" * 256]

    def test_symlinks_are_nodes(self):
        fs, c = self.fs, self.c
        marker = "escaped-%d" % time.monotonic_ns()
        f, _, fh = fs.create(self.dir, "f")
        fs.release(fh)
        root_nid, a = fs.symlink(self.dir, "root", "/")
        up_nid, _ = fs.symlink(self.dir, "up", "../../..")
        self.assertTrue(stat.S_ISLNK(a.mode))
        for nid in (root_nid, up_nid):
            self.assertEqual(fs.lookup(self.dir, "root" if nid == root_nid else "up")[0], nid)
            self.assertTrue(stat.S_ISLNK(fs.getattr(nid).mode))
            for flags in (os.O_RDONLY, os.O_WRONLY, os.O_RDWR | os.O_TRUNC):
                self.assertErr(errno.ELOOP, FS_OPEN, u64(nid) + u32(flags))
            self.assertNotEqual(fs.err(FS_OPENDIR, u64(nid)), 0)
            for op, body in [
                    (FS_LOOKUP, fstr("etc")), (FS_LOOKUP, fstr(marker)),
                    (FS_MKDIR, u32(0o755) + fstr(marker)),
                    (FS_CREATE, u32(0o644) + u32(os.O_RDWR) + fstr(marker)),
                    (FS_SYMLINK, fstr(marker) + fstr("x")),
                    (FS_UNLINK, fstr("etc")), (FS_RMDIR, fstr("tmp"))]:
                self.assertNotEqual(fs.err(op, u64(nid) + body), 0, op)
            self.assertNotEqual(self.fs.rename(nid, "etc", self.dir, marker), 0)
            self.assertNotEqual(self.fs.rename(self.dir, "up", nid, marker), 0)
            self.assertNotEqual(fs.err(FS_LINK, u64(f) + u64(nid) + fstr(marker)), 0)
            # chmod cannot reach the target; times and owner are the link's.
            self.assertErr(errno.EOPNOTSUPP, FS_SETATTR, fs.setattr_body(nid, valid=SET_MODE, mode=0o777))
            self.assertErr(errno.EINVAL, FS_SETATTR, fs.setattr_body(nid, valid=SET_SIZE, size=0))
            a = fs.setattr(nid, valid=SET_MTIME, mtime=(12345, 0))
            self.assertEqual(a.mtime, 12345)
            self.assertTrue(stat.S_ISLNK(a.mode))
        self.assertEqual(fs.readlink(root_nid), b"/")
        self.assertEqual(fs.readlink(up_nid), b"../../..")
        self.assertFalse(outside_exists(c, "/" + marker))
        self.assertFalse(outside_exists(c, os.path.join(os.path.dirname(agent_home), marker)))
        if agent_proc is not None:
            self.assertNotEqual(os.lstat("/").st_mtime, 12345)

    def test_bad_names(self):
        fs = self.fs
        # Something that ".." from the home would reach.
        sibling = os.path.basename(agent_dir) if agent_proc is not None else "tmp"
        before = sorted(os.listdir(agent_dir)) if agent_proc is not None else None
        for name in self.BAD_NAMES + ["../" + sibling, "../../etc/passwd"]:
            b = fstr(name)
            for nid in (1, self.dir):
                for op, body in [
                        (FS_LOOKUP, b), (FS_MKDIR, u32(0o755) + b),
                        (FS_CREATE, u32(0o644) + u32(os.O_RDWR) + b),
                        (FS_SYMLINK, b + fstr("t")), (FS_UNLINK, b), (FS_RMDIR, b)]:
                    self.assertErr(errno.EINVAL, op, u64(nid) + body)
                self.assertErr(errno.EINVAL, FS_RENAME, u64(nid) + b + u64(self.dir) + fstr("ok") + u32(0))
                self.assertErr(errno.EINVAL, FS_RENAME, u64(self.dir) + fstr(self.dname) + u64(nid) + b + u32(0))
                self.assertErr(errno.EINVAL, FS_LINK, u64(self.dir) + u64(nid) + b)
        if agent_proc is not None:
            self.assertEqual(sorted(os.listdir(agent_dir)), before)
        fs.getattr(self.dir)

    def test_no_way_out(self):
        # The home's parent is out of reach: lookups of its names fail even
        # when they exist there, and nothing under them can be created.
        fs, c = self.fs, self.c
        if agent_proc is None:
            self.skipTest("checks the host's temporary directory")
        secret = os.path.join(agent_dir, "secret")
        with open(secret, "w") as f:
            f.write("secret")
        try:
            for name in ("secret", "agent.log"):
                self.assertErr(errno.ENOENT, FS_LOOKUP, u64(1) + fstr(name))
            link_nid, _ = fs.symlink(self.dir, "sec", "../../secret")
            self.assertErr(errno.ELOOP, FS_OPEN, u64(link_nid) + u32(os.O_RDWR | os.O_TRUNC))
            self.assertErr(errno.ELOOP, FS_CREATE, u64(self.dir) + u32(0o644) + u32(os.O_RDWR | os.O_TRUNC) + fstr("sec"))
            # A hard link or rename of the symlink moves the link, never the target.
            self.assertEqual(fs.rename(self.dir, "sec", 1, "sec-moved"), 0)
            self.assertEqual(fs.unlink(1, "sec-moved"), 0)
            with open(secret) as f:
                self.assertEqual(f.read(), "secret")
        finally:
            os.unlink(secret)


class FilesMalformed(FsTest):
    def test_malformed_requests(self):
        fs, c = self.fs, self.c
        f, _, fh = fs.create(self.dir, "f")
        bad = [
            (FS_LOOKUP, b""),  # no fields at all
            (FS_LOOKUP, u64(1)),  # no name
            (FS_LOOKUP, u64(1) + struct.pack("<H", 300) + b"short"),  # lying length
            (FS_LOOKUP, u64(1) + fstr("ok") + b"trailing"),
            (FS_GETATTR, u64(1)[:5]),
            (FS_GETATTR, u64(1) + b"\0"),
            (FS_SETATTR, fs.setattr_body(f)[:-1]),
            (FS_SETATTR, fs.setattr_body(f, valid=SET_ATIME, atime=(0, 1000000000))),
            (FS_RENAME, u64(self.dir) + fstr("f") + u64(self.dir) + fstr("g")),  # no flags
            (FS_OPEN, u64(f) + u32(3)),  # O_ACCMODE
            (FS_READ, u64(fh) + u64(0) + u32(FS_IO_MAX + 1)),
            (FS_READ, u64(fh) + u64(1 << 63) + u32(10)),
            (FS_READ, u64(fh) + u64(0)),
            (FS_WRITE, u64(fh)),
            (FS_WRITE, u64(fh) + u64(0) + b"x" * (FS_IO_MAX + 1)),
            (FS_READDIR, u64(fh) + u64(0) + struct.pack("<H", 5)),
            (FS_COPY_RANGE, u64(fh) * 4),
            (FS_FORGET, u64(f)),  # malformed: answered, unlike a FORGET
            (FS_SYMLINK, u64(self.dir) + fstr("s")),
        ]
        for op, body in bad:
            self.assertErr(errno.EINVAL, op, body)
        self.assertEqual(c.fs(FS_GETATTR, u64(1), reserved=1)[0], errno.EINVAL)
        for op in (0, 24, 99, 0xffffffff):
            self.assertEqual(c.fs(op, u64(1))[0], errno.ENOSYS)
        # Unknown nodes and handles.
        for nid in (0, 2, f + 1, f ^ (1 << 40), (1 << 64) - 1):
            self.assertErr(errno.ESTALE, FS_GETATTR, u64(nid))
            self.assertErr(errno.ESTALE, FS_LOOKUP, u64(nid) + fstr("x"))
        for h in (0, 1, fh + 1, fh ^ (1 << 40), (1 << 64) - 1):
            self.assertErr(errno.EBADF, FS_READ, u64(h) + u64(0) + u32(1))
            self.assertErr(errno.EBADF, FS_WRITE, u64(h) + u64(0) + b"x")
            self.assertErr(errno.EBADF, FS_RELEASE, u64(h))
            self.assertErr(errno.EBADF, FS_RELEASEDIR, u64(h))
            self.assertErr(errno.EBADF, FS_READDIR, u64(h) + u64(0) + u32(100))
            self.assertErr(errno.EBADF, FS_FSYNC, u64(h) + u32(0))
            if h:
                self.assertErr(errno.EBADF, FS_SETATTR, fs.setattr_body(f, fh=h, valid=SET_SIZE))
        self.assertEqual(fs.write(fh, 0, b"still works"), 11)
        fs.release(fh)

    def test_random_requests(self):
        import random
        rnd = random.Random(4321)
        fs, c = self.fs, self.c
        f, _, fh = fs.create(self.dir, "f")
        sub, _ = fs.mkdir(self.dir, "sub")
        dfh = fs.opendir(sub)
        valid = [
            (FS_LOOKUP, u64(sub) + fstr("nothing")),
            (FS_GETATTR, u64(f)),
            (FS_SETATTR, fs.setattr_body(f, valid=SET_MTIME, mtime=(5, 5))),
            (FS_READLINK, u64(f)),
            (FS_MKDIR, u64(sub) + u32(0o755) + fstr("m")),
            (FS_UNLINK, u64(sub) + fstr("nothing")),
            (FS_SYMLINK, u64(sub) + fstr("s") + fstr("t")),
            (FS_RENAME, u64(sub) + fstr("a") + u64(sub) + fstr("b") + u32(0)),
            (FS_OPEN, u64(f) + u32(0)),
            (FS_READ, u64(fh) + u64(0) + u32(100)),
            (FS_WRITE, u64(fh) + u64(0) + b"data"),
            (FS_FSYNC, u64(fh) + u32(1)),
            (FS_READDIR, u64(dfh) + u64(0) + u32(1000)),
            (FS_STATFS, u64(sub)),
            (FS_COPY_RANGE, u64(fh) + u64(0) + u64(fh) + u64(100) + u64(4)),
        ]
        expect = []
        for i in range(1500):
            kind = rnd.random()
            if kind < 0.4:
                op = rnd.randint(0, 30)
                body = os.urandom(rnd.choice([0, 1, 7, 8, 12, 16, 20, 30, 64, 90]))
            else:
                op, body = rnd.choice(valid)
                if kind < 0.6:
                    body = body[:rnd.randrange(len(body))]
                elif kind < 0.8:
                    body = body + os.urandom(rnd.randint(1, 20))
                else:
                    i2 = rnd.randrange(len(body))
                    body = body[:i2] + bytes([rnd.randrange(256)]) + body[i2 + 1:]
                    if op in (FS_WRITE, FS_SETATTR, FS_COPY_RANGE):
                        continue  # a flipped size or offset is not our subject
            if op in (FS_RELEASE, FS_RELEASEDIR, FS_FORGET) and len(body) >= 8:
                continue  # random numbers could be ours: keep the fixtures
            rid = c.fs_send(op, body)
            expect.append(rid)
            if i % 64 == 0:
                c.pump(lambda: all(r in c.fs_answered for r in expect), 10, "fs answers")
        c.pump(lambda: all(r in c.fs_answered for r in expect), 10, "fs answers")
        c.ping(b"survived")
        self.assertEqual(fs.read(fh, 0, 4), b"data")
        fs.release(fh)
        fs.releasedir(dfh)

    def test_bad_fsreq_frames_drop_connection(self):
        # Below 16 bytes or above 1 MiB + 4 KiB an FSREQ is a framing error.
        self.c.close()  # --listen serves one connection at a time
        for data in [frame(FSREQ, 0, b"\1" * 15),
                     frame(FSREQ, 0, b""),
                     HDR.pack(MAGIC, MAX_FS + 1, 0, FSREQ, 0, 0, 0),
                     frame(FSREQ, 5, struct.pack("<QII", 1, FS_GETATTR, 0) + u64(1))]:
            Malformed.expect_dropped(self, data)
        self.fs = Fs(self.conn())
        self.fs.getattr(1)



class FilesNotify(FsTest):
    """Change notifications (docs/protocol.md, "Change notifications")."""

    def setUp(self):
        FsTest.setUp(self)
        self.c.hello(fs_notify=True)  # a new session that asks for them
        self.fs = Fs(self.c)
        self.dir, _ = self.fs.lookup(1, self.dname)

    def wait_note(self, note, timeout=10.0):
        self.c.pump(lambda: note in self.c.notes, timeout, "note %r" % (note,))

    def guest(self, key, script):
        e, out, err = self.c.run(key, ["sh", "-c", script])
        self.assertEqual(e["exit_code"], 0, err)
        return e

    def test_offered_only_when_asked(self):
        self.assertIs(self.c.hello_reply.get("fs_notify"), True)
        # a new session on the same socket that does not ask: its watches
        # go, and no FSNOTIFY comes (handle() fails on one)
        c = self.c
        self.assertFalse(c.hello().get("fs_notify", False))
        fs = Fs(c)
        d, _ = fs.lookup(1, self.dname)
        self.guest("n-off", "touch '%s'; mkdir '%s'" %
                   (self.path("quiet"), self.path("quiet.d")))
        c.ping()
        self.assertEqual(c.notes, [])

    def test_changes_in_the_guest_are_reported_before_the_exit(self):
        fs = self.fs
        f, a, fh = fs.create(self.dir, "f")
        fs.release(fh)
        self.c.notes.clear()
        e = self.guest("n-write", "echo hello >> '%s'; touch '%s'" %
                       (self.path("f"), self.path("new")))
        # the exit event came after the records of the job's changes
        before = self.c.notes[:e["_notes"]]
        self.assertIn((FSN_INODE, f, ""), before)
        self.assertIn((FSN_ENTRY, self.dir, "new"), before)

    def test_renames_and_removals_name_both_entries(self):
        fs = self.fs
        f, _, fh = fs.create(self.dir, "a")
        fs.release(fh)
        sub, _ = fs.mkdir(self.dir, "sub")
        self.c.notes.clear()
        self.guest("n-mv", "mv '%s' '%s'; rmdir '%s'" %
                   (self.path("a"), self.path("b"), self.path("sub")))
        self.wait_note((FSN_ENTRY, self.dir, "a"))
        self.wait_note((FSN_ENTRY, self.dir, "b"))
        self.wait_note((FSN_ENTRY, self.dir, "sub"))
        # the moved node, known to the host, under its new name
        self.wait_note((FSN_INODE, f, ""))

    def test_attribute_change_of_the_directory_itself(self):
        self.c.notes.clear()
        self.guest("n-chmod", "chmod 700 '%s'" % self.path())
        # the home's watch sees the entry's attributes change
        self.wait_note((FSN_INODE, self.dir, ""))

    def test_readdirplus_answers_entries_with_references(self):
        fs = self.fs
        names = ["e%03d" % i for i in range(40)]
        for n in names:
            _, _, fh = fs.create(self.dir, n)
            fs.write(fh, 0, n.encode())
            fs.release(fh)
        dfh = fs.opendir(self.dir)
        got, off = [], 0
        while True:
            ents = fs.readdirplus(dfh, off, 1500)  # a few entries a time
            if not ents:
                break
            got += ents
            off = ents[-1][0]
        fs.releasedir(dfh)
        self.assertEqual(sorted(e[3] for e in got), names)
        for nxt, ino, typ, name, nid, a in got:
            self.assertNotEqual(nid, 0)
            self.assertEqual(a.size, 4)
            self.assertEqual(a.ino, ino)
            # the same node LOOKUP gives, and the reference is real: one
            # FORGET of each of the two leaves it known
            self.assertEqual(fs.lookup(self.dir, name)[0], nid)
            fs.forget(nid, 1)
        self.assertEqual(fs.getattr(got[0][4]).size, 4)
        # a size too small for one entry: nothing, and no error
        dfh = fs.opendir(self.dir)
        self.assertEqual(fs.readdirplus(dfh, 0, 50), [])
        fs.releasedir(dfh)

class FilesSession(FsTest):
    def test_new_hello_drops_nodes_and_handles(self):
        fs, c = self.fs, self.c
        f, _, fh = fs.create(self.dir, "f")
        dfh = fs.opendir(self.dir)
        fs.write(fh, 0, b"x")
        c.hello()  # the same socket, a new session
        self.assertErr(errno.ESTALE, FS_GETATTR, u64(f))
        self.assertErr(errno.ESTALE, FS_GETATTR, u64(self.dir))
        self.assertErr(errno.EBADF, FS_READ, u64(fh) + u64(0) + u32(1))
        self.assertErr(errno.EBADF, FS_READDIR, u64(dfh) + u64(0) + u32(100))
        self.assertTrue(stat.S_ISDIR(fs.getattr(1).mode))
        d, _ = fs.lookup(1, self.dname)
        f2, a = fs.lookup(d, "f")
        self.assertEqual(a.size, 1)
        c.close()
        # And a new connection.
        c2 = self.conn()
        fs2 = Fs(c2)
        self.assertEqual(fs2.err(FS_GETATTR, u64(f2)), errno.ESTALE)
        self.assertEqual(fs2.lookup(fs2.lookup(1, self.dname)[0], "f")[1].size, 1)

    def test_big_requests_and_streams_together(self):
        # 1 MiB READ answers, many in flight, while a job streams: both
        # finish, and the job is not held up until the reads are done.
        fs, c = self.fs, self.c
        data = os.urandom(FS_IO_MAX)
        f, _, fh = fs.create(self.dir, "big")
        for i in range(8):
            fs.write(fh, i * FS_IO_MAX, data)
        r, out, err, _ = c.exec("fs-stream", ["head", "-c", str(16 << 20), "/dev/zero"], stdin=False)
        want, outstanding, nread, done_at = 256, set(), 0, None
        t = time.perf_counter()

        def collect():
            nonlocal nread, done_at
            for x in [x for x in outstanding if x in c.fsresps]:
                e, res = c.fsresps.pop(x)
                self.assertEqual(e, 0)
                self.assertTrue(res == data)
                outstanding.remove(x)
                nread += 1
            if done_at is None and out.done():
                done_at = nread

        for i in range(want):
            outstanding.add(c.fs_send(FS_READ, u64(fh) + u64((i % 8) * FS_IO_MAX) + u32(FS_IO_MAX)))
            while len(outstanding) > 32:
                f = c.next_frame(5)
                self.assertIsNotNone(f, "no answer in 5 s")
                c.handle(f)
                collect()
        while outstanding:
            f = c.next_frame(5)
            self.assertIsNotNone(f, "no answer in 5 s")
            c.handle(f)
            collect()
        dt = time.perf_counter() - t
        c.wait_done("fs-stream", out, err, timeout=30)
        if done_at is None:
            done_at = want
        self.assertEqual(len(out.data), 16 << 20)
        # Through a VM's channel the stream's share is its window over
        # what the port holds in flight (under TCG: 1 MiB every 10-20
        # reads); only the socket's share is checked.
        if agent_proc is not None:
            self.assertLess(done_at, want * 3 // 4, "the job's stream waited for the reads")
        fs.release(fh)
        sys.stderr.write("\n  %d MiB of 1 MiB READs with a 16 MiB stream: %.0f MiB/s "
                         "(stream done after %d reads) ... " % (want, want / dt, done_at))


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
