"""The installer interface (pre-commit's languages/*.py, as a Protocol)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from auto_infer.core.progress import Step
from auto_infer.core.settings import Settings
from auto_infer.install.lockfile import Artifact, LockedEnv

if TYPE_CHECKING:
    from auto_infer.install.fetch import Fetched


class Backend(Protocol):
    name: str
    #: the installer itself fills the package cache while it installs (pixi downloads what
    #: ``fetch`` left); False: the cache is complete before ``install`` and it only reads it
    fills_cache: bool

    def version(self) -> str:
        """Installer name and version, recorded in the manifest and the install record."""

    def fetch(self, settings: Settings, locked: LockedEnv, step: Step,
              ready: Callable[[Artifact], None] | None = None) -> dict[str, Fetched]:
        """Online, before the environment is touched: download what can be downloaded up front,
        calling ``ready`` with each conda artifact whose archive is in the store (verified) as soon
        as it is (the package cache is filled from it meanwhile: install/importer.py).

        Returns the lock's URL -> (sha256, size, served_from) of the files it holds (may be empty)."""

    def install(self, settings: Settings, locked: LockedEnv, step: Step, *, online: bool, repair: bool,
                remove_pypi: list[str]) -> None:
        """Install ``locked`` into settings.env_prefix; ``online=False``: from the cache only."""
