"""tenki_sandbox against a live tree ($TENKI_MOUNT; tests/e2e/sdk-python.bats
starts a private tenkid for it).  One session, the seed's "demo", serves
every test of the suite; the seed's other create examples make their own.

Run: TENKI_MOUNT=/path/to/mnt python3 -m unittest discover -s tests -v
"""

import datetime
import errno
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import unittest
import http.client
import urllib.parse

try:  # the installed package, else the checkout's
    import tenki_sandbox  # noqa: F401
except ImportError:
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from tenki_sandbox import (AlreadyExistsError, Client,  # noqa: E402
                           CommandFailedError, InvalidArgumentError,
                           NotFoundError, Sandbox, SandboxError)

MOUNT = os.environ.get("TENKI_MOUNT", "/tenki")
sb = None

# `npm test` for the seed's streaming example: the image has no npm, so
# the test puts a stand-in on the guest's PATH.  It prints its first line,
# then waits for the test to create /home/tenki/.npm-go before printing the
# last and exiting: a first line read while it waits came live.
NPM = """#!/bin/sh
echo "> test: first line"
while [ ! -e /home/tenki/.npm-go ]; do sleep 0.1; done
echo "> test: last line"
"""
MAKEFILE = "test:\n\t@echo make-test-ran\n"


def setUpModule():
    global sb
    if not os.path.isfile(os.path.join(MOUNT, "version")):
        raise unittest.SkipTest("no tenki tree at %s (set TENKI_MOUNT)"
                                % MOUNT)
    # The seed's create example, as written.
    sb = Sandbox.create(
        name="demo",
        cpu_cores=4,
        memory_mb=8192,
        allow_inbound=True,
        allow_outbound=True,
        env={"APP_ENV": "dev"},
        metadata={"owner": "alice"},
    )


def tearDownModule():
    if sb is not None:
        try:
            sb.delete()
        except SandboxError:
            pass


def has(*parts):
    return os.path.isdir(os.path.join(MOUNT, *parts))


