"""How a build tells its caller what it is doing (the CLI renders this with rich)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

Action = Literal["built", "up to date", "found", "pulled", "bootstrapped"]


@dataclass(frozen=True)
class BuildResult:
    name: str
    tag: str
    action: Action
    image_id: str
    size: int
    """Bytes, as the engine reports the image size."""
    seconds: float


class BuildReporter(Protocol):
    def stage(self, image: str, text: str) -> None:
        """A new phase of one image's build ("building", "downloading wheels", ...)."""

    def line(self, image: str, text: str) -> None:
        """One line of builder output (a Dockerfile step, debootstrap progress, ...)."""

    def done(self, result: BuildResult) -> None:
        """One image is finished (built or already up to date)."""


class NullReporter:
    def stage(self, image: str, text: str) -> None:
        pass

    def line(self, image: str, text: str) -> None:
        pass

    def done(self, result: BuildResult) -> None:
        pass
