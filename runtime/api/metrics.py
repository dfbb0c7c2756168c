"""Prometheus metrics, one registry per app (never the process-global one, so two apps in one
process — tests — do not collide). `HttpMetrics` is a pure ASGI middleware: it does not wrap
response bodies, so streams stay unbuffered."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from runtime.fleet.queries import Census
from runtime.fleet.stats import FleetStats


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "corral_http_requests", "HTTP requests", ["method", "route", "status"], registry=r
        )
        self.latency = Histogram(
            "corral_http_request_seconds", "Time to response headers", ["route"], registry=r
        )
        self.created = Counter(
            "corral_interactions_created", "Interactions created", ["kind"], registry=r
        )
        self.finished = Counter(
            "corral_interactions_finished", "Interactions ended", ["kind", "status"], registry=r
        )
        self.active = Gauge("corral_runs_active", "Runs in progress in this process", registry=r)
        self.sse = Gauge("corral_sse_streams", "Open event streams", registry=r)
        self.sandboxes = Gauge(
            "corral_sandboxes",
            "Sandboxes of this home by why they are kept (interaction, pool, explicit)",
            ["kept_for"],
            registry=r,
        )
        self.egress = Gauge(
            "corral_egress_proxy",
            "The egress proxy's health: 1 on the current one of ok, idle, down, off",
            ["health"],
            registry=r,
        )
        self.egress_restarts = Gauge(
            "corral_egress_proxy_restarts",
            "Times the engine restarted the egress proxy after a crash",
            registry=r,
        )
        self.webhooks = Counter(
            "corral_webhook_attempts", "Webhook delivery attempts", ["outcome"], registry=r
        )

        self.fleet = FleetMetrics()
        r.register(self.fleet)

    def render(self) -> bytes:
        return generate_latest(self.registry)


@dataclass
class FleetView:
    """What a fleet node exports: its counters and the census read at this scrape."""

    stats: FleetStats
    polls_found: int
    """The event bus's polls that found events (`EventBus.poll_found`)."""
    census: Census | None
    """None when the database did not answer this scrape (the counters are still exported)."""


class FleetMetrics(Collector):
    """`corral_fleet_*`, only on a node of a fleet (PostgreSQL): the route sets `view` before
    each scrape. Counters are kept by the fleet code itself (`FleetStats`), so they are
    rendered from it rather than mirrored into client-library counters."""

    def __init__(self) -> None:
        self.view: FleetView | None = None

    def collect(self) -> Iterator[Metric]:
        view = self.view
        if view is None:
            return
        st = view.stats
        yield _counter(
            "corral_fleet_takeovers",
            "Runs this node took over, by how their lease was free (expired, released)",
            "lease",
            {k: st.takeovers[k] for k in ("expired", "released")},
        )
        yield _counter(
            "corral_fleet_leases_lost",
            "Runs stopped here because another node took their lease",
            None,
            {"": st.leases_lost},
        )
        yield _counter(
            "corral_fleet_forwarded",
            "Calls forwarded to the node holding their sandbox, files or run, by outcome",
            "outcome",
            {k: st.forwarded[k] for k in ("answered", "unavailable", "cut")},
        )
        yield _counter(
            "corral_fleet_notifications_received",
            "LISTEN/NOTIFY messages received from other nodes, by channel",
            "channel",
            {k: st.notifications[k] for k in ("events", "cancel")},
        )
        yield _counter(
            "corral_fleet_poll_fallbacks",
            "Store polls that found what no notification had announced (events, cancels)",
            "what",
            {"events": view.polls_found, "cancels": st.poll_fallbacks["cancels"]},
        )
        if view.census is None:
            return
        c = view.census
        nodes = GaugeMetricFamily(
            "corral_fleet_nodes", "Nodes alive (heartbeat within a lease TTL)", labels=["draining"]
        )
        for draining in (False, True):
            nodes.add_metric([str(draining).lower()], c.nodes.get(draining, 0))
        yield nodes
        yield GaugeMetricFamily(
            "corral_fleet_runs_leased", "In-progress runs leased to this node", value=c.leased
        )
        yield GaugeMetricFamily(
            "corral_fleet_runs_queued",
            "In-progress runs no node holds (queued, handed off, or their node stopped renewing)",
            value=c.unclaimed,
        )


def _counter(name: str, doc: str, label: str | None, values: dict[str, int]) -> Metric:
    family = CounterMetricFamily(name, doc, labels=[label] if label else None)
    for key, value in values.items():
        family.add_metric([key] if label else [], value)
    return family


class HttpMetrics:
    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500
        route = "unmatched"
        scope.setdefault("state", {})

        async def observe(message: Message) -> None:
            nonlocal status
            nonlocal route
            if message["type"] == "http.response.start":
                status = int(message["status"])
                route = _route(scope)
                self.metrics.latency.labels(route).observe(time.perf_counter() - start)
            await send(message)

        try:
            await self.app(scope, receive, observe)
        finally:
            self.metrics.requests.labels(scope["method"], route, str(status)).inc()


def note_route(request: Request) -> None:
    """App-wide dependency: remember the matched route template for `HttpMetrics` (routing
    works on a copy of the scope; the `state` dict is shared with the copies)."""
    # Nested routers keep their own (prefix-less) paths, so rebuild the template from the
    # request path by putting the parameter names back in place of their values.
    template = request.url.path
    for name, value in request.path_params.items():
        if value:
            head, sep, tail = template.rpartition(str(value))
            template = f"{head}{{{name}}}{tail}" if sep else template
    request.state.route_template = template


def _route(scope: Scope) -> str:
    # The route template (not the raw path) keeps label cardinality bounded.
    state = scope.get("state") or {}
    return str(state.get("route_template", "unmatched"))
