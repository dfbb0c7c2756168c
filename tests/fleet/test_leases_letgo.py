"""A run this node gives up writes nothing after another node claims it, even when its event
writer is stuck past the runner's bounded wait (a real run in a real sandbox, on PostgreSQL).

The node's event writes are held back by a gate on its bus (the database under it is real):
the run's live output reaches the writer, which cannot store it; the run is then given up (a
drain's hand-off, or a lease lost to a node that claimed it), another node claims it, and
only then is the gate opened. Before the fix, that batch was stored unfenced after the claim
(the release, and the heartbeat for a lost lease, dropped the node's fence)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy import update

from runtime.agents.registry import resolve_agent
from runtime.controller import Controller, open_controller
from runtime.fleet.node import NodeConfig
from runtime.fleet.takeover import drain
from runtime.settings import Settings
from runtime.store.base import EventRecord, utcnow
from runtime.store.models import InteractionRow
from runtime.store.sql import SqlStore
from sandbox.api import Sandbox
from sandbox.errors import SandboxError

pytestmark = pytest.mark.docker

STALE = "stale-output-7f3a"
"""What the sandbox prints once the node's writes are held back: it must never be stored."""


def agent_file(tmp_path: Path) -> Path:
    # The stale output comes when the test says so (it creates /workspace/go), not on a timer.
    command = f"until [ -e /workspace/go ]; do sleep 0.1; done; echo {STALE}; sleep 120"
    script = tmp_path / "turns.yaml"
    script.write_text(
        yaml.safe_dump(
            {
                "turns": [
                    {
                        "text": "go",
                        "tool_calls": [{"name": "exec", "arguments": {"command": command}}],
                    }
                ]
            }
        )
    )
    path = tmp_path / "agent.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "name": "letgo",
                "model": f"scripted:{script}",
                "tools": ["exec"],
                "resources": {"memory": "256m"},
            }
        )
    )
    return path


class Gate:
    """Holds the node's event batches for one run at its bus, once `close()` is called."""

    def __init__(self, ctl: Controller, interaction_id: str) -> None:
        self.closed = False
        self.reached = asyncio.Event()
        self.opened = asyncio.Event()
        self._emit_many = ctl.bus.emit_many
        self._iid = interaction_id
        ctl.bus.emit_many = self._gated  # type: ignore[method-assign]

    async def _gated(self, iid: str, events: list[tuple[str, dict[str, Any]]]) -> list[EventRecord]:
        if self.closed and iid == self._iid:
            self.reached.set()
            await self.opened.wait()
        return await self._emit_many(iid, events)


async def until(check: Callable[[], Awaitable[bool]], bound: float = 120) -> None:
    """Poll until `check()` holds; `bound` only keeps a broken run from hanging the test."""
    async with asyncio.timeout(bound):
        while not await check():
            await asyncio.sleep(0.1)


def outputs(events: list[EventRecord]) -> list[str]:
    """The command output the events carry (live `tool_output` deltas)."""
    return [
        e.payload["delta"].get("text", "")
        for e in events
        if e.event_type == "step.delta" and e.payload["delta"].get("type") == "tool_output"
    ]


async def expire(store: SqlStore, interaction_id: str) -> None:
    """The node stopped renewing (stalled): its lease is in the past."""
    past = utcnow() - timedelta(seconds=1)
    stmt = update(InteractionRow).where(InteractionRow.__table__.c.id == interaction_id)
    await store._write(lambda c: c.execute(stmt.values(lease_expires_at=past)))


@pytest.mark.parametrize("how", ["drain", "lease_lost"])
async def test_a_given_up_run_writes_nothing_after_another_node_claims_it(
    how: str, pg_url: str, corral_home: Path, tmp_path: Path
) -> None:
    spec = resolve_agent(str(agent_file(tmp_path)))
    settings = Settings(home=corral_home, database_url=pg_url)
    node = NodeConfig("node-a", "", lease_ttl=60)  # renewals never matter within the test
    b = await SqlStore.open(pg_url)
    b.set_node("node-b", 60)
    try:
        async with open_controller(settings, warm_pool=0, node=node) as ctl:
            rec = await ctl.runner.create(spec, "x", background=True)
            gate = Gate(ctl, rec.id)
            task = ctl.runner.start(rec)

            async def calling() -> bool:
                steps = [
                    e.payload["step"] for e in await b.list_events(rec.id) if "step" in e.payload
                ]
                return task.done() or any(s["type"] == "function_call" for s in steps)

            await until(calling)  # the exec call is stored, so its sandbox is recorded
            assert not task.done(), task
            sandbox_id = (await b.get_interaction(rec.tenant, rec.id)).sandbox_id
            assert sandbox_id is not None
            box = await Sandbox.attach(sandbox_id, backend=ctl.backend)
            gate.closed = True  # from now on the node's batches wait at its bus
            await box.files.write("/workspace/go", b"")
            async with asyncio.timeout(60):
                await gate.reached.wait()  # the STALE output is in the writer's hands

            if how == "drain":
                # Stops the run, gives its writer a let-go's time, hands it off. (Before the
                # fix this never returned: the stopping loop waited for the stuck writer.)
                async with asyncio.timeout(120):
                    await drain(ctl, grace=0)
                claimed = await b.claim_interaction(rec.id)
            else:
                await expire(b, rec.id)  # node A stalled: node B takes the run over
                claimed = await b.claim_interaction(rec.id)
                assert ctl.heartbeat is not None
                await ctl.heartbeat.beat()  # A learns it lost the lease and stops the run
                async with asyncio.timeout(120):
                    await ctl.runner.settle({rec.id})
            assert claimed is not None and claimed.owner_node == "node-b"
            with contextlib.suppress(asyncio.CancelledError):
                await task

            # The writer lets go only now, after the claim; whatever it still does ends here.
            writers = [t for t in asyncio.all_tasks() if t.get_name() == f"events-{rec.id}"]
            gate.opened.set()
            if writers:
                await asyncio.wait(writers, timeout=60)
            events = await b.list_events(rec.id)
            assert not any(STALE in text for text in outputs(events)), outputs(events)
            # The new owner goes on with contiguous ids; the run is its to finish.
            nxt = await b.append_event(rec.id, "run.resumed", {"node": "node-b"})
            assert nxt.event_id == events[-1].event_id + 1
            final = await b.get_interaction(rec.tenant, rec.id)
            assert (final.status, final.owner_node) == ("in_progress", "node-b")
            assert ctl.store.holds(rec.id) is None  # A let go of its fence with the run
            with contextlib.suppress(SandboxError):  # A kept it for a takeover; none comes here
                await box.destroy()
    finally:
        await b.aclose()
