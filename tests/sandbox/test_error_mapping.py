"""Every docker SDK exception maps to one of ours (the boundary rule)."""

from __future__ import annotations

import inspect

import docker.errors
import pytest

from sandbox.backends.docker_errors import map_docker_error
from sandbox.errors import (
    BackendUnavailable,
    ImageNotFound,
    PathNotAllowed,
    SandboxError,
    SandboxNotFound,
    ToolError,
    tool_error,
)

DOCKER_ERRORS = [
    cls
    for _, cls in inspect.getmembers(docker.errors, inspect.isclass)
    if issubclass(cls, Exception) and cls.__module__ == "docker.errors"
]


def _make(cls: type[Exception]) -> Exception:
    if issubclass(cls, docker.errors.APIError):
        return cls("boom")
    if cls is docker.errors.ContainerError:
        return cls("c", 1, "cmd", "img", b"err")
    if cls is docker.errors.BuildError:
        return cls("reason", [])
    try:
        return cls("boom")
    except TypeError:
        return cls()


@pytest.mark.parametrize("cls", DOCKER_ERRORS, ids=lambda c: c.__name__)
def test_every_docker_error_is_mapped(cls: type[Exception]) -> None:
    mapped = map_docker_error(_make(cls))
    assert isinstance(mapped, SandboxError)
    assert str(mapped)


def test_specific_mappings() -> None:
    assert isinstance(
        map_docker_error(docker.errors.ImageNotFound("x"), image="corral/x"), ImageNotFound
    )
    assert "corral images build" in str(
        map_docker_error(docker.errors.ImageNotFound("x"), image="corral/x")
    )
    assert isinstance(
        map_docker_error(docker.errors.NotFound("x"), sandbox_id="sb-1"), SandboxNotFound
    )
    assert isinstance(
        map_docker_error(docker.errors.DockerException("conn refused")), BackendUnavailable
    )


def test_guest_error_codes_map_through_a_fixed_table() -> None:
    assert isinstance(tool_error("path_not_allowed", "no"), PathNotAllowed)
    # an unknown code from the untrusted side never selects a class by name
    e = tool_error("SystemExit", "x")
    assert type(e) is ToolError and e.code == "tool_error"
