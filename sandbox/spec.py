"""SandboxSpec: everything needed to provision one sandbox, validated up front."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)i?b?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}

Network = Literal["none", "allowlist", "open"]
OciRuntime = Literal["runc", "runsc"]


def parse_size(value: int | str) -> int:
    """`512m`, `1g`, `1GiB`, `1048576` -> bytes."""
    if isinstance(value, int):
        if value <= 0:
            raise ValueError("size must be positive")
        return value
    m = _SIZE.match(value)
    if not m:
        raise ValueError(f"not a size: {value!r} (use e.g. 512m, 2g)")
    n = int(float(m.group(1)) * _UNITS[m.group(2).lower()])
    if n <= 0:
        raise ValueError("size must be positive")
    return n


class DataMount(BaseModel):
    """A host file or folder made available read-only inside the sandbox."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    source: Path
    """Absolute host path."""
    target: str
    """Absolute path inside the sandbox, normally under /workspace/data."""

    @field_validator("target")
    @classmethod
    def _absolute(cls, v: str) -> str:
        if not v.startswith("/") or ".." in v.split("/"):
            raise ValueError("target must be an absolute path without '..'")
        return v


class SandboxSpec(BaseModel):
    """How to provision a sandbox. Secure by default: every field has a safe default."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    image: str = "corral/base"
    cpus: float = Field(default=1.0, gt=0, le=64)
    memory: int = Field(default=1024**3, description="bytes; swap is not allowed beyond this")
    pids: int = Field(default=256, ge=16, le=65536)
    disk: int = Field(default=1024**3, description="bytes of writable /workspace")
    tmp_size: int = Field(default=256 * 1024**2, description="bytes of the /tmp tmpfs")
    output_limit: int = Field(default=1024**2, description="bytes of stdout+stderr kept per exec")
    network: Network = "none"
    allowlist: tuple[str, ...] = ()
    env: dict[str, str] = Field(default_factory=dict)
    data: tuple[DataMount, ...] = ()
    workdir: str = "/workspace"
    runtime: OciRuntime = "runc"
    labels: dict[str, str] = Field(default_factory=dict)
    idle_ttl: float | None = Field(
        default=900.0, description="seconds idle before reaping; None = never"
    )

    @field_validator("memory", "disk", "tmp_size", "output_limit", mode="before")
    @classmethod
    def _size(cls, v: int | str) -> int:
        return parse_size(v)

    @field_validator("memory")
    @classmethod
    def _min_memory(cls, v: int) -> int:
        if v < 32 * 1024**2:
            raise ValueError("memory must be at least 32m")
        return v

    def pool_key(self) -> str:
        """Specs that share this key can be served by the same warm pool.

        Per-run things (env, data, labels, ttl) are applied at acquire time, so they are left out.
        """
        shape = self.model_dump(exclude={"env", "data", "labels", "idle_ttl"}, mode="json")
        return repr(sorted(shape.items()))
