"""SandboxSpec: everything needed to provision one sandbox, validated up front.

Every field has a hard bound (sizes, CPUs, pids, env, labels, strings without NUL), so a spec
that validates can be handed to an engine as is. Per-tenant ceilings below these bounds are
the controller's business (`runtime.api.policy`), not this module's.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator

_SIZE = re.compile(r"^\s*(\d{1,16}(?:\.\d{1,9})?)\s*([kmgt]?)i?b?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,255}$")
_DOMAIN = re.compile(
    r"^(\*\.)?([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)*[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$"
)

Network = Literal["none", "allowlist", "open"]
OciRuntime = Literal["runc", "runsc"]

# Hard bounds of any sandbox (an operator's per-tenant ceilings sit below these).
MIN_MEMORY = 32 * 1024**2
MAX_MEMORY = 1024**4
"""1 TiB."""
MAX_DISK = 16 * 1024**4
MAX_TMP = 64 * 1024**3
MAX_OUTPUT = 1024**3
MAX_CPUS = 64.0
MIN_PIDS, MAX_PIDS = 16, 65536
MAX_ENV = 1024
"""Variables per sandbox or exec."""
MAX_ENV_VALUE = 1024**2
"""Bytes (characters) of one value; the engine's argument limits sit well above the sum."""
MAX_LABELS = 64
MAX_TTL = 30 * 24 * 3600.0
MAX_ALLOWLIST = 256


def _no_nul(v: str) -> str:
    if "\x00" in v:
        raise ValueError("must not contain a NUL character")
    return v


Text = Annotated[str, AfterValidator(_no_nul)]
"""A string without NUL (an engine or the kernel would cut or refuse it)."""


def _env(v: dict[str, str]) -> dict[str, str]:
    if len(v) > MAX_ENV:
        raise ValueError(f"at most {MAX_ENV} variables")
    for name, value in v.items():
        if not _ENV_NAME.match(name):
            raise ValueError(
                f"variable name {name[:64]!r} must be letters, digits, '_', '.' or '-' "
                "(not starting with a digit), at most 256 characters"
            )
        if "\x00" in value:
            raise ValueError(f"value of {name} must not contain a NUL character")
        if len(value) > MAX_ENV_VALUE:
            raise ValueError(f"value of {name} is longer than {MAX_ENV_VALUE} characters")
    return v


Env = Annotated[dict[str, str], AfterValidator(_env)]
"""Environment variables: valid names, no NUL, bounded count and size."""


def _labels(v: dict[str, str]) -> dict[str, str]:
    if len(v) > MAX_LABELS:
        raise ValueError(f"at most {MAX_LABELS} labels")
    for k, val in v.items():
        if not k or len(k) > 256 or len(val) > 4096 or "\x00" in k + val:
            raise ValueError("labels: non-empty keys up to 256, values up to 4096, no NUL")
    return v


def _domains(v: tuple[str, ...]) -> tuple[str, ...]:
    out = []
    for d in v:
        d = d.strip().lower().rstrip(".")
        if not _DOMAIN.match(d):
            raise ValueError(f"not a domain: {d[:80]!r} (use example.com or *.example.com)")
        out.append(d)
    return tuple(out)


Cpus = Annotated[float, Field(gt=0, le=MAX_CPUS, allow_inf_nan=False)]
Pids = Annotated[int, Field(ge=MIN_PIDS, le=MAX_PIDS)]
Allowlist = Annotated[tuple[str, ...], Field(max_length=MAX_ALLOWLIST), AfterValidator(_domains)]
Seconds = Annotated[float, Field(gt=0, le=MAX_TTL, allow_inf_nan=False)]


def parse_size(value: int | str) -> int:
    """`512m`, `1g`, `1GiB`, `1048576` -> bytes."""
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ValueError(f"not a size: {value!r} (use bytes or e.g. 512m, 2g)")
    if isinstance(value, int):
        if value <= 0:
            raise ValueError("size must be positive")
        return value
    m = _SIZE.match(value)
    if not m:
        raise ValueError(f"not a size: {value[:40]!r} (use e.g. 512m, 2g)")
    n = float(m.group(1)) * _UNITS[m.group(2).lower()]
    if not math.isfinite(n) or n < 1:
        raise ValueError("size must be positive")
    return int(n)


def format_size(n: int) -> str:
    """Bytes as the shortest exact size: 4294967296 -> `4g`, 1536 -> `1536` ... `1.5k`."""
    for unit in ("t", "g", "m", "k"):
        div = _UNITS[unit]
        if n >= div and n % div == 0:
            return f"{n // div}{unit}"
    for unit in ("t", "g", "m", "k"):
        if n >= _UNITS[unit]:
            return f"{n / _UNITS[unit]:.1f}{unit}"
    return str(n)


def _bounded_size(name: str, low: int, high: int) -> AfterValidator:
    def check(n: int) -> int:
        if n < low:
            raise ValueError(f"{name} must be at least {format_size(low)}")
        if n > high:
            raise ValueError(f"{name} must be at most {format_size(high)}")
        return n

    return AfterValidator(check)


Memory = Annotated[int, _bounded_size("memory", MIN_MEMORY, MAX_MEMORY)]
Disk = Annotated[int, _bounded_size("disk", 1024**2, MAX_DISK)]
TmpSize = Annotated[int, _bounded_size("tmp_size", 1024**2, MAX_TMP)]
OutputLimit = Annotated[int, _bounded_size("output_limit", 1024, MAX_OUTPUT)]


class DataMount(BaseModel):
    """A host file or folder made available read-only inside the sandbox."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    source: Path
    """Absolute host path."""
    target: Text
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

    image: Text = Field(default="corral/base", min_length=1, max_length=256)
    cpus: Cpus = 1.0
    memory: Memory = Field(default=1024**3, description="bytes; swap is not allowed beyond this")
    pids: Pids = 256
    disk: Disk = Field(default=1024**3, description="bytes of writable /workspace")
    tmp_size: TmpSize = Field(default=256 * 1024**2, description="bytes of the /tmp tmpfs")
    output_limit: OutputLimit = Field(
        default=1024**2, description="bytes of stdout+stderr kept per exec"
    )
    network: Network = "none"
    allowlist: Allowlist = ()
    env: Env = Field(default_factory=dict)
    data: tuple[DataMount, ...] = Field(default=(), max_length=256)
    workdir: Text = Field(default="/workspace", pattern=r"^/", max_length=4096)
    runtime: OciRuntime = "runc"
    labels: dict[str, str] = Field(default_factory=dict)
    idle_ttl: Seconds | None = Field(
        default=900.0, description="seconds idle before reaping; None = never"
    )

    @field_validator("memory", "disk", "tmp_size", "output_limit", mode="before")
    @classmethod
    def _size(cls, v: int | str) -> int:
        return parse_size(v)

    @field_validator("labels")
    @classmethod
    def _labels(cls, v: dict[str, str]) -> dict[str, str]:
        return _labels(v)

    def pool_key(self) -> str:
        """Specs that share this key can be served by the same warm pool.

        Per-run things (env, data, labels, ttl) are applied at acquire time, so they are left out.
        """
        shape = self.model_dump(exclude={"env", "data", "labels", "idle_ttl"}, mode="json")
        return repr(sorted(shape.items()))
