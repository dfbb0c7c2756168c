"""The sandbox tools an agent gets, as model-facing function tools.

Each tool is a JSON-schema'd function; `Toolbox.call` runs it against the run's sandbox and
returns text for the model. A tool that fails (bad path, missing file, non-zero exit) is a
result the model can react to, not a run failure; a sandbox that died is a run failure.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from runtime.agents.browser_tools import BrowserTools
from runtime.agents.truncate import head_tail
from runtime.providers.base import ToolSpec
from sandbox.api import Sandbox
from sandbox.errors import ToolError

OutputSink = Callable[[str, bytes], Awaitable[None] | None]
DEFAULT_EXEC_TIMEOUT = 300.0
MAX_READ = 256 * 1024


@dataclass
class ToolOutcome:
    text: str
    is_error: bool = False


def _obj(props: dict[str, Any], required: Sequence[str]) -> dict[str, Any]:
    return {"type": "object", "properties": props, "required": list(required)}


EXEC = ToolSpec(
    "exec",
    "Run a shell command (/bin/sh -c) in the sandbox's /workspace. Returns the exit code, "
    "stdout and stderr. Long output is shortened in the middle.",
    _obj(
        {
            "command": {"type": "string", "description": "The shell command."},
            "timeout": {
                "type": "number",
                "description": "Seconds before it is killed (default 300).",
            },
            "cwd": {"type": "string", "description": "Working directory (default /workspace)."},
        },
        ["command"],
    ),
)
PYTHON = ToolSpec(
    "python",
    "Run Python code in a persistent session (variables survive between calls, like a "
    "notebook). The value of a trailing expression is returned.",
    _obj({"code": {"type": "string", "description": "Python source."}}, ["code"]),
)
READ_FILE = ToolSpec(
    "read_file",
    "Read a text file in /workspace. Optional 1-based line offset and line limit.",
    _obj(
        {
            "path": {"type": "string"},
            "offset": {"type": "integer", "description": "First line (1-based)."},
            "limit": {"type": "integer", "description": "Number of lines."},
        },
        ["path"],
    ),
)
WRITE_FILE = ToolSpec(
    "write_file",
    "Create or overwrite a file in /workspace with the given text (parents are created).",
    _obj({"path": {"type": "string"}, "content": {"type": "string"}}, ["path", "content"]),
)
EDIT_FILE = ToolSpec(
    "edit_file",
    "Replace an exact string in a file. Fails if old_string is missing, or occurs more than "
    "once and replace_all is not set.",
    _obj(
        {
            "path": {"type": "string"},
            "old_string": {"type": "string"},
            "new_string": {"type": "string"},
            "replace_all": {"type": "boolean"},
        },
        ["path", "old_string", "new_string"],
    ),
)
LIST_FILES = ToolSpec(
    "list_files",
    "List files under a folder of /workspace with their sizes.",
    _obj(
        {
            "path": {"type": "string", "description": "Default: /workspace."},
            "recursive": {"type": "boolean"},
        },
        [],
    ),
)

TOOLS: dict[str, ToolSpec] = {
    t.name: t for t in (EXEC, PYTHON, READ_FILE, WRITE_FILE, EDIT_FILE, LIST_FILES)
}


class Toolbox:
    """The sandbox-backed tools of one run."""

    def __init__(
        self,
        sandbox: Sandbox,
        names: Sequence[str],
        *,
        exec_timeout: float = DEFAULT_EXEC_TIMEOUT,
        browser: bool = False,
        browser_evaluate: bool = False,
        output_dir: str = "/workspace/out",
    ) -> None:
        """`browser`: the image has a browser (see `image_has_browser`); the `browser_*` tools
        are offered when it does and `names` lists `browser`. `browser_evaluate` adds the
        JavaScript tool (opt-in)."""
        self.sandbox = sandbox
        self.exec_timeout = exec_timeout
        self.specs: list[ToolSpec] = [TOOLS[n] for n in names if n in TOOLS]
        self.browser: BrowserTools | None = None
        if browser and "browser" in names:
            self.browser = BrowserTools(sandbox, output_dir=output_dir, evaluate=browser_evaluate)
            self.specs += self.browser.specs
        self._names = {t.name for t in self.specs}

    def has(self, name: str) -> bool:
        return name in self._names

    async def call(
        self, name: str, args: dict[str, Any], *, on_output: OutputSink | None = None
    ) -> ToolOutcome:
        if not self.has(name):
            return ToolOutcome(f"unknown tool {name!r}", is_error=True)
        try:
            if name == "exec":
                return await self._exec(args, on_output)
            if name == "python":
                return await self._python(args)
            if name == "read_file":
                return await self._read(args)
            if name == "write_file":
                data = _str(args, "content").encode()
                await self.sandbox.files.write(_str(args, "path"), data)
                return ToolOutcome(f"wrote {len(data)} bytes to {args['path']}")
            if name == "edit_file":
                return await self._edit(args)
            if name == "list_files":
                return await self._list(args)
            if self.browser is not None and name in self.browser.names:
                return ToolOutcome(await self.browser.call(name, args))
        except ToolError as exc:
            return ToolOutcome(f"error: {exc}", is_error=True)
        except (KeyError, TypeError, ValueError) as exc:
            return ToolOutcome(f"error: bad arguments for {name}: {exc}", is_error=True)
        return ToolOutcome(f"unknown tool {name!r}", is_error=True)

    async def _exec(self, args: dict[str, Any], on_output: OutputSink | None) -> ToolOutcome:
        timeout = float(args.get("timeout") or self.exec_timeout)
        r = await self.sandbox.exec(
            _str(args, "command"), cwd=args.get("cwd") or None, timeout=timeout, on_output=on_output
        )
        parts = [f"exit code: {r.exit_code}"]
        if r.timed_out:
            parts.append(f"timed out after {timeout:g}s (the whole process group was killed)")
        if r.oom_killed:
            parts.append("killed: out of memory")
        if r.truncated:
            parts.append("output truncated at the sandbox's output limit")
        if r.stdout:
            parts.append("stdout:\n" + head_tail(r.stdout))
        if r.stderr:
            parts.append("stderr:\n" + head_tail(r.stderr))
        return ToolOutcome("\n".join(parts), is_error=r.exit_code != 0)

    async def _python(self, args: dict[str, Any]) -> ToolOutcome:
        r = await self.sandbox.python(_str(args, "code"), timeout=self.exec_timeout)
        parts = []
        if r.stdout:
            parts.append(head_tail(r.stdout))
        if r.stderr:
            parts.append("stderr:\n" + head_tail(r.stderr))
        if r.result_repr is not None:
            parts.append("result: " + head_tail(r.result_repr))
        if r.error:
            parts.append(head_tail(r.error))
        if r.timed_out:
            parts.append("timed out: the session was restarted (variables are lost)")
        return ToolOutcome("\n".join(parts) or "(no output)", is_error=bool(r.error or r.timed_out))

    async def _read(self, args: dict[str, Any]) -> ToolOutcome:
        path = _str(args, "path")
        info = await self.sandbox.files.stat(path)
        if info.is_dir:
            return ToolOutcome(f"error: {path} is a folder; use list_files", is_error=True)
        data = await self.sandbox.files.read(path)
        if b"\0" in data[:8192]:
            return ToolOutcome(f"{path} is a binary file of {len(data)} bytes", is_error=False)
        text = data.decode("utf-8", errors="replace")
        offset, limit = args.get("offset"), args.get("limit")
        if offset or limit:
            lines = text.splitlines(keepends=True)
            start = max(int(offset or 1) - 1, 0)
            end = start + int(limit) if limit else len(lines)
            text = "".join(lines[start:end])
        return ToolOutcome(head_tail(text, MAX_READ // 4))

    async def _edit(self, args: dict[str, Any]) -> ToolOutcome:
        path, old, new = _str(args, "path"), _str(args, "old_string"), _str(args, "new_string")
        if not old:
            return ToolOutcome("error: old_string must not be empty", is_error=True)
        text = (await self.sandbox.files.read(path)).decode("utf-8", errors="strict")
        count = text.count(old)
        if count == 0:
            return ToolOutcome(f"error: old_string not found in {path}", is_error=True)
        if count > 1 and not args.get("replace_all"):
            return ToolOutcome(
                f"error: old_string occurs {count} times in {path}; add context or set replace_all",
                is_error=True,
            )
        text = text.replace(old, new) if args.get("replace_all") else text.replace(old, new, 1)
        await self.sandbox.files.write(path, text.encode())
        return ToolOutcome(
            f"replaced {count if args.get('replace_all') else 1} occurrence(s) in {path}"
        )

    async def _list(self, args: dict[str, Any]) -> ToolOutcome:
        path = str(args.get("path") or ".")
        infos = await self.sandbox.files.list(path, recursive=bool(args.get("recursive")))
        lines = [
            f"{'d' if i.is_dir else '-'} {i.size:>10}  {i.path}{'/' if i.is_dir else ''}"
            for i in infos
        ]
        return ToolOutcome(head_tail("\n".join(lines) or "(empty)"))


def _str(args: dict[str, Any], key: str) -> str:
    value = args[key]
    if not isinstance(value, str):
        raise TypeError(f"{key} must be a string")
    return value
