"""EgressManager: the Docker plumbing of `network: allowlist`.

Each allowlist sandbox gets its own internal Docker network (a /29 carved from
`EgressOptions.subnet_pool`): `.2` is the egress proxy, `.3` the sandbox, nothing else. The
bridge has no host address (`inhibit_ipv4`), so the sandbox cannot reach the host, the
controller's API, the Docker socket or other sandboxes; `internal=True` gives it no route out.
The proxy container (one per Corral home, `corral.role=egress`) sits on the normal bridge for
its way out and is connected to every sandbox network of its home.

Its lifecycle: started on demand by the first allowlist sandbox; restarted by the engine when it
crashes (`on-failure`) and by `heal` (the server's reaper, `corral sandbox egress start`) when it
is gone or stopped while sandboxes need it; removed once no sandbox needs it (`heal`, `prune`,
and `remove_if_unused` when a backend that used it closes). `status` says which of `ok`,
`idle`, `down`, `off` it is in.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import ipaddress
import os
import random
import shutil
import tempfile
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar

import docker
import docker.errors
import structlog
from docker.types import IPAMConfig, IPAMPool, LogConfig, Mount

from sandbox.egress.policy import EgressOptions, PolicyFile, Refusal, read_refusals
from sandbox.errors import SandboxError, SandboxNotFound, SpecError
from sandbox.spec import SandboxSpec

log = structlog.get_logger("corral.sandbox.egress")
T = TypeVar("T")
Runner = Callable[..., Awaitable[Any]]

PROXY_PORT = 3128
PROXY_SOURCE = Path(__file__).resolve().parent / "proxy.py"
CODE_MOUNT = "/opt/corral/egress"
POLICY_MOUNT = "/egress/policy"
LOG_MOUNT = "/egress/log"
ROLE_EGRESS = "egress"
ROLE_NET = "egress-net"
SUBNET_PREFIX = 29
ALLOCATE_TRIES = 16
NO_PROXY = "localhost,127.0.0.1"


@dataclass(frozen=True)
class Attachment:
    """How one allowlist sandbox is wired: its network, its address, the proxy's URL."""

    network: str
    sandbox_ip: str
    proxy_ip: str
    proxy_url: str

    def env(self) -> dict[str, str]:
        """Proxy settings every exec tool honours (curl, pip, requests, git, ...)."""
        return {
            "HTTP_PROXY": self.proxy_url,
            "HTTPS_PROXY": self.proxy_url,
            "http_proxy": self.proxy_url,
            "https_proxy": self.proxy_url,
            "NO_PROXY": NO_PROXY,
            "no_proxy": NO_PROXY,
            "PIP_PROXY": self.proxy_url,
            "CORRAL_PROXY": self.proxy_url,
        }


Health = Literal["ok", "idle", "down", "off"]
HEALTHS: tuple[Health, ...] = ("ok", "idle", "down", "off")


@dataclass(frozen=True)
class ProxyStatus:
    """The egress proxy of one home, as the engine sees it."""

    name: str
    running: bool
    exists: bool
    needed_by: list[str]
    """Sandboxes with an egress network (allowlist), which need the proxy."""
    restarts: int
    """Times the engine restarted it after a crash (its `on-failure` policy)."""
    started: str | None
    image: str

    @property
    def health(self) -> Health:
        """`ok`: running and needed; `idle`: running, no sandbox needs it (`prune` removes it);
        `down`: sandboxes need it and it is not running; `off`: neither."""
        if self.running:
            return "ok" if self.needed_by else "idle"
        return "down" if self.needed_by else "off"

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "health": self.health,
            "running": self.running,
            "needed_by": list(self.needed_by),
            "restarts": self.restarts,
            "started": self.started,
            "image": self.image,
        }


