"""The backend seam: how sandboxes are provisioned. Docker today; Kubernetes later."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from sandbox.spec import SandboxSpec


@dataclass
class SandboxHandle:
    """What a backend knows about one sandbox."""

    id: str
    container_id: str
    spec: SandboxSpec
    rpc_path: Path
    """Host path of the guest's Unix socket (in a folder only the controller and the guest's
    root-started server can write)."""
    host_dir: Path
    """Per-sandbox host folder: the controller's own bookkeeping, never mounted."""
    created: float
    labels: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class SandboxStatus:
    running: bool
    paused: bool
    exit_code: int | None
    oom_killed: bool
    error: str | None = None

    def reason(self) -> str:
        if self.oom_killed:
            return "oom: the sandbox ran out of memory and was killed"
        if self.error:
            return f"crashed: {self.error}"
        if self.exit_code is not None and not self.running:
            return f"exited with code {self.exit_code}"
        return "running" if self.running else "stopped"


@dataclass(frozen=True)
class ReconcileReport:
    adopted: list[str]
    removed: list[str]


class Backend(Protocol):
    async def create(
        self, spec: SandboxSpec, *, labels: Mapping[str, str] | None = None
    ) -> SandboxHandle: ...

    async def get(self, sandbox_id: str) -> SandboxHandle: ...

    async def list(self, labels: Mapping[str, str] | None = None) -> list[SandboxHandle]: ...

    async def status(self, sandbox_id: str) -> SandboxStatus: ...

    async def pause(self, sandbox_id: str) -> None: ...

    async def resume(self, sandbox_id: str) -> None: ...

    async def destroy(self, sandbox_id: str) -> None: ...

    async def reconcile(self, *, adopt: bool = True) -> ReconcileReport: ...

    async def aclose(self) -> None: ...
