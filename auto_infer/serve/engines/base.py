"""What every engine module provides (:class:`Engine`), and the argv rules they share.

The rules are infer-dev's runners' (check-and-run-{sglang,vllm,llama-cpp}.sh, dev-dockers d11afb7):
``extra_args`` come FIRST, then each ``server`` key as ``--key-with-dashes``; ``true`` → a bare
flag, ``false`` → nothing, a list → the flag repeated per item, anything else → its text. Ours on
top: a table → its JSON; ``extra_args`` may be one string (split like a shell); and a flag the
engine's own parser takes several values for (``nargs="+"``) gets one flag followed by every item,
because such a parser keeps only the last occurrence of a repeated flag; and ``false`` for a flag
the parser can negate (argparse's BooleanOptionalAction: vLLM's ``--no-enable-prefix-caching``)
becomes ``--no-<flag>``, since leaving it out keeps the engine's default (often on, or "auto").
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from auto_infer.core.settings import Settings
    from auto_infer.serve.model import Instance, Master, Where


@dataclass(frozen=True)
class ReadyRules:
    """How ready is judged: ``health`` routes tried in order (404 → the next), ``/v1/models`` must
    list the model; ``health_first``: ask health before the model list (vLLM, llama-server)."""

    health: tuple[str, ...] = ("/health",)
    health_first: bool = True
    health_optional: bool = False        # every health route 404: ready all the same (other engines)


@dataclass(frozen=True)
class Program:
    """How an instance's engine is started: the argv (flags included) and what it adds to the
    environment. ``missing``: why it cannot start here (shown by --dry-run, an error for serve)."""

    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)
    missing: str | None = None
    fix: str = ""
    note: str = ""                  # said once per serve: a choice the user may not expect


@dataclass(frozen=True)
class Checked:
    """What the engine's own parser said: its version, its multi-value flags, each instance's
    rejection as (key, message); ``skipped``: why no parser could be asked."""

    label: str
    version: str | None = None
    multi: frozenset[str] = frozenset()       # multi-value flags, and the --no- forms of negatable ones
    rejected: dict[str, tuple[str, str]] = field(default_factory=dict)
    skipped: str | None = None


class Engine(Protocol):
    """One module per engine (sglang, vllm, llamacpp, command) provides these names."""

    NAME: str
    TITLE: str
    DEFAULT_PORT: int
    MODEL_KEY: str                       # the server key naming the weights ("" when none)
    NAME_KEYS: tuple[str, ...]           # server keys that set the id /v1/models lists
    MEMORY_KEY: str                      # the server key for its share of each GPU ("" when none)
    MASTER_KEYS: Mapping[str, Any]       # [master] keys of this engine (they also recognise it)
    OVERRIDES_VAR: str                   # AUTO_INFER_<X>_OVERRIDES, infer-dev's spelling
    CHECK_MODULES: tuple[str, ...]       # what `check` requires for it when AUTO_INFER_CHECK_MODULES is unset
    READY: ReadyRules
    ALIASES: Mapping[str, str]           # another spelling of one of its flags -> the key we use

    def check(self, ctx: Where, inst: Instance) -> None: ...

    def program(self, settings: Settings, master: Master, inst: Instance, multi: frozenset[str],
                api_key: str | None) -> Program: ...

    def preflight(self, settings: Settings, master: Master, servers: Mapping[str, Mapping[str, Any]],
                  env: Mapping[str, str]) -> Checked: ...


def flag(key: str) -> str:
    return "--" + key.replace("_", "-")


def key_of(token: str, aliases: Mapping[str, str] | None = None) -> str:
    """The key a flag or a key spelling stands for: ``--tp-size``, ``tp-size``, ``"--tp_size=4"``
    → ``tp_size``; an engine's alias (``tensor_parallel_size``, llama.cpp's ``-ngl``) → its key."""
    key = token.split("=", 1)[0].strip().lstrip("-").replace("-", "_")
    return (aliases or {}).get(key, key)


def _text(value: Any) -> str:
    if isinstance(value, dict):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


def extra_tokens(server: Mapping[str, Any]) -> list[str]:
    extra = server.get("extra_args", [])
    return shlex.split(extra) if isinstance(extra, str) else [str(t) for t in extra]


def negated(key: str) -> str:
    """The ``--no-`` form of a key's flag (``enable_prefix_caching`` → ``--no-enable-prefix-caching``)."""
    return "--no-" + flag(key)[2:]


def server_flags(server: Mapping[str, Any], multi: frozenset[str] = frozenset()) -> list[str]:
    """``extra_args`` first, then the flags for the ``server`` keys (``multi``: what the engine's parser
    said: its several-value flags, and the ``--no-`` forms ``false`` becomes)."""
    out = extra_tokens(server)
    for key, value in server.items():
        if key == "extra_args":
            continue
        items = value if isinstance(value, list) else [value]
        if isinstance(value, list) and flag(key) in multi:
            out += [flag(key), *(_text(v) for v in items)] if items else []
            continue
        for item in items:
            if item is True:
                out.append(flag(key))
            elif item is False:
                if negated(key) in multi:
                    out.append(negated(key))
            else:
                out += [flag(key), _text(item)]
    return out


def clashes(server: Mapping[str, Any], probe_keys: tuple[str, ...],
            aliases: Mapping[str, str] | None = None) -> list[tuple[str, str]]:
    """(key, extra_args token) pairs where extra_args sets what a key sets, or what the probe reads
    (host, port, the served name): the probe would follow the key while the server follows the token.
    Both are compared by the flag they stand for (``-ngl`` is ``n_gpu_layers``, ``--tp-size=2``)."""
    keys = {key_of(k, aliases): k for k in server if k != "extra_args"}
    keys.update({key_of(k, aliases): k for k in probe_keys if key_of(k, aliases) not in keys})
    out = []
    for token in extra_tokens(server):
        if token.startswith("-") and token.strip("-") and not is_number(token):
            key = keys.get(key_of(token, aliases))
            if key is not None:
                out.append((key, token))
    return out


def is_number(token: str) -> bool:
    try:
        float(token)
    except ValueError:
        return False
    return True


def with_api_key(argv: list[str], server: Mapping[str, Any], api_key: str | None) -> list[str]:
    return argv + ["--api-key", api_key] if api_key and "api_key" not in server else argv


def python_of(settings: Settings, master: Master) -> Path:
    """``master.python_path``, else the Python of the environment `auto-infer install` made."""
    return Path(master.python_path) if master.python_path else settings.env_python
