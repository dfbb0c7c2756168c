"""Egress policy for `network: allowlist`: the proxy, its Docker plumbing, refusals.

See docs/browser.md ("Network policy") for the design.
"""

from sandbox.egress.manager import HEALTHS, Attachment, EgressManager, ProxyStatus
from sandbox.egress.policy import EgressOptions, Refusal

__all__ = [
    "HEALTHS",
    "Attachment",
    "EgressManager",
    "EgressOptions",
    "ProxyStatus",
    "Refusal",
]
