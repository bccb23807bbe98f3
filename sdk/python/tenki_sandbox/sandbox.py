"""Sessions: sessions/new to create, the session directory's files to
drive one (ctl verbs, info.json, wait, exec/, files/, ports/, ssh/)."""

import datetime
import errno
import json
import os

from . import _tree
from .errors import (InvalidArgumentError, NotFoundError, NotSupportedError,
                     SandboxError)
from .fs import FileSystem
from .process import Process

FINAL = ("TERMINATING", "TERMINATED")


def _spec(name=None, cpu_cores=None, memory_mb=None, allow_inbound=None,
          allow_outbound=None, env=None, metadata=None,
          ssh_authorized_keys=None, volumes=None, snapshot_id=None,
          template=None, image=None, max_duration=None, wait=True,
          wait_timeout=None, host=None):
    spec = {}
    for k, v in (("name", name), ("cpu_cores", cpu_cores),
                 ("memory_mb", memory_mb), ("allow_inbound", allow_inbound),
                 ("allow_outbound", allow_outbound), ("image", image),
                 ("snapshot", snapshot_id), ("template", template),
                 ("host", host)):
        if v is not None:
            spec[k] = v
    if env:
        spec["env"] = {str(k): str(v) for k, v in env.items()}
    if metadata:
        spec["metadata"] = {str(k): str(v) for k, v in metadata.items()}
    if ssh_authorized_keys:
        spec["ssh_authorized_keys"] = list(ssh_authorized_keys)
    if volumes:
        spec["volumes"] = [_volume(v) for v in volumes]
    if max_duration is not None:
        spec["max_duration"] = _tree.duration(max_duration)
    if wait_timeout is not None:
        spec["wait_timeout"] = _tree.duration(wait_timeout)
    spec["wait"] = bool(wait)
    return spec


def _volume(v):
    if isinstance(v, str):  # "NAME:PATH[:ro]"
        parts = v.split(":")
        v = {"volume_id": parts[0], "mount_path": parts[1],
             "read_only": len(parts) > 2 and parts[2] == "ro"}
    out = {"volume_id": v["volume_id"], "mount_path": v["mount_path"]}
    if v.get("read_only"):
        out["read_only"] = True
    return out


class Client:
    """The tree at `mount` (else $TENKI_MOUNT, else /tenki)."""

    def __init__(self, mount=None):
        self.mount = _tree.mount_dir(mount)
        self.sessions = os.path.join(self.mount, "sessions")

    def _refusals(self, what):
        return _tree.refusals(what, os.path.join(self.sessions, "err"),
                              os.path.join(self.mount, "err"))

    # A client holds nothing open between calls: close() is for symmetry
    # with clients that do, so `with Client() as c:` works.
    def close(self):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def create(self, **kw):
        """Create a session (see Sandbox.create for the arguments); waits
        until it is usable unless wait=False."""
        text = json.dumps(_spec(**kw))
        what = "create session%s" % (" " + kw["name"] if kw.get("name")
                                     else "")
        with self._refusals(what):
            fd = os.open(os.path.join(self.sessions, "new"),
                         os.O_RDWR | os.O_CLOEXEC)
            try:
                os.write(fd, text.encode())
                name = os.pread(fd, 256, 0).decode().strip()
            finally:
                os.close(fd)
        if not name:
            raise SandboxError("%s: sessions/new gave no name back" % what)
        return Sandbox(self, name)

    def list(self):
        """Every session, as Sandbox objects (records from index.json)."""
        with self._refusals("list sessions"):
            recs = json.loads(
                _tree.read_text(os.path.join(self.sessions, "index.json")))
        return [Sandbox(self, r["name"], r) for r in recs]

    def get(self, session):
        """A session by name or UUID."""
        if "/" in session or session in ("", ".", ".."):
            raise InvalidArgumentError("session %r: not a valid name or id"
                                       % session, errno=errno.EINVAL)
        if os.path.isdir(os.path.join(self.sessions, session)):
            return Sandbox(self, session)
        for sb in self.list():
            if sb.id.lower() == session.lower():
                return sb
        raise NotFoundError("session %s: no such session" % session,
                            errno=errno.ENOENT)


