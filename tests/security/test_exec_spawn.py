"""How the tool server starts the agent's commands: one vfork + exec as the agent
(`_agentspawn`), and plain command strings exec'd without the shell (`shellless`).

Both are speed paths; these tests hold them to the behaviour of the slow ones: the child is the
agent with no capabilities and default signal dispositions, the extension is no way back to
root, and a command string behaves exactly as `/bin/sh -c` would run it, whichever path it takes.
"""

from __future__ import annotations

import pytest

from sandbox import Sandbox, SandboxSpec
from sandbox.backends.docker import GUEST_MOUNT, DockerBackend

pytestmark = pytest.mark.docker

SMALL = SandboxSpec(memory="128m", disk="64m", tmp_size="16m", pids=128)
SIGPIPE, SIGXFSZ = 13, 25

CALL_NATIVE = f"""
import sys
sys.path.insert(0, {GUEST_MOUNT!r})
import _agentspawn
for uid in (0, 1, 1000):
    try:
        pid = _agentspawn.spawn(b"/usr/bin/id", [b"id"], [], b"/", uid, uid, -1, -1, -1)
        import os; print(uid, "spawned", os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]))
    except (ValueError, OSError) as exc:
        print(uid, type(exc).__name__)
"""


async def test_the_native_spawner_is_built_and_used(backend: DockerBackend) -> None:
    async with await Sandbox.create(SMALL, backend=backend) as sb:
        assert (await sb.exec(f"test -f {GUEST_MOUNT}/_agentspawn.abi3.so")).exit_code == 0
        assert (await sb.rpc.info())["spawner"] == "native"


async def test_agent_cannot_use_the_native_spawner_to_regain_root(
    backend: DockerBackend,
) -> None:
    """The extension is readable by the agent; called as the agent it refuses uid 0 outright and
    cannot set any id the agent does not already have."""
    async with await Sandbox.create(SMALL, backend=backend) as sb:
        r = await sb.exec(["python3", "-c", CALL_NATIVE])
        lines = r.stdout.splitlines()
        assert lines == ["0 ValueError", "1 PermissionError", "1000 spawned 0"], (
            r.stdout,
            r.stderr,
        )


async def test_commands_start_with_default_signal_dispositions(backend: DockerBackend) -> None:
    """Python ignores SIGPIPE and SIGXFSZ; its children must not inherit that (`yes | head`)."""
    async with await Sandbox.create(SMALL, backend=backend) as sb:
        for cmd in ("grep SigIgn /proc/self/status", ["grep", "SigIgn", "/proc/self/status"]):
            r = await sb.exec(cmd)
            ignored = int(r.stdout.split()[1], 16)
            assert not ignored & (1 << (SIGPIPE - 1) | 1 << (SIGXFSZ - 1)), r.stdout
        pipe = await sb.exec("yes | head -c 4 >/dev/null; echo done")
        assert pipe.stdout == "done\n" and "Broken pipe" not in pipe.stderr, pipe
        await sb.spawn("grep SigIgn /proc/self/status > /tmp/sig.part && mv /tmp/sig.part /tmp/sig")
        wait = "for i in $(seq 100); do [ -s /tmp/sig ] && break; sleep 0.1; done; cat /tmp/sig"
        ignored = int((await sb.exec(wait)).stdout.split()[1], 16)
        assert not ignored & (1 << (SIGPIPE - 1)), ignored


# Each pair: a plain string (exec'd without the shell) and the same command made to need the
# shell (a trailing `;`); dash must not be distinguishable from the fast path.
SAME_AS_SHELL = [
    "env",
    "cat /proc/self/cmdline",
    "ls -d /workspace /nonexistent",
    "true",
    "false",
    "true --version",
    "/usr/bin/env",
    "test -d /tmp",
    "echo -e a",
    "sleep 0",
]


def sorted_lines(text: str) -> str:
    return "\n".join(sorted(text.splitlines()))


@pytest.mark.parametrize("cwd", [None, "sub", "link"])
async def test_a_plain_command_behaves_as_the_shell_runs_it(
    backend: DockerBackend, cwd: str | None
) -> None:
    async with await Sandbox.create(SMALL, backend=backend) as sb:
        await sb.exec("mkdir -p sub && ln -s sub link")
        env = {"A_B": "1", "A-B": "dropped by dash", "PWD": "/somewhere/else"}
        for cmd in SAME_AS_SHELL:
            fast = await sb.exec(cmd, cwd=cwd, env=env)
            slow = await sb.exec(f"{cmd};", cwd=cwd, env=env)
            # dash passes the same variables in its own (hash) order
            tidy = sorted_lines if "env" in cmd else str
            assert (fast.exit_code, tidy(fast.stdout), fast.stderr) == (
                slow.exit_code,
                tidy(slow.stdout),
                slow.stderr,
            ), cmd
        env_out = (await sb.exec("env", cwd=cwd, env=env)).stdout.splitlines()
        assert "A_B=1" in env_out and not any(line.startswith("A-B=") for line in env_out)


async def test_the_agents_own_programs_still_go_through_the_shell(backend: DockerBackend) -> None:
    """A program the agent wrote, found first in PATH, is the shell's to handle (the workspace
    is noexec: dash reports it, or goes on to the next PATH entry); so is a name that is not
    found (dash's message and 127), and anything the shell would interpret."""
    async with await Sandbox.create(SMALL, backend=backend) as sb:
        await sb.files.write("bin/ls", b"echo agent-ls $1\n")
        await sb.files.write("bin/mytool", b"echo agent-tool\n")
        await sb.exec("chmod +x bin/ls bin/mytool")
        for path in ("/workspace/bin:/usr/bin:/bin", "/usr/bin/../../workspace/bin:/usr/bin"):
            for cmd in ("ls -d /", "mytool"):
                fast = await sb.exec(cmd, env={"PATH": path})
                slow = await sb.exec(f"{cmd};", env={"PATH": path})
                assert (fast.exit_code, fast.stdout, fast.stderr) == (
                    slow.exit_code,
                    slow.stdout,
                    slow.stderr,
                ), (cmd, path, fast, slow)
        missing = await sb.exec("no-such-program --flag")
        assert missing.exit_code == 127 and "sh: 1: no-such-program: not found" in missing.stderr
        assert (await sb.exec("echo $HOME")).stdout == "/workspace\n"
        assert (await sb.exec("X=1 env")).stdout.count("X=1") == 1
