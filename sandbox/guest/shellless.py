"""Run a plain command string without the shell when the shell would only exec it.

`exec("python3 run.py --fast")` means `/bin/sh -c "python3 run.py --fast"`, and for a string
with nothing for the shell to interpret dash just splits it on blanks, looks the program up in
PATH, exports PWD and execs it (as its last command it execs, it does not fork). Doing exactly
that here saves starting dash, about half a millisecond per exec. GNU make has the same fast
path for recipe lines.

Only strings the shell would treat that simply qualify, and only system programs:
- every character is a letter, digit, blank or one of `_./:,+@%=-` (no quoting, expansion,
  globbing, redirection, comments, operators, tilde or brace);
- the first word is not an assignment, a reserved word or a dash builtin (a builtin such as
  `echo` or `test` behaves differently from the program of the same name); bare `true` and
  `false`, whose builtins and programs do the same thing without arguments, are the exception;
- the program PATH finds is a regular file under the read-only system folders, so it is
  never a script without `#!` (which dash would run itself) nor anything the agent wrote.
Anything else, a program not found included (dash's own message), goes through the shell.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

_LETTERS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
_PLAIN = frozenset(_LETTERS + "0123456789_./:,+@%=- \t")  # no `re`: the prelude avoids it
_SYSTEM = ("/usr/bin/", "/bin/", "/usr/sbin/", "/sbin/", "/usr/local/bin/", "/usr/local/sbin/")
_RESERVED = "! { } case do done elif else esac fi for if in then until while"
_BUILTINS = (  # dash 0.5.12
    ". : [ alias bg break cd chdir command continue echo eval exec exit export false fc fg "
    "getopts hash jobs kill local printf pwd read readonly return set shift test times trap "
    "true type ulimit umask unalias unset wait"
)
_SHELL_WORDS = frozenset(f"{_RESERVED} {_BUILTINS}".split())
_SAME_BARE = frozenset({"true", "false"})


def plain_argv(argv: list[str], env: Mapping[str, str]) -> tuple[str, list[str]] | None:
    """(program path, argv) that dash would exec for `argv` = ["/bin/sh", "-c", STRING]
    (argv[0] stays the word as written, as dash passes it); None when the shell is needed."""
    if len(argv) != 3 or argv[0] != "/bin/sh" or argv[1] != "-c":
        return None
    text = argv[2]
    if not _PLAIN.issuperset(text):
        return None
    words = text.split()
    if not words:
        return None
    name = words[0]
    if "=" in name or (name in _SHELL_WORDS and not (name in _SAME_BARE and len(words) == 1)):
        return None
    path = _system_program(name, env.get("PATH", os.defpath))
    return None if path is None else (path, words)


def shell_env(env: Mapping[str, str], cwd: str) -> dict[str, str]:
    """`env` as dash passes it on: variables whose names are not shell names are dropped, and
    PWD is exported: the physical working directory unless the given PWD already names it."""
    out = {k: v for k, v in env.items() if k.isascii() and k.isidentifier()}
    pwd = out.get("PWD")
    if pwd is None or not pwd.startswith("/") or not _same_dir(pwd, cwd):
        out["PWD"] = os.path.realpath(cwd)
    return out


def _system_program(name: str, path_var: str) -> str | None:
    if "/" in name:
        candidates = [name]
    else:
        candidates = [os.path.join(d or ".", name) for d in path_var.split(":")]
    for candidate in candidates:
        if not os.path.isfile(candidate):
            continue  # dash goes on to the next PATH entry the same way
        candidate = os.path.normpath(candidate)  # "/usr/bin/../../workspace/x" is not system
        if not candidate.startswith(_SYSTEM) or not os.access(
            candidate, os.X_OK, effective_ids=True
        ):
            return None  # the agent's own program, or not executable: the shell decides
        return candidate
    return None


def _same_dir(a: str, b: str) -> bool:
    try:
        return os.path.samestat(os.stat(a), os.stat(b))
    except OSError:
        return False
