"""API keys -> tenants.

Keys come from `CORRAL_API_KEYS="key1:tenantA,key2:tenantB"`, or a JSON file mapping key ->
tenant (`CORRAL_API_KEYS_FILE`, else `$CORRAL_HOME/api_keys.json` when it exists). With no key
configured the server is single-user: every request is tenant `local`, whatever key it sends
(the SDK insists on sending one), and `corral serve` only listens on loopback.

Keys are held as SHA-256 digests, so a lookup costs the same whatever the presented key is and
the plain keys are not kept in memory longer than loading takes.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from runtime.api.errors import Unauthorized
from runtime.errors import ConfigError

LOCAL_TENANT = "local"


def _digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


@dataclass(frozen=True)
class ApiKeys:
    by_digest: dict[str, str] = field(default_factory=dict)
    """sha256(key) -> tenant."""

    @property
    def single_user(self) -> bool:
        return not self.by_digest

    @classmethod
    def from_mapping(cls, keys: Mapping[str, str]) -> ApiKeys:
        return cls({_digest(k): t for k, t in keys.items()})

    def tenant_for(self, key: str | None) -> str:
        """The tenant a presented key belongs to; Unauthorized when keys are configured and
        this one is missing or unknown."""
        if self.single_user:
            return LOCAL_TENANT
        if not key:
            raise Unauthorized("missing API key (send x-goog-api-key or Authorization: Bearer)")
        tenant = self.by_digest.get(_digest(key))
        if tenant is None:
            raise Unauthorized("invalid API key")
        return tenant


def parse_env_keys(value: str) -> dict[str, str]:
    """`key1:tenantA,key2:tenantB` -> mapping. A key without a tenant is ConfigError."""
    keys: dict[str, str] = {}
    for item in value.split(","):
        item = item.strip()
        if not item:
            continue
        key, sep, tenant = item.rpartition(":")
        if not sep or not key or not tenant:
            raise ConfigError(f"CORRAL_API_KEYS: expected key:tenant, got {item!r}")
        keys[key] = tenant
    return keys


def load_api_keys(home: Path, env: Mapping[str, str] | None = None) -> ApiKeys:
    env = os.environ if env is None else env
    keys: dict[str, str] = {}
    if env.get("CORRAL_API_KEYS"):
        keys.update(parse_env_keys(env["CORRAL_API_KEYS"]))
    file = Path(env["CORRAL_API_KEYS_FILE"]) if env.get("CORRAL_API_KEYS_FILE") else None
    if file is None and (home / "api_keys.json").exists():
        file = home / "api_keys.json"
    if file is not None:
        keys.update(_read_file(file))
    return ApiKeys.from_mapping(keys)


def _read_file(path: Path) -> dict[str, str]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read API keys file {path}: {exc}") from exc
    if not isinstance(data, dict) or not all(
        isinstance(k, str) and isinstance(v, str) and k and v for k, v in data.items()
    ):
        raise ConfigError(f"API keys file {path} must be a JSON object of key -> tenant")
    return data


def key_from_headers(headers: Mapping[str, str]) -> str | None:
    """`x-goog-api-key` (the SDK's header) or `Authorization: Bearer <key>`."""
    key = headers.get("x-goog-api-key")
    if key:
        return key.strip()
    auth = headers.get("authorization", "")
    scheme, _, value = auth.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return None
