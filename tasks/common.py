"""Settings for task creators: loaded once per process from the env-var contract."""

from __future__ import annotations

import sys
from functools import lru_cache
from typing import Any

from auto_infer.core import settings as _settings
from auto_infer.core.errors import UserError
from auto_infer.core.settings import Settings
from auto_infer.tasks import glue


@lru_cache(maxsize=1)
def settings() -> Settings:
    return _settings.load()


def doit_config() -> dict[str, Any]:
    """DOIT_CONFIG for dodo.py; a bad environment is one clear message and exit 1."""
    try:
        return glue.config(settings())
    except UserError as exc:
        print(f"auto-infer: {exc}", file=sys.stderr)
        raise SystemExit(1) from None


# `install --verify` / `serve --verify`: hash every weight file against the cache manifest's sha256
VERIFY = [{"name": "verify", "long": "verify", "type": bool, "default": False,
           "help": "check the sha256 of every model weight file too (default: sizes)"}]
