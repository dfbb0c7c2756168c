"""The Debian root every image builds on: local, pulled, or bootstrapped offline.

Order: `debian:bookworm-slim` present locally, then `corral/debian:bookworm` present locally,
then a pull of `debian:bookworm-slim` with a short timeout, then debootstrap + `docker import`.
The status check (`current_root`) looks locally only, in the same order, so the answer of a
build and of `corral images list` agree.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import docker
import docker.errors
import requests.exceptions

from sandbox.backends.docker_errors import map_docker_error
from sandbox.errors import SandboxError
from sandbox.images.catalog import DEBIAN_LOCAL, DEBIAN_PULL
from sandbox.images.mirror import deb822_for, host_mirrors
from sandbox.images.reporting import Action, BuildReporter, BuildResult

ROOT_NAME = "debian"
PULL_TIMEOUT = 15
"""Seconds without progress before a pull is given up (no registry fails in well under 1 s)."""

# What debian:bookworm-slim does to stay small; the bootstrapped root gets the same.
DPKG_EXCLUDES = """\
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
path-exclude /usr/share/lintian/*
"""
APT_CONF = 'APT::Install-Recommends "false";\nAPT::Install-Suggests "false";\n'
IMPORT_CHANGES = ["ENV LANG=C.UTF-8", 'CMD ["/bin/bash"]']


def local_image_id(client: docker.DockerClient, ref: str) -> str | None:
    try:
        return str(client.images.get(ref).id)
    except docker.errors.ImageNotFound:
        return None
    except (docker.errors.DockerException, requests.exceptions.RequestException) as exc:
        raise map_docker_error(exc, image=ref) from exc


def current_root(client: docker.DockerClient) -> tuple[str, str] | None:
    """(ref, id) of the Debian root a build would use now without network, or None."""
    for ref in (DEBIAN_PULL, DEBIAN_LOCAL):
        image_id = local_image_id(client, ref)
        if image_id is not None:
            return ref, image_id
    return None


def ensure_root(
    client: docker.DockerClient, reporter: BuildReporter, *, pull: bool = True
) -> BuildResult:
    """The Debian root image, making it if needed (pull, else debootstrap)."""
    t0 = time.monotonic()
    found = current_root(client)
    if found is not None:
        return _result(client, found[0], "found", t0)
    if pull and _try_pull(client, reporter):
        return _result(client, DEBIAN_PULL, "pulled", t0)
    bootstrap(client, reporter)
    return _result(client, DEBIAN_LOCAL, "bootstrapped", t0)


def _result(client: docker.DockerClient, ref: str, action: Action, t0: float) -> BuildResult:
    img = client.images.get(ref)
    return BuildResult(
        name=ROOT_NAME,
        tag=ref,
        action=action,
        image_id=str(img.id),
        size=int(img.attrs.get("Size", 0)),
        seconds=time.monotonic() - t0,
    )


def _try_pull(client: docker.DockerClient, reporter: BuildReporter) -> bool:
    reporter.stage(ROOT_NAME, f"pulling {DEBIAN_PULL}")
    repo, _, tag = DEBIAN_PULL.partition(":")
    api = client.api
    saved = api.timeout
    api.timeout = PULL_TIMEOUT  # per socket read: a stalled registry gives up quickly
    try:
        for event in api.pull(repo, tag=tag, stream=True, decode=True):
            if "error" in event:
                reporter.line(ROOT_NAME, f"pull failed: {event['error']}")
                return False
            if "status" in event and "id" not in event:
                reporter.line(ROOT_NAME, str(event["status"]))
        return True
    except (docker.errors.DockerException, requests.exceptions.RequestException) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        reporter.line(ROOT_NAME, f"pull failed, bootstrapping instead: {first}")
        return False
    finally:
        api.timeout = saved


def bootstrap(client: docker.DockerClient, reporter: BuildReporter) -> None:
    """debootstrap a minbase bookworm from the host's mirror and import it as DEBIAN_LOCAL."""
    _ensure_debootstrap(reporter)
    main, security = host_mirrors()
    tmp = Path(tempfile.mkdtemp(prefix="corral-debootstrap-", dir="/var/tmp"))
    try:
        reporter.stage(ROOT_NAME, f"debootstrap bookworm from {main}")
        _run(
            ["debootstrap", "--variant=minbase", "bookworm", str(tmp), main],
            reporter,
            "debootstrap failed",
        )
        _finish_root(tmp, main, security)
        reporter.stage(ROOT_NAME, f"importing as {DEBIAN_LOCAL}")
        _import(client, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _ensure_debootstrap(reporter: BuildReporter) -> None:
    if os.geteuid() != 0:
        raise SandboxError(
            "bootstrapping the Debian base image needs root (debootstrap): "
            "run `sudo apt-get install -y debootstrap && sudo .venv/bin/corral images build` once",
            reason="bootstrap_failed",
        )
    if shutil.which("debootstrap") is not None:
        return
    reporter.stage(ROOT_NAME, "installing debootstrap with apt-get")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (["apt-get", "update"], ["apt-get", "install", "-y", "debootstrap"]):
        _run(cmd, reporter, "could not install debootstrap", env=env)


def _finish_root(root: Path, main: str, security: str) -> None:
    """Make the bootstrapped tree look like debian:bookworm-slim: sources, small, no caches."""
    (root / "etc/apt/sources.list").unlink(missing_ok=True)
    (root / "etc/apt/sources.list.d/debian.sources").write_text(deb822_for(main, security))
    (root / "etc/dpkg/dpkg.cfg.d/docker").write_text(DPKG_EXCLUDES)
    (root / "etc/apt/apt.conf.d/docker-no-recommends").write_text(APT_CONF)
    for sub in ("var/lib/apt/lists", "var/cache/apt/archives", "var/log"):
        for p in (root / sub).glob("*"):
            if p.is_file() or p.is_symlink():
                p.unlink()


def _import(client: docker.DockerClient, root: Path) -> None:
    repo, _, tag = DEBIAN_LOCAL.partition(":")
    # --numeric-owner: ids must be the tree's own, not the host's names for them.
    with subprocess.Popen(
        ["tar", "--numeric-owner", "-C", str(root), "-c", "."], stdout=subprocess.PIPE
    ) as tar:
        assert tar.stdout is not None
        try:
            client.api.import_image(
                src=tar.stdout, repository=repo, tag=tag, changes=IMPORT_CHANGES, stream_src=True
            )
        except (docker.errors.DockerException, requests.exceptions.RequestException) as exc:
            tar.kill()
            raise map_docker_error(exc, image=DEBIAN_LOCAL) from exc
    if tar.returncode != 0:
        raise SandboxError(f"tar of the bootstrapped root failed ({tar.returncode})")


def _run(
    cmd: list[str], reporter: BuildReporter, what: str, env: dict[str, str] | None = None
) -> None:
    """Run a host command, streaming its output lines to the reporter."""
    last = ""
    try:
        with subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env
        ) as proc:
            assert proc.stdout is not None
            for raw in proc.stdout:
                last = raw.rstrip() or last
                reporter.line(ROOT_NAME, last)
    except OSError as exc:
        raise SandboxError(f"{what}: {exc}", reason="bootstrap_failed") from exc
    if proc.returncode != 0:
        raise SandboxError(f"{what} (exit {proc.returncode}): {last}", reason="bootstrap_failed")
