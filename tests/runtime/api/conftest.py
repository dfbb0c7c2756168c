"""A real uvicorn server on a free loopback port, in a background thread, per test."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn
import yaml
from google import genai
from google.genai import types

from runtime.api.app import create_app
from runtime.api.config import ApiConfig
from runtime.api.server import uvicorn_config
from runtime.settings import Settings


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ServerThread:
    def __init__(self, config: ApiConfig | None = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        cfg = config or ApiConfig()
        app = create_app(Settings.from_env(), config=cfg)
        self.server = uvicorn.Server(
            uvicorn_config(app, host="127.0.0.1", port=self.port, limits=cfg.server, lifespan="on")
        )
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def start(self) -> ServerThread:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the test server did not start")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)


@pytest.fixture
def start_server() -> Iterator[Callable[..., ServerThread]]:
    started: list[ServerThread] = []

    def start(config: ApiConfig | None = None) -> ServerThread:
        srv = ServerThread(config).start()
        started.append(srv)
        return srv

    yield start
    for srv in started:
        srv.stop()


@pytest.fixture
def server(start_server: Callable[..., ServerThread]) -> ServerThread:
    return start_server()


def sdk(url: str, key: str = "k", version: str = "v1beta") -> genai.Client:
    return genai.Client(
        api_key=key,
        http_options=types.HttpOptions(
            base_url=url,
            api_version=version,
            retry_options=types.HttpRetryOptions(attempts=1),
        ),
    )


@pytest.fixture
def client(server: ServerThread) -> genai.Client:
    return sdk(server.url)


@pytest.fixture
def script(tmp_path: Path) -> Callable[..., str]:
    """Write a scripted model's turns; returns the `scripted:/path` model string."""
    counter = iter(range(1000))

    def write(*turns: dict[str, Any]) -> str:
        path = tmp_path / f"turns-{next(counter)}.yaml"
        path.write_text(yaml.safe_dump({"turns": list(turns)}))
        return f"scripted:{path}"

    return write
