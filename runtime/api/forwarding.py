"""ASGI middleware: a sandbox call (or an artifact download) that reaches a node other than
the one holding it is forwarded there (`runtime.fleet.forward`); everything else passes
through untouched.

Which calls name a sandbox:
- `/v1beta/sandboxes/{id}[/...]` (exec, streaming exec, files up and down, browser, delete):
  the tenant is the key's (`x-goog-api-key` / Bearer);
- the E2B door's lifecycle calls `/sandboxes/{id}[/...]`, `/v2/sandboxes/{id}/...`: the tenant is
  the key in `X-API-KEY`;
- the E2B door's in-sandbox calls (envd, code interpreter): the `E2b-Sandbox-Id` header; they
  carry a per-sandbox token instead of a key, which only the owner can check, so the owner is
  looked up by id alone;
- artifact downloads `GET /v1beta/interactions/{id}/artifacts/{path}`: the files are on the
  disk of the node that collected them, the run's last owner (`interactions.owner_node`),
  which serves them (the listing comes from the database and is answered anywhere);
- `POST /{v}/interactions` of an agent follow-up (`agent` and `previous_interaction_id`): the
  node that last ran the previous interaction holds its kept sandbox, so the follow-up is sent
  there and continues in that workspace (the body, within the JSON cap, is read here first to
  know; a bigger one is left to the body limit). That node down: the run starts here;
- `DELETE /{v}/interactions/{id}`: the run's last owner cancels it if it still runs and removes
  its artifact files and kept sandbox with the rows. If that node is down the delete is done
  here (rows and whatever this node holds) rather than refused.

The middleware never answers for the app: a call without a valid key, for a sandbox the
tenant does not have, or for one this node owns goes on to the routes, which authenticate and
404 as always. The target is always the owner's URL from the `nodes` table, never something
the client sent. A call already forwarded (`X-Corral-Forwarded-By`) is never forwarded again:
if it still reached a node that does not own the sandbox, it is refused (421) rather than
served here, because serving it here would treat the sandbox as gone and forget it. Nodes on
SQLite (no fleet) skip all of this.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Literal

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from runtime.api.auth import key_from_headers
from runtime.api.deps import ApiState
from runtime.api.errors import error_response
from runtime.api.fleet import Fleet
from runtime.errors import CorralError, NodeUnavailable
from runtime.fleet import queries
from runtime.fleet.forward import FORWARDED_BY

_OWN_API = re.compile(r"^/v1beta/sandboxes/(?P<id>[^/]+)(?:/|$)")
_E2B_LIFECYCLE = re.compile(r"^(?:/v2)?/sandboxes/(?P<id>[^/]+)(?:/|$)")
_ARTIFACT = re.compile(r"^/v1beta/interactions/(?P<id>[^/]+)/artifacts/.")
_RUN = re.compile(r"^/v1(?:beta)?/interactions/(?P<id>[^/]+)$")
_CREATE = re.compile(r"^/v1(?:beta)?/interactions$")


@dataclass(frozen=True)
class _Target:
    kind: Literal["sandbox", "artifact", "run"]
    id: str
    key: str | None
    keyed: bool
    """Whether a key is how this call authenticates (else the owner checks a token)."""

    @property
    def what(self) -> str:
        """The subject of an error message about where the target is."""
        if self.kind == "sandbox":
            return "this sandbox is"
        if self.kind == "artifact":
            return "the artifact files of this interaction are"
        return "this interaction's files and sandbox are"


class FleetForwarding:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        fleet: Fleet | None = None
        if scope["type"] == "http":
            fleet = getattr(scope["app"].state, "fleet", None)
        if fleet is None:
            await self.app(scope, receive, send)
            return
        if (
            scope["method"] == "POST"
            and _CREATE.match(scope["path"])
            and not Headers(scope=scope).get(FORWARDED_BY)
        ):
            await self._create(scope, receive, send, fleet)
            return
        target = _target(scope)
        owner = None
        if target is not None:
            owner = await _remote_owner(scope["app"].state.corral, fleet, target)
        if target is None or owner is None:
            await self.app(scope, receive, send)
            return
        if Headers(scope=scope).get(FORWARDED_BY):
            message = f"{target.what} on node {owner.node}; a forwarded call is not forwarded again"
            await error_response(421, "misdirected_request", message)(scope, receive, send)
            return
        try:
            await fleet.forwarder.forward(
                scope,
                receive,
                send,
                owner=owner.node,
                url=owner.url,
                heartbeat_at=owner.heartbeat_at,
                what=target.what,
            )
        except NodeUnavailable as exc:
            if target.kind == "run":
                # A delete must not wait for a dead node: the rows go here; what that node
                # holds is its to reap when it comes back (nothing was sent yet).
                await self.app(scope, receive, send)
                return
            response = error_response(503, exc.code, exc.message, headers={"Retry-After": "5"})
            await response(scope, receive, send)

    async def _create(self, scope: Scope, receive: Receive, send: Send, fleet: Fleet) -> None:
        """A follow-up agent run goes to the node holding the previous run's kept sandbox, so
        it continues in that workspace; any other create is this node's."""
        state: ApiState = scope["app"].state.corral
        body, whole = await _buffer(receive, state.config.json_limit)
        owner = await _follow_up_owner(state, fleet, scope, body) if whole else None
        if owner is not None:
            try:
                await fleet.forwarder.forward(
                    scope,
                    _replay(body, whole, receive),
                    send,
                    owner=owner.node,
                    url=owner.url,
                    heartbeat_at=owner.heartbeat_at,
                    what="the previous interaction's sandbox is",
                )
                return
            except NodeUnavailable:
                pass  # that node is gone with its sandbox: the run starts here in a new one
        await self.app(scope, _replay(body, whole, receive), send)


