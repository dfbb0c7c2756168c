"""`corral sandbox …` — sandboxes without an agent: create, exec, cp, ls, rm, shell, gc."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, TypeVar

import aiofiles
import typer
from rich.table import Table

from runtime.cli import egress
from runtime.cli.common import EXIT_USAGE, console, fail, resolve_sandbox_id, run_async
from runtime.kept import iso, why_kept
from runtime.settings import Settings
from sandbox.api import Sandbox
from sandbox.backends.base import SandboxHandle
from sandbox.backends.docker import DockerBackend
from sandbox.egress import ProxyStatus
from sandbox.errors import SandboxError
from sandbox.spec import SandboxSpec

T = TypeVar("T")
app = typer.Typer(
    help="Sandboxes without an agent (for scripts and gateways).", no_args_is_help=True
)
app.add_typer(egress.app, name="egress")
CHUNK = 1024 * 1024


@asynccontextmanager
async def _attached(sandbox_id: str) -> AsyncIterator[Sandbox]:
    """A connection to an existing sandbox (its id or a unique prefix); disconnects (and keeps
    the sandbox) on exit."""
    backend = _backend()
    try:
        sb = await Sandbox.attach(await resolve_sandbox_id(backend, sandbox_id), backend=backend)
        try:
            yield sb
        finally:
            await sb.close()
    finally:
        await backend.aclose()


def _backend() -> DockerBackend:
    settings = Settings.from_env()
    settings.ensure_dirs()
    return DockerBackend(settings.home, egress=settings.egress_options())


@app.command()
def create(
    image: Annotated[str, typer.Option(help="Sandbox image.")] = "corral/base",
    cpus: Annotated[float, typer.Option(help="CPU cores.")] = 1.0,
    memory: Annotated[str, typer.Option(help="Memory limit, e.g. 1g.")] = "1g",
    disk: Annotated[str, typer.Option(help="Size of the writable /workspace.")] = "1g",
    network: Annotated[str, typer.Option(help="none | allowlist | open (unsafe)")] = "none",
    allow: Annotated[
        list[str] | None,
        typer.Option(
            "--allow", help="Domain the sandbox may reach (allowlist; repeatable, *.example.com)."
        ),
    ] = None,
    ttl: Annotated[
        float, typer.Option(help="Idle seconds before `corral sandbox gc` removes it.")
    ] = 3600,
    runtime: Annotated[
        str, typer.Option(help="runc | runsc (gVisor; fails when missing).")
    ] = "runc",
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Create a sandbox and print its id; it stays until `rm` or its idle TTL."""
    try:
        spec = SandboxSpec.model_validate(
            {
                "image": image,
                "cpus": cpus,
                "memory": memory,
                "disk": disk,
                "network": network,
                "allowlist": tuple(allow or ()),
                "idle_ttl": ttl,
                "runtime": runtime,
            }
        )
    except ValueError as exc:
        fail(f"invalid sandbox options: {_first_error(exc)}", EXIT_USAGE)

    async def go() -> str:
        backend = _backend()
        try:
            sb = await Sandbox.create(spec, backend=backend)
            await sb.close()
            return sb.id
        finally:
            await backend.aclose()

    sandbox_id = run_async(go())
    if as_json:
        print(json.dumps({"id": sandbox_id, "image": image}))
    else:
        print(sandbox_id)


