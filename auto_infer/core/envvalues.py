"""One value of one variable, read strictly: a yes/no switch, a finite number in its range.
A value that is neither is a UserError naming the variable, never read as a default."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from auto_infer.core.errors import UserError
from auto_infer.core.variables import default

TRUE = {"1", "true", "yes", "on", "y", "t"}
FALSE = {"0", "false", "no", "off", "n", "f", ""}


def switch(name: str, raw: str) -> bool:
    """A yes/no variable: a value that is neither is refused, not read as "no" (a container booted
    with AUTO_INFER_SGLANG_ON_BOOT=enable must not come up serving nothing)."""
    if raw.strip().lower() in TRUE:
        return True
    if raw.strip().lower() in FALSE:
        return False
    raise UserError(f"{name}={raw!r} is neither yes nor no", where=name,
                    fix="use 1, true, yes or on to turn it on; 0, false, no or off (or unset) to turn it off")


YEAR = 365 * 24 * 3600      # the most seconds any setting takes: beyond it a wait is a mistake (or inf)


def number(get: Callable[[str], str], name: str, kind: type[float] | type[int], least: float | None = 0,
            most: float | None = None) -> Any:
    """A finite number (int or float) of at least ``least`` (> 0 when ``least`` is None) and at most
    ``most`` (a float: a year of seconds when None) from ``name``, its default from the table when unset."""
    raw = get(name) or default(name)
    top = YEAR if most is None and kind is float else most
    try:
        value = kind(raw)
        if (not math.isfinite(value) or value < (least or 0) or (least is None and value <= 0)
                or (top is not None and value > top)):
            raise ValueError
    except ValueError:
        span = "more than 0" if least is None else f"{least:g} or more"
        span += "" if top is None else f", at most {top:.0f}"
        what = ("a whole number" if kind is int else "a number of seconds") + f" ({span})"
        raise UserError(f"{name}={raw!r} is not {what}", where=name, fix=f"set it to e.g. {default(name)}") from None
    return value
