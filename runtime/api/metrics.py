"""Prometheus metrics, one registry per app (never the process-global one, so two apps in one
process — tests — do not collide). `HttpMetrics` is a pure ASGI middleware: it does not wrap
response bodies, so streams stay unbuffered."""

from __future__ import annotations

import time

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send


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

    def render(self) -> bytes:
        return generate_latest(self.registry)


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