@app.command("list")
def list_(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """List this home's sandboxes, why each is kept and until when; then the egress proxy's
    state when there is one (`corral sandbox egress status`)."""

    async def go() -> tuple[list[dict[str, object]], ProxyStatus]:
        backend = _backend()
        try:
            rows: list[dict[str, object]] = []
            for h in await backend.list():
                st = await backend.status(h.id)
                rows.append(
                    {
                        "id": h.id,
                        "image": h.spec.image,
                        "state": st.reason(),
                        "role": h.labels.get("corral.role", "sandbox"),
                        "network": h.spec.network,
                        **_why_kept(backend, h),
                    }
                )
            return rows, await backend.egress.status()
        finally:
            await backend.aclose()

    rows, proxy = run_async(go())
    if as_json:
        print(json.dumps(rows))
        return
    table = Table("id", "image", "state", "role", "network", "kept")
    for r in rows:
        table.add_row(*(str(r[k]) for k in ("id", "image", "state", "role", "network", "kept")))
    console.print(table)
    if proxy.exists or proxy.needed_by:
        print(egress.describe(proxy))


@app.command("exec")
def exec_(
    sandbox_id: Annotated[str, typer.Argument(help="Sandbox id (or a unique prefix).")],
    command: Annotated[list[str], typer.Argument(help="Command (after --).")],
    timeout: Annotated[
        float | None, typer.Option(help="Seconds before the command is killed.")
    ] = None,
    cwd: Annotated[str | None, typer.Option(help="Working directory inside the workspace.")] = None,
) -> None:
    """Run a command, streaming its output; exits with the command's exit code."""

    def on_output(stream: str, data: bytes) -> None:
        out = sys.stdout.buffer if stream == "stdout" else sys.stderr.buffer
        out.write(data)
        out.flush()

    async def go() -> int:
        async with _attached(sandbox_id) as sb:
            argv: str | list[str] = command[0] if len(command) == 1 else list(command)
            r = await sb.exec(argv, timeout=timeout, cwd=cwd, on_output=on_output)
        if r.timed_out:
            print(f"corral: command timed out after {timeout}s", file=sys.stderr)
        if r.truncated:
            print("corral: output truncated at the sandbox's output limit", file=sys.stderr)
        if r.oom_killed:
            print("corral: killed: out of memory", file=sys.stderr)
        return r.exit_code

    raise typer.Exit(run_async(go()))


@app.command()
def cp(
    src: Annotated[str, typer.Argument(help="SANDBOX:PATH or a local path.")],
    dst: Annotated[str, typer.Argument(help="SANDBOX:PATH or a local path.")],
) -> None:
    """Copy a file into or out of a sandbox (streamed)."""
    s_id, s_path = _split(src)
    d_id, d_path = _split(dst)
    if (s_id is None) == (d_id is None):
        fail("exactly one of SRC and DST must be SANDBOX:PATH", EXIT_USAGE)

    async def go() -> None:
        async with _attached(s_id or d_id or "") as sb:
            if d_id is not None:
                local = Path(s_path)
                if not local.is_file():
                    fail(f"{local}: no such file", EXIT_USAGE)
                await sb.files.upload(d_path, _chunks(local))
            else:
                local = Path(d_path)
                if local.is_dir():
                    local = local / Path(s_path).name
                async with aiofiles.open(local, "wb") as f:
                    async for chunk in sb.files.download(s_path):
                        await f.write(chunk)

    run_async(go())


@app.command()
def ls(
    sandbox_id: Annotated[str, typer.Argument(help="Sandbox id (or a unique prefix).")],
    path: Annotated[str, typer.Argument(help="Folder inside the workspace.")] = ".",
    recursive: Annotated[bool, typer.Option("-r", "--recursive")] = False,
) -> None:
    """List files in the sandbox's workspace with sizes."""

    async def go() -> None:
        async with _attached(sandbox_id) as sb:
            for info in await sb.files.list(path, recursive=recursive):
                kind = "d" if info.is_dir else "-"
                print(f"{kind} {info.size:>12} {info.path}")

    run_async(go())


@app.command()
def rm(
    sandbox_ids: Annotated[
        list[str] | None, typer.Argument(help="Sandbox ids (or unique prefixes).")
    ] = None,
    all_: Annotated[bool, typer.Option("--all", help="Remove every sandbox of this home.")] = False,
) -> None:
    """Remove sandboxes (container, workspace and host folder)."""
    if not sandbox_ids and not all_:
        fail("name sandbox ids or pass --all", EXIT_USAGE)

    async def go() -> list[str]:
        backend = _backend()
        try:
            ids = [await resolve_sandbox_id(backend, given) for given in sandbox_ids or []]
            if all_:
                ids = [h.id for h in await backend.list()]
            for sid in ids:
                await backend.get(sid)
                await backend.destroy(sid)
            return ids
        finally:
            await backend.aclose()

    for sid in run_async(go()):
        print(f"removed {sid}")


@app.command()
def gc() -> None:
    """Reconcile after a crash, remove sandboxes past their idle TTL, and the egress proxy
    once no sandbox needs it; says what it removed."""

    async def go() -> tuple[list[str], list[str], list[str], list[str]]:
        backend = _backend()
        try:
            proxy = backend.egress.proxy_name
            had_proxy = await _container_exists(backend, proxy)
            rep = await backend.reconcile(adopt=True)
            reaped = await backend.reap_idle()
            # reaping may have removed the last sandbox that needed the proxy
            live = {h.id for h in await backend.list()}
            pruned = [n for n in await backend.egress.prune(live) if n != proxy]
            gone = [proxy] if had_proxy and not await _container_exists(backend, proxy) else []
            kept = [i for i in rep.adopted if i not in reaped]
            return kept, [*rep.removed, *pruned], reaped, gone
        finally:
            await backend.aclose()

    kept, removed, reaped, proxy = run_async(go())
    print(f"kept {len(kept)}, removed {len(removed)} orphan(s), reaped {len(reaped)} idle")
    for sid in removed:
        print(f"removed orphan {sid}")
    for sid in reaped:
        print(f"reaped idle {sid}")
    for name in proxy:
        print(f"removed the egress proxy {name} (no sandbox needs it)")


def _why_kept(backend: DockerBackend, handle: SandboxHandle) -> dict[str, object]:
    """Why the sandbox is still here (runtime/kept.py): the run whose follow-ups may use it,
    the warm pool, or asked for; and until when (last use + idle TTL; None: until removed)."""
    why = why_kept(backend, handle)
    until = None if why.expires is None else iso(why.expires)
    return {
        "interaction": why.interaction,
        "kept_for": why.kept_for(),
        "until": until,
        "kept": why.describe(),
    }


async def _container_exists(backend: DockerBackend, name: str) -> bool:
    rows = await asyncio.to_thread(
        backend.client.api.containers, all=True, filters={"name": f"^/{name}$"}
    )
    return bool(rows)


@app.command()
def shell(
    sandbox_id: Annotated[str, typer.Argument(help="Sandbox id (or a unique prefix).")],
) -> None:
    """An interactive shell (TTY) inside the sandbox, as the sandbox user."""
    from runtime.cli.tty import interactive_shell

    backend = _backend()
    try:
        code = interactive_shell(backend, run_async(resolve_sandbox_id(backend, sandbox_id)))
    except SandboxError as exc:
        fail(str(exc))
    raise typer.Exit(code)


def _split(arg: str) -> tuple[str | None, str]:
    head, sep, tail = arg.partition(":")
    if sep and head.startswith("sb-"):
        return head, tail or "."
    return None, arg


async def _chunks(path: Path) -> AsyncIterator[bytes]:
    async with aiofiles.open(path, "rb") as f:
        while chunk := await f.read(CHUNK):
            yield chunk


def _first_error(exc: ValueError) -> str:
    errors = getattr(exc, "errors", None)
    if callable(errors):
        e = errors()[0]
        return f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}"
    return str(exc)
