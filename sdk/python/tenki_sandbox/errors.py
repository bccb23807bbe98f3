"""Exceptions.  A refused operation carries its errno and the reason tenkid
appended to the nearest ``err`` file of the tree."""

import errno as _errno
import os


class SandboxError(Exception):
    """An operation on the tree failed.  ``errno`` is the tree's errno (or
    None), ``reason`` the line tenkid wrote to ``err`` (or None)."""

    def __init__(self, message, errno=None, reason=None):
        super().__init__(message)
        self.errno = errno
        self.reason = reason


class NotFoundError(SandboxError, LookupError):
    pass


class SandboxPermissionError(SandboxError, PermissionError):
    pass


class AlreadyExistsError(SandboxError):
    pass


class InvalidArgumentError(SandboxError, ValueError):
    pass


class BusyError(SandboxError):
    pass


class CapacityError(SandboxError):
    pass


class SandboxTimeoutError(SandboxError, TimeoutError):
    pass


class NotSupportedError(SandboxError):
    """The tree lacks a directory this call needs (an older tenkid)."""


class CommandFailedError(SandboxError):
    """A command ended with a non-zero exit code, a signal or its timeout.
    ``result`` is its ExecResult."""

    def __init__(self, message, result):
        super().__init__(message)
        self.result = result


_BY_ERRNO = {
    _errno.ENOENT: NotFoundError,
    _errno.EACCES: SandboxPermissionError,
    _errno.EPERM: SandboxPermissionError,
    _errno.EEXIST: AlreadyExistsError,
    _errno.EINVAL: InvalidArgumentError,
    _errno.EBUSY: BusyError,
    _errno.ENOSPC: CapacityError,
    _errno.ETIMEDOUT: SandboxTimeoutError,
}


def from_oserror(what, exc, reason=None):
    """A SandboxError for OSError exc raised while doing `what`."""
    e = exc.errno
    if e == _errno.ENOTCONN:
        msg = "%s: tenkid is not running (stale mount)" % what
    elif reason:
        msg = "%s: %s (%s)" % (what, reason, os.strerror(e) if e else exc)
    else:
        msg = "%s: %s" % (what, os.strerror(e) if e else exc)
    cls = _BY_ERRNO.get(e, SandboxError)
    return cls(msg, errno=e, reason=reason)
