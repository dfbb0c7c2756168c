"""The Debian mirror to bootstrap from, read from the host's apt sources (pure parsing)."""

from __future__ import annotations

from pathlib import Path

DEFAULT_MIRROR = "http://deb.debian.org/debian"
DEFAULT_SECURITY = "http://deb.debian.org/debian-security"
SUITE = "bookworm"


def parse_one_line_sources(text: str) -> list[tuple[str, list[str]]]:
    """`deb [opts] URI SUITE COMPONENTS...` lines -> [(uri, [suite])]."""
    out: list[tuple[str, list[str]]] = []
    for raw in text.splitlines():
        words = raw.split("#", 1)[0].split()
        if not words or words[0] != "deb":
            continue
        words = words[1:]
        if words and words[0].startswith("["):
            # Options may span several words: "[arch=amd64 signed-by=...]".
            while words and not words[0].endswith("]"):
                words = words[1:]
            words = words[1:]
        if len(words) >= 2:
            out.append((words[0], [words[1]]))
    return out


def parse_deb822_sources(text: str) -> list[tuple[str, list[str]]]:
    """deb822 stanzas (`Types: deb`, `URIs:`, `Suites:`) -> [(uri, suites)]; Enabled: no skipped."""
    out: list[tuple[str, list[str]]] = []
    for stanza in _stanzas(text):
        types = stanza.get("types", "").split()
        if "deb" not in types or stanza.get("enabled", "yes").lower() == "no":
            continue
        suites = stanza.get("suites", "").split()
        out.extend((uri, suites) for uri in stanza.get("uris", "").split())
    return out


def _stanzas(text: str) -> list[dict[str, str]]:
    stanzas: list[dict[str, str]] = []
    current: dict[str, str] = {}
    key = ""
    for raw in [*text.splitlines(), ""]:
        if raw.startswith("#"):
            continue
        if not raw.strip():
            if current:
                stanzas.append(current)
            current, key = {}, ""
        elif raw[0] in " \t" and key:  # continuation line
            current[key] += " " + raw.strip()
        elif ":" in raw:
            k, _, v = raw.partition(":")
            key = k.strip().lower()
            current[key] = v.strip()
    return stanzas


def choose_mirror(entries: list[tuple[str, list[str]]]) -> tuple[str, str]:
    """(main mirror, security mirror) for bookworm among parsed entries, with fallbacks.

    Only http(s) mirrors count (not cdrom:, file: or a local proxy's odd schemes), and the
    security archive is told apart by the `-security` suite.
    """
    main = security = None
    for uri, suites in entries:
        if not uri.startswith(("http://", "https://")):
            continue
        uri = uri.rstrip("/")
        if security is None and f"{SUITE}-security" in suites:
            security = uri
        elif main is None and SUITE in suites:
            main = uri
    return main or DEFAULT_MIRROR, security or DEFAULT_SECURITY


def host_mirrors(etc_apt: Path = Path("/etc/apt")) -> tuple[str, str]:
    """(main, security) mirror from /etc/apt/sources.list and sources.list.d/*.{list,sources}."""
    entries: list[tuple[str, list[str]]] = []
    files = [etc_apt / "sources.list"]
    d = etc_apt / "sources.list.d"
    if d.is_dir():
        files += sorted(p for p in d.iterdir() if p.suffix in (".list", ".sources"))
    for f in files:
        try:
            text = f.read_text()
        except OSError:
            continue
        if f.suffix == ".sources":
            entries += parse_deb822_sources(text)
        else:
            entries += parse_one_line_sources(text)
    return choose_mirror(entries)


def deb822_for(main: str, security: str) -> str:
    """The apt sources file written into a bootstrapped root (what debian:bookworm-slim ships)."""
    return (
        f"Types: deb\nURIs: {main}\nSuites: {SUITE} {SUITE}-updates\nComponents: main\n"
        "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n\n"
        f"Types: deb\nURIs: {security}\nSuites: {SUITE}-security\nComponents: main\n"
        "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n"
    )
