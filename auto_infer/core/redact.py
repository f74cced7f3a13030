"""Redaction: credentials never reach a manifest, a log, a report or a launch record.

The one place that decides what a secret looks like, by NAME and by VALUE:

* a name is secret when one of its words (split at ``_``, ``-``, ``.``) is a credential word
  (``TOKEN``, ``KEY``, ``PAT``, ``PASSWORD``, ``PASS``, ``PWD``, ``AUTH``, ``SECRET``, ``COOKIE``,
  ``DSN``...), or it holds a credential stem (``PASSW``, ``SECRET``, ``CREDENTIAL``, ``APIKEY``), or
  it ends in ``TOKEN``/``KEY`` (``HFTOKEN``): ``GITHUB_PAT``, ``DB_PASSWORD``, ``X_API_KEY``,
  ``--hf-token``; not ``TOKENIZERS_PARALLELISM``, ``--max-total-tokens``, ``PATH``, ``BYPASS``;
* a value is secret where it carries credentials: the user-info of any URL
  (``postgres://u:pw@db``, ``https://ghp_x@github.com``; a proxy's ``u:pw@proxy:3128`` even without
  a scheme, as requests and curl take it), a query parameter with a secret name
  (``?access_token=…``), ``NAME=value`` with a secret name, ``Bearer …``, and the shapes of the
  well-known tokens (GitHub, GitLab, Hugging Face, OpenAI-style ``sk-``, Slack, AWS key ids).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Mapping
from urllib.parse import urlsplit, urlunsplit

MASK = "***"
_WORDS = ("key|keys|apikey|token|pat|pwd|pw|pass|passwd|password|passphrase|secret|secrets|auth|authorization|"
          "bearer|credential|credentials|cookie|cookies|dsn|privkey|signature|sas")
SECRET_NAME = re.compile(
    rf"(?<![a-z0-9])(?:{_WORDS})(?![a-z0-9])"          # a whole word: GITHUB_PAT, --hf-token, DB_PASS
    r"|passw|secret|credential|apikey|accesskey|privatekey"   # a stem anywhere: MYSQLPASSWORD
    r"|(?:token|key)(?![a-z0-9])",                     # a word's end: HFTOKEN, OPENAIKEY
    re.IGNORECASE)
PROXY_NAME = re.compile(r"^(HTTP|HTTPS|ALL|FTP|NO)_PROXY$", re.IGNORECASE)
SECRET_FLAGS = {"--api-key", "--admin-api-key", "--hf-token", "--token"}

_URL_USERINFO = re.compile(r"(?P<scheme>\b[a-z][a-z0-9+.-]*://)(?P<info>[^\s/?#\"'<>@]*(?:@[^\s/?#\"'<>@]*)*)@",
                           re.IGNORECASE)
_SCHEME = re.compile(r"\s*[a-z][a-z0-9+.-]*://", re.IGNORECASE)
_ASSIGN = re.compile(r"(?P<name>(?<![A-Za-z0-9_])[A-Za-z_][A-Za-z0-9_.-]*)(?P<eq>=|\":\s*\")(?P<value>[^\s&;,'\"]+)")
_BEARER = re.compile(
    r"(?P<kind>\bbearer\s+|\bauthorization:\s*(?:basic|bearer|token)\s+)(?P<value>[A-Za-z0-9._~+/=-]{8,})",
    re.IGNORECASE,
)
_NOT_SECRET_END = re.compile(r"[_.-](env|file|path|dir|name|names|id|type|mode|header)$", re.IGNORECASE)
_TOKEN_VALUE = re.compile(
    r"(?<![A-Za-z0-9])(?:gh[pousr]_[A-Za-z0-9]{20,}|github_pat_[A-Za-z0-9_]{20,}|glpat-[A-Za-z0-9_-]{20,}"
    r"|hf_[A-Za-z0-9]{20,}|sk-[A-Za-z0-9_-]{20,}|xox[abposr]-[A-Za-z0-9-]{10,}|AKIA[0-9A-Z]{16}"
    r"|AIza[0-9A-Za-z_-]{35})")


@functools.lru_cache(maxsize=8192)          # flag and variable names repeat across instances
def is_secret_name(name: str) -> bool:
    """True for an environment variable, key or flag name that holds a credential."""
    return bool(SECRET_NAME.search(name)) and not _NOT_SECRET_END.search(name)


def is_secret_flag(flag: str) -> bool:
    """``--api-key``, ``--hf-token``, ``--db-password``...: a flag whose value is a secret."""
    return flag in SECRET_FLAGS or (flag.startswith("-") and is_secret_name(flag.lstrip("-")))


def redact_url(url: str) -> str:
    """``http://user:pw@host:3128`` -> ``http://user:***@host:3128``, ``user:pw@host:3128`` (no scheme)
    -> ``user:***@host:3128``; other text unchanged."""
    if "://" not in url:
        return _schemeless(url)
    try:
        parts = urlsplit(url)
    except ValueError:
        return MASK
    if parts.password is None and not (parts.username and "@" in parts.netloc):
        return scrub(url, ())
    try:
        host = parts.hostname or ""
        if parts.port:
            host = f"{host}:{parts.port}"
    except ValueError:
        return MASK
    user = parts.username or ""
    netloc = f"{user}:{MASK}@{host}" if parts.password is not None else f"{MASK}@{host}"
    return scrub(urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment)), ())


def _schemeless(url: str) -> str:
    """A URL without a scheme (``u:pw@proxy:3128``, as a proxy variable may hold one): the
    user-info before the host is masked like a URL's; text without one is only scrubbed."""
    info, at, rest = _split_userinfo(url)
    if not at:
        return scrub(url, ())
    user, colon, _pw = info.partition(":")
    return scrub(f"{user}:{MASK}@{rest}" if colon else f"{MASK}@{rest}", ())


