"""`corral serve` — the HTTP API (Interactions-compatible, plus agents, artifacts, sandboxes)."""

from __future__ import annotations

import ipaddress
import json
import socket
import sys
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Annotated, Any

import typer

from runtime.cli.common import EXIT_USAGE, fail
from runtime.errors import ConfigError
from runtime.logs import configure_logging, readable_logs
from runtime.settings import Settings

LOG_LEVELS = ("critical", "error", "warning", "info", "debug")


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def serve(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.", min=0, max=65535)] = 8000,
    log_level: Annotated[
        str | None,
        typer.Option(help="Log level (default CORRAL_LOG_LEVEL, else warning); info logs access."),
    ] = None,
) -> None:
    """Serve the HTTP API. Without API keys (CORRAL_API_KEYS or api_keys.json) it is a
    single-user server and listens on loopback only. At start it prints its address, its
    tenancy (single-user or N keys) and its data directory, one line each on stderr (one
    `serve.listening` JSON event when logs are JSON). Logs (uvicorn's included) are one
    structlog stream on stderr, JSON with CORRAL_LOG_FORMAT=json; `info` adds one
    `http.access` event per request."""
    import uvicorn

    from runtime.api.app import create_app
    from runtime.api.config import ApiConfig
    from runtime.api.server import uvicorn_config
    from runtime.fleet.node import NodeConfig

    settings = Settings.from_env()
    level = (log_level or settings.log_level).lower()
    if level not in LOG_LEVELS:
        fail(f"log level must be one of {', '.join(LOG_LEVELS)}, not {level!r}", EXIT_USAGE)
    configure_logging(settings.log_format, level)
    sockets: list[socket.socket] | None = None
    if port == 0:
        # The node registers its URL before uvicorn would bind: bind first, so the URL (and
        # the announced address) carries the port the system chose, never 0.
        sockets = [bind_socket(host)]
        port = sockets[0].getsockname()[1]
    try:
        config = ApiConfig.from_env(settings)
        # This server as a fleet node (CORRAL_NODE_ID, CORRAL_NODE_URL, CORRAL_LEASE_TTL, ...).
        node = NodeConfig.from_env(settings.home, host=host, port=port)
    except ConfigError as exc:
        fail(str(exc), EXIT_USAGE)
    if config.keys.single_user and not is_loopback(host):
        fail(
            f"refusing to listen on {host} without API keys: set CORRAL_API_KEYS=key:tenant "
            "(or $CORRAL_HOME/api_keys.json), or use --host 127.0.0.1",
            EXIT_USAGE,
        )
    app = create_app(settings, config=config, node=node)
    tenancy = tenancy_line(config.keys.by_digest.values())
    server_config = uvicorn_config(
        app,
        host=host,
        port=port,
        limits=config.server,
        log_level=level,
        timeout_graceful_shutdown=10,
    )

    class AnnouncingServer(uvicorn.Server):
        """Says where it listens (the bound port, also for --port 0), for whom, and where its
        state lives, once its socket is bound: one line each on stderr."""

        async def startup(self, sockets: list[socket.socket] | None = None) -> None:
            await super().startup(sockets)
            if not self.started:
                return
            urls = [url_of(sock.getsockname()) for srv in self.servers for sock in srv.sockets]
            if not readable_logs(settings.log_format):  # one JSON stream: say it as an event
                event = {
                    "event": "serve.listening",
                    "urls": urls,
                    "tenancy": tenancy,
                    "data_directory": str(settings.home),
                    "level": "info",
                    "timestamp": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
                }
                print(json.dumps(event), file=sys.stderr, flush=True)
                return
            for url in urls:
                print(f"corral: listening on {url}", file=sys.stderr)
            print(f"corral: tenancy: {tenancy}", file=sys.stderr)
            print(f"corral: data directory: {settings.home}", file=sys.stderr, flush=True)

    AnnouncingServer(server_config).run(sockets=sockets)


def bind_socket(host: str) -> socket.socket:
    """A TCP socket bound to `host` on a port the system picks (as uvicorn binds its own)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, 0))
    except OSError as exc:
        sock.close()
        fail(f"cannot listen on {host}: {exc}", EXIT_USAGE)
    sock.set_inheritable(True)
    return sock


def url_of(address: Any) -> str:
    host, port = address[0], address[1]
    shown = f"[{host}]" if ":" in str(host) else str(host)
    return f"http://{shown}:{port}"


def tenancy_line(tenants: Iterable[str]) -> str:
    """`single-user (no API keys; loopback only)` or `N key(s) for M tenant(s)`."""
    names = list(tenants)
    if not names:
        return "single-user (no API keys; loopback only)"
    keys = f"{len(names)} key{'s' if len(names) != 1 else ''}"
    n = len(set(names))
    return f"{keys} for {n} tenant{'s' if n != 1 else ''}"
