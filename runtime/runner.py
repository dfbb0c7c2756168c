"""The Runner: one place that turns a request into a managed agent run.

create() records the interaction and its first events; start() runs it as an asyncio task:
take a sandbox (warm pool, or the previous interaction's sandbox for a follow-up), run the
agent loop, collect artifacts, finish with a status. Everything is written to the store as it
happens, so nothing is lost if the process dies.

A run that already has steps when it starts is continued, not restarted (`runtime.fleet.resume`:
taken over from a dead node, or handed off by a draining one). A run whose lease another node
took (`abandon`, or a write refused with `LeaseLost`) stops here without a verdict and keeps
its sandbox: its new owner writes what happens next.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog

from runtime import lifecycle
from runtime.agents.browser_tools import BrowserRefusalWatcher, image_has_browser
from runtime.agents.loop import AgentLoop, Limits, LoopResult, Recorder
from runtime.agents.prompt import system_prompt
from runtime.agents.refusals import RefusalWatcher
from runtime.agents.spec import AgentSpec, McpServerTool
from runtime.agents.tools import Toolbox
from runtime.artifacts import ArtifactCollector, host_error, sweep_staging
from runtime.errors import CorralError, NotFound, StorageFull
from runtime.events import EventBus
from runtime.fleet.resume import (
    CLAIMED,
    QUEUED,
    RESUMED,
    ResumePlan,
    client_names,
    plan_resume,
    rerun_in_flight,
    restore_workspace,
)
from runtime.fleet.stats import FleetStats
from runtime.generation import client_tools
from runtime.ids import new_id
from runtime.providers.base import GenerationConfig, ModelProvider, Usage
from runtime.providers.registry import make_provider
from runtime.settings import Settings
from runtime.steps import materialize, to_messages
from runtime.store.base import ArtifactRecord, InteractionRecord, Store, utcnow
from runtime.store.leases import LeaseLost
from runtime.views import interaction_view
from sandbox.api import Sandbox
from sandbox.backends.base import Backend
from sandbox.errors import SandboxError
from sandbox.pool import WarmPool, copy_in
from sandbox.spec import DataMount

if TYPE_CHECKING:
    from runtime.mcp.client import McpTools

log = structlog.get_logger("corral.runner")
TERMINAL = {"completed", "failed", "cancelled", "budget_exceeded", "incomplete", "requires_action"}
ProviderFactory = Callable[..., ModelProvider]


@dataclass
class RunOptions:
    keep_sandbox: bool = True
    """Keep the sandbox after the run for follow-ups (removed after its idle TTL)."""
    model: str | None = None
    max_steps: int | None = None
    max_tool_calls: int | None = None
    max_total_tokens: int | None = None
    timeout: float | None = None
    image: str | None = None
    system_instruction: str | None = None
    """The caller's `system_instruction`, appended to the agent's instructions."""
    client_tools: list[dict[str, Any]] | None = None
    """The caller's `function` tools: a call to one ends the run `requires_action`."""
    mcp_servers: list[dict[str, Any]] | None = None
    """The caller's remote `mcp_server` tools, added to the agent's own."""


