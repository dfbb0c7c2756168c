"""DockerBackend: one hardened container per sandbox, through the docker SDK.

docker-py is blocking, so every engine call runs on a private thread pool (never on the event
loop). Every container carries labels (`corral.managed`, `corral.home`, `corral.sandbox`,
`corral.spec`) so a new controller process finds what an old one left and reconciles it.
"""

from __future__ import annotations

import asyncio
import builtins
import compileall
import contextlib
import functools
import hashlib
import importlib.util
import json
import os
import secrets
import shutil
import subprocess
import sysconfig
import tempfile
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import docker
import docker.errors
import structlog
from docker.types import LogConfig, Mount, Ulimit

from sandbox.backends.base import ReconcileReport, SandboxHandle, SandboxStatus
from sandbox.backends.docker_errors import map_docker_error
from sandbox.egress import Attachment, EgressManager, EgressOptions, Refusal
from sandbox.errors import RuntimeUnavailable, SandboxError, SandboxNotFound
from sandbox.guest.privs import AS_AGENT
from sandbox.rpc import GUEST_DIR, guest_command
from sandbox.spec import SandboxSpec

log = structlog.get_logger("corral.sandbox.docker")
T = TypeVar("T")

GUEST_MOUNT = "/opt/corral/corral_guest"
RPC_DIR = "/run/corral"
RPC_SOCKET = f"{RPC_DIR}/rpc.sock"
GUEST_USER = "0:0"
"""The tool server starts as root with CAP_SETUID/CAP_SETGID only, binds its socket, then acts
as the agent with real and saved uid 0 (sandbox/guest/privs.py): the agent's processes cannot
signal, ptrace or impersonate it."""
LABEL_LAYOUT = "corral.layout"
LAYOUT = "2"
"""Host-folder layout of a sandbox; containers of another layout are not adopted."""
LABEL_MANAGED = "corral.managed"
LABEL_HOME = "corral.home"
LABEL_ID = "corral.sandbox"
LABEL_SPEC = "corral.spec"
LABEL_ROLE = "corral.role"
LAST_USED = "last_used"
RPC_SUBDIR = "rpc"


def agent_uid() -> int:
    """The agent's uid. Never the controller's own: the agent must not own the controller's
    folders (a desktop user with Docker access is often uid 1000)."""
    return 1001 if os.geteuid() == 1000 else 1000


def agent_user() -> str:
    """`UID:GID` of the agent, for engine execs (the interactive shell)."""
    return f"{agent_uid()}:{agent_uid()}"


def container_memory(spec: SandboxSpec) -> int:
    """The memory cgroup limit: the workspace and /tmp are tmpfs, whose pages count against
    the cgroup, so they get room of their own on top of `spec.memory`. A full workspace is then
    ENOSPC for the writer, not an OOM kill of every process in the sandbox."""
    return spec.memory + spec.disk + spec.tmp_size


def new_sandbox_id() -> str:
    return "sb-" + secrets.token_hex(6)


