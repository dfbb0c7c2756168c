"""A node's identity and settings (CORRAL_NODE_ID, the node_id file, TTL, capacity)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from runtime.errors import ConfigError
from runtime.fleet.node import NodeConfig


def test_the_id_is_kept_in_the_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CORRAL_NODE_ID", raising=False)
    first = NodeConfig.from_env(tmp_path, host="0.0.0.0", port=8123)
    again = NodeConfig.from_env(tmp_path, port=1)
    assert first.id == again.id and first.id.startswith("node_")
    assert (tmp_path / "node_id").stat().st_mode & 0o777 == 0o600
    assert first.url.endswith(":8123") and "0.0.0.0" not in first.url
    assert (first.lease_ttl, first.heartbeat_every, first.capacity) == (15.0, 5.0, 20)


def test_a_cli_process_is_a_node_of_its_own(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CORRAL_NODE_ID", raising=False)
    served = NodeConfig.from_env(tmp_path)
    cli = NodeConfig.from_env(tmp_path, persistent=False)
    assert cli.id != served.id and cli.url == ""


def test_settings_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CORRAL_NODE_ID", "edge-1")
    monkeypatch.setenv("CORRAL_NODE_URL", "http://10.0.0.5:8000/")
    monkeypatch.setenv("CORRAL_LEASE_TTL", "6")
    monkeypatch.setenv("CORRAL_NODE_CAPACITY", "3")
    node = NodeConfig.from_env(tmp_path)
    assert node == NodeConfig("edge-1", "http://10.0.0.5:8000", 6.0, 3)
    assert not (tmp_path / "node_id").exists()


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("CORRAL_LEASE_TTL", "soon", "number of seconds"),
        ("CORRAL_LEASE_TTL", "0.5", "at least 1"),
        ("CORRAL_NODE_CAPACITY", "0", "at least 1"),
        ("CORRAL_NODE_CAPACITY", "many", "whole number"),
        ("CORRAL_NODE_ID", "a b", "printable"),
        ("CORRAL_NODE_ID", "x" * 65, "at most 64"),
    ],
)
def test_bad_settings_are_refused_naming_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, value: str, message: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError, match=message):
        NodeConfig.from_env(tmp_path)


def test_a_node_id_file_that_is_a_link_is_not_followed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CORRAL_NODE_ID", raising=False)
    secret = tmp_path / "elsewhere"
    secret.write_text("node_stolen\n")
    home = tmp_path / "home"
    home.mkdir()
    os.symlink(secret, home / "node_id")
    with pytest.raises(ConfigError, match="node_id"):
        NodeConfig.from_env(home)
    fifo = tmp_path / "fifo-home"
    fifo.mkdir()
    os.mkfifo(fifo / "node_id")  # opened without blocking, refused: not a regular file
    with pytest.raises(ConfigError, match="not a regular file"):
        NodeConfig.from_env(fifo)
