"""Guest-side tool failures and how OS errors become wire error codes.

Codes are the keys of `sandbox.errors.TOOL_ERRORS` on the host (this module cannot import
it: the guest is standard library only, so the strings are repeated here on purpose).
"""

from __future__ import annotations

import errno

INVALID_ARGUMENT = "invalid_argument"
PATH_NOT_ALLOWED = "path_not_allowed"
NOT_FOUND = "not_found"
EXISTS = "exists"
NOT_A_DIRECTORY = "not_a_directory"
IS_A_DIRECTORY = "is_a_directory"
LIMIT_EXCEEDED = "limit_exceeded"
TOOL_ERROR = "tool_error"
PROTOCOL = "protocol"
"""Connection-level: bad handshake or frame (the host raises ProtocolError)."""
UNAUTHORIZED = "unauthorized"
"""Connection-level: wrong TCP token (the host raises ProtocolError)."""


class ToolFailure(Exception):
    """A tool refused or failed; travels to the host as ``{code, message}``."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


_ERRNO_CODES = {
    errno.ENOENT: NOT_FOUND,
    errno.EEXIST: EXISTS,
    errno.ENOTEMPTY: INVALID_ARGUMENT,
    errno.ENOTDIR: NOT_A_DIRECTORY,
    errno.EISDIR: IS_A_DIRECTORY,
    errno.ELOOP: PATH_NOT_ALLOWED,
    errno.EXDEV: INVALID_ARGUMENT,
    errno.EINVAL: INVALID_ARGUMENT,
    errno.ENAMETOOLONG: INVALID_ARGUMENT,
    errno.ENOSPC: LIMIT_EXCEEDED,
    errno.EDQUOT: LIMIT_EXCEEDED,
    errno.EFBIG: LIMIT_EXCEEDED,
    errno.EMFILE: LIMIT_EXCEEDED,
    errno.E2BIG: LIMIT_EXCEEDED,
    errno.EAGAIN: LIMIT_EXCEEDED,
}


def from_os_error(exc: OSError, path: str) -> ToolFailure:
    """The most specific tool failure for an OSError on `path` (as the caller wrote it)."""
    code = _ERRNO_CODES.get(exc.errno or 0, TOOL_ERROR)
    if exc.errno == errno.ELOOP:
        return ToolFailure(code, f"{path}: symbolic links are not followed")
    reason = exc.strerror or str(exc)
    return ToolFailure(code, f"{path}: {reason}")
