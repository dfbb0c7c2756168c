"""Result types of sandbox tool calls, shared by all host-side code."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class ExecResult:
    """The outcome of one `exec`.

    Killed by signal N: ``exit_code == 128 + N`` and ``signal == N``. Timed out: the whole
    process group was SIGKILLed, ``exit_code == 124``, ``signal == 9``, ``timed_out``.
    """

    exit_code: int
    stdout: str
    """Decoded as UTF-8 with replacement characters; see `stdout_bytes` for the raw bytes."""
    stderr: str
    duration: float
    """Seconds, measured in the sandbox from start to exit."""
    timed_out: bool = False
    truncated: bool = False
    """More than the output limit was produced; a marker line ends the kept output."""
    signal: int | None = None
    oom_killed: bool = False
    """The kernel OOM killer fired in the sandbox while the command ran."""
    stdout_bytes: bytes = field(default=b"", repr=False)
    stderr_bytes: bytes = field(default=b"", repr=False)

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and not self.timed_out


@dataclass(frozen=True, slots=True)
class PythonResult:
    """The outcome of one cell in the sandbox's persistent Python session."""

    stdout: str
    stderr: str
    result_repr: str | None
    """``repr()`` of the cell's trailing expression (None when there is none or it is None)."""
    error: str | None
    """Traceback text when the cell raised (or a note when it timed out / the kernel died)."""
    timed_out: bool = False
    restarted: bool = False
    """The kernel had to be killed and restarted: all session variables are gone."""


@dataclass(frozen=True, slots=True)
class FileInfo:
    path: str
    """Relative to the workspace root ("." is the root itself)."""
    size: int
    is_dir: bool
    mode: int
    """Permission bits (``stat.S_IMODE``)."""
    mtime: float
    is_symlink: bool


@dataclass(frozen=True, slots=True)
class ProcessStatus:
    """A background process started with `spawn`."""

    running: bool
    exit_code: int | None
    """128 + N when killed by signal N (see `signal`)."""
    handle: str = ""
    pid: int = 0
    command: tuple[str, ...] = ()
    signal: int | None = None
    started: float = 0.0
    """Unix time."""
    output_end: int = 0
    """Total bytes of output produced so far (the offset after the newest byte)."""