class DockerBackend:
    """Provision sandboxes as Docker containers. `home` scopes everything this instance sees."""

    def __init__(
        self,
        home: Path,
        *,
        client: docker.DockerClient | None = None,
        max_workers: int = 32,
        egress: EgressOptions | None = None,
    ) -> None:
        self.home = Path(home).resolve()
        self.sandboxes_dir = self.home / "sandboxes"
        self._client = client
        self._pool = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="corral-docker")
        self._handles: dict[str, SandboxHandle] = {}
        self._starting: set[str] = set()  # created here, not yet used once (reap_idle skips)
        self._runtimes: set[str] | None = None
        self._guest: Path | None = None
        self._egress_options = egress
        self._egress: EgressManager | None = None

    # -- plumbing -------------------------------------------------------------------------
    @property
    def client(self) -> docker.DockerClient:
        if self._client is None:
            try:
                self._client = docker.from_env(max_pool_size=64)
            except docker.errors.DockerException as exc:
                raise map_docker_error(exc) from exc
        return self._client

    async def _run(
        self,
        fn: Callable[..., T],
        *args: Any,
        err_image: str | None = None,
        err_sandbox: str | None = None,
        **kwargs: Any,
    ) -> T:
        """Run a blocking engine call off the loop; errors are mapped (err_* give context)."""
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._pool, functools.partial(fn, *args, **kwargs))
        except Exception as exc:
            raise map_docker_error(exc, image=err_image, sandbox_id=err_sandbox) from exc

    @property
    def egress(self) -> EgressManager:
        """Networks and proxy of `network: allowlist` sandboxes (created on first use)."""
        if self._egress is None:
            labels = {LABEL_MANAGED: "true", LABEL_HOME: str(self.home)}
            self._egress = EgressManager(
                self.home, labels, self._run, lambda: self.client, self._egress_options
            )
        return self._egress

    async def network_refusals(
        self, sandbox_id: str, offset: int = 0
    ) -> tuple[builtins.list[Refusal], int]:
        """Requests the egress proxy refused for this sandbox, from byte `offset` of the log;
        returns them and the offset to pass next time."""
        return await asyncio.to_thread(self.egress.refusals, sandbox_id, offset)

    async def ping(self) -> str:
        """Return the engine's version; raise BackendUnavailable when it does not answer."""
        info = await self._run(lambda: self.client.version())
        return str(info.get("Version", "?"))

    async def _check_runtime(self, runtime: str) -> None:
        if runtime == "runc":
            return
        if self._runtimes is None:
            info = await self._run(lambda: self.client.info())
            self._runtimes = set((info.get("Runtimes") or {}).keys())
        if runtime not in self._runtimes:
            # Fail closed: never fall back to runc when isolation was asked for.
            raise RuntimeUnavailable(
                f"OCI runtime {runtime!r} is not installed in the Docker Engine "
                f"(available: {', '.join(sorted(self._runtimes)) or 'none'}); refusing to fall back"
            )

    # -- lifecycle -----------------------------------------------------------------------
    async def create(
        self, spec: SandboxSpec, *, labels: Mapping[str, str] | None = None
    ) -> SandboxHandle:
        await self._check_runtime(spec.runtime)
        sandbox_id = new_sandbox_id()
        host_dir = self.sandboxes_dir / sandbox_id
        self._starting.add(sandbox_id)  # not idle before its first use (`touch`)
        # Both folders are the controller's alone (0700). Only `rpc/` is mounted, and only the
        # guest's root-started server writes there (its socket), before it drops to the agent.
        self.sandboxes_dir.mkdir(parents=True, mode=0o700, exist_ok=True)
        host_dir.mkdir(mode=0o700)
        (host_dir / RPC_SUBDIR).mkdir(mode=0o700)
        (host_dir / LAST_USED).touch(mode=0o600)
        all_labels = {
            **spec.labels,
            **(labels or {}),
            LABEL_MANAGED: "true",
            LABEL_HOME: str(self.home),
            LABEL_ID: sandbox_id,
            LABEL_SPEC: spec.model_dump_json(),
            LABEL_LAYOUT: LAYOUT,
        }
        all_labels.setdefault(LABEL_ROLE, "sandbox")
        api = self.client.api
        attachment: Attachment | None = None
        try:
            if spec.network == "allowlist":
                attachment = await self.egress.attach(sandbox_id, spec)
            kwargs = self._container_kwargs(spec, sandbox_id, host_dir, all_labels, attachment)
            created = await self._run(
                api.create_container,
                spec.image,
                err_image=spec.image,
                err_sandbox=sandbox_id,
                **kwargs,
            )
            container_id = str(created["Id"])
            await self._run(api.start, container_id, err_sandbox=sandbox_id)
        except BaseException:
            self._starting.discard(sandbox_id)
            await self._discard(sandbox_id, host_dir)
            if attachment is not None:
                await self.egress.detach(sandbox_id)
            raise
        handle = SandboxHandle(
            id=sandbox_id,
            container_id=container_id,
            spec=spec,
            rpc_path=host_dir / RPC_SUBDIR / "rpc.sock",
            host_dir=host_dir,
            created=time.time(),
            labels=all_labels,
        )
        self._handles[sandbox_id] = handle
        log.info("sandbox.created", sandbox=sandbox_id, image=spec.image, network=spec.network)
        return handle

    def _container_kwargs(
        self,
        spec: SandboxSpec,
        sandbox_id: str,
        host_dir: Path,
        labels: dict[str, str],
        attachment: Attachment | None = None,
    ) -> dict[str, Any]:
        api = self.client.api
        uid = agent_uid()
        mounts = [
            Mount(GUEST_MOUNT, str(self._guest_dir()), type="bind", read_only=True),
            Mount(RPC_DIR, str(host_dir / RPC_SUBDIR), type="bind", read_only=False),
        ]
        for m in spec.data:
            src = Path(m.source).resolve()
            if not src.exists():
                raise SandboxError(f"data source {src} does not exist", reason="invalid_spec")
            mounts.append(Mount(m.target, str(src), type="bind", read_only=True))
        host_config = api.create_host_config(
            mounts=mounts,
            read_only=True,
            tmpfs={
                "/tmp": f"rw,nosuid,nodev,size={spec.tmp_size},mode=1777",
                spec.workdir: f"rw,nosuid,nodev,size={spec.disk},uid={uid},gid={uid},mode=0755",
            },
            cap_drop=["ALL"],
            cap_add=_guest_capabilities(),
            security_opt=["no-new-privileges:true"],
            mem_limit=container_memory(spec),
            memswap_limit=container_memory(spec),  # no swap
            cgroupns="private",
            nano_cpus=int(spec.cpus * 1e9),
            pids_limit=spec.pids,
            ulimits=[
                Ulimit(name="nofile", soft=4096, hard=4096),
                Ulimit(name="core", soft=0, hard=0),
            ],
            init=True,
            ipc_mode="private",
            network_mode=attachment.network if attachment else _network_mode(spec),
            # allowlist: names resolve at the proxy only. Docker's embedded DNS forwards external
            # queries (from the sandbox's namespace) to the proxy's address, where nothing
            # answers on port 53, so DNS cannot carry data out even on engines that forward
            # queries from internal networks; lookups give up after 1 s instead of 10 s.
            dns=[attachment.proxy_ip] if attachment else None,
            dns_opt=["timeout:1", "attempts:1"] if attachment else None,
            runtime=spec.runtime,
            log_config=LogConfig(type="json-file", config={"max-size": "1m", "max-file": "1"}),
        )
        env = {
            **spec.env,
            "CORRAL_SANDBOX_ID": sandbox_id,
            "HOME": spec.workdir,
            "LANG": "C.UTF-8",
            **(attachment.env() if attachment else {}),
        }
        extra = self.egress.container_kwargs(attachment) if attachment else {}
        return {
            **extra,
            "command": guest_command(RPC_SOCKET, spec.workdir, agent=f"{uid}:{uid}"),
            "user": GUEST_USER,
            "working_dir": spec.workdir,
            "environment": env,
            "labels": labels,
            "hostname": "sandbox",
            "name": f"corral-{sandbox_id}",
            "host_config": host_config,
            "network_disabled": spec.network == "none",
        }

    def _guest_dir(self) -> Path:
        """The guest code, copied under `home` (content-addressed, once per version).

        Bind-mount sources are host paths: when the controller itself runs in a container
        (compose.yaml), its installed package is not on the host, but `CORRAL_HOME` is mounted
        at the same path on both sides.
        """
        if self._guest is None:
            self._guest = stage_guest(self.home / "guest")
        return self._guest

    async def _discard(self, sandbox_id: str, host_dir: Path) -> None:
        with contextlib.suppress(SandboxError):
            await self._run(
                self.client.api.remove_container, f"corral-{sandbox_id}", force=True, v=True
            )
        shutil.rmtree(host_dir, ignore_errors=True)

    async def get(self, sandbox_id: str) -> SandboxHandle:
        if sandbox_id in self._handles:
            return self._handles[sandbox_id]
        found = await self.list({LABEL_ID: sandbox_id})
        if not found:
            raise SandboxNotFound(f"sandbox {sandbox_id} not found")
        return found[0]

    async def list(self, labels: Mapping[str, str] | None = None) -> list[SandboxHandle]:
        filters = [f"{LABEL_MANAGED}=true", f"{LABEL_HOME}={self.home}"]
        filters += [f"{k}={v}" for k, v in (labels or {}).items()]
        rows = await self._run(self.client.api.containers, all=True, filters={"label": filters})
        handles = []
        for row in rows:
            handle = self._handle_from_labels(
                str(row["Id"]), row.get("Labels") or {}, row.get("Created")
            )
            if handle is not None:
                handles.append(handle)
        return handles

    def _handle_from_labels(
        self, container_id: str, labels: dict[str, str], created: Any
    ) -> SandboxHandle | None:
        sandbox_id = labels.get(LABEL_ID)
        if not sandbox_id:
            return None
        if sandbox_id in self._handles:
            return self._handles[sandbox_id]
        try:
            spec = SandboxSpec.model_validate_json(labels.get(LABEL_SPEC, "{}"))
        except ValueError:
            spec = SandboxSpec()
        host_dir = self.sandboxes_dir / sandbox_id
        return SandboxHandle(
            id=sandbox_id,
            container_id=container_id,
            spec=spec,
            rpc_path=host_dir / RPC_SUBDIR / "rpc.sock",
            host_dir=host_dir,
            created=float(created) if isinstance(created, int | float) else time.time(),
            labels=dict(labels),
        )

    async def status(self, sandbox_id: str) -> SandboxStatus:
        handle = await self.get(sandbox_id)
        data = await self._run(
            self.client.api.inspect_container, handle.container_id, err_sandbox=sandbox_id
        )
        state = data.get("State") or {}
        running = bool(state.get("Running"))
        return SandboxStatus(
            running=running,
            paused=bool(state.get("Paused")),
            exit_code=None if running else int(state.get("ExitCode", 0)),
            oom_killed=bool(state.get("OOMKilled")),
            error=state.get("Error") or None,
        )

    async def pause(self, sandbox_id: str) -> None:
        handle = await self.get(sandbox_id)
        await self._run(self.client.api.pause, handle.container_id, err_sandbox=sandbox_id)

    async def resume(self, sandbox_id: str) -> None:
        handle = await self.get(sandbox_id)
        await self._run(self.client.api.unpause, handle.container_id, err_sandbox=sandbox_id)

    async def destroy(self, sandbox_id: str) -> None:
        """Remove the container, its tmpfs workspace and its host folder. Idempotent."""
        self._starting.discard(sandbox_id)
        handle = self._handles.pop(sandbox_id, None)
        target = handle.container_id if handle else f"corral-{sandbox_id}"
        with contextlib.suppress(SandboxNotFound):
            await self._run(
                self.client.api.remove_container, target, force=True, v=True, err_sandbox=sandbox_id
            )
        shutil.rmtree(self.sandboxes_dir / sandbox_id, ignore_errors=True)
        if handle is None or handle.spec.network == "allowlist":
            await self.egress.detach(sandbox_id)
        log.info("sandbox.destroyed", sandbox=sandbox_id)

    def touch(self, handle: SandboxHandle) -> None:
        """Record activity. The idle-TTL clock is the mtime of a file in the controller's own
        folder (never mounted into the sandbox), so it survives controller restarts and the
        agent cannot move it."""
        with contextlib.suppress(FileNotFoundError):
            os.utime(handle.host_dir / LAST_USED, follow_symlinks=False)
        self._starting.discard(handle.id)

    def last_used(self, handle: SandboxHandle) -> float:
        try:
            return os.lstat(handle.host_dir / LAST_USED).st_mtime
        except FileNotFoundError:
            return handle.created

    async def reap_idle(self, *, now: float | None = None) -> builtins.list[str]:
        """Destroy sandboxes idle longer than their spec's idle_ttl. Returns their ids."""
        now = time.time() if now is None else now
        reaped: builtins.list[str] = []
        for handle in await self.list():
            ttl = handle.spec.idle_ttl
            if handle.id in self._starting:
                continue  # a slow start is not idleness: the clock runs from its first use
            if ttl is not None and now - self.last_used(handle) > ttl:
                await self.destroy(handle.id)
                reaped.append(handle.id)
        return reaped

    async def reconcile(self, *, adopt: bool = True) -> ReconcileReport:
        """Find what an earlier controller (same home) left: adopt live sandboxes, remove the rest.

        Pool members and stopped/dead containers are removed; host folders without a container
        are deleted.
        """
        adopted: list[str] = []
        removed: list[str] = []
        for handle in await self.list():
            if handle.id in self._starting:
                continue  # being created by this process (a pool refill), not left over
            claimed = (handle.host_dir / "claimed").exists()
            role = "sandbox" if claimed else handle.labels.get(LABEL_ROLE)
            current = handle.labels.get(LABEL_LAYOUT) == LAYOUT
            keep = adopt and current and role == "sandbox" and handle.host_dir.exists()
            if keep:
                try:
                    keep = (await self.status(handle.id)).running
                except SandboxNotFound:
                    keep = False
            if keep:
                self._handles[handle.id] = handle
                adopted.append(handle.id)
            else:
                await self.destroy(handle.id)
                removed.append(handle.id)
        known = set(adopted)
        if self.sandboxes_dir.exists():
            for d in self.sandboxes_dir.iterdir():
                if d.name not in known | self._handles.keys() | self._starting:
                    shutil.rmtree(d, ignore_errors=True)
        # Sandbox networks without a live sandbox, and the egress proxy once none needs it.
        await self.egress.prune(known | set(self._handles) | self._starting)
        log.info("sandbox.reconciled", adopted=len(adopted), removed=len(removed))
        return ReconcileReport(adopted=adopted, removed=removed)

    async def aclose(self) -> None:
        if self._egress is not None and self._egress.used:
            # Whoever started the proxy and leaves it unused removes it (`corral run`).
            with contextlib.suppress(SandboxError):
                await self._egress.remove_if_unused()
        self._pool.shutdown(wait=False, cancel_futures=True)
        if self._client is not None:
            self._client.close()
            self._client = None