class EgressManager:
    """Networks and the proxy container of one Corral home.

    `run(fn, *args, **kw)` runs a blocking docker call off the event loop and maps its errors
    (the backend's `_run`); `client()` returns the backend's docker client.
    """

    def __init__(
        self,
        home: Path,
        labels: dict[str, str],
        run: Runner,
        client: Callable[[], docker.DockerClient],
        options: EgressOptions | None = None,
    ) -> None:
        self.home = home
        self.options = options or EgressOptions()
        self.dir = home / "egress"
        self.policy = PolicyFile(self.dir / "policy" / "policy.json")
        self.refusal_log = self.dir / "log" / "refusals.jsonl"
        self.proxy_name = "corral-egress-" + hashlib.sha256(str(home).encode()).hexdigest()[:12]
        self._labels = labels
        self._run = run
        self._client = client
        self._lock = asyncio.Lock()
        self.used = False
        """Whether this manager attached a sandbox (its owner then removes an unused proxy
        when it closes: a `corral run` leaves no proxy behind)."""
        self._pool = ipaddress.ip_network(self.options.subnet_pool)
        if self._pool.prefixlen > SUBNET_PREFIX or self._pool.version != 4:
            raise SpecError(f"subnet_pool {self._pool} must be an IPv4 network of /29 or larger")

    @staticmethod
    def network_name(sandbox_id: str) -> str:
        return f"corral-net-{sandbox_id}"

    # -- sandboxes ------------------------------------------------------------------------
    async def attach(self, sandbox_id: str, spec: SandboxSpec) -> Attachment:
        """Create the sandbox's network, connect the proxy and register its policy.

        The policy is in place before the sandbox starts, so its first request is already
        judged; an address without a policy is refused (`unknown_client`).
        """
        if not spec.allowlist:
            raise SpecError("network 'allowlist' needs at least one domain in allowlist")
        name = self.network_name(sandbox_id)
        self.used = True
        async with self._lock:
            proxy_id = await self._ensure_proxy()
            subnet = await self._create_network(name, sandbox_id)
        hosts = list(subnet.hosts())
        proxy_ip, sandbox_ip = str(hosts[1]), str(hosts[2])
        try:
            try:
                await self._run(
                    self._client().api.connect_container_to_network,
                    proxy_id,
                    name,
                    ipv4_address=proxy_ip,
                )
            except SandboxNotFound:
                # Another process (`corral sandbox gc`, a `corral run` ending) removed the proxy
                # as unused between its start and our network: start it again; it joins every
                # sandbox network, ours included.
                async with self._lock:
                    await self._ensure_proxy()
            self.policy.put(
                sandbox_ip,
                {
                    "sandbox": sandbox_id,
                    "allow": [d.lower().rstrip(".") for d in spec.allowlist],
                    "private": list(self.options.allow_private),
                    "hosts": dict(self.options.hosts),
                },
            )
        except BaseException:
            await self.detach(sandbox_id)
            raise
        log.info("egress.attached", sandbox=sandbox_id, network=name, subnet=str(subnet))
        return Attachment(name, sandbox_ip, proxy_ip, f"http://{proxy_ip}:{PROXY_PORT}")

    def container_kwargs(self, attachment: Attachment) -> dict[str, Any]:
        """`create_container` arguments that put a sandbox on its network at its address."""
        api = self._client().api
        endpoint = api.create_endpoint_config(ipv4_address=attachment.sandbox_ip)
        config = api.create_networking_config({attachment.network: endpoint})  # type: ignore[arg-type]
        return {"networking_config": config}

    async def detach(self, sandbox_id: str) -> None:
        """Drop the policy, disconnect the proxy and remove the network. Idempotent."""
        self.policy.drop(sandbox_id)
        name = self.network_name(sandbox_id)
        api = self._client().api
        with contextlib.suppress(SandboxError):
            await self._run(
                api.disconnect_container_from_network, self.proxy_name, name, force=True
            )
        with contextlib.suppress(SandboxNotFound):
            await self._run(api.remove_network, name)

    def refusals(self, sandbox_id: str, offset: int = 0) -> tuple[list[Refusal], int]:
        return read_refusals(self.refusal_log, sandbox_id, offset)

    # -- the proxy's lifecycle ---------------------------------------------------------------
    async def status(self) -> ProxyStatus:
        api = self._client().api
        nets = await self._run(api.networks, filters={"label": self._label_filter(ROLE_NET)})
        needed = sorted(
            str((n.get("Labels") or {}).get("corral.sandbox", "")) for n in nets if n.get("Labels")
        )
        try:
            info = await self._run(api.inspect_container, self.proxy_name)
        except SandboxNotFound:
            return ProxyStatus(self.proxy_name, False, False, needed, 0, None, self.options.image)
        state = info.get("State") or {}
        running = bool(state.get("Running")) and not state.get("Restarting")
        return ProxyStatus(
            name=self.proxy_name,
            running=running,
            exists=True,
            needed_by=needed,
            restarts=int(info.get("RestartCount") or 0),
            started=str(state.get("StartedAt")) if running else None,
            image=str((info.get("Config") or {}).get("Image") or self.options.image),
        )

    async def heal(self, live: set[str]) -> str | None:
        """Keep the proxy in the state the sandboxes need: start it again (re-wired to every
        sandbox network) when a live sandbox needs it and it is not running; remove it when no
        sandbox network is left. Returns `"restarted"`, `"removed"` or None (nothing to do).

        Networks of gone sandboxes are left to `prune` (reconcile, `corral sandbox gc`): a
        network whose sandbox is still being created looks the same from here."""
        current = await self.status()
        if not current.running and any(s in live for s in current.needed_by):
            async with self._lock:
                await self._ensure_proxy()
            log.warning("egress.proxy_restarted", container=self.proxy_name)
            return "restarted"
        if current.exists and not current.needed_by and await self.remove_if_unused():
            return "removed"
        return None

    async def remove_if_unused(self) -> bool:
        """Remove the proxy when no sandbox network is left; returns whether it did."""
        api = self._client().api
        async with self._lock:  # attach creates networks under this lock: no race with it
            nets = await self._run(api.networks, filters={"label": self._label_filter(ROLE_NET)})
            if nets:
                return False
            try:
                await self._run(api.remove_container, self.proxy_name, force=True)
            except SandboxNotFound:
                return False
        log.info("egress.proxy_removed", container=self.proxy_name, reason="unused")
        return True

    async def stop(self) -> bool:
        """Remove the proxy container (allowlist sandboxes lose their way out until `heal` or
        the next allowlist sandbox starts it again). Returns whether it existed."""
        async with self._lock:
            try:
                await self._run(self._client().api.remove_container, self.proxy_name, force=True)
            except SandboxNotFound:
                return False
        log.info("egress.proxy_stopped", container=self.proxy_name)
        return True

    # -- reconcile --------------------------------------------------------------------------
    async def prune(self, live: set[str]) -> list[str]:
        """Remove networks of sandboxes not in `live`, and the proxy when none is left.

        Returns the names of what was removed.
        """
        api = self._client().api
        removed: list[str] = []
        async with self._lock:
            nets = await self._run(api.networks, filters={"label": self._label_filter(ROLE_NET)})
            keep = 0
            for net in nets:
                owner = (net.get("Labels") or {}).get("corral.sandbox", "")
                if owner in live:
                    keep += 1
                    continue
                await self.detach(owner)
                removed.append(str(net.get("Name")))
            self.policy.keep_only(live)
            if keep == 0:
                with contextlib.suppress(SandboxNotFound):
                    await self._run(api.remove_container, self.proxy_name, force=True)
                    removed.append(self.proxy_name)
        return removed

    # -- internals ----------------------------------------------------------------------------
    def _label_filter(self, role: str) -> list[str]:
        return ["corral.managed=true", f"corral.home={self.home}", f"corral.role={role}"]

    async def _create_network(self, name: str, sandbox_id: str) -> ipaddress.IPv4Network:
        api = self._client().api
        rows = await self._run(api.networks)
        used: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = [
            ipaddress.ip_network(c["Subnet"], strict=False)
            for row in rows
            for c in ((row.get("IPAM") or {}).get("Config") or [])
            if c.get("Subnet")
        ]
        candidates: list[ipaddress.IPv4Network] = [
            ipaddress.IPv4Network(n) for n in self._pool.subnets(new_prefix=SUBNET_PREFIX)
        ]
        labels = {**self._labels, "corral.role": ROLE_NET, "corral.sandbox": sandbox_id}
        for _ in range(ALLOCATE_TRIES):
            subnet = random.choice(candidates)
            if any(subnet.overlaps(u) for u in used):
                continue
            gateway = str(next(iter(subnet.hosts())))
            try:
                await self._run(
                    api.create_network,
                    name,
                    driver="bridge",
                    internal=True,
                    labels=labels,
                    ipam=IPAMConfig(pool_configs=[IPAMPool(subnet=str(subnet), gateway=gateway)]),
                    # No host address on the bridge: the sandbox cannot reach any host port.
                    options={"com.docker.network.bridge.inhibit_ipv4": "true"},
                    check_duplicate=True,
                )
            except SandboxError as exc:
                if "overlap" in str(exc).lower():  # another controller took it meanwhile
                    used.append(subnet)
                    continue
                raise
            return subnet
        raise SandboxError(
            f"no free /{SUBNET_PREFIX} left in {self._pool} for a sandbox network",
            reason="network_exhausted",
        )

    async def _ensure_proxy(self) -> str:
        """The running proxy container's id (created, or re-created and re-wired, if needed)."""
        api = self._client().api
        try:
            info = await self._run(api.inspect_container, self.proxy_name)
            if (info.get("State") or {}).get("Running"):
                return str(info["Id"])
            await self._run(api.remove_container, self.proxy_name, force=True)
        except SandboxNotFound:
            pass
        code = self._stage_code()
        for sub, mode in (("policy", 0o755), ("log", 0o777)):
            (self.dir / sub).mkdir(parents=True, exist_ok=True)
            os.chmod(self.dir / sub, mode)  # the proxy runs as uid 1000 and appends the log
        self.policy.create()
        host_config = api.create_host_config(
            mounts=[
                Mount(CODE_MOUNT, str(code), type="bind", read_only=True),
                Mount(POLICY_MOUNT, str(self.dir / "policy"), type="bind", read_only=True),
                Mount(LOG_MOUNT, str(self.dir / "log"), type="bind", read_only=False),
            ],
            read_only=True,
            cap_drop=["ALL"],
            security_opt=["no-new-privileges:true"],
            mem_limit=256 * 1024**2,
            pids_limit=256,
            init=True,
            network_mode="bridge",
            # The proxy joins every sandbox network: it must never route between them.
            sysctls={"net.ipv4.ip_forward": "0"},
            restart_policy={"Name": "on-failure", "MaximumRetryCount": 5},
            log_config=LogConfig(type="json-file", config={"max-size": "1m", "max-file": "1"}),
        )
        created = await self._run(
            api.create_container,
            self.options.image,
            command=[
                "python3",
                "-B",
                f"{CODE_MOUNT}/proxy.py",
                "--policy",
                f"{POLICY_MOUNT}/policy.json",
                "--log",
                f"{LOG_MOUNT}/refusals.jsonl",
                "--port",
                str(PROXY_PORT),
            ],
            user="1000:1000",
            name=self.proxy_name,
            labels={**self._labels, "corral.role": ROLE_EGRESS},
            host_config=host_config,
            err_image=self.options.image,
        )
        proxy_id = str(created["Id"])
        await self._run(api.start, proxy_id)
        await self._rewire(proxy_id)
        log.info("egress.proxy_started", container=self.proxy_name)
        return proxy_id

    async def _rewire(self, proxy_id: str) -> None:
        """A re-created proxy rejoins the networks of sandboxes that are still there."""
        api = self._client().api
        nets = await self._run(api.networks, filters={"label": self._label_filter(ROLE_NET)})
        for net in nets:
            config = ((net.get("IPAM") or {}).get("Config") or [{}])[0]
            if not config.get("Subnet"):
                continue
            proxy_ip = str(list(ipaddress.ip_network(config["Subnet"]).hosts())[1])
            with contextlib.suppress(SandboxError):
                await self._run(
                    api.connect_container_to_network, proxy_id, net["Name"], ipv4_address=proxy_ip
                )

    def _stage_code(self) -> Path:
        """proxy.py copied under the home (bind sources must be host paths; see stage_guest)."""
        data = PROXY_SOURCE.read_bytes()
        target = self.dir / "code" / hashlib.sha256(data).hexdigest()[:16]
        if target.is_dir():
            return target
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=".staging-"))
        (tmp / "proxy.py").write_bytes(data)
        os.chmod(tmp, 0o755)
        os.chmod(tmp / "proxy.py", 0o644)
        try:
            os.rename(tmp, target)
        except OSError:
            shutil.rmtree(tmp, ignore_errors=True)
        return target
