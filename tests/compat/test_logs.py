"""`corral serve` writes one structured stream: with CORRAL_LOG_FORMAT=json every line it
prints (uvicorn's own included) is a JSON object, and each request is an `http.access` event."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.runtime.api.conftest import free_port


def test_serve_logs_are_json_with_access_events(tmp_path: Path) -> None:
    port = free_port()
    env = {
        **os.environ,
        "CORRAL_HOME": str(tmp_path / "home"),
        "CORRAL_LOG_FORMAT": "json",
        "CORRAL_LOG_LEVEL": "info",
        "PYTHONWARNINGS": "default",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "runtime.cli", "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "corral serve did not start"
            time.sleep(0.1)
        assert httpx.get(f"{url}/v1beta/interactions/nope").status_code == 404
        httpx.post(f"{url}/v1beta/interactions", content=b"{bad", timeout=10)
    finally:
        proc.terminate()
        out, err = proc.communicate(timeout=60)
    lines = [line for line in (out + err).splitlines() if line.strip()]
    events = []
    for line in lines:
        try:
            events.append(json.loads(line))
        except ValueError:
            raise AssertionError(f"not a JSON line: {line!r}\n---\n{err}") from None
    assert all(isinstance(e, dict) and "event" in e and "level" in e for e in events), events
    access = [e for e in events if e["event"] == "http.access"]
    miss = [e for e in access if e["path"] == "/v1beta/interactions/nope"]
    assert miss and miss[0]["method"] == "GET" and miss[0]["status"] == 404, access
    assert isinstance(miss[0]["duration_ms"], float | int)
    assert any(e["status"] == 400 and e["method"] == "POST" for e in access), access
    (listening,) = [e for e in events if e["event"] == "serve.listening"]
    assert listening["urls"][0].startswith("http://127.0.0.1:") and listening["data_directory"]
    # uvicorn's own lines ("Started server process", "Shutting down") came through structlog
    assert any(e.get("logger", "").startswith("uvicorn") for e in events), events
