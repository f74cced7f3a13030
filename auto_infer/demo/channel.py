"""Build a small, real conda channel + wheels + pixi.lock on local disk.

Used by the tests, ``demo`` and ``bench``: packages are real ``.tar.bz2`` conda archives
(info/index.json, info/paths.json), indexed by py-rattler, locked with py-rattler's LockFile,
and served over HTTP on 127.0.0.1 by :mod:`auto_infer.demo.mirror`.

The environment's interpreter is a "venv-style" ``python`` package: ``bin/python`` is a
symlink to this machine's CPython and ``pyvenv.cfg`` makes the prefix its own venv, so code
installed into the environment really runs inside it, without shipping a whole CPython. Built
from another interpreter with ``expose_site_packages`` (:func:`host_python`), the environment also
sees that interpreter's site-packages after its own (a ``.pth`` file runs ``site.addsitedir`` on
each): how a machine's own torch (CUDA build, too large to carry) becomes the environment's.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from auto_infer.core.fsutil import atomic_write_text, sha256_file

PY_VER = f"{sys.version_info.major}.{sys.version_info.minor}"
SITE = f"lib/python{PY_VER}/site-packages"
MTIME = 1_700_000_000


@dataclass
class Symlink:
    target: str


@dataclass
class CondaSpec:
    name: str
    version: str
    files: dict[str, bytes | Symlink]
    build: str = "0"
    subdir: str = "linux-64"
    depends: list[str] = field(default_factory=list)


@dataclass
class WheelSpec:
    name: str          # distribution name, e.g. "demo-extras"
    version: str
    files: dict[str, bytes]   # paths inside the wheel (package files)


@dataclass(frozen=True)
class BuiltChannel:
    root: Path            # what the mirror serves: channel/ and wheels/
    project: Path         # pixi.toml + pixi.lock (a template folder)
    base_url: str
    conda_files: tuple[Path, ...]
    wheel_files: tuple[Path, ...]


def build_conda(out_dir: Path, spec: CondaSpec) -> Path:
    index = {"name": spec.name, "version": spec.version, "build": spec.build, "build_number": 0,
             "subdir": spec.subdir, "depends": spec.depends, "license": "MIT", "timestamp": MTIME * 1000}
    if spec.subdir == "noarch":
        index["noarch"] = "generic"
    paths = []
    for path, content in sorted(spec.files.items()):
        if isinstance(content, Symlink):
            paths.append({"_path": path, "path_type": "softlink", "size_in_bytes": len(content.target)})
        else:
            paths.append({"_path": path, "path_type": "hardlink",
                          "sha256": hashlib.sha256(content).hexdigest(), "size_in_bytes": len(content)})
    meta = {"info/index.json": json.dumps(index).encode(),
            "info/paths.json": json.dumps({"paths": paths, "paths_version": 1}).encode(),
            "info/files": ("\n".join(sorted(spec.files)) + "\n").encode()}
    out = out_dir / spec.subdir / f"{spec.name}-{spec.version}-{spec.build}.tar.bz2"
    out.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(out, "w:bz2") as tf:
        for path, content in list(sorted(spec.files.items())) + list(meta.items()):
            info = tarfile.TarInfo(path)
            info.mtime = MTIME
            if isinstance(content, Symlink):
                info.type = tarfile.SYMTYPE
                info.linkname = content.target
                tf.addfile(info)
                continue
            info.size = len(content)
            info.mode = 0o755 if path.startswith("bin/") else 0o644
            tf.addfile(info, io.BytesIO(content))
    return out


def build_wheel(out_dir: Path, spec: WheelSpec) -> Path:
    dist = spec.name.replace("-", "_")
    info = f"{dist}-{spec.version}.dist-info"
    files = dict(spec.files)
    files[f"{info}/METADATA"] = (f"Metadata-Version: 2.1\nName: {spec.name}\nVersion: {spec.version}\n"
                                 "Summary: auto-infer test wheel\n").encode()
    files[f"{info}/WHEEL"] = b"Wheel-Version: 1.0\nGenerator: auto-infer\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    record = []
    for path, content in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(content).digest()).rstrip(b"=").decode()
        record.append(f"{path},sha256={digest},{len(content)}")
    record.append(f"{info}/RECORD,,")
    files[f"{info}/RECORD"] = ("\n".join(record) + "\n").encode()
    out = out_dir / f"{dist}-{spec.version}-py3-none-any.whl"
    out.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
        for path, content in files.items():
            zi = zipfile.ZipInfo(path, date_time=(2023, 11, 14, 0, 0, 0))
            zi.external_attr = 0o644 << 16
            zf.writestr(zi, content)
    return out


@dataclass(frozen=True)
class HostPython:
    """An interpreter the environment's ``python`` package stands on."""
    executable: str                  # the real (base) interpreter, symlinked as bin/python
    version: str                     # e.g. "3.12.3"
    site_dirs: tuple[str, ...] = ()  # its site-packages (exposed with expose_site_packages)

    @property
    def site_rel(self) -> str:
        return "lib/python{}.{}/site-packages".format(*self.version.split(".")[:2])


