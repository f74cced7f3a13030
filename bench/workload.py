"""Synthetic SGLang-shaped workloads: a real local conda channel, wheels and pixi.lock, warmed once.

Shape (at ×10, ``--scale 1``): ~300 conda packages whose names start with the ones of the real
SGLang cu128 lock (shared/realworld), ~20,000 package files (Zipf-distributed over packages:
a few packages hold most files, like torch and the CUDA libraries do), a handful of large shared
libraries, lib symlinks, and a few wheels (torch-, sglang-, sgl-kernel-shaped) of ~2,000 files.
Everything is built with :mod:`auto_infer.demo.channel` (the packages in parallel, one per core) and
warmed with the real `auto-infer warm` from a :class:`auto_infer.demo.mirror.Mirror` on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import random
import subprocess
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from auto_infer.core.net import free_port
from auto_infer.core.settings import CACHE_VARS, PROXY_VARS
from auto_infer.demo import channel, mirror

REAL_NAMES = (
    "_openmp_mutex attr bzip2 ca-certificates cuda-cudart cuda-cudart_linux-64 cuda-libraries cuda-nvrtc "
    "cuda-opencl cuda-runtime cuda-version icu ld_impl_linux-64 libcap libcublas libcufft libcufile "
    "libcurand libcusolver libcusparse libexpat libffi libgcc libgcc-ng liblzma libnl libnpp libnsl "
    "libnvfatbin libnvjitlink libnvjpeg libsqlite libstdcxx libsystemd0 libudev1 libuuid libxcrypt libzlib "
    "llvm-openmp ncurses ocl-icd opencl-headers openssl rdma-core readline tk tzdata zstd").split()
LARGE_HOSTS = ("libcublas", "libcusparse", "libcufft", "libnpp", "libcusolver", "libcurand")
WHEELS = (("torch", 0.60, 0.60), ("sglang", 0.25, 0.0), ("sgl-kernel", 0.02, 0.30),
          ("flashinfer-python", 0.10, 0.10), ("triton", 0.03, 0.0))  # name, share of files, of bytes


@dataclass(frozen=True)
class Shape:
    """How big a workload is; ``factor`` 10 at --scale 1 is the main one."""
    factor: int
    packages: int
    files: int
    large_bytes: int
    wheel_files: int
    wheel_large_bytes: int

    @property
    def label(self) -> str:
        return f"×{self.factor}"

    @classmethod
    def of(cls, factor: int, scale: float) -> Shape:
        k = scale * factor / 10
        return cls(factor, max(3, round(300 * k)), max(30, round(20_000 * k)), round(64e6 * k),
                   max(10, round(2_000 * k)), round(16e6 * k))


_BLOCK: bytes = b""


def _filler(n: int, seed: str) -> bytes:
    """Deterministic text-like bytes (compresses like code, ~7×) at an offset picked by ``seed``."""
    global _BLOCK
    if not _BLOCK:
        r = random.Random(7)
        words = [bytes(r.choice(b"abcdefghijklmnopqrstuvwxyz_") for _ in range(r.randint(2, 10)))
                 for _ in range(800)]
        _BLOCK = b" ".join(r.choice(words) for _ in range(1 << 19))
    start = int.from_bytes(hashlib.blake2b(seed.encode(), digest_size=4).digest(), "big") % (len(_BLOCK) // 2)
    out = bytearray(f"# {seed}\n".encode())
    while len(out) < n:
        out += _BLOCK[start:start + n - len(out)]
        start = 0
    return bytes(out[:n])


def _small_size(r: random.Random) -> int:
    x = r.random()
    return r.randint(200, 2_000) if x < 0.6 else r.randint(2_000, 12_000) if x < 0.95 else r.randint(12_000, 64_000)


def _file_counts(shape: Shape) -> list[int]:
    weights = [1 / (i + 1) ** 0.9 for i in range(shape.packages)]
    total = sum(weights)
    return [max(1, round(shape.files * w / total)) for w in weights]


def package_name(i: int) -> str:
    return REAL_NAMES[i] if i < len(REAL_NAMES) else f"synth-lib{i:03d}"


def conda_spec(shape: Shape, i: int) -> channel.CondaSpec:
    name, r = package_name(i), random.Random(i)
    n = _file_counts(shape)[i]
    files: dict[str, bytes | channel.Symlink] = {}
    stem = name.replace("-", "_")
    if i % 3 == 0:   # a python-ish package: modules in site-packages
        for k in range(n):
            path = f"{channel.SITE}/{stem}/sub{k // 50}/mod_{k}.py"
            files[path] = _filler(_small_size(r), path)
    else:            # a C library: headers, data, one .so with its symlinks
        files[f"lib/lib{stem}.so.1.0"] = _filler(r.randint(20_000, 200_000), f"{name}.so")
        files[f"lib/lib{stem}.so.1"] = channel.Symlink(f"lib{stem}.so.1.0")
        files[f"lib/lib{stem}.so"] = channel.Symlink(f"lib{stem}.so.1")
        for k in range(max(0, n - 3)):
            path = f"include/{stem}/h{k // 40}/f{k}.h" if k % 2 else f"share/{stem}/d{k // 40}/f{k}.txt"
            files[path] = _filler(_small_size(r), path)
    if name in LARGE_HOSTS and shape.large_bytes:
        per = shape.large_bytes // len(LARGE_HOSTS)
        files[f"lib/lib{stem}Lt.so.12"] = _filler(per, f"{name}-large")
    return channel.CondaSpec(name, f"1.{i}.0", files, build=f"h{i:04x}_0")


def wheel_specs(shape: Shape) -> list[channel.WheelSpec]:
    specs = []
    for name, share_files, share_bytes in WHEELS:
        mod, r = name.replace("-", "_"), random.Random(name)
        files = {f"{mod}/p{k // 60}/m{k}.py": _filler(_small_size(r), f"{name}{k}")
                 for k in range(max(1, round(shape.wheel_files * share_files)))}
        files[f"{mod}/__init__.py"] = b"__version__ = '1.0'\n"
        if share_bytes and shape.wheel_large_bytes:
            files[f"{mod}/lib/_C.so"] = _filler(round(shape.wheel_large_bytes * share_bytes), f"{name}-so")
        specs.append(channel.WheelSpec(name, "1.0", files))
    return specs


def _build_conda(job: tuple[Path, Shape, int]) -> Path:
    out, shape, i = job
    return channel.build_conda(out, conda_spec(shape, i))


def _build_wheel(job: tuple[Path, channel.WheelSpec]) -> Path:
    return channel.build_wheel(*job)


@dataclass(frozen=True)
class Workload:
    shape: Shape
    root: Path
    port: int
    template: Path
    build_secs: float

    @property
    def lock(self) -> Path:
        return self.template / "pixi.lock"


def build(root: Path, shape: Shape) -> Workload:
    """Channel + wheels + template for ``shape`` under ``root`` (packages built in parallel)."""
    t0 = time.monotonic()
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    chan = root / "channel"
    wheels = wheel_specs(shape)
    with ProcessPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        list(pool.map(_build_conda, [(chan, shape, i) for i in range(shape.packages)], chunksize=4))
        paths = list(pool.map(_build_wheel, [(root / "wheels", w) for w in wheels]))
    py = channel.python_spec()
    channel.build_conda(chan, py)
    from rattler.index import index_fs
    (chan / "noarch").mkdir(parents=True, exist_ok=True)
    asyncio.run(index_fs(chan, write_zst=False, write_shards=False, force=True))
    template = root / "template"
    light = [channel.WheelSpec(w.name, w.version, {}) for w in wheels]
    channel.write_lock(template, chan, base_url, zip(light, paths, strict=True))
    names = [py] + [channel.CondaSpec(package_name(i), f"1.{i}.0", {}) for i in range(shape.packages)]
    channel.write_manifest_toml(template, f"bench-{shape.label}", base_url, names, light)
    return Workload(shape, root, port, template, time.monotonic() - t0)


def clean_env(extra: dict[str, str]) -> dict[str, str]:
    """This environment without proxies, cache variables or AUTO_INFER_*, plus ``extra``."""
    env = {k: v for k, v in os.environ.items()
           if k not in PROXY_VARS and k not in CACHE_VARS and not k.startswith(("AUTO_INFER_", "PYTEST_"))}
    env.update(extra)
    return env


def workspace_env(ws: Path, template: Path, *, project: Path | None = None,
                  cache_root: Path | None = None) -> dict[str, str]:
    return clean_env({
        "AUTO_INFER_WORKSPACE_DIR": str(ws),
        "AUTO_INFER_SGLANG_TEMPLATE_DIR": str(template),
        "AUTO_INFER_SGLANG_PROJECT_DIR": str(project or ws / "sglang-infer"),
        "AUTO_INFER_SGLANG_CACHE_ROOT": str(cache_root or ws / ".cache" / "sglang-infer"),
        "AUTO_INFER_INSTALLER": "rattler",
        "AUTO_INFER_CHECK_MODULES": "sglang",
        "HOME": str(ws / "home"),
    })


def warm(wl: Workload, env: dict[str, str], cli: list[str]) -> tuple[float, str]:
    """`auto-infer warm` online from the workload's mirror: fills the cache, installs the env."""
    with mirror.Mirror(wl.root, wl.port):
        t0 = time.monotonic()
        r = subprocess.run([*cli, "warm"], env=env, capture_output=True, text=True, stdin=subprocess.DEVNULL,
                           cwd="/")
        secs = time.monotonic() - t0
    if r.returncode != 0:
        raise RuntimeError(f"auto-infer warm failed (exit {r.returncode}):\n{r.stderr[-3000:]}")
    return secs, r.stderr
