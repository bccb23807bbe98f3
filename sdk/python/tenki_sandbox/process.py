"""Exec jobs: a directory made by reading exec/clone, started by closing
its argv (or cmd), with live stdout/stderr streams and a blocking exit."""

import json
import os

from . import _tree
from .errors import CommandFailedError, SandboxTimeoutError


class ExecResult:
    """What a finished job left: output, exit code and status."""

    def __init__(self, job, stdout, stderr, exit_code, status, info):
        self.job = job
        self.stdout = stdout
        self.stderr = stderr
        self.exit_code = exit_code
        self.status = status  # "exited N" | "killed SIG" | "timeout" | "failed ..."
        self.info = info or {}

    @property
    def stdout_text(self):
        return self.stdout.decode("utf-8", "replace")

    @property
    def stderr_text(self):
        return self.stderr.decode("utf-8", "replace")

    @property
    def timed_out(self):
        return self.status == "timeout" or bool(self.info.get("timed_out"))

    @property
    def duration_ms(self):
        return self.info.get("duration_ms")

    @property
    def ok(self):
        return self.exit_code == 0 and not self.timed_out

    def check(self):
        """Raise CommandFailedError unless the command succeeded."""
        if self.ok:
            return self
        what = "timed out" if self.timed_out else self.status
        err = self.stderr_text.strip()
        raise CommandFailedError(
            "command failed (%s, exit=%d)%s" %
            (what, self.exit_code, ": " + err if err else ""), self)

    def __repr__(self):
        return "ExecResult(job=%r, status=%r, exit_code=%r)" % (
            self.job, self.status, self.exit_code)


class _Stream:
    """A live output stream: iterating yields bytes chunks as they arrive
    and ends when the job's stream ends."""

    def __init__(self, path):
        self._path = path

    def __iter__(self):
        fd = os.open(self._path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            while True:
                b = os.read(fd, _tree.CHUNK)
                if not b:
                    return
                yield b
        finally:
            os.close(fd)

    def read(self):
        """Everything, once the stream has ended (re-readable from 0)."""
        return _tree.read_bytes(self._path)


def _argv_text(argv):
    for a in argv:
        if "\n" in a:
            raise ValueError("an argument holds a newline, which argv "
                             "cannot carry: use shell()")
    return "".join(a + "\n" for a in argv)


class Process:
    """A started job.  stdout/stderr iterate live; write()/close_stdin()
    feed stdin; wait() returns the ExecResult."""

    def __init__(self, sandbox, job):
        self._sb = sandbox
        self.job = job
        self.dir = os.path.join(sandbox.path, "exec", job)
        self.stdout = _Stream(os.path.join(self.dir, "stdout"))
        self.stderr = _Stream(os.path.join(self.dir, "stderr"))
        self.output = _Stream(os.path.join(self.dir, "output"))
        self._stdin = None
        self._stdin_closed = False

    @classmethod
    def _start(cls, sb, argv=None, line=None, cwd=None, env=None,
               timeout=None):
        what = "exec in session %s" % sb.name
        with sb._refusals(what):
            job = _tree.read_line(os.path.join(sb.path, "exec", "clone"))
        p = cls(sb, job)
        try:
            if env:
                p._put("env", "".join("%s=%s\n" % (k, v)
                                      for k, v in env.items()), what)
            if cwd is not None:
                p._put("cwd", str(cwd) + "\n", what)
            if timeout is not None:
                p._put("timeout", _tree.duration(timeout) + "\n", what)
            if line is not None:
                p._put("cmd", line + "\n", what)
            else:
                p._put("argv", _argv_text(argv), what)
        except BaseException:
            try:  # never started: leave no job behind
                os.rmdir(p.dir)
            except OSError:
                pass
            raise
        return p

    def _put(self, name, text, what):
        with self._sb._refusals("%s: %s" % (what, name)):
            _tree.write(os.path.join(self.dir, name), text, os.O_TRUNC)

    def write(self, data):
        """Send bytes (or text) to the process's stdin."""
        if self._stdin is None:
            self._stdin = os.open(os.path.join(self.dir, "stdin"),
                                  os.O_WRONLY | os.O_CLOEXEC)
        if isinstance(data, str):
            data = data.encode()
        with self._sb._refusals("job %s: stdin" % self.job):
            view = memoryview(data)
            while view:
                view = view[os.write(self._stdin, view[:_tree.CHUNK]):]

    def close_stdin(self):
        """EOF on stdin (a job that ended already is fine)."""
        if self._stdin_closed:
            return
        self._stdin_closed = True
        if self._stdin is not None:
            fd, self._stdin = self._stdin, None
            os.close(fd)
            return
        try:
            _tree.write(os.path.join(self.dir, "ctl"), "eof\n")
        except OSError:
            pass

    def kill(self, sig=None):
        with self._sb._refusals("job %s: kill" % self.job):
            _tree.write(os.path.join(self.dir, "ctl"),
                        "kill%s\n" % (" %s" % sig if sig else ""))

    def poll(self):
        """The exit code, or None while the job runs."""
        st = _tree.read_line(os.path.join(self.dir, "status"))
        if st == "running":
            return None
        return self._exit_code(None)

    def _exit_code(self, timeout):
        text = _tree.read_blocking(os.path.join(self.dir, "exit"), timeout)
        return int(text.strip() or "-1")

    def wait(self, timeout=None):
        """Block until the job ends (SandboxTimeoutError after timeout
        seconds; the job keeps running) and return its ExecResult."""
        with self._sb._refusals("job %s" % self.job):
            code = self._exit_code(timeout)
            out = self.stdout.read()
            err = self.stderr.read()
            status = _tree.read_line(os.path.join(self.dir, "status"))
            try:
                info = json.loads(
                    _tree.read_text(os.path.join(self.dir, "info.json")))
            except ValueError:
                info = {}
        return ExecResult(self.job, out, err, code, status, info)

    def remove(self):
        """rmdir the job: kills it if running and frees its output."""
        with self._sb._refusals("job %s: remove" % self.job):
            os.rmdir(self.dir)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close_stdin()


__all__ = ["ExecResult", "Process", "CommandFailedError",
           "SandboxTimeoutError"]
