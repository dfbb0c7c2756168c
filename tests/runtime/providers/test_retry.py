from __future__ import annotations

import random

import pytest

from runtime.errors import ProviderAuthError, ProviderRateLimited, ProviderUnavailable
from runtime.providers.retry import (
    RetryPolicy,
    call_with_retries,
    parse_retry_after,
    status_failure,
)
from tests.runtime.providers.conftest import RecordingSleep


class Boom(Exception):
    def __init__(self, status: int, retry_after: float | None = None) -> None:
        self.status = status
        self.retry_after = retry_after


def classify(exc: Exception):  # type: ignore[no-untyped-def]
    if isinstance(exc, Boom):
        return status_failure("fake", exc.status, "boom", exc.retry_after)
    return None


def test_parse_retry_after() -> None:
    assert parse_retry_after({"Retry-After": "12"}) == 12.0
    assert parse_retry_after({"retry-after-ms": "1500", "retry-after": "9"}) == 1.5
    assert (
        parse_retry_after({"retry-after": "Wed, 21 Oct 2015 07:28:20 GMT"}, now=1445412480.0)
        == 20.0
    )
    assert parse_retry_after({"retry-after": "soon"}) is None
    assert parse_retry_after({"retry-after": "-3"}) is None
    assert parse_retry_after({}) is None
    assert parse_retry_after(None) is None


async def test_backoff_grows_with_jitter_and_caps_retry_after() -> None:
    sleep = RecordingSleep()
    policy = RetryPolicy(
        max_attempts=5, base_delay=1.0, max_delay=30.0, sleep=sleep, rng=random.Random(1)
    )
    errors = [Boom(503), Boom(503), Boom(429, retry_after=3600.0), Boom(500)]

    async def fn() -> str:
        if errors:
            raise errors.pop(0)
        return "ok"

    assert await call_with_retries(fn, policy=policy, classify=classify) == "ok"
    first, second, capped, fourth = sleep.delays
    assert 0.5 <= first <= 1.0
    assert 1.0 <= second <= 2.0
    assert capped == 60.0  # a server asking for an hour gets the cap
    assert 4.0 <= fourth <= 8.0


async def test_exhaustion_raises_mapped_error_with_attempt_count() -> None:
    sleep = RecordingSleep()
    calls = 0

    async def fn() -> None:
        nonlocal calls
        calls += 1
        raise Boom(502)

    with pytest.raises(ProviderUnavailable, match=r"fake: HTTP 502: boom \(after 4 attempts\)"):
        await call_with_retries(
            fn, policy=RetryPolicy(max_attempts=4, sleep=sleep), classify=classify
        )
    assert calls == 4 and len(sleep.delays) == 3


@pytest.mark.parametrize(("status", "error"), [(401, ProviderAuthError), (403, ProviderAuthError)])
async def test_auth_is_not_retried(status: int, error: type[Exception]) -> None:
    sleep = RecordingSleep()

    async def fn() -> None:
        raise Boom(status)

    with pytest.raises(error):
        await call_with_retries(fn, policy=RetryPolicy(sleep=sleep), classify=classify)
    assert sleep.delays == []


async def test_committed_output_is_not_retried() -> None:
    sleep = RecordingSleep()

    async def fn() -> None:
        raise Boom(429)

    with pytest.raises(ProviderRateLimited):
        await call_with_retries(
            fn, policy=RetryPolicy(sleep=sleep), classify=classify, committed=lambda: True
        )
    assert sleep.delays == []


async def test_unknown_exceptions_propagate_unchanged() -> None:
    async def fn() -> None:
        raise KeyError("bug")

    with pytest.raises(KeyError):
        await call_with_retries(fn, policy=RetryPolicy(sleep=RecordingSleep()), classify=classify)