def _split_userinfo(url: str) -> tuple[str, str, str]:
    """``u:pw@host:1/p`` -> (``u:pw``, ``@``, ``host:1/p``): the last ``@`` before the path; none -> ("", "", url)."""
    netloc, slash, path = url.partition("/")
    info, at, host = netloc.rpartition("@")
    return (info, at, host + slash + path) if at else ("", "", url)


def has_credentials(text: str) -> bool:
    """True when ``text`` carries a credential by value (what :func:`scrub` would mask)."""
    return scrub(text, ()) != text


def secret_values(*values: object, env: Mapping[str, str] | None = None) -> list[str]:
    """The one list of values to mask: the given ones (API keys, tokens) that are set, plus the
    values of ``env`` whose names look secret and the credentials inside the other values."""
    found = [str(v) for v in values if v]
    for k, v in (env or {}).items():
        if v and is_secret_name(k) and not PROXY_NAME.match(k):
            found.append(v)
        elif v and PROXY_NAME.match(k):
            found += [pw for u in (v, *v.split(",")) for pw in _proxy_password(u)]
        elif v:
            found += _url_passwords(v)
    return list(dict.fromkeys(found))


def _url_passwords(text: str) -> list[str]:
    out = []
    for m in _URL_USERINFO.finditer(text):
        _user, colon, pw = m.group("info").partition(":")
        out.append(pw if colon else m.group("info"))
    return [s for s in out if len(s) >= 4]


def _proxy_password(url: str) -> list[str]:
    """The password of a proxy URL, with or without a scheme (the user-info when it has no ``:``)."""
    _scheme, info, at, _host = _proxy_parts(url)
    _user, colon, pw = info.partition(":")
    secret = pw if colon else info
    return [secret] if at and len(secret) >= 4 else []


def _proxy_parts(url: str) -> tuple[str, str, str, str]:
    """``http://u:p/w@proxy:3128`` -> (``http://``, ``u:p/w``, ``@``, ``proxy:3128``): a proxy has no
    path, so its user-info is all before the LAST ``@`` (a ``/`` or ``#`` in an unencoded password
    included); the scheme is optional; no ``@`` -> (scheme, "", "", rest)."""
    m = _SCHEME.match(url)
    scheme = m.group(0) if m else ""
    info, at, host = url[len(scheme):].rpartition("@")
    return (scheme, info, at, host) if at else (scheme, "", "", url[len(scheme):])


def redact_proxy(value: str) -> str:
    """A proxy variable's value, with or without a scheme: ``u:pw@proxy:3128`` -> ``u:***@proxy:3128``,
    ``http://tok@proxy`` -> ``http://***@proxy``; a value without user-info (NO_PROXY) unchanged."""
    scheme, info, at, host = _proxy_parts(value)
    if not at:
        return scrub(value, ())
    user, colon, _pw = info.partition(":")
    return f"{scheme}{user}:{MASK}@{host}" if colon else f"{scheme}{MASK}@{host}"


def redact_env(env: Mapping[str, str], extra_secrets: Iterable[str] = ()) -> dict[str, str]:
    secrets = [s for s in extra_secrets if s]
    out = {}
    for key, value in env.items():
        if PROXY_NAME.match(key):
            out[key] = redact_proxy(value)
        elif is_secret_name(key):
            out[key] = MASK
        else:
            out[key] = scrub(value, secrets)
    return out


def redact_argv(argv: Iterable[str], extra_secrets: Iterable[str] = ()) -> list[str]:
    secrets = [s for s in extra_secrets if s]
    out: list[str] = []
    hide_next = False
    for token in argv:
        if hide_next and not token.startswith("--"):
            out.append(MASK)
            hide_next = False
            continue
        hide_next = False
        flag, eq, _value = token.partition("=")
        if is_secret_flag(flag):
            if eq:
                out.append(f"{flag}={MASK}")
            else:
                out.append(token)
                hide_next = True
            continue
        out.append(scrub(token, secrets))
    return out


def _userinfo(m: re.Match[str]) -> str:
    user, colon, _pw = m.group("info").partition(":")
    return f"{m.group('scheme')}{user}:{MASK}@" if colon else f"{m.group('scheme')}{MASK}@"


def _assignment(m: re.Match[str]) -> str:
    if not is_secret_name(m.group("name")) or m.group("value") == MASK:
        return m.group(0)
    return f"{m.group('name')}{m.group('eq')}{MASK}"


def scrub(text: str, secrets: Iterable[str]) -> str:
    """Mask every known secret value in ``text``, and every credential recognisable by its shape
    (URL user-info, secret-named assignments and query parameters, bearer tokens, known tokens)."""
    for secret in sorted({s for s in secrets if s and len(s) >= 4}, key=len, reverse=True):
        text = text.replace(secret, MASK)
    text = _URL_USERINFO.sub(_userinfo, text)
    text = _ASSIGN.sub(_assignment, text)
    text = _BEARER.sub(lambda m: f"{m.group('kind')}{MASK}", text)
    return _TOKEN_VALUE.sub(MASK, text)
