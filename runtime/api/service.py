"""What the interaction routes do, apart from HTTP: create (model or agent), cancel, delete,
idempotency, and the bookkeeping when a run ends (metrics, webhooks).

Runs are asyncio tasks owned by this process: agent runs by the `Runner`, model runs here. A
run outlives the request that started it (a client that disconnects does not stop it); only
cancel, delete or shutdown do.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import re
import shutil
from dataclasses import dataclass
from typing import Any

import structlog

from runtime.agents.registry import is_path, resolve_agent_async
from runtime.agents.spec import AgentSpec
from runtime.api.config import ApiConfig
from runtime.api.ephemeral import ephemeral_pair
from runtime.api.errors import BadRequest, FailedPrecondition
from runtime.api.metrics import Metrics
from runtime.api.policy import TenantPolicy
from runtime.api.quotas import INTERACTION_LABEL, Quotas
from runtime.api.schemas import AgentConfig, CreateInteraction, known_model
from runtime.controller import Controller
from runtime.errors import ConfigError, Conflict, NotFound
from runtime.events import TERMINAL_EVENT, EventBus
from runtime.generation import check_media, check_response_modalities, check_tools, mcp_tools
from runtime.inference import Inference, InferenceRequest, input_steps, resolve_model
from runtime.providers.registry import check_credentials, default_model_from_env, make_provider
from runtime.runner import TERMINAL, RunOptions
from runtime.server_tools import ServerToolsConfig, requested
from runtime.server_tools.tools import code_sandbox_spec
from runtime.steps import materialize, media_of, text_of
from runtime.store.base import InteractionRecord, Store
from runtime.views import interaction_view
from runtime.webhooks import WebhookWorker, completion_payload, enqueue, valid_uri
from sandbox.api import Sandbox
from sandbox.errors import SandboxError

log = structlog.get_logger("corral.api.service")
FINAL_STATUSES = TERMINAL


@dataclass
class Created:
    """A new (or idempotently repeated) interaction and how to follow it."""

    rec: InteractionRecord
    store: Store
    bus: EventBus
    task: asyncio.Task[InteractionRecord] | None
    input_steps: int
    repeated: bool = False
    policy: TenantPolicy | None = None
    """The key's policy (a `model=` run's code sandbox is held to it)."""


class InteractionService:
    def __init__(
        self,
        ctl: Controller,
        config: ApiConfig,
        metrics: Metrics,
        webhooks: WebhookWorker | None = None,
        quotas: Quotas | None = None,
    ) -> None:
        self.ctl = ctl
        self.config = config
        self.metrics = metrics
        self.webhooks = webhooks
        self.quotas = quotas or Quotas(ctl.store, ctl.backend, ctl.runner.tasks)
        self.model_tasks: dict[str, asyncio.Task[InteractionRecord]] = {}
        self._followers: set[asyncio.Task[None]] = set()

    # -- creating ---------------------------------------------------------------------------
    async def create(
        self,
        tenant: str,
        body: CreateInteraction,
        idempotency_key: str | None,
        *,
        policy: TenantPolicy | None = None,
    ) -> Created:
        """Create and start an interaction. An agent run is held to `policy` (default: the
        server's default policy): its sandbox within the ceilings, and a live-sandbox slot
        taken under the tenant's lock until the run has started."""
        if body.webhook_config:
            bad = [u for u in body.webhook_config.uris if not valid_uri(u)]
            if bad:
                raise BadRequest(f"webhook_config.uris: not an http(s) URL: {bad[0]!r}")
        for name, why in body.unsupported():
            raise BadRequest(f"{name}: {why}")
        check_response_modalities(body.response_modalities)
        if not body.store and (body.background or body.previous_interaction_id or body.agent):
            raise BadRequest(
                "store=false works with model= only, without background or previous_interaction_id"
            )
        request_hash = _hash(body)
        if idempotency_key and body.store:
            found = await self.ctl.store.get_idempotency(tenant, idempotency_key)
            if found is not None:
                return await self._repeat(tenant, idempotency_key, request_hash, found)
        policy = policy or self.config.keys.default_policy.resolved(self.config.keys.single_user)
        if body.model and "code_execution" in requested(body.tools):
            # The code sandbox opens on the model's first call; its slot is checked now (and
            # again when it opens) so an over-quota caller hears it from create.
            policy.check_sandbox(code_sandbox_spec())
            async with self.quotas.lock(tenant):
                if not await self._reuses_sandbox(tenant, body.previous_interaction_id):
                    await self.quotas.check_sandboxes(tenant, policy)
                created = await self._create_model(tenant, body, policy)
                return await self._finish_create(
                    tenant, body, idempotency_key, request_hash, created
                )
        if body.model:
            created = await self._create_model(tenant, body, policy)
            return await self._finish_create(tenant, body, idempotency_key, request_hash, created)
        spec = await self.resolve_agent(tenant, body.agent or "")
        check_agent(spec, policy)
        async with self.quotas.lock(tenant):
            if not await self._reuses_sandbox(tenant, body.previous_interaction_id):
                await self.quotas.check_sandboxes(tenant, policy)
            created = await self._create_agent(tenant, body, spec)
            return await self._finish_create(tenant, body, idempotency_key, request_hash, created)

    async def _finish_create(
        self,
        tenant: str,
        body: CreateInteraction,
        idempotency_key: str | None,
        request_hash: str,
        created: Created,
    ) -> Created:
        if idempotency_key and body.store:
            winner = await self.ctl.store.put_idempotency(
                tenant, idempotency_key, request_hash, created.rec.id
            )
            if winner != created.rec.id:  # a concurrent twin got there first: drop ours
                await self.ctl.store.delete_interaction(tenant, created.rec.id)
                return await self._repeat(
                    tenant, idempotency_key, request_hash, (request_hash, winner)
                )
        created.task = self._start(created)
        return created

    async def _reuses_sandbox(self, tenant: str, previous_interaction_id: str | None) -> bool:
        """A follow-up attaches to the previous run's sandbox when it is still there."""
        if not previous_interaction_id:
            return False
        try:
            prev = await self.ctl.store.get_interaction(tenant, previous_interaction_id)
        except NotFound:
            return False  # the run's create says so
        if not prev.sandbox_id:
            return False
        try:
            await self.ctl.backend.get(prev.sandbox_id)
        except SandboxError:
            return False
        return True

    async def _repeat(
        self, tenant: str, key: str, request_hash: str, found: tuple[str, str]
    ) -> Created:
        stored_hash, interaction_id = found
        if stored_hash != request_hash:
            raise Conflict(f"Idempotency-Key {key!r} was used with a different request body")
        rec = await self.ctl.store.get_interaction(tenant, interaction_id)
        task = self.ctl.runner.tasks.get(rec.id) or self.model_tasks.get(rec.id)
        n = int(rec.config.get("input_steps", 1))
        return Created(rec, self.ctl.store, self.ctl.bus, task, n, repeated=True)

    async def _create_model(
        self, tenant: str, body: CreateInteraction, policy: TenantPolicy
    ) -> Created:
        assert body.model is not None
        self._check_model(body.model, credentials=True)
        req = InferenceRequest(
            model=body.model,
            input=body.input,
            system_instruction=body.system_instruction,
            generation_config=body.generation_config,
            response_format=body.response_format,
            response_mime_type=body.response_mime_type,
            tools=body.tools or [],
            previous_interaction_id=body.previous_interaction_id,
            store=body.store,
            background=body.background,
        )
        store, bus = (self.ctl.store, self.ctl.bus) if body.store else ephemeral_pair()
        inference = self._inference(store, bus, policy)
        rec = await inference.create(tenant, req)
        rec = await self._annotate(store, rec, body, "model")
        return Created(rec, store, bus, None, int(rec.config["input_steps"]), policy=policy)

    def _inference(self, store: Store, bus: EventBus, policy: TenantPolicy | None) -> Inference:
        async def open_sandbox(rec: InteractionRecord) -> Sandbox:
            return await self._open_code_sandbox(store, rec, policy)

        tools = ServerToolsConfig(
            open_sandbox=open_sandbox,
            egress=self.ctl.settings.egress_options(),
            search_url=self.ctl.settings.search_url,
        )
        return Inference(store, bus, self.ctl.runner.provider_factory, tools)

    async def _open_code_sandbox(
        self, store: Store, rec: InteractionRecord, policy: TenantPolicy | None
    ) -> Sandbox:
        """The sandbox of a `model=` interaction's code_execution: the previous interaction's
        when it is still there, else a new one within the key's policy and sandbox quota."""
        sandbox: Sandbox | None = None
        if rec.previous_interaction_id:
            with contextlib.suppress(NotFound, SandboxError):
                prev = await store.get_interaction(rec.tenant, rec.previous_interaction_id)
                if prev.sandbox_id:
                    sandbox = await Sandbox.attach(prev.sandbox_id, backend=self.ctl.backend)
        if sandbox is None:
            policy = policy or self.config.keys.default_policy.resolved(
                self.config.keys.single_user
            )
            spec = code_sandbox_spec()
            policy.check_sandbox(spec)
            async with self.quotas.lock(rec.tenant):
                await self.quotas.check_sandboxes(rec.tenant, policy)
                sandbox = await Sandbox.create(
                    spec, backend=self.ctl.backend, labels={INTERACTION_LABEL: rec.id}
                )
        try:
            await store.update_interaction(rec.tenant, rec.id, sandbox_id=sandbox.id)
        except BaseException:
            await sandbox.destroy()
            raise
        return sandbox

    async def _create_agent(self, tenant: str, body: CreateInteraction, spec: AgentSpec) -> Created:
        overrides = body.agent_config or AgentConfig()
        model = overrides.model or spec.model or default_model_from_env()
        self._check_model(model, credentials=True, base_url=spec.base_url)
        steps = input_steps(body.input)
        if any(s.get("type") not in ("user_input", "function_result") for s in steps):
            raise BadRequest(
                "agent= input: the task (text and media) or function_result steps answering a "
                "requires_action run"
            )
        task = "\n\n".join(text_of(s.get("content")) for s in steps).strip()
        answers = any(s.get("type") == "function_result" for s in steps)
        if not (task or answers or media_of_steps(steps)):
            raise BadRequest("input is required: the task for the agent")
        check_media(steps, resolve_model(model))
        check_tools(body.tools, agent_tools=set(spec.builtin_tools()))
        if body.response_format is not None or body.response_mime_type not in (None, "text/plain"):
            raise BadRequest(
                "response_format: structured output goes with model=; an agent answers in text"
            )
        functions = [t for t in body.tools or [] if t.get("type") == "function"]
        mcp_servers = mcp_tools(body.tools, network=spec.network.mode, allow=spec.network.allow)
        opts = RunOptions(
            model=model,
            max_steps=overrides.max_steps,
            max_tool_calls=overrides.max_tool_calls,
            max_total_tokens=overrides.max_total_tokens,
            timeout=overrides.timeout,
            system_instruction=body.system_instruction,
            client_tools=functions or None,
            mcp_servers=mcp_servers or None,
        )
        rec = await self.ctl.runner.create(
            spec,
            task,
            tenant=tenant,
            options=opts,
            previous_interaction_id=body.previous_interaction_id,
            background=body.background,
            steps=steps,
        )
        rec = await self._annotate(self.ctl.store, rec, body, "agent")
        return Created(rec, self.ctl.store, self.ctl.bus, None, len(steps))

    async def _annotate(
        self, store: Store, rec: InteractionRecord, body: CreateInteraction, kind: str
    ) -> InteractionRecord:
        extra: dict[str, Any] = {"kind": kind, "input_steps": rec.config.get("input_steps", 1)}
        if body.webhook_config and body.webhook_config.uris:
            extra["webhook"] = body.webhook_config.model_dump(mode="json")
        if body.labels:
            extra["labels"] = body.labels
        self.metrics.created.labels(kind).inc()
        return await store.update_interaction(rec.tenant, rec.id, config={**rec.config, **extra})

    def _start(self, created: Created) -> asyncio.Task[InteractionRecord]:
        rec = created.rec
        kind = str(rec.config.get("kind", "agent"))
        if kind == "agent":
            task = self.ctl.runner.start(rec)
        else:
            inference = self._inference(created.store, created.bus, created.policy)
            task = asyncio.create_task(inference.run(rec), name=f"model-{rec.id}")
            if rec.store:
                self.model_tasks[rec.id] = task
                task.add_done_callback(lambda _t: self.model_tasks.pop(rec.id, None))
        self.metrics.active.inc()
        follower = asyncio.create_task(self._after(task, kind, rec.store))
        self._followers.add(follower)
        follower.add_done_callback(self._followers.discard)
        return task

    async def _after(self, task: asyncio.Task[InteractionRecord], kind: str, stored: bool) -> None:
        try:
            final = await asyncio.shield(task)
        except BaseException:
            self.metrics.active.dec()
            return
        self.metrics.active.dec()
        self.metrics.finished.labels(kind, final.status).inc()
        if stored:
            await self.on_finished(final)

    async def restart(self, rec: InteractionRecord) -> None:
        """Start a run that was recorded but never got going (recovery after a restart)."""
        n = int(rec.config.get("input_steps", 1))
        self._start(Created(rec, self.ctl.store, self.ctl.bus, None, n))

    async def on_finished(self, final: InteractionRecord) -> None:
        """Queue the completion webhooks of an interaction that just ended."""
        hook = final.config.get("webhook") or {}
        uris = [u for u in hook.get("uris", []) if isinstance(u, str)]
        if not uris:
            return
        steps = materialize(await self.ctl.store.list_events(final.id))
        payload = completion_payload(interaction_view(final, steps), hook.get("user_metadata"))
        try:
            await enqueue(self.ctl.store, final, uris, payload)
        except NotFound:
            return  # deleted meanwhile
        if self.webhooks is not None:
            self.webhooks.kick()

    def _check_model(
        self, model: str, *, credentials: bool = False, base_url: str | None = None
    ) -> None:
        """400 for a model we cannot run; with `credentials`, also when the server has no key
        for its provider (FAILED_PRECONDITION at create, not a failed run). A custom provider
        factory (tests, embedders) brings its own credentials."""
        try:
            known_model(model)
        except ValueError as exc:
            raise BadRequest(f"model: {exc}") from None
        resolved = resolve_model(model)
        if resolved.startswith("scripted:") and not self.config.scripted_allowed:
            raise BadRequest(
                "scripted models read files on the server; they are off on a multi-tenant "
                "server (set CORRAL_ALLOW_SCRIPTED=1 to allow them)"
            )
        if credentials and self.ctl.runner.provider_factory is make_provider:
            try:
                check_credentials(resolved, base_url=base_url)
            except ConfigError as exc:
                raise FailedPrecondition(f"model: {exc}") from None

    # -- agents -----------------------------------------------------------------------------
    async def resolve_agent(self, tenant: str, name: str) -> AgentSpec:
        if is_path(name) or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}", name):
            raise BadRequest(f"agent must be a name (not a path): {name!r}")

        async def lookup(n: str) -> dict[str, Any] | None:
            try:
                return (await self.ctl.store.get_agent(tenant, n)).spec
            except NotFound:
                return None

        return await resolve_agent_async(name, store_lookup=lookup, home=self.ctl.settings.home)

    def validate_agent(self, data: dict[str, Any], policy: TenantPolicy | None = None) -> AgentSpec:
        """A spec sent by a caller: no host paths, on a multi-tenant server no custom base_url
        (the server's provider key would go to the caller's URL), a model whose provider we
        have, and a sandbox within `policy`."""
        spec = AgentSpec.from_dict(data, source="<api>", allow_host_paths=False)
        if spec.base_url and not self.config.keys.single_user:
            raise BadRequest("base_url is not allowed in agents created on a multi-tenant server")
        if spec.model:
            self._check_model(spec.model)
        if policy is not None:
            check_agent(spec, policy)
        return spec

    # -- following --------------------------------------------------------------------------
    async def wait(self, created: Created) -> InteractionRecord:
        """Until the interaction ends (for a request that is not `background`)."""
        if created.task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                return await asyncio.shield(created.task)
        rec = created.rec
        if rec.status in FINAL_STATUSES:
            return rec
        async for ev in created.bus.subscribe(rec.id, after=rec.last_event_id):
            if ev is not None and ev.event_type == TERMINAL_EVENT:
                break
        return await created.store.get_interaction(rec.tenant, rec.id)

    async def view(
        self,
        store: Store,
        rec: InteractionRecord,
        *,
        skip_input: int = 0,
        include_input: bool = False,
    ) -> dict[str, Any]:
        steps = materialize(await store.list_events(rec.id))
        return interaction_view(rec, steps[skip_input:], include_input=include_input)

    # -- cancel / delete --------------------------------------------------------------------
    async def cancel(self, tenant: str, interaction_id: str) -> InteractionRecord:
        rec = await self.ctl.store.get_interaction(tenant, interaction_id)
        task = self.model_tasks.get(interaction_id)
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
            return await self.ctl.store.get_interaction(tenant, interaction_id)
        if interaction_id in self.ctl.runner.tasks:
            return await self.ctl.runner.cancel(tenant, interaction_id)
        return rec

    async def delete(self, tenant: str, interaction_id: str) -> None:
        rec = await self.ctl.store.get_interaction(tenant, interaction_id)
        if rec.status not in FINAL_STATUSES:
            rec = await self.cancel(tenant, interaction_id)
        if rec.sandbox_id:
            with contextlib.suppress(SandboxError):
                await self.ctl.backend.destroy(rec.sandbox_id)
        await self.ctl.store.delete_interaction(tenant, interaction_id)
        folder = self.ctl.settings.artifacts_dir / interaction_id
        await asyncio.to_thread(shutil.rmtree, folder, True)

    async def aclose(self) -> None:
        for task in list(self.model_tasks.values()):
            task.cancel()
        await _gather_quietly([*self.model_tasks.values()])
        await _gather_quietly(list(self._followers))


def media_of_steps(steps: list[dict[str, Any]]) -> bool:
    return any(media_of(s.get("content")) for s in steps if s.get("type") == "user_input")


def check_agent(spec: AgentSpec, policy: TenantPolicy) -> None:
    """PolicyDenied when the agent's sandbox (resources, network) is over the key's ceilings."""
    try:
        sandbox = spec.sandbox_spec()
    except ValueError as exc:
        raise BadRequest(f"agent {spec.name}: {exc}") from None
    asked = {k: v for k, v in spec.resources.model_dump().items() if v is not None}
    policy.check_sandbox(sandbox, asked)


def _hash(body: CreateInteraction) -> str:
    # `stream` changes how the answer is delivered, not what is created.
    data = body.model_dump(mode="json", exclude={"stream"})
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()


async def _gather_quietly(tasks: list[asyncio.Task[Any]]) -> None:
    if tasks:
        await asyncio.gather(*tasks, return_exceptions=True)
