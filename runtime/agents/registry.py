"""Finding an agent by name or file.

Lookup order for a name (first match wins): the built-ins shipped in the package (`default`,
`demo`), the examples shipped in the repository (`examples/agents`, only in a checkout), the
user's agents in `$CORRAL_HOME/agents/<name>.yaml`, any `extra_dirs`, then the caller's store
(agents created over the API). Anything that looks like a path (`.yaml`/`.yml`, or a `/`) is
loaded as a file.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from runtime.agents.spec import AgentSpec, load_agent_file
from runtime.errors import AgentSpecError, NotFound
from sandbox.home import default_home

BUILTIN_DIR = Path(__file__).parent / "builtin"
BUILTIN_NAMES = ("default", "demo")
# Present in a source checkout only; an installed package has no examples folder.
EXAMPLES_DIR = Path(__file__).resolve().parents[2] / "examples" / "agents"
SUFFIXES = (".yaml", ".yml")

StoreLookup = Callable[[str], Mapping[str, Any] | None]
AsyncStoreLookup = Callable[[str], Awaitable[Mapping[str, Any] | None]]


def is_path(name_or_path: str) -> bool:
    return name_or_path.endswith(SUFFIXES) or "/" in name_or_path or "\\" in name_or_path


def resolve_agent(
    name_or_path: str | None,
    *,
    extra_dirs: Sequence[Path] = (),
    store_lookup: StoreLookup | None = None,
    home: Path | None = None,
) -> AgentSpec:
    """None -> the built-in `default`; a file path -> that file; a name -> see module docstring.

    Raises AgentSpecError for a spec that does not validate, NotFound (listing the available
    names) for an unknown name.
    """
    found = _resolve_files(name_or_path, extra_dirs, home)
    if found is not None:
        return found
    assert name_or_path is not None
    if store_lookup is not None:
        data = store_lookup(name_or_path)
        if data is not None:
            return _from_store(name_or_path, data)
    raise _unknown(name_or_path, extra_dirs, home)


async def resolve_agent_async(
    name_or_path: str | None,
    *,
    extra_dirs: Sequence[Path] = (),
    store_lookup: AsyncStoreLookup | None = None,
    home: Path | None = None,
) -> AgentSpec:
    """`resolve_agent` for async callers (the HTTP API): files are read off the event loop."""
    found = await asyncio.to_thread(_resolve_files, name_or_path, extra_dirs, home)
    if found is not None:
        return found
    assert name_or_path is not None
    if store_lookup is not None:
        data = await store_lookup(name_or_path)
        if data is not None:
            return _from_store(name_or_path, data)
    raise await asyncio.to_thread(_unknown, name_or_path, extra_dirs, home)


def list_agents(
    *,
    extra_dirs: Sequence[Path] = (),
    home: Path | None = None,
    on_error: Callable[[AgentSpecError], None] | None = None,
) -> list[AgentSpec]:
    """Every agent found by name, in lookup order; a shadowed name is listed once (the winner).

    Files that do not validate are skipped and passed to `on_error`.
    """
    seen: set[str] = set()
    out: list[AgentSpec] = []
    for name, path in _candidates(extra_dirs, home):
        if name in seen:
            continue
        try:
            spec = _load(name, path)
        except AgentSpecError as e:
            if on_error is not None:
                on_error(e)
            continue
        seen.add(name)
        out.append(spec)
    return out


def _resolve_files(
    name_or_path: str | None, extra_dirs: Sequence[Path], home: Path | None
) -> AgentSpec | None:
    if name_or_path is None:
        return _load("default", BUILTIN_DIR / "default.yaml")
    if is_path(name_or_path):
        return load_agent_file(Path(name_or_path).expanduser())
    for name, path in _candidates(extra_dirs, home):
        if name == name_or_path:
            return _load(name, path)
    return None


def _candidates(extra_dirs: Sequence[Path], home: Path | None) -> Iterator[tuple[str, Path]]:
    """(name, file) pairs in lookup order."""
    for name in BUILTIN_NAMES:
        yield name, BUILTIN_DIR / f"{name}.yaml"
    user_dir = (home or default_home()) / "agents"
    for folder in (EXAMPLES_DIR, user_dir, *extra_dirs):
        if not folder.is_dir():
            continue
        for path in sorted(folder.iterdir()):
            if path.suffix in SUFFIXES and path.is_file():
                yield path.stem, path


def _load(name: str, path: Path) -> AgentSpec:
    spec = load_agent_file(path)
    if spec.name != name:
        # The file name is what users type; a different `name:` inside would be confusing.
        raise AgentSpecError(f"{path}: name: {spec.name!r} differs from the file name {name!r}")
    if path.parent == BUILTIN_DIR:
        spec._source = f"builtin:{name}"
    return spec


# Keys the API keeps beside a stored spec (what it was made from); not spec fields.
STORE_META_KEYS = ("base_agent",)


def _from_store(name: str, data: Mapping[str, Any]) -> AgentSpec:
    spec = {k: v for k, v in data.items() if k not in STORE_META_KEYS}
    return AgentSpec.from_dict(spec, source=f"store:{name}")


def file_agent_names(*, extra_dirs: Sequence[Path] = (), home: Path | None = None) -> list[str]:
    """Names that resolve to a file (built-ins, examples, the user's folder), in lookup order.

    These are shared by every tenant: the API lists them and refuses to replace or delete them.
    """
    seen: dict[str, None] = {}
    for name, _ in _candidates(extra_dirs, home):
        seen.setdefault(name)
    return list(seen)


def load_file_agent(
    name: str, *, extra_dirs: Sequence[Path] = (), home: Path | None = None
) -> AgentSpec | None:
    """The file agent called `name` (None if no file has that name)."""
    if is_path(name):
        return None
    return _resolve_files(name, extra_dirs, home)


def _unknown(name: str, extra_dirs: Sequence[Path], home: Path | None) -> NotFound:
    names = sorted({n for n, _ in _candidates(extra_dirs, home)})
    return NotFound(f"unknown agent {name!r} (available: {', '.join(names)})")