class ExposedPort:
    """A guest port reachable from outside: ports/<port>'s url and
    expires lines."""

    def __init__(self, port, url, expires_at, preview_url=None):
        self.port = port
        self.url = url  # the port's own host listener
        # the shared preview listener's name for it, else url
        self.preview_url = preview_url or url
        self.expires_at = expires_at  # datetime, or None for never

    def __repr__(self):
        return "ExposedPort(port=%d, url=%r, expires_at=%r)" % (
            self.port, self.url, self.expires_at)


def _parse_time(s):
    if not s or s in ("never", "-", "null"):
        return None
    try:
        return datetime.datetime.fromisoformat(s.replace("Z", "+00:00"))
    except ValueError:
        return s


class Sandbox:
    """One session directory, sessions/<name>."""

    def __init__(self, client, name, info=None):
        self.client = client
        self.name = name
        self.path = os.path.join(client.sessions, name)
        self._info = info
        self.fs = FileSystem(self)

    # ---- creation and lookup -------------------------------------------

    @classmethod
    def create(cls, name=None, cpu_cores=None, memory_mb=None,
               allow_inbound=None, allow_outbound=None, env=None,
               metadata=None, ssh_authorized_keys=None, volumes=None,
               snapshot_id=None, image=None, max_duration=None, wait=True,
               wait_timeout=None, template=None, mount=None):
        """Create a session and, unless wait=False, return once it is
        usable.  volumes: list of {"volume_id", "mount_path", "read_only"}
        dicts (or "NAME:PATH[:ro]" strings); durations in seconds or a
        timedelta."""
        return Client(mount).create(
            name=name, cpu_cores=cpu_cores, memory_mb=memory_mb,
            allow_inbound=allow_inbound, allow_outbound=allow_outbound,
            env=env, metadata=metadata,
            ssh_authorized_keys=ssh_authorized_keys, volumes=volumes,
            snapshot_id=snapshot_id, image=image, max_duration=max_duration,
            wait=wait, wait_timeout=wait_timeout, template=template)

    @classmethod
    def get(cls, session, mount=None):
        return Client(mount).get(session)

    def _refusals(self, what):
        return _tree.refusals(what, os.path.join(self.path, "err"),
                              os.path.join(self.client.sessions, "err"))

    def _file(self, *parts):
        return os.path.join(self.path, *parts)

    # ---- state ----------------------------------------------------------

    @property
    def info(self):
        if self._info is None:
            self.refresh()
        return self._info

    def refresh(self):
        """Re-read info.json."""
        with self._refusals("session %s" % self.name):
            self._info = json.loads(_tree.read_text(self._file("info.json")))
        return self

    @property
    def id(self):
        return self.info["id"]

    @property
    def state(self):
        """The current state (read from the tree each time)."""
        with self._refusals("session %s" % self.name):
            return _tree.read_line(self._file("state"))

    def wait_ready(self, timeout=180):
        """Block until the session is usable; SandboxTimeoutError after
        timeout seconds, SandboxError if it ended instead."""
        with self._refusals("session %s: wait" % self.name):
            st = _tree.read_blocking(self._file("wait"), timeout).strip()
        if st not in ("READY", "RUNNING"):
            raise SandboxError("session %s is %s, not usable%s" % (
                self.name, st, self._reason()))
        self._info = None
        return self

    def _reason(self):
        try:
            r = self.refresh().info.get("reason")
        except SandboxError:
            return ""
        return ": " + r if r else ""

    # ---- ctl verbs ------------------------------------------------------

    def _ctl(self, verb):
        with self._refusals("session %s: %s" % (self.name, verb)):
            _tree.write(self._file("ctl"), verb + "\n")
        self._info = None

    def extend(self, duration):
        """Push the deadline back by seconds (or a timedelta)."""
        self._ctl("extend " + _tree.duration(duration))

    def pause(self):
        self._ctl("pause")

    def resume(self):
        self._ctl("resume")

    def close(self):
        """Terminate the session (its record stays until delete())."""
        self._ctl("close")

    def close_if_open(self):
        """close() unless already closed or gone; True if it closed."""
        try:
            if self.state in FINAL:
                return False
            self.close()
            return True
        except NotFoundError:
            return False

    def delete(self):
        """rmdir the session: closes it if open and removes every trace."""
        with self._refusals("delete session %s" % self.name):
            os.rmdir(self.path)

    def snapshot(self, name, ttl=None):
        """Capture the session as snapshot `name` (snapshots/<name>)."""
        verb = "snapshot %s" % name
        if ttl is not None:
            verb += " ttl=" + _tree.duration(ttl)
        self._ctl(verb)
        return name

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close_if_open()

    # ---- exec -----------------------------------------------------------

    def exec(self, *argv, cwd=None, env=None, timeout=None, input=None,
             check=False):
        """Run argv (no shell) to the end and return its ExecResult."""
        if not argv:
            raise ValueError("exec: nothing to run")
        return self._run(Process._start(self, argv=[str(a) for a in argv],
                                        cwd=cwd, env=env, timeout=timeout),
                         input, check)

    def shell(self, line, cwd=None, env=None, timeout=None, input=None,
              check=False):
        """Run a shell line (/bin/sh -c) and return its ExecResult."""
        return self._run(Process._start(self, line=line, cwd=cwd, env=env,
                                        timeout=timeout), input, check)

    def _run(self, proc, input, check):
        if input is not None:
            proc.write(input)
        proc.close_stdin()
        res = proc.wait()
        return res.check() if check else res

    def start(self, *argv, cwd=None, env=None, timeout=None, shell=False):
        """Start argv (or, with shell=True, one shell line) and return a
        live Process; its stdin stays open until close_stdin()."""
        if shell:
            if len(argv) != 1:
                raise ValueError("start(shell=True) takes one line")
            return Process._start(self, line=argv[0], cwd=cwd, env=env,
                                  timeout=timeout)
        if not argv:
            raise ValueError("start: nothing to run")
        return Process._start(self, argv=[str(a) for a in argv], cwd=cwd,
                              env=env, timeout=timeout)

    # ---- ports ----------------------------------------------------------

    def _ports_dir(self):
        d = self._file("ports")
        if not os.path.isdir(d):
            raise NotSupportedError(
                "session %s has no ports/ (this tenkid does not expose "
                "ports)" % self.name, errno=errno.ENOTSUP)
        return d

    def _read_port(self, port):
        url = expires = preview = None
        with self._refusals("port %d of session %s" % (port, self.name)):
            text = _tree.read_text(os.path.join(self._ports_dir(), str(port)))
        for line in text.splitlines():
            k, _, v = line.partition(" ")
            if k == "url":
                url = v
            elif k == "expires":
                expires = _parse_time(v)
            elif k == "preview":
                preview = v
        return ExposedPort(port, url, expires, preview)

    @staticmethod
    def _port(port):
        if isinstance(port, bool) or not isinstance(port, int) or \
                not 1 <= port <= 65535:
            raise InvalidArgumentError(
                "port %r: port numbers must be between 1 and 65535" % (port,),
                errno=errno.EINVAL)
        return port

    def expose_port(self, port, ttl=None):
        """Expose guest port `port` (for ttl seconds, else no expiry);
        returns an ExposedPort with .url."""
        port = self._port(port)
        d = self._ports_dir()
        data = _tree.duration(ttl) + "\n" if ttl is not None else ""
        with self._refusals("expose port %d of session %s" % (port,
                                                             self.name)):
            _tree.write(os.path.join(d, str(port)), data, os.O_CREAT)
        return self._read_port(port)

    def list_exposed_ports(self):
        d = self._ports_dir()
        with self._refusals("ports of session %s" % self.name):
            ports = sorted(int(n) for n in os.listdir(d) if n.isdigit())
        out = []
        for p in ports:
            try:
                out.append(self._read_port(p))
            except NotFoundError:  # unexposed meanwhile
                pass
        return out

    def unexpose_port(self, port):
        port = self._port(port)
        with self._refusals("unexpose port %d of session %s" %
                            (port, self.name)):
            os.unlink(os.path.join(self._ports_dir(), str(port)))

    # ---- ssh ------------------------------------------------------------

    def update_ssh_authorized_keys(self, keys):
        """Replace the keys the SSH gateway accepts for this session."""
        text = "".join(k.strip() + "\n" for k in keys)
        with self._refusals("session %s: ssh keys" % self.name):
            _tree.write(self._file("ssh", "authorized_keys"), text,
                        os.O_TRUNC)

    @property
    def ssh_target(self):
        """"USER@HOST -p PORT", or None without a gateway."""
        try:
            return _tree.read_line(self._file("ssh", "target")) or None
        except OSError:
            return None

    def __repr__(self):
        return "Sandbox(%r)" % self.name
