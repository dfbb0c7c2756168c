"""Shared fixtures.

Every test gets its own CORRAL_HOME under one session folder. Every container a Corral backend
creates carries the label `corral.home=<home>`, so at session end everything created under the
session folder is removed by label: tests cannot leak containers even when they fail.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

PROVIDER_ENV = (
    "OPENAI_API_KEY",
    "OPENAI_BASE_URL",
    "ANTHROPIC_API_KEY",
    "ANTHROPIC_BASE_URL",
    "GEMINI_API_KEY",
    "GOOGLE_API_KEY",
    "GOOGLE_GEMINI_BASE_URL",
    "CORRAL_MODEL",
    "CORRAL_PROVIDER_IDLE_TIMEOUT",
)


@pytest.fixture(scope="session", autouse=True)
def quiet_logs() -> None:
    """Warnings and errors only: in-process servers would otherwise print an access event per
    request into the test output."""
    from runtime.logs import configure_logging

    configure_logging("console", "warning")


@pytest.fixture(scope="session")
def session_root() -> Iterator[Path]:
    root = Path(tempfile.mkdtemp(prefix="corral-test-"))
    yield root
    _remove_containers_under(root)
    shutil.rmtree(root, ignore_errors=True)


def _remove_containers_under(root: Path) -> None:
    """What the session's sandboxes left on the engine: containers, then their networks (a
    test that ends with a sandbox still kept would otherwise leave its allowlist network,
    and the engine has only ~30 address pools for them). Other sessions' tests may remove the
    same objects at the same moment: gone already is fine."""
    try:
        import docker
        import docker.errors

        client = docker.from_env()
    except Exception:
        return
    mine = {"label": "corral.managed=true"}
    try:
        for c in client.containers.list(all=True, filters=mine):
            if c.labels.get("corral.home", "").startswith(str(root)):
                with contextlib.suppress(docker.errors.NotFound, docker.errors.APIError):
                    c.remove(force=True, v=True)
        for n in client.networks.list(filters=mine):
            if (n.attrs.get("Labels") or {}).get("corral.home", "").startswith(str(root)):
                with contextlib.suppress(docker.errors.NotFound, docker.errors.APIError):
                    n.remove()
    finally:
        client.close()


@pytest.fixture(autouse=True)
def corral_home(
    session_root: Path, tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> Path:
    home = Path(tempfile.mkdtemp(prefix="home-", dir=session_root))
    monkeypatch.setenv("CORRAL_HOME", str(home))
    for name in PROVIDER_ENV:
        monkeypatch.delenv(name, raising=False)
    return home


def docker_available() -> bool:
    try:
        import docker

        c = docker.from_env()
        c.ping()
        c.close()
        return True
    except Exception:
        return False


@pytest.fixture(scope="session")
def docker_client() -> Iterator[object]:
    import docker

    client = docker.from_env()
    yield client
    client.close()


if os.environ.get("CI") and not docker_available():  # pragma: no cover - CI guard
    raise SystemExit("corral tests: Docker Engine is not reachable; CI needs it")
