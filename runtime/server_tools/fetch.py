"""`url_context`: the controller fetches a page for the model, under the egress proxy's rules.

Every hop (the URL, then each redirect) is resolved here, every address is checked with the
egress proxy's own `address_refusal` (private, loopback, link-local, metadata and other
non-global addresses refused unless `CORRAL_EGRESS_ALLOW_PRIVATE` names them), and the
connection goes to the checked address (the name is kept for `Host` and TLS), so a name that
resolves differently a moment later (DNS rebinding) cannot smuggle the request elsewhere.
Only http and https; the body is read up to `MAX_BYTES` and its text cut at `MAX_TEXT`.
A refusal or a failure is a result the model reads, never the content of what was refused.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
from dataclasses import dataclass
from html.parser import HTMLParser
from typing import Literal

import httpx

from sandbox.egress.policy import EgressOptions
from sandbox.egress.proxy import Refused, address_refusal, resolve

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
MAX_BYTES = 2 * 1024 * 1024
"""Bytes of a response body read at most (the rest is never downloaded)."""
MAX_TEXT = 100_000
"""Characters of one page's text handed to the model."""
MAX_REDIRECTS = 5
TIMEOUT = 20.0
USER_AGENT = "Corral-url_context/1"
TEXT_TYPES = ("text/", "application/json", "application/xml", "application/xhtml+xml")


@dataclass(frozen=True)
class Fetched:
    url: str
    status: Literal["success", "error"]
    """As the SDK's `URLContextResult.status` has it."""
    text: str
    """The page's text, or why there is none."""


class Fetcher:
    """Fetches URLs for one server; `transport` is for tests (the default is a fresh
    connection per hop, ignoring proxy environment variables)."""

    def __init__(
        self,
        egress: EgressOptions,
        *,
        timeout: float | None = TIMEOUT,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.egress = egress
        self.timeout = timeout
        self.transport = transport

    async def fetch(self, url: str) -> Fetched:
        try:
            text = await self._fetch(url)
        except Refused as exc:
            return Fetched(url, "error", f"refused: {exc.reason}: {exc.detail}")
        except httpx.HTTPError as exc:
            return Fetched(url, "error", f"fetch failed: {type(exc).__name__}: {exc}")
        except ValueError as exc:
            return Fetched(url, "error", f"bad URL: {exc}")
        return Fetched(url, "success", text)

    async def _fetch(self, url: str) -> str:
        target = httpx.URL(url)
        async with httpx.AsyncClient(
            transport=self.transport, timeout=self.timeout, trust_env=False, follow_redirects=False
        ) as client:
            for _ in range(MAX_REDIRECTS + 1):
                if target.scheme not in ("http", "https") or not target.host:
                    raise Refused("bad_url", f"only http(s) URLs with a host: {target}")
                port = target.port or (443 if target.scheme == "https" else 80)
                addr = await self._address(target.host, port)
                pinned = target.copy_with(host=str(addr))
                authority = target.host if target.port is None else f"{target.host}:{port}"
                if ":" in target.host and target.port is None:
                    authority = f"[{target.host}]"
                headers = {"Host": authority, "User-Agent": USER_AGENT, "Accept": "*/*"}
                ext = {"sni_hostname": target.host} if target.scheme == "https" else {}
                req = client.build_request("GET", pinned, headers=headers, extensions=ext)
                resp = await client.send(req, stream=True)
                try:
                    if resp.is_redirect and "location" in resp.headers:
                        target = target.join(resp.headers["location"])
                        continue
                    body = await _read_capped(resp)
                    if resp.status_code >= 400:
                        raise httpx.HTTPStatusError(
                            f"HTTP {resp.status_code}", request=req, response=resp
                        )
                    return _text(resp.headers.get("content-type", ""), body)
                finally:
                    await resp.aclose()
        raise Refused("too_many_redirects", f"more than {MAX_REDIRECTS} redirects")

    async def _address(self, host: str, port: int) -> IPAddress:
        """The first address of `host` the egress rules allow; Refused naming the rule."""
        try:
            addrs: list[IPAddress] = [ipaddress.ip_address(host.strip("[]"))]
        except ValueError:
            mapped = self.egress.hosts.get(host)
            addrs = [ipaddress.ip_address(mapped)] if mapped else await resolve(host, port)
        private = tuple(self.egress.allow_private)
        reasons = [address_refusal(a, port, private) for a in addrs]
        allowed = [a for a, r in zip(addrs, reasons, strict=True) if r is None]
        if not allowed:
            reason = next((r for r in reasons if r), "unresolvable")
            shown = ", ".join(str(a) for a in addrs) or "no address"
            raise Refused(reason, f"{host} resolves to {shown}, which is not reachable")
        return allowed[0]


async def _read_capped(resp: httpx.Response) -> bytes:
    buf = bytearray()
    async for chunk in resp.aiter_bytes():
        buf += chunk
        if len(buf) >= MAX_BYTES:
            del buf[MAX_BYTES:]
            break
    return bytes(buf)


def _text(content_type: str, body: bytes) -> str:
    mime = content_type.split(";", 1)[0].strip().lower()
    if mime and not mime.startswith(TEXT_TYPES):
        return f"(not text: {mime}, {len(body)} bytes)"
    charset = "utf-8"
    for part in content_type.split(";")[1:]:
        key, _, value = part.strip().partition("=")
        if key.lower() == "charset" and value:
            charset = value.strip("\"'")
    try:
        text = body.decode(charset, errors="replace")
    except LookupError:
        text = body.decode("utf-8", errors="replace")
    if mime in ("text/html", "application/xhtml+xml") or (not mime and "<html" in text[:512]):
        text = html_text(text)
    elif mime == "application/json":
        with contextlib.suppress(ValueError):
            text = json.dumps(json.loads(text), indent=1, ensure_ascii=False)
    if len(text) > MAX_TEXT:
        text = text[:MAX_TEXT] + f"\n[... cut at {MAX_TEXT} characters]"
    return text


class _HTMLText(HTMLParser):
    SKIP = frozenset({"script", "style", "noscript", "template", "svg", "head"})
    BLOCK = frozenset(
        {"p", "div", "br", "li", "tr", "h1", "h2", "h3", "h4", "h5", "h6", "section", "title"}
    )

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.skipping = 0
        self.title: str | None = None
        self._in_title = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "title":
            self._in_title = True
        elif tag in self.SKIP:
            self.skipping += 1
        if tag in self.BLOCK:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag == "title":
            self._in_title = False
        elif tag in self.SKIP and self.skipping:
            self.skipping -= 1
        if tag in self.BLOCK:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self.title = (self.title or "") + data
        elif not self.skipping:
            self.parts.append(data)


def html_text(html: str) -> str:
    """The readable text of an HTML page (scripts and styles dropped, whitespace folded)."""
    parser = _HTMLText()
    parser.feed(html)
    parser.close()
    lines = [" ".join(line.split()) for line in "".join(parser.parts).splitlines()]
    body = "\n".join(line for line in lines if line)
    title = " ".join((parser.title or "").split())
    return f"{title}\n\n{body}" if title else body
