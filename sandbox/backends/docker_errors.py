"""Map every docker SDK error to the most specific SandboxError (the boundary rule)."""

from __future__ import annotations

import docker.errors
import requests.exceptions

from sandbox.errors import (
    BackendUnavailable,
    ImageNotFound,
    RuntimeUnavailable,
    SandboxError,
    SandboxNotFound,
    SpecError,
)

IMAGE_HINT = "run `corral images build` to build it"


def map_docker_error(
    exc: BaseException, *, image: str | None = None, sandbox_id: str | None = None
) -> SandboxError:
    """Translate a docker-py (or transport) exception; never returns None."""
    if isinstance(exc, SandboxError):
        return exc
    text = _explain(exc)
    if isinstance(exc, docker.errors.ImageNotFound) or (
        isinstance(exc, docker.errors.NotFound) and image is not None and "image" in text.lower()
    ):
        return ImageNotFound(f"image {image or '?'} not found: {IMAGE_HINT}")
    if isinstance(exc, docker.errors.NotFound):
        return SandboxNotFound(f"sandbox {sandbox_id or '?'} not found")
    if isinstance(exc, docker.errors.APIError):
        low = text.lower()
        if "unknown runtime" in low or "runtime not found" in low:
            return RuntimeUnavailable(f"OCI runtime not available: {text}")
        if exc.status_code is not None and exc.status_code == 409:
            return SandboxError(f"conflict: {text}", reason="conflict")
        if exc.status_code is not None and 400 <= exc.status_code < 500:
            return SpecError(f"the engine refused the sandbox: {text}")
        return SandboxError(f"container engine error: {text}", reason="engine_error")
    if isinstance(exc, (docker.errors.InvalidArgument, docker.errors.InvalidVersion)):
        return SpecError(f"invalid request to the container engine: {text}")
    if isinstance(exc, docker.errors.TLSParameterError | docker.errors.InvalidConfigFile):
        return BackendUnavailable(f"Docker client configuration: {text}")
    if isinstance(
        exc,
        docker.errors.DockerException
        | requests.exceptions.ConnectionError
        | ConnectionError
        | FileNotFoundError,
    ):
        return BackendUnavailable(f"Docker Engine not reachable ({text}); is dockerd running?")
    if isinstance(exc, requests.exceptions.RequestException):
        return BackendUnavailable(f"Docker Engine request failed: {text}")
    return SandboxError(f"unexpected container engine error: {text}", reason="engine_error")


def _explain(exc: BaseException) -> str:
    if isinstance(exc, docker.errors.APIError):
        return str(exc.explanation or exc)
    return str(exc) or type(exc).__name__