def stage_guest(root: Path) -> Path:
    """Copy the guest's .py files to `root/<content hash>` (atomically) and return that folder."""
    files = sorted(
        p for p in GUEST_DIR.iterdir() if p.suffix in (".py", ".js", ".c") and p.is_file()
    )
    digest = hashlib.sha256(importlib.util.MAGIC_NUMBER)
    for f in files:
        digest.update(f.name.encode() + b"\0" + f.read_bytes() + b"\0")
    target = root / digest.hexdigest()[:16]
    if target.is_dir():
        return target
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=root, prefix=".staging-"))
    for f in files:
        shutil.copy2(f, tmp / f.name)
    # Bytecode compiled here saves every sandbox's guest from compiling it at start (the mount
    # is read-only). CPython 3.11.x share one bytecode format; another version ignores it.
    compileall.compile_dir(tmp, quiet=1, legacy=False)
    for d in [tmp, *tmp.rglob("*")]:
        if d.is_dir():
            os.chmod(d, 0o755)
    os.chmod(tmp / os.path.basename(AS_AGENT), 0o755)  # run as Playwright's node (guest/privs.py)
    _build_dropexec(tmp)
    _build_agentspawn(tmp)
    try:
        os.rename(tmp, target)
    except OSError:  # another process staged the same version first
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def _build_dropexec(folder: Path) -> None:
    """Compile the guest's static `dropexec` helper (guest/spawn.py says why). Without a C
    compiler the guest starts children by forking itself: slower, same behaviour."""
    _compile(folder, "dropexec.c", "dropexec", ["-static"])


