"""Where Corral keeps its state: `$CORRAL_HOME`, else `$XDG_DATA_HOME/corral`, else
`~/.local/share/corral`. Two instances with different homes never see each other's sandboxes."""

from __future__ import annotations

import os
from pathlib import Path


def default_home() -> Path:
    env = os.environ.get("CORRAL_HOME")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_DATA_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".local" / "share"
    return base / "corral"
