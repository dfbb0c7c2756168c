"""Which command strings skip the shell (sandbox/guest/shellless.py); the docker tests in
tests/security/test_exec_spawn.py check that the ones that do behave as dash runs them."""

from __future__ import annotations

import os

import pytest

from sandbox.guest.shellless import plain_argv, shell_env

PATH = {"PATH": "/usr/bin:/bin"}


def sh(text: str) -> list[str]:
    return ["/bin/sh", "-c", text]


def test_plain_system_programs_are_exec_directly() -> None:
    assert plain_argv(sh("ls -la /tmp"), PATH) == ("/usr/bin/ls", ["ls", "-la", "/tmp"])
    assert plain_argv(sh("  env\tA=1 "), PATH) == ("/usr/bin/env", ["env", "A=1"])
    assert plain_argv(sh("true"), PATH) == ("/usr/bin/true", ["true"])
    assert plain_argv(sh("/usr/bin/env"), PATH) == ("/usr/bin/env", ["/usr/bin/env"])


@pytest.mark.parametrize(
    "text",
    [
        "echo $HOME", "ls *", "ls > x", "ls; ls", "ls && ls", "ls | cat", "ls 'a b'", 'ls "a"',
        "ls ~", "ls #x", "ls\nls", "X=1 ls", "cd /tmp", "echo -e a", "test -d /", "true --help",
        "kill 1", "pwd", "exec ls", "if", "", "   ", "no-such-program", "./ls", "ls {a,b}",
        "ls a\\ b", "ls `id`", "ls (", "ls !",
    ],
)  # fmt: skip
def test_anything_the_shell_would_interpret_goes_through_it(text: str) -> None:
    assert plain_argv(sh(text), PATH) is None


def test_only_programs_in_the_system_folders(tmp_path: os.PathLike[str]) -> None:
    tool = os.path.join(tmp_path, "ls")
    with open(tool, "w") as f:
        f.write("echo mine\n")
    os.chmod(tool, 0o755)
    assert plain_argv(sh("ls"), {"PATH": f"{tmp_path}:/usr/bin"}) is None
    assert plain_argv(sh("ls"), {"PATH": f"/usr/bin/../..{tmp_path}:/usr/bin"}) is None
    assert plain_argv(sh("ls"), {"PATH": ":/usr/bin"}) in (None, ("/usr/bin/ls", ["ls"]))
    assert plain_argv(["/bin/sh", "-c", "ls", "x"], PATH) is None  # not the exec tool's form
    assert plain_argv(["ls"], PATH) is None


def test_the_environment_is_passed_on_as_dash_does(tmp_path: os.PathLike[str]) -> None:
    cwd = str(tmp_path)
    env = shell_env({"A-B": "x", "1X": "y", "OK": "1", "PWD": "/nonexistent"}, cwd)
    assert env == {"OK": "1", "PWD": os.path.realpath(cwd)}
    same = os.path.join(cwd, ".")
    assert shell_env({"PWD": same}, cwd)["PWD"] == same  # a PWD naming the directory is kept
