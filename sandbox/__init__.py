"""Corral sandboxes: hardened per-run Linux containers driven over a local RPC.

The one entry point is `Sandbox.create(SandboxSpec(...))`; see README "Python API".
Names are resolved lazily so that importing a leaf module (e.g. the wire framing shared with
the in-container server) does not pull in the Docker SDK.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sandbox.api import Files, Sandbox
    from sandbox.spec import DataMount, SandboxSpec

__all__ = ["DataMount", "Files", "Sandbox", "SandboxSpec"]


def __getattr__(name: str) -> Any:
    if name in ("Sandbox", "Files"):
        from sandbox import api

        return getattr(api, name)
    if name in ("SandboxSpec", "DataMount"):
        from sandbox import spec

        return getattr(spec, name)
    raise AttributeError(name)
