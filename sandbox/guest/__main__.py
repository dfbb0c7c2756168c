"""Entry point: ``python3 -m corral_guest --socket PATH [--agent-uid UID:GID]`` or
``--tcp HOST:PORT --token-file F``; ``--workspace DIR`` (default /workspace);
``--hello-timeout SECONDS`` (default 10: how long a connection may stay silent).

Start-up is on the critical path of every cold sandbox, and asyncio with the tools behind it
takes most of it (~50 ms of imports). So the socket is bound, and privileges dropped, with
nothing but `os`, `sys` and `socket` loaded: the controller's connect succeeds at once. On the
Unix transport the synchronous prelude (prelude.py: json, select and subprocess, ~6 ms more)
then serves the handshake and the first exec, and asyncio is imported only when it hands
over. `ssl`, which the guest never uses, is kept out of asyncio's import; argparse is not used
at all.
"""

from __future__ import annotations

import os
import socket
import stat
import sys

USAGE = (
    "usage: corral_guest (--socket PATH [--agent-uid UID:GID] | --tcp HOST:PORT --token-file F)"
    " [--workspace DIR] [--hello-timeout SECONDS]"
)
OPTIONS = ("--socket", "--tcp", "--token-file", "--workspace", "--agent-uid", "--hello-timeout")


def fail(message: str) -> None:
    raise SystemExit(f"corral-guest: {message}\n{USAGE}")


def parse_args(argv: list[str]) -> dict[str, str]:
    """`--name value` or `--name=value` for each of OPTIONS; anything else is an error."""
    opts = {"--workspace": "/workspace"}
    rest = iter(argv)
    for arg in rest:
        if arg in ("-h", "--help"):
            print(USAGE)
            raise SystemExit(0)
        name, eq, value = arg.partition("=")
        if name not in OPTIONS:
            fail(f"unknown argument {arg!r}")
        if not eq:
            nxt = next(rest, None)
            if nxt is None:
                fail(f"{name} needs a value")
            value = str(nxt)
        opts[name] = value
    if ("--socket" in opts) == ("--tcp" in opts):
        fail("give exactly one of --socket and --tcp")
    if "--tcp" in opts and "--token-file" not in opts:
        fail("--tcp requires --token-file")
    if "--agent-uid" in opts:
        uid, _, gid = opts["--agent-uid"].partition(":")
        if not uid.isdigit() or not (gid or uid).isdigit():
            fail("--agent-uid takes UID:GID (numbers)")
    try:
        if float(opts.get("--hello-timeout", "10")) <= 0:
            raise ValueError
    except ValueError:
        fail("--hello-timeout takes a positive number of seconds")
    return opts


def read_token(path: str) -> str:
    with open(path, encoding="utf-8") as f:
        token = f.read().strip()
    if len(token) < 16:
        raise SystemExit("corral-guest: the token file must hold at least 16 characters")
    return token


def bind_unix(path: str) -> socket.socket:
    """Listen on `path`, mode 0666 (the folder around it is what protects it)."""
    try:
        if stat.S_ISSOCK(os.lstat(path).st_mode):
            os.unlink(path)  # left over from a previous guest in this sandbox
    except FileNotFoundError:
        pass
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(path)
    os.chmod(path, 0o666)
    sock.listen(128)
    return sock


def bind_tcp(address: str) -> socket.socket:
    host, _, port = address.rpartition(":")
    host = host.strip("[]") or "0.0.0.0"
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, int(port)))
    sock.listen(128)
    return sock


def load_asyncio() -> None:
    """Import asyncio without ssl (asyncio treats a missing ssl as 'no TLS'); later imports of
    ssl, by Playwright say, work as usual."""
    had = "ssl" in sys.modules
    if not had:
        sys.modules["ssl"] = None  # type: ignore[assignment]
    try:
        import asyncio  # noqa: F401
    finally:
        if not had:
            del sys.modules["ssl"]


def main(argv: list[str]) -> None:
    opts = parse_args(argv)
    token = read_token(opts["--token-file"]) if "--token-file" in opts else None
    if "--socket" in opts:
        listener, where = bind_unix(opts["--socket"]), opts["--socket"]
    else:
        listener, where = bind_tcp(opts["--tcp"]), opts["--tcp"]
    if "--agent-uid" in opts:
        from .privs import drop_to_agent

        uid, _, gid = opts["--agent-uid"].partition(":")
        drop_to_agent(int(uid), int(gid or uid))
    hello_timeout = float(opts.get("--hello-timeout", "10"))
    handover = None
    if "--socket" in opts and token is None:
        from .prelude import Prelude

        handover = Prelude(listener, opts["--workspace"], hello_timeout=hello_timeout).run()
        if handover.stop:
            import contextlib

            with contextlib.suppress(OSError):
                os.unlink(where)
            return
    load_asyncio()
    from .server import run

    run(
        listener,
        where,
        opts["--workspace"],
        token,
        unix="--socket" in opts,
        handover=handover,
        hello_timeout=hello_timeout,
    )


if __name__ == "__main__":
    main(sys.argv[1:])
