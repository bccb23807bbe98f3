"""tenki_sandbox: a Python client of the tenki file tree.

Every call opens, reads or writes files under the mount ($TENKI_MOUNT, or
/tenki, or Client(mount=...)); there is no other protocol.

    from tenki_sandbox import Sandbox
    sb = Sandbox.create(name="demo")
    print(sb.exec("uname", "-a").stdout_text)
"""

from .errors import (AlreadyExistsError, BusyError, CapacityError,
                     CommandFailedError, InvalidArgumentError, NotFoundError,
                     NotSupportedError, SandboxError, SandboxPermissionError,
                     SandboxTimeoutError)
from .fs import FileInfo, FileSystem
from .process import ExecResult, Process
from .sandbox import Client, ExposedPort, Sandbox

__version__ = "0.1.0"

__all__ = [
    "AlreadyExistsError", "BusyError", "CapacityError", "Client",
    "CommandFailedError", "ExecResult", "ExposedPort", "FileInfo",
    "FileSystem", "InvalidArgumentError", "NotFoundError",
    "NotSupportedError", "Process", "Sandbox", "SandboxError",
    "SandboxPermissionError", "SandboxTimeoutError",
]
