"""Typed readers for the JSON files others hand us (cache manifests, bundle indexes, pixi-pack
metadata): parse, then take each field at its path with its type, into frozen dataclasses.

Whatever the input (deeply nested, the wrong JSON type anywhere, a field missing), a reader
raises one :class:`UserError` naming the file, the field's path (``artifacts[3].sha256``) and the
fix, never a TypeError or RecursionError (a crash, exit 3) from the code that uses the value.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, NoReturn, TypeVar

from auto_infer.core.errors import UserError

T = TypeVar("T")
TYPES = {str: "a string", int: "an integer", bool: "true or false", list: "a list", dict: "an object",
         float: "a number"}


def type_name(value: Any) -> str:
    if value is None:
        return "null"
    return TYPES.get(type(value), type(value).__name__)


def load(raw: bytes | str, what: str, where: str, fix: str) -> Any:
    """``raw`` as JSON; not JSON, not UTF-8 or nested too deeply: a UserError about ``what``."""
    try:
        return json.loads(raw)
    except RecursionError:
        raise UserError(f"{what} is nested too deeply to be what it claims", where=where, fix=fix) from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise UserError(f"{what} is not valid JSON ({exc})", where=where, fix=fix) from None


@dataclass(frozen=True)
class Node:
    """One JSON value at ``path`` inside the document ``what`` (for messages)."""
    value: Any
    path: str
    what: str
    where: str
    fix: str

    def fail(self, why: str) -> NoReturn:
        at = f" at {self.path}" if self.path else ""
        raise UserError(f"{self.what} is not valid{at}: {why}", where=self.where, fix=self.fix)

    def _child(self, key: str | int, value: Any) -> Node:
        path = f"{self.path}[{key}]" if isinstance(key, int) else (f"{self.path}.{key}" if self.path else key)
        return Node(value, path, self.what, self.where, self.fix)

    def obj(self) -> Node:
        if not isinstance(self.value, dict):
            self.fail(f"{type_name(self.value)}, not an object")
        return self

    def get(self, key: str) -> Node:
        return self._child(key, self.obj().value.get(key))

    def has(self, key: str) -> bool:
        return key in self.obj().value

    def items(self) -> list[Node]:
        if not isinstance(self.value, list):
            self.fail(f"{type_name(self.value)}, not a list")
        return [self._child(i, v) for i, v in enumerate(self.value)]

    def typed(self, kind: type[T], *, optional: bool = False) -> T | None:
        """The value if it is a ``kind`` (or null, when ``optional``); else a UserError at its path."""
        v = self.value
        if optional and v is None:
            return None
        if not isinstance(v, kind) or (kind is int and isinstance(v, bool)):
            self.fail(f"{type_name(v)}, not {TYPES.get(kind, kind.__name__)}{' or null' if optional else ''}")
        return v

    def text(self) -> str:
        v = self.typed(str)
        assert v is not None
        return v

    def number(self) -> int:
        v = self.typed(int)
        assert v is not None
        return v


def root(value: Any, what: str, where: str, fix: str) -> Node:
    return Node(value, "", what, where, fix)
