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
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"the model config cannot be read: {exc}", where=str(path)) from None
    import tomlkit
    from tomlkit.exceptions import ParseError, TOMLKitError

    try:
        return dict(tomlkit.parse(text).unwrap())
    except ParseError as exc:
        raise UserError(f"TOML syntax error: {exc}", where=f"{path}, line {exc.line}",
                        fix="correct the TOML syntax at that line") from None
    except TOMLKitError as exc:    # e.g. KeyAlreadyPresent: a key repeated inside a table (no line given)
        raise UserError(f"TOML error: {exc}", where=f"{path}{_repeat_line(text, str(exc))}",
                        fix="each key may appear once per table: remove the repeated one") from None


def _repeat_line(text: str, message: str) -> str:
    """', line N' of the second assignment of the key a KeyAlreadyPresent message names."""
    m = re.search(r'Key "([^"]+)" already exists', message)
    if not m:
        return ""
    key = re.compile(rf'^\s*["\']?{re.escape(m.group(1))}["\']?\s*=')
    hits = [i for i, line in enumerate(text.splitlines(), 1) if key.match(line)]
    return f", line {hits[1]}" if len(hits) > 1 else ""


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
    except json.JSONDecodeError as exc:
        raise UserError(f"{var} is not valid JSON: {exc}", where=var,
                        fix='use a JSON object, e.g. {"instance": {"server": {"port": 31000}}}') from None
    if not isinstance(extra, dict):
        raise UserError(f"{var} must be a JSON object", where=var,
                        fix='use a JSON object, e.g. {"master": {"enable": false}}')
    return deep_merge(data, extra)
