"""Redaction: credentials never reach a manifest, a log, a report or a launch record."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from urllib.parse import urlsplit, urlunsplit

MASK = "***"
SECRET_NAME = re.compile(r"(KEY|TOKEN|SECRET|PASSW|PASSWD|PWD|AUTH|CREDENTIAL|COOKIE)", re.IGNORECASE)
PROXY_NAME = re.compile(r"^(HTTP|HTTPS|ALL|FTP|NO)_PROXY$", re.IGNORECASE)
SECRET_FLAGS = {"--api-key", "--admin-api-key", "--hf-token", "--token"}


def redact_url(url: str) -> str:
    """``http://user:pw@host:3128`` -> ``http://user:***@host:3128``; other text unchanged."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return MASK
    if parts.password is None and not (parts.username and "@" in parts.netloc):
        return url
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    user = parts.username or ""
    netloc = f"{user}:{MASK}@{host}" if parts.password is not None else f"{MASK}@{host}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def secret_values(*values: object, env: Mapping[str, str] | None = None) -> list[str]:
    """The one list of values to mask: the given ones (API keys, tokens) that are set, plus the
    values of ``env`` whose names look secret."""
    found = [str(v) for v in values if v]
    found += [v for k, v in (env or {}).items() if v and SECRET_NAME.search(k)]
    return list(dict.fromkeys(found))


def redact_env(env: Mapping[str, str], extra_secrets: Iterable[str] = ()) -> dict[str, str]:
    secrets = [s for s in extra_secrets if s]
    out = {}
    for key, value in env.items():
        if PROXY_NAME.match(key):
            out[key] = ",".join(redact_url(v) for v in value.split(","))
        elif SECRET_NAME.search(key):
            out[key] = MASK
        else:
            out[key] = scrub(value, secrets)
    return out


def redact_argv(argv: Iterable[str], extra_secrets: Iterable[str] = ()) -> list[str]:
    secrets = [s for s in extra_secrets if s]
    out: list[str] = []
    hide_next = False
    for token in argv:
        if hide_next:
            out.append(MASK)
            hide_next = False
            continue
        flag, eq, _value = token.partition("=")
        if flag in SECRET_FLAGS:
            if eq:
                out.append(f"{flag}={MASK}")
            else:
                out.append(token)
                hide_next = True
            continue
        out.append(scrub(token, secrets))
    return out


def scrub(text: str, secrets: Iterable[str]) -> str:
    """Replace every occurrence of each known secret value (and URL passwords) in ``text``."""
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, MASK)
    return re.sub(r"(?P<pre>[a-z][a-z0-9+.-]*://[^\s/:@]*:)(?P<pw>[^\s@/]+)@", rf"\g<pre>{MASK}@", text)