def _build_agentspawn(folder: Path) -> None:
    """Compile the guest's `_agentspawn` extension (stable ABI, guest/agentspawn.c): one exec
    per command instead of dropexec's two. Needs this Python's headers too; without them the
    guest uses dropexec."""
    include = sysconfig.get_paths().get("include", "")
    if not os.path.isfile(os.path.join(include, "Python.h")):
        log.info("guest.agentspawn_skipped", reason="no Python headers on this host")
        return
    _compile(folder, "agentspawn.c", "_agentspawn.abi3.so", ["-shared", "-fPIC", f"-I{include}"])


def _compile(folder: Path, source: str, target: str, flags: list[str]) -> None:
    """cc `folder/source` into `folder/target` (0755); on any failure, log and leave no target."""
    cc = shutil.which("cc") or shutil.which("gcc")
    out = folder / target
    if cc is None:
        log.warning("guest.build_skipped", target=target, reason="no C compiler on this host")
        return
    try:
        subprocess.run(
            [cc, "-O2", "-s", *flags, "-o", str(out), str(folder / source)],
            check=True,
            capture_output=True,
            timeout=120,
        )
        os.chmod(out, 0o755)
    except (OSError, subprocess.SubprocessError) as exc:
        out.unlink(missing_ok=True)
        log.warning("guest.build_skipped", target=target, reason=str(exc)[:200])


def _guest_capabilities() -> list[str]:
    """What the root-started tool server keeps: enough to become the agent. A controller that is
    not root owns the socket folder itself, so the server also needs to write there once."""
    caps = ["SETUID", "SETGID"]
    return caps if os.geteuid() == 0 else [*caps, "DAC_OVERRIDE"]


def _network_mode(spec: SandboxSpec) -> str:
    # allowlist sandboxes get their own network from EgressManager.attach (see create()).
    return "none" if spec.network == "none" else "bridge"


def spec_from_labels(labels: Mapping[str, str]) -> SandboxSpec:
    return SandboxSpec.model_validate(json.loads(labels.get(LABEL_SPEC, "{}")))
