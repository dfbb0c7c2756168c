"""A small local website for browser and egress tests (and bench/browser.py).

Served by the host on 0.0.0.0 with an ephemeral port; sandboxes reach it only through the
egress proxy, by a test hostname that the proxy maps to the Docker bridge gateway.
"""

from __future__ import annotations

import html
import http.server
import ipaddress
import threading
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import docker

CSV = b"id,name\n1,alpha\n2,beta\n"

PAGES: dict[str, str] = {
    "/": """<title>Corral Test Site</title><h1>Welcome</h1>
<p>A site for tests.</p>
<nav><a href="/about">About us</a> <a href="/form">Contact form</a> <a href="/js">Dynamic</a>
<a href="/files/report.csv" download>Report (CSV)</a>
<a href="/about" target="_blank">About in a new tab</a></nav>""",
    "/about": """<title>About</title><h1>About</h1><main><p>We are a test fixture.</p>
<p>The secret word is marmalade.</p></main>""",
    "/form": """<title>Contact</title><h1>Contact</h1>
<form action="/submit" method="get">
<label for="name">Your name</label> <input id="name" name="name" placeholder="Ada">
<label for="color">Colour</label>
<select id="color" name="color"><option>red</option><option>green</option><option>blue</option></select>
<label><input type="checkbox" name="news" value="yes"> Newsletter</label>
<button type="submit">Send</button>
</form>""",
    "/js": """<title>Dynamic</title><h1>Dynamic</h1><div id="out">loading…</div>
<script>setTimeout(() => {
  const el = document.getElementById('out');
  el.textContent = 'Rendered by JavaScript';
  const b = document.createElement('button'); b.textContent = 'Reveal';
  b.onclick = () => { el.textContent = 'Revealed ' + (1 + 1); };
  document.body.appendChild(b);
}, 150);</script>""",
}


class _Handler(http.server.BaseHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # quiet tests
        pass

    def do_GET(self) -> None:
        url = urllib.parse.urlsplit(self.path)
        self.server.hits.append(url.path)  # type: ignore[attr-defined]
        if url.path == "/files/report.csv":
            self._send(
                200, CSV, "text/csv", {"Content-Disposition": 'attachment; filename="report.csv"'}
            )
        elif url.path == "/submit":
            q = urllib.parse.parse_qs(url.query)
            name = html.escape(q.get("name", ["?"])[0])
            color = html.escape(q.get("color", ["?"])[0])
            news = "yes" if q.get("news") else "no"
            body = f"<title>Thanks</title><h1>Hello, {name}!</h1><p>Colour: {color}. Newsletter: {news}.</p>"
            self._send(200, body.encode(), "text/html; charset=utf-8")
        elif url.path in PAGES:
            self._send(200, PAGES[url.path].encode(), "text/html; charset=utf-8")
        else:
            self._send(404, b"<title>Not found</title>not found", "text/html")

    def _send(
        self, code: int, body: bytes, ctype: str, extra: dict[str, str] | None = None
    ) -> None:
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)


@dataclass
class Site:
    gateway: str
    """The Docker bridge gateway: the host address the egress proxy reaches."""
    port: int
    hits: list[str]

    def url(self, host: str, path: str = "/") -> str:
        return f"http://{host}:{self.port}{path}"


def bridge_gateway() -> str:
    client = docker.from_env()
    try:
        net = client.api.inspect_network("bridge")
    finally:
        client.close()
    config = net["IPAM"]["Config"][0]
    # The default bridge often lists only its subnet; its gateway is the first host address.
    return str(config.get("Gateway") or next(ipaddress.ip_network(config["Subnet"]).hosts()))


@contextmanager
def serve(*, docker_gateway: bool = True) -> Iterator[Site]:
    """Serve the site; `docker_gateway=False` (no Docker needed) reports 127.0.0.1 instead."""
    server = http.server.ThreadingHTTPServer(("0.0.0.0", 0), _Handler)
    server.daemon_threads = True
    server.hits = []  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        gateway = bridge_gateway() if docker_gateway else "127.0.0.1"
        yield Site(gateway, server.server_address[1], server.hits)  # type: ignore[attr-defined]
    finally:
        server.shutdown()
        server.server_close()
