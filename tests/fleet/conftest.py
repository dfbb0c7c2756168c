"""Fleet fixtures: a throwaway PostgreSQL database per test and `corral serve` nodes on it.

Skipped when CORRAL_TEST_POSTGRES_URL is unset (CI sets it: `.ci/run` starts PostgreSQL)."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.fleet.nodes import ServeNode, fresh_database


@pytest.fixture
def pg_url() -> Iterator[str]:
    base = os.environ.get("CORRAL_TEST_POSTGRES_URL")
    if not base:
        pytest.skip(
            "CORRAL_TEST_POSTGRES_URL is not set (CI starts PostgreSQL with .ci/postgres.sh)"
        )
    with fresh_database(base) as url:
        yield url


@pytest.fixture
def start_node(pg_url: str, corral_home: Path) -> Iterator[Callable[..., ServeNode]]:
    """Start a node (`start_node("a")`); every node is stopped at the end of the test."""
    nodes: list[ServeNode] = []

    def start(name: str, env: dict[str, str] | None = None) -> ServeNode:
        node = ServeNode(corral_home / f"node-{name}", pg_url, name, env).start()
        nodes.append(node)
        return node

    yield start
    for node in nodes:
        node.stop()


@pytest.fixture
def scripted_agent(tmp_path: Path) -> Callable[..., dict[str, Any]]:
    """An agent spec whose scripted model runs the given exec commands, then answers `done`."""

    def make(name: str, *commands: str) -> dict[str, Any]:
        turns: list[dict[str, Any]] = [
            {"text": f"step {i}", "tool_calls": [{"name": "exec", "arguments": {"command": c}}]}
            for i, c in enumerate(commands)
        ]
        turns.append({"text": "done"})
        path = tmp_path / f"{name}.yaml"
        path.write_text(yaml.safe_dump({"turns": turns}))
        return {
            "name": name,
            "model": f"scripted:{path}",
            "instructions": "Fleet test agent.",
            "tools": ["exec", "files"],
            "limits": {"max_steps": 10, "max_tool_calls": 10, "timeout": 300},
        }

    return make