class Runner:
    def __init__(
        self,
        settings: Settings,
        store: Store,
        bus: EventBus,
        backend: Backend,
        *,
        pool: WarmPool | None = None,
        provider_factory: ProviderFactory = make_provider,
    ) -> None:
        self.settings = settings
        self.store = store
        self.bus = bus
        self.backend = backend
        self.pool = pool
        self.provider_factory = provider_factory
        self.tasks: dict[str, asyncio.Task[InteractionRecord]] = {}
        self.capacity: int | None = None
        """Runs this node executes at once in a fleet (None: no limit, a single node)."""
        self.lost: set[str] = set()
        """Runs whose lease moved to another node: they stop here without writing."""
        self.resumed_from: dict[str, str | None] = {}
        """Runs taken over, with the node that held them (for the `run.resumed` event)."""
        self.handed_off: set[str] = set()
        """Runs stopped here by a drain (their lease is released, not lost)."""
        self.recorders: dict[str, Recorder] = {}
        """The event recorders of the runs executing here (revoked when a run is given up)."""
        self.stats = FleetStats()
        self._tracked: list[dict[str, asyncio.Task[Any]]] = []
        keep_reserve(settings.home)
        sweep_staging(settings.artifacts_dir)

    # -- creating -------------------------------------------------------------------------
    async def create(
        self,
        agent: AgentSpec,
        task: str,
        *,
        tenant: str = "local",
        options: RunOptions | None = None,
        previous_interaction_id: str | None = None,
        background: bool = False,
        steps: list[dict[str, Any]] | None = None,
    ) -> InteractionRecord:
        """Record a run of `agent` on `task`; `steps` (the input as steps: user turns with media,
        `function_result`s answering a `requires_action` run) replace the plain text task."""
        opts = options or RunOptions()
        steps = steps or [{"type": "user_input", "content": [{"type": "text", "text": task}]}]
        if previous_interaction_id:
            await self.store.get_interaction(tenant, previous_interaction_id)  # NotFound early
        model = opts.model or agent.model
        rec = InteractionRecord(
            id=new_id("int"),
            tenant=tenant,
            agent=agent.name,
            model=model,
            input=task,
            previous_interaction_id=previous_interaction_id,
            config={
                "agent_spec": agent.model_dump(mode="json"),
                "options": opts.__dict__,
                "input_steps": len(steps),
            },
            output_dir=agent.output_dir,
            background=background,
        )
        rec = await self.store.create_interaction(rec)
        recorder = Recorder(self.bus, rec.id)
        await recorder.emit(
            "interaction.created", {"interaction": interaction_view(rec, [])}, flush=False
        )
        for step in steps:
            await recorder.step(step, flush=False)
        await recorder.drain()  # stored before create() returns: the run starts from them
        return rec

    def start(self, rec: InteractionRecord) -> asyncio.Task[InteractionRecord]:
        """Run `rec` here, or (a background run on a full node of a fleet) queue it for any
        node with room: the returned task then ends cancelled at once, and the run does not."""
        if (
            self.capacity is not None
            and rec.background
            and rec.id not in self.resumed_from
            and len(self.running()) >= self.capacity
        ):
            return asyncio.create_task(self._queue(rec), name=f"queue-{rec.id}")
        task = asyncio.create_task(self._execute(rec), name=f"run-{rec.id}")
        self.tasks[rec.id] = task
        task.add_done_callback(lambda _t: self.tasks.pop(rec.id, None))
        return task

    async def run(self, rec: InteractionRecord) -> InteractionRecord:
        return await self.start(rec)

    # -- leases ---------------------------------------------------------------------------
    @property
    def store_node(self) -> str | None:
        return self.store.node

    async def _queue(self, rec: InteractionRecord) -> InteractionRecord:
        """Give the lease up so the first node with room claims the run (its sweep)."""
        await self.bus.emit(rec.id, QUEUED, {"node": self.store_node, "capacity": self.capacity})
        await self.store.release_interaction(rec.id)
        log.info("run.queued", interaction=rec.id, capacity=self.capacity)
        raise asyncio.CancelledError  # not over: whoever claims it writes its verdict

    def track(self, tasks: dict[str, asyncio.Task[Any]]) -> None:
        """Also count (and stop, when their lease is lost) the runs in `tasks` (the API's plain
        inference runs)."""
        self._tracked.append(tasks)

    def running(self) -> set[str]:
        """The interactions executing in this process (whose leases it renews)."""
        ids = {i for i, t in self.tasks.items() if not t.done()}
        for tasks in self._tracked:
            ids |= {i for i, t in tasks.items() if not t.done()}
        return ids

    def abandon(self, ids: set[str], *, handoff: bool = False) -> None:
        """Stop these runs here without a verdict: another node holds (or, `handoff`: a
        draining node gives them up, will take) them."""
        for iid in ids:
            task = self.tasks.get(iid)
            # A run already stopping (in `lost` until its let-go is over) is not cancelled
            # again: that would end its task, and so a drain's `settle` (then its release),
            # before the let-go has revoked the run's event writer.
            if task is not None and not task.done() and iid not in self.lost:
                self.lost.add(iid)
                if handoff:
                    self.handed_off.add(iid)
                task.cancel()
                recorder = self.recorders.get(iid)
                if recorder is not None:
                    # The stopping loop waits for its events to be stored; a writer stuck on
                    # the database would hold it (and a drain) for ever. It gets a let-go's
                    # time, then writes nothing more.
                    gone = LeaseLost(f"interaction {iid} is no longer run by this node")
                    loop = asyncio.get_running_loop()
                    loop.call_later(LET_GO_DRAIN_SECONDS, recorder.revoke, gone)
            for tasks in self._tracked:
                other = tasks.get(iid)
                if other is not None and not other.done():
                    if not handoff and not other.cancelling():  # counted once per run
                        self.stats.leases_lost += 1
                    other.cancel()  # its fenced writes are refused: nothing lands

    async def settle(self, ids: set[str]) -> None:
        """Wait until these runs' tasks are over (after `abandon`)."""
        waiting = [t for i in ids for t in (self.tasks.get(i),) if t is not None]
        for tasks in self._tracked:
            waiting += [t for i in ids for t in (tasks.get(i),) if t is not None]
        if waiting:
            await asyncio.wait(waiting)

    async def cancel(self, tenant: str, interaction_id: str) -> InteractionRecord:
        await self.store.get_interaction(tenant, interaction_id)  # NotFound for other tenants
        task = self.tasks.get(interaction_id)
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        return await self.store.get_interaction(tenant, interaction_id)

    # -- executing ------------------------------------------------------------------------
    async def _execute(self, rec: InteractionRecord) -> InteractionRecord:
        spec = AgentSpec.from_dict(rec.config["agent_spec"], source=f"agent of {rec.id}")
        opts = RunOptions(**rec.config.get("options", {}))
        limits = Limits(
            max_steps=opts.max_steps or spec.limits.max_steps,
            max_tool_calls=opts.max_tool_calls or spec.limits.max_tool_calls,
            max_total_tokens=opts.max_total_tokens or spec.limits.max_total_tokens,
            timeout=opts.timeout or spec.limits.timeout,
        )
        sandbox: Sandbox | None = None
        provider: ModelProvider | None = None
        n_input = int(rec.config.get("input_steps", 1))
        recorder = Recorder(self.bus, rec.id, next_index=n_input)
        self.recorders[rec.id] = recorder
        result: LoopResult | None = None
        status, errors = "failed", [{"code": "internal", "message": "run did not finish"}]
        usage = Usage()
        warmup: asyncio.Task[None] | None = None
        mcp: McpTools | None = None
        mcp_servers = [
            *spec.mcp_servers(),
            *(McpServerTool.model_validate(m) for m in opts.mcp_servers or ()),
        ]
        try:
            if mcp_servers:  # a remote server the network policy forbids: refused up front
                from runtime.mcp.client import check_egress  # the SDK takes ~1s to import

                check_egress(mcp_servers, spec.network.mode, spec.network.allow)
            provider = self.provider_factory(rec.model or "", base_url=spec.base_url)
            history = await lifecycle.history(self.store, rec)
            events = await self.store.list_events(rec.id)
            plan = plan_resume(events, n_input)
            claimed = rec.id in self.resumed_from  # taken by this node's sweep
            from_node = self.resumed_from.pop(rec.id, None)
            resuming = plan.resumed or from_node is not None
            if resuming:
                given = to_messages(plan.steps)
                recorder.next_index = plan.next_index
                sandbox, adopted = await self._resume_sandbox(rec, spec, opts)
            else:
                given = to_messages(materialize(events)[:n_input])
                sandbox, adopted = await self._sandbox(rec, spec, opts), False
            await self.store.update_interaction(rec.tenant, rec.id, sandbox_id=sandbox.id)
            await sandbox.files.mkdir(spec.output_dir)
            restored: dict[str, ArtifactRecord] = {}
            if resuming:
                restored = await self._announce_resume(
                    rec, recorder, plan, sandbox, adopted, spec, from_node
                )
            elif claimed:  # a queued run, started by the node that had room for it
                await recorder.emit(CLAIMED, {"node": self.store_node})
            collector = ArtifactCollector(
                store=self.store,
                emit=recorder.emit,
                interaction_id=rec.id,
                sandbox=sandbox,
                output_dir=spec.output_dir,
                dest_root=self.settings.artifacts_dir,
                restored=restored,
            )
            skills = await _install_skills(sandbox, spec)
            tools = spec.builtin_tools()
            toolbox = Toolbox(
                sandbox,
                tools,
                browser="browser" in tools and await image_has_browser(sandbox),
                browser_evaluate=spec.browser.evaluate,
                output_dir=spec.output_dir,
            )
            if toolbox.browser is not None:
                # Chromium takes seconds to start: start it while the model thinks about turn one.
                warmup = asyncio.create_task(_warm_browser(sandbox), name=f"browser-{rec.id}")
            after_tool: Callable[[], Awaitable[object]] = collector.scan
            refusals: RefusalWatcher | None = None
            if sandbox.spec.network == "allowlist":
                # Requests the egress proxy refused become `network.refused` events.
                refusals = RefusalWatcher(sandbox, recorder.emit)
                await refusals.start()
                after_tool = _then(collector.scan, refusals.scan)
            browser_refusals: BrowserRefusalWatcher | None = None
            if toolbox.browser is not None:
                # Navigations the browser refused (file:, chrome:, ...) become events too.
                browser_refusals = BrowserRefusalWatcher(sandbox, recorder.emit)
                await browser_refusals.start()
                after_tool = _then(after_tool, browser_refusals.scan)
            functions = client_tools(opts.client_tools)
            if mcp_servers:
                from runtime.mcp.client import McpTools
                from runtime.mcp.egress import AddressPolicy

                mcp = await McpTools.open(
                    mcp_servers,
                    sandbox=sandbox,
                    network=spec.network.mode,
                    allow=spec.network.allow,
                    addresses=AddressPolicy(
                        self.settings.egress_allow_private, self.settings.egress_hosts
                    ),
                    reserved=[t.name for t in [*toolbox.specs, *functions]],
                )
            loop = AgentLoop(
                provider,
                recorder,
                toolbox=toolbox,
                mcp=mcp,
                client_tools=functions,
                system=system_prompt(
                    spec,
                    skills=skills,
                    data=[m.target for m in sandbox.spec.data],
                    extra=opts.system_instruction,
                ),
                limits=limits,
                config=GenerationConfig(
                    temperature=spec.generation.temperature,
                    max_output_tokens=spec.generation.max_output_tokens,
                ),
                after_tool=after_tool,
            )
            messages = [*history, *given]
            if resuming:
                loop.steps, loop.tool_calls = plan.turns, plan.tool_calls
                loop.usage = plan.usage  # the run's totals include the turns before
            try:
                async with asyncio.timeout(limits.timeout):
                    waiting = False
                    if resuming:
                        answers, waiting = await rerun_in_flight(loop, plan)
                        messages += answers
                    if waiting:  # the turn called client-side functions: theirs to answer
                        result = LoopResult("requires_action", loop.usage, [], loop.steps)
                    else:
                        result = await loop.run(messages)
            except TimeoutError:
                result = loop._budget(
                    "timeout", f"wall-clock timeout ({limits.timeout:g}s) reached"
                )
            finally:
                usage = loop.usage
                if warmup is not None and not warmup.done():
                    warmup.cancel()
            with contextlib.suppress(SandboxError):
                await collector.scan()
                if refusals is not None:
                    await refusals.scan()
                if browser_refusals is not None:
                    await browser_refusals.scan()
            status, errors = result.status, result.errors
        except asyncio.CancelledError:
            status, errors = (
                "cancelled",
                [{"code": "cancelled", "message": "the run was cancelled"}],
            )
            opts.keep_sandbox = False
        except LeaseLost:
            self.lost.add(rec.id)
        except SandboxError as exc:
            status, errors = "failed", [{"code": f"sandbox_{exc.reason}", "message": str(exc)}]
        except CorralError as exc:
            status, errors = "failed", [{"code": exc.code, "message": str(exc)}]
        except OSError as exc:  # the host's own files (a full disk, a lost folder)
            mapped = host_error(exc)
            status, errors = "failed", [{"code": mapped.code, "message": str(mapped)}]
        except Exception as exc:  # the run fails with a reason; the controller stays up
            log.error("run.crashed", interaction=rec.id, error=f"{type(exc).__name__}: {exc}")
            log.debug("run.crashed.traceback", interaction=rec.id, exc_info=True)
            status, errors = (
                "failed",
                [{"code": "internal", "message": f"{type(exc).__name__}: {exc}"}],
            )
        finally:
            self.recorders.pop(rec.id, None)
            if mcp is not None:
                with contextlib.suppress(Exception):
                    await asyncio.shield(mcp.aclose())
            if rec.id in self.lost:
                await asyncio.shield(self._let_go(rec, recorder, sandbox, provider))
                raise asyncio.CancelledError  # not over: no verdict, no webhooks from here
            final = await asyncio.shield(
                self._finish(rec, recorder, status, errors, usage, sandbox, provider, opts)
            )
        return final

    async def _finish(
        self,
        rec: InteractionRecord,
        recorder: Recorder,
        status: str,
        errors: list[dict[str, str]],
        usage: Usage,
        sandbox: Sandbox | None,
        provider: ModelProvider | None,
        opts: RunOptions,
    ) -> InteractionRecord:
        if sandbox is not None:
            with contextlib.suppress(Exception):
                if opts.keep_sandbox and status not in ("cancelled",):
                    await sandbox.close()
                else:
                    await sandbox.destroy()
                    await self.store.update_interaction(rec.tenant, rec.id, sandbox_id=None)
        if provider is not None:
            with contextlib.suppress(Exception):
                await provider.aclose()
        with contextlib.suppress(Exception):
            await recorder.drain()  # everything the run emitted is stored before the verdict
        try:
            try:
                final = await lifecycle.finish(self.store, self.bus, rec, status, errors, usage)
            except StorageFull:
                # The disk is full: give up the space held in reserve for this moment, so the
                # run's end is recorded rather than left `in_progress`.
                if not await asyncio.to_thread(release_reserve, self.settings.home):
                    raise
                log.warning("run.reserve_released", interaction=rec.id)
                final = await lifecycle.finish(self.store, self.bus, rec, status, errors, usage)
        except (CorralError, OSError) as exc:
            # The verdict could not be stored (a full disk, a lost database): the caller still
            # gets it, and a restarted controller ends the stored run as interrupted.
            mapped = exc if isinstance(exc, CorralError) else host_error(exc)
            log.error("run.verdict_not_stored", interaction=rec.id, error=str(mapped))
            if status != "failed" or not errors:
                status = "failed"
            errors = [*errors, {"code": mapped.code, "message": f"not recorded: {mapped}"}]
            final = dataclasses.replace(rec, status=status, errors=errors, updated=utcnow())
        log.info("run.finished", interaction=rec.id, status=status)
        return final

    async def _let_go(
        self,
        rec: InteractionRecord,
        recorder: Recorder,
        sandbox: Sandbox | None,
        provider: ModelProvider | None,
    ) -> None:
        """Leave a run another node holds (or, handed off, will take): keep its sandbox, stop
        its event writer, then drop a lost lease's fence (a drain releases a handed-off one
        after); nothing of the run writes after that."""
        try:
            await self._give_up(rec, recorder, sandbox, provider)
        finally:
            self.lost.discard(rec.id)  # only now: see `abandon`

    async def _give_up(
        self,
        rec: InteractionRecord,
        recorder: Recorder,
        sandbox: Sandbox | None,
        provider: ModelProvider | None,
    ) -> None:
        self.resumed_from.pop(rec.id, None)
        handoff = rec.id in self.handed_off
        if handoff:
            self.handed_off.discard(rec.id)
        else:
            self.stats.leases_lost += 1
        if sandbox is not None:
            with contextlib.suppress(Exception):
                await sandbox.close()
        if provider is not None:
            with contextlib.suppress(Exception):
                await provider.aclose()
        with contextlib.suppress(Exception):
            # Refused by the fence if another node holds the lease; bounded, because a node
            # cut off from its database would wait here for ever.
            async with asyncio.timeout(LET_GO_DRAIN_SECONDS):
                await recorder.drain()
        # What has not landed by now never may: releasing the lease (a drain does it once the
        # run's task is over) or dropping a lost one's fence leaves this node's writes for the
        # run unfenced, so a batch the writer (stuck on the database) started afterwards would
        # land after another node claimed the run. Revoked first, synchronously: none starts.
        recorder.revoke(LeaseLost(f"interaction {rec.id} is no longer run by this node"))
        if not handoff:
            self.store.drop_fence(rec.id)
        log.warning("run.handed_off" if handoff else "run.lease_lost", interaction=rec.id)

    async def _resume_sandbox(
        self, rec: InteractionRecord, spec: AgentSpec, opts: RunOptions
    ) -> tuple[Sandbox, bool]:
        """The run's own sandbox when this node's engine still holds it (adopted), else a new
        one (the workspace is restored by `_announce_resume`)."""
        if rec.sandbox_id:
            with contextlib.suppress(SandboxError, NotFound):
                return await Sandbox.attach(rec.sandbox_id, backend=self.backend), True
        return await self._sandbox(
            dataclasses.replace(rec, previous_interaction_id=None), spec, opts
        ), False

    async def _announce_resume(
        self,
        rec: InteractionRecord,
        recorder: Recorder,
        plan: ResumePlan,
        sandbox: Sandbox,
        adopted: bool,
        spec: AgentSpec,
        from_node: str | None,
    ) -> dict[str, ArtifactRecord]:
        """Write `run.resumed`; the artifacts already announced that the output folder holds
        (restored, or kept by an adopted sandbox), by path, so that the collector does not
        announce them again unless they change."""
        restored: list[ArtifactRecord] = []
        missing: list[str] = []
        known: list[ArtifactRecord] = []  # what the output folder holds that was announced
        if not adopted:
            restored, missing = await restore_workspace(
                self.store, sandbox, rec.id, spec.output_dir
            )
            known = restored
        else:
            known = await self.store.list_artifacts(rec.id)  # still in the adopted sandbox
        payload: dict[str, Any] = {
            "from_node": from_node,
            "node": self.store_node,
            "step": plan.next_index,
            "rerun": [i for i, call, _ in plan.rerun if call.name not in client_names(rec)],
            "discarded": plan.discarded,
            "sandbox": "adopted" if adopted else "new",
            "sandbox_id": sandbox.id,
            "restored": [a.path for a in restored],
            "missing": missing,
        }
        await recorder.emit(RESUMED, payload)
        log.info(
            "run.resumed", interaction=rec.id, **{k: payload[k] for k in ("from_node", "step")}
        )
        return {a.path: a for a in known}

    async def _sandbox(self, rec: InteractionRecord, spec: AgentSpec, opts: RunOptions) -> Sandbox:
        if rec.previous_interaction_id:
            prev = await self.store.get_interaction(rec.tenant, rec.previous_interaction_id)
            if prev.sandbox_id:
                with contextlib.suppress(SandboxError, NotFound):
                    return await Sandbox.attach(prev.sandbox_id, backend=self.backend)
        sb_spec = spec.sandbox_spec()
        if opts.image:
            sb_spec = sb_spec.model_copy(update={"image": opts.image})
        labels = {"corral.interaction": rec.id}
        if self.pool is not None:
            return await self.pool.acquire(sb_spec, labels=labels)
        return await Sandbox.create(sb_spec, backend=self.backend, labels=labels)

    async def aclose(self) -> None:
        for task in list(self.tasks.values()):
            task.cancel()
        for task in list(self.tasks.values()):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task


