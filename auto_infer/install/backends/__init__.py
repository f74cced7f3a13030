"""Installers behind one small interface. Adding one is adding a file and a line below."""

from __future__ import annotations

import shutil

from auto_infer.core.errors import UserError
from auto_infer.install.backends.base import Backend


def check(name: str) -> None:
    """The installer ``name`` can run here, or a UserError; loads nothing."""
    if name == "pixi" and not shutil.which("pixi"):
        raise UserError("AUTO_INFER_INSTALLER=pixi, but pixi is not installed (not on PATH)",
                        where="AUTO_INFER_INSTALLER",
                        fix="install pixi (https://pixi.sh) or put it on PATH; or use AUTO_INFER_INSTALLER=rattler "
                            "(or auto), the pixi-free installer")
    if name not in ("pixi", "rattler"):
        raise UserError(f"unknown installer {name!r}", where="AUTO_INFER_INSTALLER", fix="use auto, pixi or rattler")


def get(name: str) -> Backend:
    check(name)
    if name == "pixi":
        from auto_infer.install.backends.pixi import PixiBackend
        return PixiBackend()
    from auto_infer.install.backends.rattler import RattlerBackend
    return RattlerBackend()


__all__ = ["Backend", "check", "get"]
