"""Controller settings, read from the environment once and passed explicitly (never a global)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from runtime.errors import ConfigError
from sandbox.egress import EgressOptions
from sandbox.home import default_home


@dataclass(frozen=True)
class Settings:
    home: Path = field(default_factory=default_home)
    database_url: str | None = None
    """SQLAlchemy async URL; default is a SQLite file in `home`."""
    log_format: str = "auto"
    """`auto` (pretty on a TTY, JSON otherwise), `json` or `console`."""
    log_level: str = "info"
    warm_pool: int = 0
    """Sandboxes kept ready for the default agent (`CORRAL_WARM_POOL`); 0 = cold starts."""
    egress_allow_private: tuple[str, ...] = ()
    """Private addresses the egress proxy may reach anyway: IP, IP:PORT or CIDR
    (`CORRAL_EGRESS_ALLOW_PRIVATE`, comma-separated). Empty: none."""
    egress_hosts: dict[str, str] = field(default_factory=dict)
    """Names the egress proxy resolves itself (`CORRAL_EGRESS_HOSTS=name=ip,...`)."""
    search_url: str | None = None
    """The search backend of the `google_search` tool (`CORRAL_SEARCH_URL`): a SearXNG-compatible
    endpoint answering `GET <url>?q=...&format=json`. None: `google_search` is refused."""

    @classmethod
    def from_env(cls) -> Settings:
        return cls(
            home=default_home(),
            database_url=os.environ.get("CORRAL_DATABASE_URL") or None,
            log_format=os.environ.get("CORRAL_LOG_FORMAT", "auto"),
            log_level=os.environ.get("CORRAL_LOG_LEVEL", "warning"),
            warm_pool=_int_env("CORRAL_WARM_POOL", 0),
            egress_allow_private=tuple(
                x.strip()
                for x in os.environ.get("CORRAL_EGRESS_ALLOW_PRIVATE", "").split(",")
                if x.strip()
            ),
            egress_hosts=dict(
                (k.strip(), v.strip())
                for k, _, v in (
                    p.partition("=") for p in os.environ.get("CORRAL_EGRESS_HOSTS", "").split(",")
                )
                if k.strip() and v.strip()
            ),
            search_url=os.environ.get("CORRAL_SEARCH_URL", "").strip() or None,
        )

    def egress_options(self) -> EgressOptions:
        return EgressOptions(allow_private=self.egress_allow_private, hosts=dict(self.egress_hosts))

    @property
    def db_url(self) -> str:
        return self.database_url or f"sqlite+aiosqlite:///{self.home / 'corral.db'}"

    @property
    def sandboxes_dir(self) -> Path:
        """Per-sandbox host folders (RPC socket lives here)."""
        return self.home / "sandboxes"

    @property
    def artifacts_dir(self) -> Path:
        return self.home / "artifacts"

    @property
    def agents_dir(self) -> Path:
        return self.home / "agents"

    def ensure_dirs(self) -> None:
        for d in (self.home, self.sandboxes_dir, self.artifacts_dir, self.agents_dir):
            d.mkdir(parents=True, exist_ok=True, mode=0o700)


def _int_env(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a whole number, not {raw!r}") from None
    if value < 0:
        raise ConfigError(f"{name} must not be negative")
    return value
