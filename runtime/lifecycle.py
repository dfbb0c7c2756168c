"""What every interaction shares, agent run or plain inference: its conversation history and
how it ends (status recorded, closing events written in one batch, subscribers released —
also when the store fails, so no follower waits forever)."""

from __future__ import annotations

from typing import Any

from runtime.agents.loop import usage_dict
from runtime.events import EventBus
from runtime.providers.base import Message, Usage
from runtime.steps import materialize, to_messages
from runtime.store.base import InteractionRecord, Store
from runtime.views import interaction_view

MAX_HISTORY_CHAIN = 100


async def history(store: Store, rec: InteractionRecord) -> list[Message]:
    """The conversation of the chain of previous interactions, oldest first."""
    chain: list[InteractionRecord] = []
    prev = rec.previous_interaction_id
    while prev and len(chain) < MAX_HISTORY_CHAIN:
        p = await store.get_interaction(rec.tenant, prev)
        chain.append(p)
        prev = p.previous_interaction_id
    messages: list[Message] = []
    for p in reversed(chain):
        messages += to_messages(materialize(await store.list_events(p.id)))
    return messages


async def finish(
    store: Store,
    bus: EventBus,
    rec: InteractionRecord,
    status: str,
    errors: list[dict[str, Any]],
    usage: Usage | None,
) -> InteractionRecord:
    """Record the verdict, then `error` events and `interaction.completed` in one batch.

    `usage=None` keeps the usage already recorded (a run that ends without its loop)."""
    fields: dict[str, Any] = {"status": status, "errors": errors}
    if usage is not None:
        fields["usage"] = usage_dict(usage)
    try:
        final = await store.update_interaction(rec.tenant, rec.id, **fields)
        steps = materialize(await store.list_events(rec.id))
        closing: list[tuple[str, dict[str, Any]]] = [
            ("error", {"error": {"code": e["code"], "message": e["message"]}}) for e in errors
        ]
        closing.append(("interaction.completed", {"interaction": interaction_view(final, steps)}))
        await bus.emit_many(rec.id, closing)
    finally:
        bus.finish(rec.id)  # subscribers end even when the store failed (they re-read it)
    return final
