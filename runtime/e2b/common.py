"""What the E2B routes share: access tokens, the template map, running commands, errors.

Tenancy: lifecycle calls carry the Corral key in `X-API-KEY`; in-sandbox calls carry no key,
only `E2b-Sandbox-Id` and the token we returned at create/connect as `envdAccessToken` and
`trafficAccessToken` (sent back as `X-Access-Token` / `E2B-Traffic-Access-Token`), an HMAC of
the sandbox id and its owner under the server's E2B secret (see `E2BState.secret`). A wrong or missing token is
401; an unknown sandbox is 404 (another tenant's sandbox is unknown).

In-sandbox streams (commands, PTYs, `commands.connect`, directory watches, `/execute`) carry
no key, yet each holds a slot of its sandbox owner's concurrent-stream ceiling, counted with
the tenant's other streams (`Quotas.open_stream`): the policy is the key's that created or
last connected the sandbox on this server, else the strictest of the tenant's keys
(`owner_policy`), so a restart never loosens a ceiling.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import os
import posixpath
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fastapi import Request

from runtime.api.auth import ApiKeys, Principal, key_from_headers
from runtime.api.deps import ApiState
from runtime.api.errors import sandbox_status
from runtime.api.policy import TenantPolicy
from runtime.api.quotas import StreamLease
from runtime.errors import CorralError, NotFound, Unauthorized
from runtime.store.base import SandboxRecord
from sandbox.api import Sandbox
from sandbox.errors import SandboxError
from sandbox.pty import Pty
from sandbox.rpc.client import ProcessPipe

if TYPE_CHECKING:
    from runtime.e2b.watch import Watcher

ENVD_VERSION = "0.6.1"
"""What we answer as envd's version: octet-stream uploads and default user, no file metadata."""
HOME = "/home/user"
"""E2B's default user's home; Corral's writable workspace stands in for it."""
WORKSPACE = "/workspace"
DEFAULT_TEMPLATES = {"base": "corral/base", "code-interpreter-v1": "corral/base"}
TEMPLATES_ENV = "CORRAL_E2B_TEMPLATES"
SECRET_ENV = "CORRAL_E2B_SECRET"
SECRET_FILE = "e2b_secret"
MAX_OWNERS = 10_000


def templates_from_env() -> dict[str, str]:
    """`base` and `code-interpreter-v1` out of the box, plus `name=image,...` from
    `CORRAL_E2B_TEMPLATES` (which may also override them)."""
    out = dict(DEFAULT_TEMPLATES)
    for item in os.environ.get(TEMPLATES_ENV, "").split(","):
        name, sep, image = item.strip().partition("=")
        if sep and name.strip() and image.strip():
            out[name.strip()] = image.strip()
    return out


@dataclass
class Command:
    """One command started over envd's Process service (the stream that runs it owns it)."""

    pid: int
    cmd: str
    args: list[str]
    envs: dict[str, str]
    cwd: str
    tag: str | None
    added_env: dict[str, str] = field(default_factory=dict)
    """What the door adds under the caller's `envs` (`PWD` under the home link, homes.py)."""
    task: asyncio.Task[Any] | None = None
    pipe: ProcessPipe | None = None
    """Set when started with stdin (`Sandbox.pipe`)."""
    pty: Pty | None = None
    """Set when started with a PTY (the engine's TTY exec, sandbox/pty.py)."""
    stopped: asyncio.Event = field(default_factory=asyncio.Event)
    """Set by a kill of a piped command (its stream then ends and closes the pipe)."""
    listeners: list[asyncio.Queue[bytes | None]] = field(default_factory=list)
    """Streams of `commands.connect`: each gets the frames after the start event."""

    def env(self) -> dict[str, str]:
        """The environment it runs with: the caller's `envs` over what the door adds."""
        return {**self.added_env, **self.envs}

    def publish(self, frame: bytes | None) -> None:
        for q in self.listeners:
            q.put_nowait(frame)


