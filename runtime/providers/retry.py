"""One retry loop for every provider: exponential backoff with jitter, Retry-After honoured.

SDK-internal retries are switched off in each provider so this is the only place that decides;
each provider passes a `classify` function that maps its SDK's exceptions to a `Failure`.

Faults on the wire look the same under every SDK and are mapped here (`fault_failure`):
- a timeout (connect, or a stream silent for the idle timeout) -> `ProviderTimeout`, retried;
- a reply cut short (connection closed mid-body, or a stream without its final event) or an
  empty 200 -> `ProviderProtocolError`, retried: both are transient;
- bytes that are not UTF-8, not JSON, or JSON of the wrong shape -> `ProviderProtocolError`,
  not retried: the next reply from that endpoint is no better.
Providers raise `ReplyFault` for what the SDKs accept silently (a stream that just stops).
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import math
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import TypeVar

import httpx
import httpx2

from runtime.errors import (
    ProviderAuthError,
    ProviderError,
    ProviderProtocolError,
    ProviderRateLimited,
    ProviderTimeout,
    ProviderUnavailable,
)
from runtime.providers.base import Timeouts

T = TypeVar("T")
Sleep = Callable[[float], Awaitable[None]]

RETRY_AFTER_CAP = 60.0
"""A server asking for a longer wait than this gets this; the caller's budget matters more."""


@dataclass(frozen=True)
class Failure:
    """What a provider's SDK exception means for the retry loop."""

    error: ProviderError
    """The project error to raise when we give up (or at once when not retryable)."""
    retryable: bool
    retry_after: float | None = None
    """Seconds the server asked us to wait, when it said."""


@dataclass
class RetryPolicy:
    max_attempts: int = 5
    """Attempts in total, the first included (max_retries + 1)."""
    base_delay: float = 1.0
    max_delay: float = 30.0
    retry_after_cap: float = RETRY_AFTER_CAP
    sleep: Sleep = asyncio.sleep
    """Injectable so tests do not wait."""
    rng: random.Random = field(default_factory=random.Random)

    @classmethod
    def from_max_retries(cls, max_retries: int, *, sleep: Sleep | None = None) -> RetryPolicy:
        policy = cls(max_attempts=max(1, max_retries + 1))
        if sleep is not None:
            policy.sleep = sleep
        return policy

    def backoff(self, attempt: int) -> float:
        """Delay before attempt `attempt + 1` (attempt counts from 1): half fixed, half jitter,
        so concurrent runs hitting the same limit spread out."""
        ceiling = min(self.max_delay, self.base_delay * 2.0 ** (attempt - 1))
        return ceiling / 2 + self.rng.uniform(0, ceiling / 2)

    def delay_for(self, failure: Failure, attempt: int) -> float:
        if failure.retry_after is not None:
            return min(max(failure.retry_after, 0.0), self.retry_after_cap)
        return self.backoff(attempt)


async def call_with_retries(
    fn: Callable[[], Awaitable[T]],
    *,
    policy: RetryPolicy,
    classify: Callable[[Exception], Failure | None],
    committed: Callable[[], bool] = lambda: False,
) -> T:
    """Run `fn`, retrying retryable failures; raise the mapped `ProviderError` at the end.

    Exceptions `classify` does not recognise (returns None) propagate unchanged: they are
    either already project errors or programming errors that retrying will not fix.
    Once `committed()` is true (streamed text already reached the caller) a failure is final:
    a retry would repeat that text.
    """
    attempt = 1
    while True:
        try:
            return await fn()
        except Exception as exc:
            failure = classify(exc)
            if failure is None:
                raise
            if not failure.retryable or committed() or attempt >= policy.max_attempts:
                if failure.retryable and attempt > 1:
                    failure.error.message = f"{failure.error.message} (after {attempt} attempts)"
                    failure.error.args = (failure.error.message,)
                raise failure.error from exc
            await policy.sleep(policy.delay_for(failure, attempt))
            attempt += 1


def parse_retry_after(
    headers: Mapping[str, str] | None, *, now: float | None = None
) -> float | None:
    """Seconds to wait from `retry-after-ms`, or `retry-after` (seconds or an HTTP date)."""
    if headers is None:
        return None
    lowered = {k.lower(): v for k, v in headers.items()}
    ms = lowered.get("retry-after-ms")
    if ms is not None:
        try:
            value = float(ms) / 1000.0
            if math.isfinite(value) and value >= 0:
                return value
        except ValueError:
            pass
    raw = lowered.get("retry-after")
    if raw is None:
        return None
    raw = raw.strip()
    try:
        value = float(raw)
        return value if math.isfinite(value) and value >= 0 else None
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(raw)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        return None
    current = time.time() if now is None else now
    return max(0.0, when.timestamp() - current)


