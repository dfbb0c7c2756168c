"""An interactive TTY into a sandbox (`corral sandbox shell`), through the docker SDK.

The RPC has no pseudo-terminal, so the shell uses the engine's exec with a TTY, run as the
sandbox user in the workspace — same confinement as every other process in the sandbox.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import select
import shutil
import socket
import sys
import termios
import tty
from typing import cast

from sandbox.backends.docker import DockerBackend, agent_user
from sandbox.backends.docker_errors import map_docker_error


def interactive_shell(backend: DockerBackend, sandbox_id: str) -> int:
    handle = asyncio.run(backend.get(sandbox_id))
    api = backend.client.api
    try:
        exec_id = api.exec_create(
            handle.container_id,
            ["/bin/bash", "-l"],
            stdin=True,
            tty=True,
            user=agent_user(),
            workdir=handle.spec.workdir,
            environment={"TERM": os.environ.get("TERM", "xterm"), "HOME": handle.spec.workdir},
        )["Id"]
        sock = api.exec_start(exec_id, tty=True, socket=True)
    except Exception as exc:
        raise map_docker_error(exc, sandbox_id=sandbox_id) from exc
    raw = cast(socket.socket, getattr(sock, "_sock", sock))
    cols, rows = shutil.get_terminal_size()
    with contextlib.suppress(Exception):  # resizing is cosmetic
        api.exec_resize(exec_id, height=rows, width=cols)
    stdin_fd = sys.stdin.fileno()
    is_tty = os.isatty(stdin_fd)
    saved = termios.tcgetattr(stdin_fd) if is_tty else None
    try:
        if is_tty:
            tty.setraw(stdin_fd)
        _pump(raw, stdin_fd)
    finally:
        if saved is not None:
            termios.tcsetattr(stdin_fd, termios.TCSADRAIN, saved)
        raw.close()
    code = api.exec_inspect(exec_id).get("ExitCode")
    return int(code) if code is not None else 0


def _pump(raw: socket.socket, stdin_fd: int) -> None:
    stdin_open = True
    while True:
        fds: list[socket.socket | int] = [raw, stdin_fd] if stdin_open else [raw]
        readable, _, _ = select.select(fds, [], [])
        if raw in readable:
            data = raw.recv(65536)
            if not data:
                return
            os.write(sys.stdout.fileno(), data)
        if stdin_open and stdin_fd in readable:
            data = os.read(stdin_fd, 65536)
            if not data:
                stdin_open = False
                raw.shutdown(socket.SHUT_WR)
            else:
                raw.sendall(data)
