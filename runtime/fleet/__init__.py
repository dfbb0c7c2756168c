"""Several `corral serve` nodes on one PostgreSQL: what they share and how they meet.

- `notify`: event and cancel fan-out over PostgreSQL LISTEN/NOTIFY (one dedicated connection
  per node), with a bounded-delay poll as the safety net for a dropped notification.
- `queries`: the fleet's reads and writes on the shared tables that the `Store` interface does
  not carry (cancel requests, a sandbox's owning node and its URL).
- `forward`: a sandbox call that reaches a node other than the sandbox's owner is proxied to
  the owner (only ever to a registered node's URL).
- `stats`: what this node did in the fleet (takeovers, lost leases, forwarded calls,
  notifications, poll fallbacks), exported by `/metrics`.
"""