def status_failure(
    provider: str, status: int, detail: str, retry_after: float | None = None
) -> Failure:
    """The common status-code table: auth, rate limit, server-side, everything else."""
    message = one_line(f"{provider}: HTTP {status}: {detail}")
    if status in (401, 403):
        return Failure(ProviderAuthError(message), retryable=False)
    if status == 429:
        return Failure(ProviderRateLimited(message), retryable=True, retry_after=retry_after)
    if status >= 500 or status in (408, 409):
        # 408/409 are the statuses OpenAI's and Anthropic's SDKs also treat as transient.
        return Failure(ProviderUnavailable(message), retryable=True, retry_after=retry_after)
    return Failure(ProviderError(message), retryable=False)


def connection_failure(provider: str, exc: BaseException) -> Failure:
    detail = str(exc) or type(exc).__name__
    return Failure(
        ProviderUnavailable(one_line(f"{provider}: connection failed: {detail}")), retryable=True
    )


def one_line(text: str, limit: int = 500) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "..."


class ReplyFault(Exception):
    """A reply the SDK took without complaint that breaks the protocol anyway."""

    def __init__(self, message: str, *, retryable: bool) -> None:
        super().__init__(message)
        self.retryable = retryable


def empty_reply() -> ReplyFault:
    return ReplyFault("empty response", retryable=True)


def cut_short() -> ReplyFault:
    return ReplyFault("the stream ended before its final event", retryable=True)


def malformed(detail: str) -> ReplyFault:
    return ReplyFault(f"malformed response: {detail}", retryable=False)


_CONNECT_TIMEOUTS = (httpx.ConnectTimeout, httpx2.ConnectTimeout)
_READ_TIMEOUTS = (httpx.ReadTimeout, httpx2.ReadTimeout)
_TIMEOUTS = (httpx.TimeoutException, httpx2.TimeoutException)
_CUT = (httpx.RemoteProtocolError, httpx2.RemoteProtocolError)
_TRANSPORT = (httpx.TransportError, httpx2.TransportError)


def fault_failure(
    provider: str, exc: BaseException, timeouts: Timeouts | None, *, streaming: bool
) -> Failure | None:
    """The failure for a fault any SDK may raise (or wrap, so the `__cause__` chain is read);
    None when `exc` is none of them. Messages are one line and never quote the reply."""
    t = timeouts or Timeouts()
    read_timeout = t.idle if streaming else t.response
    connect_timeout = t.connect
    seen: BaseException | None = exc
    for _ in range(5):
        if seen is None:
            break
        found = _fault(provider, seen, read_timeout, connect_timeout, streaming)
        if found is not None:
            return found
        seen = seen.__cause__
    return None


def _fault(
    provider: str,
    exc: BaseException,
    read_timeout: float | None,
    connect_timeout: float | None,
    streaming: bool,
) -> Failure | None:
    def protocol(message: str, retryable: bool) -> Failure:
        return Failure(ProviderProtocolError(f"{provider}: {message}"), retryable=retryable)

    if isinstance(exc, ReplyFault):
        return protocol(str(exc), exc.retryable)
    if isinstance(exc, _CONNECT_TIMEOUTS):
        message = f"could not connect within {_seconds(connect_timeout)}"
        return Failure(ProviderTimeout(f"{provider}: {message}"), retryable=True)
    if isinstance(exc, _READ_TIMEOUTS):
        seconds = _seconds(read_timeout)
        message = (
            f"the stream stalled: no data for {seconds} (idle timeout)"
            if streaming
            else f"no response within {seconds}"
        )
        return Failure(ProviderTimeout(f"{provider}: {message}"), retryable=True)
    if isinstance(exc, _TIMEOUTS):
        return Failure(ProviderTimeout(f"{provider}: timed out"), retryable=True)
    if isinstance(exc, _CUT):
        return protocol("the response ended before it was complete (connection closed)", True)
    if isinstance(exc, _TRANSPORT):
        return connection_failure(provider, exc)
    if isinstance(exc, UnicodeDecodeError):
        return protocol("malformed response: not UTF-8 text", False)
    if isinstance(exc, json.JSONDecodeError):
        if not exc.doc.strip():
            return protocol("empty response", True)
        return protocol("malformed response: not JSON", False)
    return None


def _seconds(value: float | None) -> str:
    return "its timeout" if value is None else f"{value:g}s"
