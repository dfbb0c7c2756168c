"""Who the guest's children run as: the agent's uid, never the tool server's.

The backend starts the guest as container root with only CAP_SETUID and CAP_SETGID. Once its
socket is bound, `drop_to_agent()` keeps real and saved uid 0 but makes the effective uid the
agent's, so:

- file tools act with the agent's permissions (the workspace is the agent's);
- the agent cannot signal or ptrace the server: both need the caller's uid to match the
  target's real (signals) or real, effective and saved (ptrace) uid, and the uid change also
  makes the server non-dumpable, so its /proc entries belong to root;
- the server can still signal and kill the agent's processes (its effective uid matches);
- children become the agent entirely (`popen_credentials()`): setting real, effective and saved
  uid away from 0 clears every capability, and no-new-privileges keeps them cleared.

Playwright starts its Node.js driver itself; `PLAYWRIGHT_NODEJS_PATH` points it at
`as_agent.py`, which drops to the agent's uid and then execs the bundled node.
"""

from __future__ import annotations

import os
from typing import Any

_agent: tuple[int, int] | None = None
AS_AGENT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "as_agent.py")
DROPEXEC = os.path.join(os.path.dirname(AS_AGENT), "dropexec")
"""Compiled from dropexec.c when the guest is staged (where the host has a C compiler)."""


def drop_to_agent(uid: int, gid: int) -> None:
    """Act as `uid:gid` from now on, keeping real and saved ids 0 (see the module docstring).
    A guest not started as root (tests, other transports) keeps its own ids."""
    global _agent
    if os.getuid() != 0:
        return
    os.setgroups([])
    os.setresgid(0, gid, 0)
    os.setresuid(0, uid, 0)
    _agent = (uid, gid)
    os.environ["CORRAL_AGENT_UID"] = str(uid)
    os.environ["CORRAL_AGENT_GID"] = str(gid)
    os.environ["PLAYWRIGHT_NODEJS_PATH"] = str(AS_AGENT)


def popen_credentials() -> dict[str, Any]:
    """Keyword arguments for `subprocess.Popen` that make a child the agent, fully."""
    if _agent is None:
        return {}
    uid, gid = _agent
    return {"user": uid, "group": gid}


def dropexec() -> tuple[str, int, int] | None:
    """(path, uid, gid) of the static `dropexec` helper when children should go through it:
    the server dropped to the agent and the staged guest has the helper."""
    if _agent is None or not os.access(DROPEXEC, os.X_OK):
        return None
    return DROPEXEC, _agent[0], _agent[1]