class T(unittest.TestCase):
    maxDiff = None

    def test_00_create_example(self):
        info = sb.refresh().info
        self.assertEqual(sb.name, "demo")
        self.assertIn(sb.state, ("READY", "RUNNING"))
        self.assertEqual(info["cpu_cores"], 4)
        self.assertEqual(info["memory_mb"], 8192)
        self.assertTrue(info["allow_inbound"])
        self.assertTrue(info["allow_outbound"])
        self.assertEqual(info["env"], {"APP_ENV": "dev"})
        self.assertEqual(info["metadata"], {"owner": "alice"})
        with open(os.path.join(MOUNT, "sessions/demo/metadata/owner")) as f:
            self.assertEqual(f.read().strip(), "alice")
        # the session env reaches execs
        self.assertEqual(sb.shell("echo $APP_ENV").stdout_text, "dev\n")

    def test_01_list_and_get(self):
        client = Client()
        sessions = client.list()
        self.assertIn("demo", [s.name for s in sessions])
        session_id = sb.id
        got = client.get(session_id)
        self.assertEqual(got.name, "demo")
        self.assertEqual(client.get("demo").id, session_id)
        with self.assertRaises(NotFoundError):
            client.get("no-such-session")

    def test_02_exec_example(self):
        sb.fs.write_text("/home/tenki/Makefile", MAKEFILE)
        # the seed's example, as written
        result = sb.exec("bash", "-lc", "echo $APP_ENV && make test",
                         env={"APP_ENV": "ci"}, timeout=120)
        if not result.ok:
            raise RuntimeError(f"failed: exit={result.exit_code} "
                               f"stderr={result.stderr_text}")
        self.assertEqual(result.stdout_text, "ci\nmake-test-ran\n")
        self.assertEqual(result.exit_code, 0)
        self.assertFalse(result.timed_out)
        self.assertIs(result.check(), result)

    def test_03_exec_timeout_reports_timed_out(self):
        t0 = time.monotonic()
        r = sb.exec("sleep", "60", timeout=2)
        self.assertLess(time.monotonic() - t0, 30)
        self.assertTrue(r.timed_out)
        self.assertFalse(r.ok)
        self.assertEqual(r.status, "timeout")
        self.assertEqual(r.exit_code, 124)
        with self.assertRaises(CommandFailedError) as cm:
            r.check()
        self.assertIn("timed out", str(cm.exception))

    def test_04_check_raises_with_stderr(self):
        with self.assertRaises(CommandFailedError) as cm:
            sb.exec("sh", "-c", "echo out; echo 'it broke: disk on fire' >&2;"
                    " exit 3", check=True)
        e = cm.exception
        self.assertIn("it broke: disk on fire", str(e))
        self.assertEqual(e.result.exit_code, 3)
        self.assertEqual(e.result.stdout_text, "out\n")
        # a zero exit does not raise
        self.assertTrue(sb.exec("true", check=True).ok)

    def test_05_exec_cwd_input_shell(self):
        r = sb.exec("pwd", cwd="/tmp")
        self.assertEqual(r.stdout_text, "/tmp\n")
        r = sb.exec("wc", "-c", input=b"\x00" * 1000)
        self.assertEqual(r.stdout_text.strip(), "1000")
        r = sb.exec("printf", "[%s]", "a b", "it's \"q\"", "$HOME")
        self.assertEqual(r.stdout_text, "[a b][it's \"q\"][$HOME]")
        r = sb.shell("echo a | tr a b; echo e >&2; exit 5")
        self.assertEqual((r.stdout_text, r.stderr_text, r.exit_code),
                         ("b\n", "e\n", 5))
        with self.assertRaises(ValueError):
            sb.exec("echo", "two\nlines")

    def _install_npm(self):
        sb.fs.write_text("/home/tenki/npm", NPM)
        sb.exec("install", "-m", "0755", "/home/tenki/npm",
                "/usr/local/bin/npm", check=True)

    def test_06_start_streams_live(self):
        self._install_npm()
        if sb.fs.exists(".npm-go"):
            sb.fs.remove(".npm-go")
        # the seed's example, as written, noting the process's status at
        # each chunk and letting it end after the first
        seen = []
        proc = sb.start("npm", "test")
        proc.close_stdin()
        for chunk in proc.stdout:
            print(chunk.decode(), end="")
            seen.append((proc.poll(), chunk))
            if len(seen) == 1:
                sb.fs.write_text(".npm-go", "")
        proc.wait().check()
        text = b"".join(c for _, c in seen).decode()
        self.assertEqual(text, "> test: first line\n> test: last line\n")
        # the first line arrived while the process was still running
        self.assertIn(b"first line", seen[0][1])
        self.assertNotIn(b"last line", seen[0][1])
        self.assertIsNone(seen[0][0])

    def test_07_start_write_stdin(self):
        proc = sb.start("cat")
        proc.write(b"hello ")
        proc.write("world\n")
        proc.close_stdin()
        r = proc.wait(timeout=60)
        self.assertEqual(r.stdout, b"hello world\n")
        self.assertTrue(r.ok)

    def test_08_fs_example(self):
        tmp = tempfile.mkdtemp()
        old = os.getcwd()
        os.chdir(tmp)
        try:
            with open("local.tar", "wb") as f:
                f.write(b"tar-ish\x00\xff" * 1000)
            # the seed's example, as written
            sb.fs.write_text("/home/tenki/config.json", '{"key": "value"}')
            data = sb.fs.read_text("/home/tenki/config.json")
            sb.fs.write_bytes("/home/tenki/blob.bin", b"\x00\x01")
            entries = sb.fs.list("/home/tenki")
            sb.fs.write_text("/home/tenki/build.log", "built\n")
            sb.fs.upload("./local.tar", "/home/tenki/local.tar")
            sb.fs.download("/home/tenki/build.log", "./build.log")

            self.assertEqual(json.loads(data), {"key": "value"})
            names = {e.name: e for e in entries}
            self.assertEqual(names["blob.bin"].size, 2)
            self.assertFalse(names["blob.bin"].is_dir)
            self.assertIn("config.json", names)
            self.assertEqual(sb.exec("cat", "blob.bin").stdout, b"\x00\x01")
            self.assertEqual(sb.exec("cat", "local.tar").stdout,
                             b"tar-ish\x00\xff" * 1000)
            with open("build.log") as f:
                self.assertEqual(f.read(), "built\n")
            # relative paths resolve from /home/tenki
            self.assertEqual(sb.fs.read_text("config.json"), data)
            sb.fs.write_text("sub/dir/x.txt", "deep")
            self.assertEqual(sb.exec("cat", "/home/tenki/sub/dir/x.txt")
                             .stdout_text, "deep")
        finally:
            os.chdir(old)
            shutil.rmtree(tmp)

    def test_09_binary_round_trip(self):
        blob = bytes(range(256)) * 64 + os.urandom(3 * 1024 * 1024 + 7)
        sb.fs.write_bytes("/home/tenki/rand.bin", blob)
        self.assertEqual(sb.fs.read_bytes("/home/tenki/rand.bin"), blob)
        got = sb.exec("sha256sum", "rand.bin").stdout_text.split()[0]
        self.assertEqual(got, hashlib.sha256(blob).hexdigest())
        # and the other way: bytes the guest made
        sb.exec("sh", "-c", "head -c 100000 /dev/urandom > g.bin", check=True)
        g = sb.fs.read_bytes("g.bin")
        self.assertEqual(len(g), 100000)
        self.assertEqual(sb.exec("sha256sum", "g.bin").stdout_text.split()[0],
                         hashlib.sha256(g).hexdigest())

    def test_10_paths_outside_home_are_refused(self):
        for p in ("/tmp/x", "/etc/passwd", "/home/tenki/../etc/passwd",
                  "../x", "/home/tenkix"):
            with self.assertRaises(PermissionError, msg=p):
                sb.fs.read_text(p)
            with self.assertRaises(PermissionError, msg=p):
                sb.fs.write_text(p, "x")
        with self.assertRaises(NotFoundError) as cm:
            sb.fs.read_text("/home/tenki/missing.txt")
        self.assertIn("missing.txt", str(cm.exception))

    def test_11_errors_carry_the_err_reason(self):
        with self.assertRaises(InvalidArgumentError) as cm:
            sb._ctl("frobnicate")
        self.assertIn("unknown verb", str(cm.exception))
        self.assertIn("unknown verb", cm.exception.reason)
        with self.assertRaises(AlreadyExistsError) as cm:
            Sandbox.create(name="demo", wait=False)
        self.assertIn("exists", cm.exception.reason)
        with self.assertRaises(InvalidArgumentError) as cm:
            Sandbox.create(name="bad", cpu_cores=99, wait=False)
        self.assertTrue(cm.exception.reason)
        self.assertFalse(os.path.exists(os.path.join(MOUNT,
                                                     "sessions/bad")))

    def test_12_ports_example(self):
        if not os.path.isdir(os.path.join(sb.path, "ports")):
            self.skipTest("this tree has no sessions/<name>/ports/ "
                          "(ports not merged yet)")
        sb.fs.write_text("www/index.html", "hello from the guest\n")
        srv = sb.start("python3", "-m", "http.server", "3000",
                       cwd="/home/tenki/www")
        try:
            # the seed's example, as written
            preview = sb.expose_port(3000, ttl=3600)  # ttl in seconds
            print(preview.url)
            ports = sb.list_exposed_ports()

            self.assertTrue(preview.url.startswith("http"))
            self.assertIsNotNone(preview.expires_at)
            self.assertEqual([p.port for p in ports], [3000])
            self.assertEqual(ports[0].url, preview.url)
            # the port's own listener and the shared preview listener
            self.assertIn("3000-demo.localhost", preview.preview_url)
            for url in (preview.url, preview.preview_url):
                body = None
                for _ in range(30):
                    try:
                        body = http_get(url)
                        break
                    except OSError:
                        time.sleep(1)
                self.assertEqual(body, b"hello from the guest\n", url)

            sb.unexpose_port(3000)
            self.assertEqual(sb.list_exposed_ports(), [])
            # no ttl: no expiry
            self.assertIsNone(sb.expose_port(8080).expires_at)
            sb.unexpose_port(8080)
        finally:
            srv.kill()
        for bad in (0, 65536, -1):
            with self.assertRaises(InvalidArgumentError):
                sb.expose_port(bad)

    def test_13_update_ssh_keys(self):
        k = keypair()
        sb.update_ssh_authorized_keys([k])
        with open(os.path.join(sb.path, "ssh/authorized_keys")) as f:
            self.assertEqual(f.read(), k + "\n")
        self.assertEqual(sb.refresh().info["ssh"]["keys"], 1)
        with self.assertRaises(InvalidArgumentError):
            sb.update_ssh_authorized_keys(["ssh-ed25519 AAAA..."])
        with open(os.path.join(sb.path, "ssh/authorized_keys")) as f:
            self.assertEqual(f.read(), k + "\n")

    def test_14_volumes_in_create(self):
        if not has("volumes"):
            self.skipTest("this tree has no volumes/ (volumes not merged yet)")
        with open(os.path.join(MOUNT, "volumes/new"), "w") as f:
            f.write("name=pyvol size=64M")
        v = Sandbox.create(name="pyvol-user", volumes=[
            {"volume_id": "pyvol", "mount_path": "/data",
             "read_only": False}])
        try:
            vols = v.refresh().info["volumes"]
            self.assertEqual([(x["mount_path"], x["read_only"])
                              for x in vols], [("/data", False)])
            v.exec("sh", "-c", "echo kept > /data/f && sync", check=True)
            self.assertEqual(v.exec("cat", "/data/f").stdout_text, "kept\n")
        finally:
            v.delete()
            rmdir_busy(os.path.join(MOUNT, "volumes/pyvol"))

    def test_15_snapshot_id(self):
        if not has("snapshots"):
            self.skipTest("this tree has no snapshots/ (snapshots not "
                          "merged yet)")
        sb.fs.write_text("snap-marker", "before snapshot\n")
        sb.snapshot("py-snap")
        st = os.path.join(MOUNT, "snapshots/py-snap/state")
        for _ in range(300):
            with open(st) as f:
                state = f.read().strip()
            if state != "CREATING":
                break
            time.sleep(1)
        self.assertEqual(state, "READY")
        r = Sandbox.create(name="py-restored", snapshot_id="py-snap")
        try:
            self.assertEqual(r.fs.read_text("snap-marker"),
                             "before snapshot\n")
            self.assertEqual(r.refresh().info["snapshot"], "py-snap")
        finally:
            r.delete()
            rmdir_busy(os.path.join(MOUNT, "snapshots/py-snap"))

    def test_20_create_with_keys_no_wait_context_manager(self):
        k = keypair()
        # the seed's example (plus wait=False, then wait_ready)
        t0 = time.monotonic()
        with Sandbox.create(ssh_authorized_keys=[k], wait=False,
                            max_duration=600) as s2:
            quick = time.monotonic() - t0
            self.assertIn(s2.state, ("CREATING", "READY"))
            s2.wait_ready(180)
            self.assertIn(s2.state, ("READY", "RUNNING"))
            with open(os.path.join(s2.path, "ssh/authorized_keys")) as f:
                self.assertEqual(f.read(), k + "\n")
            self.assertEqual(s2.exec("echo", "up").stdout_text, "up\n")
            if os.path.isdir(os.path.join(s2.path, "ports")):
                # inbound is off: a permission error with the err reason
                with self.assertRaises(PermissionError) as cm:
                    s2.expose_port(3000)
                self.assertTrue(cm.exception.reason)
            # extend pushes a deadline back (seconds or a timedelta)
            exp0 = expires(s2)
            s2.extend(datetime.timedelta(minutes=30))
            self.assertAlmostEqual((expires(s2) - exp0).total_seconds(),
                                   1800, delta=5)
        self.assertLess(quick, 10)
        self.assertEqual(s2.state, "TERMINATED")
        self.assertFalse(s2.close_if_open())
        s2.delete()

    def test_99_lifecycle_example(self):
        before = sb.refresh().info["expires_at"]
        # the seed's example, as written
        sb.wait_ready(180)
        sb.refresh()
        sb.extend(1800)  # +30 minutes (seconds or a timedelta)
        after = sb.refresh().info["expires_at"]
        sb.pause()
        paused = sb.state
        sb.resume()
        resumed = sb.state
        sb.close()  # or sb.close_if_open(); the context manager closes on exit

        # a session without a deadline keeps none (docs/tree.md)
        self.assertIsNone(before)
        self.assertIsNone(after)
        self.assertEqual(paused, "PAUSED")
        self.assertIn(resumed, ("READY", "RUNNING"))
        self.assertEqual(sb.state, "TERMINATED")
        self.assertFalse(sb.close_if_open())


