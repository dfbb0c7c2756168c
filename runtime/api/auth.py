"""API keys -> tenants and their policies.

Keys come from `CORRAL_API_KEYS="key1:tenantA,key2:tenantB"`, or a JSON file mapping key ->
tenant (`CORRAL_API_KEYS_FILE`, else `$CORRAL_HOME/api_keys.json` when it exists). In the file a
key may map to an object instead, with the tenant and the key's own ceilings::

    {"key1": "tenantA",
     "key2": {"tenant": "tenantB", "max_memory": "16g", "max_cpus": 8,
              "max_sandboxes": 50, "max_streams": 32, "allow_open_network": true}}

Settings a key leaves out come from the default policy (`CORRAL_TENANT_*`, see
`runtime.api.policy`). With no key configured the server is single-user: every request is
tenant `local` with the default policy, whatever key it sends (the SDK insists on sending one),
and `corral serve` only listens on loopback.

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
from typing import Any

from runtime.api.errors import Unauthorized
from runtime.api.policy import TenantPolicy, parse_policy, policy_from_env
from runtime.errors import ConfigError

LOCAL_TENANT = "local"


def _digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


@dataclass(frozen=True)
class Principal:
    """Who a request is: its tenant (owner of objects) and its key's policy (ceilings)."""

    tenant: str
    policy: TenantPolicy


@dataclass(frozen=True)
class ApiKeys:
    by_digest: dict[str, str] = field(default_factory=dict)
    """sha256(key) -> tenant."""
    policies: dict[str, TenantPolicy] = field(default_factory=dict)
    """sha256(key) -> the key's own policy (keys not here get `default_policy`)."""
    default_policy: TenantPolicy = field(default_factory=TenantPolicy)

    @property
    def single_user(self) -> bool:
        return not self.by_digest

    @classmethod
    def from_mapping(
        cls,
        keys: Mapping[str, str],
        *,
        policies: Mapping[str, TenantPolicy] | None = None,
        default_policy: TenantPolicy | None = None,
    ) -> ApiKeys:
        """Plain keys -> tenant, and optionally plain keys -> policy."""
        return cls(
            {_digest(k): t for k, t in keys.items()},
            {_digest(k): p for k, p in (policies or {}).items()},
            default_policy or TenantPolicy(),
        )

    def principal_for(self, key: str | None) -> Principal:
        """The tenant and policy of a presented key; Unauthorized when keys are configured
        and this one is missing or unknown."""
        if self.single_user:
            return Principal(LOCAL_TENANT, self.default_policy.resolved(single_user=True))
        if not key:
            raise Unauthorized("missing API key (send x-goog-api-key or Authorization: Bearer)")
        digest = _digest(key)
        tenant = self.by_digest.get(digest)
        if tenant is None:
            raise Unauthorized("invalid API key")
        policy = self.policies.get(digest, self.default_policy)
        return Principal(tenant, policy.resolved(single_user=False))

    def tenant_for(self, key: str | None) -> str:
        return self.principal_for(key).tenant


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
    default = policy_from_env(env)
    keys: dict[str, str] = {}
    policies: dict[str, TenantPolicy] = {}
    if env.get("CORRAL_API_KEYS"):
        keys.update(parse_env_keys(env["CORRAL_API_KEYS"]))
    file = Path(env["CORRAL_API_KEYS_FILE"]) if env.get("CORRAL_API_KEYS_FILE") else None
    if file is None and (home / "api_keys.json").exists():
        file = home / "api_keys.json"
    if file is not None:
        for key, (tenant, policy) in _read_file(file, default).items():
            keys[key] = tenant
            if policy is not None:
                policies[key] = policy
    return ApiKeys.from_mapping(keys, policies=policies, default_policy=default)


def _read_file(path: Path, default: TenantPolicy) -> dict[str, tuple[str, TenantPolicy | None]]:
    """key -> (tenant, the key's policy or None for the default)."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read API keys file {path}: {exc}") from exc
    shape = "a JSON object of key -> tenant, or key -> {tenant, max_memory, ...}"
    if not isinstance(data, dict):
        raise ConfigError(f"API keys file {path} must be {shape}")
    out: dict[str, tuple[str, TenantPolicy | None]] = {}
    for n, (key, value) in enumerate(data.items(), 1):
        where = f"API keys file {path}, key #{n}"  # never the key itself in a message
        if not isinstance(key, str) or not key:
            raise ConfigError(f"{where}: keys must be non-empty strings")
        if isinstance(value, str) and value:
            out[key] = (value, None)
        elif isinstance(value, dict):
            out[key] = _key_entry(value, default, where)
        else:
            raise ConfigError(f"{where}: must map to a tenant name or an object ({shape})")
    return out


def _key_entry(
    value: dict[str, Any], default: TenantPolicy, where: str
) -> tuple[str, TenantPolicy]:
    settings = dict(value)
    tenant = settings.pop("tenant", None)
    if not isinstance(tenant, str) or not tenant:
        raise ConfigError(f"{where}: tenant: a non-empty string is required")
    return tenant, parse_policy(settings, default, where)


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
