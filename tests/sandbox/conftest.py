from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from sandbox.backends.docker import DockerBackend


@pytest.fixture
async def backend(corral_home: Path) -> AsyncIterator[DockerBackend]:
    be = DockerBackend(corral_home)
    try:
        yield be
    finally:
        for h in await be.list():
            await be.destroy(h.id)
        await be.aclose()