LET_GO_DRAIN_SECONDS = 5.0
RESERVE_NAME = ".reserve"
RESERVE_BYTES = 1 << 20
"""Space held in `$CORRAL_HOME` so a run's end can still be recorded when the disk fills."""


def keep_reserve(home: Path) -> None:
    """Create the reserve file if it is missing and the disk has room (never fails)."""
    path = home / RESERVE_NAME
    try:
        if path.stat().st_size >= RESERVE_BYTES:
            return
    except FileNotFoundError:
        pass
    except OSError:
        return
    tmp = home / f"{RESERVE_NAME}.{os.getpid()}.tmp"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
        try:
            os.posix_fallocate(fd, 0, RESERVE_BYTES)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except OSError:
        with contextlib.suppress(OSError):
            os.unlink(tmp)


def release_reserve(home: Path) -> bool:
    """Free the reserve; False if there was none (another run already used it)."""
    try:
        os.unlink(home / RESERVE_NAME)
    except OSError:
        return False
    return True


def _then(
    first: Callable[[], Awaitable[object]], second: Callable[[], Awaitable[object]]
) -> Callable[[], Awaitable[object]]:
    async def both() -> object:
        await first()
        return await second()

    return both


async def _warm_browser(sandbox: Sandbox) -> None:
    with contextlib.suppress(Exception):  # the first real action reports any failure
        await sandbox.browser.call("state")


async def _install_skills(sandbox: Sandbox, spec: AgentSpec) -> list[str]:
    """Copy the agent's skill folders into /workspace/skills/<name>; return their paths."""
    paths = []
    for skill in spec.skills:
        name = skill.name or skill.source.name
        target = f"{sandbox.spec.workdir}/skills/{name}"
        await copy_in(sandbox, DataMount(source=skill.source, target=target))
        paths.append(target)
    return paths
