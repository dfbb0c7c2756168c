"""Webhooks on completion, signed per Standard Webhooks and delivered at least once.

When an interaction with `webhook_config.uris` ends, one delivery record per URI is written to
the store (its id, `msg_...`, is the stable `webhook-id` a receiver deduplicates on). A worker
POSTs pending deliveries; a non-2xx answer or a network error schedules the next attempt with
exponential backoff (plus jitter) until `max_attempts`, then the delivery is marked `failed`.
Because deliveries live in the store, a restarted controller carries on where it stopped.

Signature: `webhook-signature: v1,<base64 HMAC-SHA256(key, "<id>.<timestamp>.<body>")>` where
`key` is the base64-decoded part of the tenant's `whsec_...` secret.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import json
import os
import random
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import structlog

from runtime.errors import ConfigError
from runtime.ids import new_id
from runtime.store.base import InteractionRecord, Store, WebhookDeliveryRecord, utcnow

log = structlog.get_logger("corral.webhooks")
SECRET_PREFIX = "whsec_"
TOLERANCE_SECONDS = 300


# Signing --------------------------------------------------------------------------------------
def _key(secret: str) -> bytes:
    if not secret.startswith(SECRET_PREFIX):
        raise ConfigError("a webhook secret starts with whsec_")
    try:
        return base64.b64decode(secret[len(SECRET_PREFIX) :], validate=True)
    except ValueError as exc:
        raise ConfigError("a webhook secret is whsec_ followed by base64") from exc


def new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    signed = f"{msg_id}.{timestamp}.".encode() + body
    mac = hmac.new(_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode()


def signed_headers(
    secret: str, msg_id: str, body: bytes, *, now: int | None = None
) -> dict[str, str]:
    ts = int(time.time()) if now is None else now
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(ts),
        "webhook-signature": sign(secret, msg_id, ts, body),
        "content-type": "application/json",
    }


def verify(
    secret: str,
    headers: Mapping[str, str],
    body: bytes,
    *,
    now: int | None = None,
    tolerance: int = TOLERANCE_SECONDS,
) -> bool:
    """True when one of the `v1` signatures matches and the timestamp is fresh (receivers
    can use this; the tests do)."""
    msg_id = headers.get("webhook-id", "")
    try:
        ts = int(headers.get("webhook-timestamp", ""))
    except ValueError:
        return False
    current = int(time.time()) if now is None else now
    if abs(current - ts) > tolerance:
        return False
    expected = sign(secret, msg_id, ts, body)
    return any(
        hmac.compare_digest(expected, candidate)
        for candidate in headers.get("webhook-signature", "").split()
    )


# Secrets per tenant ---------------------------------------------------------------------------
class WebhookSecrets:
    """`CORRAL_WEBHOOK_SECRETS="tenant:whsec_...,..."`, else `CORRAL_WEBHOOK_SECRET` for every
    tenant, else one generated per tenant and kept in `$CORRAL_HOME/webhook_secrets.json`."""

    def __init__(self, home: Path, env: Mapping[str, str] | None = None) -> None:
        environ = os.environ if env is None else env
        self.path = home / "webhook_secrets.json"
        self.shared = environ.get("CORRAL_WEBHOOK_SECRET") or None
        self.fixed: dict[str, str] = {}
        for item in (environ.get("CORRAL_WEBHOOK_SECRETS") or "").split(","):
            tenant, sep, secret = item.strip().partition(":")
            if sep:
                self.fixed[tenant] = secret
        for given in (self.shared, *self.fixed.values()):
            if given is not None:
                _key(given)  # fail at startup, not at the first delivery

    def for_tenant(self, tenant: str) -> str:
        if tenant in self.fixed:
            return self.fixed[tenant]
        if self.shared:
            return self.shared
        stored = self._load()
        if tenant not in stored:
            stored[tenant] = new_secret()
            self._save(stored)
        return stored[tenant]

    def _load(self) -> dict[str, str]:
        try:
            data = json.loads(self.path.read_text())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            raise ConfigError(f"cannot read {self.path}: {exc}") from exc
        return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}

    def _save(self, data: dict[str, str]) -> None:
        tmp = self.path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(data, f)
        os.replace(tmp, self.path)


# Enqueueing -----------------------------------------------------------------------------------
def completion_payload(
    view: dict[str, Any], user_metadata: Mapping[str, Any] | None
) -> dict[str, Any]:
    """The body sent for a finished interaction (its view without the step timeline)."""
    summary = {k: v for k, v in view.items() if k != "steps"}
    return {
        "type": "interaction.completed",
        "timestamp": summary.get("updated"),
        "data": {"interaction": summary, "user_metadata": dict(user_metadata or {})},
    }


def valid_uri(uri: str) -> bool:
    parsed = httpx.URL(uri)
    return parsed.scheme in ("http", "https") and bool(parsed.host)


async def enqueue(
    store: Store,
    rec: InteractionRecord,
    uris: list[str],
    payload: dict[str, Any],
) -> list[WebhookDeliveryRecord]:
    out = []
    for uri in uris:
        delivery = WebhookDeliveryRecord(
            id=new_id("msg"),
            tenant=rec.tenant,
            interaction_id=rec.id,
            url=uri,
            payload=payload,
        )
        out.append(await store.add_webhook_delivery(delivery))
    return out


# Delivering -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 8
    base_delay: float = 2.0
    max_delay: float = 600.0

    def delay(self, attempts: int) -> float:
        """Seconds before attempt `attempts + 1`: base * 2^(attempts-1), jittered, capped."""
        raw = min(self.max_delay, self.base_delay * 2 ** max(0, attempts - 1))
        return float(raw * random.uniform(0.8, 1.2))


class WebhookWorker:
    def __init__(
        self,
        store: Store,
        secrets: WebhookSecrets,
        *,
        policy: RetryPolicy = RetryPolicy(),
        client: httpx.AsyncClient | None = None,
        poll: float = 1.0,
        timeout: float = 10.0,
        on_attempt: Callable[[str], None] | None = None,
    ) -> None:
        self.store = store
        self.secrets = secrets
        self.policy = policy
        self.client = client or httpx.AsyncClient(timeout=timeout, follow_redirects=False)
        self.poll = poll
        self.on_attempt = on_attempt
        """Told `delivered`, `retry` or `failed` after each attempt (metrics)."""
        self.wake = asyncio.Event()
        self.delivered = 0
        self.failed_attempts = 0
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="webhook-worker")

    def kick(self) -> None:
        """New deliveries are pending: look now rather than at the next poll."""
        self.wake.set()

    async def _run(self) -> None:
        while True:
            try:
                await self.deliver_due()
            except Exception:  # the worker must outlive a store hiccup
                log.exception("webhooks.worker_error")
            self.wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wake.wait(), self.poll)

    async def deliver_due(self) -> int:
        """Attempt every delivery that is due; returns how many were delivered."""
        done = 0
        for d in await self.store.list_pending_webhook_deliveries():
            done += await self.attempt(d)
        return done

    async def attempt(self, d: WebhookDeliveryRecord) -> int:
        body = json.dumps(d.payload, separators=(",", ":")).encode()
        headers = signed_headers(self.secrets.for_tenant(d.tenant), d.id, body)
        attempts = d.attempts + 1
        error: str | None = None
        try:
            resp = await self.client.post(d.url, content=body, headers=headers)
            if 200 <= resp.status_code < 300:
                await self.store.update_webhook_delivery(
                    d.id, status="delivered", attempts=attempts, last_error=None
                )
                self.delivered += 1
                self._note("delivered")
                return 1
            error = f"HTTP {resp.status_code}"
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}"
        self.failed_attempts += 1
        self._note("failed" if attempts >= self.policy.max_attempts else "retry")
        if attempts >= self.policy.max_attempts:
            log.warning("webhooks.gave_up", delivery=d.id, url=d.url, error=error)
            await self.store.update_webhook_delivery(
                d.id, status="failed", attempts=attempts, last_error=error
            )
            return 0
        when = utcnow() + timedelta(seconds=self.policy.delay(attempts))
        await self.store.update_webhook_delivery(
            d.id, attempts=attempts, next_attempt_at=when, last_error=error
        )
        return 0

    def _note(self, outcome: str) -> None:
        if self.on_attempt is not None:
            self.on_attempt(outcome)

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.client.aclose()
