"""Sandbox images, built offline-capable from `images/<name>/Dockerfile`.

    from sandbox.images import build_images, select, image_status
    client = docker.from_env()
    build_images(client, select([]))           # corral/base + corral/browser, skips current
    image_status(client, select(["base"])[0])  # present? current? size

The calls block (docker SDK); async callers wrap them in `asyncio.to_thread`.
"""

from sandbox.images.build import build_images, build_one
from sandbox.images.catalog import (
    DEBIAN_LOCAL,
    DEBIAN_PULL,
    ImageDef,
    catalog,
    images_dir,
    select,
)
from sandbox.images.inputs import LABEL_INPUTS, inputs_hash, pinned_requirements
from sandbox.images.mirror import host_mirrors
from sandbox.images.reporting import BuildReporter, BuildResult, NullReporter
from sandbox.images.root import current_root, ensure_root
from sandbox.images.status import ImageStatus, image_status

__all__ = [
    "DEBIAN_LOCAL",
    "DEBIAN_PULL",
    "LABEL_INPUTS",
    "BuildReporter",
    "BuildResult",
    "ImageDef",
    "ImageStatus",
    "NullReporter",
    "build_images",
    "build_one",
    "catalog",
    "current_root",
    "ensure_root",
    "host_mirrors",
    "image_status",
    "images_dir",
    "inputs_hash",
    "pinned_requirements",
    "select",
]
