"""Egress policy for `network: allowlist`: the proxy, its Docker plumbing, refusals.

See docs/browser.md ("Network policy") for the design.
"""

from sandbox.egress.manager import Attachment, EgressManager
from sandbox.egress.policy import EgressOptions, Refusal

__all__ = ["Attachment", "EgressManager", "EgressOptions", "Refusal"]
