"""File access to the mounted tree: the only I/O this package does."""

import contextlib
import datetime
import errno
import math
import os
import select

from .errors import SandboxTimeoutError, from_oserror

DEFAULT_MOUNT = "/tenki"
CHUNK = 1 << 20  # the tree's largest single read or write


def mount_dir(mount=None):
    return mount or os.environ.get("TENKI_MOUNT") or DEFAULT_MOUNT


def duration(value):
    """Seconds (int/float) or a timedelta -> the tree's duration text."""
    if isinstance(value, datetime.timedelta):
        value = value.total_seconds()
    if isinstance(value, str):
        return value
    if value < 0:
        raise ValueError("negative duration: %r" % value)
    return "%ds" % math.ceil(value)


class ErrMark:
    """Remembers how long some err files were, so that after a refusal the
    line tenkid appended (to the nearest of them) can be read back."""

    def __init__(self, *paths):
        self.marks = [(p, _size(p)) for p in paths]

    def reason(self):
        for path, size in self.marks:
            try:
                with open(path, "rb") as f:
                    data = f.read()
            except OSError:
                continue
            if len(data) <= size:
                continue
            lines = data[size:].decode("utf-8", "replace").strip().splitlines()
            if not lines:
                continue
            line = lines[-1]
            # "TIME OBJECT: reason": drop the time
            head, _, rest = line.partition(" ")
            if head[:1].isdigit() and rest:
                line = rest
            return line
        return None

    def error(self, what, exc):
        return from_oserror(what, exc, self.reason())


def _size(path):
    try:
        with open(path, "rb") as f:
            return len(f.read())
    except OSError:
        return 0


@contextlib.contextmanager
def refusals(what, *errfiles):
    """Turn an OSError raised inside into a SandboxError with the reason."""
    mark = ErrMark(*errfiles)
    try:
        yield mark
    except OSError as e:
        raise mark.error(what, e) from None


def read_bytes(path):
    """Read to EOF (tree files report no useful size)."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        parts = []
        while True:
            b = os.read(fd, CHUNK)
            if not b:
                break
            parts.append(b)
        return b"".join(parts)
    finally:
        os.close(fd)


def read_text(path):
    return read_bytes(path).decode("utf-8", "replace")


def read_line(path):
    return read_text(path).split("\n", 1)[0]


def read_blocking(path, timeout=None):
    """Read a blocking file (wait, exit) to EOF, giving up after timeout
    seconds with SandboxTimeoutError (poll on an O_NONBLOCK descriptor)."""
    if timeout is None:
        return read_text(path)
    deadline = _now() + timeout
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        parts = []
        p = select.poll()
        p.register(fd, select.POLLIN)
        while True:
            try:
                b = os.read(fd, CHUNK)
            except BlockingIOError:
                left = deadline - _now()
                if left <= 0:
                    raise SandboxTimeoutError(
                        "%s: still blocked after %gs" % (path, timeout),
                        errno=errno.ETIMEDOUT) from None
                p.poll(max(1, int(left * 1000)))
                continue
            if not b:
                break
            parts.append(b)
        return b"".join(parts).decode("utf-8", "replace")
    finally:
        os.close(fd)


def _now():
    import time
    return time.monotonic()


def write(path, data, flags=0):
    """One open, whole writes, close: value files apply at close, so the
    close's error counts too."""
    if isinstance(data, str):
        data = data.encode()
    fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC | flags, 0o644)
    try:
        view = memoryview(data)
        while view:
            n = os.write(fd, view[:CHUNK])
            view = view[n:]
    except BaseException:
        os.close(fd)
        raise
    os.close(fd)
