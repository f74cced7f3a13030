"""The mirror map: the ``[mirrors]`` table of a rattler/pixi config file, used for every download.

Format (pixi's "Mirror configuration", rattler's MirrorMiddleware): each key is the start of an
original URL, each value the list of mirror base URLs to try, in order::

    [mirrors]
    "https://conda.anaconda.org/conda-forge" = ["https://mirrors.tuna.tsinghua.edu.cn/anaconda/cloud/conda-forge/"]
    "https://files.pythonhosted.org/packages" = ["https://pypi.mirror.local/packages"]

The longest matching key wins; the rest of the URL is appended to each mirror; the original URL
is tried only if it is listed. Other tables of the file (a user's whole rattler config) are ignored.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from auto_infer.core.errors import UserError
from auto_infer.core.redact import redact_url

SCHEMES = ("http://", "https://", "file://")


def _slash(url: str) -> str:
    return url if url.endswith("/") else url + "/"


@dataclass(frozen=True)
class MirrorMap:
    entries: tuple[tuple[str, tuple[str, ...]], ...] = ()   # (prefix/, (mirror/, ...)), longest first
    source: Path | None = None
    raw: dict[str, list[str]] = field(default_factory=dict)  # as the file has them, for pixi's config

    def routes(self, url: str) -> list[tuple[str, str]]:
        """(mirror base, URL to fetch) for ``url``, in order: its mirrors, or the URL itself when none matches."""
        for prefix, mirrors in self.entries:
            if url.startswith(prefix) or _slash(url) == prefix:
                rest = url[len(prefix):]
                return [(m, m + rest) for m in mirrors]
        return [(url, url)]

    def candidates(self, url: str) -> list[str]:
        return [full for _, full in self.routes(url)]

    def describe(self) -> str:
        if not self.entries:
            return "no mirror map"
        return f"mirror map {self.source} ({len(self.entries)} prefixes)"


def _bad(path: Path, what: str, key: str | None = None) -> UserError:
    where = f"{path}" + (f", [mirrors] key {key!r}" if key else "")
    return UserError(f"the mirror map {what}", where=where,
                     fix='write it as in a rattler/pixi config: [mirrors] "https://original/prefix" = '
                         '["https://mirror/prefix"] (AUTO_INFER_MIRRORS names the file)')


def load(path: Path | None) -> MirrorMap:
    """Read the ``[mirrors]`` table of ``path`` (None: no mirrors). Bad input is a UserError."""
    if path is None:
        return MirrorMap()
    import tomlkit
    from tomlkit.exceptions import TOMLKitError

    try:
        doc = tomlkit.parse(path.read_text(encoding="utf-8")).unwrap()
    except OSError as exc:
        raise UserError(f"cannot read the mirror map: {exc.strerror}", where=f"AUTO_INFER_MIRRORS={path}",
                        fix="point AUTO_INFER_MIRRORS at a readable TOML file, or unset it") from None
    except (TOMLKitError, UnicodeDecodeError) as exc:
        raise _bad(path, f"is not valid TOML: {exc}") from None
    table = doc.get("mirrors")
    if table is None:
        raise _bad(path, "has no [mirrors] table")
    if not isinstance(table, dict):
        raise _bad(path, "has a 'mirrors' key that is not a table")
    raw: dict[str, list[str]] = {}
    for key, value in table.items():
        if not key.startswith(SCHEMES):
            raise _bad(path, f"has a key that is not an http(s)/file URL: {redact_url(key)!r}", key)
        if not isinstance(value, list) or not value:
            raise _bad(path, "needs a non-empty list of mirror URLs as the value", key)
        for mirror in value:
            if not isinstance(mirror, str) or not mirror.startswith(SCHEMES):
                raise _bad(path, f"lists something that is not an http(s)/file URL: {redact_url(str(mirror))!r}", key)
        raw[key] = list(value)
    entries = sorted(((_slash(k), tuple(_slash(m) for m in v)) for k, v in raw.items()),
                     key=lambda e: len(e[0]), reverse=True)
    return MirrorMap(entries=tuple(entries), source=path, raw=raw)
