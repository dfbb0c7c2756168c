"""The Interactions-style JSON view of an interaction (used by events, the CLI and the API)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from runtime.store.base import ArtifactRecord, InteractionRecord


def iso(dt: datetime) -> str:
    return dt.strftime("%Y-%m-%dT%H:%M:%SZ")


def interaction_view(
    rec: InteractionRecord, steps: list[dict[str, Any]], *, include_input: bool = False
) -> dict[str, Any]:
    view: dict[str, Any] = {
        "id": rec.id,
        "object": "interaction",
        "status": rec.status,
        "created": iso(rec.created),
        "updated": iso(rec.updated),
        "steps": steps,
    }
    if rec.agent:
        view["agent"] = rec.agent
    if rec.model:
        view["model"] = rec.model
    if rec.previous_interaction_id:
        view["previous_interaction_id"] = rec.previous_interaction_id
    if rec.usage:
        view["usage"] = rec.usage
    if rec.errors:
        view["errors"] = [{"code": e.get("code"), "message": e.get("message")} for e in rec.errors]
    if include_input:
        view["input"] = rec.input
    return view


def artifact_view(rec: ArtifactRecord) -> dict[str, Any]:
    """An artifact as events, the CLI and the API show it (never its path on our disk)."""
    return {
        "path": rec.path,
        "size": rec.size,
        "sha256": rec.sha256,
        "media_type": rec.media_type,
        "created": iso(rec.created),
    }
