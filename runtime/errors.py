"""Every error the `runtime` package raises.

Hierarchy::

    CorralError
    ├── ConfigError          settings, missing model key, bad provider string
    ├── StoreUnavailable     the database does not answer
    ├── NodeUnavailable      the fleet node that owns a sandbox does not answer (503)
    ├── StorageError         the controller could not write its own files (artifacts, store)
    │   └── StorageFull      no space left on the controller's disk (ENOSPC, EDQUOT)
    ├── AgentSpecError       an agent spec that does not validate (file, field, reason)
    ├── BadRequest           malformed input the schema could not catch (HTTP 400)
    ├── Unauthorized         a missing or unknown API key (401)
    ├── PayloadTooLarge      a request body over its cap (413)
    ├── RangeNotSatisfiable  an artifact Range outside the file (416)
    ├── NotFound             an interaction, agent, artifact, sandbox (or another tenant's)
    ├── Conflict             state does not allow the operation
    ├── ProviderError        a model provider failed
    │   ├── ProviderAuthError
    │   ├── ProviderRateLimited
    │   ├── ProviderUnavailable
    │   ├── ProviderTimeout       no bytes from the provider within the connect or idle timeout
    │   └── ProviderProtocolError a reply that breaks the provider's protocol: cut short, empty,
    │                             not JSON, not UTF-8
    └── BudgetExceeded       a run limit was reached (limit named in `limit`)

Sandbox errors stay `sandbox.errors.SandboxError`; the loop turns them into run statuses.
"""

from __future__ import annotations


class CorralError(Exception):
    code: str = "internal"
    http_status: int = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class ConfigError(CorralError):
    code = "invalid_config"
    http_status = 400


class StoreUnavailable(CorralError):
    code = "store_unavailable"
    http_status = 503


class NodeUnavailable(CorralError):
    """A sandbox call reached a node that does not own the sandbox, and its owner is down."""

    code = "node_unavailable"
    http_status = 503


class StorageError(CorralError):
    """The controller could not write its own files (never the agent's fault)."""

    code = "storage_error"
    http_status = 500


class StorageFull(StorageError):
    """No space left where the controller keeps its state (`$CORRAL_HOME`, the database)."""

    code = "storage_full"
    http_status = 507


class AgentSpecError(CorralError):
    code = "invalid_agent"
    http_status = 400


class BadRequest(CorralError):
    code = "invalid_argument"
    http_status = 400


class Unauthorized(CorralError):
    """A missing or unknown API key."""

    code = "unauthenticated"
    http_status = 401


class PayloadTooLarge(CorralError):
    code = "payload_too_large"
    http_status = 413


class RangeNotSatisfiable(CorralError):
    code = "range_not_satisfiable"
    http_status = 416

    def __init__(self, message: str, size: int) -> None:
        super().__init__(message)
        self.size = size


class NotFound(CorralError):
    code = "not_found"
    http_status = 404


class Conflict(CorralError):
    code = "conflict"
    http_status = 409


class ProviderError(CorralError):
    code = "provider_error"
    http_status = 502


class ProviderAuthError(ProviderError):
    code = "provider_auth"


class ProviderRateLimited(ProviderError):
    code = "provider_rate_limited"


class ProviderUnavailable(ProviderError):
    code = "provider_unavailable"


class ProviderTimeout(ProviderError):
    code = "provider_timeout"
    http_status = 504


class ProviderProtocolError(ProviderError):
    code = "provider_protocol"


class BudgetExceeded(CorralError):
    code = "budget_exceeded"
    http_status = 400

    def __init__(self, limit: str, message: str) -> None:
        super().__init__(message)
        self.limit = limit
