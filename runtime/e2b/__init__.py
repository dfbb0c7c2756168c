"""The E2B front door: code written for the `e2b` and `e2b-code-interpreter` SDKs runs on
Corral when `E2B_API_URL` and `E2B_SANDBOX_URL` point at `corral serve`.

It translates, it never grows its own sandbox logic: lifecycle calls become `SandboxHub`
calls under the same key, tenancy and ceilings as `/v1beta/sandboxes`; envd's Connect-RPC
(process, filesystem) and plain `/files`, and the code interpreter's `/execute`, become calls
on the public `sandbox.Sandbox` API. What is not translated answers with an E2B-shaped error
naming the feature (docs/e2b.md).

    lifecycle.py    /v2/sandboxes, /sandboxes/{id}[/timeout|/connect|...]  (E2B_API_URL)
    envd.py         /process.Process/*, /filesystem.Filesystem/*, /files, /health
    interpreter.py  /execute, /contexts                                    (E2B_SANDBOX_URL)
    interp_stream.py  one /execute as E2B's JSON lines, streamed while the cell runs
    pty.py          sb.pty: the engine's TTY exec, its event stream
    watch.py        files.watch_dir on the guest's directory watch (stream and polled)
    metrics.py      get_metrics: one sample of the engine's stats and the workspace's disk
    connect.py      Connect-RPC framing (JSON codec) and its error codes
    common.py       state (access tokens, templates, running commands), auth, paths
"""

from __future__ import annotations

from collections.abc import Mapping

from fastapi import APIRouter

from runtime.e2b.common import E2BState, templates_from_env


def routers(templates: Mapping[str, str] | None = None) -> list[APIRouter]:
    """The E2B routes, sharing one state (built when the app is, never at import time)."""
    from runtime.e2b import envd, interpreter, lifecycle

    state = E2BState(
        templates=dict(templates)
        if templates
        else interpreter.with_matplotlib(templates_from_env())
    )
    return [lifecycle.router(state), envd.router(state), interpreter.router(state)]
