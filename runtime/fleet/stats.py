"""What this node did as a member of a fleet, counted since it started (for `/metrics`).

One `FleetStats` per controller (`Controller.stats`), handed to the parts that do the work:
the takeover sweep (`takeovers`), the runner (`leases_lost`), the forwarder (`forwarded`), the
LISTEN/NOTIFY fan-out (`notifications`) and the subscribers' and cancel watcher's polls
(`poll_fallbacks`). Plain counters, only ever incremented on the event loop; the API renders
them as Prometheus counters (`runtime.api.metrics`). The fleet's state in the database (nodes
alive, runs leased, runs queued) is read at scrape time instead (`queries.census`).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Literal

TakeoverKind = Literal["expired", "released"]
"""How the run was free: its node stopped renewing (`expired`), or nobody held it (`released`:
queued on a full node, or handed off by a draining one)."""
ForwardOutcome = Literal["answered", "unavailable", "cut"]
"""`answered`: the owner's answer was relayed (whatever its status); `unavailable`: the owner
was not tried or did not answer (503 here); `cut`: the owner's answer broke off midway."""
Channel = Literal["events", "cancel"]
PollWhat = Literal["events", "cancels"]


@dataclass
class FleetStats:
    takeovers: Counter[TakeoverKind] = field(default_factory=Counter)
    """Runs this node claimed and continued (or ended) after another node let them go."""
    leases_lost: int = 0
    """Runs stopped here because another node took their lease (not counting drain hand-offs)."""
    forwarded: Counter[ForwardOutcome] = field(default_factory=Counter)
    """Calls this node proxied to the node holding their sandbox, files or run."""
    notifications: Counter[Channel] = field(default_factory=Counter)
    """NOTIFY messages received from other nodes."""
    poll_fallbacks: Counter[PollWhat] = field(default_factory=Counter)
    """Polls of the store that found what no notification had announced: events a subscriber
    had not been woken for, cancel requests for runs executing here."""