HOST_QUERY = ("import json, os, site, sys; print(json.dumps([os.path.realpath(getattr(sys, '_base_executable', "
              "sys.executable)), sys.version.split()[0], site.getsitepackages()]))")


def host_python(interpreter: str | None = None) -> HostPython:
    """This process's interpreter, or ask ``interpreter`` (which may be a venv) for its own."""
    if interpreter is None:
        import site
        return HostPython(os.path.realpath(getattr(sys, "_base_executable", sys.executable)),
                          sys.version.split()[0], tuple(site.getsitepackages()))
    out = subprocess.run([interpreter, "-c", HOST_QUERY], capture_output=True, text=True, check=True,
                         timeout=120, stdin=subprocess.DEVNULL).stdout
    exe, version, dirs = json.loads(out.strip().splitlines()[-1])
    return HostPython(exe, version, tuple(dirs))


def python_spec(host: HostPython | None = None, expose_site_packages: bool = False) -> CondaSpec:
    """A venv-style interpreter package for ``host`` (default: this machine's CPython)."""
    host = host or host_python()
    short = ".".join(host.version.split(".")[:2])
    cfg = (f"home = {os.path.dirname(host.executable)}\ninclude-system-site-packages = false\n"
           f"version = {host.version}\n")
    files: dict[str, bytes | Symlink] = {
        "bin/python": Symlink(host.executable), "bin/python3": Symlink("python"),
        f"bin/python{short}": Symlink("python"), "pyvenv.cfg": cfg.encode(),
        f"{host.site_rel}/_auto_infer_venv_python.pth": b""}
    build = "venv_0"
    if expose_site_packages:
        lines = "".join(f"import site; site.addsitedir({d!r})\n" for d in host.site_dirs)
        files[f"{host.site_rel}/_auto_infer_host_site.pth"] = lines.encode()
        build = "venv_host_site_0"
    return CondaSpec(name="python", version=host.version, build=build, files=files)


def index(channel_dir: Path) -> None:
    """(Re)write repodata.json for every subdir of ``channel_dir``."""
    from rattler.index import index_fs

    (channel_dir / "noarch").mkdir(parents=True, exist_ok=True)
    asyncio.run(index_fs(channel_dir, write_zst=False, write_shards=False, force=True))


def _add_wheel_hashes(lock_text: str, hashes: dict[str, str]) -> str:
    """py-rattler's add_pypi_package takes no hash: add ``sha256:`` to each pypi entry."""
    out, current = [], None
    for line in lock_text.splitlines():
        if line.startswith("- pypi: "):
            current = line[len("- pypi: "):].strip()
        elif line.startswith("- "):
            current = None
        out.append(line)
        if current and line.startswith("  version:") and current in hashes:
            out.append(f"  sha256: {hashes[current]}")
    return "\n".join(out) + "\n"


@dataclass(frozen=True)
class LockedWheel:
    """A pypi entry of a lock: where the wheel is served and its sha256."""
    name: str
    version: str
    url: str
    sha256: str


