"""sb.fs: the session's files/ directory, which is the guest's /home/tenki.
Guest paths are absolute under /home/tenki or relative to it; anything
else (including /tmp) is refused with a permission error."""

import datetime
import errno
import os
import posixpath
import shutil
import stat as _stat

from . import _tree
from .errors import SandboxPermissionError

HOME = "/home/tenki"


def guest_rel(path):
    """'/home/tenki/a/../b' -> 'b'; 'x' -> 'x'; '/tmp/x' -> None.  '..' is
    resolved here, lexically, so nothing climbs out of files/."""
    path = os.fspath(path)
    if path.startswith("/"):
        if path != HOME and not path.startswith(HOME + "/"):
            return None
        path = path[len(HOME):]
    out = []
    for part in path.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if not out:
                return None
            out.pop()
            continue
        out.append(part)
    return "/".join(out)


class FileInfo:
    """One entry of fs.list() or fs.stat()."""

    def __init__(self, path, st):
        self.path = path
        self.name = posixpath.basename(path)
        self.size = st.st_size
        self.mode = _stat.S_IMODE(st.st_mode)
        self.is_dir = _stat.S_ISDIR(st.st_mode)
        self.is_file = _stat.S_ISREG(st.st_mode)
        self.is_symlink = _stat.S_ISLNK(st.st_mode)
        self.modified = datetime.datetime.fromtimestamp(
            st.st_mtime, datetime.timezone.utc)

    def __repr__(self):
        return "FileInfo(%r, size=%d, is_dir=%r)" % (self.path, self.size,
                                                    self.is_dir)


class FileSystem:
    def __init__(self, sandbox):
        self._sb = sandbox
        self.root = os.path.join(sandbox.path, "files")

    def _host(self, path, what):
        rel = guest_rel(path)
        if rel is None:
            raise SandboxPermissionError(
                "%s %s: Permission denied: only paths under %s can be "
                "reached" % (what, path, HOME), errno=errno.EACCES)
        return os.path.join(self.root, rel) if rel else self.root

    def _guest(self, host):
        rel = os.path.relpath(host, self.root)
        return HOME if rel == "." else HOME + "/" + rel

    def _refusals(self, what, path):
        return self._sb._refusals("%s %s" % (what, path))

    def read_bytes(self, path):
        p = self._host(path, "read")
        with self._refusals("read", path):
            with open(p, "rb") as f:
                return f.read()

    def read_text(self, path, encoding="utf-8"):
        return self.read_bytes(path).decode(encoding)

    def write_bytes(self, path, data, mode=None):
        """Write a whole file, making its parent directories."""
        p = self._host(path, "write")
        if p == self.root:
            raise IsADirectoryError(errno.EISDIR, "Is a directory", path)
        with self._refusals("write", path):
            os.makedirs(os.path.dirname(p), exist_ok=True)
            with open(p, "wb") as f:
                f.write(data)
            if mode is not None:
                os.chmod(p, mode)

    def write_text(self, path, text, encoding="utf-8", mode=None):
        self.write_bytes(path, text.encode(encoding), mode)

    def list(self, path=HOME):
        """The entries of a directory, sorted by name."""
        p = self._host(path, "list")
        with self._refusals("list", path):
            names = sorted(os.listdir(p))
            return [FileInfo(self._guest(os.path.join(p, n)),
                             os.lstat(os.path.join(p, n))) for n in names]

    def stat(self, path):
        p = self._host(path, "stat")
        with self._refusals("stat", path):
            return FileInfo(self._guest(p), os.lstat(p))

    def exists(self, path):
        try:
            os.lstat(self._host(path, "stat"))
            return True
        except FileNotFoundError:
            return False

    def mkdir(self, path, parents=True):
        p = self._host(path, "mkdir")
        with self._refusals("mkdir", path):
            if parents:
                os.makedirs(p, exist_ok=True)
            else:
                os.mkdir(p)

    def remove(self, path, recursive=False):
        p = self._host(path, "remove")
        if p == self.root:
            raise SandboxPermissionError("remove %s: refusing to remove the "
                                         "home directory" % path)
        with self._refusals("remove", path):
            if os.path.isdir(p) and not os.path.islink(p):
                shutil.rmtree(p) if recursive else os.rmdir(p)
            else:
                os.unlink(p)

    def rename(self, src, dst):
        a, b = self._host(src, "rename"), self._host(dst, "rename")
        with self._refusals("rename", src):
            os.rename(a, b)

    def upload(self, local_path, remote_path):
        """Copy a local file into the guest."""
        p = self._host(remote_path, "upload")
        with self._refusals("upload", remote_path):
            os.makedirs(os.path.dirname(p), exist_ok=True)
            with open(local_path, "rb") as src, open(p, "wb") as dst:
                shutil.copyfileobj(src, dst, _tree.CHUNK)

    def download(self, remote_path, local_path):
        """Copy a guest file to a local path."""
        p = self._host(remote_path, "download")
        with self._refusals("download", remote_path):
            with open(p, "rb") as src, open(local_path, "wb") as dst:
                shutil.copyfileobj(src, dst, _tree.CHUNK)
