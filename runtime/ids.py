"""Identifiers: one helper, so every id in Corral has the same shape.

An id is a short type prefix, an underscore and 24 URL-safe random characters (144 bits), e.g.
`int_Xq3...`. The prefix tells a reader (and a log grep) what kind of object an id names.
"""

from __future__ import annotations

import re
import secrets

_PREFIX = re.compile(r"^[a-z][a-z0-9]{0,11}$")


def new_id(prefix: str) -> str:
    """`new_id("int")` -> `int_` + 24 random URL-safe characters."""
    if not _PREFIX.match(prefix):
        raise ValueError(f"id prefix must be a short lowercase word, not {prefix!r}")
    return f"{prefix}_{secrets.token_urlsafe(18)}"