@dataclass
class E2BState:
    templates: dict[str, str]
    secret: bytes | None = None
    """The token key: `CORRAL_E2B_SECRET` (the same on every node), else one generated once
    and kept in `$CORRAL_HOME/e2b_secret` (0600), so tokens outlive a restart."""
    commands: dict[str, dict[int, Command]] = field(default_factory=dict)
    """sandbox id -> pid -> running command."""
    watchers: dict[str, dict[str, Watcher]] = field(default_factory=dict)
    """sandbox id -> watcher id -> polled directory watch (the sync SDK's watch_dir)."""
    owners: dict[str, tuple[str, bool]] = field(default_factory=dict)
    """sandbox id -> (tenant, paused), as last read from the store, so an in-sandbox call
    reads the record once (in `hub.connect`), not twice. The owner never changes; paused
    changes only through this door's pause/resume, which update it (and a fleet forwards a
    sandbox's calls to the one node that owns it)."""
    policies: dict[str, TenantPolicy] = field(default_factory=dict)
    """sandbox id -> the policy of the key that created or last connected it here: the
    ceilings its in-sandbox streams are held to (`stream_sandbox`)."""
    homes: dict[str, bool] = field(default_factory=dict)
    """sandbox id -> whether its /home/user is the link to the workspace (homes.py)."""
    _next_pid: int = 1000

    def remember(self, rec: SandboxRecord, policy: TenantPolicy | None = None) -> None:
        if len(self.owners) >= MAX_OWNERS:  # ids of reaped sandboxes: start afresh
            self.owners.clear()
        if len(self.policies) >= MAX_OWNERS:
            self.policies.clear()
        self.owners[rec.id] = (rec.tenant, rec.state == "paused")
        if policy is not None:
            self.policies[rec.id] = policy

    def forget(self, sandbox_id: str) -> None:
        self.commands.pop(sandbox_id, None)
        self.owners.pop(sandbox_id, None)
        self.policies.pop(sandbox_id, None)
        self.homes.pop(sandbox_id, None)

    def next_pid(self) -> int:
        self._next_pid += 1
        return self._next_pid

    def token(self, request: Request, rec: SandboxRecord) -> str:
        return self.token_for(request, rec.id, rec.tenant)

    def token_for(self, request: Request, sandbox_id: str, tenant: str) -> str:
        msg = f"e2b-envd\0{sandbox_id}\0{tenant}".encode()
        return hmac.new(self._key(request), msg, hashlib.sha256).hexdigest()

    def _key(self, request: Request) -> bytes:
        if self.secret is None:
            given = os.environ.get(SECRET_ENV)
            if given:
                self.secret = given.encode()
            else:
                self.secret = _stored_secret(api_state(request).ctl.settings.home / SECRET_FILE)
        return self.secret

    def image_for(self, template: str) -> str:
        image = self.templates.get(template)
        if image is None:
            known = ", ".join(sorted(self.templates))
            raise NotFound(f"template '{template}' not found (known: {known})")
        return image


def _stored_secret(path: Path) -> bytes:
    try:
        return bytes.fromhex(path.read_text().strip())
    except (FileNotFoundError, ValueError):
        pass
    value = secrets.token_bytes(32)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(value.hex())
    os.replace(tmp, path)
    return value


DEFAULT_USER = "user"
"""E2B's default user; the only one a Corral sandbox has (uid 1000)."""


