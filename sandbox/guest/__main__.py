"""Entry point: ``python3 -m corral_guest --socket PATH | --tcp HOST:PORT --token-file F``."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sys

from .privs import drop_to_agent
from .server import Guest, log, serve_tcp, serve_unix


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="corral_guest", description="Corral in-sandbox tool server")
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--socket", help="Unix socket path to listen on (created mode 0666)")
    where.add_argument("--tcp", metavar="HOST:PORT", help="TCP address (requires --token-file)")
    p.add_argument("--token-file", help="file holding the token clients must present")
    p.add_argument("--workspace", default="/workspace", help="root of the file tools")
    p.add_argument(
        "--agent-uid",
        metavar="UID:GID",
        help="started as root: serve as this user once the socket is bound (see privs.py)",
    )
    ns = p.parse_args(argv)
    if ns.tcp and not ns.token_file:
        p.error("--tcp requires --token-file")
    return ns


def read_token(path: str) -> str:
    with open(path, encoding="utf-8") as f:
        token = f.read().strip()
    if len(token) < 16:
        raise SystemExit("corral-guest: the token file must hold at least 16 characters")
    return token


async def main(ns: argparse.Namespace) -> None:
    token = read_token(ns.token_file) if ns.token_file else None
    guest = Guest(ns.workspace, token=token)
    if ns.tcp:
        host, _, port = ns.tcp.rpartition(":")
        server = await serve_tcp(guest, host.strip("[]") or "0.0.0.0", int(port))
    else:
        server = await serve_unix(guest, ns.socket)
    if ns.agent_uid:
        uid, _, gid = ns.agent_uid.partition(":")
        drop_to_agent(int(uid), int(gid or uid))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    where = ns.tcp or ns.socket
    log(f"listening on {where}, workspace {guest.ws.root}, pid {os.getpid()}")
    try:
        await stop.wait()
    finally:
        server.close()
        guest.close()
        if ns.socket:
            with contextlib.suppress(OSError):
                os.unlink(ns.socket)


if __name__ == "__main__":
    asyncio.run(main(parse_args(sys.argv[1:])))
