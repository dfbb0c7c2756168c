"""`corral doctor` — is this machine ready to run sandboxes?

`run_checks` does the work and returns rows (tests call it directly, e.g. with an image that
does not exist); `doctor` is the thin CLI around it. Exit 0 when every required row passes.
The egress proxy's row (the proxy of `network: allowlist` sandboxes, one per home) fails only
when sandboxes need it and it is down; not running while nothing needs it is fine.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import docker
import typer
from rich.table import Table

from runtime.cli.common import EXIT_FAILED, console
from runtime.cli.egress import describe
from runtime.settings import Settings
from sandbox.backends.docker import DockerBackend
from sandbox.backends.docker_errors import map_docker_error
from sandbox.egress import EgressOptions, ProxyStatus
from sandbox.errors import SandboxError
from sandbox.images import ImageDef, catalog, image_status

Level = Literal["ok", "warn", "fail", "skip"]
LOW_DISK = 2 * 1024**3
BUILD_HINT = "run `corral images build`"


@dataclass(frozen=True)
class Check:
    name: str
    level: Level
    detail: str
    hint: str = ""

    @property
    def failed(self) -> bool:
        return self.level == "fail"

    def problem(self) -> str:
        """The one line printed under the table for a failing (or warning) row."""
        return f"{self.name}: {self.detail}" + (f" — {self.hint}" if self.hint else "")


def _connect() -> docker.DockerClient:
    client = docker.from_env(timeout=10)
    client.ping()
    return client


def run_checks(
    *,
    home: Path,
    images: Sequence[str] | None = None,
    connect: Callable[[], docker.DockerClient] = _connect,
    egress: EgressOptions | None = None,
) -> list[Check]:
    """Every row of the doctor table. `images` replaces the default images with references;
    `egress`: the home's egress settings (`Settings.egress_options`)."""
    rows: list[Check] = []
    client: docker.DockerClient | None = None
    try:
        client = connect()
        version = client.version()
        rows.append(
            Check(
                "docker",
                "ok",
                f"Docker Engine {version.get('Version', '?')} (API {version.get('ApiVersion', '?')})",
            )
        )
    except Exception as exc:  # whatever the SDK raises here, the answer is "no engine"
        err = map_docker_error(exc)
        rows.append(Check("docker", "fail", str(err), "start dockerd or set DOCKER_HOST"))
    if client is None:
        rows.append(Check("images", "fail", "not checked: Docker is not reachable"))
        rows.append(Check("runtimes", "fail", "not checked: Docker is not reachable"))
        rows.append(Check("egress proxy", "skip", "not checked: Docker is not reachable"))
    else:
        try:
            rows += _image_rows(client, images)
            rows += _runtime_rows(client.info())
            rows.append(_egress_row(home, egress))
        except SandboxError as exc:
            rows.append(Check("docker", "fail", str(exc)))
        except Exception as exc:
            rows.append(Check("docker", "fail", str(map_docker_error(exc))))
        finally:
            client.close()
    rows += _home_rows(home)
    return rows


def _image_rows(client: docker.DockerClient, refs: Sequence[str] | None) -> list[Check]:
    if refs:
        return [_ref_row(client, ref) for ref in refs]
    rows = []
    known = catalog()
    for image in (d for d in known if d.default):
        rows.append(_catalog_row(client, image, known))
    return rows


def _catalog_row(client: docker.DockerClient, image: ImageDef, known: list[ImageDef]) -> Check:
    st = image_status(client, image, known)
    name = f"image {image.repository}"
    if not st.present:
        return Check(name, "fail", "missing", BUILD_HINT)
    if not st.current:
        # A stale image still runs sandboxes; it is worth a rebuild, not a failure.
        return Check(name, "warn", st.reason, BUILD_HINT)
    return Check(name, "ok", f"up to date ({(st.size or 0) / 1e6:.0f} MB)")


def _ref_row(client: docker.DockerClient, ref: str) -> Check:
    try:
        found = client.images.get(ref)
    except docker.errors.ImageNotFound:
        return Check(f"image {ref}", "fail", "missing", BUILD_HINT)
    except Exception as exc:
        return Check(f"image {ref}", "fail", str(map_docker_error(exc, image=ref)))
    return Check(f"image {ref}", "ok", f"present ({int(found.attrs.get('Size', 0)) / 1e6:.0f} MB)")


def _runtime_rows(info: dict[str, Any]) -> list[Check]:
    runtimes = info.get("Runtimes") or {}
    default = info.get("DefaultRuntime", "runc")
    rows = [
        Check("runtime runc", "ok", f"installed (default runtime: {default})")
        if "runc" in runtimes
        else Check("runtime runc", "fail", "not registered with the engine", "install runc")
    ]
    if "runsc" in runtimes:
        rows.append(Check("runtime runsc", "ok", "installed (gVisor; spec runtime=runsc)"))
    else:
        rows.append(Check("runtime runsc", "skip", "not installed (optional: gVisor)"))
    return rows


def _egress_row(home: Path, options: EgressOptions | None) -> Check:
    async def status() -> ProxyStatus:
        backend = DockerBackend(home, egress=options)
        try:
            return await backend.egress.status()
        finally:
            await backend.aclose()  # its own client and threads (status starts nothing)

    name = "egress proxy"
    try:
        st = asyncio.run(status())
    except SandboxError as exc:
        return Check(name, "warn", f"not checked: {exc}")
    if st.health == "down":
        return Check(name, "fail", describe(st), "run `corral sandbox egress start`")
    if st.health == "off":
        return Check(
            name, "ok", "not running; no sandbox needs it (an allowlist sandbox starts it)"
        )
    return Check(name, "ok", describe(st))


def _home_rows(home: Path) -> list[Check]:
    name = "data directory"
    try:
        home.mkdir(parents=True, exist_ok=True, mode=0o700)
        with tempfile.NamedTemporaryFile(dir=home, prefix=".doctor-"):
            pass
    except OSError as exc:
        return [
            Check(
                name,
                "fail",
                f"{home} is not writable ({exc.strerror or exc})",
                "set CORRAL_HOME to a writable folder",
            )
        ]
    rows = [Check(name, "ok", f"{home} writable")]
    free = shutil.disk_usage(home).free
    detail = f"{free / 1024**3:.1f} GiB free"
    if free < LOW_DISK:
        rows.append(Check("free disk", "warn", detail, "images and runs need a few GiB"))
    else:
        rows.append(Check("free disk", "ok", detail))
    return rows


_STYLE: dict[Level, str] = {
    "ok": "[green]ok[/]",
    "warn": "[yellow]warn[/]",
    "fail": "[red]FAIL[/]",
    "skip": "[dim]-[/]",
}


def doctor(
    image: Annotated[
        list[str] | None,
        typer.Option("--image", help="Check this image reference instead of the defaults."),
    ] = None,
) -> None:
    """Check Docker, the images, runtimes and the data directory."""
    settings = Settings.from_env()
    rows = run_checks(home=settings.home, images=image, egress=settings.egress_options())
    table = Table("check", "status", "detail")
    for row in rows:
        table.add_row(row.name, _STYLE[row.level], row.detail)
    console.print(table)
    for row in rows:
        if row.level in ("fail", "warn"):
            console.print(row.problem(), highlight=False, markup=False)
    if any(r.failed for r in rows):
        raise typer.Exit(EXIT_FAILED)