def rmdir_busy(path):
    """rmdir that waits out EBUSY: a volume is detached as its session
    goes."""
    for i in range(60):
        try:
            return os.rmdir(path)
        except OSError as e:
            if e.errno != errno.EBUSY or i == 59:
                raise
            time.sleep(0.5)


def http_get(url):
    """GET url like curl does: names under .localhost are this host."""
    u = urllib.parse.urlsplit(url)
    host = u.hostname
    if host == "localhost" or host.endswith(".localhost"):
        host = "127.0.0.1"
    c = http.client.HTTPConnection(host, u.port or 80, timeout=10)
    try:
        c.request("GET", u.path or "/", headers={"Host": u.netloc})
        r = c.getresponse()
        body = r.read()
        if r.status != 200:
            raise OSError("HTTP %d" % r.status)
        return body
    finally:
        c.close()


def expires(s):
    v = s.refresh().info["expires_at"]
    return datetime.datetime.fromisoformat(v.replace("Z", "+00:00"))


def keypair():
    if not shutil.which("ssh-keygen"):
        raise unittest.SkipTest("ssh-keygen missing")
    d = tempfile.mkdtemp()
    try:
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C",
                        "sdk-test", "-f", os.path.join(d, "k")], check=True)
        with open(os.path.join(d, "k.pub")) as f:
            return f.read().strip()
    finally:
        shutil.rmtree(d)


if __name__ == "__main__":
    unittest.main()
