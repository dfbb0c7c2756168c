"""Where E2B commands start: `/home/user`, as on E2B, when the sandbox's image has it.

corral/base bakes `/home/user -> /workspace` into its read-only root, so a command started
in the workspace with `PWD=/home/user` prints `/home/user` for `pwd`, as E2B's would. Other
images (a template may map to any image) may not have the link: their commands keep
`/workspace`. Whether a sandbox has it is asked once, by reading the link through the RPC,
and remembered for the sandbox's life (`E2BState.homes`).

What the guest answers only decides an environment variable: the guest's exec keeps a given
`PWD` only when it names the same directory as the real working directory (shell_env), and
a PTY's bash makes the same check, so a lying guest cannot send a command anywhere else.
"""

from __future__ import annotations

import posixpath

from runtime.e2b.common import HOME, WORKSPACE, E2BState, to_corral
from sandbox.api import Sandbox
from sandbox.errors import SandboxError

MAX_REMEMBERED = 10_000
PROBE_TIMEOUT = 10.0


async def has_home(e2b: E2BState, sb: Sandbox) -> bool:
    """Whether `/home/user` in `sb` is the link to the workspace (probed once per sandbox;
    two first calls at once may both probe, with the same answer)."""
    known = e2b.homes.get(sb.id)
    if known is None:
        known = await _probe(sb)
        if len(e2b.homes) >= MAX_REMEMBERED:  # ids of removed sandboxes: start afresh
            e2b.homes.clear()
        e2b.homes[sb.id] = known
    return known


async def _probe(sb: Sandbox) -> bool:
    try:
        r = await sb.exec(["readlink", HOME], timeout=PROBE_TIMEOUT)
    except SandboxError:
        return False
    target = r.stdout.strip()
    return r.exit_code == 0 and bool(target) and posixpath.normpath(target) == WORKSPACE


def e2b_path(cwd: str | None) -> str:
    """The absolute E2B path a command's `cwd` names (relative ones are under the home)."""
    return posixpath.normpath(posixpath.join(HOME, cwd or ""))


async def start_in(e2b: E2BState, sb: Sandbox, cwd: str | None) -> tuple[str, dict[str, str]]:
    """(the path to run in, environment to add) for a command whose E2B `cwd` is `cwd`
    (None: the home). Under the link, `PWD` names the E2B path so the shell's `pwd` shows
    it; the directory is the same either way."""
    wanted = e2b_path(cwd)
    if (wanted == HOME or wanted.startswith(HOME + "/")) and await has_home(e2b, sb):
        return to_corral(wanted), {"PWD": wanted}
    return to_corral(wanted), {}
