"""Why Corral keeps a sandbox, and until when: one answer for the API, the CLI and /metrics.

Every container of a home is kept for exactly one reason:
- `interaction`: a run's sandbox, kept for follow-ups (`previous_interaction_id`) until its idle
  TTL; the container's `corral.interaction` label names the run (a warm-pool sandbox a run
  claimed carries it in its claim marker instead, since labels are fixed at creation);
- `pool`: a warm-pool sandbox waiting for a run;
- `explicit`: created on request (`corral sandbox create`, the sandboxes API, the E2B door,
  MCP), kept until removed or its idle TTL.

Everything here comes from labels and the controller's own host folder, never from anything
the guest can write.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from sandbox.backends.base import SandboxHandle
from sandbox.backends.docker import LABEL_ROLE, DockerBackend
from sandbox.pool import CLAIMED, claimed_labels

Reason = Literal["interaction", "pool", "explicit"]
REASONS: tuple[Reason, ...] = ("interaction", "pool", "explicit")
INTERACTION_LABEL = "corral.interaction"
TENANT_LABEL = "corral.tenant"


@dataclass(frozen=True)
class Kept:
    reason: Reason
    interaction: str | None
    """The run whose follow-ups may use it (`reason == "interaction"`)."""
    tenant: str | None
    """The gateway tenant that created it (the `corral.tenant` label), if any."""
    last_used: float
    expires: float | None
    """Epoch seconds: last use + idle TTL, when the reaper removes it; None: until removed."""

    def kept_for(self) -> str | dict[str, str]:
        """The API's `kept_for`: `{"interaction": id}`, `"pool"` or `"explicit"`."""
        if self.reason == "interaction" and self.interaction:
            return {"interaction": self.interaction}
        return self.reason

    def describe(self) -> str:
        when = "until removed" if self.expires is None else f"until {iso(self.expires)}"
        if self.reason == "interaction":
            return f"kept for follow-ups of {self.interaction}, {when}"
        if self.reason == "pool":
            return f"warm pool, {when}"
        return f"kept {when}"

    def fields(self) -> dict[str, Any]:
        return {
            "kept_for": self.kept_for(),
            "expires": None if self.expires is None else iso(self.expires),
            "last_used": iso(self.last_used),
        }


def kept_labels(handle: SandboxHandle) -> dict[str, str]:
    """The container's labels with a claimed warm-pool sandbox's claim labels over them (the
    run that took it), read from the controller's own host folder, never the guest's."""
    return {**handle.labels, **claimed_labels(handle.host_dir)}


def owner_run(handle: SandboxHandle) -> str | None:
    """The interaction a sandbox is kept for, however it came to it (cold create or pool)."""
    return kept_labels(handle).get(INTERACTION_LABEL) or None


def why_kept(backend: DockerBackend, handle: SandboxHandle) -> Kept:
    labels = kept_labels(handle)
    interaction = labels.get(INTERACTION_LABEL)
    reason: Reason
    if interaction:
        reason = "interaction"
    elif handle.labels.get(LABEL_ROLE) == "pool" and not (handle.host_dir / CLAIMED).exists():
        reason = "pool"
    else:
        reason = "explicit"
    last = backend.last_used(handle)
    ttl = handle.spec.idle_ttl
    return Kept(
        reason=reason,
        interaction=interaction or None,
        tenant=labels.get(TENANT_LABEL) or None,
        last_used=last,
        expires=None if ttl is None else last + ttl,
    )


def iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
