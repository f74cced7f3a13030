"""Reading the model config file: TOML with line numbers in errors, then the JSON overrides.

Shared by serve (the whole config) and install (the weights each instance names), which may not
import each other.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from auto_infer.core.errors import UserError


def read_toml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise UserError("the model config does not exist", where=str(path),
                        fix="set AUTO_INFER_SGLANG_CONFIG to your model config "
                            "(model-configs/example.toml shows the format)") from None
    except IsADirectoryError:
        raise UserError("the model config is a folder, not a file", where=str(path),
                        fix="set AUTO_INFER_SGLANG_CONFIG to the TOML file itself, e.g. "
                            f"{path / 'sglang.toml'}") from None
    except UnicodeDecodeError as exc:
        raise UserError(f"the model config is not UTF-8 text (byte 0x{exc.object[exc.start]:02x} at offset "
                        f"{exc.start})", where=str(path), fix="save it as UTF-8: TOML files are UTF-8") from None
    except OSError as exc:
        raise UserError(f"the model config cannot be read: {exc.strerror or type(exc).__name__}", where=str(path),
                        fix="make it a readable file, or point AUTO_INFER_SGLANG_CONFIG at one") from None
    import tomllib  # the standard library's reader: ~10x tomlkit's speed (10,000 instances)

    try:
        data = tomllib.loads(text)
    except RecursionError:
        raise _too_deep(str(path), "its values") from None
    except tomllib.TOMLDecodeError as exc:
        message = str(exc)
        at = re.search(r"\(at line (\d+), column \d+\)$", message)
        what = message[: at.start()].strip() if at else message
        where = f"{path}, line {at.group(1)}" if at else str(path)
        hint = _line_hint(text, int(at.group(1))) if at else ""
        if what.startswith("Cannot overwrite a value") or what.startswith("Cannot declare"):
            raise UserError(
                f"TOML error: a key or table given twice{hint} ({what})",
                where=where,
                fix="each key may appear once per table: remove the repeated one",
            ) from None
        raise UserError(
            f"TOML syntax error{hint}: {what}", where=where, fix="correct the TOML syntax at that line"
        ) from None
    check_depth(data, str(path))
    return data


MAX_DEPTH = 32      # a model config's deepest real value is ~5 levels; anything past this is an accident


def check_depth(data: Any, where: str, limit: int = MAX_DEPTH) -> None:
    """Tables and lists nested deeper than ``limit`` are refused (iteratively: no recursion), so
    that nothing later (merging, flags, JSON) walks into Python's recursion limit."""
    stack: list[tuple[Any, list[str]]] = [(data, [])]
    while stack:
        value, keys = stack.pop()
        if len(keys) > limit:
            raise _too_deep(where, ".".join(keys[:6]) + "…")
        if isinstance(value, Mapping):
            stack += [(v, [*keys, str(k)]) for k, v in value.items()]
        elif isinstance(value, list):
            stack += [(v, [*keys, f"[{n}]"]) for n, v in enumerate(value)]


def _too_deep(where: str, what: str) -> UserError:
    return UserError(f"tables or lists nested deeper than {MAX_DEPTH} levels ({what})", where=where,
                     fix="a model config nests a few levels (instance.NAME.server.KEY): flatten that value")


def _line_hint(text: str, line: int) -> str:
    """`` at `[table]` `` or `` at `key = …` `` for line ``line`` (never a value: it may be a secret)."""
    lines = text.splitlines()
    if not 0 < line <= len(lines):
        return ""
    shown = lines[line - 1].strip()
    if not shown.startswith("["):
        key, eq, _value = shown.partition("=")
        shown = f"{key.strip()} = …" if eq else shown[:40]
    return f" at `{shown[:80]}`" if shown else ""


def deep_merge(base: dict[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    """Tables merge recursively; any other value replaces; null removes the key."""
    out = dict(base)
    for key, value in extra.items():
        if value is None:
            out.pop(key, None)
        elif isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = deep_merge(dict(out[key]), value)
        else:
            out[key] = value
    return out


def apply_overrides(data: dict[str, Any], overrides: str, var: str = "AUTO_INFER_SGLANG_OVERRIDES") -> dict[str, Any]:
    """``overrides`` (JSON from the variable ``var``) deep-merged into ``data``."""
    if not overrides.strip():
        return data
    try:
        extra = json.loads(overrides)
    except RecursionError:
        raise _too_deep(var, "the JSON") from None
    except json.JSONDecodeError as exc:
        raise UserError(f"{var} is not valid JSON: {exc}", where=var,
                        fix='use a JSON object, e.g. {"instance": {"server": {"port": 31000}}}') from None
    if not isinstance(extra, dict):
        raise UserError(f"{var} must be a JSON object", where=var,
                        fix='use a JSON object, e.g. {"master": {"enable": false}}')
    check_depth(extra, var)
    return deep_merge(data, extra)
