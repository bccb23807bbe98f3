"""Parts of tenki_sandbox that need no tree: guest paths and create specs."""

import datetime
import os
import sys
import unittest

try:
    import tenki_sandbox  # noqa: F401
except ImportError:
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from tenki_sandbox import Client, InvalidArgumentError  # noqa: E402
from tenki_sandbox.fs import guest_rel  # noqa: E402
from tenki_sandbox.sandbox import _spec  # noqa: E402


class Offline(unittest.TestCase):
    def test_guest_paths(self):
        for path, want in (("/home/tenki", ""), ("/home/tenki/a/b", "a/b"),
                           ("a/./b//c", "a/b/c"), ("a/../b", "b"),
                           ("/home/tenki/a/../../tenki/x", None),
                           ("/home/tenki/..", None), ("..", None),
                           ("/tmp/x", None), ("/home/tenkix", None),
                           ("/", None)):
            self.assertEqual(guest_rel(path), want, path)

    def test_spec(self):
        s = _spec(name="n", cpu_cores=2, env={"A": 1}, max_duration=90.5,
                  volumes=[{"volume_id": "v", "mount_path": "/data",
                            "read_only": True}, "w:/w"],
                  snapshot_id="snap", ssh_authorized_keys=("k",),
                  wait_timeout=datetime.timedelta(minutes=2), wait=False)
        self.assertEqual(s, {
            "name": "n", "cpu_cores": 2, "env": {"A": "1"},
            "max_duration": "91s", "snapshot": "snap",
            "ssh_authorized_keys": ["k"], "wait_timeout": "120s",
            "volumes": [{"volume_id": "v", "mount_path": "/data",
                         "read_only": True},
                        {"volume_id": "w", "mount_path": "/w"}],
            "wait": False})
        self.assertEqual(_spec(), {"wait": True})

    def test_mount_choice(self):
        old = os.environ.pop("TENKI_MOUNT", None)
        try:
            self.assertEqual(Client().mount, "/tenki")
            os.environ["TENKI_MOUNT"] = "/elsewhere"
            self.assertEqual(Client().mount, "/elsewhere")
            self.assertEqual(Client("/given").mount, "/given")
        finally:
            os.environ.pop("TENKI_MOUNT", None)
            if old is not None:
                os.environ["TENKI_MOUNT"] = old

    def test_bad_port_needs_no_tree(self):
        from tenki_sandbox.sandbox import Sandbox
        for p in (0, 65536, -1, "80", True):
            with self.assertRaises(InvalidArgumentError):
                Sandbox._port(p)


if __name__ == "__main__":
    unittest.main()
