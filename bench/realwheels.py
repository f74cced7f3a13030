"""The real-wheels workload: the real SGLang + torch wheels (tests/data/realwheels.txt) in a pixi.lock.

Shared by tests/test_realwheels.py and the bench's "real wheels" case. The wheels come from a folder
filled by `.ci/setup-realwheels.sh` ($AUTO_INFER_REALWHEELS_DIR, default /opt/auto-infer-ci/realwheels).
The lock is written the way pixi writes one: its conda part is a Python from a local channel (the
venv-style interpreter of :mod:`auto_infer.demo.channel`), its PyPI part the real files at their real
PyPI paths with their real sha256, only the host rewritten to the 127.0.0.1 mirror
(``https://files.pythonhosted.org/packages/aa/4f/…/torch-….whl`` →
``http://127.0.0.1:PORT/packages/aa/4f/…/torch-….whl``). The mirror serves ``root``: channel/ and
packages/…, whose wheel files are symbolic links into the wheel folder (nothing is copied).
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from auto_infer.core.net import free_port
from auto_infer.demo import channel

LIST = Path(__file__).resolve().parents[1] / "tests" / "data" / "realwheels.txt"
DIR_VAR = "AUTO_INFER_REALWHEELS_DIR"
DEFAULT_DIR = "/opt/auto-infer-ci/realwheels"
PYTHON_TAG = "cp311"           # the list's compiled wheels are for CPython 3.11
SGLANG_VERSION = "0.5.23"
TORCH_VERSION = "2.14.1"


@dataclass(frozen=True)
class Pinned:
    name: str
    version: str
    filename: str
    size: int
    sha256: str
    url: str                   # the real PyPI URL

    @property
    def path(self) -> str:
        """The URL's path (``/packages/xx/yy/<hash>/<file>``), kept on the mirror."""
        return urlparse(self.url).path


def pinned() -> list[Pinned]:
    out = []
    for line in LIST.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            spec, filename, size, sha, url = line.split()
            name, version = spec.split("==")
            out.append(Pinned(name, version, filename, int(size), sha, url))
    return out


def wheel_dir(environ: dict[str, str] | None = None) -> Path:
    return Path((environ if environ is not None else os.environ).get(DIR_VAR) or DEFAULT_DIR)


def unavailable(directory: Path) -> str | None:
    """Why the real-wheels workload cannot be built here (None: it can)."""
    if f"cp{sys.version_info.major}{sys.version_info.minor}" != PYTHON_TAG:
        return f"the real wheels are for CPython 3.11 ({PYTHON_TAG}); this is Python {sys.version.split()[0]}"
    missing = [p.filename for p in pinned()
               if not (directory / p.filename).is_file() or (directory / p.filename).stat().st_size != p.size]
    if missing:
        return (f"{len(missing)} of the real wheels are missing in {directory} (e.g. {missing[0]}): "
                f"run .ci/setup-realwheels.sh {directory} and set {DIR_VAR}")
    return None


@dataclass(frozen=True)
class RealWheels:
    root: Path                 # what the mirror serves
    port: int
    template: Path             # pixi.toml + pixi.lock
    wheels: tuple[Pinned, ...]
    build_secs: float

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def total_bytes(self) -> int:
        return sum(p.size for p in self.wheels)


def build(root: Path, directory: Path, port: int | None = None) -> RealWheels:
    """Channel (python), mirror tree (links to ``directory``'s wheels) and template under ``root``."""
    t0 = time.monotonic()
    port = port or free_port()
    base_url = f"http://127.0.0.1:{port}"
    chan = root / "channel"
    py = channel.python_spec()
    channel.build_conda(chan, py)
    channel.index(chan)
    wheels = pinned()
    for p in wheels:
        served = root / p.path.lstrip("/")
        served.parent.mkdir(parents=True, exist_ok=True)
        if not served.is_symlink():
            served.symlink_to((directory / p.filename).resolve())
    entries = [channel.LockedWheel(p.name, p.version, base_url + p.path, p.sha256) for p in wheels]
    template = root / "template"
    channel.write_lock_urls(template, chan, base_url, entries)
    names = [channel.WheelSpec(p.name, p.version, {}) for p in wheels]
    channel.write_manifest_toml(template, "realwheels", base_url, [py], names)
    return RealWheels(root, port, template, tuple(wheels), time.monotonic() - t0)
