"""Build images with the docker SDK (classic builder, streamed), skipping current ones."""

from __future__ import annotations

import tarfile
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import IO, Any

import docker
import docker.errors
import requests.exceptions

from sandbox.backends.docker_errors import IMAGE_HINT as BUILD_HINT
from sandbox.backends.docker_errors import map_docker_error
from sandbox.errors import ImageNotFound, SandboxError
from sandbox.images.catalog import ImageDef, catalog
from sandbox.images.inputs import (
    LABEL_INPUTS,
    LABEL_PARENT,
    context_files,
    inputs_hash,
)
from sandbox.images.reporting import BuildReporter, BuildResult, NullReporter
from sandbox.images.root import ensure_root, local_image_id
from sandbox.images.wheels import default_cache, download_wheels

BUILD_READ_TIMEOUT = 3600
"""Seconds of builder silence before giving up (a stuck build, not a slow one)."""


def build_images(
    client: docker.DockerClient,
    images: Sequence[ImageDef],
    *,
    force: bool = False,
    reporter: BuildReporter | None = None,
    wheel_cache: Path | None = None,
    pull: bool = True,
) -> list[BuildResult]:
    """Build each image (parents first, as `select` orders them) unless it is current.

    `force` rebuilds without the layer cache (fresh Debian packages). Returns one result per
    image; the Debian root is ensured first when any image needs it.
    """
    rep = reporter or NullReporter()
    cache = wheel_cache or default_cache()
    by_name = {d.name: d for d in catalog()} | {d.name: d for d in images}
    results: list[BuildResult] = []
    root: BuildResult | None = None
    try:
        for image in images:
            if image.parent is None:
                if root is None:
                    root = ensure_root(client, rep, pull=pull)
                    if root.action != "found":
                        rep.done(root)
                parent_ref, parent_id = root.tag, root.image_id
            else:
                parent_ref = by_name[image.parent].tag
                found = local_image_id(client, parent_ref)
                if found is None:
                    raise ImageNotFound(
                        f"{image.tag} needs {parent_ref}, which is not built: {BUILD_HINT}"
                    )
                parent_id = found
            result = build_one(
                client, image, parent_ref, parent_id, force=force, reporter=rep, cache=cache
            )
            rep.done(result)
            results.append(result)
    except (docker.errors.DockerException, requests.exceptions.RequestException) as exc:
        # The boundary: whatever the SDK raised in between leaves as a SandboxError.
        raise map_docker_error(exc) from exc
    return results


def build_one(
    client: docker.DockerClient,
    image: ImageDef,
    parent_ref: str,
    parent_id: str,
    *,
    force: bool,
    reporter: BuildReporter,
    cache: Path,
) -> BuildResult:
    t0 = time.monotonic()
    digest = inputs_hash(image.folder, parent_id)
    old_id = None
    try:
        old = client.images.get(image.tag)
        old_id = str(old.id)
        if not force and old.labels.get(LABEL_INPUTS) == digest:
            return BuildResult(image.name, image.tag, "up to date", old_id, _size(old), 0.0)
    except docker.errors.ImageNotFound:
        pass
    except (docker.errors.DockerException, requests.exceptions.RequestException) as exc:
        raise map_docker_error(exc, image=image.tag) from exc

    wheels = []
    if (image.folder / "requirements.txt").is_file():
        reporter.stage(image.name, "downloading wheels")
        wheels = download_wheels(image.folder, cache)
    reporter.stage(image.name, f"building {image.tag} FROM {parent_ref}")
    # Each label is one more commit in the classic builder (seconds on fuse-overlayfs): two.
    labels = {LABEL_INPUTS: digest, LABEL_PARENT: parent_id}
    with tempfile.TemporaryFile() as ctx:
        _write_context(ctx, image.folder, wheels)
        new_id = _stream_build(client, image, ctx, parent_ref, labels, force, reporter)
    if old_id is not None and old_id != new_id:
        _remove_quietly(client, old_id)
    built = client.images.get(new_id)
    return BuildResult(image.name, image.tag, "built", new_id, _size(built), time.monotonic() - t0)


def _write_context(out: IO[bytes], folder: Path, wheels: list[Path]) -> None:
    """The build context tar: the image folder plus a wheels/ folder when it has pins."""
    with tarfile.open(fileobj=out, mode="w") as tar:
        for rel, path in context_files(folder):
            tar.add(path, arcname=rel, filter=_owned_by_root)
        if (folder / "requirements.txt").is_file():
            info = tarfile.TarInfo("wheels")
            info.type, info.mode = tarfile.DIRTYPE, 0o755
            tar.addfile(info)
            for whl in wheels:
                tar.add(whl, arcname=f"wheels/{whl.name}", filter=_owned_by_root)
    out.seek(0)


def _owned_by_root(info: tarfile.TarInfo) -> tarfile.TarInfo:
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    return info


def _stream_build(
    client: docker.DockerClient,
    image: ImageDef,
    ctx: IO[bytes],
    parent_ref: str,
    labels: dict[str, str],
    nocache: bool,
    reporter: BuildReporter,
) -> str:
    image_id = None
    try:
        with _long_read_timeout(client):  # a quiet apt step can outlast the default 60 s
            events: Iterator[dict[str, Any]] = client.api.build(
                fileobj=ctx,
                custom_context=True,
                tag=image.tag,
                buildargs={"BASE": parent_ref},
                labels=labels,
                nocache=nocache,
                rm=True,
                forcerm=True,
                pull=False,
                decode=True,
            )
            for event in events:
                if "error" in event:
                    raise SandboxError(
                        f"building {image.tag} failed: {str(event['error']).strip()}",
                        reason="image_build_failed",
                    )
                for line in str(event.get("stream", "")).splitlines():
                    if line.strip():
                        reporter.line(image.name, line.rstrip())
                aux = event.get("aux")
                if isinstance(aux, dict) and "ID" in aux:
                    image_id = str(aux["ID"])
    except (docker.errors.DockerException, requests.exceptions.RequestException) as exc:
        raise map_docker_error(exc, image=image.tag) from exc
    if image_id is None:  # older engines announce only "Successfully built <short id>"
        found = local_image_id(client, image.tag)
        if found is None:
            raise SandboxError(
                f"building {image.tag} produced no image", reason="image_build_failed"
            )
        image_id = found
    return image_id


@contextmanager
def _long_read_timeout(client: docker.DockerClient) -> Iterator[None]:
    saved = client.api.timeout
    client.api.timeout = BUILD_READ_TIMEOUT
    try:
        yield
    finally:
        client.api.timeout = saved


def _remove_quietly(client: docker.DockerClient, image_id: str) -> None:
    # The replaced image would linger as <none>; it stays if a child image still uses it.
    with suppress(docker.errors.DockerException, requests.exceptions.RequestException):
        client.images.remove(image_id, noprune=False)


def _size(image: Any) -> int:
    return int(image.attrs.get("Size", 0))
