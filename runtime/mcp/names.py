"""Model-facing names of MCP tools: `<server>__<tool>`, valid for every provider.

OpenAI and Anthropic accept `^[A-Za-z0-9_-]{1,64}$` as a function name; Gemini also wants the
first character to be a letter or `_`. The qualified name keeps to the intersection: other
characters become `_`, a name that does not start with a letter or `_` gets an `m` prefix, and
a name longer than 64 characters is cut and ends with 8 hex digits of a hash of the whole
name, so two long names stay distinct. The mapping depends only on (server, tool), so steps
stored by one run turn back into the same names for a follow-up.
"""

from __future__ import annotations

import hashlib
import re

MAX_NAME = 64
SEPARATOR = "__"
_BAD = re.compile(r"[^A-Za-z0-9_-]")


def qualified_name(server: str, tool: str) -> str:
    """The name the model calls for `tool` of `server`."""
    full = f"{server}{SEPARATOR}{tool}"
    name = _BAD.sub("_", full)
    if not (name[:1].isalpha() or name[:1] == "_"):
        name = "m" + name
    if len(name) > MAX_NAME:
        digest = hashlib.sha256(full.encode()).hexdigest()[:8]
        name = f"{name[: MAX_NAME - 9]}_{digest}"
    return name