class E2BError(Exception):
    """An error answered in E2B's shape `{"code": status, "message": ...}`."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class Unsupported(E2BError):
    def __init__(self, feature: str) -> None:
        super().__init__(
            501, f"{feature} is not supported by Corral's E2B compatibility layer (docs/e2b.md)"
        )


def status_of(exc: BaseException) -> tuple[int, str]:
    """(HTTP status, message) of an error raised by the layers below."""
    if isinstance(exc, E2BError):
        return exc.status, exc.message
    if isinstance(exc, CorralError):
        return exc.http_status, str(exc)
    if isinstance(exc, SandboxError):
        return sandbox_status(exc)[0], str(exc)
    return 500, "internal error"


def api_state(request: Request) -> ApiState:
    state: ApiState = request.app.state.corral
    return state


def principal(request: Request) -> Principal:
    """The caller of a lifecycle call: E2B sends the key in `X-API-KEY`."""
    key = request.headers.get("x-api-key") or key_from_headers(request.headers)
    return api_state(request).config.keys.principal_for(key)


async def sandbox_for(request: Request, e2b: E2BState) -> Sandbox:
    """The sandbox an in-sandbox call names, checked against its access token."""
    return (await _owned_sandbox(request, e2b))[1]


async def stream_sandbox(request: Request, e2b: E2BState) -> tuple[Sandbox, StreamLease]:
    """`sandbox_for`, plus a slot of the owner's concurrent-stream ceiling for the stream the
    call opens (QuotaExceeded, 429, naming the ceiling when none is left). The caller gives
    the lease back when the stream ends (`LeasedStreamingResponse`), or at once if it fails
    to start."""
    tenant, sb = await _owned_sandbox(request, e2b)
    state = api_state(request)
    policy = e2b.policies.get(sb.id) or owner_policy(state.config.keys, tenant)
    return sb, state.quotas.open_stream(tenant, policy)


def owner_policy(keys: ApiKeys, tenant: str) -> TenantPolicy:
    """The policy for a tenant's streams when no key of it was seen for the sandbox: the
    tightest stream ceiling among the tenant's keys (the default policy if none is its own)."""
    single = keys.single_user
    mine = [
        keys.policies.get(digest, keys.default_policy)
        for digest, owner in keys.by_digest.items()
        if owner == tenant
    ]
    if not mine:
        return keys.default_policy.resolved(single)
    return min(mine, key=lambda p: p.max_streams).resolved(single)


async def _owned_sandbox(request: Request, e2b: E2BState) -> tuple[str, Sandbox]:
    sandbox_id = request.headers.get("e2b-sandbox-id", "")
    token = request.headers.get("x-access-token") or request.headers.get(
        "e2b-traffic-access-token", ""
    )
    if not sandbox_id:
        raise E2BError(400, "missing E2b-Sandbox-Id header (set E2B_SANDBOX_URL to Corral)")
    state = api_state(request)
    known = e2b.owners.get(sandbox_id)
    if known is None:
        try:
            rec = await state.hub.store.get_sandbox(sandbox_id)
        except NotFound:
            raise NotFound(f"sandbox {sandbox_id} not found") from None
        e2b.remember(rec)
        known = e2b.owners[sandbox_id]
    tenant, paused = known
    if not token or not hmac.compare_digest(token, e2b.token_for(request, sandbox_id, tenant)):
        raise Unauthorized("invalid or missing X-Access-Token for this sandbox")
    if paused:
        raise E2BError(503, f"sandbox {sandbox_id} is paused (Sandbox.connect resumes it)")
    # envd's RPCs name the user in Basic auth, its file endpoints in `?username=`.
    user = request.query_params.get("username") or basic_user(
        request.headers.get("authorization", "")
    )
    if user not in (None, "", DEFAULT_USER):
        raise E2BError(
            400,
            f"user {user!r}: commands and files run as the sandbox's one user, "
            f"{DEFAULT_USER!r} (a Corral sandbox has no root)",
        )
    try:
        return tenant, await state.hub.connect(tenant, sandbox_id)
    except NotFound:
        e2b.forget(sandbox_id)
        raise NotFound(f"sandbox {sandbox_id} not found") from None


def basic_user(authorization: str) -> str | None:
    """The user name envd's `Authorization: Basic base64(user:)` header carries, if any."""
    scheme, _, value = authorization.partition(" ")
    if scheme.lower() != "basic" or not value:
        return None
    try:
        return base64.b64decode(value, validate=True).decode().partition(":")[0]
    except (ValueError, UnicodeDecodeError):
        return ""


def to_corral(path: str, *, default: str = HOME) -> str:
    """An E2B path as a path in the workspace: `/home/user/...` is `/workspace/...`,
    relative paths are relative to the home."""
    path = path or default
    if not path.startswith("/"):
        path = posixpath.join(HOME, path)
    path = posixpath.normpath(path)
    if path == HOME or path.startswith(HOME + "/"):
        return WORKSPACE + path[len(HOME) :]
    return path


def to_e2b(path: str) -> str:
    """A workspace path as the SDK expects it (under `/home/user`)."""
    if path in (".", "", WORKSPACE):
        return HOME
    if path.startswith(WORKSPACE + "/"):
        return HOME + path[len(WORKSPACE) :]
    if not path.startswith("/"):
        return posixpath.join(HOME, path.removeprefix("./"))
    return path
