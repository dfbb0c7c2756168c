"""Per-tenant policy: the operator's ceilings for what one API key may ask of this server.

A `TenantPolicy` bounds the sandbox resources a key may request (memory, CPUs, disk, pids),
whether it may use `open` networking, how many sandboxes its tenant may keep alive and how
many streams (SSE / NDJSON) it may hold open at once. Defaults come from the environment
(`CORRAL_TENANT_MAX_MEMORY`, ...; see `policy_from_env`); a key in the keys file may set its
own (`{"key": {"tenant": "t", "max_memory": "16g"}}`), and what it leaves out keeps the
defaults. Requests above a ceiling raise `PolicyDenied` (403) or `QuotaExceeded` (429), whose
message names the limit.

Ceilings are per key; the counts they bound (live sandboxes, open streams) are per tenant.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from runtime.api.errors import PolicyDenied
from runtime.errors import ConfigError
from sandbox.spec import (
    MAX_CPUS,
    MAX_DISK,
    MAX_MEMORY,
    MAX_PIDS,
    MIN_MEMORY,
    MIN_PIDS,
    SandboxSpec,
    format_size,
    parse_size,
)

GiB = 1024**3


@dataclass(frozen=True)
class TenantPolicy:
    max_memory: int = 4 * GiB
    """Bytes of memory of one sandbox."""
    max_cpus: float = 2.0
    """CPU cores of one sandbox."""
    max_disk: int = 10 * GiB
    """Bytes of writable /workspace of one sandbox."""
    max_pids: int = 1024
    """Processes in one sandbox."""
    max_sandboxes: int = 10
    """Live sandboxes of the tenant: gateway sandboxes plus agent runs holding one."""
    max_streams: int = 16
    """Concurrent streams (interaction SSE, streamed exec) of the tenant on this server."""
    allow_open_network: bool | None = None
    """`network: open` (a plain bridge, no egress filter). None: only on a single-user server."""

    def open_network_allowed(self, single_user: bool) -> bool:
        return single_user if self.allow_open_network is None else self.allow_open_network

    def resolved(self, single_user: bool) -> TenantPolicy:
        """The policy with `allow_open_network` decided."""
        return replace(self, allow_open_network=self.open_network_allowed(single_user))

    def check_sandbox(self, spec: SandboxSpec, asked: Mapping[str, Any] | None = None) -> None:
        """PolicyDenied naming the first ceiling `spec` is over. `asked` holds the values as
        the caller wrote them (`"99999g"`), for the message."""
        values = {"memory": spec.memory, "cpus": spec.cpus, "disk": spec.disk, "pids": spec.pids}
        self.check(values, spec.network, asked)

    def check(
        self,
        values: Mapping[str, float | None],
        network: str = "none",
        asked: Mapping[str, Any] | None = None,
    ) -> None:
        """Like `check_sandbox`, for values not yet in a spec (bytes for memory and disk)."""
        asked = asked or {}
        ceilings = {
            "memory": (self.max_memory, format_size(self.max_memory)),
            "cpus": (self.max_cpus, _num(self.max_cpus)),
            "disk": (self.max_disk, format_size(self.max_disk)),
            "pids": (self.max_pids, str(self.max_pids)),
        }
        for name, (ceiling, shown) in ceilings.items():
            value = values.get(name)
            if value is not None and value > ceiling:
                raw = asked.get(name)
                if raw is None:
                    raw = format_size(int(value)) if name in ("memory", "disk") else _num(value)
                raise PolicyDenied(f"{name} {raw} exceeds this key's ceiling of {shown}")
        if network == "open" and not self.allow_open_network:
            raise PolicyDenied(
                "network open is not allowed for this key (the operator allows it per key "
                "with allow_open_network); use none or allowlist"
            )


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


class PolicyFields(BaseModel):
    """Policy settings as written by the operator (keys file objects, environment)."""

    model_config = ConfigDict(extra="forbid")

    max_memory: int | str | None = None
    max_cpus: float | None = Field(None, gt=0, le=MAX_CPUS, allow_inf_nan=False)
    max_disk: int | str | None = None
    max_pids: int | None = Field(None, ge=MIN_PIDS, le=MAX_PIDS, strict=False)
    max_sandboxes: int | None = Field(None, ge=0, le=100_000)
    max_streams: int | None = Field(None, ge=0, le=100_000)
    allow_open_network: bool | None = None

    @field_validator("max_memory", "max_disk")
    @classmethod
    def _size(cls, v: int | str | None, info: Any) -> int | None:
        if v is None:
            return None
        n = parse_size(v)
        low, high = (MIN_MEMORY, MAX_MEMORY) if info.field_name == "max_memory" else (1, MAX_DISK)
        if not low <= n <= high:
            raise ValueError(f"must be between {format_size(low)} and {format_size(high)}")
        return n

    def apply(self, base: TenantPolicy) -> TenantPolicy:
        given = {k: v for k, v in self.model_dump().items() if v is not None}
        return replace(base, **given)


POLICY_FIELDS = tuple(f.name for f in fields(TenantPolicy))
ENV_PREFIX = "CORRAL_TENANT_"


def parse_policy(data: Mapping[str, Any], base: TenantPolicy, where: str) -> TenantPolicy:
    """`base` with the settings in `data` applied; ConfigError naming `where` and the field."""
    try:
        return PolicyFields.model_validate(dict(data)).apply(base)
    except ValidationError as exc:
        err = exc.errors()[0]
        field = ".".join(str(p) for p in err["loc"])
        msg = str(err["msg"]).removeprefix("Value error, ")
        raise ConfigError(f"{where}: {field}: {msg}") from None


def policy_from_env(env: Mapping[str, str]) -> TenantPolicy:
    """The default policy: `CORRAL_TENANT_MAX_MEMORY` (e.g. `4g`), `..._MAX_CPUS`,
    `..._MAX_DISK`, `..._MAX_PIDS`, `..._MAX_SANDBOXES`, `..._MAX_STREAMS`,
    `..._ALLOW_OPEN_NETWORK` (1/0); unset ones keep `TenantPolicy`'s defaults."""
    base = TenantPolicy()
    for name in POLICY_FIELDS:
        var = ENV_PREFIX + name.upper()
        raw = env.get(var, "").strip()
        if not raw:
            continue
        value: Any = raw
        if name == "allow_open_network":
            value = raw.lower() in ("1", "true", "yes", "on")
        elif name in ("max_cpus",):
            try:
                value = float(raw)
            except ValueError:
                raise ConfigError(f"{var} must be a number, not {raw!r}") from None
            if not math.isfinite(value):
                raise ConfigError(f"{var} must be a finite number, not {raw!r}")
        base = parse_policy({name: value}, base, var)
    return base
