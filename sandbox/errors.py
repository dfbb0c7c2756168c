"""Every error the `sandbox` package raises.

Hierarchy::

    SandboxError
    ├── BackendUnavailable      the container engine does not answer
    ├── ImageNotFound           the image is not built (hint: `corral images build`)
    ├── RuntimeUnavailable      a requested OCI runtime (e.g. runsc) is not installed
    ├── SandboxNotFound         no sandbox with that id (or it was removed)
    ├── SandboxDied             the container stopped under us (reason: oom, exited, ...)
    ├── SpecError               a SandboxSpec that cannot be honoured
    └── RpcError                the host <-> guest channel
        ├── ProtocolError       malformed frame, handshake/version mismatch
        ├── ConnectionLost      the guest went away mid-call
        ├── CallCancelled       the call was cancelled
        └── ToolError           the guest refused or failed a tool call
            ├── InvalidArgument
            ├── PathNotAllowed  outside the workspace, `..`, or a symlink escape
            ├── FileNotFound
            ├── FileExists
            ├── NotADirectory
            ├── IsADirectory
            └── LimitExceeded

Foreign errors (docker.errors.*, OSError on the socket) are mapped at the boundary to the most
specific class here. Guest errors travel as a string `code`; the host maps codes through the
fixed table `TOOL_ERRORS` and never instantiates a class the untrusted side names.
"""

from __future__ import annotations


class SandboxError(Exception):
    """Base of all sandbox errors. `reason` is a short machine-readable word."""

    reason: str = "error"

    def __init__(self, message: str, *, reason: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if reason is not None:
            self.reason = reason

    def __str__(self) -> str:
        return self.message


class BackendUnavailable(SandboxError):
    reason = "backend_unavailable"


class ImageNotFound(SandboxError):
    reason = "image_not_found"


class RuntimeUnavailable(SandboxError):
    reason = "runtime_unavailable"


class SandboxNotFound(SandboxError):
    reason = "not_found"


class SandboxDied(SandboxError):
    reason = "died"


class SpecError(SandboxError):
    reason = "invalid_spec"


class RpcError(SandboxError):
    reason = "rpc"


class ProtocolError(RpcError):
    reason = "protocol"


class ConnectionLost(RpcError):
    reason = "connection_lost"


class CallCancelled(RpcError):
    reason = "cancelled"


class ToolError(RpcError):
    """A tool call the guest refused or failed. `code` is the wire code."""

    code = "tool_error"
    reason = "tool_error"


class InvalidArgument(ToolError):
    code = "invalid_argument"


class PathNotAllowed(ToolError):
    code = "path_not_allowed"


class FileNotFound(ToolError):
    code = "not_found"


class FileExists(ToolError):
    code = "exists"


class NotADirectory(ToolError):
    code = "not_a_directory"


class IsADirectory(ToolError):
    code = "is_a_directory"


class LimitExceeded(ToolError):
    code = "limit_exceeded"


TOOL_ERRORS: dict[str, type[ToolError]] = {
    cls.code: cls
    for cls in (
        ToolError,
        InvalidArgument,
        PathNotAllowed,
        FileNotFound,
        FileExists,
        NotADirectory,
        IsADirectory,
        LimitExceeded,
    )
}


def tool_error(code: str, message: str) -> ToolError:
    """Build the host-side exception for a guest error code (unknown codes -> ToolError)."""
    cls = TOOL_ERRORS.get(code, ToolError)
    err = cls(message)
    err.code = code if code in TOOL_ERRORS else ToolError.code
    return err
