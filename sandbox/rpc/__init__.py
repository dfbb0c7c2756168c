"""The host side of the local RPC to the in-sandbox tool server (protocol: docs/rpc.md).

    client = await RpcClient.connect(handle.rpc_path)
    result = await client.exec("echo hi")

`GUEST_DIR` is the folder a backend bind-mounts read-only into a sandbox, and
`guest_command()` the command that starts the guest from it.
"""

from __future__ import annotations

from pathlib import Path

from sandbox.rpc.client import RpcClient

GUEST_DIR: Path = Path(__file__).resolve().parent.parent / "guest"
GUEST_MOUNT = "/opt/corral/corral_guest"
"""Where backends mount `GUEST_DIR`; its parent goes on sys.path."""

_BOOT = (
    "import sys,runpy; sys.path.insert(0,'/opt/corral'); "
    "runpy.run_module('corral_guest', run_name='__main__')"
)


def guest_command(
    socket_path: str = "/run/corral/rpc.sock",
    workspace: str = "/workspace",
    agent: str | None = None,
) -> list[str]:
    """The container command that starts the guest listening on `socket_path`; with `agent`
    ("UID:GID") a guest started as root serves as that user once the socket is bound."""
    # -S: no site (start-up time); the browser adds site-packages when it first starts.
    cmd = ["python3", "-B", "-S", "-c", _BOOT, "--socket", socket_path, "--workspace", workspace]
    return [*cmd, "--agent-uid", agent] if agent else cmd


def guest_tcp_command(address: str, token_file: str, workspace: str = "/workspace") -> list[str]:
    """Same, for the TCP transport (`address` is HOST:PORT; the token file holds the token)."""
    return [
        "python3", "-B", "-S", "-c", _BOOT,
        "--tcp", address, "--token-file", token_file, "--workspace", workspace,
    ]  # fmt: skip


__all__ = ["GUEST_DIR", "GUEST_MOUNT", "RpcClient", "guest_command", "guest_tcp_command"]
