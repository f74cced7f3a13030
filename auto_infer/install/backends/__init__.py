"""Installers behind one small interface. Adding one is adding a file and a line below."""

from __future__ import annotations

from auto_infer.core.errors import UserError
from auto_infer.install.backends.base import Backend


def get(name: str) -> Backend:
    if name == "pixi":
        from auto_infer.install.backends.pixi import PixiBackend
        return PixiBackend()
    if name == "rattler":
        from auto_infer.install.backends.rattler import RattlerBackend
        return RattlerBackend()
    raise UserError(f"unknown installer {name!r}", where="AUTO_INFER_INSTALLER", fix="use auto, pixi or rattler")


__all__ = ["Backend", "get"]