async def _buffer(receive: Receive, limit: int) -> tuple[bytes, bool]:
    """The request body if it ends within `limit` bytes (True), else what was read (False)."""
    chunks: list[bytes] = []
    size = 0
    while True:
        msg = await receive()
        if msg["type"] != "http.request":
            return b"".join(chunks), False
        chunk = msg.get("body", b"")
        chunks.append(chunk)
        size += len(chunk)
        if not msg.get("more_body", False):
            return b"".join(chunks), True
        if size > limit:  # the app's body limit answers this one
            return b"".join(chunks), False


def _replay(body: bytes, whole: bool, receive: Receive) -> Receive:
    """A `receive` that gives `body` first, then (if more is to come) the rest of the request."""
    sent = False

    async def again() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": not whole}
        return await receive()

    return again


async def _follow_up_owner(
    state: ApiState, fleet: Fleet, scope: Scope, body: bytes
) -> queries.Owner | None:
    """The other node that last ran this agent follow-up's previous interaction, if any."""
    try:
        data = json.loads(body)
    except ValueError:
        return None  # the route answers the malformed body
    if not isinstance(data, dict) or "agent" not in data:
        return None
    previous = data.get("previous_interaction_id")
    if not isinstance(previous, str) or not previous:
        return None
    target = _Target("run", previous, key_from_headers(Headers(scope=scope)), True)
    return await _remote_owner(state, fleet, target)


def _target(scope: Scope) -> _Target | None:
    """What the call names that may live on another node, and how it authenticates."""
    headers = Headers(scope=scope)
    path: str = scope["path"]
    m = _OWN_API.match(path)
    if m is not None:
        return _Target("sandbox", m["id"], key_from_headers(headers), True)
    if scope["method"] in ("GET", "HEAD"):
        m = _ARTIFACT.match(path)
        if m is not None:
            return _Target("artifact", m["id"], key_from_headers(headers), True)
    if scope["method"] == "DELETE":
        m = _RUN.match(path)
        if m is not None:
            return _Target("run", m["id"], key_from_headers(headers), True)
    e2b_id = headers.get("e2b-sandbox-id")
    if e2b_id:
        return _Target("sandbox", e2b_id, None, False)
    m = _E2B_LIFECYCLE.match(path)
    if m is not None:
        key = headers.get("x-api-key") or key_from_headers(headers)
        return _Target("sandbox", m["id"], key, True)
    return None


async def _remote_owner(state: ApiState, fleet: Fleet, target: _Target) -> queries.Owner | None:
    """The node that holds the target when that is another node; None to answer here."""
    tenant: str | None = None
    if target.keyed:
        try:
            tenant = state.config.keys.tenant_for(target.key)
        except CorralError:
            return None  # the routes answer 401
    if target.kind == "sandbox" and fleet.owns(tenant, target.id):
        return None
    try:
        if target.kind == "sandbox":
            owner = await queries.sandbox_owner(state.ctl.store, target.id, tenant)
        else:
            assert tenant is not None
            owner = await queries.run_owner(state.ctl.store, target.id, tenant)
    except CorralError:
        return None  # the routes meet the same store error and answer it
    if owner is None or owner.node == fleet.node:
        if owner is not None and target.kind == "sandbox":
            fleet.remember_local(tenant, target.id)  # a sandbox never moves; a run may
        return None
    return owner
