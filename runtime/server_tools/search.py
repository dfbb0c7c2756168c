"""`google_search`: web search through the operator's search backend (`CORRAL_SEARCH_URL`).

The contract is SearXNG's JSON API: Corral sends `GET <CORRAL_SEARCH_URL>?q=<query>&format=json`
(query parameters already in the URL are kept) and reads `{"results": [{"title", "url",
"content"}, ...]}`; other fields are ignored. The URL is the operator's, so it is called
directly (not through the egress rules that guard `url_context`).
"""

from __future__ import annotations

from dataclasses import dataclass

import httpx

MAX_RESULTS = 8
MAX_SNIPPET = 500
MAX_RESPONSE = 1024 * 1024
TIMEOUT = 20.0


@dataclass(frozen=True)
class Hit:
    title: str
    url: str
    snippet: str


class SearchError(Exception):
    pass


class Searcher:
    def __init__(
        self,
        url: str,
        *,
        timeout: float | None = TIMEOUT,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.url = url
        self.timeout = timeout
        self.transport = transport

    async def search(self, query: str) -> list[Hit]:
        """Up to `MAX_RESULTS` hits; SearchError saying what went wrong."""
        async with httpx.AsyncClient(
            transport=self.transport, timeout=self.timeout, trust_env=False
        ) as client:
            target = httpx.URL(self.url).copy_merge_params({"q": query, "format": "json"})
            try:
                async with client.stream("GET", target) as resp:
                    body = bytearray()
                    async for chunk in resp.aiter_bytes():
                        body += chunk
                        if len(body) > MAX_RESPONSE:
                            raise SearchError(
                                f"the search backend answered over {MAX_RESPONSE} bytes"
                            )
                    if resp.status_code != 200:
                        raise SearchError(f"the search backend answered HTTP {resp.status_code}")
            except httpx.HTTPError as exc:
                raise SearchError(
                    f"the search backend is unreachable: {type(exc).__name__}"
                ) from exc
        try:
            data = httpx.Response(200, content=bytes(body)).json()
        except ValueError:
            raise SearchError("the search backend did not answer JSON") from None
        results = data.get("results") if isinstance(data, dict) else None
        if not isinstance(results, list):
            raise SearchError("the search backend's JSON has no results list")
        hits: list[Hit] = []
        for r in results:
            if not isinstance(r, dict) or not isinstance(r.get("url"), str):
                continue
            snippet = str(r.get("content") or "")
            hits.append(Hit(str(r.get("title") or ""), r["url"], snippet[:MAX_SNIPPET]))
            if len(hits) >= MAX_RESULTS:
                break
        return hits


def render(query: str, hits: list[Hit]) -> str:
    """Hits as the model reads them."""
    if not hits:
        return f"No results for {query!r}."
    lines = [f"Results for {query!r}:"]
    for i, h in enumerate(hits, 1):
        lines.append(f"{i}. {h.title}\n   {h.url}" + (f"\n   {h.snippet}" if h.snippet else ""))
    return "\n".join(lines)
