"""matplotlib figures through the real `e2b-code-interpreter` SDK: `plt.show()` and figures
left open at the end of a cell come back as PNG results, as on E2B.

Needs the corral/research image (matplotlib); it is not built by default (`corral images
build research`), so without it these tests are skipped. When it is there,
`code-interpreter-v1` (the SDK's default template) maps to it.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any

import docker
import docker.errors
import pytest
from e2b_code_interpreter import AsyncSandbox, Sandbox

from runtime.e2b.interpreter import MATPLOTLIB_IMAGE
from tests.compat.e2b_support import serve_e2b, start_server
from tests.runtime.api.conftest import ServerThread

__all__ = ["start_server"]


def _have_image() -> bool:
    try:
        client = docker.from_env()
        try:
            client.images.get(MATPLOTLIB_IMAGE)
        finally:
            client.close()
    except docker.errors.DockerException:
        return False
    return True


pytestmark = [
    pytest.mark.docker,
    pytest.mark.skipif(not _have_image(), reason=f"{MATPLOTLIB_IMAGE} is not built"),
]

CELL = """
import matplotlib.pyplot as plt
plt.plot([1, 2, 3])
plt.show()
print('after show')
plt.figure()
bars = plt.bar(['a', 'b'], [3, 1])
"""


@pytest.fixture
def srv(start_server: Callable[..., ServerThread], monkeypatch: pytest.MonkeyPatch) -> ServerThread:
    monkeypatch.delenv("CORRAL_E2B_TEMPLATES", raising=False)
    return serve_e2b(start_server, monkeypatch, key="k")


def _is_png(b64: str | None) -> bool:
    return b64 is not None and base64.b64decode(b64).startswith(b"\x89PNG\r\n\x1a\n")


def check(ex: Any, seen: list[Any]) -> None:
    assert ex.error is None, ex.error
    assert ex.logs.stderr == []  # no "FigureCanvasAgg is non-interactive" warning
    # plt.show() shows the first figure where it is called; the open one at the end
    assert [type(s).__name__ for s in seen] == ["Result", "OutputMessage", "Result"]
    assert len(ex.results) == 2 and not any(r.is_main_result for r in ex.results)
    assert all(_is_png(r.png) for r in ex.results)
    assert ex.results[0].text == "<Figure size 640x480 with 1 Axes>"


def test_figures_are_png_results(srv: ServerThread) -> None:
    with Sandbox.create(timeout=120) as sb:
        seen: list[Any] = []
        check(sb.run_code(CELL, on_result=seen.append, on_stdout=seen.append), seen)
        # a figure as the cell's value is its main result, shown once
        ex = sb.run_code("fig = plt.figure()\nfig.gca().plot([0, 1])\nfig")
        assert len(ex.results) == 1 and ex.results[0].is_main_result and _is_png(ex.results[0].png)


async def test_figures_async(srv: ServerThread) -> None:
    sb = await AsyncSandbox.create(timeout=120)
    try:
        seen: list[Any] = []
        check(await sb.run_code(CELL, on_result=seen.append, on_stdout=seen.append), seen)
    finally:
        await sb.kill()
