"""Is an image present, and is it current? (Local look-ups only: no pull, no download.)"""

from __future__ import annotations

from dataclasses import dataclass

import docker
import docker.errors
import requests.exceptions

from sandbox.backends.docker_errors import map_docker_error
from sandbox.images.catalog import ImageDef, catalog
from sandbox.images.inputs import LABEL_INPUTS, inputs_hash
from sandbox.images.root import current_root, local_image_id


@dataclass(frozen=True)
class ImageStatus:
    name: str
    tag: str
    present: bool
    current: bool
    size: int | None
    """Bytes, when present."""
    reason: str
    """Why it is not current ("missing", "inputs changed", ...); "up to date" otherwise."""


def image_status(
    client: docker.DockerClient, image: ImageDef, known: list[ImageDef] | None = None
) -> ImageStatus:
    try:
        found = client.images.get(image.tag)
    except docker.errors.ImageNotFound:
        return ImageStatus(image.name, image.tag, False, False, None, "missing")
    except (docker.errors.DockerException, requests.exceptions.RequestException) as exc:
        raise map_docker_error(exc, image=image.tag) from exc
    size = int(found.attrs.get("Size", 0))

    parent_id: str | None
    if image.parent is None:
        root = current_root(client)
        parent_id = root[1] if root else None
    else:
        by_name = {d.name: d for d in (known or catalog())}
        parent_id = local_image_id(client, by_name[image.parent].tag)
    if parent_id is None:
        return ImageStatus(image.name, image.tag, True, False, size, "its base image is missing")
    label = found.labels.get(LABEL_INPUTS)
    if label is None:
        return ImageStatus(image.name, image.tag, True, False, size, "not built by corral")
    if label != inputs_hash(image.folder, parent_id):
        return ImageStatus(
            image.name, image.tag, True, False, size, "out of date (inputs or base changed)"
        )
    return ImageStatus(image.name, image.tag, True, True, size, "up to date")
