"""What py-rattler drops or only reports as a parse error, read from pixi.lock's text itself.

A small targeted scan of the top-level ``packages:`` list (no YAML library: the lock's layout is
fixed by pixi/rattler): one dict of the scalar ``key: value`` lines per entry. Used for the
version of PyPI path entries (py-rattler reports ``<dynamic>``) and to name the conda entries
without a ``subdir`` when rattler cannot parse the lock.
"""

from __future__ import annotations

import re

ENTRY = re.compile(r"^- (\w+): ?(.*)$")        # "- pypi: ./" (v6/v7) or "- kind: pypi" (v5)
FIELD = re.compile(r"^  (\w[\w-]*): ?(.*)$")


def _scalar(value: str) -> str:
    value = value.strip()
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
        value = value[1:-1]
    return value


def package_entries(text: str) -> list[dict[str, str]]:
    """The entries of the top-level ``packages:`` list, scalar fields only."""
    entries: list[dict[str, str]] = []
    inside = False
    current: dict[str, str] | None = None
    for line in text.splitlines():
        if not line.startswith((" ", "-")) and line.strip():
            inside = line.startswith("packages:")
            current = None
            continue
        if not inside:
            continue
        head = ENTRY.match(line)
        if head:
            current = {head.group(1): _scalar(head.group(2))}
            entries.append(current)
            continue
        field = FIELD.match(line)
        if current is not None and field and field.group(2).strip():
            current.setdefault(field.group(1), _scalar(field.group(2)))
    return entries


def location(entry: dict[str, str]) -> str:
    """Where an entry's package comes from: ``pypi:``/``conda:`` (v6+) or ``url:``/``path:`` (v5)."""
    for key in ("pypi", "conda", "url", "path"):
        if entry.get(key):
            return entry[key]
    return ""


def pypi_versions(text: str) -> dict[tuple[str, str], str]:
    """(location, name) -> version as the lock writes it, for every PyPI entry."""
    out = {}
    for e in package_entries(text):
        if "pypi" in e or e.get("kind") == "pypi":
            out[(location(e), e.get("name", ""))] = e.get("version", "")
    return out


def conda_without_subdir(text: str) -> list[str]:
    """Conda entries whose URL is not ``<channel>/<subdir>/<file>`` and that have no ``subdir:``."""
    out = []
    for e in package_entries(text):
        if not ("conda" in e or e.get("kind") == "conda") or e.get("subdir"):
            continue
        url = location(e)
        parent = url.rstrip("/").rsplit("/", 2)
        if len(parent) < 3 or not re.fullmatch(r"noarch|[a-z]+-[a-z0-9_]+", parent[1]):
            out.append(url)
    return out