def write_lock(project: Path, channel_dir: Path, base_url: str, wheels: Iterable[tuple[WheelSpec, Path]],
               platform: str = "linux-64", environment: str = "default") -> Path:
    """A pixi.lock for the channel and the wheels built here (served from ``base_url``/wheels/)."""
    entries = [LockedWheel(spec.name, spec.version, f"{base_url}/wheels/{path.name}", sha256_file(path))
               for spec, path in wheels]
    return write_lock_urls(project, channel_dir, base_url, entries, platform, environment)


def write_lock_urls(project: Path, channel_dir: Path, base_url: str, wheels: Iterable[LockedWheel],
                    platform: str = "linux-64", environment: str = "default") -> Path:
    """A pixi.lock for the channel's packages and ``wheels`` at their own URLs and hashes."""
    from rattler import Channel, LockChannel, LockFile, LockPlatform, RepoData

    chan_url = f"{base_url}/channel/"
    plat = LockPlatform(platform)
    lock = LockFile([plat])
    lock.set_channels(environment, [LockChannel(chan_url)])
    for sub in (platform, "noarch"):
        repodata = channel_dir / sub / "repodata.json"
        if repodata.exists():
            for record in RepoData.from_path(repodata).into_repo_data(Channel(chan_url)):
                lock.add_conda_package(environment, plat, record)
    hashes = {}
    for wheel in wheels:
        lock.add_pypi_package(environment, plat, wheel.name, wheel.version, wheel.url)
        hashes[wheel.url] = wheel.sha256
    project.mkdir(parents=True, exist_ok=True)
    target = project / "pixi.lock"
    lock.to_path(target)
    atomic_write_text(target, _add_wheel_hashes(target.read_text(), hashes))
    return target


def write_manifest_toml(project: Path, name: str, base_url: str, conda: list[CondaSpec],
                        wheels: list[WheelSpec], platform: str = "linux-64") -> Path:
    deps = "\n".join(f'{c.name} = "=={c.version}"' for c in conda)
    pypi = "\n".join(f'{w.name} = "=={w.version}"' for w in wheels)
    text = (f'[workspace]\nname = "{name}"\nchannels = ["{base_url}/channel/"]\nplatforms = ["{platform}"]\n\n'
            f"[dependencies]\n{deps}\n\n[pypi-options]\nindex-url = \"{base_url}/simple\"\n\n"
            f"[pypi-dependencies]\n{pypi}\n")
    path = project / "pixi.toml"
    atomic_write_text(path, text)
    return path


def wheel_spec_of(path: Path) -> WheelSpec:
    """Name and version of a real wheel file, from its file name (PEP 427)."""
    dist, version = path.name.split("-")[:2]
    return WheelSpec(dist.replace("_", "-").lower(), version, {})


def build(root: Path, base_url: str, conda: list[CondaSpec], wheels: list[WheelSpec],
          name: str = "auto-infer-test", platform: str = "linux-64",
          real_wheels: Iterable[Path] = ()) -> BuiltChannel:
    """Build channel + wheels under ``root`` and a template (pixi.toml + pixi.lock) in root/template.

    ``real_wheels`` are existing wheel files (e.g. from PyPI), copied in and locked as they are.
    """
    channel_dir = root / "channel"
    conda_files = tuple(build_conda(channel_dir, spec) for spec in conda)
    index(channel_dir)
    built_wheels = [(spec, build_wheel(root / "wheels", spec)) for spec in wheels]
    for wheel in real_wheels:
        (root / "wheels").mkdir(parents=True, exist_ok=True)
        copy = root / "wheels" / wheel.name
        shutil.copyfile(wheel, copy)
        built_wheels.append((wheel_spec_of(wheel), copy))
    project = root / "template"
    write_lock(project, channel_dir, base_url, built_wheels, platform=platform)
    write_manifest_toml(project, name, base_url, conda, [spec for spec, _ in built_wheels], platform=platform)
    return BuiltChannel(root=root, project=project, base_url=base_url, conda_files=conda_files,
                        wheel_files=tuple(p for _, p in built_wheels))


def site_packages_rel() -> str:
    return SITE
